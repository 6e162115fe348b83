"""``cloud-ops``: operate EdgeSight's cloud side.

Groups: ``stack`` (the embedded cloud on 127.0.0.1), ``schemas`` (the wire
contract), ``topics`` (declarative topic specs), ``connectors``, ``warehouse``, ``engineering``, ``fleet``, ``dlq``
(dead-letter topics), ``test`` (the operator's tests: brokers, retention, scale), ``bench`` (the benchmark suite:
BENCHMARKS.md, bench.json, the README's figures) and ``demo``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer
from rich.table import Table

from edgesight.log import redact_text, setup_logging
from edgesight.term import cli_console, esc
from ops.cli_bench import bench_app
from ops.cli_common import ConfigOpt, load_cloud
from ops.cli_connectors import connectors_app
from ops.cli_dlq import dlq_app
from ops.cli_engineering import engineering_app, fleet_app
from ops.cli_identities import identities_app
from ops.cli_test import test_app
from ops.cli_topics import topics_app
from ops.cli_warehouse import warehouse_app

app = typer.Typer(
    help="EdgeSight cloud operations: embedded stack, topics, connectors, warehouse, analytics, benchmarks.",
    no_args_is_help=True,
    add_completion=False,
)
stack_app = typer.Typer(
    help="The embedded cloud stack: Kafka-compatible broker (Tansu on S3 storage), S3 (SeaweedFS), "
    "MongoDB wire server (nx-27017) and MQTT (mosquitto), all on 127.0.0.1.",
    no_args_is_help=True,
)
schemas_app = typer.Typer(help="The versioned wire contract (JSON Schema files).", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(schemas_app, name="schemas")
app.add_typer(connectors_app, name="connectors")
app.add_typer(warehouse_app, name="warehouse")
app.add_typer(engineering_app, name="engineering")
app.add_typer(fleet_app, name="fleet")
app.add_typer(dlq_app, name="dlq")
app.add_typer(identities_app, name="identities")
app.add_typer(topics_app, name="topics")
app.add_typer(test_app, name="test")
app.add_typer(bench_app, name="bench")

console = cli_console()
err = cli_console(stderr=True)


def _stack(config, data_dir, kafka_port, s3_port, mongo_port, mqtt_port, storage=None, secure=None, brokers=None):
    from ops.stack import Stack

    cfg = load_cloud(
        config,
        data_dir=data_dir,
        kafka_port=kafka_port,
        s3_port=s3_port,
        mongo_port=mongo_port,
        mqtt_port=mqtt_port,
        broker_storage=storage,
        secure=secure,
        brokers=brokers,
    )
    return Stack(cfg)


DataDirOpt = typer.Option(None, "--data-dir", help="Where data, logs and stack.json live (default .edgesight-stack).")
KafkaPortOpt = typer.Option(None, min=1, max=65535, help="Kafka listener port (default 9092).")
S3PortOpt = typer.Option(None, min=1, max=65535, help="S3 API port (default 8333).")
MongoPortOpt = typer.Option(None, min=1, max=65535, help="MongoDB wire port (default 27017).")
MqttPortOpt = typer.Option(None, min=1, max=65535, help="MQTT port (default 1883).")


@stack_app.command("up")
def stack_up(
    config: Path | None = ConfigOpt,
    data_dir: Path | None = DataDirOpt,
    kafka_port: int | None = KafkaPortOpt,
    s3_port: int | None = S3PortOpt,
    mongo_port: int | None = MongoPortOpt,
    mqtt_port: int | None = MqttPortOpt,
    storage: str | None = typer.Option(None, help="Broker storage: s3 (durable, default) or memory."),
    plain: bool = typer.Option(
        False,
        "--plain",
        help="Plain listeners and the shared development logins instead of the secure default (TLS, per-identity "
        "MQTT ACLs and S3 identities; README 'Who may do what').",
    ),
    brokers: int | None = typer.Option(
        None,
        min=1,
        max=9,
        help="Tansu brokers on the shared S3 storage (default 1): kafka-1..N on their own ports, "
        "haproxy (kafka-proxy) on the Kafka port as the one bootstrap address.",
    ),
):
    """Start the services that are not running (all four on a fresh data dir; running ones are kept) and wait
    until each answers a real client round trip. Secure unless --plain (or stack.secure: false); a running stack
    keeps the mode it was started in."""
    from ops.stack import StackError

    setup_logging("WARNING")
    st = _stack(
        config, data_dir, kafka_port, s3_port, mongo_port, mqtt_port, storage, False if plain else None, brokers
    )
    if plain and st.identities is not None:  # a running stack keeps its mode
        err.print(f"[red]a secure stack runs in {esc(st.data_dir)}: `cloud-ops stack down` first for --plain[/red]")
        raise typer.Exit(1)
    t0 = time.monotonic()
    try:
        st.up(progress=lambda m: console.print(f"  {esc(m)}"))
    except StackError as e:
        err.print(f"[red]stack up failed:[/red] {esc(e)}")
        raise typer.Exit(1) from None
    console.print(f"[green]stack up[/green] in {time.monotonic() - t0:.1f}s; data in {esc(st.data_dir)}")
    _print_endpoints(st)


@stack_app.command("restart")
def stack_restart(
    service: str = typer.Argument(
        ..., help="s3, kafka, mongo or mqtt; with several brokers kafka-1..N or kafka-proxy."
    ),
    config: Path | None = ConfigOpt,
    data_dir: Path | None = DataDirOpt,
):
    """Stop one service and start it again on its recorded port; the other services keep running."""
    from ops.stack import StackError

    setup_logging("WARNING")
    st = _stack(config, data_dir, None, None, None, None)
    try:
        svc = st.restart(service, progress=lambda m: console.print(f"  {esc(m)}"))
    except StackError as e:
        err.print(f"[red]stack restart failed:[/red] {esc(e)}")
        raise typer.Exit(1) from None
    console.print(f"[green]{esc(svc.name)} restarted[/green] (pid {svc.pid}, port {svc.port})")


def _print_endpoints(st) -> None:
    c = st.config
    console.print(esc(f"  kafka  bootstrap.servers={st.bootstrap}"))
    console.print(esc(f"  s3     endpoint={st.s3_endpoint} buckets={st.settings.broker_bucket},{c.s3.keyframe_bucket}"))
    console.print(esc(f"  mongo  {redact_text(st.mongo_uri)}"))
    console.print(esc(f"  mqtt   {c.mqtt.host}:{c.mqtt.port} user={c.mqtt.username}"))
    if st.identities is not None:
        console.print(
            esc(
                f"  secure TLS on kafka, s3, mqtt; Kafka: a client certificate per identity, its role's rules "
                f"enforced by kafka-gate; CA {st.identities.ca_file}; stack-admin credentials in "
                f"{st.identities.dir}; identities: cloud-ops identities --help"
            )
        )
    else:
        console.print("  [yellow]plain[/yellow]  no TLS, shared development logins (started with --plain)")


@stack_app.command("down")
def stack_down(config: Path | None = ConfigOpt, data_dir: Path | None = DataDirOpt):
    """Stop the services this stack started (recorded in <data-dir>/stack.json); nothing else is touched."""
    setup_logging("WARNING")
    st = _stack(config, data_dir, None, None, None, None)
    stopped = st.down(progress=lambda m: console.print(f"  {esc(m)}"))
    console.print(
        f"[green]stack down[/green]: stopped {esc(', '.join(stopped)) if stopped else 'nothing (not running)'}"
    )


@stack_app.command("status")
def stack_status(
    config: Path | None = ConfigOpt,
    data_dir: Path | None = DataDirOpt,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
):
    """Each service: port, PID, and health from a real client round trip. Exit 1 unless all are healthy."""
    setup_logging("ERROR")
    st = _stack(config, data_dir, None, None, None, None)
    rows = st.status()
    if as_json:
        console.print_json(json.dumps([r.__dict__ for r in rows]))
    else:
        t = Table(title=esc(f"EdgeSight stack ({st.data_dir})"))
        for col in ("service", "port", "pid", "health", "detail"):
            t.add_column(col)
        for r in rows:
            health = (
                "[green]healthy[/green]"
                if r.healthy
                else ("[yellow]unhealthy[/yellow]" if r.running else "[red]down[/red]")
            )
            t.add_row(esc(r.name), str(r.port), str(r.pid or "-"), health, esc(r.detail))
        console.print(t)
    raise typer.Exit(0 if all(r.healthy for r in rows) else 1)


@stack_app.command("logs")
def stack_logs(
    service: str | None = typer.Argument(
        None, help="s3, kafka (kafka-1..N, kafka-proxy), mongo or mqtt (default: all)."
    ),
    lines: int = typer.Option(40, "--lines", "-n", help="How many trailing lines per service."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines (Ctrl-C to stop)."),
    config: Path | None = ConfigOpt,
    data_dir: Path | None = DataDirOpt,
):
    """Print the services' log files."""
    st = _stack(config, data_dir, None, None, None, None)
    names = [service] if service else list(st.services)
    for n in names:
        if n not in st.services:
            err.print(f"[red]unknown service {esc(repr(n))}; expected one of {', '.join(st.services)}[/red]")
            raise typer.Exit(2)
    files = {n: st.data_dir / "logs" / f"{n}.log" for n in names}
    for n, f in files.items():
        console.rule(n)
        if f.exists():
            sys.stdout.write("\n".join(f.read_text(errors="replace").splitlines()[-lines:]) + "\n")
        else:
            console.print("(no log yet)")
    if follow:
        pos = {n: f.stat().st_size if f.exists() else 0 for n, f in files.items()}
        try:
            while True:
                for n, f in files.items():
                    if f.exists() and f.stat().st_size > pos[n]:
                        with open(f, errors="replace") as fh:
                            fh.seek(pos[n])
                            for line in fh.read().splitlines():
                                sys.stdout.write(f"[{n}] {line}\n")
                            pos[n] = fh.tell()
                sys.stdout.flush()
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass


