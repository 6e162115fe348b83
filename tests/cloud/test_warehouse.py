"""The warehouse against the real embedded MongoDB wire server and S3: init (indexes, TTL,
time-series detection), queries, keyframe URLs, delete, export, IOPS and size limits, CLI."""

from __future__ import annotations

import csv
import json
from datetime import timedelta

import pytest
import yaml
from typer.testing import CliRunner

from cloud.sinks import Item, MongoSink
from cloud.warehouse import (
    Query,
    RetentionConfig,
    Warehouse,
    WarehouseConfig,
    detect_timeseries,
    init_warehouse,
    set_retention,
    ttl_index,
)
from cloud.warehouse.perf import iops, limits
from connectors.smt import build_chain
from connectors.spec import load_connector, variables
from ops.testing.warehouse import T0, make_event

from . import cloud_yaml, make_keyframe, open_url

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def wh(stack, topic_prefix):
    cfg = stack.config
    wcfg = WarehouseConfig(
        collection_prefix=f"{topic_prefix}_", retention=RetentionConfig(detections_days=7, keyframes_days=2.5)
    )
    client = cfg.mongo.client()
    rep = init_warehouse(client, cfg.mongo.warehouse_db, wcfg)
    yield cfg, wcfg, Warehouse.from_config(cfg, wcfg), rep
    client.close()


def _load(w: Warehouse, events) -> None:
    """Write events the way the runner does (the connector's transforms, then idempotent upserts)."""
    chain = build_chain(load_connector("mongo-sink-detections", variables(w_cfg_stub())).config)
    sink = MongoSink(w.detections, max_batch_size=500)
    for i, e in enumerate(events):
        doc = json.loads(e.model_dump_json(by_alias=True, exclude_none=True))
        for _, fn in chain:
            doc = fn(doc)
        sink.add(Item(doc, "t", 0, i))
    res = sink.flush()
    assert not res.failed and res.written == len(events)


def w_cfg_stub():
    from cloud.config import CloudConfig

    return CloudConfig()


def test_init_ttl_indexes_and_timeseries_detection(wh):
    cfg, wcfg, w, rep = wh
    assert set(rep.collections) == {wcfg.collection_prefix + "detections", wcfg.collection_prefix + "keyframes"}
    ttl = ttl_index(w.detections)
    assert ttl is not None and ttl["expireAfterSeconds"] == 7 * 86400
    assert ttl_index(w.keyframes)["expireAfterSeconds"] == int(2.5 * 86400)
    keys = [list(dict(ix["key"])) for ix in w.detections.list_indexes()]
    for needed in (
        ["camera_id", "ts"],
        ["label", "ts"],
        ["zones", "ts"],
        ["camera_id", "track_id", "ts"],
        ["agent_id", "ts"],
    ):
        assert needed in keys, (needed, keys)
    # change retention: verified on the server (collMod, or drop+recreate where collMod is ignored)
    r = set_retention(w.detections, 1.5)
    assert r["expireAfterSeconds"] == 129600 and ttl_index(w.detections)["expireAfterSeconds"] == 129600
    # time-series: the report must match what the server really created
    db = w.db
    probe = detect_timeseries(db)
    name = f"{wcfg.collection_prefix}ts_check"
    try:
        db.create_collection(name, timeseries={"timeField": "ts"})
        info = next(iter(db.list_collections(filter={"name": name})))
        really = info.get("type") == "timeseries"
    except Exception:  # noqa: BLE001 - refused: not supported
        really = False
    finally:
        db.drop_collection(name)
    assert probe.supported == really and probe.detail
    assert rep.timeseries.supported == really
    assert any(("NOT supported" if not really else "supported") in n for n in rep.notes)
    # idempotent
    again = init_warehouse(cfg.mongo.client(), cfg.mongo.warehouse_db, wcfg)
    assert set(again.collections.values()) == {"exists"}
    assert again.ttl[wcfg.collection_prefix + "keyframes"]["action"] == "unchanged"
    assert ttl_index(w.detections)["expireAfterSeconds"] == 7 * 86400  # back to the configured retention


def test_queries(wh):
    cfg, wcfg, w, _ = wh
    evs = []
    for i in range(60):
        evs.append(
            make_event(
                i,
                camera=f"cam-{i % 3}",
                agent=f"agent-{i % 2}",
                label="car" if i % 4 == 0 else "person",
                zones=["door"] if i % 5 == 0 else [],
                track=i % 6,
                ts=T0 + timedelta(seconds=i),
            )
        )
    _load(w, evs)
    assert w.count() == 60
    got = w.find(Query(camera="cam-1"), limit=0)
    assert len(got) == 20 and all(d["camera_id"] == "cam-1" for d in got)
    assert [d["ts"] for d in got] == sorted((d["ts"] for d in got), reverse=True)  # newest first
    assert w.count(Query(label="car")) == 15
    assert w.count(Query(zone="door")) == 12
    assert w.count(Query(agent="agent-0")) == 30
    assert w.count(Query(start=T0 + timedelta(seconds=10), end=T0 + timedelta(seconds=20))) == 10
    assert w.count(Query(camera="cam-0", label="car", start=T0, end=T0 + timedelta(seconds=60))) == 5
    tr = w.track("cam-0", 0)
    assert [d["seq"] for d in tr] == sorted(e.seq for e in evs if e.camera_id == "cam-0" and e.track_id == 0)
    assert len(w.find(Query(), limit=7)) == 7
    with pytest.raises(ValueError, match="timezone"):
        w.count(Query(start=T0.replace(tzinfo=None)))


