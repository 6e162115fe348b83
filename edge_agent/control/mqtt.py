"""The MQTT control plane of an agent (paho-mqtt 2).

Topics (see :func:`edgesight.wire.topics.mqtt_topics`)::

    edgesight/<agent>/cmd                        in   control commands (QoS 1)
    edgesight/<agent>/ack                        out  one acknowledgement per command, same command_id
    edgesight/<agent>/status                     out  retained AgentStatus; the last will sets state=offline
    edgesight/<agent>/camera/<camera>/status     out  retained CameraStatus

Commands are decoded with the wire contract; an invalid one is answered with an
``ok: false`` ack naming the field at fault. Valid ones run on a worker thread
(never on paho's network thread, so a slow command cannot stall keep-alives),
one at a time in arrival order; the handler's return value becomes the ack's
``result`` and any exception its ``error``. Nothing a command does can crash
the agent.
"""

from __future__ import annotations

import json
import queue
import socket
import ssl
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import paho.mqtt.client as mqtt

from edgesight import __version__
from edgesight.log import get_logger
from edgesight.metrics import counter, gauge
from edgesight.wire import AgentStatus, CameraStatus, ControlAck, WireError, decode_command, dumps
from edgesight.wire.topics import mqtt_topics

from .settings import ControlConfig

COMMANDS = counter(
    "control_commands_total", "Control commands received, by action and outcome", ["agent", "action", "outcome"]
)
CONNECTED = gauge("control_connected", "1 while the agent is connected to its MQTT broker", ["agent"])


class CommandError(Exception):
    """Raised by a command handler: the command was understood but cannot be carried out."""


Handler = Callable[[Any], dict[str, Any] | None]


