"""Keyframe policy: track start, score improvement margin, per-camera interval, size bound, per-track crops."""

from __future__ import annotations

from datetime import timedelta

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.publish import KeyframePolicy, KeyframeSelector, TrackUpdate, encode_jpeg_bounded
from edge_agent.publish.keyframes import crop_box
from edgesight.wire import KeyframeMeta, decode_keyframe, encode_keyframe
from ops.testing.publish import T0


@pytest.fixture(scope="module")
def frames(vtest_path):
    cap = cv2.VideoCapture(str(vtest_path))
    out = [cap.read()[1] for _ in range(5)]
    cap.release()
    assert all(f is not None for f in out)
    return out


def _sel(**kw) -> KeyframeSelector:
    return KeyframeSelector(KeyframePolicy(**{"interval_s": None, **kw}), "agent-kf")


def _reasons(shot) -> list[tuple[str, int | None]]:
    return [(m.reason.value, m.track_id) for m, _ in shot.keyframes]


def test_track_start_gives_one_keyframe_per_frame(frames):
    s = _sel()
    shot = s.process("cam", frames[0], T0, 0, [TrackUpdate(1, 0.6, True), TrackUpdate(2, 0.9, True)])
    assert _reasons(shot) == [("track_start", 2)]  # one JPEG; strongest new track named
    meta, jpeg = shot.keyframes[0]
    assert shot.ref.keyframe_id == meta.keyframe_id and set(shot.ref.model_dump()) == {"keyframe_id"}  # id only
    assert meta.size == len(jpeg) and jpeg[:3] == b"\xff\xd8\xff"
    assert s.track_ref("cam", 1) == shot.ref == s.track_ref("cam", 2)
    # Same tracks next frame, same scores: nothing.
    assert not s.process("cam", frames[1], T0 + timedelta(seconds=0.1), 1, [TrackUpdate(1, 0.6), TrackUpdate(2, 0.9)])
    # A track id never seen counts as a start even without is_new.
    assert _reasons(s.process("cam", frames[2], T0 + timedelta(seconds=0.2), 2, [TrackUpdate(3, 0.5)])) == [
        ("track_start", 3)
    ]
    assert not _sel(on_track_start=False).process("cam", frames[0], T0, 0, [TrackUpdate(1, 0.6, True)])


def test_score_improvement_margin_and_cooldown(frames):
    s = _sel(score_margin=0.1, track_cooldown_s=1.0)
    t = T0
    s.process("cam", frames[0], t, 0, [TrackUpdate(7, 0.50, True)])
    assert not s.process("cam", frames[1], t + timedelta(seconds=2), 1, [TrackUpdate(7, 0.59)])  # below margin
    shot = s.process("cam", frames[2], t + timedelta(seconds=3), 2, [TrackUpdate(7, 0.61)])
    assert _reasons(shot) == [("score_improved", 7)]
    assert s.track_ref("cam", 7) == shot.ref
    # The reference is now 0.61: 0.65 is not enough, 0.72 is, but only after the cooldown.
    assert not s.process("cam", frames[3], t + timedelta(seconds=3.5), 3, [TrackUpdate(7, 0.65)])
    assert not s.process("cam", frames[3], t + timedelta(seconds=3.8), 3, [TrackUpdate(7, 0.72)])
    assert _reasons(s.process("cam", frames[4], t + timedelta(seconds=4.2), 4, [TrackUpdate(7, 0.72)])) == [
        ("score_improved", 7)
    ]
    # A score drop never triggers.
    assert not s.process("cam", frames[4], t + timedelta(seconds=9), 5, [TrackUpdate(7, 0.3)])


