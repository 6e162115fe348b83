"""Who may do what, against the real servers of a *secure* stack (issue #12; README "Who may do what").

The module starts its own stack in secure mode on free ports (``stack.secure``): mosquitto with a TLS listener,
the generated password and ACL files; SeaweedFS with per-identity actions; haproxy terminating TLS for Tansu.
The session stack (plain, shared login) is never touched. Every refusal is shown next to a positive control on
the same connection (a sentinel message that does arrive), so a test cannot pass because nothing works.
"""

from __future__ import annotations

import json
import ssl
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from typer.testing import CliRunner

from ops.identities import Issued
from ops.stack import Stack, free_ports
from ops.testing.secure import admin, agent_links, login, make_secure_stack, s3_client, uid
from ops.testing.secure import mqtt_connect as connect

pytestmark = [pytest.mark.stack, pytest.mark.timeout(300)]

ROOT = "edgesight"


@pytest.fixture(scope="module")
def secure(tmp_path_factory) -> Stack:
    st = make_secure_stack(tmp_path_factory.mktemp("secure"))
    st.up()
    yield st
    st.down()


@pytest.fixture(scope="module")
def ids(secure):
    assert secure.identities is not None
    return secure.identities


def test_agent_cannot_subscribe_to_everything(secure, ids):
    a, b = ids.add(uid("agent-a"), "agent", site="s1"), ids.add(uid("agent-b"), "agent", site="s1")
    secure.reload_identities()
    time.sleep(0.3)  # mosquitto re-reads its files on the next loop after SIGHUP
    ca, ops = login(secure, a), admin(secure)
    try:
        codes = ca.subscribe("#")
        own = ca.subscribe(f"{ROOT}/{a.identity.name}/cmd")
        assert own == [1], own
        ops.publish(f"{ROOT}/{b.identity.name}/cmd", b'{"secret":"camera password"}')
        ops.publish(f"{ROOT}/{b.identity.name}/status", b"b-status")
        ops.publish(f"{ROOT}/{a.identity.name}/cmd", b"sentinel")  # delivered after the two above, if at all
        ca.wait_for(f"{ROOT}/{a.identity.name}/cmd", b"sentinel")
        foreign = [t for t, _, _ in ca.got if not t.startswith(f"{ROOT}/{a.identity.name}/")]
        assert foreign == [], f"agent saw foreign topics {foreign} (SUBACK for '#': {codes})"
        # Mosquitto 2.0 grants the subscription itself (SUBACK 1) and checks the ACL on every delivery.
        assert codes in ([1], [128]), codes
    finally:
        ca.close()
        ops.close()


def test_agent_cannot_command_or_fake_another_agent(secure, ids):
    a, b = ids.add(uid("agent-a"), "agent", site="s1"), ids.add(uid("agent-b"), "agent", site="s1")
    secure.reload_identities()
    time.sleep(0.3)
    ca, cb, ops = login(secure, a), login(secure, b), admin(secure)
    b_cmd, b_status = f"{ROOT}/{b.identity.name}/cmd", f"{ROOT}/{b.identity.name}/status"
    try:
        assert cb.subscribe(b_cmd) == [1]
        ca.publish(b_cmd, b'{"command_id":"evil","action":"remove_camera","camera_id":"x"}')
        ops.publish(b_cmd, b"sentinel")
        cb.wait_for(b_cmd, b"sentinel")
        assert [p for _, p, _ in cb.got] == [b"sentinel"], "agent B received agent A's command"

        # Status: B's real retained status stays; A's retained fake is dropped by the broker.
        cb.publish(b_status, b"real", retain=True)
        ca.publish(b_status, b"fake", retain=True)
        ca.publish(f"{ROOT}/{b.identity.name}/camera/c1/status", b"fake", retain=True)
        ca.publish(f"{ROOT}/{a.identity.name}/status", b"a-own", retain=True)  # its own: allowed
        reader = admin(secure)
        try:
            reader.subscribe(f"{ROOT}/{b.identity.name}/#")
            reader.subscribe(f"{ROOT}/{a.identity.name}/status")
            reader.wait_for(f"{ROOT}/{a.identity.name}/status", b"a-own")
            reader.wait_for(b_status, b"real")
            assert all(p != b"fake" for _, p, _ in reader.got), reader.got
        finally:
            reader.close()
    finally:
        for c in (ca, cb, ops):
            c.close()


