"""Reading and replaying dead-letter topics (any of them: connectors, engineering, fleet).

Every EdgeSight consumer writes Kafka Connect's dead-letter context headers
(:mod:`edgesight.wire.deadletter`), so one reader serves them all.

- :func:`read` returns the records of a dead-letter topic with their parsed
  context, from the beginning, without joining a group (nothing is committed).
- :func:`replay` sends dead letters back to the topic they came from (or another
  one), *unchanged* (key, value, the record's own headers), once a fix is
  deployed. Progress is committed in the consumer group
  ``edgesight-dlq-replay.<dlq topic>`` after the broker acknowledged the
  re-sent records (idempotent producer, acks=all), so a second run replays only
  dead letters that arrived since. The consumers downstream are idempotent
  (deterministic event ids), so a replay interrupted before its commit and run
  again does not double-count.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from edgesight.kafka import ConsumedMessage, HeadersUnreadable
from edgesight.log import get_logger
from edgesight.wire.deadletter import DeadLetter, parse_headers, strip_context

log = get_logger("cloud.deadletters")


class DeadLetterError(RuntimeError):
    """The dead-letter topic cannot be read or the replay cannot be delivered; the message says which."""


@dataclass
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    context: DeadLetter | None  # None: the record carries no dead-letter context


@dataclass
class ReplayReport:
    read: int = 0
    replayed: int = 0
    skipped_filter: int = 0
    skipped_no_context: int = 0
    skipped_value_dropped: int = 0
    by_target: dict[str, int] = field(default_factory=dict)
    committed: bool = False


def _partitions(consumer: Consumer, topic: str, timeout: float) -> list[int]:
    md = consumer.list_topics(topic, timeout=timeout)
    t = md.topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        why = t.error if t is not None and t.error is not None else "unknown topic"
        raise DeadLetterError(f"dead-letter topic {topic!r} cannot be read: {why}")
    return sorted(t.partitions)


def _watermarks(consumer: Consumer, topic: str, parts: list[int], timeout: float) -> dict[int, tuple[int, int]]:
    return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout) for p in parts}


def _drain(
    consumer: Consumer,
    topic: str,
    starts: dict[int, int],
    ends: dict[int, int],
    limit: int | None,
    timeout: float,
    on_record: Callable[[object], None],
    idle_s: float = 1.0,
) -> None:
    """Feed records to ``on_record`` to the end of the topic (or ``limit``).

    The end: every partition at or past its high watermark *and* ``idle_s`` without a record.
    The watermark is only a lower bound (Tansu under-reports it; Kafka's is exact, so there
    the idle wait costs ``idle_s`` once), and a record that arrives meanwhile is simply read."""
    n, deadline, idle_since = 0, time.monotonic() + timeout, None
    nxt: dict[int, int] = dict(starts)  # next offset to read per partition (a position before any fetch: invalid)
    while limit is None or n < limit:
        now = time.monotonic()
        msgs = consumer.consume(min(500, (limit - n) if limit else 500), 0.25)
        if not msgs:
            behind = {p for p, end in ends.items() if nxt.get(p, 0) < end}
            if behind:  # offsets may have gaps (compaction, transaction markers): ask where we are
                behind = {
                    tp.partition
                    for tp in consumer.position([TopicPartition(topic, p) for p in behind])
                    if max(tp.offset, nxt.get(tp.partition, 0)) < ends[tp.partition]
                }
            if not behind:
                idle_since = idle_since or now
                if now - idle_since >= idle_s:
                    break
            elif now > deadline:
                raise DeadLetterError(
                    f"timed out after {timeout:.0f} s reading the dead-letter topic "
                    f"({n} records read, partitions {sorted(behind)} short of their end)"
                )
            continue
        idle_since = None
        for m in msgs:
            if m.error() is not None:
                raise DeadLetterError(f"reading the dead-letter topic failed: {m.error()}")
            on_record(ConsumedMessage(m))
            nxt[m.partition()] = m.offset() + 1
            n += 1
            if limit is not None and n >= limit:
                break


def _record(m) -> Record:
    try:
        headers = [(k, v or b"") for k, v in (m.headers() or [])]
    except HeadersUnreadable:  # a record not written by a dead-letter producer: shown without its headers
        headers = []
    return Record(m.partition(), m.offset(), m.key(), m.value(), headers, parse_headers(headers))


def read(kafka_conf: dict, topic: str, *, limit: int | None = None, timeout: float = 30.0) -> list[Record]:
    """Records of ``topic`` from the beginning (all partitions, in offset order per partition)."""
    c = Consumer(
        {
            **kafka_conf,
            "group.id": f"edgesight-dlq-read-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    out: list[Record] = []
    try:
        parts = _partitions(c, topic, timeout)
        wm = _watermarks(c, topic, parts, timeout)
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        _drain(
            c,
            topic,
            {p: lo for p, (lo, _) in wm.items()},
            {p: hi for p, (_, hi) in wm.items()},
            limit,
            timeout,
            lambda m: out.append(_record(m)),
        )
    except KafkaException as e:
        raise DeadLetterError(f"dead-letter topic {topic!r} cannot be read: {e}") from e
    finally:
        c.close()
    return out


def replay(
    kafka_conf: dict,
    topic: str,
    *,
    to: str | None = None,
    stage: str | None = None,
    connector: str | None = None,
    dry_run: bool = False,
    timeout: float = 30.0,
    progress: Callable[[int], None] | None = None,
    checkpoint_every: int = 10_000,
) -> ReplayReport:
    """Send the dead letters of ``topic`` not replayed before back to their source topic (or ``to``).

    Every ``checkpoint_every`` records read (and at the end) the re-sent records are flushed and,
    once all are acknowledged, the replay group's offsets are committed: a large replay that is
    interrupted resumes near where it stopped."""
    group = f"edgesight-dlq-replay.{topic}"
    c = Consumer({**kafka_conf, "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    prod = None if dry_run else Producer({**kafka_conf, "acks": "all", "enable.idempotence": True, "linger.ms": 5})
    rep = ReplayReport()
    failed: list[str] = []

    read_to: dict[int, int] = {}  # next offset per partition of what was handled (sent or skipped)

    def delivered(err, _msg) -> None:
        if err is not None:
            failed.append(str(err))

    def checkpoint() -> None:
        if prod is None or not read_to:
            return
        left = prod.flush(timeout)
        if left or failed:
            raise DeadLetterError(
                f"replay not acknowledged by the broker ({left} undelivered, errors: "
                f"{failed[:3]}); progress since the last checkpoint not committed, run it again"
            )
        c.commit(offsets=[TopicPartition(topic, p, o) for p, o in read_to.items()], asynchronous=False)
        rep.committed = True

    def handle(m) -> None:
        read_to[m.partition()] = m.offset() + 1
        handle_record(m)
        if rep.read % checkpoint_every == 0:
            checkpoint()

    def handle_record(m) -> None:
        r = _record(m)
        rep.read += 1
        if progress:
            progress(1)
        ctx = r.context
        if ctx is None:
            rep.skipped_no_context += 1
            return
        if (stage and ctx.stage != stage) or (connector and ctx.connector != connector):
            rep.skipped_filter += 1
            return
        if ctx.value_dropped_bytes:
            rep.skipped_value_dropped += 1
            log.warning(
                "dead letter not replayable: its value was dropped (too large)",
                extra={"source": ctx.source, "bytes": ctx.value_dropped_bytes},
            )
            return
        target = to or ctx.topic
        rep.by_target[target] = rep.by_target.get(target, 0) + 1
        rep.replayed += 1
        if prod is not None:
            while True:
                try:
                    prod.produce(
                        target, key=r.key, value=r.value, headers=strip_context(r.headers), on_delivery=delivered
                    )
                    break
                except BufferError:  # the producer's queue is full: let deliveries drain
                    prod.poll(0.5)
            prod.poll(0)

    try:
        parts = _partitions(c, topic, timeout)
        committed = {
            tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, p) for p in parts], timeout=timeout)
        }
        wm = _watermarks(c, topic, parts, timeout)
        # resume after the last committed replay (a negative offset: none yet -> the start of the log)
        starts = {p: lo if committed.get(p, -1) < 0 else max(committed[p], lo) for p, (lo, _) in wm.items()}
        ends = {p: hi for p, (_, hi) in wm.items()}
        c.assign([TopicPartition(topic, p, o) for p, o in starts.items()])
        _drain(c, topic, starts, ends, None, timeout, handle)
        checkpoint()
        log.info(
            "dead letters replayed" if not dry_run else "dead letters replay (dry run)",
            extra={"topic": topic, "read": rep.read, "replayed": rep.replayed, "targets": rep.by_target},
        )
    except KafkaException as e:
        raise DeadLetterError(f"replay of {topic!r} failed: {e}") from e
    finally:
        c.close()
    return rep