def test_interval_per_camera(frames):
    s = _sel(interval_s=10.0, on_track_start=False)
    got = {"a": [], "b": []}
    for i in range(0, 35):  # 1 frame/s for 35 s on two cameras
        for cam in got:
            if s.process(cam, frames[0], T0 + timedelta(seconds=i), i):
                got[cam].append(i)
    assert got["a"] == [0, 10, 20, 30] and got["b"] == [0, 10, 20, 30]
    st = s.stats()
    assert st["a"]["keyframes"] == 4 and st["a"]["by_reason"] == {"interval": 4}
    # A track keyframe resets the camera's interval clock.
    s2 = _sel(interval_s=10.0)
    s2.process("c", frames[0], T0, 0)
    s2.process("c", frames[0], T0 + timedelta(seconds=8), 8, [TrackUpdate(1, 0.5, True)])
    assert not s2.process("c", frames[0], T0 + timedelta(seconds=12), 12)
    assert _reasons(s2.process("c", frames[0], T0 + timedelta(seconds=18), 18)) == [("interval", None)]


def test_size_bound_reencodes_smaller(frames):
    big = cv2.resize(frames[0], (1920, 1440))
    noisy = np.clip(big.astype(np.int16) + np.random.default_rng(0).integers(-40, 40, big.shape), 0, 255).astype(
        np.uint8
    )
    jpeg, w, h, q = encode_jpeg_bounded(noisy, quality=95, min_quality=80, max_bytes=60_000, max_width=1280)
    assert len(jpeg) <= 60_000
    assert w < 1280 and abs(w / h - 4 / 3) < 0.01  # had to shrink below max_width too
    assert q == 80
    dec = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert dec.shape[:2] == (h, w)
    # Quality steps down before the size does.
    unbounded, *_ = encode_jpeg_bounded(frames[0], quality=95, min_quality=30, max_bytes=10**7)
    jpeg2, w2, _h2, q2 = encode_jpeg_bounded(frames[0], quality=95, min_quality=30, max_bytes=len(unbounded) // 2)
    assert len(jpeg2) <= len(unbounded) // 2 and w2 == frames[0].shape[1] and q2 < 95
    # Through the selector: the meta says the JPEG's real size and dimensions.
    s = _sel(max_bytes=60_000, jpeg_quality=95, min_jpeg_quality=80, max_width=1280)
    meta, data = s.process("cam", noisy, T0, 0, [TrackUpdate(1, 0.5, True)]).keyframes[0]
    assert isinstance(meta, KeyframeMeta) and meta.size == len(data) <= 60_000 and meta.width == w


def test_bytes_per_hour_accounting(frames):
    s = _sel(interval_s=600.0, on_track_start=False)
    sizes = []
    for i in range(0, 3 * 3600, 60):  # 3 hours of frame time, a frame a minute
        shot = s.process("cam", frames[i % 5], T0 + timedelta(seconds=i), i)
        sizes += [(i, len(j)) for _, j in shot.keyframes]
    st = s.stats()["cam"]
    assert st["keyframes"] == len(sizes) == 18
    assert st["bytes_total"] == sum(b for _, b in sizes)
    last = 3 * 3600 - 60
    assert st["bytes_last_hour"] == sum(b for t, b in sizes if t > last - 3600)


# ---- per-track crop keyframes (crop: track) ------------------------------------------------------------


def _crop_of(meta) -> tuple[int, int, int, int]:
    assert meta.crop is not None and meta.frame is not None
    x1, y1, x2, y2 = meta.crop
    assert 0 <= x1 < x2 <= meta.frame.width and 0 <= y1 < y2 <= meta.frame.height
    return x1, y1, x2, y2


def test_crop_per_track_inside_frame_with_margin_and_min_size(frames):
    s = _sel(crop_margin=0.2, crop_min_px=64)
    h, w = frames[0].shape[:2]
    boxes = {1: (100.0, 100.0, 200.0, 300.0), 2: (400.0, 400.0, 402.0, 403.0), 3: (w - 30.0, -20.0, w + 50.0, 60.0)}
    shot = s.process("cam", frames[0], T0, 0, [TrackUpdate(t, 0.5 + t / 10, True, b) for t, b in boxes.items()])
    assert sorted(_reasons(shot), key=lambda r: r[1]) == [("track_start", 1), ("track_start", 2), ("track_start", 3)]
    assert shot.ref is None  # crops only: no whole frame on this frame
    crops = {m.track_id: (m, j) for m, j in shot.keyframes}
    for tid, (meta, jpeg) in crops.items():
        x1, y1, x2, y2 = _crop_of(meta)
        assert (meta.frame.width, meta.frame.height) == (w, h)
        assert x2 - x1 >= 64 and y2 - y1 >= 64
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape[:2] == (meta.height, meta.width) == (y2 - y1, x2 - x1)  # the JPEG is the crop
        assert shot.ref_for(tid) == s.track_ref("cam", tid) and shot.ref_for(tid).keyframe_id == meta.keyframe_id
    assert crops[1][0].crop == [80, 60, 220, 340]  # 20 % of 100 x 200 on each side
    x1, y1, x2, y2 = crops[2][0].crop  # a 2 x 3 box: grown to 64 x 64 around its centre
    assert (x2 - x1, y2 - y1) == (64, 64) and x1 <= 400 and x2 >= 402 and y1 <= 400 and y2 >= 403
    assert crops[3][0].crop == [w - 64, 0, w, 76]  # clipped to the frame (then 64 wide, inside it)
    # A crop's bytes are a fraction of the whole frame's.
    whole = _sel(crop="frame").process("cam", frames[0], T0, 0, [TrackUpdate(1, 0.6, True, boxes[1])]).keyframes
    assert crops[1][0].size < whole[0][0].size / 2
    # A score improvement of a track is a crop of that track too.
    s2 = _sel(score_margin=0.1, track_cooldown_s=0.0)
    s2.process("cam", frames[0], T0, 0, [TrackUpdate(7, 0.5, True, boxes[1])])
    shot = s2.process("cam", frames[1], T0 + timedelta(seconds=1), 1, [TrackUpdate(7, 0.7, False, boxes[1])])
    assert _reasons(shot) == [("score_improved", 7)] and shot.keyframes[0][0].crop == [80, 60, 220, 340]


def test_many_tracks_on_one_frame_each_get_a_crop_bounded_per_frame(frames):
    s = _sel(max_crops_per_frame=3, score_margin=0.1, track_cooldown_s=0.0)
    new = [TrackUpdate(t, 0.5, True, (20.0 * t, 50.0, 20.0 * t + 40, 150.0)) for t in range(1, 11)]
    per_frame, seen = [], []
    shot = s.process("cam", frames[0], T0, 0, new)
    per_frame.append(len(shot.keyframes))
    seen += shot.keyframes
    # The tracks are gone on the next frames; track 99 starts on frame 1 and waits its turn too.
    for i in range(1, 6):
        ups = [TrackUpdate(99, 0.5, True, (300.0, 300.0, 360.0, 400.0))] if i == 1 else []
        shot = s.process("cam", frames[i % 5], T0 + timedelta(seconds=i / 10), i, ups)
        per_frame.append(len(shot.keyframes))
        seen += shot.keyframes
    assert per_frame == [3, 3, 3, 2, 0, 0]  # never more than 3 per frame; 11 crops, none lost
    assert sorted(m.track_id for m, _ in seen) == [*range(1, 11), 99]
    for m, _ in seen:  # a deferred crop keeps its own frame's time and sequence number
        _crop_of(m)
        assert (m.seq, m.ts) == ((0, T0) if m.track_id != 99 else (1, T0 + timedelta(seconds=0.1)))
    assert [m.track_id for m, _ in seen][:3] == [1, 2, 3]  # oldest first
    st = s.stats()["cam"]
    assert st["crops"] == st["keyframes"] == 11 and st["crops_waiting"] == 0
    # Track starts go before waiting score improvements.
    s = _sel(max_crops_per_frame=1, score_margin=0.1, track_cooldown_s=0.0)
    b = (10.0, 10.0, 50.0, 50.0)
    s.process("cam", frames[0], T0, 0, [TrackUpdate(1, 0.3, True, b)])
    got = s.process("cam", frames[0], T0 + timedelta(seconds=1), 1, [TrackUpdate(1, 0.9, False, b)])
    assert _reasons(got) == [("score_improved", 1)]
    # Track 1 improves again while track 2 starts: the start goes first, the improvement on the next frame.
    got = s.process(
        "cam", frames[0], T0 + timedelta(seconds=2), 2, [TrackUpdate(1, 1.0, False, b), TrackUpdate(2, 0.5, True, b)]
    )
    assert _reasons(got) == [("track_start", 2)]
    assert _reasons(s.process("cam", frames[0], T0 + timedelta(seconds=3), 3)) == [("score_improved", 1)]


def test_interval_and_snapshot_stay_whole_frames(frames):
    s = _sel(interval_s=10.0)
    b = (100.0, 100.0, 200.0, 300.0)
    first = s.process("cam", frames[0], T0, 0, [TrackUpdate(1, 0.5, True, b)])
    assert sorted(_reasons(first), key=str) == [("interval", None), ("track_start", 1)]  # first frame: both
    whole = [m for m, _ in first.keyframes if m.reason.value == "interval"][0]
    assert whole.crop is None and whole.frame is None and (whole.width, whole.height) == frames[0].shape[1::-1]
    assert (
        first.ref.keyframe_id == whole.keyframe_id and first.ref_for(1) != first.ref and first.ref_for(5) == first.ref
    )
    # Crops do not reset the interval clock (it counts whole frames: the context).
    s.process("cam", frames[0], T0 + timedelta(seconds=8), 8, [TrackUpdate(2, 0.5, True, b)])
    assert _reasons(s.process("cam", frames[0], T0 + timedelta(seconds=10), 10)) == [("interval", None)]
    snap = s.snapshot("cam", frames[1], T0 + timedelta(seconds=11), 11)
    assert _reasons(snap) == [("snapshot", None)] and snap.keyframes[0][0].crop is None
    # No box, or one that gives no crop (NaN, wholly off the frame): that track gets a whole frame instead.
    for bad in (None, (float("nan"), 0.0, 10.0, 10.0), (-500.0, -500.0, -400.0, -400.0)):
        shot = _sel().process("cam", frames[0], T0, 0, [TrackUpdate(3, 0.5, True, bad)])
        assert _reasons(shot) == [("track_start", 3)] and shot.keyframes[0][0].crop is None and shot.ref_for(3)


def test_crop_reported_in_source_frame_pixels(frames):
    """The agent's image may be a scaled ROI of the camera's frame: the crop is given in the camera's pixels."""
    s = _sel(crop_margin=0.0, crop_min_px=8)
    src_w, src_h, origin, scale = 1600, 1200, (100.0, 40.0), 0.5  # image pixel = (source - origin) * scale
    shot = s.process(
        "cam", frames[0], T0, 0, [TrackUpdate(1, 0.5, True, (10.0, 20.0, 110.0, 220.0))], (src_w, src_h, origin, scale)
    )
    meta = shot.keyframes[0][0]
    assert meta.crop == [120, 80, 320, 480] and (meta.frame.width, meta.frame.height) == (src_w, src_h)
    assert (meta.width, meta.height) == (100, 200)  # the JPEG: the image's pixels


def test_crop_frame_mode_is_the_old_behaviour(frames):
    """crop: frame ignores boxes: one whole-frame JPEG per frame, the strongest trigger named, no crop fields,
    and the same ids as a selector given no boxes (the behaviour before crops)."""
    b = {1: (100.0, 100.0, 200.0, 300.0), 2: (300.0, 100.0, 400.0, 300.0), 3: (10.0, 10.0, 30.0, 30.0)}

    def run(sel, boxes: bool):
        out = []
        for i, ups in enumerate(
            [[(1, 0.6, True), (2, 0.9, True)], [(1, 0.6, False), (2, 0.9, False)], [(3, 0.5, False)], [(1, 0.8, False)]]
        ):
            tu = [TrackUpdate(t, sc, n, b[t] if boxes else None) for t, sc, n in ups]
            shot = sel.process("cam", frames[i], T0 + timedelta(seconds=6 * i), i, tu)
            out.append(([(m, j) for m, j in shot.keyframes], shot.ref, [shot.ref_for(t) for t, *_ in ups]))
        return out

    framed = run(_sel(crop="frame", interval_s=5.0, track_cooldown_s=1.0), True)
    old = run(_sel(crop="frame", interval_s=5.0, track_cooldown_s=1.0), False)
    assert framed == old
    assert [[(m.reason.value, m.track_id) for m, _ in kfs] for kfs, _, _ in framed] == [
        [("track_start", 2)],
        [("interval", None)],
        [("track_start", 3)],
        [("score_improved", 1)],
    ]
    for kfs, ref, refs in framed:
        assert len(kfs) == 1 and kfs[0][0].crop is None and kfs[0][0].frame is None
        assert kfs[0][0].width == frames[0].shape[1] and all(r == ref for r in refs)
        assert {k for k, _ in encode_keyframe(*kfs[0])[2]}.isdisjoint({"crop", "frame"})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    box=st.tuples(*[st.floats(allow_nan=False, width=64)] * 4),
    size=st.tuples(st.integers(0, 5000), st.integers(0, 5000)),
    margin=st.floats(0.0, 2.0),
    min_px=st.integers(8, 4096),
)
def test_any_box_gives_a_valid_crop_or_a_skip(box, size, margin, min_px):
    r = crop_box(box, size, margin, min_px)
    if r is None:
        return
    w, h = size
    x1, y1, x2, y2 = r
    assert all(isinstance(v, int) for v in r)
    assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
    assert x2 - x1 >= min(min_px, w) and y2 - y1 >= min(min_px, h)
    bx1, by1, bx2, by2 = min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])
    if 0 <= bx1 and bx2 <= w and 0 <= by1 and by2 <= h:  # a box inside the frame is inside its crop
        assert x1 <= bx1 and bx2 <= x2 and y1 <= by1 and by2 <= y2


