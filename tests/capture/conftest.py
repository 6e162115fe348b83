"""Real camera servers on 127.0.0.1 for the capture tests (no mocks).

* :class:`RtspServer`: ``ops/cameras/rtsp_server.py`` run by Debian's /usr/bin/python3
  (GstRtspServer), serving vtest.avi as H.264, looping, paced at its native 10 fps.
* :class:`MjpegServer`: ``ffmpeg -re -stream_loop -1 ... -f mpjpeg -listen 1``. ffmpeg
  serves one client and exits when it disconnects, so a keeper thread restarts it while
  the server is meant to be up.

Both can be killed and brought back on the same port (``down()`` / ``up()``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from edgesight.samples import VTEST

HERE = Path(__file__).resolve().parent
SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SCRIPT = HERE.parent.parent / "ops" / "cameras" / "rtsp_server.py"  # the demo's RTSP camera too


def free_port() -> int:
    """A free port below the ephemeral range (see ops.stack.free_ports)."""
    from ops.stack import free_ports

    return free_ports(1)[0]


def wait_port(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


class RtspServer:
    def __init__(self, file: str = str(VTEST), port: int | None = None, path: str = "/cam"):
        self.file = file
        self.port = port or free_port()
        self.path = path
        self.url = f"rtsp://127.0.0.1:{self.port}{path}"
        self.proc: subprocess.Popen | None = None
        self.log = HERE.parent.parent / ".pytest_cache" / f"rtsp-{self.port}.log"

    def up(self, timeout: float = 15.0) -> RtspServer:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        err = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(RTSP_SCRIPT), "--port", str(self.port), "--path", self.path, "--file", self.file],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        err.close()
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("READY") or not line:
                break
        if not line.startswith("READY"):
            self.down()
            raise RuntimeError(f"RTSP server did not start on port {self.port}: see {self.log}")
        return self

    def down(self) -> None:
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.kill()  # like a camera losing power: no RTSP TEARDOWN
            p.wait(10)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class MjpegServer:
    def __init__(self, file: str = str(VTEST), port: int | None = None):
        self.file = file
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/cam.mjpg"
        self._want_up = False
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._keeper: threading.Thread | None = None
        self.starts = 0

    def _spawn(self) -> subprocess.Popen:
        self.starts += 1
        return subprocess.Popen(
            [
                "ffmpeg",
                "-nostdin",
                "-loglevel",
                "error",
                "-re",
                "-stream_loop",
                "-1",
                "-i",
                self.file,
                "-c:v",
                "mjpeg",
                "-q:v",
                "6",
                "-f",
                "mpjpeg",
                "-listen",
                "1",
                self.url,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _keep(self) -> None:
        while True:
            with self._lock:
                if not self._want_up:
                    return
                if self._proc is None or self._proc.poll() is not None:
                    self._proc = self._spawn()
            time.sleep(0.05)

    def up(self) -> MjpegServer:
        with self._lock:
            self._want_up = True
            self._proc = self._spawn()
        # ffmpeg -listen 1 serves one client and then stops listening: a camera retrying every few
        # hundred ms can be that client before this probe connects, so a running ffmpeg counts as up
        if not wait_port(self.port, 10) and self._proc.poll() is not None:
            raise RuntimeError(f"ffmpeg MJPEG server did not listen on {self.port}")
        self._keeper = threading.Thread(target=self._keep, daemon=True)
        self._keeper.start()
        return self

    def down(self) -> None:
        with self._lock:
            self._want_up = False
            p, self._proc = self._proc, None
        if self._keeper is not None:
            self._keeper.join(5)
            self._keeper = None
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(10)


@pytest.fixture(scope="session")
def vtest(vtest_path) -> str:
    return str(vtest_path)


@pytest.fixture
def rtsp_server(vtest):
    assert os.path.exists(SYSTEM_PYTHON)
    srv = RtspServer(vtest).up()
    yield srv
    srv.down()


@pytest.fixture
def mjpeg_server(vtest):
    assert shutil.which("ffmpeg"), "ffmpeg not installed"
    srv = MjpegServer(vtest).up()
    yield srv
    srv.down()


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory, vtest) -> Path:
    """Broken and odd media made from vtest.avi, once per session."""
    d = tmp_path_factory.mktemp("media")
    data = Path(vtest).read_bytes()
    # truncated: the first 35% of the file (no index, ends mid-frame)
    (d / "truncated.avi").write_bytes(data[: int(len(data) * 0.35)])
    # corrupted: 8 chunks of 4 KiB of noise in the middle of the frame data
    import random

    rng = random.Random(1234)
    buf = bytearray(data)
    for i in range(8):
        off = int(len(buf) * (0.2 + 0.07 * i))
        buf[off : off + 4096] = bytes(rng.getrandbits(8) for _ in range(4096))
    (d / "corrupt.avi").write_bytes(bytes(buf))
    # garbage with a video extension
    (d / "garbage.mp4").write_bytes(bytes(rng.getrandbits(8) for _ in range(200_000)))
    # a real AVI header followed by garbage: the container opens, no frame decodes
    (d / "header_only.avi").write_bytes(
        data[: data.find(b"movi") + 4] + bytes(rng.getrandbits(8) for _ in range(50_000))
    )
    # a valid file with no video stream (audio only)
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=2",
            str(d / "audio_only.wav"),
        ],
        check=True,
    )
    # a short clip (non-looping end-of-file)
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-i",
            vtest,
            "-frames:v",
            "20",
            "-c:v",
            "mjpeg",
            "-q:v",
            "5",
            str(d / "short.avi"),
        ],
        check=True,
    )
    # a static scene: 40 copies of one frame, as an image folder
    static = d / "static"
    static.mkdir()
    import cv2

    cap = cv2.VideoCapture(vtest)
    ok, img = cap.read()
    cap.release()
    assert ok
    for i in range(40):
        cv2.imwrite(str(static / f"{i:04d}.jpg"), img)
    (static / "0020.jpg").write_bytes(b"not a jpeg")  # one unreadable image
    return d
