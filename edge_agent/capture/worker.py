"""One capture worker per camera: a thread that opens, decodes, paces and hands off frames.

Thread, not process
-------------------
Each camera is decoded by a ``threading.Thread``. OpenCV's Python bindings release
the GIL inside ``VideoCapture.grab/read/retrieve``, so decoders of different cameras
run in parallel in one process, and a frame reaches the pipeline as a plain ndarray
reference: no copy, no serialisation. A process per camera would add, per frame, a
copy of the pixels into IPC (pipe or shared memory) and out again on the consumer
side, plus an interpreter + OpenCV per camera (~67 MB RSS each, measured: python + cv2 + one open capture).

Measured with ``python -m ops.bench.capture_bench --decode-cost --frames 300``
(2 busy vCPUs, load average ~6-7, so wall figures are noisy; CPU ms/frame is the
stable figure; two runs shown as ranges):

====================  ===========================  ======================================
clip                  thread: CPU ms/frame          process + pipe: CPU ms/frame (parent)
====================  ===========================  ======================================
vtest 768x576 MSMPEG4 1.0-1.2                       3.9-6.1 (consumer side alone 2.1-4.1)
1080p H.264           7.9-11.4                      26-37   (consumer side alone 10.7-13.9)
====================  ===========================  ======================================

Two decoding threads gave 1.2-2.5x the single-thread frame rate (GIL released). So a
process costs 3-4x the CPU per frame, and the consumer *alone* pays more to receive a
frame from a process than a thread pays to decode it. At camera rates the thread
design costs about 1.5 % of a core per 10 fps 768x576 camera (capture bench: 1.5-1.9 %
per camera for 1-8 cameras) and ~10 % per 10 fps 1080p camera. Isolation (a decoder
crash taking the agent down) is handled by the agent's service manager restart; a
wedged decoder (should FFmpeg ignore its timeouts) is abandoned by the supervisor's
watchdog and replaced by a fresh thread.

Hand-off: latest frame wins
---------------------------
A worker never queues frames. It writes each delivered frame into its camera's
:class:`HandoffSlot`, replacing the previous one; a consumer always takes the newest
frame (with its capture wall-clock ``ts``, ``mono`` and per-camera ``seq``). A frame
that is replaced before anyone took it is counted as
``frames_dropped{reason="overwritten_unconsumed"}``. So when inference is slower than
the camera, the age of what it gets stays bounded by one camera period plus its own
processing time; it never drifts. Decoding itself keeps pace with the camera (every
packet must be decoded anyway for H.264), so FFmpeg's internal buffer does not grow.

Per frame the worker: ``grab()`` (decode) -> frame-rate skipping (``target_fps``,
skipped frames are never colour-converted) -> pacing of files/folders at their native
rate -> with ``predict_takes`` (the agent), a frame the consumer would find overwritten
is counted as delivered and overwritten without being converted (:meth:`HandoffSlot.unwanted`:
the consumer takes frames in a steady cycle; never when an untaken frame waits) ->
``retrieve()`` (BGR) -> ROI crop -> resolution cap (INTER_AREA) -> optional motion gate
-> hand-off.
"""

from __future__ import annotations

import random
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import cv2
import numpy as np

from edge_agent.priority import lower_this_thread
from edgesight import metrics
from edgesight.log import get_logger

from .motion import MotionGate
from .settings import CameraConfig
from .sources import Source, SourceError, open_source


class CameraState(str, Enum):
    STARTING = "starting"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    STOPPED = "stopped"
    DISABLED = "disabled"

    def __str__(self) -> str:  # log/JSON friendly
        return self.value


@dataclass(slots=True)
class Frame:
    camera_id: str
    seq: int  # monotonic per camera (never reset by reconnects)
    ts: float  # capture wall-clock time, epoch seconds
    mono: float  # time.monotonic() at capture
    image: np.ndarray  # BGR, after ROI crop and resolution cap
    motion: bool | None = None  # None: motion gating off
    # Mapping back to the camera's full frame: full = image_xy / scale + origin.
    origin: tuple[int, int] = (0, 0)
    scale: float = 1.0
    source_size: tuple[int, int] = (0, 0)  # (width, height) of the decoded frame

    @property
    def age(self) -> float:
        return time.monotonic() - self.mono


