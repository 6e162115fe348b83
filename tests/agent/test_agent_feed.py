"""The agent's MQTT feed for the TUI (issue #13): previews, live events, and the status additions.

Unit checks of the new wire models and the feed's batching first, then a real agent on a looping
file camera (vtest.avi) with its control plane on the session stack's mosquitto, watched by a plain
paho client as the TUI would: a ``preview`` command yields retained previews whose JPEG decodes
with the frame's size and boxes inside it, a ``snapshot`` publishes one more, events batches carry
``new`` and ``end`` records of real tracks, the retained statuses report zones/lines, frame age,
detections/s, latency, CPU, memory and the inference provider; hostile ``preview`` commands are all
answered and never stop the control loop.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.agent import HEARTBEAT_MAX_BYTES, Agent
from edge_agent.capture.worker import Frame
from edge_agent.control.mqtt import UNKNOWN_ID, ControlPlane
from edge_agent.control.settings import ControlConfig
from edge_agent.detections import Detections
from edge_agent.feed import Feed, _choose
from edge_agent.tracking.events import ObjectUpdate
from edgesight import samples
from edgesight.limits import COMMAND_MAX_BYTES
from edgesight.wire import (
    AgentStatus,
    CameraEvents,
    CameraPreview,
    CameraStatus,
    ControlAck,
    WireError,
    decode_ack,
    decode_command,
    decode_events,
    decode_preview,
    decode_status,
    dumps,
)
from edgesight.wire.models import EVENTS_MAX_PER_MESSAGE, PREVIEW_MAX_BYTES
from ops.testing.clients import mqtt_login, paho_client
from tests.agents import agent_config

VTEST = str(samples.VTEST)
GOOD = {"action": "set_fps", "camera_id": "cam-a", "fps": 4}
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0" + b"x" * 100 + b"\xff\xd9").decode()


def wait(pred: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.2)
    return None


# ---------------------------------------------------------------- wire models (no servers)


def preview_doc(**over: Any) -> dict[str, Any]:
    doc = {
        "schema": "edgesight.preview/1",
        "agent_id": "site-1",
        "camera_id": "cam-1",
        "ts": "2026-11-28T08:00:00.000Z",
        "frame": {"width": 768, "height": 576},
        "jpeg": JPEG,
        "detections": [{"track_id": 3, "label": "person", "score": 0.8, "box": [10, 20, 110, 220]}],
    }
    doc.update(over)
    return doc


def test_preview_round_trip_and_refusals_name_the_field():
    p = decode_preview(json.dumps(preview_doc()))
    assert isinstance(p, CameraPreview) and p.jpeg_bytes().startswith(b"\xff\xd8\xff")
    assert decode_preview(dumps(p)) == p
    for over, field in (
        ({"jpeg": "not base64!"}, "jpeg"),
        ({"jpeg": base64.b64encode(b"GIF89a........").decode()}, "jpeg"),
        ({"detections": [{"label": "p", "score": 0.5, "box": [10, 10, 900, 20]}]}, "(message)"),
        ({"detections": [{"label": "p", "score": 0.5, "box": [50, 10, 20, 20]}]}, "detections[0]"),
        ({"detections": [{"label": "p", "score": 1.5, "box": [1, 1, 2, 2]}]}, "detections[0].score"),
        ({"frame": {"width": 0, "height": 10}}, "frame.width"),
        ({"schema": "edgesight.preview/2"}, "schema"),
    ):
        with pytest.raises(WireError) as ei:
            decode_preview(preview_doc(**over))
        assert ei.value.field == field, (over, str(ei.value))
    with pytest.raises(WireError, match="max_bytes") as ei:
        decode_preview(json.dumps(preview_doc(jpeg=JPEG + "A" * PREVIEW_MAX_BYTES)))
    assert ei.value.field == "(message)"


def test_events_batches_are_bounded():
    ev = {"kind": "new", "ts": "2026-11-28T08:00:00Z", "label": "person", "track_id": 1, "score": 0.9}
    doc = {"schema": "edgesight.events/1", "agent_id": "a", "camera_id": "c", "ts": "2026-11-28T08:00:00Z"}
    batch = decode_events({**doc, "events": [ev] * EVENTS_MAX_PER_MESSAGE, "dropped": 5})
    assert isinstance(batch, CameraEvents) and len(batch.events) == 100 and batch.dropped == 5
    with pytest.raises(WireError, match="at most 100") as ei:
        decode_events({**doc, "events": [ev] * (EVENTS_MAX_PER_MESSAGE + 1)})
    assert ei.value.field == "events"
    with pytest.raises(WireError) as ei:
        decode_events({**doc, "events": [{**ev, "kind": "moved"}]})
    assert ei.value.field == "events[0].kind"


def test_status_additions_are_optional_within_status_1():
    """What an agent without the feed sends still decodes; the new fields are bounded like commands."""
    base = {"schema": "edgesight.status/1", "agent_id": "a", "ts": "2026-11-28T08:00:00Z"}
    cam = decode_status({**base, "camera_id": "c", "state": "streaming"})
    assert isinstance(cam, CameraStatus) and cam.zones == [] and cam.frame is None and cam.frame_age_s is None
    agent = decode_status({**base, "state": "running", "version": "1"})
    assert isinstance(agent, AgentStatus) and agent.inference is None and agent.cpu_percent == 0
    with pytest.raises(WireError, match="at most 64") as ei:
        decode_status({**base, "camera_id": "c", "state": "streaming", "zones": [{}] * 65})
    assert ei.value.field == "zones"
    with pytest.raises(WireError) as ei:
        decode_status({**base, "state": "running", "version": "1", "memory_rss_bytes": -1})
    assert ei.value.field == "memory_rss_bytes"


@pytest.mark.parametrize(
    ("seconds", "field"),
    [(0, "seconds"), (601, "seconds"), (-5, "seconds"), ("60", "seconds"), (True, "seconds"), (None, "seconds")],
)
def test_preview_command_seconds_are_bounded(seconds, field):
    with pytest.raises(WireError) as ei:
        decode_command({"command_id": "c", "action": "preview", "camera_id": "cam-a", "seconds": seconds})
    assert ei.value.field == field
    assert decode_command({"command_id": "c", "action": "preview", "camera_id": "cam-a"}).seconds == 60


def update(kind: str, track_id: int, ts: float = 1.0) -> ObjectUpdate:
    return ObjectUpdate(kind, "cam", track_id, "person", 0, 0.9, 0.9, (1, 1, 5, 5), 0, ts, ts, ts, 1)  # type: ignore[arg-type]


def test_batches_keep_new_and_end_and_drop_updates_first():
    records = [update("update", i) for i in range(150)]
    records[10] = update("new", 1000)
    records[140] = update("end", 1001)
    kept = _choose(records, EVENTS_MAX_PER_MESSAGE)
    assert len(kept) == 100 and kept[0].track_id == 1000 and any(u.kind == "end" for u in kept)
    assert [u.track_id for u in kept if u.kind == "update"] == [i for i in range(51, 150) if i != 140]  # newest
    assert [u.track_id for u in kept] == [1000, *range(51, 140), 1001, *range(141, 150)]  # in their order
    firm = [update("new", i) for i in range(120)]
    assert _choose(firm, 100) == firm[20:]  # only new/end: the newest


# ---------------------------------------------------------------- a client as the TUI would be


class Watcher:
    """A paho client on the session broker subscribed to one agent's topics: sends commands, keeps what comes."""

    def __init__(self, stack, agent_id: str, topics: str = "#"):
        mq = stack.config.mqtt
        self.base = f"edgesight/{agent_id}"
        self.messages: list[mqtt.MQTTMessage] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = paho_client(mq, client_id=f"watch-{uuid.uuid4().hex[:8]}")  # stack-admin over TLS
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(f"{self.base}/{topics}", qos=1)
        self.client.connect(mq.host, mq.port)
        self.client.loop_start()
        assert self._subscribed.wait(10)

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def on(self, suffix: str) -> list[mqtt.MQTTMessage]:
        with self._cond:
            return [m for m in self.messages if m.topic == f"{self.base}/{suffix}" and m.payload]

    def acks(self, command_id: str) -> list[ControlAck]:
        return [a for a in (decode_ack(m.payload) for m in self.on("ack")) if a.command_id == command_id]

    def send(self, payload: bytes | str | dict) -> None:
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        self.client.publish(f"{self.base}/cmd", payload, qos=1).wait_for_publish(10)

    def command(self, timeout: float = 30, **cmd: Any) -> ControlAck:
        cid = f"c-{uuid.uuid4().hex[:8]}"
        self.send({"command_id": cid, **cmd})
        return self.ack(cid, timeout=timeout)

    def ack(self, command_id: str, count: int = 1, timeout: float = 30) -> ControlAck:
        with self._cond:
            self._cond.wait_for(lambda: len(self.acks(command_id)) >= count, timeout)
        got = self.acks(command_id)
        assert len(got) >= count, f"no ack for {command_id}"
        return got[-1]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def frame_size(path: str) -> tuple[int, int]:
    cap = cv2.VideoCapture(path)
    try:
        ok, img = cap.read()
        assert ok
        return img.shape[1], img.shape[0]
    finally:
        cap.release()


