"""Who may do what on Kafka (issue #12), against the session's secure stack: haproxy requires a client certificate
of the stack CA, and the gate (``ops.kafka_gate``) enforces each identity's rules (``ops.kafka_acls``, generated
into ``kafka-acls.json`` from the identity source). Real clients only: librdkafka (confluent-kafka) and kafka-python.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from edgesight.kafka import ensure_topics
from edgesight.kafka.topics import TopicSpec
from edgesight.wire import Topics
from ops.identities import Issued
from ops.testing.secure import issue_live, uid

pytestmark = [pytest.mark.stack, pytest.mark.timeout(240)]


@pytest.fixture
def prefix(stack: Any) -> str:
    if stack.identities is None:
        pytest.fail("the session stack must be secure (tests/conftest.py)")
    p = f"k{uuid.uuid4().hex[:8]}"
    t = Topics(p)
    specs = [
        TopicSpec(name, 1)
        for name in (t.detections, t.keyframes, t.status, f"{p}.dlq.engineering.v1", f"{p}.dlq.mongo-sink.v1")
    ]
    ensure_topics(stack.config.kafka.client_config(), specs)  # stack-admin: Kafka's super user
    return p


def conf_of(stack: Any, issued: Issued | None, **extra: Any) -> dict[str, Any]:
    """librdkafka settings of ``issued`` (its client certificate); None: TLS without a certificate."""
    conf = {
        "bootstrap.servers": stack.bootstrap,
        "security.protocol": "SSL",
        "ssl.ca.location": str(stack.identities.ca_file),
        "socket.timeout.ms": 5000,
        **extra,
    }
    if issued is not None:
        assert issued.cert_file and issued.key_file
        conf |= {"ssl.certificate.location": str(issued.cert_file), "ssl.key.location": str(issued.key_file)}
    return conf


def produce_one(conf: dict[str, Any], topic: str, value: bytes, timeout: float = 20) -> KafkaError | None:
    """Produce one record; the delivery report's error (None: acknowledged)."""
    got: list[Any] = []
    p = Producer({**conf, "message.timeout.ms": int(timeout * 1000), "acks": "all"})
    p.produce(topic, value, on_delivery=lambda err, _m: got.append(err))
    p.flush(timeout + 5)
    assert got, f"no delivery report for {topic} within {timeout + 5} s"
    return got[0]


def consume(conf: dict[str, Any], topic: str, group: str, seconds: float = 15) -> tuple[list[bytes], list[str]]:
    """Read ``topic`` in ``group`` for up to ``seconds``: the values read and the errors seen."""
    errors: list[str] = []
    c = Consumer(
        {
            **conf,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,  # a Tansu group join takes about half of it
            "error_cb": lambda e: errors.append(str(e)),
        }
    )
    c.subscribe([topic], on_assign=lambda *_: None)
    values: list[bytes] = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and not values:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                errors.append(str(m.error()))
                if m.error().code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED):
                    break
                continue
            values.append(m.value())
    finally:
        c.close()
    return values, errors


def test_each_identity_gets_only_its_role_s_rights(stack: Any, prefix: str) -> None:
    t = Topics(prefix)
    agent = issue_live(stack, uid("agent-k"), "agent", site="kafka", topic_prefix=prefix)
    eng = issue_live(stack, uid("eng-k"), "engineering", topic_prefix=prefix)
    other_prefix_agent = issue_live(stack, uid("agent-x"), "agent", site="kafka", topic_prefix=f"{prefix}x")
    marker = uuid.uuid4().hex.encode()

    # The agent produces to its edge topics...
    assert produce_one(conf_of(stack, agent), t.detections, marker) is None
    # ...and nothing else: a dead-letter topic, or the edge topics of another deployment's prefix.
    err = produce_one(conf_of(stack, agent), f"{prefix}.dlq.engineering.v1", b"x")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    err = produce_one(conf_of(stack, other_prefix_agent), t.detections, b"x")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    # It cannot read detections (it produces them; reading is the cloud's).
    values, errors = consume(conf_of(stack, agent), t.detections, "edgesight-engineering")
    assert values == [] and errors, "the agent read the detections topic"

    # Engineering reads detections in its own group, and cannot write them.
    values, errors = consume(conf_of(stack, eng), t.detections, "edgesight-engineering")
    assert values == [marker], errors
    err = produce_one(conf_of(stack, eng), t.detections, b"forged")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    # Another group is refused.
    values, errors = consume(conf_of(stack, eng), t.detections, uid("not-its-group"))
    assert values == [] and errors, "engineering read in a group it has no right to"

    # Nothing forged arrived: stack-admin reads back exactly the agent's record.
    values, _ = consume(stack.config.kafka.client_config(), t.detections, uid("admin"))
    assert values == [marker]


