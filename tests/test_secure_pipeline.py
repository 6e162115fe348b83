"""The full pipeline over TLS with per-identity credentials, on a secure stack of its own (issue #12).

Identities come from the real CLI (``cloud-ops identities add-*``) before the stack starts, so SeaweedFS has
them from its first start. Then: a real edge agent (vtest.avi, INT8 detector) publishes to Kafka over SSL
(haproxy's TLS port, the stack CA) and is commanded over MQTT/TLS with its own login; the connector runner
(MongoDB + S3 sinks; S3 over HTTPS with the sink's keys) and the engineering consumer read over SSL. The
results are read back with ordinary clients: detections in MongoDB, keyframes in S3 (engineering's keys),
analytics. A Kafka client that does not trust the CA is refused in the handshake.

Not covered here because the embedded broker cannot do it (README "Who may do what"): SASL/SCRAM and topic
ACLs on Kafka (Tansu 0.6); MongoDB authentication/TLS (nx-27017).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from edgesight import samples
from edgesight.wire import Topics
from ops.identities import kafka_login
from ops.stack import Stack
from ops.testing.secure import agent_links, issue, make_secure_stack, mqtt_connect, s3_client, uid
from tests.cloud import wait_for

pytestmark = [pytest.mark.stack, pytest.mark.timeout(300)]

ROOT = "edgesight"


@pytest.fixture
def secure_stack(tmp_path) -> Stack:
    st = make_secure_stack(tmp_path / "stack")
    yield st
    st.down()


def _agent_config(st: Stack, tmp: Path, bundle: dict, prefix: str, model_dir: Path):
    from edge_agent.config import AgentConfig

    name = bundle["name"]
    ca = tmp / "agent-ca.pem"  # the CA as handed out in the agent's credentials file
    ca.write_text(bundle["ca_pem"])
    links = agent_links(st, name, bundle["mqtt"]["password"], tmp, ca_file=ca, topic_prefix=prefix)
    links["kafka"].update(kafka_login(bundle, tmp))  # its Kafka login: the certificate of its credentials file
    return AgentConfig.model_validate(
        {
            "agent_id": name,
            "cameras": [
                {
                    "id": "cam-file",
                    "url": str(samples.VTEST),
                    "loop": True,
                    "target_fps": 5,
                    "lines": [{"name": "mid", "start": [550, 110], "end": [550, 470]}],
                }
            ],
            "inference": {
                "model_dir": str(model_dir),
                "variant": "int8",
                "classes": ["person"],
                "intra_op_threads": 1,
            },
            "tracking": {"update_interval_s": 0.0, "tracker": {"frame_rate": 5}},
            "publish": {
                "kafka": links["kafka"],  # SSL to haproxy's TLS port
                "spool": {"dir": str(tmp / "spool"), "max_bytes": "256MiB"},
                "keyframes": {"interval_s": 2},
            },
            "control": links["control"],  # MQTT over TLS with the agent's own login (password file 0600)
            "metrics": {"enabled": False},
            "pipeline": {"heartbeat_interval_s": 2},
        }
    )


def test_pipeline_over_tls_with_per_identity_credentials(secure_stack, model_dir, tmp_path, monkeypatch):
    from confluent_kafka import Consumer, KafkaException

    from cloud.engineering.engineering import build_engineering
    from cloud.engineering.settings import EngineeringConfig
    from cloud.warehouse import Names, Warehouse, WarehouseConfig, init_warehouse
    from connectors.runner import ConnectorRunner
    from connectors.spec import load_connector, variables
    from edge_agent.agent import Agent
    from edgesight.kafka import ensure_topics

    st = secure_stack
    ids = st.identities
    assert ids is not None
    site, agent_id = uid("site"), uid("gate")
    prefix = f"t{uuid.uuid4().hex[:8]}"  # the Kafka rules' topic prefix; also the warehouse's collection prefix
    agent_b = issue(st, "agent", agent_id, tmp_path / "agent.json", "--site", site, "--topic-prefix", prefix)
    op_b = issue(st, "operator", uid("tui"), tmp_path / "op.json", "--site", site)
    sink_b = issue(st, "service", uid("sink"), tmp_path / "sink.json", "--role", "sink", "--topic-prefix", prefix)
    eng_b = issue(st, "service", uid("eng"), tmp_path / "eng.json", "--role", "engineering", "--topic-prefix", prefix)
    assert "s3" not in agent_b and agent_b["ca_pem"] == ids.ca_file.read_text()
    assert "kafka" not in op_b  # an operator has no Kafka right, so no Kafka login
    st.up()  # SeaweedFS starts with the sink's and engineering's S3 identities

    kafka = st.config.kafka.model_copy(update={"topic_prefix": prefix, "session_timeout_ms": 6000})
    assert kafka.security_protocol == "SSL" and kafka.ssl_ca_location == ids.ca_file
    admin = st.config.model_copy(update={"kafka": kafka})  # stack-admin (Kafka's super user): creates the topics
    assert st.s3_endpoint.startswith("https://")
    # The sink connector's own S3 identity (not the stack's admin keys). Kafka Connect's S3 sink trusts the
    # JVM's store; the Python runner's boto3 clients trust the cloud config's s3.ca_file (no AWS_CA_BUNDLE).
    sink_s3 = st.config.s3.model_copy(
        update={"access_key": sink_b["s3"]["access_key"], "secret_key": SecretStr(sink_b["s3"]["secret_key"])}
    )
    assert sink_s3.ca_file == ids.ca_file
    # Every consumer speaks Kafka as itself: its client certificate, the gate enforcing its role's rules.
    cfg = st.config.model_copy(update={"kafka": kafka.model_copy(update=kafka_login(sink_b, tmp_path)), "s3": sink_s3})
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)

    wh = WarehouseConfig(collection_prefix=f"{prefix}_")
    mongo = cfg.mongo.client()
    init_warehouse(mongo, cfg.mongo.warehouse_db, wh)
    w = Warehouse.from_config(cfg, wh)
    v = variables(cfg, collection_prefix=wh.collection_prefix, name_prefix=f"{prefix}-")
    runner = ConnectorRunner(
        [load_connector(n, v) for n in ("mongo-sink-detections", "s3-sink-keyframes")],
        cfg,
        tasks=1,
        warehouse=(mongo, cfg.mongo.warehouse_db, Names(wh.collection_prefix).keyframes),
    )
    ensure_topics(admin.kafka.client_config(), runner.wanted_topics())
    runner.start()

    agent = Agent(_agent_config(st, tmp_path, agent_b, prefix, model_dir)).start()
    op, why = mqtt_connect(st, op_b["name"], op_b["mqtt"]["password"])
    assert op is not None, f"the operator could not log in: {why}"
    try:
        assert op.subscribe(f"{ROOT}/{agent_id}/ack") == [1]
        wait_for(lambda: w.count() >= 5 and w.keyframes.count_documents({}) >= 1, 90, "detections and keyframes")
        # The site's operator commands the agent over MQTT/TLS; the agent answers under its own ACL.
        cmd = {"command_id": "op-fps", "action": "set_fps", "camera_id": "cam-file", "fps": 4}
        op.publish(f"{ROOT}/{agent_id}/cmd", json.dumps(cmd))
        with op.cond:
            assert op.cond.wait_for(lambda: any(t.endswith("/ack") for t, _, _ in op.got), 20), op.got
            ack = json.loads(next(p for t, p, _ in op.got if t.endswith("/ack")))
        assert ack["command_id"] == "op-fps" and ack["ok"] is True and ack["result"]["target_fps"] == 4, ack
    finally:
        op.close()
        agent.stop(timeout=30)  # ends every live track
    assert agent.status_doc()["publisher"]["by_topic"]["detections"]["accepted"] >= 5
    try:
        wait_for(lambda: w.detections.count_documents({"kind": "end"}) >= 1, 30, "the end events in MongoDB")
    finally:
        assert runner.stop(60), "runner did not stop"
    assert runner.errors() == []

    # Detections in MongoDB, from this agent.
    docs = list(w.detections.find({}))
    assert docs and {d["agent_id"] for d in docs} == {agent_id} and {d["camera_id"] for d in docs} == {"cam-file"}
    # Keyframes in S3, read back over HTTPS with engineering's (read-only) keys and the sink's.
    index = list(w.keyframes.find({}))
    assert index
    eng_s3 = s3_client(st, eng_b["s3"]["access_key"], eng_b["s3"]["secret_key"])
    sink_client = s3_client(st, sink_b["s3"]["access_key"], sink_b["s3"]["secret_key"])
    for doc in index[:3]:
        body = eng_s3.get_object(Bucket=cfg.s3.keyframe_bucket, Key=doc["s3_key"])["Body"].read()
        assert body[:3] == b"\xff\xd8\xff" and hashlib.sha256(body).hexdigest() == doc["sha256"]
        assert sink_client.head_object(Bucket=cfg.s3.keyframe_bucket, Key=doc["s3_key"])["ContentLength"] == len(body)

    # Analytics: the engineering consumer over SSL.
    eng = EngineeringConfig(group_id="edgesight-engineering", session_timeout_ms=6000, batch_timeout_s=0.2)
    eng_cfg = cfg.model_copy(update={"kafka": kafka.model_copy(update=kafka_login(eng_b, tmp_path))})
    build_engineering(eng_cfg, eng).run(until_idle_s=3.0, max_seconds=60)
    an = mongo[cfg.mongo.analytics_db]
    tracks = an["tracks"].count_documents({"agent_id": agent_id})
    counts = an["counts_minute"].count_documents({"camera_id": "cam-file"})
    assert tracks >= 1 and counts >= 1, (tracks, counts, an.list_collection_names())
    mongo.close()

    # A Kafka client that does not trust the stack CA is refused in the TLS handshake (positive control: the
    # same settings with the CA read the detections topic).
    conf = {**admin.kafka.client_config(), "group.id": uid("g"), "auto.offset.reset": "earliest"}
    topic = Topics(prefix).detections
    trusted = Consumer(conf)
    assert topic in trusted.list_topics(timeout=10).topics
    trusted.close()
    untrusted = {k: val for k, val in conf.items() if k != "ssl.ca.location"}
    seen: list[str] = []
    c = Consumer({**untrusted, "socket.timeout.ms": 2000, "error_cb": lambda e: seen.append(str(e))})
    try:
        with pytest.raises(KafkaException):
            c.list_topics(timeout=4)
    finally:
        c.close()
    assert any("SSL handshake failed" in e and "certificate verify failed" in e for e in seen), seen
