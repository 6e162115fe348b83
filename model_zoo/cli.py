"""``model-zoo``: import, compress, verify and benchmark the detection models.

Typical first run (about a minute on 2 cores)::

    model-zoo import yolov4-tiny      # darknet cfg+weights -> fp32 ONNX in the model store
    model-zoo compress yolov4-tiny    # + int8 (CPU) and fp16 (GPU) variants
    model-zoo verify yolov4-tiny      # agreement of each variant with fp32 on real frames
    model-zoo bench yolov4-tiny       # CPU latency/throughput fp32 vs int8, batch 1/2/4
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from edgesight.term import cli_console, esc

app = typer.Typer(
    help="EdgeSight model zoo: import, compress (int8/fp16), verify and benchmark detectors.",
    no_args_is_help=True,
    add_completion=False,
)
console = cli_console()

StoreOpt = typer.Option(
    None,
    "--store",
    envvar="EDGESIGHT_MODEL_DIR",
    help="Model store directory (default: $EDGESIGHT_MODEL_DIR or ~/.cache/edgesight/models).",
)


@contextmanager
def _progress(desc: str) -> Iterator[tuple]:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as p:
        task = p.add_task(esc(desc), total=None)

        def advance(n: int = 1) -> None:
            p.advance(task, n)

        def phase(name: str, total: int) -> None:
            nonlocal task
            task = p.add_task(esc(name), total=total)

        def total(n: int) -> None:
            p.update(task, total=n)

        yield advance, phase, total


def _csv(v: str) -> list[str]:
    return [x.strip() for x in v.split(",") if x.strip()]


@app.command("list")
def list_models(store: Path | None = StoreOpt) -> None:
    """List known recipes and the models built in the store, with their variants and sizes."""
    from .registry import Registry, load_recipe, recipe_names

    reg = Registry(store)
    t = Table(title=f"model store: {esc(reg.store)}")
    for c in ("model", "version", "input", "classes", "built variants", "licence"):
        t.add_column(c)
    built = set(reg.names())
    for name in sorted(set(recipe_names()) | built):
        if name in built:
            sm = reg.get(name)
            m = sm.manifest
            variants = ", ".join(f"{v} ({m.variants[v].size_bytes / 1e6:.1f} MB)" for v in sm.available()) or "-"
        else:
            m, variants = load_recipe(name), "(not imported)"
        t.add_row(*map(esc, (name, m.version, "x".join(map(str, m.input.size)), m.classes, variants, m.licence[:40])))
    console.print(t)


@app.command("import")
def import_model(
    name: str = typer.Argument(
        "yolov4-tiny", help="Recipe name (model_zoo/manifests/<name>.yaml) or, with --onnx, the new model name."
    ),
    store: Path | None = StoreOpt,
    cfg: Path | None = typer.Option(None, help="Darknet .cfg (default: from the recipe's source)."),
    weights: Path | None = typer.Option(None, help="Darknet .weights (default: from the recipe's source)."),
    names: Path | None = typer.Option(None, help="Class names file, one per line."),
    input_size: int | None = typer.Option(
        None, help="Square network input size (multiple of 32); default from the recipe (640)."
    ),
    onnx_path: Path | None = typer.Option(
        None, "--onnx", help="Register an existing ONNX detector instead of converting darknet."
    ),
    layout: str = typer.Option("boxes_xyxy_scores", help="--onnx only: output layout, boxes_xyxy_scores or yolov8."),
    licence: str = typer.Option("unknown", help="--onnx only: licence text for the manifest."),
) -> None:
    """Convert a darknet model (cfg + weights, sha256-checked) to ONNX with in-graph box decode, or register an ONNX detector."""
    from .registry import Registry

    reg = Registry(store)
    with console.status(f"importing {esc(name)} ..."):
        if onnx_path is not None:
            if names is None:
                raise typer.BadParameter("--names is required with --onnx")
            sm = reg.register_onnx(onnx_path, name, names, output_layout=layout, licence=licence)  # type: ignore[arg-type]
        else:
            sm = reg.import_darknet(name, cfg=cfg, weights=weights, names=names, input_size=input_size)
    v = sm.manifest.variants["fp32"]
    console.print(
        "[green]imported[/] "
        + esc(f"{sm.name} fp32 -> {sm.root / v.file} ({v.size_bytes / 1e6:.1f} MB, sha256 {v.sha256[:12]}...)")
    )
    if v.recipe:
        console.print(f"  {esc(json.dumps(v.recipe))}")


@app.command()
def compress(
    name: str = typer.Argument("yolov4-tiny", help="Model in the store."),
    store: Path | None = StoreOpt,
    variants: str = typer.Option("int8,fp16", help="Comma-separated variants to build: int8 (CPU), fp16 (GPU)."),
    calib_frames: int = typer.Option(48, help="vtest.avi frames used for INT8 calibration (plus the 2 sample images)."),
    method: str = typer.Option("percentile", help="INT8 calibration: percentile (99.999, default), minmax or entropy."),
    per_channel: bool = typer.Option(True, help="Per-channel int8 weights."),
    exclude_heads: bool = typer.Option(
        True, help="Keep the final YOLO head convolutions in float (the box decode is always kept float)."
    ),
    unify_concat: bool = typer.Option(
        True, help="One quantization range per Concat group, so concatenation copies bytes instead of requantizing."
    ),
) -> None:
    """Build derived variants: static INT8 QDQ calibrated on real frames (decode kept float) and FP16."""
    from .compress import Int8Config
    from .compress import compress as do_compress
    from .registry import Registry

    sm = Registry(store).get(name)
    s = Int8Config(
        per_channel=per_channel,
        calibrate_method=method,
        exclude_heads=exclude_heads,
        calib_video_frames=calib_frames,
        unify_concat=unify_concat,
    )
    with _progress("calibrating int8") as (advance, _phase, total):
        made = do_compress(sm, _csv(variants), s, progress=advance, on_total=total)
    for v, p in made.items():
        console.print("[green]built[/] " + esc(f"{v}: {p} ({p.stat().st_size / 1e6:.1f} MB)"))


@app.command()
def verify(
    name: str = typer.Argument("yolov4-tiny", help="Model in the store."),
    store: Path | None = StoreOpt,
    variants: str = typer.Option("int8", help="Variants to compare with fp32 (e.g. int8,fp16)."),
    frames: int = typer.Option(
        40, help="vtest.avi frames (odd indices, not used for calibration); the 2 sample images are added."
    ),
    min_agreement: float = typer.Option(0.0, help="Exit with status 1 if any variant's agreement is below this."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Detection agreement of each variant with fp32 (same class, IoU>=0.5): precision, recall, F1 agreement."""
    from .verify import verification_frames
    from .verify import verify as do_verify

    vs = _csv(variants)
    fr = verification_frames(frames)
    with _progress("running detectors") as (advance, _phase, total):
        total(len(fr) * (1 + len(vs)))
        res = do_verify(name, vs, store, fr, progress=advance)
    if as_json:
        console.print_json(json.dumps({v: a.as_dict() for v, a in res.items()}))
    else:
        t = Table(title=f"{esc(name)}: agreement with fp32 on {len(fr)} frames")
        for c in (
            "variant",
            "fp32 dets",
            "variant dets",
            "matched",
            "precision",
            "recall",
            "agreement",
            "class-agnostic",
            "mean IoU",
        ):
            t.add_column(c)
        for v, a in res.items():
            t.add_row(
                esc(v),
                str(a.n_ref),
                str(a.n_var),
                str(a.matched),
                f"{a.precision:.3f}",
                f"{a.recall:.3f}",
                f"{a.agreement:.3f}",
                f"{a.class_agnostic_agreement:.3f}",
                f"{a.mean_iou:.3f}",
            )
        console.print(t)
    bad = [v for v, a in res.items() if a.agreement < min_agreement]
    if bad:
        console.print(f"[red]agreement below {min_agreement}: {esc(', '.join(bad))}")
        raise typer.Exit(1)


