"""A small deterministic event stream whose analytics were computed BY HAND (not by the code under test).

Three cameras (agent-a/cam-1, agent-a/cam-2, agent-b/cam-1: same camera id on two agents), tracks that enter
and leave zones, cross lines in both directions, straddle minute boundaries (09:59 -> 10:00 -> 10:01), one
detection without a track, one re-entry (two visits), one track still open.
"""

from __future__ import annotations

from datetime import datetime, timezone

from cloud.engineering.synthetic import make_event


def T(hms: str) -> datetime:  # noqa: N802 - reads as a timestamp literal
    h, m, s = hms.split(":")
    sec = float(s)
    return datetime(2026, 1, 5, int(h), int(m), int(sec), int(round((sec - int(sec)) * 1e6)), tzinfo=timezone.utc)


A, B = "agent-a", "agent-b"


def events():
    ev = []
    # agent-a / cam-1, track 1 (person)
    ev.append(make_event(A, "cam-1", T("10:00:50"), 500, 1, "new", score=0.60))
    ev.append(make_event(A, "cam-1", T("10:00:55"), 550, 1, zones=["door"], entered=["door"], score=0.70))
    ev.append(
        make_event(
            A,
            "cam-1",
            T("10:01:05"),
            650,
            1,
            zones=["door", "shelf"],
            entered=["shelf"],
            crossings=[("gate", "in")],
            score=0.90,
            keyframe="kf-cam1-t1-a",
        )
    )
    ev.append(
        make_event(
            A, "cam-1", T("10:01:20"), 800, 1, zones=["shelf"], exited=["door"], score=0.80, keyframe="kf-cam1-t1-b"
        )
    )
    ev.append(
        make_event(
            A, "cam-1", T("10:01:40"), 1000, 1, zones=[], exited=["shelf"], crossings=[("gate", "out")], score=0.75
        )
    )
    ev.append(make_event(A, "cam-1", T("10:01:50"), 1100, 1, "end", score=0.75))
    # agent-a / cam-1, track 2 (car), never ends
    ev.append(
        make_event(A, "cam-1", T("10:00:58"), 580, 2, "new", label="car", zones=["door"], entered=["door"], score=0.55)
    )
    ev.append(
        make_event(
            A,
            "cam-1",
            T("10:01:02"),
            620,
            2,
            label="car",
            zones=["door"],
            crossings=[("gate", "in")],
            score=0.65,
            keyframe="kf-cam1-t2-a",
        )
    )
    # agent-a / cam-1, an untracked person detection
    ev.append(make_event(A, "cam-1", T("10:01:30"), 900, None, zones=["shelf"], score=0.40))
    # agent-a / cam-2, track 1 (person): lobby twice
    ev.append(make_event(A, "cam-2", T("10:00:10"), 100, 1, "new", zones=["lobby"], entered=["lobby"], score=0.50))
    ev.append(make_event(A, "cam-2", T("10:00:30"), 300, 1, zones=["lobby"], crossings=[("gate", "out")], score=0.60))
    ev.append(make_event(A, "cam-2", T("10:00:45"), 450, 1, zones=[], exited=["lobby"], score=0.55))
    ev.append(make_event(A, "cam-2", T("10:00:50"), 500, 1, zones=["lobby"], entered=["lobby"], score=0.58))
    ev.append(make_event(A, "cam-2", T("10:01:00"), 600, 1, zones=["lobby"], score=0.52))
    ev.append(make_event(A, "cam-2", T("10:01:10"), 700, 1, "end", zones=["lobby"], score=0.52))
    # agent-b / cam-1, track 7 (dog) across 09:59 -> 10:00
    ev.append(
        make_event(B, "cam-1", T("09:59:59.5"), 10, 7, "new", label="dog", zones=["yard"], entered=["yard"], score=0.80)
    )
    ev.append(
        make_event(
            B, "cam-1", T("10:00:00.2"), 17, 7, label="dog", zones=["yard"], crossings=[("fence", "in")], score=0.85
        )
    )
    ev.append(
        make_event(
            B,
            "cam-1",
            T("10:00:00.9"),
            24,
            7,
            label="dog",
            zones=[],
            exited=["yard"],
            crossings=[("fence", "out")],
            score=0.70,
        )
    )
    return ev


N_EVENTS = 18

# (camera key, zone, label, minute) -> (detections, tracks, entries, exits)
COUNTS = {
    ("agent-a/cam-1", "*", "person", "10:00"): (2, 1, 1, 0),
    ("agent-a/cam-1", "door", "person", "10:00"): (1, 1, 1, 0),
    ("agent-a/cam-1", "*", "car", "10:00"): (1, 1, 1, 0),
    ("agent-a/cam-1", "door", "car", "10:00"): (1, 1, 1, 0),
    ("agent-a/cam-1", "*", "person", "10:01"): (4, 1, 0, 1),
    ("agent-a/cam-1", "door", "person", "10:01"): (1, 1, 0, 1),
    ("agent-a/cam-1", "shelf", "person", "10:01"): (3, 1, 1, 1),
    ("agent-a/cam-1", "*", "car", "10:01"): (1, 1, 0, 0),
    ("agent-a/cam-1", "door", "car", "10:01"): (1, 1, 0, 0),
    ("agent-a/cam-2", "*", "person", "10:00"): (4, 1, 1, 0),
    ("agent-a/cam-2", "lobby", "person", "10:00"): (3, 1, 2, 1),
    ("agent-a/cam-2", "*", "person", "10:01"): (1, 1, 0, 1),
    ("agent-a/cam-2", "lobby", "person", "10:01"): (1, 1, 0, 0),
    ("agent-b/cam-1", "*", "dog", "09:59"): (1, 1, 1, 0),
    ("agent-b/cam-1", "yard", "dog", "09:59"): (1, 1, 1, 0),
    ("agent-b/cam-1", "*", "dog", "10:00"): (2, 1, 0, 0),
    ("agent-b/cam-1", "yard", "dog", "10:00"): (1, 1, 0, 1),
}

