"""Horizontal scaling of the cloud consumers: 1..M instances in one consumer group on a pre-filled topic.

Each instance is a separate process running the real command (``cloud-ops connectors run mongo-sink-detections
--tasks 1`` or ``cloud-ops engineering run``) with its own cloud config file. Each point (M instances) is a fresh
consumer group and a fresh destination (collection prefix / analytics database) reading the same topic of P
partitions from the start. Throughput comes from the group's committed offsets, sampled over time (the
records are durable in the warehouse before their offsets are committed); the lag is what was produced (the
producer's delivery reports, not the broker's high watermarks, which Tansu 0.6 reports wrongly) minus what
is committed. The rate is measured from the moment the group settled (the last "partitions assigned" or
"partitions revoked" line any instance logged, once all M logged one) to the end of the point, so process
start-up and rebalances are not counted. After a clean SIGTERM stop the destination is counted back and
compared with the final committed offsets.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cloud.config import CloudConfig
from edgesight.kafka import TopicSpec, ensure_topics
from edgesight.kafka.clients import producer_config
from edgesight.wire import Topics, dumps
from ops.optest.scale import Curve, Progress, ScaleOptions, Series, point, write_cloud_yaml

REPO = Path(__file__).resolve().parents[2]
SESSION_TIMEOUT_MS = 6000  # Tansu completes a join in about half of it
SETTLE_LINES = ("partitions assigned", "partitions revoked")


def default_records(opts: ScaleOptions, per_instance_guess: float) -> int:
    """Enough records that the fastest point cannot drain before ``seconds`` of settled measurement."""
    if opts.records:
        return opts.records
    fastest = per_instance_guess * min(opts.partitions, opts.max_instances)
    return int(fastest * (opts.seconds + 20))


Record = tuple[bytes, bytes, list[tuple[str, bytes]]]  # key, value, headers


def fill_topic(cfg: CloudConfig, topic: str, records: list[Record]) -> dict[int, int]:
    """Produce ``records`` (acks=all); the end offset of each partition from the delivery reports."""
    from confluent_kafka import Producer

    ends: dict[int, int] = {}
    errors: list[str] = []

    def done(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)

    p = Producer({**producer_config(cfg.kafka.client_config(), client_id="scale-fill", linger_ms=20)})
    for k, v, h in records:
        while True:
            try:
                p.produce(topic, key=k, value=v, headers=h or None, on_delivery=done)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    left = p.flush(120)
    if left or errors:
        raise RuntimeError(f"pre-filling {topic}: {left} records unacknowledged, errors {errors[:3]}")
    return ends


def server_process(port: int | None) -> Any:
    """The local process listening on ``port`` (psutil), or None (a remote server, or not visible)."""
    import psutil

    if port is None:
        return None
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return psutil.Process(conn.pid)
    except (psutil.Error, OSError):
        return None
    return None


def mongo_port(cfg: CloudConfig) -> int | None:
    from pymongo.uri_parser import parse_uri

    try:
        nodes = parse_uri(cfg.mongo.uri.get_secret_value())["nodelist"]
    except Exception:  # noqa: BLE001 - a URI pymongo cannot split: no local server to watch
        return None
    return nodes[0][1] if len(nodes) == 1 and nodes[0][0] in ("127.0.0.1", "localhost") else None


def cpu_seconds(procs: list[Any]) -> float:
    """User+system CPU seconds of processes (psutil.Process), children included; gone ones count 0."""
    import psutil

    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return total


class OffsetWatch:
    """The committed offsets of one group (OffsetFetch; the watcher never joins the group)."""

    def __init__(self, cfg: CloudConfig, group: str, topic: str, partitions: int):
        from confluent_kafka import Consumer, TopicPartition

        self.c = Consumer({**cfg.kafka.client_config(), "group.id": group, "enable.auto.commit": False})
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]

    def committed(self) -> int:
        parts = self.c.committed(self.tps, timeout=10)
        return sum(max(0, tp.offset) for tp in parts)

    def close(self) -> None:
        self.c.close()


def _log_events(path: Path) -> list[tuple[float, str]]:
    """(epoch seconds, message) of the settle lines in one instance's JSON log."""
    out = []
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return out
    for ln in text.splitlines():
        if not ln.startswith("{"):
            continue
        try:
            d = json.loads(ln)
        except ValueError:
            continue
        if d.get("msg") in SETTLE_LINES and d.get("ts"):
            try:
                out.append((datetime.fromisoformat(str(d["ts"]).replace("Z", "+00:00")).timestamp(), d["msg"]))
            except ValueError:
                continue
    return out


