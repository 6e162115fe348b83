"""``cloud-ops test retention``: does each layer that keeps data really let old data go and keep new data?

For each layer, on scratch data only (a scratch topic, collection, bucket or prefix, spool directory; all removed
at the end), a short retention is set, old and new data are written, and what is left is read back:

============  ==============================  ==============================================================
layer         mechanism                       how "old" data is made
============  ==============================  ==============================================================
kafka         topic ``retention.ms``          records produced with a CreateTime ``2 x retention`` in the past
              (+ ``segment.ms``,              (Kafka deletes whole closed segments whose newest timestamp is
              ``retention.bytes``)            past ``retention.ms``; the new records roll the segment)
warehouse     TTL index on ``ts``             documents whose ``ts`` is ``2 x retention`` in the past
keyframes     S3 lifecycle rule; EdgeSight's  objects written, then ``retention`` seconds waited (S3 sets
              sweep (cloud.warehouse.sweep)   ``LastModified`` itself), then the new objects written
spool         edge spool ``max_bytes``        the agent's publisher with its uplink down writes past the bound
============  ==============================  ==============================================================

Where the server is expected to enforce (Kafka, MongoDB's TTL monitor), the test waits for it up to ``wait_s``
and says what it saw; where it does not, the row says so with the evidence, and where EdgeSight has a job of its
own (:func:`cloud.warehouse.sweep.expire_documents`, :func:`cloud.warehouse.sweep.sweep_objects`) the row shows
that job deleting the old data and keeping the new. New data is written just before the wait, so it stays
younger than the retention for the whole check as long as ``wait_s < retention_s`` (checked).

``run_retention(cloud_config, progress=...) -> RetentionReport``: one :class:`LayerRow` per layer and mechanism;
the layers run in parallel threads and a failing layer never stops the others (its row carries the error).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgesight.log import get_logger, redact_text

if TYPE_CHECKING:
    from rich.table import Table

    from cloud.config import CloudConfig

log = get_logger("optest.retention")

LAYERS = ("kafka", "warehouse", "keyframes", "spool")
OLD_AGE_FACTOR = 2.0  # old data is this many retentions old when written (where its timestamp can be chosen)
POLL_S = 1.0  # how often a wait loop looks again
READ_TIMEOUT_S = 20.0  # reading a scratch topic back
SPOOL_MAX_BYTES = 1024**2  # the smallest spool bound SpoolConfig allows
SPOOL_SEGMENT_BYTES = 64 * 1024
SPOOL_INFLIGHT_RECORDS = 100
SPOOL_RECORDS = 4000  # ~2 MiB of detection events: twice the bound

Progress = Callable[[str, str, "float | None"], None]  # (layer, message, fraction done or None)


@dataclass
class LayerRow:
    """One layer's (and mechanism's) finding. ``enforced``: True (old gone, new kept), False (old still there
    after the wait), None (could not be observed or the layer failed: ``evidence``/``error`` say why)."""

    layer: str
    mechanism: str
    scratch: str = ""
    configured: str = ""
    stored: bool | None = None  # the server kept the setting (describe / list_indexes / get lifecycle); None: n/a
    enforced: bool | None = None
    by: str = ""
    evidence: str = ""
    old_written: int = 0
    old_left: int | None = None
    new_written: int = 0
    new_left: int | None = None
    waited_s: float = 0.0
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class RetentionReport:
    started: str
    retention_s: float
    wait_s: float
    records: int
    layers: list[str]
    rows: list[LayerRow] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def failed(self) -> list[LayerRow]:
        return [r for r in self.rows if r.error]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_layers(spec: str | Iterable[str]) -> list[str]:
    """``"kafka,spool"`` (or a list) -> the layers in canonical order; ValueError naming unknown ones."""
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    unknown = sorted(set(names) - set(LAYERS))
    if unknown or not names:
        raise ValueError(f"unknown layer(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(LAYERS)}")
    return [name for name in LAYERS if name in names]


def check_options(retention_s: float, wait_s: float, records: int) -> None:
    """ValueError naming the option when the combination cannot give a truthful answer."""
    if retention_s < 3:
        raise ValueError(f"--retention must be at least 3 s (S3 times are whole seconds), got {retention_s:g}")
    if not 0 < wait_s < retention_s:
        raise ValueError(
            f"--wait ({wait_s:g} s) must be positive and shorter than --retention ({retention_s:g} s): the new "
            "data must still be younger than the retention when the wait ends"
        )
    if not 1 <= records <= 100_000:
        raise ValueError(f"--records must be 1..100000, got {records}")


def run_retention(
    cloud_config: CloudConfig,
    *,
    progress: Progress | None = None,
    layers: Iterable[str] = LAYERS,
    retention_s: float = 120.0,
    wait_s: float = 90.0,
    records: int = 20,
    work_dir: Path | None = None,
) -> RetentionReport:
    """Run the retention check of each layer in ``layers`` (in parallel) and return the report."""
    check_options(retention_s, wait_s, records)
    chosen = parse_layers(list(layers))
    prog: Progress = progress or (lambda layer, msg, frac: None)
    t0 = time.monotonic()
    report = RetentionReport(
        started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        retention_s=retention_s,
        wait_s=wait_s,
        records=records,
        layers=chosen,
    )
    runners: dict[str, Callable[[], list[LayerRow]]] = {
        "kafka": lambda: [_kafka(cloud_config, prog, retention_s, wait_s, records)],
        "warehouse": lambda: [_warehouse(cloud_config, prog, retention_s, wait_s, records)],
        "keyframes": lambda: _keyframes(cloud_config, prog, retention_s, records),
        "spool": lambda: [_spool(prog, work_dir)],
    }
    log.info("retention test started", extra={"layers": chosen, "retention_s": retention_s, "wait_s": wait_s})
    with ThreadPoolExecutor(max_workers=len(chosen), thread_name_prefix="retention") as pool:
        futs = {name: pool.submit(_guarded, name, runners[name], prog) for name in chosen}
        for name in chosen:
            report.rows.extend(futs[name].result())
    report.duration_s = round(time.monotonic() - t0, 2)
    for r in report.rows:
        log.info(
            "retention layer result",
            extra={
                "layer": r.layer,
                "mechanism": r.mechanism,
                "stored": r.stored,
                "enforced": r.enforced,
                "by": r.by,
                "old_left": r.old_left,
                "new_left": r.new_left,
                "error": r.error,
            },
        )
    return report


def _guarded(name: str, fn: Callable[[], list[LayerRow]], prog: Progress) -> list[LayerRow]:
    try:
        rows = fn()
    except Exception as e:  # noqa: BLE001 - one layer's failure is its row, never the others'
        log.warning("retention layer failed", extra={"layer": name, "error": _error(e)})
        rows = [LayerRow(name, "-", error=_error(e), evidence="the layer failed to run")]
    prog(name, "done" if not any(r.error for r in rows) else "failed", 1.0)
    return rows


def _error(e: BaseException) -> str:
    """An exception as a row's error: its type and message, secrets masked, at most 500 characters."""
    return redact_text(f"{type(e).__name__}: {e}")[:500]


