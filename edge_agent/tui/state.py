"""What the agents of a site report, as the TUI knows it: no Textual, no MQTT client.

:class:`SiteState` is fed ``(topic, payload)`` pairs from the control plane (:mod:`edge_agent.tui.feed` does it
from paho's network thread; tests call :meth:`SiteState.ingest` directly) and tells its listeners what changed.
Everything it keeps is bounded: payloads are parsed with the wire contract's bounded decoders (size, depth),
agents and cameras are capped, events, samples and acks live in ring buffers. A message that does not satisfy
the contract (a malformed retained status, say) is counted and kept in a short list, never raised.

Readers get copies taken under the state's lock, so the UI thread never iterates what the network thread
mutates.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from edgesight.limits import RECORD_MAX_BYTES, clip
from edgesight.wire import (
    AgentStatus,
    CameraPreview,
    CameraStatus,
    FeedEvent,
    WireError,
    decode_ack,
    decode_events,
    decode_preview,
    decode_status,
)
from edgesight.wire.models import EVENTS_MAX_BYTES, ID_PATTERN, PREVIEW_MAX_BYTES

MAX_AGENTS: Final = 64
"""Agents the TUI keeps; status topics of further agents are counted as dropped."""
MAX_CAMERAS: Final = 256
"""Cameras kept per agent (an agent's ``control.max_cameras`` defaults to 64)."""
EVENTS_KEPT: Final = 200
"""Recent events kept per camera."""
SAMPLES_KEPT: Final = 600
"""fps/latency samples kept per camera (one per status message; heartbeats come every few seconds)."""
HISTORY_S: Final = 600.0
"""The sparklines' window: samples older than this (relative to the newest) are not shown."""
ACKS_KEPT: Final = 100
"""Commands sent and acks received that are remembered (oldest forgotten first)."""
MALFORMED_KEPT: Final = 20
"""Malformed messages whose topic and error are kept for display (all are counted)."""
STATUS_MAX_BYTES: Final = RECORD_MAX_BYTES
"""An agent or camera status or an ack (the wire contract's record bound). Previews and event batches have
their own bounds in the contract (``PREVIEW_MAX_BYTES``, ``EVENTS_MAX_BYTES``)."""

_ID = re.compile(ID_PATTERN)
# The field an agent's error names: the wire contract's "field 'fps'" (WireError), or a command handler's
# "invalid camera: target_fps: ..." (edge_agent.commands).
_FIELD = re.compile(r"field '([^']{1,200})'|^invalid [a-z ]{1,40}: ([A-Za-z0-9_.\[\]-]{1,200}): ")


def new_command_id() -> str:
    return f"tui-{uuid.uuid4().hex[:12]}"


ChangeKind = Literal["connection", "agents", "agent", "camera", "events", "preview", "ack", "malformed"]


@dataclass(frozen=True)
class Change:
    """What changed: listeners refresh what shows it."""

    kind: ChangeKind
    agent_id: str | None = None
    camera_id: str | None = None


@dataclass(frozen=True)
class Connection:
    connected: bool = False
    broker: str = ""
    error: str = ""
    since: float = 0.0
    connects: int = 0

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)


@dataclass(frozen=True)
class Sample:
    """One point of a camera's sparklines (agent clock, seconds since the epoch)."""

    ts: float
    fps: float
    latency_ms: float | None


@dataclass(frozen=True)
class Malformed:
    topic: str
    error: str
    received: float


@dataclass(frozen=True)
class Command:
    """A command this TUI sent; ``ack`` is filled in when the agent answers."""

    command_id: str
    agent_id: str
    action: str
    camera_id: str | None
    sent: float
    ack: AckView | None = None


@dataclass(frozen=True)
class AckView:
    command_id: str
    agent_id: str
    action: str | None
    ok: bool
    result: dict[str, Any]
    error: str | None
    field: str | None
    """The field at fault, when the agent's error names one (``field 'fps'``)."""
    received: float

    def summary(self) -> str:
        what = self.action or "command"
        if self.ok:
            detail = ", ".join(f"{k}={clip(str(v), 40)}" for k, v in list(self.result.items())[:4])
            return f"ok: {what}" + (f" ({detail})" if detail else "")
        where = f" [field {self.field}]" if self.field else ""
        return f"error: {what}{where}: {clip(self.error or 'refused', 300)}"


