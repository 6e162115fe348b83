"""Zones and counting lines on constructed tracks (exact, hand-computable positions)."""

from __future__ import annotations

import cv2
import numpy as np

from edge_agent.detections import Detections
from edge_agent.tracking.settings import LineConfig, ZoneConfig
from edge_agent.tracking.zones import CameraZones, anchor_points, points_in_polygon

SIZE = (640, 480)
NAMES = {0: "person", 2: "car"}


def frame(*objs: tuple[int, float, float, int]) -> Detections:
    """objs: (track id, foot x, foot y, class id) -> 20x40 boxes standing on (x, y)."""
    if not objs:
        d = Detections.empty()
        d.tracker_ids = np.zeros((0,), np.int64)
        return d
    ids, xs, ys, cls = map(np.array, zip(*objs))
    xyxy = np.stack([xs - 10, ys - 40, xs + 10, ys], axis=1).astype(np.float32)
    return Detections(xyxy, np.full(len(ids), 0.9, np.float32), cls.astype(np.int32), ids.astype(np.int64))


def test_anchor_points():
    b = np.array([[10, 20, 30, 60]], np.float32)
    assert anchor_points(b, "bottom_center").tolist() == [[20, 60]]
    assert anchor_points(b, "center").tolist() == [[20, 40]]
    assert anchor_points(b, "top_left").tolist() == [[10, 20]]
    assert anchor_points(b, "center_right").tolist() == [[30, 40]]
    assert anchor_points(b, "bottom_right").tolist() == [[30, 60]]


def test_points_in_polygon_agrees_with_opencv():
    rng = np.random.default_rng(7)
    # a concave "U" polygon
    poly = np.array(
        [[100, 100], [500, 100], [500, 400], [400, 400], [400, 200], [200, 200], [200, 400], [100, 400]], np.float64
    )
    pts = rng.uniform(0, 600, size=(2000, 2))
    ours = points_in_polygon(pts, poly)
    cnt = poly.astype(np.float32).reshape(-1, 1, 2)
    ref = np.array([cv2.pointPolygonTest(cnt, (float(x), float(y)), True) for x, y in pts])
    clear = np.abs(ref) > 1e-6  # boundary points are convention-dependent
    assert np.array_equal(ours[clear], ref[clear] > 0)
    assert 0.2 < ours.mean() < 0.8  # both inside and outside were exercised


def test_zone_enter_exit_with_inertia():
    zone = ZoneConfig(name="door", polygon=[[200, 200], [400, 200], [400, 400], [200, 400]], inertia=2)
    cz = CameraZones([zone], [], SIZE, class_names=NAMES)
    xs = [150, 190, 210, 250, 300, 350, 390, 410, 450, 500]  # foot x of track 7, y fixed at 300
    entered, exited, current = [], [], []
    for i, x in enumerate(xs):
        f = frame((7, x, 300, 0))
        r = cz.update(f)
        entered += [(i, z) for z in r.entered.get(7, [])]
        exited += [(i, z) for z in r.exited.get(7, [])]
        current.append(r.current[7])
        assert f.zones == [r.current[7]]  # filled in place on the Detections
    # inside from i=2 (x=210); inertia 2 -> enter confirmed at i=3. outside from i=7 -> exit at i=8
    assert entered == [(3, "door")]
    assert exited == [(8, "door")]
    assert current[2] == [] and current[3] == ["door"] and current[7] == ["door"] and current[8] == []


def test_zone_jitter_on_boundary_does_not_flap():
    zone = ZoneConfig(name="z", polygon=[[200, 200], [400, 200], [400, 400], [200, 400]], inertia=3)
    cz = CameraZones([zone], [], SIZE)
    events = 0
    for i in range(40):
        r = cz.update(frame((1, 198 if i % 2 else 202, 300, 0)))
        events += len(r.entered) + len(r.exited)
    assert events == 0


