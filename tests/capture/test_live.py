"""Against real RTSP (GstRtspServer) and HTTP MJPEG (ffmpeg) servers on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import time

import pytest

from edge_agent.capture import CameraConfig, CameraState, Supervisor

from .conftest import free_port
from .helpers import Consumer, wait_for, wait_state

FAST_BACKOFF = {"initial_s": 0.5, "max_s": 2.0, "jitter": 0.2, "max_retries": None}
WATCHDOG = {"stall_timeout_s": 3.0, "open_timeout_s": 4.0, "read_timeout_s": 3.0}


def own_udp_sockets() -> int:
    """UDP sockets held by this process (Linux /proc)."""
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            mine.add(target[8:-1])
    udp = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        if os.path.exists(table):
            with open(table) as f:
                udp |= {line.split()[9] for line in f.read().splitlines()[1:]}
    return len(mine & udp)


def live_cam(cam_id: str, url: str, **kw) -> CameraConfig:
    return CameraConfig(id=cam_id, url=url, backoff=FAST_BACKOFF, watchdog=WATCHDOG, **kw)


@pytest.mark.timeout(150)
def test_server_loss_isolated_and_recovered_within_backoff(rtsp_server, mjpeg_server, vtest):
    states: list[tuple[str, str, str, str]] = []
    sup = Supervisor(
        [
            live_cam("rtsp", rtsp_server.url),
            live_cam("mjpeg", mjpeg_server.url),
            CameraConfig(id="file", url=vtest, loop=True),
        ],
        on_state_change=lambda cid, old, new, why: states.append((cid, old.value, new.value, why)),
    )
    consumer = Consumer(sup)
    sup.start()
    consumer.start()
    try:
        for cam in ("rtsp", "mjpeg", "file"):
            assert wait_state(sup, cam, CameraState.STREAMING, 20), sup.status()[cam]
        assert wait_for(lambda: all(len(consumer.seqs(c)) >= 15 for c in ("rtsp", "mjpeg", "file")), 20), {
            c: len(consumer.seqs(c)) for c in ("rtsp", "mjpeg", "file")
        }

        bound = sup.config("rtsp").backoff.bound(10) + WATCHDOG["open_timeout_s"] + 6.0
        for victim, server, others in (
            ("rtsp", rtsp_server, ("mjpeg", "file")),
            ("mjpeg", mjpeg_server, ("rtsp", "file")),
        ):
            seq_before = sup.status()[victim].counters["last_seq"]
            server.down()
            assert wait_state(sup, victim, CameraState.RECONNECTING, 10), sup.status()[victim]
            reason = sup.status()[victim].reason
            assert reason, "a reconnecting camera must say why"
            # the outage: the other cameras keep their native ~10 fps
            t0 = time.monotonic()
            time.sleep(5.0)
            t1 = time.monotonic()
            for other in others:
                fps = consumer.fps(other, t0, t1)
                assert fps >= 5.0, f"{other} delivered {fps:.1f} fps while {victim} was down"
                assert sup.status()[other].state == CameraState.STREAMING
            assert consumer.count(victim, t0 + 0.5, t1) == 0, "no frames while the server is down"
            assert sup.status()[victim].state == CameraState.RECONNECTING

            t_up = time.monotonic()
            server.up()
            assert wait_state(sup, victim, CameraState.STREAMING, bound), (
                victim,
                sup.status()[victim],
                f"not streaming {bound:.1f}s after the server returned",
            )
            assert wait_for(lambda: max(consumer.seqs(victim), default=-1) > seq_before + 5, 15)  # noqa: B023 - called in the same iteration
            recovered = time.monotonic() - t_up
            assert recovered < bound + 15
        st = sup.status()
        assert st["rtsp"].counters["reconnects"] >= 1 and st["mjpeg"].counters["reconnects"] >= 1
        assert st["file"].counters["reconnects"] == 0
        # per camera, sequence numbers only increase (also across reconnects)
        for cam in ("rtsp", "mjpeg", "file"):
            seqs = consumer.seqs(cam)
            assert all(b > a for a, b in zip(seqs, seqs[1:])), cam
        transitions = [(c, o, n) for c, o, n, _w in states]
        assert ("rtsp", "streaming", "reconnecting") in transitions
        assert ("rtsp", "reconnecting", "streaming") in transitions
        assert ("mjpeg", "streaming", "reconnecting") in transitions
        assert {n for c, _o, n, _w in states if c == "file"} == {"starting", "streaming"}
    finally:
        consumer.stop()
        sup.stop()


@pytest.mark.timeout(60)
def test_stalled_stream_reconnects(rtsp_server):
    """SIGSTOP the server: the TCP connection stays open but no data flows."""
    wd = {"stall_timeout_s": 1.5, "open_timeout_s": 2.0, "read_timeout_s": 6.0}
    sup = Supervisor([CameraConfig(id="cam", url=rtsp_server.url, watchdog=wd, backoff=FAST_BACKOFF)])
    sup.start()
    try:
        assert wait_state(sup, "cam", CameraState.STREAMING, 20)
        assert wait_for(lambda: sup.status()["cam"].counters["frames_delivered"] > 5, 10)
        os.kill(rtsp_server.proc.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            assert wait_state(sup, "cam", CameraState.RECONNECTING, 12), sup.status()["cam"]
            st = sup.status()["cam"]
            # the watchdog (1.5 s) reports the stall before the decoder's own read timeout (6 s)
            assert "stalled" in st.reason, st.reason
            assert time.monotonic() - t0 < 5.5
        finally:
            os.kill(rtsp_server.proc.pid, signal.SIGCONT)
        n = sup.status()["cam"].counters["frames_delivered"]
        assert wait_state(sup, "cam", CameraState.STREAMING, 20), sup.status()["cam"]
        assert wait_for(lambda: sup.status()["cam"].counters["frames_delivered"] > n + 5, 15)
    finally:
        sup.stop()


@pytest.mark.timeout(60)
def test_rtsp_udp_transport(rtsp_server):
    # UDP and TCP clients opened at the same time (the transport is a process-wide FFmpeg
    # option: opens with different options are serialised, not mixed up)
    sup = Supervisor(
        [
            CameraConfig(id="udp", url=rtsp_server.url, transport="udp", watchdog=WATCHDOG),
            CameraConfig(id="tcp", url=rtsp_server.url, transport="tcp", watchdog=WATCHDOG),
        ]
    )
    consumer = Consumer(sup)
    sup.start()
    consumer.start()
    try:
        for cam in ("udp", "tcp"):
            assert wait_state(sup, cam, CameraState.STREAMING, 20), sup.status()[cam]
            assert wait_for(lambda: len(consumer.seqs(cam)) >= 20, 15)  # noqa: B023 - called in the same iteration
        t0 = time.monotonic()
        time.sleep(3)
        assert consumer.fps("udp", t0, time.monotonic()) >= 5
        assert consumer.fps("tcp", t0, time.monotonic()) >= 5
        f = sup.latest("udp")
        assert f is not None and f.image.shape == (576, 768, 3)
        assert "h264" in sup.status()["udp"].counters["source"].lower()
        # the transport really is UDP for one and TCP for the other: RTP/RTCP sockets
        # exist only while the UDP camera runs
        assert own_udp_sockets() >= 2
        sup.stop_camera("udp")
        assert own_udp_sockets() == 0
        n = len(consumer.seqs("tcp"))
        assert wait_for(lambda: len(consumer.seqs("tcp")) > n + 10, 10)
    finally:
        consumer.stop()
        sup.stop()


@pytest.mark.timeout(60)
def test_bad_urls_fail_with_reason(rtsp_server):
    dead = free_port()
    bo = {"initial_s": 0.1, "max_s": 0.3, "jitter": 0.1, "max_retries": 3}
    wd = {"open_timeout_s": 3.0, "read_timeout_s": 3.0, "stall_timeout_s": 3.0}
    cams = [
        CameraConfig(id="refused-rtsp", url=f"rtsp://127.0.0.1:{dead}/cam", backoff=bo, watchdog=wd),
        CameraConfig(id="refused-http", url=f"http://127.0.0.1:{dead}/cam.mjpg", backoff=bo, watchdog=wd),
        CameraConfig(id="wrong-path", url=rtsp_server.url.replace("/cam", "/nope"), backoff=bo, watchdog=wd),
    ]
    expected = {
        "refused-rtsp": f"cannot connect to 127.0.0.1:{dead} (Connection refused)",
        "refused-http": f"cannot connect to 127.0.0.1:{dead} (Connection refused)",
        "wrong-path": "accepts connections but the stream could not be opened",
    }
    sup = Supervisor(cams)
    sup.start()
    try:
        for c in cams:
            assert wait_state(sup, c.id, CameraState.FAILED, 30), sup.status()[c.id]
            st = sup.status()[c.id]
            assert "cannot open" in st.reason and "gave up after 4 attempts" in st.reason, st.reason
            assert expected[c.id] in st.reason, st.reason
            assert st.counters["reconnects"] == 3
            assert sup.latest(c.id) is None
    finally:
        sup.stop()
