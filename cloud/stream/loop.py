"""The one consumer loop of the cloud side: consume -> handle -> dead-letter -> flush -> commit.

At-least-once delivery with an exactly-once *effect*:

1. ``consume`` up to ``batch_size`` records (auto-commit off, :func:`edgesight.kafka.consumer_config`): wait up
   to ``batch_timeout_s`` for the first one, then take what is already fetched without waiting (a batch never
   lingers for records that are not there: at a low rate each record is written as it comes, under load the
   fetched backlog fills the batch);
2. each record goes to the handler's ``accept``; a failed one (a :class:`Failure` returned, or *any*
   exception raised for it) goes to :meth:`BatchLoop._failed`, the one place that applies the
   :class:`ErrorPolicy` (dead-letter it, or stop the task), so no record can stop the loop;
3. the handler's ``write`` makes the batch durable (it returns after the sink acknowledged) and says
   which records the sink refused and which offsets are committable;
4. the dead letters (bounded: :mod:`cloud.stream.dlq`) are produced (idempotent producer, ``acks=all``)
   and flushed; a broker that refuses one record gets a minimal dead letter, then the record is logged
   and skipped; an unavailable broker is retried with back-off and nothing is committed meanwhile;
5. only then are the offsets committed, synchronously, for the partitions still assigned.

A crash anywhere before 5 redelivers the batch: the handlers' writes are idempotent. With
``errors.tolerance=none`` the first failed record stops the task (:class:`TaskFailed`, Kafka Connect's
contract) after the records before it were written and committed: a restart stops at that record again,
with the same error, and writes nothing twice. ``stop`` (set by
SIGTERM/SIGINT through :func:`handle_signals`) finishes the current batch, writes what is buffered
(``write(final=True)``), commits, leaves the group and returns.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, NoReturn, Protocol, TypeVar

from edgesight import metrics
from edgesight.kafka import ConsumedMessage, consumer_config
from edgesight.limits import clip
from edgesight.log import ContextLogger, get_logger
from edgesight.wire import deadletter

from .dlq import DeadLetterError, DeadLetterProducer, Letter, build_letter, coordinates, safe_text
from .handler import TP, ErrorPolicy, Failure, Handler, TaskFailed, WriteResult

T = TypeVar("T")

RECORDS = metrics.counter(
    "consumer_records_total", "Records handled by a cloud consumer, by result", ["consumer", "result"]
)
BATCHES = metrics.counter("consumer_batches_total", "Batches written and committed", ["consumer"])
BATCH_SECONDS = metrics.histogram("consumer_batch_seconds", "Time to handle, write and commit one batch", ["consumer"])
COMMITTED = metrics.gauge("consumer_committed_offset", "Last committed offset", ["consumer", "topic", "partition"])
ASSIGNED = metrics.gauge("consumer_assigned_partitions", "Partitions currently assigned", ["consumer"])
ERRORS = metrics.counter("consumer_errors_total", "Errors by kind", ["consumer", "kind"])


class LoopMetrics(Protocol):
    """Where the loop reports; :class:`ConsumerMetrics` (``edgesight_consumer_*``) unless the caller has its own."""

    def consumed(self, n: int) -> None: ...
    def written(self, n: int) -> None: ...
    def dead_lettered(self, stage: str) -> None: ...
    def batch(self, seconds: float) -> None: ...
    def committed(self, offsets: Mapping[TP, int]) -> None: ...
    def assigned(self, n: int) -> None: ...
    def error(self, kind: str) -> None: ...


class ConsumerMetrics:
    """The ``edgesight_consumer_*`` family, labelled with the consumer's name."""

    def __init__(self, name: str):
        self.name = name

    def consumed(self, n: int) -> None:
        pass

    def written(self, n: int) -> None:
        RECORDS.labels(self.name, "ok").inc(n)

    def dead_lettered(self, stage: str) -> None:
        RECORDS.labels(self.name, "dlq").inc()

    def batch(self, seconds: float) -> None:
        BATCHES.labels(self.name).inc()
        BATCH_SECONDS.labels(self.name).observe(seconds)

    def committed(self, offsets: Mapping[TP, int]) -> None:
        for (t, p), o in offsets.items():
            COMMITTED.labels(self.name, t, str(p)).set(o)

    def assigned(self, n: int) -> None:
        ASSIGNED.labels(self.name).set(n)

    def error(self, kind: str) -> None:
        ERRORS.labels(self.name, kind).inc()


