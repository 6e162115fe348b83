"""Hostile input on the control plane: nothing a command payload holds stops the agent.

Unit checks of the command models, the ``command_id`` recovery and the ``add_camera`` allowlist,
then the real control plane against the real mosquitto of the session stack: the payloads of
issue #11 (5,000-digit integers, 100,000-deep nesting, a 1 MB ``action``), a full queue, a
handler that never returns, and a hypothesis barrage against a running :class:`Agent` on a
file camera. Invariants: every payload gets exactly one ack (with its ``command_id`` when one
can be read), the worker answers a known-good command after each, ``/healthz`` answers within
1 s throughout, and stopping ends within its timeout.
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.agent import Agent
from edge_agent.capture.settings import CameraConfig
from edge_agent.control.mqtt import ERROR_MAX_CHARS, UNKNOWN_ID, ControlPlane, _recover_id
from edge_agent.control.settings import ControlConfig, SourceAllowlist
from edgesight import samples
from edgesight.limits import COMMAND_MAX_BYTES
from edgesight.wire import ControlAck, WireError, decode_ack, decode_command
from edgesight.wire.models import MAX_VERTICES, MAX_ZONES
from ops.testing.clients import mqtt_login, paho_client
from tests.agents import agent_config

VTEST = str(samples.VTEST)
GOOD = {"action": "set_fps", "camera_id": "cam-a", "fps": 2}


# ---------------------------------------------------------------- command models (no servers)


def _cmd(**kw: Any) -> Any:
    return decode_command({"command_id": "c", **kw})


@pytest.mark.parametrize("fps", [True, False, "2", "2.5", None, [2], {"v": 2}])
def test_set_fps_takes_a_number_only(fps):
    with pytest.raises(WireError) as ei:
        _cmd(action="set_fps", camera_id="cam-a", fps=fps)
    assert ei.value.field == "fps"


@pytest.mark.parametrize("fps", [math.nan, math.inf, -math.inf])
def test_set_fps_refuses_non_finite_numbers_saying_so(fps):
    with pytest.raises(WireError, match="finite") as ei:
        _cmd(action="set_fps", camera_id="cam-a", fps=fps)
    assert ei.value.field == "fps"


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("-Infinity", "Infinity"),
        ("1e400", "out of range"),
        ("9" * 5000, "max_int_digits"),
    ],
)
def test_a_bad_number_in_the_payload_is_refused_naming_its_field(raw, reason):
    """Over MQTT the payload is text: NaN, Infinity and huge numbers are refused by the parser, naming the field."""
    payload = b'{"command_id": "c", "action": "set_fps", "camera_id": "cam-a", "fps": ' + raw.encode() + b"}"
    with pytest.raises(WireError, match=reason) as ei:
        decode_command(payload)
    assert ei.value.field == "fps" and "field 'fps'" in str(ei.value)


def test_set_fps_range_and_ints():
    assert _cmd(action="set_fps", camera_id="cam-a", fps=2).fps == 2.0
    for bad in (0, -1, 241, 10**30):
        with pytest.raises(WireError, match="fps"):
            _cmd(action="set_fps", camera_id="cam-a", fps=bad)


def test_geometry_lists_are_bounded():
    zone = {"name": "z", "polygon": [[0, 0], [1, 0], [1, 1]]}
    assert len(_cmd(action="set_zones", camera_id="cam-a", zones=[zone] * MAX_ZONES).zones) == MAX_ZONES
    with pytest.raises(WireError, match=f"at most {MAX_ZONES}") as ei:
        _cmd(action="set_zones", camera_id="cam-a", zones=[zone] * 20_000)
    assert ei.value.field == "zones"
    with pytest.raises(WireError, match="at most 64"):
        _cmd(action="set_lines", camera_id="cam-a", lines=[{"name": "l", "start": [0, 0], "end": [1, 1]}] * 65)
    many = [[i % 2, i / 1000] for i in range(MAX_VERTICES + 1)]
    with pytest.raises(WireError, match="MAX_VERTICES"):
        _cmd(action="set_zones", camera_id="cam-a", zones=[{"name": "z", "polygon": many}])
    with pytest.raises(WireError, match="MAX_GEOMETRY_DEPTH"):
        _cmd(action="set_zones", camera_id="cam-a", zones=[{"name": "z", "polygon": [[[[0]]]]}])


def test_add_camera_object_is_bounded():
    deep: Any = 0
    for _ in range(10):
        deep = [deep]
    with pytest.raises(WireError, match="MAX_CAMERA_DEPTH") as ei:
        _cmd(action="add_camera", camera={"id": "x", "url": "rtsp://h/x", "extra": deep})
    assert ei.value.field == "camera"
    with pytest.raises(WireError, match="MAX_COMMAND_STRING"):
        _cmd(action="add_camera", camera={"id": "x", "url": "rtsp://h/" + "x" * 5000})
    with pytest.raises(WireError, match="MAX_CAMERA_NODES"):
        _cmd(
            action="add_camera",
            camera={"id": "x", "url": "rtsp://h/x", "ffmpeg_options": {str(i): "" for i in range(30_000)}},
        )
    with pytest.raises(WireError, match="at most 64"):
        _cmd(action="add_camera", camera={"id": "x", "url": "rtsp://h/x", "zones": [{}] * 65})


@pytest.mark.parametrize(
    ("payload", "cid"),
    [
        (b'{"command_id": "abc", "action": "set_fps", "fps": ' + b"9" * 5000 + b"}", "abc"),
        (b'{"command_id": "deep", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "deep"),
        (b'{"x": ' + b"[" * 100_000 + b', "command_id": "late"}', UNKNOWN_ID),  # oversized: past the scanned prefix
        (b'{"x": "' + b"y" * 30_000 + b'", "command_id": "far"}', "far"),  # within COMMAND_MAX_BYTES: all scanned
        (b'{"fps": [1, {"command_id": "nested"}], "command_id": "top"', "top"),  # cut off: still found
        (b'{"x": "}\\"{[", "command_id": "q"}', "q"),
        (b'{"command_id": 5}', UNKNOWN_ID),
        (b'{"command_id": "' + b"a" * 200 + b'"}', UNKNOWN_ID),  # longer than an ack's command_id may be
        (b"\xff\xfe\x00garbage", UNKNOWN_ID),
        (b"[1, 2, 3]", UNKNOWN_ID),
        (b"", UNKNOWN_ID),
    ],
)
def test_command_id_is_read_from_payloads_that_do_not_decode(payload, cid):
    assert _recover_id(payload) == cid


# ---------------------------------------------------------------- add_camera allowlist (no servers)


@pytest.mark.parametrize(
    ("allow", "url", "refusal"),
    [
        ({}, "file:///etc/passwd", "control.allowed_sources.directories"),
        ({}, "/etc/passwd", "control.allowed_sources.directories"),
        ({}, "/tmp", "control.allowed_sources.directories"),  # an image folder
        ({}, VTEST, "control.allowed_sources.directories"),
        ({}, "usb:0", "control.allowed_sources.schemes"),
        ({"directories": ["/usr/share"]}, "/etc/passwd", "outside control.allowed_sources.directories"),
        ({"directories": ["/usr/share"]}, "/usr/share/../../etc/passwd", "outside control.allowed_sources"),
        ({"directories": ["/usr/share"]}, "concat:/usr/share/a|/etc/passwd", "neither a URL"),
        ({"hosts": ["10.0.0.0/8", "*.cams.example"]}, "rtsp://u:secret@evil.example/x", "allowed_sources.hosts"),
        ({"schemes": ["rtsps"]}, "rtsp://u:secret@cam.example/x", "allowed_sources.schemes"),
        ({}, "rtsp:///x", "needs a host"),
        ({}, "rtsp://cam.example/x", None),
        ({}, "https://cam.example/mjpeg", None),
        ({"hosts": ["10.0.0.0/8", "*.cams.example"]}, "rtsp://10.1.2.3/x", None),
        ({"hosts": ["10.0.0.0/8", "*.cams.example"]}, "http://gate.CAMS.example/x", None),
        ({"directories": [str(samples.VTEST.parent)]}, VTEST, None),
        ({"directories": [str(samples.VTEST.parent)]}, "file://" + VTEST, None),
        ({"schemes": ["usb"]}, "usb:0", None),
    ],
)
def test_add_camera_allowlist(allow, url, refusal):
    cam = CameraConfig(id="x", url=url)
    rules = SourceAllowlist.model_validate(allow)
    if refusal is None:
        rules.check(cam)
        return
    with pytest.raises(ValueError, match=refusal.replace(".", r"\.")) as ei:
        rules.check(cam)
    assert "secret" not in str(ei.value)


def test_allowlist_settings_are_validated():
    with pytest.raises(ValueError, match="CIDR"):
        SourceAllowlist(hosts=["10.0.0.0/99"])
    with pytest.raises(ValueError, match="absolute"):
        SourceAllowlist(directories=["clips"])
    with pytest.raises(ValueError):
        SourceAllowlist(schemes=["file"])
    assert ControlConfig().allowed_sources.directories == []  # no local files by default


# ---------------------------------------------------------------- the control plane on the real broker


class Acks:
    """A paho client on the broker of the session stack: publishes commands, collects acks."""

    def __init__(self, stack, agent_id: str):
        mq = stack.config.mqtt
        self.cmd_topic, ack_topic = f"edgesight/{agent_id}/cmd", f"edgesight/{agent_id}/ack"
        self.acks: list[ControlAck] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = paho_client(mq, client_id=f"test-{uuid.uuid4().hex[:8]}")  # stack-admin over TLS
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(ack_topic, qos=1)
        self.client.connect(mq.host, mq.port)
        self.client.loop_start()
        assert self._subscribed.wait(10)

    def _on_message(self, client, userdata, msg) -> None:
        ack = decode_ack(msg.payload)
        with self._cond:
            self.acks.append(ack)
            self._cond.notify_all()

    def send(self, payload: bytes | str | dict) -> None:
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        self.client.publish(self.cmd_topic, payload, qos=1).wait_for_publish(10)

    def wait(self, command_id: str, count: int = 1, timeout: float = 20) -> list[ControlAck]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.of(command_id)) >= count, timeout)
            return self.of(command_id)

    def of(self, command_id: str) -> list[ControlAck]:
        return [a for a in self.acks if a.command_id == command_id]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def ends_within(fn: Callable[[], object], seconds: float) -> bool:
    """Run ``fn`` in a thread: did it return within ``seconds``? (a guard against hangs, not a benchmark)"""
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    t.join(seconds)
    return not t.is_alive()


def control_config(stack, **kw: Any) -> ControlConfig:
    return ControlConfig(**mqtt_login(stack.config.mqtt), **kw)  # the stack's own login (TLS on the secure stack)


@pytest.mark.timeout(120)
def test_a_full_queue_is_answered_busy_at_once_and_stop_never_hangs(stack):
    """The worker is stuck in a handler: queued commands wait, the rest are answered busy at once
    (paho's thread never blocks), and stop returns within its timeout, answering the queued ones."""
    agent_id = f"busy-{uuid.uuid4().hex[:6]}"
    release = threading.Event()
    entered = threading.Event()

    def handler(cmd: Any) -> dict[str, Any]:
        entered.set()
        release.wait(60)  # a handler that hangs
        return {}

    cp = ControlPlane(control_config(stack, command_queue=2), agent_id, handler)
    cp.start()
    acks = Acks(stack, agent_id)
    try:
        acks.send({"command_id": "running", **GOOD})
        assert entered.wait(10)
        for i in range(5):
            acks.send({"command_id": f"c{i}", **GOOD})
        busy = [acks.wait(f"c{i}", timeout=10) for i in (2, 3, 4)]
        assert all(len(b) == 1 and not b[0].ok and "busy" in b[0].error for b in busy)
        assert "control.command_queue" in busy[0][0].error
        assert acks.of("c0") == acks.of("c1") == []  # queued, not refused
        assert ends_within(lambda: cp.stop(timeout=2.0), 30), "ControlPlane.stop hung"
        for cid in ("c0", "c1"):  # queued when the agent stopped: answered, not run
            (ack,) = acks.wait(cid, timeout=10)
            assert not ack.ok and "stopping" in ack.error
    finally:
        release.set()
        acks.close()
        cp.stop(timeout=2)


@pytest.fixture(scope="module")
def agent(stack, model_dir, tmp_path_factory) -> Iterator[Agent]:
    """A running agent with a looping file camera, its control plane on the session broker, /healthz served."""
    tmp = tmp_path_factory.mktemp("hostile")
    cfg = agent_config(stack, model_dir, tmp / "spool", name="hostile", fps=2, metrics={"host": "127.0.0.1", "port": 0})
    a = Agent(cfg).start()
    assert a.control is not None and a.control.connected
    yield a
    a.stop(timeout=20)


@pytest.fixture(scope="module")
def acks(stack, agent) -> Iterator[Acks]:
    c = Acks(stack, agent.agent_id)
    yield c
    c.close()


def healthz(agent: Agent) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{agent.metrics_port}/healthz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def probe(acks: Acks) -> ControlAck:
    """A known-good command: the worker must still answer it, ok."""
    cid = f"probe-{uuid.uuid4().hex[:8]}"
    acks.send({"command_id": cid, **GOOD})
    (ack,) = acks.wait(cid)
    return ack


def answer(acks: Acks, payload: bytes | str | dict, cid: str) -> ControlAck:
    """Send one payload: it gets exactly one ack, and the worker answers a good command after it."""
    before = len(acks.of(cid))
    acks.send(payload)
    ack = acks.wait(cid, before + 1)[-1]
    assert probe(acks).ok  # acks are in order: a second ack for the payload would be here by now
    assert len(acks.of(cid)) == before + 1
    assert len(ack.error or "") <= ERROR_MAX_CHARS + 64
    return ack


def big(cid: str, value: str) -> str:
    return f'{{"command_id": "{cid}", "action": "set_fps", "camera_id": "cam-a", "fps": {value}}}'


@pytest.mark.timeout(180)
def test_the_observed_payloads_are_answered_and_the_worker_lives(agent, acks):
    ack = answer(acks, big("digits", "9" * 5000), "digits")
    assert not ack.ok and "max_int_digits" in ack.error
    assert len(big("deep", "[" * 30_000 + "]" * 30_000)) < COMMAND_MAX_BYTES  # parsed: the depth bound answers
    ack = answer(acks, big("deep", "[" * 30_000 + "]" * 30_000), "deep")
    assert not ack.ok and "max_depth" in ack.error
    ack = answer(acks, big("deeper", "[" * 100_000 + "]" * 100_000), "deeper")
    assert not ack.ok and "COMMAND_MAX_BYTES" in ack.error
    ack = answer(acks, {"command_id": "mega", "action": "x" * 1_000_000}, "mega")
    assert not ack.ok and "COMMAND_MAX_BYTES" in ack.error and len(ack.error) < 300
    ack = answer(acks, {"command_id": "forty", "action": "x" * 40_000}, "forty")
    assert not ack.ok and "unknown action" in ack.error and len(ack.error) < 1000
    assert healthz(agent)
    for cid, fps in (("t", "true"), ("s", '"2"'), ("neg", "-1")):
        ack = answer(acks, big(cid, fps), cid)
        assert not ack.ok and "'fps'" in ack.error
    ack = answer(acks, big("nan", "NaN"), "nan")
    assert not ack.ok and "NaN" in ack.error
    zones = json.dumps([{}] * 20_000, separators=(",", ":"))
    ack = answer(acks, f'{{"command_id": "z", "action": "set_zones", "camera_id": "cam-a", "zones": {zones}}}', "z")
    assert not ack.ok and "at most 64" in ack.error
    ack = answer(acks, b"\xff\xfe not json", UNKNOWN_ID)
    assert not ack.ok


@pytest.mark.timeout(180)
def test_add_camera_sources_are_limited_by_the_allowlist(agent, acks):
    for cid, url in (("passwd", "file:///etc/passwd"), ("etc", "/etc"), ("tmp-folder", "/tmp")):
        ack = answer(acks, {"command_id": cid, "action": "add_camera", "camera": {"id": cid, "url": url}}, cid)
        assert (
            not ack.ok and "camera source refused" in ack.error and "control.allowed_sources.directories" in ack.error
        )
    assert set(agent.cameras) == {"cam-a"}
    ack = answer(acks, {"command_id": "ok", "action": "add_camera", "camera": {"id": "cam-b", "url": VTEST}}, "ok")
    assert ack.ok and "cam-b" in agent.cameras
    ack = answer(acks, {"command_id": "rm", "action": "remove_camera", "camera_id": "cam-b"}, "rm")
    assert ack.ok and set(agent.cameras) == {"cam-a"}


# ---------------------------------------------------------------- the barrage (hypothesis)

_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40)
)
_json = st.recursive(
    _scalars, lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=10), c, max_size=5), max_leaves=30
)
_hostile_value = st.one_of(
    _json,
    st.integers(min_value=20, max_value=6000).map(lambda n: "HUGE_INT:" + "7" * n),
    st.integers(min_value=30, max_value=40_000).map(lambda n: "DEEP:" + str(n)),
    st.sampled_from([10_000, 70_000, 1_000_000]).map(lambda n: "x" * n),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "true", '"2"']).map(lambda t: "RAW:" + t),
)
_actions = st.sampled_from(
    ["add_camera", "remove_camera", "stop_camera", "set_fps", "set_zones", "set_lines", "snapshot", "nope", ""]
)
_fields = st.sampled_from(["fps", "camera_id", "camera", "zones", "lines", "variant", "agent_id", "schema", "extra"])


