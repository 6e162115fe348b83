"""The typer command ``cloud-ops test retention`` (registered in :mod:`ops.cli_test`); the logic is in
:mod:`ops.optest.retention`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edgesight.term import cli_console, esc
from ops.cli_common import ConfigOpt, check_file_option, check_log_level, load_cloud
from ops.optest.retention import LAYERS, check_options, parse_layers, report_table, run_retention

console = cli_console()
err = cli_console(stderr=True)


def retention_command(
    config: Path | None = ConfigOpt,
    layers: str = typer.Option(
        ",".join(LAYERS), "--layers", help=f"Layers to check, separated by commas: {', '.join(LAYERS)}."
    ),
    retention: float = typer.Option(
        120.0,
        "--retention",
        min=3.0,
        max=86400.0,
        help="Seconds of retention set on the scratch data (topic retention.ms, TTL, sweep age).",
    ),
    wait: float = typer.Option(
        90.0,
        "--wait",
        min=1.0,
        max=86400.0,
        help="Longest wait, per layer, for a server to delete the old data (shorter than --retention). Kafka "
        "checks retention every log.retention.check.interval.ms (default 5 min), MongoDB's TTL monitor every 60 s.",
    ),
    bootstrap: str | None = typer.Option(
        None, "--bootstrap", help="Kafka bootstrap host:port[,...] (overrides the config's kafka.bootstrap_servers)."
    ),
    records: int = typer.Option(
        20,
        "--records",
        min=1,
        max=100_000,
        help="Old and new items written per layer (the spool layer writes 4000 events, past its 1 MiB bound).",
    ),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the report as JSON to this file."),
    log_level: str = typer.Option("WARNING", "--log-level", help="JSON log lines on stderr from this level."),
) -> None:
    """Per layer that keeps data (Kafka topic, warehouse TTL, S3 keyframes, edge spool): set a short retention on
    scratch data, write old and new data, wait, and report what is configured, what is enforced and by whom
    (the server or an EdgeSight job), with the counts read back. Scratch data is removed afterwards.
    Exit 0 when every layer ran (whatever it found), 1 when a layer could not run, 2 on bad options."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from edgesight.log import setup_logging

    try:
        chosen = parse_layers(layers)
    except ValueError as e:
        err.print(f"[red]--layers {esc(layers)!r}: {esc(e)}[/red]")
        raise typer.Exit(2) from None
    try:
        check_options(retention, wait, records)
    except ValueError as e:
        err.print(f"[red]{esc(e)}[/red]")
        raise typer.Exit(2) from None
    check_file_option(json_path, "--json")
    check_log_level(log_level)
    cloud = load_cloud(config)
    if bootstrap is not None:
        from pydantic import ValidationError

        try:
            kafka = type(cloud.kafka).model_validate({**cloud.kafka.model_dump(), "bootstrap_servers": bootstrap})
        except ValidationError as e:
            err.print(f"[red]--bootstrap {esc(bootstrap)!r}: {esc(e.errors()[0]['msg'])}[/red]")
            raise typer.Exit(2) from None
        cloud = cloud.model_copy(update={"kafka": kafka})
    setup_logging(log_level.upper(), service="test-retention")
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err, transient=True
    ) as prog:
        tasks = {name: prog.add_task(esc(f"{name}: starting"), total=1.0) for name in chosen}

        def progress(layer: str, message: str, fraction: float | None) -> None:
            upd: dict = {"description": esc(f"{layer}: {message}")}
            if fraction is not None:
                upd["completed"] = fraction
            prog.update(tasks[layer], **upd)

        report = run_retention(
            cloud, progress=progress, layers=chosen, retention_s=retention, wait_s=wait, records=records
        )
    console.print(report_table(report))
    if json_path is not None:
        json_path.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
        console.print(f"report written to {esc(json_path)}")
    if report.failed:
        err.print(f"[red]{len(report.failed)} layer check(s) could not run: see the error in their rows[/red]")
        raise typer.Exit(1)
