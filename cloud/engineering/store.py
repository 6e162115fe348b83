"""MongoDB side of the engineering consumer: the fact ledger and the analytics documents.

Idempotency design (exactly-once *effect* over at-least-once delivery)
----------------------------------------------------------------------
``$inc`` counters double count when a batch is redelivered after a crash
between the write and the offset commit, or when the edge re-sends. Instead:

1. **Fact ledger**, bucketed: ``facts_minute`` (one document per camera and
   minute) holds the facts of its bucket in a map keyed by ``event_id`` (deterministic on the edge, so a re-sent event
   has the same id), written with ``$set: {"facts.<event_id>": fact}``: one
   atomic, idempotent update per bucket per batch (a redelivered or re-sent
   event sets the same value again; nothing is counted twice). One document per
   event with an ``_id = event_id`` insert was the first design: correct, but
   one write per event; ~8x slower on the embedded server. Size limit: a bucket
   document stays under MongoDB's 16 MB up to ~30k events per camera-minute.
   A track's facts are found through the ``minutes`` list of its ``tracks``
   document (the camera-minutes it appears in), so each fact is written once.
2. **Aggregates are recomputed, not incremented**: every analytics document is a
   pure function (:mod:`cloud.engineering.facts`) of *all* facts of its bucket
   ((camera, minute) for counts and crossings, track for summaries and dwell),
   written with ``replace_one(upsert)``. Writing it twice writes the same thing.
   A crash between 1 and 2 is repaired by the redelivery: the facts are
   already there and the buckets of the batch are recomputed anyway. Documents
   equal to what this process last wrote are skipped (the cache is per process).
3. **Freshness guard**: each document carries ``n_events``, the number of facts
   it was computed from. Facts only grow, so the replace filter is
   ``{_id, n_events: {$lte: n}}``: a writer holding an older view (a zombie
   after a rebalance, or after facts expired by TTL) gets a duplicate-key error
   instead of overwriting a fresher document; it then reloads the bucket from the
   ledger and recomputes.

Facts of recently touched buckets are cached in memory (LRU) so a batch reads
the ledger only for buckets it has not seen yet; the cache is dropped on every
rebalance. Detections should be keyed by camera on Kafka (one partition per
camera), so one consumer owns a camera's buckets at a time.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from datetime import datetime, timezone

from pymongo import ASCENDING, ReplaceOne, UpdateOne, WriteConcern
from pymongo.errors import BulkWriteError, OperationFailure, PyMongoError

from edgesight import metrics
from edgesight.log import get_logger

from .facts import (
    Fact,
    camera_key,
    counts_minute_docs,
    dwell_docs,
    line_crossing_docs,
    minute_of,
    track_key,
    track_summary,
)

FACTS_MINUTE = "facts_minute"
COUNTS, CROSSINGS, DWELL, TRACKS = "counts_minute", "line_crossings_minute", "dwell", "tracks"
FACTS_NEW = metrics.counter(
    "engineering_facts_total", "Facts written to the ledger, by result (new|duplicate)", ["result"]
)
DOCS = metrics.counter("engineering_docs_written_total", "Analytics documents replaced", ["collection"])
STALE = metrics.counter(
    "engineering_stale_writes_total",
    "Replaces refused because the stored document was computed from more facts",
    ["collection"],
)
WRITE_SECONDS = metrics.histogram("engineering_write_seconds", "Time of the MongoDB writes of one batch")


def is_dup_only(e: BulkWriteError) -> bool:
    d = e.details or {}
    return not d.get("writeConcernErrors") and all(w.get("code") == 11000 for w in d.get("writeErrors", []))


def resolve_write_concern(db, wanted: str, log) -> WriteConcern:
    """``majority`` where the server accepts it (replica sets and standalone mongod do); else w=1, said loudly."""
    if wanted == "1":
        return WriteConcern(w=1)
    wc = WriteConcern(w="majority", wtimeout=30000)
    try:
        db.get_collection("_engineering_meta", write_concern=wc).replace_one(
            {"_id": "write_concern_probe"}, {"_id": "write_concern_probe", "ts": time.time()}, upsert=True
        )
        return wc
    except OperationFailure as e:
        log.warning("server rejects w=majority; falling back to w=1", extra={"error": str(e)})
        return WriteConcern(w=1)


class _LRU(OrderedDict):
    def __init__(self, cap: int):
        super().__init__()
        self.cap = cap

    def touch(self, k, v=None):
        if v is not None:
            self[k] = v
        self.move_to_end(k)
        while len(self) > self.cap:
            self.popitem(last=False)


def bucket_id_minute(cam: str, minute: datetime) -> str:
    return f"{cam}/{minute.astimezone(timezone.utc):%Y-%m-%dT%H:%MZ}"


# Stored once per bucket document, not per fact (re-added when a bucket is read back).
_BUCKET_FIELDS = ("_id", "cam", "minute", "agent_id", "camera_id", "track")


def _pack(f: Fact) -> dict:
    return {k: v for k, v in f.items() if k not in _BUCKET_FIELDS}


def _unpack(eid: str, d: dict, agent_id: str, camera_id: str) -> Fact:
    f = dict(d)
    f.update(
        _id=eid,
        agent_id=agent_id,
        camera_id=camera_id,
        cam=camera_key(agent_id, camera_id),
        minute=minute_of(d["ts"]),
        track=track_key(agent_id, camera_id, d.get("run_id", ""), d.get("track_id")),
    )
    return f


class AnalyticsStore:
    def __init__(
        self,
        db,
        *,
        write_concern: str = "majority",
        facts_ttl_days: float = 14.0,
        cache_max_keys: int = 20000,
        write_retries: int = 5,
    ):
        self.log = get_logger("engineering.store", db=db.name)
        self.wc = resolve_write_concern(db, write_concern, self.log)
        self.db = db
        self.c = {
            n: db.get_collection(n, write_concern=self.wc) for n in (FACTS_MINUTE, COUNTS, CROSSINGS, DWELL, TRACKS)
        }
        self.retries = write_retries
        cap = max(cache_max_keys, 1)
        self._minutes = _LRU(cap)  # (cam, minute) -> {event_id: fact}  (== the ledger bucket)
        self._tracks = _LRU(cap)  # track -> {event_id: fact}
        self._written = _LRU(cap * 8)  # (collection, _id) -> document last written by this process
        self.ensure_indexes(facts_ttl_days)

    def ensure_indexes(self, facts_ttl_days: float) -> None:
        if facts_ttl_days > 0:
            # TTL on the bucket's last write (not the event time: backfills of old events must keep their ledger).
            # Keep it >= Kafka retention of the detections topic + the edge's longest offline spool.
            self.c[FACTS_MINUTE].create_index(
                [("touched_at", ASCENDING)], name="ttl_touched_at", expireAfterSeconds=int(facts_ttl_days * 86400)
            )
        self.c[COUNTS].create_index([("camera_id", ASCENDING), ("minute", ASCENDING)], name="camera_minute")
        self.c[CROSSINGS].create_index([("camera_id", ASCENDING), ("minute", ASCENDING)], name="camera_minute")
        self.c[TRACKS].create_index([("camera_id", ASCENDING), ("last_seen", ASCENDING)], name="camera_last_seen")
        self.c[DWELL].create_index([("track", ASCENDING)], name="track")

    def clear_cache(self) -> None:
        self._minutes.clear()
        self._tracks.clear()
        self._written.clear()

    # -- writing ---------------------------------------------------------------------------
    def _retry(self, what: str, fn):
        delay = 0.2
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except BulkWriteError:
                raise
            except PyMongoError as e:
                if attempt >= self.retries:
                    raise
                self.log.warning(
                    "mongo write failed; retrying", extra={"what": what, "attempt": attempt + 1, "error": str(e)}
                )
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _replace(self, coll: str, docs: list[dict]) -> list[str]:
        """Guarded replaces of the documents that differ from what this process last wrote; returns the ids
        refused as stale (the stored document was computed from more facts)."""
        todo = [d for d in docs if self._written.get((coll, d["_id"])) != d]
        if not todo:
            return []
        ops = [ReplaceOne({"_id": d["_id"], "n_events": {"$lte": d["n_events"]}}, d, upsert=True) for d in todo]

        def go():
            try:
                self.c[coll].bulk_write(ops, ordered=False)
                return []
            except BulkWriteError as e:
                if not is_dup_only(e):
                    raise
                return [todo[w["index"]]["_id"] for w in e.details["writeErrors"]]

        stale = self._retry(coll, go)
        refused = set(stale)
        for d in todo:
            if d["_id"] in refused:
                self._written.pop((coll, d["_id"]), None)
            else:
                self._written.touch((coll, d["_id"]), d)
        DOCS.labels(coll).inc(len(todo) - len(stale))
        if stale:
            STALE.labels(coll).inc(len(stale))
        return stale

    # -- the fact ledger -------------------------------------------------------------------
    def _load_minutes(self, keys, reload: bool) -> dict:
        mm = {} if reload else {k: self._minutes.get(k) for k in keys}
        miss = {bucket_id_minute(*k): k for k in keys if mm.get(k) is None}
        for k in miss.values():
            mm[k] = {}
        if miss:
            for d in self.c[FACTS_MINUTE].find({"_id": {"$in": list(miss)}}):
                mm[miss[d["_id"]]] = {
                    eid: _unpack(eid, f, d["agent_id"], d["camera_id"]) for eid, f in (d.get("facts") or {}).items()
                }
        for k, v in mm.items():
            self._minutes.touch(k, v)
        return mm

    def _load(self, minute_keys, track_minutes: dict, reload: bool) -> tuple[dict, dict]:
        """Fact maps of these minute buckets and tracks: from the cache, else (or when ``reload``) from the ledger.

        A track's facts live in the minute buckets of its camera: those listed in its ``tracks`` document
        (``minutes``) plus those of this batch (``track_minutes``: track -> minute keys). A crash between the
        ledger write and the ``tracks`` write is repaired by the redelivery, whose facts name the minutes again."""
        tm = {} if reload else {k: self._tracks.get(k) for k in track_minutes}
        miss_t = [k for k in track_minutes if tm.get(k) is None]
        need = set(minute_keys)
        if miss_t:
            stored = {
                d["_id"]: d.get("minutes") or []
                for d in self.c[TRACKS].find({"_id": {"$in": miss_t}}, {"minutes": 1, "agent_id": 1, "camera_id": 1})
            }
            for t in miss_t:
                cam = t.rsplit("/", 1)[0]
                need |= {(cam, minute_of(m)) for m in stored.get(t, [])} | set(track_minutes[t])
        mm = self._load_minutes(need, reload)
        if miss_t:
            want = set(miss_t)
            found: dict = {t: {} for t in miss_t}
            for k in need:
                for eid, f in mm[k].items():
                    if f["track"] in want:
                        found[f["track"]][eid] = f
            tm.update(found)
        for k, v in tm.items():
            self._tracks.touch(k, v)
        return mm, tm

    def _write_ledger(self, new_by_minute: dict) -> None:
        """``$set facts.<event_id>``: idempotent, one atomic update per (camera, minute) bucket."""
        now = datetime.now(timezone.utc)
        ops = []
        for key, fs in new_by_minute.items():
            f0 = fs[0]
            upd = {f"facts.{f['_id']}": _pack(f) for f in fs}
            upd["touched_at"] = now
            ops.append(
                UpdateOne(
                    {"_id": bucket_id_minute(*key)},
                    {
                        "$set": upd,
                        "$setOnInsert": {
                            "agent_id": f0["agent_id"],
                            "camera_id": f0["camera_id"],
                            "cam": f0["cam"],
                            "minute": f0["minute"],
                        },
                    },
                    upsert=True,
                )
            )
        if ops:
            self._retry(FACTS_MINUTE, lambda: self.c[FACTS_MINUTE].bulk_write(ops, ordered=False))

    def apply(self, facts: list[Fact]) -> dict[str, int]:
        """Make the analytics reflect ``facts`` (plus everything already in the ledger). Idempotent."""
        t0 = time.perf_counter()
        uniq = list({f["_id"]: f for f in facts}.values())
        minute_keys = {(f["cam"], f["minute"]) for f in uniq}
        track_minutes: dict[str, set] = {}
        for f in uniq:
            if f["track"] is not None:
                track_minutes.setdefault(f["track"], set()).add((f["cam"], f["minute"]))
        track_keys = set(track_minutes)
        mm, tm = self._load(minute_keys, track_minutes, reload=False)
        new_m: dict = {}
        new_t: dict = {}
        for f in uniq:
            if f["_id"] not in mm[(f["cam"], f["minute"])]:
                new_m.setdefault((f["cam"], f["minute"]), []).append(f)
            if f["track"] is not None and f["_id"] not in tm[f["track"]]:
                new_t.setdefault(f["track"], []).append(f)
        try:
            self._write_ledger(new_m)
        except Exception:
            self.clear_cache()  # unknown which buckets were written: the ledger is the truth again
            raise
        # Only after the ledger write succeeded do the cached buckets take the new facts.
        for k, fs in new_m.items():
            mm[k].update({f["_id"]: f for f in fs})
        for k, fs in new_t.items():
            tm[k].update({f["_id"]: f for f in fs})  # may be the same fact objects: harmless
        n_new = sum(len(v) for v in new_m.values())
        FACTS_NEW.labels("new").inc(n_new)
        FACTS_NEW.labels("duplicate").inc(len(uniq) - n_new)
        written = {"facts_new": n_new, "facts_duplicate": len(uniq) - n_new}
        for attempt in range(4):
            if attempt:
                mm, tm = self._load(minute_keys, {t: track_minutes.get(t, set()) for t in track_keys}, reload=True)
            mfacts = {k: mm[k] for k in minute_keys}
            tfacts = {k: tm[k] for k in track_keys}
            bucket_facts = [f for v in mfacts.values() for f in v.values()]
            counts = counts_minute_docs(bucket_facts)
            crossings = line_crossing_docs(bucket_facts)
            summaries = [track_summary(t, v.values()) for t, v in tfacts.items() if v]
            dwell = [d for t, v in tfacts.items() for d in dwell_docs(t, v.values())]
            stale_c = set(self._replace(COUNTS, counts)) | set(self._replace(CROSSINGS, crossings))
            stale_t = set(self._replace(TRACKS, summaries))
            stale_d = set(self._replace(DWELL, dwell))
            for name, n in (
                (COUNTS, len(counts)),
                (CROSSINGS, len(crossings)),
                (TRACKS, len(summaries)),
                (DWELL, len(dwell)),
            ):
                written[name] = written.get(name, 0) + n
            if not (stale_c or stale_t or stale_d):
                break
            # Someone wrote from more facts than we hold: reload those buckets from the ledger and recompute.
            minute_keys = {
                (camera_key(d["agent_id"], d["camera_id"]), d["minute"])
                for d in counts + crossings
                if d["_id"] in stale_c
            }
            track_keys = {d["_id"] for d in summaries if d["_id"] in stale_t} | {
                d["track"] for d in dwell if d["_id"] in stale_d
            }
            self.log.info(
                "stale bucket views; recomputing from the ledger",
                extra={"minutes": len(minute_keys), "tracks": len(track_keys), "attempt": attempt + 1},
            )
        WRITE_SECONDS.observe(time.perf_counter() - t0)
        return written


def count_facts(db) -> int:
    """Distinct events in the ledger (every fact lives in exactly one minute bucket)."""
    return sum(len(d.get("facts") or {}) for d in db[FACTS_MINUTE].find({}, {"facts": 1}))
