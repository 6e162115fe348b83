"""Polygon zones and counting lines for one camera, driven by tracked detections.

* A tracked object is *in* a zone when its anchor point (``bottom_center`` by
  default: the feet of a person, the road contact of a car) is inside the
  polygon. Membership must hold for ``inertia`` consecutive frames before an
  *enter* (resp. be absent that long before an *exit*), so a box jittering on
  the boundary does not flap.
* A counting line is a segment. An object *crosses* it when its anchor moves
  from one side to the other *through the segment* (not around its ends) and
  stays on the new side for ``min_frames`` frames. Direction ``directions[0]``
  is left-hand to right-hand side seen from ``start`` facing ``end`` (see
  :class:`~edge_agent.tracking.settings.LineConfig`).

Membership and sides are computed for all detections at once (numpy: even-odd
ray casting over all points x edges, signed areas for the sides); only the
per-track debounce state machine is a Python loop over the frame's tracks.
Lost tracks (not in the frame) keep their state, so a person re-found after an
occlusion on the other side of a line is still counted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from edge_agent.detections import Detections
from edgesight import metrics

from .settings import Anchor, CameraTrackingConfig, LineConfig, ZoneConfig

__all__ = [
    "anchor_points",
    "points_in_polygon",
    "PolygonZone",
    "CountingLine",
    "LineCrossing",
    "ZoneResult",
    "CameraZones",
    "label_of",
]

_ZONE_EVENTS = metrics.counter("tracking_zone_events_total", "Zone enter/exit events", ["camera", "zone", "event"])
_ZONE_OCCUPANCY = metrics.gauge("tracking_zone_occupancy", "Tracked objects currently in a zone", ["camera", "zone"])
_LINE_CROSSINGS = metrics.counter(
    "tracking_line_crossings_total", "Counting line crossings", ["camera", "line", "direction"]
)


def label_of(class_id: int, class_names: Sequence[str] | Mapping[int, str] | None) -> str:
    if class_names is None:
        return str(class_id)
    if isinstance(class_names, Mapping):
        return class_names.get(class_id, str(class_id))
    return class_names[class_id] if 0 <= class_id < len(class_names) else str(class_id)


def anchor_points(xyxy: np.ndarray, anchor: Anchor = "bottom_center") -> np.ndarray:
    """(N,2) anchor points of (N,4) xyxy boxes."""
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    x = {"left": b[:, 0], "center": cx, "right": b[:, 2]}
    y = {"top": b[:, 1], "center": cy, "bottom": b[:, 3]}
    if anchor == "center":
        return np.stack([cx, cy], axis=1)
    v, h = anchor.split("_")  # bottom_center / center_left ...
    if v in ("center",):  # center_left / center_right
        return np.stack([x[h], cy], axis=1)
    return np.stack([x[h], y[v]], axis=1)


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule for (N,2) points against an (E,2) polygon, vectorised over N x E."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    if len(p) == 0:
        return np.zeros((0,), bool)
    v = np.asarray(polygon, np.float64)
    x1, y1 = v[:, 0], v[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    px, py = p[:, 0:1], p[:, 1:2]
    straddles = (y1 > py) != (y2 > py)  # (N,E)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
    hits = straddles & (px < x_at)
    return (np.count_nonzero(hits, axis=1) % 2) == 1


def _side(points: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """+1 right-hand side (seen from start facing end, image coords), -1 left, 0 on the line."""
    d = end - start
    cross = d[0] * (points[:, 1] - start[1]) - d[1] * (points[:, 0] - start[0])
    return np.sign(cross).astype(np.int8)


def _crosses_segment(p: np.ndarray, q: np.ndarray, a: np.ndarray, b: np.ndarray) -> bool:
    """Does the movement p->q pass through segment a-b (ends included)?"""

    def cross(o, u, w):
        return (u[0] - o[0]) * (w[1] - o[1]) - (u[1] - o[1]) * (w[0] - o[0])

    d1, d2 = cross(a, b, p), cross(a, b, q)
    d3, d4 = cross(p, q, a), cross(p, q, b)
    return (d1 * d2 <= 0) and (d3 * d4 <= 0)


@dataclass(slots=True, frozen=True)
class LineCrossing:
    line: str
    track_id: int
    direction: str  # one of the line's two direction names
    label: str
    class_id: int
    frame_index: int
    timestamp: float
    point: tuple[float, float]  # anchor position on the new side when the crossing was confirmed


class PolygonZone:
    """One zone's membership state machine over track ids."""

    def __init__(self, config: ZoneConfig, frame_size: tuple[int, int]) -> None:
        self.config = config
        self.name = config.name
        self.polygon = np.asarray(config.pixel_polygon(*frame_size), np.float64)
        self.labels = set(config.labels) if config.labels else None
        self.inside: set[int] = set()  # confirmed members
        self._pending: dict[int, int] = {}  # track id -> consecutive frames disagreeing with state

    def update(
        self, track_ids: np.ndarray, points: np.ndarray, eligible: np.ndarray
    ) -> tuple[np.ndarray, list[int], list[int]]:
        """Returns (raw membership mask per row, ids entered, ids exited) for this frame."""
        raw = points_in_polygon(points, self.polygon) & eligible
        entered, exited = [], []
        inertia = self.config.inertia
        for tid, now_in in zip(track_ids.tolist(), raw.tolist()):
            was_in = tid in self.inside
            if now_in == was_in:
                self._pending.pop(tid, None)
                continue
            n = self._pending.get(tid, 0) + 1
            if n >= inertia:
                self._pending.pop(tid, None)
                if now_in:
                    self.inside.add(tid)
                    entered.append(tid)
                else:
                    self.inside.discard(tid)
                    exited.append(tid)
            else:
                self._pending[tid] = n
        return raw, entered, exited

    def drop(self, track_id: int) -> bool:
        """Forget a track; True when it was inside (its end counts as an exit)."""
        self._pending.pop(track_id, None)
        if track_id in self.inside:
            self.inside.discard(track_id)
            return True
        return False