def _run_id() -> str:
    return uuid.uuid4().hex[:10]


def _wait(layer: str, prog: Progress, wait_s: float, done: Callable[[], bool], what: str) -> tuple[bool, float]:
    """Call ``done()`` every :data:`POLL_S` until it is true or ``wait_s`` passed: (done, seconds waited)."""
    t0 = time.monotonic()
    while True:
        if done():
            return True, time.monotonic() - t0
        el = time.monotonic() - t0
        if el >= wait_s:
            return False, el
        prog(layer, f"{what} ({el:.0f}/{wait_s:.0f} s)", min(0.95, 0.2 + 0.75 * el / wait_s))
        time.sleep(min(POLL_S, max(0.05, wait_s - el)))


# ---- Kafka ------------------------------------------------------------------------------------------------


def _kafka(cloud: CloudConfig, prog: Progress, retention_s: float, wait_s: float, n: int) -> LayerRow:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, OffsetSpec

    from edgesight.kafka import TopicSpec, consumer_config, describe_topics, ensure_topics, producer_config
    from edgesight.kafka.clients import rdkafka_logger

    run = _run_id()
    topic = f"{cloud.kafka.topic_prefix}.optest.retention.{run}"
    ret_ms = int(retention_s * 1000)
    wanted = {
        "retention.ms": str(ret_ms),
        "segment.ms": str(ret_ms),  # a segment older than this rolls on the next append (deletion is per segment)
        "retention.bytes": str(64 * 1024**2),  # far above the scratch data: time is what deletes here
        "cleanup.policy": "delete",
    }
    row = LayerRow(
        "kafka",
        "topic retention.ms",
        scratch=f"topic {topic}",
        configured=", ".join(f"{k}={v}" for k, v in wanted.items()),
        old_written=n,
        new_written=n,
    )
    base = cloud.kafka.client_config()
    admin_conf: dict[str, Any] = {"logger": rdkafka_logger("admin"), **base}
    admin = AdminClient(admin_conf)
    prog("kafka", "create scratch topic", 0.02)
    row.details["create"] = ensure_topics(base, [TopicSpec(topic, 1, config=wanted)], log=log)[topic]
    try:
        md = admin.list_topics(timeout=10)
        row.details["cluster_id"] = md.cluster_id
        row.details["brokers"] = len(md.brokers)
        row.details["broker_retention_check"] = _broker_retention_check(admin, md)
        described = describe_topics(base, [topic])[topic].config
        stored = {k: described.get(k) for k in wanted}
        row.details["described"] = stored
        row.stored = all(stored[k] == v for k, v in wanted.items())
        prog("kafka", "produce old and new records", 0.1)
        producer = Producer(producer_config(base, client_id=f"optest-retention-{run}"))
        acked: dict[str, list[int]] = {"old": [], "new": []}
        errors: list[str] = []

        def on_ack(kind: str) -> Callable[[Any, Any], None]:
            def cb(err: Any, msg: Any) -> None:
                if err is not None:
                    errors.append(str(err))
                else:
                    acked[kind].append(msg.offset())

            return cb

        old_ts = int((time.time() - OLD_AGE_FACTOR * retention_s) * 1000)
        for i in range(n):
            producer.produce(topic, value=f"old-{run}-{i}".encode(), timestamp=old_ts, on_delivery=on_ack("old"))
        producer.flush(30)
        for i in range(n):
            producer.produce(topic, value=f"new-{run}-{i}".encode(), on_delivery=on_ack("new"))
        left = producer.flush(30)
        if errors or left or len(acked["old"]) != n or len(acked["new"]) != n:
            raise RuntimeError(
                f"produce failed: {len(acked['old'])}+{len(acked['new'])} of {2 * n} acknowledged, "
                f"{left} unsent, errors: {errors[:3]}"
            )
        first_new = min(acked["new"])
        row.details["offsets"] = {"old": [min(acked["old"]), max(acked["old"])], "new": [first_new, max(acked["new"])]}
        tp = TopicPartition(topic, 0)

        def earliest() -> int:
            return int(admin.list_offsets({tp: OffsetSpec.earliest()})[tp].result(timeout=10).offset)

        seen: dict[str, int] = {}

        def old_gone() -> bool:
            seen["earliest"] = earliest()
            return seen["earliest"] >= first_new

        gone, row.waited_s = _wait("kafka", prog, wait_s, old_gone, "waiting for the broker to delete old segments")
        row.details["earliest_offset"] = seen.get("earliest")
        prog("kafka", "read the topic back with a fresh consumer", 0.97)
        consumer = Consumer(
            consumer_config(
                base,
                group_id=f"optest-retention-{run}",
                client_id=f"optest-retention-{run}",
                session_timeout_ms=cloud.kafka.session_timeout_ms,
            )
        )
        try:
            consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
            got = {"old": 0, "new": 0}
            last = max(acked["new"])
            deadline = time.monotonic() + READ_TIMEOUT_S
            while time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    continue
                kind = (msg.value() or b"").decode().split("-", 1)[0]
                got[kind] = got.get(kind, 0) + 1
                if (msg.offset() or 0) >= last:
                    break
        finally:
            consumer.close()
        row.old_left, row.new_left = got["old"], got["new"]
        age_x = (OLD_AGE_FACTOR * retention_s + row.waited_s) / retention_s
        if row.old_left == 0 and row.new_left == n:
            row.enforced, row.by = True, "server (Kafka broker, retention.ms)"
            row.evidence = (
                f"earliest offset moved to {row.details['earliest_offset']} after {row.waited_s:.1f} s: the {n} old "
                f"records are gone, the {n} new ones are read back"
            )
        elif row.old_left == n:
            row.enforced, row.by = False, "nobody (this broker keeps the data)"
            row.evidence = (
                f"all {n} old records still readable (earliest offset {row.details['earliest_offset']}) after "
                f"waiting {row.waited_s:.0f} s, i.e. at {age_x:.1f}x retention.ms of age; retention.ms "
                + ("is stored" if row.stored else "is NOT stored")
                + " (describe configs)"
            )
            check = row.details["broker_retention_check"]
            if isinstance(check, int) and check > wait_s * 1000:
                row.evidence += (
                    f"; the broker checks retention every {check} ms (log.retention.check.interval.ms), "
                    "longer than --wait: wait longer to see it"
                )
            if "tansu" in str(md.cluster_id).lower():
                row.by = "nobody (Tansu keeps the data)"
                row.evidence += f"; cluster {md.cluster_id}: Tansu 0.6 never deletes by retention.ms"
        else:
            row.enforced, row.by = False, "partly by the server"
            row.evidence = f"{row.old_left} of {n} old and {row.new_left} of {n} new records still readable"
        if row.new_left != n:
            row.evidence += f"; NEW records missing: {n - row.new_left} of {n}"
        if not gone and row.old_left == 0:
            row.evidence += " (earliest offset did not move, but nothing old was read back)"
        return row
    finally:
        prog("kafka", "delete scratch topic", 0.99)
        try:
            for fut in admin.delete_topics([topic], request_timeout=15).values():
                fut.result(timeout=20)
        except Exception as e:  # noqa: BLE001 - cleanup is reported, the finding stays
            row.details["cleanup_error"] = _error(e)


