"""The suite's secrets audit (a pytest plugin, loaded by tests/conftest.py).

Every process of the run logs through :func:`edgesight.log.setup_logging`; with ``EDGESIGHT_LOG_TEE`` set
(here, for this process and every process it starts) each JSON line -- messages, extra fields, tracebacks,
refused commands with the error of their ack, status and error records -- is also appended to one file, and so
is every message published on the session stack's MQTT broker (acks, retained status; :func:`tee_mqtt`),
every /status document an agent served and everything a CLI printed (:func:`edgesight.log.tee_output`), and,
before the stack stops, every record left on the session broker's topics (detections, status, dead letters,
keyframe headers; :func:`tee_kafka`). At the end of the session that file is searched for the suite's known secrets: the fixed ones below, those
tests declare with :func:`known_secret`, and every secret registered in this process (the session stack's
passwords and keys, values substituted from the environment). One found fails the session; the report
names the line, never the secret.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgesight import log as eslog
from edgesight.kafka import ConsumedMessage, HeadersUnreadable
from edgesight.mqtt import MqttConnectionConfig

# Secrets the suite's tests hand to the system (test files, environment, commands).
KNOWN_SECRETS = {
    "hunter2-very-secret",
    "kafka-pw-from-env",
    "s3cr3t-from-env",
    "pw123",
    "Zq9-secret pw@/x%",
    "env-only-s3cr3t",
}
MIN_LENGTH = 5  # shorter registered values (a port, "admin") match by chance; the fixed ones above are checked all


def known_secret(value: str) -> str:
    """Declare a secret a test uses: the audit checks no log line of the run holds it."""
    KNOWN_SECRETS.add(value)
    return value


def scan(path: Path, secrets: set[str]) -> list[tuple[int, str]]:
    """(line number, masked secret) for each secret found in the file's lines."""
    found = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            found += [(n, _masked(s)) for s in secrets if s in line]
    return found


def tee_mqtt(mq: MqttConnectionConfig) -> Callable[[], None]:
    """Append every message published on the broker (acks, retained agent and camera status) to the audit
    file, except the command topics (``.../cmd``: the suite's own input, which carries camera passwords by
    design). It logs in as ``mq`` says (on the secure stack: ``stack-admin`` over TLS, the ops role that may
    read ``#``). Returns the function that stops it."""
    path = os.environ.get(eslog.LOG_TEE_ENV)
    if not path:
        return lambda: None
    from ops.testing.clients import paho_client

    lock = threading.Lock()
    subscribed = threading.Event()

    def on_message(_c: object, _u: object, msg: Any) -> None:
        if msg.topic.endswith("/cmd"):
            return
        line = json.dumps({"mqtt_topic": msg.topic, "payload": msg.payload.decode("utf-8", "replace")})
        with lock, open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def on_connect(c: Any, *_a: object) -> None:
        c.subscribe("#", qos=0)

    def on_subscribe(_c: object, _u: object, _mid: object, codes: Any, _p: object) -> None:
        if all(not rc.is_failure for rc in codes):
            subscribed.set()

    c = paho_client(mq, client_id="edgesight-secrets-audit")
    c.on_message, c.on_connect, c.on_subscribe = on_message, on_connect, on_subscribe
    c.connect(mq.host, mq.port, keepalive=30)
    c.loop_start()
    if not subscribed.wait(10):  # an audit that hears nothing would pass for the wrong reason
        c.loop_stop()
        raise AssertionError(f"secrets audit: {mq.username or 'anonymous'} could not subscribe to # on the broker")

    def stop() -> None:
        c.loop_stop()
        c.disconnect()

    return stop


def tee_kafka(client_config: dict[str, Any], prefix: str = "", idle_s: float = 3.0, timeout_s: float = 180.0) -> int:
    """Append every record on every topic of the broker whose name starts with ``prefix`` (key, headers,
    value; a keyframe's JPEG value is left out) to the audit file; returns the number of records read.

    It reads until no record has come for ``idle_s``: Tansu's high watermark counts record batches, not
    records (3 records produced in one batch give a high watermark of 1), so it cannot mark the end."""
    path = os.environ.get(eslog.LOG_TEE_ENV)
    if not path:
        return 0
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**client_config, "group.id": "edgesight-secrets-audit", "enable.auto.commit": False})
    deadline = time.monotonic() + timeout_s
    count = 0
    try:
        meta = consumer.list_topics(timeout=10)
        parts = [
            TopicPartition(name, p, 0)
            for name, topic in meta.topics.items()
            if name.startswith(prefix) and not name.startswith("__")
            for p in topic.partitions
        ]
        if not parts:
            return 0
        consumer.assign(parts)
        last = time.monotonic()
        with open(path, "a", encoding="utf-8") as f:
            while time.monotonic() - last < idle_s:
                if time.monotonic() > deadline:
                    raise AssertionError(f"secrets audit: the broker's topics were not read in {timeout_s:.0f} s")
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    continue
                msg = ConsumedMessage(msg)  # a header name that is not UTF-8 would crash a second headers()
                last = time.monotonic()
                count += 1
                binary = ".keyframes." in msg.topic()
                line = {
                    "kafka_topic": msg.topic(),
                    "key": (msg.key() or b"").decode("utf-8", "replace"),
                    "headers": _headers(msg),
                    "value": "" if binary else (msg.value() or b"").decode("utf-8", "replace"),
                }
                f.write(json.dumps(line) + "\n")
    finally:
        consumer.close()
    return count


def _headers(msg: Any) -> list[tuple[str, str]] | str:
    try:
        return [(k, (v or b"").decode("utf-8", "replace")) for k, v in msg.headers() or []]
    except HeadersUnreadable as e:
        return str(e)


def _registered() -> set[str]:
    """The secrets registered in this process; of a URL registered whole (a Mongo URI), only its credentials."""
    with eslog._secrets_lock:
        values = list(eslog._secrets)
    out = set()
    for v in values:
        out |= {v[a:b] for a, b in eslog.url_secret_spans(v)} if "://" in v else {v}
    return {v for v in out if len(v) >= MIN_LENGTH}


def _masked(secret: str) -> str:
    return f"{secret[:2]}...({len(secret)} chars)"


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(eslog.LOG_TEE_ENV):  # a nested run: the outer one audits
        return
    path = Path(tempfile.mkdtemp(prefix="edgesight-audit-")) / "log-lines.jsonl"
    os.environ[eslog.LOG_TEE_ENV] = str(path)
    config.stash[_PATH] = path


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = session.config.stash.get(_PATH, None)
    if path is None or not path.exists():
        return
    found = scan(path, KNOWN_SECRETS | _registered())
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if found:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter is not None:
            reporter.write_line(f"secrets audit: {len(found)} secret(s) in the run's log lines ({path}):", red=True)
            for n, masked in found[:50]:
                reporter.write_line(f"  line {n}: {masked}", red=True)
    else:
        if reporter is not None:
            lines = sum(1 for _ in path.open(encoding="utf-8", errors="replace"))
            reporter.write_line(f"secrets audit: {lines} log lines of the run hold none of the known secrets")
        path.unlink()
        path.parent.rmdir()


_PATH = pytest.StashKey[Path]()
