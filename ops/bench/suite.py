"""The benchmark suite behind ``cloud-ops bench``: every figure beside a baseline measured in the same run.

``run_suite`` starts a private embedded stack, runs each section (each may fail alone; the report says why),
and writes ``bench.json`` and ``BENCHMARKS.md``. Every figure is one uniform record (:func:`figure`): name,
value, unit, baseline name, baseline value, ratio = value / baseline, and a target when there is one, with
whether it was met. The README's "Measured figures" block is rendered from ``bench.json`` by
:mod:`ops.bench.readme`.

Accelerator choice (:func:`pick_accelerator`): when ONNX Runtime lists ``TensorrtExecutionProvider`` or
``CUDAExecutionProvider`` the detector runs there in fp16 (TensorRT first), the model section adds fp16 vs
fp32 on that provider, and a dated copy of the report goes to ``docs/bench/gpu_<device>_<date>.md``;
otherwise the CPU provider and int8, and the report says "GPU: none".
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgesight.log import get_logger

REPO = Path(__file__).resolve().parents[2]
SECTIONS = ("pipeline", "model", "publish", "warehouse", "engineering", "e2e", "uplink", "memory")
TITLES = {
    "pipeline": "Edge pipeline vs the engine alone",
    "model": "Detector: int8 vs fp32, and the CPU's kernel ceiling",
    "publish": "Publish: the agent's publisher vs a bare produce loop",
    "warehouse": "Warehouse ingest: the sink vs raw insert_many",
    "engineering": "Engineering: the consumer vs raw consume + bulk_write",
    "e2e": "End to end: capture -> document in MongoDB / keyframe in S3",
    "uplink": "Uplink: bytes per camera-hour vs every frame as JPEG",
    "memory": "Memory: agent RSS per camera",
}
MODEL = "yolov4-tiny"
E2E_MODULE = "ops.bench.e2e_bench"
E2E_TARGET_S = 1.0
SCHEMA = "edgesight.bench/1"

log = get_logger("bench")
Progress = Callable[[str], None]


class NotMeasured(Exception):
    """A section that cannot be measured here (the report says why; nothing is made up)."""


# ---- the uniform record ------------------------------------------------------------------------------------------


def figure(
    name: str,
    value: float,
    unit: str,
    baseline_name: str,
    baseline_value: float,
    *,
    target: tuple[str, str, float] | None = None,
) -> dict[str, Any]:
    """One figure and its same-run baseline. ``target`` = (``"ratio"`` or ``"value"``, ``">="`` or ``"<="``,
    bound). The ratio is always value / baseline value, both as measured (a baseline <= 0 is an error)."""
    if not baseline_value or baseline_value <= 0:
        raise ValueError(f"{name}: baseline {baseline_name!r} measured {baseline_value!r}; a ratio needs > 0")
    ratio = value / baseline_value
    rec: dict[str, Any] = {
        "name": name,
        "value": value,
        "unit": unit,
        "baseline_name": baseline_name,
        "baseline_value": baseline_value,
        "ratio": ratio,
        "target": None,
        "met": None,
    }
    if target is not None:
        of, op, bound = target
        x = ratio if of == "ratio" else value
        rec["target"] = {"of": of, "op": op, "bound": bound}
        rec["met"] = x >= bound if op == ">=" else x <= bound
    return rec


# ---- what the suite measures with --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """Sizes of one run: ``quick`` keeps the whole suite to a few minutes on 2 cores."""

    quick: bool
    pipeline_cameras: tuple[int, ...]
    pipeline_seconds: float
    model_iters: int
    agreement_frames: int
    publish_events: int
    warehouse_docs: int
    engineering_events: int
    e2e_cameras: int
    e2e_seconds: float
    rtt_samples: int
    uplink_cameras: int
    uplink_seconds: float
    memory_cameras: tuple[int, ...]
    memory_seconds: float
    memory_warmup: float

    @classmethod
    def make(cls, quick: bool) -> Profile:
        if quick:
            return cls(True, (1, 2), 8, 5, 8, 3000, 2000, 2000, 1, 20, 20, 1, 20, (1, 2), 4, 4)
        return cls(False, (1, 2, 4, 8), 30, 30, 40, 20000, 20000, 20000, 4, 60, 100, 1, 300, (1, 2, 4), 20, 10)


@dataclass(frozen=True)
class Accelerator:
    provider: str  # short name for InferenceConfig.providers: tensorrt, cuda or cpu
    provider_name: str  # ONNX Runtime's name
    variant: str  # fp16 on a GPU, int8 on the CPU
    gpu: str | None  # device name when a GPU provider was picked
    available: tuple[str, ...]

    @property
    def is_gpu(self) -> bool:
        return self.gpu is not None


def pick_accelerator(available: list[str] | None = None) -> Accelerator:
    """TensorRT, then CUDA, when ONNX Runtime lists them (the detector in fp16 there); else CPU and int8.
    ``available``: the providers to choose from (default: ``onnxruntime.get_available_providers()``)."""
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    avail = tuple(available)
    for full, short in (("TensorrtExecutionProvider", "tensorrt"), ("CUDAExecutionProvider", "cuda")):
        if full in avail:
            return Accelerator(short, full, "fp16", gpu_name() or "unknown GPU", avail)
    return Accelerator("cpu", "CPUExecutionProvider", "int8", None, avail)


def gpu_name() -> str | None:
    """The first GPU's name from ``nvidia-smi`` (None when there is none)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out else None