def test_operator_commands_and_reads_only_its_site(secure, ids):
    site = uid("site")
    mine, other = ids.add(uid("agent-m"), "agent", site=site), ids.add(uid("agent-o"), "agent", site=uid("site"))
    op = ids.add(uid("op"), "operator", site=site)
    secure.reload_identities()
    time.sleep(0.3)
    cm, co, cop, ops = login(secure, mine), login(secure, other), login(secure, op), admin(secure)
    m, o = mine.identity.name, other.identity.name
    try:
        assert cm.subscribe(f"{ROOT}/{m}/cmd") == [1]
        assert co.subscribe(f"{ROOT}/{o}/cmd") == [1]
        cop.publish(f"{ROOT}/{m}/cmd", b"op-to-mine")
        cop.publish(f"{ROOT}/{o}/cmd", b"op-to-other")
        cm.wait_for(f"{ROOT}/{m}/cmd", b"op-to-mine")
        ops.publish(f"{ROOT}/{o}/cmd", b"sentinel")
        co.wait_for(f"{ROOT}/{o}/cmd", b"sentinel")
        assert [p for _, p, _ in co.got] == [b"sentinel"], "the operator commanded an agent of another site"

        co.publish(f"{ROOT}/{o}/status", b"o-status", retain=True)
        cm.publish(f"{ROOT}/{m}/status", b"m-status", retain=True)
        cop.subscribe(f"{ROOT}/{o}/#")  # another site's agent (granted or not, nothing may arrive)
        cop.subscribe(f"{ROOT}/{m}/cmd")  # commands carry camera passwords: not readable by operators
        assert cop.subscribe(f"{ROOT}/{m}/status") == [1]
        assert cop.subscribe(f"{ROOT}/{m}/ack") == [1]
        cop.wait_for(f"{ROOT}/{m}/status", b"m-status")  # retained, delivered after any from the earlier subs
        ops.publish(f"{ROOT}/{m}/cmd", b"cmd-with-secret")
        ops.publish(f"{ROOT}/{o}/status", b"o-live")
        cm.publish(f"{ROOT}/{m}/ack", b"m-ack")
        cop.wait_for(f"{ROOT}/{m}/ack", b"m-ack")
        seen = [(t, p) for t, p, _ in cop.got]
        assert seen == [(f"{ROOT}/{m}/status", b"m-status"), (f"{ROOT}/{m}/ack", b"m-ack")], seen
    finally:
        for c in (cm, co, cop, ops):
            c.close()


def test_revoked_identity_is_refused_at_next_connect(secure, ids, tmp_path):
    from ops.cli import app

    name = uid("agent-r")
    out = tmp_path / "creds.json"
    runner = CliRunner()
    data_dir = str(secure.data_dir)
    r = runner.invoke(app, ["identities", "add-agent", name, "--site", "s9", "--out", str(out), "--data-dir", data_dir])
    assert r.exit_code == 0, r.output
    bundle = json.loads(out.read_text())
    assert out.stat().st_mode & 0o777 == 0o600
    assert bundle["mqtt"]["password"] not in r.output
    time.sleep(0.3)
    held, why = connect(secure, name, bundle["mqtt"]["password"])  # stays open across the revoke
    assert held is not None, why
    wrong, why = connect(secure, name, bundle["mqtt"]["password"] + "x")
    assert wrong is None and "refused" in why, why
    reader = admin(secure)
    status = f"{ROOT}/{name}/status"
    reader.subscribe(status)
    held.publish(status, b"before")
    reader.wait_for(status, b"before")

    r = runner.invoke(app, ["identities", "revoke", name, "--data-dir", data_dir])
    assert r.exit_code == 0, r.output
    assert "mqtt" in r.output  # the running broker was told to re-read its files
    # Mosquitto 2 re-checks the clients already connected when it reloads: the open connection is closed.
    assert held.disconnected.wait(10), "the revoked identity's open connection was kept"
    held.close()
    reader.close()
    deadline = time.monotonic() + 10
    while True:
        cl, why = connect(secure, name, bundle["mqtt"]["password"])
        if cl is None:
            break
        cl.close()
        assert time.monotonic() < deadline, "the revoked identity still connects"
        time.sleep(0.3)
    assert "refused" in why, why
    r = runner.invoke(app, ["identities", "list", "--json", "--data-dir", data_dir])
    assert r.exit_code == 0, r.output
    listed = {i["name"]: i for i in json.loads(r.output)}
    assert listed[name]["revoked_at"] and listed[name]["role"] == "agent", listed[name]


