"""Connector files: documented option names, the runner's refusal of what it does not implement,
the transforms and the S3 key layout. No servers needed except where noted."""

from __future__ import annotations

import json
import socket
from datetime import datetime, timezone

import pytest
from typer.testing import CliRunner

from cloud.config import CloudConfig
from connectors.joda import joda_format
from connectors.options import MONGO_SINK, S3_SINK, RunnerConfigError, check_options, documented, unsupported_by_runner
from connectors.rest import ConnectClient, ConnectError
from connectors.runner import ConnectorRunner
from connectors.smt import ReplaceField, TimestampConverter, TransformError, build_chain
from connectors.spec import CONNECTOR_FILES, SpecError, load_connector, load_topics, variables


def _spec(name: str):
    return load_connector(name, variables(CloudConfig(), name_prefix="t-"))


@pytest.mark.parametrize("name", sorted(CONNECTOR_FILES))
def test_shipped_connectors_use_only_documented_options(name):
    spec = _spec(name)
    assert check_options(spec.config) == []
    assert unsupported_by_runner(spec.config) == []
    assert "{{" not in json.dumps(spec.config)


def test_required_semantics_are_in_the_files():
    m = _spec("mongo-sink-detections").config
    assert m["connector.class"] == MONGO_SINK
    assert m["document.id.strategy"].endswith("ProvidedInValueStrategy")
    assert m["transforms.eventIdToId.renames"] == "event_id:_id"
    assert m["errors.tolerance"] == "all" and m["errors.deadletterqueue.context.headers.enable"] == "true"
    assert m["errors.deadletterqueue.topic.name"].endswith(".dlq.mongo-sink.v1")
    s = _spec("s3-sink-keyframes").config
    assert s["connector.class"] == S3_SINK
    assert s["format.class"].endswith("ByteArrayFormat") and s["flush.size"] == "1"
    assert s["format.bytearray.separator"] == ""  # the object is exactly the JPEG


def test_topic_specs():
    specs = {t.name.split(".", 1)[1]: t for t in load_topics(variables(CloudConfig()))}
    for t in specs.values():
        assert t.replication_factor == 3 and t.config["min.insync.replicas"] == "2"
        assert t.config["cleanup.policy"] in ("delete", "compact")
        assert "compression.type" in t.config
    assert int(specs["detections.v1"].config["retention.ms"]) > 0
    assert specs["status.v1"].config["cleanup.policy"] == "compact"


def test_every_dead_letter_topic_written_has_a_spec():
    """The DLQs of the connectors and of the engineering/fleet consumers are created with their retention."""
    from cloud.engineering.settings import EngineeringConfig, FleetConfig
    from edgesight.wire import Topics

    cfg = CloudConfig()
    names = {t.name for t in load_topics(variables(cfg))}
    topics = Topics(cfg.kafka.topic_prefix)
    written = {topics.dlq(EngineeringConfig().dlq_name), topics.dlq(FleetConfig().dlq_name)}
    written |= {
        _spec(n).config["errors.deadletterqueue.topic.name"] for n in ("mongo-sink-detections", "s3-sink-keyframes")
    }
    assert written <= names, written - names
    dlq_specs = [t for t in load_topics(variables(cfg)) if t.name in written]
    assert all(int(t.config["retention.ms"]) >= 7 * 86400_000 for t in dlq_specs)


def test_static_check_names_undocumented_options():
    cfg = dict(_spec("mongo-sink-detections").config)
    cfg["max.batch.sise"] = "10"  # typo
    cfg["transforms.eventIdToId.rename"] = "a:b"  # SMT option typo
    cfg["transforms.ghost.type"] = "x"  # alias not listed
    problems = "\n".join(check_options(cfg))
    assert "max.batch.sise" in problems
    assert "transforms.eventIdToId.rename:" in problems
    assert "transforms.ghost.type" in problems
    assert documented(["flush.size", "s3.bucket.name", "rotate.schedule.interval.ms"], S3_SINK) == {
        "flush.size": True,
        "s3.bucket.name": True,
        "rotate.schedule.interval.ms": True,
    }
    assert documented(["flush.size"], MONGO_SINK) == {"flush.size": False}