# (camera key, line, direction, minute) -> (count, by_label, tracks)
CROSSINGS = {
    ("agent-a/cam-1", "gate", "in", "10:01"): (2, {"car": 1, "person": 1}, 2),
    ("agent-a/cam-1", "gate", "out", "10:01"): (1, {"person": 1}, 1),
    ("agent-a/cam-2", "gate", "out", "10:00"): (1, {"person": 1}, 1),
    ("agent-b/cam-1", "fence", "in", "10:00"): (1, {"dog": 1}, 1),
    ("agent-b/cam-1", "fence", "out", "10:00"): (1, {"dog": 1}, 1),
}

# track -> summary fields
TRACKS = {
    "agent-a/cam-1/1": dict(
        label="person",
        first_seen=T("10:00:50"),
        last_seen=T("10:01:40"),
        ended=True,
        ended_at=T("10:01:50"),
        best_score=0.90,
        best_keyframe="kf-cam1-t1-a",
        zones_visited=["door", "shelf"],
        events=6,
        updates=4,
        crossings=[("gate", "in"), ("gate", "out")],
    ),
    "agent-a/cam-1/2": dict(
        label="car",
        first_seen=T("10:00:58"),
        last_seen=T("10:01:02"),
        ended=False,
        ended_at=None,
        best_score=0.65,
        best_keyframe="kf-cam1-t2-a",
        zones_visited=["door"],
        events=2,
        updates=1,
        crossings=[("gate", "in")],
    ),
    "agent-a/cam-2/1": dict(
        label="person",
        first_seen=T("10:00:10"),
        last_seen=T("10:01:00"),
        ended=True,
        ended_at=T("10:01:10"),
        best_score=0.60,
        best_keyframe=None,
        zones_visited=["lobby"],
        events=6,
        updates=4,
        crossings=[("gate", "out")],
    ),
    "agent-b/cam-1/7": dict(
        label="dog",
        first_seen=T("09:59:59.5"),
        last_seen=T("10:00:00.9"),
        ended=False,
        ended_at=None,
        best_score=0.85,
        best_keyframe=None,
        zones_visited=["yard"],
        events=3,
        updates=2,
        crossings=[("fence", "in"), ("fence", "out")],
    ),
}

# (track, zone) -> (total_dwell_s, [(enter, exit or None, dwell_s, open)])
DWELL = {
    ("agent-a/cam-1/1", "door"): (25.0, [(T("10:00:55"), T("10:01:20"), 25.0, False)]),
    ("agent-a/cam-1/1", "shelf"): (35.0, [(T("10:01:05"), T("10:01:40"), 35.0, False)]),
    ("agent-a/cam-1/2", "door"): (4.0, [(T("10:00:58"), None, 4.0, True)]),
    ("agent-a/cam-2/1", "lobby"): (
        45.0,
        [(T("10:00:10"), T("10:00:45"), 35.0, False), (T("10:00:50"), T("10:01:00"), 10.0, False)],
    ),
    ("agent-b/cam-1/7", "yard"): (1.4, [(T("09:59:59.5"), T("10:00:00.9"), 1.4, False)]),
}


def assert_analytics(db) -> None:
    """The analytics collections hold exactly the hand-computed values (no more documents, no fewer)."""
    got = {}
    for d in db["counts_minute"].find():
        key = (f"{d['agent_id']}/{d['camera_id']}", d["zone"], d["label"], d["minute"].strftime("%H:%M"))
        got[key] = (d["detections"], d["tracks"], d["entries"], d["exits"])
    assert got == COUNTS

    got = {}
    for d in db["line_crossings_minute"].find():
        key = (f"{d['agent_id']}/{d['camera_id']}", d["line"], d["direction"], d["minute"].strftime("%H:%M"))
        got[key] = (d["count"], d["by_label"], d["tracks"])
    assert got == CROSSINGS

    got = {}
    for d in db["tracks"].find():
        got[d["_id"]] = dict(
            label=d["label"],
            first_seen=d["first_seen"],
            last_seen=d["last_seen"],
            ended=d["ended"],
            ended_at=d["ended_at"],
            best_score=d["best_score"],
            best_keyframe=(d["best_keyframe"] or {}).get("keyframe_id"),
            zones_visited=d["zones_visited"],
            events=d["events"],
            updates=d["updates"],
            crossings=[(c["line"], c["direction"]) for c in d["crossings"]],
        )
    assert got == TRACKS

    got = {}
    for d in db["dwell"].find():
        got[(d["track"], d["zone"])] = (
            round(d["total_dwell_s"], 3),
            [(v["enter"], v["exit"], round(v["dwell_s"], 3), v["open"]) for v in d["visits"]],
        )
    assert got == DWELL
