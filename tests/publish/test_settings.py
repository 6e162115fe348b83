"""PublishConfig validation: clear messages naming the key."""

from __future__ import annotations

import pytest

from edge_agent.publish import PublishConfig, producer_config
from edgesight.config import ConfigError, parse_config


def test_defaults_and_sizes():
    cfg = parse_config(
        PublishConfig,
        {"spool": {"dir": "/tmp/x", "max_bytes": "2GiB"}, "keyframes": {"max_bytes": "200KB"}, "topic_prefix": "acme"},
    )
    assert cfg.spool.max_bytes == 2 * 1024**3 and cfg.keyframes.max_bytes == 200_000
    assert cfg.topics.detections == "acme.detections.v1"
    conf = producer_config(cfg)
    assert conf["enable.idempotence"] is True and conf["acks"] == "all" and conf["compression.type"] == "lz4"
    assert conf["max.in.flight.requests.per.connection"] <= 5 and conf["message.timeout.ms"] == 0


def test_tls_and_sasl_reach_librdkafka():
    cfg = PublishConfig(
        kafka={
            "bootstrap_servers": "k1:9093",
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "edge",
            "sasl_password": "s3cr3t!",
            "ssl_ca_location": "/etc/ca.pem",
        }
    )
    conf = producer_config(cfg)
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.password"] == "s3cr3t!" and conf["ssl.ca.location"] == "/etc/ca.pem"
    assert "s3cr3t!" not in repr(cfg)


@pytest.mark.parametrize(
    "data, key, words",
    [
        ({"compression": "brotli"}, "compression", "lz4"),
        ({"spool": {"max_bytes": "lots"}}, "spool.max_bytes", "size"),
        ({"spool": {"max_bytes": "8MiB", "segment_bytes": "4MiB"}}, "spool", "quarter"),
        ({"spool": {"max_bytes": "64MiB"}, "max_inflight_bytes": "32MiB"}, "(top level)", "4x max_inflight_bytes"),
        ({"keyframes": {"jpeg_quality": 50, "min_jpeg_quality": 60}}, "keyframes", "min_jpeg_quality"),
        ({"keyframes": {"max_bytes": "8MiB"}}, "(top level)", "message_max_bytes"),
        ({"extra_producer_config": {"acks": "1"}}, "extra_producer_config", "cannot be overridden"),
        ({"lingerms": 5}, "lingerms", "unknown key"),
        ({"kafka": {"security_protocol": "SASL_SSL"}}, "kafka", "sasl_mechanism"),
    ],
)
def test_invalid_settings_are_explained(data, key, words):
    with pytest.raises(ConfigError) as ei:
        parse_config(PublishConfig, data, "agent.yaml")
    msg = str(ei.value)
    assert "agent.yaml" in msg and f"- {key}" in msg and words in msg, msg
