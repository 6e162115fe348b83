"""Per-frame cost of tracker + zones + lifecycle records at N detections/frame.

    python -m ops.bench.tracking_bench [--frames 300] [--sizes 20 200]

Synthetic scene: N people walking on straight lines with small box jitter,
random score in 0.3..0.95 (so both association stages work), a few
dropped detections per frame, 3 zones and 2 counting lines. Prints mean and
p95 wall time per frame for the tracker alone and for the whole
CameraTracking.process (tracker + zones + lines + records), and the mean CPU
time of this thread (stable when other processes share the cores; wall time
is not).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from edge_agent.detections import Detections
from edge_agent.tracking import CameraTrackingConfig
from edge_agent.tracking.events import CameraTracking
from edge_agent.tracking.tracker import ByteTracker

W, H = 1920, 1080


def scene(n: int, frames: int, seed: int = 0) -> list[Detections]:
    rng = np.random.default_rng(seed)
    pos = rng.uniform([0, 100], [W, H], size=(n, 2))
    vel = rng.uniform(-6, 6, size=(n, 2))
    size = rng.uniform([20, 50], [50, 120], size=(n, 2))
    score = rng.uniform(0.3, 0.95, size=n)
    out = []
    for _ in range(frames):
        pos = pos + vel
        pos[:, 0] %= W
        pos[:, 1] = np.clip(pos[:, 1], 100, H)
        keep = rng.random(n) > 0.03
        p = pos[keep] + rng.normal(0, 1.5, size=(keep.sum(), 2))
        s = size[keep]
        xyxy = np.stack([p[:, 0] - s[:, 0] / 2, p[:, 1] - s[:, 1], p[:, 0] + s[:, 0] / 2, p[:, 1]], axis=1)
        sc = np.clip(score[keep] + rng.normal(0, 0.05, keep.sum()), 0.05, 1.0)
        out.append(Detections(xyxy.astype(np.float32), sc.astype(np.float32), np.zeros(len(sc), np.int32)))
    return out


CONFIG = {
    "tracker": {"frame_rate": 10},
    "zones": [
        {"name": "left", "polygon": [[0, 0], [0.33, 0], [0.33, 1], [0, 1]]},
        {"name": "centre", "polygon": [[0.3, 0.2], [0.7, 0.2], [0.8, 0.6], [0.5, 0.9], [0.2, 0.6]]},
        {"name": "bottom", "polygon": [[0, 0.7], [1, 0.7], [1, 1], [0, 1]], "labels": ["person"]},
    ],
    "lines": [
        {"name": "v", "start": [0.5, 0], "end": [0.5, 1]},
        {"name": "h", "start": [0, 0.5], "end": [1, 0.5], "labels": ["person"]},
    ],
}


def bench(n: int, frames: int) -> None:
    data = scene(n, frames)
    tr = ByteTracker(CameraTrackingConfig.model_validate(CONFIG).tracker)
    t_trk, c_trk = [], []
    for d in data:
        t0, c0 = time.perf_counter(), time.thread_time()
        tr.update(d)
        t_trk.append(time.perf_counter() - t0)
        c_trk.append(time.thread_time() - c0)
    ct = CameraTracking(CameraTrackingConfig.model_validate(CONFIG), (W, H), class_names=["person"])
    t_all, c_all, n_rec, n_trk = [], [], 0, 0
    for d in data:
        t0, c0 = time.perf_counter(), time.thread_time()
        tracked, recs = ct.process(d)
        t_all.append(time.perf_counter() - t0)
        c_all.append(time.thread_time() - c0)
        n_rec += len(recs)
        n_trk += len(tracked)
    warm = slice(10, None)  # skip the start-up frames (no tracks yet)
    a, b = np.array(t_trk[warm]) * 1e3, np.array(t_all[warm]) * 1e3
    ca, cb = np.mean(c_trk[warm]) * 1e3, np.mean(c_all[warm]) * 1e3
    print(
        f"{n:4d} det/frame  tracker: wall {a.mean():6.2f} ms (p95 {np.percentile(a, 95):6.2f}) cpu {ca:6.2f} ms | "
        f"+zones+lines+records: wall {b.mean():6.2f} ms (p95 {np.percentile(b, 95):6.2f}) cpu {cb:6.2f} ms | "
        f"{n_trk / len(data):.0f} tracked/frame, {n_rec / len(data):.0f} records/frame, "
        f"{ct.tracker._next_id - 1} ids"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--sizes", type=int, nargs="+", default=[20, 200])
    args = ap.parse_args()
    for n in args.sizes:
        bench(n, args.frames)


if __name__ == "__main__":
    main()