@dataclass
class LoopStats:
    records: int = 0  # consumed
    good: int = 0  # made durable
    poison: int = 0  # failed (dead-lettered or skipped)
    batches: int = 0
    commits: int = 0
    first_record_at: float | None = None  # time.monotonic()
    last_commit_at: float | None = None
    assigned: list[TP] = field(default_factory=list)
    partitions_seen: set[TP] = field(default_factory=set)  # partitions records came from
    reason: str = ""  # why the loop ended: stop requested, idle, max_seconds ("" while running / on error)

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "good": self.good,
            "poison": self.poison,
            "batches": self.batches,
            "commits": self.commits,
            "assigned": [f"{t}[{p}]" for t, p in self.assigned],
            "partitions": sorted(f"{t}[{p}]" for t, p in self.partitions_seen),
            "reason": self.reason,
        }


def retry_durable(fn: Callable[[], T], *, stop: threading.Event, log: ContextLogger) -> T:
    """Run a durable write; on errors back off and retry (nothing is committed meanwhile). Once a stop was
    requested it gives up after a few tries; :class:`TaskFailed` is never retried."""
    delay = 0.5
    while True:
        try:
            return fn()
        except TaskFailed:
            raise
        except Exception as e:
            if stop.is_set() and delay > 4:
                raise
            log.error("write failed; retrying", extra={"error": safe_text(e, 500), "retry_in_s": delay})
            stop.wait(delay)  # a stop request ends the wait at once
            delay = min(delay * 2, 15.0)


def handle_signals(stop: threading.Event, log: ContextLogger) -> None:
    """SIGTERM/SIGINT set ``stop`` (the loops finish their batch, commit and return); main thread only."""

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal; finishing the batch and committing", extra={"signal": signum})
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _stop)


