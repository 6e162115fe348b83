"""Events, keyframes and heartbeats published to the real broker, read back with kafka-python."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

import cv2
from prometheus_client import REGISTRY

from edge_agent.publish import EdgePublisher, KeyframeSelector, TrackUpdate
from edgesight.wire import AgentStatus, decode_event, decode_keyframe, decode_status
from ops.testing.publish import T0, event_stream

from .helpers import read_topic

AGENT = "agent-rt"


def _metric(name: str, topic: str) -> float:
    return REGISTRY.get_sample_value(name, {"agent": AGENT, "topic": topic}) or 0.0


def test_events_keyframes_status_round_trip(pub_config, stack, vtest_path):
    before_acked = _metric("edgesight_publish_records_acked_total", "detections")
    n_cams, n = 3, 600
    sent = list(event_stream(AGENT, n_cams, n))
    # Real frames for keyframes: the first frames of vtest.avi.
    cap = cv2.VideoCapture(str(vtest_path))
    frames = [cap.read()[1] for _ in range(3)]
    cap.release()
    selector = KeyframeSelector(pub_config.keyframes, AGENT)

    with EdgePublisher(pub_config, AGENT) as pub:
        kf_sent = []
        for i, frame in enumerate(frames):
            shot = selector.process("cam-0", frame, T0 + timedelta(seconds=i), i, [TrackUpdate(i + 1, 0.7, True)])
            for meta, jpeg in shot.keyframes:
                pub.publish_keyframe(meta, jpeg)
                kf_sent.append(meta)
        for ev in sent:
            pub.publish_event(ev)
        pub.publish_status(AgentStatus(agent_id=AGENT, ts=T0, state="running", version="0.1.0"))
        assert pub.flush(60), pub.stats()
        st = pub.stats()
    assert st["by_topic"]["detections"]["acked"] == n
    assert st["by_topic"]["keyframes"]["acked"] == len(frames)
    assert st["by_topic"]["status"]["acked"] == 1
    assert st["spool"]["records"] == 0 and st["spool"]["dropped"] == 0
    assert _metric("edgesight_publish_records_acked_total", "detections") - before_acked == n

    topics = pub_config.topics
    recs = read_topic(stack.config.kafka, topics.detections, expect=n)
    assert len(recs) == n
    by_cam: dict[str, list[int]] = defaultdict(list)
    parts: dict[str, set[int]] = defaultdict(set)
    ids = []
    for r in recs:
        ev = decode_event(r.value)  # schema-valid
        assert r.key == f"{ev.agent_id}/{ev.camera_id}".encode()  # keyed by camera
        by_cam[ev.camera_id].append(ev.seq)
        parts[ev.camera_id].add(r.partition)
        ids.append(ev.event_id)
    assert sorted(ids) == sorted(e.event_id for e in sent)
    for cam, seqs in by_cam.items():
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), f"{cam} out of order"
        assert len(parts[cam]) == 1  # one camera, one partition
    assert len(by_cam) == n_cams

    kf = read_topic(stack.config.kafka, topics.keyframes, expect=len(frames))
    assert len(kf) == len(frames)
    got = {}
    for r in kf:
        meta, jpeg = decode_keyframe(r.key, r.value, r.headers)  # checks key, size, sha256
        got[meta.keyframe_id] = meta
        assert cv2.imdecode(__import__("numpy").frombuffer(jpeg, "uint8"), cv2.IMREAD_COLOR) is not None
    assert set(got) == {m.keyframe_id for m in kf_sent}
    assert {m.reason.value for m in got.values()} == {"track_start"}

    hb = read_topic(stack.config.kafka, topics.status, expect=1)
    assert len(hb) == 1 and hb[0].key == AGENT.encode()
    status = decode_status(hb[0].value)
    assert status.agent_id == AGENT and status.spool is not None and status.spool.limit_bytes > 0
