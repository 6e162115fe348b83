"""Configuration errors name file + key; secrets never reach logs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.config import CloudConfig
from edgesight import log as eslog
from edgesight.config import ConfigError
from edgesight.log import (
    LOG_VALUE_MAX_CHARS,
    MASK,
    get_logger,
    is_secret_name,
    redact,
    redact_text,
    register_secret,
    setup_logging,
)


def write(tmp_path, text: str):
    p = tmp_path / "cloud.yaml"
    p.write_text(text)
    return p


def test_valid_file_loads_with_defaults(tmp_path):
    cfg = CloudConfig.load(write(tmp_path, "kafka:\n  bootstrap_servers: 10.0.0.1:9093\n"))
    assert cfg.kafka.bootstrap_servers == "10.0.0.1:9093"
    assert cfg.mongo.warehouse_db == "edgesight"


@pytest.mark.parametrize(
    "text, key, expect",
    [
        ("kafka:\n  bootstrap_servers: nope\n", "kafka.bootstrap_servers", "host:port"),
        ("kafka:\n  bootstrap_server: a:1\n", "kafka.bootstrap_server", "unknown key"),
        ("stack:\n  kafka_port: 70000\n", "stack.kafka_port", "less than 65536"),
        ("stack:\n  kafka_port: 1883\n", "stack", "must all differ"),
        ("kafka:\n  security_protocol: SASL_SSL\n", "kafka", "sasl_mechanism"),
        ("s3:\n  keyframe_bucket: Bad_Bucket\n", "s3.keyframe_bucket", "pattern"),
        ("- just\n- a list\n", "(top level)", "mapping"),
    ],
)
def test_errors_name_file_key_and_expectation(tmp_path, text, key, expect):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as ei:
        CloudConfig.load(path)
    msg = str(ei.value)
    assert str(path) in msg
    assert any(k == key for k, _ in ei.value.problems), ei.value.problems
    assert expect in msg


def test_yaml_syntax_error_names_line(tmp_path):
    with pytest.raises(ConfigError, match=r"line 2, column \d+: not valid YAML"):
        CloudConfig.load(write(tmp_path, "kafka:\n  bootstrap_servers: a: b\n"))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        CloudConfig.load(tmp_path / "nope.yaml")


def test_environment_supplies_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("ES_TEST_S3_SECRET", "s3cr3t-from-env")
    monkeypatch.setenv("EDGESIGHT_CLOUD__KAFKA__SASL_PASSWORD", "kafka-pw-from-env")
    cfg = CloudConfig.load(
        write(
            tmp_path,
            "s3:\n  secret_key: ${ES_TEST_S3_SECRET}\nkafka:\n"
            "  security_protocol: SASL_SSL\n  sasl_mechanism: PLAIN\n"
            "  sasl_username: edge\n",
        )
    )
    assert cfg.s3.secret_key.get_secret_value() == "s3cr3t-from-env"
    assert cfg.kafka.sasl_password.get_secret_value() == "kafka-pw-from-env"
    assert "s3cr3t-from-env" not in repr(cfg) and "kafka-pw-from-env" not in str(cfg.model_dump())


def test_unset_env_reference_is_an_error_naming_the_key(tmp_path, monkeypatch):
    monkeypatch.delenv("ES_TEST_UNSET", raising=False)
    with pytest.raises(ConfigError) as ei:
        CloudConfig.load(write(tmp_path, "mongo:\n  uri: ${ES_TEST_UNSET}\n"))
    assert ei.value.problems[0][0] == "mongo.uri" and "ES_TEST_UNSET" in str(ei.value)


def test_secret_values_never_reach_the_log(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESIGHT_CLOUD__KAFKA__SASL_PASSWORD", "hunter2-very-secret")
    CloudConfig.load(
        write(tmp_path, "kafka:\n  security_protocol: SASL_PLAINTEXT\n  sasl_mechanism: PLAIN\n  sasl_username: u\n")
    )
    buf = io.StringIO()
    setup_logging("INFO", stream=buf, agent="site-1")
    try:
        log = get_logger("test", camera="cam-1")
        log.info(
            "connecting with hunter2-very-secret",
            extra={"password": "anything", "url": "rtsp://admin:pw123@10.0.0.5/s"},
        )
        try:
            raise RuntimeError("auth failed for hunter2-very-secret")
        except RuntimeError:
            log.exception("boom")
    finally:
        setup_logging("INFO")
    out = buf.getvalue()
    assert "hunter2-very-secret" not in out and "pw123" not in out and "anything" not in out
    lines = [json.loads(x) for x in out.splitlines()]
    assert lines[0]["agent"] == "site-1" and lines[0]["camera"] == "cam-1" and lines[0]["component"] == "test"
    assert lines[0]["url"] == "rtsp://admin:***@10.0.0.5/s"
    assert lines[1]["level"] == "error" and "exc" in lines[1]


def test_redact_text_masks_url_credentials():
    assert redact_text("mongodb://user:pa55@db:27017/x") == "mongodb://user:***@db:27017/x"
    assert redact_text("http://host/path") == "http://host/path"


def test_cloud_overrides_do_not_leak_into_the_agent_config(tmp_path, monkeypatch):
    """The demo and ops tools set EDGESIGHT_CLOUD__* for cloud processes; an agent started beside them
    must not read them (its file has no such sections and would be rejected)."""
    from edge_agent.config import AgentConfig

    monkeypatch.setenv("EDGESIGHT_CLOUD__KAFKA__BOOTSTRAP_SERVERS", "10.9.9.9:9092")
    monkeypatch.setenv("EDGESIGHT_AGENT__PUBLISH__KAFKA__BOOTSTRAP_SERVERS", "10.1.1.1:9092")
    p = tmp_path / "agent.yaml"
    p.write_text("agent_id: a1\n")
    agent = AgentConfig.load(p)
    assert agent.publish.kafka.bootstrap_servers == "10.1.1.1:9092"
    cloud = CloudConfig.load(write(tmp_path, "{}\n"))
    assert cloud.kafka.bootstrap_servers == "10.9.9.9:9092"


# ---- redaction: every secret, any text, linear time ---------------------------------------


PROPS = settings(max_examples=200, deadline=None)
passwords = st.text(min_size=1, max_size=40).filter(lambda s: "\n" not in s and "://" not in s)
hosts = st.sampled_from(["10.0.0.5", "cam.local:554", "[::1]:8554", "db"])
contexts = st.sampled_from(["{}", "connect {} failed", "'{}'", "error: {}\nnext line", "x://y {}", '{{"u": "{}"}}'])


@contextmanager
def private_registry() -> Iterator[None]:
    """Secrets registered inside are forgotten after it (the registry is bounded and process-wide)."""
    saved = set(eslog._secrets), list(eslog._secrets_order)
    try:
        yield
    finally:
        eslog._secrets, eslog._secrets_order = saved


@given(st.sampled_from(["rtsp", "rtsps", "http", "mongodb", "ftp", "rtspx"]), passwords, hosts, contexts)
@PROPS
def test_url_passwords_never_survive(scheme, pw, host, context):
    """The userinfo ends at the last '@' before the host: a password may hold '@', '/', spaces, '%', quotes."""
    text = context.format(f"{scheme}://viewer:{pw}@{host}/stream?a=1")
    assert redact_text(text) == context.format(f"{scheme}://viewer:{MASK}@{host}/stream?a=1")
    # an '@' later on the same line (an e-mail address) may take the host with it, never leave the password
    assert redact_text(text + " mail ops@example.com") == f"{scheme}://viewer:{MASK}@example.com" or context != "{}"


@given(
    st.sampled_from(["pwd", "password", "pass", "token", "access_token", "key", "apikey", "X-Amz-Signature", "sig"]),
    st.text(alphabet=st.characters(blacklist_characters="&#\"'<>", blacklist_categories=["Z", "Cc"]), min_size=1),
    st.booleans(),
)
@PROPS
def test_credential_query_parameters_never_survive(name, value, free_text):
    url = f"http://cam/x?user=admin&{name}={value}&x=1"
    out = redact_text(f"GET {url} failed" if free_text else url)
    assert f"{name}={MASK}&x=1" in out and "user=admin" in out


@given(
    st.text(min_size=3, max_size=30).filter(lambda s: "*" not in s),
    st.text(max_size=50),
    st.text(max_size=50),
)
@PROPS
def test_registered_secrets_never_survive(secret, before, after):
    with private_registry():
        register_secret(secret)
        assert secret not in redact_text(before + secret + after)
        out = redact({"msg": [before, secret + after], before: {"x": secret}})
        assert not any(secret in text for text in _strings(out))


def _strings(value) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


@given(
    st.sampled_from(["password", "db_password", "sasl_password", "apiKey", "secret_key", "auth_token", "rtsp_pass"]),
    st.text(min_size=1, max_size=30) | st.integers(min_value=1) | st.lists(st.text(), min_size=1),
)
@PROPS
def test_secret_fields_are_masked_whatever_their_value(field, value):
    assert is_secret_name(field)
    assert redact({field: value, "nested": [{field: value}]}) == {field: MASK, "nested": [{field: MASK}]}


@pytest.mark.parametrize("field", ["object_key", "keyframes_published", "passes", "event_key", "bypass"])
def test_ordinary_fields_are_not_masked(field):
    assert not is_secret_name(field) and redact({field: "v"}) == {field: "v"}


HOSTILE = [
    "a" * 4_000_000,
    "rtsp://" + "a:" * 2_000_000,
    "@a" * 2_000_000,
    "x://" * 1_000_000,
    "?&pwd=" * 600_000,
    "http://a:b@" * 300_000,
    "rtsp://u:" + "@" * 4_000_000,
    ("[" * 1000 + "\\" * 1000) * 2000,
]


@pytest.mark.timeout(120)
def test_redaction_is_linear_on_multi_megabyte_hostile_strings():
    """Quadratic redaction took 8.6 s for 40 kB; these 4 MB strings would take hours."""
    for text in HOSTILE:
        out = redact_text(text)
        assert len(out) <= 3 * len(text)  # a one-character secret becomes ***


def test_log_lines_are_redacted_and_cut(tmp_path):
    buf = io.StringIO()
    setup_logging("INFO", stream=buf)
    try:
        log = get_logger("hostile")
        log.info(
            "cmd " + "x" * 100_000 + " rtsp://v:Pw@Gate 7@cam/x?token=tk123456",
            extra={"action": "y" * 50_000, "url": "rtsp://v:Pw@Gate 7@cam/x", "apikey": "k-123456"},
        )
    finally:
        setup_logging("INFO")
    line = json.loads(buf.getvalue())
    assert len(line["msg"]) < LOG_VALUE_MAX_CHARS + 100 and len(line["action"]) < LOG_VALUE_MAX_CHARS + 100
    assert line["url"] == f"rtsp://v:{MASK}@cam/x" and line["apikey"] == MASK
    assert "Gate 7" not in buf.getvalue() and "k-123456" not in buf.getvalue()


# ---- the suite's secrets audit (tests/secrets_audit.py) -----------------------------------


def test_the_audit_finds_a_secret_and_names_only_its_line(tmp_path):
    from tests.secrets_audit import scan

    p = tmp_path / "lines.jsonl"
    p.write_text('{"msg":"ok"}\n{"msg":"rtsp://u:***@h"}\n{"msg":"leaked hunter2-xyz"}\n')
    assert scan(p, {"hunter2-xyz", "absent-secret"}) == [(3, "hu...(11 chars)")]


def test_every_process_of_the_run_logs_into_the_audit(tmp_path):
    """The session set EDGESIGHT_LOG_TEE; a process started by a test inherits it and appends its lines."""
    tee = Path(os.environ[eslog.LOG_TEE_ENV])
    code = (
        "from edgesight.log import get_logger, setup_logging\n"
        "setup_logging('INFO', stream=open('/dev/null', 'w'))\n"
        "get_logger('audit-probe').warning('probe rtsp://u:probe-pw-123@cam/x')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    lines = [json.loads(x) for x in tee.read_text().splitlines() if "audit-probe" in x]
    assert lines and lines[-1]["msg"] == "probe rtsp://u:***@cam/x"


def test_cli_output_and_status_documents_reach_the_audit(tmp_path):
    """What a CLI prints (stdout and stderr) and each /status document served are teed for the audit too."""
    from edgesight.http import serve_http

    tee = Path(os.environ[eslog.LOG_TEE_ENV])
    bad = tmp_path / "agent.yaml"
    bad.write_text("agent_id: cli-audit-probe\ncameras: [{id: c1, source: 'rtspx://u:pw@h/x'}]\n")
    r = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "check", "-c", str(bad)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode != 0
    teed = [json.loads(x) for x in tee.read_text().splitlines() if '"tee"' in x]
    printed = "".join(t["text"] for t in teed if t["tee"] in ("stdout", "stderr"))
    assert "rtspx" in printed and "rtspx" in r.stdout + r.stderr

    srv = serve_http("127.0.0.1", 0, status=lambda: {"probe": "status-audit-probe"})
    try:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/status", timeout=10) as resp:
            assert b"status-audit-probe" in resp.read()
    finally:
        srv.close()
    assert any(
        json.loads(x).get("tee") == "http /status" for x in tee.read_text().splitlines() if "status-audit-probe" in x
    )


def test_records_on_the_broker_reach_the_audit(stack, topic_prefix):
    """Before the stack stops, the audit reads every topic (status, dead letters, detections...) back."""
    from confluent_kafka import Producer

    from tests.secrets_audit import tee_kafka

    tee = Path(os.environ[eslog.LOG_TEE_ENV])
    topic = f"{topic_prefix}.dlq.probe.v1"
    p = Producer(stack.config.kafka.client_config())
    for i in range(3):
        p.produce(topic, key=b"k", value=f"kafka-audit-probe-{i}".encode(), headers=[("h", b"header-probe")])
    assert p.flush(30) == 0
    assert tee_kafka(stack.config.kafka.client_config(), prefix=topic_prefix) == 3
    got = [json.loads(x) for x in tee.read_text().splitlines() if "kafka-audit-probe" in x]
    assert sorted(g["value"] for g in got) == [f"kafka-audit-probe-{i}" for i in range(3)]
    assert all(g["kafka_topic"] == topic and g["headers"] == [["h", "header-probe"]] for g in got)
