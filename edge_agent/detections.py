"""The in-process hand-off between inference, tracking and event building.

Arrays, not per-object Python objects: N detections of one frame, boxes in
pixel coordinates of the *original* frame (after the letterbox inverse).
:func:`box_iou` is the one IoU of xyxy boxes (tracking, model verification, tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True)
class Detections:
    xyxy: np.ndarray  # (N, 4) float32, x1 y1 x2 y2 in original-frame pixels
    scores: np.ndarray  # (N,) float32
    class_ids: np.ndarray  # (N,) int32
    tracker_ids: np.ndarray | None = None  # (N,) int64 once tracked, else None
    zones: list[list[str]] = field(default_factory=list)  # per detection, zone names it is in

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int32))

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def select(self, mask: np.ndarray) -> Detections:
        return Detections(
            self.xyxy[mask],
            self.scores[mask],
            self.class_ids[mask],
            None if self.tracker_ids is None else self.tracker_ids[mask],
            [z for z, keep in zip(self.zones, mask) if keep] if self.zones else [],
        )


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes, float64; 0 where the union is empty."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
