"""The MQTT control plane of an agent (paho-mqtt 2).

Topics (see :func:`edgesight.wire.topics.mqtt_topics`)::

    edgesight/<agent>/cmd                        in   control commands (QoS 1)
    edgesight/<agent>/ack                        out  one acknowledgement per command, same command_id
    edgesight/<agent>/status                     out  retained AgentStatus; the last will sets state=offline
    edgesight/<agent>/camera/<camera>/status     out  retained CameraStatus
    edgesight/<agent>/camera/<camera>/preview    out  retained CameraPreview (the TUI feed, QoS 0)
    edgesight/<agent>/camera/<camera>/events     out  CameraEvents batches (the TUI feed, QoS 0, not retained)

Every payload gets exactly one ack. A payload over :data:`~edgesight.limits.COMMAND_MAX_BYTES` is
refused before any parsing; the rest is decoded with the wire contract (bounded: size, depth,
integer digits), and an invalid one is answered with an ``ok: false`` ack naming the field at
fault. The ack carries the payload's top-level ``command_id`` when one can be read, ``unknown``
otherwise. Valid commands run on a worker thread (never on paho's network thread, so a slow
command cannot stall keep-alives), one at a time in arrival order, from a bounded queue
(``control.command_queue``): when it is full a command is answered ``busy`` at once. The handler's
return value becomes the ack's ``result`` and any exception its ``error``. Nothing a command
does can stop the worker, and :meth:`ControlPlane.stop` returns within its timeout. Input echoed
into acks and logs is clipped (:func:`edgesight.limits.clip`).
"""

from __future__ import annotations

import json
import queue
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from json.decoder import scanstring  # type: ignore[attr-defined]  # the C string scanner json uses
from typing import Any

import paho.mqtt.client as mqtt

from edgesight import __version__
from edgesight.limits import COMMAND_MAX_BYTES, clip
from edgesight.log import get_logger
from edgesight.metrics import counter, gauge
from edgesight.mqtt import MqttConnectionConfig
from edgesight.wire import AgentStatus, CameraStatus, ControlAck, decode_command, dumps
from edgesight.wire.models import ACTIONS
from edgesight.wire.topics import mqtt_topics

from .settings import ControlConfig

COMMANDS = counter(
    "control_commands_total", "Control commands received, by action and outcome", ["agent", "action", "outcome"]
)
CONNECTED = gauge("control_connected", "1 while the agent is connected to its MQTT broker", ["agent"])

PEEK_MAX_BYTES = 4096
"""Of a payload over ``COMMAND_MAX_BYTES``, only this prefix is scanned for its ``command_id``."""
UNKNOWN_ID = "unknown"
"""The ack's ``command_id`` when the payload's own cannot be read."""
ACK_ID_MAX_CHARS = 128  # ControlAck.command_id's bound
STOPPING = "agent stopping; command not run"
ERROR_MAX_CHARS = 1024
"""An ack's ``error`` and a log line's message are cut to this (what they echo is clipped shorter by the codec)."""


class CommandError(Exception):
    """Raised by a command handler: the command was understood but cannot be carried out."""


Handler = Callable[[Any], dict[str, Any] | None]
_STOP = object()  # wakes the worker on stop


