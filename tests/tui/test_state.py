"""The TUI's state without a screen and without a broker: what agents report, bounded, never crashing."""

from __future__ import annotations

import json
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.tui import state as state_mod
from edge_agent.tui.state import Change, SiteState
from tests.tui.feeds import (
    T0,
    agent_doc,
    camera_doc,
    event,
    events_doc,
    preview_doc,
    put,
    site,
)


def fresh() -> SiteState:
    return SiteState(clock=lambda: T0.timestamp())


def test_agents_and_cameras_from_retained_status():
    s = site(fresh())
    assert s.agent_ids() == ["site-1", "site-2"]
    a = s.agent("site-1")
    assert a is not None and a.online and a.state == "running"
    assert [c.camera_id for c in a.cameras] == ["entrance", "loading-dock", "parking"]
    assert a.status.inference.variant == "int8" and a.status.allowed_sources.dirs == ["/srv/clips"]
    dock = s.camera("site-1", "loading-dock")
    assert dock.state == "reconnecting" and "connection refused" in dock.last_error
    off = s.agent("site-2")
    assert off is not None and not off.online and off.state == "offline"
    assert s.malformed_count == 0


def test_camera_updates_removal_and_order():
    s = site(fresh())
    later = T0 + timedelta(seconds=5)
    put(s, "site-1/camera/entrance/status", camera_doc("site-1", "entrance", ts=later, state="stopped", fps=0.0))
    assert s.camera("site-1", "entrance").state == "stopped"
    # An older report (a heartbeat sent before the camera's own message) does not go back in time.
    put(s, "site-1/camera/entrance/status", camera_doc("site-1", "entrance", ts=T0, state="streaming"))
    assert s.camera("site-1", "entrance").state == "stopped"
    # An empty retained message is the agent removing the camera.
    put(s, "site-1/camera/parking/status", b"")
    assert s.camera("site-1", "parking") is None
    # A heartbeat lists every camera the agent has: those it does not list are gone.
    put(s, "site-1/status", agent_doc("site-1", [camera_doc("site-1", "entrance", ts=later + timedelta(seconds=1))]))
    assert [c.camera_id for c in s.agent("site-1").cameras] == ["entrance"]
    # The last will (offline) keeps the cameras as last reported.
    put(
        s,
        "site-1/status",
        {
            "schema": "edgesight.status/1",
            "agent_id": "site-1",
            "state": "offline",
            "version": "0.1.0",
            "ts": "2026-11-28T08:01:00Z",
        },
    )
    a = s.agent("site-1")
    assert not a.online and [c.camera_id for c in a.cameras] == ["entrance"]
    # Deleting the agent's retained status removes the agent.
    put(s, "site-2/status", b"")
    assert s.agent_ids() == ["site-1"]


def test_samples_events_and_preview():
    s = site(fresh())
    samples = s.samples("site-1", "entrance")
    assert len(samples) == 13 and samples == sorted(samples, key=lambda x: x.ts)
    assert samples[-1].fps == 4.9 and samples[-1].latency_ms == 96.0
    events, dropped = s.events("site-1", "entrance")
    assert [e.kind.value for e in events] == ["new", "update", "end"] and dropped == 2
    assert events[1].crossings[0].line == "mid"
    put(s, "site-1/camera/entrance/preview", preview_doc("site-1", "entrance"))
    pv = s.preview("site-1", "entrance")
    assert pv is not None and pv.jpeg_bytes()[:3] == b"\xff\xd8\xff" and pv.detections[0].track_id == 7


