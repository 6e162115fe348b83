"""Fleet registry: agent heartbeats (status topic) -> ``agents`` and ``cameras`` in the analytics DB.

A heartbeat is a *snapshot*, so the registry keeps the newest one per agent and
per camera: ``replace_one({_id, last_seen: {$lte: ts}}, doc, upsert=True)``.
Redelivered or out-of-order (older) heartbeats are refused by the filter
(duplicate-key error on the upsert, ignored), so replays never move the
registry backwards. ``last_seen`` is the heartbeat's own ``ts`` (the agent's
clock; NTP on the edge is assumed), ``received_at`` the cloud's clock.

Staleness: a camera (or agent) whose ``last_seen`` is older than
``stale_after_s`` is stale. The consumer marks it (``stale: true``,
``stale_since``) every ``sweep_interval_s``; a fresh heartbeat clears it.
``cloud-ops fleet list`` also computes staleness at read time, so it is right
even when the fleet consumer is not running.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

from pymongo import ASCENDING, ReplaceOne

from cloud.config import CloudConfig
from cloud.stream import BatchLoop, Failure, Handler, WriteResult
from edgesight import metrics
from edgesight.log import get_logger
from edgesight.wire import AgentStatus, CameraStatus, Topics, WireError, decode_status

from .consumer import consumer_loop, storable, wire_failure
from .settings import FleetConfig
from .store import is_dup_only, resolve_write_concern

AGENTS, CAMERAS = "agents", "cameras"
STALE_CAMERAS = metrics.gauge("fleet_stale_cameras", "Cameras marked stale by the last sweep")
KNOWN_CAMERAS = metrics.gauge("fleet_cameras", "Cameras in the registry")
OUTDATED = metrics.counter("fleet_outdated_heartbeats_total", "Heartbeats older than the registry's (ignored)")


def _model(m) -> dict | None:
    return None if m is None else {"name": m.name, "version": m.version, "variant": m.variant}


def camera_doc(c: CameraStatus, received_at: datetime) -> dict:
    return {
        "_id": f"{c.agent_id}/{c.camera_id}",
        "agent_id": c.agent_id,
        "camera_id": c.camera_id,
        "state": c.state,
        "reason": c.reason,
        "since": c.since,
        "fps": c.fps,
        "target_fps": c.target_fps,
        "model": _model(c.model),
        "frames": c.frames,
        "dropped": c.dropped,
        "reconnects": c.reconnects,
        "last_seen": c.ts,
        "received_at": received_at,
        "stale": False,
        "stale_since": None,
    }


def status_docs(st: AgentStatus | CameraStatus, received_at: datetime) -> tuple[dict | None, list[dict]]:
    """(agent document or None, camera documents) of one heartbeat. Pure."""
    if isinstance(st, CameraStatus):
        return None, [camera_doc(st, received_at)]
    agent = {
        "_id": st.agent_id,
        "agent_id": st.agent_id,
        "state": st.state,
        "version": st.version,
        "hostname": st.hostname,
        "uptime_s": st.uptime_s,
        "cameras": sorted(c.camera_id for c in st.cameras),
        "spool": None if st.spool is None else st.spool.model_dump(),
        "last_seen": st.ts,
        "received_at": received_at,
        "stale": False,
        "stale_since": None,
    }
    return agent, [camera_doc(c, received_at) for c in st.cameras]


def newest(docs: Iterable[dict]) -> list[dict]:
    """Keep the newest document per ``_id`` (ties: the later one). Pure."""
    out: dict[str, dict] = {}
    for d in docs:
        cur = out.get(d["_id"])
        if cur is None or d["last_seen"] >= cur["last_seen"]:
            out[d["_id"]] = d
    return list(out.values())


def is_stale(last_seen: datetime, now: datetime, stale_after_s: float) -> bool:
    return (now - last_seen).total_seconds() > stale_after_s


class FleetStore:
    def __init__(self, db, *, write_concern: str = "majority"):
        self.log = get_logger("fleet.store", db=db.name)
        wc = resolve_write_concern(db, write_concern, self.log)
        self.db = db
        self.agents = db.get_collection(AGENTS, write_concern=wc)
        self.cameras = db.get_collection(CAMERAS, write_concern=wc)
        self.cameras.create_index([("last_seen", ASCENDING)], name="last_seen")
        self.agents.create_index([("last_seen", ASCENDING)], name="last_seen")

    def upsert(self, coll, docs: list[dict]) -> int:
        """Guarded replaces; returns how many were older than the registry (ignored)."""
        if not docs:
            return 0
        from pymongo.errors import BulkWriteError

        try:
            coll.bulk_write(
                [ReplaceOne({"_id": d["_id"], "last_seen": {"$lte": d["last_seen"]}}, d, upsert=True) for d in docs],
                ordered=False,
            )
            return 0
        except BulkWriteError as e:
            if not is_dup_only(e):
                raise
            return len(e.details["writeErrors"])

    def sweep(self, now: datetime, stale_after_s: float) -> int:
        """Mark cameras and agents silent for longer than ``stale_after_s``; returns cameras newly marked."""
        limit = now - timedelta(seconds=stale_after_s)
        # `stale` is always written explicitly (False on every heartbeat): no reliance on $ne matching missing fields.
        r = self.cameras.update_many(
            {"last_seen": {"$lt": limit}, "stale": False}, {"$set": {"stale": True, "stale_since": now}}
        )
        self.agents.update_many(
            {"last_seen": {"$lt": limit}, "stale": False}, {"$set": {"stale": True, "stale_since": now}}
        )
        STALE_CAMERAS.set(self.cameras.count_documents({"stale": True}))
        KNOWN_CAMERAS.set(self.cameras.count_documents({}))
        if r.modified_count:
            self.log.warning("cameras became stale", extra={"count": r.modified_count, "stale_after_s": stale_after_s})
        return r.modified_count


def fleet_rows(db, now: datetime | None = None, stale_after_s: float = 60.0) -> list[dict]:
    """Cameras with their agent, state, model and staleness computed at read time (``fleet list``)."""
    now = now or datetime.now(timezone.utc)
    agents = {a["_id"]: a for a in db[AGENTS].find()}
    rows = []
    for c in db[CAMERAS].find():
        a = agents.get(c["agent_id"], {})
        age = (now - c["last_seen"]).total_seconds()
        m = c.get("model") or {}
        rows.append(
            {
                "agent_id": c["agent_id"],
                "camera_id": c["camera_id"],
                "state": c["state"],
                "reason": c.get("reason", ""),
                "fps": c.get("fps"),
                "model": m.get("name"),
                "model_version": m.get("version"),
                "variant": m.get("variant"),
                "last_seen": c["last_seen"].isoformat(),
                "age_s": round(age, 1),
                "stale": bool(c.get("stale")) or is_stale(c["last_seen"], now, stale_after_s),
                "agent_state": a.get("state"),
                "agent_version": a.get("version"),
                "agent_stale": bool(a.get("stale")) or (is_stale(a["last_seen"], now, stale_after_s) if a else None),
            }
        )
    return sorted(rows, key=lambda r: (r["agent_id"], r["camera_id"]))


class FleetHandler(Handler):
    """Heartbeats -> agent and camera documents (per record) -> guarded replaces of the newest per batch."""

    name = "fleet"
    accept_stage = "VALUE_CONVERTER"

    def __init__(self, store: FleetStore, settings: FleetConfig):
        self.store, self.st = store, settings
        self._next_sweep = 0.0
        self._agents: list[dict] = []
        self._cams: list[dict] = []
        self._n = 0
        self._received_at: datetime | None = None

    def accept(self, msg: Any) -> Failure | None:
        if self._received_at is None:
            self._received_at = datetime.now(timezone.utc)
        try:
            if msg.value() is None:
                raise WireError("status", "(message)", "empty value (tombstone); expected a JSON object")
            a, cs = status_docs(decode_status(msg.value()), self._received_at)
        except WireError as e:
            return wire_failure(e)
        for doc in ([a] if a is not None else []) + cs:
            failure = storable(doc)
            if failure is not None:
                return failure
        if a is not None:
            self._agents.append(a)
        self._cams.extend(cs)
        self._n += 1
        return None

    def write(self, final: bool) -> WriteResult:
        agents, cams, n = self._agents, self._cams, self._n
        self._agents, self._cams, self._n, self._received_at = [], [], 0, None
        old = self.store.upsert(self.store.agents, newest(agents)) + self.store.upsert(self.store.cameras, newest(cams))
        if old:
            OUTDATED.inc(old)
        return WriteResult(written=n)

    def tick(self) -> None:
        t = time.monotonic()
        if t >= self._next_sweep:
            self._next_sweep = t + self.st.sweep_interval_s
            self.store.sweep(datetime.now(timezone.utc), self.st.stale_after_s)


def build_fleet(cfg: CloudConfig, st: FleetConfig, *, mongo_client=None) -> BatchLoop:
    client = mongo_client or cfg.mongo.client()
    store = FleetStore(client[cfg.mongo.analytics_db], write_concern=st.write_concern)
    topics = Topics(cfg.kafka.topic_prefix)
    return consumer_loop(cfg, st, topics.status, st.dlq_name, FleetHandler(store, st))
