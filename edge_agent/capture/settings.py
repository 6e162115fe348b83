"""Configuration of one camera (``cameras:`` list in the edge agent's YAML).

Example::

    cameras:
      - id: gate-1
        url: rtsp://user:${CAM_PW}@10.0.0.12:554/stream1
        transport: tcp
        target_fps: 5
        max_width: 1280
        roi: [0.0, 0.25, 1.0, 0.75]     # normalised x, y, w, h
        motion: {enabled: true, min_area: 0.002}
        watchdog: {stall_timeout_s: 5}
        backoff: {initial_s: 1, max_s: 30, jitter: 0.2}   # retries forever, at most 30 s apart
      - id: lobby
        url: /data/lobby.mp4
        loop: true

The kind of source is derived from ``url`` (see :attr:`CameraConfig.kind`).
"""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from edgesight.config import StrictModel, check_url_port

SourceKind = Literal["rtsp", "http", "file", "usb", "folder"]

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_USB_RE = re.compile(r"^(usb:(\d+)|/dev/video(\d+))$")
_SCHEME_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class MotionConfig(StrictModel):
    """Motion gating: tell the pipeline to skip inference while the scene is static."""

    enabled: bool = False
    # Fraction (0..1] of the (downscaled) frame that must change to count as motion.
    min_area: float = Field(0.003, gt=0.0, le=1.0)
    # Per-pixel grey-level difference that counts as "changed".
    pixel_threshold: int = Field(25, ge=1, le=255)
    # Width the frame is downscaled to before comparing (cheap, denoising).
    analysis_width: int = Field(160, ge=32, le=1920)
    # Keep delivering this long after the last motion (objects slowing to a stop).
    hold_s: float = Field(1.0, ge=0.0)
    # Deliver one frame this often even when static (liveness for the pipeline; 0 = never).
    heartbeat_s: float = Field(5.0, ge=0.0)
    # Background adaptation rate (cv2.accumulateWeighted alpha).
    learning_rate: float = Field(0.05, gt=0.0, le=1.0)


class WatchdogConfig(StrictModel):
    # No frame for this long while streaming -> the stream is declared stalled and reconnected.
    stall_timeout_s: float = Field(5.0, gt=0.0)
    # Timeouts handed to the decoder (FFmpeg interrupt callback) so no call blocks forever.
    open_timeout_s: float = Field(10.0, gt=0.0)
    read_timeout_s: float = Field(5.0, gt=0.0)


BACKOFF_MAX_S = 3600.0  # no reconnect delay is longer than this: a returning camera is picked up within it
BACKOFF_MAX_MULTIPLIER = 10.0
_BACKOFF_MAX_EXPONENT = 64  # multiplier**64 stays finite (<= 1e64); the cap max_s is reached long before


class BackoffConfig(StrictModel):
    initial_s: float = Field(0.5, gt=0.0, le=BACKOFF_MAX_S)
    max_s: float = Field(30.0, gt=0.0, le=BACKOFF_MAX_S)
    multiplier: float = Field(2.0, ge=1.0, le=BACKOFF_MAX_MULTIPLIER)
    # Each delay is multiplied by a random factor in [1 - jitter, 1 + jitter].
    jitter: float = Field(0.2, ge=0.0, lt=1.0)
    # Consecutive failed attempts (open failures / streams that die before delivering a
    # frame) before the camera is marked ``failed``. None (the default) = retry forever, at
    # most ``max_s`` (x jitter) apart: a camera that is down for hours comes back by itself.
    max_retries: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _order(self) -> BackoffConfig:
        if self.max_s < self.initial_s:
            raise ValueError(f"backoff.max_s ({self.max_s}) must be >= backoff.initial_s ({self.initial_s})")
        return self

    def _base(self, attempt: int) -> float:
        # the exponent is capped: retrying forever must never overflow a float
        return min(self.max_s, self.initial_s * self.multiplier ** min(max(0, attempt - 1), _BACKOFF_MAX_EXPONENT))

    def delay(self, attempt: int, rand: float) -> float:
        """Delay before retry number ``attempt`` (1-based); ``rand`` uniform in [0, 1)."""
        return max(0.0, self._base(attempt) * (1.0 + self.jitter * (2.0 * rand - 1.0)))

    def bound(self, attempt: int) -> float:
        """Upper bound of :meth:`delay` for ``attempt``."""
        return self._base(attempt) * (1.0 + self.jitter)


