"""Keyframe policy: track start, score improvement margin, per-camera interval, size bound."""

from __future__ import annotations

from datetime import timedelta

import cv2
import numpy as np
import pytest

from edge_agent.publish import KeyframePolicy, KeyframeSelector, TrackUpdate, encode_jpeg_bounded
from edgesight.wire import KeyframeMeta
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
