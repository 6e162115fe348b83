"""Opening every kind of camera source through OpenCV, with bounded open/read times.

:func:`open_source` turns a :class:`~edge_agent.capture.settings.CameraConfig` into a
:class:`Source` with a small grab/retrieve interface, or raises :class:`SourceError`
with a readable reason and whether retrying can help (``permanent``).

* rtsp://, http(s)://, files: OpenCV's FFmpeg backend, opened with
  ``CAP_PROP_OPEN_TIMEOUT_MSEC`` / ``CAP_PROP_READ_TIMEOUT_MSEC`` so a dead URL or a
  stream that stops sending makes ``open``/``grab`` return after the timeout instead of
  hanging the thread (FFmpeg's interrupt callback). The RTSP transport and extra
  demuxer options go through ``OPENCV_FFMPEG_CAPTURE_OPTIONS``, a process-wide
  environment variable read at open time: :class:`_FfmpegOptionsGate` lets opens with
  the same options run concurrently and serialises only opens that need different ones.
* usb:N, /dev/videoN: V4L2.
* a folder: the images in it, sorted by name, paced like a camera.

A source is validated at open time by decoding its first frame, so an unsupported
codec, a garbage file or a file without a video stream fails in ``open_source`` (for
local files permanently: retrying cannot help).
"""

from __future__ import annotations

import os
import socket
import threading
from urllib.parse import urlsplit

import cv2
import numpy as np

from .settings import IMAGE_EXTS, CameraConfig

ENV_OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"


