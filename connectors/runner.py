"""``cloud-ops connectors run``: the connector files executed in Python on one machine.

Each connector becomes ``tasks.max`` tasks (threads), each a Kafka consumer in the group
``connect-<connector name>`` (Kafka Connect's own naming), so several runner processes
share the partitions. Per batch: convert -> validate with the wire contract -> transforms
-> sink write (MongoDB bulk upserts / S3 puts) -> dead-letter the failures -> wait for the
DLQ acks -> commit offsets (``enable.auto.commit=false``). A crash replays at most the
uncommitted batch; upserts by ``_id`` and deterministic S3 keys make that harmless.

See connectors/README.md for the implemented subset; anything else is refused at start.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from edgesight.log import get_logger
from edgesight.metrics import counter, gauge, histogram
from edgesight.wire import WireError, deadletter, decode_event, decode_keyframe

from .options import MONGO_SINK, S3_SINK, check_options, unsupported_by_runner
from .smt import TransformError, build_chain
from .spec import ConnectorSpec, TopicSpec, ensure_topics

RECORDS_IN = counter("connector_records_in_total", "Records consumed by the connector runner", ["connector"])
RECORDS_OUT = counter(
    "connector_records_out_total", "Records made durable (MongoDB/S3) by the connector runner", ["connector"]
)
DLQ_OUT = counter("connector_dlq_total", "Records sent to the dead-letter topic", ["connector", "stage"])
BATCH_SECONDS = histogram("connector_batch_seconds", "Time to make one batch durable and commit it", ["connector"])
COMMITS = counter("connector_commits_total", "Offset commits", ["connector"])
ASSIGNED = gauge("connector_assigned_partitions", "Partitions assigned to this runner", ["connector", "task"])

DLQ_MAX_VALUE = 16 * 1024 * 1024


class RunnerConfigError(ValueError):
    """The connector file asks for something the runner cannot do; the message names the option."""


class TaskFailed(RuntimeError):
    """errors.tolerance=none and a record failed, as a Connect task would."""


@dataclass
class RecordError:
    stage: str  # Connect stage: VALUE_CONVERTER, TRANSFORMATION, TASK_PUT, ...
    class_name: str  # the plugin class that failed
    exc: BaseException


def validate_for_runner(spec: ConnectorSpec) -> None:
    problems = check_options(spec.config)
    problems += unsupported_by_runner(spec.config)
    for k, v in spec.config.items():
        if "${" in v:
            problems.append(f"{k}: config-provider reference {v!r} cannot be resolved by the Python runner")
    if problems:
        raise RunnerConfigError(f"connector {spec.name!r} ({spec.source}):\n  - " + "\n  - ".join(problems))


def _b(v: Any) -> bytes:
    return v if isinstance(v, bytes) else str(v).encode()


class SinkTask:
    """One consumer + one sink; subclasses convert records and write them."""

    stage_put = "TASK_PUT"

    def __init__(
        self,
        spec: ConnectorSpec,
        cloud,
        task_id: int,
        stop: threading.Event,
        *,
        max_poll_records: int = 500,
        poll_timeout_s: float = 0.5,
        idle_exit_s: float | None = None,
        on_assign: Callable[[str, int, list], None] | None = None,
    ):
        self.spec, self.cloud, self.task_id, self.stop = spec, cloud, task_id, stop
        self.c = spec.config
        self.name = spec.name
        self.log = get_logger("connector-runner", connector=self.name, task=task_id)
        self.topics = [t.strip() for t in self.c["topics"].split(",") if t.strip()]
        self.tolerate = self.c.get("errors.tolerance", "none") == "all"
        self.log_errors = self.c.get("errors.log.enable", "false") == "true"
        self.log_messages = self.c.get("errors.log.include.messages", "false") == "true"
        self.dlq_topic = self.c.get("errors.deadletterqueue.topic.name", "")
        self.context_headers = self.c.get("errors.deadletterqueue.context.headers.enable", "false") == "true"
        self.max_poll_records = max_poll_records
        self.poll_timeout_s = poll_timeout_s
        self.idle_exit_s = idle_exit_s
        self.on_assign_cb = on_assign
        self.assigned: set[tuple[str, int]] = set()
        self.group_id = f"connect-{self.name}"  # Kafka Connect's consumer group for a sink connector
        self.stats: dict[str, Any] = {
            "records_in": 0,
            "records_out": 0,
            "dlq": 0,
            "commits": 0,
            "batches": 0,
            "first_record_at": None,
            "last_commit_at": None,
        }
        self.partitions_seen: set[tuple[str, int]] = set()
        self.timing = {"consume": 0.0, "process": 0.0, "flush": 0.0, "commit": 0.0}
        self.error: BaseException | None = None
        self.consumer = None
        self.producer = None

    # ---- Kafka plumbing ----
    def _kafka(self):
        from confluent_kafka import Consumer, Producer

        base = self.cloud.kafka.client_config()
        self.consumer = Consumer(
            {
                **base,
                "group.id": self.group_id,
                "client.id": f"{self.name}-{self.task_id}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": self.cloud.kafka.session_timeout_ms,
                "heartbeat.interval.ms": max(500, self.cloud.kafka.session_timeout_ms // 4),
                "max.poll.interval.ms": max(300000, self.cloud.kafka.session_timeout_ms),
            }
        )
        if self.dlq_topic:
            self.producer = Producer(
                {
                    **base,
                    "client.id": f"{self.name}-{self.task_id}-dlq",
                    "acks": "all",
                    "enable.idempotence": True,
                    "linger.ms": 5,
                    "message.max.bytes": DLQ_MAX_VALUE + 1024 * 1024,
                }
            )
        self.consumer.subscribe(self.topics, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked)

    def _assigned(self, consumer, parts) -> None:
        self.assigned = {(p.topic, p.partition) for p in parts}
        ASSIGNED.labels(self.name, str(self.task_id)).set(len(self.assigned))
        self.log.info("partitions assigned", extra={"partitions": sorted(f"{t}[{p}]" for t, p in self.assigned)})
        if self.on_assign_cb:
            self.on_assign_cb(self.name, self.task_id, sorted(self.assigned))

    def _revoked(self, consumer, parts) -> None:
        gone = {(p.topic, p.partition) for p in parts}
        self.on_revoke(gone)
        self.assigned -= gone
        ASSIGNED.labels(self.name, str(self.task_id)).set(len(self.assigned))
        self.log.info("partitions revoked", extra={"partitions": sorted(f"{t}[{p}]" for t, p in gone)})

    def on_revoke(self, gone: set[tuple[str, int]]) -> None:
        """Drop what is buffered for partitions that leave: their new owner re-reads from the committed offset."""

    # ---- dead letters ----
    def dead_letter(self, msg, err: RecordError) -> None:
        exc = err.exc
        if not self.tolerate:
            raise TaskFailed(
                f"{self.name}: record {msg.topic()}[{msg.partition()}]@{msg.offset()} failed in stage "
                f"{err.stage} ({type(exc).__name__}: {exc}) and errors.tolerance=none"
            ) from exc
        DLQ_OUT.labels(self.name, err.stage).inc()
        self.stats["dlq"] += 1
        if self.log_errors:
            extra = {
                "topic": msg.topic(),
                "partition": msg.partition(),
                "offset": msg.offset(),
                "stage": err.stage,
                "error": f"{type(exc).__name__}: {exc}",
            }
            if self.log_messages:
                extra["key"] = (msg.key() or b"")[:200].decode(errors="replace")
            self.log.warning(
                "record failed; dead-lettered" if self.dlq_topic else "record failed; skipped", extra=extra
            )
        if not self.dlq_topic:
            return
        headers = list(msg.headers() or [])
        value = msg.value()
        if self.context_headers:
            # Kafka Connect's context headers (errors.deadletterqueue.context.headers.enable=true)
            headers += deadletter.context_headers(
                topic=msg.topic(),
                partition=msg.partition(),
                offset=msg.offset(),
                connector=self.name,
                task_id=self.task_id,
                stage=err.stage,
                class_name=err.class_name,
                exc=exc,
            )
        if value is not None and len(value) > DLQ_MAX_VALUE:
            headers.append((deadletter.VALUE_DROPPED, _b(len(value))))
            value = b""
        self.producer.produce(self.dlq_topic, key=msg.key(), value=value, headers=headers)
        self.producer.poll(0)

    def _flush_dlq(self) -> None:
        if self.producer is None:
            return
        left = self.producer.flush(30)
        if left:
            raise RuntimeError(f"{left} dead-letter record(s) not acknowledged by the broker within 30 s")

    # ---- the loop ----
    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items() if (t, p) in self.assigned]
        if not tps:
            return
        t0 = time.perf_counter()
        try:
            self.consumer.commit(offsets=tps, asynchronous=False)
            self.timing["commit"] += time.perf_counter() - t0
            self.stats["commits"] += 1
            COMMITS.labels(self.name).inc()
        except KafkaException as e:
            # a rebalance took the partitions: the new owner replays from the last commit (idempotent writes)
            self.log.warning("offset commit failed; records will be replayed", extra={"error": str(e)})

    def run(self) -> None:
        try:
            self._kafka()
            self.prepare()
            idle_since = time.monotonic()
            while not self.stop.is_set():
                t_c = time.perf_counter()
                msgs = self.consumer.consume(num_messages=self.max_poll_records, timeout=self.poll_timeout_s)
                t_p = time.perf_counter()
                self.timing["consume"] += t_p - t_c
                got = 0
                for m in msgs:
                    if m.error():
                        self.log.warning("consumer error", extra={"error": str(m.error())})
                        continue
                    got += 1
                    self.stats["records_in"] += 1
                    RECORDS_IN.labels(self.name).inc()
                    self.partitions_seen.add((m.topic(), m.partition()))
                    self.process(m)
                t_f = time.perf_counter()
                self.timing["process"] += t_f - t_p
                if got and self.stats.get("first_record_at") is None:
                    self.stats["first_record_at"] = time.monotonic()
                if got or not self.assigned:  # idle time counts only while partitions are assigned
                    idle_since = time.monotonic()
                self.maybe_flush(force=False, had_records=bool(got))
                self.timing["flush"] += time.perf_counter() - t_f
                if self.idle_exit_s is not None and time.monotonic() - idle_since > self.idle_exit_s:
                    self.log.info("idle; exiting", extra={"idle_s": self.idle_exit_s})
                    break
            self.maybe_flush(force=True, had_records=True)
        except BaseException as e:  # noqa: BLE001 - reported by the runner
            self.error = e
            self.log.error("task failed", extra={"error": f"{type(e).__name__}: {e}"})
        finally:
            if self.consumer is not None:
                try:
                    self.consumer.close()
                except Exception:  # noqa: BLE001
                    pass
                self.consumer = None
            if self.producer is not None:
                self.producer.flush(5)
                self.producer = None
            if getattr(self, "_pool", None) is not None:
                self._pool.shutdown(wait=True)
            if getattr(self, "client", None) is not None:
                self.client.close()

    def flush_with_retry(self, fn: Callable[[], Any]) -> Any:
        """Run a durable write; on server errors back off and retry (nothing is committed meanwhile)."""
        delay = 0.5
        while True:
            try:
                return fn()
            except TaskFailed:
                raise
            except Exception as e:
                if self.stop.is_set() and delay > 4:
                    raise
                self.log.error(
                    "write failed; retrying", extra={"error": f"{type(e).__name__}: {e}", "retry_in_s": delay}
                )
                time.sleep(delay)
                delay = min(delay * 2, 15.0)

    # subclass hooks
    def prepare(self) -> None: ...
    def process(self, msg) -> None: ...
    def maybe_flush(self, force: bool, had_records: bool) -> None: ...


# ---- MongoDB sink -------------------------------------------------------------------------------


class MongoSinkTask(SinkTask):
    def prepare(self) -> None:
        from pymongo import MongoClient

        from cloud.sinks import MongoSink

        self.client = MongoClient(self.c["connection.uri"], tz_aware=True, serverSelectionTimeoutMS=10000)
        self.coll = self.client[self.c["database"]][self.c["collection"]]
        self.sink = MongoSink(
            self.coll,
            max_batch_size=int(self.c.get("max.batch.size", "0")),
            ordered=self.c.get("bulk.write.ordered", "true") == "true",
        )
        self.chain = build_chain(self.c)
        self.mongo_tolerate = self.c.get("mongo.errors.tolerance", self.c.get("errors.tolerance", "none")) == "all"
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-{self.task_id}-write")
        self._inflight = None

    def process(self, msg) -> None:
        from cloud.sinks import Item

        value = msg.value()
        if value is None:  # tombstone: delete.on.null.values is false -> ignored, as the connector does
            self.sink.mark(msg.topic(), msg.partition(), msg.offset())
            return
        try:
            obj = json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            self.dead_letter(
                msg,
                RecordError(
                    "VALUE_CONVERTER",
                    "org.apache.kafka.connect.json.JsonConverter",
                    ValueError(f"Converting byte[] to Kafka Connect data failed due to serialization error: {e}"),
                ),
            )
            self.sink.mark(msg.topic(), msg.partition(), msg.offset())
            return
        try:
            decode_event(obj)
        except WireError as e:
            self.dead_letter(msg, RecordError("TASK_PUT", "edgesight.wire.decode_event", e))
            self.sink.mark(msg.topic(), msg.partition(), msg.offset())
            return
        doc = obj
        for cls, fn in self.chain:
            try:
                doc = fn(doc)
            except TransformError as e:
                self.dead_letter(msg, RecordError("TRANSFORMATION", cls, e))
                self.sink.mark(msg.topic(), msg.partition(), msg.offset())
                return
        if not isinstance(doc, dict) or "_id" not in doc:
            self.dead_letter(
                msg,
                RecordError(
                    "TASK_PUT",
                    "com.mongodb.kafka.connect.sink.processor.id.strategy.ProvidedInValueStrategy",
                    ValueError("Provided _id field not found in the value document"),
                ),
            )
            self.sink.mark(msg.topic(), msg.partition(), msg.offset())
            return
        self.sink.add(Item(doc, msg.topic(), msg.partition(), msg.offset(), ctx=msg))

    def maybe_flush(self, force: bool, had_records: bool) -> None:
        """Pipelined: the bulk write of batch N runs on a worker thread while batch N+1 is consumed and
        validated; batch N's dead letters and offset commit happen here, on the consumer's thread,
        before batch N+1's write starts (so commits stay in order and after the data is durable)."""
        snapshot = self.sink.take() if (had_records or force) else ([], {})
        self._finish_inflight()
        if snapshot[0] or snapshot[1]:
            items = snapshot[0]
            fut = self._pool.submit(self.flush_with_retry, lambda: self.sink.write(items))
            self._inflight = (fut, snapshot, time.perf_counter())
        if force:
            self._finish_inflight()

    def _finish_inflight(self) -> None:
        if self._inflight is None:
            return
        fut, (items, checkpoint), t0 = self._inflight
        self._inflight = None
        res = fut.result()
        for item, exc in res.failed:
            if not self.mongo_tolerate:
                raise TaskFailed(
                    f"{self.name}: MongoDB write failed for {item.topic}[{item.partition}]@{item.offset}: {exc}"
                )
            self.dead_letter(item.ctx, RecordError("TASK_PUT", MONGO_SINK, exc))
        self._flush_dlq()
        self.commit(checkpoint)
        self.stats["last_commit_at"] = time.monotonic()
        self.stats["records_out"] += res.written
        self.stats["batches"] += 1
        RECORDS_OUT.labels(self.name).inc(res.written)
        BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - t0)

    def on_revoke(self, gone):
        # the in-flight batch is made durable and committed before the partitions go
        if getattr(self, "_inflight", None) is not None:
            self._finish_inflight()
        if hasattr(self, "sink"):
            self.sink.drop_partitions(gone)