def test_ring_buffers_and_caps_are_bounded(monkeypatch):
    monkeypatch.setattr(state_mod, "MAX_AGENTS", 3)
    monkeypatch.setattr(state_mod, "MAX_CAMERAS", 2)
    s = fresh()
    for i in range(5):
        put(s, f"a{i}/status", agent_doc(f"a{i}", []))
    assert s.agent_ids() == ["a0", "a1", "a2"] and s.agents_dropped == 2
    put(s, "a0/status", agent_doc("a0", [camera_doc("a0", f"c{i}") for i in range(4)]))
    a = s.agent("a0")
    assert [c.camera_id for c in a.cameras] == ["c0", "c1"] and a.cameras_dropped == 2
    for _ in range(state_mod.EVENTS_KEPT // 50 + 3):
        put(s, "a0/camera/c0/events", events_doc("a0", "c0", [event("update", n) for n in range(50)]))
    events, _ = s.events("a0", "c0")
    assert len(events) == state_mod.EVENTS_KEPT
    # Samples: a ring, and the sparklines see only the last HISTORY_S seconds.
    for i in range(state_mod.SAMPLES_KEPT + 50):
        put(s, "a0/camera/c0/status", camera_doc("a0", "c0", ts=T0 + timedelta(seconds=i)))
    assert len(s.samples("a0", "c0")) == state_mod.SAMPLES_KEPT  # the ring (600 s of 1 s samples fit the window)
    monkeypatch.setattr(state_mod, "HISTORY_S", 100.0)
    shown = s.samples("a0", "c0")
    assert len(shown) == 101 and shown[-1].ts - shown[0].ts == 100.0
    # Commands remembered: the oldest are forgotten.
    ids = [s.new_command("a0", "snapshot", "c0").command_id for _ in range(state_mod.ACKS_KEPT + 5)]
    assert s.command(ids[0]) is None and s.command(ids[-1]) is not None


def test_malformed_messages_are_counted_never_raised():
    s = site(fresh())
    seen: list[Change] = []
    s.subscribe(seen.append)
    bad = [
        ("site-1/status", b"{not json"),
        ("site-1/status", json.dumps(agent_doc("site-1", [], state="exploded")).encode()),
        ("site-1/status", json.dumps(agent_doc("site-9", [])).encode()),  # another agent's status on this topic
        ("site-1/camera/entrance/status", json.dumps(camera_doc("site-1", "entrance", fps=-3)).encode()),
        ("site-1/camera/entrance/status", b"[" * 100_000),  # deeper than the JSON bound
        ("site-1/camera/entrance/status", b" " * (state_mod.STATUS_MAX_BYTES + 1)),  # past the size bound
        (
            "site-1/camera/entrance/preview",
            json.dumps({**preview_doc("site-1", "entrance"), "jpeg": "bm90IGpwZWc="}).encode(),
        ),
        ("site-1/camera/entrance/events", json.dumps(events_doc("site-1", "entrance", [{"kind": "boom"}])).encode()),
        ("bad agent!/status", b"{}"),
        ("site-1/camera/../status", b"{}"),
        ("site-1/ack", b"\xff\xfe"),
    ]
    for topic, payload in bad:
        assert s.ingest(f"edgesight/{topic}", payload) == Change("malformed")
    assert s.malformed_count == len(bad) and len(seen) == len(bad)
    kept = s.malformed()
    assert len(kept) == state_mod.MALFORMED_KEPT if len(bad) > state_mod.MALFORMED_KEPT else len(bad)
    assert "STATUS_MAX_BYTES" in kept[5].error and "fps" in kept[3].error
    # What was there before is untouched.
    assert s.camera("site-1", "entrance").state == "streaming" and s.agent("site-1").online
    # Topics of other roots and this build's unknown leaves are ignored, not counted.
    assert s.ingest("other/site-1/status", b"x") is None and s.ingest("edgesight/site-1/cmd", b"x") is None
    assert s.malformed_count == len(bad)


@settings(max_examples=300, deadline=None)
@given(
    leaf=st.sampled_from(["status", "ack", "camera/c1/status", "camera/c1/events", "camera/c1/preview"]),
    payload=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
            lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
            max_leaves=20,
        ).map(lambda v: json.dumps(v).encode()),
    ),
)
def test_any_payload_on_any_topic_never_raises(leaf, payload):
    s = fresh()
    put(s, "a1/status", agent_doc("a1", [camera_doc("a1", "c1")]))
    before = s.malformed_count
    change = s.ingest(f"edgesight/a1/{leaf}", payload)
    assert change is None or change.kind in ("malformed", "agent", "agents", "camera", "events", "preview", "ack")
    assert s.malformed_count in (before, before + 1)
    assert s.agent("a1") is not None or payload == b""


def test_acks_are_matched_by_command_id_with_the_field_at_fault():
    s = site(fresh())
    mine = s.new_command("site-1", "set_fps", "entrance")
    other = {
        "schema": "edgesight.ack/1",
        "command_id": "someone-else",
        "agent_id": "site-1",
        "ok": True,
        "ts": "2026-11-28T08:00:00Z",
    }
    assert s.ingest("edgesight/site-1/ack", json.dumps(other).encode()) is None
    assert s.last_ack() is None
    error = "invalid control command: field 'fps': Input should be greater than 0"
    put(s, "site-1/ack", {**other, "command_id": mine.command_id, "ok": False, "action": "set_fps", "error": error})
    ack = s.command(mine.command_id).ack
    assert ack is not None and not ack.ok and ack.field == "fps" and s.last_ack() == ack
    assert ack.summary().startswith("error: set_fps [field fps]: invalid control command")
    # A command handler's error names the field its own way.
    zones = s.new_command("site-1", "set_zones", "entrance")
    put(
        s,
        "site-1/ack",
        {
            **other,
            "command_id": zones.command_id,
            "ok": False,
            "action": "set_zones",
            "error": "invalid zones: zones[0].polygon: a polygon needs at least 3 points",
        },
    )
    assert s.last_ack().field == "zones[0].polygon"
    ok = s.new_command("site-1", "set_fps", "entrance")
    put(
        s,
        "site-1/ack",
        {
            **other,
            "command_id": ok.command_id,
            "ok": True,
            "action": "set_fps",
            "result": {"camera_id": "entrance", "target_fps": 2},
        },
    )
    assert s.last_ack().summary() == "ok: set_fps (camera_id=entrance, target_fps=2)"
    # An ack from another agent for our id is not ours.
    third = s.new_command("site-1", "snapshot", "entrance")
    put(s, "site-2/ack", {**other, "agent_id": "site-2", "command_id": third.command_id})
    assert s.command(third.command_id).ack is None


def test_connection_changes_are_told():
    s = fresh()
    seen: list[Change] = []
    s.subscribe(seen.append)
    s.set_connection(False, "127.0.0.1:1883", "connecting")
    s.set_connection(True)
    s.set_connection(False, error="Unspecified error")
    s.set_connection(True)
    assert s.connection.connected and s.connection.broker == "127.0.0.1:1883" and s.connection.reconnects == 1
    assert [c.kind for c in seen] == ["connection"] * 4
    s.unsubscribe(seen.append)
