"""Helpers shared by the publish tests, the SIGKILL publisher script and the benchmark.

Nothing here fakes Kafka: records are read back with kafka-python (a pure-Python
client, independent of librdkafka) from the real embedded broker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from edgesight.wire import Box, DetectionEvent, FrameSize, ModelRef, NormBox, decode_event, event_key, make_event_id

T0 = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)
MODEL = ModelRef(name="yolov4-tiny", version="1", variant="fp32")


def make_event(agent_id: str, camera_id: str, seq: int, *, track_id: int = 1, pad: int = 0) -> DetectionEvent:
    """A valid detection event; ``event_id`` is deterministic in (agent, camera, seq, track)."""
    ts = T0 + timedelta(milliseconds=100 * seq)
    x = float(seq % 600)
    zones = [f"z{i}" for i in range(pad)]
    return DetectionEvent(
        event_id=make_event_id(agent_id, camera_id, ts, seq, track_id, "update"),
        kind="update",
        agent_id=agent_id,
        camera_id=camera_id,
        ts=ts,
        seq=seq,
        model=MODEL,
        label="person",
        class_id=0,
        score=0.8,
        top_score=0.9,
        box=Box(x1=x, y1=10, x2=x + 50, y2=200),
        box_norm=NormBox(x1=x / 768, y1=10 / 576, x2=(x + 50) / 768, y2=200 / 576),
        frame=FrameSize(width=768, height=576),
        track_id=track_id,
        zones=zones,
    )


def event_stream(agent_id: str, cameras: int, n: int, *, pad: int = 0):
    """The i-th of n events, round-robin over cameras: deterministic, so a restarted script
    regenerates the same ids."""
    for i in range(n):
        cam = f"cam-{i % cameras}"
        yield make_event(agent_id, cam, i // cameras, pad=pad)


def read_topic(
    bootstrap: str, topic: str, *, expect: int | None = None, idle_s: float = 5.0, max_wait_s: float = 180.0
) -> list:
    """Every record of ``topic`` from the beginning, via kafka-python. With ``expect``: stops once that
    many were read and nothing more arrives for a second (or after ``max_wait_s``); without: after
    ``idle_s`` without records."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=500,
        max_partition_fetch_bytes=32 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    try:
        parts = None
        deadline = time.monotonic() + 30
        while not parts and time.monotonic() < deadline:
            parts = c.partitions_for_topic(topic)
            if not parts:
                time.sleep(0.2)
        assert parts, f"topic {topic} not found"
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        out: list = []
        last_new = time.monotonic()
        end = time.monotonic() + max_wait_s
        while time.monotonic() < end:
            got = c.poll(timeout_ms=500, max_records=10000)
            n = sum(len(v) for v in got.values())
            for recs in got.values():
                out.extend(recs)
            if n:
                last_new = time.monotonic()
                continue
            quiet = time.monotonic() - last_new
            if expect is not None and len(out) >= expect and quiet > 1.0:
                break
            if expect is None and quiet > idle_s:
                break
        return out
    finally:
        c.close()


class BrokerControl:
    """Stop and restart only the Kafka broker (Tansu) of a stack: an uplink outage.

    The restarted process is recorded in the stack's state file, so ``Stack.down()`` stops it."""

    def __init__(self, stack):
        self.stack = stack
        self.frozen = False

    def freeze(self) -> None:
        """SIGSTOP the broker: connections stay open but nothing answers (a dead uplink)."""
        os.killpg(os.getpgid(self.stack.read_state()["kafka"].pid), signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        os.killpg(os.getpgid(self.stack.read_state()["kafka"].pid), signal.SIGCONT)
        self.frozen = False

    def stop(self, sig: int = signal.SIGKILL) -> None:
        svc = self.stack.read_state()["kafka"]
        try:
            os.killpg(os.getpgid(svc.pid), sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.waitpid(svc.pid, os.WNOHANG)
            except ChildProcessError:
                pass
            try:
                os.kill(svc.pid, 0)
                if Path(f"/proc/{svc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            except (ProcessLookupError, FileNotFoundError):
                break
            time.sleep(0.05)

    def start(self) -> None:
        from ops.stack import ServiceState

        st = self.stack
        state = st.read_state()
        svc = state["kafka"]
        env = dict(os.environ)
        env.update(st._tansu_env())
        with open(svc.log, "ab") as fh:
            proc = subprocess.Popen(
                svc.argv,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=st.data_dir,
                env=env,
                start_new_session=True,
            )
        state["kafka"] = ServiceState(
            name="kafka",
            pid=proc.pid,
            port=svc.port,
            argv=svc.argv,
            log=svc.log,
            started_at=time.time(),
            extra_ports=svc.extra_ports,
        )
        st._write_state(state)
        deadline = time.monotonic() + 60
        last = None
        while time.monotonic() < deadline:
            try:
                st._probe_kafka()
                return
            except Exception as e:  # noqa: BLE001
                last = e
                time.sleep(0.3)
        raise RuntimeError(f"broker did not come back: {last}")


def first_occurrences(recs) -> tuple[dict[str, bytes], dict[str, list[int]], int]:
    """Read-back detection records -> (first value per event id, per-camera seqs of first occurrences in
    arrival order, number of duplicates). Asserts every record is keyed by its camera and every re-send is
    byte-identical to the original."""
    first: dict[str, bytes] = {}
    by_cam: dict[str, list[int]] = {}
    dups = 0
    for r in recs:
        e = decode_event(r.value)
        assert r.key == event_key(e)
        if e.event_id in first:
            dups += 1
            assert first[e.event_id] == r.value, "a re-send differs from the original"
            continue
        first[e.event_id] = r.value
        by_cam.setdefault(e.camera_id, []).append(e.seq)
    return first, by_cam, dups
