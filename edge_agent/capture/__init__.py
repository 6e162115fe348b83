"""Edge capture service: one worker thread per camera, a supervisor with a watchdog,
latest-frame-wins hand-off, optional motion gating. See :mod:`.supervisor`.

Names are imported on first use, so ``from edge_agent.capture.settings import ...``
does not load cv2."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_agent._lazy import lazy_exports

if TYPE_CHECKING:
    from .motion import MotionGate, MotionResult
    from .settings import BackoffConfig, CameraConfig, MotionConfig, WatchdogConfig
    from .sources import Source, SourceError, open_source
    from .supervisor import CaptureStatus, Supervisor
    from .worker import CameraState, CaptureWorker, Frame, HandoffSlot

__all__ = [
    "BackoffConfig",
    "CameraConfig",
    "CameraState",
    "CaptureStatus",
    "CaptureWorker",
    "Frame",
    "HandoffSlot",
    "MotionGate",
    "MotionResult",
    "MotionConfig",
    "Source",
    "SourceError",
    "Supervisor",
    "WatchdogConfig",
    "open_source",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "MotionGate": ".motion",
        "MotionResult": ".motion",
        "BackoffConfig": ".settings",
        "CameraConfig": ".settings",
        "MotionConfig": ".settings",
        "WatchdogConfig": ".settings",
        "Source": ".sources",
        "SourceError": ".sources",
        "open_source": ".sources",
        "CaptureStatus": ".supervisor",
        "Supervisor": ".supervisor",
        "CameraState": ".worker",
        "CaptureWorker": ".worker",
        "Frame": ".worker",
        "HandoffSlot": ".worker",
    },
)