def _broker_retention_check(admin: Any, md: Any) -> int | str:
    """The broker's ``log.retention.check.interval.ms`` (Kafka default 300000), or why it is unknown."""
    from confluent_kafka.admin import ConfigResource, ResourceType

    if not md.brokers:
        return "no broker in metadata"
    res = ConfigResource(ResourceType.BROKER, str(next(iter(md.brokers))))
    try:
        entries = admin.describe_configs([res], request_timeout=5)[res].result(timeout=8)
    except Exception as e:  # noqa: BLE001 - Tansu does not answer broker describe_configs
        return f"broker configs not described: {_error(e)[:160]}"
    entry = entries.get("log.retention.check.interval.ms")
    return int(entry.value) if entry is not None and entry.value is not None else "not described"


# ---- warehouse (MongoDB TTL) --------------------------------------------------------------------------------


def _warehouse(cloud: CloudConfig, prog: Progress, retention_s: float, wait_s: float, n: int) -> LayerRow:
    from cloud.warehouse.schema import set_retention, ttl_index
    from cloud.warehouse.sweep import expire_documents

    client = cloud.mongo.client()
    db = client[cloud.mongo.warehouse_db]
    name = f"_optest_retention_{_run_id()}"
    coll = db[name]
    seconds = int(retention_s)
    row = LayerRow(
        "warehouse",
        "TTL index on ts",
        scratch=f"collection {cloud.mongo.warehouse_db}.{name}",
        configured=f"expireAfterSeconds={seconds} (set_retention, as `warehouse retention` does)",
        old_written=n,
        new_written=n,
    )
    try:
        prog("warehouse", "create the TTL index", 0.05)
        row.details["set_retention"] = set_retention(coll, seconds / 86400)
        ix = ttl_index(coll)
        row.stored = ix is not None and int(ix["expireAfterSeconds"]) == seconds
        row.details["ttl_index"] = {"name": ix["name"], "expireAfterSeconds": ix["expireAfterSeconds"]} if ix else None
        now = datetime.now(timezone.utc)
        old_ts = now - timedelta(seconds=OLD_AGE_FACTOR * retention_s)
        coll.insert_many([{"kind": "old", "i": i, "ts": old_ts} for i in range(n)])
        coll.insert_many([{"kind": "new", "i": i, "ts": now} for i in range(n)])
        counts: dict[str, int] = {}

        def count() -> None:
            counts["old"] = coll.count_documents({"kind": "old"})
            counts["new"] = coll.count_documents({"kind": "new"})

        def old_gone() -> bool:
            count()
            return counts["old"] == 0

        gone, row.waited_s = _wait("warehouse", prog, wait_s, old_gone, "waiting for the server to expire old docs")
        row.old_left, row.new_left = counts["old"], counts["new"]
        if gone:
            row.enforced, row.by = row.new_left == n, "server (TTL index)"
            row.evidence = (
                f"{n} old docs (ts {OLD_AGE_FACTOR * retention_s:.0f} s old) gone "
                + ("at the first read" if row.waited_s < POLL_S else f"after {row.waited_s:.1f} s")
                + f", {row.new_left} of {n} new kept"
            )
        else:
            prog("warehouse", "server did not expire: running EdgeSight's expire job", 0.96)
            row.details["server_left_after_wait"] = row.old_left
            deleted = expire_documents(coll, max_age_s=seconds)
            count()
            row.old_left, row.new_left = counts["old"], counts["new"]
            row.enforced = row.old_left == 0 and row.new_left == n
            row.by = "EdgeSight job (cloud.warehouse.sweep.expire_documents)"
            row.evidence = (
                f"the server left {row.details['server_left_after_wait']} of {n} old docs after {row.waited_s:.0f} s; "
                f"expire_documents deleted {deleted}; {row.old_left} old and {row.new_left} of {n} new left"
            )
        return row
    finally:
        try:
            db.drop_collection(name)
        except Exception as e:  # noqa: BLE001
            row.details["cleanup_error"] = _error(e)


