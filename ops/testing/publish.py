"""The edge side of the benchmark/test fixtures: a deterministic detection-event stream, broker outages."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

from edgesight.wire import Box, DetectionEvent, FrameSize, ModelRef, NormBox, make_event_id
from ops.stack import Stack

T0 = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)
MODEL = ModelRef(name="yolov4-tiny", version="1", variant="fp32")
RUN_ID = "7e57" * 8  # the one agent run of the fixture stream (detection/2)


def make_event(agent_id: str, camera_id: str, seq: int, *, track_id: int = 1, pad: int = 0) -> DetectionEvent:
    """A valid detection event; ``event_id`` is deterministic in (agent, camera, seq, track)."""
    ts = T0 + timedelta(milliseconds=100 * seq)
    x = float(seq % 600)
    zones = [f"z{i}" for i in range(pad)]
    return DetectionEvent(
        event_id=make_event_id(agent_id, camera_id, ts, seq, track_id, "update", run_id=RUN_ID),
        kind="update",
        agent_id=agent_id,
        run_id=RUN_ID,
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


def event_stream(agent_id: str, cameras: int, n: int, *, pad: int = 0) -> Iterator[DetectionEvent]:
    """The i-th of n events, round-robin over cameras: deterministic, so a restarted script
    regenerates the same ids."""
    for i in range(n):
        cam = f"cam-{i % cameras}"
        yield make_event(agent_id, cam, i // cameras, pad=pad)


class BrokerControl:
    """Stop and restart only the Kafka broker (Tansu) of a stack: an uplink outage.

    The restarted process is recorded in the stack's state file, so ``Stack.down()`` stops it."""

    def __init__(self, stack: Stack):
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
        st = self.stack
        state = st.read_state()
        svc = state["kafka"]
        state["kafka"] = st._start("kafka", svc.argv, svc.port, env=st._tansu_env(), extra_ports=svc.extra_ports)
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
