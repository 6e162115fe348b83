"""``cloud-ops demo``: the whole system on one machine, on real video, with real servers.

1. the embedded cloud stack (Kafka-compatible broker on S3 storage, S3, MongoDB wire server, MQTT);
2. the detector: YOLOv4-tiny imported from its darknet files and compressed to INT8 (once, cached);
3. two cameras: an RTSP camera (GStreamer RTSP server streaming vtest.avi at 10 fps) and a video file;
4. the edge agent (capture -> INT8 detector -> tracker, zones, counting line -> Kafka with spool);
5. the cloud consumers: the MongoDB and S3 sink connectors (Python runner) and data engineering + fleet;
6. then it reads the results back with ordinary clients (pymongo, boto3) and says where to look.

The stack is left running so you can look around; ``cloud-ops stack down`` stops it.

It runs on the secure stack (the default; README "Who may do what"): Kafka over mutual TLS, each component with its
own client certificate and its role's rules enforced by the Kafka gate (haproxy and ``ops.kafka_gate`` in front of
Tansu), MQTT over TLS with the agent's own login and ACL, S3 over HTTPS; every component with its own identity (issued
for the demo, kept 0600 in ``<data dir>/demo/credentials``): the agent ``demo-site`` (site ``demo``), the sink
connectors ``demo-sink`` (S3 read/write of the keyframes bucket), data engineering ``demo-engineering`` (S3 read)
and the fleet registry ``demo-fleet`` (no S3, no MQTT), each with a cloud config of its own
(``<data dir>/demo/cloud-<process>.yaml``) holding only its secrets' references; the stack's ``stack-admin``
creates the topics and reads the results. Every client trusts the stack CA through its config (``s3.ca_file``,
``kafka.ssl_ca_location``, ``mqtt.ca_file``). Not secured by this stack: Kafka SASL/SCRAM (Tansu 0.6; mutual TLS is
the Kafka login), MongoDB authentication/TLS (nx-27017). ``--plain`` runs it on a plain stack (shared development logins).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from edgesight.samples import VTEST
from edgesight.term import cli_console, esc
from ops.identities import KAFKA_ROLES, kafka_login

RTSP_SERVER = Path(__file__).resolve().parent / "cameras" / "rtsp_server.py"
console = cli_console()


def _free_port() -> int:
    """A free port below the ephemeral range (see ops.stack.free_ports)."""
    from ops.stack import free_ports

    return free_ports(1)[0]


def _cli(module: str) -> list[str]:
    return [sys.executable, "-m", module]


class Procs:
    """Child processes of the demo, stopped (SIGTERM, then SIGKILL) in reverse order."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.items: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict | None = None, stdout=None) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")
        p = subprocess.Popen(
            argv, stdout=stdout or log, stderr=log, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL
        )
        log.close()
        self.items.append((name, p))
        return p

    def stop(self, name: str, timeout: float = 60) -> int | None:
        for n, p in self.items:
            if n == name and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    return p.wait(timeout)
                except subprocess.TimeoutExpired:
                    p.kill()
                    return p.wait(10)
        return None

    def stop_all(self) -> None:
        for name, _ in reversed(self.items):
            self.stop(name, timeout=30)


def ensure_model(progress_print) -> Path:
    from model_zoo.compress import Int8Config, calibration_frames, compress
    from model_zoo.registry import Registry

    reg = Registry(None)
    if "yolov4-tiny" in reg.names() and reg.get("yolov4-tiny").has("int8"):
        progress_print(f"model: yolov4-tiny already built in {reg.model_dir('yolov4-tiny')}")
        return Path(reg.store)
    progress_print("model: importing yolov4-tiny from its darknet files (our own importer) ...")
    sm = reg.import_darknet("yolov4-tiny")
    progress_print("model: calibrating INT8 on real frames (about a minute) ...")
    compress(sm, ["int8"], Int8Config(), frames=calibration_frames(Int8Config().calib_video_frames))
    return Path(reg.store)


DEMO_AGENT, DEMO_SITE = "demo-site", "demo"


