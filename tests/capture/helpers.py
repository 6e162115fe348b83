"""Small helpers shared by the capture tests (real frames, real threads)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

from edge_agent.capture import CameraState, Supervisor


def wait_for(pred, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return bool(pred())


def wait_state(sup: Supervisor, cam: str, states, timeout: float) -> bool:
    if isinstance(states, CameraState):
        states = (states,)
    return wait_for(lambda: sup.status()[cam].state in states, timeout)


class Consumer(threading.Thread):
    """Pulls frames with ``wait_any`` like the pipeline does; records (camera, seq, taken_at, age)."""

    def __init__(self, sup: Supervisor, delay: float = 0.0):
        super().__init__(daemon=True)
        self.sup = sup
        self.delay = delay
        self.records: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
        self.lock = threading.Lock()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            frames = self.sup.wait_any(timeout=0.2)
            now = time.monotonic()
            with self.lock:
                for f in frames:
                    self.records[f.camera_id].append((f.seq, now, now - f.mono))
            if frames and self.delay:
                time.sleep(self.delay)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def count(self, cam: str, t0: float, t1: float) -> int:
        with self.lock:
            return sum(1 for _s, t, _a in self.records[cam] if t0 <= t < t1)

    def fps(self, cam: str, t0: float, t1: float) -> float:
        return self.count(cam, t0, t1) / max(1e-6, t1 - t0)

    def seqs(self, cam: str) -> list[int]:
        with self.lock:
            return [s for s, _t, _a in self.records[cam]]
