"""Hostile bytes at the gate: garbled PROXY headers and request frames never crash it and never reach the broker
unless authorized. The gate runs in-process (its own event loop thread) in front of a recording relay to the real
Tansu of the session; the relay keeps every frame the gate forwarded, which the tests check independently of the
gate's parser (api keys the identity may use; no frame naming a forbidden topic)."""

from __future__ import annotations

import asyncio
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ops.kafka_gate import proxyproto, role_acls, write_acl_file
from ops.kafka_gate.requests import MAX_VERSION, parse
from ops.kafka_gate.server import Gate
from ops.stack import free_ports
from tests.kafka_gate.conftest import PREFIX, GateStack, wait_port
from tests.kafka_gate.test_gate_protocol import CASES, encode

pytestmark = pytest.mark.stack

FORBIDDEN = "FORBID"
# What agent-1 may send through with resources in it: ApiVersions, Metadata, FindCoordinator, DescribeCluster,
# Produce (to its topics), InitProducerId (idempotent). Other parsed APIs only when they name no resource (a
# mutated count of 0: the broker touches nothing); APIs the gate does not parse never (agent-1 has no cluster All).
AGENT_APIS = {0, 3, 10, 18, 22, 60}


class Relay:
    """Byte pipe gate -> Tansu that records, per connection, what the gate sent."""

    def __init__(self, upstream: int):
        self.upstream = upstream
        self.streams: list[bytearray] = []
        self.port = 0

    async def start(self) -> None:
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]

    async def _accept(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        rec = bytearray()
        self.streams.append(rec)
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            w.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, record: bool) -> None:
            try:
                while data := await src.read(65536):
                    if record:
                        rec.extend(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(r, uw, True), pipe(ur, w, False))

    def frames(self) -> list[bytes]:
        out = []
        for rec in self.streams:
            pos = 0
            while pos + 4 <= len(rec):
                (n,) = struct.unpack(">i", rec[pos : pos + 4])
                assert 0 <= n <= len(rec) - pos - 4, "the gate forwarded a partial frame"
                out.append(bytes(rec[pos + 4 : pos + 4 + n]))
                pos += 4 + n
            assert pos == len(rec), "the gate forwarded a partial frame"
        return out


