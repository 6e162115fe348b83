"""Keyframe policy: which frames become JPEG keyframes, and how big they may be.

A frame becomes a keyframe when (per camera, in this priority):

1. ``track_start`` — a track appears (``is_new`` or a track id not seen before);
2. ``score_improved`` — a track's score is at least ``score_margin`` above the
   score it had at its last keyframe (at most once per ``track_cooldown_s``
   per track; a blocked improvement is taken on a later frame if it holds);
3. ``interval`` — ``interval_s`` passed since the camera's last keyframe (of
   any reason); the first frame of a camera counts as due.

One frame gives at most one JPEG, however many tracks triggered it: its
``reason`` / ``track_id`` name the strongest trigger and every event of that
frame can reference it (:attr:`KeyframeShot.ref`). :meth:`KeyframeSelector.track_ref`
gives the latest keyframe that showed a given track (for ``update``/``end`` events).

Size bound: frames wider than ``max_width`` are downscaled first; then the
JPEG is encoded at ``jpeg_quality`` and re-encoded at lower quality (down to
``min_jpeg_quality``) and, if still too large, at a smaller size, until it
fits ``max_bytes``. ``KeyframeMeta.width/height`` are the JPEG's dimensions.

Accounting: bytes and keyframes per camera (total, per reason, and in the hour
ending at the camera's latest frame time) in :meth:`KeyframeSelector.stats`
and as Prometheus metrics.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import cv2
import numpy as np

from edgesight import metrics
from edgesight.log import get_logger
from edgesight.wire import KeyframeMeta, KeyframeReason, KeyframeRef

from .settings import KeyframePolicy

log = get_logger("publish.keyframes")

M_KF = metrics.counter("keyframes_total", "keyframes taken", ("agent", "camera", "reason"))
M_KF_BYTES = metrics.counter("keyframe_bytes_total", "JPEG bytes of keyframes taken", ("agent", "camera"))
M_KF_HOUR = metrics.gauge(
    "keyframe_bytes_last_hour", "JPEG bytes of keyframes in the last hour (frame time)", ("agent", "camera")
)

_PRIORITY = {
    KeyframeReason.track_start: 0,
    KeyframeReason.score_improved: 1,
    KeyframeReason.interval: 2,
    KeyframeReason.snapshot: 3,
}


@dataclass(frozen=True, slots=True)
class TrackUpdate:
    """One track on the current frame, as the tracker reports it."""

    track_id: int
    score: float
    is_new: bool = False


@dataclass(slots=True)
class KeyframeShot:
    """The policy's answer for one frame."""

    keyframes: list[tuple[KeyframeMeta, bytes]] = field(default_factory=list)
    ref: KeyframeRef | None = None  # attach to this frame's events (None: no keyframe on this frame)

    def __bool__(self) -> bool:
        return bool(self.keyframes)


def encode_jpeg_bounded(
    frame: np.ndarray,
    *,
    quality: int = 85,
    min_quality: int = 35,
    max_bytes: int = 300_000,
    max_width: int | None = None,
) -> tuple[bytes, int, int, int]:
    """JPEG of ``frame`` (BGR) no larger than ``max_bytes``: returns (jpeg, width, height, quality used)."""
    if frame is None or frame.ndim not in (2, 3) or frame.size == 0:
        raise ValueError("expected a non-empty BGR (or grey) image array")
    img = frame
    if max_width and img.shape[1] > max_width:
        h = max(1, round(img.shape[0] * max_width / img.shape[1]))
        img = cv2.resize(img, (max_width, h), interpolation=cv2.INTER_AREA)
    q = quality
    for _ in range(40):
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(q)])
        if not ok:
            raise ValueError("OpenCV could not encode the frame as JPEG")
        if buf.size <= max_bytes:
            return buf.tobytes(), img.shape[1], img.shape[0], q
        if q > min_quality:
            q = max(min_quality, q - 10)
            continue
        # Lowest quality still too big: shrink (area ratio from the overshoot, with a margin).
        scale = max(0.1, min(0.9, math.sqrt(max_bytes / buf.size) * 0.95))
        w, h = max(16, int(img.shape[1] * scale)), max(16, int(img.shape[0] * scale))
        if (w, h) == (img.shape[1], img.shape[0]):
            break
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    raise ValueError(f"cannot encode the frame under {max_bytes} bytes")


@dataclass
class _TrackState:
    kf_score: float = 0.0
    last_kf_ts: float | None = None
    last_seen: float = 0.0
    ref: KeyframeRef | None = None


@dataclass
class _CameraState:
    last_kf_ts: float | None = None
    tracks: dict[int, _TrackState] = field(default_factory=dict)
    window: deque = field(default_factory=deque)  # (ts, bytes) within the last hour
    window_bytes: int = 0
    bytes_total: int = 0
    count: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    quality_min: int | None = None


def _as_dt(ts: datetime | float) -> tuple[datetime, float]:
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            raise ValueError("ts must be timezone-aware (UTC)")
        return ts, ts.timestamp()
    return datetime.fromtimestamp(float(ts), tz=timezone.utc), float(ts)


