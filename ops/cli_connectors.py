"""``cloud-ops connectors``: the Kafka Connect sink connectors (MongoDB warehouse, S3 keyframes).

Production: ``validate`` / ``deploy`` / ``status`` / ``pause`` / ``resume`` / ``delete`` talk to a
Kafka Connect REST API (``--connect-url``). Here (no Connect runtime): ``run`` executes the same
connector files in Python (see connectors/README.md for the implemented subset).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.table import Table

from edgesight.term import cli_console, esc
from ops.cli_common import ConfigOpt, load_cloud, load_warehouse

connectors_app = typer.Typer(
    help="Kafka Connect sink connectors: validate/deploy against a Connect REST API, "
    "or run them in Python on this machine (`run`).",
    no_args_is_help=True,
)
console = cli_console()
err = cli_console(stderr=True)

UrlOpt = typer.Option(
    "http://127.0.0.1:8083", "--connect-url", envvar="EDGESIGHT_CONNECT_URL", help="Kafka Connect REST API base URL."
)
NamesArg = typer.Argument(None, help="Connector files or names (default: all in connectors/).")
CollPrefixOpt = typer.Option(
    None, "--collection-prefix", help="Warehouse collection prefix (overrides the warehouse config)."
)
NamePrefixOpt = typer.Option(
    "", "--name-prefix", help="Prefix for connector names (and so consumer groups connect-<name>)."
)
WhOpt = typer.Option(
    None,
    "--warehouse-config",
    help="Warehouse YAML (collection prefix, retention).",
    envvar="EDGESIGHT_WAREHOUSE_CONFIG",
)


def _specs(names: list[str] | None, cloud, collection_prefix: str, name_prefix: str):
    from connectors.spec import CONNECTOR_FILES, SpecError, load_connector, variables

    v = variables(cloud, collection_prefix=collection_prefix, name_prefix=name_prefix)
    try:
        return [load_connector(n, v) for n in (names or list(CONNECTOR_FILES))]
    except SpecError as e:
        err.print(f"[red]{esc(e)}[/red]")
        raise typer.Exit(2) from None


@connectors_app.command("list")
def list_cmd():
    """The connector files shipped in connectors/."""
    from connectors.spec import CONNECTOR_FILES, load_connector

    for name, path in CONNECTOR_FILES.items():
        spec = load_connector(path)
        console.print(esc(f"{name:24s} {spec.connector_class:50s} {path}"))


@connectors_app.command("validate")
def validate_cmd(
    names: list[str] | None = NamesArg,
    config: Path | None = ConfigOpt,
    connect_url: str | None = typer.Option(
        None, "--connect-url", envvar="EDGESIGHT_CONNECT_URL", help="Also ask this Connect cluster's plugin validator."
    ),
    collection_prefix: str | None = CollPrefixOpt,
    name_prefix: str = NamePrefixOpt,
    warehouse_config: Path | None = WhOpt,
):
    """Static option-name check against the documented option lists, the Python runner's subset,
    and (with --connect-url) PUT /connector-plugins/{class}/config/validate."""
    from connectors.options import check_options, unsupported_by_runner
    from connectors.rest import ConnectClient, ConnectError, validation_errors

    cloud = load_cloud(config)
    wh = load_warehouse(warehouse_config, collection_prefix)
    bad = 0
    for spec in _specs(names, cloud, wh.collection_prefix, name_prefix):
        problems = check_options(spec.config)
        runner = unsupported_by_runner(spec.config)
        status = "[green]ok[/green]" if not problems else "[red]INVALID[/red]"
        console.print(
            f"{esc(spec.name)} ({esc(spec.connector_class)}): documented options {status}; "
            f"python runner: {'supported' if not runner else 'NOT supported'}"
        )
        for p in problems:
            console.print(f"  [red]- {esc(p)}[/red]")
        for p in runner:
            console.print(f"  [yellow]- runner: {esc(p)}[/yellow]")
        bad += bool(problems)
        if connect_url:
            try:
                res = ConnectClient(connect_url).validate(spec.connector_class, spec.config)
                errs = validation_errors(res)
                console.print(f"  Connect validate: {esc(res.get('error_count', len(errs)))} error(s)")
                for e in errs:
                    console.print(f"  [red]- {esc(e)}[/red]")
                bad += bool(errs)
            except ConnectError as e:
                err.print(f"  [red]{esc(e)}[/red]")
                bad += 1
    raise typer.Exit(1 if bad else 0)


def _client(url: str):
    from connectors.rest import ConnectClient

    return ConnectClient(url)


def _rest(fn):
    from connectors.rest import ConnectError

    try:
        return fn()
    except ConnectError as e:
        err.print(f"[red]{esc(e)}[/red]")
        raise typer.Exit(1) from None


@connectors_app.command("deploy")
def deploy_cmd(
    names: list[str] | None = NamesArg,
    config: Path | None = ConfigOpt,
    connect_url: str = UrlOpt,
    collection_prefix: str | None = CollPrefixOpt,
    name_prefix: str = NamePrefixOpt,
    warehouse_config: Path | None = WhOpt,
):
    """Create or update each connector: PUT /connectors/{name}/config (after the static check)."""
    from connectors.options import check_options

    cloud = load_cloud(config)
    wh = load_warehouse(warehouse_config, collection_prefix)
    c = _client(connect_url)
    for spec in _specs(names, cloud, wh.collection_prefix, name_prefix):
        problems = check_options(spec.config)
        if problems:
            err.print(f"[red]{esc(spec.name)}: not deployed:[/red]\n  - " + esc("\n  - ".join(problems)))
            raise typer.Exit(1)
        res = _rest(lambda: c.deploy(spec.name, spec.config))  # noqa: B023 - called in the same iteration
        console.print(f"[green]deployed[/green] {esc(spec.name)}: tasks={len((res or {}).get('tasks', []))}")


@connectors_app.command("status")
def status_cmd(name: str = typer.Argument(..., help="Connector name."), connect_url: str = UrlOpt):
    """GET /connectors/{name}/status."""
    res = _rest(lambda: _client(connect_url).status(name))
    console.print_json(json.dumps(res))


@connectors_app.command("pause")
def pause_cmd(name: str = typer.Argument(...), connect_url: str = UrlOpt):
    """PUT /connectors/{name}/pause."""
    _rest(lambda: _client(connect_url).pause(name))
    console.print(f"paused {esc(name)}")


@connectors_app.command("resume")
def resume_cmd(name: str = typer.Argument(...), connect_url: str = UrlOpt):
    """PUT /connectors/{name}/resume."""
    _rest(lambda: _client(connect_url).resume(name))
    console.print(f"resumed {esc(name)}")


@connectors_app.command("delete")
def delete_cmd(name: str = typer.Argument(...), connect_url: str = UrlOpt):
    """DELETE /connectors/{name}."""
    _rest(lambda: _client(connect_url).delete(name))
    console.print(f"deleted {esc(name)}")


@connectors_app.command("topics")
def topics_cmd(
    config: Path | None = ConfigOpt, create: bool = typer.Option(False, "--create", help="Create missing topics.")
):
    """The topic specs (connectors/topics.yaml): partitions, replication, configs."""
    from connectors.spec import load_topics, variables
    from edgesight.kafka import ensure_topics

    cloud = load_cloud(config)
    specs = load_topics(variables(cloud))
    t = Table(title="topics (connectors/topics.yaml)")
    for col in ("topic", "partitions", "replication", "config"):
        t.add_column(col)
    for s in specs:
        t.add_row(
            esc(s.name),
            str(s.partitions),
            str(s.replication_factor),
            esc(", ".join(f"{k}={v}" for k, v in s.config.items())),
        )
    console.print(t)
    if create:
        for name, what in ensure_topics(cloud.kafka.client_config(), specs).items():
            console.print(esc(f"  {name}: {what}"))


@connectors_app.command("export")
def export_cmd(
    names: list[str] | None = NamesArg,
    fmt: str = typer.Option(
        "k8s",
        "--format",
        help="k8s: Strimzi KafkaConnector (one per connector file), KafkaTopic (connectors/topics.yaml) "
        "and KafkaUser (the roles' ACLs) resources; secrets become config-provider references.",
    ),
    config: Path | None = ConfigOpt,
    collection_prefix: str | None = CollPrefixOpt,
    warehouse_config: Path | None = WhOpt,
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write one YAML file per kind into this directory (default: stdout)."
    ),
):
    """Export the connector files, topic specs and Kafka rights as Kubernetes resources (deploy/k8s)."""
    from connectors.spec import SpecError
    from ops.k8s import export_k8s

    if fmt != "k8s":
        err.print(f"[red]--format {esc(fmt)}: the only format is k8s[/red]")
        raise typer.Exit(2)
    cloud = load_cloud(config)
    wh = load_warehouse(warehouse_config, collection_prefix)
    try:
        files = export_k8s(cloud, wh.collection_prefix, names)
    except SpecError as e:
        err.print(f"[red]{esc(e)}[/red]")
        raise typer.Exit(2) from None
    if output is None:
        sys.stdout.write("".join(files.values()))
        return
    output.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (output / name).write_text(text)
        console.print(esc(f"wrote {output / name}"))


@connectors_app.command("run")
def run_cmd(
    names: list[str] | None = NamesArg,
    config: Path | None = ConfigOpt,
    tasks: int | None = typer.Option(
        None, "--tasks", min=1, help="Tasks (consumers) per connector in this process; default tasks.max from the file."
    ),
    collection_prefix: str | None = CollPrefixOpt,
    name_prefix: str = NamePrefixOpt,
    warehouse_config: Path | None = WhOpt,
    keyframe_index: bool = typer.Option(
        True,
        "--keyframe-index/--no-keyframe-index",
        help="Record each keyframe object in the warehouse keyframes collection.",
    ),
    index_only: bool = typer.Option(
        False,
        "--index-only",
        help="Keyframes: Kafka Connect writes the objects; "
        "only wait for each (HEAD) and record the index docs, in the consumer group "
        "edgesight-keyframe-indexer-<name>. Use next to a real Connect cluster.",
    ),
    init_warehouse: bool = typer.Option(
        True,
        "--init-warehouse/--no-init-warehouse",
        help="Create warehouse collections/indexes/TTL first (idempotent).",
    ),
    exit_when_idle: float | None = typer.Option(
        None, "--exit-when-idle", help="Stop after this many seconds without records (batch mode)."
    ),
    metrics_port: int | None = typer.Option(None, "--metrics-port", help="Serve Prometheus /metrics here (0 = any)."),
    metrics_host: str = typer.Option("127.0.0.1", "--metrics-host", help="Address to serve it on."),
    log_level: str = typer.Option("INFO", "--log-level"),
):
    """Run the connector files in Python: Kafka -> MongoDB warehouse and Kafka -> S3 (the embedded default).
    SIGTERM/SIGINT: finish the batch, flush, commit, exit 0. Prints a JSON summary on stdout at exit."""
    from cloud.stream import handle_signals
    from connectors.options import RunnerConfigError
    from connectors.runner import ConnectorRunner
    from connectors.spec import load_topics, variables
    from edgesight.http import serve_http
    from edgesight.kafka import ensure_topics
    from edgesight.log import get_logger, setup_logging

    cloud = load_cloud(config)
    wh = load_warehouse(warehouse_config, collection_prefix)
    specs = _specs(names, cloud, wh.collection_prefix, name_prefix)
    client = cloud.mongo.client()
    from cloud.warehouse.schema import Names, init_warehouse

    try:
        if index_only and any(s.connector_class != "io.confluent.connect.s3.S3SinkConnector" for s in specs):
            raise ValueError("--index-only applies to the S3 keyframe connector only: name it (s3-sink-keyframes)")
        runner = ConnectorRunner(
            specs,
            cloud,
            tasks=tasks,
            index_keyframes=keyframe_index,
            idle_exit_s=exit_when_idle,
            index_only=index_only,
            warehouse=(client, cloud.mongo.warehouse_db, Names(wh.collection_prefix).keyframes),
            topic_specs=load_topics(variables(cloud)),
        )
    except (RunnerConfigError, ValueError) as e:
        err.print(f"[red]cannot run: {esc(e)}[/red]")
        raise typer.Exit(2) from None
    setup_logging(log_level)
    log = get_logger("connector-runner")
    if init_warehouse:
        rep = init_warehouse(client, cloud.mongo.warehouse_db, wh)
        for note in rep.notes:
            log.info(note)
    for topic, what in ensure_topics(cloud.kafka.client_config(), runner.wanted_topics(), log=log).items():
        log.info("topic", extra={"topic": topic, "state": what})
    srv = None
    if metrics_port is not None:
        srv = serve_http(metrics_host, metrics_port, health=runner.running, status=lambda: {"tasks": runner.summary()})
        log.info("metrics", extra={"port": srv.port})
    handle_signals(runner.stop_event, log)
    runner.start()
    log.info("running", extra={"connectors": [s.name for s in specs], "tasks": len(runner.tasks)})
    try:
        while not runner.wait(0.5):
            pass
    finally:
        if srv is not None:
            srv.close()
    summary = runner.summary()
    sys.stdout.write(json.dumps({"summary": summary}) + "\n")
    sys.stdout.flush()
    errors = runner.errors()
    if errors:
        for e in errors:
            err.print(f"[red]{esc(e)}[/red]")
        raise typer.Exit(1)
