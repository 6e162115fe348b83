"""IOPS and in/out limit probes of the warehouse server (``cloud-ops warehouse iops|limits``).

They work in a scratch collection (dropped at the end) and report figures, never judge them:
thresholds belong to whoever reads the report on known hardware."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import bson
from pymongo.errors import DocumentTooLarge, PyMongoError

from cloud.sinks.base import Item
from cloud.sinks.mongo import MongoSink, max_bson_size


def _scratch(client, database: str):
    return client[database][f"_perf_{uuid.uuid4().hex[:8]}"]


def iops(client, database: str, *, seconds: float = 3.0, doc_bytes: int = 256) -> dict[str, Any]:
    """Sustained small single-document writes then reads (one client, one at a time)."""
    coll = _scratch(client, database)
    try:
        pad = "x" * doc_bytes
        ids: list[int] = []
        t0 = time.perf_counter()
        i = 0
        while time.perf_counter() - t0 < seconds:
            coll.insert_one({"_id": i, "p": pad})
            ids.append(i)
            i += 1
        w_el = time.perf_counter() - t0
        t0 = time.perf_counter()
        r = miss = 0
        while time.perf_counter() - t0 < seconds:
            if coll.find_one({"_id": random.choice(ids)}) is None:
                miss += 1
            r += 1
        r_el = time.perf_counter() - t0
        t0 = time.perf_counter()
        u = 0
        while time.perf_counter() - t0 < seconds / 2:
            coll.update_one({"_id": random.choice(ids)}, {"$set": {"n": u}})
            u += 1
        u_el = time.perf_counter() - t0
        return {
            "doc_bytes": doc_bytes,
            "writes": i,
            "writes_per_s": round(i / w_el, 1),
            "reads": r,
            "reads_per_s": round(r / r_el, 1),
            "read_misses": miss,
            "updates_per_s": round(u / u_el, 1),
            "stored": coll.count_documents({}),
        }
    finally:
        coll.drop()


def limits(
    client, database: str, *, batch_docs: int = 20000, big_batch_mb: int = 40, search_steps: int = 12
) -> dict[str, Any]:
    """Largest document accepted, behaviour just over the BSON limit (through the sink: clear error,
    the rest of the batch written), largest single insert_many (count, and bytes beyond one message)."""
    coll = _scratch(client, database)
    out: dict[str, Any] = {}
    try:
        limit = max_bson_size(client)
        out["server_max_bson_bytes"] = limit
        hello = client.admin.command("hello")
        out["server_max_message_bytes"] = hello.get("maxMessageSizeBytes")
        out["server_max_write_batch"] = hello.get("maxWriteBatchSize")
        # largest document: binary search on a string payload; every accepted one is read back whole.
        overhead = len(bson.encode({"_id": 0, "b": ""}))
        lo, hi, best = 1 << 20, limit - overhead + 1, 0
        n, refusals = 0, []
        while lo < hi and n < search_steps:
            mid = (lo + hi) // 2
            try:
                coll.insert_one({"_id": n, "b": "x" * mid})
                got = coll.find_one({"_id": n})
                if got is None or len(got["b"]) != mid:
                    raise RuntimeError(f"stored {mid} bytes, read back {None if got is None else len(got['b'])}")
                coll.delete_one({"_id": n})
                best, lo = mid, mid + 1
            except (DocumentTooLarge, PyMongoError, RuntimeError) as e:
                refusals.append(f"{mid + overhead} bytes: {type(e).__name__}: {str(e)[:160]}")
                hi = mid
            n += 1
        out["largest_document_bytes"] = best + overhead
        out["refusals_below_limit"] = refusals
        # one byte over: the client refuses before sending, with a clear error
        try:
            coll.insert_one({"_id": "over", "b": "x" * (limit - overhead + 1)})
            out["over_limit"] = (
                f"ACCEPTED a {limit + 1}-byte document: the server does not enforce its own "
                f"{limit}-byte limit (MongoDB refuses with BSONObjectTooLarge); the sink checks "
                f"sizes itself before writing"
            )
        except DocumentTooLarge as e:
            out["over_limit"] = f"refused: {type(e).__name__}: {e}"
        # through the sink: small, too-large, small -> the small ones are written, the big one reported
        sink = MongoSink(coll, max_batch_size=500)
        docs = [{"_id": "s1", "v": 1}, {"_id": "big", "b": "x" * (limit + 10)}, {"_id": "s2", "v": 2}]
        for i, d in enumerate(docs):
            sink.add(Item(d, "t", 0, i))
        res = sink.flush()
        out["sink_over_limit"] = {
            "written": res.written,
            "failed": [str(e) for _, e in res.failed],
            "others_stored": coll.count_documents({"_id": {"$in": ["s1", "s2"]}}),
            "checkpoint": {f"{t}[{p}]": o for (t, p), o in res.checkpoint.items()},
        }
        coll.delete_many({})
        # largest batch: batch_docs small docs in one insert_many (the driver splits by maxWriteBatchSize)
        t0 = time.perf_counter()
        coll.insert_many([{"_id": i, "p": "y" * 100} for i in range(batch_docs)], ordered=False)
        out["batch_docs"] = {
            "sent": batch_docs,
            "stored": coll.count_documents({}),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        coll.delete_many({})
        # bytes beyond one 48 MB message: the driver splits; everything must arrive
        each = 8 * 1024 * 1024
        k = max(1, (big_batch_mb * 1024 * 1024) // each)
        t0 = time.perf_counter()
        coll.insert_many([{"_id": i, "b": "z" * each} for i in range(k)], ordered=True)
        stored = coll.count_documents({})
        out["batch_bytes"] = {
            "sent_mb": round(k * each / 2**20, 1),
            "docs": k,
            "stored": stored,
            "seconds": round(time.perf_counter() - t0, 2),
        }
        return out
    finally:
        coll.drop()
