"""The darknet importer against OpenCV's independent darknet reader (cv2.dnn.readNetFromDarknet)."""

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from model_zoo.darknet import DarknetError, convert, parse_cfg

CFG = "cfgs/yolov4_tiny/yolov4-tiny.cfg"
WEIGHTS = "cfgs/yolov4_tiny/yolov4-tiny.weights"


@pytest.fixture(scope="module")
def converted(yolo_dir):
    return convert(yolo_dir / CFG, yolo_dir / WEIGHTS, 640, expose_heads=True)


@pytest.fixture(scope="module")
def session(converted):
    return ort.InferenceSession(converted.model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def blob(sample_images):
    return cv2.dnn.blobFromImage(sample_images["bus.jpg"], 1 / 255.0, (640, 640), swapRB=True, crop=False)


@pytest.fixture(scope="module")
def opencv_net(yolo_dir):
    return cv2.dnn.readNetFromDarknet(str(yolo_dir / CFG), str(yolo_dir / WEIGHTS))


def test_all_weights_consumed_and_layout(converted):
    assert converted.weights_consumed == 6_062_814
    assert converted.num_boxes == 6000 and converted.num_classes == 80
    g = converted.model.graph
    assert [d.dim_param or d.dim_value for d in g.input[0].type.tensor_type.shape.dim] == ["batch", 3, 640, 640]
    assert [o.name for o in g.output][:2] == ["boxes", "scores"]


def test_raw_head_outputs_match_opencv(converted, session, blob, opencv_net):
    outs = session.run(None, {"images": blob})
    opencv_net.setInput(blob)
    ref = opencv_net.forward(["conv_29", "conv_36"])  # the two 255-channel YOLO head convolutions
    for mine, theirs in zip(outs[2:], ref):
        assert mine.shape == theirs.shape
        scale = np.abs(theirs).max()
        np.testing.assert_allclose(mine, theirs, atol=2e-5 * scale + 1e-4, rtol=1e-3)


def test_decoded_boxes_and_scores_match_opencv_yolo_layers(session, blob, opencv_net):
    boxes, scores = session.run(None, {"images": blob})[:2]
    opencv_net.setInput(blob)
    ref = np.concatenate(opencv_net.forward(opencv_net.getUnconnectedOutLayersNames()), 0)  # (6000, 85), same order
    cxcy, wh = ref[:, :2] * 640, ref[:, 2:4] * 640
    np.testing.assert_allclose(boxes[0], np.concatenate([cxcy - wh / 2, cxcy + wh / 2], 1), atol=0.01)
    kept = ref[:, 5:] > 0  # OpenCV zeroes class scores below its own threshold
    assert kept.sum() > 20
    np.testing.assert_allclose(scores[0][kept], ref[:, 5:][kept], atol=1e-4)
    assert (scores[0][~kept] < 0.25).all()


def test_dynamic_batch_equals_single(session, sample_images):
    a = cv2.dnn.blobFromImage(sample_images["bus.jpg"], 1 / 255.0, (640, 640), swapRB=True)
    b = cv2.dnn.blobFromImage(sample_images["zidane.jpg"], 1 / 255.0, (640, 640), swapRB=True)
    both = session.run(["boxes", "scores"], {"images": np.concatenate([a, b])})
    for i, x in enumerate((a, b)):
        single = session.run(["boxes", "scores"], {"images": x})
        for s, m in zip(single, both):
            np.testing.assert_allclose(m[i], s[0], atol=1e-3)


def test_mismatched_cfg_is_rejected(yolo_dir, tmp_path):
    text = (yolo_dir / CFG).read_text().replace("filters=512", "filters=384", 1)
    bad = tmp_path / "bad.cfg"
    bad.write_text(text)
    with pytest.raises(DarknetError, match="weights"):
        convert(bad, yolo_dir / WEIGHTS, 640)


def test_unsupported_section_is_rejected(yolo_dir, tmp_path):
    bad = tmp_path / "bad.cfg"
    bad.write_text("[net]\nwidth=64\nheight=64\n[sam]\nfrom=-1\n")
    with pytest.raises(DarknetError, match=r"unsupported section \[sam\]"):
        convert(bad, yolo_dir / WEIGHTS, 64)


def test_parse_cfg_handles_comments_and_spacing():
    secs = parse_cfg("# c\n[net]\nwidth = 416 # x\n\n[route]\nlayers = -1, 23\n")
    assert secs[0].get("width", cast=int) == 416
    assert secs[1].ints("layers") == [-1, 23]
