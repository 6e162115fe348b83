"""Collections, indexes, retention (TTL) and server-capability detection of the warehouse.

Collections (in database ``mongo.warehouse_db``, names prefixed by ``collection_prefix``):

* ``detections``: one document per detection event, ``_id`` = ``event_id`` (idempotent
  upserts), ``ts`` a BSON date (TTL), the rest as on the wire.
* ``keyframes``: one document per keyframe, ``_id`` = ``keyframe_id``: ``bucket``, ``s3_key``
  (where the bytes are), ``object_key`` (the contract's stable key), ``camera_id``, ``agent_id``,
  ``ts``, ``size``, ``sha256``, ``kafka`` {topic, partition, offset}; for a per-track crop (not the whole
  frame) also ``crop`` [x1, y1, x2, y2] and ``frame`` {width, height} in source-frame pixels.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from pymongo import ASCENDING, DESCENDING

from edgesight.log import get_logger

from .config import WarehouseConfig

log = get_logger("warehouse")

DETECTIONS = "detections"
KEYFRAMES = "keyframes"

# (keys, options). Queries: by camera + time, label + time, zone + time, track, agent + time.
INDEXES: dict[str, list[tuple[list[tuple[str, int]], dict[str, Any]]]] = {
    DETECTIONS: [
        ([("camera_id", ASCENDING), ("ts", DESCENDING)], {"name": "camera_ts"}),
        ([("label", ASCENDING), ("ts", DESCENDING)], {"name": "label_ts"}),
        ([("zones", ASCENDING), ("ts", DESCENDING)], {"name": "zones_ts"}),
        ([("camera_id", ASCENDING), ("track_id", ASCENDING), ("ts", ASCENDING)], {"name": "camera_track_ts"}),
        ([("agent_id", ASCENDING), ("ts", DESCENDING)], {"name": "agent_ts"}),
        ([("keyframe.keyframe_id", ASCENDING)], {"name": "keyframe_ref", "sparse": True}),
    ],
    KEYFRAMES: [
        ([("camera_id", ASCENDING), ("ts", DESCENDING)], {"name": "camera_ts"}),
        ([("object_key", ASCENDING)], {"name": "object_key"}),
    ],
}
TTL_FIELD = "ts"


@dataclass
class Names:
    prefix: str = ""

    @property
    def detections(self) -> str:
        return f"{self.prefix}{DETECTIONS}"

    @property
    def keyframes(self) -> str:
        return f"{self.prefix}{KEYFRAMES}"


@dataclass
class TimeseriesSupport:
    supported: bool
    detail: str


@dataclass
class InitReport:
    database: str
    collections: dict[str, str] = field(default_factory=dict)
    indexes: dict[str, list[str]] = field(default_factory=dict)
    ttl: dict[str, dict[str, Any]] = field(default_factory=dict)
    timeseries: TimeseriesSupport | None = None
    notes: list[str] = field(default_factory=list)


def detect_timeseries(db) -> TimeseriesSupport:
    """Create a throw-away time-series collection and check that the server really made one
    (``listCollections`` type ``timeseries`` with the options echoed back)."""
    name = f"_edgesight_ts_probe_{uuid.uuid4().hex[:8]}"
    try:
        try:
            db.create_collection(name, timeseries={"timeField": "ts", "metaField": "meta", "granularity": "seconds"})
        except Exception as e:  # noqa: BLE001 - any refusal means "not supported"
            return TimeseriesSupport(False, f"create with timeseries options refused: {type(e).__name__}: {e}")
        infos = list(db.list_collections(filter={"name": name}))
        if not infos:
            return TimeseriesSupport(False, "create reported success but the collection is not listed")
        info = infos[0]
        ts_opts = (info.get("options") or {}).get("timeseries")
        if info.get("type") == "timeseries" and ts_opts and ts_opts.get("timeField") == "ts":
            return TimeseriesSupport(True, f"listCollections: type=timeseries, options.timeseries={ts_opts}")
        return TimeseriesSupport(
            False,
            f"create accepted the timeseries options but ignored them: listCollections "
            f"reports type={info.get('type')!r}, options={info.get('options')!r}",
        )
    finally:
        try:
            db.drop_collection(name)
        except Exception:  # noqa: BLE001
            pass


def ttl_index(coll, field_name: str = TTL_FIELD) -> dict | None:
    """The TTL index on ``field_name`` (matched by key, not by name: some servers rename indexes)."""
    for ix in coll.list_indexes():
        keys = list(dict(ix["key"]).keys())
        if keys == [field_name] and "expireAfterSeconds" in ix:
            return dict(ix)
    return None


def set_retention(coll, days: float, field_name: str = TTL_FIELD) -> dict[str, Any]:
    """Make the TTL index on ``field_name`` expire after ``days``. Uses ``collMod`` when an index
    exists, verifies the result, and drops + recreates the index when the server ignored collMod."""
    seconds = int(round(days * 86400))
    cur = ttl_index(coll, field_name)
    how = "created"
    if cur is not None and int(cur["expireAfterSeconds"]) == seconds:
        return {"field": field_name, "expireAfterSeconds": seconds, "index": cur["name"], "action": "unchanged"}
    if cur is not None:
        try:
            coll.database.command(
                "collMod", coll.name, index={"keyPattern": {field_name: 1}, "expireAfterSeconds": seconds}
            )
        except Exception as e:  # noqa: BLE001
            log.info("collMod refused", extra={"collection": coll.name, "error": str(e)})
        after = ttl_index(coll, field_name)
        if after is not None and int(after["expireAfterSeconds"]) == seconds:
            return {"field": field_name, "expireAfterSeconds": seconds, "index": after["name"], "action": "collMod"}
        log.warning(
            "server ignored collMod of the TTL index; dropping and recreating it", extra={"collection": coll.name}
        )
        coll.drop_index(cur["name"])
        how = "recreated (server ignored collMod)"
    else:
        # a plain index on the same key would clash with the TTL one
        for ix in coll.list_indexes():
            if list(dict(ix["key"]).keys()) == [field_name] and ix["name"] != "_id_":
                coll.drop_index(ix["name"])
    coll.create_index([(field_name, ASCENDING)], name=f"ttl_{field_name}", expireAfterSeconds=seconds)
    got = ttl_index(coll, field_name)
    if got is None or int(got["expireAfterSeconds"]) != seconds:
        raise RuntimeError(f"{coll.name}: the server did not keep the TTL index (expireAfterSeconds={seconds}): {got}")
    return {"field": field_name, "expireAfterSeconds": seconds, "index": got["name"], "action": how}


def init_warehouse(client, database: str, wcfg: WarehouseConfig) -> InitReport:
    """Create collections, indexes and TTL indexes (idempotent), and detect time-series support."""
    db = client[database]
    names = Names(wcfg.collection_prefix)
    rep = InitReport(database=database)
    existing = set(db.list_collection_names())
    for logical, name in ((DETECTIONS, names.detections), (KEYFRAMES, names.keyframes)):
        if name in existing:
            rep.collections[name] = "exists"
        else:
            db.create_collection(name)
            rep.collections[name] = "created"
        coll = db[name]
        made = []
        for keys, opts in INDEXES[logical]:
            made.append(coll.create_index(keys, **opts))
        rep.indexes[name] = made
        days = wcfg.retention.detections_days if logical == DETECTIONS else wcfg.retention.keyframes_days
        rep.ttl[name] = set_retention(coll, days)
    if not index_directions_kept(db[names.detections]):
        rep.notes.append(
            "index key directions: NOT kept by this server (camera_ts was created with ts descending and reads "
            "back ascending); queries stay correct, only the index scan order differs"
        )
    rep.timeseries = detect_timeseries(db)
    if not rep.timeseries.supported:
        rep.notes.append(
            "time-series collections: NOT supported by this server (" + rep.timeseries.detail + "); "
            "the warehouse uses regular collections + TTL indexes"
        )
    else:
        rep.notes.append(
            "time-series collections: supported; detections still use a regular collection because "
            "time-series collections cannot enforce unique _id upserts (exactly-once by event_id)"
        )
    return rep


def index_directions_kept(coll) -> bool:
    """Whether the server kept the DESC direction of camera_ts (nx-27017 does not)."""
    for ix in coll.list_indexes():
        key = dict(ix["key"])
        if list(key) == ["camera_id", "ts"]:
            return key["ts"] == DESCENDING
    return False
