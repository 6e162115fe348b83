"""Multi-object tracking, polygon zones and counting lines for one camera at a time.

Pipeline per frame::

    tracked = tracker.update(detections, timestamp)        # ByteTracker
    zr = zones.update(tracked, timestamp)                   # CameraZones: membership, enter/exit, crossings
    records = events.update(tracked, zr, tracker.ended, timestamp)   # EventBuilder -> ObjectUpdate list
"""

from .settings import CameraTrackingConfig, LineConfig, TrackerConfig, ZoneConfig

__all__ = ["CameraTrackingConfig", "LineConfig", "TrackerConfig", "ZoneConfig"]
