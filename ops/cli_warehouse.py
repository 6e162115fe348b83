"""``cloud-ops warehouse``: the MongoDB warehouse (collections, indexes, retention, queries, export)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import typer
from rich.table import Table

from edgesight.term import cli_console, esc
from ops.cli_common import ConfigOpt, load_cloud, load_warehouse

warehouse_app = typer.Typer(
    help="The MongoDB warehouse: init (collections, indexes, TTL), query, export, delete, "
    "retention, and IOPS / size-limit probes.",
    no_args_is_help=True,
)
console = cli_console()
err = cli_console(stderr=True)

WhOpt = typer.Option(
    None,
    "--warehouse-config",
    help="Warehouse YAML (collection prefix, retention).",
    envvar="EDGESIGHT_WAREHOUSE_CONFIG",
)
PrefixOpt = typer.Option(None, "--collection-prefix", help="Collection prefix (overrides the warehouse config).")
CamOpt = typer.Option(None, "--camera")
StartOpt = typer.Option(None, "--start", help="ISO-8601 with timezone, inclusive (e.g. 2026-01-01T00:00:00Z).")
EndOpt = typer.Option(None, "--end", help="ISO-8601 with timezone, exclusive.")


def _ctx(config, warehouse_config, prefix):
    return load_cloud(config), load_warehouse(warehouse_config, prefix)


def _time(v: str | None, name: str) -> datetime | None:
    if v is None:
        return None
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        err.print(f"[red]--{name}: not an ISO-8601 time: {esc(repr(v))}[/red]")
        raise typer.Exit(2) from None
    if dt.tzinfo is None:
        err.print(f"[red]--{name}: give a timezone (e.g. {esc(v)}Z)[/red]")
        raise typer.Exit(2)
    return dt


def _wh(cloud, wh):
    from cloud.warehouse.store import Warehouse

    return Warehouse.from_config(cloud, wh)


@warehouse_app.command("init")
def init_cmd(
    config: Path | None = ConfigOpt,
    warehouse_config: Path | None = WhOpt,
    collection_prefix: str | None = PrefixOpt,
    as_json: bool = typer.Option(False, "--json"),
):
    """Create collections, query indexes and TTL indexes (idempotent); detect time-series support."""
    from cloud.warehouse.schema import init_warehouse

    cloud, wh = _ctx(config, warehouse_config, collection_prefix)
    rep = init_warehouse(cloud.mongo.client(), cloud.mongo.warehouse_db, wh)
    if as_json:
        console.print_json(json.dumps(asdict(rep), default=str))
        return
    console.print(f"database {esc(rep.database)}")
    for name, state in rep.collections.items():
        ttl = rep.ttl[name]
        console.print(
            esc(
                f"  {name}: {state}; indexes {', '.join(rep.indexes[name])}; TTL on {ttl['field']} "
                f"expireAfterSeconds={ttl['expireAfterSeconds']} ({ttl['action']})"
            )
        )
    for note in rep.notes:
        console.print(f"  [yellow]{esc(note)}[/yellow]")


@warehouse_app.command("retention")
def retention_cmd(
    config: Path | None = ConfigOpt,
    warehouse_config: Path | None = WhOpt,
    collection_prefix: str | None = PrefixOpt,
    detections_days: float | None = typer.Option(None, "--detections-days", min=0.001),
    keyframes_days: float | None = typer.Option(None, "--keyframes-days", min=0.001),
):
    """Show the TTL of each collection; with --*-days, change it (collMod, verified; recreated if ignored)."""
    from cloud.warehouse.schema import Names, set_retention, ttl_index

    cloud, wh = _ctx(config, warehouse_config, collection_prefix)
    db = cloud.mongo.client()[cloud.mongo.warehouse_db]
    names = Names(wh.collection_prefix)
    for coll_name, days in ((names.detections, detections_days), (names.keyframes, keyframes_days)):
        coll = db[coll_name]
        if days is not None:
            r = set_retention(coll, days)
            console.print(
                esc(f"{coll_name}: TTL on {r['field']} = {r['expireAfterSeconds']} s ({days} days): {r['action']}")
            )
        else:
            ix = ttl_index(coll)
            console.print(
                f"{esc(coll_name)}: "
                + (
                    esc(
                        f"TTL on ts expireAfterSeconds={ix['expireAfterSeconds']} "
                        f"({ix['expireAfterSeconds'] / 86400:g} days), index {ix['name']}"
                    )
                    if ix
                    else "[red]no TTL index[/red] (run `warehouse init`)"
                )
            )


@warehouse_app.command("query")
def query_cmd(
    config: Path | None = ConfigOpt,
    warehouse_config: Path | None = WhOpt,
    collection_prefix: str | None = PrefixOpt,
    camera: str | None = CamOpt,
    agent: str | None = typer.Option(None, "--agent"),
    label: str | None = typer.Option(None, "--label"),
    zone: str | None = typer.Option(None, "--zone"),
    track: int | None = typer.Option(None, "--track"),
    run: str | None = typer.Option(
        None, "--run", help="Agent run (run_id): track ids restart with each run; '' = detection/1 events."
    ),
    start: str | None = StartOpt,
    end: str | None = EndOpt,
    limit: int = typer.Option(20, "--limit", min=0),
    count: bool = typer.Option(False, "--count"),
    as_json: bool = typer.Option(False, "--json", help="JSON lines."),
):
    """Detections by camera, agent, label, zone, track, agent run and time range (newest first)."""
    from cloud.warehouse.store import Query, _json_default

    cloud, wh = _ctx(config, warehouse_config, collection_prefix)
    w = _wh(cloud, wh)
    q = Query(
        camera=camera,
        agent=agent,
        label=label,
        zone=zone,
        track=track,
        run=run,
        start=_time(start, "start"),
        end=_time(end, "end"),
    )
    if count:
        console.print(w.count(q))
        return
    docs = w.find(q, limit=limit)
    if as_json:
        for d in docs:
            print(json.dumps(d, default=_json_default))
        return
    t = Table(title=f"{len(docs)} detection(s)")
    for col in ("ts", "camera", "label", "score", "track", "zones", "event_id"):
        t.add_column(col)
    for d in docs:
        t.add_row(
            _json_default(d["ts"]) if isinstance(d.get("ts"), datetime) else esc(d.get("ts")),
            esc(d.get("camera_id", "")),
            esc(d.get("label", "")),
            f"{d.get('score', 0):.2f}",
            esc(d.get("track_id", "")),
            esc(",".join(d.get("zones", []))),
            esc(d["_id"]),
        )
    console.print(t)


@warehouse_app.command("keyframe")
def keyframe_cmd(
    keyframe_id: str = typer.Argument(..., help="keyframe_id (or an event_id with --event)."),
    event: bool = typer.Option(False, "--event", help="The argument is an event_id."),
    config: Path | None = ConfigOpt,
    warehouse_config: Path | None = WhOpt,
    collection_prefix: str | None = PrefixOpt,
):
    """Where a keyframe is, with a presigned S3 URL."""
    from cloud.warehouse.store import _json_default

    cloud, wh = _ctx(config, warehouse_config, collection_prefix)
    w = _wh(cloud, wh)
    doc = w.keyframe_for_event(keyframe_id) if event else w.keyframe(keyframe_id)
    if doc is None:
        err.print("[red]not found[/red]")
        raise typer.Exit(1)
    console.print_json(json.dumps(doc, default=_json_default))


@warehouse_app.command("export")
def export_cmd(
    out: Path = typer.Argument(..., help="Output file."),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl or csv."),
    config: Path | None = ConfigOpt,
    warehouse_config: Path | None = WhOpt,
    collection_prefix: str | None = PrefixOpt,
    camera: str | None = CamOpt,
    label: str | None = typer.Option(None, "--label"),
    zone: str | None = typer.Option(None, "--zone"),
    start: str | None = StartOpt,
    end: str | None = EndOpt,
):
    """Export matching detections (oldest first) to JSON lines or CSV, with progress."""
    from rich.progress import Progress

    from cloud.warehouse.store import Query

    if fmt not in ("jsonl", "csv"):
        err.print(f"[red]--format must be jsonl or csv, got {esc(repr(fmt))}[/red]")
        raise typer.Exit(2)
    cloud, wh = _ctx(config, warehouse_config, collection_prefix)
    w = _wh(cloud, wh)
    q = Query(camera=camera, label=label, zone=zone, start=_time(start, "start"), end=_time(end, "end"))
    with Progress(console=err) as prog:
        task = prog.add_task(f"export {esc(out.name)}", total=None)

        def cb(n, total):
            prog.update(task, completed=n, total=total)

        n = w.export(q, out, fmt, progress=cb)
    console.print(f"exported {n} detection(s) to {esc(out)}")


@warehouse_app.command("delete")
def delete_cmd(
    config: Path | None = ConfigOpt,
    warehouse_config: Path | None = WhOpt,
    collection_prefix: str | None = PrefixOpt,
    camera: str | None = CamOpt,
    start: str | None = StartOpt,
    end: str | None = EndOpt,
    keep_objects: bool = typer.Option(False, "--keep-objects", help="Keep the keyframe JPEGs in S3."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
):
    """Delete detections and keyframes (and their S3 objects) by camera and/or time range."""
    from cloud.warehouse.store import Query

    if camera is None and start is None and end is None:
        err.print("[red]give --camera and/or --start/--end (refusing to delete everything)[/red]")
        raise typer.Exit(2)
    cloud, wh = _ctx(config, warehouse_config, collection_prefix)
    w = _wh(cloud, wh)
    s, e = _time(start, "start"), _time(end, "end")
    n = w.count(Query(camera=camera, start=s, end=e))
    if not yes and not typer.confirm(f"delete {n} detection(s) and their keyframes?"):
        raise typer.Exit(1)
    res = w.delete(camera=camera, start=s, end=e, delete_objects=not keep_objects)
    console.print(
        f"deleted {res['detections']} detection(s), {res['keyframes']} keyframe doc(s), {res['objects']} object(s)"
    )


@warehouse_app.command("iops")
def iops_cmd(
    config: Path | None = ConfigOpt,
    seconds: float = typer.Option(3.0, "--seconds", min=0.2),
    doc_bytes: int = typer.Option(256, "--doc-bytes", min=1),
):
    """Sustained small single-document writes, reads and updates per second (scratch collection)."""
    from cloud.warehouse.perf import iops

    cloud, _ = _ctx(config, None, None)
    console.print_json(
        json.dumps(iops(cloud.mongo.client(), cloud.mongo.warehouse_db, seconds=seconds, doc_bytes=doc_bytes))
    )


@warehouse_app.command("limits")
def limits_cmd(
    config: Path | None = ConfigOpt,
    batch_docs: int = typer.Option(20000, "--batch-docs", min=1),
    big_batch_mb: int = typer.Option(40, "--big-batch-mb", min=1),
):
    """Largest document accepted, behaviour at the 16 MB BSON limit, largest batch (scratch collection)."""
    from cloud.warehouse.perf import limits

    cloud, _ = _ctx(config, None, None)
    console.print_json(
        json.dumps(
            limits(cloud.mongo.client(), cloud.mongo.warehouse_db, batch_docs=batch_docs, big_batch_mb=big_batch_mb)
        )
    )