def _summary(out: str, key: str | None) -> dict[str, Any] | None:
    for ln in reversed(out.splitlines()):
        if ln.startswith("{"):
            try:
                d = json.loads(ln)
            except ValueError:
                continue
            return d.get(key) if key else d
    return None


def drain_point(
    cfg: CloudConfig,
    *,
    argv_for: list[list[str]],
    group: str,
    topic: str,
    partitions: int,
    total: int,
    seconds: float,
    logs: Path,
    progress: Progress,
    label: str,
) -> dict[str, Any]:
    """Start one process per ``argv_for`` entry, watch the group's committed offsets until the topic is drained or
    ``seconds`` of settled measurement passed, stop them (SIGTERM), and return the point's figures."""
    m = len(argv_for)
    watch = OffsetWatch(cfg, group, topic, partitions)
    procs: list[subprocess.Popen[bytes]] = []
    log_paths = [logs / f"{label}-{i}.log" for i in range(m)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    import psutil

    samples: list[tuple[float, int, float, float]] = []  # (time, committed, server CPU s, instances CPU s)
    machine_cpu: list[Any] = []  # psutil.cpu_times() of the whole machine at each sample
    server = server_process(mongo_port(cfg))
    watched: list[Any] = []
    try:
        t_start = time.time()
        for argv, lp in zip(argv_for, log_paths, strict=True):
            with open(lp, "wb") as fh:
                procs.append(
                    subprocess.Popen(
                        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=fh, stdin=subprocess.DEVNULL, env=env
                    )
                )
                watched.append(psutil.Process(procs[-1].pid))
        hard_stop = t_start + seconds * 3 + 60
        settled_at: float | None = None
        base_c = 0  # committed when the group settled
        mark: tuple[float, int, float, float] | None = None  # first sample that moved after it: the window start
        last_note = 0.0
        while True:
            now = time.time()
            c = watch.committed()
            samples.append((now, c, cpu_seconds([server] if server else []), cpu_seconds(watched)))
            machine_cpu.append(psutil.cpu_times())
            dead = [i for i, p in enumerate(procs) if p.poll() is not None]
            if dead:
                raise RuntimeError(
                    f"instance {dead[0]} exited with {procs[dead[0]].returncode}: "
                    + log_paths[dead[0]].read_text(errors="replace")[-400:]
                )
            events = [_log_events(lp) for lp in log_paths]
            if all(events):
                last = max(t for ev in events for t, _ in ev)
                if last != settled_at:  # (another) rebalance: the window starts again
                    settled_at, base_c, mark = last, c, None
            if settled_at is not None and mark is None and c > base_c:
                mark = samples[-1]
            if c >= total:
                break
            if mark is not None and now - mark[0] >= seconds:
                break
            if now > hard_stop:
                break
            if now - last_note > 2:
                joined = sum(1 for ev in events if ev)
                progress(f"  {label}: {joined}/{m} joined, committed {c:,}/{total:,}")
                last_note = now
            time.sleep(0.25)
        t_end = samples[-1][0]
    finally:
        outs: list[str] = []
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                out, _ = p.communicate(timeout=90)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
            outs.append(out.decode(errors="replace"))
    final = watch.committed()
    watch.close()
    first = next((x for x in samples if x[1] > 0), None)
    drained_at = next((x[0] for x in samples if x[1] >= total), None)
    start, basis = mark, "first commit after the group settled -> end"
    if start is None:
        start, basis = first, "first commit -> end (the group settled only after the drain, or never)"
    rate = server_pct = inst_pct = busy_pct = None
    if start is not None:
        window = [x for x in samples if x[0] >= start[0]]
        t_a, _, sa, ia = window[0]
        t_b, _, sb, ib = window[-1]
        if len(window) >= 3 and window[-1][1] > window[0][1]:
            # least-squares slope of committed over time: commits come in batch-sized steps
            slope = float(np.polyfit([x[0] - t_a for x in window], [x[1] for x in window], 1)[0])
            rate = max(slope, 0.0) or None
            server_pct = 100.0 * (sb - sa) / (t_b - t_a) if server else None
            inst_pct = 100.0 * (ib - ia) / (t_b - t_a)
            m0, m1 = machine_cpu[samples.index(window[0])], machine_cpu[len(samples) - 1]
            total_s = sum(m1) - sum(m0)
            idle_s = (m1.idle + getattr(m1, "iowait", 0.0)) - (m0.idle + getattr(m0, "iowait", 0.0))
            busy_pct = 100.0 * (total_s - idle_s) / total_s * (os.cpu_count() or 1) if total_s > 0 else None
    row: dict[str, Any] = {
        "group": group,
        "topic": topic,
        "records_per_s": round(rate, 1) if rate else None,
        "committed": final,
        "lag_end": total - final,
        "drained": drained_at is not None,
        "drain_s": round(drained_at - t_start, 1) if drained_at else None,
        "drain_s_projected": round((t_end - t_start) + (total - samples[-1][1]) / rate, 1) if rate else None,
        "settle_s": round(settled_at - t_start, 1) if settled_at else None,
        "window_s": round(t_end - start[0], 1) if start else None,
        "rate_basis": basis,
        "warehouse_server_cpu_pct": round(server_pct, 1) if server_pct is not None else None,
        "instances_cpu_pct": round(inst_pct, 1) if inst_pct is not None else None,
        # records per CPU-second spent by the instances and the warehouse server together: flat when the
        # points differ only in how much CPU they got
        # the whole machine's busy CPU in the window (100 = one core): what other work on a shared box took
        "machine_busy_pct": round(busy_pct, 1) if busy_pct is not None else None,
        "others_cpu_pct": round(busy_pct - inst_pct - (server_pct or 0.0), 1)
        if busy_pct is not None and inst_pct is not None
        else None,
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "records_per_cpu_s": round(rate / ((inst_pct + (server_pct or 0.0)) / 100.0), 1) if rate and inst_pct else None,
        "exit_codes": [p.returncode for p in procs],
        "samples": [(round(s[0] - t_start, 2), s[1]) for s in samples],
        "summaries": [_summary(o, None) for o in outs],
    }
    return row


def run_curve(curve: Curve, opts: ScaleOptions, run: Callable[[int, int], dict[str, Any]], progress: Progress) -> None:
    """Every instance count ``opts.repeats`` times, interleaved (1..M, then M..1, ...), so that load from
    elsewhere on the machine does not fall on one end of the curve; each row is the best run of its count
    (``runs_records_per_s`` lists them all)."""
    order = [
        (m, rep)
        for rep in range(opts.repeats)
        for m in (range(1, opts.max_instances + 1) if rep % 2 == 0 else range(opts.max_instances, 0, -1))
    ]
    runs: dict[int, list[dict[str, Any]]] = {}
    for m, rep in order:
        progress(f"{curve.service}: {m} instance(s){f', run {rep + 1}/{opts.repeats}' if opts.repeats > 1 else ''}")
        r = point(runs.setdefault(m, []), {"instances": m, "run": rep + 1}, lambda m=m, rep=rep: run(m, rep))
        progress(f"{curve.service}: {m} instance(s): {r.get('records_per_s') or r.get('error')} records/s")
    for m in sorted(runs):
        rs = runs[m]
        good = [r for r in rs if not r.get("error") and r.get("records_per_s")]
        row = dict(max(good, key=lambda r: r["records_per_s"]) if good else rs[0])
        row["runs_records_per_s"] = [r.get("records_per_s") for r in rs]
        errors = [r["error"] for r in rs if r.get("error")]
        if errors and good:
            row["run_errors"] = errors
        curve.rows.append(row)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ops.cli", *args]


def _prepare(
    cfg: CloudConfig, opts: ScaleOptions, tag: str, records: list[Record], kind: str = "detections"
) -> dict[str, Any]:
    from connectors.spec import load_topics, variables

    cfg = cfg.model_copy(update={"kafka": cfg.kafka.model_copy(update={"topic_prefix": tag})})
    topic = getattr(Topics(tag), kind)
    specs = [TopicSpec(s.name, opts.partitions, 1, {}) if s.name == topic else s for s in load_topics(variables(cfg))]
    ensure_topics(cfg.kafka.client_config(), specs)
    ends = fill_topic(cfg, topic, records)
    return {"topic": topic, "ends": ends, "total": sum(ends.values())}


def _consumer_curve(
    name: str,
    service: str,
    what: str,
    opts: ScaleOptions,
    suffix: str,
    ends: dict[int, int],
    notes: list[str],
) -> Curve:
    total = sum(ends.values())
    return Curve(
        name=name,
        service=service,
        title=f"{what}: instances in one consumer group, {opts.partitions} partitions ({suffix})",
        x="instances",
        x_label="instances (separate processes, one consumer group)",
        y_label="records/s (committed offsets, settled group)\nCPU % of the rest of the machine under each point",
        y2_label="lag drain time, s",
        series=[
            Series("records_per_s", "records/s"),
            Series("records_per_cpu_s", "records/s per core used (instances + warehouse server)"),
            Series("backlog_drain_s", "backlog drain time at that rate, s", axis=2),
        ],
        columns=[
            "instances",
            "records_per_s",
            "backlog_drain_s",
            "drain_s",
            "drain_s_projected",
            "settle_s",
            "window_s",
            "committed",
            "stored",
            "lag_end",
            "warehouse_server_cpu_pct",
            "instances_cpu_pct",
            "records_per_cpu_s",
            "others_cpu_pct",
            "loadavg_1m",
        ],
        annotate="others_cpu_pct",
        annotate_label="rest of machine: ",
        vline=opts.partitions,
        vline_label=f"partitions = {opts.partitions}",
        notes=[
            *notes,
            "records/s: least-squares slope of the group's committed offsets from its first commit after the last "
            f"rebalance, over {opts.seconds:g} s"
            + (f"; best of {opts.repeats} interleaved runs per instance count" if opts.repeats > 1 else "")
            + "; backlog_drain_s = pre-filled records / that rate; drain_s = measured from the processes' start. "
            "CPU % (100 = one core) in the same window: warehouse server process, instances, and others_cpu_pct = "
            "the rest of the machine (broker, S3, this command, any other work on a shared box); "
            "records_per_cpu_s = records/s per core used by instances + warehouse server.",
        ],
        extra={"records": total, "partitions": opts.partitions, "records_per_partition": ends},
    )


def _finish_row(row: dict[str, Any], total: int) -> dict[str, Any]:
    """``backlog_drain_s``: the time the settled group takes to drain the whole pre-filled backlog."""
    row["backlog_drain_s"] = round(total / row["records_per_s"], 1) if row.get("records_per_s") else None
    return row


def _keyframe_records(n: int) -> list[Record]:
    """``n`` keyframe records as the agent sends them: per-track crops (~200x260 px JPEGs of a few kB) of a
    768x576 frame, 64 cameras as record keys' owners."""
    import cv2

    from edgesight.wire import KeyframeMeta, encode_keyframe

    rng = np.random.default_rng(7)
    jpegs = []
    for i in range(16):  # a few distinct crops, reused: encoding is not what is measured
        img = cv2.GaussianBlur(rng.integers(0, 255, (260, 200, 3), dtype=np.uint8), (9, 9), 3)
        cv2.putText(img, str(i), (40, 150), cv2.FONT_HERSHEY_SIMPLEX, 3, (255, 255, 255), 5)
        jpegs.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
    t0 = datetime.now().astimezone()
    out: list[Record] = []
    for i in range(n):
        jpeg = jpegs[i % len(jpegs)]
        meta = KeyframeMeta.for_jpeg(
            jpeg,
            agent_id="scale-agent",
            camera_id=f"cam-{i % 64}",
            ts=t0,
            seq=i,
            width=200,
            height=260,
            reason="track_start",
            track_id=i,
            crop=(100, 100, 300, 360),
            frame=(768, 576),
        )
        out.append(encode_keyframe(meta, jpeg))
    return out


def sinks_curve(
    cfg: CloudConfig, opts: ScaleOptions, work: Path, progress: Progress, suffix: str, *, connector: str
) -> Curve:
    """A sink connector (the Python runner of connectors/<connector>.json), 1..M processes: ``mongo-sink-detections``
    (bulk upserts into the warehouse: bound by the warehouse server) or ``s3-sink-keyframes`` (one object per
    record, ``flush.size`` 1, and its index document: each instance mostly waits on S3)."""
    from cloud.warehouse import Names, WarehouseConfig, init_warehouse
    from cloud.warehouse.sweep import sweep_objects
    from edgesight.wire import encode_event
    from ops.testing.warehouse import make_event

    s3 = connector == "s3-sink-keyframes"
    tag = f"sc{uuid.uuid4().hex[:8]}"
    n = default_records(opts, 150.0 if s3 else 600.0)
    kind = "keyframes" if s3 else "detections"
    progress(f"sinks: pre-filling {n:,} {kind} records into {opts.partitions} partitions")
    if s3:
        records = _keyframe_records(n)
    else:  # 64 cameras (the record key): the partitions get about the same share
        evs = [make_event(i, camera=f"cam-{i % 64}", zones=["door"] if i % 3 == 0 else []) for i in range(n)]
        records = [(f"{e.agent_id}/{e.camera_id}".encode(), encode_event(e), []) for e in evs]
    prep = _prepare(cfg, opts, tag, records, kind)
    total = prep["total"]
    conf = cfg.model_copy(
        update={"kafka": cfg.kafka.model_copy(update={"topic_prefix": tag, "session_timeout_ms": SESSION_TIMEOUT_MS})}
    )
    yaml_path = write_cloud_yaml(conf, work / f"{tag}.yaml")
    client = cfg.mongo.client()
    db = client[cfg.mongo.warehouse_db]
    curve = _consumer_curve(
        f"sinks-p{opts.partitions}" if not s3 else f"sinks-s3-p{opts.partitions}",
        "sinks",
        f"{'S3 keyframe' if s3 else 'MongoDB'} sink (cloud-ops connectors run {connector})",
        opts,
        suffix,
        prep["ends"],
        [
            f"{total:,} keyframe records (crop JPEGs, {len(records[0][1]):,} B each) pre-filled; each point is a "
            "fresh group and index collection reading them from the start; each instance: 1 task, one S3 object "
            "per record (flush.size 1) and its index document before each commit."
            if s3
            else f"{total:,} detection events (64 cameras = record keys) pre-filled; each point is a fresh group "
            "and collection reading them from the start; each instance: 1 task, synchronous bulk upserts into the "
            "warehouse before each commit.",
        ],
    )

    def run(m: int, rep: int) -> dict[str, Any]:
        prefix = f"{tag}m{m}r{rep}_"
        init_warehouse(client, cfg.mongo.warehouse_db, WarehouseConfig(collection_prefix=prefix))
        name_prefix = f"{tag}m{m}r{rep}-"
        argv = _cli(
            "connectors",
            "run",
            connector,
            "--config",
            str(yaml_path),
            "--tasks",
            "1",
            "--name-prefix",
            name_prefix,
            "--collection-prefix",
            prefix,
            "--no-init-warehouse",
            "--log-level",
            "INFO",
        )
        stored_in = Names(prefix).keyframes if s3 else Names(prefix).detections
        try:
            row = drain_point(
                conf,
                argv_for=[argv] * m,
                group=f"connect-{name_prefix}{connector}",
                topic=prep["topic"],
                partitions=opts.partitions,
                total=total,
                seconds=opts.seconds,
                logs=work,
                progress=progress,
                label=f"sinks-m{m}r{rep}",
            )
            row["stored"] = db[stored_in].count_documents({})
            row["collection"] = stored_in
            return _finish_row(row, total)
        finally:
            if not opts.keep:
                for c in (Names(prefix).detections, Names(prefix).keyframes):
                    db[c].drop()
                if s3:  # the objects of this point (each point rewrites the same keys: sweep the topic's folder)
                    sweep_objects(
                        cfg.s3.client(),
                        cfg.s3.keyframe_bucket,
                        max_age_s=1,
                        prefix=f"keyframes/{prep['topic']}/",
                        now=datetime.now(timezone.utc) + timedelta(days=1),  # every object there
                    )

    run_curve(curve, opts, run, progress)
    return curve


def engineering_curve(cfg: CloudConfig, opts: ScaleOptions, work: Path, progress: Progress, suffix: str) -> Curve:
    """The data-engineering consumer (cloud-ops engineering run), 1..M processes."""
    from cloud.engineering.store import count_facts
    from cloud.engineering.synthetic import load_stream

    tag = f"se{uuid.uuid4().hex[:8]}"
    n = default_records(opts, 900.0)
    progress(f"engineering: pre-filling {n:,} detection events into {opts.partitions} partitions")
    evs = list(load_stream(n, cameras=max(32, opts.partitions * 8)))
    prep = _prepare(cfg, opts, tag, [(f"{e.agent_id}/{e.camera_id}".encode(), dumps(e), []) for e in evs])
    total = prep["total"]
    client = cfg.mongo.client()
    curve = _consumer_curve(
        f"engineering-p{opts.partitions}",
        "engineering",
        "Data engineering consumer (cloud-ops engineering run)",
        opts,
        suffix,
        prep["ends"],
        [
            f"{total:,} detection events (32+ cameras, tracks through zones and a line) pre-filled; each point is a "
            "fresh group and analytics database; each instance: decode, fact ledger, recompute and guarded "
            "replace of the analytics, commit per batch.",
        ],
    )

    def run(m: int, rep: int) -> dict[str, Any]:
        adb = f"{tag}m{m}r{rep}"
        conf = cfg.model_copy(
            update={
                "kafka": cfg.kafka.model_copy(update={"topic_prefix": tag, "session_timeout_ms": SESSION_TIMEOUT_MS}),
                "mongo": cfg.mongo.model_copy(update={"analytics_db": adb}),
            }
        )
        yaml_path = write_cloud_yaml(conf, work / f"{adb}.yaml")
        group = f"{tag}-m{m}r{rep}"
        argv = _cli(
            "engineering",
            "run",
            "--config",
            str(yaml_path),
            "--group",
            group,
            "--session-timeout-ms",
            str(SESSION_TIMEOUT_MS),
            "--log-level",
            "INFO",
        )
        try:
            row = drain_point(
                conf,
                argv_for=[argv] * m,
                group=group,
                topic=prep["topic"],
                partitions=opts.partitions,
                total=total,
                seconds=opts.seconds,
                logs=work,
                progress=progress,
                label=f"engineering-m{m}r{rep}",
            )
            row["stored"] = count_facts(client[adb])
            row["database"] = adb
            return _finish_row(row, total)
        finally:
            if not opts.keep:
                client.drop_database(adb)

    run_curve(curve, opts, run, progress)
    return curve
