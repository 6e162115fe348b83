"""NMS and post-processing on constructed boxes (no model needed)."""

import numpy as np

from edge_agent.detections import box_iou
from edge_agent.inference.postprocess import nms, postprocess
from edge_agent.preprocess import LetterboxMeta


def test_box_iou_known_values():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 5, 5]], np.float32)
    np.testing.assert_allclose(box_iou(a, b)[0], [1.0, 50 / 150, 0.0, 0.25], rtol=1e-6)


def test_nms_suppresses_overlaps_keeps_best_first():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 9]], np.float32)
    scores = np.array([0.8, 0.9, 0.7, 0.85], np.float32)
    keep = nms(boxes, scores, 0.5)
    assert keep.tolist() == [1, 2]  # 1 beats 0 and 3 (IoU > 0.5); 2 is alone


def test_nms_threshold_is_strict_above():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], np.float32)  # IoU = 1/3
    scores = np.array([0.9, 0.8], np.float32)
    assert nms(boxes, scores, 0.34).tolist() == [0, 1]
    assert nms(boxes, scores, 0.33).tolist() == [0]


def test_nms_is_class_aware():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    classes = np.array([0, 1, 0])
    assert nms(boxes, scores, 0.5, classes).tolist() == [0, 1]
    assert nms(boxes, scores, 0.5).tolist() == [0]


def test_nms_empty_and_max_keep():
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)
    boxes = np.array([[i * 20, 0, i * 20 + 10, 10] for i in range(5)], np.float32)
    assert len(nms(boxes, np.linspace(0.9, 0.5, 5), 0.5, max_keep=3)) == 3


def test_postprocess_filters_maps_and_filters_classes():
    # 3 classes, 4 candidate boxes in a 640x640 letterboxed input of a 1280x640 frame (scale 0.5, pad_y 160)
    boxes = np.array([[[100, 200, 200, 300], [102, 202, 202, 302], [300, 300, 400, 400], [0, 0, 10, 10]]], np.float32)
    scores = np.zeros((1, 4, 3), np.float32)
    scores[0, 0, 0] = 0.9  # class 0, kept
    scores[0, 1, 0] = 0.8  # duplicate of box 0, suppressed
    scores[0, 2, 2] = 0.6  # class 2
    scores[0, 3, 1] = 0.1  # below threshold
    meta = LetterboxMeta(orig_size=(640, 1280), input_size=(640, 640), scale=0.5, pad=(0, 160), resized=(320, 640))
    (d,) = postprocess(boxes, scores, [meta], conf_threshold=0.25, iou_threshold=0.45)
    assert d.class_ids.tolist() == [0, 2]
    np.testing.assert_allclose(d.scores, [0.9, 0.6])
    np.testing.assert_allclose(d.xyxy[0], [200, 80, 400, 280])
    assert d.xyxy.dtype == np.float32 and d.class_ids.dtype == np.int32
    (d2,) = postprocess(boxes, scores, [meta], class_filter=[2])
    assert d2.class_ids.tolist() == [2]
    (d3,) = postprocess(boxes, scores * 0, [None])
    assert len(d3) == 0


def test_letterbox_meta_clips_to_frame():
    meta = LetterboxMeta(orig_size=(100, 100), input_size=(100, 120), scale=1.0, pad=(10, 0), resized=(100, 100))
    out = meta.to_original(np.array([[0, -5, 200, 50]], np.float32))
    np.testing.assert_allclose(out, [[0, 0, 100, 50]])