# ---- keyframes (S3) -------------------------------------------------------------------------------------------


def _keyframes(cloud: CloudConfig, prog: Progress, retention_s: float, n: int) -> list[LayerRow]:
    from botocore.exceptions import ClientError

    from cloud.warehouse.sweep import sweep_objects

    s3 = cloud.s3.client()
    run = _run_id()
    bucket = f"edgesight-optest-{run}"
    own_bucket = True
    prefix = ""
    lc = LayerRow("keyframes", "S3 lifecycle rule", old_written=0, new_written=0)
    sw = LayerRow(
        "keyframes",
        "EdgeSight sweep",
        configured=f"sweep_objects(max_age_s={retention_s:g})",
        old_written=n,
        new_written=n,
        by="EdgeSight job (cloud.warehouse.sweep.sweep_objects)",
    )
    lc.details["keyframe_bucket_lifecycle"] = _lifecycle_of(s3, cloud.s3.keyframe_bucket)
    prog("keyframes", "create scratch bucket", 0.02)
    try:
        s3.create_bucket(Bucket=bucket)
    except ClientError as e:
        # No right to create buckets: a scratch prefix in the keyframe bucket; its lifecycle is left alone
        # (a put replaces every rule of the bucket).
        own_bucket = False
        bucket, prefix = cloud.s3.keyframe_bucket, f"_optest/retention-{run}/"
        lc.details["scratch_bucket_refused"] = str(e)[:200]
    lc.scratch = sw.scratch = f"s3://{bucket}/{prefix}"
    try:
        if own_bucket:
            _probe_lifecycle(s3, bucket, lc)
        else:
            lc.evidence = (
                "not probed: no scratch bucket could be created and a lifecycle put would replace the keyframe "
                "bucket's own rules"
            )
        lc.configured += f"; keyframe bucket {cloud.s3.keyframe_bucket}: {lc.details['keyframe_bucket_lifecycle']}"
        prog("keyframes", "write old objects", 0.05)
        body = b"\xff\xd8" + b"\0" * 256 + b"\xff\xd9"  # a tiny JPEG-shaped body
        for i in range(n):
            s3.put_object(Bucket=bucket, Key=f"{prefix}old/{i:06d}.jpg", Body=body, ContentType="image/jpeg")
        t_old = time.monotonic()
        age = retention_s + 1.0  # S3 LastModified is in whole seconds

        def aged() -> bool:
            return time.monotonic() - t_old >= age

        _, sw.waited_s = _wait("keyframes", prog, age, aged, "letting the old objects age past the retention")
        prog("keyframes", "write new objects, run the sweep", 0.96)
        for i in range(n):
            s3.put_object(Bucket=bucket, Key=f"{prefix}new/{i:06d}.jpg", Body=body, ContentType="image/jpeg")
        res = sweep_objects(s3, bucket, prefix=prefix, max_age_s=retention_s)
        sw.details["sweep"] = asdict(res)
        sw.old_left = _count(s3, bucket, f"{prefix}old/")
        sw.new_left = _count(s3, bucket, f"{prefix}new/")
        sw.enforced = sw.old_left == 0 and sw.new_left == n
        sw.evidence = (
            f"{n} objects {age:.0f} s old and {n} just written; the sweep scanned {res.scanned}, deleted "
            f"{res.deleted}, kept {res.kept}; listed after: {sw.old_left} old, {sw.new_left} new"
        )
        return [lc, sw]
    except Exception as e:  # noqa: BLE001 - the lifecycle row stays when the sweep fails
        sw.error = _error(e)
        sw.evidence = sw.evidence or "the sweep check failed to run"
        return [lc, sw]
    finally:
        prog("keyframes", "remove scratch objects", 0.99)
        try:
            _remove(s3, bucket, prefix, own_bucket)
        except Exception as e:  # noqa: BLE001
            sw.details["cleanup_error"] = _error(e)