@pytest.fixture(scope="module")
def inproc(gate_stack: GateStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gate, Relay]]:
    acl = tmp_path_factory.mktemp("fuzz") / "acls.json"
    write_acl_file(acl, role_acls({"agent-1": "agent"}, prefix=PREFIX, connect="edgesight-connect"))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    relay = Relay(gate_stack.tansu_port)
    asyncio.run_coroutine_threadsafe(relay.start(), loop).result(5)
    gate = Gate(("127.0.0.1", 0), ("127.0.0.1", relay.port), acl)
    asyncio.run_coroutine_threadsafe(gate.start(), loop).result(5)
    yield gate, relay
    asyncio.run_coroutine_threadsafe(gate.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def _exchange(port: int, data: bytes, timeout_s: float = 5.0) -> bytes:
    """Send ``data``, half-close, read until the gate closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            return b""
        out = bytearray()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except (ConnectionError, TimeoutError):
                break
            if not chunk:
                break
            out += chunk
        return bytes(out)


def _api_versions(corr: int = 1) -> bytes:
    body = struct.pack(">hhi", 18, 0, corr) + b"\x00\x04fuzz"
    return struct.pack(">i", len(body)) + body


def _still_works(gate: Gate) -> None:
    answer = _exchange(gate.port, proxyproto.encode("agent-1") + _api_versions(77))
    assert len(answer) > 10 and struct.unpack(">i", answer[4:8])[0] == 77, answer[:40]


def _check_forwarded(relay: Relay) -> None:
    for frame in relay.frames():
        (api,) = struct.unpack(">h", frame[:2])
        assert api in MAX_VERSION, f"api {api}, which the gate does not parse, forwarded for an agent"
        if api not in (3, 10):  # Metadata/FindCoordinator may name anything
            assert FORBIDDEN.encode() not in frame, frame[:80]
        if api not in AGENT_APIS:
            assert not parse(frame).checks, f"api {api} with resources forwarded for an agent"


def _valid_header() -> st.SearchStrategy[bytes]:
    return st.sampled_from(["agent-1", "nobody", "", "agent-1\x00"]).map(proxyproto.encode)


def _mutate(data: bytes, draw: st.DrawFn) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(0, 4))):
        if not out:
            break
        i = draw(st.integers(0, len(out) - 1))
        out[i] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(out)))
    return bytes(out[:cut]) if draw(st.booleans()) else bytes(out)


@st.composite
def garbled_headers(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["random", "mutated", "verify", "local"]))
    if kind == "random":
        return draw(st.binary(max_size=64))
    if kind == "verify":
        return proxyproto.encode("agent-1", verify=draw(st.integers(1, 2**32 - 1)))
    if kind == "local":
        raw = bytearray(proxyproto.encode("agent-1"))
        raw[12] = 0x20
        return bytes(raw)
    return _mutate(draw(_valid_header()), draw)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(header=garbled_headers())
def test_garbled_proxy_headers(inproc: tuple[Gate, Relay], header: bytes) -> None:
    gate, relay = inproc
    before = len(relay.streams)
    answer = _exchange(gate.port, header + _api_versions())
    if answer:  # only a header that still names agent-1, verified, gets through
        info = proxyproto.parse(header[:16], header[16 : 16 + proxyproto.payload_length(header[:16])])
        assert info.cn == "agent-1"
    else:
        assert len(relay.streams) in (before, before + 1)
    _check_forwarded(relay)


def _frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


@st.composite
def hostile_frames(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["random", "real", "mutated", "size", "truncated"]))
    if kind == "random":
        head = struct.pack(
            ">hhi", draw(st.integers(-5, 80)), draw(st.integers(-2, 20)), draw(st.integers(-(2**31), 2**31 - 1))
        )
        return _frame(head + draw(st.binary(max_size=120)))
    if kind == "size":
        return struct.pack(">i", draw(st.sampled_from([-1, -(2**31), 2**31 - 1, 100 * 1024 * 1024 + 1, 0, 3])))
    api = draw(st.sampled_from(sorted(CASES)))
    cls, build, _ = CASES[api]
    version = draw(st.integers(0, min(MAX_VERSION[api], cls.max_version)))
    topics = [f"{PREFIX}.{FORBIDDEN}.{draw(st.integers(0, 99))}"]
    if api == 0 and draw(st.booleans()):
        topics.insert(0, f"{PREFIX}.detections.v1")
    body = encode(cls, version, build(version, topics, [f"{FORBIDDEN}-group"], [0]), correlation_id=5)
    if kind == "real":
        return _frame(body)
    if kind == "truncated":
        return _frame(body)[: draw(st.integers(0, len(body) + 3))]
    return _frame(_mutate(body, draw))


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(frames=st.lists(hostile_frames(), min_size=1, max_size=4))
def test_hostile_request_frames(inproc: tuple[Gate, Relay], frames: list[bytes]) -> None:
    gate, relay = inproc
    _exchange(gate.port, proxyproto.encode("agent-1") + _api_versions() + b"".join(frames))
    _check_forwarded(relay)
    _still_works(gate)


def test_refusals_keep_request_order(inproc: tuple[Gate, Relay]) -> None:
    """Pipelined: ApiVersions (broker), a refused Produce (synthesized), ApiVersions (broker): answers in order."""
    gate, _ = inproc
    cls, build, _ = CASES[0]
    produce = _frame(encode(cls, 9, build(9, [f"{PREFIX}.{FORBIDDEN}"], [], [0, 1]), correlation_id=2))
    answer = _exchange(gate.port, proxyproto.encode("agent-1") + _api_versions(1) + produce + _api_versions(3))
    corrs = []
    pos = 0
    while pos + 8 <= len(answer):
        n, corr = struct.unpack(">ii", answer[pos : pos + 8])
        corrs.append(corr)
        pos += 4 + n
    assert corrs == [1, 2, 3]


def test_sigterm_closes_connections_and_exits_zero(gate_stack: GateStack) -> None:
    (port,) = free_ports(1)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ops.kafka_gate",
            "--listen",
            f"127.0.0.1:{port}",
            "--upstream",
            f"127.0.0.1:{gate_stack.tansu_port}",
            "--acls",
            str(Path(gate_stack.acl_file)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(proxyproto.encode("agent-1") + _api_versions(9))
            assert len(s.recv(65536)) > 8
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
            assert s.recv(1) == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_missing_header_is_cut_off_in_time(inproc: tuple[Gate, Relay], monkeypatch: pytest.MonkeyPatch) -> None:
    from ops.kafka_gate import server

    gate, _ = inproc
    monkeypatch.setattr(server, "HEADER_TIMEOUT_S", 0.5)
    with socket.create_connection(("127.0.0.1", gate.port), timeout=5) as s:
        s.sendall(proxyproto.encode("agent-1")[:10])  # a header that never completes
        started = time.monotonic()
        assert s.recv(1) == b""
        assert time.monotonic() - started < 3
    _still_works(gate)


def test_refusal_lines_are_rate_limited() -> None:
    from ops.kafka_gate.server import RefusalLog

    rl = RefusalLog(window_s=0.2)
    assert rl.admit("agent-1", "Produce", "topic", "t", "Write") == 0
    assert rl.admit("agent-1", "Produce", "topic", "t", "Write") is None
    assert rl.admit("agent-1", "Produce", "topic", "t", "Write") is None
    assert rl.admit("agent-1", "Produce", "topic", "u", "Write") == 0  # another resource: its own line
    time.sleep(0.25)
    assert rl.admit("agent-1", "Produce", "topic", "t", "Write") == 2  # the next line counts the repeats