@app.command()
def bench(
    name: str = typer.Argument("yolov4-tiny", help="Model in the store."),
    store: Path | None = StoreOpt,
    variants: str = typer.Option("fp32,int8", help="Variants to time (interleaved, same run)."),
    batches: str = typer.Option("1,2,4", help="Batch sizes."),
    iters: int = typer.Option(20, help="Timed runs per variant and batch size."),
    threads: int = typer.Option(0, help="ONNX Runtime intra-op threads (0 = default: one per core)."),
    agreement_frames: int = typer.Option(40, help="vtest.avi frames for the int8-vs-fp32 agreement (0 = skip)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the full report as JSON here."),
) -> None:
    """CPU benchmark: p50/p95 latency and throughput per variant and batch size, int8 speed-up, int8 agreement."""
    from .bench import cpu_bench

    with _progress("benchmark") as (advance, phase, _total):
        rep = cpu_bench(
            name,
            store,
            _csv(variants),
            [int(b) for b in _csv(batches)],
            iters,
            threads,
            agreement_frames,
            progress=advance,
            on_phase=phase,
        )
    t = Table(
        title=esc(
            f"{name} on {rep['provider']} ({rep['cpus']} CPUs, onnxruntime {rep['onnxruntime']}, "
            f"threads {rep['intra_op_threads']})"
        )
    )
    for c in ("variant", "size MB", "batch", "min ms", "p50 ms", "p95 ms", "ms/frame", "frames/s", "x fp32 p50/min"):
        t.add_column(c, justify="right")
    for v, rows in rep["results"].items():
        for r in rows:
            sp = rep.get("speedup_vs_fp32", {}).get(v, {}).get(str(r["batch"]), "")
            spm = rep.get("speedup_vs_fp32_min", {}).get(v, {}).get(str(r["batch"]), "")
            t.add_row(
                esc(v),
                str(rep["sizes_mb"][v]),
                str(r["batch"]),
                f"{r['min_ms']:.1f}",
                f"{r['p50_ms']:.1f}",
                f"{r['p95_ms']:.1f}",
                f"{r['ms_per_frame']:.1f}",
                f"{r['fps']:.2f}",
                f"{sp}/{spm}" if sp else "",
            )
    console.print(t)
    for c in rep.get("kernel_ceiling", []):
        console.print(
            esc(
                f"kernel ceiling, {c['threads']} thread(s): int8 GEMM (u8s8) {c['int8_gmacs']} GMAC/s vs fp32 SGEMM "
                f"{c['fp32_gmacs']} GMAC/s at M,K,N={','.join(map(str, c['shape_mkn']))}: int8 at most "
                f"{c['int8_speedup_min']}x (min) / {c['int8_speedup_p50']}x (p50) faster on this CPU "
                f"({' '.join(rep.get('cpu_flags', [])) or 'flags unknown'})"
            )
        )
    if rep.get("int8_share_of_ceiling"):
        console.print(
            "int8 speed-up as a share of the kernel ceiling (ratios of minimums), per batch: "
            + ", ".join(f"{b}: {int(round(x * 100))}%" for b, x in rep["int8_share_of_ceiling"].items())
        )
    for v, a in rep.get("agreement_vs_fp32", {}).items():
        console.print(
            f"{esc(v)} agreement with fp32 on {a['frames']} vtest frames: {a['agreement']:.3f} "
            f"(precision {a['precision']:.3f}, recall {a['recall']:.3f}, mean IoU {a['mean_iou']:.3f}; "
            f"class-agnostic {a['class_agnostic_agreement']:.3f})"
        )
    t = rep.get("target")
    if t:
        verdict = "met" if t["speedup_met"] else "NOT met"
        line = f"target int8 >= {t['speedup']}x fp32: {verdict} (best {t['best_speedup']}x at batch {t['best_batch']})"
        if t["measured_agreement"] is not None:
            line += (
                f"; agreement >= {t['agreement']}: {'met' if t['agreement_met'] else 'NOT met'} "
                f"({t['measured_agreement']:.3f})"
            )
        if t["kernel_ceiling"] is not None and not t["ceiling_allows_target"]:
            line += f"; this CPU's int8 kernel ceiling is {t['kernel_ceiling']}x, below the target"
        console.print(esc(line))
    if json_out:
        json_out.write_text(json.dumps(rep, indent=2))
        console.print(f"report written to {esc(json_out)}")


if __name__ == "__main__":
    app()