@dataclass
class _Camera:
    status: CameraStatus
    samples: deque[Sample] = field(default_factory=lambda: deque(maxlen=SAMPLES_KEPT))
    events: deque[FeedEvent] = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))
    events_dropped: int = 0
    preview: CameraPreview | None = None


@dataclass
class _Agent:
    agent_id: str
    status: AgentStatus | None = None
    cameras: dict[str, _Camera] = field(default_factory=dict)
    last_seen: float = 0.0
    cameras_dropped: int = 0


@dataclass(frozen=True)
class AgentSnapshot:
    """An agent as last reported: its status (None until its first one) and its cameras, by id."""

    agent_id: str
    status: AgentStatus | None
    cameras: tuple[CameraStatus, ...]
    last_seen: float
    cameras_dropped: int

    @property
    def online(self) -> bool:
        return self.status is not None and self.status.state != "offline"

    @property
    def state(self) -> str:
        return self.status.state if self.status else "unknown"


Listener = Callable[[Change], None]


class SiteState:
    """The agents of one site (one topic root), fed by :meth:`ingest`; thread-safe."""

    def __init__(self, topic_root: str = "edgesight", *, clock: Callable[[], float] = time.time):
        self.topic_root = topic_root.rstrip("/")
        self._prefix = self.topic_root + "/"
        self._clock = clock
        self._lock = threading.RLock()
        self._agents: dict[str, _Agent] = {}
        self._commands: OrderedDict[str, Command] = OrderedDict()
        self._last_ack: str | None = None
        self._malformed: deque[Malformed] = deque(maxlen=MALFORMED_KEPT)
        self._listeners: list[Listener] = []
        self.connection = Connection()
        self.malformed_count = 0
        self.agents_dropped = 0
        self.messages = 0

    # ------------------------------------------------------------------ listeners
    def subscribe(self, listener: Listener) -> None:
        """``listener(change)`` is called after each change, on the thread that made it (keep it short)."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _notify(self, change: Change) -> None:
        for listener in list(self._listeners):
            listener(change)

    # ------------------------------------------------------------------ connection
    def set_connection(self, connected: bool, broker: str = "", error: str = "") -> None:
        old = self.connection
        self.connection = Connection(
            connected=connected,
            broker=broker or old.broker,
            error=clip(error, 200),
            since=self._clock(),
            connects=old.connects + (1 if connected and not old.connected else 0),
        )
        self._notify(Change("connection"))

    # ------------------------------------------------------------------ commands
    def new_command(self, agent_id: str, action: str, camera_id: str | None = None, command_id: str = "") -> Command:
        """Record a command about to be sent (a fresh ``command_id`` unless given); its ack is matched by it."""
        cmd = Command(
            command_id=command_id or new_command_id(),
            agent_id=agent_id,
            action=action,
            camera_id=camera_id,
            sent=self._clock(),
        )
        with self._lock:
            self._commands[cmd.command_id] = cmd
            while len(self._commands) > ACKS_KEPT:
                self._commands.popitem(last=False)
        return cmd

    def command(self, command_id: str) -> Command | None:
        with self._lock:
            return self._commands.get(command_id)

    def last_ack(self) -> AckView | None:
        with self._lock:
            cmd = self._commands.get(self._last_ack) if self._last_ack else None
            return cmd.ack if cmd else None

    # ------------------------------------------------------------------ reading
    def agent_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._agents)

    def agent(self, agent_id: str) -> AgentSnapshot | None:
        with self._lock:
            a = self._agents.get(agent_id)
            if a is None:
                return None
            cams = tuple(a.cameras[c].status for c in sorted(a.cameras))
            return AgentSnapshot(a.agent_id, a.status, cams, a.last_seen, a.cameras_dropped)

    def camera(self, agent_id: str, camera_id: str) -> CameraStatus | None:
        with self._lock:
            cam = self._camera(agent_id, camera_id)
            return cam.status if cam else None

    def samples(self, agent_id: str, camera_id: str) -> list[Sample]:
        """The camera's samples of the last :data:`HISTORY_S` seconds (before its newest), oldest first."""
        with self._lock:
            cam = self._camera(agent_id, camera_id)
            if cam is None or not cam.samples:
                return []
            start = cam.samples[-1].ts - HISTORY_S
            return [s for s in cam.samples if s.ts >= start]

    def events(self, agent_id: str, camera_id: str) -> tuple[list[FeedEvent], int]:
        """The camera's recent events (oldest first) and how many the agent dropped from its batches."""
        with self._lock:
            cam = self._camera(agent_id, camera_id)
            return (list(cam.events), cam.events_dropped) if cam else ([], 0)

    def preview(self, agent_id: str, camera_id: str) -> CameraPreview | None:
        with self._lock:
            cam = self._camera(agent_id, camera_id)
            return cam.preview if cam else None

    def malformed(self) -> list[Malformed]:
        with self._lock:
            return list(self._malformed)

    def _camera(self, agent_id: str, camera_id: str) -> _Camera | None:
        a = self._agents.get(agent_id)
        return a.cameras.get(camera_id) if a else None

    # ------------------------------------------------------------------ feeding
    def ingest(self, topic: str, payload: bytes) -> Change | None:
        """Take one MQTT message; returns what changed (listeners are told too), None when nothing did.
        Never raises for what a message holds: a malformed one is counted (:meth:`malformed`)."""
        self.messages += 1
        try:
            change = self._ingest(topic, payload)
        except (WireError, ValueError) as e:
            change = self._bad(topic, str(e))
        if change is not None:
            self._notify(change)
        return change

    def _bad(self, topic: str, error: str) -> Change:
        with self._lock:
            self.malformed_count += 1
            self._malformed.append(Malformed(clip(topic, 200), clip(error, 300), self._clock()))
        return Change("malformed")

    def _ingest(self, topic: str, payload: bytes) -> Change | None:
        if not topic.startswith(self._prefix):
            return None
        parts = topic[len(self._prefix) :].split("/")
        agent_id = parts[0]
        if not _ID.match(agent_id):
            raise ValueError(f"agent id {clip(agent_id, 64)!r} in the topic is not an identifier")
        if len(parts) == 2 and parts[1] == "status":
            return self._agent_status(agent_id, payload)
        if len(parts) == 2 and parts[1] == "ack":
            return self._ack(agent_id, payload)
        if len(parts) == 4 and parts[1] == "camera":
            camera_id, leaf = parts[2], parts[3]
            if not _ID.match(camera_id):
                raise ValueError(f"camera id {clip(camera_id, 64)!r} in the topic is not an identifier")
            if leaf == "status":
                return self._camera_status(agent_id, camera_id, payload)
            if leaf == "events":
                return self._events(agent_id, camera_id, payload)
            if leaf == "preview":
                return self._preview(agent_id, camera_id, payload)
        return None  # cmd (ours and other operators') and topics this build does not know

    @staticmethod
    def _check_size(payload: bytes, bound: int, name: str) -> None:
        if len(payload) > bound:
            raise ValueError(f"payload of {len(payload)} bytes; at most {bound} ({name})")

    def _agent_slot(self, agent_id: str) -> _Agent | None:
        a = self._agents.get(agent_id)
        if a is None:
            if len(self._agents) >= MAX_AGENTS:
                self.agents_dropped += 1
                return None
            a = self._agents[agent_id] = _Agent(agent_id)
        a.last_seen = self._clock()
        return a

    def _agent_status(self, agent_id: str, payload: bytes) -> Change | None:
        if not payload:  # retained status deleted: the agent is gone from the site
            with self._lock:
                return Change("agents", agent_id) if self._agents.pop(agent_id, None) else None
        self._check_size(payload, STATUS_MAX_BYTES, "STATUS_MAX_BYTES")
        st = decode_status(payload)
        if not isinstance(st, AgentStatus) or st.agent_id != agent_id:
            raise ValueError(f"not the agent status of {agent_id!r}")
        with self._lock:
            new = agent_id not in self._agents
            a = self._agent_slot(agent_id)
            if a is None:
                return None
            a.status = st
            if st.state != "offline":
                # the heartbeat lists every camera the agent has: the others were removed
                listed = {c.camera_id for c in st.cameras}
                for gone in set(a.cameras) - listed:
                    del a.cameras[gone]
                for cs in st.cameras:
                    self._put_camera(a, cs)
        return Change("agents" if new else "agent", agent_id)

    def _camera_status(self, agent_id: str, camera_id: str, payload: bytes) -> Change | None:
        if not payload:  # the agent removed the camera (its retained status is cleared)
            with self._lock:
                a = self._agents.get(agent_id)
                if a is None or a.cameras.pop(camera_id, None) is None:
                    return None
            return Change("agent", agent_id)
        self._check_size(payload, STATUS_MAX_BYTES, "STATUS_MAX_BYTES")
        st = decode_status(payload)
        if not isinstance(st, CameraStatus) or st.agent_id != agent_id or st.camera_id != camera_id:
            raise ValueError(f"not the camera status of {agent_id}/{camera_id}")
        with self._lock:
            a = self._agent_slot(agent_id)
            if a is None:
                return None
            known = camera_id in a.cameras
            if not self._put_camera(a, st):
                return None
        return Change("camera" if known else "agent", agent_id, camera_id)

    def _put_camera(self, a: _Agent, st: CameraStatus) -> bool:
        cam = a.cameras.get(st.camera_id)
        if cam is None:
            if len(a.cameras) >= MAX_CAMERAS:
                a.cameras_dropped += 1
                return False
            cam = a.cameras[st.camera_id] = _Camera(st)
        elif st.ts < cam.status.ts:
            return False  # an older report (heartbeat after a newer camera topic message)
        cam.status = st
        ts = st.ts.timestamp()
        if not cam.samples or ts > cam.samples[-1].ts:
            cam.samples.append(Sample(ts, st.fps, st.latency_ms))
        return True

    def _events(self, agent_id: str, camera_id: str, payload: bytes) -> Change | None:
        self._check_size(payload, EVENTS_MAX_BYTES, "EVENTS_MAX_BYTES")
        batch = decode_events(payload)
        if batch.agent_id != agent_id or batch.camera_id != camera_id:
            raise ValueError(f"events of {batch.agent_id}/{batch.camera_id} on the topic of {agent_id}/{camera_id}")
        with self._lock:
            cam = self._camera(agent_id, camera_id)
            if cam is None:
                return None
            cam.events.extend(batch.events)
            cam.events_dropped += batch.dropped
        return Change("events", agent_id, camera_id)

    def _preview(self, agent_id: str, camera_id: str, payload: bytes) -> Change | None:
        if not payload:
            return None
        self._check_size(payload, PREVIEW_MAX_BYTES, "PREVIEW_MAX_BYTES")
        pv = decode_preview(payload)
        if pv.agent_id != agent_id or pv.camera_id != camera_id:
            raise ValueError(f"preview of {pv.agent_id}/{pv.camera_id} on the topic of {agent_id}/{camera_id}")
        with self._lock:
            cam = self._camera(agent_id, camera_id)
            if cam is None:
                return None
            cam.preview = pv
        return Change("preview", agent_id, camera_id)

    def _ack(self, agent_id: str, payload: bytes) -> Change | None:
        self._check_size(payload, STATUS_MAX_BYTES, "STATUS_MAX_BYTES")
        ack = decode_ack(payload)
        with self._lock:
            cmd = self._commands.get(ack.command_id)
            if cmd is None or cmd.agent_id != agent_id:
                return None  # another operator's command
            m = _FIELD.search(ack.error or "")
            view = AckView(
                command_id=ack.command_id,
                agent_id=agent_id,
                action=ack.action or cmd.action,
                ok=ack.ok,
                result=dict(ack.result),
                error=ack.error,
                field=(m.group(1) or m.group(2)) if m else None,
                received=self._clock(),
            )
            self._commands[ack.command_id] = Command(
                cmd.command_id, cmd.agent_id, cmd.action, cmd.camera_id, cmd.sent, view
            )
            self._last_ack = ack.command_id
        return Change("ack", agent_id)
