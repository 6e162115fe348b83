"""``cloud-ops topics diff|apply|describe`` against the session's real broker (issue #14, item 3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from connectors.spec import TOPICS_FILE
from ops.cli import app

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def topics(stack, topic_prefix):
    """Run ``cloud-ops topics ...`` against the session stack, topics under this test's prefix."""
    runner = CliRunner()
    env = {**stack.env(), "EDGESIGHT_CLOUD__KAFKA__TOPIC_PREFIX": topic_prefix, "COLUMNS": "200"}

    def run(*args: str):
        return runner.invoke(app, ["topics", *args], env=env)

    return run


def _spec_copy(tmp_path: Path, change) -> Path:
    doc = yaml.safe_load(TOPICS_FILE.read_text())
    change(doc)
    out = tmp_path / "topics.yaml"
    out.write_text(yaml.safe_dump(doc))
    return out


def test_diff_apply_describe_round_trip(topics, topic_prefix, tmp_path):
    names = {
        t["name"].replace("{{topic_prefix}}", topic_prefix) for t in yaml.safe_load(TOPICS_FILE.read_text())["topics"]
    }

    # An empty broker (for this prefix): diff lists one create per topic and, with --exit-code, exits 1.
    d = topics("diff", "--json", "--exit-code")
    assert d.exit_code == 1, d.output
    plan = json.loads(d.stdout)
    assert {c["topic"] for c in plan} == names and {c["action"] for c in plan} == {"create"}

    a = topics("apply", "--json")
    assert a.exit_code == 0, a.output
    assert all(c["ok"] and c["outcome"] == "created" for c in json.loads(a.stdout))

    again = topics("diff", "--exit-code")
    assert again.exit_code == 0 and "no changes" in again.stdout, again.output
    idem = topics("apply")
    assert idem.exit_code == 0 and "nothing to do" in idem.stdout, idem.output

    # One retention changed in a copy of the specs: the diff shows exactly that, apply makes it, describe shows it.
    detections = f"{topic_prefix}.detections.v1"

    def shorter(doc: dict) -> None:
        doc["topics"][0]["config"]["retention.ms"] = "86400000"

    spec = _spec_copy(tmp_path, shorter)
    d = topics("diff", "--file", str(spec), "--json")
    assert d.exit_code == 0, d.output
    assert json.loads(d.stdout) == [
        {
            "topic": detections,
            "action": "alter config",
            "setting": "retention.ms",
            "live": "604800000",
            "wanted": "86400000",
            "ok": None,
            "outcome": "",
        }
    ]
    a = topics("apply", "--file", str(spec), "--json")
    assert a.exit_code == 0, a.output
    [change] = json.loads(a.stdout)
    assert change["ok"] and change["outcome"] == "altered", change
    desc = topics("describe", "--file", str(spec), "--topic", detections, "--json")
    assert desc.exit_code == 0, desc.output
    live = json.loads(desc.stdout)[detections]
    assert live["config"]["retention.ms"] == "86400000" and live["partitions"] == 12
    assert topics("diff", "--file", str(spec), "--exit-code").exit_code == 0


def test_partition_changes_are_reported_not_hidden(topics, topic_prefix, tmp_path):
    status, dlq = f"{topic_prefix}.status.v1", f"{topic_prefix}.dlq.fleet.v1"
    assert topics("apply", "--topic", status, "--topic", dlq).exit_code == 0

    def repartition(doc: dict) -> None:
        by_name = {t["name"]: t for t in doc["topics"]}
        by_name["{{topic_prefix}}.status.v1"]["partitions"] = 1  # 3 -> 1: Kafka cannot
        by_name["{{topic_prefix}}.dlq.fleet.v1"]["partitions"] = 2  # 1 -> 2: Kafka can, Tansu 0.6 cannot

    spec = _spec_copy(tmp_path, repartition)
    d = topics("diff", "--file", str(spec), "--topic", status, "--topic", dlq, "--json")
    plan = {c["topic"]: c for c in json.loads(d.stdout)}
    assert plan[status]["action"] == "impossible" and (plan[status]["live"], plan[status]["wanted"]) == ("3", "1")
    assert "cannot decrease" in plan[status]["outcome"]
    assert plan[dlq]["action"] == "add partitions" and (plan[dlq]["live"], plan[dlq]["wanted"]) == ("1", "2")

    a = topics("apply", "--file", str(spec), "--topic", status, "--topic", dlq, "--json")
    assert a.exit_code == 1, a.output  # not everything could be made
    done = {c["topic"]: c for c in json.loads(a.stdout)}
    assert done[status]["ok"] is False and "cannot decrease" in done[status]["outcome"]
    desc = json.loads(topics("describe", "--topic", status, "--topic", dlq, "--json").stdout)
    assert desc[status]["partitions"] == 3
    if done[dlq]["ok"]:  # a broker with CreatePartitions (Apache Kafka)
        assert desc[dlq]["partitions"] == 2
    else:  # the broker's own answer, as it gave it (Tansu 0.6: CreatePartitions unsupported)
        assert done[dlq]["outcome"].startswith("refused: ") and len(done[dlq]["outcome"]) > len("refused: ")
        assert desc[dlq]["partitions"] == 1
        print(f"\nadd partitions on this broker: {done[dlq]['outcome']}")


def test_bad_input_exits_2(topics, tmp_path):
    assert topics("diff", "--file", str(tmp_path / "missing.yaml")).exit_code == 2
    assert topics("describe", "--topic", "no-such-topic").exit_code == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("topics:\n  - name: x\n    partitions: 0\n")
    out = topics("apply", "--file", str(bad))
    assert out.exit_code == 2 and "partitions" in out.output