_SMALL = np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    boxes=st.lists(
        st.one_of(st.none(), st.tuples(*[st.floats(allow_nan=True, allow_infinity=True, width=32)] * 4)),
        min_size=1,
        max_size=6,
    ),
    geometry=st.one_of(
        st.none(),
        st.tuples(
            st.integers(-5, 4000),
            st.integers(-5, 4000),
            st.tuples(st.floats(-100, 4000), st.floats(-100, 4000)),
            st.floats(allow_nan=True),
        ),
    ),
)
def test_selector_never_raises_on_any_box_and_every_keyframe_is_valid(boxes, geometry):
    s = KeyframeSelector(KeyframePolicy(interval_s=None, max_crops_per_frame=2, crop_min_px=8), "agent-kf")
    ups = [TrackUpdate(i + 1, 0.5, True, b) for i, b in enumerate(boxes)]
    got = []
    for i in range(len(boxes) + 1):
        got += s.process("cam", _SMALL, T0 + timedelta(seconds=i), i, ups if i == 0 else []).keyframes
    # Every track got its keyframe: its own crop (exactly once), or the whole frame that tracks without a crop share.
    ids = {m.keyframe_id for m, _ in got}
    assert all(s.track_ref("cam", u.track_id).keyframe_id in ids for u in ups)
    crops = [m.track_id for m, _ in got if m.crop is not None]
    assert len(crops) == len(set(crops)) and len([m for m, _ in got if m.crop is None]) <= 1
    for meta, jpeg in got:
        back, _ = decode_keyframe(*encode_keyframe(meta, jpeg))
        assert back == meta
        if meta.crop is not None:
            _crop_of(meta)
