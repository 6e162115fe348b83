"""``cloud-ops engineering`` and ``cloud-ops fleet``: the post-ML analytics consumer and the fleet registry."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import typer
from rich.table import Table

from edgesight.term import cli_console, esc
from ops.cli_common import ConfigOpt, load_cloud

engineering_app = typer.Typer(
    help="Analytics consumer: detection events -> per-minute counts, line crossings, dwell "
    "and track summaries in MongoDB (idempotent; DLQ for poison records).",
    no_args_is_help=True,
)
fleet_app = typer.Typer(
    help="Fleet registry from agent heartbeats: agents, cameras, state, model, staleness.", no_args_is_help=True
)
console = cli_console()
err = cli_console(stderr=True)


def _settings(model, **overrides):
    from pydantic import ValidationError

    from edgesight.config import ConfigError, format_validation_error

    try:
        return model(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:
        err.print(f"[red]{esc(ConfigError('the command-line options', format_validation_error(e)))}[/red]")
        raise typer.Exit(2) from None


def _run(loop, metrics_host: str, metrics_port: int | None, until_idle_s: float | None) -> None:
    """Run the consumer loop until SIGTERM/SIGINT (or idle); /metrics, /healthz (the loop is running) and
    /status (its stats) on ``metrics_host:metrics_port``; the stats as one JSON line on stdout at the end."""
    from cloud.stream import handle_signals
    from edgesight.http import serve_http

    handle_signals(loop.stop, loop.log)
    srv = None
    if metrics_port is not None:
        srv = serve_http(metrics_host, metrics_port, health=lambda: loop.running, status=loop.status)
        loop.log.info("metrics served", extra={"host": metrics_host, "port": srv.port})
    try:
        stats = loop.run(until_idle_s=until_idle_s)
    finally:
        if srv is not None:
            srv.close()
    print(
        json.dumps(
            {
                "records": stats.records,
                "good": stats.good,
                "poison": stats.poison,
                "batches": stats.batches,
                "commits": stats.commits,
                "partitions": sorted(p for _, p in stats.partitions_seen),
                "reason": stats.reason,
            }
        ),
        flush=True,
    )


@engineering_app.command("run")
def engineering_run(
    config: Path | None = ConfigOpt,
    group: str | None = typer.Option(None, help="Consumer group (default edgesight-engineering)."),
    batch_size: int | None = typer.Option(None, help="Max records per batch (default 1000)."),
    batch_timeout_s: float | None = typer.Option(None, help="Max wait for a batch's first record (default 0.5)."),
    session_timeout_ms: int | None = typer.Option(None, help="Group session timeout."),
    write_concern: str | None = typer.Option(None, help="majority (default) or 1."),
    metrics_port: int | None = typer.Option(None, help="Serve Prometheus /metrics here (0 = any)."),
    metrics_host: str | None = typer.Option(None, help="Address to serve it on (default 127.0.0.1)."),
    until_idle_s: float | None = typer.Option(
        None, help="Exit after this long without records (batch jobs, tests). Default: run forever."
    ),
    log_level: str = typer.Option("INFO", help="Log level (JSON lines on stderr)."),
):
    """Consume detection events in a consumer group and upsert the analytics (stop with SIGTERM: the current
    batch is written and committed first)."""
    from cloud.engineering.engineering import build_engineering
    from cloud.engineering.settings import EngineeringConfig
    from edgesight.log import setup_logging

    setup_logging(log_level, service="engineering")
    cfg = load_cloud(config)
    st = _settings(
        EngineeringConfig,
        group_id=group,
        batch_size=batch_size,
        batch_timeout_s=batch_timeout_s,
        session_timeout_ms=session_timeout_ms,
        write_concern=write_concern,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
    )
    _run(build_engineering(cfg, st), st.metrics_host, st.metrics_port, until_idle_s)


@fleet_app.command("run")
def fleet_run(
    config: Path | None = ConfigOpt,
    group: str | None = typer.Option(None, help="Consumer group (default edgesight-fleet)."),
    stale_after_s: float | None = typer.Option(None, help="Silent longer than this = stale (default 60)."),
    sweep_interval_s: float | None = typer.Option(None, help="Stale sweep period (default 5)."),
    session_timeout_ms: int | None = typer.Option(None, help="Group session timeout."),
    metrics_port: int | None = typer.Option(None, help="Serve Prometheus /metrics here (0 = any)."),
    metrics_host: str | None = typer.Option(None, help="Address to serve it on (default 127.0.0.1)."),
    until_idle_s: float | None = typer.Option(None, help="Exit after this long without records."),
    log_level: str = typer.Option("INFO", help="Log level (JSON lines on stderr)."),
):
    """Consume agent heartbeats into the fleet registry and mark silent cameras stale."""
    from cloud.engineering.fleet import build_fleet
    from cloud.engineering.settings import FleetConfig
    from edgesight.log import setup_logging

    setup_logging(log_level, service="fleet")
    cfg = load_cloud(config)
    st = _settings(
        FleetConfig,
        group_id=group,
        stale_after_s=stale_after_s,
        sweep_interval_s=sweep_interval_s,
        session_timeout_ms=session_timeout_ms,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
    )
    _run(build_fleet(cfg, st), st.metrics_host, st.metrics_port, until_idle_s)


@fleet_app.command("list")
def fleet_list(
    config: Path | None = ConfigOpt,
    stale_after_s: float = typer.Option(60.0, help="Silent longer than this = stale."),
    stale_only: bool = typer.Option(False, "--stale", help="Only stale cameras."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
):
    """Agents and cameras: state, model version, last seen, stale. Exit 0 (even with stale cameras)."""
    from cloud.engineering.fleet import fleet_rows
    from edgesight.log import setup_logging

    setup_logging("WARNING")
    cfg = load_cloud(config)
    db = cfg.mongo.client()[cfg.mongo.analytics_db]
    rows = fleet_rows(db, datetime.now(timezone.utc), stale_after_s)
    if stale_only:
        rows = [r for r in rows if r["stale"]]
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    t = Table(title=f"EdgeSight fleet ({len(rows)} cameras, stale after {stale_after_s:g}s)")
    for col in ("agent", "camera", "state", "model", "version", "variant", "last seen (UTC)", "age s", "stale"):
        t.add_column(col)
    for r in rows:
        t.add_row(
            esc(r["agent_id"]),
            esc(r["camera_id"]),
            esc(r["state"]),
            esc(r["model"] or "-"),
            esc(r["model_version"] or "-"),
            esc(r["variant"] or "-"),
            esc(r["last_seen"][:19]),
            f"{r['age_s']:.0f}",
            "[red]STALE[/red]" if r["stale"] else "[green]ok[/green]",
        )
    console.print(t)
