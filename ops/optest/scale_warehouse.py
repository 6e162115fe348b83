"""Warehouse scaling: concurrent writers (separate processes) x document sizes, and the in/out limit probe.

Each point: W writer processes start together and insert single documents of the given size into one scratch
collection for ``seconds`` (what a sink without batching or a fleet of small clients does), each timing every
write. IOPS = documents written / wall time; latency percentiles over all writes of the point; the collection
is counted back and must hold every write a writer reported. The one-client IOPS (writes, reads, updates) and
the limit probe (largest document, over-limit behaviour, largest batches) are :mod:`cloud.warehouse.perf`'s.
"""

from __future__ import annotations

import multiprocessing
import time
import uuid
from typing import Any

import numpy as np

from cloud.config import CloudConfig, MongoConfig
from ops.optest.scale import Curve, Progress, ScaleOptions, Series, point


def _writer(mongo: MongoConfig, database: str, coll: str, writer: int, doc_bytes: int, start_at: float, seconds: float):
    """One writer process: insert_one until ``seconds`` after ``start_at``; (count, latencies in ms)."""
    client = mongo.client()
    c = client[database][coll]
    pad = "x" * doc_bytes
    c.database.command("ping")
    time.sleep(max(0.0, start_at - time.time()))
    lat: list[float] = []
    i = 0
    end = start_at + seconds
    while time.time() < end:
        t0 = time.perf_counter()
        c.insert_one({"_id": f"{writer}-{i}", "w": writer, "p": pad})
        lat.append((time.perf_counter() - t0) * 1e3)
        i += 1
    client.close()
    return i, lat


def writers_point(cfg: CloudConfig, writers: int, doc_bytes: int, seconds: float) -> dict[str, Any]:
    database = cfg.mongo.warehouse_db
    coll = f"_scale_{uuid.uuid4().hex[:8]}"
    client = cfg.mongo.client()
    ctx = multiprocessing.get_context("spawn")
    try:
        start_at = time.time() + 3.0 + 0.7 * writers  # every writer imported and connected before the clock starts
        with ctx.Pool(writers) as pool:
            res = pool.starmap(
                _writer, [(cfg.mongo, database, coll, w, doc_bytes, start_at, seconds) for w in range(writers)]
            )
        n = sum(r[0] for r in res)
        lat = np.concatenate([np.asarray(r[1]) for r in res]) if n else np.zeros(1)
        stored = client[database][coll].count_documents({})
        return {
            "writes": n,
            "stored": stored,
            "iops": round(n / seconds, 1),
            "per_writer_iops": round(n / seconds / writers, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p95_ms": round(float(np.percentile(lat, 95)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "mb_per_s": round(n * doc_bytes / seconds / 2**20, 2),
        }
    finally:
        client[database][coll].drop()


def warehouse_curves(cfg: CloudConfig, opts: ScaleOptions, progress: Progress, suffix: str) -> list[Curve]:
    from cloud.warehouse.perf import iops, limits

    seconds = opts.seconds
    iops_curve = Curve(
        name="warehouse",
        service="warehouse",
        title=f"Warehouse (MongoDB wire server): concurrent writers x document size ({suffix})",
        x="writers",
        x_label="concurrent writer processes (insert_one)",
        y_label="writes/s",
        y2_label="p95 write latency, ms",
        series=[Series("iops", "writes/s", group="doc_bytes"), Series("p95_ms", "p95 ms", axis=2, group="doc_bytes")],
        columns=["writers", "doc_bytes", "iops", "per_writer_iops", "p50_ms", "p95_ms", "p99_ms", "mb_per_s", "writes"]
        + ["stored"],
        notes=[f"{seconds:g} s per point, all writers started together, one scratch collection per point."],
    )
    for size in opts.doc_sizes:
        for w in range(1, opts.max_writers + 1):
            progress(f"warehouse: {w} writer(s), {size:,} B documents")
            r = point(
                iops_curve.rows,
                {"writers": w, "doc_bytes": size},
                lambda w=w, size=size: writers_point(cfg, w, size, seconds),
            )
            progress(f"warehouse: {w} writer(s), {size:,} B: {r.get('iops') or r.get('error')} writes/s")
    client = cfg.mongo.client()
    try:
        progress("warehouse: one-client IOPS (cloud.warehouse.perf.iops)")
        iops_curve.extra["one_client"] = iops(client, cfg.mongo.warehouse_db, seconds=min(3.0, seconds))
    except Exception as e:  # noqa: BLE001 - reported, the curve stands
        iops_curve.extra["one_client"] = {"error": f"{type(e).__name__}: {e}"[:500]}
    if opts.limits:
        progress("warehouse: incoming/outgoing limits (cloud.warehouse.perf.limits)")
        try:
            iops_curve.extra["limits"] = limits(client, cfg.mongo.warehouse_db)
        except Exception as e:  # noqa: BLE001
            iops_curve.extra["limits"] = {"error": f"{type(e).__name__}: {e}"[:500]}
        lim = iops_curve.extra["limits"]
        if "error" not in lim:
            iops_curve.notes.append(
                f"limits: largest document {lim['largest_document_bytes']:,} B; over the limit: "
                f"{lim['over_limit']}; sink over the limit: written {lim['sink_over_limit']['written']}, "
                f"others stored {lim['sink_over_limit']['others_stored']}; {lim['batch_docs']['sent']:,} docs in one "
                f"insert_many: {lim['batch_docs']['stored']:,} stored in {lim['batch_docs']['seconds']} s; "
                f"{lim['batch_bytes']['sent_mb']} MB batch: {lim['batch_bytes']['stored']} of {lim['batch_bytes']['docs']} "
                f"documents stored in {lim['batch_bytes']['seconds']} s"
            )
        else:
            iops_curve.notes.append(f"limits: {lim['error']}")
    one = iops_curve.extra["one_client"]
    if "error" not in one:
        iops_curve.notes.append(
            f"one client, {one['doc_bytes']} B: {one['writes_per_s']} writes/s, {one['reads_per_s']} reads/s, "
            f"{one['updates_per_s']} updates/s"
        )
    return [iops_curve]
