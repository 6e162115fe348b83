"""The embedded stack: healthy services reachable by clients that are not ours; clean refusals; clean stop."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from ops.stack import GATE, SERVICES, TLS_PROXY, Stack, StackError, _pid_runs, free_ports, private_settings
from ops.testing.clients import kafka_python, mosquitto_cli

CLI = [sys.executable, "-m", "ops.cli"]

pytestmark = pytest.mark.stack  # every test here starts servers, several without the `stack` fixture


def test_session_stack_is_healthy(stack):
    rows = {h.name: h for h in stack.status()}
    assert set(rows) == {*SERVICES, GATE, TLS_PROXY}  # secure by default: haproxy (TLS) and the gate before Tansu
    for h in rows.values():
        assert h.running and h.healthy, h


def test_kafka_python_independent_client_produces_and_consumes(stack, topic_prefix):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    topic = f"{topic_prefix}.kp"
    kp = kafka_python(stack.config.kafka)  # TLS to haproxy, trusting the stack CA
    admin = KafkaAdminClient(**kp)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    admin.close()
    prod = KafkaProducer(**kp, acks="all")
    sent = [f"m{i}".encode() for i in range(20)]
    for i, v in enumerate(sent):
        prod.send(topic, key=f"k{i % 3}".encode(), value=v)
    prod.flush(10)
    prod.close()
    cons = KafkaConsumer(
        topic,
        **kp,
        auto_offset_reset="earliest",
        group_id=f"g-{uuid.uuid4().hex[:6]}",
        consumer_timeout_ms=8000,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    got = [m.value for m in cons]
    cons.close()
    assert sorted(got) == sorted(sent)


def test_mosquitto_clients_reach_mqtt_with_credentials(stack):
    mq = stack.config.mqtt
    topic = f"es-test/{uuid.uuid4().hex}"
    auth = mosquitto_cli(mq)  # host, port, stack-admin's login, the stack CA and its client certificate
    sub = subprocess.Popen(
        ["mosquitto_sub", *auth, "-t", topic, "-C", "1", "-W", "10"],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)
    subprocess.run(
        ["mosquitto_pub", *auth, "-t", topic, "-m", "hello", "-q", "1"],
        check=True,
        timeout=10,
    )
    out, _ = sub.communicate(timeout=15)
    assert out.strip() == "hello"
    # Wrong password is refused: the broker really enforces authentication.
    wrong = mosquitto_cli(mq.model_copy(update={"password": SecretStr("wrong")}))
    bad = subprocess.run(
        ["mosquitto_pub", *wrong, "-t", topic, "-m", "x"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert bad.returncode != 0 and "not authorised" in (bad.stderr + bad.stdout).lower()


def test_s3_rejects_wrong_secret(stack):
    import boto3
    from botocore.exceptions import ClientError

    c = boto3.client(
        "s3",
        endpoint_url=stack.s3_endpoint,
        aws_access_key_id=stack.config.s3.access_key,
        aws_secret_access_key="wrong-secret",
        region_name="us-east-1",
        verify=str(stack.config.s3.ca_file) if stack.config.s3.ca_file else None,  # HTTPS, the stack CA
    )
    with pytest.raises(ClientError):
        c.list_objects_v2(Bucket=stack.config.s3.keyframe_bucket)


def test_busy_port_fails_clearly_and_leaves_nothing_running(tmp_path):
    settings = private_settings(tmp_path / "busy")
    holder = socket.socket()
    holder.bind(("127.0.0.1", settings.mongo_port))
    holder.listen(1)
    try:
        with pytest.raises(StackError) as ei:
            Stack(settings=settings).up()
    finally:
        holder.close()
    msg = str(ei.value)
    assert f"127.0.0.1:{settings.mongo_port} (mongo)" in msg and "already in use" in msg
    assert _our_server_pids(tmp_path) == set()
    assert not Stack(settings=settings).read_state()


def test_failed_start_midway_stops_what_it_started(tmp_path):
    """S3 and MQTT start, then MongoDB cannot: everything started so far is stopped again."""
    settings = private_settings(tmp_path / "mid")
    st = Stack(settings=settings)
    (tmp_path / "mid" / "mongo" / "nx-27017.pid").mkdir(parents=True)  # the server cannot write its pid file
    with pytest.raises(StackError, match="mongo"):
        st.up()
    deadline = time.monotonic() + 10  # exiting processes may take a moment to leave /proc
    while _our_server_pids(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = {p: Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ")[:120] for p in _our_server_pids(tmp_path)}
    assert not left, left


def _our_server_pids(under: Path) -> set[int]:
    """Server processes whose working directory is inside ``under`` (a stack's data dir)."""
    pids = set()
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes()
                if not os.readlink(p / "cwd").startswith(str(under)):
                    continue
            except OSError:
                continue
            if any(x in cmd for x in (b"tansu", b"weed\x00mini", b"nx-27017", b"mosquitto\x00-c", b"haproxy")):
                if _pid_runs(int(p.name), cmd.split(b"\0")[0].decode()):
                    pids.add(int(p.name))
    return pids


def test_cli_up_status_down_leaves_no_process(tmp_path):
    kafka, s3, mongo, mqtt = free_ports(4)
    data = tmp_path / "cli-stack"
    ports = ["--kafka-port", str(kafka), "--s3-port", str(s3), "--mongo-port", str(mongo), "--mqtt-port", str(mqtt)]
    env = {**os.environ, "COLUMNS": "200"}
    up = subprocess.run(
        [*CLI, "stack", "up", "--data-dir", str(data), *ports], capture_output=True, text=True, timeout=120, env=env
    )
    assert up.returncode == 0, up.stdout + up.stderr
    assert "stack up" in up.stdout
    try:
        status = subprocess.run(
            [*CLI, "stack", "status", "--data-dir", str(data), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert status.returncode == 0, status.stdout + status.stderr
        rows = json.loads(status.stdout)
        assert {r["name"] for r in rows if r["healthy"]} == {*SERVICES, GATE, TLS_PROXY}  # `stack up` is secure
        state = json.loads((data / "stack.json").read_text())["services"]
        pids = {v["pid"] for v in state.values()}
        assert all(Path(f"/proc/{p}").exists() for p in pids)
        # A second `up` on the same ports is refused without disturbing the running stack.
        again = subprocess.run(
            [*CLI, "stack", "up", "--data-dir", str(tmp_path / "other"), *ports],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert again.returncode == 1 and "already in use" in again.stderr
        plain = subprocess.run(
            [*CLI, "stack", "up", "--plain", "--data-dir", str(data)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert plain.returncode == 1 and "a secure stack runs" in plain.stderr  # a running stack keeps its mode
        logs = subprocess.run(
            [*CLI, "stack", "logs", "kafka", "--data-dir", str(data)],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
        assert logs.returncode == 0
    finally:
        down = subprocess.run(
            [*CLI, "stack", "down", "--data-dir", str(data)], capture_output=True, text=True, timeout=120, env=env
        )
    assert down.returncode == 0, down.stderr
    assert "stopped" in down.stdout
    time.sleep(0.3)
    assert not [p for p in pids if _pid_runs(p, "x") or Path(f"/proc/{p}").exists() and not _zombie(p)]
    status = subprocess.run(
        [*CLI, "stack", "status", "--data-dir", str(data), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert status.returncode == 1


def test_cli_plain_only_when_asked_and_a_running_stack_keeps_its_mode(tmp_path):
    """`stack up --plain` starts plain listeners (no TLS proxy, no identities); later commands without the flag keep
    it plain, identities are refused naming the mode; `--plain` against a running secure stack is refused."""
    kafka, s3, mongo, mqtt = free_ports(4)
    data = tmp_path / "plain-stack"
    ports = ["--kafka-port", str(kafka), "--s3-port", str(s3), "--mongo-port", str(mongo), "--mqtt-port", str(mqtt)]
    env = {**os.environ, "COLUMNS": "200"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*CLI, *args, "--data-dir", str(data)], capture_output=True, text=True, timeout=120, env=env
        )

    up = cli("stack", "up", "--plain", "--storage", "memory", *ports)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        assert "plain" in up.stdout and not (data / "identities").exists()
        status = cli("stack", "status", "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        rows = json.loads(status.stdout)
        assert {r["name"] for r in rows if r["healthy"]} == set(SERVICES)  # no kafka-tls, no kafka-gate
        assert not any("secure mode" in r["detail"] for r in rows)
        again = cli("stack", "up")  # no flag: the running stack stays plain
        assert again.returncode == 0 and "already running" in again.stdout and "plain" in again.stdout
        refused = cli("identities", "add-agent", "gate-1", "--site", "s", "--out", str(tmp_path / "g.json"))
        assert refused.returncode == 1 and "runs plain" in refused.stderr and not (tmp_path / "g.json").exists()
    finally:
        down = cli("stack", "down")
    assert down.returncode == 0, down.stderr


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_durable_broker_keeps_messages_across_restart(tmp_path):
    """Tansu on S3 storage: records and committed offsets survive a full stack restart."""
    from confluent_kafka import Consumer, Producer

    st = Stack(settings=private_settings(tmp_path / "durable"))
    st.up()
    try:
        topic = f"dur-{uuid.uuid4().hex[:6]}"
        conf = st.config.kafka.client_config()  # TLS, the stack CA
        p = Producer({**conf, "acks": "all", "enable.idempotence": True})
        for i in range(50):
            p.produce(topic, value=str(i).encode(), key=b"k")
        assert p.flush(20) == 0
        st.down()
        st.up()
        c = Consumer(
            {
                **conf,
                "group.id": "dur",
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
            }
        )
        c.subscribe([topic])
        got: list[int] = []
        deadline = time.monotonic() + 40
        while len(got) < 50 and time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is not None and not m.error():
                got.append(int(m.value()))
        c.close()
        assert got == list(range(50))
    finally:
        st.down()


def test_free_ports_are_distinct_bindable_and_outside_the_ephemeral_range():
    """Ports from the ephemeral range can be taken by any outgoing connection before a server binds them."""
    from ops.stack import _ephemeral_range

    eph_lo, _ = _ephemeral_range()
    ports = free_ports(13)
    assert len(set(ports)) == 13
    assert all(p < eph_lo for p in ports), ports
    socks = []
    try:
        for p in ports:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind(("127.0.0.1", p))
            s.listen(1)
        # one of them is now busy: it is not handed out again
        assert not set(free_ports(200)) & set(ports)
    finally:
        for s in socks:
            s.close()


def test_free_ports_never_hands_out_a_port_twice_nor_an_excluded_one():
    """A stack picks its 4 service ports, then SeaweedFS's 9 internal ones before the services bind theirs."""
    first = free_ports(4)
    later = [p for _ in range(50) for p in free_ports(9, exclude={1, 2})]
    assert len(set(later)) == len(later) and not set(later) & set(first)
    # the whole low range excluded: it falls back to the OS's allocator, still honouring exclude
    from ops.stack import _ephemeral_range

    excluded = set(range(20000, _ephemeral_range()[0]))
    got = free_ports(3, exclude=excluded)
    assert len(set(got)) == 3 and not set(got) & excluded and not set(got) & set(later)


def _not_private(root: Path) -> list[str]:
    """Everything below ``root`` that others could read: directories must be 0700, regular files 0600."""
    bad = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames]:
            full = Path(dirpath) / name
            try:
                st = full.lstat()
            except FileNotFoundError:
                continue
            mode = st.st_mode & 0o777
            if full.is_dir() and not full.is_symlink():
                if mode != 0o700:
                    bad.append(f"{full.relative_to(root)}/ {oct(mode)}")
            elif full.is_file() and not full.is_symlink() and mode != 0o600:
                bad.append(f"{full.relative_to(root)} {oct(mode)}")
    return bad


def test_up_starts_only_what_is_missing_restart_one_service_and_private_data(tmp_path):
    """After a broker crash `stack up` starts only the broker (the others keep their pids); `stack restart kafka`
    restarts only Kafka; `stack status` shows MongoDB's wire version; data files are 0600 in 0700 dirs."""
    from ops.testing.publish import BrokerControl

    data = tmp_path / "partial"
    env = {**os.environ, "COLUMNS": "200"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*CLI, "stack", *args, "--data-dir", str(data)], capture_output=True, text=True, timeout=120, env=env
        )

    st = Stack(settings=private_settings(data))
    old = os.umask(0o022)  # a usual login umask: the stack must not depend on it
    try:
        st.up()
    finally:
        os.umask(old)
    others = ("s3", "mongo", "mqtt")
    try:
        before = {k: v.pid for k, v in st.read_state().items()}
        kafka_port = st.read_state()["kafka"].port
        BrokerControl(st).stop()  # SIGKILL: the broker crashed
        up = cli("up")
        assert up.returncode == 0, up.stdout + up.stderr
        after = st.read_state()
        assert {k: after[k].pid for k in others} == {k: before[k] for k in others}
        assert after["kafka"].pid != before["kafka"] and _pid_runs(after["kafka"].pid, after["kafka"].argv[0])
        assert after["kafka"].port == kafka_port  # clients keep their endpoint
        again = cli("restart", "kafka")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "kafka restarted" in again.stdout
        restarted = st.read_state()
        assert restarted["kafka"].pid != after["kafka"].pid
        assert {k: restarted[k].pid for k in others} == {k: before[k] for k in others}
        bad = cli("restart", "kafkaa")
        assert bad.returncode == 1 and "unknown service kafkaa" in bad.stderr
        status = cli("status", "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        rows = {r["name"]: r for r in json.loads(status.stdout)}
        assert all(r["healthy"] for r in rows.values()), rows
        assert re.search(r"wire version \d+-\d+", rows["mongo"]["detail"]), rows["mongo"]
        assert "?" not in rows["mongo"]["detail"]
        assert not _not_private(data), _not_private(data)
    finally:
        st.down()
