"""Engineering consumer throughput on the embedded stack, against the raw-consume ceiling of the same run.

    .venv/bin/python -m ops.bench.engineering_bench --events 20000

Starts a private stack (Tansu + nx-27017 + SeaweedFS + mosquitto on free ports) unless ``--bootstrap`` and
``--mongo`` point at running servers, produces N synthetic detection events (8 cameras, tracks through zones and
across a line), then, each in a fresh consumer group and timed from the first record received (group join
excluded):

1. raw consume: records polled, nothing else (the ceiling for one process);
2. consume + decode: the wire-contract validation (pydantic) and fact extraction only;
3. consume + bulk_write: raw consume, ``json.loads`` and one ``bulk_write`` of inserts per batch with the same
   write concern and a synchronous commit per batch (the baseline ``cloud-ops bench`` reports);
4. engineering: the real consumer (decode, fact ledger insert, recompute + guarded replace of the four analytics
   collections, w=majority, synchronous commit per batch).

Figures are for one noisy 2-core box: orders of magnitude, never thresholds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer
from pymongo import InsertOne, WriteConcern

from cloud.config import CloudConfig
from cloud.engineering.engineering import build_engineering, decode_record
from cloud.engineering.settings import EngineeringConfig
from cloud.engineering.store import WRITE_SECONDS, count_facts
from cloud.engineering.synthetic import load_stream
from edgesight.kafka import TopicSpec, ensure_topics
from edgesight.log import setup_logging
from edgesight.wire import Topics, dumps


def _consume_timed(conf: dict, topic: str, n: int, fn=None, batch: int = 1000, on_batch=None) -> tuple[float, int]:
    """Consume ``n`` records of ``topic`` in a fresh group (``fn`` on each value, ``on_batch(consumer, records)``
    on each polled batch); seconds from the first record received to the end, and the count."""
    c = Consumer({**conf, "enable.auto.commit": False, "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    c.subscribe([topic])
    got, t0, deadline = 0, None, time.monotonic() + 300
    while got < n and time.monotonic() < deadline:
        msgs = c.consume(num_messages=batch, timeout=0.5)
        if not msgs:
            continue
        if t0 is None:
            t0 = time.perf_counter()
        good = [m for m in msgs if m.error() is None]
        if fn is not None:
            for m in good:
                fn(m.value())
        if on_batch is not None and good:
            on_batch(c, good)
        got += len(good)
    dt = time.perf_counter() - (t0 or time.perf_counter())
    c.close()
    return dt, got


def _bulk_write_batch(coll):
    """The engineering figure's baseline, per polled batch: ``json.loads`` of each record, one ``bulk_write`` of
    inserts into ``coll`` (its write concern), then a synchronous offset commit."""

    def on_batch(c, msgs) -> None:
        coll.bulk_write([InsertOne(json.loads(m.value())) for m in msgs], ordered=False)
        c.commit(asynchronous=False)

    return on_batch


def measure(
    cfg: CloudConfig,
    events: int,
    *,
    cameras: int = 8,
    partitions: int = 2,
    batch_size: int = 1000,
    write_concern: str = "majority",
    broker_storage: str = "external",
) -> dict:
    """The engineering consumer's events/s against raw consume, consume + decode and a raw consume +
    ``bulk_write`` loop, on the broker and MongoDB of ``cfg``, each in a fresh consumer group."""
    tag = f"bench{uuid.uuid4().hex[:8]}"
    cfg = cfg.model_copy(
        update={
            "kafka": cfg.kafka.model_copy(update={"topic_prefix": tag, "session_timeout_ms": 6000}),
            "mongo": cfg.mongo.model_copy(update={"analytics_db": f"an_{tag}"}),
        }
    )
    topics = Topics(tag)
    kconf = cfg.kafka.client_config()
    ensure_topics(kconf, [TopicSpec(topics.detections, partitions)])
    evs = list(load_stream(events, cameras=cameras))
    recs = [(f"{e.agent_id}/{e.camera_id}".encode(), dumps(e)) for e in evs]
    n = len(recs)
    avg = sum(len(v) for _, v in recs) / n
    p = Producer({**kconf, "acks": "all", "enable.idempotence": True, "linger.ms": 20})
    t = time.perf_counter()
    for k, v in recs:
        while True:
            try:
                p.produce(topics.detections, key=k, value=v)
                break
            except BufferError:
                p.poll(0.05)
    p.flush(60)
    produce_s = time.perf_counter() - t
    getattr(p, "close", lambda: None)()

    raw_s, raw_n = _consume_timed({**kconf, "group.id": f"{tag}-raw"}, topics.detections, n, batch=batch_size)
    dec_s, dec_n = _consume_timed(
        {**kconf, "group.id": f"{tag}-decode"}, topics.detections, n, decode_record, batch=batch_size
    )
    client = cfg.mongo.client()
    db = client[cfg.mongo.analytics_db]
    wc = WriteConcern("majority") if write_concern == "majority" else WriteConcern(w=1)
    bulk = db.get_collection("bench_bulk_write", write_concern=wc)
    bulk_s, bulk_n = _consume_timed(
        {**kconf, "group.id": f"{tag}-bulk"}, topics.detections, n, batch=batch_size, on_batch=_bulk_write_batch(bulk)
    )
    bulk.drop()

    loop = build_engineering(
        cfg,
        EngineeringConfig(
            group_id=f"{tag}-eng",
            batch_size=batch_size,
            session_timeout_ms=6000,
            write_concern=write_concern,
        ),
    )
    w0 = WRITE_SECONDS._sum.get()
    stats = loop.run(until_idle_s=3.0, max_seconds=600)
    eng_s = (stats.last_commit_at or 0.0) - (stats.first_record_at or 0.0)  # first record -> last commit
    write_s = WRITE_SECONDS._sum.get() - w0
    docs = {
        "facts": count_facts(db),
        **{c: db[c].count_documents({}) for c in ("counts_minute", "line_crossings_minute", "tracks", "dwell")},
    }
    res = {
        "events": n,
        "avg_event_bytes": round(avg),
        "partitions": partitions,
        "batch_size": batch_size,
        "broker_storage": broker_storage,
        "write_concern": loop.handler.store.wc.document,
        "produce_eps": round(n / produce_s),
        "raw_consume_eps": round(raw_n / raw_s) if raw_s else None,
        "consume_decode_eps": round(dec_n / dec_s) if dec_s else None,
        "consume_bulk_write_eps": round(bulk_n / bulk_s) if bulk_s else None,
        "consume_bulk_write_records": bulk_n,
        "engineering_eps": round(stats.records / eng_s) if eng_s else None,
        "engineering_records": stats.records,
        "engineering_batches": stats.batches,
        "store_share": round(write_s / eng_s, 3) if eng_s else None,
        "docs": docs,
    }
    if not (stats.records == n and docs["facts"] == n and bulk_n == n):
        raise RuntimeError(f"records lost: engineering {stats.records}, facts {docs['facts']}, bulk {bulk_n} of {n}")
    res["engineering_vs_raw_ratio"] = round(res["engineering_eps"] / res["raw_consume_eps"], 4)
    res["engineering_vs_bulk_write_ratio"] = round(res["engineering_eps"] / res["consume_bulk_write_eps"], 4)
    res["decode_vs_raw_ratio"] = round(res["consume_decode_eps"] / res["raw_consume_eps"], 4)
    client.drop_database(cfg.mongo.analytics_db)
    return res


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--cameras", type=int, default=8)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--storage", choices=("s3", "memory"), default="s3", help="broker storage of the private stack")
    ap.add_argument("--write-concern", choices=("majority", "1"), default="majority")
    ap.add_argument("--bootstrap", help="use this running broker instead of a private stack (with --mongo)")
    ap.add_argument("--mongo", help="mongodb:// URI of a running server (with --bootstrap)")
    args = ap.parse_args(argv)
    setup_logging("WARNING")

    st = None
    if args.bootstrap and args.mongo:
        cfg = CloudConfig.model_validate({"kafka": {"bootstrap_servers": args.bootstrap}, "mongo": {"uri": args.mongo}})
    else:
        from ops.stack import Stack, private_settings

        st = Stack(settings=private_settings(Path(tempfile.mkdtemp(prefix="eng-bench-")), broker_storage=args.storage))
        print(f"starting a private stack ({args.storage} broker storage) ...", flush=True)
        st.up()
        cfg = st.config
    try:
        res = measure(
            cfg,
            args.events,
            cameras=args.cameras,
            partitions=args.partitions,
            batch_size=args.batch_size,
            write_concern=args.write_concern,
            broker_storage=args.storage if st else "external",
        )
        n = res["events"]
        print(
            f"events={n} ({res['avg_event_bytes']} B avg), {args.partitions} partitions, batch {args.batch_size}, "
            f"broker storage {res['broker_storage']}, write concern {res['write_concern']}"
        )
        print(f"  produce (acks=all)          {res['produce_eps']:>9,} ev/s")
        print(f"  raw consume (ceiling)       {res['raw_consume_eps']:>9,} ev/s")
        print(
            f"  consume + decode            {res['consume_decode_eps']:>9,} ev/s   ({res['decode_vs_raw_ratio']:.1%} of raw)"
        )
        print(
            f"  consume + bulk_write        {res['consume_bulk_write_eps']:>9,} ev/s   (raw loop, same write concern)"
        )
        print(
            f"  engineering (per process)   {res['engineering_eps']:>9,} ev/s   ({res['engineering_vs_raw_ratio']:.1%} of raw, "
            f"{res['engineering_vs_bulk_write_ratio']:.1%} of consume + bulk_write); "
            f"store (ledger + recompute + writes) {res['store_share']:.0%} of its time"
        )
        print(f"  documents: {res['docs']}")
        print(json.dumps(res))
        return res
    finally:
        if st is not None:
            st.down()


if __name__ == "__main__":
    main()