@pytest.fixture(scope="module")
def agent(stack, model_dir, tmp_path_factory) -> Iterator[Agent]:
    tmp = tmp_path_factory.mktemp("feed")
    cfg = agent_config(
        stack,
        model_dir,
        tmp / "spool",
        name="feed",
        control_extra={"preview_interval_s": 0.5},
        pipeline={"heartbeat_interval_s": 1},
    )
    a = Agent(cfg).start()
    assert a.control is not None and a.control.connected
    assert wait(lambda: a.pipeline.frames_inferred > 0, 90)
    yield a
    a.stop(timeout=20)


@pytest.fixture(scope="module")
def watcher(stack, agent) -> Iterator[Watcher]:
    w = Watcher(stack, agent.agent_id)
    yield w
    w.close()


def previews(w: Watcher) -> list[CameraPreview]:
    return [decode_preview(m.payload) for m in w.on("camera/cam-a/preview")]


@pytest.mark.timeout(240)
def test_a_preview_lease_publishes_retained_previews_with_boxes(stack, agent, watcher):
    width, height = frame_size(VTEST)
    ack = watcher.command(action="preview", camera_id="cam-a", seconds=4)
    assert ack.ok and ack.result["camera_id"] == "cam-a" and ack.result["until"].endswith("Z")
    got = wait(lambda: [p for p in previews(watcher) if p.detections], 90)
    assert got, "no preview with detections during the lease"
    p = got[-1]
    assert (p.agent_id, p.camera_id, p.frame.width, p.frame.height) == (agent.agent_id, "cam-a", width, height)
    img = cv2.imdecode(np.frombuffer(p.jpeg_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[1] == min(width, 640)
    assert abs(img.shape[0] / img.shape[1] - height / width) < 0.01
    for d in p.detections:
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height and d.label == "person"
    assert any(d.track_id is not None for p in got for d in p.detections)
    assert wait(lambda: len(previews(watcher)) >= 2, 60), "one preview per interval while the lease holds"
    # retained: a client that subscribes now gets the last one at once
    late = Watcher(stack, agent.agent_id, "camera/cam-a/preview")
    try:
        assert wait(lambda: late.on("camera/cam-a/preview"), 20)
        msg = late.on("camera/cam-a/preview")[0]
        assert msg.retain and decode_preview(msg.payload).camera_id == "cam-a"
    finally:
        late.close()
    # the lease ends: no more previews
    time.sleep(5)
    n = len(previews(watcher))
    time.sleep(3)
    assert len(previews(watcher)) == n, "previews went on after the lease ended"
    # a snapshot publishes one preview at once
    ack = watcher.command(action="snapshot", camera_id="cam-a")
    assert ack.ok
    assert wait(lambda: len(previews(watcher)) > n, 30), "snapshot published no preview"


@pytest.mark.timeout(120)
def test_preview_of_an_unknown_camera_is_refused_with_the_reason(agent, watcher):
    ack = watcher.command(action="preview", camera_id="nope", seconds=10)
    assert not ack.ok and ack.action == "preview"
    assert "unknown camera 'nope'" in ack.error and "cam-a" in ack.error
    assert watcher.on("camera/nope/preview") == []


def events(w: Watcher) -> list[CameraEvents]:
    return [decode_events(m.payload) for m in w.on("camera/cam-a/events")]


@pytest.mark.timeout(240)
def test_status_reports_zones_lines_and_health_and_events_carry_real_tracks(stack, agent, watcher):
    width, height = frame_size(VTEST)
    assert wait(lambda: any(e.kind == "new" for b in events(watcher) for e in b.events), 90), "no new events"
    zone = {"name": "door", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}
    line = {"name": "mid", "start": [0, 0.5], "end": [1, 0.5]}
    assert watcher.command(action="set_zones", camera_id="cam-a", zones=[zone]).ok  # live tracks end
    assert watcher.command(action="set_lines", camera_id="cam-a", lines=[line]).ok
    ends = wait(lambda: [e for b in events(watcher) for e in b.events if e.kind == "end"], 60)
    assert ends, "no end events"
    new_ids = {e.track_id for b in events(watcher) for e in b.events if e.kind == "new"}
    assert {e.track_id for e in ends} <= new_ids and all(e.label == "person" for e in ends)
    for b in events(watcher):
        assert b.agent_id == agent.agent_id and b.camera_id == "cam-a" and len(b.events) <= EVENTS_MAX_PER_MESSAGE

    def camera_status() -> CameraStatus | None:
        for m in reversed(watcher.on("camera/cam-a/status")):
            st = decode_status(m.payload)
            if isinstance(st, CameraStatus) and st.zones and st.lines and st.detections_per_s > 0:
                return st
        return None

    cam = wait(camera_status, 60)
    assert cam is not None, "no camera status with zones, lines and detections"
    assert cam.zones[0]["name"] == "door" and cam.zones[0]["polygon"] == zone["polygon"]
    assert cam.lines[0]["name"] == "mid" and cam.lines[0]["start"] == line["start"]
    assert cam.frame is not None and (cam.frame.width, cam.frame.height) == (width, height)
    assert cam.frame_age_s is not None and cam.frame_age_s >= 0
    assert cam.latency_ms is not None and cam.latency_ms > 0 and cam.last_error == ""

    def agent_status() -> AgentStatus | None:
        for m in reversed(watcher.on("status")):
            st = decode_status(m.payload)
            if isinstance(st, AgentStatus) and st.cpu_percent > 0:
                return st
        return None

    st = wait(agent_status, 30)
    assert st is not None, "no agent status with CPU figures"
    assert st.memory_rss_bytes > 10 * 2**20
    assert st.inference is not None and st.inference.provider == "CPUExecutionProvider"
    assert st.inference.variant == "int8"
    assert st.broker is not None and st.broker.undelivered >= 0
    assert st.allowed_sources is not None and st.allowed_sources.dirs == [str(samples.VTEST.parent)]


def test_a_heartbeat_too_large_leaves_the_cameras_geometry_to_their_own_topics(agent):
    """Many cameras with large zones: the agent heartbeat stays within HEARTBEAT_MAX_BYTES; camera statuses keep them."""
    square = [[i / 300, 0.0] for i in range(1, 254)] + [[0.9, 0.9], [0.0, 0.9]]
    zones = [{"name": f"z{i}", "polygon": square} for i in range(64)]
    cam = agent.camera_statuses()["cam-a"].model_copy(update={"zones": zones})
    cams = {f"c{i}": cam.model_copy(update={"camera_id": f"c{i}"}) for i in range(4)}
    assert len(b"".join(dumps(c) for c in cams.values())) > HEARTBEAT_MAX_BYTES
    st = agent.status(cameras=cams)
    assert len(dumps(st)) <= HEARTBEAT_MAX_BYTES and all(c.zones == [] for c in st.cameras)
    assert [c.camera_id for c in st.cameras] == list(cams) and cams["c0"].zones == zones
    small = agent.status()
    assert small.cameras[0].zones == agent.camera_statuses()["cam-a"].zones  # a normal heartbeat keeps them


@pytest.mark.timeout(120)
def test_events_are_batched_and_bounded_on_the_real_broker(stack):
    """A burst far past what one message holds: batches of at most 100, new/end kept, the rest counted."""
    mq = stack.config.mqtt
    agent_id = f"burst-{uuid.uuid4().hex[:6]}"
    cfg = ControlConfig(**mqtt_login(mq), events_queue=500)
    cp = ControlPlane(cfg, agent_id, lambda cmd: {})
    cp.start()
    w = Watcher(stack, agent_id)
    feed = Feed(cfg, agent_id, ["person"], sink=cp)
    try:
        frame = Frame("cam-b", 1, time.time(), time.monotonic(), np.zeros((48, 64, 3), np.uint8))
        records = [update("new", 0, frame.ts)] + [update("update", 0, frame.ts) for _ in range(998)]
        records.append(update("end", 0, frame.ts))
        feed.observe(frame, 1, Detections.empty(), records, 0.01)  # before the feed thread runs: one batch
        feed.start()
        got = wait(lambda: [decode_events(m.payload) for m in w.on("camera/cam-b/events")], 30)
        assert got, "no events message"
        (batch,) = got
        assert len(batch.events) == EVENTS_MAX_PER_MESSAGE
        assert batch.events[0].kind == "new" and batch.events[-1].kind == "end"
        assert batch.dropped == len(records) - EVENTS_MAX_PER_MESSAGE  # queue overflow + batch bound
    finally:
        feed.stop()
        w.close()
        cp.stop(timeout=2)


@pytest.mark.timeout(120)
def test_preview_mode_sends_events_only_under_a_lease_and_removal_flushes_them(stack):
    """control.events_feed = preview: nothing is sent without a lease; a removed camera's last events go out at once
    (here the interval is 60 s, so only the removal can have sent them)."""
    mq = stack.config.mqtt
    agent_id = f"lease-{uuid.uuid4().hex[:6]}"
    cfg = ControlConfig(
        **mqtt_login(mq),
        events_feed="preview",
        events_interval_s=60,
    )
    cp = ControlPlane(cfg, agent_id, lambda cmd: {})
    cp.start()
    w = Watcher(stack, agent_id)
    feed = Feed(cfg, agent_id, ["person"], sink=cp).start()
    try:
        frame = Frame("cam-c", 1, time.time(), time.monotonic(), np.zeros((48, 64, 3), np.uint8))
        feed.observe(frame, 0, Detections.empty(), [update("new", 1, frame.ts)], 0.01)  # no lease: not queued
        feed.lease("cam-c", 30)
        feed.observe(frame, 0, Detections.empty(), [update("new", 2, frame.ts)], 0.01)
        assert wait(lambda: w.on("camera/cam-c/events"), 30), "no events under the lease"
        assert wait(lambda: w.on("camera/cam-c/preview"), 30), "the lease published no preview"
        feed.observe(frame, 0, Detections.empty(), [update("end", 2, frame.ts)], 0.01)
        feed.forget("cam-c")
        assert wait(lambda: len(w.on("camera/cam-c/events")) == 2, 20), "removal did not flush the last events"
        sent = [(e.kind, e.track_id) for m in w.on("camera/cam-c/events") for e in decode_events(m.payload).events]
        assert sent == [("new", 2), ("end", 2)]
    finally:
        feed.stop()
        w.close()
        cp.stop(timeout=2)


# ---------------------------------------------------------------- hostile preview commands (hypothesis)

_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
_json = st.recursive(_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4))
_seconds = st.one_of(
    _json,
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-0.0", "0", "601", "600.0000001", '"60"', "true"]),
    st.integers(min_value=20, max_value=5000).map(lambda n: "7" * n),
    st.integers(min_value=30, max_value=20_000).map(lambda n: "[" * n + "]" * n),
)
_camera_ids = st.one_of(
    st.sampled_from(["cam-a", "nope", "", "..", "x" * 64, "x" * 65, "cam a", "CON"]).map(json.dumps),
    st.integers(min_value=100, max_value=100_000).map(lambda n: json.dumps("c" * n)),
    _json.map(json.dumps),
)


@st.composite
def preview_payloads(draw) -> tuple[str, bytes]:
    cid = f"p-{uuid.uuid4().hex[:12]}"
    fields = {"action": '"preview"'}
    if draw(st.booleans()):
        fields["camera_id"] = draw(_camera_ids)
    if draw(st.booleans()):
        fields["seconds"] = draw(_seconds.map(lambda v: v if isinstance(v, str) else json.dumps(v)))
    if draw(st.integers(0, 9)) == 0:
        fields["extra"] = "1"
    body = ", ".join(f'"{k}": {v}' for k, v in fields.items())
    return cid, f'{{"command_id": "{cid}", {body}}}'.encode()


@pytest.mark.timeout(240)
def test_hostile_preview_commands_are_all_answered_and_never_stop_the_control_loop(agent, watcher):
    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    @given(preview_payloads())
    def barrage(case: tuple[str, bytes]) -> None:
        cid, payload = case
        watcher.send(payload)
        if len(payload) > COMMAND_MAX_BYTES:
            ack = watcher.ack(cid)  # refused before parsing, its command_id read from the prefix
            assert not ack.ok and "COMMAND_MAX_BYTES" in ack.error
        else:
            ack = watcher.ack(cid)
        assert len(watcher.acks(cid)) == 1
        if not ack.ok:
            assert ack.error
        else:
            assert ack.result["camera_id"] == "cam-a" and ack.action == "preview"
        probe = watcher.command(**GOOD)  # the worker still answers, in order
        assert probe.ok

    barrage()
    assert all(not a.ok for a in watcher.acks(UNKNOWN_ID))
    n = agent.pipeline.frames_inferred
    assert wait(lambda: agent.pipeline.frames_inferred > n + 2, 60), "the pipeline stopped"
