"""The consumer loop shared by the engineering and fleet consumers (I/O only).

At-least-once delivery with an exactly-once *effect*:

1. ``consume`` up to ``batch_size`` records (auto-commit off);
2. the handler decodes them, writes the good ones to MongoDB and returns the
   poison ones; it returns only after the bulk writes were acknowledged with
   the configured write concern (``majority`` where the server supports it);
3. poison records are produced to the dead-letter topic (idempotent producer,
   ``acks=all``) and flushed; a delivery failure stops the process;
4. only then are the batch's offsets committed, synchronously.

A crash anywhere before 4 redelivers the batch: the handler's writes are
idempotent (see :mod:`cloud.engineering.store`). ``SIGTERM``/``SIGINT`` finish
the current batch (write, DLQ, commit), leave the group and return.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from edgesight import metrics
from edgesight.log import get_logger
from edgesight.wire import WireError, deadletter

RECORDS = metrics.counter(
    "consumer_records_total", "Records handled by a cloud consumer, by result", ["consumer", "result"]
)
BATCHES = metrics.counter("consumer_batches_total", "Batches written and committed", ["consumer"])
BATCH_SECONDS = metrics.histogram("consumer_batch_seconds", "Time to handle, write and commit one batch", ["consumer"])
COMMITTED = metrics.gauge("consumer_committed_offset", "Last committed offset", ["consumer", "topic", "partition"])
ASSIGNED = metrics.gauge("consumer_assigned_partitions", "Partitions currently assigned", ["consumer"])
ERRORS = metrics.counter("consumer_errors_total", "Errors by kind", ["consumer", "kind"])


@dataclass
class Poison:
    msg: object  # confluent_kafka.Message
    error: WireError


@dataclass
class RunStats:
    records: int = 0
    good: int = 0
    poison: int = 0
    batches: int = 0
    commits: int = 0
    assigned: list[tuple[str, int]] = field(default_factory=list)
    partitions_seen: set[tuple[str, int]] = field(default_factory=set)
    reason: str = ""


class Handler(Protocol):
    name: str

    def handle(self, msgs: Sequence) -> list[Poison]:
        """Write the effect of ``msgs`` durably; return the records that must go to the DLQ."""

    def on_rebalance(self) -> None:
        """Partitions moved: drop caches that assume ownership."""

    def tick(self) -> None:
        """Called between batches (periodic work)."""


def ensure_topics(kafka_conf: dict, topics: dict[str, int], timeout: float = 15.0) -> None:
    """Create missing topics (name -> partitions); existing ones are left as they are."""
    admin = AdminClient(dict(kafka_conf))
    existing = admin.list_topics(timeout=timeout).topics
    missing = [NewTopic(t, num_partitions=p, replication_factor=-1) for t, p in topics.items() if t not in existing]
    if not missing:
        return
    for _t, fut in admin.create_topics(missing, operation_timeout=timeout).items():
        try:
            fut.result(timeout)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def dlq_headers(p: Poison, consumer: str) -> list[tuple[str, bytes]]:
    """The dead-letter context (Kafka Connect's headers, as the sink connectors write them)."""
    m = p.msg
    return list(m.headers() or []) + deadletter.context_headers(
        topic=m.topic() or "",
        partition=m.partition(),
        offset=m.offset(),
        connector=consumer,
        task_id=0,
        stage="VALUE_CONVERTER",
        class_name="edgesight.wire.codec",
        exc=p.error,
    )


class BatchConsumer:
    def __init__(
        self,
        kafka_conf: dict,
        topic: str,
        group_id: str,
        handler: Handler,
        *,
        dlq_topic: str,
        batch_size: int = 1000,
        batch_timeout_s: float = 0.5,
        session_timeout_ms: int = 10000,
        extra_conf: dict | None = None,
    ):
        self.topic, self.group_id, self.handler, self.dlq_topic = topic, group_id, handler, dlq_topic
        self.batch_size, self.batch_timeout_s = batch_size, batch_timeout_s
        self.name = handler.name
        self.log = get_logger(f"{self.name}.consumer", topic=topic, group=group_id)
        self.stop_event = threading.Event()
        self.stats = RunStats()
        self._assignment: set[tuple[str, int]] = set()
        conf = dict(kafka_conf)
        conf.update(
            {
                "group.id": group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": session_timeout_ms,
                "heartbeat.interval.ms": max(500, session_timeout_ms // 5),
                "client.id": f"{conf.get('client.id', 'edgesight')}-{self.name}-{socket.gethostname()}",
            }
        )
        conf.update(extra_conf or {})
        self._consumer_conf = conf
        self._producer = Producer(
            {
                **kafka_conf,
                "acks": "all",
                "enable.idempotence": True,
                "client.id": f"{conf['client.id']}-dlq",
                "linger.ms": 5,
            }
        )
        self._consumer: Consumer | None = None

    # -- rebalance callbacks (run inside consume(): no batch is in flight then) --
    def _on_assign(self, consumer, parts) -> None:
        self._assignment = {(p.topic, p.partition) for p in parts}
        self.stats.assigned = sorted(self._assignment)
        self.stats.partitions_seen |= self._assignment
        ASSIGNED.labels(self.name).set(len(parts))
        self.handler.on_rebalance()
        self.log.info("partitions assigned", extra={"partitions": sorted(p.partition for p in parts)})

    def _on_revoke(self, consumer, parts) -> None:
        self._assignment -= {(p.topic, p.partition) for p in parts}
        ASSIGNED.labels(self.name).set(len(self._assignment))
        self.handler.on_rebalance()
        self.log.info("partitions revoked", extra={"partitions": sorted(p.partition for p in parts)})

    def request_stop(self, *_a) -> None:
        self.stop_event.set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.request_stop)

    def run(self, *, until_idle_s: float | None = None, max_seconds: float | None = None) -> RunStats:
        """Consume until stopped (signal / :meth:`request_stop`), or until no record came for ``until_idle_s``
        seconds after partitions were assigned, or after ``max_seconds``."""
        c = self._consumer = Consumer(self._consumer_conf)
        c.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke)
        self.log.info("consumer started", extra={"dlq": self.dlq_topic, "batch_size": self.batch_size})
        t0 = last_rx = time.monotonic()
        try:
            while not self.stop_event.is_set():
                msgs = c.consume(num_messages=self.batch_size, timeout=self.batch_timeout_s)
                now = time.monotonic()
                batch = []
                for m in msgs:
                    e = m.error()
                    if e is None:
                        batch.append(m)
                    elif e.code() != KafkaError._PARTITION_EOF:
                        ERRORS.labels(self.name, "kafka").inc()
                        self.log.warning("kafka error", extra={"error": str(e)})
                if batch:
                    last_rx = now
                    self._process(c, batch)
                self.handler.tick()
                if until_idle_s is not None and self._assignment and now - last_rx >= until_idle_s:
                    self.stats.reason = "idle"
                    break
                if until_idle_s is not None and not self._assignment:
                    last_rx = now  # idle time counts only while partitions are assigned
                if max_seconds is not None and now - t0 >= max_seconds:
                    self.stats.reason = "max_seconds"
                    break
            else:
                self.stats.reason = "stop requested"
        finally:
            try:
                c.close()  # leaves the group: partitions move at once
            except Exception:  # pragma: no cover - closing a broken consumer  # noqa: BLE001 - any failure is reported, the loop goes on
                pass
            self._producer.flush(10)
            close = getattr(self._producer, "close", None)  # confluent-kafka >= 2.13
            if close is not None:
                close()
            self.log.info(
                "consumer stopped",
                extra={
                    "reason": self.stats.reason or "error",
                    "records": self.stats.records,
                    "poison": self.stats.poison,
                    "batches": self.stats.batches,
                },
            )
        return self.stats

    def _process(self, c: Consumer, batch: list) -> None:
        t0 = time.perf_counter()
        poison = self.handler.handle(batch)  # returns after the writes are durable (raises otherwise)
        if poison:
            self._dead_letter(poison)
        offsets: dict[tuple[str, int], int] = {}
        for m in batch:
            k = (m.topic(), m.partition())
            offsets[k] = max(offsets.get(k, -1), m.offset())
        tps = [TopicPartition(t, p, o + 1) for (t, p), o in offsets.items()]
        try:
            c.commit(offsets=tps, asynchronous=False)
            self.stats.commits += 1
            for tp in tps:
                COMMITTED.labels(self.name, tp.topic, str(tp.partition)).set(tp.offset)
        except KafkaException as e:
            # e.g. a rebalance took the partitions: the new owner re-reads them; the effect is idempotent.
            ERRORS.labels(self.name, "commit").inc()
            self.log.warning("offset commit failed; records will be redelivered", extra={"error": str(e)})
        n_bad = len(poison)
        self.stats.records += len(batch)
        self.stats.poison += n_bad
        self.stats.good += len(batch) - n_bad
        self.stats.batches += 1
        RECORDS.labels(self.name, "ok").inc(len(batch) - n_bad)
        RECORDS.labels(self.name, "dlq").inc(n_bad)
        BATCHES.labels(self.name).inc()
        dt = time.perf_counter() - t0
        BATCH_SECONDS.labels(self.name).observe(dt)
        self.log.debug(
            "batch committed",
            extra={
                "records": len(batch),
                "poison": n_bad,
                "seconds": round(dt, 4),
                "offsets": {f"{t}:{p}": o for (t, p), o in offsets.items()},
            },
        )

    def _dead_letter(self, poison: list[Poison]) -> None:
        failed: list[str] = []

        def on_delivery(err, _msg):
            if err is not None:
                failed.append(str(err))

        for p in poison:
            self.log.warning(
                "poison record to DLQ",
                extra={
                    "field": p.error.field,
                    "reason": p.error.message,
                    "partition": p.msg.partition(),
                    "offset": p.msg.offset(),
                },
            )
            self._producer.produce(
                self.dlq_topic,
                key=p.msg.key(),
                value=p.msg.value(),
                headers=dlq_headers(p, self.name),
                on_delivery=on_delivery,
            )
        left = self._producer.flush(30)
        if left or failed:
            ERRORS.labels(self.name, "dlq").inc()
            raise RuntimeError(
                f"dead-letter delivery failed ({left} undelivered, errors: {failed[:3]}); offsets not committed"
            )


def run_with_signals(bc: BatchConsumer, **kw) -> RunStats:
    if threading.current_thread() is threading.main_thread():
        bc.install_signal_handlers()
    return bc.run(**kw)
