"""A record the broker can never take is released and counted as failed; it does not wedge the stream."""

from __future__ import annotations

from prometheus_client import REGISTRY

from edge_agent.publish import EdgePublisher
from edgesight.wire import KeyframeMeta, decode_event
from ops.testing.publish import T0, event_stream

from .conftest import publish_config
from .helpers import read_topic

AGENT = "agent-poison"


def test_oversized_record_fails_alone(stack, pub_config, tmp_path):
    cfg = publish_config(
        stack.config.kafka,
        pub_config.topics.prefix,
        tmp_path / "spool",
        message_max_bytes=256 * 1024,
        max_inflight_bytes=1024**2,
        keyframes={"max_bytes": 100_000},
    )
    blob = b"\xff\xd8\xff" + bytes(400_000)  # JPEG magic, far above message.max.bytes
    meta = KeyframeMeta.for_jpeg(
        blob, agent_id=AGENT, camera_id="cam-0", ts=T0, seq=0, width=10, height=10, reason="snapshot"
    )
    evs = list(event_stream(AGENT, 2, 50))
    with EdgePublisher(cfg, AGENT) as pub:
        for ev in evs[:25]:
            pub.publish_event(ev)
        pub.publish_keyframe(meta, blob)
        for ev in evs[25:]:
            pub.publish_event(ev)
        assert pub.flush(60), pub.stats()
        st = pub.stats()
    assert st["by_topic"]["keyframes"]["failed"] == 1 and st["by_topic"]["keyframes"]["acked"] == 0
    assert st["by_topic"]["detections"]["acked"] == 50 and st["spool"]["records"] == 0
    assert (
        REGISTRY.get_sample_value("edgesight_publish_records_failed_total", {"agent": AGENT, "topic": "keyframes"})
        == 1.0
    )
    recs = read_topic(stack.config.kafka, cfg.topics.detections, expect=50)
    assert sorted(decode_event(r.value).event_id for r in recs) == sorted(e.event_id for e in evs)
