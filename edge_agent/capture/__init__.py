"""Edge capture service: one worker thread per camera, a supervisor with a watchdog,
latest-frame-wins hand-off, optional motion gating. See :mod:`.supervisor`."""

from .motion import MotionGate, MotionResult
from .settings import BackoffConfig, CameraConfig, MotionConfig, WatchdogConfig
from .sources import Source, SourceError, open_source
from .supervisor import CameraStatus, Supervisor
from .worker import CameraState, CaptureWorker, Frame, HandoffSlot

__all__ = [
    "BackoffConfig",
    "CameraConfig",
    "CameraState",
    "CameraStatus",
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
