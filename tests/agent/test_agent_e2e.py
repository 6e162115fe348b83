"""The edge agent end to end: real cameras (RTSP + file), real detector, real broker and MQTT.

The agent runs as its own process (``edge-agent run``), exactly as systemd runs it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from edgesight import samples
from edgesight.kafka import KafkaConfig
from edgesight.wire import Topics, decode_ack, decode_event, decode_keyframe, decode_status
from ops.testing.clients import kafka_python, mosquitto_cli
from tests.agents import agent_links, create_edge_topics
from tests.capture.conftest import RtspServer

VTEST = str(samples.VTEST)


def free_port() -> int:
    """A free port below the ephemeral range (see ops.stack.free_ports)."""
    from ops.stack import free_ports

    return free_ports(1)[0]


def agent_yaml(
    tmp: Path,
    stack,
    *,
    agent_id: str,
    prefix: str,
    cameras: list[dict],
    bootstrap: str | None = None,
    metrics_port: int,
    spool: Path,
) -> Path:
    links = agent_links(stack, agent_id, tmp, topic_prefix=prefix)  # its own identity (kept for a restart)
    if bootstrap is None:
        create_edge_topics(stack, prefix)  # an agent may only produce to its topics
    cfg = {
        "agent_id": agent_id,
        "cameras": cameras,
        "inference": {
            "variant": "int8",
            "classes": ["person"],
            "batch_max_size": 2,
            "batch_max_wait_ms": 5,
            "intra_op_threads": 1,
        },
        "tracking": {"update_interval_s": 0.0, "tracker": {"frame_rate": 5}},
        "publish": {
            "kafka": {
                **links["kafka"],
                **({"bootstrap_servers": bootstrap} if bootstrap else {}),
                "topic_prefix": prefix,
            },
            "spool": {"dir": str(spool), "max_bytes": "256MiB"},
            "keyframes": {"interval_s": 5},
        },
        "control": {**links["control"], "keepalive_s": 5},
        "metrics": {"port": metrics_port},
        "pipeline": {"heartbeat_interval_s": 2},
    }
    p = tmp / f"{agent_id}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


class AgentProc:
    def __init__(self, config: Path, metrics_port: int, stack, model_dir: Path, log: Path):
        self.url = f"http://127.0.0.1:{metrics_port}"
        env = {**os.environ, "EDGESIGHT_MODEL_DIR": str(model_dir)}
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge_agent.cli", "run", "-c", str(config)],
            env=env,
            stdout=open(log, "ab"),
            stderr=subprocess.STDOUT,
        )

    def status(self) -> dict | None:
        try:
            with urllib.request.urlopen(self.url + "/status", timeout=5) as r:
                return json.load(r)
        except OSError:
            return None

    def wait(self, cond, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        st = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"agent exited ({self.proc.returncode}); log:\n{self.tail()}"
            st = self.status()
            if st is not None and cond(st):
                return st
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}; last status: {json.dumps(st)[:2000]}\n{self.tail()}")

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def terminate(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def cams(st: dict) -> dict[str, dict]:
    return {c["camera_id"]: c for c in st["cameras"]}


def read_topic(kafka: KafkaConfig, topic: str, *, min_count: int = 1, timeout_s: float = 30) -> list:
    """All records of a topic via kafka-python (an independent client implementation), connected as ``kafka``
    says (TLS and the stack CA on the secure stack)."""
    from kafka import KafkaConsumer

    c = KafkaConsumer(
        topic,
        **kafka_python(kafka),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=f"check-{uuid.uuid4().hex[:8]}",
        consumer_timeout_ms=4000,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    out: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            batch = list(c)
            out += batch
            if len(out) >= min_count and not batch:
                break
    finally:
        c.close()
    return out


class MqttWatch:
    """mosquitto_sub (Debian's client) on the agent's topics, collecting lines in the background."""

    def __init__(self, stack, topic: str):
        mq = stack.config.mqtt
        self.proc = subprocess.Popen(
            ["mosquitto_sub", *mosquitto_cli(mq), "-t", topic, "-v"],  # the stack's own login (stack-admin)
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: list[tuple[str, str]] = []
        import threading

        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.proc.stdout:
            topic, _, payload = line.rstrip("\n").partition(" ")
            self.lines.append((topic, payload))

    def wait_for(self, pred, timeout: float = 30, what: str = "message"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, p in list(self.lines):
                try:
                    if pred(t, p):
                        return t, p
                except Exception:  # noqa: BLE001 - not the message we wait for
                    pass
            time.sleep(0.2)
        raise AssertionError(f"no {what} within {timeout}s; saw {self.lines[-10:]}")

    def close(self):
        self.proc.kill()


def mqtt_pub(stack, topic: str, payload: str) -> None:
    mq = stack.config.mqtt
    subprocess.run(
        ["mosquitto_pub", *mosquitto_cli(mq), "-t", topic, "-m", payload, "-q", "1"],
        check=True,
        timeout=10,
    )


@pytest.fixture
def rtsp():
    srv = RtspServer(VTEST).up()
    yield srv
    srv.down()


def test_two_cameras_to_kafka_with_mqtt_control(tmp_path, stack, model_dir, rtsp):
    agent_id = f"e2e-{uuid.uuid4().hex[:6]}"
    prefix = f"t{uuid.uuid4().hex[:8]}"
    port = free_port()
    cfg = agent_yaml(
        tmp_path,
        stack,
        agent_id=agent_id,
        prefix=prefix,
        metrics_port=port,
        spool=tmp_path / "spool",
        cameras=[
            {
                "id": "rtsp-cam",
                "url": rtsp.url.replace("rtsp://", "rtsp://viewer:s3cretpw@"),
                "transport": "tcp",
                "target_fps": 5,
            },
            {
                "id": "file-cam",
                "url": VTEST,
                "loop": True,
                "target_fps": 5,
                "lines": [{"name": "mid", "start": [550, 110], "end": [550, 470]}],
                "zones": [{"name": "left", "polygon": [[0, 0], [384, 0], [384, 576], [0, 576]]}],
            },
        ],
    )
    watch = MqttWatch(stack, f"edgesight/{agent_id}/#")
    agent = AgentProc(cfg, port, stack, model_dir, tmp_path / "agent.log")
    try:
        agent.wait(
            lambda s: (
                all(c["state"] == "streaming" for c in s["cameras"])
                and len(s["cameras"]) == 2
                and s["pipeline"]["events_published"] >= 10
            ),
            120,
            "both cameras streaming and events flowing",
        )
        # Camera credentials never reach status output or logs.
        assert "s3cretpw" not in json.dumps(agent.status()) and "s3cretpw" not in agent.log.read_text()
        cmd = f"edgesight/{agent_id}/cmd"
        # Stop the RTSP camera: ack with our correlation id, retained camera status goes to stopped.
        mqtt_pub(stack, cmd, json.dumps({"command_id": "stop-1", "action": "stop_camera", "camera_id": "rtsp-cam"}))
        _, ack = watch.wait_for(
            lambda t, p: t.endswith("/ack") and decode_ack(p).command_id == "stop-1", what="stop ack"
        )
        assert decode_ack(ack).ok, ack
        watch.wait_for(
            lambda t, p: t.endswith("/camera/rtsp-cam/status") and decode_status(p).state == "stopped",
            what="retained stopped status",
        )
        assert cams(agent.status())["rtsp-cam"]["state"] == "stopped"
        # Change fps of the file camera.
        mqtt_pub(
            stack, cmd, json.dumps({"command_id": "fps-1", "action": "set_fps", "camera_id": "file-cam", "fps": 2})
        )
        _, ack = watch.wait_for(lambda t, p: t.endswith("/ack") and decode_ack(p).command_id == "fps-1", what="fps ack")
        assert decode_ack(ack).ok and decode_ack(ack).result["target_fps"] == 2
        # A malformed command gets an error reply naming the field; the agent keeps running.
        mqtt_pub(
            stack, cmd, json.dumps({"command_id": "bad-1", "action": "set_fps", "camera_id": "file-cam", "fps": "fast"})
        )
        _, ack = watch.wait_for(
            lambda t, p: t.endswith("/ack") and decode_ack(p).command_id == "bad-1", what="error ack"
        )
        assert not decode_ack(ack).ok and "'fps'" in decode_ack(ack).error
        mqtt_pub(stack, cmd, "][ not json")
        watch.wait_for(
            lambda t, p: (
                t.endswith("/ack") and decode_ack(p).command_id == "unknown" and "not valid JSON" in decode_ack(p).error
            ),
            what="error ack for garbage",
        )
        # Start it again: streaming, retained status follows.
        mqtt_pub(stack, cmd, json.dumps({"command_id": "start-1", "action": "start_camera", "camera_id": "rtsp-cam"}))
        watch.wait_for(
            lambda t, p: t.endswith("/ack") and decode_ack(p).command_id == "start-1" and decode_ack(p).ok,
            what="start ack",
        )
        st = agent.wait(lambda s: cams(s)["rtsp-cam"]["state"] == "streaming", 60, "rtsp camera streaming again")
        assert cams(st)["file-cam"]["target_fps"] == 2
        watch.wait_for(
            lambda t, p: t.endswith(f"/{agent_id}/status") and decode_status(p).state in ("running", "degraded"),
            what="retained agent heartbeat",
        )
        # Snapshot on demand.
        mqtt_pub(stack, cmd, json.dumps({"command_id": "snap-1", "action": "snapshot", "camera_id": "file-cam"}))
        _, ack = watch.wait_for(
            lambda t, p: t.endswith("/ack") and decode_ack(p).command_id == "snap-1", what="snapshot ack"
        )
        snap_key = decode_ack(ack).result["object_key"]
        time.sleep(3)
        assert agent.terminate() == 0, agent.tail()
        assert "s3cretpw" not in agent.log.read_text()
        assert not any("s3cretpw" in p for _, p in watch.lines)
    finally:
        watch.close()
        if agent.proc.poll() is None:
            agent.kill()

    topics = Topics(prefix)
    events = [decode_event(m.value) for m in read_topic(stack.config.kafka, topics.detections, min_count=10)]
    assert {e.camera_id for e in events} == {"rtsp-cam", "file-cam"}
    assert all(e.agent_id == agent_id and e.label == "person" for e in events)
    assert len({e.event_id for e in events}) == len(events), "duplicate event ids"
    # Order per camera: records keyed by camera arrive in the order the agent produced them.
    last: dict[str, int] = defaultdict(lambda: -1)
    for e in events:
        if e.kind != "end":
            assert e.seq >= last[e.camera_id], (e.camera_id, e.seq, last[e.camera_id])
            last[e.camera_id] = e.seq
    kinds = {e.kind.value for e in events}
    assert {"new", "update", "end"} <= kinds  # SIGTERM ends every live track
    keyframes = read_topic(stack.config.kafka, topics.keyframes, min_count=2)
    metas = [decode_keyframe(m.key, m.value, m.headers)[0] for m in keyframes]
    assert {m.camera_id for m in metas} == {"rtsp-cam", "file-cam"}
    assert snap_key in {m.object_key for m in metas}
    refs = {e.keyframe.keyframe_id for e in events if e.keyframe}
    assert refs and refs <= {m.keyframe_id for m in metas}, "events point at keyframes that were never published"
    status = [decode_status(m.value) for m in read_topic(stack.config.kafka, topics.status, min_count=1)]
    assert any(s.agent_id == agent_id for s in status)


def test_sigkill_then_restart_replays_the_spool(tmp_path, stack, model_dir):
    """Broker unreachable -> events spool on disk; kill -9; restart with the broker: every accepted event arrives."""
    agent_id = f"kill-{uuid.uuid4().hex[:6]}"
    prefix = f"t{uuid.uuid4().hex[:8]}"
    spool = tmp_path / "spool"
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there: the uplink is down
    port = free_port()
    cam = {"id": "file-cam", "url": VTEST, "loop": True, "target_fps": 5}
    cfg = agent_yaml(
        tmp_path, stack, agent_id=agent_id, prefix=prefix, metrics_port=port, spool=spool, cameras=[cam], bootstrap=dead
    )
    agent = AgentProc(cfg, port, stack, model_dir, tmp_path / "agent1.log")
    try:
        agent.wait(lambda s: s["pipeline"]["events_published"] >= 15, 120, "events accepted while offline")
        mqtt_pub(
            stack,
            f"edgesight/{agent_id}/cmd",
            json.dumps({"command_id": "s", "action": "stop_camera", "camera_id": "file-cam"}),
        )
        st = agent.wait(lambda s: cams(s)["file-cam"]["state"] == "stopped", 30, "camera stopped")
        time.sleep(2)  # the end events of the stopped camera are accepted too
        st = agent.status()
        accepted_events = st["publisher"]["by_topic"]["detections"]["accepted"]
        assert st["spool"]["records"] > 0
        agent.kill()  # SIGKILL: no flush, no goodbye
    finally:
        if agent.proc.poll() is None:
            agent.kill()
    # Restart with the broker reachable and the camera disabled: only the spool is sent.
    cfg2 = agent_yaml(
        tmp_path,
        stack,
        agent_id=agent_id,
        prefix=prefix,
        metrics_port=port,
        spool=spool,
        cameras=[{**cam, "enabled": False}],
    )
    agent2 = AgentProc(cfg2, port, stack, model_dir, tmp_path / "agent2.log")
    try:
        agent2.wait(lambda s: s["spool"]["records"] == 0, 90, "spool drained")
        assert agent2.terminate() == 0
    finally:
        if agent2.proc.poll() is None:
            agent2.kill()
    events = [decode_event(m.value) for m in read_topic(stack.config.kafka, Topics(prefix).detections, min_count=15)]
    ids = [e.event_id for e in events]
    assert accepted_events >= 15
    assert len(set(ids)) == accepted_events, (len(set(ids)), accepted_events)
    seqs = [e.seq for e in events if e.kind != "end"]
    assert seqs == sorted(seqs), "replay must keep the camera's order"
