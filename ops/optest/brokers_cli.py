"""The typer command ``cloud-ops test brokers`` (registered in :mod:`ops.cli_test`); the logic is in
:mod:`ops.optest.brokers`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Group
from rich.table import Table

from edgesight.term import cli_console, esc
from ops.cli_common import ConfigOpt, check_dir_option, check_file_option, check_log_level, load_cloud
from ops.optest.brokers import BrokersOptions, BrokersReport, run_brokers

console = cli_console()
err = cli_console(stderr=True)


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} s"


def report_tables(rep: BrokersReport) -> Group:
    """The report as terminal tables: counts, faults, throughput per phase."""
    counts = Table(title=f"test brokers: {esc(rep.where)}", title_justify="left", show_header=False)
    counts.add_column("what")
    counts.add_column("value", justify="right")
    prod = rep.producer
    counts.add_row("producer", esc(f"{prod['client']}, acks={prod['acks']}, idempotence {prod['enable.idempotence']}"))
    for label, value, must_be_zero in (
        ("events accepted by the publisher", rep.accepted, False),
        ("acknowledged by the brokers", rep.acked, False),
        ("not acknowledged at the end", rep.unacknowledged, True),
        ("landed in the warehouse (distinct events)", rep.landed, False),
        ("lost (acknowledged, not in the warehouse)", rep.lost, True),
        ("duplicate documents in the warehouse", rep.duplicate_documents, True),
        ("documents of no event of this run", rep.unexpected_documents, True),
        ("records read back from the topic", rep.kafka_records_read, False),
        ("extra copies in Kafka (informational)", rep.kafka_duplicates, False),
        ("acknowledged, not in the topic", rep.kafka_missing, False),
        ("acks without a new offset, re-sent by the publisher", rep.publisher.get("suspicious_acks_resent", 0), False),
    ):
        style = "red" if must_be_zero and value else ""
        counts.add_row(label, f"[{style}]{value}[/{style}]" if style else str(value))
    verdict = "[green]PASSED[/green]" if rep.passed else "[red]FAILED[/red]"
    counts.add_row("result", f"{verdict} in {rep.seconds:.0f} s")
    parts: list[Table] = [counts]
    if rep.faults:
        faults = Table(title="faults (failover: fault -> first acknowledgement of a record accepted after it)")
        for col in ("fault", "broker", "at", "its traffic share", "failover", "longest ack gap", "sink resumed"):
            faults.add_column(col, justify="left" if col in ("fault", "broker") else "right")
        for f in rep.faults:
            share = "-" if f.traffic_share is None else f"{f.traffic_share:.0%}"
            faults.add_row(
                esc(f.kind),
                esc(f.broker),
                f"{f.at_s:.1f} s",
                share,
                _s(f.failover_s),
                _s(f.longest_ack_gap_s),
                _s(f.sink_resume_s),
            )
        parts.append(faults)
    phases = Table(title="throughput (records/s)")
    for col in ("phase", "seconds", "offered", "acknowledged", "landed in warehouse"):
        phases.add_column(col, justify="left" if col == "phase" else "right")
    for ph in rep.phases:
        phases.add_row(
            ph.name, f"{ph.seconds:.1f}", f"{ph.accepted_per_s:.0f}", f"{ph.acked_per_s:.0f}", f"{ph.landed_per_s:.0f}"
        )
    parts.append(phases)
    notes = Table(show_header=False, box=None)
    for n in rep.notes + [f"sink error: {e}" for e in rep.sink_errors]:
        notes.add_row(esc(n))
    return Group(*parts, notes)


def brokers_command(
    config: Path | None = ConfigOpt,
    brokers: int = typer.Option(3, "--brokers", min=2, max=9, help="Brokers (nodes) of the embedded cluster."),
    link_down_s: float = typer.Option(
        30.0, "--link-down-s", min=0.5, max=3600.0, help="Seconds one node's link stays down."
    ),
    before_s: float = typer.Option(10.0, "--before-s", min=0.5, max=3600.0, help="Steady production before the kill."),
    settle_s: float = typer.Option(
        5.0, "--settle-s", min=0.5, max=3600.0, help="Seconds from the kill to the link down."
    ),
    after_s: float = typer.Option(10.0, "--after-s", min=0.5, max=3600.0, help="Production after the restart."),
    rate: float = typer.Option(200.0, "--rate", min=1.0, max=20000.0, help="Events per second offered (paced)."),
    idempotence: bool | None = typer.Option(
        None,
        "--idempotence/--no-idempotence",
        help="The publisher's producer idempotence. Default: off on the embedded Tansu cluster (see README "
        "'Several brokers: the failover test'), on (the production setting) with --bootstrap.",
    ),
    mode: str = typer.Option(
        "auto",
        "--mode",
        help="auto: network namespaces when possible, else processes on 127.0.0.x; netns: namespaces or fail; "
        "loopback: processes on 127.0.0.x.",
    ),
    bootstrap: str | None = typer.Option(
        None,
        "--bootstrap",
        help="A production cluster (host:port,...): produce/consume checks only, nothing killed; the warehouse "
        "and Kafka security come from --config.",
    ),
    workdir: Path | None = typer.Option(
        None, "--workdir", help="Directory for the cluster's data and logs (kept); default a temporary one (removed)."
    ),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the report as JSON to this file."),
    log_level: str = typer.Option("WARNING", "--log-level", help="JSON log lines on stderr from this level."),
) -> None:
    """Several brokers on several nodes: the edge's publisher and the warehouse sink through a SIGKILL of one
    broker, a link down of another node and the restart of the killed one. Reports acknowledged vs landed
    (lost and duplicate documents must be 0), failover times and throughput before/during/after.
    Exit 0 when nothing was lost or duplicated, 1 otherwise, 2 on bad options."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from edgesight.log import setup_logging

    if mode not in ("auto", "netns", "loopback"):
        err.print(f"[red]--mode {esc(mode)!r}: expected auto, netns or loopback[/red]")
        raise typer.Exit(2)
    check_file_option(json_path, "--json")
    check_dir_option(workdir, "--workdir")
    check_log_level(log_level)
    opts = BrokersOptions(
        brokers=brokers,
        link_down_s=link_down_s,
        before_s=before_s,
        settle_s=settle_s,
        after_s=after_s,
        rate=rate,
        idempotence=idempotence,
        mode=None if mode == "auto" else mode,
        workdir=workdir,
        bootstrap=bootstrap,
        config=load_cloud(config) if (config is not None or bootstrap) else None,
    )
    try:
        opts.validate()
    except ValueError as e:
        err.print(f"[red]{esc(e)}[/red]")
        raise typer.Exit(2) from None
    setup_logging(log_level.upper(), service="test-brokers")
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err) as prog:
        task = prog.add_task("starting", total=None)

        def progress(message: str) -> None:
            prog.console.print(message)
            prog.update(task, description=message)

        try:
            report = run_brokers(opts, progress=progress)
        except KeyboardInterrupt:
            err.print("[yellow]interrupted: the cluster, namespaces and links were removed[/yellow]")
            raise typer.Exit(130) from None
        except Exception as e:  # noqa: BLE001 - the reason, not a traceback
            err.print(f"[red]test brokers could not run: {esc(type(e).__name__)}: {esc(e)}[/red]")
            raise typer.Exit(1) from None
    console.print(report_tables(report))
    if json_path is not None:
        report.write_json(json_path)
        console.print(f"report written to {esc(json_path)}")
    if not report.passed:
        raise typer.Exit(1)
