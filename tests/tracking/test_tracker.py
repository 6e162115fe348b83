"""Tracker and lifecycle records on constructed detections (exact expectations)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.detections import Detections, box_iou
from edge_agent.tracking import CameraTrackingConfig, TrackerConfig
from edge_agent.tracking.events import CameraTracking
from edge_agent.tracking.tracker import ByteTracker, TrackState


def dets(*objs: tuple[float, float, float, int]) -> Detections:
    """objs: (centre x, centre y, score, class id) -> 30x60 boxes."""
    if not objs:
        return Detections.empty()
    x, y, s, c = map(np.array, zip(*objs))
    xyxy = np.stack([x - 15, y - 30, x + 15, y + 30], axis=1).astype(np.float32)
    return Detections(xyxy, s.astype(np.float32), c.astype(np.int32))


def cfg(**kw) -> TrackerConfig:
    return TrackerConfig(**{"frame_rate": 10, **kw})


def test_box_iou():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    assert np.allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0]])


def test_ids_need_min_hits_and_are_dense():
    tr = ByteTracker(cfg(min_hits=3))
    outs = [tr.update(dets((100 + 5 * i, 100, 0.9, 0))) for i in range(5)]
    assert [o.tracker_ids.tolist() for o in outs] == [[], [], [1], [1], [1]]
    # one-frame noise never burns an id
    tr.update(dets((105 + 5 * 5, 100, 0.9, 0), (500, 400, 0.9, 0)))
    out = tr.update(dets((105 + 5 * 6, 100, 0.9, 0)))
    assert out.tracker_ids.tolist() == [1]
    for i in range(3):
        out = tr.update(dets((100 + 5 * (7 + i), 100, 0.9, 0), (300, 300, 0.9, 0)))
    assert sorted(out.tracker_ids.tolist()) == [1, 2]


def test_two_walkers_crossing_paths_keep_their_ids():
    """Two people walking towards each other along the same row pass each other with full overlap."""
    tr = ByteTracker(cfg())
    history: dict[int, list[float]] = {}
    for i in range(40):
        a, b = 100 + 8 * i, 420 - 8 * i
        out = tr.update(dets((a, 200, 0.85, 0), (b, 203, 0.8, 0)))
        for tid, box in zip(out.tracker_ids.tolist(), out.xyxy):
            history.setdefault(tid, []).append(float(box[0] + box[2]) / 2)
    assert sorted(history) == [1, 2]
    for xs in history.values():  # each id moves monotonically one way: no swap at the crossing
        d = np.diff(xs)
        assert (d > 0).all() or (d < 0).all(), xs


def test_low_score_detections_keep_a_track_alive():
    """Stage 2: an occluded person detected at 0.2 keeps its id instead of being lost."""
    tr = ByteTracker(cfg(min_hits=1))
    for i in range(5):
        tr.update(dets((100 + 5 * i, 100, 0.9, 0)))
    for i in range(5, 10):
        out = tr.update(dets((100 + 5 * i, 100, 0.2, 0)))
        assert out.tracker_ids.tolist() == [1]
    assert tr.track(1).state is TrackState.TRACKED
    assert tr.track(1).top_score == pytest.approx(0.9)
    # but a low-score detection alone never starts a track
    tr2 = ByteTracker(cfg(min_hits=1))
    assert len(tr2.update(dets((50, 50, 0.3, 0)))) == 0 and tr2.tracks == {}


def test_lost_track_is_reidentified_within_the_buffer():
    tr = ByteTracker(cfg(lost_buffer_s=1.0))  # 10 frames
    for i in range(6):
        tr.update(dets((100 + 4 * i, 100, 0.9, 0)))
    for _ in range(6, 11):  # 5 frames unseen (e.g. behind a pillar)
        assert len(tr.update(dets())) == 0
        assert tr.track(1).state is TrackState.LOST
    out = tr.update(dets((100 + 4 * 11, 100, 0.9, 0)))  # where the motion model expects it
    assert out.tracker_ids.tolist() == [1]
    assert tr.track(1).state is TrackState.TRACKED and tr.ended == []


def test_lost_track_ends_after_the_buffer_with_its_state():
    tr = ByteTracker(cfg(lost_buffer_s=0.5))  # 5 frames
    scores = [0.7, 0.95, 0.8, 0.75]
    for i, s in enumerate(scores):
        tr.update(dets((200, 150 + 3 * i, s, 2)), timestamp=100.0 + i / 10)
    ended_at = None
    for k in range(1, 10):
        tr.update(dets(), timestamp=100.0 + (3 + k) / 10)
        if tr.ended:
            ended_at = k
            (e,) = tr.ended
            break
    assert ended_at == 6  # unseen for more than 5 frames
    assert e.track_id == 1 and e.state is TrackState.ENDED and e.class_id == 2
    # first seen = first detection (the id is only issued on the 2nd hit, min_hits=2)
    assert e.first_seen == pytest.approx(100.0) and e.last_seen == pytest.approx(100.3)
    assert e.first_seen_frame == 0 and e.last_seen_frame == 3
    assert e.top_score == pytest.approx(0.95) and e.hits == 4
    assert e.box == pytest.approx((185.0, 129.0, 215.0, 189.0))
    assert tr.tracks == {} and tr.track(1) is None


def test_class_aware_matching():
    tr = ByteTracker(cfg(min_hits=1))
    tr.update(dets((100, 100, 0.9, 0)))
    out = tr.update(dets((101, 100, 0.9, 2)))  # same place, different class: a new track
    assert out.tracker_ids.tolist() == [2]
    assert tr.track(1).state is TrackState.LOST and tr.track(2).class_id == 2
    tr2 = ByteTracker(cfg(min_hits=1, class_aware=False))
    tr2.update(dets((100, 100, 0.9, 0)))
    assert tr2.update(dets((101, 100, 0.9, 2))).tracker_ids.tolist() == [1]


def test_output_rows_keep_input_order_and_values():
    tr = ByteTracker(cfg(min_hits=1))
    d = dets((300, 100, 0.9, 0), (100, 100, 0.05, 0), (100, 300, 0.8, 0))
    out = tr.update(d)
    assert out.xyxy.tolist() == d.xyxy[[0, 2]].tolist()  # the 0.05 detection is below track_low_thresh
    assert out.scores.tolist() == pytest.approx([0.9, 0.8])
    assert out.tracker_ids.dtype == np.int64


def test_lifecycle_records_with_zones_lines_and_end():
    conf = CameraTrackingConfig.model_validate(
        {
            "tracker": {"frame_rate": 1, "lost_buffer_s": 3.0, "min_hits": 1},  # 1 frame per second, as stamped
            "zones": [{"name": "right", "polygon": [[320, 0], [640, 0], [640, 480], [320, 480]], "inertia": 1}],
            "lines": [
                {
                    "name": "mid",
                    "start": [320, 0],
                    "end": [320, 480],
                    "min_frames": 1,
                    "directions": ["leftward", "rightward"],
                }
            ],
        }
    )
    ct = CameraTracking(conf, (640, 480), camera="cam-t", class_names=["person"])
    recs = []
    for i in range(10):  # walks right across x=320 (feet at y=230)
        _, r = ct.process(dets((250 + 20 * i, 200, 0.9, 0)), timestamp=float(i))
        recs.append(r)
    for i in range(10, 15):
        _, r = ct.process(dets(), timestamp=float(i))
        recs.append(r)
    flat = [x for r in recs for x in r]
    assert [x.kind for x in recs[0]] == ["new"]
    assert all([x.kind for x in r] == ["update"] for r in recs[1:10])
    # x = 250,270,290,310,330: crossing + zone entry at frame 4
    cross = [(x.frame_index, c.direction, c.line) for x in flat for c in x.crossings]
    assert cross == [(4, "rightward", "mid")]
    assert [(x.frame_index, x.zones_entered) for x in flat if x.zones_entered] == [(4, ["right"])]
    assert recs[9][0].zones_current == ["right"]
    ends = [x for x in flat if x.kind == "end"]
    assert len(ends) == 1 and ends[0].frame_index == 13  # unseen frames 10,11,12 (= 3), ends on the 4th
    assert ends[0].zones_exited == ["right"] and ends[0].label == "person" and ends[0].camera == "cam-t"
    assert ends[0].last_seen == 9.0 and ends[0].first_seen == 0.0 and ends[0].hits == 10
    assert ct.zones.zones[0].inside == set()


def test_update_interval_only_emits_on_change_or_heartbeat():
    conf = CameraTrackingConfig.model_validate({"tracker": {"frame_rate": 10, "min_hits": 1}, "update_interval_s": 1.0})
    ct = CameraTracking(conf, (640, 480))
    kinds = []
    for i in range(25):  # constant score: no change except the heartbeat
        _, r = ct.process(dets((100 + i, 100, 0.9, 0)), timestamp=i / 10)
        kinds.append([(x.kind, x.frame_index) for x in r])
    emitted = [k for r in kinds for k in r]
    assert emitted == [("new", 0), ("update", 10), ("update", 20)]
    _, r = ct.process(dets((125, 100, 0.95, 0)), timestamp=2.5)  # higher top score: emitted at once
    assert [x.kind for x in r] == ["update"]
    assert [x.kind for x in ct.close()] == ["end"]


def test_lost_buffer_counts_time_when_frames_are_sparse():
    """A camera inferred at 2 fps with frame_rate 10: the track ends ~lost_buffer_s after its last sighting,
    not after lost_buffer_s * frame_rate frames (15 s at 2 fps)."""
    import numpy as np

    from edge_agent.detections import Detections
    from edge_agent.tracking.settings import TrackerConfig
    from edge_agent.tracking.tracker import ByteTracker

    trk = ByteTracker(TrackerConfig(frame_rate=10, lost_buffer_s=3.0, min_hits=1))
    box = Detections(np.array([[100, 100, 150, 220]], np.float32), np.array([0.9], np.float32), np.array([0], np.int32))
    t = 1000.0
    for _ in range(4):
        trk.update(box, t)
        t += 0.5
    ended_at = None
    for _ in range(20):
        trk.update(Detections.empty(), t)
        if trk.ended:
            ended_at = t
            break
        t += 0.5
    assert ended_at is not None, "track never ended"
    assert 3.0 < ended_at - 1001.5 <= 3.5
