"""The ``control`` section of the agent config (settings only: no MQTT client is imported).

``allowed_sources`` limits what an ``add_camera`` *command* may open (cameras of the config
file itself are the operator's and are not limited)::

    control:
      allowed_sources:
        schemes: [rtsp, rtsps, http, https]   # the default; add usb for local capture devices
        hosts: ["*"]                          # the default; or e.g. ["*.cams.example", "10.20.0.0/16"]
        directories: [/srv/edgesight/clips]   # local video files and image folders under these; none by default
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from edge_agent.capture.settings import CameraConfig
from edgesight.config import StrictModel
from edgesight.limits import clip
from edgesight.mqtt import MqttConnectionConfig

COMMAND_QUEUE = 100
"""Commands waiting for the control worker; past it a command is answered ``busy`` at once."""

MAX_CAMERAS = 64
"""Cameras an agent may hold; past it ``add_camera`` is refused (cameras of the config file are not limited)."""

EVENTS_QUEUE = 1000
"""Live-feed events waiting per camera for the next events message; past it they are dropped (and counted)."""

NetworkScheme = Literal["rtsp", "rtsps", "http", "https", "usb"]
NETWORK_SCHEMES: tuple[NetworkScheme, ...] = ("rtsp", "rtsps", "http", "https")
_PROTOCOL_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # "concat:...", "subfile:...": FFmpeg protocols


class SourceAllowlist(StrictModel):
    """The camera sources an ``add_camera`` command may name."""

    schemes: list[NetworkScheme] = Field(
        default_factory=lambda: list(NETWORK_SCHEMES),
        description="network schemes allowed (usb = local capture devices); files are governed by directories",
    )
    hosts: list[str] = Field(
        default_factory=lambda: ["*"],
        max_length=256,
        description="host name patterns (fnmatch, case-insensitive) or IP networks (CIDR) a network camera may be on",
    )
    directories: list[Path] = Field(
        default_factory=list,
        max_length=256,
        description="local video files and image folders are allowed only under these directories (none by default)",
    )

    @field_validator("hosts")
    @classmethod
    def _check_hosts(cls, v: list[str]) -> list[str]:
        for h in v:
            if not h or len(h) > 255:
                raise ValueError("a host pattern is 1-255 characters")
            if "/" in h:
                try:
                    ipaddress.ip_network(h, strict=False)
                except ValueError:
                    raise ValueError(f"{clip(h, 64)!r} is neither a host pattern nor an IP network (CIDR)") from None
        return v

    @field_validator("directories")
    @classmethod
    def _check_directories(cls, v: list[Path]) -> list[Path]:
        for d in v:
            if not d.is_absolute():
                raise ValueError(f"{clip(str(d), 128)!r} is not an absolute path")
        return v

    def check(self, cam: CameraConfig) -> None:
        """Raise ``ValueError`` naming the setting that refuses ``cam``'s source; the message holds no credentials."""
        kind = cam.kind
        if kind in ("file", "folder"):
            self._check_path(cam.path)
        elif kind == "usb":
            if "usb" not in self.schemes:
                raise ValueError(
                    f"local capture devices are not allowed: control.allowed_sources.schemes {self.schemes}"
                )
        else:
            self._check_network(cam.url)

    def _check_path(self, path: str) -> None:
        shown = clip(path, 128)
        if _PROTOCOL_PREFIX.match(path):
            raise ValueError(f"source {shown!r} is neither a URL of an allowed scheme nor a local path")
        if not self.directories:
            raise ValueError(
                f"local file sources are not allowed: {shown!r} is not under control.allowed_sources.directories (none)"
            )
        real = os.path.realpath(path)  # '..' and symbolic links resolved: the file that would be read
        for d in self.directories:
            root = os.path.realpath(d)
            if os.path.commonpath([real, root]) == root:
                return
        raise ValueError(
            f"local file source {shown!r} is outside control.allowed_sources.directories "
            f"({', '.join(str(d) for d in self.directories)})"
        )

    def _check_network(self, url: str) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in self.schemes:
            raise ValueError(f"scheme {clip(scheme, 16)!r} is not in control.allowed_sources.schemes {self.schemes}")
        try:
            host = parts.hostname or ""
        except ValueError:
            host = ""
        if not host:
            raise ValueError(f"a {scheme}:// source needs a host")
        if not any(_host_matches(host, pattern) for pattern in self.hosts):
            raise ValueError(f"host {clip(host, 64)!r} is not in control.allowed_sources.hosts {self.hosts}")


def _host_matches(host: str, pattern: str) -> bool:
    if "/" in pattern:
        try:
            return ipaddress.ip_address(host) in ipaddress.ip_network(pattern, strict=False)
        except ValueError:
            return False
    return fnmatch.fnmatchcase(host.lower(), pattern.lower())


class ControlConfig(MqttConnectionConfig):
    """The agent's MQTT control plane: the broker connection plus its topics and timing."""

    enabled: bool = True
    topic_root: str = Field("edgesight", pattern=r"^[A-Za-z0-9_/-]{1,64}$")
    keepalive_s: int = Field(15, ge=5, le=3600)
    status_interval_s: float = Field(10.0, gt=0)
    command_queue: int = Field(
        COMMAND_QUEUE, ge=1, le=10_000, description="commands waiting to run; past it a command is answered busy"
    )
    max_cameras: int = Field(
        MAX_CAMERAS, ge=1, le=10_000, description="add_camera is refused once the agent has this many cameras"
    )
    allowed_sources: SourceAllowlist = Field(
        default_factory=SourceAllowlist, description="what an add_camera command may open"
    )
    # the TUI feed: per-camera preview images (while a preview lease is held) and live event batches
    preview_max_width: int = Field(640, ge=32, le=4096, description="preview JPEGs are downscaled to this width")
    preview_interval_s: float = Field(1.0, ge=0.1, le=60.0, description="one preview per interval while leased")
    events_interval_s: float = Field(
        0.5, ge=0.1, le=60.0, description="at most one events message per camera per interval"
    )
    events_feed: Literal["always", "preview", "off"] = Field(
        "always", description="publish live events always, only while the camera's preview lease is held, or never"
    )
    events_queue: int = Field(
        EVENTS_QUEUE, ge=100, le=100_000, description="events waiting per camera; past it updates are dropped first"
    )