@schemas_app.command("export")
def schemas_export(
    out: Path = typer.Option(
        Path(__file__).resolve().parent.parent / "edgesight" / "wire" / "schemas",
        help="Folder for the JSON Schema files.",
    ),
):
    """Write the JSON Schema of every wire message (generated from the models)."""
    from edgesight.wire import json_schemas

    out.mkdir(parents=True, exist_ok=True)
    for name, doc in json_schemas().items():
        (out / name).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        console.print(f"wrote {esc(out / name)}")


@schemas_app.command("validate")
def schemas_validate(
    kind: str = typer.Argument(..., help="detection | status | command | ack"),
    file: Path = typer.Argument(..., help="A JSON file, or a JSON-lines file with one message a line."),
):
    """Validate messages against the contract; each bad line is reported with the field at fault."""
    from edgesight.wire import WireError, decode_ack, decode_command, decode_event, decode_status

    fn = {"detection": decode_event, "status": decode_status, "command": decode_command, "ack": decode_ack}.get(kind)
    if fn is None:
        err.print(f"[red]unknown kind {esc(repr(kind))}; expected detection, status, command or ack[/red]")
        raise typer.Exit(2)
    bad = 0
    try:
        lines = [ln for ln in file.read_bytes().decode("utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        err.print(f"[red]cannot read {esc(file)}: {esc(e)}[/red]")
        raise typer.Exit(2) from None
    for i, line in enumerate(lines, 1):
        try:
            fn(line)
        except WireError as e:
            bad += 1
            console.print(esc(f"{file}:{i}: {e}"))
    console.print(f"{len(lines) - bad} valid, {bad} invalid")
    raise typer.Exit(1 if bad else 0)


@app.command("demo")
def demo(
    config: Path | None = ConfigOpt,
    seconds: float = typer.Option(60.0, help="How long the edge agent runs on the cameras."),
    plain: bool = typer.Option(
        False,
        "--plain",
        help="On a plain stack (no TLS, the shared development logins) instead of the secure default: TLS, every "
        "component with its own identity.",
    ),
):
    """The whole system on real video: stack up, model built, RTSP + file cameras -> edge agent -> Kafka ->
    sink connectors (MongoDB, S3) and data engineering; then shows the results and where to look."""
    from ops.demo import run_demo

    raise typer.Exit(run_demo(config, seconds, plain=plain))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
