"""One JSON log stream: native stderr and chatty libraries go through the project's logger, rate-limited.

FFmpeg and OpenCV write plain lines (``[msmpeg4 @ 0x55d0...] Error at MB: 665``) straight
to file descriptor 2, below Python. :func:`capture_native_stderr` points fd 2 at a pipe
whose reader thread turns every line into a JSON log record (component ``ffmpeg``,
``opencv`` or ``native``); the project's JSON handler keeps writing to the original
stderr through a duplicate of it. A line that already is a JSON object (a log line
written through ``sys.stderr``) passes through unchanged.

Repeats are rate-limited by :class:`RepeatLimiter`: the same message (digits and
addresses ignored) is logged at most once per window; the next line logged for it
carries ``suppressed`` = how many were left out. The same limiter wraps librdkafka's
log callback (:class:`RateLimitedLog`), so a broker outage gives a handful of lines,
not one per reconnect attempt.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import re
import sys
import threading
import time
from collections import OrderedDict
from typing import Any, TextIO

NATIVE_LINE_MAX_BYTES = 4096  # a longer native line is cut (the rest is dropped, marked truncated)
REPEAT_WINDOW_S = 30.0  # the same message is logged at most once per window, with a suppressed count
REPEAT_MAX_KEYS = 1024  # distinct messages remembered; the oldest is forgotten past it
NATIVE_MAX_LINES_PER_S = 50  # distinct native lines per second; past it they are counted, not logged

_VOLATILE = re.compile(r"0x[0-9a-fA-F]+|\d+")
_FFMPEG = re.compile(r"^\[(?P<ctx>[\w.:-]+) @ 0x[0-9a-fA-F]+\]\s*")
_OPENCV = re.compile(r"^\[ ?(?P<lvl>WARN|ERROR|INFO|DEBUG|FATAL)[:\d@.]*\]\s*")
_OPENCV_LEVEL = {"WARN": logging.WARNING, "ERROR": logging.ERROR, "FATAL": logging.ERROR, "INFO": logging.INFO}


_RDKAFKA_DEDUP = re.compile(r",? \d+ identical error\(s\) suppressed")


def message_key(text: str) -> str:
    """What makes two messages "the same": the text with numbers and hex addresses blanked, and without
    librdkafka's own ", N identical error(s) suppressed" (its repeats of one error are repeats here too)."""
    return _VOLATILE.sub("#", _RDKAFKA_DEDUP.sub("", text))


class RepeatLimiter:
    """Lets a message through at most once per ``window_s`` (by :func:`message_key`); counts the rest."""

    def __init__(self, window_s: float = REPEAT_WINDOW_S, max_keys: int = REPEAT_MAX_KEYS):
        if window_s < 0:
            raise ValueError(f"window_s must be >= 0 (got {window_s})")
        self.window_s = window_s
        self.max_keys = max_keys
        self._seen: OrderedDict[str, list[float]] = OrderedDict()  # key -> [last emitted (mono), suppressed]
        self._lock = threading.Lock()
        self.suppressed_total = 0

    def check(self, text: str, now: float | None = None) -> int | None:
        """None: suppress this one. Otherwise log it; the int is how many repeats were left out before it."""
        now = time.monotonic() if now is None else now
        key = message_key(text)
        with self._lock:
            entry = self._seen.get(key)
            if entry is not None and now - entry[0] < self.window_s:
                entry[1] += 1
                self.suppressed_total += 1
                return None
            suppressed = int(entry[1]) if entry is not None else 0
            self._seen[key] = [now, 0]
            self._seen.move_to_end(key)
            while len(self._seen) > self.max_keys:
                self._seen.popitem(last=False)
            return suppressed


