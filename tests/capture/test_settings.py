"""Camera configuration validation and readable errors."""

from __future__ import annotations

import pytest

from edge_agent.capture import CameraConfig
from edgesight.config import ConfigError, parse_config


def err(**kw) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(CameraConfig, kw, source="cameras.yaml")
    return str(e.value)


def test_kinds_and_alias(tmp_path):
    assert CameraConfig(id="a", url="rtsp://h/s").kind == "rtsp"
    assert CameraConfig(id="a", source="https://h/x.mjpg").kind == "http"
    assert CameraConfig(id="a", url="usb:2").usb_index == 2
    assert CameraConfig(id="a", url="/dev/video1").kind == "usb"
    assert CameraConfig(id="a", url=str(tmp_path)).kind == "folder"
    assert CameraConfig(id="a", url="/data/x.mp4", loop=True).kind == "file"
    assert CameraConfig(id="a", url="file:///data/x.mp4").path == "/data/x.mp4"


def test_readable_errors():
    assert "unsupported URL scheme 'ftp'" in err(id="a", url="ftp://x/y")
    assert "transport 'udp' only applies to rtsp://" in err(id="a", url="/x.mp4", transport="udp")
    assert "loop only applies to files" in err(id="a", url="rtsp://h/s", loop=True)
    assert "normalised roi must lie inside the frame" in err(id="a", url="rtsp://h/s", roi=[0.5, 0.5, 0.6, 0.1])
    assert "roi width and height must be > 0" in err(id="a", url="rtsp://h/s", roi=[0, 0, 0, 10])
    assert "backoff.max_s (1.0) must be >= backoff.initial_s (5.0)" in err(
        id="a", url="rtsp://h/s", backoff={"initial_s": 5, "max_s": 1}
    )
    assert "unknown key" in err(id="a", url="rtsp://h/s", fps=5)
    assert "camera id must be" in err(id="bad id!", url="rtsp://h/s")
    assert "target_fps" in err(id="a", url="rtsp://h/s", target_fps=0)
    assert "usb:N" in err(id="a", url="usb:cam")


def test_roi_pixels_and_backoff():
    c = CameraConfig(id="a", url="rtsp://h/s", roi=(0.25, 0.5, 0.5, 0.5))
    assert c.roi_pixels(800, 600) == (200, 300, 400, 300)
    c = CameraConfig(id="a", url="rtsp://h/s", roi=(700, 500, 400, 400))
    assert c.roi_pixels(800, 600) == (700, 500, 100, 100)  # clipped to the frame
    b = CameraConfig(id="a", url="rtsp://h/s", backoff={"initial_s": 1, "max_s": 8, "jitter": 0.25}).backoff
    assert [b.delay(n, 0.5) for n in (1, 2, 3, 4, 5, 9)] == [1, 2, 4, 8, 8, 8]
    assert b.delay(1, 0.0) == 0.75 and b.delay(20, 0.999999) <= b.bound(20) == 10.0
