"""ops.bench.cpu: CPU time per thread group (by Python thread name) and per other process, from /proc."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from ops.bench.cpu import CpuAccount


def _spin(stop: threading.Event) -> None:
    x = 0
    while not stop.is_set():
        x += 1


def test_a_busy_thread_and_a_busy_process_are_where_the_cpu_went() -> None:
    stop = threading.Event()
    t = threading.Thread(target=_spin, args=(stop,), name="spinner")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    t.start()
    try:
        time.sleep(0.2)  # both running before the window opens
        with CpuAccount({"burner": busy.pid}) as acct:
            time.sleep(1.5)
    finally:
        stop.set()
        t.join()
        busy.kill()
        busy.wait()
    cores = acct.cores()
    # Two busy threads on this machine: each got a good share of a core (the GIL is not held across processes).
    assert cores["server:burner"] > 0.3, cores
    assert cores["spinner"] > 0.2, cores
    assert cores.get("MainThread", 0.0) < 0.2, cores  # it slept through the window
    assert "idle" in cores and cores["idle"] >= 0.0
    assert list(cores)[:2] == sorted(list(cores)[:2], key=lambda k: -cores[k])  # largest first
