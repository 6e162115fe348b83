"""The edge agent process: wires capture, inference, tracking, publish, control and status.

``Agent(config).run()`` blocks until SIGTERM/SIGINT, then shuts down in data
order: stop capture -> finish inference and tracking of what was captured ->
end live tracks -> flush the publisher (what the broker does not acknowledge
stays journaled in the spool for the next start) -> final status -> exit.
"""

from __future__ import annotations

import json
import queue
import signal
import socket
import threading
import time
from datetime import datetime, timezone
from types import FrameType
from typing import Any

from edge_agent import commands
from edge_agent.capture.supervisor import Supervisor
from edge_agent.config import AgentCamera, AgentConfig
from edge_agent.control.mqtt import STOPPING, CommandError, ControlPlane
from edge_agent.feed import Feed, ProcessUsage
from edge_agent.inference.engine import InferenceEngine
from edge_agent.pipeline import Pipeline
from edge_agent.priority import set_helper_nice
from edge_agent.publish.keyframes import KeyframeSelector
from edge_agent.publish.producer import EdgePublisher, edge_topic_specs
from edge_agent.tracking.settings import CameraTrackingConfig
from edgesight import __version__
from edgesight.http import HttpServer, serve_http
from edgesight.kafka import ensure_topics
from edgesight.limits import RECORD_MAX_BYTES, clip
from edgesight.log import get_logger, redact, redact_text
from edgesight.metrics import gauge
from edgesight.wire import (
    AgentStatus,
    AllowedSources,
    BrokerStatus,
    CameraStatus,
    InferenceStatus,
    ModelRef,
    dumps,
    new_run_id,
)
from edgesight.wire.models import STATUS_TEXT_MAX

M_UP = gauge("agent_up", "1 while the agent runs", ["agent"])
HEARTBEAT_MAX_BYTES = RECORD_MAX_BYTES // 2
"""An agent heartbeat larger than this (many cameras with large zones) leaves the cameras' zones and lines out,
so it stays well within what its consumers read (RECORD_MAX_BYTES); each camera's own status topic, published
right after it, still carries them."""


def _utc(ts: float | None = None) -> datetime:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), tz=timezone.utc)


