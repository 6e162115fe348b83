"""The cloud side of the benchmark/test fixtures: detection events for the warehouse, an acks=all producer."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from cloud.config import CloudConfig
from edgesight.wire import Box, DetectionEvent, FrameSize, KeyframeRef, ModelRef, NormBox, make_event_id

# Recent (the warehouse TTL would expire old test data on read), whole milliseconds.
_now = datetime.now(timezone.utc)
T0 = (_now - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
RUN_ID = "7e57" * 8  # the one agent run of the test events (detection/2)
Record = Sequence[Any]  # (key, value, headers | None[, timestamp_ms])


def make_event(
    i: int,
    *,
    camera: str = "cam-1",
    agent: str = "agent-1",
    label: str = "person",
    zones: Iterable[str] | None = None,
    track: int | None = None,
    ts: datetime | None = None,
    keyframe: KeyframeRef | None = None,
) -> DetectionEvent:
    """The i-th test event: one every 100 ms from :data:`T0`, track ``i % 7`` unless given."""
    ts = ts or (T0 + timedelta(milliseconds=100 * i))
    track = i % 7 if track is None else track
    return DetectionEvent(
        event_id=make_event_id(agent, camera, ts, i, track, "update", run_id=RUN_ID),
        agent_id=agent,
        run_id=RUN_ID,
        camera_id=camera,
        ts=ts,
        seq=i,
        model=ModelRef(name="yolov4-tiny", version="1"),
        label=label,
        class_id=0,
        score=0.5 + (i % 50) / 100,
        box=Box(x1=10, y1=20, x2=110, y2=220),
        box_norm=NormBox(x1=0.01, y1=0.02, x2=0.11, y2=0.22),
        frame=FrameSize(width=1000, height=1000),
        track_id=track,
        zones=list(zones or []),
        keyframe=keyframe,
    )


def produce(cfg: CloudConfig, topic: str, records: Iterable[Record]) -> None:
    """records: iterable of (key, value, headers|None[, timestamp_ms]); acks=all, waits for every ack."""
    from confluent_kafka import Producer

    p = Producer(
        {
            **cfg.kafka.client_config(),
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.max.bytes": 20 * 1024 * 1024,
        }
    )
    errors: list[Any] = []
    for r in records:
        key, value, headers = r[0], r[1], r[2]
        kw = {"timestamp": r[3]} if len(r) > 3 and r[3] is not None else {}
        p.produce(
            topic,
            key=key,
            value=value,
            headers=headers or None,
            on_delivery=lambda e, m: errors.append(e) if e else None,
            **kw,
        )
        p.poll(0)
    left = p.flush(60)
    assert not left and not errors, f"produce failed: left={left} errors={errors[:3]}"