_HOSTILE_SOURCES = [
    "file:///etc/passwd",
    "/etc/passwd",
    "/etc",
    "/tmp",
    "/dev/video0",
    "usb:0",
    "concat:/etc/passwd|/etc/shadow",
    f"{samples.VTEST.parent}/../../../../../etc/passwd",
    "rtsp://user:pa ss@[::1",
    "http://%zz/",
    "rtsp:///nohost",
    "https://" + "h" * 300 + "/x",
]


def _render(value: Any) -> str:
    """JSON text of a generated value; markers become raw JSON that json.dumps cannot write."""
    if isinstance(value, str) and value.startswith("HUGE_INT:"):
        return value[len("HUGE_INT:") :]
    if isinstance(value, str) and value.startswith("DEEP:"):
        n = int(value[len("DEEP:") :])
        return "[" * n + "]" * n
    if isinstance(value, str) and value.startswith("RAW:"):
        return value[len("RAW:") :]
    return json.dumps(value)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=10), _json, max_size=6), st.text(min_size=1, max_size=128), st.integers(0, 6))
def test_command_id_recovery_agrees_with_the_json_parser(others, cid, pos):
    """Whatever the other top-level values hold, the scanner reads the command_id json.loads would."""
    items = [(k, v) for k, v in others.items() if k != "command_id"]
    items.insert(min(pos, len(items)), ("command_id", cid))
    payload = json.dumps(dict(items)).encode()
    assert _recover_id(payload) == json.loads(payload)["command_id"] == cid


