"""Analytics keys carry the agent run (detection/2): track ids that restart with the agent never merge."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from cloud.engineering.facts import dwell_docs, event_to_fact, track_summary
from cloud.engineering.synthetic import make_event

T = datetime(2026, 11, 28, 2, 0, tzinfo=timezone.utc)
RUN_A, RUN_B = "aa" * 16, "bb" * 16


def test_same_track_id_in_two_runs_gives_two_tracks_and_v1_keeps_its_key():
    # run A sees track 1 until it is killed (no end event); run B restarts ids at 1 a minute later, seq at 0.
    a = [make_event("ag", "cam", T + timedelta(seconds=i), 100 + i, 1, run_id=RUN_A, zones=["door"]) for i in range(3)]
    b = [
        make_event("ag", "cam", T + timedelta(minutes=1, seconds=i), i, 1, run_id=RUN_B, zones=["door"])
        for i in range(3)
    ]
    b.append(make_event("ag", "cam", T + timedelta(minutes=1, seconds=5), 5, 1, "end", run_id=RUN_B))
    facts = [event_to_fact(e) for e in a + b]
    assert len({f["_id"] for f in facts}) == len(facts)
    keys = {f["track"] for f in facts}
    assert keys == {f"ag/cam/{RUN_A}/1", f"ag/cam/{RUN_B}/1"}
    by_track = {k: [f for f in facts if f["track"] == k] for k in keys}
    sa, sb = (track_summary(f"ag/cam/{r}/1", by_track[f"ag/cam/{r}/1"]) for r in (RUN_A, RUN_B))
    assert (sa["run_id"], sa["ended"], sa["last_seen"]) == (RUN_A, False, T + timedelta(seconds=2))
    assert (sb["run_id"], sb["ended"]) == (RUN_B, True) and sb["ended_at"] >= sb["last_seen"]
    assert sb["first_seen"] == T + timedelta(minutes=1)
    dwell = [d for k, fs in by_track.items() for d in dwell_docs(k, fs)]
    assert {d["run_id"] for d in dwell} == {RUN_A, RUN_B}
    # A detection/1 event (no run) keeps the version-1 key and id.
    old = event_to_fact(make_event("ag", "cam", T, 1, 1))
    assert old["track"] == "ag/cam/1" and old["run_id"] == ""
