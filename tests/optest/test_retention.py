"""``cloud-ops test retention`` (issue #14, item 4) at a small size against the session stack, through the real CLI,
and EdgeSight's own retention jobs (:mod:`cloud.warehouse.sweep`) on their own.

The report's figures are checked against each other and against what the servers hold afterwards (scratch data
removed); the findings on this stack are the ones the README states: Tansu keeps records past retention.ms but
stores the setting, nx-27017 expires TTL documents, SeaweedFS stores a lifecycle rule (days: not observable in a
test) and EdgeSight's sweep deletes old objects, the edge spool drops its oldest records and counts them.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cloud.warehouse.sweep import expire_documents, sweep_objects
from edgesight.kafka import describe_topics
from ops.cli import app
from ops.stack import free_ports

pytestmark = pytest.mark.timeout(240)

RECORDS = 7


def _rows(report: dict) -> dict[tuple[str, str], dict]:
    return {(r["layer"], r["mechanism"]): r for r in report["rows"]}


def test_retention_reports_each_layer_truthfully(stack, cloud_config, tmp_path):
    out = tmp_path / "retention.json"
    env = {**stack.env(), "COLUMNS": "200"}
    res = CliRunner().invoke(
        app,
        ["test", "retention", "--retention", "4", "--wait", "3", "--records", str(RECORDS), "--json", str(out)],
        env=env,
    )
    assert res.exit_code == 0, res.output
    assert "retention per layer" in res.stdout
    report = json.loads(out.read_text())
    rows = _rows(report)
    assert set(rows) == {
        ("kafka", "topic retention.ms"),
        ("warehouse", "TTL index on ts"),
        ("keyframes", "S3 lifecycle rule"),
        ("keyframes", "EdgeSight sweep"),
        ("spool", "spool max_bytes (drop oldest)"),
    }
    for r in rows.values():
        assert r["error"] is None, r
        assert "cleanup_error" not in r["details"], r
        # enforced means exactly: nothing old left, everything new kept (as counted by the run itself)
        if r["enforced"] is not None and r["old_left"] is not None:
            assert r["enforced"] == (r["old_left"] == 0 and r["new_left"] == r["new_written"]), r

    # Kafka (Tansu): the settings are stored, nothing is deleted; every record was acknowledged and read back.
    k = rows[("kafka", "topic retention.ms")]
    assert k["stored"] is True and k["details"]["described"]["retention.ms"] == "4000"
    lo, hi = k["details"]["offsets"]["old"]
    nlo, nhi = k["details"]["offsets"]["new"]
    assert hi - lo + 1 == RECORDS and nhi - nlo + 1 == RECORDS and nlo > hi
    assert k["enforced"] is False and k["old_left"] == RECORDS and k["new_left"] == RECORDS
    assert k["details"]["earliest_offset"] == lo
    assert "Tansu" in k["by"] and f"all {RECORDS} old records still readable" in k["evidence"]
    topic = k["scratch"].removeprefix("topic ")
    assert describe_topics(cloud_config.kafka.client_config(), [topic]) == {}, "scratch topic left behind"

    # Warehouse (nx-27017): the TTL index is kept and the server expires the old documents itself.
    w = rows[("warehouse", "TTL index on ts")]
    assert w["stored"] is True and w["details"]["ttl_index"]["expireAfterSeconds"] == 4
    assert (w["old_left"], w["new_left"]) == (0, RECORDS) and w["enforced"] is True
    assert w["by"] == "server (TTL index)"
    db = cloud_config.mongo.client()[cloud_config.mongo.warehouse_db]
    assert w["scratch"].rsplit(".", 1)[1] not in db.list_collection_names(), "scratch collection left behind"

    # Keyframes: the lifecycle rule is stored but cannot be seen enforced; EdgeSight's sweep deletes the old.
    lc = rows[("keyframes", "S3 lifecycle rule")]
    assert lc["stored"] is True and lc["enforced"] is None and lc["details"]["put"] == "accepted"
    sw = rows[("keyframes", "EdgeSight sweep")]
    sweep = sw["details"]["sweep"]
    assert sweep["scanned"] == 2 * RECORDS and sweep["deleted"] == RECORDS and sweep["kept"] == RECORDS
    assert (sw["old_left"], sw["new_left"]) == (0, RECORDS) and sw["enforced"] is True
    assert sw["waited_s"] >= 4
    buckets = {b["Name"] for b in cloud_config.s3.client().list_buckets()["Buckets"]}
    assert sw["scratch"].removeprefix("s3://").rstrip("/") not in buckets, "scratch bucket left behind"

    # Spool: past the bound the oldest are dropped and counted the same in stats, metric and log; the newest kept.
    sp = rows[("spool", "spool max_bytes (drop oldest)")]
    d = sp["details"]
    assert sp["old_written"] > 0 and sp["enforced"] is True
    assert d["dropped_stats"] == d["dropped_metric"] == d["dropped_log"] == sp["old_written"]
    assert d["written"] == d["in_producer_kept"] + sp["old_written"] + sp["new_written"]
    assert d["kept_on_disk"] == d["in_producer_kept"] + sp["new_left"]
    assert d["spool_bytes"] <= d["limit_bytes"]
    assert not Path(sp["scratch"].removeprefix("spool dir ")).exists(), "scratch spool left behind"


def test_a_failing_layer_does_not_stop_the_others(stack, tmp_path):
    out = tmp_path / "retention.json"
    dead_mongo = f"mongodb://127.0.0.1:{free_ports(1)[0]}/"  # nothing listens: the warehouse layer cannot run
    env = {**stack.env(), "EDGESIGHT_CLOUD__MONGO__URI": dead_mongo, "COLUMNS": "200"}
    args = ["test", "retention", "--layers", "warehouse,keyframes", "--retention", "3", "--wait", "2"]
    res = CliRunner().invoke(app, [*args, "--records", "3", "--json", str(out)], env=env)
    assert res.exit_code == 1, res.output
    assert "1 layer check(s) could not run" in res.output
    rows = json.loads(out.read_text())["rows"]
    assert [(r["layer"], r["error"] is not None) for r in rows] == [
        ("warehouse", True),
        ("keyframes", False),
        ("keyframes", False),
    ]
    assert "ServerSelectionTimeoutError" in rows[0]["error"] and rows[0]["enforced"] is None
    assert rows[2]["enforced"] is True and (rows[2]["old_left"], rows[2]["new_left"]) == (0, 3)


def test_retention_refuses_bad_options():
    runner = CliRunner()
    r = runner.invoke(app, ["test", "retention", "--retention", "10", "--wait", "10"], env={"COLUMNS": "200"})
    assert r.exit_code == 2 and "--wait (10 s) must be positive and shorter than --retention" in r.output
    r = runner.invoke(app, ["test", "retention", "--layers", "kafka,tape"], env={"COLUMNS": "200"})
    assert r.exit_code == 2 and "unknown layer(s) tape" in r.output
    r = runner.invoke(app, ["test", "retention", "--json", "/nonexistent-dir/r.json"], env={"COLUMNS": "200"})
    assert r.exit_code == 2 and "--json" in r.output
    r = runner.invoke(app, ["test", "retention", "--bootstrap", "no-port"], env={"COLUMNS": "200"})
    assert r.exit_code == 2 and "--bootstrap 'no-port'" in r.output


def test_sweep_objects_deletes_only_old_objects_under_its_prefix(cloud_config):
    s3 = cloud_config.s3.client()
    bucket = f"edgesight-sweeptest-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    try:
        for i in range(5):
            s3.put_object(Bucket=bucket, Key=f"kf/old-{i}.jpg", Body=b"old")
        s3.put_object(Bucket=bucket, Key="other/old.jpg", Body=b"outside the prefix")
        time.sleep(3.0)  # S3 LastModified is in whole seconds
        for i in range(3):
            s3.put_object(Bucket=bucket, Key=f"kf/new-{i}.jpg", Body=b"new")

        dry = sweep_objects(s3, bucket, prefix="kf/", max_age_s=1.5, dry_run=True)
        assert (dry.scanned, dry.deleted, dry.kept) == (8, 5, 3)
        assert len(s3.list_objects_v2(Bucket=bucket, Prefix="kf/")["Contents"]) == 8  # a dry run deletes nothing

        res = sweep_objects(s3, bucket, prefix="kf/", max_age_s=1.5)
        assert (res.scanned, res.deleted, res.kept, res.bytes_deleted) == (8, 5, 3, 15)
        left = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
        assert left == ["kf/new-0.jpg", "kf/new-1.jpg", "kf/new-2.jpg", "other/old.jpg"]
        with pytest.raises(ValueError, match="max_age_s"):
            sweep_objects(s3, bucket, max_age_s=0)
    finally:
        for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=o["Key"])
        s3.delete_bucket(Bucket=bucket)


def test_expire_documents_deletes_past_the_age_and_keeps_the_rest(cloud_config):
    db = cloud_config.mongo.client()[cloud_config.mongo.warehouse_db]
    coll = db[f"_sweeptest_{uuid.uuid4().hex[:8]}"]  # no TTL index: the server expires nothing by itself
    try:
        now = datetime.now(timezone.utc)
        coll.insert_many([{"k": "old", "ts": now - timedelta(hours=2)} for _ in range(4)])
        coll.insert_many([{"k": "new", "ts": now - timedelta(minutes=30)} for _ in range(3)])
        assert coll.count_documents({"k": "old"}) == 4
        assert expire_documents(coll, max_age_s=3600, now=now) == 4
        assert coll.count_documents({"k": "old"}) == 0 and coll.count_documents({"k": "new"}) == 3
        assert expire_documents(coll, max_age_s=3600, now=now) == 0  # idempotent
    finally:
        db.drop_collection(coll.name)
