"""Where the CPU goes during a benchmark: per thread of this process and per other process, from ``/proc``.

    with CpuAccount(others={"tansu": pid, ...}) as acct:
        ...                                   # the measured run
    acct.cores()   # {"pipeline-infer": 0.61, "capture": 0.08, ..., "server:tansu": 0.05, "idle": 0.2}

Each figure is CPU time (user + system) over the wall time of the block, in cores (1.0 = one core busy all the
time). Threads of this process are named by their Python thread name (``threading.Thread.native_id``; capture
workers fold into ``capture``), else by the OS name librdkafka and other native pools give them (``rdk:*`` fold
into ``librdkafka``); ONNX Runtime's pool threads have no name of their own (they carry the process name) and
are reported as ``native pool (onnxruntime)``. Threads that ended during the block are not counted (their time
is gone from ``/proc``), so every sampled thread should outlive the block. ``idle`` is what is left of the
machine's cores.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(path: Path) -> tuple[str, float] | None:
    """``(comm, cpu seconds)`` of a /proc stat file; None if it is gone."""
    try:
        raw = path.read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return comm, (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def _group(name: str, comm: str) -> str:
    if name:
        if name.startswith("capture-"):
            return "capture"
        return name.split("-")[0] if name.startswith(("publish-", "control-")) else name
    if comm.startswith("rdk:"):
        return "librdkafka"
    return "native pool (onnxruntime)" if comm.startswith("python") else f"native:{comm}"


class CpuAccount:
    """CPU time per thread group of this process and per process in ``others`` (name -> pid) over a block."""

    def __init__(self, others: dict[str, int] | None = None):
        self.others = dict(others or {})
        self._t0: dict[str, float] = {}
        self._t1: dict[str, float] = {}
        self._names: dict[int, str] = {}
        self.wall = 0.0

    def _sample(self) -> dict[str, float]:
        names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
        self._names.update(names)
        out: dict[str, float] = {}
        for task in Path("/proc/self/task").iterdir():
            st = _stat(task / "stat")
            if st is not None:
                key = f"{task.name}|{_group(self._names.get(int(task.name), ''), st[0])}"
                out[key] = st[1]
        for label, pid in self.others.items():
            total = 0.0
            for task in Path(f"/proc/{pid}/task").glob("*"):
                st = _stat(task / "stat")
                total += st[1] if st else 0.0
            for child in _children(pid):  # e.g. a server that forks its workers
                st = _stat(Path(f"/proc/{child}/stat"))
                total += st[1] if st else 0.0
            out[f"server:{label}"] = total
        return out

    def __enter__(self) -> CpuAccount:
        self._w0 = time.perf_counter()
        self._t0 = self._sample()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._t1 = self._sample()
        self.wall = time.perf_counter() - self._w0

    def cores(self) -> dict[str, float]:
        """CPU per group, in cores over the block, largest first, and ``idle`` (the rest of the machine)."""
        per: dict[str, float] = {}
        for key, end in self._t1.items():
            start = self._t0.get(key)
            if start is None:  # a thread born during the block: all its time is in the block
                start = 0.0
            group = key.split("|", 1)[1] if "|" in key else key
            per[group] = per.get(group, 0.0) + max(0.0, end - start) / self.wall
        busy = sum(per.values())
        out = dict(sorted(((k, round(v, 3)) for k, v in per.items() if v >= 0.0005), key=lambda kv: -kv[1]))
        out["idle"] = round(max(0.0, (os.cpu_count() or 1) - busy), 3)
        return out


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]