# --- metrics (label camera; get-or-create, shared by all supervisors in the process) ---
M_READ = metrics.counter("capture_frames_read_total", "Frames decoded from the source", ["camera"])
M_DELIVERED = metrics.counter("capture_frames_delivered_total", "Frames written to the hand-off slot", ["camera"])
M_DROPPED = metrics.counter(
    "capture_frames_dropped_total", "Frames not handed to the pipeline, by reason", ["camera", "reason"]
)
M_DECODE_ERR = metrics.counter("capture_decode_errors_total", "Frames/images that could not be decoded", ["camera"])
M_RECONNECTS = metrics.counter("capture_reconnects_total", "Reconnection attempts", ["camera"])
M_FPS = metrics.gauge("capture_fps", "Frames delivered per second (recent window)", ["camera"])
M_LATENCY = metrics.histogram(
    "capture_handoff_latency_seconds", "Age of a frame (capture -> taken by the pipeline)", ["camera"]
)
M_STATE = metrics.gauge("capture_state", "1 for the camera's current state", ["camera", "state"])

HEALTHY_SESSION_S = 5.0  # a stream that lasted this long resets the reconnect backoff

DROP_REASONS = ("skipped_for_fps", "overwritten_unconsumed", "motion_gated", "decode_error")


class CameraStats:
    """Plain counters of one camera (per supervisor), mirrored into Prometheus."""

    def __init__(self, camera_id: str):
        self.camera_id = camera_id
        self.lock = threading.Lock()
        self.frames_read = 0
        self.frames_delivered = 0
        self.frames_taken = 0
        self.unconverted = 0  # of the overwritten_unconsumed frames, those never colour-converted (predicted)
        self.dropped: dict[str, int] = {r: 0 for r in DROP_REASONS}
        self.decode_errors = 0
        self.reconnects = 0
        self.retry_attempt = 0  # consecutive failed attempts so far (0 while streaming)
        self.next_retry_at: float | None = None  # epoch seconds of the next connect attempt, when waiting
        self.last_frame_mono: float | None = None  # last successful grab
        self.last_delivered_seq = -1
        self.source_description = ""
        self._m_read = M_READ.labels(camera_id)
        self._m_delivered = M_DELIVERED.labels(camera_id)
        self._m_drop = {r: M_DROPPED.labels(camera_id, r) for r in DROP_REASONS}
        self._m_decode = M_DECODE_ERR.labels(camera_id)
        self._m_reconn = M_RECONNECTS.labels(camera_id)
        self._m_latency = M_LATENCY.labels(camera_id)

    def read(self, now: float) -> None:
        self.frames_read += 1
        self.last_frame_mono = now
        self._m_read.inc()

    def drop(self, reason: str, n: int = 1) -> None:
        with self.lock:
            self.dropped[reason] = self.dropped.get(reason, 0) + n
        m = self._m_drop.get(reason)
        if m is None:
            m = self._m_drop[reason] = M_DROPPED.labels(self.camera_id, reason)
        m.inc(n)

    def decode_error(self) -> None:
        self.decode_errors += 1
        self._m_decode.inc()
        self.drop("decode_error")

    def reconnect(self) -> None:
        self.reconnects += 1
        self._m_reconn.inc()

    def waiting(self, attempt: int, delay: float | None) -> None:
        """Record the retry state: ``attempt`` consecutive failures, next try in ``delay`` s (None: not waiting)."""
        self.retry_attempt = attempt
        self.next_retry_at = None if delay is None else time.time() + delay

    def delivered(self, seq: int) -> None:
        self.frames_delivered += 1
        self.last_delivered_seq = seq
        self._m_delivered.inc()

    def taken(self, age: float) -> None:
        self.frames_taken += 1
        self._m_latency.observe(age)

    def snapshot(self) -> dict:
        with self.lock:
            dropped = dict(self.dropped)
        return {
            "frames_read": self.frames_read,
            "frames_delivered": self.frames_delivered,
            "frames_taken": self.frames_taken,
            "frames_dropped": dropped,
            "decode_errors": self.decode_errors,
            "reconnects": self.reconnects,
            "retry_attempt": self.retry_attempt,
            "next_retry_at": None if self.next_retry_at is None else round(self.next_retry_at, 3),
            "last_seq": self.last_delivered_seq,
            "last_frame_age_s": None
            if self.last_frame_mono is None
            else round(time.monotonic() - self.last_frame_mono, 3),
            "source": self.source_description,
        }


