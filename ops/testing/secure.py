"""A throw-away *secure* stack and its clients, for the security tests (issue #12; README "Who may do what").

Real servers and real clients only:

- :func:`make_secure_stack`: a private secure stack on free ports (not started), so identities issued before
  ``up()`` are in SeaweedFS's ``-s3.config`` from the start;
- :func:`mqtt_connect` / :func:`login` / :func:`admin`: paho clients over TLS (:class:`MqttProbe` records what
  arrives and the SUBACK codes);
- :func:`issue`: an identity through the real CLI (``cloud-ops identities add-*``), its credentials bundle;
- :func:`issue_live`: an identity issued on a running stack, usable when it returns;
- :func:`s3_client`: boto3 with given keys, over HTTPS trusting the stack CA unless told otherwise.
"""

from __future__ import annotations

import json
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from ops.identities import Issued
from ops.stack import Stack, private_settings


def make_secure_stack(data_dir: Path, *, broker_storage: str = "memory", **settings: Any) -> Stack:
    """A throw-away stack in secure mode (not started) under ``data_dir``; ``settings`` update its StackConfig."""
    base = private_settings(data_dir, broker_storage=broker_storage)
    return Stack(settings=base.model_copy(update={"secure": True, **settings}))


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def trusting_context(stack: Stack) -> ssl.SSLContext:
    """A TLS context that trusts the stack CA (and only it)."""
    assert stack.identities is not None
    return ssl.create_default_context(cafile=str(stack.identities.ca_file))


@dataclass
class MqttProbe:
    """A connected paho client that records what it receives and its SUBACK reason codes."""

    c: mqtt.Client
    got: list[tuple[str, bytes, bool]] = field(default_factory=list)
    subacks: list[list[int]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    disconnected: threading.Event = field(default_factory=threading.Event)

    def subscribe(self, topic: str) -> list[int]:
        with self.cond:
            n = len(self.subacks)
            self.c.subscribe(topic, qos=1)
            assert self.cond.wait_for(lambda: len(self.subacks) > n, 5), f"no SUBACK for {topic}"
            return self.subacks[n]

    def publish(self, topic: str, payload: str | bytes, *, retain: bool = False) -> None:
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)  # the broker has handled it (routed or dropped) once it acknowledges

    def wait_for(self, topic: str, payload: bytes, timeout: float = 10) -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: any(t == topic and p == payload for t, p, _ in self.got), timeout)
        assert ok, f"{payload!r} on {topic} never arrived; got {self.got}"

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def mqtt_connect(
    stack: Stack,
    user: str,
    password: str | None,
    *,
    context: ssl.SSLContext | None = None,
    tls: bool = True,
) -> tuple[MqttProbe | None, str]:
    """Connect over TLS (trusting the stack CA unless ``context`` says otherwise). Returns the client when the
    broker accepted the login, else None and the reason."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{uuid.uuid4().hex[:6]}")
    cl = MqttProbe(c)
    result: list[str] = []
    done = threading.Event()

    def on_connect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        result.append("ok" if not rc.is_failure else f"refused: {rc}")
        done.set()

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        with cl.cond:
            cl.got.append((msg.topic, msg.payload, msg.retain))
            cl.cond.notify_all()

    def on_subscribe(_c: Any, _u: Any, _mid: Any, codes: Any, _p: Any) -> None:
        with cl.cond:
            cl.subacks.append([int(rc.value) for rc in codes])
            cl.cond.notify_all()

    def on_disconnect(*_a: Any) -> None:
        cl.disconnected.set()
        done.set()

    c.on_connect, c.on_message, c.on_subscribe, c.on_disconnect = on_connect, on_message, on_subscribe, on_disconnect
    if password is not None:
        c.username_pw_set(user, password)
    if tls:
        c.tls_set_context(context or trusting_context(stack))
    c.reconnect_delay_set(60, 60)  # no silent reconnect during a test
    c.connect(stack.config.mqtt.host, stack.config.mqtt.port, keepalive=10)
    c.loop_start()
    done.wait(10)
    if result == ["ok"]:
        return cl, "ok"
    cl.close()
    return None, (result[0] if result else "no CONNACK")


def issue_live(
    stack: Stack, name: str, role: str, *, site: str | None = None, topic_prefix: str | None = None
) -> Issued:
    """Issue an identity on a *running* secure stack: mosquitto re-reads its files (SIGHUP), and this returns once
    the new login is accepted (an MQTT role) so a client started next is not refused by a reload still under way.
    The Kafka gate reads its rules at the identity's first connection. ``topic_prefix``: the Kafka topic prefix
    its rules name (default the stack's). S3 identities need ``stack.restart("s3")`` (SeaweedFS reads them at
    start)."""
    import time

    assert stack.identities is not None, "a plain stack has no identities"
    issued = stack.identities.add(name, role, site=site, topic_prefix=topic_prefix)
    stack.reload_identities()
    if issued.mqtt_password is None:
        return issued
    deadline, why = time.monotonic() + 10, ""
    while time.monotonic() < deadline:
        cl, why = mqtt_connect(stack, name, issued.mqtt_password)
        if cl is not None:
            cl.close()
            return issued
        time.sleep(0.1)
    raise AssertionError(f"the new identity {name} is not accepted by mosquitto after its reload: {why}")


def login(stack: Stack, issued: Issued) -> MqttProbe:
    cl, why = mqtt_connect(stack, issued.identity.name, issued.mqtt_password)
    assert cl is not None, f"{issued.identity.name} could not connect: {why}"
    return cl


def admin(stack: Stack) -> MqttProbe:
    """The stack's own ``stack-admin`` (ops role: ``#``)."""
    mq = stack.config.mqtt
    cl, why = mqtt_connect(stack, mq.username or "", mq.password.get_secret_value() if mq.password else None)
    assert cl is not None, why
    return cl


