"""Latency/throughput benchmark of model variants on ONNX Runtime execution providers.

Two uses:

- CPU (``model-zoo bench``): fp32 and int8 at batch 1, 2, 4, run *interleaved*
  (fp32 batch, int8 batch, fp32 batch, ...) so that the noise of a shared machine
  hits both alike and the int8/fp32 ratio is measured in the same run; plus int8
  detection agreement with fp32 on vtest.avi frames (see :mod:`model_zoo.verify`).
- GPU (``python model_zoo/bench.py gpu ...``, called by ``ops/bench/gpu_bench.sh``):
  only needs ``numpy`` + ``onnxruntime-gpu`` -- this file imports nothing else at
  module level, so it runs on a bare box with a copied tree. Every
  (provider, variant) attempt runs in its own subprocess with a timeout, so a
  failing or hanging CUDA/TensorRT initialisation cannot take the rest down.

Latency = wall time of one ``session.run`` on an already letterboxed batch (the
model cost; pre/post-processing are separate and small). Throughput = frames per
second at that batch size = batch / mean latency. Speed-ups are given as the
ratio of medians and as the ratio of minimums (the least disturbed run of each:
on a shared VM the noise only ever adds time).

The CPU report also measures the *kernel ceiling* in the same run
(:func:`kernel_ceiling`): ONNX Runtime's int8 GEMM (u8 x s8, the MLAS kernel
behind QLinearConv) against its fp32 SGEMM at the shape of the model's largest
convolution. No int8 model can beat fp32 by more than its convolutions do, so
this is the upper bound of the int8 speed-up on the machine at hand (about 2x on
AVX2 without VNNI, 3-4x with AVX512-VNNI/AMX).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PROVIDER_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}
FRAMES_FILE = "bench_frames.npy"  # (K, H, W, 3) uint8 letterboxed RGB frames, prepared on the CPU side


def _ort():
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):  # onnxruntime-gpu >= 1.21: CUDA/cuDNN from nvidia-* pip packages if present
        try:
            ort.preload_dlls()
        except Exception:  # noqa: BLE001
            pass
    return ort


def stats(times_s: list[float], batch: int) -> dict:
    t = np.asarray(times_s) * 1000.0
    return {
        "batch": batch,
        "iters": len(t),
        "min_ms": round(float(t.min()), 2),
        "p50_ms": round(float(np.percentile(t, 50)), 2),
        "p95_ms": round(float(np.percentile(t, 95)), 2),
        "mean_ms": round(float(t.mean()), 2),
        "fps": round(batch * 1000.0 / float(t.mean()), 2),
        "ms_per_frame": round(float(np.percentile(t, 50)) / batch, 2),
    }


def frames_to_batch(frames_u8: np.ndarray, batch: int) -> np.ndarray:
    """(K, H, W, 3) uint8 RGB -> (batch, 3, H, W) float32 /255, cycling through the K frames."""
    idx = [i % len(frames_u8) for i in range(batch)]
    return np.ascontiguousarray(frames_u8[idx].transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)


def make_session(path: str | Path, provider: str, variant: str, threads: int = 0, cache_dir: str | Path | None = None):
    ort = _ort()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    opts: dict = {}
    if provider == "TensorrtExecutionProvider":
        cache = Path(cache_dir or Path(path).parent / "trt_cache")
        cache.mkdir(parents=True, exist_ok=True)
        opts = {
            "trt_fp16_enable": variant == "fp16",
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache),
            "trt_max_workspace_size": 2 << 30,
            # one engine for batch 1..4 instead of a rebuild per batch size
            "trt_profile_min_shapes": "images:1x3x640x640",
            "trt_profile_max_shapes": "images:4x3x640x640",
            "trt_profile_opt_shapes": "images:2x3x640x640",
        }
    providers = [(provider, opts)] + (
        [("CUDAExecutionProvider", {})] if provider == "TensorrtExecutionProvider" else []
    )
    if provider != "CPUExecutionProvider":
        providers.append(("CPUExecutionProvider", {}))
    return ort.InferenceSession(str(path), sess_options=so, providers=providers)


def bench_sessions(
    sessions: dict[str, object],
    frames_u8: np.ndarray,
    batches=(1, 2, 4),
    iters: int = 20,
    warmup: int = 3,
    progress=None,
) -> dict[str, list[dict]]:
    """Interleaved timing of several sessions; {label: [stats per batch]}."""
    out: dict[str, list[dict]] = {k: [] for k in sessions}
    for b in batches:
        x = frames_to_batch(frames_u8, b)
        feeds = {k: {s.get_inputs()[0].name: x} for k, s in sessions.items()}
        for k, s in sessions.items():
            for _ in range(warmup):
                s.run(None, feeds[k])
        times: dict[str, list[float]] = {k: [] for k in sessions}
        for _ in range(iters):
            for k, s in sessions.items():
                t0 = time.perf_counter()
                s.run(None, feeds[k])
                times[k].append(time.perf_counter() - t0)
            if progress:
                progress(1)
        for k in sessions:
            out[k].append(stats(times[k], b))
    return out


# --- CPU benchmark (model-zoo bench) -----------------------------------------------------------------------------


def kernel_ceiling(
    threads_list=(1,), m: int = 1600, k: int = 3456, n: int = 256, iters: int = 15, progress=None
) -> list[dict]:
    """fp32 SGEMM vs int8 (u8 activations x s8 weights in 7-bit range) GEMM in ONNX Runtime, interleaved.

    Default shape = yolov4-tiny's largest convolution at 640x640 as a GEMM (40x40 outputs,
    3x3x384 inputs, 256 filters). One entry per thread count: GMAC/s of each and the int8/fp32
    ratio (of minimums and of medians)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    ort = _ort()
    rng = np.random.default_rng(0)
    opset = [helper.make_opsetid("", 17)]
    f32 = helper.make_model(
        helper.make_graph(
            [helper.make_node("MatMul", ["a", "w"], ["y"])],
            "sgemm",
            [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
            [numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w")],
        ),
        opset_imports=opset,
    )
    i8 = helper.make_model(
        helper.make_graph(
            [helper.make_node("MatMulInteger", ["a", "w", "a_zp"], ["y"])],
            "u8s8",
            [helper.make_tensor_value_info("a", TensorProto.UINT8, [m, k])],
            [helper.make_tensor_value_info("y", TensorProto.INT32, [m, n])],
            [
                numpy_helper.from_array(rng.integers(-64, 64, (k, n)).astype(np.int8), "w"),
                numpy_helper.from_array(np.array(128, np.uint8), "a_zp"),
            ],
        ),
        opset_imports=opset,
    )
    onnx.checker.check_model(i8)
    feeds = {
        "fp32": {"a": rng.standard_normal((m, k)).astype(np.float32)},
        "int8": {"a": rng.integers(0, 256, (m, k)).astype(np.uint8)},
    }
    out = []
    for th in threads_list:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.intra_op_num_threads = th
        so.inter_op_num_threads = 1
        sess = {
            "fp32": ort.InferenceSession(f32.SerializeToString(), so, providers=["CPUExecutionProvider"]),
            "int8": ort.InferenceSession(i8.SerializeToString(), so, providers=["CPUExecutionProvider"]),
        }
        times: dict[str, list[float]] = {key: [] for key in sess}
        for key, se in sess.items():
            se.run(None, feeds[key])
        for _ in range(iters):
            for key, se in sess.items():
                t0 = time.perf_counter()
                se.run(None, feeds[key])
                times[key].append(time.perf_counter() - t0)
            if progress:
                progress(1)
        macs = m * k * n
        mins = {key: min(v) for key, v in times.items()}
        meds = {key: float(np.median(v)) for key, v in times.items()}
        out.append(
            {
                "threads": th,
                "shape_mkn": [m, k, n],
                "fp32_gmacs": round(macs / mins["fp32"] / 1e9, 1),
                "int8_gmacs": round(macs / mins["int8"] / 1e9, 1),
                "int8_speedup_min": round(mins["fp32"] / mins["int8"], 2),
                "int8_speedup_p50": round(meds["fp32"] / meds["int8"], 2),
            }
        )
    return out


TARGET_SPEEDUP, TARGET_AGREEMENT = 2.0, 0.9  # the model service's CPU targets for int8 vs fp32


def target_verdict(report: dict, speedup: float = TARGET_SPEEDUP, agreement: float = TARGET_AGREEMENT) -> dict:
    """Whether int8 met the targets in this run: the best batch by the median ratio, and the agreement."""
    sp = report["speedup_vs_fp32"]["int8"]
    best_batch = max(sp, key=lambda b: sp[b])
    ag = report.get("agreement_vs_fp32", {}).get("int8", {}).get("agreement")
    ceiling = max((c["int8_speedup_min"] for c in report.get("kernel_ceiling", [])), default=None)
    return {
        "speedup": speedup,
        "best_speedup": sp[best_batch],
        "best_batch": best_batch,
        "speedup_met": sp[best_batch] >= speedup,
        "agreement": agreement,
        "measured_agreement": ag,
        "agreement_met": None if ag is None else ag >= agreement,
        "kernel_ceiling": ceiling,
        "ceiling_allows_target": None if ceiling is None else ceiling >= speedup,
    }


def cpu_flags() -> list[str]:
    """The SIMD features that decide int8 speed (from /proc/cpuinfo; empty where unreadable)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in have]
    except OSError:
        pass
    return []


def prepare_frames(size=(640, 640), n: int = 8) -> np.ndarray:
    """Letterboxed RGB uint8 frames from vtest.avi (what the GPU box gets in bench_frames.npy)."""
    import cv2

    from edgesight.samples import find_video, read_video_frames, sample_images_dir

    v = find_video()
    frames = read_video_frames(v, range(3, 3 + 97 * n, 97)) if v else []
    if not frames and sample_images_dir():
        frames = [cv2.imread(str(p)) for p in sorted(sample_images_dir().glob("*.jpg"))]
    out = np.full((len(frames), size[0], size[1], 3), 114, np.uint8)
    for i, f in enumerate(frames):
        h, w = f.shape[:2]
        r = min(size[0] / h, size[1] / w)
        nh, nw = round(h * r), round(w * r)
        py, px = (size[0] - nh) // 2, (size[1] - nw) // 2
        out[i, py : py + nh, px : px + nw] = cv2.cvtColor(cv2.resize(f, (nw, nh)), cv2.COLOR_BGR2RGB)
    return out


def cpu_bench(
    name: str = "yolov4-tiny",
    store=None,
    variants=("fp32", "int8"),
    batches=(1, 2, 4),
    iters: int = 20,
    threads: int = 0,
    agreement_frames: int = 40,
    progress=None,
    on_phase=None,
    ceiling: bool = True,
) -> dict:
    from .registry import Registry
    from .verify import verification_frames, verify

    ort = _ort()
    sm = Registry(store).get(name)
    frames = prepare_frames(tuple(sm.manifest.input.size))
    if on_phase:
        on_phase("latency", len(batches) * iters)
    sessions = {v: make_session(sm.path(v), "CPUExecutionProvider", v, threads) for v in variants}
    res = bench_sessions(sessions, frames, batches, iters, progress=progress)
    report: dict = {
        "model": name,
        "provider": "CPUExecutionProvider",
        "onnxruntime": ort.__version__,
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "intra_op_threads": threads or "default",
        "results": res,
        "sizes_mb": {v: round(sm.path(v, verify=False).stat().st_size / 1e6, 2) for v in variants},
    }
    if "fp32" in res:
        # ratio of medians (robust to the stalls of a shared machine) and of minimums (least disturbed run);
        # both variants measured interleaved
        report["speedup_vs_fp32"] = {
            v: {str(a["batch"]): round(a["p50_ms"] / b["p50_ms"], 2) for a, b in zip(res["fp32"], res[v])}
            for v in res
            if v != "fp32"
        }
        report["speedup_vs_fp32_min"] = {
            v: {str(a["batch"]): round(a["min_ms"] / b["min_ms"], 2) for a, b in zip(res["fp32"], res[v])}
            for v in res
            if v != "fp32"
        }
    if ceiling and "int8" in variants:
        tl = sorted({1, threads or report["cpus"]})
        if on_phase:
            on_phase("kernel ceiling", 30 * len(tl))
        report["cpu_flags"] = cpu_flags()
        report["kernel_ceiling"] = kernel_ceiling(tl, iters=30, progress=progress)
        at = next(c for c in report["kernel_ceiling"] if c["threads"] == tl[-1])
        if "speedup_vs_fp32_min" in report:
            # how much of what the hardware allows the int8 model gets (both ratios of minimums)
            report["int8_share_of_ceiling"] = {
                b: round(x / at["int8_speedup_min"], 2) for b, x in report["speedup_vs_fp32_min"]["int8"].items()
            }
    others = [v for v in variants if v != "fp32"]
    if agreement_frames and others:
        fr = verification_frames(agreement_frames, include_samples=False)
        if on_phase:
            on_phase("agreement", len(fr) * (1 + len(others)))
        ag = verify(name, others, store, fr, threads=threads, progress=progress)
        report["agreement_vs_fp32"] = {v: a.as_dict() for v, a in ag.items()}
    if "int8" in report.get("speedup_vs_fp32", {}):
        report["target"] = target_verdict(report)
    return report


# --- GPU benchmark (python model_zoo/bench.py gpu) ---------------------------------------------------------------


def _one(args) -> int:
    """Child process: one provider x variant; prints one JSON line."""
    provider = PROVIDER_NAMES.get(args.provider, args.provider)
    frames = np.load(args.frames)
    t0 = time.perf_counter()
    res: dict = {"provider": provider, "variant": args.variant, "model": str(args.model)}
    try:
        s = make_session(args.model, provider, args.variant, args.threads, args.cache)
        res["active_providers"] = s.get_providers()
        # first run builds the TensorRT engine / CUDA kernels; time it separately
        x = frames_to_batch(frames, 1)
        t1 = time.perf_counter()
        first = s.run(None, {s.get_inputs()[0].name: x})
        res["session_s"] = round(t1 - t0, 2)
        res["first_run_s"] = round(time.perf_counter() - t1, 2)
        if provider not in res["active_providers"]:
            res["error"] = f"{provider} not active (fell back to {res['active_providers']})"
        res["results"] = bench_sessions({"m": s}, frames, args.batches, args.iters, warmup=args.warmup)["m"]
        if args.reference:
            ref = np.load(args.reference)
            sc = np.asarray(first[1], np.float32)[0]
            rs = ref[: sc.shape[0]]
            res["max_abs_score_diff_vs_cpu_fp32"] = round(float(np.abs(sc - rs).max()), 5)
            dec_ref, dec = rs.max(1) >= 0.25, sc.max(1) >= 0.25
            res["score_decision_agreement"] = round(float((dec_ref & dec).sum() / max(1, (dec_ref | dec).sum())), 4)
    except Exception as e:  # noqa: BLE001
        res["error"] = f"{type(e).__name__}: {e}"[:2000]
    print("RESULT " + json.dumps(res), flush=True)
    return 0


def _gpu(args) -> int:
    ort = _ort()
    avail = ort.get_available_providers()
    print(
        f"onnxruntime {ort.__version__} ({getattr(ort, 'get_device', lambda: '?')()}), available providers: {avail}",
        flush=True,
    )
    root = Path(args.model_dir) / args.name
    frames = root / FRAMES_FILE
    ref_path = root / "ref_scores_fp32_cpu.npy"
    if not ref_path.exists():
        try:  # reference on CPU, batch 1, first frame
            s = make_session(root / f"{args.name}.fp32.onnx", "CPUExecutionProvider", "fp32")
            np.save(ref_path, s.run(None, {"images": frames_to_batch(np.load(frames), 1)})[1][0])
        except Exception as e:  # noqa: BLE001
            print(f"no CPU reference: {e}", flush=True)
    results = []
    for prov in args.providers:
        full = PROVIDER_NAMES.get(prov, prov)
        for var in args.variants:
            model = root / f"{args.name}.{var}.onnx"
            if not model.exists():
                results.append({"provider": full, "variant": var, "error": f"missing {model}"})
                continue
            if full not in avail:
                results.append(
                    {"provider": full, "variant": var, "error": "provider not available in this onnxruntime"}
                )
                print(f"skip {full} {var}: not available", flush=True)
                continue
            cmd = [
                sys.executable,
                __file__,
                "one",
                "--model",
                str(model),
                "--provider",
                full,
                "--variant",
                var,
                "--frames",
                str(frames),
                "--iters",
                str(args.iters),
                "--warmup",
                str(args.warmup),
                "--cache",
                str(Path(args.cache or root / "trt_cache")),
                "--threads",
                str(args.threads),
                "--batches",
                *map(str, args.batches),
            ]
            if ref_path.exists():
                cmd += ["--reference", str(ref_path)]
            print(f"== {full} {var} (timeout {args.timeout}s)", flush=True)
            t0 = time.time()
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
                line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
                r = (
                    json.loads(line[-1][7:])
                    if line
                    else {"provider": full, "variant": var, "error": f"rc={p.returncode}: {p.stderr[-1500:]}"}
                )
            except subprocess.TimeoutExpired:
                r = {"provider": full, "variant": var, "error": f"timed out after {args.timeout}s"}
            r["wall_s"] = round(time.time() - t0, 1)
            results.append(r)
            print(json.dumps(r), flush=True)
    print_table(results)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"available_providers": avail, "onnxruntime": ort.__version__, "results": results}, indent=2)
        )
    return 0


def print_table(results: list[dict]) -> None:
    print(f"\n{'provider':28} {'variant':7} {'batch':>5} {'p50 ms':>8} {'p95 ms':>8} {'fps':>8}  note")
    for r in results:
        if r.get("error") and not r.get("results"):
            print(f"{r['provider']:28} {r['variant']:7} {'-':>5} {'-':>8} {'-':>8} {'-':>8}  {r['error'][:100]}")
            continue
        for x in r.get("results", []):
            note = r.get("error", "") or (
                f"score diff {r.get('max_abs_score_diff_vs_cpu_fp32')}" if x["batch"] == 1 else ""
            )
            print(
                f"{r['provider']:28} {r['variant']:7} {x['batch']:>5} {x['p50_ms']:>8} {x['p95_ms']:>8} {x['fps']:>8}  {note}"
            )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="GPU benchmark (numpy + onnxruntime-gpu only)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gpu", help="benchmark every provider x variant, each in its own subprocess")
    g.add_argument("--model-dir", default=".models")
    g.add_argument("--name", default="yolov4-tiny")
    g.add_argument("--providers", nargs="+", default=["cuda", "tensorrt"])
    g.add_argument("--variants", nargs="+", default=["fp32", "fp16"])
    g.add_argument("--batches", nargs="+", type=int, default=[1, 2, 4])
    g.add_argument("--iters", type=int, default=50)
    g.add_argument("--warmup", type=int, default=5)
    g.add_argument("--threads", type=int, default=0)
    g.add_argument("--timeout", type=int, default=180, help="seconds per provider x variant attempt")
    g.add_argument("--cache", default=None, help="TensorRT engine cache dir (default <model dir>/trt_cache)")
    g.add_argument("--json", default=None)
    o = sub.add_parser("one", help=argparse.SUPPRESS)
    o.add_argument("--model", required=True)
    o.add_argument("--provider", required=True)
    o.add_argument("--variant", required=True)
    o.add_argument("--frames", required=True)
    o.add_argument("--batches", nargs="+", type=int, default=[1, 2, 4])
    o.add_argument("--iters", type=int, default=50)
    o.add_argument("--warmup", type=int, default=5)
    o.add_argument("--threads", type=int, default=0)
    o.add_argument("--cache", default=None)
    o.add_argument("--reference", default=None)
    args = ap.parse_args(argv)
    return _gpu(args) if args.cmd == "gpu" else _one(args)


if __name__ == "__main__":
    sys.exit(main())
