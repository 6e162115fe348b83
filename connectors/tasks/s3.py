"""The S3 sink connector's task (``ByteArrayFormat``): records -> objects under Connect's key layout
(``<topics.dir>/<topic>/<encodedPartition>/<topic>+<partition>+<startOffset>.<ext>``), and for each
keyframe object a document in the warehouse ``keyframes`` collection (the index).

Files stay open across batches until ``flush.size`` records, ``rotate.interval.ms`` of record time or
``rotate.schedule.interval.ms`` of wall time; offsets are committed only up to the first record of a
file that is still open. ``index_only``: Kafka Connect writes the objects; this task computes the
same keys, waits until each object exists (HEAD) and records the index documents."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cloud.sinks import DocumentNotEncodable, FlushResult, Item, MongoSink, S3Sink, bson_size
from cloud.stream import TP, BatchLoop, Failure, Handler, TaskFailed, WriteResult
from edgesight.limits import clip
from edgesight.wire import KeyframeMeta, WireError, decode_keyframe, keyframe_header_text

from ..joda import joda_format
from ..options import S3_SINK, RunnerConfigError
from ..spec import ConnectorSpec

INDEX_CLASS = "edgesight keyframe index (MongoDB)"


@dataclass
class _OpenFile:
    encoded: str
    start_offset: int
    records: list = field(default_factory=list)  # (msg, meta)
    opened: float = field(default_factory=time.monotonic)
    base_ts: int | None = None


class S3SinkHandler(Handler):
    def __init__(
        self,
        spec: ConnectorSpec,
        *,
        index_keyframes: bool = True,
        warehouse: tuple[Any, str, str] | None = None,
        index_only: bool = False,
        ca_file: Path | None = None,
    ):
        self.name, self.c = spec.name, spec.config
        self.ca_file = ca_file  # the CA that verifies an https store.url (cloud s3.ca_file; None: the system's)
        self.index_keyframes = index_keyframes or index_only
        self.warehouse = warehouse  # (mongo client, database, collection) for the keyframe index
        self.index_only = index_only

    def open(self, loop: BatchLoop) -> None:
        from zoneinfo import ZoneInfo

        import boto3
        from botocore.config import Config

        self.loop = loop
        c = self.c
        self.bucket = c["s3.bucket.name"]
        self.s3 = boto3.client(
            "s3",
            endpoint_url=c.get("store.url") or None,
            region_name=c.get("s3.region", "us-west-2"),
            aws_access_key_id=c.get("aws.access.key.id") or None,
            aws_secret_access_key=c.get("aws.secret.access.key") or None,
            verify=str(self.ca_file) if self.ca_file else None,
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"},
                s3={"addressing_style": "path" if c.get("s3.path.style.access.enabled", "true") == "true" else "auto"},
            ),
        )
        self.sink = S3Sink(self.s3, self.bucket)
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
        self.index_sink: MongoSink | None = None
        if self.index_keyframes and self.warehouse is not None:
            client, db, coll = self.warehouse
            self.index_sink = MongoSink(client[db][coll], max_batch_size=500, ordered=False)
        self.files: dict[TP, dict[str, _OpenFile]] = {}
        self.counts: dict[TP, int] = {}
        self.next_commit: dict[TP, int] = {}  # committable next offset per partition (files closed before it)
        self.skips: dict[TP, int] = {}  # records that made no file, behind a file still open
        self.closed: list[tuple[TP, _OpenFile]] = []

    # ---- keys ----
    def encoded_partition(self, msg: Any) -> str:
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

    # ---- records ----
    def accept(self, msg: Any) -> Failure | None:
        tp = (msg.topic(), msg.partition())
        if msg.value() is None:
            if self.null_behavior == "fail":
                raise TaskFailed(f"{self.name}: null value at {tp}@{msg.offset()} and behavior.on.null.values=fail")
            self._advance(tp, msg.offset())
            return None
        return self._add(tp, msg)

    def discard(self, msg: Any) -> None:
        self._advance((msg.topic(), msg.partition()), msg.offset())

    def _add(self, tp: TP, msg: Any) -> Failure | None:
        try:
            meta, _ = decode_keyframe(msg.key(), msg.value(), _unique(msg.headers()))
        except WireError as e:
            return Failure("TASK_PUT", "edgesight.wire.decode_keyframe", e)
        if self.index_sink is not None:
            try:  # the index document must be storable, or the object would be written and never indexed
                bson_size(_meta_doc(meta))
            except DocumentNotEncodable as e:
                return Failure("TASK_PUT", INDEX_CLASS, e)
        try:
            enc = self.encoded_partition(msg)
        except (ValueError, OverflowError, OSError) as e:  # no timestamp, or one no calendar can show
            return Failure("TASK_PUT", self.partitioner, e)
        files = self.files.setdefault(tp, {})
        kind, ts = msg.timestamp()
        ts = ts if kind and ts is not None and ts >= 0 else int(time.time() * 1000)
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
        return None

    def _close_tp(self, tp: TP) -> None:
        for f in self.files.pop(tp, {}).values():
            self.closed.append((tp, f))
        self.counts[tp] = 0

    def _advance(self, tp: TP, offset: int) -> None:
        """A record that produced no file (dead-lettered / ignored): committable once nothing older is open."""
        if not self.files.get(tp):
            self.next_commit[tp] = max(self.next_commit.get(tp, 0), offset + 1)
        else:
            self.skips[tp] = max(self.skips.get(tp, 0), offset + 1)

    # ---- writes ----
    def write(self, final: bool) -> WriteResult:
        now = time.monotonic()
        if self.rotate_schedule_ms > 0 or final:
            for tp in list(self.files):
                fs = self.files[tp]
                if final or any((now - f.opened) * 1000 >= self.rotate_schedule_ms for f in fs.values()):
                    self._close_tp(tp)
        if not self.closed and not self.next_commit:
            return WriteResult(checkpoint={})
        closed, self.closed = self.closed, []
        items, index_docs = [], []
        for tp, f in closed:
            key = self.object_key(tp[0], tp[1], f.encoded, f.start_offset)
            single = len(f.records) == 1
            first_meta = f.records[0][1]
            md = _object_metadata(first_meta) if single else {}
            body = b"".join(m.value() + self.sep for m, _ in f.records)
            ct = "image/jpeg" if single else "application/octet-stream"
            items.append(Item((key, body, ct, md), tp[0], tp[1], f.records[-1][0].offset(), ctx=f))
            self.next_commit[tp] = max(self.next_commit.get(tp, 0), f.records[-1][0].offset() + 1)
            if self.index_sink is not None and single:
                index_docs.append((f, self._index_doc(tp, key, *f.records[0])))
        for tp, off in list(self.skips.items()):
            if not self.files.get(tp):
                self.next_commit[tp] = max(self.next_commit.get(tp, 0), off)
                del self.skips[tp]
        res = self.loop.retry(lambda: self._put(items))
        failed_files = {id(it.ctx) for it, _ in res.failed}
        failed = [(m, Failure("TASK_PUT", S3_SINK, exc)) for it, exc in res.failed for m, _ in it.ctx.records]
        if self.index_sink is not None and index_docs:
            keep = [it for f, it in index_docs if id(f) not in failed_files]
            index_sink = self.index_sink
            ires = self.loop.retry(lambda: index_sink.write(keep))
            failed += [(it.ctx, Failure("TASK_PUT", INDEX_CLASS, exc)) for it, exc in ires.failed]
        # never commit past a file that is still open
        offsets = {}
        for tp, off in self.next_commit.items():
            open_starts = [f.start_offset for f in self.files.get(tp, {}).values()]
            offsets[tp] = min([off, *open_starts])
        self.next_commit.clear()
        written = sum(len(f.records) for _, f in closed) - sum(len(it.ctx.records) for it, _ in res.failed)
        return WriteResult(written=written, failed=failed, checkpoint=offsets)

    def _put(self, items: list[Item]) -> FlushResult:
        if not self.index_only:
            return self.sink.write(items)
        for it in items:  # raises (404) until Connect has written it: retried with back-off
            self.s3.head_object(Bucket=self.bucket, Key=it.payload[0])
        return FlushResult(written=len(items))

    def _index_doc(self, tp: TP, key: str, msg: Any, meta: KeyframeMeta) -> Item:
        doc = _meta_doc(meta)
        doc["_id"] = doc.pop("keyframe_id")
        doc["ts"] = meta.ts
        doc.update(
            {
                "bucket": self.bucket,
                "s3_key": key,
                "kafka": {"topic": tp[0], "partition": tp[1], "offset": msg.offset()},
            }
        )
        return Item(doc, tp[0], tp[1], msg.offset(), ctx=msg)

    def revoke(self, tps: set[TP]) -> None:
        """Drop what is buffered for partitions that leave: their new owner re-reads from the committed offset."""
        for tp in tps:
            self.files.pop(tp, None)
            self.counts.pop(tp, None)
            self.next_commit.pop(tp, None)
            self.skips.pop(tp, None)
        self.closed = [(tp, f) for tp, f in self.closed if tp not in tps]


def _object_metadata(meta: KeyframeMeta) -> dict[str, str]:
    """The S3 user metadata of a keyframe's object: its id and camera, and for a crop (a track's box, not the
    whole frame) ``keyframe-crop`` and ``keyframe-frame`` encoded as its Kafka headers are."""
    md = {"keyframe-id": meta.keyframe_id, "camera-id": meta.camera_id}
    if meta.crop is not None and meta.frame is not None:
        md["keyframe-crop"] = keyframe_header_text(meta.crop)
        md["keyframe-frame"] = keyframe_header_text(meta.frame.model_dump())
    return md


def _meta_doc(meta: KeyframeMeta) -> dict[str, Any]:
    doc = json.loads(meta.model_dump_json(by_alias=True, exclude_none=True))
    doc.pop("schema", None)
    return doc


def _unique(headers: list[tuple[str, bytes | None]] | None) -> list[tuple[str, bytes | None]] | None:
    """The headers, refused when a name repeats (the metadata would be ambiguous: which one counts?)."""
    seen: set[str] = set()
    for k, _ in headers or ():
        if k in seen:
            raise WireError("keyframe", clip(str(k), 64), "header repeated (ambiguous metadata)")
        seen.add(k)
    return headers
