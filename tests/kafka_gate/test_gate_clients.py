"""Real clients through haproxy (client certificates) and the gate to Tansu: what each identity may do."""

from __future__ import annotations

import socket
import ssl
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from ops.identities import IdentityStore
from tests.kafka_gate.conftest import ROLES, GateStack

pytestmark = pytest.mark.stack


def _produce(conf: dict[str, Any], topic: str, values: list[bytes], timeout_s: float = 15.0) -> list[KafkaError | None]:
    """Produce ``values``; the delivery report errors (None: acked), waiting at most ``timeout_s``."""
    results: list[KafkaError | None] = []
    p = Producer(conf | {"enable.idempotence": True, "message.timeout.ms": int(timeout_s * 1000)})
    for v in values:
        p.produce(topic, v, on_delivery=lambda err, msg: results.append(err))
    p.flush(timeout_s + 5)
    return results


def _consume(
    conf: dict[str, Any], topic: str, group: str, until: bytes | None, timeout_s: float = 20.0
) -> tuple[list[bytes], list[KafkaError]]:
    c = Consumer(
        conf
        | {
            "group.id": group,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
        }
    )
    c.subscribe([topic])
    got: list[bytes] = []
    errors: list[KafkaError] = []
    deadline = time.monotonic() + timeout_s
    try:
        while (until is None or until not in got) and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                errors.append(err)
                if err.code() in (KafkaError.GROUP_AUTHORIZATION_FAILED, KafkaError.TOPIC_AUTHORIZATION_FAILED):
                    break
                continue
            got.append(msg.value() or b"")
    except KafkaException as e:
        errors.append(e.args[0])
    finally:
        c.close()
    return got, errors


@pytest.fixture(scope="module")
def topics(gate_stack: GateStack) -> GateStack:
    admin = AdminClient(gate_stack.ssl_config("ops-1"))
    futures = admin.create_topics([NewTopic(gate_stack.topic(k), 1, 1) for k in ("detections", "dlq")])
    for f in futures.values():
        f.result(15)
    return gate_stack


def test_agent_produces_detections_but_not_dead_letters(topics: GateStack) -> None:
    gs = topics
    marker = uuid.uuid4().hex.encode()
    assert _produce(gs.ssl_config("agent-1"), gs.topic("detections"), [marker]) == [None]
    started = time.monotonic()
    errs = _produce(gs.ssl_config("agent-1"), gs.topic("dlq"), [b"forged"])
    assert [e.code() if e else None for e in errs] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    assert time.monotonic() - started < 10, "the refusal must come back at once, not as a timeout"
    got, _ = _consume(gs.ssl_config("ops-1"), gs.topic("detections"), f"ops-read-{marker.decode()}", marker)
    assert marker in got
    # The agent cannot consume detections: an authorization error and no record.
    got, errors = _consume(gs.ssl_config("agent-1"), gs.topic("detections"), "agent-snoop", None, timeout_s=12)
    assert got == []
    assert any(
        e.code() in (KafkaError.GROUP_AUTHORIZATION_FAILED, KafkaError.TOPIC_AUTHORIZATION_FAILED) for e in errors
    )
    assert '"request refused"' in gs.gate_lines()


def test_engineering_consumes_in_its_group_only_and_cannot_produce(topics: GateStack) -> None:
    gs = topics
    marker = uuid.uuid4().hex.encode()
    assert _produce(gs.ssl_config("agent-1"), gs.topic("detections"), [marker]) == [None]
    eng = gs.ssl_config("eng-1")
    got, errors = _consume(eng, gs.topic("detections"), "edgesight-engineering", marker)
    assert marker in got, errors
    errs = _produce(eng, gs.topic("detections"), [b"forged detection"])
    assert [e.code() if e else None for e in errs] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    got, errors = _consume(eng, gs.topic("detections"), "edgesight-fleet", None, timeout_s=12)
    assert got == []
    assert KafkaError.GROUP_AUTHORIZATION_FAILED in [e.code() for e in errors]


def _can_list_topics(conf: dict[str, Any], timeout_s: float = 4) -> bool:
    admin = AdminClient(conf | {"socket.timeout.ms": 3000})
    try:
        admin.list_topics(timeout=timeout_s)
        return True
    except KafkaException:
        return False


def test_revoked_identity_is_refused_and_disconnected(gate_stack: GateStack) -> None:
    gs = gate_stack
    conf = gs.ssl_config("revokee")
    assert _can_list_topics(conf)
    gs.write_acls({n: r for n, r in ROLES.items() if n != "revokee"})
    try:
        assert not _can_list_topics(conf, timeout_s=2)  # the file is re-read at each new connection
    finally:
        gs.write_acls(ROLES)
    assert '"identity":"revokee","reason":"not an identity of the ACL file"' in gs.gate_lines()
    assert _can_list_topics(gs.ssl_config("eng-1"))


