"""The cloud side's configuration (one YAML file): Kafka, S3, MongoDB, MQTT and the
embedded stack. Validated once at start-up via :func:`edgesight.config.load_config`.

Secrets (passwords, keys) are ``SecretStr``: they print as ``**********`` and are
registered with the log redactor; set them in the environment
(``${VAR}`` references or ``EDGESIGHT_CLOUD__S3__SECRET_KEY=...``) rather than the file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from edgesight.config import StrictModel, check_url_port, load_config, parse_config
from edgesight.kafka import KafkaConfig
from edgesight.log import register_secret
from edgesight.mqtt import MqttConnectionConfig

HOST = "127.0.0.1"
ENV_PREFIX = "EDGESIGHT_CLOUD__"


class S3Config(StrictModel):
    endpoint_url: str | None = Field(f"http://{HOST}:8333", description="None = AWS S3")
    region: str = "us-east-1"
    access_key: str = "edgesight"
    secret_key: SecretStr = SecretStr("edgesight-dev-secret")
    keyframe_bucket: str = Field("edgesight-keyframes", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    presign_expiry_s: int = Field(3600, ge=1, le=604800)
    ca_file: Path | None = Field(None, description="CA bundle that verifies an https endpoint (None = the system's)")

    @model_validator(mode="after")
    def _reg(self) -> S3Config:
        register_secret(self.secret_key.get_secret_value())
        if self.endpoint_url:
            check_url_port(self.endpoint_url, "s3.endpoint_url")
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
            verify=str(self.ca_file) if self.ca_file else None,
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
        uri = self.uri.get_secret_value()
        register_secret(uri)
        scheme, _, rest = uri.partition("://")
        authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
        hosts = authority.rpartition("@")[2]  # a replica set lists several host:port
        for host in hosts.split(","):
            check_url_port(f"{scheme}://{host}", "mongo.uri")
        return self

    def client(self, **kw):
        from pymongo import MongoClient

        return MongoClient(
            self.uri.get_secret_value(), serverSelectionTimeoutMS=kw.pop("timeout_ms", 5000), tz_aware=True, **kw
        )


class MqttConfig(MqttConnectionConfig):
    """The cloud's MQTT broker (the embedded mosquitto's development credentials by default)."""

    host: str = HOST
    username: str | None = "edgesight"
    password: SecretStr | None = SecretStr("edgesight-dev-mqtt")


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
    # Several Tansu brokers on the shared s3 storage (each on its own free port, recorded in stack.json) behind one
    # bootstrap address: haproxy on kafka_port (README "Several brokers"). 1 = one broker on kafka_port, no proxy.
    brokers: int = Field(1, ge=1, le=9)
    # Secure by default (issue #12; README "Who may do what"): identities from <data_dir>/identities, MQTT over TLS
    # with per-identity passwords and ACLs, SeaweedFS over HTTPS with per-identity actions, Kafka TLS terminated by
    # haproxy. False (`cloud-ops stack up --plain`): plain listeners and the shared development logins.
    secure: bool = True
    mqtt_plain_port: int | None = Field(None, gt=0, lt=65536, description="secure mode: also a plain MQTT listener")
    mqtt_require_client_cert: bool = Field(False, description="secure mode: MQTT clients must present a certificate")

    @model_validator(mode="after")
    def _distinct(self) -> StackConfig:
        ports = [self.kafka_port, self.s3_port, self.mongo_port, self.mqtt_port]
        if len(set(ports)) != len(ports):
            raise ValueError("kafka_port, s3_port, mongo_port and mqtt_port must all differ")
        if self.brokers > 1 and self.broker_storage != "s3":
            raise ValueError(
                "brokers > 1 needs broker_storage s3: the brokers share their storage, memory is per process"
            )
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
