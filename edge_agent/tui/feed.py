"""The TUI's MQTT client: feeds :class:`~edge_agent.tui.state.SiteState` and sends commands (paho-mqtt 2).

Subscribes, under the site's topic root, to every agent's retained status, its cameras' retained status, its
acks and its cameras' event batches; a camera's (retained, larger) preview topic only while the TUI shows that
camera (:meth:`MqttFeed.watch_preview`). paho's network thread reconnects by itself (1 s to 30 s backoff) and
re-subscribes on every connect; the state is told each connection change. Commands are checked against the wire
contract before they are sent (a :class:`~edgesight.wire.WireError` names the field) and carry a fresh
``command_id`` the ack is matched by.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

from edge_agent.control.mqtt import mqtt_client
from edgesight.limits import clip
from edgesight.log import get_logger
from edgesight.wire import decode_command

from .settings import OperatorConfig
from .state import Command, SiteState, new_command_id


class NotConnected(RuntimeError):
    """A command was not sent: the TUI is not connected to the broker."""


class MqttFeed:
    """One paho client for the TUI: ``start()``, then ``send()``; ``stop()`` disconnects."""

    def __init__(self, config: OperatorConfig, state: SiteState):
        self.config = config
        self.state = state
        self.root = config.topic_root.rstrip("/")
        self.broker = f"{config.host}:{config.port}"
        self.log = get_logger("tui-feed")
        self._lock = threading.Lock()
        self._preview: str | None = None
        self._client = mqtt_client(config, f"edgesight-tui-{uuid.uuid4().hex[:8]}")
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> MqttFeed:
        """Connect in the background (never blocks; paho retries until the broker answers)."""
        self.state.set_connection(False, self.broker, "connecting")
        self._client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
        self._client.loop_start()
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def subscriptions(self) -> list[str]:
        r = self.root
        return [f"{r}/+/status", f"{r}/+/camera/+/status", f"{r}/+/ack", f"{r}/+/camera/+/events"]

    # ------------------------------------------------------------------ commands
    def send(self, agent_id: str, action: str, camera_id: str | None = None, **fields: Any) -> Command:
        """Check and send one command; returns it (its ack appears in the state under its ``command_id``).
        Raises :class:`~edgesight.wire.WireError` (the field at fault) or :class:`NotConnected`."""
        if not self._client.is_connected():
            raise NotConnected(f"not connected to the MQTT broker {self.broker}; command not sent")
        command_id = new_command_id()
        doc: dict[str, Any] = {"command_id": command_id, "action": action, "agent_id": agent_id, **fields}
        if camera_id is not None:
            doc["camera_id"] = camera_id
        decode_command(doc)  # the contract's own check: a WireError names the field before anything is sent
        cmd = self.state.new_command(agent_id, action, camera_id, command_id)
        self._client.publish(f"{self.root}/{agent_id}/cmd", json.dumps(doc), qos=1)
        self.log.info(
            f"sent {action}", extra={"command_id": cmd.command_id, "agent_id": agent_id, "camera_id": camera_id}
        )
        return cmd

    def watch_preview(self, agent_id: str | None, camera_id: str | None = None) -> None:
        """Receive the preview of this camera only (None: of none)."""
        topic = f"{self.root}/{agent_id}/camera/{camera_id}/preview" if agent_id and camera_id else None
        with self._lock:
            old, self._preview = self._preview, topic
        if old == topic:
            return
        if old:
            self._client.unsubscribe(old)
        if topic and self._client.is_connected():
            self._client.subscribe(topic, qos=0)

    # ------------------------------------------------------------------ paho callbacks (network thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            self.log.error(f"MQTT connection refused: {reason_code}")
            self.state.set_connection(False, self.broker, f"refused: {reason_code}")
            return
        topics = [(t, 1) for t in self.subscriptions]
        with self._lock:
            if self._preview:
                topics.append((self._preview, 0))
        client.subscribe(topics)
        self.log.info("MQTT connected", extra={"broker": self.broker})
        self.state.set_connection(True, self.broker)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        self.log.warning(f"MQTT disconnected ({reason_code}); reconnecting")
        self.state.set_connection(False, self.broker, clip(str(reason_code), 100))

    def _on_message(self, client, userdata, msg) -> None:
        try:
            self.state.ingest(msg.topic, bytes(msg.payload))
        except Exception as e:  # noqa: BLE001 - a listener's bug must not end paho's network thread
            self.log.error(f"message on {clip(msg.topic, 120)} not taken: {clip(f'{type(e).__name__}: {e}')}")
