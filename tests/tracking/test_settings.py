"""Validation of tracking/zone/line configuration: bad input gives a clear message naming the key."""

from __future__ import annotations

import pytest

from edge_agent.tracking import CameraTrackingConfig, LineConfig, TrackerConfig, ZoneConfig
from edgesight.config import ConfigError, parse_config


def problems(data) -> str:
    with pytest.raises(ConfigError) as ei:
        parse_config(CameraTrackingConfig, data, "cam.yaml", environ={})
    return str(ei.value)


def test_defaults_and_lost_buffer_in_frames():
    t = TrackerConfig()
    assert (t.track_high_thresh, t.track_low_thresh, t.min_hits, t.class_aware) == (0.5, 0.1, 2, True)
    assert TrackerConfig(lost_buffer_s=3, frame_rate=10).max_lost_frames == 30
    assert TrackerConfig(lost_buffer_s=1, frame_rate=25).max_lost_frames == 25
    assert TrackerConfig(lost_buffer_s=0.25, frame_rate=10).max_lost_frames == 3


def test_tracker_threshold_order_and_unknown_key():
    msg = problems({"tracker": {"track_low_thresh": 0.6, "track_high_thresh": 0.5}})
    assert "tracker" in msg and "track_low_thresh (0.6) must be below track_high_thresh (0.5)" in msg
    msg = problems({"tracker": {"lost_buffer": 30}})
    assert "tracker.lost_buffer: unknown key" in msg


def test_zone_polygon_validation_messages():
    assert "at least 3 distinct points, got 2" in problems({"zones": [{"name": "a", "polygon": [[0, 0], [5, 5]]}]})
    assert "zones[0].polygon" in problems({"zones": [{"name": "a", "polygon": [[0, 0], [5, 5]]}]})
    # a bow-tie
    msg = problems({"zones": [{"name": "a", "polygon": [[0, 0], [100, 100], [100, 0], [0, 100]]}]})
    assert "self-intersecting: edge 0-1 crosses edge 2-3" in msg
    assert "zero area" in problems({"zones": [{"name": "a", "polygon": [[0, 0], [1, 1], [2, 2]]}]})
    assert "pair [x, y]" in problems({"zones": [{"name": "a", "polygon": [[0, 0, 1], [1, 1], [2, 0]]}]})
    assert "negative coordinate" in problems({"zones": [{"name": "a", "polygon": [[-1, 0], [1, 1], [2, 0]]}]})
    assert "outside 0..1" in problems(
        {"zones": [{"name": "a", "coords": "normalized", "polygon": [[0, 0], [2, 1], [1, 0]]}]}
    )
    assert "at least one label" in problems(
        {"zones": [{"name": "a", "labels": [], "polygon": [[0, 0], [9, 9], [9, 0]]}]}
    )
    assert "anchor" in problems({"zones": [{"name": "a", "anchor": "feet", "polygon": [[0, 0], [9, 9], [9, 0]]}]})


def test_zone_closed_ring_and_coordinate_modes():
    z = ZoneConfig(name="a", polygon=[[0, 0], [10, 0], [10, 10], [0, 0]])  # closed ring accepted
    assert z.polygon == [(0, 0), (10, 0), (10, 10)]
    n = ZoneConfig(name="n", polygon=[[0, 0], [1, 0], [1, 0.5]])
    assert n.pixel_polygon(800, 600) == [(0, 0), (800, 0), (800, 300)]
    p = ZoneConfig(name="p", coords="pixels", polygon=[[0, 0], [1, 0], [1, 1]])
    assert p.pixel_polygon(800, 600) == [(0, 0), (1, 0), (1, 1)]


def test_line_validation_messages():
    assert "same point" in problems({"lines": [{"name": "l", "start": [5, 5], "end": [5, 5]}]})
    assert "two different names" in problems(
        {"lines": [{"name": "l", "start": [0, 0], "end": [5, 5], "directions": ["in", "in"]}]}
    )
    assert "lines[0].start" in problems({"lines": [{"name": "l", "start": [0], "end": [5, 5]}]})
    assert "names must be unique" in problems(
        {"lines": [{"name": "l", "start": [0, 0], "end": [5, 5]}, {"name": "l", "start": [1, 0], "end": [5, 5]}]}
    )
    ln = LineConfig(name="l", start=[0, 0.5], end=[1, 0.5])
    assert ln.pixel_points(640, 480) == ((0, 240), (640, 240))
