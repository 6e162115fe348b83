"""Scheduling priority of the agent's helper threads: the detector first.

On a small edge box the detector's ONNX Runtime threads use every core. Each other thread of the agent (camera
decoding, tracking and publishing, the producer) wakes many times a second for a millisecond or two; when such a
wake-up preempts one of the detector's threads, the whole parallel operator waits for it (ORT's intra-op
threads work in lock-step), so a few percent of CPU elsewhere cost more than that in detector throughput.
Linux lets each thread lower its own priority (``nice`` is per thread there): the helper threads call
:func:`lower_this_thread` when they start, so the scheduler prefers the detector's threads when both are
runnable and runs the helpers in the gaps; they still get their share when the box is busy (nice 5 weighs about a
third of nice 0), so no camera falls behind its stream.

The level is process-wide (``pipeline.helper_threads_nice`` in the agent config, set by the agent at start):
0 leaves every thread at the process's priority. Elsewhere than Linux nothing changes.
"""

from __future__ import annotations

import os
import sys
import threading

from edgesight.log import get_logger

log = get_logger("priority")

_level = 0


def set_helper_nice(level: int) -> None:
    """How much nicer than the process the helper threads started from now on run (0..19)."""
    global _level
    if not 0 <= level <= 19:
        raise ValueError(f"helper thread nice level must be 0..19, got {level}")
    _level = level


def lower_this_thread() -> None:
    """Lower the calling thread's priority by the configured level (never raises: priority is an optimisation)."""
    if not _level or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        base = os.getpriority(os.PRIO_PROCESS, os.getpid())  # the main thread's: a helper started by a helper
        os.setpriority(os.PRIO_PROCESS, tid, min(19, base + _level))  # does not go lower still
    except OSError as e:
        log.debug("could not lower the thread's priority", extra={"error": str(e)})