def machine_info(acc: Accelerator) -> dict[str, Any]:
    import psutil

    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_flags": {f: f in flags for f in wanted},
        "memory_bytes": psutil.virtual_memory().total,
        "os": platform.platform(),
        "gpu": acc.gpu,
        "onnxruntime_providers": list(acc.available),
        "provider_used": acc.provider_name,
        "variant_used": acc.variant,
    }


def _first_line(argv: list[str]) -> str | None:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    out = (r.stdout or r.stderr).strip()
    return out.splitlines()[0].strip() if out else None


def _dist(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions(stack: Any | None) -> dict[str, Any]:
    import confluent_kafka
    import cv2
    import numpy
    import onnxruntime

    from ops.stack import StackError, find_binary

    out: dict[str, Any] = {
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "confluent_kafka": confluent_kafka.__version__,
        "librdkafka": confluent_kafka.libversion()[0],
        "opencv": cv2.__version__,
        "numpy": numpy.__version__,
        "pymongo": _dist("pymongo"),
        "edgesight": _dist("edgesight"),
    }
    servers: dict[str, str | None] = {}
    for service, argv in (("kafka", ["--version"]), ("s3", ["version"]), ("mqtt", ["-h"])):
        try:
            servers[service] = _first_line([find_binary(service), *argv])
        except StackError as e:
            servers[service] = f"missing: {e}"
    servers["mongo"] = f"nx-27017 {_dist('nx-27017')}"
    servers["haproxy"] = _first_line(["haproxy", "-v"]) if shutil.which("haproxy") else None
    if stack is not None:
        for h in stack.status():
            if h.name == "mongo":
                servers["mongo"] += f" ({h.detail.split(' [')[0]})"
    out["servers"] = servers
    return out


# ---- the model store ---------------------------------------------------------------------------------------------


def ensure_model(model_dir: Path, variants: tuple[str, ...], progress: Progress) -> None:
    """The detector with ``variants`` built in ``model_dir`` (imported from darknet / compressed if missing)."""
    from edgesight.modelstore import ModelNotFoundError
    from model_zoo.compress import Int8Config, calibration_frames, compress
    from model_zoo.registry import Registry

    reg = Registry(model_dir)
    try:
        sm = reg.get(MODEL)
    except ModelNotFoundError:
        progress(f"model: importing {MODEL} into {model_dir}")
        sm = reg.import_darknet(MODEL)
    missing = [v for v in variants if v != "fp32" and not sm.has(v)]
    if missing:
        progress(f"model: building {', '.join(missing)}")
        frames = calibration_frames(Int8Config().calib_video_frames) if "int8" in missing else None
        compress(sm, missing, Int8Config(), frames=frames)


# ---- the sections ------------------------------------------------------------------------------------------------


@dataclass
class Ctx:
    stack: Any
    model_dir: Path
    profile: Profile
    acc: Accelerator
    progress: Progress
    tmp: Path


def sec_pipeline(c: Ctx) -> tuple[list[dict], dict]:
    """The edge pipeline against the engine alone. The agent publishes to a broker of its own on memory storage
    (a private stack, TLS and the Kafka gate as usual): on this box the broker and its S3 storage share the
    detector's cores, which on a site they do not (they are the cloud); SeaweedFS's bursts alone cost the
    pipeline 0.07 to 0.3 of its ratio here (each row's ``cpu_cores`` shows who used the CPU)."""
    from ops.bench.pipeline_bench import measure_pipeline, server_pids
    from ops.testing import make_stack

    threads = 0
    st = make_stack(c.tmp / "pipeline-stack", broker_storage="memory")
    c.progress("pipeline: a private broker on memory storage")
    st.up(progress=lambda m: None)
    try:
        res = measure_pipeline(
            st.config.kafka,
            list(c.profile.pipeline_cameras),
            c.profile.pipeline_seconds,
            variant=c.acc.variant,
            threads=threads,
            providers=(c.acc.provider,),
            model_dir=str(c.model_dir),
            on_row=lambda r: c.progress(
                f"pipeline: {r['cameras']} camera(s) {r['fps']:.1f} fps vs engine {r['ceiling_fps']:.1f} fps"
            ),
            servers=server_pids(st),
        )
    finally:
        st.down(progress=lambda m: None)
    res["broker_storage"] = "memory"
    figs = []
    for r in res["rows"]:
        if r["fps"] <= 0:
            raise RuntimeError(f"the pipeline inferred no frame with {r['cameras']} camera(s)")
        figs.append(
            figure(
                f"edge pipeline, {r['cameras']} camera(s)",
                r["fps"],
                "frames/s",
                f"engine alone on pre-decoded frames ({res['variant']}, threads {threads or 'default'}, "
                f"batch {r['batch']})",
                r["ceiling_fps"],
                target=("ratio", ">=", 0.95) if r["cameras"] >= 4 else None,
            )
        )
    return figs, res


def sec_model(c: Ctx) -> tuple[list[dict], dict]:
    from model_zoo.bench import TARGET_AGREEMENT, TARGET_SPEEDUP, cpu_bench

    p = c.profile
    rep = cpu_bench(
        MODEL,
        c.model_dir,
        iters=p.model_iters,
        agreement_frames=p.agreement_frames,
        on_phase=lambda phase, _n: c.progress(f"model: {phase}"),
    )
    res = rep["results"]
    figs = [
        figure(
            f"int8 detector, batch {b['batch']}",
            b["fps"],
            "frames/s",
            f"fp32 detector, batch {a['batch']} (interleaved)",
            a["fps"],
            target=("ratio", ">=", TARGET_SPEEDUP),
        )
        for a, b in zip(res["fp32"], res["int8"], strict=True)
    ]
    ag = rep["agreement_vs_fp32"]["int8"]
    n = p.agreement_frames
    figs.append(
        figure(
            f"int8 detection agreement with fp32 (F1, {n} vtest frames)",
            ag["agreement"],
            "F1",
            "fp32 against itself",
            1.0,
            target=("value", ">=", TARGET_AGREEMENT),
        )
    )
    at = rep["kernel_ceiling"][-1]
    for b, a in zip(res["int8"], res["fp32"], strict=True):
        figs.append(
            figure(
                f"int8 speed-up over fp32 (ratio of minimums), batch {b['batch']}",
                a["min_ms"] / b["min_ms"],
                "x",
                f"kernel ceiling: int8 / fp32 GEMM in ONNX Runtime, {at['threads']} thread(s)",
                at["int8_speedup_min"],
            )
        )
    if c.acc.is_gpu:
        figs += _gpu_figures(c)
    return figs, rep


def _gpu_figures(c: Ctx) -> list[dict]:
    """fp16 vs fp32 on the GPU provider picked (interleaved, batch 1, 2, 4)."""
    from model_zoo.bench import bench_sessions, make_session, prepare_frames
    from model_zoo.registry import Registry

    sm = Registry(c.model_dir).get(MODEL)
    sessions = {v: make_session(sm.path(v), c.acc.provider_name, v) for v in ("fp32", "fp16")}
    res = bench_sessions(sessions, prepare_frames(tuple(sm.manifest.input.size)), (1, 2, 4), iters=50)
    return [
        figure(
            f"fp16 detector on {c.acc.gpu} ({c.acc.provider_name}), batch {b['batch']}",
            b["fps"],
            "frames/s",
            f"fp32 on the same provider, batch {a['batch']}",
            a["fps"],
        )
        for a, b in zip(res["fp32"], res["fp16"], strict=True)
    ]


def sec_publish(c: Ctx) -> tuple[list[dict], dict]:
    from ops.bench.common import kafka_settings
    from ops.bench.publish_bench import measure_publish

    res = measure_publish(kafka_settings(c.stack.config.kafka), c.profile.publish_events, c.tmp)
    if not res["publisher"]["flushed"] or any(b["acked"] != b["events"] for b in res["bare"]):
        raise RuntimeError("not every record was acknowledged")
    return [
        figure(
            f"agent publisher, {res['events']} events (accept -> broker ack, lz4)",
            res["publisher_acked_per_s"],
            "events/s",
            "bare confluent-kafka produce loop (same payloads, settings, broker; before + after)",
            res["bare_acked_per_s"],
        )
    ], res


def sec_warehouse(c: Ctx) -> tuple[list[dict], dict]:
    from ops.bench.warehouse_bench import run

    res = run(c.stack.config, c.profile.warehouse_docs, 500, False)
    if res["stored"] != res["docs"]:
        raise RuntimeError(f"the sink stored {res['stored']} of {res['docs']} documents")
    raw = res["raw_insert_many_docs_per_s"]
    return [
        figure(
            f"sink runner ingest, {res['docs']} docs (Kafka -> validate -> transforms -> MongoDB)",
            res["sink_runner_docs_per_s"],
            "docs/s",
            "raw insert_many loop, same docs and indexes (before + after)",
            sum(raw) / len(raw),
            target=("ratio", ">=", 0.7),
        )
    ], res


def sec_engineering(c: Ctx) -> tuple[list[dict], dict]:
    from ops.bench.engineering_bench import measure

    res = measure(c.stack.config, c.profile.engineering_events)
    return [
        figure(
            f"engineering consumer, {res['events']} events",
            res["engineering_eps"],
            "events/s",
            f"raw consume + bulk_write loop of the records (write concern w={res['write_concern'].get('w')})",
            res["consume_bulk_write_eps"],
        )
    ], res


def sec_e2e(c: Ctx) -> tuple[list[dict], dict]:
    from ops.bench.common import broker_round_trip

    try:
        mod = importlib.import_module(E2E_MODULE)
    except ModuleNotFoundError as e:
        if e.name != E2E_MODULE:
            raise
        raise NotMeasured(f"{E2E_MODULE} missing") from None
    p = c.profile
    rtt = broker_round_trip(c.stack.config.kafka, p.rtt_samples)
    c.progress(f"e2e: broker round trip p50 {rtt['p50_s'] * 1000:.0f} ms; pipeline with {p.e2e_cameras} camera(s)")
    res = mod.measure_e2e(
        c.stack.config, c.model_dir, cameras=p.e2e_cameras, seconds=p.e2e_seconds, progress=c.progress
    )
    if not res.get("samples"):
        raise RuntimeError("no detection document was timed")
    cams = f"{p.e2e_cameras} camera(s)"
    figs = [
        figure(
            f"capture -> detection document visible in MongoDB, {q}, {cams}",
            res[f"{q}_s"],
            "s",
            f"bare produce -> consume round trip of the same payload, {q}",
            rtt[f"{q}_s"],
            target=("value", "<=", E2E_TARGET_S) if q == "p95" else None,
        )
        for q in ("p50", "p95", "p99")
    ]
    for q in ("p50", "p95"):
        if res.get(f"keyframe_{q}_s") is not None:
            figs.append(
                figure(
                    f"capture -> keyframe object readable in S3, {q}, {cams}",
                    res[f"keyframe_{q}_s"],
                    "s",
                    f"bare produce -> consume round trip of the same payload, {q}",
                    rtt[f"{q}_s"],
                )
            )
    return figs, {**res, "broker_round_trip": rtt}


def sec_uplink(c: Ctx) -> tuple[list[dict], dict]:
    from ops.bench.uplink_bench import TARGET_RATIO, measure_uplink

    p = c.profile
    res = measure_uplink(
        c.stack.config,
        c.model_dir,
        cameras=p.uplink_cameras,
        seconds=p.uplink_seconds,
        variant=c.acc.variant,
        providers=(c.acc.provider,),
        progress=c.progress,
    )
    if not res["tracks"]:
        raise RuntimeError("no track was seen: nothing to check keyframes against")
    return [
        figure(
            "agent uplink (Kafka key + value + headers, all topics)",
            res["bytes_per_camera_hour"] / 1e6,
            "MB/camera-hour",
            f"every frame as JPEG at the keyframes' quality ({res['jpeg']['quality']})",
            res["every_frame_jpeg_bytes_per_camera_hour"] / 1e6,
            target=("ratio", "<=", TARGET_RATIO),
        ),
        figure(
            "tracks whose keyframe arrived",
            res["tracks_with_keyframe"],
            "tracks",
            "tracks in the detection events",
            res["tracks"],
            target=("ratio", ">=", 1.0),
        ),
    ], res


def sec_memory(c: Ctx) -> tuple[list[dict], dict]:
    from ops.bench.memory_bench import measure_memory

    p = c.profile
    res = measure_memory(
        c.stack.config,
        c.model_dir,
        list(p.memory_cameras),
        seconds=p.memory_seconds,
        warmup=p.memory_warmup,
        variant=c.acc.variant,
        providers=(c.acc.provider,),
        progress=c.progress,
    )
    rows = {r["cameras"]: r for r in res["rows"]}
    mib = 2**20
    figs = []
    for n in p.memory_cameras:
        base = 0 if n == 1 else 1
        figs.append(
            figure(
                f"agent RSS, {n} camera(s)",
                rows[n]["rss_median_bytes"] / mib,
                "MiB",
                "agent with no camera" if base == 0 else "agent with 1 camera",
                rows[base]["rss_median_bytes"] / mib,
            )
        )
    return figs, res


RUNNERS: dict[str, Callable[[Ctx], tuple[list[dict], dict]]] = {
    "pipeline": sec_pipeline,
    "model": sec_model,
    "publish": sec_publish,
    "warehouse": sec_warehouse,
    "engineering": sec_engineering,
    "e2e": sec_e2e,
    "uplink": sec_uplink,
    "memory": sec_memory,
}


def run_section(name: str, ctx: Ctx) -> dict[str, Any]:
    """One section; a failure is recorded with its reason and the suite goes on."""
    t0 = time.monotonic()
    out: dict[str, Any] = {"name": name, "title": TITLES[name], "status": "ok", "reason": None, "figures": []}
    ctx.progress(f"{name}: started")
    log.info("bench section started", extra={"section": name})
    try:
        figs, details = RUNNERS[name](ctx)
        out["figures"], out["details"] = figs, details
    except NotMeasured as e:
        out["status"], out["reason"] = "not measured", str(e)
    except Exception as e:
        out["status"], out["reason"] = "failed", f"{type(e).__name__}: {e}"
        log.exception("bench section failed", extra={"section": name})
    out["seconds"] = round(time.monotonic() - t0, 1)
    log.info(
        "bench section done",
        extra={"section": name, "status": out["status"], "seconds": out["seconds"], "figures": len(out["figures"])},
    )
    return out


# ---- the run -----------------------------------------------------------------------------------------------------


def parse_only(only: str | None) -> tuple[str, ...]:
    """``--only a,b`` -> the sections, in suite order; unknown names raise ValueError naming them."""
    if not only:
        return SECTIONS
    names = [x.strip() for x in only.split(",") if x.strip()]
    bad = [x for x in names if x not in SECTIONS]
    if bad or not names:
        raise ValueError(
            f"unknown section(s) {', '.join(bad) or '(none given)'}; expected some of {', '.join(SECTIONS)}"
        )
    return tuple(s for s in SECTIONS if s in names)


def run_suite(
    out_dir: Path,
    *,
    quick: bool,
    sections: tuple[str, ...] = SECTIONS,
    model_dir: Path | None = None,
    progress: Progress = lambda _m: None,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Run ``sections`` on a private stack; write ``bench.json`` and ``BENCHMARKS.md`` into ``out_dir``."""
    from edgesight.modelstore import model_store_dir
    from ops.testing import make_stack

    logging.getLogger("edgesight.bench").setLevel(logging.INFO)
    started = datetime.now(timezone.utc)
    profile = Profile.make(quick)
    acc = pick_accelerator()
    progress(f"accelerator: {acc.provider_name}, {acc.variant}" + (f" on {acc.gpu}" if acc.gpu else " (GPU: none)"))
    mdir = model_store_dir(model_dir)
    tmp = Path(tempfile.mkdtemp(prefix="es-bench-"))
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "run_id": uuid.uuid4().hex,
        "started_at": started.isoformat(timespec="seconds"),
        "quick": quick,
        "command": " ".join(argv) if argv else None,
        "sections_run": list(sections),
        "profile": profile.__dict__,
    }
    stack = None
    results: list[dict] = []
    try:
        try:
            if {"pipeline", "model", "e2e", "uplink", "memory"} & set(sections):
                ensure_model(mdir, ("fp32", "int8") + (("fp16",) if acc.is_gpu else ()), progress)
            stack = make_stack(tmp / "stack")
            progress("stack: starting a private embedded stack")
            stack.up(progress=lambda m: progress(f"stack: {m}"))
        except Exception as e:  # no section can run: each says why, and the report is still written
            why = f"not run: the set-up failed: {type(e).__name__}: {e}"
            log.exception("bench set-up failed")
            progress(why)
            results = [
                {"name": n, "title": TITLES[n], "status": "failed", "reason": why, "figures": [], "seconds": 0.0}
                for n in sections
            ]
        else:
            report["machine"] = machine_info(acc)
            report["versions"] = versions(stack)
            ctx = Ctx(stack, mdir, profile, acc, progress, tmp)
            for name in sections:
                results.append(run_section(name, ctx))
                r = results[-1]
                why = f" ({r['reason']})" if r["reason"] else ""
                progress(f"{name}: {r['status']} in {r['seconds']}s{why}")
    finally:
        if stack is not None:
            stack.down(progress=lambda m: None)
        shutil.rmtree(tmp, ignore_errors=True)
    report.setdefault("machine", machine_info(acc))
    report.setdefault("versions", versions(None))
    report["sections"] = results
    report["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_report(report, out_dir)
    if acc.is_gpu:
        slug = re.sub(r"[^a-z0-9]+", "_", (acc.gpu or "gpu").lower()).strip("_")
        dated = REPO / "docs" / "bench" / f"gpu_{slug}_{started:%Y-%m-%d}.md"
        dated.write_text(render_markdown(report))
        report["gpu_copy"] = str(dated)
    return report


def write_report(report: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (out_dir / "BENCHMARKS.md").write_text(render_markdown(report))


# ---- rendering ---------------------------------------------------------------------------------------------------


def num(x: float | None) -> str:
    """A figure for a table: 3 significant digits, thousands separated."""
    if x is None:
        return "-"
    a = abs(x)
    if float(x).is_integer() and a < 1e9:
        return f"{x:,.0f}"
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def target_text(f: dict) -> str:
    t = f.get("target")
    if not t:
        return ""
    return f"{t['of']} {t['op'].replace('>=', '≥').replace('<=', '≤')} {num(t['bound'])}"


def met_text(f: dict) -> str:
    return "" if f.get("met") is None else ("yes" if f["met"] else "**no**")


def figures_table(report: dict[str, Any], *, sections: bool = True) -> list[str]:
    """The figures of every section, one row each (failed / unmeasured sections: one row with the reason)."""
    head = ["figure", "value", "baseline (same run)", "baseline value", "ratio", "target", "met"]
    if sections:
        head.insert(0, "section")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in report["sections"]:
        pre = [s["name"]] if sections else []
        if s["status"] != "ok":
            why = str(s["reason"]).replace("|", "/").replace("\n", " ")
            lines.append("| " + " | ".join(pre + [f"*{s['status']}* ({why})", "", "", "", "", "", ""]) + " |")
            continue
        for f in s["figures"]:
            cells = [
                f["name"],
                f"{num(f['value'])} {f['unit']}",
                f["baseline_name"],
                f"{num(f['baseline_value'])} {f['unit']}",
                num(f["ratio"]),
                target_text(f),
                met_text(f),
            ]
            lines.append("| " + " | ".join(pre + [c.replace("|", "/") for c in cells]) + " |")
    return lines


def machine_line(report: dict[str, Any]) -> str:
    m = report["machine"]
    flags = ", ".join(f for f, on in m["cpu_flags"].items() if on) or "none of the listed"
    return f"{m['cpu_model']}, {m['cores_usable']} cores ({flags}); GPU: {m['gpu'] or 'none'}"


def render_markdown(report: dict[str, Any]) -> str:
    m, v = report["machine"], report["versions"]
    mode = "quick" if report["quick"] else "full"
    out = [
        "# EdgeSight benchmarks",
        "",
        "<!-- generated by `cloud-ops bench`; do not edit by hand -->",
        "",
        f"Run `{report['run_id']}` ({mode}), {report['started_at']} -> {report['finished_at']}"
        + (f", `{report['command']}`" if report.get("command") else "")
        + ". Every figure is measured beside its baseline in this same run; ratio = value / baseline.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| CPU | {m['cpu_model']} |",
        f"| cores | {m['cores_usable']} usable of {m['cores']} |",
        "| CPU flags | " + ", ".join(f"{f} {'yes' if on else 'no'}" for f, on in m["cpu_flags"].items()) + " |",
        f"| memory | {m['memory_bytes'] / 2**30:.1f} GiB |",
        f"| GPU | {m['gpu'] or 'none'} |",
        f"| detector runs on | {m['provider_used']}, {m['variant_used']} |",
        f"| OS | {m['os']} |",
        "",
        "## Versions",
        "",
        "| | |",
        "|---|---|",
    ]
    for k, val in v.items():
        if k != "servers":
            out.append(f"| {k} | {val} |")
    for k, val in v.get("servers", {}).items():
        out.append(f"| server: {k} | {val} |")
    out += ["", "## Figures", "", *figures_table(report), ""]
    for s in report["sections"]:
        why = f" ({s['reason']})" if s["reason"] else ""
        out += [f"### {s['title']}", "", f"Status: {s['status']}{why} ({s['seconds']} s)."]
        out += _section_notes(s)
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _section_notes(s: dict[str, Any]) -> list[str]:
    d = s.get("details") or {}
    if s["status"] != "ok":
        return []
    if s["name"] == "pipeline":
        rows = [
            "",
            "| cameras | batch | engine fps | pipeline fps | ratio | events/s | capture -> ack p50 / p95 ms | overwritten |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in d["rows"]:
            rows.append(
                f"| {r['cameras']} | {r['batch']} | {num(r['ceiling_fps'])} | {num(r['fps'])} | {num(r['ratio'])} | "
                f"{num(r['events_per_s'])} | {r['lat_p50_ms']} / {r['lat_p95_ms']} | {r['dropped_overwritten']} |"
            )
        return rows
    if s["name"] == "model":
        ag = d.get("agreement_vs_fp32", {}).get("int8", {})
        kc = "; ".join(
            f"{k['threads']} thread(s): fp32 {k['fp32_gmacs']} / int8 {k['int8_gmacs']} GMAC/s, "
            f"{k['int8_speedup_min']}x (min) {k['int8_speedup_p50']}x (p50)"
            for k in d.get("kernel_ceiling", [])
        )
        return [
            "",
            f"Kernel ceiling, shape {d['kernel_ceiling'][0]['shape_mkn']} (m, k, n): {kc}.",
            f"Agreement: precision {ag.get('precision')}, recall {ag.get('recall')}, class-agnostic "
            f"{ag.get('class_agnostic_agreement')}. Sizes: {d.get('sizes_mb')} MB.",
        ]
    if s["name"] == "e2e":
        st = d.get("stages") or {}
        rows = ["", f"{d.get('samples')} documents timed. Stages:", "", "| stage | p50 | p95 |", "|---|---|---|"]
        for k, val in st.items():
            rows.append(f"| {k} | {num(val.get('p50_s'))} s | {num(val.get('p95_s'))} s |")
        return rows
    if s["name"] == "uplink":
        bt = ", ".join(
            f"{k} {val['records']} records / {val['bytes'] / 1e3:,.0f} kB" for k, val in d["by_topic"].items()
        )
        miss = d["tracks_missing_keyframe"]
        return [
            "",
            f"{d['cameras']} camera(s), {d['seconds']:.0f} s, {d['frames_read']} frames captured, "
            f"mean JPEG {d['jpeg']['mean_bytes'] / 1e3:.1f} kB; by topic: {bt}; {d['keyframes']} keyframes.",
            f"Keyframes: {d['keyframe_crops']} per-track crops (mean "
            f"{num((d['keyframe_crop_mean_bytes'] or 0) / 1e3)} kB) and {d['keyframe_whole_frames']} whole frames "
            f"(periodic context); without any keyframe the ratio would be {num(d['ratio_without_keyframes'])}. "
            f"Tracks without a keyframe: {', '.join(miss) if miss else 'none'}.",
        ]
    if s["name"] == "memory":
        return [
            "",
            "Per camera (RSS(N) - RSS(0)) / N: "
            + ", ".join(
                f"{r['cameras']} camera(s) {r['per_camera_bytes'] / 2**20:.1f} MiB" for r in d["rows"] if r["cameras"]
            )
            + ".",
        ]
    if s["name"] == "engineering":
        return [
            "",
            f"Raw consume {num(d['raw_consume_eps'])} events/s, consume + decode {num(d['consume_decode_eps'])}, "
            f"consume + bulk_write {num(d['consume_bulk_write_eps'])}; the store took {d['store_share']} of the "
            "consumer's time.",
        ]
    return []
