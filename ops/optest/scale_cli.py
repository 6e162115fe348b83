"""The typer command ``cloud-ops test scale`` (registered in :mod:`ops.cli_test`); the logic is in
:mod:`ops.optest.scale`."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import typer

from edgesight.term import cli_console, esc
from ops.cli_common import ConfigOpt, check_dir_option, load_cloud, refuse
from ops.optest.scale import SERVICES, Curve, ScaleOptions, machine, print_curve, run_scale, write_curve

console = cli_console()
err = cli_console(stderr=True)


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        vals = ()
    if not vals or any(v < 1 for v in vals):
        err.print(f"[red]{option} {esc(text)!r}: expected positive integers separated by commas[/red]")
        raise typer.Exit(2)
    return vals


def scale_command(
    service: str = typer.Option(
        "all", "--service", help=f"What to scale: {'|'.join(SERVICES)}|all (or several, separated by commas)."
    ),
    config: Path | None = ConfigOpt,
    out: Path = typer.Option(Path("docs/scale"), "--out", help="Directory for <curve>.json and <curve>.png."),
    max_cameras: int = typer.Option(4, "--max-cameras", min=1, max=64, help="stream: cameras per agent 1..N."),
    max_agents: int = typer.Option(3, "--max-agents", min=1, max=32, help="stream: agents (processes) 1..K."),
    max_instances: int = typer.Option(
        6, "--max-instances", min=1, max=32, help="sinks/engineering: instances (processes) 1..M."
    ),
    partitions: int = typer.Option(4, "--partitions", min=1, max=64, help="sinks/engineering: topic partitions P."),
    seconds: float = typer.Option(
        10.0, "--seconds", min=1.0, max=600.0, help="Measured seconds per point (after warm-up / group join)."
    ),
    records: int | None = typer.Option(
        None, "--records", min=10, help="sinks/engineering: records pre-filled (default: from --seconds and P)."
    ),
    max_writers: int = typer.Option(4, "--max-writers", min=1, max=64, help="warehouse: concurrent writers 1..W."),
    doc_sizes: str = typer.Option("256,4096,65536", "--doc-sizes", help="warehouse: document sizes in bytes."),
    max_threads: int = typer.Option(2, "--max-threads", min=1, max=256, help="model: inference threads 1..T."),
    batches: str = typer.Option("1,2,4", "--batches", help="model: batch sizes."),
    model_dir: Path | None = typer.Option(
        None, "--model-dir", help="model: model store (default $EDGESIGHT_MODEL_DIR or ~/.cache/edgesight/models)."
    ),
    repeats: int = typer.Option(
        1,
        "--repeats",
        min=1,
        max=10,
        help="sinks/engineering: runs per instance count, interleaved 1..M, M..1 (a shared machine's load "
        "then falls on every point); the best run is plotted, all are in the JSON.",
    ),
    keep: bool = typer.Option(
        False, "--keep", help="sinks/engineering: keep each point's collection / analytics database (to count back)."
    ),
    limits: bool = typer.Option(
        True, "--limits/--no-limits", help="warehouse: also run the incoming/outgoing limit probe."
    ),
) -> None:
    """Vertical and horizontal scaling curves of each service on this machine: a table on the terminal, and
    <out>/<curve>.json and <curve>.png (core count and CPU model in the title). A failed point is a row saying
    why and the curve goes on; the exit code is then 1. Runs against --config's stack,
    or a private embedded stack on free ports without --config."""
    from edgesight.log import get_logger, setup_logging

    names = tuple(s.strip() for s in service.split(",") if s.strip())
    if names == ("all",):
        names = SERVICES
    bad = [s for s in names if s not in SERVICES]
    if bad or not names:
        err.print(f"[red]--service {esc(service)!r}: expected {'|'.join(SERVICES)}|all[/red]")
        raise typer.Exit(2)
    if model_dir is not None and not model_dir.is_dir():
        refuse(f"--model-dir {model_dir}: not a directory")
    check_dir_option(out, "--out")
    opts = ScaleOptions(
        services=names,
        max_cameras=max_cameras,
        max_agents=max_agents,
        max_instances=max_instances,
        partitions=partitions,
        seconds=seconds,
        records=records,
        max_writers=max_writers,
        doc_sizes=_ints(doc_sizes, "--doc-sizes"),
        max_threads=max_threads,
        batches=_ints(batches, "--batches"),
        model_dir=str(model_dir) if model_dir else None,
        limits=limits,
        repeats=repeats,
        keep=keep,
    )
    setup_logging("WARNING")
    log = get_logger("test-scale")
    mach = machine()
    console.print(esc(f"test scale on {mach['cores']} cores ({mach['cpu_model']}): {', '.join(names)}"))
    needs_stack = any(s in ("sinks", "engineering", "warehouse", "stream") for s in names)
    written: list[dict[str, str]] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="es-scale-") as tmp:
        work = Path(tmp)
        stack = None
        if config is None and needs_stack:
            from ops.testing import make_stack

            console.print("starting a private embedded stack on free ports ...")
            stack = make_stack(work / "stack")
            stack.up(progress=lambda m: console.print(f"  {esc(m)}"))
            cfg = stack.config
        else:
            cfg = load_cloud(config)

        def on_curve(c: Curve) -> None:
            print_curve(c, console)
            files = write_curve(c, out, mach)
            written.append({k: str(v) for k, v in files.items()})
            console.print(esc(f"  wrote {files['json']} and {files['png']}"))
            failed.extend(f"{c.name}: {r['error']}" for r in c.rows if r.get("error"))
            log.info("curve written", extra={"curve": c.name, "points": len(c.rows), "json": str(files["json"])})

        try:
            run_scale(cfg, opts, work, lambda m: console.print(esc(m), highlight=False), on_curve)
        finally:
            if stack is not None:
                stack.down()
    console.print(esc(json.dumps({"written": written, "failed_points": len(failed)})), highlight=False, soft_wrap=True)
    if failed:  # every curve was still written; exit 1 so that a script notices
        err.print(f"[red]{len(failed)} point(s) failed[/red]; first: {esc(failed[0])}")
        raise typer.Exit(1)