def _probe_lifecycle(s3: Any, bucket: str, row: LayerRow) -> None:
    from botocore.exceptions import ClientError

    rule = {"ID": "optest-expire-old", "Status": "Enabled", "Filter": {"Prefix": "old/"}, "Expiration": {"Days": 1}}
    row.configured = "Expiration Days=1 on prefix old/ (S3 lifecycle ages are whole days)"
    try:
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [rule]})
        row.details["put"] = "accepted"
    except ClientError as e:
        row.details["put"] = f"refused: {e}"[:300]
        row.stored = False
        row.evidence = f"the server refused the lifecycle rule: {row.details['put']}"
        return
    got = _lifecycle_of(s3, bucket)
    row.details["get"] = got
    row.stored = isinstance(got, list) and any(
        r.get("ID") == rule["ID"] and r.get("Expiration", {}).get("Days") == 1 for r in got
    )
    row.enforced = None
    row.by = "server, if it enforces lifecycle (not observable here)"
    row.evidence = (
        "put accepted, rule "
        + ("read back unchanged" if row.stored else "NOT read back")
        + "; enforcement cannot be observed in a test: the shortest S3 expiration is 1 day, so the EdgeSight "
        "sweep is what this test shows deleting"
    )


def _lifecycle_of(s3: Any, bucket: str) -> list[dict[str, Any]] | str:
    from botocore.exceptions import ClientError

    try:
        return list(s3.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", []))
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        return "no lifecycle rule" if code == "NoSuchLifecycleConfiguration" else f"unreadable: {code or e}"


def _count(s3: Any, bucket: str, prefix: str) -> int:
    return sum(
        len(p.get("Contents", [])) for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    )


def _remove(s3: Any, bucket: str, prefix: str, own_bucket: bool) -> None:
    keys = [
        o["Key"]
        for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for o in p.get("Contents", [])
    ]
    for i in range(0, len(keys), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True})
    if own_bucket:
        try:
            s3.delete_bucket_lifecycle(Bucket=bucket)
        finally:
            s3.delete_bucket(Bucket=bucket)


