"""``edge-agent``: run and manage the EdgeSight edge agent on a site's box."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import typer
from rich.table import Table

from edgesight.config import ConfigError, format_validation_error
from edgesight.limits import RECORD_MAX_BYTES, clip, loads_bounded
from edgesight.log import redact, redact_text
from edgesight.term import cli_console, esc

app = typer.Typer(
    help="EdgeSight edge agent: cameras -> detector -> tracking -> Kafka (with an on-disk spool), "
    "controlled over MQTT.",
    no_args_is_help=True,
    add_completion=False,
)
console = cli_console()
err = cli_console(stderr=True)

ConfigArg = typer.Option(
    ..., "--config", "-c", help="Agent config YAML (see examples/agent.yaml).", envvar="EDGESIGHT_AGENT_CONFIG"
)
UNIT_DIR = Path("/etc/systemd/system")
UNIT_TEMPLATE = Path(__file__).resolve().parent.parent / "deploy" / "edge-agent.service"


def _load(config: Path):
    from edge_agent.config import AgentConfig

    try:
        return AgentConfig.load(config)
    except ConfigError as e:
        err.print(f"[red]{esc(e)}[/red]")
        raise typer.Exit(2) from None


@app.command()
def run(config: Path = ConfigArg):
    """Run the agent in the foreground until SIGTERM/SIGINT (what the systemd unit runs)."""
    from edgesight.log import setup_logging

    cfg = _load(config)
    setup_logging(cfg.log_level, agent=cfg.agent_id, service="edge-agent")
    from edgesight.nativelog import capture_native_stderr

    native = capture_native_stderr()  # FFmpeg/OpenCV/onnxruntime lines become JSON records too
    from edge_agent.agent import Agent

    try:
        agent = Agent(cfg)
    except Exception as e:  # noqa: BLE001 - start-up problems get one readable line, not a traceback
        native.close()
        err.print(f"[red]edge-agent cannot start: {type(e).__name__}: {esc(redact_text(str(e)))}[/red]")
        raise typer.Exit(1) from None
    try:
        code = agent.run()
    finally:
        native.close()
    raise typer.Exit(code)


@app.command()
def validate(config: Path = ConfigArg):
    """Validate a config file; prints each problem with its key."""
    cfg = _load(config)
    console.print(f"[green]{esc(config)}: valid[/green] (agent {esc(cfg.agent_id)}, {len(cfg.cameras)} camera(s))")


@app.command()
def status(
    url: str = typer.Option("http://127.0.0.1:9108", help="The agent's HTTP endpoint (metrics.port)."),
    as_json: bool = typer.Option(False, "--json", help="Raw JSON."),
):
    """Print the running agent's state: cameras, pipeline counters, spool."""
    where = esc(redact_text(url))
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/status", timeout=5) as r:
            doc = loads_bounded(r.read(RECORD_MAX_BYTES + 1), max_bytes=RECORD_MAX_BYTES)
    except (urllib.error.URLError, OSError, ValueError) as e:
        err.print(f"[red]no agent answers at {where}: {esc(redact_text(str(e)))}[/red]")
        raise typer.Exit(1) from None
    if as_json:
        console.print_json(json.dumps(redact(doc)))
        return
    try:
        _print_status(doc)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        err.print(f"[red]{where} did not answer an agent status document: {type(e).__name__}: {esc(e)}[/red]")
        raise typer.Exit(1) from None


def _print_status(doc: dict) -> None:
    doc = redact(doc)
    m = doc["model"]
    console.print(
        f"agent [bold]{esc(doc['agent_id'])}[/bold] {esc(doc['state'])} v{esc(doc['version'])} on "
        f"{esc(doc.get('hostname'))} up {doc['uptime_s']:.0f}s; model {esc(m['name'])} {esc(m['variant'])} "
        f"({esc(', '.join(map(str, m['providers'])))})"
    )
    t = Table()
    for c in ("camera", "state", "reason", "fps", "frames", "dropped", "reconnects"):
        t.add_column(c)
    for c in doc["cameras"]:
        t.add_row(
            esc(c["camera_id"]),
            esc(c["state"]),
            esc(c.get("reason", "")),
            f"{c['fps']:.1f}",
            *(esc(c[k]) for k in ("frames", "dropped", "reconnects")),
        )
    console.print(t)
    p, s = doc["pipeline"], doc.get("spool") or {}
    console.print(
        esc(
            f"pipeline: {p['frames_inferred']} frames inferred in {p['batches']} batches, "
            f"{p['events_published']} events, {p['keyframes_published']} keyframes"
        )
    )
    console.print(
        esc(
            f"spool: {s.get('records', 0)} records / {s.get('bytes', 0)} bytes (limit {s.get('limit_bytes', 0)}), "
            f"dropped {s.get('dropped', 0)}"
        )
    )