def demo_identity(stack, cred_dir: Path, name: str, role: str, site: str | None = None) -> tuple[dict, bool]:
    """The demo's identity ``name`` (or ``name-2``, ... where an earlier one's credentials are gone or revoked:
    names are never reused): its credentials bundle, kept 0600 in ``cred_dir`` for the next run, and whether it
    was issued just now."""
    from edgesight.files import private_dir, write_private

    ids = stack.identities
    known = ids.load()
    for n in range(1, 100):
        cand = name if n == 1 else f"{name}-{n}"
        path = cred_dir / f"{cand}.json"
        if cand in known and known[cand].active and path.exists():
            bundle = json.loads(path.read_text())
            if role not in KAFKA_ROLES or "kafka" in bundle:  # else issued before Kafka logins: a new one
                return bundle, False
            continue
        if cand not in known:
            private_dir(cred_dir)
            bundle = ids.add(cand, role, site=site).bundle()
            write_private(path, json.dumps(bundle, indent=2) + "\n")
            return bundle, True
    raise RuntimeError(f"no free identity name {name}-N left in {ids.dir}")


def secure_control(stack, bundle: dict, cred_dir: Path) -> dict:
    """The agent's ``control:`` section from its credentials (as ``edge-agent install --credentials`` writes)."""
    from edgesight.files import write_private

    mq = stack.config.mqtt
    return {
        "host": mq.host,
        "port": mq.port,
        "username": bundle["name"],
        "password_file": str(write_private(cred_dir / f"{bundle['name']}.mqtt-password", bundle["mqtt"]["password"])),
        "tls": True,
        "ca_file": str(write_private(cred_dir / "ca.pem", bundle["ca_pem"])),
    }


def agent_config(
    path: Path,
    stack,
    rtsp_url: str,
    metrics_port: int,
    spool: Path,
    *,
    agent_id: str = DEMO_AGENT,
    control=None,
    kafka_cert: dict[str, str] | None = None,
) -> None:
    mq = stack.config.mqtt
    kafka: dict = {"bootstrap_servers": stack.bootstrap}
    if stack.identities is not None:  # Kafka over TLS: haproxy's port, the stack CA, the agent's certificate
        kafka.update(security_protocol="SSL", ssl_ca_location=str(stack.identities.ca_file), **(kafka_cert or {}))
    cfg = {
        "agent_id": agent_id,
        "cameras": [
            {
                "id": "street-rtsp",
                "url": rtsp_url,
                "transport": "tcp",
                "target_fps": 5,
                "zones": [
                    {"name": "left-walk", "polygon": [[0, 0.3], [0.45, 0.3], [0.45, 1], [0, 1]], "labels": ["person"]}
                ],
                "lines": [{"name": "crossing", "start": [550, 110], "end": [550, 470], "labels": ["person"]}],
            },
            {
                "id": "street-file",
                "url": str(VTEST),
                "loop": True,
                "target_fps": 5,
                "lines": [{"name": "crossing", "start": [550, 110], "end": [550, 470], "labels": ["person"]}],
            },
        ],
        "inference": {"variant": "int8", "classes": ["person", "car", "bicycle"], "batch_max_size": 2},
        "tracking": {"update_interval_s": 1.0, "tracker": {"frame_rate": 5}},
        "publish": {
            "kafka": kafka,
            "spool": {"dir": str(spool), "max_bytes": "512MiB"},
            "keyframes": {"interval_s": 10},
        },
        "control": control
        or {"host": mq.host, "port": mq.port, "username": mq.username, "password": "${MQTT_PASSWORD}"},
        "metrics": {"port": metrics_port},
        "pipeline": {"heartbeat_interval_s": 5},
    }
    path.write_text("# written by cloud-ops demo\n" + yaml.safe_dump(cfg, sort_keys=False))


def _status(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url + "/status", timeout=3) as r:
            return json.load(r)
    except OSError:
        return None


DEMO_SERVICES = (
    ("sink-connectors", "demo-sink", "sink"),
    ("engineering", "demo-engineering", "engineering"),
    ("fleet", "demo-fleet", "fleet"),
)
"""The demo's cloud consumers: (process, identity, role); each runs with its own identity on the secure stack."""


