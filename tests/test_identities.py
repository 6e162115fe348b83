"""The identity source and what is generated from it (no server needed; tests/test_security_mqtt.py runs
the generated files in real servers): Mosquitto hashes and ACLs, SeaweedFS identities, certificates, the
client TLS settings, ``cloud-ops identities`` and ``edge-agent install --credentials``."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from edgesight.mqtt import MqttConnectionConfig, check_password
from ops.identities import IdentityError, IdentityStore, mosquitto_hash, verify_mosquitto_hash


@pytest.fixture
def store(tmp_path) -> IdentityStore:
    return IdentityStore(tmp_path / "ids", keyframe_bucket="kf-bucket")


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto-clients not installed")
def test_hash_is_mosquittos_own_format(tmp_path):
    f = tmp_path / "pw"
    f.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(f), "u", "a-password-of-some-length"], check=True)
    theirs = f.read_text().strip().split(":", 1)[1]
    assert verify_mosquitto_hash("a-password-of-some-length", theirs)
    assert not verify_mosquitto_hash("another-password-entirely", theirs)
    mine = mosquitto_hash("pw-pw-pw-pw-pw-pw")
    assert mine.startswith("$7$20000$") and verify_mosquitto_hash("pw-pw-pw-pw-pw-pw", mine)


def test_acl_gives_each_role_its_topics_only(store):
    a1 = store.add("cam-box-1", "agent", site="north")
    store.add("cam-box-2", "agent", site="north")
    store.add("cam-box-9", "agent", site="south")
    store.add("op-north", "operator", site="north")
    store.add("sink-1", "sink")
    acl = store.mosquitto_acl.read_text()
    blocks = {b.split("\n")[0]: b.split("\n")[1:] for b in acl.split("\n\n") if b.startswith("user ")}
    assert blocks["user cam-box-1"] == [
        "topic read edgesight/cam-box-1/cmd",
        "topic write edgesight/cam-box-1/status",
        "topic write edgesight/cam-box-1/ack",
        "topic write edgesight/cam-box-1/camera/#",
    ]
    op = blocks["user op-north"]
    assert "topic write edgesight/cam-box-1/cmd" in op and "topic write edgesight/cam-box-2/cmd" in op
    assert not any("cam-box-9" in line for line in op)  # another site
    assert not any(line.startswith("topic read") and line.endswith("/cmd") for line in op)  # commands unreadable
    assert "user sink-1" not in blocks  # services have no MQTT rights at all
    assert not any("#" == line.split()[-1] for b in blocks.values() for line in b)  # nobody but ops has '#'
    passwd = dict(line.split(":", 1) for line in store.mosquitto_passwd.read_text().splitlines())
    assert set(passwd) == {"cam-box-1", "cam-box-2", "cam-box-9", "op-north"}
    assert verify_mosquitto_hash(a1.mqtt_password, passwd["cam-box-1"])
    assert a1.mqtt_password not in store.path.read_text()  # the source keeps the hash only

    s3 = json.loads(store.s3_config.read_text())["identities"]
    assert [(i["name"], i["actions"]) for i in s3] == [
        ("sink-1", ["Read:kf-bucket", "Write:kf-bucket", "List:kf-bucket"])
    ]
    for p in (store.path, store.mosquitto_passwd, store.mosquitto_acl, store.s3_config, store.dir / "ca" / "ca.key"):
        assert p.stat().st_mode & 0o777 == 0o600, p


def test_revoke_removes_every_right_and_names_are_not_reused(store):
    store.add("box-1", "agent", site="s")
    store.add("op-1", "operator", site="s")
    store.add("eng-1", "engineering")
    store.revoke("box-1")
    store.revoke("eng-1")
    assert "box-1" not in store.mosquitto_passwd.read_text()
    assert "box-1" not in store.mosquitto_acl.read_text()  # not even in the operator's block
    assert json.loads(store.s3_config.read_text())["identities"] == []
    with pytest.raises(IdentityError, match="names are not reused"):
        store.add("box-1", "agent", site="s")
    assert store.revoke("box-1").revoked_at  # idempotent


@pytest.mark.parametrize(
    ("name", "role", "site", "error"),
    [
        ("a/b", "agent", "s", "must match"),
        ("#", "agent", "s", "must match"),
        ("x y", "agent", "s", "must match"),
        ("box", "agent", None, "needs a site"),
        ("box", "agent", "s/1", "needs a site"),
        ("svc", "sink", "s", "has no site"),
        ("svc", "root", None, "role 'root'"),
    ],
)
def test_bad_identities_are_refused(store, name, role, site, error):
    with pytest.raises(IdentityError, match=error):
        store.add(name, role, site=site)


def test_certificates_chain_to_the_ca(store):
    from cryptography import x509

    issued = store.add("box-c", "agent", site="s", client_cert=True)
    ca = x509.load_pem_x509_certificate(store.ca_file.read_bytes())
    server = x509.load_pem_x509_certificate(store.server_cert.read_bytes())
    client = x509.load_pem_x509_certificate(issued.cert_file.read_bytes())
    server.verify_directly_issued_by(ca)
    client.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)][:1] == ["127.0.0.1"]
    assert client.subject.rfc4514_string() == "CN=box-c"
    assert issued.key_file.stat().st_mode & 0o777 == 0o600
    # The client side loads them as they are (ca_file + client certificate).
    cfg = MqttConnectionConfig(tls=True, ca_file=store.ca_file, cert_file=issued.cert_file, key_file=issued.key_file)
    ctx = cfg.ssl_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    store.revoke("box-c")
    assert not issued.cert_file.exists()


def test_mqtt_connection_tls_and_password_file(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("from-a-file-0123456789\nignored\n")
    cfg = MqttConnectionConfig(username="u", password_file=pw)
    assert cfg.password is not None and cfg.password.get_secret_value() == "from-a-file-0123456789"
    with pytest.raises(ValueError, match="not both"):
        MqttConnectionConfig(username="u", password="x", password_file=pw)
    with pytest.raises(ValueError, match="cert_file and key_file go together"):
        MqttConnectionConfig(tls=True, cert_file=pw)
    with pytest.raises(ValueError, match="cert_file is set but tls is false"):
        MqttConnectionConfig(cert_file=pw, key_file=pw)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 5000)
    with pytest.raises(ValueError, match="PASSWORD_FILE_MAX_BYTES"):
        MqttConnectionConfig(username="u", password_file=big)
    with pytest.raises(ValueError, match="No such file"):
        MqttConnectionConfig(username="u", password_file=tmp_path / "missing")
    assert MqttConnectionConfig().tls is False  # the default stays plain (opt-in)


@pytest.mark.parametrize("password", ["edgesight-dev-mqtt", "changeme", "short-one"])
def test_known_or_short_passwords_are_refused(password):
    with pytest.raises(ValueError, match="known default|at least 16"):
        check_password(password)


def test_cli_issues_and_install_takes_the_credentials(tmp_path):
    from edge_agent.cli import app as agent_app
    from edge_agent.config import AgentConfig
    from ops.cli import app

    runner = CliRunner()
    data_dir = tmp_path / "stack"
    out = tmp_path / "handover" / "box-7.json"
    r = runner.invoke(
        app,
        [
            "identities",
            "add-agent",
            "box-7",
            "--site",
            "north",
            "--client-cert",
            "--out",
            str(out),
            "--data-dir",
            str(data_dir),
        ],
    )
    assert r.exit_code == 0, r.output
    bundle = json.loads(out.read_text())
    assert bundle["mqtt"]["password"] not in r.output and "nothing running" in r.output
    r = runner.invoke(
        app, ["identities", "add-agent", "box-7", "--site", "north", "--out", str(out), "--data-dir", str(data_dir)]
    )
    assert r.exit_code == 2 and "not reused" in r.output

    etc = tmp_path / "etc"
    args = ["install", "-c", str(etc / "agent.yaml"), "--unit-dir", str(tmp_path / "units"), "--skip-checks"]
    r = runner.invoke(agent_app, [*args, "--credentials", str(out)])
    assert r.exit_code == 0, r.output
    for name in ("mqtt-password", "ca.pem", "client.pem", "client.key", "kafka.pem", "kafka.key"):
        assert (etc / "credentials" / name).stat().st_mode & 0o777 == 0o600, name
    control = yaml.safe_load((etc / "agent.yaml").read_text())["control"]
    assert control["username"] == "box-7" and control["tls"] is True and "password" not in control
    cfg = AgentConfig.load(etc / "agent.yaml")
    assert cfg.agent_id == "box-7"
    assert cfg.control.password.get_secret_value() == bundle["mqtt"]["password"]
    assert cfg.control.ssl_context().verify_mode == ssl.CERT_REQUIRED
    # Kafka: mutual TLS with the agent's own certificate (CN = its id: its Kafka login at the gate).
    from cryptography import x509

    kafka = cfg.publish.kafka
    assert kafka.security_protocol == "SSL" and kafka.ssl_ca_location and kafka.ssl_key_location
    cert = x509.load_pem_x509_certificate(Path(str(kafka.ssl_certificate_location)).read_bytes())
    assert cert.subject.rfc4514_string() == "CN=box-7"

    # A credentials file with a known default password is refused; nothing is written.
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**bundle, "mqtt": {"username": "box-8", "password": "edgesight-dev-mqtt"}}))
    other = tmp_path / "etc2"
    r = runner.invoke(
        agent_app, ["install", "-c", str(other / "agent.yaml"), "--skip-checks", "--credentials", str(bad)]
    )
    assert r.exit_code == 2 and "known default" in r.output
    assert not other.exists()