class HandoffSlot:
    """Holds the newest frame of one camera; all slots share the supervisor's condition.

    With ``predict_takes`` (the agent's pipeline, a consumer with a steady cycle) the slot also answers
    :meth:`unwanted`: whether a frame grabbed now would surely be replaced by the camera's next one before the
    consumer comes back, so the worker can skip its colour conversion (``retrieve``, ~85 % of a frame's capture
    CPU for MPEG-4/H.264 at SD sizes).
    """

    def __init__(self, camera_id: str, cond: threading.Condition, stats: CameraStats, *, predict_takes: bool = False):
        self.camera_id = camera_id
        self._cond = cond
        self._stats = stats
        self._frame: Frame | None = None
        self._taken_seq = -1  # seq of the last frame a consumer took
        self.predict_takes = predict_takes
        self._takes: deque[float] = deque(maxlen=8)  # time.monotonic() of the last takes

    def put(self, frame: Frame) -> None:
        with self._cond:
            prev = self._frame
            if prev is not None and prev.seq > self._taken_seq:
                self._stats.drop("overwritten_unconsumed")
            self._frame = frame
            self._cond.notify_all()

    # the following are called with the condition held (by the Supervisor) or standalone
    def peek(self) -> Frame | None:
        return self._frame

    def take_locked(self) -> Frame | None:
        """Newest frame not taken yet (caller holds the condition); marks it taken."""
        f = self._frame
        if f is None or f.seq <= self._taken_seq:
            return None
        self._taken_seq = f.seq
        now = time.monotonic()
        self._takes.append(now)
        self._stats.taken(now - f.mono)
        return f

    def unwanted(self, now: float, period: float) -> bool:
        """A frame grabbed at ``now`` (monotonic) will be overwritten unconsumed: the next frame comes ``period``
        later, and the consumer, which took this camera's last frame at regular intervals, is not due back before
        then (with half a period to spare; the shortest recent interval counts). Never true while a frame waits
        untaken (the newest must replace it) or before the consumer has a rhythm (three takes)."""
        if not self.predict_takes or period <= 0:
            return False
        f = self._frame
        if f is not None and f.seq > self._taken_seq:
            return False
        takes = list(self._takes)
        if len(takes) < 3:
            return False
        cycle = min(b - a for a, b in zip(takes, takes[1:]))
        return now + 1.5 * period < takes[-1] + cycle

    def take(self) -> Frame | None:
        with self._cond:
            return self.take_locked()

    def clear(self) -> None:
        with self._cond:
            self._frame = None


StateCallback = Callable[["CaptureWorker", CameraState, str], None]


