"""``cloud-ops test brokers`` (issue #14, item 2): three Tansu brokers, each a node in its own network namespace,
through a SIGKILL, a link down and a restart, with the edge's publisher and the warehouse sink.

The default run is small (a few hundred events, a 4 s link down); the Must-show run (30 s link down) is ``slow``.
Each test checks the report against what it reads itself while the servers still run (``inspect``): the warehouse
(one document per event, every acknowledged event there), the publisher's own acknowledged counter (Prometheus),
and after the run that no process, namespace or link of the run is left.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from ops.cli import app
from ops.optest.brokers import AGENT_ID, BrokersOptions, BrokersReport, RunView, run_brokers
from ops.optest.brokers_net import NS_PREFIX

pytestmark = [pytest.mark.stack]


def _acked_counter() -> float:
    return (
        REGISTRY.get_sample_value("edgesight_publish_records_acked_total", {"agent": AGENT_ID, "topic": "detections"})
        or 0.0
    )


def _own_leftovers(workdir: Path) -> list[str]:
    """Namespaces/links named after this process, and server processes still working in ``workdir``."""
    out = []
    ip = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    ip += subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    out += [w for w in ip.split() if w.strip(":").startswith(f"{NS_PREFIX}{os.getpid()}")]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            cmd = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(str(workdir)) and os.path.basename(cmd) in ("tansu", "haproxy", "weed", "nx-27017"):
            out.append(f"pid {proc.name} {cmd}")
    return out


def _check(view: RunView, seen: dict) -> None:
    """Read the warehouse with its own client and compare with the report (called while the servers run)."""
    client = view.cloud.mongo.client()
    try:
        docs = list(client[view.database][view.collection].find({}, {"_id": 1, "camera_id": 1, "seq": 1}))
    finally:
        client.close()
    seen["docs"] = len(docs)
    seen["ids"] = {d["_id"] for d in docs}
    seen["by_identity"] = Counter((d["camera_id"], d["seq"]) for d in docs)
    seen["accepted"] = list(view.accepted_ids)


def _assert_consistent(rep: BrokersReport, seen: dict, acked_by_publisher: float) -> None:
    accepted = set(seen["accepted"])
    assert len(accepted) == len(seen["accepted"]) == rep.accepted > 0
    assert rep.acked == acked_by_publisher == rep.accepted, (rep.acked, acked_by_publisher, rep.accepted)
    assert rep.unacknowledged == 0
    # what the test reads itself
    assert accepted <= seen["ids"], f"{len(accepted - seen['ids'])} acknowledged events missing from the warehouse"
    assert seen["docs"] == len(seen["ids"]) == len(accepted)  # one document per event, none of another run
    assert max(seen["by_identity"].values()) == 1
    # ... and what the report says
    assert (rep.lost, rep.duplicate_documents, rep.unexpected_documents) == (0, 0, 0)
    assert rep.landed == len(seen["ids"] & accepted)
    assert rep.kafka_records_read == rep.accepted + rep.kafka_duplicates  # every event in the topic, copies counted
    assert rep.passed and not rep.sink_errors
    kinds = [f.kind for f in rep.faults]
    assert kinds == ["SIGKILL", "link down", "restart"]
    kill, down, _ = rep.faults
    assert kill.broker != down.broker  # a second node partitioned while the first is dead
    assert kill.failover_s is not None and down.failover_s is not None  # clients got through both
    assert [p.name for p in rep.phases] == ["before", "during", "after"]
    assert all(p.acked_per_s > 0 for p in rep.phases)


def _run(tmp_path: Path, **kw) -> tuple[BrokersReport, dict, float]:
    seen: dict = {}
    before = _acked_counter()
    rep = run_brokers(BrokersOptions(workdir=tmp_path / "work", **kw), inspect=lambda v: _check(v, seen))
    after = _acked_counter()
    assert not _own_leftovers(tmp_path / "work")
    return rep, seen, after - before


@pytest.mark.timeout(240)
def test_three_brokers_in_namespaces_through_a_kill_and_a_link_down(tmp_path):
    """Needs root (as CI runs): without it the command falls back to 127.0.0.x and the mode check fails."""
    rep, seen, acked = _run(tmp_path, brokers=3, link_down_s=4, before_s=3, settle_s=2, after_s=3, rate=60)
    assert rep.cluster["mode"] == "netns" and rep.target == "embedded"
    nodes = [b["address"] for b in rep.cluster["brokers"]]
    assert len(set(nodes)) == 3 and all(a.startswith("10.") for a in nodes)  # each broker has its own address
    _assert_consistent(rep, seen, acked)
    assert rep.producer["enable.idempotence"] is False  # the setting that loses nothing on Tansu (module doc)


@pytest.mark.timeout(180)
def test_bootstrap_runs_the_checks_against_a_running_cluster_without_faults(cloud_config, tmp_path):
    """``--bootstrap``: the session stack stands in for a production cluster (secure: TLS and its own identity,
    all taken from the config); produce/consume checks only."""
    seen: dict = {}
    before = _acked_counter()
    rep = run_brokers(
        BrokersOptions(
            bootstrap=cloud_config.kafka.bootstrap_servers, config=cloud_config, before_s=2, after_s=1, rate=80
        ),
        inspect=lambda v: _check(v, seen),
    )
    assert rep.target == "production" and cloud_config.kafka.bootstrap_servers in rep.where
    assert "no fault injected" in rep.where and rep.faults == []
    assert rep.producer["enable.idempotence"] is True  # the production setting
    accepted = set(seen["accepted"])
    assert rep.acked == _acked_counter() - before == rep.accepted == len(accepted) > 0
    assert accepted == seen["ids"] and seen["docs"] == len(accepted)
    assert (rep.lost, rep.duplicate_documents, rep.kafka_duplicates) == (0, 0, 0) and rep.passed
    assert [p.name for p in rep.phases] == ["steady"]


def test_cli_refuses_bad_options_before_starting_anything(tmp_path):
    runner = CliRunner()
    env = {"COLUMNS": "200"}
    for args, what in (
        (["--mode", "vm"], "--mode"),
        (["--json", str(tmp_path / "missing" / "r.json")], "--json"),
        (["--link-down-s", "0"], "--link-down-s"),
    ):
        res = runner.invoke(app, ["test", "brokers", *args], env=env)
        assert res.exit_code == 2, res.output
        assert what in res.output


def test_namespaces_refused_clearly_without_root(monkeypatch):
    """Not root: the fabric refuses with the reason before touching anything (the command then runs the brokers
    on 127.0.0.x). The uid is what the process reports: a subprocess under another uid cannot import the project
    from a checkout only root may read (CI's clone), so the check is exercised in this process."""
    import os

    from ops.optest.brokers_net import NetnsFabric, NetnsUnavailable

    monkeypatch.setattr(os, "geteuid", lambda: 65534)
    with pytest.raises(NetnsUnavailable, match="network namespaces need root .*uid 65534"):
        NetnsFabric.create(2)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_loopback_fallback_through_a_kill_and_a_frozen_broker(tmp_path):
    rep, seen, acked = _run(
        tmp_path, brokers=3, link_down_s=4, before_s=3, settle_s=2, after_s=3, rate=60, mode="loopback"
    )
    assert rep.cluster["mode"] == "loopback"
    assert all(b["address"].startswith("127.0.0.") for b in rep.cluster["brokers"])
    _assert_consistent(rep, seen, acked)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_must_show_three_brokers_30s_link_down_through_the_cli(tmp_path):
    """The Must-show: 3 brokers in namespaces, SIGKILL + 30 s link down + restart: 0 lost, 0 duplicated."""
    out = tmp_path / "brokers.json"
    res = CliRunner().invoke(
        app,
        ["test", "brokers", "--brokers", "3", "--link-down-s", "30", "--json", str(out)],
        env={"COLUMNS": "200"},
    )
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert rep["passed"] and rep["lost"] == 0 and rep["duplicate_documents"] == 0
    assert rep["acked"] == rep["accepted"] > 0 and rep["landed"] == rep["accepted"]
    assert rep["cluster"]["mode"] == "netns"
    assert all(f["failover_s"] is not None for f in rep["faults"])
    assert "failover" in res.output
