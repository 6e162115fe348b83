"""MQTT connection settings shared by the edge agent's control plane and the cloud side.

Settings only (no MQTT client is imported here): :class:`MqttConnectionConfig` holds the
fields every MQTT connection needs; ``edge_agent.control.settings.ControlConfig`` and
``cloud.config.MqttConfig`` extend it with their own fields and defaults.
:meth:`MqttConnectionConfig.ssl_context` builds the stdlib TLS context a paho client takes
(``client.tls_set_context``): the CA to trust (``ca_file``, else the system's) and, optionally,
a client certificate (``cert_file`` + ``key_file``).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from edgesight.config import StrictModel
from edgesight.log import register_secret

PASSWORD_FILE_MAX_BYTES = 4096
KNOWN_DEFAULT_PASSWORDS = frozenset({"edgesight-dev-mqtt", "edgesight-dev-secret", "edgesight", "password", "changeme"})
"""Passwords that ship in this repository (stack defaults, examples) or are guessed first."""
MIN_PASSWORD_CHARS = 16


def check_password(password: str, what: str = "password") -> None:
    """Refuse a known default or a short password (``edge-agent install``, issued identities)."""
    if password in KNOWN_DEFAULT_PASSWORDS:
        raise ValueError(f"{what} is a known default password; issue one with `cloud-ops identities add-agent`")
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"{what} has {len(password)} characters; at least {MIN_PASSWORD_CHARS}")


class MqttConnectionConfig(StrictModel):
    """Broker address, credentials and TLS of one MQTT connection."""

    host: str = "127.0.0.1"
    port: int = Field(1883, gt=0, lt=65536)
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = Field(
        None, description="read the password from this file (mode 0600; first line) instead of `password`"
    )
    tls: bool = False
    ca_file: Path | None = Field(None, description="CA certificate(s) to trust (PEM); none = the system's")
    cert_file: Path | None = Field(None, description="client certificate (PEM), for brokers that ask for one")
    key_file: Path | None = Field(None, description="the client certificate's private key (PEM)")

    @model_validator(mode="after")
    def _check_connection(self) -> MqttConnectionConfig:
        if self.password_file is not None:
            if self.password is not None:
                raise ValueError("set password or password_file, not both")
            self.__dict__["password"] = SecretStr(_read_password(self.password_file))
        if self.password is not None and not self.username:
            raise ValueError("password is set but username is missing")
        for name in ("ca_file", "cert_file", "key_file"):
            if getattr(self, name) is not None and not self.tls:
                raise ValueError(f"{name} is set but tls is false")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        register_secret(self.password.get_secret_value() if self.password else None)
        return self

    def ssl_context(self) -> ssl.SSLContext:
        """TLS 1.2+ client context: verifies the broker's certificate and host name against ``ca_file``
        (or the system's CAs), presenting ``cert_file``/``key_file`` when set."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file) if self.ca_file else None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file and self.key_file:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        return ctx


def _read_password(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(PASSWORD_FILE_MAX_BYTES + 1)
    except OSError as e:
        raise ValueError(f"password_file {path}: {e.strerror}") from None
    if len(raw) > PASSWORD_FILE_MAX_BYTES:
        raise ValueError(f"password_file {path} is over {PASSWORD_FILE_MAX_BYTES} bytes (PASSWORD_FILE_MAX_BYTES)")
    lines = raw.decode("utf-8", errors="strict").splitlines()
    if not lines or not lines[0]:
        raise ValueError(f"password_file {path} is empty")
    return lines[0]