# ---- S3 sink ------------------------------------------------------------------------------------

_JODA = [("YYYY", "%Y"), ("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S")]


def joda_format(pattern: str, dt: datetime) -> str:
    """Format ``dt`` with a Joda-Time pattern (subset: YYYY yyyy MM dd HH mm ss and 'quoted' literals)."""
    out, i = "", 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "'":
            j = pattern.index("'", i + 1)
            out += pattern[i + 1 : j] if j > i + 1 else "'"
            i = j + 1
            continue
        for tok, st in _JODA:
            if pattern.startswith(tok, i):
                out += dt.strftime(st)
                i += len(tok)
                break
        else:
            if ch.isalpha():
                raise RunnerConfigError(f"path.format: pattern letter {ch!r} is not implemented by the Python runner")
            out += ch
            i += 1
    return out


@dataclass
class _OpenFile:
    encoded: str
    start_offset: int
    records: list = field(default_factory=list)  # (msg, meta)
    opened: float = field(default_factory=time.monotonic)
    base_ts: int | None = None


class S3SinkTask(SinkTask):
    def __init__(self, *a, index_keyframes: bool = True, warehouse=None, index_only: bool = False, **kw):
        super().__init__(*a, **kw)
        self.index_keyframes = index_keyframes or index_only
        self.warehouse = warehouse  # (mongo client, database, collection) for the keyframe index
        # index_only: Kafka Connect writes the objects; this task only computes the same keys, waits
        # until each object exists (HEAD) and records the index docs, in its own consumer group.
        self.index_only = index_only
        if index_only:
            self.group_id = f"edgesight-keyframe-indexer-{self.name}"

    def prepare(self) -> None:
        from zoneinfo import ZoneInfo

        import boto3
        from botocore.config import Config

        from cloud.sinks import MongoSink, S3Sink

        c = self.c
        self.bucket = c["s3.bucket.name"]
        s3 = boto3.client(
            "s3",
            endpoint_url=c.get("store.url") or None,
            region_name=c.get("s3.region", "us-west-2"),
            aws_access_key_id=c.get("aws.access.key.id") or None,
            aws_secret_access_key=c.get("aws.secret.access.key") or None,
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"},
                s3={"addressing_style": "path" if c.get("s3.path.style.access.enabled", "true") == "true" else "auto"},
            ),
        )
        self.s3 = s3
        self.sink = S3Sink(s3, self.bucket)
        self.flush_size = int(c["flush.size"])
        self.rotate_ms = int(c.get("rotate.interval.ms", "-1"))
        self.rotate_schedule_ms = int(c.get("rotate.schedule.interval.ms", "-1"))
        self.topics_dir = c.get("topics.dir", "topics")
        self.ext = c.get("format.bytearray.extension", ".bin")
        self.sep = c.get("format.bytearray.separator", "\n").encode().decode("unicode_escape").encode()
        self.pad = int(c.get("filename.offset.zero.pad.width", "10"))
        self.partitioner = c.get("partitioner.class", "io.confluent.connect.storage.partitioner.DefaultPartitioner")
        self.time_based = self.partitioner.endswith("TimeBasedPartitioner")
        if self.time_based:
            for k in ("path.format", "partition.duration.ms", "locale", "timezone"):
                if not c.get(k):
                    raise RunnerConfigError(f"{k}: required by TimeBasedPartitioner")
            self.tz = ZoneInfo(c["timezone"])
            self.duration_ms = int(c["partition.duration.ms"])
            self.path_format = c["path.format"]
            joda_format(self.path_format, datetime.now(timezone.utc))  # fail early on unknown letters
        self.extractor = c.get("timestamp.extractor", "Wallclock")
        self.null_behavior = c.get("behavior.on.null.values", "fail")
        if self.index_keyframes and (self.flush_size != 1 or self.sep):
            raise RunnerConfigError(
                "flush.size / format.bytearray.separator: the keyframe index needs one JPEG per "
                "object (flush.size=1 and an empty separator); run with --no-keyframe-index otherwise"
            )
        self.index_sink = None
        if self.index_keyframes and self.warehouse is not None:
            client, db, coll = self.warehouse
            self.index_sink = MongoSink(client[db][coll], max_batch_size=500, ordered=False)
        self.files: dict[tuple[str, int], dict[str, _OpenFile]] = {}
        self.counts: dict[tuple[str, int], int] = {}
        self.next_commit: dict[tuple[str, int], int] = {}
        self.closed: list[tuple[tuple[str, int], _OpenFile]] = []

    def encoded_partition(self, msg) -> str:
        if not self.time_based:
            return f"partition={msg.partition()}"
        if self.extractor == "Record":
            kind, ts = msg.timestamp()
            if kind == 0 or ts is None or ts < 0:  # TIMESTAMP_NOT_AVAILABLE
                raise ValueError(
                    "Unable to determine timestamp using timestamp.extractor Record for record without timestamp"
                )
        else:
            ts = int(time.time() * 1000)
        bucket_ms = (ts // self.duration_ms) * self.duration_ms
        dt = datetime.fromtimestamp(bucket_ms / 1000, tz=timezone.utc).astimezone(self.tz)
        return joda_format(self.path_format, dt)

    def object_key(self, topic: str, partition: int, encoded: str, start: int) -> str:
        name = f"{topic}+{partition}+{start:0{self.pad}d}{self.ext}"
        return f"{self.topics_dir}/{topic}/{encoded}/{name}"

    def _record_ts(self, msg) -> int:
        kind, ts = msg.timestamp()
        return ts if kind and ts is not None and ts >= 0 else int(time.time() * 1000)

    def _close_tp(self, tp) -> None:
        for f in self.files.pop(tp, {}).values():
            self.closed.append((tp, f))
        self.counts[tp] = 0

    def process(self, msg) -> None:
        tp = (msg.topic(), msg.partition())
        if msg.value() is None:
            if self.null_behavior == "fail":
                raise TaskFailed(f"{self.name}: null value at {tp}@{msg.offset()} and behavior.on.null.values=fail")
            self._advance(tp, msg.offset())
            return
        try:
            meta, _ = decode_keyframe(msg.key(), msg.value(), msg.headers())
        except WireError as e:
            self.dead_letter(msg, RecordError("TASK_PUT", "edgesight.wire.decode_keyframe", e))
            self._advance(tp, msg.offset())
            return
        try:
            enc = self.encoded_partition(msg)
        except ValueError as e:
            self.dead_letter(msg, RecordError("TASK_PUT", self.partitioner, e))
            self._advance(tp, msg.offset())
            return
        files = self.files.setdefault(tp, {})
        ts = self._record_ts(msg)
        if self.rotate_ms > 0 and files:
            base = min(f.base_ts for f in files.values() if f.base_ts is not None)
            if ts - base >= self.rotate_ms:
                self._close_tp(tp)
                files = self.files.setdefault(tp, {})
        f = files.get(enc)
        if f is None:
            f = files[enc] = _OpenFile(enc, msg.offset(), base_ts=ts)
        f.records.append((msg, meta))
        self.counts[tp] = self.counts.get(tp, 0) + 1
        if self.counts[tp] >= self.flush_size:
            self._close_tp(tp)

    def _advance(self, tp, offset: int) -> None:
        """A record that produced no file (dead-lettered / ignored): committable once nothing older is open."""
        if not self.files.get(tp):
            self.next_commit[tp] = max(self.next_commit.get(tp, 0), offset + 1)
        else:
            self._pending_skips = getattr(self, "_pending_skips", {})
            self._pending_skips[tp] = max(self._pending_skips.get(tp, 0), offset + 1)

    def maybe_flush(self, force: bool, had_records: bool) -> None:
        from cloud.sinks import Item

        now = time.monotonic()
        if self.rotate_schedule_ms > 0 or force:
            for tp in list(self.files):
                fs = self.files[tp]
                if force or any((now - f.opened) * 1000 >= self.rotate_schedule_ms for f in fs.values()):
                    self._close_tp(tp)
        if not self.closed and not self.next_commit:
            return
        t0 = time.perf_counter()
        closed, self.closed = self.closed, []
        index_docs = []
        for tp, f in closed:
            key = self.object_key(tp[0], tp[1], f.encoded, f.start_offset)
            body = b"".join(m.value() + self.sep for m, _ in f.records)
            first_meta = f.records[0][1]
            ct = "image/jpeg" if len(f.records) == 1 else "application/octet-stream"
            md = (
                {"keyframe-id": first_meta.keyframe_id, "camera-id": first_meta.camera_id}
                if len(f.records) == 1
                else {}
            )
            self.sink.add(Item((key, body, ct, md), tp[0], tp[1], f.records[-1][0].offset(), ctx=f))
            last = f.records[-1][0].offset()
            self.next_commit[tp] = max(self.next_commit.get(tp, 0), last + 1)
            if self.index_sink is not None and len(f.records) == 1:
                msg, meta = f.records[0]
                doc = json.loads(meta.model_dump_json(by_alias=True, exclude_none=True))
                doc.pop("schema", None)
                doc["_id"] = doc.pop("keyframe_id")
                doc["ts"] = meta.ts
                doc.update(
                    {
                        "bucket": self.bucket,
                        "s3_key": key,
                        "kafka": {"topic": tp[0], "partition": tp[1], "offset": msg.offset()},
                    }
                )
                index_docs.append((f, Item(doc, tp[0], tp[1], msg.offset(), ctx=msg)))
        skips = getattr(self, "_pending_skips", {})
        for tp, off in list(skips.items()):
            if not self.files.get(tp):
                self.next_commit[tp] = max(self.next_commit.get(tp, 0), off)
                skips.pop(tp)
        items = list(self.sink._items)

        def put():
            if self.index_only:
                from cloud.sinks import FlushResult

                for it in items:  # raises (404) until Connect has written it: retried with back-off
                    self.s3.head_object(Bucket=self.bucket, Key=it.payload[0])
                self.sink._items, self.sink._seen = [], {}
                return FlushResult(written=len(items))
            self.sink._items = list(items)
            return self.sink.flush()

        res = self.flush_with_retry(put)
        failed_files = {id(it.ctx) for it, _ in res.failed}
        for it, exc in res.failed:
            for m, _ in it.ctx.records:
                self.dead_letter(m, RecordError("TASK_PUT", S3_SINK, exc))
        if self.index_sink is not None and index_docs:
            keep = [it for f, it in index_docs if id(f) not in failed_files]

            def idx():
                self.index_sink._items = list(keep)
                return self.index_sink.flush()

            ires = self.flush_with_retry(idx)
            for it, exc in ires.failed:
                self.dead_letter(it.ctx, RecordError("TASK_PUT", "edgesight keyframe index (MongoDB)", exc))
        self._flush_dlq()
        # never commit past a file that is still open
        offsets = {}
        for tp, off in self.next_commit.items():
            open_starts = [f.start_offset for f in self.files.get(tp, {}).values()]
            offsets[tp] = min([off] + open_starts) if open_starts else off
        self.commit(offsets)
        self.next_commit.clear()
        n = sum(len(f.records) for _, f in closed) - sum(len(it.ctx.records) for it, _ in res.failed)
        self.stats["records_out"] += n
        self.stats["batches"] += 1
        RECORDS_OUT.labels(self.name).inc(n)
        BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - t0)

    def on_revoke(self, gone):
        for tp in gone:
            self.files.pop(tp, None)
            self.counts.pop(tp, None)
            self.next_commit.pop(tp, None)
            getattr(self, "_pending_skips", {}).pop(tp, None)
        self.closed = [(tp, f) for tp, f in getattr(self, "closed", []) if tp not in gone]


