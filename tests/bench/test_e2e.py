"""``measure_e2e`` (issue 15) at a tiny size on the session stack: its figures are consistent with each other.

A real agent (one vtest camera), the real sink runner, MongoDB and S3; no timing threshold is asserted, only that
every stage was measured, the quantiles are ordered, every latency sample is a document found in MongoDB, and
every keyframe captured in the window became readable in S3.
"""

from __future__ import annotations

import pytest

from ops.bench.e2e_bench import STAGES, measure_e2e

pytestmark = pytest.mark.timeout(240)


def test_measure_e2e_figures_are_consistent(cloud_config, model_dir) -> None:
    said: list[str] = []
    res = measure_e2e(cloud_config, model_dir, cameras=1, seconds=4, progress=said.append)

    assert said, "no progress was reported"
    assert res["samples"] > 0, res
    assert res["samples"] == res["documents"] == res["events_measured"], res
    assert 0 < res["p50_s"] <= res["p95_s"] <= res["p99_s"], res
    assert set(res["stages"]) == set(STAGES), res["stages"]
    for name, s in res["stages"].items():
        assert s["p50_s"] is not None and s["p95_s"] is not None, (name, s)
        assert 0 <= s["p50_s"] <= s["p95_s"], (name, s)
    for name in ("capture", "inference", "publish", "broker", "sink_batch"):
        assert res["stages"][name]["p95_s"] > 0, (name, res["stages"][name])
    assert res["keyframes"] == res["keyframes_expected"], res
    if res["keyframes"]:
        assert 0 < res["keyframe_p50_s"] <= res["keyframe_p95_s"], res
    assert res["observer"]["mongo"] and res["observer"]["mongo_resolution_s"] is not None, res["observer"]
