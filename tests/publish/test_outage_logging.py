"""A broker outage gives a handful of log lines, not one per reconnect attempt; after recovery the publisher's
``last_error`` is cleared (its time and ``recovered_at`` remain). Issue #11: a 41 s outage logged 85 lines and
``last_error`` kept the old error forever."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter

import pytest

from edge_agent.publish import EdgePublisher, edge_topic_specs
from edgesight.kafka import ensure_topics
from edgesight.nativelog import REPEAT_WINDOW_S, message_key
from ops.testing.publish import event_stream
from tests.capture.helpers import wait_for

from .conftest import publish_config

OUTAGE_S = 20.0  # librdkafka retries with back-off and dedups itself: a few lines, at least two alike


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        what = f"{record.name}|{record.getMessage()}|{getattr(record, 'error', '')}"
        with self._lock:
            self.records.append((time.monotonic(), what))


@pytest.mark.timeout(240)
def test_outage_logging_is_rate_limited_and_last_error_clears(broker, tmp_path):
    st = broker.stack
    cfg = publish_config(st.config.kafka, f"l{uuid.uuid4().hex[:8]}", tmp_path / "spool")
    ensure_topics(cfg.kafka.client_config(), edge_topic_specs(cfg, partitions=1))
    collect = _Collect()
    lg = logging.getLogger("edgesight.publish")
    old_level = lg.level
    lg.setLevel(logging.DEBUG)
    lg.addHandler(collect)
    events = event_stream("agent-log", 2, 10_000_000)
    pub = EdgePublisher(cfg, "agent-log").start()
    sent = 0
    try:
        for _ in range(20):
            pub.publish_event(next(events))
            sent += 1
        assert wait_for(lambda: pub.stats()["by_topic"]["detections"]["acked"] == sent, 30), "no first acks"
        assert pub.stats()["last_error"] is None
        broker.stop()  # SIGKILL: every reconnect attempt is refused
        t0 = time.monotonic()
        while time.monotonic() - t0 < OUTAGE_S:
            pub.publish_event(next(events))
            sent += 1
            time.sleep(0.1)
        t1 = time.monotonic()
        during = pub.stats()
        assert during["last_error"] and during["last_error_at"] and during["recovered_at"] is None, during
        broker.start()
        assert pub.flush(90), pub.stats()
        after = pub.stats()
    finally:
        pub.close(2)
        lg.removeHandler(collect)
        lg.setLevel(old_level)
    assert after["by_topic"]["detections"]["acked"] == sent
    # recovered: the error is gone from last_error; when it happened and when it recovered stay visible
    assert after["last_error"] is None, after
    assert after["last_error_at"] is not None and after["recovered_at"] >= after["last_error_at"], after
    # rate-limited: within the outage (shorter than the window) each distinct message appears at most once,
    # and repeats were counted, not logged
    assert OUTAGE_S < REPEAT_WINDOW_S
    outage = Counter(message_key(what) for t, what in collect.records if t0 <= t <= t1)
    assert outage and max(outage.values()) == 1, outage.most_common(5)
    assert after["log_repeats_suppressed"] > 0, after
    print(
        f"{sum(outage.values())} log lines during a {OUTAGE_S:.0f}s outage; suppressed {after['log_repeats_suppressed']}"
    )