class CountingLine:
    """One counting line's side-tracking state over track ids, with counts per direction and label."""

    def __init__(self, config: LineConfig, frame_size: tuple[int, int]) -> None:
        self.config = config
        self.name = config.name
        s, e = config.pixel_points(*frame_size)
        self.start, self.end = np.asarray(s, np.float64), np.asarray(e, np.float64)
        self.labels = set(config.labels) if config.labels else None
        # track id -> [stable side, last position on stable side, pending side, pending count, first pending pos]
        self._state: dict[int, list] = {}
        self.counts: dict[str, dict[str, int]] = {config.directions[0]: {}, config.directions[1]: {}}

    def update(
        self, track_ids: np.ndarray, points: np.ndarray, eligible: np.ndarray
    ) -> list[tuple[int, str, np.ndarray]]:
        sides = _side(points, self.start, self.end)
        out: list[tuple[int, str, np.ndarray]] = []
        need = self.config.min_frames
        for tid, side, pt, ok in zip(track_ids.tolist(), sides.tolist(), points, eligible.tolist()):
            if not ok or side == 0:
                continue  # on the line: wait for a side
            st = self._state.get(tid)
            if st is None:
                self._state[tid] = [side, pt, 0, 0, None]
                continue
            if side == st[0]:
                st[1], st[2], st[3], st[4] = pt, 0, 0, None
                continue
            if st[2] != side:
                st[2], st[3], st[4] = side, 0, pt
            st[3] += 1
            if st[3] >= need:
                through = _crosses_segment(st[1], st[4], self.start, self.end)
                if through:
                    # left (-1) -> right (+1) is directions[0]
                    out.append((tid, self.config.directions[0] if side > 0 else self.config.directions[1], pt))
                st[0], st[1], st[2], st[3], st[4] = side, pt, 0, 0, None
        return out

    def drop(self, track_id: int) -> None:
        self._state.pop(track_id, None)


@dataclass(slots=True)
class ZoneResult:
    """What zones and lines saw in one frame, keyed by track id."""

    current: dict[int, list[str]] = field(default_factory=dict)  # confirmed zones of each visible track
    entered: dict[int, list[str]] = field(default_factory=dict)
    exited: dict[int, list[str]] = field(default_factory=dict)
    crossings: list[LineCrossing] = field(default_factory=list)