# ---- the runner ----------------------------------------------------------------------------------


class ConnectorRunner:
    """Runs connector specs as threads of tasks; :meth:`stop` flushes, commits and returns."""

    def __init__(
        self,
        specs: list[ConnectorSpec],
        cloud,
        *,
        tasks: int | None = None,
        warehouse=None,
        index_keyframes: bool = True,
        idle_exit_s: float | None = None,
        topic_specs: list[TopicSpec] | None = None,
        on_assign=None,
        max_poll_records: int = 500,
        index_only: bool = False,
    ):
        self.specs, self.cloud = specs, cloud
        self.stop_event = threading.Event()
        self.log = get_logger("connector-runner")
        for s in specs:
            validate_for_runner(s)
        self.tasks: list[SinkTask] = []
        for s in specs:
            n = tasks or int(s.config.get("tasks.max", "1"))
            for i in range(n):
                kw = dict(idle_exit_s=idle_exit_s, on_assign=on_assign, max_poll_records=max_poll_records)
                if s.connector_class == MONGO_SINK:
                    t = MongoSinkTask(s, cloud, i, self.stop_event, **kw)
                else:
                    t = S3SinkTask(
                        s,
                        cloud,
                        i,
                        self.stop_event,
                        index_keyframes=index_keyframes,
                        warehouse=warehouse,
                        index_only=index_only,
                        **kw,
                    )
                self.tasks.append(t)
        self.topic_specs = topic_specs
        self.threads: list[threading.Thread] = []

    def ensure_topics(self) -> dict[str, str]:
        wanted: set[str] = set()
        for s in self.specs:
            wanted |= {t.strip() for t in s.config["topics"].split(",") if t.strip()}
            if s.config.get("errors.deadletterqueue.topic.name"):
                wanted.add(s.config["errors.deadletterqueue.topic.name"])
        specs = {t.name: t for t in (self.topic_specs or [])}
        for s in self.specs:
            dlq = s.config.get("errors.deadletterqueue.topic.name")
            if dlq and dlq not in specs:
                specs[dlq] = TopicSpec(
                    dlq, 1, int(s.config.get("errors.deadletterqueue.topic.replication.factor", "3"))
                )
        for w in wanted - set(specs):
            specs[w] = TopicSpec(w, 3, 3)
        return ensure_topics(self.cloud.kafka.client_config(), list(specs.values()), log=self.log, only=wanted)

    def start(self) -> None:
        for t in self.tasks:
            th = threading.Thread(target=t.run, name=f"{t.name}-{t.task_id}", daemon=True)
            th.start()
            self.threads.append(th)

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for th in self.threads:
            th.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(th.is_alive() for th in self.threads)

    def stop(self, timeout: float = 60.0) -> bool:
        self.stop_event.set()
        return self.wait(timeout)

    def errors(self) -> list[str]:
        return [f"{t.name}[{t.task_id}]: {type(t.error).__name__}: {t.error}" for t in self.tasks if t.error]

    def summary(self) -> list[dict]:
        return [
            {
                "connector": t.name,
                "task": t.task_id,
                **t.stats,
                "partitions": sorted(f"{a}[{b}]" for a, b in t.partitions_seen),
                "error": f"{type(t.error).__name__}: {t.error}" if t.error else None,
            }
            for t in self.tasks
        ]
