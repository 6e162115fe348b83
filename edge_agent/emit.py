"""Tracking records -> wire-contract detection events (the only place that converts)."""

from __future__ import annotations

from datetime import datetime, timezone

from edge_agent.tracking.events import ObjectUpdate
from edgesight.wire import Box, Crossing, DetectionEvent, FrameSize, KeyframeRef, ModelRef, NormBox, make_event_id


def frame_geometry(
    image_size: tuple[int, int], source_size: tuple[int, int], origin: tuple[int, int], scale: float
) -> tuple[int, int, tuple[float, float], float]:
    """(width, height, origin, scale) mapping processed-image pixels to the camera's full frame."""
    w, h = source_size if source_size[0] > 0 and source_size[1] > 0 else image_size
    return int(w), int(h), (float(origin[0]), float(origin[1])), float(scale or 1.0)


def to_event(
    u: ObjectUpdate,
    *,
    agent_id: str,
    run_id: str,
    camera_id: str,
    ts: float,
    seq: int,
    model: ModelRef,
    width: int,
    height: int,
    origin: tuple[float, float] = (0.0, 0.0),
    scale: float = 1.0,
    keyframe: KeyframeRef | None = None,
) -> DetectionEvent:
    """One event; the box is reported in the camera's full-frame pixels (ROI/resolution cap undone)."""
    x1, y1, x2, y2 = u.box
    ox, oy = origin
    bx = [
        min(max(x1 / scale + ox, 0.0), width),
        min(max(y1 / scale + oy, 0.0), height),
        min(max(x2 / scale + ox, 0.0), width),
        min(max(y2 / scale + oy, 0.0), height),
    ]
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    return DetectionEvent(
        event_id=make_event_id(agent_id, camera_id, ts, seq, u.track_id, u.kind, run_id=run_id),
        kind=u.kind,
        agent_id=agent_id,
        run_id=run_id,
        camera_id=camera_id,
        ts=dt,
        seq=seq,
        model=model,
        label=u.label,
        class_id=u.class_id,
        score=min(max(u.score, 0.0), 1.0),
        top_score=min(max(u.top_score, 0.0), 1.0),
        box=Box(x1=bx[0], y1=bx[1], x2=bx[2], y2=bx[3]),
        box_norm=NormBox(x1=bx[0] / width, y1=bx[1] / height, x2=bx[2] / width, y2=bx[3] / height),
        frame=FrameSize(width=width, height=height),
        track_id=u.track_id,
        zones=list(u.zones_current),
        entered=list(u.zones_entered),
        exited=list(u.zones_exited),
        crossings=[Crossing(line=c.line, direction=c.direction) for c in u.crossings],
        keyframe=keyframe,
    )
