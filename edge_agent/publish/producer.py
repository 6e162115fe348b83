"""The edge agent's Kafka publisher: journal first, then an idempotent producer.

::

    pub = EdgePublisher(config.publish, agent_id="gate-7").start()
    pub.publish_event(event)                      # DetectionEvent, key = camera_id
    pub.publish_keyframe(meta, jpeg)              # key = object_key, headers = metadata
    pub.publish_status(agent_status)              # key = agent_id (spool figures filled in)
    ...
    pub.close()

Every ``publish_*`` call returns once the record is journaled in the on-disk
spool (:mod:`edge_agent.publish.spool`: survives SIGKILL of the agent from that
moment); if nothing older is waiting it is also handed to librdkafka at once,
otherwise it waits in the spool behind the older records. It never blocks on
the broker. A record leaves the spool only when the broker acknowledged it.

Ordering: records are handed to librdkafka in exactly the order they were
accepted (one global FIFO: the spool's read cursor), librdkafka keeps the
order per partition (idempotent producer, max 5 requests in flight), and
records of one camera share a key and therefore a partition. So a camera's
records never overtake each other — not across an outage (new records queue
behind the spooled ones) and not across an agent restart (the journal is
replayed before anything new is handed over). The price is that after a long
outage new records wait for the backlog; the backlog drains at the broker's
full batch rate.

Delivery: ``message.timeout.ms = 0`` (never give up): while the broker is
down librdkafka keeps retrying the bounded window of records it holds
(``max_inflight_records`` / ``max_inflight_bytes``); everything else stays on
disk. A record that can never be delivered (larger than the broker accepts, an
invalid record) is counted as failed, logged and released, so that it cannot
wedge the stream. Every other delivery error puts the record back in the
spool: retriable ones are re-sent by the same producer; producer-state errors
(fatal idempotence errors, PRODUCER_FENCED, OUT_OF_ORDER_SEQUENCE_NUMBER, an
unknown broker error...) recreate the producer (new producer id, back-off
0.5 s doubling to 30 s) and re-send everything not yet acknowledged, in order
(duplicates carry identical bytes and ids). Nothing is released on an error
that a broker or ACL fix could cure.

Broker sanity check: offsets of acknowledged records must increase per
partition. An ack without an offset, or at/below an offset already acked, means
the broker lost state; the record is re-sent (same bytes, same id), counted in
``publish_broker_suspicious_acks_total`` and logged. Tansu 0.6.0 does this when
SIGKILLed mid-produce (it reuses offsets after the restart and the records acked
at them are never readable); Apache Kafka with acks=all does not. A re-sent
record arrives after newer ones of its camera: at-least-once wins over order.

Partitioner: ``murmur2_random``, the Java client's, so keyed records land in
the same partition as Kafka Streams / Java producers would put them.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from edge_agent.priority import lower_this_thread
from edgesight import metrics
from edgesight.kafka import TopicSpec
from edgesight.kafka.errors import needs_new_producer
from edgesight.log import get_logger
from edgesight.nativelog import RateLimitedLog, RepeatLimiter
from edgesight.wire import (
    AgentStatus,
    DetectionEvent,
    KeyframeMeta,
    SpoolStatus,
    Topics,
    encode_event,
    encode_keyframe,
    event_key,
)
from edgesight.wire.codec import dumps

from .settings import PublishConfig
from .spool import KIND_EVENT, KIND_KEYFRAME, KIND_NAMES, KIND_STATUS, Spool, SpoolRecord

log = get_logger("publish")

_LAB = ("agent", "topic")
M_ACCEPTED = metrics.counter("publish_records_accepted_total", "records accepted by the publisher (journaled)", _LAB)
M_SENT = metrics.counter("publish_records_sent_total", "records handed to the Kafka producer (incl. re-sends)", _LAB)
M_ACKED = metrics.counter("publish_records_acked_total", "records acknowledged by the broker (acks=all)", _LAB)
M_FAILED = metrics.counter(
    "publish_records_failed_total", "records that failed delivery for good (not retriable)", _LAB
)
M_RETRIED = metrics.counter(
    "publish_records_requeued_total", "records handed out again after a retriable failure", _LAB
)
M_DROPPED = metrics.counter(
    "publish_spool_dropped_total", "records dropped because the spool was full (oldest first)", _LAB
)
M_REPLAYED = metrics.counter(
    "publish_spool_replayed_total", "records sent from the spool (not straight through)", ("agent",)
)
M_LATENCY = metrics.histogram(
    "publish_delivery_latency_seconds",
    "accept -> broker ack",
    _LAB,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0),
)
M_SPOOL_BYTES = metrics.gauge(
    "publish_spool_bytes", "unacknowledged bytes in the spool (pending + in flight)", ("agent",)
)
M_SPOOL_RECORDS = metrics.gauge("publish_spool_records", "unacknowledged records in the spool", ("agent",))
M_SPOOL_PENDING = metrics.gauge(
    "publish_spool_pending_records", "records waiting on disk (not handed to the producer)", ("agent",)
)
M_CONNECTED = metrics.gauge("publish_broker_connected", "1 when the last broker contact succeeded", ("agent",))
M_SUSPICIOUS = metrics.counter(
    "publish_broker_suspicious_acks_total",
    "acks without a new offset (broker lost state): the record was re-sent",
    ("agent",),
)
M_TORN = metrics.counter("publish_spool_torn_tail_total", "torn writes truncated at the spool tail on open", ("agent",))

# Errors after which a record can never be delivered (it is released, counted as failed, logged).
_POISON = {
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.TOPIC_EXCEPTION,
    KafkaError.INVALID_MSG,
    KafkaError.INVALID_MSG_SIZE,
    KafkaError._BAD_MSG,
    KafkaError._INVALID_ARG,
}


def producer_config(cfg: PublishConfig) -> dict[str, Any]:
    """librdkafka settings of the edge producer (TLS/SASL from ``cfg.kafka``)."""
    conf: dict[str, Any] = dict(cfg.kafka.client_config())
    conf.update(
        {
            "enable.idempotence": True,  # no duplicates/reordering from librdkafka's own retries
            "acks": "all",
            "max.in.flight.requests.per.connection": 5,  # <= 5 keeps order with idempotence
            "message.timeout.ms": 0,  # never expire: the window is bounded by us, the rest is on disk
            "retry.backoff.ms": 100,
            "retry.backoff.max.ms": 2000,
            "reconnect.backoff.ms": 100,
            "reconnect.backoff.max.ms": 5000,
            "compression.type": cfg.compression,
            "linger.ms": cfg.linger_ms,
            "batch.size": cfg.batch_bytes,
            "message.max.bytes": cfg.message_max_bytes + 64 * 1024,
            "queue.buffering.max.messages": max(cfg.max_inflight_records * 2, 1000),
            "queue.buffering.max.kbytes": max(cfg.max_inflight_bytes * 2 // 1024, 1024),
            "partitioner": "murmur2_random",
            "socket.keepalive.enable": True,
            "statistics.interval.ms": 0,
        }
    )
    conf.update(cfg.extra_producer_config)
    return conf


def edge_topic_specs(cfg: PublishConfig, *, partitions: int = 6, replication_factor: int = -1) -> list[TopicSpec]:
    """The topics the edge writes (detections, keyframes, status), for :func:`edgesight.kafka.ensure_topics`
    (ops normally creates them from ``connectors/topics.yaml``)."""
    t = cfg.topics
    return [TopicSpec(name, partitions, replication_factor) for name in (t.detections, t.keyframes, t.status)]


class EdgePublisher:
    """Publishes detection events, keyframes and heartbeats; store-and-forward through the spool.

    Thread-safe: ``publish_*`` may be called from several threads. One background
    thread serves delivery reports, feeds spooled records to the producer,
    fsyncs and checkpoints the spool.
    """

    def __init__(self, config: PublishConfig, agent_id: str, *, poll_interval_s: float = 0.05):
        self.config = config
        self.agent_id = agent_id
        self.topics: Topics = config.topics
        self._topic = {
            KIND_EVENT: self.topics.detections,
            KIND_KEYFRAME: self.topics.keyframes,
            KIND_STATUS: self.topics.status,
        }
        self._poll_interval = poll_interval_s
        self._log = log.bind(agent=agent_id)
        self.spool = Spool(config.spool, on_drop=self._on_drop, name=agent_id)
        self._feed_lock = threading.Lock()  # hand-out order == produce() order
        self._cnt_lock = threading.Lock()  # window and counters (callers + delivery reports)
        self._producer: Producer | None = None
        self._gen = 0
        self._rd_records = 0  # records inside librdkafka (this generation)
        self._rd_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fatal = threading.Event()
        self._connected = False
        self._last_error: str | None = None  # cleared once the broker acknowledges again
        self._last_error_at: float | None = None  # epoch s of the last error (kept after recovery)
        self._recovered_at: float | None = None  # epoch s of the first ack after that error
        self._error_limiter = RepeatLimiter()  # error_cb repeats during an outage: once per window
        self._rdkafka_log = RateLimitedLog(get_logger("publish.librdkafka", agent=agent_id))
        self._last_offset: dict[tuple[str, int], int] = {}  # highest acked offset per partition
        self._recreations = 0
        self._recreate_backoff = 0.25
        self._recreate_after = 0.0
        self._suspicious = 0
        self._counts = {
            k: {"accepted": 0, "sent": 0, "acked": 0, "failed": 0, "requeued": 0, "dropped": 0}
            for k in KIND_NAMES.values()
        }
        self._pushed = {k: dict(v) for k, v in self._counts.items()}
        self._push_lock = threading.Lock()
        self._lat: list[float] = []  # recent ack latencies (s), bounded, for stats()
        self._m = {
            k: {
                m: metric.labels(agent_id, name)
                for m, metric in (
                    ("accepted", M_ACCEPTED),
                    ("sent", M_SENT),
                    ("acked", M_ACKED),
                    ("failed", M_FAILED),
                    ("requeued", M_RETRIED),
                    ("dropped", M_DROPPED),
                )
            }
            for k, name in KIND_NAMES.items()
        }
        self._m_latency = {k: M_LATENCY.labels(agent_id, name) for k, name in KIND_NAMES.items()}
        self._started = time.monotonic()

    # ---- life cycle -------------------------------------------------------------------
    def start(self) -> EdgePublisher:
        self.spool.open()
        st = self.spool.stats()
        if st.torn_tail_truncations:
            M_TORN.labels(self.agent_id).inc(st.torn_tail_truncations)
        self._producer = self._make_producer()
        self._thread = threading.Thread(target=self._run, name=f"publish-{self.agent_id}", daemon=True)
        self._thread.start()
        if st.pending_records:
            self._log.info(
                "replaying spooled records", extra={"records": st.pending_records, "bytes": st.pending_bytes}
            )
        return self

    def _make_producer(self) -> Producer:
        self._gen += 1
        self._rd_records = self._rd_bytes = 0
        conf = producer_config(self.config)
        conf["error_cb"] = self._on_error
        conf["logger"] = self._rdkafka_log  # librdkafka's own lines: JSON, repeats rate-limited
        return Producer(conf)

    def close(self, timeout: float = 10.0) -> bool:
        """Try to deliver what is outstanding for up to ``timeout`` s, then stop. Whatever is
        still unacknowledged stays in the spool and is sent on the next start. True = all delivered."""
        done = self.flush(timeout) if self._thread else False
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=max(5.0, self._poll_interval * 4))
            self._thread = None
        p, self._producer = self._producer, None
        if p is not None:
            self._gen += 1  # late delivery reports are ignored
            try:
                p.purge(in_queue=True, in_flight=True, blocking=False)
                p.poll(0)
            except Exception:  # noqa: BLE001 - shutting down anyway
                pass
        self.spool.close()
        self._log.info("publisher closed", extra={"all_delivered": done})
        return done

    def __enter__(self) -> EdgePublisher:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- publishing -------------------------------------------------------------------
    def publish_event(self, event: DetectionEvent) -> int:
        """Journal + send one detection event (key = agent_id/camera_id). Returns the spool sequence number."""
        return self._accept(KIND_EVENT, event_key(event), encode_event(event), None)

    def publish_keyframe(self, meta: KeyframeMeta, jpeg: bytes) -> int:
        """Journal + send one keyframe (key = object_key, value = JPEG, headers = metadata)."""
        key, value, headers = encode_keyframe(meta, jpeg)
        return self._accept(KIND_KEYFRAME, key, value, headers)

    def publish_status(self, status: AgentStatus) -> int:
        """Journal + send a heartbeat (key = agent_id); ``spool`` is filled in when absent."""
        if status.spool is None:
            status = status.model_copy(update={"spool": self.spool_status()})
        return self._accept(KIND_STATUS, status.agent_id.encode(), dumps(status), None)

    def _accept(self, kind: int, key: bytes, value: bytes, headers) -> int:
        rec = self.spool.append(kind, key, value, headers)
        self._count(kind, "accepted")
        if self._producer is not None and not self._fatal.is_set() and not self._window_full():
            with self._feed_lock:
                if self.spool.take_if_next(rec) is not None:
                    self._produce(rec)
        return rec.seq

    # ---- the producer side ------------------------------------------------------------
    def _window_full(self) -> bool:
        return self._rd_records >= self.config.max_inflight_records or self._rd_bytes >= self.config.max_inflight_bytes

    def _produce(self, rec: SpoolRecord) -> bool:
        """Hand one record to librdkafka (caller holds the feed lock and took it from the spool).
        False: not handed over (it waits in the spool again); stop feeding for now."""
        p = self._producer
        if p is None:  # closing: stays in the spool for the next start
            self.spool.requeue([rec.seq])
            return False
        cb = functools.partial(self._on_delivery, self._gen, rec.seq, rec.kind, rec.size, rec.accept_ms)
        headers: list[tuple[str, str | bytes | None]] | None = list(rec.headers) or None
        try:
            p.produce(self._topic[rec.kind], value=rec.value, key=rec.key, headers=headers, on_delivery=cb)
        except BufferError:
            self.spool.requeue([rec.seq])
            return False
        except KafkaException as e:
            err = e.args[0]
            if err.code() in _POISON:
                self._fail(rec.seq, rec.kind, err)
                return True
            self.spool.requeue([rec.seq])
            if err.fatal():
                self._fatal.set()
            return False
        with self._cnt_lock:
            self._rd_records += 1
            self._rd_bytes += rec.size
        self._count(rec.kind, "sent")
        return True

    def _feed(self) -> int:
        n = 0
        with self._feed_lock:
            while not self._window_full() and not self._fatal.is_set():
                rec = self.spool.next_pending()
                if rec is None:
                    break
                M_REPLAYED.labels(self.agent_id).inc()
                if not self._produce(rec):
                    break
                n += 1
                if n % 1000 == 0 and self._producer is not None:
                    self._producer.poll(0)
        return n

    def _on_delivery(self, gen: int, seq: int, kind: int, size: int, accept_ms: int, err, msg) -> None:
        if gen != self._gen:
            return
        with self._cnt_lock:
            self._rd_records -= 1
            self._rd_bytes -= size
        if err is None:
            part, off = msg.partition(), msg.offset()
            k = (msg.topic(), part)
            last = self._last_offset.get(k, -1)
            if off is None or off < 0 or off <= last:
                # Kafka hands out increasing offsets per partition. An ack without an offset (the broker
                # answered DUPLICATE_SEQUENCE_NUMBER to a retry) or with an offset at or below one already
                # acknowledged means the broker lost state (seen with Tansu 0.6.0 after a SIGKILL: it
                # reuses offsets and the record is never readable). Send it again: at-least-once, same id.
                self._suspicious += 1
                M_SUSPICIOUS.labels(self.agent_id).inc()
                self._log.error(
                    "broker acknowledged without a new offset; record re-sent",
                    extra={
                        "topic": KIND_NAMES[kind],
                        "partition": part,
                        "offset": off,
                        "last_acked_offset": last,
                        "seq": seq,
                    },
                )
                self.spool.requeue([seq])
                self._count(kind, "requeued")
                return
            self._last_offset[k] = off
            self._recreate_backoff = 0.25
            if self._last_error is not None:
                self._last_error, self._recovered_at = None, time.time()
            self.spool.resolve(seq)
            self._count(kind, "acked")
            lat = max(0.0, time.time() - accept_ms / 1000.0)
            self._m_latency[kind].observe(lat)
            self._lat.append(lat)
            if len(self._lat) > 20000:
                del self._lat[:10000]
            if not self._connected:
                self._connected = True
                st = self.spool.stats()
                self._log.info(
                    "broker acknowledges again; draining the spool in order",
                    extra={"pending_records": st.pending_records, "pending_bytes": st.pending_bytes},
                )
            return
        code = err.code()
        if code in _POISON:
            self._fail(seq, kind, err)  # this record can never be delivered: release it, counted
            return
        # Anything else: the record goes back (in order) and is sent again.
        self.spool.requeue([seq])
        self._count(kind, "requeued")
        if needs_new_producer(err):
            # Producer-state errors (fenced, out-of-order sequence, unknown producer id, an unknown broker
            # error...): a new producer (new producer id) re-sends everything unacknowledged, in order.
            if not self._fatal.is_set():
                self._log.error(
                    "delivery failed with a producer-state error; recreating the producer",
                    extra={"topic": KIND_NAMES[kind], "seq": seq, "error": err.str(), "code": err.name()},
                )
            self._set_error(err.str())
            self._fatal.set()

    def _set_error(self, text: str) -> None:
        self._last_error, self._last_error_at, self._recovered_at = text, time.time(), None

    def _fail(self, seq: int, kind: int, err: KafkaError) -> None:
        self.spool.resolve(seq)
        self._count(kind, "failed")
        self._set_error(str(err))
        self._log.error(
            "record failed permanently and was released",
            extra={"topic": KIND_NAMES[kind], "seq": seq, "error": err.str(), "code": err.name()},
        )

    def _on_error(self, err: KafkaError) -> None:
        self._set_error(err.str())
        if err.fatal():
            self._log.error("fatal producer error; the producer will be recreated", extra={"error": err.str()})
            self._fatal.set()
        elif err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            if self._connected:
                self._log.warning("broker unreachable: spooling", extra={"error": err.str()})
            self._connected = False
        elif (suppressed := self._error_limiter.check(err.str())) is not None:
            self._log.warning(
                "producer error", extra={"error": err.str(), "code": err.name(), "suppressed": suppressed}
            )

    def _recreate(self) -> None:
        now = time.monotonic()
        if now < self._recreate_after:
            return
        self._recreations += 1
        self._recreate_backoff = min(30.0, max(0.5, self._recreate_backoff * 2))
        self._recreate_after = now + self._recreate_backoff
        with self._feed_lock:
            old = self._producer
            self._producer = self._make_producer()  # bumps the generation first
            n = self.spool.requeue_all()
            self._fatal.clear()
        try:
            if old is not None:
                old.purge(in_queue=True, in_flight=True, blocking=False)
        except Exception:  # noqa: BLE001
            pass
        self._log.warning("producer recreated; unacknowledged records re-sent in order", extra={"records": n})

    def _run(self) -> None:
        lower_this_thread()
        last_gauges = 0.0
        while not self._stop.is_set():
            try:
                p = self._producer
                if p is None:  # closed under us
                    break
                p.poll(self._poll_interval)
                if self._fatal.is_set():
                    self._recreate()
                self._feed()
                now = time.monotonic()
                self.spool.maybe_sync(now)
                self.spool.maybe_checkpoint(now)
                if now - last_gauges > 0.25:
                    self._gauges()
                    last_gauges = now
            except Exception:  # noqa: BLE001 - keep the publisher alive
                self._log.exception("publisher loop error")
                time.sleep(0.2)
        self._gauges()

    def _gauges(self) -> None:
        self._sync_metrics()
        s = self.spool.stats()
        M_SPOOL_BYTES.labels(self.agent_id).set(s.bytes)
        M_SPOOL_RECORDS.labels(self.agent_id).set(s.records)
        M_SPOOL_PENDING.labels(self.agent_id).set(s.pending_records)
        M_CONNECTED.labels(self.agent_id).set(1 if self._connected else 0)

    def _on_drop(self, kind: int, count: int) -> None:
        self._count(kind, "dropped", count)

    def _count(self, kind: int, what: str, n: int = 1) -> None:
        # Prometheus counters are brought up to date by the background thread (_sync_metrics):
        # a per-record inc() costs more than the rest of the hot path.
        with self._cnt_lock:
            self._counts[KIND_NAMES[kind]][what] += n

    def _sync_metrics(self) -> None:
        with self._push_lock:
            with self._cnt_lock:
                snap = {k: dict(v) for k, v in self._counts.items()}
            for kind, name in KIND_NAMES.items():
                for what, val in snap[name].items():
                    d = val - self._pushed[name][what]
                    if d:
                        self._m[kind][what].inc(d)
                        self._pushed[name][what] = val

    # ---- status -----------------------------------------------------------------------
    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every accepted record is acknowledged (or dropped/failed). True when that happened."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.spool.stats().records == 0:
                return True
            if self._thread is None:
                return False
            time.sleep(0.02)
        return self.spool.stats().records == 0

    def spool_status(self) -> SpoolStatus:
        s = self.spool.stats()
        return SpoolStatus(
            records=s.records, bytes=s.bytes, limit_bytes=self.config.spool.max_bytes, dropped=s.dropped_total
        )

    @property
    def connected(self) -> bool:
        return self._connected

    def stats(self) -> dict[str, Any]:
        self._sync_metrics()
        s = self.spool.stats()
        lat = sorted(self._lat[-5000:])

        def q(p: float) -> float | None:
            return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else None

        return {
            "agent_id": self.agent_id,
            "connected": self._connected,
            "last_error": self._last_error,
            "last_error_at": self._last_error_at,
            "recovered_at": self._recovered_at,
            "log_repeats_suppressed": self._rdkafka_log.limiter.suppressed_total + self._error_limiter.suppressed_total,
            "suspicious_acks": self._suspicious,
            "producer_recreations": self._recreations,
            "by_topic": {k: dict(v) for k, v in self._counts.items()},
            "in_producer": {"records": self._rd_records, "bytes": self._rd_bytes},
            "spool": {
                "records": s.records,
                "bytes": s.bytes,
                "pending_records": s.pending_records,
                "pending_bytes": s.pending_bytes,
                "inflight_records": s.inflight_records,
                "dropped": s.dropped_total,
                "dropped_by_topic": s.dropped_by_kind,
                "replayed": s.replayed_total,
                "torn_tail_truncations": s.torn_tail_truncations,
                "corrupt_records": s.corrupt_records,
                "segments": s.segments,
                "disk_bytes": s.disk_bytes,
                "limit_bytes": self.config.spool.max_bytes,
            },
            "latency_s": {"p50": q(0.50), "p95": q(0.95), "p99": q(0.99), "samples": len(lat)},
            "uptime_s": time.monotonic() - self._started,
        }
