"""What the gate costs (slow, a measurement): 1 KB records produced (idempotent, acks=all) and consumed with
confluent-kafka against three Tansu brokers of the same run: plain TCP, haproxy TLS -> Tansu, and haproxy TLS
(client certificates) -> gate -> Tansu. Each broker advertises the address its clients use. Prints the table;
asserts only that every record made it. ``GATE_BENCH_RECORDS`` / ``GATE_BENCH_SIZE`` change the run (keyframe-sized
records: ``GATE_BENCH_RECORDS=3000 GATE_BENCH_SIZE=100000``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from ops.identities import IdentityStore
from ops.kafka_gate import role_acls, write_acl_file
from ops.stack import find_binary, free_ports
from tests.kafka_gate.conftest import wait_port

pytestmark = [pytest.mark.slow, pytest.mark.stack]

RECORDS = int(os.environ.get("GATE_BENCH_RECORDS", "30000"))
SIZE = int(os.environ.get("GATE_BENCH_SIZE", "1024"))


def _tansu(port: int, advertised: int) -> list[str]:
    return [
        find_binary("kafka"),
        "broker",
        "--listener-url",
        f"tcp://127.0.0.1:{port}",
        "--advertised-listener-url",
        f"tcp://127.0.0.1:{advertised}",
        "--storage-engine",
        "memory://tansu/",
    ]


def _haproxy(path: Path, store: IdentityStore, listen: int, backend: int, *, gate: bool) -> Path:
    verify = f" ca-file {store.ca_file} verify required" if gate else ""
    server = f"  server s 127.0.0.1:{backend}" + (" send-proxy-v2-ssl-cn" if gate else "")
    path.write_text(
        "\n".join(
            [
                "defaults",
                "  mode tcp",
                "  timeout connect 5s",
                "  timeout client 1h",
                "  timeout server 1h",
                "frontend f",
                f"  bind 127.0.0.1:{listen} ssl crt {store.server_bundle}{verify}",
                "  default_backend b",
                "backend b",
                server,
            ]
        )
        + "\n"
    )
    return path


def _run(conf: dict[str, Any]) -> tuple[float, float]:
    topic = f"tp.{uuid.uuid4().hex[:8]}"
    value = b"x" * SIZE
    acked = 0

    def delivered(err: object, msg: object) -> None:
        nonlocal acked
        acked += err is None

    p = Producer(conf | {"enable.idempotence": True, "linger.ms": 5})
    started = time.perf_counter()
    for _ in range(RECORDS):
        while True:
            try:
                p.produce(topic, value, on_delivery=delivered)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    p.flush(120)
    produce_s = time.perf_counter() - started
    assert acked == RECORDS
    c = Consumer(conf | {"group.id": f"g-{topic}", "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    c.subscribe([topic])
    got = 0
    started = 0.0
    deadline = time.monotonic() + 120
    while got < RECORDS and time.monotonic() < deadline:
        msgs = c.consume(1000, 0.5)
        if msgs and not started:
            started = time.perf_counter()
        got += sum(1 for m in msgs if m.error() is None)
    consume_s = time.perf_counter() - started
    c.close()
    assert got >= RECORDS
    return RECORDS / produce_s, RECORDS / consume_s


def test_gate_forwarding_overhead(tmp_path: Path) -> None:
    store = IdentityStore(tmp_path / "ids")
    store.add("ops-1", "ops", client_cert=True)
    acl = tmp_path / "acls.json"
    write_acl_file(acl, role_acls({"ops-1": "ops"}, prefix="tp", connect="edgesight-connect"))
    t1, t2, h2, t3, g3, h3 = free_ports(6)
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    procs = []
    try:
        for argv, port in [
            (_tansu(t1, t1), t1),
            (_tansu(t2, h2), t2),
            ([haproxy, "-db", "-f", str(_haproxy(tmp_path / "h2.cfg", store, h2, t2, gate=False))], h2),
            (_tansu(t3, h3), t3),
            (
                [sys.executable, "-m", "ops.kafka_gate", "--listen", f"127.0.0.1:{g3}"]
                + ["--upstream", f"127.0.0.1:{t3}", "--acls", str(acl), "--log-level", "warning"],
                g3,
            ),
            ([haproxy, "-db", "-f", str(_haproxy(tmp_path / "h3.cfg", store, h3, g3, gate=True))], h3),
        ]:
            procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_port(port, procs[-1])
        cert, key = store.client_files("ops-1")
        tls = {"security.protocol": "SSL", "ssl.ca.location": str(store.ca_file)}
        rows = {
            "plain -> tansu": _run({"bootstrap.servers": f"127.0.0.1:{t1}"}),
            "haproxy TLS -> tansu": _run({"bootstrap.servers": f"127.0.0.1:{h2}"} | tls),
            "haproxy mTLS -> gate -> tansu": _run(
                {
                    "bootstrap.servers": f"127.0.0.1:{h3}",
                    "ssl.certificate.location": str(cert),
                    "ssl.key.location": str(key),
                }
                | tls
            ),
        }
        print(f"\n{RECORDS} records of {SIZE} B (msg/s)   produce   consume")
        for name, (prod, cons) in rows.items():
            print(f"{name:32s} {prod:9.0f} {cons:9.0f}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
