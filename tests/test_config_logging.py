"""Configuration errors name file + key; secrets never reach logs."""

from __future__ import annotations

import io
import json

import pytest

from cloud.config import CloudConfig
from edgesight.config import ConfigError
from edgesight.log import get_logger, redact_text, setup_logging


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
