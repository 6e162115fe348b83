"""Query, keyframe lookup, delete and export over the warehouse collections."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pymongo import ASCENDING, DESCENDING

from edgesight.log import get_logger

from .config import WarehouseConfig
from .schema import Names

log = get_logger("warehouse")

CSV_FIELDS = [
    "_id",
    "ts",
    "agent_id",
    "camera_id",
    "kind",
    "label",
    "class_id",
    "score",
    "track_id",
    "zones",
    "box.x1",
    "box.y1",
    "box.x2",
    "box.y2",
    "seq",
    "model.name",
    "model.version",
    "keyframe.keyframe_id",
]


@dataclass
class Query:
    camera: str | None = None
    agent: str | None = None
    label: str | None = None
    zone: str | None = None
    track: int | None = None
    run: str | None = None  # the agent run (detection/2 run_id; "" matches detection/1 events, which have none)
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive

    def filter(self) -> dict[str, Any]:
        f: dict[str, Any] = {}
        if self.camera:
            f["camera_id"] = self.camera
        if self.agent:
            f["agent_id"] = self.agent
        if self.label:
            f["label"] = self.label
        if self.zone:
            f["zones"] = self.zone
        if self.track is not None:
            f["track_id"] = self.track
        if self.run is not None:
            f["run_id"] = self.run or {"$exists": False}
        rng: dict[str, Any] = {}
        if self.start is not None:
            rng["$gte"] = _utc(self.start)
        if self.end is not None:
            rng["$lt"] = _utc(self.end)
        if rng:
            f["ts"] = rng
        return f


def _utc(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        raise ValueError("time bounds must carry a timezone (e.g. 2026-01-01T00:00:00Z)")
    return dt.astimezone(timezone.utc)


def _get(doc: dict, dotted: str) -> Any:
    cur: Any = doc
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


class Warehouse:
    def __init__(
        self,
        client,
        database: str,
        wcfg: WarehouseConfig | None = None,
        *,
        s3=None,
        bucket: str | None = None,
        presign_expiry_s: int = 3600,
    ):
        self.client = client
        self.db = client[database]
        self.wcfg = wcfg or WarehouseConfig()
        self.names = Names(self.wcfg.collection_prefix)
        self.detections = self.db[self.names.detections]
        self.keyframes = self.db[self.names.keyframes]
        self.s3, self.bucket, self.presign_expiry_s = s3, bucket, presign_expiry_s

    @classmethod
    def from_config(cls, cloud, wcfg: WarehouseConfig | None = None) -> Warehouse:
        return cls(
            cloud.mongo.client(),
            cloud.mongo.warehouse_db,
            wcfg,
            s3=cloud.s3.client(),
            bucket=cloud.s3.keyframe_bucket,
            presign_expiry_s=cloud.s3.presign_expiry_s,
        )

    # ---- queries ----
    def find(self, q: Query, *, limit: int = 1000, newest_first: bool = True) -> list[dict]:
        cur = self.detections.find(q.filter()).sort(
            [("ts", DESCENDING if newest_first else ASCENDING), ("_id", ASCENDING)]
        )
        if limit:
            cur = cur.limit(limit)
        return list(cur)

    def count(self, q: Query | None = None) -> int:
        return self.detections.count_documents((q or Query()).filter())

    def track(self, camera: str, track_id: int, run_id: str | None = None) -> list[dict]:
        """A track's detections in time order. Track ids restart with every run of an agent: give the run
        (detection/2 ``run_id``) to get one track, not the same id of every run."""
        return self.find(Query(camera=camera, track=track_id, run=run_id), limit=0, newest_first=False)

    # ---- keyframes ----
    def keyframe_object(self, ref: str | Mapping[str, Any]) -> tuple[str, str, dict] | None:
        """Where a keyframe lies: ``(bucket, s3_key, index document)``, or None when it is not (yet) indexed.

        The one resolution of a keyframe reference: ``ref`` is a keyframe_id or a reference document holding
        one (a detection's ``keyframe``, an analytics track's ``keyframe``; detection/1's ``object_key`` is
        ignored, it names no object). The S3 sink names objects after topic, partition and offset and indexes
        keyframe_id -> bucket/s3_key in the keyframes collection: that index is the only source of truth."""
        keyframe_id = ref if isinstance(ref, str) else ref.get("keyframe_id")
        if not isinstance(keyframe_id, str):
            return None
        doc = self.keyframes.find_one({"_id": keyframe_id})
        if doc is None:
            return None
        bucket = doc.get("bucket") or self.bucket
        if not bucket:
            raise RuntimeError("keyframe index document without a bucket and no default keyframe bucket configured")
        return bucket, doc["s3_key"], doc

    def keyframe(self, ref: str | Mapping[str, Any], *, presign: bool = True) -> dict | None:
        """The keyframe index document of a reference (see :meth:`keyframe_object`), with ``url``: a presigned
        S3 GET URL (expires after presign_expiry_s)."""
        found = self.keyframe_object(ref)
        if found is None:
            return None
        bucket, key, doc = found
        if presign:
            if self.s3 is None:
                raise RuntimeError("no S3 client configured for presigned URLs")
            doc["url"] = self.s3.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=self.presign_expiry_s
            )
        return doc

    def keyframe_for_event(self, event_id: str) -> dict | None:
        """The keyframe of a detection (its ``keyframe`` reference, resolved by :meth:`keyframe`)."""
        ev = self.detections.find_one({"_id": event_id}, {"keyframe": 1})
        ref = (ev or {}).get("keyframe")
        return self.keyframe(ref) if ref else None

    # ---- delete ----
    def delete(
        self,
        *,
        camera: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        delete_objects: bool = True,
    ) -> dict[str, int]:
        """Delete detections and keyframes (index docs and, by default, their S3 objects) by camera and/or time range."""
        if camera is None and start is None and end is None:
            raise ValueError("refusing to delete everything: give a camera and/or a time range")
        f = Query(camera=camera, start=start, end=end).filter()
        out = {"detections": self.detections.delete_many(f).deleted_count, "keyframes": 0, "objects": 0}
        if delete_objects and self.s3 is not None:
            batch: list[dict] = []
            for doc in self.keyframes.find(f, {"s3_key": 1, "bucket": 1}):
                batch.append(doc)
                if len(batch) == 1000:
                    out["objects"] += self._delete_objects(batch)
                    batch = []
            if batch:
                out["objects"] += self._delete_objects(batch)
        out["keyframes"] = self.keyframes.delete_many(f).deleted_count
        log.info("deleted", extra={**out, "camera": camera, "start": str(start), "end": str(end)})
        return out

    def _delete_objects(self, docs: list[dict]) -> int:
        by_bucket: dict[str, list[str]] = {}
        for d in docs:
            by_bucket.setdefault(d.get("bucket") or self.bucket, []).append(d["s3_key"])
        n = 0
        for bucket, keys in by_bucket.items():
            r = self.s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
            errs = r.get("Errors", [])
            if errs:
                raise RuntimeError(f"S3 refused to delete {len(errs)} object(s), first: {errs[0]}")
            n += len(keys)
        return n

    # ---- export ----
    def iter_docs(self, q: Query) -> Iterator[dict]:
        yield from (
            self.detections.find(q.filter())
            .sort([("ts", ASCENDING), ("_id", ASCENDING)])
            .batch_size(self.wcfg.export_batch)
        )

    def export(
        self, q: Query, path: Path, fmt: str = "jsonl", progress: Callable[[int, int], None] | None = None
    ) -> int:
        """Write matching detections to ``path`` (``jsonl`` or ``csv``), oldest first; returns the count.
        Writes to ``<path>.part`` and renames at the end, so a failed export leaves no partial file."""
        if fmt not in ("jsonl", "csv"):
            raise ValueError(f"format must be jsonl or csv, got {fmt!r}")
        total = self.count(q)
        path = Path(path)
        tmp = path.with_name(path.name + ".part")
        n = 0
        with open(tmp, "w", newline="") as fh:
            w = None
            if fmt == "csv":
                w = csv.writer(fh)
                w.writerow(CSV_FIELDS)
            for doc in self.iter_docs(q):
                if fmt == "jsonl":
                    fh.write(json.dumps(doc, default=_json_default, separators=(",", ":")) + "\n")
                else:
                    row = []
                    for k in CSV_FIELDS:
                        v = _get(doc, k)
                        if isinstance(v, list):
                            v = "|".join(map(str, v))
                        elif isinstance(v, datetime):
                            v = _json_default(v)
                        row.append("" if v is None else v)
                    w.writerow(row)
                n += 1
                if progress and (n % 1000 == 0):
                    progress(n, total)
        tmp.replace(path)
        if progress:
            progress(n, total)
        return n


def _json_default(v: Any) -> Any:
    if isinstance(v, datetime):
        v = v.astimezone(timezone.utc) if v.tzinfo else v.replace(tzinfo=timezone.utc)
        return v.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return str(v)
