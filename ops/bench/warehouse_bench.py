"""Warehouse ingest benchmark: docs/s through the sink runner (Kafka -> validate -> transforms ->
MongoDB bulk upserts -> commit) against a raw pymongo ``insert_many`` loop of the same documents on
the same server, in the same run (the baseline is measured before and after, and averaged).
Also the warehouse IOPS and size-limit probes.

    python -m ops.bench.warehouse_bench                 # private embedded stack on free ports
    python -m ops.bench.warehouse_bench --config c.yaml # an already running stack / cluster

Prints JSON lines and a summary; the ratio sink/raw is the figure to track (target >= 0.7).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path


def _docs(events, chain):
    out = []
    for e in events:
        doc = json.loads(e.model_dump_json(by_alias=True, exclude_none=True))
        for _, fn in chain:
            doc = fn(doc)
        out.append(doc)
    return out


def raw_insert(coll, docs, batch: int) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(docs), batch):
        coll.insert_many(docs[i : i + batch], ordered=False)
    el = time.perf_counter() - t0
    assert coll.count_documents({}) == len(docs)
    return len(docs) / el


def run(cfg, n: int, batch: int, probes: bool) -> dict:
    from confluent_kafka.admin import AdminClient, NewTopic

    from cloud.warehouse import Names, WarehouseConfig, init_warehouse
    from cloud.warehouse.perf import iops, limits
    from connectors.runner import ConnectorRunner
    from connectors.smt import build_chain
    from connectors.spec import load_connector, variables
    from edgesight.kafka import ensure_topics
    from edgesight.wire import Topics, encode_event
    from ops.testing.warehouse import make_event, produce

    prefix = f"bench{uuid.uuid4().hex[:6]}"
    cfg = cfg.model_copy(
        update={"kafka": cfg.kafka.model_copy(update={"topic_prefix": prefix, "session_timeout_ms": 6000})}
    )
    client = cfg.mongo.client()
    db = client[cfg.mongo.warehouse_db]
    wh = WarehouseConfig(collection_prefix=f"{prefix}_")
    init_warehouse(client, cfg.mongo.warehouse_db, wh)
    spec = load_connector(
        "mongo-sink-detections", variables(cfg, collection_prefix=wh.collection_prefix, name_prefix=f"{prefix}-")
    )
    spec.config["max.batch.size"] = str(batch)
    chain = build_chain(spec.config)
    events = [make_event(i, camera=f"cam-{i % 16}", zones=["door"] if i % 3 == 0 else []) for i in range(n)]
    docs = _docs(events, chain)

    # baseline #1: raw insert_many into a collection with the same indexes
    raw = db[f"{prefix}_raw1"]
    for ix in db[Names(wh.collection_prefix).detections].list_indexes():
        if ix["name"] != "_id_":
            raw.create_index(
                list(dict(ix["key"]).items()),
                **({"expireAfterSeconds": ix["expireAfterSeconds"]} if "expireAfterSeconds" in ix else {}),
            )
    raw1 = raw_insert(raw, [dict(d) for d in docs], batch)

    topics = Topics(prefix)
    admin = AdminClient(cfg.kafka.client_config())
    admin.create_topics([NewTopic(topics.detections, 4, 1)])[topics.detections].result(15)
    t0 = time.perf_counter()
    produce(cfg, topics.detections, [(e.event_id.encode(), encode_event(e), None) for e in events])
    produce_s = time.perf_counter() - t0

    runner = ConnectorRunner([spec], cfg, tasks=1, max_poll_records=max(batch, 500))
    ensure_topics(cfg.kafka.client_config(), runner.wanted_topics())
    coll = db[Names(wh.collection_prefix).detections]
    runner.start()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        t = runner.tasks[0]
        if t.stats["records_out"] >= n or runner.errors():
            break
        time.sleep(0.05)
    runner.stop()
    if runner.errors():
        raise RuntimeError(f"runner failed: {runner.errors()}")
    st = runner.tasks[0].stats
    stored = coll.count_documents({})
    sink_rate = n / (st["last_commit_at"] - st["first_record_at"])

    raw2c = db[f"{prefix}_raw2"]
    for ix in raw.list_indexes():
        if ix["name"] != "_id_":
            raw2c.create_index(
                list(dict(ix["key"]).items()),
                **({"expireAfterSeconds": ix["expireAfterSeconds"]} if "expireAfterSeconds" in ix else {}),
            )
    raw2 = raw_insert(raw2c, [dict(d) for d in docs], batch)
    baseline = (raw1 + raw2) / 2
    out = {
        "docs": n,
        "batch": batch,
        "doc_bytes": len(encode_event(events[0])),
        "produce_msgs_per_s": round(n / produce_s),
        "raw_insert_many_docs_per_s": [round(raw1), round(raw2)],
        "sink_runner_docs_per_s": round(sink_rate),
        "stored": stored,
        "ratio_sink_over_raw": round(sink_rate / baseline, 3),
        "commits": st["commits"],
        "batches": st["batches"],
        "runner_seconds": {k: round(v, 2) for k, v in runner.tasks[0].timing.items()},
    }
    if probes:
        out["iops"] = iops(client, cfg.mongo.warehouse_db, seconds=3)
        out["limits"] = limits(client, cfg.mongo.warehouse_db)
    for c in (raw, raw2c, coll, db[Names(wh.collection_prefix).keyframes]):
        c.drop()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, help="Cloud config YAML of a running stack (default: start a private one).")
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=500, help="max.batch.size / insert_many batch")
    ap.add_argument("--no-probes", action="store_true", help="Skip the IOPS and limits probes.")
    a = ap.parse_args(argv)
    from cloud.config import CloudConfig
    from edgesight.log import setup_logging

    setup_logging("WARNING")
    if a.config:
        res = run(CloudConfig.load(a.config), a.docs, a.batch, not a.no_probes)
    else:
        from ops.testing import make_stack

        with tempfile.TemporaryDirectory(prefix="es-bench-") as d:
            st = make_stack(Path(d))
            st.up()
            try:
                res = run(st.config, a.docs, a.batch, not a.no_probes)
            finally:
                st.down()
    print(json.dumps(res, indent=2))
    print(
        f"\nwarehouse ingest: sink runner {res['sink_runner_docs_per_s']} docs/s vs raw insert_many "
        f"{res['raw_insert_many_docs_per_s']} docs/s -> ratio {res['ratio_sink_over_raw']} (target >= 0.7)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
