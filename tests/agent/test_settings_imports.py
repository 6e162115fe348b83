"""Settings import no runtime code: the agent's config loads, and ``edge-agent validate`` runs,
on a machine without cv2, onnxruntime, paho or confluent_kafka."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RUNTIME = ("cv2", "onnxruntime", "paho", "confluent_kafka")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "agent.yaml"


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_importing_the_config_loads_no_runtime_module():
    r = python(
        f"import json, sys; import edge_agent.config; print(json.dumps([m for m in {RUNTIME!r} if m in sys.modules]))"
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []


def test_validate_runs_with_the_runtime_modules_missing():
    # sys.modules[name] = None makes every `import name` (and name.sub) raise ImportError.
    r = python(
        f"import sys\n"
        f"for m in {RUNTIME!r}: sys.modules[m] = None\n"
        f"sys.argv = ['edge-agent', 'validate', '-c', {str(EXAMPLE)!r}]\n"
        f"from edge_agent.cli import app\n"
        f"app()\n"
    )
    assert r.returncode == 0, r.stderr
    assert "valid" in r.stdout and "ImportError" not in r.stderr