def test_client_that_does_not_trust_the_ca_is_refused(secure, ids):
    mq = secure.config.mqtt
    pw = mq.password.get_secret_value()
    # The system's CAs do not include the stack's: the TLS handshake fails before any login.
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(secure, mq.username, pw, context=ssl.create_default_context())
    # Plain MQTT to the TLS listener: no CONNACK.
    cl, why = connect(secure, mq.username, pw, tls=False)
    assert cl is None and why == "no CONNACK", why
    # The same login with the CA trusted works (positive control).
    cl, why = connect(secure, mq.username, pw)
    assert cl is not None, why
    cl.close()
    # Kafka: librdkafka over SSL without the CA is refused by the TLS proxy's handshake.
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    conf = secure.config.kafka.client_config()
    AdminClient(conf).list_topics(timeout=10)  # trusted: works
    untrusted = {k: v for k, v in conf.items() if k != "ssl.ca.location"}
    with pytest.raises(KafkaException):
        AdminClient({**untrusted, "socket.timeout.ms": 2000}).list_topics(timeout=4)


def test_s3_rights_per_identity(secure, ids):
    from botocore.exceptions import ClientError

    bucket, broker_bucket = secure.config.s3.keyframe_bucket, secure.settings.broker_bucket
    sink, eng = ids.add(uid("sink"), "sink"), ids.add(uid("eng"), "engineering")
    agent = ids.add(uid("agent-s"), "agent", site="s1")
    assert agent.identity.s3_access_key is None  # agents get no S3 identity at all
    secure.restart("s3")  # SeaweedFS reads -s3.config at start

    def client(access: str | None, secret: str | None, *, endpoint: str | None = None, verify=None):
        return s3_client(secure, access, secret, endpoint=endpoint, verify=verify)

    key = f"t/{uuid.uuid4().hex}.jpg"
    s = client(sink.identity.s3_access_key, sink.identity.s3_secret_key)
    s.put_object(Bucket=bucket, Key=key, Body=b"jpeg")  # the sink writes keyframes
    assert s.get_object(Bucket=bucket, Key=key)["Body"].read() == b"jpeg"
    e = client(eng.identity.s3_access_key, eng.identity.s3_secret_key)
    assert e.get_object(Bucket=bucket, Key=key)["Body"].read() == b"jpeg"  # engineering reads them

    def refused(call) -> str:
        with pytest.raises(ClientError) as exc:
            call()
        return exc.value.response["Error"]["Code"]

    assert refused(lambda: e.put_object(Bucket=bucket, Key=key + "x", Body=b"x")) == "AccessDenied"
    assert refused(lambda: s.put_object(Bucket=broker_bucket, Key="x", Body=b"x")) == "AccessDenied"
    # The agent: no credentials (anonymous) and its MQTT login used as S3 keys are both refused.
    anon = client(None, None)
    assert refused(lambda: anon.get_object(Bucket=bucket, Key=key)) == "AccessDenied"
    assert refused(lambda: anon.list_objects_v2(Bucket=bucket)) == "AccessDenied"
    stolen = client(agent.identity.name, agent.mqtt_password)
    assert refused(lambda: stolen.get_object(Bucket=bucket, Key=key)) in ("InvalidAccessKeyId", "AccessDenied")

    # S3 speaks TLS only: a client that does not trust the stack CA, or speaks plain HTTP, gets nothing.
    from botocore.exceptions import ConnectionClosedError, SSLError

    assert secure.s3_endpoint.startswith("https://")
    with pytest.raises(SSLError):
        client(sink.identity.s3_access_key, sink.identity.s3_secret_key, verify=True).list_objects_v2(Bucket=bucket)
    plain = secure.s3_endpoint.replace("https://", "http://")
    with pytest.raises(ConnectionClosedError):
        client(sink.identity.s3_access_key, sink.identity.s3_secret_key, endpoint=plain).list_objects_v2(Bucket=bucket)