@st.composite
def hostile_payloads(draw) -> tuple[bytes, str]:
    """(payload, the command_id its ack must carry)."""
    kind = draw(st.sampled_from(["bytes", "json", "command", "command", "handler", "handler"]))
    if kind == "bytes":
        return draw(st.binary(max_size=2000)), UNKNOWN_ID
    if kind == "json":
        value = draw(_json)
        cid = value.get("command_id") if isinstance(value, dict) else None
        ok_id = isinstance(cid, str) and 0 < len(cid) <= 128
        return json.dumps(value).encode(), cid if ok_id else UNKNOWN_ID
    cid = f"h-{uuid.uuid4().hex[:12]}"
    if kind == "handler":  # valid in shape: reaches a handler with hostile content
        action = draw(st.sampled_from(["add_camera", "set_zones", "set_lines", "snapshot", "restart_camera"]))
        cmd: dict[str, Any] = {"command_id": cid, "action": action}
        if action == "add_camera":
            url = draw(st.sampled_from(_HOSTILE_SOURCES) | st.text(min_size=1, max_size=60))
            cmd["camera"] = {
                "id": f"x-{uuid.uuid4().hex[:6]}",
                "url": url,
                **draw(st.dictionaries(st.text(max_size=8), _json, max_size=3)),
            }
        elif action in ("set_zones", "set_lines"):
            cmd["camera_id"] = "cam-a"
            cmd[action[4:]] = draw(
                st.lists(
                    st.dictionaries(
                        st.sampled_from(["name", "polygon", "start", "end", "labels", "coords"]), _json, max_size=4
                    ),
                    max_size=64,
                )
            )
        else:
            cmd["camera_id"] = draw(st.sampled_from(["cam-z", "x" * 64, "CON", "..", "a.b-c_d"]))
        return json.dumps(cmd).encode(), cid
    fields = {"action": json.dumps(draw(_actions))}
    for name in draw(st.lists(_fields, max_size=3, unique=True)):
        fields[name] = _render(draw(_hostile_value))
    if fields.get("camera_id") == '"cam-a"':
        fields["camera_id"] = '"cam-z"'  # destructive commands must not remove the probe's camera
    body = ", ".join(f'"{k}": {v}' for k, v in fields.items())
    return f'{{"command_id": "{cid}", {body}}}'.encode(), cid


@pytest.mark.timeout(300)
def test_hostile_payloads_never_stop_the_agent(agent, acks):
    failures: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.2):
            t0 = time.monotonic()
            if not healthz(agent):
                failures.append(time.monotonic() - t0)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(hostile_payloads())
    def barrage(case: tuple[bytes, str]) -> None:
        payload, cid = case
        before = len(acks.of(cid))
        acks.send(payload)
        assert probe(acks).ok  # the worker still answers, after this payload's ack (acks are in order)
        assert len(acks.of(cid)) == before + 1, f"{len(acks.of(cid)) - before} acks for one payload"

    try:
        barrage()
    finally:
        done.set()
        watcher.join(5)
    assert failures == [], "/healthz did not answer within 1 s during the barrage"
    assert set(agent.cameras) >= {"cam-a"}


@pytest.mark.timeout(120)
def test_the_agent_stops_within_its_drain_timeout_after_the_barrage(agent, acks):
    for i in range(50):  # queued commands at stop time are answered, not left hanging
        acks.send({"command_id": f"late-{i}", **GOOD})
    assert ends_within(lambda: agent.stop(timeout=20), 90), "Agent.stop hung"
    assert all(len(acks.wait(f"late-{i}", timeout=10)) == 1 for i in range(50))