@pytest.mark.parametrize(
    "name,key,value",
    [
        ("mongo-sink-detections", "rate.limiting.every.n", "10"),  # documented, not implemented
        (
            "mongo-sink-detections",
            "writemodel.strategy",
            "com.mongodb.kafka.connect.sink.writemodel.strategy.InsertOneDefaultStrategy",
        ),  # value not implemented
        ("mongo-sink-detections", "transforms.tsToDate.unix.precision", "seconds"),
        ("s3-sink-keyframes", "s3.compression.type", "gzip"),
        ("s3-sink-keyframes", "partitioner.class", "io.confluent.connect.storage.partitioner.FieldPartitioner"),
        ("s3-sink-keyframes", "timestamp.extractor", "RecordField"),
    ],
)
def test_runner_rejects_what_it_does_not_implement(name, key, value):
    spec = _spec(name)
    spec.config[key] = value
    assert check_options(spec.config) == []  # a valid Connect config...
    with pytest.raises(RunnerConfigError) as ei:  # ...that the runner refuses, naming the option
        ConnectorRunner([spec], CloudConfig())
    assert key in str(ei.value)


def test_runner_rejects_unknown_transform_and_provider_refs():
    spec = _spec("mongo-sink-detections")
    spec.config["transforms"] += ",ins"
    spec.config["transforms.ins.type"] = "org.apache.kafka.connect.transforms.InsertField$Value"
    spec.config["connection.uri"] = "${file:/etc/secrets.properties:uri}"
    with pytest.raises(RunnerConfigError) as ei:
        ConnectorRunner([spec], CloudConfig())
    msg = str(ei.value)
    assert "transforms.ins.type" in msg and "connection.uri" in msg


def test_cli_run_refuses_unimplemented_option(tmp_path):
    from ops.cli import app

    doc = json.loads(CONNECTOR_FILES["s3-sink-keyframes"].read_text())
    doc["config"]["s3.sse.kms.key.id"] = "k1"
    f = tmp_path / "s3.json"
    f.write_text(json.dumps(doc))
    try:
        res = CliRunner().invoke(app, ["connectors", "run", str(f)])
    finally:
        from edgesight.log import setup_logging

        setup_logging("INFO")  # the command may have bound logging to the runner's captured stderr
    assert res.exit_code == 2
    assert "s3.sse.kms.key.id" in (res.output + str(res.stderr_bytes or b""))


def test_placeholders_are_checked(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"name": "x", "config": {"connector.class": MONGO_SINK, "topics": "{{nope}}"}}))
    with pytest.raises(SpecError, match="nope"):
        load_connector(f, variables(CloudConfig()))


def test_replace_field_and_timestamp_converter():
    rf = ReplaceField({"renames": "event_id:_id", "exclude": "junk"})
    assert rf({"event_id": "a", "junk": 1, "x": 2}) == {"_id": "a", "x": 2}
    with pytest.raises(TransformError):
        rf([1, 2])
    tc = TimestampConverter({"field": "ts", "target.type": "Timestamp", "format": "yyyy-MM-dd'T'HH:mm:ss.SSSX"})
    utc = timezone.utc
    assert tc({"ts": "2026-01-02T03:04:05.123Z"})["ts"] == datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=utc)
    assert tc({"ts": "2026-01-02T03:04:05Z"})["ts"] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=utc)
    assert tc({"ts": "2026-01-02T03:04:05.123456Z"})["ts"] == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=utc)
    assert tc({"ts": "2026-01-02T05:04:05+02:00"})["ts"] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=utc)
    assert tc({"ts": 1767323045000})["ts"] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=utc)
    with pytest.raises(TransformError, match="does not match"):
        tc({"ts": "yesterday"})
    chain = build_chain(_spec("mongo-sink-detections").config)
    assert [c for c, _ in chain] == [
        "org.apache.kafka.connect.transforms.ReplaceField$Value",
        "org.apache.kafka.connect.transforms.TimestampConverter$Value",
    ]


def test_s3_layout_matches_connect_naming():
    dt = datetime(2026, 7, 4, 9, 0, tzinfo=timezone.utc)
    assert joda_format("'dt'=YYYY-MM-dd/'hour'=HH", dt) == "dt=2026-07-04/hour=09"
    with pytest.raises(RunnerConfigError):
        joda_format("EEE", dt)


def test_rest_client_reports_unreachable_connect():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(ConnectError, match="not reachable"):
        ConnectClient(f"http://127.0.0.1:{port}", timeout=2).status("x")
    from ops.cli import app

    res = CliRunner().invoke(app, ["connectors", "status", "x", "--connect-url", f"http://127.0.0.1:{port}"])
    assert res.exit_code == 1