class CaptureWorker(threading.Thread):
    """Captures one camera until stopped, failed or (non-looping file) finished.

    ``on_state(worker, state, reason)`` is called on every state change; the supervisor
    ignores calls from a worker it has abandoned (see ``generation``).
    """

    def __init__(
        self,
        cfg: CameraConfig,
        slot: HandoffSlot,
        stats: CameraStats,
        on_state: StateCallback,
        *,
        seq_start: int = 0,
        generation: int = 0,
        resume_reason: str | None = None,
    ):
        super().__init__(name=f"capture-{cfg.id}-{generation}", daemon=True)
        self.cfg = cfg
        self.slot = slot
        self.stats = stats
        self.generation = generation
        self.target_fps: float | None = cfg.target_fps
        self.seq = seq_start
        self._on_state = on_state
        self._stop_evt = threading.Event()
        self._reconnect_reason: str | None = None
        self._log = get_logger("capture", camera=cfg.id)
        self._rng = random.Random()
        self.motion_gate = MotionGate(cfg.motion) if cfg.motion.enabled else None
        self.session_start: float | None = None
        self.source_period = 0.0
        self._resume_reason = resume_reason  # set when replacing a stuck worker

    # -- control (any thread) --
    def stop(self) -> None:
        self._stop_evt.set()

    @property
    def stopping(self) -> bool:
        return self._stop_evt.is_set()

    def request_reconnect(self, reason: str) -> None:
        self._reconnect_reason = reason

    # -- thread body --
    def run(self) -> None:
        lower_this_thread()
        cfg = self.cfg
        failures = 0  # consecutive attempts that did not lead to a healthy stream
        first = self._resume_reason is None
        reason = self._resume_reason or "starting"
        max_retries = cfg.backoff.max_retries
        while not self._stop_evt.is_set():
            self._set_state(CameraState.STARTING if first else CameraState.RECONNECTING, reason)
            if not first and not self._resume_reason:
                self.stats.reconnect()
            first = False
            self._resume_reason = None
            src: Source | None = None
            try:
                src = open_source(cfg)
            except SourceError as e:
                failures += 1
                if e.permanent or (max_retries is not None and failures > max_retries):
                    why = e.reason if e.permanent else f"{e.reason} (gave up after {failures} attempts)"
                    self.stats.waiting(failures, None)
                    self._set_state(CameraState.FAILED, why)
                    return
                delay = cfg.backoff.delay(failures, self._rng.random())
                reason = (
                    f"{e.reason}; retry {failures}"
                    + (f"/{max_retries}" if max_retries is not None else "")
                    + f" in {delay:.1f}s"
                )
                self.stats.waiting(failures, delay)
                self._set_state(CameraState.RECONNECTING, reason)
                if self._stop_evt.wait(delay):
                    break
                continue
            except Exception as e:  # pragma: no cover - defensive  # noqa: BLE001 - any failure is reported, the loop goes on
                failures += 1
                reason = f"internal error opening source: {type(e).__name__}: {e}"
                self._log.error(reason, extra={"exc_text": traceback.format_exc()})
                delay = cfg.backoff.delay(failures, self._rng.random())
                self.stats.waiting(failures, delay)
                if self._stop_evt.wait(delay):
                    break
                continue

            self.stats.waiting(0, None)
            self.stats.source_description = src.description
            self._reconnect_reason = None
            if self.motion_gate is not None:
                self.motion_gate.reset()
            self._set_state(CameraState.STREAMING, f"opened {src.description}")
            read_before = self.stats.frames_read
            try:
                end = self._stream(src)
            except SourceError as e:
                end = e.reason
                if e.permanent:
                    src.release()
                    self._set_state(CameraState.FAILED, e.reason)
                    return
            except Exception as e:  # a decoder/OpenCV error must never kill the worker  # noqa: BLE001 - any failure is reported, the loop goes on
                end = f"capture error: {type(e).__name__}: {e}"
                self._log.error(end, extra={"exc_text": traceback.format_exc()})
            finally:
                src.release()
            if self._stop_evt.is_set():
                break
            if end == "eof":
                self._set_state(CameraState.STOPPED, "end of file")
                return
            # a session that streamed for a while resets the backoff; one that dies right
            # after opening (flapping camera) keeps growing it and counts towards max_retries
            lasted = time.monotonic() - (self.session_start or time.monotonic())
            healthy = self.stats.frames_read - read_before > 0 and lasted >= HEALTHY_SESSION_S
            failures = 1 if healthy else failures + 1
            if max_retries is not None and failures > max_retries:
                self.stats.waiting(failures, None)
                self._set_state(CameraState.FAILED, f"{end} (gave up after {failures} attempts)")
                return
            delay = cfg.backoff.delay(failures, self._rng.random())
            reason = f"{end}; reconnecting in {delay:.1f}s"
            self.stats.waiting(failures, delay)
            self._set_state(CameraState.RECONNECTING, reason)
            if self._stop_evt.wait(delay):
                break
        # stopped on request: the supervisor sets the final state

    def _set_state(self, state: CameraState, reason: str) -> None:
        self._on_state(self, state, reason)

    def _stream(self, src: Source) -> str:
        """Read until the stream ends; returns why ("eof" for a finished non-looping file)."""
        cfg = self.cfg
        stats = self.stats
        stop = self._stop_evt
        mono = time.monotonic
        period_src = 1.0 / src.native_fps if src.paced and src.native_fps else 0.0
        self.source_period = period_src  # the watchdog allows for slow paced sources
        next_due = mono()  # pacing of files/folders
        next_keep = 0.0  # frame-rate skipping
        pass_frames = 0  # frames read in this pass over a file (loop detection)
        consecutive_bad = 0
        last_kept = kept_period = 0.0  # frames past the rate cap: when the last came, mean interval
        seen_src_errors = getattr(src, "decode_errors", 0)
        self.session_start = mono()
        while not stop.is_set():
            if self._reconnect_reason is not None:
                why, self._reconnect_reason = self._reconnect_reason, None
                return why
            ok = src.grab()
            now = mono()
            if not ok:
                if src.kind in ("file", "folder"):
                    if not cfg.loop:
                        return "eof"
                    if pass_frames == 0:
                        raise SourceError(f"{src.kind} yields no decodable frames", permanent=True)
                    src.rewind()
                    pass_frames = 0
                    continue
                return (
                    f"stream ended or no data for {cfg.watchdog.read_timeout_s:g}s "
                    "(server gone, network down or read timeout)"
                )
            pass_frames += 1
            stats.read(now)
            src_errors = getattr(src, "decode_errors", 0)  # images a folder source skipped
            while seen_src_errors < src_errors:
                seen_src_errors += 1
                stats.decode_error()
            # pacing at native rate (files and folders behave like a camera)
            if period_src:
                next_due += period_src
                if next_due < now - 1.0:  # far behind (slow disk, paused): resync
                    next_due = now
                elif next_due > now:
                    if stop.wait(next_due - now):
                        break
                    now = mono()
            # frame-rate cap: skipped frames are decoded (needed) but never converted
            fps = self.target_fps
            if fps:
                period = 1.0 / fps
                if now < next_keep - 0.25 * period:
                    stats.drop("skipped_for_fps")
                    continue
                next_keep = max(next_keep + period, now - period)
            if last_kept:
                kept_period += 0.2 * ((now - last_kept) - kept_period) if kept_period else now - last_kept
            last_kept = now
            if self.motion_gate is None and self.slot.unwanted(now, kept_period):
                # the consumer would find it overwritten: counted exactly as if it had been delivered and
                # replaced, only its colour conversion is saved
                self.seq += 1
                stats.delivered(self.seq)
                stats.drop("overwritten_unconsumed")
                stats.unconverted += 1
                continue
            ts = time.time()
            img = src.retrieve()
            if img is None:
                stats.decode_error()
                consecutive_bad += 1
                if consecutive_bad >= 50:
                    return "50 consecutive frames could not be decoded"
                continue
            consecutive_bad = 0
            frame = self._shape(img, now, ts)
            if self.motion_gate is not None:
                res = self.motion_gate.update(frame.image, now)
                frame.motion = res.motion
                if not res.deliver:
                    stats.drop("motion_gated")
                    continue
            self.seq += 1
            frame.seq = self.seq
            if self._stop_evt.is_set():
                break
            self.slot.put(frame)
            stats.delivered(frame.seq)
        return "stopped"

    def _shape(self, img: np.ndarray, now: float, ts: float) -> Frame:
        cfg = self.cfg
        h, w = img.shape[:2]
        ox = oy = 0
        roi = cfg.roi_pixels(w, h)
        if roi is not None:
            ox, oy, rw, rh = roi
            img = img[oy : oy + rh, ox : ox + rw]
        ih, iw = img.shape[:2]
        scale = 1.0
        if cfg.max_width and iw > cfg.max_width:
            scale = cfg.max_width / iw
        if cfg.max_height and ih * scale > cfg.max_height:
            scale = cfg.max_height / ih
        if scale < 1.0:
            nw, nh = max(1, int(round(iw * scale))), max(1, int(round(ih * scale)))
            img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
            scale = nw / iw
        elif roi is not None:
            img = np.ascontiguousarray(img)
        return Frame(cfg.id, 0, ts, now, img, None, (ox, oy), scale, (w, h))