class ControlPlane:
    """Connects, subscribes to commands, answers each with an ack, publishes retained status."""

    def __init__(self, config: ControlConfig, agent_id: str, handler: Handler):
        self.config = config
        self.agent_id = agent_id
        self.handler = handler
        self.topics = mqtt_topics(agent_id, config.topic_root)
        self.log = get_logger("control", agent_id=agent_id)
        self._queue: queue.Queue = queue.Queue(maxsize=1000)
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._worker = threading.Thread(target=self._work, name=f"control-{agent_id}", daemon=True)
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"edgesight-agent-{agent_id}-{uuid.uuid4().hex[:6]}",
            clean_session=True,
        )
        if config.username:
            self._client.username_pw_set(
                config.username, config.password.get_secret_value() if config.password else None
            )
        if config.tls:
            self._client.tls_set(ca_certs=str(config.ca_file) if config.ca_file else None, cert_reqs=ssl.CERT_REQUIRED)
        will = {
            "schema": "edgesight.status/1",
            "agent_id": agent_id,
            "state": "offline",
            "version": __version__,
            "hostname": socket.gethostname(),
            "ts": _now().isoformat().replace("+00:00", "Z"),
        }
        self._client.will_set(self.topics["status"], json.dumps(will), qos=1, retain=True)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self.commands_handled = 0

    # -- lifecycle --
    def start(self, wait_s: float = 10.0) -> None:
        self._worker.start()
        try:
            self._client.connect(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
        except OSError as e:
            # The broker may come later: paho keeps retrying in its loop. Say so plainly.
            self.log.warning(
                f"MQTT broker {self.config.host}:{self.config.port} unreachable ({e}); retrying in background"
            )
            self._client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
        self._client.loop_start()
        if wait_s and not self._connected.wait(wait_s):
            self.log.warning("MQTT not connected yet; commands will be accepted once it is")

    def stop(self, final_status: AgentStatus | None = None) -> None:
        """Publish a final (retained) status, then disconnect cleanly (no last will is sent)."""
        self._stop.set()
        if final_status is not None and self._connected.is_set():
            info = self._client.publish(self.topics["status"], dumps(final_status), qos=1, retain=True)
            try:
                info.wait_for_publish(3)
            except (RuntimeError, ValueError):
                pass
        self._client.disconnect()
        self._client.loop_stop()
        self._queue.put(None)
        self._worker.join(5)
        CONNECTED.labels(self.agent_id).set(0)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # -- publishing --
    def publish_status(self, status: AgentStatus) -> None:
        self._client.publish(self.topics["status"], dumps(status), qos=1, retain=True)

    def publish_camera_status(self, status: CameraStatus) -> None:
        topic = self.topics["camera_status"].format(camera_id=status.camera_id)
        self._client.publish(topic, dumps(status), qos=1, retain=True)

    def clear_camera_status(self, camera_id: str) -> None:
        """Remove a camera's retained status (camera removed): an empty retained message deletes it."""
        self._client.publish(self.topics["camera_status"].format(camera_id=camera_id), b"", qos=1, retain=True)

    # -- paho callbacks (network thread: keep them short) --
    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            self.log.error(f"MQTT connection refused: {reason_code}")
            return
        client.subscribe(self.topics["command"], qos=1)
        self._connected.set()
        CONNECTED.labels(self.agent_id).set(1)
        self.log.info(
            "MQTT connected",
            extra={"broker": f"{self.config.host}:{self.config.port}", "command_topic": self.topics["command"]},
        )

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        self._connected.clear()
        CONNECTED.labels(self.agent_id).set(0)
        if not self._stop.is_set():
            self.log.warning(f"MQTT disconnected ({reason_code}); reconnecting")

    def _on_message(self, client, userdata, msg) -> None:
        try:
            self._queue.put_nowait(msg.payload)
        except queue.Full:
            self._ack(_peek_id(msg.payload), None, ok=False, error="agent busy: command queue full, try again")

    # -- command execution (worker thread) --
    def _work(self) -> None:
        while True:
            payload = self._queue.get()
            if payload is None:
                return
            self._execute(payload)

    def _execute(self, payload: bytes) -> None:
        try:
            cmd = decode_command(payload)
        except WireError as e:
            COMMANDS.labels(self.agent_id, _peek(payload, "action") or "invalid", "rejected").inc()
            self.log.warning(f"rejected command: {e}")
            self._ack(_peek_id(payload), _peek(payload, "action"), ok=False, error=str(e))
            return
        if cmd.agent_id is not None and cmd.agent_id != self.agent_id:
            COMMANDS.labels(self.agent_id, cmd.action, "rejected").inc()
            self._ack(
                cmd.command_id,
                cmd.action,
                ok=False,
                error=f"command addressed to agent {cmd.agent_id!r}, this is {self.agent_id!r}",
            )
            return
        try:
            result = self.handler(cmd) or {}
        except CommandError as e:
            COMMANDS.labels(self.agent_id, cmd.action, "failed").inc()
            self.log.warning(f"command {cmd.action} failed: {e}", extra={"command_id": cmd.command_id})
            self._ack(cmd.command_id, cmd.action, ok=False, error=str(e))
            return
        except Exception as e:
            COMMANDS.labels(self.agent_id, cmd.action, "failed").inc()
            self.log.exception(f"command {cmd.action} raised", extra={"command_id": cmd.command_id})
            self._ack(cmd.command_id, cmd.action, ok=False, error=f"internal error: {type(e).__name__}: {e}")
            return
        COMMANDS.labels(self.agent_id, cmd.action, "ok").inc()
        self.commands_handled += 1
        self.log.info(f"command {cmd.action} done", extra={"command_id": cmd.command_id, "result": result})
        self._ack(cmd.command_id, cmd.action, ok=True, result=result)

    def _ack(
        self, command_id: str, action: str | None, *, ok: bool, result: dict | None = None, error: str | None = None
    ) -> None:
        ack = ControlAck(
            command_id=command_id,
            agent_id=self.agent_id,
            action=action,
            ok=ok,
            result=result or {},
            error=error,
            ts=_now(),
        )
        self._client.publish(self.topics["ack"], dumps(ack), qos=1)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _peek(payload: bytes, key: str) -> str | None:
    try:
        v = json.loads(payload).get(key)
        return str(v)[:128] if v not in (None, "") else None
    except Exception:  # noqa: BLE001 - best effort on an invalid payload
        return None


def _peek_id(payload: bytes) -> str:
    return _peek(payload, "command_id") or "unknown"