def test_zone_label_filter_and_anchor_choice():
    zone = ZoneConfig(name="road", polygon=[[0, 0], [640, 0], [640, 250], [0, 250]], labels=["car"], inertia=1)
    zone_c = ZoneConfig(name="road_c", polygon=[[0, 0], [640, 0], [640, 250], [0, 250]], anchor="center", inertia=1)
    cz = CameraZones([zone, zone_c], [], SIZE, class_names=NAMES)
    # track 3: box y 225..265 -> feet (bottom_center) below the zone, centre (y=245) inside
    r = cz.update(frame((1, 100, 100, 0), (2, 300, 100, 2), (3, 500, 265, 2)))
    assert r.entered.get(1) == ["road_c"]  # person: filtered out of "road"
    assert r.entered.get(2) == ["road", "road_c"]
    assert r.entered.get(3) == ["road_c"]  # car whose feet are below the zone, centre inside


def test_zone_normalised_polygon_and_end_of_track_exits():
    zone = ZoneConfig(name="left_half", polygon=[[0, 0], [0.5, 0], [0.5, 1], [0, 1]], inertia=1)
    assert zone.pixel_polygon(*SIZE) == [(0, 0), (320, 0), (320, 480), (0, 480)]
    cz = CameraZones([zone], [], SIZE)
    r = cz.update(frame((5, 100, 300, 0), (6, 500, 300, 0)))
    assert r.entered == {5: ["left_half"]}
    assert cz.end_tracks([5, 6]) == {5: ["left_half"], 6: []}
    assert cz.zones[0].inside == set()


def _line_run(line: LineConfig, path, tid=1, cls=0):
    cz = CameraZones([], [line], SIZE, class_names=NAMES)
    out = []
    for i, (x, y) in enumerate(path):
        r = cz.update(frame((tid, x, y, cls)))
        out += [(i, c.direction) for c in r.crossings]
    return cz, out


def test_line_direction_horizontal():
    # drawn left -> right: its right-hand side is below (larger y) => directions[0] ("in") = moving down
    line = LineConfig(name="gate", start=[100, 240], end=[540, 240], min_frames=1)
    _, down = _line_run(line, [(300, y) for y in range(200, 281, 10)])
    _, up = _line_run(line, [(300, y) for y in range(280, 199, -10)])
    assert down == [(5, "in")]  # y=250 is the first point below 240
    assert up == [(5, "out")]  # 280..250, then y=240 on the line (ignored), y=230 at i=5


def test_line_direction_vertical_and_names():
    # drawn top -> bottom: right-hand side is screen-left, directions[0] = moving to screen-left
    line = LineConfig(name="v", start=[320, 50], end=[320, 450], directions=("to_left", "to_right"), min_frames=1)
    cz, out = _line_run(line, [(x, 300) for x in range(400, 239, -20)] + [(x, 300) for x in range(260, 421, 20)])
    assert [d for _, d in out] == ["to_left", "to_right"]
    assert cz.totals() == {"v": {"to_left": 1, "to_right": 1}}
    assert cz.counts() == {"v": {"to_left": {"person": 1}, "to_right": {"person": 1}}}


def test_line_not_counted_around_its_end_nor_when_filtered_or_jittering():
    line = LineConfig(name="short", start=[300, 100], end=[300, 200], min_frames=2, labels=["person"])
    # passes x=300 at y=300: below the end of the segment -> no crossing
    _, out = _line_run(line, [(x, 300) for x in range(200, 401, 20)])
    assert out == []
    # through the segment, but a car: filtered
    _, out = _line_run(line, [(x, 150) for x in range(200, 401, 20)], cls=2)
    assert out == []
    # feet jitter across the line every other frame: min_frames=2 debounce -> nothing
    _, out = _line_run(line, [(298 if i % 2 else 302, 150) for i in range(30)])
    assert out == []
    # a real crossing through the segment, confirmed on the 2nd frame on the new side
    _, out = _line_run(line, [(x, 150) for x in range(240, 361, 20)])
    assert out == [(5, "out")]  # x=320 at i=4 is the first on the right of the screen; confirmed at i=5


def test_line_counts_each_track_separately():
    line = LineConfig(name="g", start=[100, 240], end=[540, 240], min_frames=1)
    cz = CameraZones([], [line], SIZE)
    for y in range(200, 281, 20):
        cz.update(frame((1, 200, y, 0), (2, 400, 480 - y, 0), (3, 300, 100, 0)))
    assert cz.totals() == {"g": {"in": 1, "out": 1}}
