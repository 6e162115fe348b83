"""EdgeSight's own retention jobs, for stores whose server does not expire data by itself.

* :func:`sweep_objects`: delete the objects of a bucket (under a prefix) older than a maximum age, by their
  ``LastModified``: what an S3 lifecycle ``Expiration`` rule does, for object stores that do not enforce one (or
  only in whole days). For keyframe JPEGs use the same age as the keyframe index's TTL
  (``retention.keyframes_days``), so an index document never outlives its object by more than one sweep.
* :func:`expire_documents`: delete the documents of a collection whose TTL field is older than a maximum age:
  what MongoDB's TTL monitor does, for servers that keep the TTL index but never expire.

Both are idempotent and safe to run repeatedly (a cron job, a Kubernetes CronJob); both log what they deleted.
``cloud-ops test retention`` (:mod:`ops.optest.retention`) runs them on scratch data to show old data gone and
new data kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from edgesight.log import get_logger

log = get_logger("warehouse.sweep")

DELETE_BATCH = 1000  # S3 DeleteObjects takes at most 1000 keys per request


@dataclass
class SweepResult:
    """What one :func:`sweep_objects` pass saw and did."""

    bucket: str
    prefix: str
    max_age_s: float
    cutoff: str  # ISO-8601 UTC: objects last modified at or before it were deleted
    scanned: int = 0
    deleted: int = 0
    kept: int = 0
    bytes_deleted: int = 0
    dry_run: bool = False


def _cutoff(max_age_s: float, now: datetime | None) -> datetime:
    """``now`` (default: the current time) minus ``max_age_s``; ValueError on a non-positive age or a naive time."""
    if max_age_s <= 0:
        raise ValueError(f"max_age_s must be positive, got {max_age_s}")
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        raise ValueError("now must carry a timezone")
    return now - timedelta(seconds=max_age_s)


def sweep_objects(
    s3,
    bucket: str,
    *,
    max_age_s: float,
    prefix: str = "",
    now: datetime | None = None,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> SweepResult:
    """Delete every object of ``bucket`` under ``prefix`` last modified ``max_age_s`` or more before ``now``.

    ``s3`` is a boto3 S3 client (``CloudConfig.s3.client()``). Listing is paged; deletes go in batches of
    :data:`DELETE_BATCH`. ``progress(scanned, deleted)`` is called after each page. A key S3 refuses to delete
    raises ``RuntimeError`` naming the first one (nothing is reported deleted that was not)."""
    cutoff = _cutoff(max_age_s, now)
    res = SweepResult(bucket, prefix, max_age_s, cutoff.astimezone(timezone.utc).isoformat(), dry_run=dry_run)
    batch: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            res.scanned += 1
            if obj["LastModified"] <= cutoff:
                batch.append(obj["Key"])
                res.bytes_deleted += int(obj.get("Size", 0))
            else:
                res.kept += 1
            if len(batch) == DELETE_BATCH:
                res.deleted += _delete(s3, bucket, batch, dry_run)
                batch = []
        if progress:
            progress(res.scanned, res.deleted)
    if batch:
        res.deleted += _delete(s3, bucket, batch, dry_run)
    if progress:
        progress(res.scanned, res.deleted)
    log.info(
        "object sweep done" + (" (dry run)" if dry_run else ""),
        extra={
            "bucket": bucket,
            "prefix": prefix,
            "max_age_s": max_age_s,
            "cutoff": res.cutoff,
            "scanned": res.scanned,
            "deleted": res.deleted,
            "kept": res.kept,
            "bytes_deleted": res.bytes_deleted,
        },
    )
    return res


def _delete(s3, bucket: str, keys: list[str], dry_run: bool) -> int:
    if dry_run:
        return len(keys)
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
    errs = r.get("Errors", [])
    if errs:
        raise RuntimeError(f"S3 refused to delete {len(errs)} of {len(keys)} object(s) in {bucket}, first: {errs[0]}")
    return len(keys)


def expire_documents(coll, *, max_age_s: float, field_name: str = "ts", now: datetime | None = None) -> int:
    """Delete the documents of ``coll`` whose ``field_name`` (a BSON date) is more than ``max_age_s`` before
    ``now``, as a TTL index with ``expireAfterSeconds=max_age_s`` would; returns how many were deleted."""
    cutoff = _cutoff(max_age_s, now)
    n = int(coll.delete_many({field_name: {"$lt": cutoff}}).deleted_count)
    log.info(
        "documents expired",
        extra={"collection": coll.name, "field": field_name, "max_age_s": max_age_s, "deleted": n},
    )
    return n
