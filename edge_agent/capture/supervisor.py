"""The capture supervisor: one worker thread per camera, a watchdog, and the frame hand-off.

::

    sup = Supervisor([CameraConfig(id="gate", url="rtsp://..."), ...], on_state_change=cb)
    sup.start()
    while running:
        for frame in sup.wait_any(timeout=1.0):   # newest new frame of each camera
            infer(frame)
    sup.stop()

Cameras are independent: adding, removing, restarting or losing one never touches
the others' threads. States: ``starting`` -> ``streaming`` <-> ``reconnecting`` ->
``failed`` (after ``backoff.max_retries`` consecutive failed attempts when one is set; by
default a camera retries forever, at most ``backoff.max_s`` apart; at once when retrying
cannot help: missing file, unsupported codec, garbage file), ``stopped``
(operator or end of a non-looping file) and ``disabled`` (``enabled: false``). Each
state change is logged (component="capture", camera=id), exported as
``edgesight_capture_state{camera,state}`` and passed to ``on_state_change(camera_id,
old_state, new_state, reason)``.

Watchdog (every ``watchdog_interval`` s): a streaming camera without a frame for
``watchdog.stall_timeout_s`` is told to reconnect; if its thread is stuck in the
decoder past the read timeout, it is abandoned (its late frames are discarded) and a
fresh worker takes over, so a wedged stream never needs a process restart. It also
computes the per-camera fps gauge.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from edgesight.log import get_logger

from .settings import CameraConfig
from .worker import M_FPS, M_STATE, CameraState, CameraStats, CaptureWorker, Frame, HandoffSlot

StateChangeHook = Callable[[str, CameraState, CameraState, str], None]


@dataclass
class CaptureStatus:
    """One camera's capture state inside the agent (the wire ``CameraStatus`` is built from it)."""

    camera_id: str
    state: CameraState
    reason: str
    since: float  # wall-clock epoch seconds of the last transition
    fps: float  # delivered frames per second, recent window
    read_fps: float  # decoded frames per second, recent window
    enabled: bool
    url: str
    counters: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "camera": self.camera_id,
            "state": self.state.value,
            "reason": self.reason,
            "since": self.since,
            "fps": round(self.fps, 2),
            "read_fps": round(self.read_fps, 2),
            "enabled": self.enabled,
            "url": self.url,
            **self.counters,
        }


class _Camera:
    """Everything the supervisor keeps per camera (survives worker restarts)."""

    def __init__(self, cfg: CameraConfig, cond: threading.Condition, predict_takes: bool = False):
        self.cfg = cfg
        self.stats = CameraStats(cfg.id)
        self.slot = HandoffSlot(cfg.id, cond, self.stats, predict_takes=predict_takes)
        self.worker: CaptureWorker | None = None
        self.generation = 0
        self.state = CameraState.STOPPED
        self.reason = "not started"
        self.since = time.time()
        self.since_mono = time.monotonic()
        self.samples: deque[tuple[float, int, int]] = deque(maxlen=7)
        self.fps = 0.0
        self.read_fps = 0.0
        self.stall_since: float | None = None  # when the watchdog asked for a reconnect
        self.abandoned: list[CaptureWorker] = []
        self.target_fps = cfg.target_fps


