"""Fleet registry against the real stack: heartbeats -> agents/cameras, newest wins, silent camera -> stale."""

from __future__ import annotations

import json
import os
import signal
import threading
from datetime import datetime, timedelta, timezone

from cloud.engineering.fleet import is_stale, newest
from cloud.engineering.synthetic import heartbeat
from edgesight.wire import dumps

from .conftest import wait_for

STALE_S = 5.0


def test_newest_and_is_stale_pure():
    t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    docs = [
        {"_id": "a", "last_seen": t, "v": 1},
        {"_id": "a", "last_seen": t - timedelta(seconds=5), "v": 0},
        {"_id": "b", "last_seen": t, "v": 2},
    ]
    assert sorted((d["_id"], d["v"]) for d in newest(docs)) == [("a", 1), ("b", 2)]
    assert is_stale(t, t + timedelta(seconds=3.1), 3) and not is_stale(t, t + timedelta(seconds=2.9), 3)


def test_heartbeats_build_the_registry_and_a_silent_camera_goes_stale(env):
    db = env.db
    p = env.start("fleet", "--stale-after-s", str(STALE_S), "--sweep-interval-s", "0.3", name="fleet")
    wait_for(p.assigned, 60, "fleet consumer joined its group")
    now = datetime.now(timezone.utc)
    hb = heartbeat("agent-x", {"cam-1": "streaming", "cam-2": "streaming"}, now, model_version="1.0.0")
    poison = b'{"schema": "edgesight.status/1", "agent_id": "agent-x"}'
    env.produce(
        env.topics.status,
        [
            (b"agent-x", dumps(hb)),
            (b"agent-x", poison),
            (b"agent-y", dumps(heartbeat("agent-y", {"cam-9": "reconnecting"}, now))),
        ],
    )

    def cams():
        return {d["_id"]: d for d in db["cameras"].find()}

    wait_for(lambda: len(cams()) == 3, 60, "3 cameras registered")
    c = cams()
    assert c["agent-x/cam-1"]["state"] == "streaming" and c["agent-x/cam-1"]["model"]["version"] == "1.0.0"
    assert c["agent-y/cam-9"]["state"] == "reconnecting"
    assert all(d["stale"] in (False, True) for d in c.values())  # written explicitly (sweep matches on it)
    assert db["agents"].find_one({"_id": "agent-x"})["cameras"] == ["cam-1", "cam-2"]

    # agent-x keeps reporting cam-1 (model upgraded) until the end; cam-2 has gone silent; agent-y too.
    stop, sent = threading.Event(), []

    def beat():
        while not stop.is_set():
            t = datetime.now(timezone.utc)
            env.produce(
                env.topics.status,
                [(b"agent-x", dumps(heartbeat("agent-x", {"cam-1": "streaming"}, t, model_version="1.1.0")))],
            )
            sent.append(t)
            stop.wait(0.3)

    th = threading.Thread(target=beat, daemon=True)
    th.start()
    try:
        _check_registry(env, db, cams, now, sent)
    finally:
        stop.set()
        th.join(10)

    os.kill(p.p.pid, signal.SIGTERM)
    out, _ = p.p.communicate(timeout=60)
    assert p.p.returncode == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["poison"] == 1


def _check_registry(env, db, cams, now, sent):
    # An old heartbeat arriving late must not move the registry backwards.
    env.produce(
        env.topics.status, [(b"agent-x", dumps(heartbeat("agent-x", {"cam-2": "failed"}, now - timedelta(seconds=30))))]
    )

    # bool(): nx-27017 stores a $set True as 1 (real MongoDB keeps a bool); the registry reads it with bool() too.
    wait_for(
        lambda: bool(cams()["agent-x/cam-2"]["stale"]) and bool(cams()["agent-y/cam-9"]["stale"]),
        30,
        "silent cameras marked stale",
    )
    mark = sent[-1]
    wait_for(
        lambda: cams()["agent-x/cam-1"]["last_seen"] >= mark.replace(microsecond=mark.microsecond // 1000 * 1000),
        30,
        "a recent heartbeat applied",
    )
    c = cams()
    assert c["agent-x/cam-1"]["stale"] is False
    assert c["agent-x/cam-1"]["state"] == "streaming"
    assert c["agent-x/cam-1"]["model"]["version"] == "1.1.0"
    assert c["agent-x/cam-2"]["model"]["version"] == "1.0.0" and c["agent-x/cam-2"]["stale_since"] is not None
    assert c["agent-x/cam-2"]["state"] == "streaming" and c["agent-x/cam-2"]["last_seen"] >= now.replace(
        microsecond=now.microsecond // 1000 * 1000
    )  # the late, older heartbeat was ignored
    assert bool(db["agents"].find_one({"_id": "agent-y"})["stale"]) is True
    assert db["agents"].find_one({"_id": "agent-x"})["stale"] is False

    # `cloud-ops fleet list` shows it (JSON and table).
    r = env.cli("fleet", "list", "--json", "--stale-after-s", "30")
    assert r.returncode == 0, r.stderr
    rows = {f"{x['agent_id']}/{x['camera_id']}": x for x in json.loads(r.stdout)}
    assert rows["agent-x/cam-2"]["stale"] is True and rows["agent-x/cam-1"]["stale"] is False
    assert rows["agent-x/cam-1"]["model_version"] == "1.1.0"
    r = env.cli("fleet", "list", "--stale", "--stale-after-s", "30")
    assert r.returncode == 0 and "cam-2" in r.stdout and "STALE" in r.stdout and "cam-1 " not in r.stdout
