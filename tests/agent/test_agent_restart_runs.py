"""An agent killed and restarted mid-track: its two runs stay two runs in the analytics (issue #11).

Track ids and frame ``seq`` restart with the agent; the run id of the wire contract (detection/2) keeps the
tracks of the two runs apart. Real agent processes on a file camera, the real broker, the real engineering
consumer and MongoDB.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

from cloud.engineering.engineering import build_engineering
from cloud.engineering.settings import EngineeringConfig
from edgesight.wire import Topics, decode_event
from tests.agent.test_agent_e2e import VTEST, AgentProc, agent_yaml, free_port, read_topic


def test_sigkill_mid_track_then_restart_gives_separate_tracks_per_run(tmp_path, stack, model_dir):
    agent_id = f"runs-{uuid.uuid4().hex[:6]}"
    prefix = f"t{uuid.uuid4().hex[:8]}"
    port = free_port()
    cam = {"id": "file-cam", "url": VTEST, "loop": True, "target_fps": 5}
    cfg = agent_yaml(
        tmp_path, stack, agent_id=agent_id, prefix=prefix, metrics_port=port, spool=tmp_path / "spool", cameras=[cam]
    )
    runs: list[str] = []
    agent = AgentProc(cfg, port, stack, model_dir, tmp_path / "agent1.log")
    try:
        st = agent.wait(lambda s: s["pipeline"]["events_published"] >= 20, 120, "events of the first run")
        runs.append(st["run_id"])
        agent.kill()  # SIGKILL mid-track: no end events, the tracker's ids die with the process
        killed_at = datetime.now(timezone.utc)
    finally:
        if agent.proc.poll() is None:
            agent.kill()
    time.sleep(1.0)
    restarted_at = datetime.now(timezone.utc)
    agent2 = AgentProc(cfg, port, stack, model_dir, tmp_path / "agent2.log")
    try:
        st = agent2.wait(lambda s: s["pipeline"]["events_published"] >= 20, 120, "events of the second run")
        runs.append(st["run_id"])
        assert agent2.terminate() == 0  # ends the live tracks of run 2 (end events)
    finally:
        if agent2.proc.poll() is None:
            agent2.kill()
    assert len(set(runs)) == 2 and all(runs), runs

    topics = Topics(prefix)
    events = [decode_event(m.value) for m in read_topic(stack.config.kafka, topics.detections, min_count=40)]
    by_run: dict[str, set[int]] = {}
    for e in events:
        assert e.run_id in runs, e.run_id
        if e.track_id is not None:
            by_run.setdefault(e.run_id, set()).add(e.track_id)
    assert set(by_run) == set(runs)
    reused = by_run[runs[0]] & by_run[runs[1]]
    assert reused, f"the restarted tracker reuses track ids (the case that merged): {by_run}"

    base = stack.config
    db_name = f"an_{prefix}"
    cloud = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"topic_prefix": prefix, "session_timeout_ms": 6000}),
            "mongo": base.mongo.model_copy(update={"analytics_db": db_name}),
        }
    )
    try:
        st_cfg = EngineeringConfig(group_id=f"g-{prefix}", session_timeout_ms=6000, batch_timeout_s=0.2)
        stats = build_engineering(cloud, st_cfg).run(until_idle_s=3.0, max_seconds=120)
        assert stats.poison == 0 and stats.good == len(events)
        tracks = list(cloud.mongo.client()[db_name]["tracks"].find({"agent_id": agent_id}))
        assert {t["run_id"] for t in tracks} == set(runs)
        assert len(tracks) == sum(len(ids) for ids in by_run.values())  # one document per (run, track id)
        for tid in reused:
            same_id = [t for t in tracks if t["track_id"] == tid]
            assert {t["run_id"] for t in same_id} == set(runs), same_id  # two tracks, not one merged
        for t in tracks:
            first, last = (x.replace(tzinfo=timezone.utc) for x in (t["first_seen"], t["last_seen"]))
            assert not (first < killed_at and last > restarted_at), f"track spans the restart: {t['_id']}"
            if t["ended_at"] is not None:
                assert t["ended_at"] >= t["last_seen"], t
            assert t["_id"] == f"{agent_id}/file-cam/{t['run_id']}/{t['track_id']}"
        dwell = list(cloud.mongo.client()[db_name]["dwell"].find({"agent_id": agent_id}))
        assert all(d["track"].split("/")[2] == d["run_id"] for d in dwell)
    finally:
        cloud.mongo.client().drop_database(db_name)
