"""The slow soak (issue 15): ``python -m ops.bench.soak`` with 4 cameras and the whole cloud path, 30 minutes
(``EDGESIGHT_SOAK_MINUTES`` shortens it), curves and samples written into docs/bench/. Marked slow: not in
``make test``; ``make test-slow`` runs it.

What it asserts is behaviour over time, not speed: the pipeline never stalls (documents arrive in every interval
after the first), the sink keeps up (its lag at the end is no larger than at its worst early on, plus a margin of
one interval's events), and memory does not grow once warm (RSS of the last third within 25 % of the first
third's end).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ops.bench.soak import DOCS_BENCH

pytestmark = [pytest.mark.slow]

MINUTES = float(os.environ.get("EDGESIGHT_SOAK_MINUTES", "30"))


@pytest.mark.timeout(int(MINUTES * 60 + 600))
def test_soak_four_cameras(model_dir: Path) -> None:
    before = set(DOCS_BENCH.glob("soak-*.json")) if DOCS_BENCH.exists() else set()
    subprocess.run(
        [sys.executable, "-m", "ops.bench.soak", "--minutes", f"{MINUTES:g}", "--cameras", "4"]
        + ["--model-dir", str(model_dir), "--out", str(DOCS_BENCH)],
        check=True,
        timeout=MINUTES * 60 + 540,
    )
    (written,) = set(DOCS_BENCH.glob("soak-*.json")) - before
    assert written.with_suffix(".png").stat().st_size > 10_000
    samples = json.loads(written.read_text())["samples"]
    assert len(samples) >= 10, samples
    assert all(s["documents"] > 0 for s in samples[1:]), [s["documents"] for s in samples]
    assert all(s["frames"] > 0 for s in samples), [s["frames"] for s in samples]
    third = len(samples) // 3
    warm_rss = samples[third - 1]["rss_mb"]
    assert max(s["rss_mb"] for s in samples[-third:]) <= 1.25 * warm_rss, [s["rss_mb"] for s in samples]
    per_interval = max(s["documents"] for s in samples)
    early_lag = max(s["lag_records"] for s in samples[:third])
    assert samples[-1]["lag_records"] <= early_lag + per_interval, [s["lag_records"] for s in samples]