class SourceError(Exception):
    """Opening or reading a source failed; ``reason`` is meant for humans (status API, logs)."""

    def __init__(self, reason: str, *, permanent: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class _FfmpegOptionsGate:
    """Serialises FFmpeg opens that need a different ``OPENCV_FFMPEG_CAPTURE_OPTIONS``."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._current: str | None = None
        self._holders = 0

    def acquire(self, options: str) -> None:
        with self._cond:
            while self._holders and self._current != options:
                self._cond.wait()
            if self._current != options:
                if options:
                    os.environ[ENV_OPTIONS] = options
                else:
                    os.environ.pop(ENV_OPTIONS, None)
                self._current = options
            self._holders += 1

    def release(self) -> None:
        with self._cond:
            self._holders -= 1
            self._cond.notify_all()


_gate = _FfmpegOptionsGate()


def ffmpeg_options(cfg: CameraConfig) -> str:
    opts: dict[str, str] = {}
    if cfg.kind == "rtsp":
        opts["rtsp_transport"] = cfg.transport
        # 1 s of probing is enough for a camera sending SPS/PPS with every key frame and
        # halves the time to first frame (FFmpeg's default is 5 s).
        opts["analyzeduration"] = "1000000"
    opts.update(cfg.ffmpeg_options)
    return "|".join(f"{k};{v}" for k, v in opts.items())


def _fourcc_text(cap: cv2.VideoCapture) -> str:
    code = int(cap.get(cv2.CAP_PROP_FOURCC)) & 0xFFFFFFFF
    if not code:
        return "?"
    s = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))
    return s if s.isprintable() else hex(code)


def _diagnose(cfg: CameraConfig) -> str:
    """Why a network stream did not open, as far as a plain TCP connect can tell."""
    if cfg.kind == "usb":
        return "device missing, busy or not a V4L2 capture device"
    try:
        u = urlsplit(cfg.url)
        host = u.hostname or ""
        port = u.port or {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}.get(u.scheme.lower(), 0)
    except ValueError as e:
        return f"malformed URL ({e})"
    if not host or not port:
        return "malformed URL (no host or port)"
    try:
        with socket.create_connection((host, port), timeout=min(3.0, cfg.watchdog.open_timeout_s)):
            pass
    except socket.gaierror as e:
        return f"cannot resolve host {host!r} ({e.strerror or e})"
    except TimeoutError:
        return f"no answer from {host}:{port} (timed out)"
    except OSError as e:
        return f"cannot connect to {host}:{port} ({e.strerror or e})"
    return (
        f"{host}:{port} accepts connections but the stream could not be opened within "
        f"{cfg.watchdog.open_timeout_s:g}s (wrong path, authentication required, no video "
        "stream or unsupported codec)"
    )


class Source:
    """A frame source: ``grab()`` (decode, cheap to skip) then ``retrieve()`` (BGR array)."""

    kind: str = "?"
    native_fps: float | None = None  # frames per second the source produces (None = unknown)
    paced: bool = False  # True: the reader must pace itself (files, folders)
    description: str = ""

    def grab(self) -> bool:
        raise NotImplementedError

    def retrieve(self) -> np.ndarray | None:
        raise NotImplementedError

    def rewind(self) -> None:
        """Start again from the beginning (files/folders); raises SourceError if impossible."""
        raise SourceError(f"{self.kind} sources cannot loop", permanent=True)

    def release(self) -> None:
        pass


class CvSource(Source):
    """Anything OpenCV's ``VideoCapture`` reads (FFmpeg or V4L2 backend)."""

    def __init__(self, cfg: CameraConfig):
        self.cfg = cfg
        self.kind = cfg.kind
        self.paced = cfg.kind == "file" and cfg.realtime
        self._cap: cv2.VideoCapture | None = None
        self._pending: np.ndarray | None = None  # first frame decoded by the validation
        self._open()

    def _open(self) -> None:
        cfg = self.cfg
        wd = cfg.watchdog
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(wd.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(wd.read_timeout_s * 1000),
        ]
        if cfg.kind == "usb":
            cap = cv2.VideoCapture(cfg.usb_index, cv2.CAP_V4L2, params)
            what = f"USB camera {cfg.url}"
        else:
            if cfg.kind == "file":
                path = cfg.path
                if not os.path.exists(path):
                    raise SourceError(f"file not found: {path}", permanent=True)
                if not os.path.isfile(path):
                    raise SourceError(f"not a regular file: {path}", permanent=True)
                if os.path.getsize(path) == 0:
                    raise SourceError(f"file is empty: {path}", permanent=True)
                what, target = f"file {path}", path
            else:
                what, target = cfg.kind.upper() + " stream", cfg.url
            opts = ffmpeg_options(cfg)
            _gate.acquire(opts)
            try:
                cap = cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
            finally:
                _gate.release()
        if not cap.isOpened():
            cap.release()
            if cfg.kind == "file":
                raise SourceError(
                    f"cannot open {what}: not a readable video (unknown container, no video stream "
                    "or unsupported codec)",
                    permanent=True,
                )
            raise SourceError(f"cannot open {what}: {_diagnose(cfg)}")
        codec = _fourcc_text(cap)
        ok, first = cap.read()
        if not ok or first is None or first.size == 0:
            cap.release()
            msg = f"{what} opened (codec {codec}) but no frame could be decoded: unsupported codec or corrupt data"
            raise SourceError(msg, permanent=cfg.kind == "file")
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.native_fps = cfg.source_fps or (fps if fps and 0.5 <= fps <= 240 else None)
        if self.paced and not self.native_fps:
            self.native_fps = 25.0
        h, w = first.shape[:2]
        self.description = f"{cfg.kind} codec={codec} {w}x{h} fps={self.native_fps or '?'}"
        self._cap = cap
        self._pending = first

    def grab(self) -> bool:
        if self._pending is not None:
            return True
        assert self._cap is not None
        return bool(self._cap.grab())

    def retrieve(self) -> np.ndarray | None:
        if self._pending is not None:
            img, self._pending = self._pending, None
            return img
        assert self._cap is not None
        ok, img = self._cap.retrieve()
        return img if ok and img is not None and img.size else None

    def rewind(self) -> None:
        if self.kind != "file":
            return super().rewind()
        self.release()
        self._open()

    def release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._pending = None


class FolderSource(Source):
    """The images of a folder in name order; unreadable images are skipped (decode errors)."""

    kind = "folder"

    def __init__(self, cfg: CameraConfig):
        self.cfg = cfg
        root = cfg.path
        try:
            names = sorted(n for n in os.listdir(root) if n.lower().endswith(IMAGE_EXTS))
        except OSError as e:
            raise SourceError(f"cannot list image folder {root}: {e.strerror}", permanent=True) from None
        if not names:
            raise SourceError(f"image folder {root} has no images ({', '.join(IMAGE_EXTS)})", permanent=True)
        self._files = [os.path.join(root, n) for n in names]
        self._i = 0
        self._img: np.ndarray | None = None
        self.decode_errors = 0
        self.native_fps = cfg.source_fps or 5.0
        self.paced = cfg.realtime
        if not any(cv2.imread(f) is not None for f in self._files[:10]):
            raise SourceError(f"none of the first images in {root} can be decoded", permanent=True)
        self.description = f"folder {len(self._files)} images fps={self.native_fps:g}"

    def grab(self) -> bool:
        while self._i < len(self._files):
            path = self._files[self._i]
            self._i += 1
            img = cv2.imread(path, cv2.IMREAD_COLOR)
            if img is not None and img.size:
                self._img = img
                return True
            self.decode_errors += 1
        return False

    def retrieve(self) -> np.ndarray | None:
        img, self._img = self._img, None
        return img

    def rewind(self) -> None:
        self._i = 0


def open_source(cfg: CameraConfig) -> Source:
    """Open ``cfg``'s source; raises :class:`SourceError` (never hangs past the open timeout)."""
    try:
        if cfg.kind == "folder":
            return FolderSource(cfg)
        return CvSource(cfg)
    except SourceError:
        raise
    except Exception as e:  # OpenCV errors, odd paths...: never let them kill the worker  # noqa: BLE001 - any failure is reported, the loop goes on
        raise SourceError(f"cannot open {cfg.kind} source: {type(e).__name__}: {e}") from None