@app.command()
def check(config: Path = ConfigArg):
    """Check the environment: inference providers and model, cameras reachable, broker and MQTT reachable."""
    cfg = _load(config)
    ok = _check(cfg)
    raise typer.Exit(0 if ok else 1)


def _check(cfg) -> bool:
    import onnxruntime as ort

    ok = True

    def line(good: bool, what: str, detail: str) -> None:
        nonlocal ok
        ok &= good
        console.print(f"  {'[green]ok[/green]  ' if good else '[red]FAIL[/red]'} {esc(what)}: {esc(detail)}")

    avail = ort.get_available_providers()
    gpu = [p for p in avail if p in ("TensorrtExecutionProvider", "CUDAExecutionProvider")]
    console.print("[bold]inference[/bold]")
    line(True, "onnxruntime providers", ", ".join(avail) + ("" if gpu else "  (no GPU provider: CPU inference)"))
    try:
        from edgesight.modelstore import ModelStore

        m = ModelStore(cfg.inference.model_dir).get(cfg.inference.model)
        line(True, "model", f"{m.name} in {m.root}")
    except Exception as e:  # noqa: BLE001
        line(
            False,
            "model",
            f"{e} (build it: model-zoo import {cfg.inference.model} && model-zoo compress {cfg.inference.model})",
        )
    console.print("[bold]cameras[/bold]")
    from edge_agent.capture.sources import open_source

    for cam in cfg.cameras:
        if not cam.enabled:
            line(True, cam.id, "disabled")
            continue
        try:
            src = open_source(cam.capture())
            try:
                frame = src.retrieve() if src.grab() else None
                if frame is None:
                    line(False, cam.id, f"{_safe_url(cam.url)}: opened but no frame")
                else:
                    line(True, cam.id, f"{_safe_url(cam.url)}: frame {frame.shape[1]}x{frame.shape[0]} read")
            finally:
                src.release()
        except Exception as e:  # noqa: BLE001
            line(False, cam.id, f"{_safe_url(cam.url)}: {redact_text(str(e))}")
    console.print("[bold]uplink[/bold]")
    for name, hostport in [
        ("kafka", cfg.publish.kafka.bootstrap_servers.split(",")[0]),
        ("mqtt", f"{cfg.control.host}:{cfg.control.port}"),
    ]:
        host, _, port = hostport.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=3):
                line(True, name, f"{hostport} reachable")
        except OSError as e:
            line(
                False,
                name,
                f"{hostport} unreachable ({e}); the agent spools until it is back"
                if name == "kafka"
                else f"{hostport} unreachable ({e})",
            )
    spool = Path(cfg.publish.spool.dir)
    target = spool if spool.exists() else spool.parent
    free = shutil.disk_usage(target if target.exists() else Path("/")).free
    line(
        free > cfg.publish.spool.max_bytes,
        "spool disk",
        f"{free / 2**30:.1f} GiB free at {target}, spool limit {cfg.publish.spool.max_bytes / 2**30:.2f} GiB",
    )
    return ok


def _safe_url(url: str) -> str:
    return redact_text(url)


CREDENTIALS_MAX_BYTES = 256 * 1024
DEV_CONTROL = "  username: site-1               # password_file, tls: true and ca_file (the embedded stack is TLS-only)\n  tls: false\n"
DEV_KAFKA = (
    "    # For a real cluster:\n    # security_protocol: SASL_SSL\n    # sasl_mechanism: SCRAM-SHA-512\n"
    "    # sasl_username: edge-site-1\n    # sasl_password: ${KAFKA_PASSWORD}\n    # ssl_ca_location: /etc/edgesight/ca.pem\n"
)


