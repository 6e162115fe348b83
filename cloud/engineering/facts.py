"""Detection event -> fact, and facts -> analytics documents. Pure functions, no I/O.

A *fact* is the compact, deterministic projection of one :class:`DetectionEvent`
that the analytics need; it is stored once, keyed by ``event_id`` (the edge makes
that id deterministic, so a re-sent event has the same id). Every analytics
document is a pure function of a set of facts, so it can be recomputed at any
time and written with a plain replace (see :mod:`cloud.engineering.store`).

Definitions (also in ``cloud/engineering/README.md``):

* **observation**: a fact of kind ``new`` or ``update`` (the object was seen on
  that frame). ``end`` facts say a track was lost; they are not observations.
* **counts_minute** ``(agent, camera, zone, label, minute)``; ``zone = "*"`` is
  the whole frame, other zones are those listed in the event's ``zones``:

  - ``detections``: number of distinct observations (distinct ``event_id``) of
    that label in that zone whose ``ts`` falls in the minute;
  - ``tracks``: number of distinct ``track_id`` among those observations
    (observations without a track id count as detections only);
  - ``entries`` / ``exits``: number of distinct facts (any kind) in the minute
    whose ``entered`` / ``exited`` lists the zone (for ``"*"``: ``new`` / ``end``
    facts, i.e. tracks that started / ended in the minute).
* **line_crossings_minute** ``(agent, camera, line, direction, minute)``:
  ``count`` = distinct (event, line, direction) crossings in the minute,
  ``by_label`` the same split by label, ``tracks`` distinct tracks that crossed.
* **dwell** ``(track, zone)``: visits derived from zone membership of the
  track's observations in ``(ts, seq)`` order. A visit starts at the first
  observation inside the zone and ends at the first later observation outside
  it (``exit`` = that observation's ts, i.e. the frame where the edge reported
  ``exited``). A visit still inside when the track ends is closed at the last
  observation inside (``closed_by = "track_end"``); one still inside a live track
  is ``open`` with the dwell so far (last seen in zone - enter).
* **tracks** ``(agent, camera, run_id, track_id)``: first/last seen, best score and the
  keyframe of the best-scoring fact that carries one, label of the best-scoring
  observation, zones visited, crossings, ``events`` (distinct facts) and
  ``updates`` (distinct facts of kind ``update``).

Every document carries ``n_events``: how many facts it was computed from. Facts
only ever grow, so a document computed from more facts is the fresher one; the
writer refuses to replace a document with one computed from fewer facts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from edgesight.wire import AnyDetectionEvent

Fact = dict[str, Any]
OBSERVATION_KINDS = ("new", "update")
ALL_ZONES = "*"


def to_ms(ts: datetime) -> datetime:
    """Truncate to milliseconds (BSON dates are ms): a fact read back equals the fact computed."""
    ts = ts.astimezone(timezone.utc)
    return ts.replace(microsecond=ts.microsecond // 1000 * 1000)


def minute_of(ts: datetime) -> datetime:
    return ts.astimezone(timezone.utc).replace(second=0, microsecond=0)


def camera_key(agent_id: str, camera_id: str) -> str:
    return f"{agent_id}/{camera_id}"


def track_key(agent_id: str, camera_id: str, run_id: str, track_id: int | None) -> str | None:
    """Tracks are per camera and per agent run: track ids restart with every run of the agent, so the key is
    ``<agent>/<camera>/<run_id>/<track_id>`` (detection/2). A detection/1 event has no run (``run_id`` ``""``)
    and keeps the version-1 key ``<agent>/<camera>/<track_id>``: tracks of such an agent may still merge
    across its restarts."""
    if track_id is None:
        return None
    return f"{agent_id}/{camera_id}/{run_id}/{track_id}" if run_id else f"{agent_id}/{camera_id}/{track_id}"


def event_to_fact(ev: AnyDetectionEvent) -> Fact:
    """The fact of one validated event. Deterministic: the same event always gives the same fact."""
    ts = to_ms(ev.ts)
    crossings = sorted({(c.line, c.direction) for c in ev.crossings})
    return {
        "_id": ev.event_id,
        "agent_id": ev.agent_id,
        "camera_id": ev.camera_id,
        "cam": camera_key(ev.agent_id, ev.camera_id),
        "minute": minute_of(ts),
        "ts": ts,
        "seq": ev.seq,
        "kind": ev.kind.value,
        "label": ev.label,
        "score": float(ev.score),
        "top_score": None if ev.top_score is None else float(ev.top_score),
        "run_id": ev.run_id,
        "track_id": ev.track_id,
        "track": track_key(ev.agent_id, ev.camera_id, ev.run_id, ev.track_id),
        "zones": sorted(set(ev.zones)),
        "entered": sorted(set(ev.entered)),
        "exited": sorted(set(ev.exited)),
        "crossings": [{"line": ln, "direction": d} for ln, d in crossings],
        # Only the id: detection/1's object_key names no S3 object (resolve the id: Warehouse.keyframe_object).
        "keyframe": None if ev.keyframe is None else {"keyframe_id": ev.keyframe.keyframe_id},
        "model": {"name": ev.model.name, "version": ev.model.version, "variant": ev.model.variant},
    }


def _order(f: Fact) -> tuple:
    return (f["ts"], f["seq"], f["_id"])


def _unique_sorted(facts: Iterable[Fact]) -> list[Fact]:
    """Each fact once (by event_id), in (ts, seq) order."""
    return sorted({f["_id"]: f for f in facts}.values(), key=_order)


def _iso(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def count_id(cam: str, zone: str, label: str, minute: datetime) -> str:
    return f"{cam}/{zone}/{label}/{_iso(minute)}"


def crossing_id(cam: str, line: str, direction: str, minute: datetime) -> str:
    return f"{cam}/{line}/{direction}/{_iso(minute)}"


def counts_minute_docs(facts: Iterable[Fact]) -> list[dict]:
    """counts_minute documents from the facts of one or more (camera, minute) buckets.

    Give *all* facts of every bucket concerned: a document is only correct when it sees its whole bucket."""
    acc: dict[tuple, dict] = {}

    def slot(f: Fact, zone: str) -> dict:
        k = (f["cam"], zone, f["label"], f["minute"])
        d = acc.get(k)
        if d is None:
            d = acc[k] = {
                "agent_id": f["agent_id"],
                "camera_id": f["camera_id"],
                "zone": zone,
                "label": f["label"],
                "minute": f["minute"],
                "_det": set(),
                "_tracks": set(),
                "_in": set(),
                "_out": set(),
                "_facts": set(),
            }
        d["_facts"].add(f["_id"])
        return d

    for f in facts:
        if f["kind"] in OBSERVATION_KINDS:
            for z in [ALL_ZONES, *f["zones"]]:
                d = slot(f, z)
                d["_det"].add(f["_id"])
                if f["track"] is not None:
                    d["_tracks"].add(f["track"])
        for z in f["entered"]:
            slot(f, z)["_in"].add(f["_id"])
        for z in f["exited"]:
            slot(f, z)["_out"].add(f["_id"])
        if f["kind"] == "new":
            slot(f, ALL_ZONES)["_in"].add(f["_id"])
        elif f["kind"] == "end":
            slot(f, ALL_ZONES)["_out"].add(f["_id"])
    out = []
    for (cam, zone, label, minute), d in acc.items():
        out.append(
            {
                "_id": count_id(cam, zone, label, minute),
                "agent_id": d["agent_id"],
                "camera_id": d["camera_id"],
                "zone": zone,
                "label": label,
                "minute": minute,
                "detections": len(d["_det"]),
                "tracks": len(d["_tracks"]),
                "entries": len(d["_in"]),
                "exits": len(d["_out"]),
                "n_events": len(d["_facts"]),
            }
        )
    return sorted(out, key=lambda d: d["_id"])


def line_crossing_docs(facts: Iterable[Fact]) -> list[dict]:
    """line_crossings_minute documents (give all facts of the buckets concerned)."""
    acc: dict[tuple, dict] = {}
    for f in facts:
        for c in f["crossings"]:
            k = (f["cam"], c["line"], c["direction"], f["minute"])
            d = acc.setdefault(
                k,
                {
                    "agent_id": f["agent_id"],
                    "camera_id": f["camera_id"],
                    "by_label": defaultdict(set),
                    "_tracks": set(),
                    "_facts": set(),
                },
            )
            d["_facts"].add(f["_id"])
            d["by_label"][f["label"]].add(f["_id"])
            if f["track"] is not None:
                d["_tracks"].add(f["track"])
    out = []
    for (cam, line, direction, minute), d in acc.items():
        out.append(
            {
                "_id": crossing_id(cam, line, direction, minute),
                "agent_id": d["agent_id"],
                "camera_id": d["camera_id"],
                "line": line,
                "direction": direction,
                "minute": minute,
                "count": len(d["_facts"]),
                "by_label": {k: len(v) for k, v in sorted(d["by_label"].items())},
                "tracks": len(d["_tracks"]),
                "n_events": len(d["_facts"]),
            }
        )
    return sorted(out, key=lambda d: d["_id"])


def _best(facts: list[Fact]) -> Fact | None:
    # Highest score; ties go to the earliest fact (deterministic whatever the arrival order).
    return min(facts, key=lambda f: (-f["score"], _order(f))) if facts else None


def track_summary(track: str, facts: Iterable[Fact]) -> dict:
    """The ``tracks`` document of one track from all of its facts."""
    fs = _unique_sorted(facts)
    if not fs:
        raise ValueError(f"no facts for track {track}")
    obs = [f for f in fs if f["kind"] in OBSERVATION_KINDS]
    ends = [f for f in fs if f["kind"] == "end"]
    best = _best(obs or fs)
    with_kf = _best([f for f in fs if f["keyframe"]])
    zones = set()
    for f in fs:
        zones.update(f["zones"])
        zones.update(f["entered"])
    tops = [f["top_score"] for f in fs if f["top_score"] is not None]
    last = fs[-1]
    return {
        "_id": track,
        "agent_id": last["agent_id"],
        "camera_id": last["camera_id"],
        "run_id": last.get("run_id", ""),
        "track_id": last["track_id"],
        "label": best["label"],
        "labels": sorted({f["label"] for f in fs}),
        "first_seen": fs[0]["ts"],
        "last_seen": (obs[-1] if obs else fs[-1])["ts"],
        "ended": bool(ends),
        "ended_at": ends[0]["ts"] if ends else None,
        "best_score": best["score"],
        "best_score_at": best["ts"],
        "top_score": max(tops) if tops else None,
        "best_keyframe": None
        if with_kf is None
        else {**with_kf["keyframe"], "score": with_kf["score"], "ts": with_kf["ts"], "event_id": with_kf["_id"]},
        "zones_visited": sorted(zones),
        "crossings": [
            {"line": c["line"], "direction": c["direction"], "ts": f["ts"]} for f in fs for c in f["crossings"]
        ],
        "events": len(fs),
        "updates": sum(1 for f in fs if f["kind"] == "update"),
        "model": last["model"],
        "minutes": sorted({f["minute"] for f in fs}),
        "n_events": len(fs),
    }


def dwell_docs(track: str, facts: Iterable[Fact]) -> list[dict]:
    """``dwell`` documents (one per zone the track was in) from all facts of one track."""
    fs = _unique_sorted(facts)
    if not fs:
        return []
    obs = [f for f in fs if f["kind"] in OBSERVATION_KINDS]
    ended = any(f["kind"] == "end" for f in fs)
    best = _best(obs or fs)
    zones = sorted({z for f in obs for z in f["zones"]})
    out = []
    for z in zones:
        visits, start, last_in = [], None, None
        for f in obs:
            if z in f["zones"]:
                if start is None:
                    start = f["ts"]
                last_in = f["ts"]
            elif start is not None:
                visits.append(
                    {
                        "enter": start,
                        "exit": f["ts"],
                        "last_seen_in_zone": last_in,
                        "dwell_s": (f["ts"] - start).total_seconds(),
                        "open": False,
                        "closed_by": "exit",
                    }
                )
                start = None
        if start is not None:
            visits.append(
                {
                    "enter": start,
                    "exit": last_in if ended else None,
                    "last_seen_in_zone": last_in,
                    "dwell_s": (last_in - start).total_seconds(),
                    "open": not ended,
                    "closed_by": "track_end" if ended else None,
                }
            )
        last = fs[-1]
        out.append(
            {
                "_id": f"{track}/{z}",
                "track": track,
                "agent_id": last["agent_id"],
                "camera_id": last["camera_id"],
                "run_id": last.get("run_id", ""),
                "track_id": last["track_id"],
                "label": best["label"],
                "zone": z,
                "visits": visits,
                "visit_count": len(visits),
                "total_dwell_s": round(sum(v["dwell_s"] for v in visits), 3),
                "first_enter": visits[0]["enter"],
                "open": any(v["open"] for v in visits),
                "n_events": len(fs),
            }
        )
    return out
