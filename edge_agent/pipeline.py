"""The agent's data path: capture -> inference -> tracking/zones -> events + keyframes -> publish.

Two threads after capture, joined by one bounded queue::

    capture workers ──(latest-frame slot per camera)──► inference thread
        (one per camera)                                 batches the newest frame of
                                                         each camera (up to B, or T ms)
                                                               │ results queue (bounded)
                                                               ▼
                                                         track+publish thread
                                                         tracker, zones, lines, events,
                                                         keyframe policy, publisher.publish_*

Where overload drops what (and where it is counted):
- capture: a frame not taken before the next one arrives is overwritten
  (``capture_frames_dropped_total{reason="overwritten_unconsumed"}``); frames
  above ``target_fps`` are skipped (``skipped_for_fps``); static scenes with
  motion gating (``motion_gated``). Latency never drifts: inference always
  gets the newest frame.
- inference -> tracking: the results queue never drops; when it is full the
  inference thread waits (back-pressure), so capture drops instead.
- publish: never drops while the spool has room; a full spool drops its
  *oldest* records and counts them (``publish_spool_dropped_total``).
Events and keyframes accepted by the publisher are journaled on disk.

An optional :class:`FrameObserver` (the agent's TUI feed, :mod:`edge_agent.feed`) is handed each
processed frame with its tracks and records; it only keeps references (it must never wait).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edge_agent.capture.supervisor import Supervisor
from edge_agent.capture.worker import Frame
from edge_agent.detections import Detections
from edge_agent.emit import frame_geometry, to_event
from edge_agent.priority import lower_this_thread
from edge_agent.publish.keyframes import KeyframeSelector, TrackUpdate
from edge_agent.tracking.events import CameraTracking, ObjectUpdate
from edge_agent.tracking.settings import CameraTrackingConfig
from edgesight import metrics
from edgesight.log import get_logger
from edgesight.wire import DetectionEvent, KeyframeMeta, ModelRef

log = get_logger("pipeline")

M_INFER_FRAMES = metrics.counter("pipeline_frames_inferred_total", "Frames run through the detector", ["camera"])
M_EVENTS = metrics.counter("pipeline_events_total", "Detection events accepted by the publisher", ["camera", "kind"])
M_KEYFRAMES = metrics.counter("pipeline_keyframes_total", "Keyframes accepted by the publisher", ["camera"])
M_QUEUE = metrics.gauge("pipeline_results_queue", "Frames waiting between inference and tracking", [])
M_STAGE = metrics.histogram("pipeline_stage_seconds", "Time spent per batch/frame in a stage", ["stage"])
M_E2E = metrics.histogram("pipeline_capture_to_publish_seconds", "Capture -> events accepted by the publisher", [])
M_ERRORS = metrics.counter("pipeline_errors_total", "Exceptions caught in a stage (the stage keeps running)", ["stage"])


class Detector(Protocol):
    """What the pipeline needs from the inference engine."""

    def infer(self, frames: Sequence[np.ndarray]) -> list[Detections]: ...


class Publisher(Protocol):
    """What the pipeline needs from the publisher."""

    def publish_event(self, event: DetectionEvent) -> int: ...

    def publish_keyframe(self, meta: KeyframeMeta, jpeg: bytes) -> int: ...


class FrameObserver(Protocol):
    """Sees what the tracking thread processed (the TUI feed); called on that thread, so it must not wait."""

    def observe(
        self, frame: Frame, detections: int, tracked: Detections, records: list[ObjectUpdate], infer_s: float
    ) -> None: ...

    def ended(self, camera_id: str, records: list[ObjectUpdate]) -> None: ...


@dataclass
class Result:
    frame: Frame
    detections: Detections
    infer_s: float = 0.0  # inference time of the frame's batch


class Pipeline:
    def __init__(
        self,
        *,
        agent_id: str,
        run_id: str,
        supervisor: Supervisor,
        detector_ref: Callable[[], Detector],
        model_ref: Callable[[], ModelRef],
        class_names: list[str],
        publisher: Publisher,
        keyframes: KeyframeSelector,
        tracking_config: Callable[[str], CameraTrackingConfig],
        batch_max_size: int = 4,
        batch_max_wait_ms: float = 10.0,
        results_queue: int = 32,
        observer: FrameObserver | None = None,
    ):
        self.agent_id = agent_id
        self.run_id = run_id  # this process's run (wire contract v2): track ids and seq restart with it
        self.supervisor = supervisor
        self.detector_ref = detector_ref
        self.model_ref = model_ref
        self.class_names = class_names
        self.publisher = publisher
        self.keyframes = keyframes
        self.tracking_config = tracking_config
        self.observer = observer
        self.batch_max_size = batch_max_size
        self.batch_max_wait_s = batch_max_wait_ms / 1000.0
        self.results: queue.Queue[Result | None] = queue.Queue(maxsize=results_queue)
        self._trackers: dict[str, tuple[tuple[int, int], CameraTracking]] = {}
        # One lock for all tracking state: the track thread holds it per frame; control commands
        # (end_camera from the MQTT worker) take it too, so a tracker is never used by two threads.
        self._trackers_lock = threading.RLock()
        self._stop = threading.Event()
        self._infer_thread = threading.Thread(target=self._infer_loop, name="pipeline-infer", daemon=True)
        self._track_thread = threading.Thread(target=self._track_loop, name="pipeline-track", daemon=True)
        self.frames_inferred = 0
        self.events_published = 0
        self.keyframes_published = 0
        self.batches = 0

    # -- lifecycle --
    def start(self) -> Pipeline:
        self._infer_thread.start()
        self._track_thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking frames, finish what was inferred (tracking + publish), end all tracks."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        self._infer_thread.join(timeout)
        try:  # never block here: a stuck tracking thread must not hold the shutdown
            self.results.put(None, timeout=max(0.1, deadline - time.monotonic()))
        except queue.Full:
            log.warning("tracking stage did not drain its queue in time; ending tracks now")
        self._track_thread.join(max(0.1, deadline - time.monotonic()))
        with self._trackers_lock:
            cams = list(self._trackers)
        for cam in cams:
            self.end_camera(cam)

    # -- camera changes (control plane) --
    def end_camera(self, camera_id: str) -> int:
        """End every live track of a camera (camera stopped/removed): publishes their ``end`` events."""
        with self._trackers_lock:
            entry = self._trackers.pop(camera_id, None)
            if entry is None:
                return 0
            _size, ct = entry
            last = self.supervisor.latest(camera_id) if camera_id in self.supervisor.cameras() else None
            records = ct.close(time.time())
            for u in records:
                ts = max(u.timestamp, u.last_seen)
                ev = to_event(
                    u,
                    agent_id=self.agent_id,
                    run_id=self.run_id,
                    camera_id=camera_id,
                    ts=ts,
                    seq=last.seq if last else 0,
                    model=self.model_ref(),
                    **_geom(last, u),
                )
                self.publisher.publish_event(ev)
                self.events_published += 1
                M_EVENTS.labels(camera_id, "end").inc()
            if self.observer is not None:
                self.observer.ended(camera_id, records)
            return len(records)

    # -- stage 1: inference --
    def _infer_loop(self) -> None:
        while not self._stop.is_set():
            frames = self.supervisor.wait_any(timeout=0.25)
            if not frames:
                continue
            if self.batch_max_wait_s > 0 and len(frames) < min(self.batch_max_size, len(self.supervisor.cameras())):
                deadline = time.monotonic() + self.batch_max_wait_s
                while len(frames) < self.batch_max_size and (left := deadline - time.monotonic()) > 0:
                    more = self.supervisor.wait_any(timeout=left)
                    frames = _newest_per_camera(frames + more)
                    if len({f.camera_id for f in frames}) >= len(self.supervisor.cameras()):
                        break
            for i in range(0, len(frames), self.batch_max_size):
                self._infer_batch(frames[i : i + self.batch_max_size])

    def _infer_batch(self, frames: list[Frame]) -> None:
        t0 = time.perf_counter()
        try:
            dets = self.detector_ref().infer([f.image for f in frames])
        except Exception:
            M_ERRORS.labels("inference").inc()
            log.exception(
                "inference failed on a batch; frames skipped", extra={"cameras": [f.camera_id for f in frames]}
            )
            return
        infer_s = time.perf_counter() - t0
        M_STAGE.labels("inference").observe(infer_s)
        self.batches += 1
        for f, d in zip(frames, dets):
            M_INFER_FRAMES.labels(f.camera_id).inc()
            self.frames_inferred += 1
            item = Result(f, d, infer_s)
            while not self._stop.is_set():
                try:
                    self.results.put(item, timeout=0.25)  # back-pressure, never a drop
                    break
                except queue.Full:
                    continue
            else:
                self.results.put(item)  # stopping: still deliver what was inferred
        M_QUEUE.set(self.results.qsize())

    # -- stage 2: tracking, events, keyframes, publish --
    def _track_loop(self) -> None:
        lower_this_thread()
        while True:
            item = self.results.get()
            if item is None:
                return
            t0 = time.perf_counter()
            try:
                with self._trackers_lock:
                    self._track_publish(item)
            except Exception:
                M_ERRORS.labels("tracking").inc()
                log.exception("tracking/publish failed for a frame", extra={"camera": item.frame.camera_id})
            M_STAGE.labels("tracking").observe(time.perf_counter() - t0)
            M_QUEUE.set(self.results.qsize())

    def _tracker_for(self, frame: Frame) -> CameraTracking:
        """The camera's tracking state (caller holds ``_trackers_lock``)."""
        size = (frame.image.shape[1], frame.image.shape[0])
        entry = self._trackers.get(frame.camera_id)
        if entry is not None and entry[0] == size:
            return entry[1]
        if entry is not None:  # resolution changed: zones in pixels must be recomputed
            self.end_camera(frame.camera_id)
        ct = CameraTracking(
            self.tracking_config(frame.camera_id), size, camera=frame.camera_id, class_names=self.class_names
        )
        self._trackers[frame.camera_id] = (size, ct)
        return ct

    def _track_publish(self, item: Result) -> None:
        frame, dets = item.frame, item.detections
        if frame.camera_id not in self.supervisor.cameras():
            return  # the camera was removed while this frame was in flight
        ct = self._tracker_for(frame)
        tracked, records = ct.process(dets, frame.ts)
        if self.observer is not None:
            self.observer.observe(frame, len(dets), tracked, records, item.infer_s)
        live = [u for u in records if u.kind != "end"]
        w, h, origin, scale = frame_geometry(
            (frame.image.shape[1], frame.image.shape[0]), frame.source_size, frame.origin, frame.scale
        )
        shot = self.keyframes.process(
            frame.camera_id,
            frame.image,
            frame.ts,
            frame.seq,
            [TrackUpdate(u.track_id, u.score, u.kind == "new", u.box) for u in live],
            (w, h, origin, scale),
        )
        for meta, jpeg in shot.keyframes:
            self.publisher.publish_keyframe(meta, jpeg)
            self.keyframes_published += 1
            M_KEYFRAMES.labels(frame.camera_id).inc()
        model = self.model_ref()
        for u in records:
            ts = frame.ts if u.kind != "end" else max(u.last_seen, 0.0) or frame.ts
            ev = to_event(
                u,
                agent_id=self.agent_id,
                run_id=self.run_id,
                camera_id=frame.camera_id,
                ts=ts,
                seq=frame.seq,
                model=model,
                width=w,
                height=h,
                origin=origin,
                scale=scale,
                keyframe=shot.ref_for(u.track_id) if u.kind != "end" else None,
            )
            self.publisher.publish_event(ev)
            self.events_published += 1
            M_EVENTS.labels(frame.camera_id, u.kind).inc()
        M_E2E.observe(max(0.0, time.time() - frame.ts))


def _geom(frame: Frame | None, u) -> dict:
    if frame is None:
        x2, y2 = u.box[2], u.box[3]
        return {"width": max(1, int(x2) + 1), "height": max(1, int(y2) + 1)}
    w, h, origin, scale = frame_geometry(
        (frame.image.shape[1], frame.image.shape[0]), frame.source_size, frame.origin, frame.scale
    )
    return {"width": w, "height": h, "origin": origin, "scale": scale}


def _newest_per_camera(frames: list[Frame]) -> list[Frame]:
    best: dict[str, Frame] = {}
    for f in frames:
        cur = best.get(f.camera_id)
        if cur is None or f.seq > cur.seq:
            best[f.camera_id] = f
    return list(best.values())
