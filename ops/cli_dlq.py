"""``cloud-ops dlq``: read and replay dead-letter topics (connectors, engineering, fleet alike)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from edgesight.limits import clip
from edgesight.term import cli_console, esc
from ops.cli_common import ConfigOpt, load_cloud

dlq_app = typer.Typer(
    help="Dead-letter topics: what failed, where it came from, why; replay after a fix. Every "
    "EdgeSight consumer writes Kafka Connect's dead-letter headers, so these commands read "
    "the sink connectors' DLQs too.",
    no_args_is_help=True,
)
console = cli_console()
err = cli_console(stderr=True)


def _topic(cfg, topic: str | None, consumer: str | None) -> str:
    from edgesight.wire import Topics

    if bool(topic) == bool(consumer):
        err.print(
            "[red]name the dead-letter topic (--topic) or the consumer whose DLQ it is (--consumer: engineering, "
            "fleet, mongo-sink, s3-sink)[/red]"
        )
        raise typer.Exit(2)
    return topic or Topics(cfg.kafka.topic_prefix).dlq(consumer)


@dlq_app.command("show")
def show(
    config: Path | None = ConfigOpt,
    topic: str | None = typer.Option(None, help="Dead-letter topic name."),
    consumer: str | None = typer.Option(
        None, help="Or the consumer whose DLQ to read: engineering, fleet, mongo-sink, s3-sink."
    ),
    limit: int = typer.Option(50, min=1, help="At most this many records, oldest first."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per record instead of a table."),
) -> None:
    """List dead letters: source topic/partition/offset, consumer, stage, field at fault and the error."""
    from cloud.deadletters import DeadLetterError, read

    cfg = load_cloud(config)
    name = _topic(cfg, topic, consumer)
    try:
        recs = read(cfg.kafka.client_config(), name, limit=limit)
    except DeadLetterError as e:
        err.print(f"[red]{esc(e)}[/red]")
        raise typer.Exit(1) from None
    if as_json:
        for r in recs:
            c = r.context
            print(
                json.dumps(
                    {
                        "partition": r.partition,
                        "offset": r.offset,
                        "key": r.key.decode(errors="replace") if r.key is not None else None,
                        "value_bytes": len(r.value) if r.value is not None else None,
                        "source": c.source if c else None,
                        "connector": c.connector if c else None,
                        "stage": c.stage if c else None,
                        "field": c.field if c else None,
                        "error": c.message if c else None,
                    }
                )
            )
        return
    t = Table(title=f"{esc(name)}: {len(recs)} record(s)")
    for col in ("offset", "source", "consumer", "stage", "field", "error"):
        t.add_column(col, overflow="fold")
    for r in recs:
        c = r.context
        if c is None:
            t.add_row(f"{r.partition}:{r.offset}", "-", "-", "-", "-", "(no dead-letter context headers)")
        else:
            t.add_row(
                f"{r.partition}:{r.offset}",
                *(esc(v) for v in (c.source, c.connector, c.stage, c.field or "-", clip(c.message, 300))),
            )
    console.print(t)


@dlq_app.command("replay")
def replay_cmd(
    config: Path | None = ConfigOpt,
    topic: str | None = typer.Option(None, help="Dead-letter topic name."),
    consumer: str | None = typer.Option(None, help="Or the consumer/connector whose DLQ to replay."),
    to: str | None = typer.Option(None, help="Send to this topic instead of each record's source topic."),
    stage: str | None = typer.Option(None, help="Only dead letters of this stage (e.g. TASK_PUT)."),
    only_consumer: str | None = typer.Option(
        None, "--only-from", help="Only dead letters written by this consumer/connector."
    ),
    dry_run: bool = typer.Option(False, help="Count what would be replayed; send and commit nothing."),
) -> None:
    """Re-send dead letters, unchanged, to the topic they came from (after the fix is deployed).

    Progress is committed in the group edgesight-dlq-replay.<topic> once the broker acknowledged the
    re-sent records: a second run replays only newer dead letters."""
    from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from cloud.deadletters import DeadLetterError, replay

    cfg = load_cloud(config)
    name = _topic(cfg, topic, consumer)
    try:
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), MofNCompleteColumn(), TimeElapsedColumn(), console=err
        ) as prog:
            task = prog.add_task(
                f"replaying {esc(name)}" if not dry_run else f"reading {esc(name)} (dry run)", total=None
            )
            rep = replay(
                cfg.kafka.client_config(),
                name,
                to=to,
                stage=stage,
                connector=only_consumer,
                dry_run=dry_run,
                progress=lambda n: prog.advance(task, n),
            )
    except DeadLetterError as e:
        err.print(f"[red]{esc(e)}[/red]")
        raise typer.Exit(1) from None
    print(
        json.dumps(
            {
                "topic": name,
                "read": rep.read,
                "replayed": rep.replayed,
                "to": rep.by_target,
                "skipped": {
                    "filter": rep.skipped_filter,
                    "no_context": rep.skipped_no_context,
                    "value_dropped": rep.skipped_value_dropped,
                },
                "committed": rep.committed,
                "dry_run": dry_run,
            }
        )
    )
