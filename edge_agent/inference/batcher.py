"""Cross-camera batching: up to B frames or T ms (whichever first) -> one model run.

Each camera thread calls :meth:`Batcher.submit` (returns a Future) or
:meth:`Batcher.infer` (blocks). One worker thread takes the first waiting frame,
then keeps collecting until ``max_size`` frames are there or ``max_wait_ms`` have
passed since that first frame, runs a single batched inference and resolves
each frame's future with its own :class:`~edge_agent.detections.Detections`.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Protocol

import numpy as np

from edge_agent.detections import Detections
from edgesight.log import get_logger

log = get_logger("inference.batcher")


class _Detector(Protocol):
    def infer(self, frames: Sequence[np.ndarray]) -> list[Detections]: ...


_STOP = object()


class Batcher:
    def __init__(self, engine: _Detector, max_size: int = 4, max_wait_ms: float = 10.0, name: str = "batcher"):
        if max_size < 1:
            raise ValueError("max_size must be >= 1")
        self.engine = engine
        self.max_size = max_size
        self.max_wait = max_wait_ms / 1000.0
        self._q: queue.Queue = queue.Queue()
        self._closed = False
        self.batches_run = 0
        self.batch_sizes: list[int] = []  # last 1000 sizes, for diagnostics/tests
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @classmethod
    def from_config(cls, engine, config) -> Batcher:
        return cls(engine, config.batch_max_size, config.batch_max_wait_ms)

    def submit(self, frame: np.ndarray, camera: str | None = None) -> Future[Detections]:
        if self._closed:
            raise RuntimeError("batcher is closed")
        fut: Future = Future()
        self._q.put((frame, camera, fut))
        return fut

    def infer(self, frame: np.ndarray, camera: str | None = None, timeout: float | None = 30.0) -> Detections:
        return self.submit(frame, camera).result(timeout)

    def _loop(self) -> None:
        while True:
            item = self._q.get()
            if item is _STOP:
                return
            items = [item]
            deadline = time.monotonic() + self.max_wait
            stop = False
            while len(items) < self.max_size:
                left = deadline - time.monotonic()
                try:
                    nxt = self._q.get(timeout=left) if left > 0 else self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                items.append(nxt)
            self._run(items)
            if stop:
                return

    def _run(self, items: list) -> None:
        live = [it for it in items if it[2].set_running_or_notify_cancel()]
        if not live:
            return
        try:
            dets = self.engine.infer([it[0] for it in live])
        except BaseException as e:  # noqa: BLE001 - hand the error to every waiting camera
            log.error("batched inference failed", extra={"frames": len(live), "error": repr(e)})
            for it in live:
                it[2].set_exception(e)
            return
        self.batches_run += 1
        self.batch_sizes.append(len(live))
        del self.batch_sizes[:-1000]
        for it, d in zip(live, dets):
            it[2].set_result(d)

    def close(self, timeout: float = 10.0) -> None:
        """Finish frames already submitted, then stop the worker."""
        if self._closed:
            return
        self._closed = True
        self._q.put(_STOP)
        self._thread.join(timeout)

    def __enter__(self) -> Batcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