class ControlPlane:
    """Connects, subscribes to commands, answers each with an ack, publishes retained status."""

    def __init__(self, config: ControlConfig, agent_id: str, handler: Handler):
        self.config = config
        self.agent_id = agent_id
        self.handler = handler
        self.topics = mqtt_topics(agent_id, config.topic_root)
        self.log = get_logger("control", agent_id=agent_id)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=config.command_queue)
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._worker = threading.Thread(target=self._work, name=f"control-{agent_id}", daemon=True)
        self._client = mqtt_client(config, f"edgesight-agent-{agent_id}-{uuid.uuid4().hex[:6]}")
        will = {
            "schema": "edgesight.status/1",
            "agent_id": agent_id,
            "state": "offline",
            "version": __version__,
            "hostname": socket.gethostname(),
            "ts": _now().isoformat().replace("+00:00", "Z"),
        }
        self._client.will_set(self.topics["status"], json.dumps(will), qos=1, retain=True)
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

    def stop(self, final_status: AgentStatus | None = None, timeout: float = 5.0) -> None:
        """Finish the running command (up to half of ``timeout``), answer the queued ones ``ok: false``
        (agent stopping), publish a final (retained) status, then disconnect cleanly (no last will is
        sent). Returns within ``timeout`` seconds, whatever a handler does."""
        if self._stop.is_set():
            return
        deadline = time.monotonic() + timeout
        self._stop.set()
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:
            pass  # the worker checks the stop flag after each command
        if self._worker.is_alive():
            self._worker.join(timeout / 2)
        last = None
        while True:
            try:
                payload = self._queue.get_nowait()
            except queue.Empty:
                break
            if payload is not _STOP:
                last = self._safe_ack(_recover_id(payload), _known_action(payload), ok=False, error=STOPPING)
        if final_status is not None and self._connected.is_set():
            last = self._client.publish(self.topics["status"], dumps(final_status), qos=1, retain=True)
        if last is not None and self._connected.is_set():
            try:
                last.wait_for_publish(max(0.1, min(3.0, deadline - time.monotonic())))
            except (RuntimeError, ValueError):
                pass
        self._client.disconnect()
        self._client.loop_stop()
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
        """Remove a camera's retained status and preview (camera removed): an empty retained message deletes it."""
        self._client.publish(self.topics["camera_status"].format(camera_id=camera_id), b"", qos=1, retain=True)
        self._client.publish(self.topics["camera_preview"].format(camera_id=camera_id), b"", qos=1, retain=True)

    def publish_preview(self, camera_id: str, payload: bytes) -> None:
        """A camera's preview (retained, QoS 0: paho keeps no copy for redelivery; the feed sends only while connected)."""
        self._client.publish(self.topics["camera_preview"].format(camera_id=camera_id), payload, qos=0, retain=True)

    def publish_events(self, camera_id: str, payload: bytes) -> None:
        """A batch of a camera's live events (QoS 0, not retained)."""
        self._client.publish(self.topics["camera_events"].format(camera_id=camera_id), payload, qos=0)

    # -- paho callbacks (network thread: keep them short, never block) --
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
        payload = bytes(msg.payload)
        if len(payload) > COMMAND_MAX_BYTES:  # refused before any parsing
            self._refuse(payload, f"payload of {len(payload)} bytes; at most {COMMAND_MAX_BYTES} (COMMAND_MAX_BYTES)")
        elif self._stop.is_set():
            self._refuse(payload, STOPPING)
        else:
            try:
                self._queue.put_nowait(payload)
            except queue.Full:
                self._refuse(
                    payload,
                    f"agent busy: command queue full ({self.config.command_queue} waiting, "
                    "control.command_queue), try again",
                )

    def _refuse(self, payload: bytes, error: str) -> None:
        action = _known_action(payload)
        COMMANDS.labels(self.agent_id, action or "invalid", "rejected").inc()
        self.log.warning(f"refused command: {clip(error, ERROR_MAX_CHARS)}")
        self._safe_ack(_recover_id(payload), action, ok=False, error=error)

    # -- command execution (worker thread) --
    def _work(self) -> None:
        while not self._stop.is_set():
            payload = self._queue.get()
            if payload is _STOP:
                return
            try:
                self._execute(payload)
            except BaseException as e:  # nothing a command does may end this loop
                self.log.error(f"command not answered: {clip(f'{type(e).__name__}: {e}')}", exc_info=True)

    def _execute(self, payload: bytes) -> None:
        try:
            cmd = decode_command(payload)
        except Exception as e:  # noqa: BLE001 - WireError, or anything the parser raised: the sender is told
            self._refuse(payload, f"{e}" if isinstance(e, ValueError) else f"invalid command: {type(e).__name__}")
            return
        if cmd.agent_id is not None and cmd.agent_id != self.agent_id:
            COMMANDS.labels(self.agent_id, cmd.action, "rejected").inc()
            self._safe_ack(
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
            self.log.warning(
                f"command {cmd.action} failed: {clip(str(e), ERROR_MAX_CHARS)}", extra={"command_id": cmd.command_id}
            )
            self._safe_ack(cmd.command_id, cmd.action, ok=False, error=str(e))
            return
        except Exception as e:  # a handler bug is this command's error, not the agent's end
            COMMANDS.labels(self.agent_id, cmd.action, "failed").inc()
            self.log.error(
                f"command {cmd.action} raised {clip(f'{type(e).__name__}: {e}')}",
                extra={"command_id": cmd.command_id},
                exc_info=True,
            )
            self._safe_ack(cmd.command_id, cmd.action, ok=False, error=f"internal error: {type(e).__name__}: {e}")
            return
        COMMANDS.labels(self.agent_id, cmd.action, "ok").inc()
        self.commands_handled += 1
        self.log.info(f"command {cmd.action} done", extra={"command_id": cmd.command_id, "result": result})
        self._safe_ack(cmd.command_id, cmd.action, ok=True, result=result)

    def _safe_ack(
        self, command_id: str, action: str | None, *, ok: bool, result: dict | None = None, error: str | None = None
    ) -> mqtt.MQTTMessageInfo | None:
        """Publish one ack (``error`` clipped); a failure to publish is logged, never raised."""
        try:
            ack = ControlAck(
                command_id=command_id,
                agent_id=self.agent_id,
                action=action,
                ok=ok,
                result=result or {},
                error=clip(error, ERROR_MAX_CHARS) if error is not None else None,
                ts=_now(),
            )
            return self._client.publish(self.topics["ack"], dumps(ack), qos=1)
        except Exception as e:  # noqa: BLE001 - e.g. a result that does not serialise
            self.log.error(f"ack for command {clip(command_id, 64)} not sent: {clip(f'{type(e).__name__}: {e}')}")
            return None


def mqtt_client(config: MqttConnectionConfig, client_id: str) -> mqtt.Client:
    """A paho client (MQTT 3.1.1, clean session) with ``config``'s login and TLS (the CA to trust, an optional
    client certificate), reconnecting 1-30 s apart: the agent's control plane and the operator's TUI."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    if config.username:
        client.username_pw_set(config.username, config.password.get_secret_value() if config.password else None)
    if config.tls:
        client.tls_set_context(config.ssl_context())
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client


def _now() -> datetime:
    return datetime.now(timezone.utc)


# ---- reading a command_id out of a payload that cannot be decoded (linear, no recursion) ----

_WS = re.compile(r"[ \t\n\r]*")
_BRACKET_OR_QUOTE = re.compile(r'["\[\]{}]')
_SCALAR_END = re.compile(r"[,}\]\s]")


def _skip_ws(text: str, i: int) -> int:
    m = _WS.match(text, i)
    return m.end() if m else i


def _skip_container(text: str, i: int) -> int:
    """Index after the array/object opening at ``i``; ValueError when the text ends first."""
    depth = 0
    while True:
        m = _BRACKET_OR_QUOTE.search(text, i)
        if m is None:
            raise ValueError("cut off")
        if m.group() == '"':
            _, i = scanstring(text, m.end())
            continue
        depth += 1 if m.group() in "[{" else -1
        i = m.end()
        if depth == 0:
            return i


def _top_level_string(text: str, key: str) -> str | None:
    """The string value of ``key`` in the top-level JSON object of ``text`` (the last one, as ``json.loads``
    keeps), read whatever the other values hold and wherever the text is cut off; None when there is none."""
    found: str | None = None
    i = _skip_ws(text, 0)
    if text[i : i + 1] != "{":
        return None
    i += 1
    try:
        while True:
            i = _skip_ws(text, i)
            if text[i : i + 1] != '"':
                return found
            k, i = scanstring(text, i + 1)
            i = _skip_ws(text, i)
            if text[i : i + 1] != ":":
                return found
            i = _skip_ws(text, i + 1)
            c = text[i : i + 1]
            value: str | None = None
            if c == '"':
                value, i = scanstring(text, i + 1)
            elif c in ("{", "["):
                i = _skip_container(text, i)
            else:
                m = _SCALAR_END.search(text, i)
                i = m.start() if m else len(text)
            if k == key:
                found = value
            i = _skip_ws(text, i)
            if text[i : i + 1] != ",":
                return found
            i += 1
    except ValueError:  # a malformed string or the text ends inside a value
        return found


def _peek(payload: bytes, key: str) -> str | None:
    data = payload if len(payload) <= COMMAND_MAX_BYTES else payload[:PEEK_MAX_BYTES]
    return _top_level_string(data.decode("utf-8", errors="replace"), key)


def _recover_id(payload: bytes) -> str:
    """The payload's top-level ``command_id`` when it is a usable one, else :data:`UNKNOWN_ID`."""
    cid = _peek(payload, "command_id")
    return cid if cid and len(cid) <= ACK_ID_MAX_CHARS else UNKNOWN_ID


def _known_action(payload: bytes) -> str | None:
    """The payload's ``action`` when it is one of the contract's (so metrics labels stay bounded)."""
    action = _peek(payload, "action")
    return action if action in ACTIONS else None