def test_open_connection_of_a_revoked_identity_is_closed(gate_stack: GateStack) -> None:
    gs = gate_stack
    ctx = ssl.create_default_context(cafile=str(gs.store.ca_file))
    ctx.load_cert_chain(*gs.store.client_files("revokee"))
    raw = socket.create_connection(("127.0.0.1", gs.haproxy_port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(_api_versions_request())
        assert len(tls.recv(65536)) > 8
        gs.write_acls({n: r for n, r in ROLES.items() if n != "revokee"})
        try:
            tls.settimeout(8)
            assert tls.recv(1) == b""  # closed by the gate within its ~2 s ACL poll
        finally:
            gs.write_acls(ROLES)
    assert '"reason":"identity revoked"' in gs.gate_lines()


def _api_versions_request() -> bytes:
    body = (18).to_bytes(2, "big") + (0).to_bytes(2, "big") + (1).to_bytes(4, "big") + b"\x00\x04test"
    return len(body).to_bytes(4, "big") + body


def _tls_exchange(gs: GateStack, name: str | None, store: IdentityStore | None = None) -> bytes:
    """Send ApiVersions over TLS with ``name``'s certificate (None: none); what comes back before the close."""
    ctx = ssl.create_default_context(cafile=str(gs.store.ca_file))
    if name is not None:
        ctx.load_cert_chain(*(store or gs.store).client_files(name))
    raw = socket.create_connection(("127.0.0.1", gs.haproxy_port), timeout=5)
    try:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(_api_versions_request())
            return tls.recv(65536)
    except (ssl.SSLError, ConnectionError):
        return b""


def test_foreign_ca_no_certificate_and_identity_without_kafka_rights_are_refused(gate_stack: GateStack) -> None:
    gs = gate_stack
    assert len(_tls_exchange(gs, "eng-1")) > 8  # the same exchange with a good certificate gets an answer
    assert _tls_exchange(gs, "agent-1", gs.foreign) == b""  # haproxy: unknown CA
    assert _tls_exchange(gs, None) == b""  # haproxy: no certificate
    assert _tls_exchange(gs, "operator-1") == b""  # the gate: not in the ACL file
    assert '"identity":"operator-1","reason":"not an identity of the ACL file"' in gs.gate_lines()
    assert not _can_list_topics(gs.ssl_config("agent-1", store=gs.foreign), timeout_s=2)  # librdkafka alike


def test_kafka_python_produces_and_consumes_through_the_gate(topics: GateStack) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    gs = topics

    def ssl(name: str) -> dict[str, Any]:
        cert, key = gs.store.client_files(name)
        return {
            "bootstrap_servers": f"127.0.0.1:{gs.haproxy_port}",
            "security_protocol": "SSL",
            "ssl_cafile": str(gs.store.ca_file),
            "ssl_certfile": str(cert),
            "ssl_keyfile": str(key),
        }

    marker = uuid.uuid4().hex.encode()
    producer = KafkaProducer(**ssl("agent-1"))
    producer.send(gs.topic("detections"), marker).get(timeout=20)
    producer.close()
    consumer = KafkaConsumer(
        gs.topic("detections"),
        group_id="edgesight-engineering",
        auto_offset_reset="earliest",
        consumer_timeout_ms=20000,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        **ssl("eng-1"),
    )
    got = []
    try:
        for m in consumer:
            got.append(m.value)
            if m.value == marker:
                break
    finally:
        consumer.close()
    assert marker in got


def test_metrics(topics: GateStack) -> None:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{topics.metrics_port}/metrics", timeout=5).read().decode()
    assert 'edgesight_kafka_gate_connections_total{outcome="accepted"}' in text
    assert 'edgesight_kafka_gate_requests_total{api="Produce",verdict="refused"}' in text
    assert 'edgesight_kafka_gate_bytes_total{direction="to_broker"}' in text


def test_fetch_without_read_gets_topic_authorization_failed(topics: GateStack) -> None:
    """No group at all (assign): the agent's Fetch itself is refused with 29, and the consumer is told."""
    from confluent_kafka import TopicPartition

    c = Consumer(topics.ssl_config("agent-1") | {"group.id": "unused", "enable.auto.commit": False})
    c.assign([TopicPartition(topics.topic("detections"), 0, 0)])
    codes = []
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and KafkaError.TOPIC_AUTHORIZATION_FAILED not in codes:
            msg = c.poll(0.5)
            if msg is not None:
                err = msg.error()
                assert err is not None, "the agent read a record"
                codes.append(err.code())
    finally:
        c.close()
    assert KafkaError.TOPIC_AUTHORIZATION_FAILED in codes
    assert '"api":"Fetch"' in topics.gate_lines()


def test_mixed_batches_refuse_only_the_forbidden_topic(topics: GateStack) -> None:
    """librdkafka batches several topics into one Produce: the forbidden topic's records fail with 29, the others
    (answered with a retriable error in the refused request) are retried and acked, in order, exactly once."""
    gs = topics
    results: dict[str, list[int | None]] = {"ok": [], "dlq": []}
    p = Producer(gs.ssl_config("agent-1") | {"enable.idempotence": True, "linger.ms": 50, "message.timeout.ms": 20000})
    marker = uuid.uuid4().hex
    for i in range(40):
        p.produce(
            gs.topic("detections"),
            f"{marker}-{i}".encode(),
            on_delivery=lambda e, m: results["ok"].append(e.code() if e else None),
        )
        if i % 8 == 0:
            p.produce(gs.topic("dlq"), b"x", on_delivery=lambda e, m: results["dlq"].append(e.code() if e else None))
    p.flush(30)
    assert results["dlq"] == [KafkaError.TOPIC_AUTHORIZATION_FAILED] * 5
    assert results["ok"] == [None] * 40
    got, _ = _consume(gs.ssl_config("ops-1"), gs.topic("detections"), f"ops-{marker}", f"{marker}-39".encode())
    mine = [v for v in got if v.startswith(marker.encode())]
    assert mine == [f"{marker}-{i}".encode() for i in range(40)]
