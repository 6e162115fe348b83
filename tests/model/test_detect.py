"""End-to-end fp32 detection on the two sample images, against boxes pinned from a verified run.

The pinned boxes were measured with this importer + engine (letterbox 640, conf 0.25,
NMS 0.45) after checking the importer against OpenCV's darknet reader; a wrong
importer (channel order, decode, anchors, letterbox inverse) moves or loses them.
"""

import numpy as np
import pytest

from edge_agent.detections import box_iou

EXPECTED = {
    "bus.jpg": [
        ("person", [46.7, 382.0, 206.3, 886.9]),
        ("person", [688.5, 369.7, 810.0, 889.0]),
        ("person", [211.1, 401.6, 353.5, 847.0]),
        ("bus", [173.2, 249.6, 809.5, 778.3]),
    ],
    "zidane.jpg": [
        ("person", [124.0, 179.9, 711.2, 720.0]),
        ("person", [693.2, 28.0, 1174.8, 720.0]),
        ("person", [351.6, 187.7, 1004.0, 717.2]),
    ],
}


@pytest.mark.parametrize("image", sorted(EXPECTED))
def test_fp32_finds_expected_objects(fp32_engine, sample_images, image):
    frame = sample_images[image]
    det = fp32_engine.infer_one(frame)
    names = [fp32_engine.class_names[c] for c in det.class_ids]
    h, w = frame.shape[:2]
    assert (det.xyxy[:, [0, 2]] <= w).all() and (det.xyxy[:, [1, 3]] <= h).all() and (det.xyxy >= 0).all()
    for cls, box in EXPECTED[image]:
        cand = det.xyxy[[n == cls for n in names]]
        assert len(cand), f"{image}: no {cls} detected (got {names})"
        best = box_iou(np.array([box], np.float32), cand).max()
        assert best >= 0.7, f"{image}: expected {cls} at {box}, best IoU {best:.2f} among {cand.round(1).tolist()}"


def test_bus_has_three_confident_people_and_a_bus(fp32_engine, sample_images):
    det = fp32_engine.infer_one(sample_images["bus.jpg"])
    names = np.array([fp32_engine.class_names[c] for c in det.class_ids])
    assert ((names == "person") & (det.scores > 0.8)).sum() >= 3
    assert ((names == "bus") & (det.scores > 0.5)).sum() >= 1


def test_class_filter(built_model, model_store, sample_images):
    from edge_agent.inference import InferenceConfig, InferenceEngine

    eng = InferenceEngine(
        InferenceConfig(model_dir=str(model_store), variant="fp32", providers=["cpu"], classes=["bus"])
    )
    det = eng.infer_one(sample_images["bus.jpg"])
    assert len(det) >= 1 and set(det.class_ids.tolist()) == {5}
