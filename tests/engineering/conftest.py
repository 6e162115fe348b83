"""Helpers for the engineering/fleet tests: a per-test topic prefix + analytics DB on the session stack,
producing events, and running ``cloud-ops engineering|fleet run`` as a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from confluent_kafka import Producer

from cloud.config import CloudConfig
from edgesight.kafka import TopicSpec, ensure_topics
from edgesight.wire import Topics, dumps
from ops.testing.clients import kafka_link

REPO = Path(__file__).resolve().parents[2]
SESSION_MS = 6000  # Tansu completes a group join in ~half the session timeout


@dataclass
class Proc:
    p: subprocess.Popen
    log: Path

    def log_lines(self) -> list[dict]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines() if self.log.exists() else []:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        return out

    def assigned(self) -> list[int]:
        parts: list[int] = []
        for d in self.log_lines():
            if d.get("msg") == "partitions assigned":
                parts = d["partitions"]
        return parts


@dataclass
class Env:
    cfg: CloudConfig
    topics: Topics
    config_path: Path
    tmp: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def db(self):
        return self.cfg.mongo.client()[self.cfg.mongo.analytics_db]

    def produce(self, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
        p = Producer({**self.cfg.kafka.client_config(), "acks": "all", "enable.idempotence": True, "linger.ms": 5})
        errors = []
        for k, v in records:
            p.produce(topic, key=k, value=v, on_delivery=lambda e, m: errors.append(e) if e else None)
            p.poll(0)
        assert p.flush(30) == 0
        assert not errors, errors

    def produce_events(self, events) -> None:
        self.produce(self.topics.detections, [(f"{e.agent_id}/{e.camera_id}".encode(), dumps(e)) for e in events])

    def start(self, what: str, *args: str, name: str = "p") -> Proc:
        log = self.tmp / f"{what}-{name}-{time.monotonic_ns()}.log"
        cmd = [
            sys.executable,
            "-m",
            "ops.cli",
            what,
            "run",
            "--config",
            str(self.config_path),
            "--session-timeout-ms",
            str(SESSION_MS),
            *args,
        ]
        p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)
        self.procs.append(p)
        return Proc(p, log)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "ops.cli", *args, "--config", str(self.config_path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "200"},
        )


def wait_for(cond, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def env(stack, topic_prefix, tmp_path) -> Env:
    base = stack.config
    cfg = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"topic_prefix": topic_prefix, "session_timeout_ms": SESSION_MS}),
            "mongo": base.mongo.model_copy(update={"analytics_db": f"an_{topic_prefix}"}),
        }
    )
    doc = {
        "kafka": {
            **{k: str(v) for k, v in kafka_link(cfg.kafka).items()},  # address, TLS and the CA (no SASL here)
            "topic_prefix": topic_prefix,
            "session_timeout_ms": SESSION_MS,
        },
        "mongo": {"uri": cfg.mongo.uri.get_secret_value(), "analytics_db": cfg.mongo.analytics_db},
    }
    path = tmp_path / "cloud.yaml"
    path.write_text(yaml.safe_dump(doc))
    topics = Topics(topic_prefix)
    ensure_topics(cfg.kafka.client_config(), [TopicSpec(topics.detections, 2), TopicSpec(topics.status, 2)])
    e = Env(cfg, topics, path, tmp_path)
    yield e
    for p in e.procs:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(10)
    cfg.mongo.client().drop_database(cfg.mongo.analytics_db)
