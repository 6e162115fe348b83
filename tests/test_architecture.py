"""The package graph runs one way (the import-linter contracts in pyproject.toml), and the cloud CLI needs no edge
runtime libraries to explain itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ops.cli import app

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("edgesight", "edge_agent", "model_zoo", "cloud", "connectors", "ops", "tests")
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))
EDGE_RUNTIME = ("cv2", "onnxruntime", "paho")


def lint_imports(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd), "COLUMNS": "250"}
    return subprocess.run(
        [LINT_IMPORTS, "--no-logo", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_tree_keeps_every_contract() -> None:
    r = lint_imports(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packages' Python files and pyproject.toml, copied once; each case works on its own copy of this."""
    dst = tmp_path_factory.mktemp("tree")
    for package in PACKAGES:
        for src in (ROOT / package).rglob("*.py"):
            target = dst / src.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
    shutil.copyfile(ROOT / "pyproject.toml", dst / "pyproject.toml")
    return dst


# (module that gets the import, the import, contract id, contract name as lint-imports prints it, reported chain)
BREAKS = [
    ("edge_agent", "cloud", "edge-not-cloud", "The edge side", "edge_agent._probe -> cloud"),
    ("model_zoo", "connectors", "edge-not-cloud", "The edge side", "model_zoo._probe -> connectors"),
    ("cloud", "edge_agent", "cloud-not-edge", "The cloud side", "cloud._probe -> edge_agent"),
    ("connectors", "model_zoo", "cloud-not-edge", "The cloud side", "connectors._probe -> model_zoo"),
    ("edge_agent", "model_zoo", "edge-layers", "Edge layers", "edge_agent._probe -> model_zoo"),
    ("model_zoo", "ops", "edge-layers", "Edge layers", "model_zoo._probe -> ops"),
    ("cloud", "connectors", "cloud-layers", "Cloud layers", "cloud._probe -> connectors"),
    ("connectors", "ops", "cloud-layers", "Cloud layers", "connectors._probe -> ops"),
    ("edgesight", "cloud", "core", "edgesight is the shared core", "edgesight._probe -> cloud"),
    ("ops", "tests", "no-tests", "Nothing imports tests", "ops._probe -> tests"),
    ("edge_agent.config", "cv2", "settings-no-runtime", "Settings modules", "edge_agent.config -> cv2"),
]


@pytest.mark.parametrize(
    ("where", "imported", "contract", "name", "chain"), BREAKS, ids=[f"{b[0]}->{b[1]}" for b in BREAKS]
)
def test_a_forbidden_import_breaks_its_contract(
    tree_copy: Path, tmp_path: Path, where: str, imported: str, contract: str, name: str, chain: str
) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(tree_copy, tree)
    module = tree / (where.replace(".", "/") + ".py")
    if not module.exists():  # a package: the import goes into a new module of it
        module = tree / where / "_probe.py"
    with module.open("a") as f:
        f.write(f"\nimport {imported}\n")
    r = lint_imports(tree, "--no-cache", "--contract", contract)
    assert r.returncode != 0, r.stdout + r.stderr
    assert name in r.stdout and "BROKEN" in r.stdout, r.stdout + r.stderr
    assert chain in r.stdout, r.stdout


GROUPS = [g.name for g in app.registered_groups]
COMMANDS = [c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands if c.callback]
HELP_CASES = [[], *([name] for name in GROUPS + COMMANDS)]


@pytest.mark.parametrize("args", HELP_CASES, ids=[" ".join(a) or "cloud-ops" for a in HELP_CASES])
def test_cloud_ops_help_needs_no_edge_runtime(args: list[str]) -> None:
    blocked = "; ".join(f"sys.modules[{m!r}] = None" for m in EDGE_RUNTIME)
    script = f"import sys; {blocked}; from ops.cli import app; app(prog_name='cloud-ops')"
    r = subprocess.run(
        [sys.executable, "-c", script, *args, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert "Usage: cloud-ops" in r.stdout


@pytest.mark.parametrize("module", ["edgesight.config", "edge_agent.config", "cloud.config"])
def test_settings_modules_load_no_edge_runtime(module: str) -> None:
    script = f"import sys, {module}; print(' '.join(m for m in {EDGE_RUNTIME!r} if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [], f"importing {module} loads {r.stdout.strip()}"