class CameraConfig(StrictModel):
    id: str
    # rtsp://..., http(s)://... (MJPEG or any FFmpeg-readable stream), a video file path,
    # usb:N or /dev/videoN, or a folder of images.
    url: str = Field(alias="source")
    transport: Literal["tcp", "udp"] = "tcp"
    loop: bool = False
    enabled: bool = True
    # Deliver at most this many frames per second (others are skipped). None = every frame.
    target_fps: float | None = Field(None, gt=0.0, le=240.0)
    # Frame rate used to pace image folders and files whose container has no rate.
    source_fps: float | None = Field(None, gt=0.0, le=240.0)
    # Pace files at their native rate (like a camera). False = as fast as decoding allows.
    realtime: bool = True
    max_width: int | None = Field(None, ge=16)
    max_height: int | None = Field(None, ge=16)
    # Region of interest x, y, w, h: all values in [0, 1] = fractions of the frame,
    # otherwise integer pixels. Applied before the resolution cap.
    roi: tuple[float, float, float, float] | None = None
    motion: MotionConfig = Field(default_factory=MotionConfig)
    watchdog: WatchdogConfig = Field(default_factory=WatchdogConfig)
    backoff: BackoffConfig = Field(default_factory=BackoffConfig)
    # Extra FFmpeg demuxer options (key -> value), e.g. {"analyzeduration": "2000000"}.
    ffmpeg_options: dict[str, str] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _check_id(cls, v: str) -> str:
        if not _ID_RE.match(v):
            raise ValueError(
                "camera id must be 1-64 characters of letters, digits, '_', '-', '.', ':' "
                "and start with a letter or digit"
            )
        return v

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("camera url/source is empty")
        m = _SCHEME_RE.match(v)
        if m and m.group(1).lower() not in ("rtsp", "rtsps", "http", "https", "file"):
            raise ValueError(
                f"unsupported URL scheme {m.group(1)!r}: use rtsp://, http(s)://, a file path, "
                "usb:N, /dev/videoN or an image folder"
            )
        if v.startswith("usb:") and not _USB_RE.match(v):
            raise ValueError("USB camera must be written usb:N with N a device index, e.g. usb:0")
        if m and m.group(1).lower() != "file":
            check_url_port(v, "camera url")
        return v

    @field_validator("ffmpeg_options")
    @classmethod
    def _check_opts(cls, v: dict[str, str]) -> dict[str, str]:
        for k, val in v.items():
            if any(c in str(k) + str(val) for c in ";|"):
                raise ValueError(f"ffmpeg option {k!r}: ';' and '|' are not allowed in keys or values")
        return v

    @field_validator("roi")
    @classmethod
    def _check_roi(cls, v):
        if v is None:
            return v
        x, y, w, h = v
        if min(v) < 0:
            raise ValueError(f"roi values must be >= 0 (got {v})")
        if w <= 0 or h <= 0:
            raise ValueError(f"roi width and height must be > 0 (got w={w}, h={h})")
        if max(v) <= 1.0:
            if x + w > 1.0 + 1e-9 or y + h > 1.0 + 1e-9:
                raise ValueError(f"normalised roi must lie inside the frame: x+w and y+h <= 1 (got {v})")
        elif any(float(c) != int(c) for c in v):
            raise ValueError(f"roi is either all fractions in [0, 1] or all integer pixels (got {v})")
        return v

    @model_validator(mode="after")
    def _cross(self) -> CameraConfig:
        kind = self.kind
        if self.transport == "udp" and kind != "rtsp":
            raise ValueError(f"transport 'udp' only applies to rtsp:// sources (this source is {kind})")
        if self.loop and kind not in ("file", "folder"):
            raise ValueError(f"loop only applies to files and image folders (this source is {kind})")
        return self

    @property
    def kind(self) -> SourceKind:
        u = self.url
        low = u.lower()
        if low.startswith(("rtsp://", "rtsps://")):
            return "rtsp"
        if low.startswith(("http://", "https://")):
            return "http"
        if _USB_RE.match(u):
            return "usb"
        path = u[7:] if low.startswith("file://") else u
        if os.path.isdir(path):
            return "folder"
        return "file"

    @property
    def is_live(self) -> bool:
        return self.kind in ("rtsp", "http", "usb")

    @property
    def path(self) -> str:
        return self.url[7:] if self.url.lower().startswith("file://") else self.url

    @property
    def usb_index(self) -> int:
        m = _USB_RE.match(self.url)
        if not m:
            raise ValueError(f"{self.url!r} is not a USB camera")
        return int(m.group(2) or m.group(3))

    def roi_pixels(self, width: int, height: int) -> tuple[int, int, int, int] | None:
        """ROI as clipped integer pixels for a ``width`` x ``height`` frame (None = whole frame)."""
        if self.roi is None:
            return None
        x, y, w, h = self.roi
        if max(self.roi) <= 1.0:
            x, y, w, h = x * width, y * height, w * width, h * height
        x0 = int(round(min(max(x, 0), width - 1)))
        y0 = int(round(min(max(y, 0), height - 1)))
        x1 = int(round(min(x + w, width)))
        y1 = int(round(min(y + h, height)))
        if x1 <= x0 or y1 <= y0:
            return None
        return x0, y0, x1 - x0, y1 - y0