def _install_credentials(bundle: Path, cred_dir: Path) -> tuple[str, str, str]:
    """Write an agent's credentials (``cloud-ops identities add-agent --out``) as 0600 files under ``cred_dir``;
    returns the agent id, the ``control:`` lines and the ``publish.kafka`` lines (TLS with its client certificate,
    its Kafka login; empty when the file has none) that use them. Exits 2 on a bad file or a known password."""
    from edgesight.files import private_dir, write_private
    from edgesight.mqtt import check_password

    try:
        with open(bundle, "rb") as fh:
            doc = loads_bounded(fh.read(CREDENTIALS_MAX_BYTES + 1), max_bytes=CREDENTIALS_MAX_BYTES)
        if not isinstance(doc, dict) or doc.get("schema") != "edgesight.credentials/1" or doc.get("role") != "agent":
            raise ValueError("not an agent's credentials file (edgesight.credentials/1, role agent)")
        name, mqtt = str(doc["name"]), doc["mqtt"]
        check_password(str(mqtt["password"]), "the MQTT password")
    except (OSError, ValueError, KeyError, TypeError) as e:
        err.print(f"[red]refused {esc(bundle)}: {esc(clip(str(e), 200))}[/red]")
        raise typer.Exit(2) from None
    private_dir(cred_dir)
    files = {"password_file": ("mqtt-password", str(mqtt["password"]) + "\n"), "ca_file": ("ca.pem", doc["ca_pem"])}
    if mqtt.get("cert_pem") and mqtt.get("key_pem"):
        files.update(cert_file=("client.pem", mqtt["cert_pem"]), key_file=("client.key", mqtt["key_pem"]))
    lines = [f"  username: {name}", "  tls: true"]
    for key, (fname, data) in files.items():
        lines.append(f"  {key}: {write_private(cred_dir / fname, data)}")
    kafka_lines = ""
    kafka = doc.get("kafka")
    if isinstance(kafka, dict) and kafka.get("cert_pem") and kafka.get("key_pem"):
        ks = [
            "    security_protocol: SSL",
            f"    ssl_ca_location: {cred_dir / 'ca.pem'}",
            f"    ssl_certificate_location: {write_private(cred_dir / 'kafka.pem', str(kafka['cert_pem']))}",
            f"    ssl_key_location: {write_private(cred_dir / 'kafka.key', str(kafka['key_pem']))}",
        ]
        if kafka.get("topic_prefix"):
            ks.append(f"    topic_prefix: {kafka['topic_prefix']}")
        kafka_lines = "\n".join(ks) + "\n"
    console.print(f"wrote the credentials of agent {esc(name)} to {esc(cred_dir)} (files 0600)")
    return name, "\n".join(lines) + "\n", kafka_lines


@app.command()
def install(
    config: Path = typer.Option(
        Path("/etc/edgesight/agent.yaml"),
        "--config",
        "-c",
        help="Where the agent config lives (a skeleton is written if missing).",
    ),
    agent_id: str = typer.Option(socket.gethostname().split(".")[0], help="Agent id for a new skeleton."),
    unit_dir: Path = typer.Option(UNIT_DIR, help="Where to write the systemd unit."),
    user: str = typer.Option("root", help="User the service runs as."),
    memory_max: str = typer.Option("4G", help="systemd MemoryMax for the agent."),
    cpu_quota: str = typer.Option("", help="systemd CPUQuota (e.g. 350%); empty = unlimited."),
    enable: bool = typer.Option(False, help="Also run systemctl daemon-reload + enable --now."),
    skip_checks: bool = typer.Option(False, help="Do not run the environment checks."),
    credentials: Path | None = typer.Option(
        None,
        help="The agent's credentials file (`cloud-ops identities add-agent --out`): MQTT login, CA, optional "
        "client certificate; written 0600 under <config dir>/credentials. A known or short password is refused.",
    ),
):
    """Write the config skeleton (if missing) and the systemd unit, then check the environment."""
    config = config.absolute()
    control = kafka_tls = None
    if credentials is not None:
        agent_id, control, kafka_tls = _install_credentials(credentials, config.parent / "credentials")
    if not config.exists():
        config.parent.mkdir(parents=True, exist_ok=True)
        skeleton = (Path(__file__).resolve().parent.parent / "examples" / "agent.yaml").read_text()
        skeleton = skeleton.replace("agent_id: site-1", f"agent_id: {agent_id}")
        if control is not None:
            if DEV_CONTROL not in skeleton:
                err.print("[red]the example config's control section changed; set control: by hand[/red]")
                raise typer.Exit(1)
            skeleton = skeleton.replace(DEV_CONTROL, control)
            if kafka_tls:
                if DEV_KAFKA not in skeleton:
                    err.print("[red]the example config's publish.kafka section changed; set its TLS by hand[/red]")
                    raise typer.Exit(1)
                skeleton = skeleton.replace(DEV_KAFKA, kafka_tls)
        config.write_text(skeleton)
        config.chmod(0o640)
        console.print(f"wrote config skeleton {esc(config)} (edit cameras and uplink, then `edge-agent validate`)")
        if control is None:
            err.print(
                "[yellow]it has no MQTT login yet (no default password ships): issue the agent's own with "
                "`cloud-ops identities add-agent` and pass it with --credentials[/yellow]"
            )
    else:
        console.print(f"keeping existing config {esc(config)}")
        if control is not None:
            console.print(f"set these in its control: section (instead of username/password):\n{esc(control)}")
        if kafka_tls:
            console.print(f"and these in its publish.kafka: section:\n{esc(kafka_tls)}")
    exe = shutil.which("edge-agent") or str(Path(sys.executable).parent / "edge-agent")
    unit = UNIT_TEMPLATE.read_text().format(
        exe=exe,
        config=config,
        user=user,
        memory_max=memory_max,
        cpu_quota=f"CPUQuota={cpu_quota}" if cpu_quota else "# CPUQuota= (unlimited)",
        workdir=Path(os.environ.get("EDGESIGHT_STATE_DIR", "/var/lib/edgesight")),
    )
    unit_dir.mkdir(parents=True, exist_ok=True)
    path = unit_dir / "edgesight-agent.service"
    path.write_text(unit)
    console.print(f"wrote systemd unit {esc(path)}")
    if enable:
        for cmd in (["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", "edgesight-agent.service"]):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                err.print(f"[red]{esc(' '.join(cmd))} failed: {esc(r.stderr.strip())}[/red]")
                raise typer.Exit(1)
    if not skip_checks:
        console.print("environment checks:")
        from edge_agent.config import AgentConfig

        try:
            _check(AgentConfig.load(config))
        except ConfigError as e:
            err.print(f"[yellow]config not valid yet:[/yellow]\n{esc(e)}")


