"""Clients of a stack built from its config objects, so one test works on the secure stack (TLS, logins, the
stack CA) and on a plain one alike: nothing here hard-codes a protocol, a scheme or a password.

- :func:`kafka_python`: kafka-python settings (an independent client implementation) from a ``KafkaConfig``;
- :func:`kafka_link`: its connection fields, for another Kafka config (an agent's, a publisher's);
- :func:`mqtt_login`: the connection fields of an MQTT config (address, login, TLS), to build another one
  (``ControlConfig``, ``OperatorConfig``) for the same login;
- :func:`paho_client`: a paho client with that login and TLS context (not connected yet);
- :func:`mosquitto_cli`: the same as ``mosquitto_pub``/``mosquitto_sub`` options.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from edgesight.kafka import KafkaConfig
from edgesight.mqtt import MqttConnectionConfig

MQTT_CONNECTION_FIELDS = ("host", "port", "username", "password", "tls", "ca_file", "cert_file", "key_file")


def kafka_python(kafka: KafkaConfig) -> dict[str, Any]:
    """``bootstrap_servers``, ``security_protocol`` and the CA / client certificate / SASL login for kafka-python."""
    kw: dict[str, Any] = {"bootstrap_servers": kafka.bootstrap_servers, "security_protocol": kafka.security_protocol}
    if kafka.ssl_ca_location:
        kw["ssl_cafile"] = str(kafka.ssl_ca_location)
    if kafka.ssl_certificate_location and kafka.ssl_key_location:
        kw.update(ssl_certfile=str(kafka.ssl_certificate_location), ssl_keyfile=str(kafka.ssl_key_location))
    if kafka.sasl_mechanism:
        kw.update(
            sasl_mechanism=kafka.sasl_mechanism,
            sasl_plain_username=kafka.sasl_username,
            sasl_plain_password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
        )
    return kw


def mqtt_login(mq: MqttConnectionConfig, *, plain: bool = False) -> dict[str, Any]:
    """The fields of ``mq`` that say where and as whom to connect (password as read, never the file); ``plain``:
    as JSON/YAML values (the password in clear, paths as strings) for a config file or a child process."""
    fields = {name: getattr(mq, name) for name in MQTT_CONNECTION_FIELDS}
    if plain:
        fields = {
            k: v.get_secret_value() if isinstance(v, SecretStr) else str(v) if isinstance(v, Path) else v
            for k, v in fields.items()
        }
    return fields


def paho_client(mq: MqttConnectionConfig, client_id: str | None = None) -> Any:
    """A paho (callback API 2) client logging in as ``mq`` says, over TLS when it says so; not connected."""
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"t-{uuid.uuid4().hex[:8]}")
    if mq.username:
        c.username_pw_set(mq.username, mq.password.get_secret_value() if mq.password else None)
    if mq.tls:
        c.tls_set_context(mq.ssl_context())
    return c


def mosquitto_cli(mq: MqttConnectionConfig) -> list[str]:
    """``mosquitto_pub``/``mosquitto_sub`` options for ``mq``: host, port, login, CA and client certificate."""
    args = ["-h", mq.host, "-p", str(mq.port)]
    if mq.username:
        args += ["-u", mq.username]
    if mq.password:
        args += ["-P", mq.password.get_secret_value()]
    if mq.tls:
        args += ["--cafile", str(mq.ca_file)] if mq.ca_file else ["--capath", "/etc/ssl/certs"]
    if mq.cert_file and mq.key_file:
        args += ["--cert", str(mq.cert_file), "--key", str(mq.key_file)]
    return args


KAFKA_CONNECTION_FIELDS = frozenset(
    {
        "bootstrap_servers",
        "security_protocol",
        "sasl_mechanism",
        "sasl_username",
        "sasl_password",
        "ssl_ca_location",
        "ssl_certificate_location",
        "ssl_key_location",
    }
)


def kafka_link(kafka: KafkaConfig) -> dict[str, Any]:
    """The fields of ``kafka`` that say where and how to connect (address, TLS, SASL), for another Kafka config
    (an agent's or a publisher's ``kafka`` section) on the same broker."""
    return {name: getattr(kafka, name) for name in KAFKA_CONNECTION_FIELDS if getattr(kafka, name) is not None}
