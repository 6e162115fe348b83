"""Deterministic synthetic detection events and heartbeats (tests, benchmarks, demos)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

from edgesight.wire import AgentStatus, AnyDetectionEvent, CameraStatus, DetectionEvent, DetectionEventV1, make_event_id

CLASS_IDS = {"person": 0, "bicycle": 1, "car": 2, "dog": 16}
W, H = 640, 480


def make_event(
    agent: str,
    camera: str,
    ts: datetime,
    seq: int,
    track: int | None,
    kind: str = "update",
    *,
    label: str = "person",
    score: float = 0.5,
    zones=(),
    entered=(),
    exited=(),
    crossings=(),
    keyframe: str | None = None,
    index: int = 0,
    model_version: str = "1.0.0",
    run_id: str = "",
) -> AnyDetectionEvent:
    """One valid event; ``crossings`` = [(line, 'in'|'out')], ``keyframe`` = an id (>= 8 chars) or None.
    With a ``run_id`` a detection/2 event, without one a detection/1 event (what a not yet upgraded agent sends)."""
    x = (seq * 7) % (W - 60)
    model = DetectionEvent if run_id else DetectionEventV1
    run = {"run_id": run_id} if run_id else {}
    return model(
        **run,
        event_id=make_event_id(agent, camera, ts, seq, track, kind, index, run_id=run_id),
        kind=kind,
        agent_id=agent,
        camera_id=camera,
        ts=ts,
        seq=seq,
        model={"name": "yolov4-tiny", "version": model_version, "variant": "int8"},
        label=label,
        class_id=CLASS_IDS.get(label, 99),
        score=score,
        box={"x1": x, "y1": 100, "x2": x + 50, "y2": 220},
        box_norm={"x1": x / W, "y1": 100 / H, "x2": (x + 50) / W, "y2": 220 / H},
        frame={"width": W, "height": H},
        track_id=track,
        zones=list(zones),
        entered=list(entered),
        exited=list(exited),
        crossings=[{"line": ln, "direction": d} for ln, d in crossings],
        keyframe=None
        if keyframe is None
        else {
            "keyframe_id": keyframe,
            **({} if run_id else {"object_key": f"keyframes/{agent}/{camera}/{keyframe}.jpg"}),
        },
    )


def load_stream(
    n_events: int,
    *,
    cameras: int = 8,
    tracks_per_camera: int = 40,
    seed: int = 7,
    start: datetime = datetime(2026, 1, 1, 8, 0, tzinfo=timezone.utc),
) -> Iterator[AnyDetectionEvent]:
    """A realistic-looking stream for benchmarks: each camera runs tracks that wander through two zones and
    cross a line; about 2 events per second per track; ``n_events`` in total."""
    rnd = random.Random(seed)
    per_cam = max(1, n_events // cameras)
    for c in range(cameras):
        cam = f"cam-{c:02d}"
        agent = f"agent-{c // 4:02d}"
        emitted, seq, t = 0, 0, start
        tid = 0
        while emitted < per_cam:
            tid += 1
            life = min(rnd.randint(6, 60), per_cam - emitted)
            label = rnd.choice(("person", "person", "car", "bicycle"))
            prev: set[str] = set()
            for i in range(life):
                seq += 5
                t += timedelta(milliseconds=rnd.randint(50, 150))
                zones = {z for z, on in (("door", 5 <= i % 20 < 12), ("shelf", 9 <= i % 20 < 18)) if on}
                kind = "new" if i == 0 else ("end" if i == life - 1 and life > 1 else "update")
                cross = [("gate", "in")] if i == 3 else ([("gate", "out")] if i == 15 else [])
                yield make_event(
                    agent,
                    cam,
                    t,
                    seq,
                    tid,
                    kind,
                    label=label,
                    score=round(rnd.uniform(0.3, 0.99), 3),
                    zones=sorted(zones),
                    entered=sorted(zones - prev),
                    exited=sorted(prev - zones),
                    crossings=cross,
                    keyframe=f"kf{c:02d}{tid:06d}{i:04d}" if i % 10 == 0 else None,
                )
                prev = zones
                emitted += 1


def heartbeat(
    agent: str, cameras: dict[str, str], ts: datetime, *, version: str = "0.1.0", model_version: str = "1.0.0"
) -> AgentStatus:
    """AgentStatus with ``cameras`` = {camera_id: state}."""
    return AgentStatus(
        agent_id=agent,
        ts=ts,
        state="running",
        version=version,
        hostname=f"{agent}.local",
        uptime_s=10.0,
        cameras=[
            CameraStatus(
                agent_id=agent,
                camera_id=cid,
                ts=ts,
                state=state,
                fps=9.5,
                target_fps=10,
                model={"name": "yolov4-tiny", "version": model_version, "variant": "int8"},
            )
            for cid, state in cameras.items()
        ],
    )
