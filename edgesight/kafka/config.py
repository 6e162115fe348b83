"""Kafka connection settings, the same model on the edge (``publish.kafka``) and in the cloud (``kafka``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from edgesight.config import StrictModel
from edgesight.log import register_secret

HOST = "127.0.0.1"


class KafkaConfig(StrictModel):
    bootstrap_servers: str = Field(f"{HOST}:9092", min_length=3, description="host:port[,host:port...]")
    topic_prefix: str = Field("edgesight", pattern=r"^[A-Za-z0-9._-]{1,100}$")
    client_id: str = "edgesight-cloud"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: Path | None = None
    ssl_certificate_location: Path | None = None
    ssl_key_location: Path | None = None
    # Tansu takes ~half the session timeout to complete a group join; Kafka's 45 s default is slow to fail over.
    session_timeout_ms: int = Field(10000, ge=1000, le=300000)

    @field_validator("bootstrap_servers")
    @classmethod
    def _hostports(cls, v: str) -> str:
        for hp in v.split(","):
            host, _, port = hp.strip().rpartition(":")
            if not host or not port.isdigit() or not (0 < int(port) < 65536):
                raise ValueError(f"expected host:port entries separated by commas, got {hp.strip()!r}")
        return v

    @model_validator(mode="after")
    def _sasl(self) -> KafkaConfig:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError("security_protocol SASL_* needs sasl_mechanism, sasl_username and sasl_password")
        if self.sasl_password is not None:
            register_secret(self.sasl_password.get_secret_value())
        return self

    def client_config(self) -> dict[str, str | int]:
        """librdkafka (confluent-kafka) settings common to producers, consumers and admin."""
        conf: dict[str, str | int] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            conf.update(
                {
                    "sasl.mechanism": self.sasl_mechanism,
                    "sasl.username": self.sasl_username or "",
                    "sasl.password": self.sasl_password.get_secret_value() if self.sasl_password else "",
                }
            )
        for key, val in (
            ("ssl.ca.location", self.ssl_ca_location),
            ("ssl.certificate.location", self.ssl_certificate_location),
            ("ssl.key.location", self.ssl_key_location),
        ):
            if val:
                conf[key] = str(val)
        return conf
