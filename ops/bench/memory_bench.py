"""Memory benchmark: resident set size (RSS) of the edge agent per camera.

    python -m ops.bench.memory_bench --cameras 0,1,2,4 --seconds 20

Each count N runs a real agent process (``edge-agent run`` on a generated config: N looping vtest.avi
cameras at their native 10 fps, the int8 detector, publishing to a private embedded stack), waits
``--warmup`` seconds, then samples its RSS every 0.5 s for ``--seconds``; the figure is the median of those
samples (and the max). The agent's ``/status`` confirms that frames were inferred. The 0-camera agent (model
loaded, publisher running, no camera) is the baseline of the first camera; the 1-camera agent that of the
others; the per-camera figure is (RSS(N) - RSS(0)) / N.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from edgesight.files import write_private
from ops.bench.common import vtest_agent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def agent_rss(
    cloud_config: Any,
    model_dir: str | Path | None,
    cameras: int,
    *,
    seconds: float,
    warmup: float,
    tmp: Path,
    variant: str = "int8",
    providers: tuple[str, ...] = ("cpu",),
) -> dict:
    """RSS of one ``edge-agent run`` process with ``cameras`` cameras: median and max over ``seconds``."""
    import psutil

    port = _free_port()
    conf = vtest_agent(
        cloud_config,
        model_dir,
        cameras,
        tmp / f"spool{cameras}",
        name=f"mem{cameras}",
        variant=variant,
        providers=providers,
        metrics_port=port,
    )
    conf["log_level"] = "WARNING"
    path = write_private(tmp / f"agent{cameras}.yaml", yaml.safe_dump(conf))  # may hold a SASL password
    log = open(tmp / f"agent{cameras}.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(path)], stdout=log, stderr=log
    )
    try:
        p = psutil.Process(proc.pid)
        deadline = time.monotonic() + warmup + 60
        while _status(port) is None:  # model loaded, HTTP up
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the agent did not start: {_tail(tmp / f'agent{cameras}.log')}")
            time.sleep(0.25)
        time.sleep(warmup)
        samples: list[int] = []
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            if proc.poll() is not None:
                raise RuntimeError(f"the agent exited: {_tail(tmp / f'agent{cameras}.log')}")
            samples.append(p.memory_info().rss)
            time.sleep(0.5)
        st = _status(port) or {}
        inferred = st.get("pipeline", {}).get("frames_inferred", 0)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
    if cameras and not inferred:
        raise RuntimeError(f"the {cameras}-camera agent inferred no frame")
    return {
        "cameras": cameras,
        "rss_median_bytes": int(statistics.median(samples)),
        "rss_max_bytes": max(samples),
        "samples": len(samples),
        "frames_inferred": inferred,
    }


def _tail(path: Path, n: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def measure_memory(
    cloud_config: Any,
    model_dir: str | Path | None,
    camera_counts: list[int],
    *,
    seconds: float = 20.0,
    warmup: float = 10.0,
    variant: str = "int8",
    providers: tuple[str, ...] = ("cpu",),
    progress: Callable[[str], None] | None = None,
) -> dict:
    """RSS per agent for each camera count (0 is always measured: the baseline of the first camera)."""
    counts = sorted({0, *camera_counts})
    tmp = Path(tempfile.mkdtemp(prefix="memory-bench-"))
    rows = []
    try:
        for n in counts:
            r = agent_rss(
                cloud_config,
                model_dir,
                n,
                seconds=seconds,
                warmup=warmup,
                tmp=tmp,
                variant=variant,
                providers=providers,
            )
            rows.append(r)
            if progress:
                progress(f"memory: {n} camera(s): RSS {r['rss_median_bytes'] / 2**20:.0f} MiB (median)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = rows[0]["rss_median_bytes"]
    for r in rows:
        r["per_camera_bytes"] = (r["rss_median_bytes"] - base) / r["cameras"] if r["cameras"] else None
    return {"rows": rows, "seconds": seconds, "warmup": warmup}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", default="0,1,2,4")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--model-dir", default=os.environ.get("EDGESIGHT_MODEL_DIR"))
    a = ap.parse_args(argv)
    try:
        counts = [int(x) for x in a.cameras.split(",")]
    except ValueError:
        ap.error(f"--cameras: expected comma-separated integers, got {a.cameras!r}")
    from edgesight.log import setup_logging
    from ops.testing import make_stack

    setup_logging("WARNING")
    tmp = Path(tempfile.mkdtemp(prefix="memory-stack-"))
    st = make_stack(tmp)
    st.up()
    try:
        r = measure_memory(st.config, a.model_dir, counts, seconds=a.seconds, warmup=a.warmup, progress=print)
    finally:
        st.down()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