def issue(stack: Stack, kind: str, name: str, out: Path, *options: str) -> dict[str, Any]:
    """Issue an identity with the real CLI (``cloud-ops identities add-<kind> NAME ...``); its credentials file."""
    from typer.testing import CliRunner

    from ops.cli import app

    argv = ["identities", f"add-{kind}", name, *options, "--out", str(out), "--data-dir", str(stack.data_dir)]
    r = CliRunner().invoke(app, argv)
    assert r.exit_code == 0, r.output
    bundle: dict[str, Any] = json.loads(out.read_text())
    return bundle


def s3_client(
    stack: Stack,
    access: str | None,
    secret: str | None,
    *,
    endpoint: str | None = None,
    verify: str | bool | None = None,
) -> Any:
    """boto3 S3 with these keys (None: anonymous) on the stack's HTTPS endpoint, trusting the stack CA."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    assert stack.identities is not None
    cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
    if access is None:
        cfg = cfg.merge(Config(signature_version=UNSIGNED))
    return boto3.client(
        "s3",
        endpoint_url=endpoint or stack.s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=access or "x",
        aws_secret_access_key=secret or "x",
        config=cfg,
        verify=str(stack.identities.ca_file) if verify is None else verify,
    )


def agent_links(
    stack: Stack,
    name: str,
    mqtt_password: str,
    directory: Path,
    *,
    ca_file: Path | None = None,
    topic_prefix: str | None = None,
    client_cert: tuple[Path, Path] | None = None,
) -> dict[str, dict[str, Any]]:
    """An agent's ``publish.kafka`` and ``control`` sections for the secure stack: Kafka over SSL (haproxy's
    TLS port) with the agent's client certificate (its Kafka login), and MQTT over TLS with its own login, its
    password in a 0600 file under ``directory``; both trust ``ca_file`` (default: the stack CA). ``client_cert``
    is for MQTT (the Kafka one is always the identity's)."""
    from edgesight.files import write_private

    assert stack.identities is not None
    ca = str(ca_file or stack.identities.ca_file)
    cert, key = stack.identities.client_files(name)
    kafka: dict[str, Any] = {
        "bootstrap_servers": stack.bootstrap,
        "security_protocol": "SSL",
        "ssl_ca_location": ca,
        "ssl_certificate_location": str(cert),
        "ssl_key_location": str(key),
    }
    if topic_prefix:
        kafka["topic_prefix"] = topic_prefix
    mq = stack.config.mqtt
    control: dict[str, Any] = {
        "host": mq.host,
        "port": mq.port,
        "username": name,
        "password_file": str(write_private(directory / f"{name}.mqtt-password", mqtt_password + "\n")),
        "tls": True,
        "ca_file": ca,
        "keepalive_s": 5,
    }
    if client_cert:
        control.update(cert_file=str(client_cert[0]), key_file=str(client_cert[1]))
    return {"kafka": kafka, "control": control}
