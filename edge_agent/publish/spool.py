"""Durable journal and store-and-forward spool of the edge agent (one directory per agent).

Design
======
Every record the pipeline hands to the publisher (detection event, keyframe,
heartbeat) is first appended to this journal; only then is it given to
librdkafka, and it is forgotten only when the broker has acknowledged it
(``acks=all``, idempotent producer). The journal *is* the spool: when the
broker is unreachable the window of records inside librdkafka stops draining,
the publisher stops handing records over, and everything newer simply stays
here, on disk, in arrival order, until the broker is back.

Format: append-only **segment files** ``seg-<base>.log`` (``base`` = logical
byte offset of the segment's first record, so a record's position is one
integer). Each record is framed as::

    u32 length | u32 crc32(seq + payload) | u64 seq | payload
    payload = u8 kind | i64 accept_ms | u16 key_len | u16 n_headers | key
              | n_headers x (u16 k_len | u32 v_len | k | v) | value

``seq`` increases by one per accepted record, across restarts.

Why segment files and not SQLite (WAL): measured here with
``python -m ops.bench.publish_bench --spool-only`` (552-byte event records, 2
noisy cores, three runs): framed segment appends 26k-105k records/s against
8k-21k/s for SQLite WAL inserts with ``synchronous=NORMAL`` at one transaction
per record (which "journaled before publish() returns" requires; batching
transactions would reopen the loss window) — 3.5-5x. Replay is a sequential
read (18k-122k/s incl. CRC check and acknowledgement bookkeeping), and deleting
acknowledged data is deleting a file, where SQLite needs DELETE + VACUUM or
grows forever. The price is torn-write handling, which the framing makes
simple (below).

Durability point
================
``append`` returns after the framed record was written with ``write(2)`` to
the active segment. From then on the record survives a SIGKILL (or a crash)
of the agent: the data is in the kernel's page cache. Survival of a *power
loss* is bounded by ``fsync``: ``interval`` (default) fdatasyncs at most every
``fsync_interval_ms`` (the window of records that can be lost on power loss),
``always`` fdatasyncs before ``append`` returns (slow), ``never`` leaves it to
the OS.

Acknowledgement and replay
==========================
A small ``checkpoint.json`` (atomically replaced every
``checkpoint_interval_ms``) holds ``acked_seq``: every record with
``seq <= acked_seq`` was acknowledged by the broker or dropped, plus the ranges
of dropped records above it. On open, every record above ``acked_seq`` that
is not a dropped one is pending again and is replayed in order. Records acked
out of order above the watermark (other partitions) are therefore re-sent
after a crash: at-least-once, and a re-sent record is byte-identical (same
deterministic ``event_id`` / ``keyframe_id``), so the warehouse dedups.

A segment file is deleted once every record in it is resolved (acked or
dropped) and the read cursor is past it.

Torn writes: after SIGKILL or power loss the tail of the last segment may hold
a partial frame. ``open`` validates the tail (length and CRC) and truncates
the file at the first bad frame, counting it (``torn_tail_truncations``); a
bad frame inside an older segment is counted as ``corrupt_records`` and the
rest of that segment is skipped. A torn record was never acknowledged to the
pipeline (``append`` had not returned), so nothing accepted is lost.

Bound: ``max_bytes`` caps unresolved data (pending + in flight). When an
append would exceed it, the OLDEST pending records (at the read cursor) are
dropped, counted (``dropped_total``, per kind) and logged — never silently (one
"spool full" line per ``DROP_LOG_INTERVAL_S`` with the counts since the last one, and one on close).
Records already inside librdkafka cannot be recalled, which is why the
in-flight window is validated to be at most a quarter of ``max_bytes``.
Disk use stays below ``max_bytes`` + about two segments + the segments that
still hold in-flight records.
"""

from __future__ import annotations

import bisect
import fcntl
import json
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgesight.files import PRIVATE_FILE_MODE, private_dir, restrict_tree
from edgesight.log import get_logger

from .settings import SpoolConfig

log = get_logger("publish.spool")

_HDR = struct.Struct("<IIQ")  # length of payload, crc32(seq + payload), seq
_SEQ = struct.Struct("<Q")
_REC = struct.Struct("<BqHH")  # kind, accept_ms, key_len, n_headers
_HKV = struct.Struct("<HI")  # header key len, header value len
_SEG_RE = re.compile(r"^seg-(\d{20})\.log$")
MAX_PAYLOAD = 512 * 1024 * 1024

