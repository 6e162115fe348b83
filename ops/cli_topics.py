"""``cloud-ops topics``: the Kafka topics as declared in ``connectors/topics.yaml`` (or ``--file``).

``diff`` shows what ``apply`` would change (create, alter config, add partitions, and what Kafka cannot do),
``apply`` does it and reports each change with the broker's answer, ``describe`` shows the live settings.
Exit codes: 0 ok (``diff``: no drift), 1 drift (``diff --exit-code``) or a change not made (``apply``) or the
broker unreachable, 2 bad input (config, spec file, unknown ``--topic``).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from edgesight.term import cli_console, esc
from ops.cli_common import ConfigOpt, load_cloud

if TYPE_CHECKING:
    from cloud.config import CloudConfig
    from edgesight.kafka import TopicChange, TopicSpec

topics_app = typer.Typer(
    help="Declarative Kafka topics (connectors/topics.yaml): diff against the live cluster, apply, describe.",
    no_args_is_help=True,
)
console = cli_console()
err = cli_console(stderr=True)

FileOpt = typer.Option(None, "--file", "-f", help="Topic specs (default connectors/topics.yaml).")
TopicOpt = typer.Option(None, "--topic", "-t", help="Only this topic (repeatable; the name after placeholders).")
JsonOpt = typer.Option(False, "--json", help="Machine-readable output.")
TimeoutOpt = typer.Option(15.0, "--timeout", min=0.5, max=300.0, help="Seconds to wait for each broker answer.")


def _specs(config: Path | None, file: Path | None, topics: list[str] | None) -> tuple[CloudConfig, list[TopicSpec]]:
    from connectors.spec import TOPICS_FILE, variables
    from edgesight.kafka import SpecError, load_topic_specs

    cloud = load_cloud(config)
    path = file or TOPICS_FILE
    try:
        specs = load_topic_specs(path, variables(cloud))
    except (SpecError, OSError) as e:
        err.print(f"[red]{esc(e)}[/red]")
        raise typer.Exit(2) from None
    if topics:
        unknown = sorted(set(topics) - {s.name for s in specs})
        if unknown:
            err.print(f"[red]--topic {esc(', '.join(unknown))}: not in {esc(path)}[/red]")
            raise typer.Exit(2)
        specs = [s for s in specs if s.name in topics]
    return cloud, specs


def _broker_error(e: Exception) -> typer.Exit:
    err.print(f"[red]the broker did not answer: {esc(type(e).__name__)}: {esc(e)}[/red]")
    return typer.Exit(1)


def _changes_table(title: str, changes: list[TopicChange], applied: bool) -> Table:
    t = Table(title=esc(title))
    for col in ("topic", "action", "setting", "live", "wanted", *(("outcome",) if applied else ())):
        t.add_column(col)
    for c in changes:
        row = [esc(c.topic), esc(c.action), esc(c.setting or "-"), esc(c.live or "-"), esc(c.wanted or "-")]
        if c.action == "impossible":
            row[1] = f"[red]{row[1]}[/red]"
        if applied:
            row.append(f"[green]{esc(c.outcome)}[/green]" if c.ok else f"[red]{esc(c.outcome)}[/red]")
        t.add_row(*row)
    return t


@topics_app.command("diff")
def diff_cmd(
    config: Path | None = ConfigOpt,
    file: Path | None = FileOpt,
    topic: list[str] | None = TopicOpt,
    exit_code: bool = typer.Option(False, "--exit-code", help="Exit 1 when the cluster differs from the specs."),
    as_json: bool = JsonOpt,
    timeout: float = TimeoutOpt,
):
    """What `topics apply` would change, per topic and setting; what Kafka cannot change is marked impossible."""
    from edgesight.kafka import plan_topics
    from edgesight.log import setup_logging

    setup_logging("WARNING")
    cloud, specs = _specs(config, file, topic)
    try:
        changes = plan_topics(cloud.kafka.client_config(), specs, timeout=timeout)
    except Exception as e:  # noqa: BLE001 - any client error: the broker is not there
        raise _broker_error(e) from None
    if as_json:
        console.print_json(json.dumps([asdict(c) for c in changes]))
    elif changes:
        console.print(_changes_table(f"topics diff ({len(specs)} topic(s) in the specs)", changes, applied=False))
    else:
        console.print(f"[green]no changes[/green]: the {len(specs)} topic(s) match the specs")
    raise typer.Exit(1 if exit_code and changes else 0)


@topics_app.command("apply")
def apply_cmd(
    config: Path | None = ConfigOpt,
    file: Path | None = FileOpt,
    topic: list[str] | None = TopicOpt,
    as_json: bool = JsonOpt,
    timeout: float = TimeoutOpt,
):
    """Create missing topics, set configs, add partitions; each change is reported with the broker's answer
    (refused, or accepted but not stored). Idempotent. Exit 1 when a change was not made."""
    from edgesight.kafka import apply_topics
    from edgesight.log import get_logger, setup_logging

    setup_logging("WARNING")
    cloud, specs = _specs(config, file, topic)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=as_json,
    ) as bar:
        task = bar.add_task("topics apply", total=None)

        def step(c: TopicChange) -> None:
            bar.update(task, advance=1, description=esc(f"{c.topic}: {c.action} {c.setting}".strip()))

        try:
            changes = apply_topics(
                cloud.kafka.client_config(), specs, log=get_logger("topics"), progress=step, timeout=timeout
            )
        except Exception as e:  # noqa: BLE001
            raise _broker_error(e) from None
    failed = [c for c in changes if not c.ok]
    if as_json:
        console.print_json(json.dumps([asdict(c) for c in changes]))
    elif changes:
        console.print(_changes_table("topics apply", changes, applied=True))
        console.print(f"{len(changes) - len(failed)} change(s) made, {len(failed)} not made")
    else:
        console.print(f"[green]nothing to do[/green]: the {len(specs)} topic(s) match the specs")
    raise typer.Exit(1 if failed else 0)


@topics_app.command("describe")
def describe_cmd(
    config: Path | None = ConfigOpt,
    file: Path | None = FileOpt,
    topic: list[str] | None = TopicOpt,
    as_json: bool = JsonOpt,
    timeout: float = TimeoutOpt,
):
    """The live partitions and configs of the specs' topics, as the broker describes them (Tansu describes only
    the configs that were set; Apache Kafka all of them, defaults included)."""
    from edgesight.kafka import describe_topics
    from edgesight.log import setup_logging

    setup_logging("WARNING")
    cloud, specs = _specs(config, file, topic)
    try:
        live = describe_topics(cloud.kafka.client_config(), [s.name for s in specs], timeout=timeout)
    except Exception as e:  # noqa: BLE001
        raise _broker_error(e) from None
    if as_json:
        console.print_json(json.dumps({s.name: asdict(live[s.name]) if s.name in live else None for s in specs}))
        return
    t = Table(title="topics (live)")
    for col in ("topic", "partitions", "config (as described)"):
        t.add_column(col)
    for s in specs:
        state = live.get(s.name)
        if state is None:
            t.add_row(esc(s.name), "[red]missing[/red]", "-")
        else:
            t.add_row(esc(s.name), str(state.partitions), esc("\n".join(f"{k}={v}" for k, v in state.config.items())))
    console.print(t)
