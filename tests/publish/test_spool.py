"""The on-disk journal by itself: order, acknowledgement, restart, torn tails, corruption, bounds."""

from __future__ import annotations

import os

import pytest

from edge_agent.publish import Spool, SpoolConfig, SpoolError
from edge_agent.publish.spool import KIND_EVENT, KIND_KEYFRAME


def _settings(path, **kw) -> SpoolConfig:
    return SpoolConfig(dir=path, **{"max_bytes": 4 * 1024**2, "segment_bytes": 64 * 1024, **kw})


def _drain(sp: Spool) -> list:
    out = []
    while (r := sp.next_pending()) is not None:
        out.append(r)
    return out


def test_replay_in_order_after_restart_only_unacked(tmp_path):
    sp = Spool(_settings(tmp_path)).open()
    for i in range(1000):
        sp.append(KIND_EVENT, f"cam-{i % 3}".encode(), f"v{i}".encode() * 20, [("h", b"x")] if i % 7 == 0 else None)
    recs = _drain(sp)
    assert [r.value for r in recs] == [f"v{i}".encode() * 20 for i in range(1000)]
    for r in recs[:600]:
        sp.resolve(r.seq)
    sp.resolve(recs[700].seq)  # acked out of order: may be re-sent, never lost
    sp.close()  # (no checkpoint call needed: close writes one)

    sp = Spool(_settings(tmp_path)).open()
    st = sp.stats()
    again = _drain(sp)
    seqs = [r.seq for r in again]
    assert seqs == sorted(seqs) and seqs[0] == recs[600].seq and seqs[-1] == recs[-1].seq
    assert set(seqs) >= {r.seq for r in recs[600:]} - {recs[700].seq}
    assert again[0].value == recs[600].value and again[0].key == recs[600].key
    assert st.pending_records == len(again)
    # appends continue the sequence
    assert sp.append(KIND_EVENT, b"k", b"new").seq == recs[-1].seq + 1
    sp.close()


def test_acknowledged_segments_are_deleted(tmp_path):
    sp = Spool(_settings(tmp_path)).open()
    for _i in range(3000):
        sp.append(KIND_EVENT, b"k", b"x" * 200)
    assert sp.stats().segments > 5
    for r in _drain(sp):
        sp.resolve(r.seq)
    sp.checkpoint()
    st = sp.stats()
    assert st.segments == 1 and st.records == 0
    assert len([f for f in os.listdir(tmp_path) if f.startswith("seg-")]) == 1
    sp.close()
    sp = Spool(_settings(tmp_path)).open()
    assert sp.stats().pending_records == 0 and _drain(sp) == []
    sp.close()


def test_torn_tail_is_truncated_and_counted(tmp_path):
    sp = Spool(_settings(tmp_path)).open()
    for i in range(10):
        sp.append(KIND_KEYFRAME, b"obj", bytes([i]) * 1000, [("schema", b"edgesight.keyframe/1")])
    sp.close()
    seg = max(p for p in tmp_path.iterdir() if p.name.startswith("seg-") and p.stat().st_size)
    size = seg.stat().st_size
    with open(seg, "r+b") as fh:  # a write cut short by SIGKILL / power loss
        fh.truncate(size - 300)
    sp = Spool(_settings(tmp_path)).open()
    st = sp.stats()
    assert st.torn_tail_truncations == 1
    recs = _drain(sp)
    assert [r.value for r in recs] == [bytes([i]) * 1000 for i in range(9)]
    sp.close()


def test_corrupt_record_is_detected_not_sent(tmp_path):
    sp = Spool(_settings(tmp_path)).open()
    for i in range(5):
        sp.append(KIND_EVENT, b"k", f"value-{i}".encode() * 10)
    sp.close()
    seg = max(p for p in tmp_path.iterdir() if p.name.startswith("seg-") and p.stat().st_size)
    data = bytearray(seg.read_bytes())
    data[-5] ^= 0xFF  # flip bits in the last record's payload
    seg.write_bytes(bytes(data))
    sp = Spool(_settings(tmp_path)).open()
    recs = _drain(sp)
    assert [r.value for r in recs] == [f"value-{i}".encode() * 10 for i in range(4)]
    assert sp.stats().torn_tail_truncations == 1
    sp.close()


def test_bound_drops_oldest_pending_exactly(tmp_path):
    sp = Spool(_settings(tmp_path, max_bytes=1024**2, segment_bytes=64 * 1024)).open()
    for _ in range(5):  # 5 records handed out (in flight): never dropped
        sp.append(KIND_EVENT, b"k", b"a" * 1000)
    inflight = _drain(sp)
    n = 3000
    for i in range(n):
        sp.append(KIND_EVENT, b"k", i.to_bytes(4, "big") + b"b" * 996)
    st = sp.stats()
    frame = inflight[0].size
    assert st.bytes <= 1024**2
    assert st.dropped_total == n + 5 - st.records
    assert st.records == (1024**2) // frame
    rest = _drain(sp)
    first_kept = int.from_bytes(rest[0].value[:4], "big")
    assert first_kept == st.dropped_total  # exactly the oldest ones went
    assert [int.from_bytes(r.value[:4], "big") for r in rest] == list(range(first_kept, n))
    sp.close()
    sp = Spool(_settings(tmp_path, max_bytes=1024**2, segment_bytes=64 * 1024)).open()
    assert sp.stats().dropped_total == st.dropped_total  # persisted
    got = _drain(sp)  # dropped ones stay dropped after a restart
    assert len(got) == 5 + len(rest)
    sp.close()


def test_one_process_per_spool(tmp_path):
    a = Spool(_settings(tmp_path)).open()
    with pytest.raises(SpoolError, match="in use"):
        Spool(_settings(tmp_path)).open()
    a.close()
    Spool(_settings(tmp_path)).open().close()


def test_full_spool_logs_a_summary_not_a_line_per_drop(tmp_path, caplog):
    """A full spool drops on nearly every append; the log carries one summary per interval (and one on close)
    whose counts add up to exactly what was dropped."""
    import logging

    caplog.set_level(logging.WARNING, logger="edgesight.publish.spool")
    sp = Spool(_settings(tmp_path, max_bytes=1024**2, segment_bytes=64 * 1024)).open()
    for i in range(3000):
        sp.append(KIND_EVENT if i % 3 else KIND_KEYFRAME, b"k", b"x" * 1000)
    st = sp.stats()
    dropped = st.dropped_total
    sp.close()
    lines = [r for r in caplog.records if r.getMessage().startswith("spool full: oldest records dropped")]
    assert dropped > 1000
    assert 1 <= len(lines) <= 3  # the first drop, maybe one more interval on a slow machine, the close
    assert sum(r.dropped for r in lines) == dropped
    by_kind: dict[str, int] = {}
    for r in lines:
        for k, c in r.by_kind.items():
            by_kind[k] = by_kind.get(k, 0) + c
    assert by_kind == st.dropped_by_kind and set(by_kind) == {"detections", "keyframes"}
    assert lines[-1].dropped_total == dropped
