"""Keyframe policy: which frames become JPEG keyframes, what they show, and how big they may be.

A keyframe is taken when (per camera, in this priority):

1. ``track_start`` — a track appears (``is_new`` or a track id not seen before);
2. ``score_improved`` — a track's score is at least ``score_margin`` above the
   score it had at its last keyframe (at most once per ``track_cooldown_s``
   per track; a blocked improvement is taken on a later frame if it holds);
3. ``interval`` — ``interval_s`` passed since the camera's last whole-frame
   keyframe; the first frame of a camera counts as due.

What a keyframe shows (``KeyframePolicy.crop``):

* ``track`` (default; Frigate-style per-object snapshots): a ``track_start`` /
  ``score_improved`` keyframe is the crop of *that* track's box, ``crop_margin``
  added on each side, at least ``crop_min_px`` square (frame allowing), clipped
  to the frame: one small JPEG per triggering track, its ``KeyframeMeta.crop``
  in source-frame pixels and ``frame`` the source frame's size. The crop is cut
  on the triggering frame; at most ``max_crops_per_frame`` are encoded per frame,
  the rest wait (as pixels) for the camera's next frames: deferred, never dropped
  (past :data:`MAX_PENDING_CROPS` waiting, the excess is encoded at once). A box
  that gives no crop (none given, not finite, wholly outside the frame) falls
  back to a whole-frame keyframe for that track. ``interval`` and ``snapshot``
  keyframes are whole frames (context).
* ``frame``: every keyframe is the whole frame; one frame gives at most one JPEG,
  however many tracks triggered it, its ``reason`` / ``track_id`` naming the
  strongest trigger.

Events reference :meth:`KeyframeShot.ref_for` their track: the track's own crop
encoded on this frame, else the frame's whole-frame keyframe (if one was taken).
:meth:`KeyframeSelector.track_ref` gives the latest keyframe that showed a track.

Size bound: images wider than ``max_width`` are downscaled first; then the
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


MAX_PENDING_CROPS = 64  # crops waiting per camera; beyond, the excess is encoded on the current frame

# (source width, source height, origin, scale): maps processed-image pixels to the camera's full frame
# (``edge_agent.emit.frame_geometry``); None: the image is the full frame.
FrameGeometry = tuple[int, int, tuple[float, float], float]
Rect = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class TrackUpdate:
    """One track on the current frame, as the tracker reports it."""

    track_id: int
    score: float
    is_new: bool = False
    box: tuple[float, float, float, float] | None = None  # xyxy, processed-image pixels (for crop keyframes)


@dataclass(slots=True)
class KeyframeShot:
    """The policy's answer for one frame."""

    keyframes: list[tuple[KeyframeMeta, bytes]] = field(default_factory=list)
    ref: KeyframeRef | None = None  # the whole-frame keyframe taken on this frame (None: none)
    track_refs: dict[int, KeyframeRef] = field(default_factory=dict)  # track -> its crop encoded on this frame

    def __bool__(self) -> bool:
        return bool(self.keyframes)

    def ref_for(self, track_id: int | None) -> KeyframeRef | None:
        """The keyframe an event of ``track_id`` on this frame references: its own crop, else the frame's."""
        if track_id is None:
            return self.ref
        return self.track_refs.get(track_id, self.ref)


def crop_box(box: Iterable[float], size: tuple[int, int], margin: float, min_px: int) -> Rect | None:
    """The crop of ``box`` (xyxy) in an image of ``size`` (width, height): ``margin`` x the box's size added on
    each side, grown to ``min_px`` (or the image's size, if smaller) around its centre, clipped to the image;
    integer pixels with x1 < x2 <= width, y1 < y2 <= height. None (skip) when the box is not four finite numbers,
    lies wholly outside the image or the image is empty."""
    w, h = int(size[0]), int(size[1])
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError):
        return None
    if w <= 0 or h <= 0 or not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None
    x1, x2 = sorted((x1, x2))
    y1, y2 = sorted((y1, y2))
    # Far-off coordinates change nothing once clipped; bounding them keeps the arithmetic finite.
    x1, x2 = (min(max(v, -4.0 * w), 5.0 * w) for v in (x1, x2))
    y1, y2 = (min(max(v, -4.0 * h), 5.0 * h) for v in (y1, y2))
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    x1, y1, x2, y2 = x1 - mx, y1 - my, x2 + mx, y2 + my
    if x2 < 0 or y2 < 0 or x1 > w or y1 > h:
        return None
    cx1, cx2 = _span(max(x1, 0.0), min(x2, float(w)), w, min_px)
    cy1, cy2 = _span(max(y1, 0.0), min(y2, float(h)), h, min_px)
    return cx1, cy1, cx2, cy2