def test_kafka_over_tls(secure):
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    conf = secure.config.kafka.client_config()
    assert conf["security.protocol"] == "SSL"
    topic = uid("tls")
    admin_client = AdminClient(conf)
    admin_client.create_topics([NewTopic(topic, 1, 1)])[topic].result(10)
    p = Producer({**conf, "acks": "all"})
    errors: list = []
    for i in range(20):
        p.produce(topic, f"m{i}".encode(), on_delivery=lambda err, _m: errors.append(err) if err else None)
    assert p.flush(15) == 0 and not errors
    c = Consumer({**conf, "group.id": uid("g"), "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    c.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(got) < 20 and time.monotonic() < deadline:
        m = c.poll(1)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    assert got == [f"m{i}".encode() for i in range(20)]


def test_real_agent_over_tls_with_its_own_login(secure, ids, model_dir, tmp_path):
    from edge_agent.agent import Agent
    from edge_agent.config import AgentConfig

    prefix = uid("t")
    issued = ids.add(uid("agent-real"), "agent", site="s1", client_cert=True, topic_prefix=prefix)
    op = ids.add(uid("op-real"), "operator", site="s1")
    secure.reload_identities()
    time.sleep(0.3)
    name = issued.identity.name
    links = agent_links(
        secure,
        name,
        issued.mqtt_password,
        tmp_path,
        topic_prefix=prefix,
        client_cert=(issued.cert_file, issued.key_file),
    )
    cfg = AgentConfig.model_validate(
        {
            "agent_id": name,
            "cameras": [],
            "inference": {"model_dir": str(model_dir), "variant": "int8", "intra_op_threads": 1},
            "publish": {"kafka": links["kafka"], "spool": {"dir": str(tmp_path / "spool"), "max_bytes": "256MiB"}},
            "control": links["control"],
            "metrics": {"enabled": False},
        }
    )
    agent = Agent(cfg).start()
    cop = login(secure, op)
    try:
        assert cop.subscribe(f"{ROOT}/{name}/ack") == [1]
        assert cop.subscribe(f"{ROOT}/{name}/status") == [1]
        with cop.cond:  # its retained status: the agent is connected over TLS with its own login
            assert cop.cond.wait_for(lambda: any(t.endswith("/status") for t, _, _ in cop.got), 20), cop.got
        cop.publish(
            f"{ROOT}/{name}/cmd", json.dumps({"command_id": "c-tls", "action": "stop_camera", "camera_id": "x"})
        )
        with cop.cond:
            assert cop.cond.wait_for(lambda: any(t.endswith("/ack") for t, _, _ in cop.got), 20), cop.got
            acks = [json.loads(p) for t, p, _ in cop.got if t.endswith("/ack")]
            statuses = [json.loads(p) for t, p, _ in cop.got if t.endswith("/status")]
        assert acks[0]["command_id"] == "c-tls" and acks[0]["ok"] is False and "unknown camera" in acks[0]["error"]
        assert statuses and statuses[-1]["agent_id"] == name  # its retained status, published under its ACL
    finally:
        cop.close()
        agent.stop(timeout=20)


def test_generated_files_are_private(secure, ids):
    for p in (ids.path, ids.mosquitto_passwd, ids.mosquitto_acl, ids.s3_config, ids.server_key):
        assert Path(p).stat().st_mode & 0o777 == 0o600, p
    passwd = ids.mosquitto_passwd.read_text()
    assert "$7$" in passwd and secure.config.mqtt.password.get_secret_value() not in passwd


def test_client_certificates_when_the_broker_requires_them(tmp_path):
    """``stack.mqtt_require_client_cert``: the TLS handshake needs a certificate of the stack CA, and the
    login is still checked (a certificate alone is not an identity)."""
    (plain_port,) = free_ports(1)
    st = make_secure_stack(tmp_path / "certs", mqtt_require_client_cert=True, mqtt_plain_port=plain_port)
    st.up(services=["mqtt"])  # the probe logs in with the stack-admin's certificate
    try:
        ids = st.identities
        with_cert = ids.add(uid("agent-cert"), "agent", site="s1", client_cert=True)
        without = ids.add(uid("agent-nocert"), "agent", site="s1")
        st.reload_identities()
        time.sleep(0.3)

        def context(issued: Issued | None) -> ssl.SSLContext:
            ctx = ssl.create_default_context(cafile=str(ids.ca_file))
            if issued is not None and issued.cert_file and issued.key_file:
                ctx.load_cert_chain(str(issued.cert_file), str(issued.key_file))
            return ctx

        cl, why = connect(st, with_cert.identity.name, with_cert.mqtt_password, context=context(with_cert))
        assert cl is not None, why
        cl.close()
        cl, why = connect(st, with_cert.identity.name, "not-the-password-0000", context=context(with_cert))
        assert cl is None and "refused" in why, why
        try:
            cl, why = connect(st, without.identity.name, without.mqtt_password, context=context(None))
        except (ssl.SSLError, OSError) as e:  # refused in the handshake (TLS 1.3: at the first read instead)
            why = f"handshake: {e}"
            cl = None
        assert cl is None, "a client without a certificate got in"

        # The plain listener exists only because the flag asked for it; the same logins and ACLs apply there.
        def plain(user: str, password: str) -> str:
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-plain-{uuid.uuid4().hex[:6]}")
            c.username_pw_set(user, password)
            got: list[str] = []
            c.on_connect = lambda _c, _u, _f, rc, _p: got.append("ok" if not rc.is_failure else "refused")
            c.connect(st.config.mqtt.host, plain_port, keepalive=10)
            deadline = time.monotonic() + 10
            while not got and time.monotonic() < deadline:
                c.loop(0.2)
            c.disconnect()
            return got[0] if got else "no CONNACK"

        assert plain(without.identity.name, without.mqtt_password) == "ok"
        assert plain(without.identity.name, "not-the-password-0000") == "refused"
    finally:
        st.down()