def test_revoked_identity_is_refused_at_its_next_connect(stack: Any, prefix: str) -> None:
    t = Topics(prefix)
    agent = issue_live(stack, uid("agent-r"), "agent", site="kafka", topic_prefix=prefix)
    assert produce_one(conf_of(stack, agent), t.detections, b"before") is None
    cert, key = Path(str(agent.cert_file)).read_bytes(), Path(str(agent.key_file)).read_bytes()
    stack.identities.revoke(agent.identity.name)
    stack.reload_identities()
    # The revoked agent still holds its certificate (revoke deletes the store's copy; the agent has its own).
    kept = Path(str(agent.cert_file)).with_suffix(".kept.pem"), Path(str(agent.key_file)).with_suffix(".kept.key")
    kept[0].write_bytes(cert)
    kept[1].write_bytes(key)
    conf = {
        **conf_of(stack, None),
        "ssl.certificate.location": str(kept[0]),
        "ssl.key.location": str(kept[1]),
    }
    err = produce_one(conf, t.detections, b"after", timeout=8)
    assert err is not None, "a revoked identity's record was acknowledged"
    values, _ = consume(stack.config.kafka.client_config(), t.detections, uid("admin"))
    assert values == [b"before"]


def test_a_client_without_a_certificate_of_the_stack_ca_is_refused(stack: Any, prefix: str, tmp_path: Path) -> None:
    from ops.identities import IdentityStore

    t = Topics(prefix)

    def refused(conf: dict[str, Any]) -> str:
        errors: list[str] = []
        p = Producer({**conf, "error_cb": lambda e: errors.append(str(e))})
        with pytest.raises(KafkaException):
            p.list_topics(timeout=5)
        p.poll(1)  # serves the error callbacks
        return " | ".join(errors)

    # TLS that trusts the stack CA but presents no certificate: haproxy ends the handshake.
    assert "certificate required" in refused(conf_of(stack, None))
    # A certificate with the name of a real identity (the stack's super user), signed by another CA.
    foreign = IdentityStore(tmp_path / "foreign").add("stack-admin", "ops")
    why = refused(conf_of(stack, foreign))
    assert "alert" in why and ("decrypt error" in why or "unknown ca" in why), why
    values, _ = consume(stack.config.kafka.client_config(), t.detections, uid("admin"), seconds=3)
    assert values == []


def test_kafka_python_works_through_the_gate_for_an_allowed_identity(stack: Any, prefix: str) -> None:
    """An independent client implementation (kafka-python) with an agent's certificate: produce allowed."""
    from kafka import KafkaProducer

    t = Topics(prefix)
    agent = issue_live(stack, uid("agent-p"), "agent", site="kafka", topic_prefix=prefix)
    kp = KafkaProducer(
        bootstrap_servers=stack.bootstrap,
        security_protocol="SSL",
        ssl_cafile=str(stack.identities.ca_file),
        ssl_certfile=str(agent.cert_file),
        ssl_keyfile=str(agent.key_file),
        acks="all",
    )
    try:
        md = kp.send(t.status, b"from-kafka-python").get(timeout=20)
        assert md.topic == t.status
    finally:
        kp.close(5)
    values, _ = consume(stack.config.kafka.client_config(), t.status, uid("admin"))
    assert values == [b"from-kafka-python"]
