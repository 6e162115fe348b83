"""MQTT connection settings shared by the edge agent's control plane and the cloud side.

Settings only (no MQTT client is imported here): :class:`MqttConnectionConfig` holds the
fields every MQTT connection needs; ``edge_agent.control.settings.ControlConfig`` and
``cloud.config.MqttConfig`` extend it with their own fields and defaults.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from edgesight.config import StrictModel
from edgesight.log import register_secret


class MqttConnectionConfig(StrictModel):
    """Broker address, credentials and TLS of one MQTT connection."""

    host: str = "127.0.0.1"
    port: int = Field(1883, gt=0, lt=65536)
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    ca_file: Path | None = None

    @model_validator(mode="after")
    def _check_connection(self) -> MqttConnectionConfig:
        if self.password is not None and not self.username:
            raise ValueError("password is set but username is missing")
        if self.ca_file is not None and not self.tls:
            raise ValueError("ca_file is set but tls is false")
        register_secret(self.password.get_secret_value() if self.password else None)
        return self
