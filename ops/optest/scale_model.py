"""Model service scaling: the edge's inference engine (letterbox + network + NMS) at 1..T threads x batch sizes.

The engine is :class:`edge_agent.inference.InferenceEngine` as the agent builds it (``inference.intra_op_threads``,
``batch`` = frames per call, variant ``auto``: int8 on CPU, fp16 on a GPU), fed decoded vtest.avi frames; each
point runs ``seconds`` after one warm-up call and times every call. Frames/s = frames / time; latency = one call
(the time a batch of frames waits for its detections).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ops.optest.scale import Curve, Progress, ScaleOptions, Series, point


def engine_point(engine: Any, frames: list[np.ndarray], batch: int, seconds: float) -> dict[str, Any]:
    engine.infer(frames[:batch])  # warm-up (allocations, first-run kernels)
    lat: list[float] = []
    n, i = 0, 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        b = [frames[(i + k) % len(frames)] for k in range(batch)]
        t = time.perf_counter()
        dets = engine.infer(b)
        lat.append((time.perf_counter() - t) * 1e3)
        if len(dets) != batch:
            raise RuntimeError(f"{len(dets)} results for a batch of {batch}")
        n += batch
        i += batch
    el = time.perf_counter() - t0
    a = np.asarray(lat)
    return {
        "frames": n,
        "calls": len(lat),
        "fps": round(n / el, 2),
        "latency_p50_ms": round(float(np.percentile(a, 50)), 1),
        "latency_p95_ms": round(float(np.percentile(a, 95)), 1),
        "ms_per_frame": round(float(np.percentile(a, 50)) / batch, 1),
    }


def model_curves(opts: ScaleOptions, progress: Progress, suffix: str) -> list[Curve]:
    from edge_agent.inference import InferenceConfig, InferenceEngine
    from edgesight.samples import VTEST, read_video_frames

    frames = read_video_frames(VTEST, range(0, 64, 4))
    curve = Curve(
        name="model",
        service="model",
        title=f"Inference engine (yolov4-tiny): threads x batch ({suffix})",
        x="threads",
        x_label="ONNX Runtime intra-op threads (inference.intra_op_threads)",
        y_label="frames/s",
        y2_label="latency of one call, p95 ms",
        series=[
            Series("fps", "frames/s", group="batch"),
            Series("latency_p95_ms", "p95 ms", axis=2, group="batch"),
        ],
        columns=["threads", "batch", "fps", "ms_per_frame", "latency_p50_ms", "latency_p95_ms", "calls"]
        + ["variant", "providers"],
        notes=[f"{len(frames)} decoded vtest.avi frames (768x576), {opts.seconds:g} s per point after a warm-up."],
    )
    for t in range(1, opts.max_threads + 1):
        try:
            engine = InferenceEngine(
                InferenceConfig(model_dir=opts.model_dir, intra_op_threads=t, batch_max_size=max(opts.batches))
            )
        except Exception as e:  # noqa: BLE001 - every point of this thread count says why
            for b in opts.batches:
                curve.rows.append({"threads": t, "batch": b, "error": f"{type(e).__name__}: {e}"[:500]})
            progress(f"model: {t} thread(s): no engine: {type(e).__name__}: {e}")
            continue
        for b in opts.batches:
            progress(f"model: {t} thread(s), batch {b}")
            base = {"threads": t, "batch": b, "variant": engine.variant, "providers": engine.active_providers[0]}
            r = point(curve.rows, base, lambda b=b, engine=engine: engine_point(engine, frames, b, opts.seconds))
            progress(f"model: {t} thread(s), batch {b}: {r.get('fps') or r.get('error')} frames/s")
        del engine
    return [curve]
