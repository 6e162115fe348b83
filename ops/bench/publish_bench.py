"""Benchmark of the edge publish stage on the embedded stack (Tansu on SeaweedFS S3).

    python -m ops.bench.publish_bench                 # private stack on free ports, all figures
    python -m ops.bench.publish_bench --spool-only    # journal formats only (no servers)
    python -m ops.bench.publish_bench --bootstrap 127.0.0.1:9092 --events 50000

Figures:
  * journal: framed segment-file append / replay rate vs SQLite WAL (one transaction
    per record, which is what "journaled before publish() returns" needs);
  * publish throughput (events/s accepted, and accepted+acknowledged) for lz4 / zstd /
    none, with and without keyframes (one ~real JPEG per ``--kf-every`` events);
  * accept -> broker-ack latency p50/p95 at full throttle and at a paced camera-like rate;
  * spool write rate while the broker is unreachable and replay rate once it is back;
  * the publisher's events/s against a bare confluent-kafka produce loop of the same payloads with the same
    producer settings on the same broker (:func:`measure_publish`, the figure ``cloud-ops bench`` reports).

One noisy 2-core machine: orders of magnitude, not thresholds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from confluent_kafka import Producer

from edge_agent.publish import (
    EdgePublisher,
    KeyframePolicy,
    KeyframeSelector,
    PublishConfig,
    Spool,
    SpoolConfig,
    TrackUpdate,
    edge_topic_specs,
)
from edge_agent.publish.producer import producer_config
from edge_agent.publish.spool import KIND_EVENT
from edgesight.kafka import ensure_topics
from edgesight.log import setup_logging
from edgesight.samples import VTEST, read_video_frames
from edgesight.wire import encode_event, event_key
from ops.bench.common import kafka_settings
from ops.testing import make_stack
from ops.testing.publish import T0, BrokerControl, event_stream


def bench_journal(tmp: Path, n: int) -> dict:
    vals = [encode_event(e) for e in event_stream("bench", 4, n)]
    out = {"record_bytes": sum(map(len, vals)) // n}
    sp = Spool(SpoolConfig(dir=tmp / "seg", max_bytes=8 * 1024**3, segment_bytes=64 * 1024**2)).open()
    t = time.perf_counter()
    for v in vals:
        sp.append(KIND_EVENT, b"cam-1", v)
        sp.maybe_sync()
    sp.sync()
    out["segment_append_per_s"] = n / (time.perf_counter() - t)
    t = time.perf_counter()
    k = 0
    while (r := sp.next_pending()) is not None:
        sp.resolve(r.seq)
        k += 1
    out["segment_replay_per_s"] = k / (time.perf_counter() - t)
    sp.close()

    db = sqlite3.connect(tmp / "spool.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE q (seq INTEGER PRIMARY KEY, kind INT, key BLOB, value BLOB, accept_ms INT)")
    t = time.perf_counter()
    for i, v in enumerate(vals):
        db.execute("INSERT INTO q VALUES (?,?,?,?,?)", (i, 0, b"cam-1", v, 0))  # autocommit: one txn each
    out["sqlite_wal_insert_per_s"] = n / (time.perf_counter() - t)
    t = time.perf_counter()
    cur = db.execute("SELECT seq, value FROM q ORDER BY seq")
    rows = cur.fetchall()
    db.execute("DELETE FROM q WHERE seq <= ?", (rows[-1][0],))
    out["sqlite_read_delete_per_s"] = len(rows) / (time.perf_counter() - t)
    db.close()
    return out


def compression_ratios(n: int = 2000) -> dict:
    """Size of a batch of detection-event JSON after compression (what the uplink carries).
    librdkafka compresses whole batches; the Python codecs here stand in for its lz4 / zstd (level 3)."""
    vals = b"".join(encode_event(e) for e in event_stream("bench", 4, n))
    out = {"raw_bytes_per_event": len(vals) / n}
    try:
        import lz4.frame

        out["lz4_ratio"] = len(vals) / len(lz4.frame.compress(vals))
    except ImportError:
        pass
    try:
        import zstandard

        out["zstd_ratio"] = len(vals) / len(zstandard.ZstdCompressor(level=3).compress(vals))
    except ImportError:
        pass
    return out


def _keyframes(n: int) -> list:
    frames = read_video_frames(VTEST, range(8))
    sel = KeyframeSelector(KeyframePolicy(interval_s=None), "bench")
    out = []
    for i in range(n):
        out += sel.process("cam-0", frames[i % 8], T0 + timedelta(seconds=i), i, [TrackUpdate(i, 0.5, True)]).keyframes
    return out


def bench_publish(
    kafka: dict, tmp: Path, n: int, compression: str, kf_every: int, kfs: list, rate: float = 0.0
) -> dict:
    """The agent's publisher: ``n`` events (and a keyframe every ``kf_every``) accepted, then all acknowledged.
    ``kafka``: the ``publish.kafka`` settings (bootstrap, TLS/SASL)."""
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    cfg = PublishConfig(
        kafka={**kafka, "client_id": "bench"},
        topic_prefix=prefix,
        compression=compression,
        spool={"dir": str(tmp / prefix)},
    )
    ensure_topics(cfg.kafka.client_config(), edge_topic_specs(cfg, partitions=3))
    evs = list(event_stream("bench", 4, n))
    pub = EdgePublisher(cfg, "bench").start()
    kbytes = 0
    t0 = time.perf_counter()
    for i, ev in enumerate(evs):
        pub.publish_event(ev)
        if kf_every and i % kf_every == 0:
            meta, jpeg = kfs[(i // kf_every) % len(kfs)]
            pub.publish_keyframe(meta, jpeg)
            kbytes += len(jpeg)
        if rate:
            d = t0 + (i + 1) / rate - time.perf_counter()
            if d > 0:
                time.sleep(d)
    t1 = time.perf_counter()
    ok = pub.flush(300)
    t2 = time.perf_counter()
    st = pub.stats()
    pub.close(5)
    shutil.rmtree(tmp / prefix, ignore_errors=True)
    return {
        "compression": compression,
        "keyframe_every": kf_every,
        "events": n,
        "flushed": ok,
        "accept_per_s": n / (t1 - t0),
        "acked_per_s": n / (t2 - t0),
        "keyframe_mb_per_s": kbytes / 1e6 / (t2 - t0),
        "lat_p50_ms": (st["latency_s"]["p50"] or 0) * 1000,
        "lat_p95_ms": (st["latency_s"]["p95"] or 0) * 1000,
    }


def bare_produce(kafka: dict, n: int, compression: str = "lz4") -> dict:
    """The baseline of :func:`bench_publish`: a bare confluent-kafka produce loop of the same ``n`` event payloads
    and keys, with the agent producer's own settings (:func:`producer_config`), to fresh topics of the same
    partitioning on the same broker; timed from the first produce() to the last acknowledgement."""
    prefix = f"bare{uuid.uuid4().hex[:6]}"
    cfg = PublishConfig(kafka={**kafka, "client_id": "bench"}, topic_prefix=prefix, compression=compression)
    ensure_topics(cfg.kafka.client_config(), edge_topic_specs(cfg, partitions=3))
    recs = [(event_key(e), encode_event(e)) for e in event_stream("bench", 4, n)]
    acked, failed = [0], [0]

    def on_delivery(err, _msg) -> None:
        if err is None:
            acked[0] += 1
        else:
            failed[0] += 1

    p = Producer(producer_config(cfg))
    topic = cfg.topics.detections
    t0 = time.perf_counter()
    for key, value in recs:
        while True:
            try:
                p.produce(topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
    left = p.flush(300)
    dt = time.perf_counter() - t0
    return {
        "events": n,
        "acked": acked[0],
        "failed": failed[0],
        "unflushed": left,
        "acked_per_s": acked[0] / dt,
        "bytes": sum(len(k) + len(v) for k, v in recs),
    }


def measure_publish(kafka: dict, n: int, tmp: Path) -> dict:
    """Events/s through the agent's publisher (lz4, events only) against :func:`bare_produce` of the same
    payloads, settings and broker; the baseline runs before and after the publisher and is averaged."""
    bare1 = bare_produce(kafka, n)
    agent = bench_publish(kafka, tmp, n, "lz4", 0, [])
    bare2 = bare_produce(kafka, n)
    return {
        "events": n,
        "publisher": agent,
        "bare": [bare1, bare2],
        "publisher_acked_per_s": agent["acked_per_s"],
        "bare_acked_per_s": (bare1["acked_per_s"] + bare2["acked_per_s"]) / 2,
    }


def bench_outage(stack, tmp: Path, n: int) -> dict:
    """Spool write rate with the broker down, replay rate when it is back (durable stack only)."""
    ctl = BrokerControl(stack)
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    cfg = PublishConfig(
        kafka={**kafka_settings(stack.config.kafka), "client_id": "bench"},
        topic_prefix=prefix,
        spool={"dir": str(tmp / prefix)},
        max_inflight_records=1000,
    )
    ensure_topics(cfg.kafka.client_config(), edge_topic_specs(cfg, partitions=3))
    evs = list(event_stream("bench", 4, n))
    pub = EdgePublisher(cfg, "bench").start()
    ctl.freeze()  # the uplink is dead: the broker answers nothing
    t = time.perf_counter()
    for ev in evs:
        pub.publish_event(ev)
    w = n / (time.perf_counter() - t)
    ctl.thaw()
    t = time.perf_counter()
    ok = pub.flush(300)
    r = n / (time.perf_counter() - t)
    st = pub.stats()
    pub.close(5)
    return {
        "events": n,
        "spool_write_per_s_broker_down": w,
        "replay_acked_per_s": r,
        "flushed": ok,
        "replayed": st["spool"]["replayed"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", help="use this broker instead of starting a private stack")
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--kf-every", type=int, default=50, help="one keyframe per this many events")
    ap.add_argument("--spool-only", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    setup_logging("WARNING")
    tmp = Path(tempfile.mkdtemp(prefix="publish-bench-"))
    results: dict = {}
    stack = None
    try:
        results["journal"] = bench_journal(tmp, a.events)
        j = results["journal"]
        print(
            f"journal ({j['record_bytes']} B records): segment append {j['segment_append_per_s']:,.0f}/s, "
            f"replay {j['segment_replay_per_s']:,.0f}/s | sqlite WAL insert {j['sqlite_wal_insert_per_s']:,.0f}/s, "
            f"read+delete {j['sqlite_read_delete_per_s']:,.0f}/s",
            flush=True,
        )
        c = results["compression"] = compression_ratios()
        print("event batch compression: " + ", ".join(f"{k} {v:.1f}" for k, v in c.items()), flush=True)
        if a.spool_only:
            return 0
        if a.bootstrap:
            kafka = {"bootstrap_servers": a.bootstrap}
        else:
            stack = make_stack(tmp / "stack")
            stack.up(progress=lambda m: None)
            kafka = kafka_settings(stack.config.kafka)
        kfs = _keyframes(16)
        kf_mean = sum(len(j) for _, j in kfs) // len(kfs)
        print(f"keyframes: vtest.avi frames, mean JPEG {kf_mean / 1000:.0f} kB", flush=True)
        rows = []
        for comp in ("lz4", "zstd", "none"):
            for kfe in (0, a.kf_every):
                r = bench_publish(kafka, tmp, a.events, comp, kfe, kfs)
                rows.append(r)
                print(
                    f"publish {comp:5s} keyframes={'1/' + str(kfe) if kfe else 'no  '}: accept {r['accept_per_s']:8,.0f} ev/s, "
                    f"accept+ack {r['acked_per_s']:8,.0f} ev/s, kf {r['keyframe_mb_per_s']:5.1f} MB/s, "
                    f"latency p50 {r['lat_p50_ms']:6.1f} ms p95 {r['lat_p95_ms']:6.1f} ms",
                    flush=True,
                )
        results["publish"] = rows
        paced = bench_publish(kafka, tmp, min(a.events, 3000), "lz4", 0, kfs, rate=500.0)
        results["paced_500_per_s"] = paced
        base = results["vs_bare_produce"] = measure_publish(kafka, min(a.events, 10000), tmp)
        print(
            f"publisher {base['publisher_acked_per_s']:,.0f} ev/s vs bare confluent-kafka produce loop "
            f"{base['bare_acked_per_s']:,.0f} ev/s (same payloads, settings, broker) -> ratio "
            f"{base['publisher_acked_per_s'] / base['bare_acked_per_s']:.2f}",
            flush=True,
        )
        print(
            f"paced 500 ev/s lz4: latency p50 {paced['lat_p50_ms']:.1f} ms p95 {paced['lat_p95_ms']:.1f} ms", flush=True
        )
        if stack is not None:
            o = bench_outage(stack, tmp, a.events)
            results["outage"] = o
            print(
                f"broker down: spool write {o['spool_write_per_s_broker_down']:,.0f} ev/s; broker back: replay+ack "
                f"{o['replay_acked_per_s']:,.0f} ev/s ({o['replayed']} from disk)",
                flush=True,
            )
        if a.json:
            print(json.dumps(results, indent=2))
        return 0
    finally:
        if stack is not None:
            stack.down(progress=lambda m: None)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