def run_demo(config_path: Path | None, seconds: float, plain: bool = False) -> int:
    from cloud.config import CloudConfig
    from edgesight.log import setup_logging
    from ops.stack import Stack, StackError, _pid_runs

    setup_logging("WARNING")
    cfg = CloudConfig.load(config_path)
    if plain:
        cfg = cfg.model_copy(update={"stack": cfg.stack.model_copy(update={"secure": False})})
    stack = Stack(cfg)  # a running stack keeps the mode it was started in
    secure = stack.identities is not None
    console.rule("[bold]EdgeSight demo" + (" (secure stack)" if secure else " (plain stack)"))
    console.print("1/6 embedded cloud stack")
    running = {k for k, v in stack.read_state().items() if _pid_runs(v.pid, v.argv[0])}
    if running and secure != cfg.stack.secure:
        mode, flag = ("secure", "with --plain") if secure else ("plain", "without --plain")
        console.print(
            f"[red]a {mode} stack runs in {esc(stack.data_dir)}: `cloud-ops stack down` first, "
            f"or run the demo {flag}[/red]"
        )
        return 1
    work = stack.data_dir / "demo"
    (work / "logs").mkdir(parents=True, exist_ok=True)
    agent_id, control, agent_kafka = DEMO_AGENT, None, None
    services: dict[str, dict | None] = {proc: None for proc, _, _ in DEMO_SERVICES}
    if secure:  # the agent's own MQTT login and ACL; each consumer's own identity (S3 keys where its role has any)
        cred_dir = work / "credentials"
        agent, _ = demo_identity(stack, cred_dir, DEMO_AGENT, "agent", site=DEMO_SITE)
        agent_id, control = agent["name"], secure_control(stack, agent, cred_dir)
        agent_kafka = kafka_login(agent, cred_dir)
        s3_new = False
        for proc, name, role in DEMO_SERVICES:
            bundle, new = demo_identity(stack, cred_dir, name, role)
            services[proc], s3_new = bundle, s3_new or (new and "s3" in bundle)
        names = ", ".join(f"{role} {b['name']}" for (_, _, role), b in zip(DEMO_SERVICES, services.values()) if b)
        console.print(f"    identities: agent {esc(agent_id)} (site {DEMO_SITE}), {esc(names)}")
        stack.reload_identities()  # a running mosquitto re-reads its password and ACL files
        if s3_new and "s3" in running:
            stack.restart("s3", progress=lambda m: console.print(f"    {esc(m)}"))  # SeaweedFS reads them at start
    try:
        stack.up(progress=lambda m: console.print(f"    {esc(m)}"))
    except StackError as e:
        console.print(f"[red]cannot start the stack: {esc(e)}[/red]")
        return 1
    console.print("2/6 detector")
    model_dir = ensure_model(lambda m: console.print(f"    {esc(m)}"))
    procs = Procs(work / "logs")
    own = stack.config  # the stack's own clients: the development login, or stack-admin on the secure stack
    mqtt_pw = own.mqtt.password.get_secret_value() if own.mqtt.password else ""
    defaults = CloudConfig()

    def ref(var: str, value: str, default: str) -> str:
        # The plain stack's development secrets may stand in the file as defaults; anything else (every secret
        # of the secure stack) is only referenced and must come from the environment.
        return f"${{{var}:-{value}}}" if value == default and not secure else f"${{{var}}}"

    def write_cloud_yaml(
        path: Path, s3_keys: tuple[str, str] | None, mqtt_login: bool, kafka_cert: dict[str, str] | None = None
    ) -> dict[str, str]:
        """A cloud config for one process: the stack's addresses, TLS settings and CA, and only the secrets given
        (S3 keys, the stack's MQTT login, the Kafka client certificate of its identity: stack-admin's without
        one); returns the environment its ``${VAR}`` references need."""
        env: dict[str, str] = {}
        s3 = json.loads(own.s3.model_dump_json(exclude={"access_key", "secret_key"}))
        if s3_keys is not None:
            s3 |= {
                "access_key": s3_keys[0],
                "secret_key": ref("S3_SECRET_KEY", s3_keys[1], defaults.s3.secret_key.get_secret_value()),
            }
            env["S3_SECRET_KEY"] = s3_keys[1]
        mqtt = json.loads(own.mqtt.model_dump_json(exclude={"password", "password_file"}))
        if mqtt_login:
            mqtt["password"] = ref("MQTT_PASSWORD", mqtt_pw, defaults.mqtt.password.get_secret_value())
            env["MQTT_PASSWORD"] = mqtt_pw
        else:  # no MQTT login (its role has no MQTT right)
            mqtt |= {"username": None, "password": None, "cert_file": None, "key_file": None}
        doc = json.loads(own.model_dump_json(exclude={"stack"})) | {
            "kafka": json.loads(own.kafka.model_dump_json()) | (kafka_cert or {}),
            "s3": s3,
            "mongo": {**json.loads(own.mongo.model_dump_json()), "uri": stack.mongo_uri},
            "mqtt": mqtt,
        }
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        path.chmod(0o600)
        return env

    # The stack's own login (stack-admin on the secure stack): topics, the queries under "where to look".
    cloud_yaml = work / "cloud.yaml"
    admin_env = write_cloud_yaml(cloud_yaml, (own.s3.access_key, own.s3.secret_key.get_secret_value()), True)
    try:
        console.print("3/6 cameras: RTSP server (GStreamer) streaming vtest.avi at 10 fps, and the file itself")
        rtsp_port = _free_port()
        rtsp = procs.start(
            "rtsp-camera",
            ["/usr/bin/python3", str(RTSP_SERVER), "--port", str(rtsp_port), "--file", str(VTEST)],
            stdout=subprocess.PIPE,
        )
        line = rtsp.stdout.readline().decode().strip()
        if not line.startswith("READY"):
            console.print(f"[red]RTSP camera did not start: see {esc(work / 'logs' / 'rtsp-camera.log')}[/red]")
            return 1
        rtsp_url = line.split()[1]
        console.print(f"    {esc(rtsp_url)}")
        console.print("4/6 cloud consumers: sink connectors (MongoDB, S3), data engineering, fleet registry")
        topics = subprocess.run(
            [*_cli("ops.cli"), "connectors", "topics", "--create", "-c", str(cloud_yaml)],
            env={**os.environ, **admin_env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if topics.returncode != 0:
            console.print(f"[red]creating topics failed:[/red] {esc(topics.stderr.strip()[-800:])}")
            return 1
        console.print("    topics created from connectors/topics.yaml (cloud-ops connectors topics --create)")
        argv = {
            "sink-connectors": ["connectors", "run"],
            "engineering": ["engineering", "run"],
            "fleet": ["fleet", "run", "--stale-after-s", "30"],
        }
        for proc, _, _ in DEMO_SERVICES:
            bundle = services[proc]
            if bundle is None:  # the plain stack: its one development login
                keys: tuple[str, str] | None = (own.s3.access_key, own.s3.secret_key.get_secret_value())
            else:
                keys = (bundle["s3"]["access_key"], bundle["s3"]["secret_key"]) if "s3" in bundle else None
            path = work / f"cloud-{proc}.yaml"
            kafka_cert = kafka_login(bundle, work / "credentials") if bundle is not None else None
            env = write_cloud_yaml(path, keys, mqtt_login=bundle is None, kafka_cert=kafka_cert)
            procs.start(proc, [*_cli("ops.cli"), *argv[proc], "-c", str(path)], env)
        console.print("5/6 edge agent")
        metrics_port = _free_port()
        agent_yaml = work / "agent.yaml"
        agent_config(
            agent_yaml,
            stack,
            rtsp_url,
            metrics_port,
            work / "spool",
            agent_id=agent_id,
            control=control,
            kafka_cert=agent_kafka,
        )
        url = f"http://127.0.0.1:{metrics_port}"
        agent_env = {"EDGESIGHT_MODEL_DIR": str(model_dir)}
        if not secure:  # the plain stack's shared login, referenced as ${MQTT_PASSWORD} by its control section
            agent_env["MQTT_PASSWORD"] = mqtt_pw
        agent = procs.start("edge-agent", [*_cli("edge_agent.cli"), "run", "-c", str(agent_yaml)], agent_env)
        with Progress(TextColumn("    {task.description}"), BarColumn(), TimeElapsedColumn(), console=console) as prog:
            task = prog.add_task("agent starting", total=seconds)
            t0 = None
            while True:
                if agent.poll() is not None:
                    console.print(
                        f"[red]edge agent exited ({agent.returncode}); see {esc(work / 'logs' / 'edge-agent.log')}[/red]"
                    )
                    return 1
                st = _status(url)
                if st and t0 is None and st["pipeline"]["frames_inferred"] > 0:
                    t0 = time.monotonic()
                if t0 is not None:
                    elapsed = time.monotonic() - t0
                    p = st["pipeline"] if st else {}
                    cams = ", ".join(
                        f"{c['camera_id']} {c['state']} {c['fps']:.1f}fps" for c in (st or {}).get("cameras", [])
                    )
                    prog.update(
                        task,
                        completed=min(elapsed, seconds),
                        description=esc(
                            f"{p.get('frames_inferred', 0)} frames, {p.get('events_published', 0)} events, "
                            f"{p.get('keyframes_published', 0)} keyframes | {cams}"
                        ),
                    )
                    if elapsed >= seconds:
                        break
                time.sleep(1)
        console.print("    stopping the agent (SIGTERM: drains, ends tracks, flushes)")
        rc = procs.stop("edge-agent", timeout=90)
        console.print(f"    agent exited with {rc}")
        time.sleep(8)  # the consumers catch up
        for proc, _, _ in DEMO_SERVICES:
            procs.stop(proc, timeout=60)
        console.print("6/6 results, read back with pymongo and boto3")
        show_results(stack)
    finally:
        procs.stop_all()
    where_to_look(stack, work, cloud_yaml)
    return 0


def show_results(stack) -> None:
    cfg = stack.config
    client = cfg.mongo.client()
    wh = client[cfg.mongo.warehouse_db]
    an = client[cfg.mongo.analytics_db]
    t = Table(title=esc(f"warehouse {cfg.mongo.warehouse_db}.detections"))
    for c in ("camera", "events", "new tracks", "ended tracks", "with keyframe"):
        t.add_column(c)
    for cam in sorted(wh["detections"].distinct("camera_id")):
        q = {"camera_id": cam}
        t.add_row(
            esc(cam),
            str(wh["detections"].count_documents(q)),
            str(wh["detections"].count_documents({**q, "kind": "new"})),
            str(wh["detections"].count_documents({**q, "kind": "end"})),
            str(wh["detections"].count_documents({**q, "keyframe": {"$exists": True}})),
        )
    console.print(t)
    s3 = cfg.s3.client()
    objs = s3.list_objects_v2(Bucket=cfg.s3.keyframe_bucket, Prefix="keyframes/").get("Contents", [])
    console.print(
        esc(
            f"S3 bucket {cfg.s3.keyframe_bucket}: {len(objs)} keyframe objects "
            f"({sum(o['Size'] for o in objs) / 1024:.0f} KiB), e.g. {objs[0]['Key'] if objs else '-'}"
        )
    )
    if objs:
        url = s3.generate_presigned_url(
            "get_object", Params={"Bucket": cfg.s3.keyframe_bucket, "Key": objs[-1]["Key"]}, ExpiresIn=3600
        )
        console.print(f"    presigned URL (1 h): {esc(url)}")
    t = Table(title=esc(f"analytics {cfg.mongo.analytics_db}"))
    t.add_column("collection")
    t.add_column("documents")
    t.add_column("example")
    for name in sorted(an.list_collection_names()):
        doc = an[name].find_one({}, {"_id": 0}) or {}
        t.add_row(esc(name), str(an[name].count_documents({})), esc(json.dumps(doc, default=str)[:110]))
    console.print(t)
    crossings = (
        list(an["line_crossings_minute"].find({}, {"_id": 0}))
        if "line_crossings_minute" in an.list_collection_names()
        else []
    )
    if crossings:
        console.print(f"line crossings per minute: {esc(json.dumps(crossings[:4], default=str)[:400])}")
    client.close()


def where_to_look(stack, work: Path, cloud_yaml: Path) -> None:
    cfg = stack.config
    secret, tls = "the plain stack's development secret", ""
    if stack.identities is not None:
        secret = f"secret in {stack.identities.dir}/stack-admin.json"
        tls = f" --cafile {stack.identities.ca_file}"
    needs = " (needs S3_SECRET_KEY and MQTT_PASSWORD from there)" if stack.identities is not None else ""
    console.rule("where to look")
    console.print(
        esc(f"""  MongoDB     {stack.mongo_uri}  databases {cfg.mongo.warehouse_db} (detections, keyframes), {cfg.mongo.analytics_db} (counts, crossings, dwell, tracks, fleet)
  S3          {stack.s3_endpoint}  bucket {cfg.s3.keyframe_bucket}  (access key {cfg.s3.access_key}; {secret})
  Kafka       {stack.bootstrap}  topics edgesight.detections.v1, edgesight.keyframes.v1, edgesight.status.v1
  MQTT        {cfg.mqtt.host}:{cfg.mqtt.port}  mosquitto_sub{tls} -u {cfg.mqtt.username} -P ... -t 'edgesight/#' -v
  configs     {work / "agent.yaml"}, {cloud_yaml}{needs}, {work}/cloud-<consumer>.yaml
  logs        {work / "logs"}  and  cloud-ops stack logs
  queries     cloud-ops warehouse query -c {cloud_yaml} --camera street-file --limit 5
              cloud-ops fleet list -c {cloud_yaml}
  stop        cloud-ops stack down""")
    )
