"""Real servers for the gate's tests: Tansu, the gate (``python -m ops.kafka_gate``) and haproxy requiring client
certificates of a CA made by :class:`ops.identities.IdentityStore`, all on free 127.0.0.1 ports.

Identities: ``agent-1`` (agent), ``eng-1`` (engineering), ``ops-1`` (ops), ``revokee`` (engineering, removed
from the ACL file by the revocation test) and ``operator-1`` (operator: no Kafka right, so not in the file).
``foreign`` is a second store (another CA) issuing a certificate for ``agent-1``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ops.identities import IdentityStore
from ops.kafka_gate import role_acls, write_acl_file
from ops.stack import find_binary, free_ports

PREFIX = "gt"
ROLES = {"agent-1": "agent", "eng-1": "engineering", "ops-1": "ops", "revokee": "engineering", "operator-1": "operator"}


@dataclass
class GateStack:
    store: IdentityStore
    foreign: IdentityStore
    acl_file: Path
    tansu_port: int
    gate_port: int
    haproxy_port: int
    metrics_port: int
    gate_log: Path
    gate: subprocess.Popen[bytes]

    def ssl_config(self, name: str | None, *, store: IdentityStore | None = None) -> dict[str, Any]:
        """confluent-kafka settings for identity ``name`` (None: no client certificate)."""
        conf: dict[str, Any] = {
            "bootstrap.servers": f"127.0.0.1:{self.haproxy_port}",
            "security.protocol": "SSL",
            "ssl.ca.location": str(self.store.ca_file),
        }
        if name is not None:
            cert, key = (store or self.store).client_files(name)
            conf |= {"ssl.certificate.location": str(cert), "ssl.key.location": str(key)}
        return conf

    def topic(self, kind: str) -> str:
        return {"detections": f"{PREFIX}.detections.v1", "dlq": f"{PREFIX}.dlq.engineering.v1"}[kind]

    def write_acls(self, roles: dict[str, str]) -> None:
        write_acl_file(self.acl_file, role_acls(roles, prefix=PREFIX, connect="gt-connect"))

    def gate_lines(self) -> str:
        return self.gate_log.read_text(errors="replace")


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} not listening")


def haproxy_conf(path: Path, store: IdentityStore, listen: int, gate: int) -> Path:
    path.write_text(
        "\n".join(
            [
                "global",
                "  log stdout format raw local0 warning",
                "defaults",
                "  mode tcp",
                "  log global",
                "  timeout connect 5s",
                "  timeout client 1h",
                "  timeout server 1h",
                "frontend kafka_tls",
                f"  bind 127.0.0.1:{listen} ssl crt {store.server_bundle} ca-file {store.ca_file} verify required"
                " ssl-min-ver TLSv1.2",
                "  default_backend gate",
                "backend gate",
                f"  server gate 127.0.0.1:{gate} send-proxy-v2-ssl-cn",
            ]
        )
        + "\n"
    )
    return path


@pytest.fixture(scope="session")
def gate_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateStack]:
    d = tmp_path_factory.mktemp("gate")
    store = IdentityStore(d / "ids")
    for name, role in ROLES.items():
        store.add(name, role, site="site-a" if role in ("agent", "operator") else None, client_cert=True)
    foreign = IdentityStore(d / "foreign")
    foreign.add("agent-1", "agent", site="site-a", client_cert=True)
    tansu_port, gate_port, haproxy_port, metrics_port = free_ports(4)
    acl_file = d / "kafka-acls.json"
    procs: list[subprocess.Popen[bytes]] = []
    logs = d / "logs"
    logs.mkdir()

    def start(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with open(logs / f"{name}.log", "ab") as fh:
            p = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        procs.append(p)
        return p

    try:
        tansu = start(
            "tansu",
            [
                find_binary("kafka"),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{tansu_port}",
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{haproxy_port}",
                "--storage-engine",
                "memory://tansu/",
            ],
        )
        wait_port(tansu_port, tansu)
        write_acl_file(acl_file, role_acls(ROLES, prefix=PREFIX, connect="gt-connect"))
        gate = start(
            "gate",
            [
                sys.executable,
                "-m",
                "ops.kafka_gate",
                "--listen",
                f"127.0.0.1:{gate_port}",
                "--upstream",
                f"127.0.0.1:{tansu_port}",
                "--acls",
                str(acl_file),
                "--metrics-port",
                str(metrics_port),
            ],
        )
        wait_port(gate_port, gate)
        conf = haproxy_conf(d / "haproxy.cfg", store, haproxy_port, gate_port)
        haproxy = start("haproxy", [shutil.which("haproxy") or "/usr/sbin/haproxy", "-f", str(conf), "-db"])
        wait_port(haproxy_port, haproxy)
        yield GateStack(
            store, foreign, acl_file, tansu_port, gate_port, haproxy_port, metrics_port, logs / "gate.log", gate
        )
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