class Supervisor:
    def __init__(
        self,
        cameras: list[CameraConfig],
        *,
        agent_id: str = "edge",
        on_state_change: StateChangeHook | None = None,
        watchdog_interval: float = 0.5,
        predict_takes: bool = False,
    ):
        """``predict_takes``: the consumer takes frames in a steady cycle (the agent's inference loop), so a
        frame it would find overwritten anyway is not colour-converted (:meth:`HandoffSlot.unwanted`)."""
        self.agent_id = agent_id
        self.predict_takes = predict_takes
        self.on_state_change = on_state_change
        self.watchdog_interval = watchdog_interval
        self._cond = threading.Condition()
        self._lock = threading.RLock()  # camera table and state changes
        self._cams: dict[str, _Camera] = {}
        self._running = False
        self._wd_stop = threading.Event()
        self._wd: threading.Thread | None = None
        self._log = get_logger("capture", agent=agent_id)
        for cfg in cameras:
            if cfg.id in self._cams:
                raise ValueError(f"duplicate camera id {cfg.id!r}")
            self._cams[cfg.id] = _Camera(cfg, self._cond, self.predict_takes)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        with self._lock:
            if self._running:
                return
            self._running = True
            self._wd_stop.clear()
            for cam in self._cams.values():
                self._launch(cam)
        self._wd = threading.Thread(target=self._watchdog, name="capture-watchdog", daemon=True)
        self._wd.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every camera; waits up to ``timeout`` s in total for the threads."""
        with self._lock:
            self._running = False
            workers = [c.worker for c in self._cams.values() if c.worker is not None]
            for cam in self._cams.values():
                self._halt(cam, "supervisor stopped", keep_terminal=True)
        self._wd_stop.set()
        deadline = time.monotonic() + timeout
        for w in workers:
            w.join(max(0.0, deadline - time.monotonic()))
        if self._wd is not None:
            self._wd.join(max(0.1, deadline - time.monotonic()))
        with self._cond:
            self._cond.notify_all()

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ camera control
    def add_camera(self, cfg: CameraConfig) -> None:
        with self._lock:
            if cfg.id in self._cams:
                raise ValueError(f"camera {cfg.id!r} already exists")
            cam = self._cams[cfg.id] = _Camera(cfg, self._cond, self.predict_takes)
            if self._running:
                self._launch(cam)

    def remove_camera(self, camera_id: str, timeout: float = 5.0) -> None:
        with self._lock:
            cam = self._get(camera_id)
            worker = cam.worker
            self._halt(cam, "removed")
            del self._cams[camera_id]
        if worker is not None:
            worker.join(timeout)
        for st in CameraState:
            try:
                M_STATE.remove(camera_id, st.value)
            except KeyError:
                pass
        try:
            M_FPS.remove(camera_id)
        except KeyError:
            pass

    def start_camera(self, camera_id: str) -> None:
        with self._lock:
            cam = self._get(camera_id)
            if cam.worker is not None and cam.worker.is_alive() and not cam.worker.stopping:
                return
            if not cam.cfg.enabled:
                cam.cfg = cam.cfg.model_copy(update={"enabled": True})
            self._launch(cam, force=True)

    def stop_camera(self, camera_id: str, timeout: float = 5.0) -> None:
        with self._lock:
            cam = self._get(camera_id)
            worker = cam.worker
            self._halt(cam, "stopped by operator")
        if worker is not None:
            worker.join(timeout)

    def restart_camera(self, camera_id: str, cfg: CameraConfig | None = None, timeout: float = 5.0) -> None:
        """Stop and start one camera (optionally with a new configuration).

        The old worker is given ``timeout`` s to let go of the source first (cameras often
        limit the number of RTSP sessions); a worker stuck in the decoder is left behind.
        """
        if cfg is not None and cfg.id != camera_id:
            raise ValueError("restart_camera cannot change a camera's id")
        with self._lock:
            cam = self._get(camera_id)
            old = cam.worker
            self._halt(cam, "restarting")
        if old is not None:
            old.join(timeout)
        with self._lock:
            cam = self._get(camera_id)
            if cfg is not None:
                cam.cfg = cfg
                cam.target_fps = cfg.target_fps
            self._launch(cam, force=True)

    def set_fps(self, camera_id: str, fps: float | None) -> None:
        if fps is not None and not (0 < fps <= 240):
            raise ValueError(f"fps must be in (0, 240] or None (got {fps})")
        with self._lock:
            cam = self._get(camera_id)
            cam.target_fps = fps
            cam.cfg = cam.cfg.model_copy(update={"target_fps": fps})
            if cam.worker is not None:
                cam.worker.target_fps = fps

    def cameras(self) -> list[str]:
        with self._lock:
            return list(self._cams)

    def config(self, camera_id: str) -> CameraConfig:
        with self._lock:
            return self._get(camera_id).cfg

    # ------------------------------------------------------------------ frames
    def latest(self, camera_id: str) -> Frame | None:
        """The newest frame of a camera (taken or not; does not mark it taken)."""
        with self._lock:
            cam = self._cams.get(camera_id)
        return cam.slot.peek() if cam else None

    def take(self, camera_id: str) -> Frame | None:
        """The newest frame not taken yet, or None; marks it taken."""
        with self._lock:
            cam = self._cams.get(camera_id)
        return cam.slot.take() if cam else None

    def wait_any(self, timeout: float | None = None) -> list[Frame]:
        """Wait until at least one camera has a frame not taken yet; take the newest of each.

        Returns [] on timeout or when the supervisor stops. Meant for one consumer.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                with self._lock:
                    slots = [c.slot for c in self._cams.values()]
                frames = [f for f in (s.take_locked() for s in slots) if f is not None]
                if frames or (not self._running and self._wd_stop.is_set()):
                    return frames
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return []
                self._cond.wait(remaining if remaining is not None else 1.0)

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, CaptureStatus]:
        with self._lock:
            return {cid: self._status(cam) for cid, cam in self._cams.items()}

    def stats(self, camera_id: str) -> dict:
        """A JSON-able snapshot for a status API or TUI."""
        with self._lock:
            return self._status(self._get(camera_id)).to_dict()

    def _status(self, cam: _Camera) -> CaptureStatus:
        counters = cam.stats.snapshot()
        if cam.worker is not None and cam.worker.motion_gate is not None:
            counters["motion_skipped"] = cam.worker.motion_gate.skipped
        counters["target_fps"] = cam.target_fps
        return CaptureStatus(
            cam.cfg.id, cam.state, cam.reason, cam.since, cam.fps, cam.read_fps, cam.cfg.enabled, cam.cfg.url, counters
        )

    # ------------------------------------------------------------------ internals
    def _get(self, camera_id: str) -> _Camera:
        try:
            return self._cams[camera_id]
        except KeyError:
            raise KeyError(f"unknown camera {camera_id!r}") from None

    def _launch(self, cam: _Camera, force: bool = False, resume_reason: str | None = None) -> None:
        """Start a fresh worker for ``cam`` (lock held)."""
        if not cam.cfg.enabled and not force:
            self._transition(cam, CameraState.DISABLED, "disabled in configuration")
            return
        if not self._running:
            self._transition(cam, CameraState.STOPPED, "supervisor not running")
            return
        cam.generation += 1
        seq = cam.worker.seq if cam.worker is not None else max(0, cam.stats.last_delivered_seq)
        w = CaptureWorker(
            cam.cfg,
            cam.slot,
            cam.stats,
            self._worker_state,
            seq_start=seq,
            generation=cam.generation,
            resume_reason=resume_reason,
        )
        w.target_fps = cam.target_fps
        cam.worker = w
        cam.stall_since = None
        w.start()

    def _halt(self, cam: _Camera, reason: str, keep_terminal: bool = False) -> None:
        """Ask the current worker to stop (lock held); its late state calls are ignored."""
        w = cam.worker
        if w is not None:
            w.stop()
            cam.generation += 1  # from now on, the old worker's callbacks are stale
        if keep_terminal and cam.state in (CameraState.FAILED, CameraState.DISABLED, CameraState.STOPPED):
            return  # keep why it failed / that it is disabled
        self._transition(cam, CameraState.STOPPED, reason)

    def _worker_state(self, worker: CaptureWorker, state: CameraState, reason: str) -> None:
        with self._lock:
            cam = self._cams.get(worker.cfg.id)
            if cam is None or cam.worker is not worker or worker.generation != cam.generation or worker.stopping:
                return
            cam.stall_since = None  # the worker is out of the decoder: not stuck
            self._transition(cam, state, reason)

    def _transition(self, cam: _Camera, state: CameraState, reason: str) -> None:
        old = cam.state
        if old == state and cam.reason == reason:
            return
        cam.state, cam.reason = state, reason
        cam.since, cam.since_mono = time.time(), time.monotonic()
        cid = cam.cfg.id
        for st in CameraState:
            M_STATE.labels(cid, st.value).set(1.0 if st == state else 0.0)
        level = "warning" if state in (CameraState.RECONNECTING, CameraState.FAILED) else "info"
        getattr(self._log, level)(
            f"camera {cid}: {old.value} -> {state.value}: {reason}",
            extra={"camera": cid, "state": state.value, "prev_state": old.value, "reason": reason},
        )
        hook = self.on_state_change
        if hook is not None and old != state:
            try:
                hook(cid, old, state, reason)
            except Exception:  # a faulty hook must not break capture  # noqa: BLE001 - any failure is reported, the loop goes on
                self._log.exception("on_state_change hook failed", extra={"camera": cid})

    def _watchdog(self) -> None:
        while not self._wd_stop.wait(self.watchdog_interval):
            now = time.monotonic()
            with self._lock:
                cams = list(self._cams.values())
            for cam in cams:
                try:
                    self._check(cam, now)
                except Exception:  # pragma: no cover - never let the watchdog die  # noqa: BLE001 - any failure is reported, the loop goes on
                    self._log.exception("watchdog check failed", extra={"camera": cam.cfg.id})

    def _check(self, cam: _Camera, now: float) -> None:
        st = cam.stats
        cam.samples.append((now, st.frames_delivered, st.frames_read))
        if len(cam.samples) >= 2:
            t0, d0, r0 = cam.samples[0]
            dt = now - t0
            if dt > 0:
                cam.fps = (st.frames_delivered - d0) / dt
                cam.read_fps = (st.frames_read - r0) / dt
        M_FPS.labels(cam.cfg.id).set(cam.fps if cam.state == CameraState.STREAMING else 0.0)
        with self._lock:
            w = cam.worker
            if w is None or w.stopping or not (cam.state == CameraState.STREAMING or cam.stall_since is not None):
                return
            wd = cam.cfg.watchdog
            last = st.last_frame_mono
            if last is None or last < cam.since_mono:
                last = cam.since_mono
            silent = now - last
            limit = wd.stall_timeout_s + 2.0 * w.source_period
            if cam.stall_since is None:
                if silent > limit:
                    cam.stall_since = now
                    self._log.warning(
                        f"camera {cam.cfg.id}: stalled, no frame for {silent:.1f}s; forcing reconnect",
                        extra={"camera": cam.cfg.id, "silent_s": round(silent, 2)},
                    )
                    why = f"stalled: no frame for {silent:.1f}s"
                    w.request_reconnect(why)
                    # report it now: the worker may sit in the decoder until its read timeout
                    self._transition(cam, CameraState.RECONNECTING, f"{why}; reconnecting")
            elif now - cam.stall_since > wd.read_timeout_s + 2.0 and w.is_alive():
                # the thread is wedged in the decoder: abandon it, start a fresh one
                self._log.error(
                    f"camera {cam.cfg.id}: worker stuck for {now - cam.stall_since:.1f}s after a reconnect "
                    "request; replacing it",
                    extra={"camera": cam.cfg.id},
                )
                w.stop()
                cam.abandoned = [a for a in cam.abandoned if a.is_alive()] + [w]
                cam.stats.reconnect()
                self._launch(cam, force=True, resume_reason="replaced a worker stuck in the decoder")
