"""The cloud side's configuration (one YAML file): Kafka, S3, MongoDB, MQTT and the
embedded stack. Validated once at start-up via :func:`edgesight.config.load_config`.

Secrets (passwords, keys) are ``SecretStr``: they print as ``**********`` and are
registered with the log redactor; set them in the environment
(``${VAR}`` references or ``EDGESIGHT_CLOUD__S3__SECRET_KEY=...``) rather than the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from edgesight.config import StrictModel, load_config, parse_config
from edgesight.log import register_secret

HOST = "127.0.0.1"
ENV_PREFIX = "EDGESIGHT_CLOUD__"


def _secret(v: SecretStr | None) -> str | None:
    return v.get_secret_value() if v is not None else None


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
        register_secret(_secret(self.sasl_password))
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
                    "sasl.password": _secret(self.sasl_password) or "",
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


class S3Config(StrictModel):
    endpoint_url: str | None = Field(f"http://{HOST}:8333", description="None = AWS S3")
    region: str = "us-east-1"
    access_key: str = "edgesight"
    secret_key: SecretStr = SecretStr("edgesight-dev-secret")
    keyframe_bucket: str = Field("edgesight-keyframes", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    presign_expiry_s: int = Field(3600, ge=1, le=604800)

    @model_validator(mode="after")
    def _reg(self) -> S3Config:
        register_secret(self.secret_key.get_secret_value())
        return self

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key.get_secret_value(),
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
                s3={"addressing_style": "path"},
            ),
        )


class MongoConfig(StrictModel):
    uri: SecretStr = SecretStr(f"mongodb://{HOST}:27017/")
    warehouse_db: str = Field("edgesight", pattern=r"^[A-Za-z0-9_-]{1,63}$")
    analytics_db: str = Field("edgesight_analytics", pattern=r"^[A-Za-z0-9_-]{1,63}$")

    @model_validator(mode="after")
    def _reg(self) -> MongoConfig:
        register_secret(self.uri.get_secret_value())
        return self

    def client(self, **kw):
        from pymongo import MongoClient

        return MongoClient(
            self.uri.get_secret_value(), serverSelectionTimeoutMS=kw.pop("timeout_ms", 5000), tz_aware=True, **kw
        )


class MqttConfig(StrictModel):
    host: str = HOST
    port: int = Field(1883, gt=0, lt=65536)
    username: str | None = "edgesight"
    password: SecretStr | None = SecretStr("edgesight-dev-mqtt")
    tls: bool = False
    ca_file: Path | None = None

    @model_validator(mode="after")
    def _reg(self) -> MqttConfig:
        register_secret(_secret(self.password))
        return self


class StackConfig(StrictModel):
    """The embedded cloud on 127.0.0.1: ports, data dir, bucket for broker storage."""

    data_dir: Path = Path(".edgesight-stack")
    kafka_port: int = Field(9092, gt=0, lt=65536)
    s3_port: int = Field(8333, gt=0, lt=65536)
    mongo_port: int = Field(27017, gt=0, lt=65536)
    mqtt_port: int = Field(1883, gt=0, lt=65536)
    # SeaweedFS also listens on master/volume/filer/admin ports (HTTP + gRPC); 0 = pick free ports at start.
    seaweed_internal_port_base: int = Field(0, ge=0, lt=65000)
    broker_bucket: str = Field("edgesight-kafka", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    broker_storage: Literal["s3", "memory"] = "s3"
    ready_timeout_s: float = Field(60.0, gt=0)

    @model_validator(mode="after")
    def _distinct(self) -> StackConfig:
        ports = [self.kafka_port, self.s3_port, self.mongo_port, self.mqtt_port]
        if len(set(ports)) != len(ports):
            raise ValueError("kafka_port, s3_port, mongo_port and mqtt_port must all differ")
        return self


class CloudConfig(StrictModel):
    kafka: KafkaConfig = KafkaConfig()
    s3: S3Config = S3Config()
    mongo: MongoConfig = MongoConfig()
    mqtt: MqttConfig = MqttConfig()
    stack: StackConfig = StackConfig()

    @classmethod
    def load(cls, path: str | Path | None) -> CloudConfig:
        """``path`` (YAML) or, without one, the defaults; ``EDGESIGHT_CLOUD__*`` overrides apply to both."""
        if path is None:
            return parse_config(cls, {}, f"<defaults + {ENV_PREFIX}* environment>", env_prefix=ENV_PREFIX)
        return load_config(cls, path, env_prefix=ENV_PREFIX)

    def for_stack(self) -> CloudConfig:
        """This config with client endpoints pointed at the embedded stack's ports."""
        st = self.stack
        return self.model_copy(
            update={
                "kafka": self.kafka.model_copy(update={"bootstrap_servers": f"{HOST}:{st.kafka_port}"}),
                "s3": self.s3.model_copy(update={"endpoint_url": f"http://{HOST}:{st.s3_port}"}),
                "mongo": self.mongo.model_copy(update={"uri": SecretStr(f"mongodb://{HOST}:{st.mongo_port}/")}),
                "mqtt": self.mqtt.model_copy(update={"host": HOST, "port": st.mqtt_port}),
            }
        )
