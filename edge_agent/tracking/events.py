"""Object lifecycle records (Frigate-like ``new`` / ``update`` / ``end``) from tracked frames.

Per camera, per frame, :class:`EventBuilder` turns the tracker's output, the
zone/line results and the tracker's ended tracks into a list of
:class:`ObjectUpdate` records (plain dataclasses; the wire contract conversion
lives elsewhere):

* ``new``: the first frame a confirmed track is visible (exactly once per id);
* ``update``: later frames it is visible. With ``update_interval_s == 0`` one
  per frame; otherwise only when something changed (zones entered/exited, a
  line crossed, a higher top score) or ``update_interval_s`` has passed since
  the last record of that track;
* ``end``: the track was lost longer than the tracker's buffer (or the
  pipeline was reset). Its ``zones_exited`` lists the zones it was still in,
  so occupancy derived from events balances.

:class:`CameraTracking` wires tracker + zones + builder for one camera.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from edge_agent.detections import Detections

from .settings import CameraTrackingConfig
from .tracker import ByteTracker, TrackInfo
from .zones import CameraZones, LineCrossing, ZoneResult, label_of

__all__ = ["ObjectUpdate", "EventBuilder", "CameraTracking"]

Kind = Literal["new", "update", "end"]


@dataclass(slots=True)
class ObjectUpdate:
    kind: Kind
    camera: str
    track_id: int
    label: str
    class_id: int
    score: float  # this frame's detection score (end: last one)
    top_score: float
    box: tuple[float, float, float, float]  # xyxy pixels (end: last seen box)
    frame_index: int
    timestamp: float
    first_seen: float
    last_seen: float
    hits: int
    zones_current: list[str] = field(default_factory=list)
    zones_entered: list[str] = field(default_factory=list)
    zones_exited: list[str] = field(default_factory=list)
    crossings: list[LineCrossing] = field(default_factory=list)


class EventBuilder:
    def __init__(
        self,
        camera: str = "-",
        class_names: Sequence[str] | Mapping[int, str] | None = None,
        update_interval_s: float = 0.0,
    ) -> None:
        self.camera = camera
        self.class_names = class_names
        self.update_interval_s = float(update_interval_s)
        self._last_emit: dict[int, tuple[float, float]] = {}  # track id -> (timestamp, top score) of last record

    def update(
        self,
        tracked: Detections,
        tracks: Mapping[int, TrackInfo],
        zones: ZoneResult | None,
        ended: Sequence[TrackInfo],
        ended_zones: Mapping[int, list[str]] | None = None,
        *,
        frame_index: int,
        timestamp: float,
    ) -> list[ObjectUpdate]:
        zones = zones or ZoneResult()
        ended_zones = ended_zones or {}
        out: list[ObjectUpdate] = []
        crossings: dict[int, list[LineCrossing]] = {}
        for c in zones.crossings:
            crossings.setdefault(c.track_id, []).append(c)
        ids = tracked.tracker_ids if tracked.tracker_ids is not None else np.zeros((0,), np.int64)
        for i, tid in enumerate(ids.tolist()):
            info = tracks.get(tid)
            if info is None:
                raise ValueError(f"track {tid} is in the frame but unknown to the tracker")
            entered, exited = zones.entered.get(tid, []), zones.exited.get(tid, [])
            cross = crossings.get(tid, [])
            last = self._last_emit.get(tid)
            if last is None:
                kind: Kind = "new"
            else:
                kind = "update"
                if self.update_interval_s > 0:
                    changed = bool(entered or exited or cross) or info.top_score > last[1]
                    if not changed and timestamp - last[0] < self.update_interval_s:
                        continue
            self._last_emit[tid] = (timestamp, info.top_score)
            out.append(
                ObjectUpdate(
                    kind,
                    self.camera,
                    tid,
                    label_of(info.class_id, self.class_names),
                    info.class_id,
                    float(tracked.scores[i]),
                    info.top_score,
                    tuple(tracked.xyxy[i].tolist()),
                    frame_index,
                    timestamp,
                    info.first_seen,
                    info.last_seen,
                    info.hits,
                    list(zones.current.get(tid, [])),
                    list(entered),
                    list(exited),
                    list(cross),
                )
            )
        for info in ended:
            if info.track_id not in self._last_emit:
                continue  # never reported (cannot happen with the tracker's own ids)
            del self._last_emit[info.track_id]
            was_in = list(ended_zones.get(info.track_id, []))
            out.append(
                ObjectUpdate(
                    "end",
                    self.camera,
                    info.track_id,
                    label_of(info.class_id, self.class_names),
                    info.class_id,
                    info.score,
                    info.top_score,
                    info.box,
                    frame_index,
                    timestamp,
                    info.first_seen,
                    info.last_seen,
                    info.hits,
                    [],
                    [],
                    was_in,
                    [],
                )
            )
        return out


class CameraTracking:
    """Tracker + zones + lifecycle records for one camera::

    ct = CameraTracking(cfg, frame_size=(w, h), camera="cam-1", class_names=COCO)
    tracked, records = ct.process(detections, timestamp)
    """

    def __init__(
        self,
        config: CameraTrackingConfig,
        frame_size: tuple[int, int],
        *,
        camera: str = "-",
        class_names: Sequence[str] | Mapping[int, str] | None = None,
    ) -> None:
        self.config = config
        self.camera = camera
        self.tracker = ByteTracker(config.tracker, camera=camera)
        self.zones = CameraZones.from_config(config, frame_size, class_names=class_names, camera=camera)
        self.events = EventBuilder(camera, class_names, config.update_interval_s)

    def process(self, detections: Detections, timestamp: float | None = None) -> tuple[Detections, list[ObjectUpdate]]:
        tracked = self.tracker.update(detections, timestamp)
        frame = self.tracker.frame_index
        ts = float(timestamp) if timestamp is not None else frame / self.config.tracker.frame_rate
        zr = self.zones.update(tracked, ts)
        ended = self.tracker.ended
        ended_zones = self.zones.end_tracks([e.track_id for e in ended]) if ended else {}
        infos = self.tracker.infos(tracked.tracker_ids.tolist() if tracked.tracker_ids is not None else [])
        records = self.events.update(tracked, infos, zr, ended, ended_zones, frame_index=frame, timestamp=ts)
        return tracked, records

    def close(self, timestamp: float | None = None) -> list[ObjectUpdate]:
        """End every live track (stream stopped/restarted): their ``end`` records."""
        ended = self.tracker.reset()
        ended_zones = self.zones.end_tracks([e.track_id for e in ended])
        ts = (
            float(timestamp)
            if timestamp is not None
            else (self.tracker.frame_index + 1) / self.config.tracker.frame_rate
        )
        return self.events.update(
            Detections.empty(), {}, None, ended, ended_zones, frame_index=self.tracker.frame_index, timestamp=ts
        )
