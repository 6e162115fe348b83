"""The edge agent's publish stage: Kafka producer, durable spool, keyframe policy.

Public interface for the pipeline::

    from edge_agent.publish import EdgePublisher, KeyframeSelector, PublishConfig, TrackUpdate

    pub = EdgePublisher(cfg.publish, agent_id).start()
    kf = KeyframeSelector(cfg.publish.keyframes, agent_id)
    ...
    shot = kf.process(camera_id, frame_bgr, ts, seq, [TrackUpdate(track_id, score, is_new, box), ...], geometry)
    for meta, jpeg in shot.keyframes:
        pub.publish_keyframe(meta, jpeg)
    for ev in events:                      # attach shot.ref_for(ev.track_id) as ev.keyframe
        pub.publish_event(ev)
    pub.publish_status(agent_status)       # heartbeat
    pub.close()

Names are imported on first use, so ``from edge_agent.publish.settings import ...`` loads
neither cv2 nor confluent_kafka.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_agent._lazy import lazy_exports

if TYPE_CHECKING:
    from .keyframes import KeyframeSelector, KeyframeShot, TrackUpdate, encode_jpeg_bounded
    from .producer import EdgePublisher, edge_topic_specs, producer_config
    from .settings import KeyframePolicy, PublishConfig, SpoolConfig, parse_size
    from .spool import Spool, SpoolError, SpoolRecord, SpoolStats

__all__ = [
    "EdgePublisher",
    "edge_topic_specs",
    "producer_config",
    "KeyframeSelector",
    "KeyframeShot",
    "TrackUpdate",
    "encode_jpeg_bounded",
    "KeyframePolicy",
    "PublishConfig",
    "SpoolConfig",
    "parse_size",
    "Spool",
    "SpoolError",
    "SpoolRecord",
    "SpoolStats",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "KeyframeSelector": ".keyframes",
        "KeyframeShot": ".keyframes",
        "TrackUpdate": ".keyframes",
        "encode_jpeg_bounded": ".keyframes",
        "EdgePublisher": ".producer",
        "edge_topic_specs": ".producer",
        "producer_config": ".producer",
        "KeyframePolicy": ".settings",
        "PublishConfig": ".settings",
        "SpoolConfig": ".settings",
        "parse_size": ".settings",
        "Spool": ".spool",
        "SpoolError": ".spool",
        "SpoolRecord": ".spool",
        "SpoolStats": ".spool",
    },
)
