"""Latest-frame-wins: a slow consumer always gets the newest frame, never a stale one."""

from __future__ import annotations

import statistics
import threading
import time

import numpy as np
import pytest
from prometheus_client import REGISTRY

from edge_agent.capture import CameraConfig, Frame, HandoffSlot, Supervisor
from edge_agent.capture.worker import CameraStats

from .helpers import Consumer


def test_slot_never_hands_out_stale_frames():
    cond = threading.Condition()
    stats = CameraStats("slot-test")
    slot = HandoffSlot("slot-test", cond, stats)
    img = np.zeros((4, 4, 3), np.uint8)
    n = 20000
    produced = threading.Event()

    def produce():
        for i in range(1, n + 1):
            now = time.monotonic()
            slot.put(Frame("slot-test", i, time.time(), now, img))
        produced.set()

    taken: list[int] = []
    newest_at_take: list[int] = []
    t = threading.Thread(target=produce)
    t.start()
    while not produced.is_set():
        with cond:
            f = slot.take_locked()
            if f is not None:
                taken.append(f.seq)
                newest_at_take.append(slot.peek().seq)
    t.join()
    last = slot.take()
    if last is not None:
        taken.append(last.seq)
    assert slot.take() is None  # nothing is handed out twice
    assert taken and taken[-1] == n  # the newest frame is always reachable
    assert all(b > a for a, b in zip(taken, taken[1:]))  # strictly newer each time
    assert newest_at_take and all(s == t_ for s, t_ in zip(taken, newest_at_take))  # the newest one
    # every frame is either taken or counted as overwritten
    assert stats.dropped["overwritten_unconsumed"] + len(taken) == n
    assert stats.frames_taken == len(taken)


@pytest.mark.timeout(60)
def test_slow_consumer_gets_fresh_frames_without_drift(vtest):
    sup = Supervisor([CameraConfig(id="slow-a", url=vtest, loop=True), CameraConfig(id="slow-b", url=vtest, loop=True)])
    consumer = Consumer(sup, delay=0.35)  # inference much slower than the 10 fps camera
    sup.start()
    consumer.start()
    try:
        time.sleep(8.0)
        fps_gauge = REGISTRY.get_sample_value("edgesight_capture_fps", {"camera": "slow-a"})
        assert fps_gauge is not None and 7.0 <= fps_gauge <= 13.0, fps_gauge
    finally:
        consumer.stop()
        sup.stop()
    for cam in ("slow-a", "slow-b"):
        with consumer.lock:
            recs = list(consumer.records[cam])
        assert len(recs) >= 12, len(recs)
        seqs = [s for s, _t, _a in recs]
        ages = [a for _s, _t, a in recs]
        assert all(b > a for a, b in zip(seqs, seqs[1:]))
        # frames were skipped between takes (latest wins), and counted as such
        assert max(b - a for a, b in zip(seqs, seqs[1:])) >= 3
        assert sup.status()[cam].counters["frames_dropped"]["overwritten_unconsumed"] > 20
        # the age of what the consumer gets stays about one camera period, no drift
        assert statistics.median(ages) < 0.25, ages
        assert max(ages) < 1.0, ages
        third = len(ages) // 3
        assert statistics.mean(ages[-third:]) - statistics.mean(ages[:third]) < 0.15, ages
        # the same figures in Prometheus, labelled by camera
        st = sup.status()[cam].counters
        sample = REGISTRY.get_sample_value
        assert (
            sample("edgesight_capture_frames_dropped_total", {"camera": cam, "reason": "overwritten_unconsumed"})
            == st["frames_dropped"]["overwritten_unconsumed"]
        )
        assert sample("edgesight_capture_frames_read_total", {"camera": cam}) == st["frames_read"]
        assert sample("edgesight_capture_handoff_latency_seconds_count", {"camera": cam}) == len(recs)
        assert sample("edgesight_capture_handoff_latency_seconds_bucket", {"camera": cam, "le": "0.25"}) >= 0.9 * len(
            recs
        )


def test_wait_any_returns_empty_on_timeout_and_after_stop(vtest):
    sup = Supervisor([CameraConfig(id="idle", url=vtest, enabled=False)])
    sup.start()
    t0 = time.monotonic()
    assert sup.wait_any(timeout=0.3) == []
    assert 0.25 <= time.monotonic() - t0 < 2.0
    sup.stop()
    t0 = time.monotonic()
    assert sup.wait_any(timeout=5) == []
    assert time.monotonic() - t0 < 1.0
