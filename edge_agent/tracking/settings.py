"""Configuration of tracking, zones and counting lines (one camera's section).

Coordinates are pixels of the original frame, or normalised to 0..1 of the
frame's width/height. ``coords: auto`` (the default) means *normalised when
every coordinate lies in 0..1*, pixels otherwise; set ``coords: pixels`` or
``coords: normalized`` to say it outright. Either way :meth:`ZoneConfig.pixel_polygon`
/ :meth:`LineConfig.pixel_points` give pixels once the frame size is known.

Example (YAML)::

    tracker: {track_high_thresh: 0.5, lost_buffer_s: 3.0, min_hits: 2, frame_rate: 10}
    zones:
      - name: walkway
        polygon: [[0.0, 0.45], [1.0, 0.45], [1.0, 0.8], [0.0, 0.8]]
        labels: [person]
    lines:
      - name: gate
        start: [300, 150]
        end: [300, 500]
        labels: [person]
        directions: [in, out]     # in = left-to-right seen from start towards end
"""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from edgesight.config import StrictModel
from edgesight.wire.models import ID_PATTERN  # zone/line/direction names travel in events: same rule as ids

Anchor = Literal[
    "center",
    "bottom_center",
    "top_center",
    "center_left",
    "center_right",
    "bottom_left",
    "bottom_right",
    "top_left",
    "top_right",
]
CoordMode = Literal["auto", "pixels", "normalized"]


class TrackerConfig(StrictModel):
    """ByteTrack-style tracker parameters (see :mod:`edge_agent.tracking.tracker`)."""

    track_high_thresh: float = Field(
        0.5, gt=0.0, le=1.0, description="detections at or above this score take part in the first association"
    )
    track_low_thresh: float = Field(
        0.1, ge=0.0, le=1.0, description="detections between this and track_high_thresh only extend existing tracks"
    )
    new_track_thresh: float = Field(
        0.6, gt=0.0, le=1.0, description="an unmatched detection starts a (tentative) track at or above this score"
    )
    match_thresh: float = Field(
        0.8, gt=0.0, le=1.0, description="first-stage gate on 1 - IoU (x score when fuse_score): 0.8 = IoU >= 0.2"
    )
    second_match_thresh: float = Field(
        0.5, gt=0.0, le=1.0, description="second-stage (low-score detections) gate on 1 - IoU"
    )
    tentative_match_thresh: float = Field(0.7, gt=0.0, le=1.0, description="gate on 1 - IoU for tentative tracks")
    fuse_score: bool = Field(
        False,
        description="weigh first-stage IoU by the detection score (ByteTrack's MOT17 setting); off by default: "
        "with YOLOv4-tiny's person scores (~0.5-0.7) it splits the same people into more ids on vtest "
        "(tests/tracking/test_vtest_clip.py::test_fuse_score_setting_fragments_more)",
    )
    lost_buffer_s: float = Field(
        3.0, ge=0.0, description="seconds a lost track is kept for re-identification before it ends"
    )
    min_hits: int = Field(2, ge=1, description="consecutive matched frames before a track gets an id and is reported")
    frame_rate: float = Field(
        10.0, gt=0.0, description="frames per second fed to the tracker (after any frame skipping)"
    )
    class_aware: bool = Field(True, description="a track only ever matches detections of its own class")

    @model_validator(mode="after")
    def _order(self) -> TrackerConfig:
        if self.track_low_thresh >= self.track_high_thresh:
            raise ValueError(
                f"track_low_thresh ({self.track_low_thresh}) must be below track_high_thresh ({self.track_high_thresh})"
            )
        return self

    @property
    def max_lost_frames(self) -> int:
        return max(0, int(math.ceil(self.lost_buffer_s * self.frame_rate - 1e-9)))


def _point(v: object, what: str) -> tuple[float, float]:
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise ValueError(f"{what} must be a pair [x, y], got {v!r}")
    x, y = v
    for c in (x, y):
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c):
            raise ValueError(f"{what} must hold two finite numbers, got {v!r}")
    if x < 0 or y < 0:
        raise ValueError(f"{what} has a negative coordinate: {v!r} (pixels or 0..1 fractions)")
    return float(x), float(y)


