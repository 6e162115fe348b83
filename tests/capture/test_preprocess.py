"""Letterbox preprocessing and its inverse transform."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_agent.preprocess import Letterbox, letterbox_geometry


@pytest.mark.parametrize("hw", [(576, 768), (1080, 1920), (1920, 1080), (480, 640), (100, 50), (640, 640)])
def test_inverse_round_trips_boxes(hw):
    h, w = hw
    lb = Letterbox((640, 640))
    img = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    _t, meta = lb(img)
    rng = np.random.default_rng(1)
    xy1 = rng.uniform(0, [w * 0.8, h * 0.8], (200, 2))
    xy2 = xy1 + rng.uniform(1, [w * 0.2, h * 0.2], (200, 2))
    boxes = np.concatenate([xy1, xy2], axis=1).astype(np.float32)
    back = meta.to_original(meta.to_model(boxes))
    np.testing.assert_allclose(back, boxes, atol=1e-3 * max(h, w))
    # model-space boxes lie inside the resized (unpadded) area
    m = meta.to_model(boxes)
    left, top = meta.pad
    nh, nw = meta.resized
    assert m[:, 0].min() >= left - 1e-3 and m[:, 2].max() <= left + nw + 1e-3
    assert m[:, 1].min() >= top - 1e-3 and m[:, 3].max() <= top + nh + 1e-3


def test_letterbox_geometry_and_pixels():
    lb = Letterbox((640, 640))
    img = np.zeros((576, 768, 3), np.uint8)
    img[:, :, 0] = 255  # pure blue in BGR
    img[100:200, 300:400] = (0, 0, 255)  # a red square
    t, meta = lb(img)
    assert t.shape == (1, 3, 640, 640) and t.dtype == np.float32
    assert meta.scale == pytest.approx(640 / 768) and meta.pad == (0, 80) and meta.resized == (480, 640)
    # padding is 114 in every channel
    np.testing.assert_allclose(t[0, :, :80, :], 114 / 255, atol=1e-6)
    np.testing.assert_allclose(t[0, :, 560:, :], 114 / 255, atol=1e-6)
    # RGB order: blue lands in channel 2
    assert t[0, 2, 300, 10] == pytest.approx(1.0) and t[0, 0, 300, 10] == pytest.approx(0.0)
    # the red square: a box around it maps back to where it was
    ys, xs = np.nonzero(t[0, 0] > 0.9)
    box_model = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    back = meta.to_original(box_model)[0]
    np.testing.assert_allclose(back, [300, 100, 400, 200], atol=2.0)
    # matches OpenCV's own blob from the canvas
    canvas, _ = lb.canvas(img)
    ref = cv2.dnn.blobFromImage(canvas, 1 / 255.0, swapRB=True)
    np.testing.assert_allclose(t, ref, atol=1e-6)


def test_buffers_are_reused_and_padding_survives_geometry_changes():
    lb = Letterbox((320, 320))
    a = np.full((240, 320, 3), 10, np.uint8)  # landscape: pads top/bottom
    b = np.full((320, 160, 3), 200, np.uint8)  # portrait: pads left/right
    t1, _ = lb(a)
    ptr = t1.__array_interface__["data"][0]
    t2, mb = lb(b)
    assert t2.__array_interface__["data"][0] == ptr
    # after switching geometry, the old content must not leak into the new padding
    assert mb.pad == (80, 0)
    np.testing.assert_allclose(t2[0, :, :, :80], 114 / 255, atol=1e-6)
    np.testing.assert_allclose(t2[0, :, :, 80:240], 200 / 255, atol=1e-6)
    t3, _ = lb(a)
    np.testing.assert_allclose(t3[0, :, :40, :], 114 / 255, atol=1e-6)
    np.testing.assert_allclose(t3[0, :, 40:280, :], 10 / 255, atol=1e-6)
    out = np.empty((3, 320, 320), np.float32)
    t4, _ = lb(a, out=out)
    assert t4 is out
    with pytest.raises(ValueError):
        lb(a, out=np.empty((3, 100, 100), np.float32))


def test_batch_and_fp16():
    imgs = [
        np.random.default_rng(i).integers(0, 255, shape, dtype=np.uint8)
        for i, shape in enumerate([(576, 768, 3), (1080, 1920, 3), (300, 200, 3)])
    ]
    lb = Letterbox((640, 640))
    buf = np.empty((4, 3, 640, 640), np.float32)
    batch, metas = lb.batch(imgs, out=buf)
    assert batch.shape == (3, 3, 640, 640) and np.shares_memory(batch, buf)
    for i, img in enumerate(imgs):
        single, meta = Letterbox((640, 640))(img)
        np.testing.assert_array_equal(batch[i], single[0])
        assert meta == metas[i]
    lb16 = Letterbox((640, 640), dtype=np.float16)
    t16, _ = lb16(imgs[0])
    t32, _ = lb(imgs[0])
    assert t16.dtype == np.float16
    np.testing.assert_allclose(t16.astype(np.float32), t32, atol=1e-3)
    with pytest.raises(ValueError):
        lb.batch(imgs, out=np.empty((2, 3, 640, 640), np.float32))


def test_to_original_clips_and_no_upscale_option():
    meta = letterbox_geometry((576, 768), (640, 640))
    out = meta.to_original(np.array([[-50, -50, 700, 700]], np.float32))
    assert out.tolist() == [[0.0, 0.0, 768.0, 576.0]]
    small = letterbox_geometry((100, 200), (640, 640), scaleup=False)
    assert small.scale == 1.0 and small.resized == (100, 200) and small.pad == (220, 270)


def test_bgr_and_custom_scale_options():
    img = np.zeros((64, 64, 3), np.uint8)
    img[..., 0] = 200  # blue
    for dtype in (np.float32, np.float16):
        t, meta = Letterbox(64, 0, False, 1.0, dtype=dtype)(img)  # keep BGR, no scaling
        assert t.dtype == dtype
        assert float(t[0, 0, 5, 5]) == 200.0 and float(t[0, 2, 5, 5]) == 0.0
        assert (meta.pad_x, meta.pad_y, meta.orig_h, meta.orig_w) == (0, 0, 64, 64)
        t, _ = Letterbox(64, dtype=dtype)(img)  # default: RGB, /255
        assert float(t[0, 2, 5, 5]) == pytest.approx(200 / 255, abs=1e-3) and float(t[0, 0, 5, 5]) == 0.0