def test_keyframe_url_delete_and_export(wh, tmp_path):
    cfg, wcfg, w, _ = wh
    s3 = cfg.s3.client()
    kfs = [make_keyframe(i, camera=f"cam-{i % 2}", ts=T0 + timedelta(seconds=i)) for i in range(4)]
    for meta, jpeg, *_ in kfs:
        key = f"keyframes/test/{meta.keyframe_id}.jpg"
        s3.put_object(Bucket=cfg.s3.keyframe_bucket, Key=key, Body=jpeg, ContentType="image/jpeg")
        w.keyframes.insert_one(
            {
                "_id": meta.keyframe_id,
                "bucket": cfg.s3.keyframe_bucket,
                "s3_key": key,
                "object_key": meta.object_key,
                "camera_id": meta.camera_id,
                "ts": meta.ts,
            }
        )
    doc = w.keyframe(kfs[1][0].keyframe_id)
    with open_url(cfg, doc["url"]) as r:
        assert r.read() == kfs[1][1]
    assert w.keyframe("0" * 32) is None

    _load(w, [make_event(i, camera=f"cam-{i % 2}", ts=T0 + timedelta(seconds=i)) for i in range(40)])
    seen = []
    n = w.export(Query(camera="cam-0"), tmp_path / "d.jsonl", "jsonl", progress=lambda a, b: seen.append((a, b)))
    lines = (tmp_path / "d.jsonl").read_text().splitlines()
    assert n == 20 == len(lines) and seen[-1] == (20, 20)
    assert all(json.loads(ln)["camera_id"] == "cam-0" for ln in lines)
    assert json.loads(lines[0])["ts"] < json.loads(lines[-1])["ts"]
    n = w.export(Query(), tmp_path / "d.csv", "csv")
    rows = list(csv.DictReader(open(tmp_path / "d.csv")))
    assert n == 40 == len(rows) and rows[0]["label"] == "person" and rows[0]["ts"].endswith("Z")

    with pytest.raises(ValueError):
        w.delete()
    res = w.delete(camera="cam-1")
    assert res == {"detections": 20, "keyframes": 2, "objects": 2}
    assert w.count(Query(camera="cam-1")) == 0 and w.count() == 20
    gone = [m for m, *_ in kfs if m.camera_id == "cam-1"]
    listed = {
        o["Key"]
        for o in s3.list_objects_v2(Bucket=cfg.s3.keyframe_bucket, Prefix="keyframes/test/").get("Contents", [])
    }
    assert not any(f"keyframes/test/{m.keyframe_id}.jpg" in listed for m in gone)
    res = w.delete(start=T0, end=T0 + timedelta(seconds=10))
    assert res["detections"] == 5 and w.count() == 15


def test_iops_and_limits(wh):
    cfg, _, w, _ = wh
    client = cfg.mongo.client()
    r = iops(client, cfg.mongo.warehouse_db, seconds=0.5)
    assert r["writes"] > 0 and r["reads"] > 0 and r["read_misses"] == 0 and r["stored"] == r["writes"]
    lim = limits(client, cfg.mongo.warehouse_db, batch_docs=3000, big_batch_mb=56, search_steps=2)
    assert lim["server_max_bson_bytes"] >= 16 * 1024 * 1024
    assert lim["largest_document_bytes"] > 8 * 1024 * 1024
    so = lim["sink_over_limit"]  # at the limit: clear error, nothing else lost
    assert (
        so["written"] == 2 and so["others_stored"] == 2 and len(so["failed"]) == 1 and "BSON limit" in so["failed"][0]
    )
    assert so["checkpoint"] == {"t[0]": 3}
    assert lim["batch_docs"] == {**lim["batch_docs"], "sent": 3000, "stored": 3000}
    assert lim["batch_bytes"]["stored"] == lim["batch_bytes"]["docs"] == 7  # 56 MB: more than one 48 MB message


def test_cli(wh, tmp_path):
    from ops.cli import app

    cfg, wcfg, w, _ = wh
    yml = cloud_yaml(cfg, tmp_path / "c.yaml", topic_prefix="x")
    whf = tmp_path / "w.yaml"
    whf.write_text(yaml.safe_dump({"collection_prefix": wcfg.collection_prefix, "retention": {"detections_days": 3}}))
    base = ["--config", str(yml), "--warehouse-config", str(whf)]
    r = CliRunner().invoke(app, ["warehouse", "init", *base, "--json"])
    assert r.exit_code == 0, r.output
    assert r.output.lstrip().startswith("{"), r.output
    assert json.loads(r.output)["ttl"][wcfg.collection_prefix + "detections"]["expireAfterSeconds"] == 3 * 86400
    _load(w, [make_event(i) for i in range(5)])
    r = CliRunner().invoke(app, ["warehouse", "query", *base, "--camera", "cam-1", "--count"])
    assert r.exit_code == 0 and r.output.strip() == "5", r.output
    r = CliRunner().invoke(app, ["warehouse", "retention", *base, "--keyframes-days", "4"])
    assert r.exit_code == 0 and "345600" in r.output, r.output
    r = CliRunner().invoke(app, ["warehouse", "export", str(tmp_path / "o.jsonl"), *base])
    assert r.exit_code == 0 and len((tmp_path / "o.jsonl").read_text().splitlines()) == 5
    r = CliRunner().invoke(app, ["warehouse", "delete", *base])
    assert r.exit_code == 2
    r = CliRunner().invoke(app, ["warehouse", "query", *base, "--start", "2026-01-01T00:00:00"])
    assert r.exit_code == 2 and "timezone" in r.output
