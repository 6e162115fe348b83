"""The operator's MQTT identity for ``edge-agent tui`` (settings only: no MQTT client is imported)."""

from __future__ import annotations

from pydantic import Field

from edgesight.mqtt import MqttConnectionConfig


class OperatorConfig(MqttConnectionConfig):
    """Broker, credentials and TLS of the operator (the agent's options: login or password file, CA, client
    certificate), the topic root and the keepalive."""

    topic_root: str = Field("edgesight", pattern=r"^[A-Za-z0-9_/-]{1,64}$")
    keepalive_s: int = Field(15, ge=5, le=3600)