KIND_EVENT, KIND_KEYFRAME, KIND_STATUS = 0, 1, 2
KIND_NAMES = {KIND_EVENT: "detections", KIND_KEYFRAME: "keyframes", KIND_STATUS: "status"}
# A full spool drops on (nearly) every append: one summary line per interval, with the counts since the last one
# (and once more on close), instead of one line per dropping append.
DROP_LOG_INTERVAL_S = 10.0


class SpoolError(RuntimeError):
    """The spool cannot be opened or written (locked by another process, disk full...)."""


@dataclass(slots=True)
class SpoolRecord:
    seq: int
    kind: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    accept_ms: int
    pos: int = 0  # logical position of the frame
    size: int = 0  # frame size (header + payload)


@dataclass
class SpoolStats:
    pending_records: int = 0
    pending_bytes: int = 0
    inflight_records: int = 0
    inflight_bytes: int = 0
    dropped_total: int = 0
    dropped_by_kind: dict[str, int] = field(default_factory=dict)
    replayed_total: int = 0
    torn_tail_truncations: int = 0
    corrupt_records: int = 0
    segments: int = 0
    disk_bytes: int = 0
    acked_seq: int = -1
    next_seq: int = 0

    @property
    def records(self) -> int:
        return self.pending_records + self.inflight_records

    @property
    def bytes(self) -> int:
        return self.pending_bytes + self.inflight_bytes


def encode_payload(
    kind: int, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes | str]] | None, accept_ms: int
) -> bytes:
    parts = []
    hdrs = headers or ()
    for hk, hv in hdrs:
        kb = hk.encode()
        vb = hv.encode() if isinstance(hv, str) else (hv or b"")
        parts.append(_HKV.pack(len(kb), len(vb)) + kb + vb)
    k = key or b""
    # key_len 0xFFFF marks "no key"
    return b"".join([_REC.pack(kind, accept_ms, len(k) if key is not None else 0xFFFF, len(hdrs)), k, *parts, value])


def decode_payload(seq: int, payload: bytes | memoryview) -> SpoolRecord:
    mv = memoryview(payload)
    kind, accept_ms, klen, nh = _REC.unpack_from(mv, 0)
    off = _REC.size
    key = None
    if klen != 0xFFFF:
        key = bytes(mv[off : off + klen])
        off += klen
    headers = []
    for _ in range(nh):
        hk, hv = _HKV.unpack_from(mv, off)
        off += _HKV.size
        k = bytes(mv[off : off + hk]).decode()
        off += hk
        headers.append((k, bytes(mv[off : off + hv])))
        off += hv
    return SpoolRecord(seq, kind, key, bytes(mv[off:]), headers, accept_ms)


def _frame_crc(seq: int, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(_SEQ.pack(seq)))


@dataclass
class _Segment:
    base: int
    path: Path
    size: int = 0
    fd: int = -1  # read fd (the active segment also has the writer fd)
    inflight: int = 0  # records of this segment handed out and not resolved

    @property
    def end(self) -> int:
        return self.base + self.size


