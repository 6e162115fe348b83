"""The agent's MQTT feed for the TUI: per-camera preview images and live event batches, plus the
per-camera and process figures the status messages carry (detections/s, inference latency, CPU, memory).

The pipeline's tracking thread hands each processed frame to :meth:`Feed.observe` (and the ``end``
records of a closed camera to :meth:`Feed.ended`): that only stores references and appends to a
bounded per-camera queue under a short lock, so the data path never waits on the feed. Everything
costly (JPEG encoding, JSON, MQTT) happens on the feed's own thread:

- events: at most one :class:`~edgesight.wire.CameraEvents` message per camera per
  ``control.events_interval_s``, at most :data:`~edgesight.wire.models.EVENTS_MAX_PER_MESSAGE` events
  (``update`` events are dropped first; ``dropped`` counts what was left out). The queue holds at most
  ``control.events_queue`` events per camera; past it the oldest are dropped and counted.
  ``control.events_feed``: ``always`` (default), ``preview`` (only while the camera's preview lease
  is held) or ``off``.
- previews: while a camera's preview lease is held (``preview`` command), one
  :class:`~edgesight.wire.CameraPreview` per ``control.preview_interval_s`` when the pipeline has
  processed a new frame; a ``snapshot`` command or a new lease publishes one at once. The JPEG is
  downscaled to ``control.preview_max_width`` and its quality (then size) lowered until the message
  fits :data:`~edgesight.wire.models.PREVIEW_MAX_BYTES`; a frame that cannot fit is skipped and logged.
"""

from __future__ import annotations

import base64
import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Protocol

import numpy as np

from edge_agent.detections import Detections
from edge_agent.publish.keyframes import encode_jpeg_bounded
from edge_agent.tracking.events import ObjectUpdate
from edge_agent.tracking.zones import label_of
from edgesight.log import get_logger
from edgesight.metrics import counter
from edgesight.wire import CameraEvents, CameraPreview, Crossing, FeedEvent, FrameSize, PreviewDetection, dumps
from edgesight.wire.models import (
    EVENTS_MAX_BYTES,
    EVENTS_MAX_PER_MESSAGE,
    MAX_EVENT_ZONES,
    PREVIEW_MAX_BYTES,
    PREVIEW_MAX_DETECTIONS,
)

if TYPE_CHECKING:
    from edge_agent.capture.worker import Frame
    from edge_agent.control.settings import ControlConfig

M_EVENTS_DROPPED = counter(
    "feed_events_dropped_total", "Live-feed events left out of the MQTT events messages", ["camera"]
)
M_PREVIEWS = counter("feed_previews_total", "Preview messages published, or skipped (too large)", ["camera", "outcome"])

RATE_WINDOW_S = 10.0
"""Detections per second are counted over this window."""
LATENCY_SAMPLES = 32
"""Inference latency is the mean of this many recent frames."""
CPU_WINDOW_S = 1.0
"""The shortest window the CPU figure is measured over."""
_TICK_S = 0.1  # the feed thread's longest sleep
_PLACEHOLDER_JPEG = base64.b64encode(b"\xff\xd8\xff\xd9").decode()  # measures a preview's JSON without its image


class FeedSink(Protocol):
    """Where the feed publishes (the agent's control plane)."""

    @property
    def connected(self) -> bool: ...

    def publish_preview(self, camera_id: str, payload: bytes) -> None: ...

    def publish_events(self, camera_id: str, payload: bytes) -> None: ...


@dataclass
class _Camera:
    last: tuple[Frame, Detections] | None = None  # the newest frame the pipeline processed, with its tracks
    detections: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=256))  # (mono, count)
    latency: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))  # seconds per batch
    events: deque[ObjectUpdate] = field(default_factory=deque)
    dropped: int = 0
    next_events: float = 0.0
    lease_until: float = 0.0  # monotonic
    next_preview: float = 0.0
    preview_now: bool = False
    last_preview_seq: int = -1


