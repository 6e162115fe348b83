"""SIGTERM's drain is bounded by one deadline, even with the uplink down, and loses nothing accepted."""

from __future__ import annotations

import socket
import time
import uuid

import pytest

from edge_agent.agent import Agent
from edge_agent.config import AgentConfig
from edgesight import samples


def _closed_port() -> int:
    with socket.socket() as s:  # bound, never listening: connections are refused
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(180)
def test_stop_with_the_broker_down_ends_within_its_timeout_and_keeps_the_spool(model_dir, tmp_path):
    port = _closed_port()
    cfg = AgentConfig.model_validate(
        {
            "agent_id": f"stop-{uuid.uuid4().hex[:6]}",
            "cameras": [{"id": "cam-a", "url": str(samples.VTEST), "loop": True, "target_fps": 5}],
            "inference": {"model_dir": str(model_dir), "variant": "int8", "classes": ["person"], "intra_op_threads": 1},
            "publish": {
                "kafka": {"bootstrap_servers": f"127.0.0.1:{port}"},
                "spool": {"dir": str(tmp_path / "spool"), "max_bytes": "256MiB"},
            },
            "control": {"enabled": False},
            "metrics": {"enabled": False},
        }
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