# ---- edge spool ---------------------------------------------------------------------------------------------


class _DropLog(logging.Handler):
    """Counts what the spool's "oldest records dropped" log lines say they dropped."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.dropped = 0
        self.lines = 0
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("spool full: oldest records dropped"):
            with self._lock2:
                self.lines += 1
                self.dropped += int(getattr(record, "dropped", 0))


def _spool(prog: Progress, work_dir: Path | None) -> LayerRow:
    from prometheus_client import REGISTRY

    from edge_agent.publish import EdgePublisher, PublishConfig
    from edge_agent.publish.spool import Spool
    from edgesight.wire import decode_event
    from ops.stack import free_ports
    from ops.testing.publish import event_stream

    run = _run_id()
    agent = f"optest-retention-{run}"
    tmp = Path(tempfile.mkdtemp(prefix="edgesight-optest-spool-", dir=work_dir))
    spool_dir = tmp / "spool"
    dead = f"127.0.0.1:{free_ports(1)[0]}"  # nothing listens there: the uplink is down
    cfg = PublishConfig(
        kafka={"bootstrap_servers": dead, "client_id": agent},
        spool={"dir": str(spool_dir), "max_bytes": SPOOL_MAX_BYTES, "segment_bytes": SPOOL_SEGMENT_BYTES},
        max_inflight_records=SPOOL_INFLIGHT_RECORDS,
        max_inflight_bytes=SPOOL_MAX_BYTES // 4,
        message_max_bytes=SPOOL_MAX_BYTES // 4,
        keyframes={"max_bytes": 100_000},
    )
    row = LayerRow(
        "spool",
        "spool max_bytes (drop oldest)",
        scratch=f"spool dir {spool_dir}",
        configured=f"max_bytes={SPOOL_MAX_BYTES} (uplink down); max age: none (SpoolConfig has no age bound: "
        "records stay until acknowledged or pushed out by size)",
    )

    def metric() -> float:
        v = REGISTRY.get_sample_value("edgesight_publish_spool_dropped_total", {"agent": agent, "topic": "detections"})
        return v or 0.0

    handler = _DropLog()
    spool_log = logging.getLogger("edgesight.publish.spool")
    spool_log.addHandler(handler)
    # The spool's "spool full" summary lines: counted by the handler, not echoed to the terminal.
    propagate, spool_log.propagate = spool_log.propagate, False
    level = spool_log.level
    spool_log.setLevel(logging.WARNING)  # counted whatever the process's log level
    try:
        events = list(event_stream(agent, 2, SPOOL_RECORDS))
        sent = [ev.event_id for ev in events]
        m0 = metric()
        prog("spool", f"publish {SPOOL_RECORDS} events with the uplink down", 0.1)
        pub = EdgePublisher(cfg, agent).start()
        try:
            for i, ev in enumerate(events):
                pub.publish_event(ev)
                if i % 500 == 0:
                    prog("spool", f"published {i}/{SPOOL_RECORDS}", 0.1 + 0.6 * i / SPOOL_RECORDS)
            st = pub.stats()["spool"]
        finally:
            pub.close(0.5)
        dropped = int(st["dropped"])
        dm = int(metric() - m0)
        prog("spool", "read back what the spool kept", 0.8)
        kept: set[str] = set()
        with Spool(cfg.spool, name=agent) as sp:
            while (rec := sp.next_pending()) is not None:
                kept.add(decode_event(rec.value).event_id)
        idx_dropped = [i for i, e in enumerate(sent) if e not in kept]
        first, last = (idx_dropped[0], idx_dropped[-1]) if idx_dropped else (len(sent), len(sent) - 1)
        old = sent[first : last + 1]
        new = sent[last + 1 :]
        head = sent[:first]  # handed to the producer before the bound was reached: cannot be recalled
        row.old_written, row.new_written = len(old), len(new)
        row.old_left = sum(e in kept for e in old)
        row.new_left = sum(e in kept for e in new)
        row.details.update(
            written=len(sent),
            kept_on_disk=len(kept),
            in_producer_kept=sum(e in kept for e in head),
            dropped_stats=dropped,
            dropped_metric=dm,
            dropped_log=handler.dropped,
            drop_log_lines=handler.lines,
            spool_bytes=int(st["bytes"]),
            limit_bytes=SPOOL_MAX_BYTES,
        )
        counted = dropped == dm == handler.dropped == len(old)
        row.enforced = (
            dropped > 0
            and row.old_left == 0
            and row.new_left == len(new)
            and counted
            and len(head) <= SPOOL_INFLIGHT_RECORDS
            and int(st["bytes"]) <= SPOOL_MAX_BYTES
        )
        row.by = "EdgeSight agent (edge spool)"
        row.evidence = (
            f"{len(sent)} events written, {len(kept)} kept on disk ({int(st['bytes'])} of {SPOOL_MAX_BYTES} bytes); "
            f"the oldest {len(old)} (#{first}..#{last}) dropped, counted {dropped} (stats) / {dm} (metric "
            f"publish_spool_dropped_total) / {handler.dropped} (log, {handler.lines} 'oldest records dropped' lines, counted, not echoed); the newest {len(new)} "
            f"kept; the first {len(head)} were already in the producer (in flight, cannot be recalled)"
        )
        if not counted:
            row.evidence += "; the counts DISAGREE"
        return row
    finally:
        spool_log.removeHandler(handler)
        spool_log.propagate = propagate
        spool_log.setLevel(level)
        shutil.rmtree(tmp, ignore_errors=True)


# ---- presentation -------------------------------------------------------------------------------------------


def _yes_no(v: bool | None, none: str = "[yellow]?[/yellow]") -> str:
    return {True: "[green]yes[/green]", False: "[red]no[/red]", None: none}[v]


def report_table(report: RetentionReport) -> Table:
    """The report as a rich table (one row per layer and mechanism)."""
    from rich.table import Table

    from edgesight.term import esc

    t = Table(
        title=f"retention per layer (retention {report.retention_s:g} s, wait up to {report.wait_s:g} s, "
        f"{report.records} old + {report.records} new items; {report.duration_s:g} s)",
        show_lines=True,
    )
    for col in ("layer", "mechanism", "configured", "stored", "enforced", "by", "old left", "new left", "evidence"):
        t.add_column(col, overflow="fold")
    for r in report.rows:
        t.add_row(
            esc(r.layer),
            esc(r.mechanism),
            esc(r.configured),
            _yes_no(r.stored, "-"),  # None: nothing is stored on a server (an EdgeSight job or the agent's config)
            _yes_no(r.enforced),
            esc(r.by),
            "-" if r.old_left is None else f"{r.old_left}/{r.old_written}",
            "-" if r.new_left is None else f"{r.new_left}/{r.new_written}",
            esc(r.evidence) + (f"\n[red]error: {esc(r.error)}[/red]" if r.error else ""),
        )
    return t
