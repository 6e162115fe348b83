"""SIGKILL of the publishing process: the spool replays on restart, nothing accepted is lost,
and the only duplicates are byte-identical re-sends (same event id)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from edge_agent.publish import edge_topic_specs
from edgesight.kafka import KafkaConfig, ensure_topics
from ops.testing.clients import kafka_link
from ops.testing.publish import event_stream

from .conftest import publish_config
from .helpers import first_occurrences, read_topic

SCRIPT = Path(__file__).with_name("publisher_proc.py")
AGENT = "agent-k"
CAMERAS = 4


def _lines(path: Path) -> list[str]:
    try:
        return [ln for ln in path.read_text().splitlines() if len(ln) == 32]
    except FileNotFoundError:
        return []


def _start(mode: str, kafka: KafkaConfig, prefix: str, spool: Path, ids: Path | None = None, **kw) -> subprocess.Popen:
    argv = [
        sys.executable,
        str(SCRIPT),
        mode,
        "--kafka",
        json.dumps(kafka_link(kafka), default=str),
        "--prefix",
        prefix,
        "--spool",
        str(spool),
        "--agent",
        AGENT,
        "--cameras",
        str(CAMERAS),
    ]
    if ids:
        argv += ["--ids-file", str(ids)]
    for k, v in kw.items():
        argv += [f"--{k}", str(v)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_after(proc: subprocess.Popen, ids: Path, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(_lines(ids)) < n:
        assert proc.poll() is None, f"publisher exited early: {proc.communicate()}"
        assert time.monotonic() < deadline, "publisher too slow"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL


def _drain(kafka: KafkaConfig, prefix: str, spool: Path) -> dict:
    p = _start("drain", kafka, prefix, spool, timeout=150)
    out, err = p.communicate(timeout=200)
    assert p.returncode == 0, f"drain failed: {out}\n{err[-3000:]}"
    return json.loads(out.strip().splitlines()[-1])


def _check(kafka: KafkaConfig, topic: str, written: list[str]) -> dict:
    """Everything in ``written`` arrived; distinct ids form a prefix of the deterministic stream
    (accepted = the file, or one more killed between publish() and the id write); duplicates are
    byte-identical; per camera the first occurrences are in order."""
    recs = read_topic(kafka, topic, expect=len(written))
    first, order, dups = first_occurrences(recs)
    assert set(written) <= set(first), f"{len(set(written) - set(first))} accepted events lost"
    k = len(first)
    assert len(written) <= k <= len(written) + 1
    stream = [e.event_id for e in event_stream(AGENT, CAMERAS, k)]
    assert set(first) == set(stream)  # count distinct ids == accepted, and they are the right ones
    for cam, seqs in order.items():
        assert seqs == sorted(seqs), f"{cam}: out of order"
    return {"records": len(recs), "distinct": k, "duplicates": dups}


def test_sigkill_with_broker_down_then_replay(broker, tmp_path):
    st = broker.stack
    prefix = f"k{uuid.uuid4().hex[:8]}"
    spool, ids = tmp_path / "spool", tmp_path / "ids.txt"
    pc = publish_config(st.config.kafka, prefix, spool)
    ensure_topics(pc.kafka.client_config(), edge_topic_specs(pc, partitions=3))
    broker.stop()
    proc = _start("publish", st.config.kafka, prefix, spool, ids)
    _kill_after(proc, ids, 3000)
    written = _lines(ids)
    assert (spool / "checkpoint.json").exists()
    broker.start()
    res = _drain(st.config.kafka, prefix, spool)
    assert res["stats"]["spool"]["replayed"] >= len(written)
    out = _check(st.config.kafka, f"{prefix}.detections.v1", written)
    assert out["duplicates"] == 0  # the broker never acknowledged anything: nothing to re-send twice


def test_sigkill_while_delivering_then_replay(broker, tmp_path):
    st = broker.stack
    prefix = f"k{uuid.uuid4().hex[:8]}"
    spool, ids = tmp_path / "spool", tmp_path / "ids.txt"
    pc = publish_config(st.config.kafka, prefix, spool)
    ensure_topics(pc.kafka.client_config(), edge_topic_specs(pc, partitions=3))
    proc = _start("publish", st.config.kafka, prefix, spool, ids)
    _kill_after(proc, ids, 6000)
    written = _lines(ids)
    _drain(st.config.kafka, prefix, spool)
    _check(st.config.kafka, f"{prefix}.detections.v1", written)
