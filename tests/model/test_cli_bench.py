"""The model-zoo CLI and the CPU path of the GPU benchmark script."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from model_zoo.bench import FRAMES_FILE, prepare_frames
from model_zoo.cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.mark.parametrize("cmd", ["list", "import", "compress", "verify", "bench"])
def test_help(cmd):
    r = runner.invoke(app, [cmd, "--help"])
    assert r.exit_code == 0, r.output
    assert "--store" in r.output


def test_list_shows_built_variants(built_model, model_store):
    r = runner.invoke(app, ["list", "--store", str(model_store)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "yolov4-tiny" in r.output and "int8" in r.output and "fp32" in r.output


def test_gpu_bench_script_cpu_path(built_model, model_store, tmp_path):
    np.save(built_model.root / FRAMES_FILE, prepare_frames((640, 640), n=2))
    out = tmp_path / "bench.json"
    p = subprocess.run(
        [
            sys.executable,
            str(ROOT / "model_zoo" / "bench.py"),
            "gpu",
            "--model-dir",
            str(model_store),
            "--providers",
            "cpu",
            "--variants",
            "fp32",
            "int8",
            "--batches",
            "1",
            "2",
            "--iters",
            "2",
            "--warmup",
            "1",
            "--timeout",
            "120",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": ""},
    )  # bench.py must run without the repo on the path
    assert p.returncode == 0, p.stderr[-2000:]
    rep = json.loads(out.read_text())
    assert "CPUExecutionProvider" in rep["available_providers"]
    by_variant = {r["variant"]: r for r in rep["results"]}
    assert set(by_variant) == {"fp32", "int8"}
    for r in by_variant.values():
        assert "error" not in r, r
        assert [x["batch"] for x in r["results"]] == [1, 2] and all(x["p50_ms"] > 0 for x in r["results"])
    assert by_variant["fp32"]["max_abs_score_diff_vs_cpu_fp32"] == 0.0
    assert "provider" in p.stdout and "fps" in p.stdout


def test_cpu_bench_reports_speedup_agreement_and_kernel_ceiling(built_model, model_store, tmp_path):
    out = tmp_path / "bench.json"
    r = runner.invoke(
        app,
        [
            "bench",
            "--store",
            str(model_store),
            "--batches",
            "1,2",
            "--iters",
            "2",
            "--agreement-frames",
            "2",
            "--json",
            str(out),
        ],
        env={"COLUMNS": "200"},
    )
    assert r.exit_code == 0, r.output
    rep = json.loads(out.read_text())
    assert [x["batch"] for x in rep["results"]["int8"]] == [1, 2]
    for key in ("speedup_vs_fp32", "speedup_vs_fp32_min"):
        assert set(rep[key]["int8"]) == {"1", "2"} and all(v > 0 for v in rep[key]["int8"].values())
    ceil = rep["kernel_ceiling"]
    assert [c["threads"] for c in ceil] == sorted({1, rep["cpus"]})
    assert all(c["fp32_gmacs"] > 0 and c["int8_gmacs"] > 0 and c["int8_speedup_min"] > 0 for c in ceil)
    assert rep["agreement_vs_fp32"]["int8"]["frames"] == 2
    assert set(rep["int8_share_of_ceiling"]) == {"1", "2"}
    t = rep["target"]
    assert t["best_batch"] in ("1", "2") and t["speedup_met"] == (t["best_speedup"] >= 2.0)
    assert "target int8 >= 2.0x fp32:" in r.output
    assert "kernel ceiling" in r.output and "agreement with fp32" in r.output


def test_target_verdict():
    from model_zoo.bench import target_verdict

    rep = {
        "speedup_vs_fp32": {"int8": {"1": 1.8, "2": 1.9, "4": 1.85}},
        "agreement_vs_fp32": {"int8": {"agreement": 0.95}},
        "kernel_ceiling": [{"threads": 1, "int8_speedup_min": 1.94}, {"threads": 2, "int8_speedup_min": 1.7}],
    }
    v = target_verdict(rep)
    assert (v["best_batch"], v["best_speedup"], v["speedup_met"]) == ("2", 1.9, False)
    assert (v["agreement_met"], v["kernel_ceiling"], v["ceiling_allows_target"]) == (True, 1.94, False)
    rep["speedup_vs_fp32"]["int8"]["4"] = 2.3
    rep["agreement_vs_fp32"]["int8"]["agreement"] = 0.85
    v = target_verdict(rep)
    assert (v["best_batch"], v["speedup_met"], v["agreement_met"]) == ("4", True, False)