class Spool:
    """Append-only journal with a read cursor, in-flight tracking, bound and checkpoint.

    Thread-safe: every public method takes the spool's lock. Typical use by a publisher::

        rec = spool.append(KIND_EVENT, key, value, headers)     # durable (see module doc)
        r = spool.take_if_next(rec) or spool.next_pending()     # in order; now "in flight"
        ... producer.produce(...) ...
        spool.resolve(r.seq)                                      # on delivery report success
        spool.requeue([r.seq])                                    # on a retriable failure
    """

    def __init__(
        self, settings: SpoolConfig, *, on_drop: Callable[[int, int], None] | None = None, name: str = "spool"
    ):
        self.settings = settings
        self.dir = Path(settings.dir)
        self.name = name
        self._on_drop = on_drop  # (kind, count) per dropped record batch
        self._lock = threading.RLock()
        self._segments: list[_Segment] = []
        self._wfd = -1
        self._lockfd = -1
        self._next_seq = 0
        self._end = 0  # logical end position
        self._cursor = 0  # logical position of the next pending record
        self._acked_seq = -1  # checkpointed watermark (all <= resolved)
        self._skip: list[list[int]] = []  # dropped seq ranges [a, b] above the watermark
        self._inflight: dict[int, tuple[int, int]] = {}  # seq -> (pos, size)
        self._retry: list[int] = []  # seqs in flight to be handed out again, sorted
        self._stats = SpoolStats()
        self._dirty_since_sync = False
        self._last_sync = time.monotonic()
        self._last_ckpt = 0.0
        self._ckpt_dirty = True
        self._drops_unlogged: dict[str, int] = {}  # dropped since the last "spool full" line, per kind
        self._drop_logged_at = float("-inf")
        self._opened = False

    # ---- open / recovery --------------------------------------------------------------
    def open(self) -> Spool:
        with self._lock:
            private_dir(self.dir)  # detections and keyframes: owner only (0700 / 0600)
            self._lockfd = os.open(self.dir / "LOCK", os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
            try:
                fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self._lockfd)
                self._lockfd = -1
                raise SpoolError(f"spool {self.dir} is in use by another process (LOCK held)") from None
            restrict_tree(self.dir)  # segments written by an older version were 0644
            ck = self._read_checkpoint()
            self._acked_seq = int(ck.get("acked_seq", -1))
            self._skip = [list(r) for r in ck.get("skip", []) if r[1] > self._acked_seq]
            self._stats.dropped_total = int(ck.get("dropped_total", 0))
            self._stats.dropped_by_kind = dict(ck.get("dropped_by_kind", {}))
            self._next_seq = int(ck.get("next_seq", 0))
            self._end = int(ck.get("end_pos", 0))
            self._recover()
            self._start_segment()
            self._gc_segments()
            self._opened = True
            self._write_checkpoint()
            s = self._stats
            log.info(
                "spool opened",
                extra={
                    "dir": str(self.dir),
                    "pending_records": s.pending_records,
                    "pending_bytes": s.pending_bytes,
                    "acked_seq": self._acked_seq,
                    "next_seq": self._next_seq,
                    "segments": len(self._segments),
                    "torn_tail_truncations": s.torn_tail_truncations,
                    "dropped_total": s.dropped_total,
                },
            )
            return self

    def _read_checkpoint(self) -> dict:
        p = self.dir / "checkpoint.json"
        try:
            return json.loads(p.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            # A lost checkpoint only means more re-sends (same ids), never loss.
            log.warning("spool checkpoint unreadable; replaying every record on disk", extra={"error": str(e)})
            return {}

    def _recover(self) -> None:
        files = sorted((int(m.group(1)), self.dir / n) for n in os.listdir(self.dir) if (m := _SEG_RE.match(n)))
        cursor = None
        for i, (base, path) in enumerate(files):
            last = i == len(files) - 1
            fd = os.open(path, os.O_RDWR)
            seg = _Segment(base, path, os.fstat(fd).st_size, fd)
            valid = self._scan_segment(seg, verify=last)
            if valid < seg.size:
                if last:
                    self._stats.torn_tail_truncations += 1
                    log.warning(
                        "torn write at the spool tail truncated (record never acknowledged)",
                        extra={"segment": path.name, "offset": valid, "bytes": seg.size - valid},
                    )
                    os.ftruncate(fd, valid)
                    os.fsync(fd)
                else:
                    self._stats.corrupt_records += 1
                    log.error(
                        "corrupt record in spool segment; rest of the segment skipped",
                        extra={"segment": path.name, "offset": valid},
                    )
                seg.size = valid
            if seg.size == 0 and not last:
                os.close(fd)
                path.unlink()
                continue
            self._segments.append(seg)
            self._end = max(self._end, seg.end)
        # The cursor: first record that is neither acked nor dropped.
        self._stats.pending_records = self._stats.pending_bytes = 0
        for seg in self._segments:
            for seq, pos, size in self._iter_frames(seg):
                self._next_seq = max(self._next_seq, seq + 1)
                if seq <= self._acked_seq or self._is_skipped(seq):
                    continue
                if cursor is None:
                    cursor = pos
                self._stats.pending_records += 1
                self._stats.pending_bytes += size
        self._cursor = cursor if cursor is not None else self._end
        self._gc_segments()

    def _scan_segment(self, seg: _Segment, verify: bool) -> int:
        """Length of the valid prefix of the segment (CRC-checked when ``verify``)."""
        off = 0
        while off + _HDR.size <= seg.size:
            ln, crc, seq = _HDR.unpack(os.pread(seg.fd, _HDR.size, off))
            if ln == 0 or ln > MAX_PAYLOAD or off + _HDR.size + ln > seg.size:
                return off
            if verify:
                payload = os.pread(seg.fd, ln, off + _HDR.size)
                if _frame_crc(seq, payload) != crc:
                    return off
            off += _HDR.size + ln
        return off

    def _iter_frames(self, seg: _Segment, start: int | None = None):
        off = 0 if start is None else start - seg.base
        while off + _HDR.size <= seg.size:
            ln, _crc, seq = _HDR.unpack(os.pread(seg.fd, _HDR.size, off))
            yield seq, seg.base + off, _HDR.size + ln
            off += _HDR.size + ln

    def _is_skipped(self, seq: int) -> bool:
        for a, b in self._skip:
            if a <= seq <= b:
                return True
        return False

    def _start_segment(self) -> None:
        if self._wfd >= 0:
            if self.settings.fsync != "never":
                os.fdatasync(self._wfd)  # a sealed segment is always on disk
            os.close(self._wfd)
        path = self.dir / f"seg-{self._end:020d}.log"
        wfd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE_MODE)
        rfd = os.open(path, os.O_RDONLY)
        if self._segments and self._segments[-1].base == self._end:  # empty last segment: reuse
            seg = self._segments[-1]
            os.close(seg.fd)
            seg.fd = rfd
        else:
            self._segments.append(_Segment(self._end, path, 0, rfd))
        self._wfd = wfd
        try:
            dfd = os.open(self.dir, os.O_RDONLY)
            os.fsync(dfd)
            os.close(dfd)
        except OSError:
            pass

    # ---- append -----------------------------------------------------------------------
    def append(
        self,
        kind: int,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes | str]] | None = None,
        accept_ms: int | None = None,
    ) -> SpoolRecord:
        """Journal one record (durable against SIGKILL when this returns); drops the oldest if over the bound."""
        accept_ms = int(time.time() * 1000) if accept_ms is None else accept_ms
        payload = encode_payload(kind, key, value, headers, accept_ms)
        if len(payload) > MAX_PAYLOAD:
            raise SpoolError(f"record of {len(payload)} bytes exceeds the spool's frame limit")
        with self._lock:
            if not self._opened:
                raise SpoolError("spool is not open")
            seq = self._next_seq
            frame = _HDR.pack(len(payload), _frame_crc(seq, payload), seq) + payload
            self._make_room(len(frame))
            seg = self._segments[-1]
            if seg.size and seg.size + len(frame) > self.settings.segment_bytes:
                self._start_segment()
                seg = self._segments[-1]
            mv = memoryview(frame)
            written = 0
            try:
                while written < len(frame):
                    written += os.write(self._wfd, mv[written:])
            except OSError as e:
                if written:
                    os.ftruncate(self._wfd, seg.size)
                raise SpoolError(f"cannot write to spool {self.dir}: {e}") from e
            pos = seg.end
            seg.size += len(frame)
            self._end += len(frame)
            self._next_seq += 1
            self._stats.pending_records += 1
            self._stats.pending_bytes += len(frame)
            self._dirty_since_sync = True
            if self.settings.fsync == "always":
                os.fdatasync(self._wfd)
                self._dirty_since_sync = False
            return SpoolRecord(
                seq,
                kind,
                key,
                value,
                [(k, v if isinstance(v, bytes) else v.encode()) for k, v in (headers or ())],
                accept_ms,
                pos,
                len(frame),
            )

    def _make_room(self, need: int) -> None:
        dropped: dict[int, int] = {}
        while self._stats.bytes + need > self.settings.max_bytes and self._stats.pending_records > 0:
            seg = self._segment_at(self._cursor)
            ln, _crc, seq = _HDR.unpack(os.pread(seg.fd, _HDR.size, self._cursor - seg.base))
            kind = os.pread(seg.fd, 1, self._cursor - seg.base + _HDR.size)[0]
            size = _HDR.size + ln
            self._advance_cursor(size)
            if self._is_skipped(seq) or seq <= self._acked_seq:
                continue
            self._stats.pending_records -= 1
            self._stats.pending_bytes -= size
            if self._skip and self._skip[-1][1] == seq - 1:
                self._skip[-1][1] = seq
            else:
                self._skip.append([seq, seq])
            dropped[kind] = dropped.get(kind, 0) + 1
        if dropped:
            self._stats.dropped_total += sum(dropped.values())
            for k, c in dropped.items():
                name = KIND_NAMES.get(k, str(k))
                self._stats.dropped_by_kind[name] = self._stats.dropped_by_kind.get(name, 0) + c
                self._drops_unlogged[name] = self._drops_unlogged.get(name, 0) + c
                if self._on_drop:
                    self._on_drop(k, c)
            self._ckpt_dirty = True
            if time.monotonic() - self._drop_logged_at >= DROP_LOG_INTERVAL_S:
                self._log_drops()
            self._gc_segments()

    def _log_drops(self) -> None:
        """One warning for what was dropped since the last one (counts per kind, the total so far)."""
        if not self._drops_unlogged:
            return
        log.warning(
            "spool full: oldest records dropped",
            extra={
                "dropped": sum(self._drops_unlogged.values()),
                "by_kind": dict(self._drops_unlogged),
                "dropped_total": self._stats.dropped_total,
                "limit_bytes": self.settings.max_bytes,
            },
        )
        self._drops_unlogged = {}
        self._drop_logged_at = time.monotonic()

    def _seg_index(self, pos: int) -> int:
        segs = self._segments
        if pos >= segs[-1].base:
            return len(segs) - 1
        return max(0, bisect.bisect_right([s.base for s in segs], pos) - 1)

    def _segment_at(self, pos: int) -> _Segment:
        return self._segments[self._seg_index(pos)]

    def _advance_cursor(self, size: int) -> None:
        """Move the cursor ``size`` bytes on; past a segment's end it jumps to the next segment's base."""
        self._cursor += size
        if self._cursor >= self._segments[-1].base:
            return
        while True:
            i = self._seg_index(self._cursor)
            if self._cursor >= self._segments[i].end and i + 1 < len(self._segments):
                self._cursor = max(self._cursor, self._segments[i + 1].base)
                if self._cursor == self._segments[i + 1].base:
                    continue
            break

    # ---- hand-out ---------------------------------------------------------------------
    def take_if_next(self, rec: SpoolRecord) -> SpoolRecord | None:
        """Fast path: hand out ``rec`` (just appended) if nothing older is pending."""
        with self._lock:
            if self._retry or self._cursor != rec.pos:
                return None
            self._take(rec.seq, rec.pos, rec.size)
            return rec

    def next_pending(self) -> SpoolRecord | None:
        """The oldest record to hand out (a requeued one first), read back from disk; now in flight."""
        with self._lock:
            if self._retry:
                seq = self._retry.pop(0)
                pos, size = self._inflight[seq]
                return self._read(seq, pos, size)
            while True:
                self._advance_cursor(0)
                seg = self._segment_at(self._cursor)
                off = self._cursor - seg.base
                if off >= seg.size:
                    return None
                ln, crc, seq = _HDR.unpack(os.pread(seg.fd, _HDR.size, off))
                size = _HDR.size + ln
                if seq <= self._acked_seq or self._is_skipped(seq):
                    self._advance_cursor(size)
                    continue
                payload = os.pread(seg.fd, ln, off + _HDR.size)
                if _frame_crc(seq, payload) != crc:
                    self._stats.corrupt_records += 1
                    self._stats.pending_records -= 1
                    self._stats.pending_bytes -= size
                    self._advance_cursor(size)
                    log.error("corrupt spool record skipped", extra={"seq": seq, "segment": seg.path.name})
                    continue
                pos = self._cursor
                self._take(seq, pos, size)
                self._stats.replayed_total += 1
                rec = decode_payload(seq, payload)
                rec.pos, rec.size = pos, size
                return rec
            return None

    def _take(self, seq: int, pos: int, size: int) -> None:
        self._advance_cursor(size)
        self._stats.pending_records -= 1
        self._stats.pending_bytes -= size
        self._stats.inflight_records += 1
        self._stats.inflight_bytes += size
        self._inflight[seq] = (pos, size)
        self._segment_at(pos).inflight += 1

    def _read(self, seq: int, pos: int, size: int) -> SpoolRecord:
        seg = self._segment_at(pos)
        payload = os.pread(seg.fd, size - _HDR.size, pos - seg.base + _HDR.size)
        self._stats.replayed_total += 1
        rec = decode_payload(seq, payload)
        rec.pos, rec.size = pos, size
        return rec

    # ---- resolution -------------------------------------------------------------------
    def resolve(self, seq: int) -> None:
        """The record was acknowledged by the broker (or failed for good): forget it."""
        with self._lock:
            ent = self._inflight.pop(seq, None)
            if ent is None:
                return
            pos, size = ent
            if seq in self._retry:
                self._retry.remove(seq)
            self._stats.inflight_records -= 1
            self._stats.inflight_bytes -= size
            seg = self._segment_at(pos)
            seg.inflight -= 1
            self._ckpt_dirty = True
            if seg.inflight == 0 and seg.end <= self._cursor and seg is not self._segments[-1]:
                self._gc_segments()

    def requeue(self, seqs: Iterable[int]) -> None:
        """Records handed out but not delivered (retriable error, producer restart): hand them out again, in order."""
        with self._lock:
            for s in seqs:
                if s in self._inflight and s not in self._retry:
                    bisect.insort(self._retry, s)

    def requeue_all(self) -> int:
        with self._lock:
            self._retry = sorted(self._inflight)
            return len(self._retry)

    def _watermark(self) -> int:
        cands = [self._next_seq]
        if self._inflight:
            cands.append(min(self._inflight))
        if self._stats.pending_records > 0 and self._cursor < self._end:
            seg = self._segment_at(self._cursor)
            if self._cursor - seg.base < seg.size:
                cands.append(_HDR.unpack(os.pread(seg.fd, _HDR.size, self._cursor - seg.base))[2])
        return min(cands) - 1

    def _gc_segments(self) -> None:
        keep = []
        for seg in self._segments:
            if seg is not self._segments[-1] and seg.inflight == 0 and seg.end <= self._cursor:
                os.close(seg.fd)
                try:
                    seg.path.unlink()
                except FileNotFoundError:
                    pass
                continue
            keep.append(seg)
        self._segments = keep

    # ---- sync / checkpoint ------------------------------------------------------------
    def maybe_sync(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self.settings.fsync != "interval" or not self._dirty_since_sync:
            return
        if (now - self._last_sync) * 1000 >= self.settings.fsync_interval_ms:
            self.sync()

    def sync(self) -> None:
        """fdatasync the active segment. The data sync runs outside the lock (on a dup of the
        descriptor), so appends are not held up by a slow disk."""
        with self._lock:
            if self._wfd < 0 or not self._dirty_since_sync or self.settings.fsync == "never":
                self._dirty_since_sync = False
                self._last_sync = time.monotonic()
                return
            fd = os.dup(self._wfd)
            self._dirty_since_sync = False
            self._last_sync = time.monotonic()
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def maybe_checkpoint(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self._ckpt_dirty and (now - self._last_ckpt) * 1000 >= self.settings.checkpoint_interval_ms:
            self.checkpoint()

    def checkpoint(self) -> None:
        with self._lock:
            self._write_checkpoint()
            self._gc_segments()

    def _write_checkpoint(self) -> None:
        w = self._watermark()
        self._acked_seq = max(self._acked_seq, w)
        self._skip = [r for r in self._skip if r[1] > self._acked_seq]
        doc = {
            "acked_seq": self._acked_seq,
            "skip": self._skip,
            "next_seq": self._next_seq,
            "end_pos": self._end,
            "dropped_total": self._stats.dropped_total,
            "dropped_by_kind": self._stats.dropped_by_kind,
            "written_at": time.time(),
        }
        tmp = self.dir / "checkpoint.json.tmp"
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE), "w") as fh:
            json.dump(doc, fh)
        os.replace(tmp, self.dir / "checkpoint.json")
        self._ckpt_dirty = False
        self._last_ckpt = time.monotonic()

    # ---- status -----------------------------------------------------------------------
    def stats(self) -> SpoolStats:
        with self._lock:
            s = SpoolStats(**{k: getattr(self._stats, k) for k in SpoolStats.__dataclass_fields__})
            s.dropped_by_kind = dict(self._stats.dropped_by_kind)
            s.segments = len(self._segments)
            s.disk_bytes = sum(seg.size for seg in self._segments)
            s.acked_seq = self._acked_seq
            s.next_seq = self._next_seq
            return s

    def close(self) -> None:
        with self._lock:
            if not self._opened:
                return
            self._log_drops()
            self.sync()
            self._write_checkpoint()
            for seg in self._segments:
                if seg.fd >= 0:
                    os.close(seg.fd)
                    seg.fd = -1
            if self._wfd >= 0:
                os.close(self._wfd)
                self._wfd = -1
            self._segments = []
            self._inflight.clear()
            self._retry.clear()
            self._opened = False
            if self._lockfd >= 0:
                fcntl.flock(self._lockfd, fcntl.LOCK_UN)
                os.close(self._lockfd)
                self._lockfd = -1

    def __enter__(self) -> Spool:
        return self.open() if not self._opened else self

    def __exit__(self, *exc) -> None:
        self.close()
