"""edge-agent CLI: validate, install/uninstall (systemd unit + config skeleton), status without an agent."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

CLI = [sys.executable, "-m", "edge_agent.cli"]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, env=env)


def test_help_explains_every_command():
    out = run("--help").stdout
    for cmd in ("run", "validate", "status", "check", "install", "uninstall"):
        assert cmd in out
    assert "--config" in run("run", "--help").stdout


def test_validate_names_file_and_key(tmp_path):
    good = Path(__file__).resolve().parents[2] / "examples" / "agent.yaml"
    r = run("validate", "-c", str(good))
    assert r.returncode == 0, r.stderr
    bad = tmp_path / "agent.yaml"
    doc = yaml.safe_load(good.read_text())
    doc["cameras"][0]["zones"][0]["polygon"] = [[0, 0], [1, 1]]
    doc["cameras"][1]["target_fps"] = -3
    doc["publish"]["spool"]["max_bytes"] = "lots"
    bad.write_text(yaml.safe_dump(doc))
    r = run("validate", "-c", str(bad))
    assert r.returncode == 2
    err = " ".join(r.stderr.split())
    assert str(bad) in err
    assert "cameras[0].zones[0].polygon" in err
    assert "cameras[1].target_fps" in err
    assert "publish.spool.max_bytes" in err


def test_install_writes_unit_and_skeleton_then_uninstall(tmp_path):
    cfg = tmp_path / "etc" / "agent.yaml"
    units = tmp_path / "units"
    r = run(
        "install",
        "-c",
        str(cfg),
        "--agent-id",
        "gate-7",
        "--unit-dir",
        str(units),
        "--memory-max",
        "3G",
        "--cpu-quota",
        "150%",
    )
    assert r.returncode == 0, r.stderr
    unit = (units / "edgesight-agent.service").read_text()
    assert f"run --config {cfg}" in unit and "Restart=always" in unit
    assert "MemoryMax=3G" in unit and "CPUQuota=150%" in unit and "KillSignal=SIGTERM" in unit
    assert yaml.safe_load(cfg.read_text())["agent_id"] == "gate-7"
    if shutil.which("systemd-analyze"):  # systemd itself accepts the unit (no unknown or misplaced keys)
        v = subprocess.run(
            ["systemd-analyze", "verify", str(units / "edgesight-agent.service")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert v.returncode == 0 and "Unknown" not in v.stderr and "bad" not in v.stderr, v.stderr
    assert "environment checks" in r.stdout and "onnxruntime providers" in r.stdout
    # A second install keeps the operator's config.
    cfg.write_text(cfg.read_text().replace("gate-7", "gate-8"))
    run("install", "-c", str(cfg), "--unit-dir", str(units), "--skip-checks")
    assert "gate-8" in cfg.read_text()
    r = run("uninstall", "--unit-dir", str(units))
    assert r.returncode == 0 and not (units / "edgesight-agent.service").exists()


def test_status_without_agent_says_so():
    r = run("status", "--url", "http://127.0.0.1:9")
    assert r.returncode == 1 and "no agent answers" in r.stderr