def _span(a: float, b: float, limit: int, min_px: int) -> tuple[int, int]:
    """Integer [lo, hi) covering [a, b] within [0, limit], at least min(min_px, limit) long."""
    lo, hi = math.floor(a), math.ceil(b)
    need = min(min_px, limit)
    if hi - lo < need:
        lo = min(max(round((a + b) / 2 - need / 2), 0), limit - need)
        hi = lo + need
    return lo, hi


def to_source(rect: Rect, image_size: tuple[int, int], geometry: FrameGeometry | None) -> tuple[Rect, tuple[int, int]]:
    """A crop in processed-image pixels as (crop, frame size) in the camera's full frame (``geometry``)."""
    if geometry is None:
        return rect, image_size
    sw, sh, (ox, oy), scale = geometry
    if sw <= 0 or sh <= 0:
        return rect, image_size
    if not (math.isfinite(scale) and scale > 0):
        scale = 1.0
    x1, y1, x2, y2 = rect

    def one(a: float, b: float, o: float, limit: int) -> tuple[int, int]:
        lo = min(max(math.floor(a / scale + o), 0), limit - 1)
        return lo, min(max(math.ceil(b / scale + o), lo + 1), limit)

    sx1, sx2 = one(x1, x2, ox, int(sw))
    sy1, sy2 = one(y1, y2, oy, int(sh))
    return (sx1, sy1, sx2, sy2), (int(sw), int(sh))


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
class _CropJob:
    """A track's crop, cut on its triggering frame, waiting to be encoded."""

    prio: int
    order: int
    image: np.ndarray
    dt: datetime
    t: float
    seq: int
    reason: KeyframeReason
    track_id: int
    crop: Rect  # source-frame pixels
    frame: tuple[int, int]  # source frame size


