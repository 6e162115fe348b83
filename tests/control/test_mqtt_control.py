"""MQTT control plane against the real mosquitto broker, driven by Debian's mosquitto_pub/sub."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import datetime, timezone

import pytest

from edge_agent.control.mqtt import CommandError, ControlPlane
from edge_agent.control.settings import ControlConfig
from edgesight.wire import AgentStatus, decode_ack, decode_status
from ops.testing.clients import mosquitto_cli, mqtt_login


def control_config(stack) -> ControlConfig:
    return ControlConfig(**mqtt_login(stack.config.mqtt))  # the stack's own login (TLS on the secure stack)


def auth(stack) -> list[str]:
    return mosquitto_cli(stack.config.mqtt)


def pub(stack, topic: str, payload: str) -> None:
    subprocess.run(["mosquitto_pub", *auth(stack), "-t", topic, "-m", payload, "-q", "1"], check=True, timeout=10)


class Sub:
    """mosquitto_sub collecting N messages from a topic (retained ones included)."""

    def __init__(self, stack, topic: str, count: int, timeout: int = 15):
        self.proc = subprocess.Popen(
            ["mosquitto_sub", *auth(stack), "-t", topic, "-C", str(count), "-W", str(timeout), "-v"],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.4)

    def messages(self) -> list[tuple[str, str]]:
        out, _ = self.proc.communicate(timeout=30)
        return [tuple(line.split(" ", 1)) for line in out.splitlines() if line]


@pytest.fixture
def agent_id() -> str:
    return f"site-{uuid.uuid4().hex[:6]}"


def test_commands_are_acked_with_their_correlation_id(stack, agent_id):
    seen = []

    def handler(cmd):
        seen.append(cmd)
        if cmd.action == "stop_camera" and cmd.camera_id == "nope":
            raise CommandError("unknown camera 'nope'")
        return {"camera_id": getattr(cmd, "camera_id", None), "fps": getattr(cmd, "fps", None)}

    cp = ControlPlane(control_config(stack), agent_id, handler)
    cp.start()
    try:
        assert cp.connected
        acks = Sub(stack, f"edgesight/{agent_id}/ack", 4)
        base = f"edgesight/{agent_id}/cmd"
        pub(stack, base, json.dumps({"command_id": "c-1", "action": "set_fps", "camera_id": "cam-1", "fps": 2.5}))
        pub(stack, base, json.dumps({"command_id": "c-2", "action": "set_fps", "camera_id": "cam-1", "fps": -1}))
        pub(stack, base, "{this is not json")
        pub(stack, base, json.dumps({"command_id": "c-4", "action": "stop_camera", "camera_id": "nope"}))
        got = {}
        for _topic, payload in acks.messages():
            ack = decode_ack(payload)
            got[ack.command_id] = ack
        assert (
            got["c-1"].ok
            and got["c-1"].result == {"camera_id": "cam-1", "fps": 2.5}
            and got["c-1"].agent_id == agent_id
        )
        assert not got["c-2"].ok and "'fps'" in got["c-2"].error and "greater than 0" in got["c-2"].error
        assert not got["unknown"].ok and "not valid JSON" in got["unknown"].error
        assert not got["c-4"].ok and got["c-4"].error == "unknown camera 'nope'"
        assert [c.command_id for c in seen] == ["c-1", "c-4"]  # invalid commands never reach the handler
        # Still alive and serving after the bad ones.
        acks = Sub(stack, f"edgesight/{agent_id}/ack", 1)
        pub(stack, base, json.dumps({"command_id": "c-5", "action": "snapshot", "camera_id": "cam-1"}))
        assert decode_ack(acks.messages()[0][1]).ok
    finally:
        cp.stop()


def test_handler_crash_is_an_error_ack_not_a_dead_agent(stack, agent_id):
    cp = ControlPlane(control_config(stack), agent_id, lambda cmd: 1 / 0)
    cp.start()
    try:
        acks = Sub(stack, f"edgesight/{agent_id}/ack", 2)
        for i in range(2):
            pub(
                stack,
                f"edgesight/{agent_id}/cmd",
                json.dumps({"command_id": f"x{i}", "action": "restart_camera", "camera_id": "cam-1"}),
            )
        msgs = [decode_ack(p) for _, p in acks.messages()]
        assert [m.command_id for m in msgs] == ["x0", "x1"]
        assert all(not m.ok and "ZeroDivisionError" in m.error for m in msgs)
    finally:
        cp.stop()


def test_retained_status_and_last_will(stack, agent_id, tmp_path):
    """A child process runs the control plane and publishes retained status; SIGKILL -> last will says offline."""
    mq = stack.config.mqtt
    script = tmp_path / "agent.py"
    script.write_text(
        textwrap.dedent(f"""
        import time, sys
        from datetime import datetime, timezone
        from edge_agent.control.mqtt import ControlPlane
        from edge_agent.control.settings import ControlConfig
        from edgesight.wire import AgentStatus, CameraStatus
        cfg = ControlConfig(**{mqtt_login(mq, plain=True)!r}, keepalive_s=5)
        cp = ControlPlane(cfg, {agent_id!r}, lambda c: {{}})
        cp.start()
        now = datetime.now(timezone.utc)
        cp.publish_camera_status(CameraStatus(agent_id={agent_id!r}, camera_id="cam-1", ts=now, state="streaming", fps=10))
        cp.publish_status(AgentStatus(agent_id={agent_id!r}, ts=now, state="running", version="t"))
        print("ready", flush=True)
        time.sleep(600)
    """)
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        # Retained: a subscriber that arrives later still gets the current status.
        msgs = Sub(stack, f"edgesight/{agent_id}/#", 2).messages()
        by_topic = {t: decode_status(p) for t, p in msgs}
        assert by_topic[f"edgesight/{agent_id}/status"].state == "running"
        assert by_topic[f"edgesight/{agent_id}/camera/cam-1/status"].state == "streaming"
        proc.kill()
        proc.wait(10)
        # The broker publishes the last will (retained): the agent is now offline.
        deadline = time.monotonic() + 20
        state = None
        while time.monotonic() < deadline and state != "offline":
            ((_, payload),) = Sub(stack, f"edgesight/{agent_id}/status", 1, timeout=5).messages() or [("", "{}")]
            state = json.loads(payload).get("state")
            time.sleep(0.5)
        assert state == "offline"
    finally:
        proc.kill()


def test_clean_stop_publishes_final_status_not_the_will(stack, agent_id):
    cp = ControlPlane(control_config(stack), agent_id, lambda c: {})
    cp.start()
    cp.stop(final_status=AgentStatus(agent_id=agent_id, ts=datetime.now(timezone.utc), state="stopping", version="t"))
    time.sleep(0.5)
    ((_, payload),) = Sub(stack, f"edgesight/{agent_id}/status", 1).messages()
    assert decode_status(payload).state == "stopping"


def test_config_validation():
    with pytest.raises(ValueError, match="username is missing"):
        ControlConfig(password="x")
    with pytest.raises(ValueError, match="tls is false"):
        ControlConfig(ca_file="/tmp/ca.pem")