class RateLimitedLog:
    """A ``logger=`` for confluent-kafka (it calls ``log(level, fmt, *args)``): repeats are rate-limited."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter, window_s: float = REPEAT_WINDOW_S):
        self._logger = logger
        self.limiter = RepeatLimiter(window_s)

    def log(self, level: int, msg: str, *args: Any, **kwargs: Any) -> None:
        text = msg % args if args else msg
        suppressed = self.limiter.check(text)
        if suppressed is None:
            return
        extra = dict(kwargs.pop("extra", None) or {})
        if suppressed:
            extra["suppressed"] = suppressed
        self._logger.log(level, text, extra=extra, **kwargs)


class NativeStderr:
    """fd 2 -> pipe -> reader thread -> JSON log records. Use :func:`capture_native_stderr`."""

    def __init__(self, window_s: float = REPEAT_WINDOW_S, max_lines_per_s: int = NATIVE_MAX_LINES_PER_S):
        self.limiter = RepeatLimiter(window_s)
        self.max_lines_per_s = max_lines_per_s
        self._log = logging.getLogger("edgesight.native")
        self._saved_fd = -1
        self._read_fd = -1
        self._out: TextIO | None = None
        self._thread: threading.Thread | None = None
        self._handlers: list[logging.Handler] = []
        self._second = 0
        self._in_second = 0
        self.lines = 0
        self.dropped = 0

    def install(self) -> NativeStderr:
        handlers = [h for h in logging.getLogger().handlers if getattr(h, "_edgesight", False)]
        if not handlers:
            raise RuntimeError("call edgesight.log.setup_logging before capturing native stderr")
        sys.stderr.flush()
        self._saved_fd = os.dup(2)
        self._out = os.fdopen(self._saved_fd, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
        for h in handlers:  # the JSON handler writes to the real stderr, not into the pipe
            if isinstance(h, logging.StreamHandler) and _fileno(h.stream) == 2:
                h.setStream(self._out)
                self._handlers.append(h)
        if faulthandler.is_enabled():  # a fatal crash's traceback must not go into a pipe nobody reads
            faulthandler.enable(file=self._out, all_threads=True)
        self._read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self._thread = threading.Thread(target=self._reader, name="native-stderr", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 2.0) -> None:
        """Put fd 2 back (the reader logs what is left in the pipe, then ends)."""
        if self._saved_fd < 0:
            return
        sys.stderr.flush()
        os.dup2(self._saved_fd, 2)  # the pipe's last write end is gone: the reader sees EOF
        if self._thread is not None:
            self._thread.join(timeout)
        if faulthandler.is_enabled():
            faulthandler.enable(file=sys.stderr, all_threads=True)
        for h in self._handlers:
            if isinstance(h, logging.StreamHandler) and h.stream is self._out:
                h.setStream(sys.stderr)
        self._handlers = []
        if self._out is not None:
            self._out.flush()
        os.close(self._saved_fd)
        self._saved_fd = -1

    def _reader(self) -> None:
        buf = b""
        cut = False  # the current line was logged cut short: drop the rest of it
        try:
            while True:
                chunk = os.read(self._read_fd, 65536)
                if not chunk:
                    break
                parts = (buf + chunk).split(b"\n")
                buf = parts.pop()
                if cut and parts:
                    parts.pop(0)
                    cut = False
                for raw in parts:
                    self._line(raw)
                if len(buf) > NATIVE_LINE_MAX_BYTES:
                    if not cut:
                        self._line(buf)
                    buf, cut = b"", True
            if buf and not cut:
                self._line(buf)
        finally:
            os.close(self._read_fd)

    def _line(self, raw: bytes) -> None:
        truncated = len(raw) > NATIVE_LINE_MAX_BYTES
        text = raw[:NATIVE_LINE_MAX_BYTES].decode("utf-8", "replace").strip()
        if not text:
            return
        if text.startswith("{") and text.endswith("}") and _is_json(text):
            self._pass_through(text)
            return
        self.lines += 1
        now = time.monotonic()
        if int(now) != self._second:
            self._second, self._in_second = int(now), 0
        suppressed = self.limiter.check(text, now)
        if suppressed is None:
            return
        self._in_second += 1
        if self._in_second > self.max_lines_per_s:
            self.dropped += 1
            return
        component, level, extra = "native", logging.WARNING, {}
        m = _FFMPEG.match(text)
        if m:
            component, extra["context"] = "ffmpeg", m.group("ctx")
        else:
            m = _OPENCV.match(text)
            if m:
                component, level = "opencv", _OPENCV_LEVEL.get(m.group("lvl"), logging.WARNING)
        extra["component"] = component
        if suppressed:
            extra["suppressed"] = suppressed
        if truncated:
            extra["truncated"] = True
        self._log.log(level, text, extra=extra)

    def _pass_through(self, line: str) -> None:
        """A line that already is a JSON record goes out unchanged (under the handler's lock: no interleaving)."""
        h = self._handlers[0] if self._handlers else None
        if h is None or self._out is None:
            return
        h.acquire()
        try:
            self._out.write(line + "\n")
        except (OSError, ValueError):  # closed meanwhile: the process is going down
            pass
        finally:
            h.release()


def _fileno(stream: Any) -> int:
    try:
        return int(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return -1


def _is_json(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        return False


def capture_native_stderr(window_s: float = REPEAT_WINDOW_S) -> NativeStderr:
    """Route everything written to fd 2 (FFmpeg, OpenCV, C libraries) into the JSON log stream."""
    return NativeStderr(window_s).install()