class BatchLoop:
    """One consumer group member running one :class:`Handler` (see the module doc for the order)."""

    def __init__(
        self,
        handler: Handler,
        kafka: Mapping[str, Any],
        topics: Sequence[str],
        *,
        group_id: str,
        client_id: str,
        session_timeout_ms: int,
        policy: ErrorPolicy,
        metrics: LoopMetrics | None = None,
        batch_size: int = 1000,
        batch_timeout_s: float = 0.5,
        stop: threading.Event | None = None,
        log: ContextLogger | None = None,
    ):
        self.handler, self.kafka, self.topics = handler, dict(kafka), list(topics)
        self.name = handler.name
        self.group_id, self.client_id, self.session_timeout_ms = group_id, client_id, session_timeout_ms
        self.policy = policy
        self.metrics: LoopMetrics = metrics or ConsumerMetrics(self.name)
        self.batch_size, self.batch_timeout_s = batch_size, batch_timeout_s
        self.stop = stop or threading.Event()
        self.log = log or get_logger(f"{self.name}.consumer", topic=",".join(self.topics), group=group_id)
        self.stats = LoopStats()
        self.timing = {"consume": 0.0, "process": 0.0, "flush": 0.0, "commit": 0.0}
        self.running = False
        self._assigned: set[TP] = set()
        self._pending: dict[TP, int] = {}  # next offsets of the records accepted since the last write
        self._consumer: Any = None
        self._dlq: DeadLetterProducer | None = None

    # ---- for handlers and callers ----
    def retry(self, fn: Callable[[], T]) -> T:
        return retry_durable(fn, stop=self.stop, log=self.log)

    def status(self) -> dict[str, Any]:
        return {"name": self.name, "group": self.group_id, "running": self.running, **self.stats.as_dict()}

    # ---- the loop ----
    def run(self, *, until_idle_s: float | None = None, max_seconds: float | None = None) -> LoopStats:
        """Consume until stopped, or until no record came for ``until_idle_s`` seconds while partitions were
        assigned, or after ``max_seconds``. Errors propagate (after the consumer left the group)."""
        from confluent_kafka import Consumer, KafkaError

        self.running = True
        opened = False
        try:
            self.handler.open(self)
            opened = True
            conf = consumer_config(
                self.kafka,
                group_id=self.group_id,
                client_id=self.client_id,
                session_timeout_ms=self.session_timeout_ms,
            )
            if self.policy.dlq_topic:
                self._dlq = DeadLetterProducer(
                    self.kafka,
                    self.policy.dlq_topic,
                    f"{self.client_id}-dlq",
                    log=self.log,
                    stop=self.stop,
                    on_skip=lambda: self.metrics.error("dlq_skipped"),
                )
            c = self._consumer = Consumer(conf)
            c.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke)
            self.log.info("consumer started", extra={"dlq": self.policy.dlq_topic, "batch_size": self.batch_size})
            t0 = idle_since = time.monotonic()
            while not self.stop.is_set():
                t_c = time.perf_counter()
                msgs = c.consume(num_messages=1, timeout=self.batch_timeout_s)
                if msgs and self.batch_size > 1:
                    msgs += c.consume(num_messages=self.batch_size - 1, timeout=0)
                t_p = time.perf_counter()
                self.timing["consume"] += t_p - t_c
                got = 0
                for m in msgs:
                    e = m.error()
                    if e is not None:
                        if e.code() != KafkaError._PARTITION_EOF:
                            self.metrics.error("kafka")
                            self.log.warning("kafka error", extra={"error": str(e)})
                        continue
                    got += 1
                    self._accept(ConsumedMessage(m))
                if got:
                    self.stats.records += got
                    self.metrics.consumed(got)
                    if self.stats.first_record_at is None:
                        self.stats.first_record_at = time.monotonic()
                t_f = time.perf_counter()
                self.timing["process"] += t_f - t_p
                self._checkpoint(self.handler.write(final=False), t_p)
                self.timing["flush"] += time.perf_counter() - t_f
                self.handler.tick()
                now = time.monotonic()
                if got or not self._assigned:  # idle time counts only while partitions are assigned
                    idle_since = now
                if until_idle_s is not None and now - idle_since >= until_idle_s:
                    self.stats.reason = "idle"
                    break
                if max_seconds is not None and now - t0 >= max_seconds:
                    self.stats.reason = "max_seconds"
                    break
            else:
                self.stats.reason = "stop requested"
            self._checkpoint(self.handler.write(final=True), time.perf_counter())
        finally:
            self.running = False
            self._shutdown(opened)
        return self.stats

    def _shutdown(self, opened: bool) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close()  # leaves the group: partitions move at once
            except Exception:  # noqa: BLE001 - closing a broken consumer; the loop's own error is what counts
                pass
            self._consumer = None
        if self._dlq is not None:
            self._dlq.close(10)
            self._dlq = None
        if opened:
            self.handler.close()
        self.log.info(
            "consumer stopped",
            extra={
                "reason": self.stats.reason or "error",
                "records": self.stats.records,
                "poison": self.stats.poison,
                "batches": self.stats.batches,
            },
        )

    def _accept(self, msg: Any) -> None:
        tp = (msg.topic(), msg.partition())
        self.stats.partitions_seen.add(tp)
        try:
            failure = self.handler.accept(msg)
        except TaskFailed as e:  # the handler's own "stop the task" (e.g. behavior.on.null.values=fail)
            self._stop_task([(msg, Failure(self.handler.accept_stage, _qualname(self.handler), e))])
        except Exception as e:  # noqa: BLE001 - any exception for one record is that record's failure
            failure = Failure(self.handler.accept_stage, _qualname(self.handler), e)
        if failure is not None:
            if not self._tolerated(at_write=False):
                self._stop_task([(msg, failure)])
            self.handler.discard(msg)
            self._failed(msg, failure)
        self._pending[tp] = max(self._pending.get(tp, 0), msg.offset() + 1)

    def _tolerated(self, *, at_write: bool) -> bool:
        return self.policy.tolerate and (self.policy.tolerate_writes or not at_write)

    def _stop_task(self, fatal: list[tuple[Any, Failure]], res: WriteResult | None = None) -> NoReturn:
        """A failure ``errors.tolerance=none`` does not tolerate: write and commit what came before it (``res``:
        the write that found it; else what accept took so far), then raise :class:`TaskFailed`."""
        msg, f = fatal[0]
        reason = safe_text(f.exc, 500)
        self.log.error(
            "record failed and errors.tolerance=none: the task stops at this record",
            extra={"source": coordinates(msg), "stage": f.stage, "class": f.class_name, "error": reason},
        )
        if res is None:
            res = self.handler.write(final=True)
        first: dict[TP, int] = {}
        for m, _ in fatal:
            tp = (m.topic(), m.partition())
            first[tp] = min(first.get(tp, m.offset()), m.offset())
        offsets = dict(res.checkpoint if res.checkpoint is not None else self._pending)
        for tp, o in first.items():  # never past a failed record: a restart stops at it again
            if tp in offsets:
                offsets[tp] = min(offsets[tp], o)
        self._pending = {}
        self._checkpoint(WriteResult(written=res.written, failed=[], checkpoint=offsets), time.perf_counter())
        raise TaskFailed(
            f"{self.name}: record {coordinates(msg)} failed in stage {f.stage} ({f.class_name}: {reason}) and "
            "errors.tolerance=none; the records before it were written and committed. The task stops here, and "
            "stops at this record again after a restart, until its offset is moved past it or errors are tolerated"
        ) from f.exc

    def _failed(self, msg: Any, f: Failure) -> None:
        """The one place that handles a record that failed (in accept or in the sink's write) and is tolerated."""
        self.stats.poison += 1
        self.metrics.dead_lettered(f.stage)
        if self.policy.log_errors:
            extra: dict[str, Any] = {
                "topic": msg.topic(),
                "partition": msg.partition(),
                "offset": msg.offset(),
                "stage": f.stage,
                "error": safe_text(f.exc, 500),
            }
            field = getattr(f.exc, "field", None)
            if isinstance(field, str) and field:
                extra["field"] = clip(field, 100)
            if self.policy.log_messages:
                extra["key"] = (msg.key() or b"")[:200].decode(errors="replace")
            self.log.warning("record failed; dead-lettered" if self._dlq else "record failed; skipped", extra=extra)
        if self._dlq is None:
            return
        self._dlq.send(self._letter(msg, f))

    def _letter(self, msg: Any, f: Failure) -> Letter:
        context: list[tuple[str, bytes]] = []
        if self.policy.context_headers:
            try:
                context = self._context(msg, f, f.exc)
            except Exception as e:  # noqa: BLE001 - an exception that cannot be described (hostile __str__)
                context = self._context(msg, f, RuntimeError(safe_text(f.exc, 500) + f" ({safe_text(e, 100)})"))
        letter = build_letter(msg, context, max_value_bytes=self.policy.dlq_max_value_bytes)
        if letter.notes:
            self.log.warning("dead letter bounded", extra={"source": letter.source, "notes": clip(letter.notes, 500)})
        return letter

    def _context(self, msg: Any, f: Failure, exc: BaseException) -> list[tuple[str, bytes]]:
        return deadletter.context_headers(
            topic=msg.topic() or "",
            partition=msg.partition(),
            offset=msg.offset(),
            connector=self.name,
            task_id=self.policy.task_id,
            stage=f.stage,
            class_name=f.class_name,
            exc=exc,
        )

    def _checkpoint(self, res: WriteResult, t0: float) -> None:
        """Dead-letter what the sink refused, flush the dead letters, then commit."""
        if res.failed and not self._tolerated(at_write=True):
            self._stop_task(res.failed, res)
        for msg, f in res.failed:
            self._failed(msg, f)
        offsets = res.checkpoint if res.checkpoint is not None else self._pending
        self._pending = {}
        if not (res or offsets):
            return
        try:
            if self._dlq is not None:
                self._dlq.flush()
        except DeadLetterError:
            self.metrics.error("dlq")
            raise
        self._commit(offsets)
        self.stats.good += res.written
        self.stats.batches += 1
        self.metrics.written(res.written)
        self.metrics.batch(time.perf_counter() - t0)

    def _commit(self, offsets: Mapping[TP, int]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        mine = {tp: o for tp, o in offsets.items() if tp in self._assigned}
        if not mine or self._consumer is None:
            return
        t0 = time.perf_counter()
        try:
            self._consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in mine.items()], asynchronous=False)
        except KafkaException as e:
            # e.g. a rebalance took the partitions: the new owner re-reads them; the effect is idempotent.
            self.metrics.error("commit")
            self.log.warning("offset commit failed; records will be redelivered", extra={"error": str(e)})
            return
        self.timing["commit"] += time.perf_counter() - t0
        self.stats.commits += 1
        self.stats.last_commit_at = time.monotonic()
        self.metrics.committed(mine)

    # ---- rebalance callbacks (run inside consume(): no batch is being handled then) ----
    def _on_assign(self, _consumer: Any, parts: list[Any]) -> None:
        self._assigned = {(p.topic, p.partition) for p in parts}
        self.stats.assigned = sorted(self._assigned)
        self.metrics.assigned(len(self._assigned))
        self.log.info("partitions assigned", extra=_describe(self._assigned))
        self.handler.assign(set(self._assigned))

    def _on_revoke(self, _consumer: Any, parts: list[Any]) -> None:
        gone = {(p.topic, p.partition) for p in parts}
        res = self.handler.revoke(gone)
        if res is not None:
            self._checkpoint(res, time.perf_counter())  # committed while the partitions are still ours
        self._assigned -= gone
        self._pending = {tp: o for tp, o in self._pending.items() if tp not in gone}
        self.stats.assigned = sorted(self._assigned)
        self.metrics.assigned(len(self._assigned))
        self.log.info("partitions revoked", extra=_describe(gone))


def _qualname(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _describe(tps: set[TP]) -> dict[str, Any]:
    return {"partitions": sorted(p for _, p in tps), "topic_partitions": sorted(f"{t}[{p}]" for t, p in tps)}
