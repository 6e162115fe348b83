"""The edge agent's configuration: one YAML file, validated once at start-up.

Sections: ``agent_id``, ``cameras`` (capture settings + per-camera zones and
lines), ``inference``, ``tracking`` (defaults for every camera), ``publish``
(Kafka, spool, keyframes), ``control`` (MQTT), ``metrics``. See
``examples/agent.yaml`` for a commented example. Errors name the file and the
dotted key (``cameras[1].zones[0].polygon``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from edge_agent.capture.settings import CameraConfig
from edge_agent.control.settings import ControlConfig
from edge_agent.inference.settings import InferenceConfig
from edge_agent.publish.settings import PublishConfig
from edge_agent.tracking.settings import CameraTrackingConfig, LineConfig, TrackerConfig, ZoneConfig
from edgesight.config import StrictModel, load_config
from edgesight.wire.models import ID_PATTERN

ENV_PREFIX = (
    "EDGESIGHT_AGENT__"  # EDGESIGHT_AGENT__PUBLISH__KAFKA__SASL_PASSWORD=... overrides publish.kafka.sasl_password
)


class AgentCamera(CameraConfig):
    """A camera: capture settings plus its zones and counting lines."""

    zones: list[ZoneConfig] = Field(default_factory=list)
    lines: list[LineConfig] = Field(default_factory=list)
    tracker: TrackerConfig | None = Field(None, description="overrides the agent-wide tracking.tracker")

    def capture(self) -> CameraConfig:
        """The capture part alone (what the supervisor needs)."""
        return CameraConfig.model_validate(self.model_dump(by_alias=False, exclude={"zones", "lines", "tracker"}))

    def tracking(self, defaults: TrackingDefaults) -> CameraTrackingConfig:
        return CameraTrackingConfig(
            tracker=self.tracker or defaults.tracker,
            zones=self.zones,
            lines=self.lines,
            update_interval_s=defaults.update_interval_s,
        )


class TrackingDefaults(StrictModel):
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    update_interval_s: float = Field(
        1.0,
        ge=0.0,
        description="0 = an update event per object per frame; >0 = on "
        "change (zone, line, score) or after this many seconds",
    )


class MetricsConfig(StrictModel):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9108, ge=0, lt=65536, description="HTTP /metrics, /status, /healthz; 0 = pick a free port")


class PipelineConfig(StrictModel):
    results_queue: int = Field(
        32,
        ge=1,
        le=10000,
        description="inference -> tracking/publish queue (frames); when "
        "full, inference waits and capture drops old frames",
    )
    heartbeat_interval_s: float = Field(10.0, gt=0)
    helper_threads_nice: int = Field(
        5,
        ge=0,
        le=19,
        description="capture, tracking/publish and producer threads run this much nicer than the detector "
        "(Linux; 0: same priority); see edge_agent.priority",
    )


class AgentConfig(StrictModel):
    agent_id: str = Field(pattern=ID_PATTERN)
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    cameras: list[AgentCamera] = Field(default_factory=list)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    tracking: TrackingDefaults = Field(default_factory=TrackingDefaults)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    control: ControlConfig = Field(default_factory=ControlConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)

    @model_validator(mode="after")
    def _unique_cameras(self) -> AgentConfig:
        seen: set[str] = set()
        for cam in self.cameras:
            if cam.id in seen:
                raise ValueError(f"two cameras have the id {cam.id!r}; camera ids must be unique")
            seen.add(cam.id)
        return self

    @classmethod
    def load(cls, path: str | Path) -> AgentConfig:
        return load_config(cls, path, env_prefix=ENV_PREFIX)
