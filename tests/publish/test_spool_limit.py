"""A full spool drops the OLDEST records, and says exactly how many (stats, status, metric, log)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from edge_agent.publish import EdgePublisher
from ops.stack import free_ports
from ops.testing.publish import event_stream

from .conftest import publish_config
from .helpers import read_topic

AGENT = "agent-full"


def _dropped_metric() -> float:
    return (
        REGISTRY.get_sample_value("edgesight_publish_spool_dropped_total", {"agent": AGENT, "topic": "detections"})
        or 0.0
    )


def test_full_spool_drops_oldest_and_counts_exactly(stack, pub_config, tmp_path, caplog):
    n = 8000
    small = dict(
        spool={"max_bytes": 1024**2, "segment_bytes": 64 * 1024},
        max_inflight_records=100,
        max_inflight_bytes=256 * 1024,
        message_max_bytes=256 * 1024,
        keyframes={"max_bytes": 100_000},
    )
    dead = f"127.0.0.1:{free_ports(1)[0]}"  # nothing listens: the uplink is down
    cfg_down = publish_config(
        stack.config.kafka.model_copy(update={"bootstrap_servers": dead}),
        pub_config.topics.prefix,
        tmp_path / "spool",
        **small,
    )
    sent = [ev for ev in event_stream(AGENT, 2, n)]
    m0 = _dropped_metric()
    pub = EdgePublisher(cfg_down, AGENT).start()
    for ev in sent:
        pub.publish_event(ev)
    st = pub.stats()
    status = pub.spool_status()
    pub.close(0.5)

    dropped = st["spool"]["dropped"]
    assert dropped > 0
    assert dropped + st["spool"]["records"] == n  # every record is either kept or counted as dropped
    assert st["spool"]["bytes"] <= cfg_down.spool.max_bytes
    assert st["by_topic"]["detections"]["dropped"] == dropped
    assert status.dropped == dropped and status.limit_bytes == cfg_down.spool.max_bytes
    assert _dropped_metric() - m0 == dropped
    assert any("oldest records dropped" in r.getMessage() for r in caplog.records)
    inflight = st["spool"]["inflight_records"]
    assert inflight <= 100

    # Uplink back (same spool, right address): what was kept arrives; the dropped are the oldest
    # spooled ones (just after the few the producer already held), and the count survived the restart.
    cfg_up = publish_config(stack.config.kafka, pub_config.topics.prefix, tmp_path / "spool", **small)
    with EdgePublisher(cfg_up, AGENT) as pub2:
        assert pub2.spool_status().dropped == dropped
        assert pub2.flush(60), pub2.stats()
    recs = read_topic(stack.config.kafka, cfg_up.topics.detections, expect=n - dropped)
    got = {r.value for r in recs}
    from edgesight.wire import decode_event

    got_ids = {decode_event(v).event_id for v in got}
    assert len(recs) == n - dropped
    kept = [e.event_id for e in sent[:inflight]] + [e.event_id for e in sent[inflight + dropped :]]
    assert got_ids == set(kept)