class Agent:
    """Builds the stages from the config, starts and stops them in order, reports status.

    Control commands are dispatched by :mod:`edge_agent.commands`; the HTTP endpoints
    are :func:`edgesight.http.serve_http`.
    """

    def __init__(
        self, config: AgentConfig, *, engine: InferenceEngine | None = None, publisher: EdgePublisher | None = None
    ):
        self.config = config
        set_helper_nice(config.pipeline.helper_threads_nice)  # before any thread of it starts
        self.agent_id = config.agent_id
        # This process's run of the agent (wire contract v2): track ids and frame seq restart with every run,
        # so the cloud keys tracks by (agent, camera, run_id, track_id). Spooled records keep their own run's id.
        self.run_id = new_run_id()
        self.log = get_logger("agent")
        self.started = time.time()
        self._stop = threading.Event()
        self.cameras: dict[str, AgentCamera] = {c.id: c for c in config.cameras}  # control commands edit it
        self._state_changes: queue.Queue[str] = queue.Queue(maxsize=1000)
        self._engine_lock = threading.Lock()
        self.engine = engine or InferenceEngine(config.inference)
        self.supervisor = Supervisor(
            [c.capture() for c in config.cameras],
            agent_id=self.agent_id,
            on_state_change=self.camera_state_changed,
            predict_takes=True,  # the inference loop takes frames in a steady cycle
        )
        self.publisher = publisher or EdgePublisher(config.publish, self.agent_id)
        self.keyframes = KeyframeSelector(config.publish.keyframes, self.agent_id)
        self.control = (
            ControlPlane(config.control, self.agent_id, self.handle_command) if config.control.enabled else None
        )
        # the TUI feed (previews, live events) and the figures the status messages carry
        self.feed = Feed(config.control, self.agent_id, list(self.engine.class_names), sink=self.control)
        self._usage = ProcessUsage()
        self._last_errors: dict[str, str] = {}
        inf = config.inference
        self.pipeline = Pipeline(
            agent_id=self.agent_id,
            run_id=self.run_id,
            supervisor=self.supervisor,
            detector_ref=lambda: self.engine,
            model_ref=self._model_ref,
            class_names=list(self.engine.class_names),
            publisher=self.publisher,
            keyframes=self.keyframes,
            tracking_config=self._tracking_config,
            batch_max_size=inf.batch_max_size,
            batch_max_wait_ms=inf.batch_max_wait_ms,
            results_queue=config.pipeline.results_queue,
            observer=self.feed,
        )
        self._http: HttpServer | None = None
        self.metrics_port: int | None = None

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> Agent:
        if self.config.metrics.enabled:
            m = self.config.metrics
            self._http = serve_http(m.host, m.port, health=lambda: not self._stop.is_set(), status=self.status_doc)
            self.metrics_port = self._http.port
        try:
            ensure_topics(self.config.publish.kafka.client_config(), edge_topic_specs(self.config.publish))
        except Exception as e:  # noqa: BLE001 - the uplink may be down at boot: spool and carry on
            why = (
                "this agent may not create topics: ops creates them (cloud-ops connectors topics --create)"
                if "AUTHORIZATION_FAILED" in str(e)
                else "records are spooled until the broker answers"
            )
            self.log.warning(f"could not check/create Kafka topics now ({e}); {why}")
        self.publisher.start()
        self.pipeline.start()
        self.supervisor.start()
        if self.control:
            self.control.start(wait_s=5)
        self.feed.start()
        threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True).start()
        threading.Thread(target=self._status_loop, name="camera-status", daemon=True).start()
        M_UP.labels(self.agent_id).set(1)
        self.log.info(
            "agent started",
            extra={
                "cameras": list(self.cameras),
                "run_id": self.run_id,
                "model": self._model_ref().model_dump(),
                "providers": self.engine.active_providers,
                "metrics_port": self.metrics_port,
            },
        )
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self.log.info("agent stopping: draining pipeline and flushing publisher")
        # one deadline for the whole drain: each stage gets what is left of it (capped at its own
        # limit); what the broker has not acknowledged by then stays journaled in the spool
        deadline = time.monotonic() + timeout

        def left(cap: float) -> float:
            return max(0.2, min(cap, deadline - time.monotonic()))

        self.supervisor.stop(timeout=left(5))
        self.pipeline.stop(timeout=left(timeout))
        status = self.status(state="stopping")
        try:
            self.publisher.publish_status(status)
        except Exception:  # noqa: BLE001
            pass
        flushed = self.publisher.flush(timeout=left(15))
        self.publisher.close(timeout=left(5))
        self.feed.stop(timeout=left(2))
        if self.control:
            self.control.stop(final_status=status.model_copy(update={"state": "offline"}), timeout=left(5))
        if self._http:
            self._http.close()
        M_UP.labels(self.agent_id).set(0)
        self.log.info(
            "agent stopped",
            extra={
                "flushed": flushed,
                "events": self.pipeline.events_published,
                "keyframes": self.pipeline.keyframes_published,
            },
        )

    def run(self) -> int:
        """Start, then block until SIGTERM/SIGINT; returns the exit code."""

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            self.log.info(f"received {signal.Signals(signum).name}")
            self._stop_requested.set()

        self._stop_requested = threading.Event()
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        while not self._stop_requested.wait(0.5):
            pass
        self.stop()
        return 0

    # ---------------------------------------------------------------- model / tracking refs
    def _model_ref(self) -> ModelRef:
        m = self.engine.model.manifest
        return ModelRef(name=m.name, version=str(m.version), variant=self.engine.variant)

    def _tracking_config(self, camera_id: str) -> CameraTrackingConfig:
        cam = self.cameras.get(camera_id)
        if cam is None:
            return CameraTrackingConfig(tracker=self.config.tracking.tracker)
        return cam.tracking(self.config.tracking)

    # ---------------------------------------------------------------- status
    def camera_state_changed(self, camera_id: str, *_: Any) -> None:
        """Supervisor hook (runs under the supervisor's lock): only queue; the status thread publishes."""
        try:
            self._state_changes.put_nowait(camera_id)
        except queue.Full:
            pass  # the next heartbeat carries every camera's state anyway

    def _status_loop(self) -> None:
        """Publishes a camera's retained MQTT status as soon as it changes (off the capture threads)."""
        while not self._stop.is_set():
            try:
                cam_id = self._state_changes.get(timeout=0.5)
            except queue.Empty:
                continue
            if not (self.control and self.control.connected):
                continue
            try:
                st = self.camera_statuses().get(cam_id)
                if st is not None:
                    self.control.publish_camera_status(st)
            except Exception:
                self.log.debug("camera status publish failed", exc_info=True)

    def camera_statuses(self) -> dict[str, CameraStatus]:
        now = _utc()
        out = {}
        model = self._model_ref()
        for cam_id, st in self.supervisor.status().items():
            counters = st.counters
            dropped = counters.get("frames_dropped", {})
            figures = self.feed.figures(cam_id)
            cam = self.cameras.get(cam_id)
            age = counters.get("last_frame_age_s")
            out[cam_id] = CameraStatus(
                agent_id=self.agent_id,
                camera_id=cam_id,
                ts=now,
                state=str(st.state),
                reason=st.reason or "",
                since=_utc(st.since) if st.since else None,
                fps=max(0.0, float(st.fps or 0.0)),
                target_fps=counters.get("target_fps"),
                model=model,
                frames=int(counters.get("frames_delivered", 0)),
                dropped=int(sum(dropped.values()) if isinstance(dropped, dict) else dropped or 0),
                reconnects=int(counters.get("reconnects", 0)),
                frame_age_s=None if age is None else max(0.0, float(age)),
                detections_per_s=figures.detections_per_s,
                latency_ms=figures.latency_ms,
                last_error=self._last_error(cam_id, str(st.state), st.reason or ""),
                frame=figures.frame,
                zones=[z.model_dump(mode="json") for z in cam.zones] if cam else [],
                lines=[ln.model_dump(mode="json") for ln in cam.lines] if cam else [],
            )
        return out

    def _last_error(self, camera_id: str, state: str, reason: str) -> str:
        """The camera's last error: the reason it is reconnecting or failed, kept until it streams again."""
        if state in ("reconnecting", "failed") and reason:
            self._last_errors[camera_id] = redact_text(clip(reason, STATUS_TEXT_MAX - 64))
        elif state == "streaming":
            self._last_errors.pop(camera_id, None)
        return self._last_errors.get(camera_id, "")

    def status(self, state: str | None = None, cameras: dict[str, CameraStatus] | None = None) -> AgentStatus:
        cams = list((self.camera_statuses() if cameras is None else cameras).values())
        if state is None:
            state = "running" if all(c.state in ("streaming", "stopped", "disabled") for c in cams) else "degraded"
        allowed = self.config.control.allowed_sources
        engine = self.engine
        st = AgentStatus(
            agent_id=self.agent_id,
            ts=_utc(),
            state=state,
            version=__version__,
            run_id=self.run_id,
            hostname=socket.gethostname(),
            uptime_s=time.time() - self.started,
            cameras=cams,
            spool=self.publisher.spool_status(),
            cpu_percent=self._usage.cpu_percent(),
            memory_rss_bytes=self._usage.memory_rss_bytes(),
            inference=InferenceStatus(
                provider=engine.active_providers[0] if engine.active_providers else "", variant=engine.variant
            ),
            broker=self._broker_status(),
            allowed_sources=AllowedSources(
                schemes=list(allowed.schemes), hosts=list(allowed.hosts), dirs=[str(d) for d in allowed.directories]
            ),
        )
        if len(dumps(st)) > HEARTBEAT_MAX_BYTES:
            st.cameras = [c.model_copy(update={"zones": [], "lines": []}) for c in cams]
        return st

    def _broker_status(self) -> BrokerStatus:
        error = self.publisher.stats()["last_error"] or ""
        return BrokerStatus(
            connected=self.publisher.connected,
            last_error=redact_text(clip(str(error), STATUS_TEXT_MAX - 64)),
            undelivered=self.publisher.spool_status().records,
        )

    def status_doc(self) -> dict[str, Any]:
        st = json.loads(self.status().model_dump_json(by_alias=True))
        st["pipeline"] = {
            "frames_inferred": self.pipeline.frames_inferred,
            "batches": self.pipeline.batches,
            "events_published": self.pipeline.events_published,
            "keyframes_published": self.pipeline.keyframes_published,
            "results_queue": self.pipeline.results.qsize(),
        }
        st["publisher"] = self.publisher.stats()
        st["model"] = {**self._model_ref().model_dump(), "providers": self.engine.active_providers}
        st["capture"] = {cid: self.supervisor.stats(cid) for cid in self.supervisor.cameras()}
        return redact(st)  # camera URLs may carry credentials: never in status output

    def _heartbeat_loop(self) -> None:
        interval = self.config.pipeline.heartbeat_interval_s
        while not self._stop.wait(interval):
            try:
                cams = self.camera_statuses()
                st = self.status(cameras=cams)
                self.publisher.publish_status(st)
                if self.control and self.control.connected:
                    self.control.publish_status(st)
                    for cam in cams.values():  # each with its zones and lines
                        self.control.publish_camera_status(cam)
            except Exception:
                self.log.exception("heartbeat failed")

    # ---------------------------------------------------------------- control commands
    def handle_command(self, cmd: Any) -> dict[str, Any]:
        """The control plane's handler: see :mod:`edge_agent.commands`. Once stopping, nothing is run
        (a camera added now would outlive the drain)."""
        if self._stop.is_set():
            raise CommandError(STOPPING)
        return commands.dispatch(self, cmd)

    def replace_engine(self, engine: InferenceEngine) -> None:
        """Swap the detector; the pipeline picks it up on its next batch."""
        with self._engine_lock:
            old, self.engine = self.engine, engine
        self.config = self.config.model_copy(update={"inference": engine.config})
        self.log.info("model variant switched", extra={"from": old.variant, "to": engine.variant})