@app.command()
def uninstall(
    unit_dir: Path = typer.Option(UNIT_DIR, help="Where the systemd unit was written."),
    purge_config: Path | None = typer.Option(None, help="Also delete this config file."),
):
    """Stop/disable the service (when systemd runs) and remove the unit; the spool is kept."""
    path = unit_dir / "edgesight-agent.service"
    if shutil.which("systemctl") and Path("/run/systemd/system").exists():
        subprocess.run(["systemctl", "disable", "--now", "edgesight-agent.service"], capture_output=True)
    if path.exists():
        path.unlink()
        console.print(f"removed {esc(path)}")
    else:
        console.print(f"no unit at {esc(path)}")
    if purge_config and purge_config.exists():
        purge_config.unlink()
        console.print(f"removed {esc(purge_config)}")


@app.command()
def tui(
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Take broker, credentials and TLS from this agent config's control section."
    ),
    mqtt_host: str | None = typer.Option(None, help="MQTT broker host (default 127.0.0.1, or the config's)."),
    mqtt_port: int | None = typer.Option(None, help="MQTT broker port (default 1883, or the config's)."),
    username: str | None = typer.Option(None, envvar="EDGESIGHT_TUI_USERNAME", help="Operator's MQTT user."),
    password: str | None = typer.Option(
        None, envvar="EDGESIGHT_TUI_PASSWORD", help="Operator's MQTT password (prefer the environment variable)."
    ),
    password_file: Path | None = typer.Option(
        None, help="Read the operator's MQTT password from this file (first line; `identities add-operator --out`)."
    ),
    tls: bool = typer.Option(False, "--tls", help="Connect with TLS."),
    ca_file: Path | None = typer.Option(None, help="CA bundle that signed the broker's certificate (TLS)."),
    cert_file: Path | None = typer.Option(None, help="Operator's client certificate (TLS)."),
    key_file: Path | None = typer.Option(None, help="Key of the client certificate (TLS)."),
    topic_root: str | None = typer.Option(
        None, help="The site's MQTT topic root (default edgesight, or the config's)."
    ),
    web: bool = typer.Option(False, "--web", help="Serve the TUI to browsers (textual-serve) instead."),
    host: str = typer.Option("127.0.0.1", help="--web: address to listen on (default: this machine only)."),
    port: int = typer.Option(8000, help="--web: port to listen on."),
    log_file: Path | None = typer.Option(None, help="Append the TUI's JSON log lines to this file."),
):
    """The site's agents and cameras in the terminal: status, health, events, preview, zone editor, commands."""
    from pydantic import ValidationError

    try:
        from edge_agent.tui.run import run_terminal, serve_web
        from edge_agent.tui.settings import OperatorConfig
    except ImportError as e:
        err.print(f"[red]the TUI needs its extra: pip install 'edgesight[tui]' ({esc(e)})[/red]")
        raise typer.Exit(2) from None
    # The agent config's control section: its password is already read from its password_file.
    base = (
        _load(config).control.model_dump(include=set(OperatorConfig.model_fields) - {"password_file"}) if config else {}
    )
    if password is not None or password_file is not None:
        base.pop("password", None)
    given = {
        "host": mqtt_host,
        "port": mqtt_port,
        "username": username,
        "password": password,
        "password_file": password_file,
        "tls": tls or None,
        "ca_file": ca_file,
        "cert_file": cert_file,
        "key_file": key_file,
        "topic_root": topic_root,
    }
    try:
        op = OperatorConfig.model_validate({**base, **{k: v for k, v in given.items() if v is not None}})
    except ValidationError as e:  # named by option, values redacted (a password never echoed)
        err.print(f"[red]{esc(ConfigError('the tui options', format_validation_error(e)))}[/red]")
        raise typer.Exit(2) from None
    if web:
        serve_web(op, host, port, log_file)
    else:
        raise typer.Exit(run_terminal(op, log_file))


if __name__ == "__main__":  # pragma: no cover
    app()