class CameraZones:
    """All zones and lines of one camera. Call :meth:`update` once per frame with the tracker's output."""

    def __init__(
        self,
        zones: Sequence[ZoneConfig],
        lines: Sequence[LineConfig],
        frame_size: tuple[int, int],
        *,
        class_names: Sequence[str] | Mapping[int, str] | None = None,
        camera: str = "-",
    ) -> None:
        self.camera = camera
        self.class_names = class_names
        self.zones = [PolygonZone(z, frame_size) for z in zones]
        self.lines = [CountingLine(ln, frame_size) for ln in lines]
        self.frame_index = -1
        self._m_zone = {
            z.name: (
                _ZONE_EVENTS.labels(camera, z.name, "enter"),
                _ZONE_EVENTS.labels(camera, z.name, "exit"),
                _ZONE_OCCUPANCY.labels(camera, z.name),
            )
            for z in self.zones
        }

    @classmethod
    def from_config(cls, config: CameraTrackingConfig, frame_size: tuple[int, int], **kw) -> CameraZones:
        return cls(config.zones, config.lines, frame_size, **kw)

    def _eligible(self, labels: list[str], allowed: set[str] | None) -> np.ndarray:
        if allowed is None:
            return np.ones(len(labels), bool)
        return np.fromiter((lb in allowed for lb in labels), bool, len(labels))

    def update(self, tracked: Detections, timestamp: float | None = None) -> ZoneResult:
        """Update with one frame's *tracked* detections; fills ``tracked.zones`` in place."""
        self.frame_index += 1
        ts = float(timestamp) if timestamp is not None else float(self.frame_index)
        res = ZoneResult()
        n = len(tracked)
        if tracked.tracker_ids is None:
            raise ValueError("CameraZones.update needs tracked detections (tracker_ids set)")
        ids = np.asarray(tracked.tracker_ids, np.int64)
        class_ids = np.asarray(tracked.class_ids, np.int64)
        labels = [label_of(int(c), self.class_names) for c in class_ids]
        cache: dict[str, np.ndarray] = {}

        def pts(anchor: str) -> np.ndarray:
            if anchor not in cache:
                cache[anchor] = anchor_points(tracked.xyxy, anchor)  # type: ignore[arg-type]
            return cache[anchor]

        for tid in ids.tolist():
            res.current[tid] = []
        for z in self.zones:
            _, entered, exited = z.update(ids, pts(z.config.anchor), self._eligible(labels, z.labels))
            for tid in entered:
                res.entered.setdefault(tid, []).append(z.name)
            for tid in exited:
                res.exited.setdefault(tid, []).append(z.name)
            for tid in ids.tolist():
                if tid in z.inside:
                    res.current[tid].append(z.name)
            m_enter, m_exit, m_occ = self._m_zone[z.name]
            if entered:
                m_enter.inc(len(entered))
            if exited:
                m_exit.inc(len(exited))
            m_occ.set(len(z.inside))
        row = {tid: i for i, tid in enumerate(ids.tolist())}
        for ln in self.lines:
            for tid, direction, pt in ln.update(ids, pts(ln.config.anchor), self._eligible(labels, ln.labels)):
                i = row[tid]
                res.crossings.append(
                    LineCrossing(
                        ln.name,
                        tid,
                        direction,
                        labels[i],
                        int(class_ids[i]),
                        self.frame_index,
                        ts,
                        (float(pt[0]), float(pt[1])),
                    )
                )
                per_label = ln.counts[direction]
                per_label[labels[i]] = per_label.get(labels[i], 0) + 1
                _LINE_CROSSINGS.labels(self.camera, ln.name, direction).inc()
        tracked.zones = [list(res.current[int(t)]) for t in ids] if n else []
        return res

    def end_tracks(self, track_ids: Sequence[int]) -> dict[int, list[str]]:
        """Forget ended tracks; returns, per id, the zones it was in (its end is an exit from them)."""
        out: dict[int, list[str]] = {}
        for tid in track_ids:
            was = [z.name for z in self.zones if z.drop(tid)]
            for z in self.zones:
                if z.name in was:
                    self._m_zone[z.name][1].inc()
                    self._m_zone[z.name][2].set(len(z.inside))
            for ln in self.lines:
                ln.drop(tid)
            out[tid] = was
        return out

    def counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """line name -> direction -> label -> crossings so far."""
        return {ln.name: {d: dict(v) for d, v in ln.counts.items()} for ln in self.lines}

    def totals(self) -> dict[str, dict[str, int]]:
        """line name -> direction -> crossings so far (all labels)."""
        return {ln.name: {d: sum(v.values()) for d, v in ln.counts.items()} for ln in self.lines}