@dataclass(frozen=True)
class CameraFigures:
    """What a camera's status reports from the feed."""

    detections_per_s: float
    latency_ms: float | None
    frame: FrameSize | None


class Feed:
    """Collects what the pipeline processed; publishes previews and event batches on its own thread."""

    def __init__(
        self, config: ControlConfig, agent_id: str, class_names: list[str], sink: FeedSink | None = None
    ) -> None:
        self.config = config
        self.agent_id = agent_id
        self.class_names = class_names
        self.sink = sink
        self.log = get_logger("feed", agent_id=agent_id)
        self._lock = threading.Lock()  # the camera table and each camera's fields; held for microseconds
        self._cams: dict[str, _Camera] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feed", daemon=True)

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> Feed:
        if self.sink is not None:
            self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # ---------------------------------------------------------------- the data path (never waits)
    def observe(
        self, frame: Frame, detections: int, tracked: Detections, records: list[ObjectUpdate], infer_s: float
    ) -> None:
        """One frame processed by the pipeline: ``detections`` found, ``tracked`` the tracks on it,
        ``records`` their lifecycle records, ``infer_s`` the inference time of its batch."""
        now = time.monotonic()
        with self._lock:
            cam = self._cams.get(frame.camera_id)
            if cam is None:
                cam = self._cams[frame.camera_id] = _Camera()
            cam.last = (frame, tracked)
            cam.detections.append((now, detections))
            cam.latency.append(infer_s)
            self._queue_events(cam, records, now)

    def ended(self, camera_id: str, records: list[ObjectUpdate]) -> None:
        """A camera's tracks were closed (camera stopped, restarted, zones changed): their ``end`` records."""
        with self._lock:
            cam = self._cams.get(camera_id)
            if cam is not None:
                self._queue_events(cam, records, time.monotonic())

    def _queue_events(self, cam: _Camera, records: list[ObjectUpdate], now: float) -> None:
        mode = self.config.events_feed
        if not records or self.sink is None or mode == "off" or (mode == "preview" and cam.lease_until <= now):
            return
        limit = self.config.events_queue
        for u in records:
            if len(cam.events) >= limit:  # full (the feed thread is behind): updates are dropped first
                cam.dropped += 1
                if u.kind == "update":
                    continue
                oldest_update = next((e for e in cam.events if e.kind == "update"), None)
                if oldest_update is None:
                    cam.events.popleft()
                else:
                    cam.events.remove(oldest_update)
            cam.events.append(u)

    # ---------------------------------------------------------------- commands
    def lease(self, camera_id: str, seconds: float) -> datetime:
        """Publish the camera's preview for ``seconds`` from now (a new lease replaces the old one); one
        preview goes out at once. Returns when the lease ends (UTC)."""
        with self._lock:
            cam = self._cams.setdefault(camera_id, _Camera())
            cam.lease_until = time.monotonic() + seconds
            cam.preview_now = True
        self._wake.set()
        return datetime.fromtimestamp(time.time() + seconds, tz=timezone.utc)

    def preview_once(self, camera_id: str) -> None:
        """Publish one preview of the camera at once (``snapshot``)."""
        with self._lock:
            self._cams.setdefault(camera_id, _Camera()).preview_now = True
        self._wake.set()

    def forget(self, camera_id: str) -> None:
        """The camera was removed: its last events (the ``end`` records of its tracks) go out now."""
        with self._lock:
            cam = self._cams.pop(camera_id, None)
        if cam is not None:
            self._send_events(camera_id, cam)

    # ---------------------------------------------------------------- status figures
    def figures(self, camera_id: str) -> CameraFigures:
        now = time.monotonic()
        with self._lock:
            cam = self._cams.get(camera_id)
            if cam is None:
                return CameraFigures(0.0, None, None)
            samples = list(cam.detections)
            latency = list(cam.latency)
            last = cam.last
        recent = [(t, n) for t, n in samples if now - t <= RATE_WINDOW_S]
        rate = 0.0
        if recent:
            span = max(now - recent[0][0], 1.0)  # a single early frame does not make a huge rate
            rate = sum(n for _, n in recent) / span
        frame = None
        if last is not None:
            h, w = last[0].image.shape[:2]
            frame = FrameSize(width=w, height=h)
        return CameraFigures(
            detections_per_s=rate,
            latency_ms=sum(latency) / len(latency) * 1000.0 if latency else None,
            frame=frame,
        )

    # ---------------------------------------------------------------- the feed thread
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(_TICK_S)
            self._wake.clear()
            try:
                self._tick(time.monotonic())
            except Exception:
                self.log.exception("feed tick failed")

    def _tick(self, now: float) -> None:
        with self._lock:
            cams = list(self._cams.items())
        for camera_id, cam in cams:
            if now >= cam.next_events and self._send_events(camera_id, cam):
                cam.next_events = now + self.config.events_interval_s
            leased = cam.lease_until > now and now >= cam.next_preview
            if cam.preview_now or leased:
                if leased:
                    cam.next_preview = now + self.config.preview_interval_s
                self._send_preview(camera_id, cam)

    def _send_events(self, camera_id: str, cam: _Camera) -> bool:
        """Publish what the camera's queue holds; False when there was nothing to send."""
        with self._lock:
            if not cam.events and not cam.dropped:
                return False
            pending, cam.events = list(cam.events), deque()
            dropped, cam.dropped = cam.dropped, 0
        if self.sink is None or not self.sink.connected:  # no broker now: nobody would see them
            M_EVENTS_DROPPED.labels(camera_id).inc(dropped + len(pending))
            return False
        batch = _choose(pending, EVENTS_MAX_PER_MESSAGE)
        events = [_feed_event(u) for u in batch]
        dropped += len(pending) - len(batch)
        while True:
            msg = CameraEvents(
                agent_id=self.agent_id,
                camera_id=camera_id,
                ts=datetime.now(timezone.utc),
                dropped=dropped,
                events=events,
            )
            payload = dumps(msg)
            if len(payload) <= EVENTS_MAX_BYTES or not events:
                break
            kept = _choose(batch, len(batch) // 2)  # too large (long zone lists): halve, updates first
            dropped += len(batch) - len(kept)
            batch, events = kept, [_feed_event(u) for u in kept]
        if dropped:
            M_EVENTS_DROPPED.labels(camera_id).inc(dropped)
        self.sink.publish_events(camera_id, payload)
        return True

    def _send_preview(self, camera_id: str, cam: _Camera) -> None:
        with self._lock:
            forced, cam.preview_now = cam.preview_now, False
            last = cam.last
        if last is None or self.sink is None or not self.sink.connected:
            return
        frame, tracked = last
        if frame.seq == cam.last_preview_seq and not forced:
            return  # nothing new since the last preview (camera stopped): the retained one still stands
        payload = self.preview_payload(frame, tracked)
        if payload is None:
            M_PREVIEWS.labels(camera_id, "skipped").inc()
            return
        cam.last_preview_seq = frame.seq
        self.sink.publish_preview(camera_id, payload)
        M_PREVIEWS.labels(camera_id, "published").inc()

    def preview_payload(self, frame: Frame, tracked: Detections) -> bytes | None:
        """The preview message of ``frame`` with its tracks, within :data:`PREVIEW_MAX_BYTES`; None (logged)
        when the frame cannot be made to fit."""
        h, w = frame.image.shape[:2]
        msg = CameraPreview(
            agent_id=self.agent_id,
            camera_id=frame.camera_id,
            ts=datetime.fromtimestamp(frame.ts, tz=timezone.utc),
            frame=FrameSize(width=w, height=h),
            jpeg=_PLACEHOLDER_JPEG,
            detections=_preview_detections(tracked, w, h, self.class_names),
        )
        overhead = len(dumps(msg)) - len(_PLACEHOLDER_JPEG)
        budget = (PREVIEW_MAX_BYTES - overhead) // 4 * 3 - 3  # JPEG bytes whose base64 fits what is left
        try:
            jpeg, *_ = encode_jpeg_bounded(
                frame.image, quality=80, max_bytes=budget, max_width=self.config.preview_max_width
            )
        except ValueError as e:
            self.log.warning("preview skipped", extra={"camera": frame.camera_id, "error": str(e), "bytes": budget})
            return None
        payload = dumps(msg.model_copy(update={"jpeg": base64.b64encode(jpeg).decode()}))
        if len(payload) > PREVIEW_MAX_BYTES:  # cannot happen with the budget above; never publish past the bound
            self.log.warning("preview skipped", extra={"camera": frame.camera_id, "bytes": len(payload)})
            return None
        return payload


def _choose(records: list[ObjectUpdate], n: int) -> list[ObjectUpdate]:
    """At most ``n`` of ``records``, in their order: ``new``/``end`` first, then the newest updates."""
    if len(records) <= n:
        return records
    firm = [i for i, u in enumerate(records) if u.kind != "update"]
    if len(firm) >= n:
        keep = set(firm[-n:])
    else:
        updates = [i for i, u in enumerate(records) if u.kind == "update"]
        keep = set(firm) | set(updates[len(updates) - (n - len(firm)) :])
    return [u for i, u in enumerate(records) if i in keep]


def _feed_event(u: ObjectUpdate) -> FeedEvent:
    ts = (u.last_seen or u.timestamp) if u.kind == "end" else u.timestamp
    return FeedEvent(
        kind=u.kind,
        ts=datetime.fromtimestamp(ts, tz=timezone.utc),
        label=u.label,
        track_id=u.track_id,
        score=min(max(u.score, 0.0), 1.0),
        zones=u.zones_current[:MAX_EVENT_ZONES],
        entered=u.zones_entered[:MAX_EVENT_ZONES],
        exited=u.zones_exited[:MAX_EVENT_ZONES],
        crossings=[Crossing(line=c.line, direction=c.direction) for c in u.crossings[:MAX_EVENT_ZONES]],
    )


def _preview_detections(tracked: Detections, width: int, height: int, class_names: list[str]) -> list[PreviewDetection]:
    """The tracks of a frame (highest scores first, at most :data:`PREVIEW_MAX_DETECTIONS`), boxes clipped to it."""
    order = np.argsort(-tracked.scores, kind="stable")[:PREVIEW_MAX_DETECTIONS]
    boxes = np.clip(tracked.xyxy[order], 0.0, [width, height, width, height])
    ids = None if tracked.tracker_ids is None else tracked.tracker_ids[order]
    return [
        PreviewDetection(
            track_id=None if ids is None or ids[k] < 0 else int(ids[k]),
            label=label_of(int(tracked.class_ids[i]), class_names),
            score=min(max(float(tracked.scores[i]), 0.0), 1.0),
            box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
        )
        for k, (i, b) in enumerate(zip(order, boxes))
    ]


class ProcessUsage:
    """This process's CPU (percent of one core, over the time since the previous reading, at least
    :data:`CPU_WINDOW_S`) and resident memory."""

    def __init__(self) -> None:
        self._last = (time.monotonic(), _cpu_seconds())
        self._percent = 0.0

    def cpu_percent(self) -> float:
        now, cpu = time.monotonic(), _cpu_seconds()
        then, cpu0 = self._last
        if now - then >= CPU_WINDOW_S:  # readings closer together repeat the last figure
            self._percent = max(0.0, (cpu - cpu0) / (now - then) * 100.0)
            self._last = (now, cpu)
        return self._percent

    @staticmethod
    def memory_rss_bytes() -> int:
        try:  # Linux: the current resident set
            with open("/proc/self/statm", "rb") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            import resource  # elsewhere: the peak resident set (kilobytes on Linux/BSD, bytes on macOS)

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            return int(peak if sys.platform == "darwin" else peak * 1024)


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system
