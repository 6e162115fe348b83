"""``cloud-ops bench`` (issue 15): the report's structure, and every ratio computed from values of this run.

The quick suite runs on a cheap subset of its sections (publish, warehouse, uplink, memory: under ~2 minutes
on 2 cores) on its own private stack; the README test needs no server.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from ops.bench.readme import BEGIN, END, current_block, load_report, render_block, replace_block
from ops.bench.suite import REPO, SECTIONS, Ctx, Profile, figure, parse_only, pick_accelerator, run_section

RECORD_KEYS = {"name", "value", "unit", "baseline_name", "baseline_value", "ratio", "target", "met"}
SUBSET = ("publish", "warehouse", "uplink", "memory")


def check_figure(f: dict) -> None:
    assert set(f) == RECORD_KEYS, f
    assert isinstance(f["value"], (int, float)) and math.isfinite(f["value"]), f
    assert f["baseline_value"] > 0, f
    assert math.isclose(f["ratio"], f["value"] / f["baseline_value"], rel_tol=1e-12), f
    t = f["target"]
    if t is None:
        assert f["met"] is None
    else:
        x = f["ratio"] if t["of"] == "ratio" else f["value"]
        assert f["met"] is (x >= t["bound"] if t["op"] == ">=" else x <= t["bound"]), f


@pytest.mark.stack
@pytest.mark.timeout(420)
def test_bench_quick_writes_a_report_of_this_run(tmp_path, model_dir):
    before = datetime.now(timezone.utc).replace(microsecond=0)
    out = tmp_path / "out"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "ops.cli",
            "bench",
            "--quick",
            "--only",
            ",".join(SUBSET),
            "--out",
            str(out),
            "--model-dir",
            str(model_dir),
        ],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((out / "bench.json").read_text())
    md = (out / "BENCHMARKS.md").read_text()

    # this run: a fresh id, timestamps inside the test's window, the options asked for
    assert re.fullmatch(r"[0-9a-f]{32}", report["run_id"]) and report["run_id"] in md
    started = datetime.fromisoformat(report["started_at"])
    assert before <= started <= datetime.fromisoformat(report["finished_at"]) <= datetime.now(timezone.utc)
    assert report["quick"] is True and report["sections_run"] == list(SUBSET)
    m = report["machine"]
    assert m["cores"] >= 1 and m["cpu_model"] and set(m["cpu_flags"]) >= {"avx2", "avx512f", "avx512_vnni"}
    assert m["gpu"] is None or m["provider_used"] != "CPUExecutionProvider"
    assert "GPU | none" in md or m["gpu"] in md
    v = report["versions"]
    assert {"python", "onnxruntime", "confluent_kafka", "librdkafka", "opencv"} <= set(v)
    assert set(v["servers"]) >= {"kafka", "s3", "mongo", "mqtt"}

    secs = {s["name"]: s for s in report["sections"]}
    assert list(secs) == list(SUBSET)
    for s in secs.values():
        assert s["status"] == "ok", (s["name"], s["reason"])
        assert s["figures"], s["name"]
        for f in s["figures"]:
            check_figure(f)
            assert f["name"] in md

    # the figures are the measured counts of this run, not constants
    pub = secs["publish"]["details"]
    assert pub["publisher"]["flushed"] and all(b["acked"] == pub["events"] > 0 for b in pub["bare"])
    assert secs["publish"]["figures"][0]["value"] == pub["publisher_acked_per_s"]
    wh = secs["warehouse"]["details"]
    assert wh["stored"] == wh["docs"] > 0
    up = secs["uplink"]["details"]
    assert up["frames_read"] > 0 and up["tracks"] > 0 and up["records_read"] == sum(up["records_acked"].values())
    assert up["bytes"] == sum(t["bytes"] for t in up["by_topic"].values()) > 0
    uf = secs["uplink"]["figures"]
    assert math.isclose(uf[0]["ratio"], up["bytes"] / up["every_frame_jpeg_bytes"], rel_tol=1e-9)
    assert uf[1]["value"] == up["tracks_with_keyframe"] and uf[1]["baseline_value"] == up["tracks"]
    mem = {row["cameras"]: row for row in secs["memory"]["details"]["rows"]}
    assert set(mem) == {0, 1, 2} and all(row["samples"] > 0 for row in mem.values())
    assert mem[1]["frames_inferred"] > 0 and mem[2]["frames_inferred"] > 0


def test_figure_record_ratio_and_target():
    f = figure("x", 3.0, "frames/s", "base", 4.0, target=("ratio", ">=", 0.95))
    check_figure(f)
    assert f["ratio"] == 0.75 and f["met"] is False
    assert figure("lat", 0.8, "s", "rtt", 0.1, target=("value", "<=", 1.0))["met"] is True
    with pytest.raises(ValueError, match="baseline"):
        figure("x", 1.0, "u", "zero", 0.0)
    assert parse_only(None) == SECTIONS and parse_only("memory,publish") == ("publish", "memory")
    with pytest.raises(ValueError, match="nope"):
        parse_only("publish,nope")


def test_a_failing_section_is_reported_and_the_suite_goes_on(monkeypatch, tmp_path):
    import ops.bench.suite as suite

    def broken(_ctx):
        raise RuntimeError("the broker went away")

    monkeypatch.setitem(suite.RUNNERS, "publish", broken)
    ctx = Ctx(None, tmp_path, Profile.make(True), pick_accelerator(), lambda _m: None, tmp_path)
    s = run_section("publish", ctx)
    assert s["status"] == "failed" and s["reason"] == "RuntimeError: the broker went away" and s["figures"] == []


def test_readme_figures_are_rendered_from_the_committed_bench_json():
    report = load_report(REPO / "bench.json")
    for s in report["sections"]:
        for f in s["figures"]:
            check_figure(f)
    readme = (REPO / "README.md").read_text()
    assert current_block(readme) == render_block(report), "README is stale: run `python -m ops.bench.readme`"
    assert replace_block(readme, render_block(report)) == readme
    assert readme.count(BEGIN) == readme.count(END) == 1


def test_the_accelerator_is_the_gpu_provider_in_fp16_when_onnxruntime_lists_one():
    cpu = pick_accelerator(["CPUExecutionProvider"])
    assert (cpu.provider, cpu.variant, cpu.gpu, cpu.is_gpu) == ("cpu", "int8", None, False)
    cuda = pick_accelerator(["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert (cuda.provider, cuda.provider_name, cuda.variant, cuda.is_gpu) == (
        "cuda",
        "CUDAExecutionProvider",
        "fp16",
        True,
    )
    trt = pick_accelerator(["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    assert (trt.provider, trt.variant) == ("tensorrt", "fp16")


def test_a_failed_set_up_is_reported_for_every_section(monkeypatch, tmp_path):
    import ops.testing
    from ops.bench.suite import run_suite

    def no_stack(_dir):
        raise OSError("no free ports")

    monkeypatch.setattr(ops.testing, "make_stack", no_stack)
    report = run_suite(tmp_path, quick=True, sections=("publish", "warehouse"))
    assert [(s["name"], s["status"]) for s in report["sections"]] == [("publish", "failed"), ("warehouse", "failed")]
    assert all("OSError: no free ports" in s["reason"] for s in report["sections"])
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["run_id"] == report["run_id"] and "no free ports" in (tmp_path / "BENCHMARKS.md").read_text()
