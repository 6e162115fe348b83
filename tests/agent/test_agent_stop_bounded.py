"""SIGTERM's drain is bounded by one deadline, even with the uplink down, and loses nothing accepted."""

from __future__ import annotations

import socket
import time

import pytest

from edge_agent.agent import Agent
from tests.agents import agent_config


def _closed_port() -> int:
    with socket.socket() as s:  # bound, never listening: connections are refused
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(180)
def test_stop_with_the_broker_down_ends_within_its_timeout_and_keeps_the_spool(model_dir, tmp_path):
    port = _closed_port()
    cfg = agent_config(
        None, model_dir, tmp_path / "spool", name="stop", fps=5, bootstrap=f"127.0.0.1:{port}", control=False
    )
    a = Agent(cfg).start()
    deadline = time.monotonic() + 90
    while a.pipeline.events_published < 5 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert a.pipeline.events_published >= 5, "no events were produced from vtest"
    timeout = 4.0
    t0 = time.monotonic()
    a.stop(timeout=timeout)
    took = time.monotonic() - t0
    # every stage shares the deadline (each gets at least 0.2 s): without it the publisher's flush alone
    # waits 15 s for a broker that never answers
    assert took < timeout + 3, f"stop took {took:.1f}s for a {timeout}s timeout"
    spooled = a.publisher.spool_status()
    assert spooled.records >= 5, spooled  # unacknowledged records stay journaled for the next start