@dataclass
class _CameraState:
    last_kf_ts: float | None = None  # the last whole-frame keyframe (the interval's clock)
    tracks: dict[int, _TrackState] = field(default_factory=dict)
    pending: list[_CropJob] = field(default_factory=list)
    window: deque = field(default_factory=deque)  # (ts, bytes) within the last hour
    window_bytes: int = 0
    bytes_total: int = 0
    count: int = 0
    crops: int = 0
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
        self._order = 0  # queue order of crops

    def process(
        self,
        camera_id: str,
        frame: np.ndarray,
        ts: datetime | float,
        seq: int,
        tracks: Iterable[TrackUpdate] = (),
        geometry: FrameGeometry | None = None,
    ) -> KeyframeShot:
        """Decide for one frame; returns the keyframes encoded on it and the refs for the frame's events.
        ``geometry`` maps the image's pixels to the camera's full frame (crops are reported in the latter)."""
        p = self.policy
        if not p.enabled:
            return KeyframeShot()
        dt, t = _as_dt(ts)
        crops = p.crop == "track"
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
                if trig is None:
                    continue
                st.kf_score = u.score
                if crops and self._queue_crop(cam, frame, dt, t, seq, trig, u, geometry):
                    st.last_kf_ts = t
                    continue
                triggers.append((_PRIORITY[trig], -u.score, trig, u.track_id))
                touched.append(st)
            if p.interval_s is not None and (cam.last_kf_ts is None or t - cam.last_kf_ts >= p.interval_s):
                triggers.append((_PRIORITY[KeyframeReason.interval], 0.0, KeyframeReason.interval, None))
            self._prune(cam, t)
            shot = KeyframeShot()
            if triggers:
                _prio, _s, reason, track_id = min(triggers, key=lambda x: (x[0], x[1]))
                meta, jpeg = self._take(camera_id, cam, frame, dt, t, seq, reason, track_id)
                shot.keyframes.append((meta, jpeg))
                shot.ref = KeyframeRef(keyframe_id=meta.keyframe_id)
                for st in touched:
                    st.last_kf_ts = t
                    st.ref = shot.ref
            if cam.pending:
                self._encode_pending(camera_id, cam, shot)
            return shot

    def _queue_crop(
        self,
        cam: _CameraState,
        frame: np.ndarray,
        dt: datetime,
        t: float,
        seq: int,
        reason: KeyframeReason,
        u: TrackUpdate,
        geometry: FrameGeometry | None,
    ) -> bool:
        """Cut ``u``'s crop from ``frame`` and queue it; False (a whole frame is taken instead) when it has none."""
        p = self.policy
        size = (int(frame.shape[1]), int(frame.shape[0]))
        rect = crop_box(u.box, size, p.crop_margin, p.crop_min_px) if u.box is not None else None
        if rect is None:
            log.debug("no crop for the track: whole frame", extra={"track_id": u.track_id, "box": repr(u.box)})
            return False
        x1, y1, x2, y2 = rect
        src, src_size = to_source(rect, size, geometry)
        self._order += 1
        cam.pending.append(
            _CropJob(
                _PRIORITY[reason],
                self._order,
                frame[y1:y2, x1:x2].copy(),
                dt,
                t,
                seq,
                reason,
                u.track_id,
                src,
                src_size,
            )
        )
        return True

    def _encode_pending(self, camera_id: str, cam: _CameraState, shot: KeyframeShot) -> None:
        """Encode the camera's waiting crops, track starts first, oldest first, within the per-frame bound."""
        cam.pending.sort(key=lambda j: (j.prio, j.order))
        n = max(self.policy.max_crops_per_frame, len(cam.pending) - MAX_PENDING_CROPS)
        jobs, cam.pending = cam.pending[:n], cam.pending[n:]
        for j in jobs:
            meta, jpeg = self._take(
                camera_id, cam, j.image, j.dt, j.t, j.seq, j.reason, j.track_id, crop=j.crop, frame=j.frame
            )
            ref = KeyframeRef(keyframe_id=meta.keyframe_id)
            shot.keyframes.append((meta, jpeg))
            shot.track_refs[j.track_id] = ref
            st = cam.tracks.get(j.track_id)
            if st is not None:
                st.ref = ref

    def snapshot(self, camera_id: str, frame: np.ndarray, ts: datetime | float, seq: int) -> KeyframeShot:
        """An on-demand keyframe (the ``snapshot`` control command): the whole frame."""
        dt, t = _as_dt(ts)
        with self._lock:
            cam = self._cams.setdefault(camera_id, _CameraState())
            meta, jpeg = self._take(camera_id, cam, frame, dt, t, seq, KeyframeReason.snapshot, None)
            return KeyframeShot([(meta, jpeg)], KeyframeRef(keyframe_id=meta.keyframe_id))

    def _take(
        self,
        camera_id: str,
        cam: _CameraState,
        image: np.ndarray,
        dt: datetime,
        t: float,
        seq: int,
        reason: KeyframeReason,
        track_id: int | None,
        crop: Rect | None = None,
        frame: tuple[int, int] | None = None,
    ) -> tuple[KeyframeMeta, bytes]:
        """Encode ``image`` (the whole frame, or the ``crop`` of a ``frame``-sized source) and account for it."""
        p = self.policy
        jpeg, w, h, q = encode_jpeg_bounded(
            image, quality=p.jpeg_quality, min_quality=p.min_jpeg_quality, max_bytes=p.max_bytes, max_width=p.max_width
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
            crop=crop,
            frame=frame,
        )
        if crop is None:
            cam.last_kf_ts = t
        else:
            cam.crops += 1
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
                "crop": list(crop) if crop else None,
            },
        )
        return meta, jpeg

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
        """Per camera: keyframes (crops of them, crops waiting), bytes_total, bytes_last_hour, by_reason, min quality used."""
        with self._lock:
            return {
                cid: {
                    "keyframes": c.count,
                    "crops": c.crops,
                    "crops_waiting": len(c.pending),
                    "bytes_total": c.bytes_total,
                    "bytes_last_hour": c.window_bytes,
                    "by_reason": dict(c.by_reason),
                    "min_quality_used": c.quality_min,
                }
                for cid, c in self._cams.items()
            }
