"""``cloud-ops bench``: the benchmark suite (every figure beside its same-run baseline) and the README's figures.

    cloud-ops bench [--quick] [--only publish,warehouse] [--out DIR] [--model-dir DIR]
    cloud-ops bench readme [--check]

The logic lives in :mod:`ops.bench.suite` and :mod:`ops.bench.readme`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from edgesight.term import cli_console, esc
from ops.cli_common import check_dir_option

bench_app = typer.Typer(
    help="Benchmarks on a private embedded stack: BENCHMARKS.md + bench.json, every figure with its same-run "
    "baseline and ratio; `bench readme` renders the README's figures from bench.json.",
    invoke_without_command=True,
)
console = cli_console()
err = cli_console(stderr=True)


def _repo() -> Path:
    from ops.bench.suite import REPO

    return REPO


@bench_app.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
    quick: bool = typer.Option(
        False,
        "--quick",
        help="Short windows and fewer camera counts (a few minutes on 2 cores); every ratio "
        "is still computed from values measured in the run.",
    ),
    only: str | None = typer.Option(
        None,
        "--only",
        help="Comma-separated sections to run (default all): pipeline, model, publish, warehouse, engineering, "
        "e2e, uplink, memory.",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Folder for BENCHMARKS.md and bench.json (default: the repository root)."
    ),
    model_dir: Path | None = typer.Option(
        None,
        "--model-dir",
        help="Model store (default $EDGESIGHT_MODEL_DIR or ~/.cache/edgesight/models); the detector is "
        "built there if missing.",
    ),
) -> None:
    """Run the suite and write BENCHMARKS.md and bench.json. Exit 1 when a section failed (the report says why)."""
    if ctx.invoked_subcommand is not None:
        return
    from edgesight.log import setup_logging
    from ops.bench.suite import parse_only, run_suite

    try:
        sections = parse_only(only)
    except ValueError as e:
        err.print(f"[red]--only: {esc(e)}[/red]")
        raise typer.Exit(2) from None
    out_dir = out if out is not None else _repo()
    check_dir_option(out_dir, "--out")
    check_dir_option(model_dir, "--model-dir")
    setup_logging("WARNING")
    t0 = time.monotonic()

    def progress(msg: str) -> None:
        console.print(f"[dim]{time.monotonic() - t0:6.1f}s[/dim] {esc(msg)}")

    report = run_suite(
        out_dir,
        quick=quick,
        sections=sections,
        model_dir=model_dir,
        progress=progress,
        argv=["cloud-ops", *sys.argv[1:]],
    )
    failed = [s["name"] for s in report["sections"] if s["status"] == "failed"]
    figs = sum(len(s["figures"]) for s in report["sections"])
    console.print(
        f"[green]wrote[/green] {esc(out_dir / 'BENCHMARKS.md')} and {esc(out_dir / 'bench.json')}: {figs} figures, "
        f"run {report['run_id']}" + (f"; [red]failed: {esc(', '.join(failed))}[/red]" if failed else "")
    )
    if report.get("gpu_copy"):
        console.print(f"GPU report copied to {esc(report['gpu_copy'])}")
    raise typer.Exit(1 if failed else 0)


@bench_app.command("readme")
def readme(
    bench_json: Path = typer.Option(None, "--bench-json", help="The report (default: bench.json at the repo root)."),
    readme_file: Path = typer.Option(None, "--readme", help="The README (default: README.md at the repo root)."),
    check: bool = typer.Option(False, "--check", help="Compare only; exit 1 when the block is out of date."),
) -> None:
    """Regenerate the README's "Measured figures" block (between <!-- bench:begin --> and <!-- bench:end -->)."""
    from ops.bench.readme import ReadmeError, update

    bj = bench_json or _repo() / "bench.json"
    rd = readme_file or _repo() / "README.md"
    try:
        changed = update(rd, bj, check=check)
    except ReadmeError as e:
        err.print(f"[red]{esc(e)}[/red]")
        raise typer.Exit(2) from None
    if check:
        console.print(f"{esc(rd)}: {'out of date with' if changed else 'matches'} {esc(bj)}")
        raise typer.Exit(1 if changed else 0)
    console.print(f"{esc(rd)}: {'updated from' if changed else 'already matches'} {esc(bj)}")
