"""Every port the project parses or is configured with is a number in 1..65535 (issue #11: 99999 passed)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from cloud.config import MongoConfig, S3Config, StackConfig
from edge_agent.capture.settings import CameraConfig
from edge_agent.config import MetricsConfig
from edgesight.kafka import KafkaConfig
from edgesight.mqtt import MqttConnectionConfig

VALID = st.integers(min_value=1, max_value=65535)
INVALID = st.one_of(st.integers(max_value=0), st.integers(min_value=65536, max_value=10**30))


def _camera(port: int, scheme: str) -> CameraConfig:
    return CameraConfig(id="cam", url=f"{scheme}://viewer:s3cr3t@127.0.0.1:{port}/stream")


STACK_PORTS = ("kafka_port", "s3_port", "mongo_port", "mqtt_port")


def _stack(field: str, port: int) -> StackConfig:
    """``port`` for ``field``; the other services moved out of its way (the stack's ports must all differ, and
    hypothesis does pick 1883 for the broker)."""
    free = [q for q in range(40_001, 40_010) if q != port]
    others = {f: free[i] for i, f in enumerate(f for f in STACK_PORTS if f != field)}
    return StackConfig(**others, **{field: port})


FIELDS = {
    "camera rtsp url": lambda p: _camera(p, "rtsp"),
    "camera http url": lambda p: _camera(p, "http"),
    "kafka bootstrap_servers": lambda p: KafkaConfig(bootstrap_servers=f"127.0.0.1:9092,broker-2:{p}"),
    "mqtt port": lambda p: MqttConnectionConfig(port=p),
    "stack kafka_port": lambda p: _stack("kafka_port", p),
    "stack s3_port": lambda p: _stack("s3_port", p),
    "stack mongo_port": lambda p: _stack("mongo_port", p),
    "stack mqtt_port": lambda p: _stack("mqtt_port", p),
    "s3 endpoint_url": lambda p: S3Config(endpoint_url=f"http://127.0.0.1:{p}"),
    "mongo uri": lambda p: MongoConfig(uri=SecretStr(f"mongodb://admin:s3cr3t@db-1:27017,db-2:{p}/?replicaSet=rs0")),
}


@pytest.mark.parametrize("field", sorted(FIELDS))
@settings(max_examples=60, deadline=None)
@given(port=VALID)
def test_ports_in_range_are_accepted(field, port):
    FIELDS[field](port)


@pytest.mark.parametrize("field", sorted(FIELDS))
@settings(max_examples=60, deadline=None)
@given(port=INVALID)
def test_ports_out_of_range_are_refused(field, port):
    with pytest.raises(ValidationError) as ei:
        FIELDS[field](port)
    assert "s3cr3t" not in str(ei.value).split("input_value")[0]  # the error names the port, not the password


@settings(max_examples=60, deadline=None)
@given(port=st.one_of(st.integers(max_value=-1), st.integers(min_value=65536, max_value=10**30)))
def test_metrics_port_out_of_range_is_refused(port):
    """The metrics port is 1..65535, or 0 = pick a free port (documented)."""
    with pytest.raises(ValidationError):
        MetricsConfig(port=port)


@pytest.mark.parametrize("bad", ["rtsp://h:/s", "rtsp://h:80a/s", "rtsp://h:\uff11\uff12/s", "rtsp://[::1]:99999/s"])
def test_camera_url_port_must_be_ascii_digits(bad):
    with pytest.raises(ValidationError, match=r"port .* is not a number in 1\.\.65535"):
        CameraConfig(id="cam", url=bad)


@pytest.mark.parametrize("option", ["--kafka-port", "--s3-port", "--mongo-port", "--mqtt-port"])
@settings(max_examples=15, deadline=None)
@given(port=INVALID)
def test_stack_cli_port_options_out_of_range_are_refused(option, port, tmp_path_factory):
    from typer.testing import CliRunner

    from ops.cli import app

    data = tmp_path_factory.mktemp("never-started")
    r = CliRunner().invoke(app, ["stack", "up", "--data-dir", str(data), option, str(port)])
    assert r.exit_code == 2, r.output
    assert not (data / "stack.json").exists()  # refused before anything started
