"""``cloud-ops identities``: issue, list and revoke the identities of the secure stack (issue #12).

The identity source lives in ``<stack data dir>/identities`` (see :mod:`ops.identities`). ``add-*`` writes the
new identity's credentials file (``--out``, mode 0600: MQTT login, CA, optional client certificate, S3 keys
where the role has them); secrets are never printed. After each change the server files are regenerated and,
when the secure stack runs, mosquitto re-reads them at once (SIGHUP); S3 identity changes need
``cloud-ops stack restart s3``.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from edgesight.files import write_private
from edgesight.term import cli_console, esc
from ops.cli_common import ConfigOpt, load_cloud
from ops.identities import ROLES, IdentityError, IdentityStore, Issued

identities_app = typer.Typer(
    help="Identities of the secure stack: agents and operators (per site), service roles; MQTT ACLs, "
    "S3 identities and certificates are generated from them.",
    no_args_is_help=True,
)
console = cli_console()
err = cli_console(stderr=True)

DataDirOpt = typer.Option(None, "--data-dir", help="The stack's data dir (default .edgesight-stack).")
OutOpt = typer.Option(..., "--out", help="Write the credentials file here (mode 0600); secrets are never printed.")
PrefixOpt = typer.Option(
    None,
    "--topic-prefix",
    help="The Kafka topic prefix its Kafka rules name (default: the config's kafka.topic_prefix).",
)


def _stack(config: Path | None, data_dir: Path | None):
    from ops.stack import Stack

    cfg = load_cloud(config, data_dir=data_dir)
    return Stack(cfg.model_copy(update={"stack": cfg.stack.model_copy(update={"secure": True})}))


def _store(stack) -> IdentityStore:
    if stack.identities is None:  # a running stack keeps its mode: this one was started with --plain
        err.print(
            f"[red]the stack in {esc(stack.data_dir)} runs plain (started with --plain): identities need the secure "
            "stack (`cloud-ops stack down`, then `cloud-ops stack up`)[/red]"
        )
        raise typer.Exit(1)
    return stack.identities


def _apply(stack, what: str, s3_changed: bool) -> None:
    from ops.stack import _pid_runs

    reloaded = stack.reload_identities()
    console.print(f"{esc(what)}; reloaded: {esc(', '.join(reloaded)) if reloaded else 'nothing running'}")
    s3 = stack.read_state().get("s3")
    if s3_changed and s3 is not None and _pid_runs(s3.pid, s3.argv[0]):
        console.print("S3 identities take effect at `cloud-ops stack restart s3`")


def _issue(config: Path | None, data_dir: Path | None, out: Path, name: str, role: str, **kw) -> None:
    stack = _stack(config, data_dir)
    try:
        issued: Issued = _store(stack).add(name, role, **kw)
    except IdentityError as e:
        err.print(f"[red]{esc(e)}[/red]")
        raise typer.Exit(2) from None
    write_private(out, json.dumps(issued.bundle(), indent=2) + "\n")
    site = f" (site {kw['site']})" if kw.get("site") else ""
    _apply(stack, f"issued {role} {name}{site}; credentials in {out}", bool(issued.identity.s3_access_key))


@identities_app.command("add-agent")
def add_agent(
    name: str = typer.Argument(..., help="The agent id (its MQTT login and topic level)."),
    site: str = typer.Option(..., help="The agent's site (its operators may command it)."),
    out: Path = OutOpt,
    client_cert: bool = typer.Option(
        False, help="Also use its client certificate for MQTT (CN = the agent id; Kafka always uses it)."
    ),
    topic_prefix: str | None = PrefixOpt,
    config: Path | None = ConfigOpt,
    data_dir: Path | None = DataDirOpt,
):
    """Issue an agent: MQTT subscribe only its own cmd topic, publish only its own status/ack/camera topics;
    Kafka: produce to the three edge topics only (its client certificate is its login)."""
    _issue(config, data_dir, out, name, "agent", site=site, client_cert=client_cert, topic_prefix=topic_prefix)


@identities_app.command("add-operator")
def add_operator(
    name: str = typer.Argument(..., help="The operator's login."),
    site: str = typer.Option(..., help="The site whose agents it may command and read."),
    out: Path = OutOpt,
    config: Path | None = ConfigOpt,
    data_dir: Path | None = DataDirOpt,
):
    """Issue an operator (the on-site TUI): command and read the agents of its site, nothing else."""
    _issue(config, data_dir, out, name, "operator", site=site)


@identities_app.command("add-service")
def add_service(
    name: str = typer.Argument(..., help="The service's login."),
    role: str = typer.Option(..., help="sink, connector, engineering, fleet or ops."),
    out: Path = OutOpt,
    topic_prefix: str | None = PrefixOpt,
    config: Path | None = ConfigOpt,
    data_dir: Path | None = DataDirOpt,
):
    """Issue a service identity with its role's rights (README "Who may do what")."""
    if role not in ROLES or role in ("agent", "operator"):
        err.print(f"[red]role {esc(role)!r}: choose from sink, connector, engineering, fleet, ops[/red]")
        raise typer.Exit(2)
    _issue(config, data_dir, out, name, role, topic_prefix=topic_prefix)


@identities_app.command("list")
def list_identities(
    config: Path | None = ConfigOpt,
    data_dir: Path | None = DataDirOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON document (no secrets) instead of a table."),
):
    """Every identity, active and revoked (no secrets)."""
    stack = _stack(config, data_dir)
    identities = sorted(_store(stack).load().values(), key=lambda x: (x.role, x.name))
    if as_json:
        fields = ("name", "role", "site", "client_cert", "topic_prefix", "created_at", "revoked_at")
        doc = [
            {**{f: getattr(i, f) for f in fields}, "mqtt": bool(i.mqtt_hash), "s3": bool(i.s3_access_key)}
            for i in identities
        ]
        console.print_json(json.dumps(doc))
        return
    t = Table("name", "role", "site", "mqtt", "s3", "client cert", "created", "state")
    for i in identities:
        t.add_row(
            esc(i.name),
            i.role,
            esc(i.site or "-"),
            "yes" if i.mqtt_hash else "-",
            "yes" if i.s3_access_key else "-",
            "yes" if i.client_cert else "-",
            i.created_at,
            "active" if i.active else f"revoked {i.revoked_at}",
        )
    console.print(t)


@identities_app.command("revoke")
def revoke(
    name: str = typer.Argument(...),
    config: Path | None = ConfigOpt,
    data_dir: Path | None = DataDirOpt,
):
    """Revoke an identity: mosquitto re-reads its files at once, closes the identity's open connections and
    refuses its next connect; S3 identities end at `cloud-ops stack restart s3`."""
    stack = _stack(config, data_dir)
    try:
        ident = _store(stack).revoke(name)
    except IdentityError as e:
        err.print(f"[red]{esc(e)}[/red]")
        raise typer.Exit(2) from None
    _apply(stack, f"revoked {ident.role} {name}", bool(ident.s3_access_key))
