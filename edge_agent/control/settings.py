"""The ``control`` section of the agent config (settings only: no MQTT client is imported)."""

from __future__ import annotations

from pydantic import Field

from edgesight.mqtt import MqttConnectionConfig


class ControlConfig(MqttConnectionConfig):
    """The agent's MQTT control plane: the broker connection plus its topics and timing."""

    enabled: bool = True
    topic_root: str = Field("edgesight", pattern=r"^[A-Za-z0-9_/-]{1,64}$")
    keepalive_s: int = Field(15, ge=5, le=3600)
    status_interval_s: float = Field(10.0, gt=0)
