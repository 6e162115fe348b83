"""A camera that is down for longer than any retry count comes back by itself (issue #11)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edge_agent.capture import CameraConfig, CameraState, Supervisor
from edge_agent.capture.settings import BACKOFF_MAX_S, BackoffConfig

from .helpers import Consumer, wait_for, wait_state

WATCHDOG = {"stall_timeout_s": 3.0, "open_timeout_s": 3.0, "read_timeout_s": 3.0}


def test_default_is_retry_forever_with_capped_backoff():
    cfg = CameraConfig(id="a", url="rtsp://127.0.0.1:554/s")
    assert cfg.backoff.max_retries is None
    with pytest.raises(ValidationError, match="max_s"):
        BackoffConfig(max_s=BACKOFF_MAX_S + 1)


@settings(max_examples=200, deadline=None)
@given(
    attempt=st.integers(min_value=0, max_value=10**9),
    rand=st.floats(min_value=0.0, max_value=0.999999),
    initial=st.floats(min_value=0.001, max_value=10.0),
    max_s=st.floats(min_value=10.0, max_value=BACKOFF_MAX_S),
    mult=st.floats(min_value=1.0, max_value=10.0),
)
def test_backoff_delay_is_finite_and_capped_for_any_attempt(attempt, rand, initial, max_s, mult):
    b = BackoffConfig(initial_s=initial, max_s=max_s, multiplier=mult, jitter=0.2)
    d = b.delay(attempt, rand)
    assert 0.0 <= d <= b.bound(attempt) <= max_s * 1.2 + 1e-9


@pytest.mark.timeout(120)
def test_camera_down_past_ten_retries_comes_back(mjpeg_server):
    cam = CameraConfig(
        id="mjpeg",
        url=mjpeg_server.url,
        backoff={"initial_s": 0.05, "max_s": 0.2, "jitter": 0.1},  # max_retries: the default
        watchdog=WATCHDOG,
    )
    sup = Supervisor([cam])
    consumer = Consumer(sup)
    sup.start()
    consumer.start()
    try:
        assert wait_state(sup, "mjpeg", CameraState.STREAMING, 20), sup.status()["mjpeg"]
        assert wait_for(lambda: len(consumer.seqs("mjpeg")) >= 5, 20)
        mjpeg_server.down()
        # well past ten consecutive failed connects, and still trying (never "failed")
        assert wait_for(lambda: sup.status()["mjpeg"].counters["retry_attempt"] >= 15, 60), sup.status()["mjpeg"]
        st_ = sup.status()["mjpeg"]
        assert st_.state == CameraState.RECONNECTING, st_
        assert "retry" in st_.reason and "/" not in st_.reason.split("retry", 1)[1].split(" in ")[0], st_.reason
        nxt = st_.counters["next_retry_at"]
        assert nxt is not None and nxt <= time.time() + 0.2 * 1.1 + 1.0
        n = len(consumer.seqs("mjpeg"))
        mjpeg_server.up()
        assert wait_state(sup, "mjpeg", CameraState.STREAMING, 30), sup.status()["mjpeg"]
        assert wait_for(lambda: len(consumer.seqs("mjpeg")) >= n + 10, 30), len(consumer.seqs("mjpeg")) - n
        back = sup.status()["mjpeg"].counters
        assert back["retry_attempt"] == 0 and back["next_retry_at"] is None, back
    finally:
        consumer.stop()
        sup.stop()
