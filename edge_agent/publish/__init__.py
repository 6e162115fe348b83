"""The edge agent's publish stage: Kafka producer, durable spool, keyframe policy.

Public interface for the pipeline::

    from edge_agent.publish import EdgePublisher, KeyframeSelector, PublishConfig, TrackUpdate

    pub = EdgePublisher(cfg.publish, agent_id).start()
    kf = KeyframeSelector(cfg.publish.keyframes, agent_id)
    ...
    shot = kf.process(camera_id, frame_bgr, ts, seq, [TrackUpdate(track_id, score, is_new), ...])
    for meta, jpeg in shot.keyframes:
        pub.publish_keyframe(meta, jpeg)
    for ev in events:                      # attach shot.ref_for(ev.track_id) as ev.keyframe
        pub.publish_event(ev)
    pub.publish_status(agent_status)       # heartbeat
    pub.close()
"""

from .keyframes import KeyframeSelector, KeyframeShot, TrackUpdate, encode_jpeg_bounded
from .producer import EdgePublisher, ensure_topics, producer_config
from .settings import KeyframePolicy, PublishConfig, SpoolConfig, parse_size
from .spool import Spool, SpoolError, SpoolRecord, SpoolStats

__all__ = [
    "EdgePublisher",
    "ensure_topics",
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