class KeyframeSelector:
    """Per-camera keyframe policy + bounded JPEG encoding + byte accounting. Thread-safe."""

    TRACK_TTL_S = 600.0  # forget the state of tracks not seen for this long (frame time)

    def __init__(self, policy: KeyframePolicy, agent_id: str):
        self.policy = policy
        self.agent_id = agent_id
        self._cams: dict[str, _CameraState] = {}
        self._lock = threading.Lock()

    def process(
        self, camera_id: str, frame: np.ndarray, ts: datetime | float, seq: int, tracks: Iterable[TrackUpdate] = ()
    ) -> KeyframeShot:
        """Decide for one frame; returns the keyframe (0 or 1) and the ref for the frame's events."""
        p = self.policy
        if not p.enabled:
            return KeyframeShot()
        dt, t = _as_dt(ts)
        with self._lock:
            cam = self._cams.setdefault(camera_id, _CameraState())
            triggers: list[tuple[int, float, KeyframeReason, int | None]] = []
            touched: list[_TrackState] = []
            for u in tracks:
                st = cam.tracks.get(u.track_id)
                trig: KeyframeReason | None = None
                if st is None or u.is_new:
                    st = cam.tracks[u.track_id] = _TrackState(kf_score=u.score)
                    if p.on_track_start:
                        trig = KeyframeReason.track_start
                elif (
                    p.score_margin > 0
                    and u.score >= st.kf_score + p.score_margin - 1e-9
                    and (st.last_kf_ts is None or t - st.last_kf_ts >= p.track_cooldown_s)
                ):
                    trig = KeyframeReason.score_improved
                st.last_seen = t
                if trig is not None:
                    triggers.append((_PRIORITY[trig], -u.score, trig, u.track_id))
                    touched.append(st)
                    st.kf_score = u.score
            if p.interval_s is not None and (cam.last_kf_ts is None or t - cam.last_kf_ts >= p.interval_s):
                triggers.append((_PRIORITY[KeyframeReason.interval], 0.0, KeyframeReason.interval, None))
            self._prune(cam, t)
            if not triggers:
                return KeyframeShot()
            _prio, _s, reason, track_id = min(triggers, key=lambda x: (x[0], x[1]))
            shot = self._take(camera_id, cam, frame, dt, t, seq, reason, track_id)
            for st in touched:
                st.last_kf_ts = t
                st.ref = shot.ref
            return shot

    def snapshot(self, camera_id: str, frame: np.ndarray, ts: datetime | float, seq: int) -> KeyframeShot:
        """An on-demand keyframe (the ``snapshot`` control command)."""
        dt, t = _as_dt(ts)
        with self._lock:
            cam = self._cams.setdefault(camera_id, _CameraState())
            return self._take(camera_id, cam, frame, dt, t, seq, KeyframeReason.snapshot, None)

    def _take(
        self,
        camera_id: str,
        cam: _CameraState,
        frame: np.ndarray,
        dt: datetime,
        t: float,
        seq: int,
        reason: KeyframeReason,
        track_id: int | None,
    ) -> KeyframeShot:
        p = self.policy
        jpeg, w, h, q = encode_jpeg_bounded(
            frame, quality=p.jpeg_quality, min_quality=p.min_jpeg_quality, max_bytes=p.max_bytes, max_width=p.max_width
        )
        meta = KeyframeMeta.for_jpeg(
            jpeg,
            agent_id=self.agent_id,
            camera_id=camera_id,
            ts=dt,
            seq=seq,
            width=w,
            height=h,
            reason=reason,
            track_id=track_id,
        )
        ref = KeyframeRef(keyframe_id=meta.keyframe_id)
        cam.last_kf_ts = t
        cam.count += 1
        cam.bytes_total += len(jpeg)
        cam.by_reason[reason.value] = cam.by_reason.get(reason.value, 0) + 1
        cam.quality_min = q if cam.quality_min is None else min(cam.quality_min, q)
        cam.window.append((t, len(jpeg)))
        cam.window_bytes += len(jpeg)
        while cam.window and cam.window[0][0] <= t - 3600.0:
            cam.window_bytes -= cam.window.popleft()[1]
        M_KF.labels(self.agent_id, camera_id, reason.value).inc()
        M_KF_BYTES.labels(self.agent_id, camera_id).inc(len(jpeg))
        M_KF_HOUR.labels(self.agent_id, camera_id).set(cam.window_bytes)
        log.debug(
            "keyframe",
            extra={
                "camera": camera_id,
                "reason": reason.value,
                "track_id": track_id,
                "bytes": len(jpeg),
                "quality": q,
                "width": w,
                "height": h,
            },
        )
        return KeyframeShot([(meta, jpeg)], ref)

    def _prune(self, cam: _CameraState, t: float) -> None:
        if len(cam.tracks) > 64:
            for tid in [tid for tid, st in cam.tracks.items() if t - st.last_seen > self.TRACK_TTL_S]:
                del cam.tracks[tid]

    def track_ref(self, camera_id: str, track_id: int) -> KeyframeRef | None:
        """The latest keyframe taken because of this track (None if none yet)."""
        with self._lock:
            cam = self._cams.get(camera_id)
            st = cam.tracks.get(track_id) if cam else None
            return st.ref if st else None

    def stats(self) -> dict[str, dict]:
        """Per camera: keyframes, bytes_total, bytes_last_hour, by_reason, min quality used."""
        with self._lock:
            return {
                cid: {
                    "keyframes": c.count,
                    "bytes_total": c.bytes_total,
                    "bytes_last_hour": c.window_bytes,
                    "by_reason": dict(c.by_reason),
                    "min_quality_used": c.quality_min,
                }
                for cid, c in self._cams.items()
            }
