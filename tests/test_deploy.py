"""The cloud deployment files: systemd accepts every unit, and each unit's command line, run the way systemd
runs it (Environment=, EnvironmentFile=, %i/%N, ${VAR}), serves metrics against the real stack and exits 0
on SIGTERM."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cloud.config import CloudConfig
from ops.stack import free_ports

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "cloud"
VENV_BIN = Path(sys.executable).parent
UNITS = {
    "edgesight-connector@mongo-sink-detections.service": "edgesight-connector@.service",
    "edgesight-connector@s3-sink-keyframes.service": "edgesight-connector@.service",
    "edgesight-engineering@1.service": "edgesight-engineering@.service",
    "edgesight-fleet.service": "edgesight-fleet.service",
}


def read_env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def unit_service(text: str) -> dict[str, list[str]]:
    sec, out = None, {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            sec = line.strip("[]")
        elif sec == "Service" and "=" in line and not line.startswith("#"):
            k, _, v = line.partition("=")
            out.setdefault(k, []).append(v)
    return out


def systemd_command(unit: str, template: str, etc: Path) -> tuple[list[str], dict[str, str]]:
    """ExecStart of ``unit`` resolved as systemd would, with /etc/edgesight -> ``etc`` and the venv's cloud-ops."""
    text = (
        (DEPLOY / template)
        .read_text()
        .replace("/etc/edgesight", str(etc))
        .replace("/opt/edgesight/.venv/bin", str(VENV_BIN))
    )
    name = unit.rsplit(".", 1)[0]
    inst = name.split("@", 1)[1] if "@" in name else ""
    text = text.replace("%i", inst).replace("%N", name)
    svc = unit_service(text)
    env = {k: v for e in svc.get("Environment", []) for k, v in [e.split("=", 1)]}
    for f in svc.get("EnvironmentFile", []):
        optional = f.startswith("-")
        p = Path(f.lstrip("-"))
        if p.exists():
            env.update(read_env_file(p))
        else:
            assert optional, f"required EnvironmentFile {p} missing"
    (cmd,) = svc["ExecStart"]
    cmd = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], cmd)
    return shlex.split(cmd), env


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_accepts_every_unit(tmp_path):
    for unit, template in {**UNITS, "edgesight-cloud.target": "edgesight-cloud.target"}.items():
        text = (DEPLOY / template).read_text().replace("/opt/edgesight/.venv/bin", str(VENV_BIN))
        (tmp_path / unit).write_text(text)
    r = subprocess.run(
        ["systemd-analyze", "verify", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    problems = [ln for ln in r.stderr.splitlines() if "Unknown" in ln or "bad" in ln.lower() or "Failed" in ln]
    assert r.returncode == 0 and not problems, r.stderr


def test_cloud_env_example_names_real_settings(monkeypatch):
    env = read_env_file(DEPLOY / "cloud.env.example")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cfg = CloudConfig.load(None)  # unknown keys or bad values are refused by the validated model
    assert cfg.kafka.bootstrap_servers.startswith("kafka-1") and cfg.kafka.security_protocol == "SASL_SSL"
    assert cfg.kafka.sasl_password.get_secret_value() == "change-me"
    assert cfg.s3.secret_key.get_secret_value() == "change-me"


def test_target_wants_every_unit():
    text = (DEPLOY / "edgesight-cloud.target").read_text()
    wants = {w for line in text.splitlines() if line.startswith("Wants=") for w in line[6:].split()}
    assert wants == set(UNITS)
    for template in set(UNITS.values()):
        assert "WantedBy=edgesight-cloud.target" in (DEPLOY / template).read_text()


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_unit_command_runs_against_the_stack_and_stops_cleanly(unit, stack, topic_prefix, tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "cloud.yaml").write_text("kafka:\n  session_timeout_ms: 6000\n")
    secrets = {
        **stack.env(),
        "EDGESIGHT_CLOUD__KAFKA__TOPIC_PREFIX": topic_prefix,
        "EDGESIGHT_CLOUD__MONGO__WAREHOUSE_DB": f"wh_{topic_prefix}",
        "EDGESIGHT_CLOUD__MONGO__ANALYTICS_DB": f"an_{topic_prefix}",
    }
    (etc / "cloud.env").write_text("".join(f"{k}={v}\n" for k, v in secrets.items()))
    port = free_ports(1)[0]
    (etc / f"{unit.rsplit('.', 1)[0]}.env").write_text(f"EDGESIGHT_METRICS_PORT={port}\n")  # per-instance file
    argv, env = systemd_command(unit, UNITS[unit], etc)
    assert argv[0] == str(VENV_BIN / "cloud-ops") and "--metrics-port" in argv and str(port) in argv
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EDGESIGHT_")}
    p = subprocess.Popen(
        argv, env={**clean, **env}, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline, body = time.monotonic() + 60, ""
        while time.monotonic() < deadline and p.poll() is None:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                if "edgesight_" in body:
                    break
            except OSError:
                time.sleep(0.3)
        assert p.poll() is None, f"{unit} exited early: {p.communicate()[1][-3000:]}"
        assert "edgesight_" in body, f"{unit}: no metrics on port {port}"
        time.sleep(1.0)  # let it join its group / assign partitions
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, f"{unit} rc={p.returncode}: {err[-3000:]}"
    assert '"level":"error"' not in err, err[-3000:]