def _resolve_mode(mode: CoordMode, pts: list[tuple[float, float]]) -> Literal["pixels", "normalized"]:
    if mode != "auto":
        return mode
    return "normalized" if all(x <= 1.0 and y <= 1.0 for x, y in pts) else "pixels"


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _segments_cross(p1, p2, q1, q2) -> bool:
    """Proper or touching intersection of segments p1p2 and q1q2."""
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    if ((d1 > 0) != (d2 > 0)) and d1 != 0 and d2 != 0 and ((d3 > 0) != (d4 > 0)) and d3 != 0 and d4 != 0:
        return True

    def on(a, b, c, d):  # c collinear with ab and within its box
        return d == 0 and min(a[0], b[0]) <= c[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= c[1] <= max(a[1], b[1])

    return on(q1, q2, p1, d1) or on(q1, q2, p2, d2) or on(p1, p2, q1, d3) or on(p1, p2, q2, d4)


def _check_labels(v: list[str] | None) -> list[str] | None:
    if v is None:
        return None
    if len(v) == 0:
        raise ValueError("labels must name at least one label, or be left out to accept every label")
    bad = [x for x in v if not x.strip()]
    if bad:
        raise ValueError("labels must not contain empty names")
    return v


class ZoneConfig(StrictModel):
    """A polygon; a tracked object is *in* it when its anchor point is inside."""

    name: str = Field(pattern=ID_PATTERN, description="letters, digits, '_', '.', '-' (max 64)")
    polygon: list[tuple[float, float]]
    coords: CoordMode = "auto"
    labels: list[str] | None = Field(None, description="only these labels (None: every label)")
    anchor: Anchor = "bottom_center"
    inertia: int = Field(
        3, ge=1, le=100, description="consecutive frames an object must be in (out) before it enters (exits)"
    )

    @field_validator("polygon", mode="before")
    @classmethod
    def _polygon(cls, v: object) -> list[tuple[float, float]]:
        if not isinstance(v, (list, tuple)):
            raise ValueError(f"polygon must be a list of [x, y] points, got {type(v).__name__}")
        pts = [_point(p, f"polygon point {i}") for i, p in enumerate(v)]
        if len(pts) >= 2 and pts[0] == pts[-1]:
            pts = pts[:-1]  # an explicitly closed ring: drop the repeated point
        if len(pts) < 3:
            raise ValueError(f"polygon needs at least 3 distinct points, got {len(pts)}")
        if len(set(pts)) != len(pts):
            raise ValueError("polygon repeats a point")
        n = len(pts)
        for i in range(n):
            for j in range(i + 1, n):
                if j == i + 1 or (i == 0 and j == n - 1):
                    continue  # adjacent edges share a vertex
                if _segments_cross(pts[i], pts[(i + 1) % n], pts[j], pts[(j + 1) % n]):
                    raise ValueError(
                        f"polygon is self-intersecting: edge {i}-{(i + 1) % n} crosses "
                        f"edge {j}-{(j + 1) % n}; list the points in order around the area"
                    )
        area2 = sum(_cross((0.0, 0.0), pts[i], pts[(i + 1) % len(pts)]) for i in range(len(pts)))
        if abs(area2) < 1e-12:
            raise ValueError("polygon has zero area (all points on one line)")
        return pts

    _labels = field_validator("labels")(classmethod(lambda cls, v: _check_labels(v)))

    @model_validator(mode="after")
    def _mode(self) -> ZoneConfig:
        if self.coords == "normalized" and any(x > 1 or y > 1 for x, y in self.polygon):
            raise ValueError("coords is 'normalized' but a polygon point lies outside 0..1")
        return self

    def pixel_polygon(self, width: int, height: int) -> list[tuple[float, float]]:
        if _resolve_mode(self.coords, self.polygon) == "normalized":
            return [(x * width, y * height) for x, y in self.polygon]
        return list(self.polygon)


class LineConfig(StrictModel):
    """A counting line from ``start`` to ``end``.

    Direction naming: ``directions[0]`` (default ``in``) counts a crossing from
    the left-hand side to the right-hand side of the line, left and right being
    those of someone standing on the image at ``start`` and facing ``end``;
    ``directions[1]`` (``out``) counts the reverse. Examples: a horizontal line
    drawn left to right (start x < end x) has its right-hand side *below* it, so
    ``in`` = moving down the image; a vertical line drawn top to bottom has its
    right-hand side on screen-left, so ``in`` = moving right to left. Swap
    ``start``/``end`` (or the two names) to flip it.
    """

    name: str = Field(pattern=ID_PATTERN, description="letters, digits, '_', '.', '-' (max 64)")
    start: tuple[float, float]
    end: tuple[float, float]
    coords: CoordMode = "auto"
    labels: list[str] | None = Field(None, description="only these labels (None: every label)")
    anchor: Anchor = "bottom_center"
    directions: tuple[str, str] = ("in", "out")
    min_frames: int = Field(
        2, ge=1, le=100, description="consecutive frames on the new side before a crossing counts (debounce)"
    )

    @field_validator("start", "end", mode="before")
    @classmethod
    def _pt(cls, v: object, info) -> tuple[float, float]:
        return _point(v, info.field_name)

    _labels = field_validator("labels")(classmethod(lambda cls, v: _check_labels(v)))

    @field_validator("directions")
    @classmethod
    def _dirs(cls, v: tuple[str, str]) -> tuple[str, str]:
        a, b = (s.strip() for s in v)
        if not a or not b:
            raise ValueError("directions must be two non-empty names, e.g. [in, out]")
        for d in (a, b):
            if not re.match(ID_PATTERN, d):
                raise ValueError(f"direction name {d!r} must use letters, digits, '_', '.', '-' only")
        if a == b:
            raise ValueError(f"directions must be two different names, got {a!r} twice")
        return a, b

    @model_validator(mode="after")
    def _distinct(self) -> LineConfig:
        if self.start == self.end:
            raise ValueError(f"line start and end are the same point {list(self.start)}")
        if self.coords == "normalized" and any(c > 1 for c in (*self.start, *self.end)):
            raise ValueError("coords is 'normalized' but a line point lies outside 0..1")
        return self

    def pixel_points(self, width: int, height: int) -> tuple[tuple[float, float], tuple[float, float]]:
        if _resolve_mode(self.coords, [self.start, self.end]) == "normalized":
            return (self.start[0] * width, self.start[1] * height), (self.end[0] * width, self.end[1] * height)
        return self.start, self.end


class CameraTrackingConfig(StrictModel):
    """Everything tracking-related for one camera."""

    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    zones: list[ZoneConfig] = Field(default_factory=list)
    lines: list[LineConfig] = Field(default_factory=list)
    update_interval_s: float = Field(
        0.0,
        ge=0.0,
        description="0: an update record every frame per object; >0: only on change "
        "(zones, crossings, top score) or after this many seconds",
    )

    @model_validator(mode="after")
    def _unique(self) -> CameraTrackingConfig:
        for kind, items in (("zone", self.zones), ("line", self.lines)):
            seen: set[str] = set()
            for it in items:
                if it.name in seen:
                    raise ValueError(f"two {kind}s are named {it.name!r}; names must be unique per camera")
                seen.add(it.name)
        return self
