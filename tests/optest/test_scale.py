"""``cloud-ops test scale`` at a small size through the real CLI on the session stack (issue #14).

Each test checks the report's figures against what it can count itself: documents in the warehouse and the
group's committed offsets (read here with a separate client), records on a topic, the JSON's rows against the
PNG's plotted points. Timing is never asserted: the curves' shapes are the report's business.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ops.cli import app
from ops.optest.scale import write_cloud_yaml

pytestmark = pytest.mark.timeout(300)


def run_scale(cloud_config, tmp_path: Path, *args: str) -> tuple[Path, str]:
    cfg_yaml = write_cloud_yaml(cloud_config, tmp_path / "cloud.yaml")
    out = tmp_path / "scale"
    res = CliRunner().invoke(app, ["test", "scale", "--config", str(cfg_yaml), "--out", str(out), *args])
    assert res.exit_code == 0, res.output[-4000:]
    return out, res.output


def load(out: Path, name: str) -> dict:
    doc = json.loads((out / f"{name}.json").read_text())
    png = (out / f"{name}.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR", "not a PNG"
    w, h = struct.unpack(">II", png[16:24])
    assert w > 100 and h > 100
    assert doc["plot"] == f"{name}.png"
    assert doc["machine"]["cores"] >= 1 and str(doc["machine"]["cores"]) in doc["title"]
    # the plot drew one point per numeric figure of each series in the rows without an error
    numeric = sum(
        1
        for s in doc["series"]
        for r in doc["rows"]
        if not r.get("error") and isinstance(r.get(s["key"]), int | float) and not isinstance(r.get(s["key"]), bool)
    )
    assert doc["plotted_points"] == numeric
    return doc


def committed(cloud_config, group: str, topic: str, partitions: int) -> int:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({**cloud_config.kafka.client_config(), "group.id": group, "enable.auto.commit": False})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=15)
        return sum(max(0, tp.offset) for tp in got)
    finally:
        c.close()


def test_scale_sinks_counts_back(cloud_config, tmp_path):
    """Two sink instances (processes) on two partitions: every point's committed offsets, the documents in its
    warehouse collection and the report agree, and a curve of two points is plotted."""
    out, output = run_scale(
        cloud_config,
        tmp_path,
        "--service",
        "sinks",
        "--max-instances",
        "2",
        "--partitions",
        "2",
        "--seconds",
        "2",
        "--records",
        "4000",
        "--keep",
    )
    doc = load(out, "sinks-p2")
    assert "instances in one consumer group, 2 partitions" in doc["title"]
    assert [r["instances"] for r in doc["rows"]] == [1, 2]
    assert doc["extra"]["records"] == 4000
    db = cloud_config.mongo.client()[cloud_config.mongo.warehouse_db]
    for r in doc["rows"]:
        assert not r.get("error"), r
        assert r["exit_codes"] == [0] * r["instances"]  # each instance stopped cleanly on SIGTERM
        assert len(r["summaries"]) == r["instances"]
        coll = db[r["collection"]]
        stored = coll.count_documents({})
        group_committed = committed(cloud_config, r["group"], r["topic"], 2)
        assert stored == r["stored"] == group_committed == r["committed"] > 0
        assert r["lag_end"] == 4000 - r["committed"]
        assert r["records_per_s"] > 0
        if r["drained"]:  # seen drained while running (the last batch may also be committed at the stop)
            assert r["committed"] == 4000
        # every record the instances' summaries say they wrote is in the collection, none twice (upsert by _id)
        out_total = sum(t["records_out"] for s in r["summaries"] for t in s["summary"])
        assert out_total >= stored
        coll.drop()
    assert "MongoDB sink" in output and "sinks-p2.png" in output
    # the S3 keyframe sink's curve: every committed record is an object with its index document
    s3doc = load(out, "sinks-s3-p2")
    assert [r["instances"] for r in s3doc["rows"]] == [1, 2]
    s3 = cloud_config.s3.client()
    for r in s3doc["rows"]:
        assert not r.get("error"), r
        assert r["exit_codes"] == [0] * r["instances"]
        coll = db[r["collection"]]
        stored = coll.count_documents({})
        assert stored == r["stored"] == committed(cloud_config, r["group"], r["topic"], 2) == r["committed"] > 0
        index = coll.find_one({})
        assert index is not None and s3.head_object(Bucket=index["bucket"], Key=index["s3_key"])["ContentLength"] > 0
        coll.drop()
    assert "S3 keyframe sink" in output and "sinks-s3-p2.png" in output


def test_scale_warehouse_counts_back(cloud_config, tmp_path):
    """Concurrent writer processes: every write a writer reported is in the collection, and IOPS = writes/s."""
    out, _ = run_scale(
        cloud_config,
        tmp_path,
        "--service",
        "warehouse",
        "--max-writers",
        "2",
        "--doc-sizes",
        "256,2048",
        "--seconds",
        "1",
        "--no-limits",
    )
    doc = load(out, "warehouse")
    assert [(r["writers"], r["doc_bytes"]) for r in doc["rows"]] == [(1, 256), (2, 256), (1, 2048), (2, 2048)]
    for r in doc["rows"]:
        assert not r.get("error"), r
        assert r["writes"] == r["stored"] > 0
        assert r["iops"] == pytest.approx(r["writes"] / 1.0, abs=0.1)
        assert r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
    assert doc["extra"]["one_client"]["stored"] == doc["extra"]["one_client"]["writes"]
    assert "limits" not in doc["extra"]


@pytest.mark.slow
def test_scale_engineering_counts_back(cloud_config, tmp_path):
    out, _ = run_scale(
        cloud_config,
        tmp_path,
        "--service",
        "engineering",
        "--max-instances",
        "3",
        "--partitions",
        "2",
        "--seconds",
        "3",
        "--records",
        "4000",
        "--keep",
    )
    from cloud.engineering.store import count_facts

    doc = load(out, "engineering-p2")
    client = cloud_config.mongo.client()
    for r in doc["rows"]:
        assert not r.get("error"), r
        assert count_facts(client[r["database"]]) == r["stored"] == r["committed"] > 0
        client.drop_database(r["database"])
    # three processes ran in the group and between them read both partitions
    third = doc["rows"][2]
    assert third["instances"] == 3 and third["exit_codes"] == [0, 0, 0]
    assert set().union(*(s["partitions"] for s in third["summaries"])) == {0, 1}


@pytest.mark.slow
def test_scale_stream_and_model(cloud_config, tmp_path, model_dir):
    out, _ = run_scale(
        cloud_config,
        tmp_path,
        "--service",
        "stream,model",
        "--max-cameras",
        "2",
        "--max-agents",
        "2",
        "--seconds",
        "2",
        "--max-threads",
        "1",
        "--batches",
        "1,2",
        "--model-dir",
        str(model_dir),
    )
    cams = load(out, "stream-cameras")
    assert [r["cameras"] for r in cams["rows"]] == [1, 2]
    assert all(not r.get("error") and r["delivered_fps_total"] > 0 for r in cams["rows"])
    agents = load(out, "stream-agents")
    for r in agents["rows"]:
        assert not r.get("error"), r
        assert r["all_flushed"] and r["acked"] == r["on_topic"] == r["agents"] * 400 * 2
    model = load(out, "model")
    assert [(r["threads"], r["batch"]) for r in model["rows"]] == [(1, 1), (1, 2)]
    assert all(not r.get("error") and r["frames"] == r["calls"] * r["batch"] for r in model["rows"])
