"""Detection post-processing: confidence filter, class-aware NMS, mapping back to the frame.

Input is the documented model output (see :mod:`model_zoo.darknet`): ``boxes``
(B, N, 4) x1 y1 x2 y2 in *network input* pixels and ``scores`` (B, N, C). Each
box keeps its best class (single label per box, as darknet does). NMS is greedy
and class-aware (boxes of different classes never suppress each other), done in
numpy with the coordinate-offset trick so all classes go through one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from edge_agent.detections import Detections


class FrameMeta(Protocol):
    def to_original(self, xyxy: np.ndarray) -> np.ndarray: ...


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    class_ids: np.ndarray | None = None,
    max_keep: int | None = None,
) -> np.ndarray:
    """Greedy NMS; indices of kept boxes, highest score first. Class-aware when ``class_ids`` given."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    if boxes.shape[0] == 0:
        return np.zeros((0,), np.int64)
    if class_ids is not None:
        # Shift each class to its own region so boxes of different classes cannot overlap.
        span = float(np.abs(boxes).max()) * 2 + 1.0
        boxes = boxes + (np.asarray(class_ids, np.float32) * span)[:, None]
    x1, y1, x2, y2 = boxes.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if max_keep is not None and len(keep) >= max_keep:
            break
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, np.int64)


def postprocess(
    boxes: np.ndarray,
    scores: np.ndarray,
    metas: Sequence[FrameMeta | None],
    *,
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.45,
    class_filter: np.ndarray | Sequence[int] | None = None,
    max_detections: int = 300,
) -> list[Detections]:
    """Turn a batch of raw model outputs into one :class:`Detections` per frame.

    ``metas[i].to_original`` maps input-pixel boxes to the original frame (None = leave as is).
    """
    out: list[Detections] = []
    allowed = None
    if class_filter is not None:
        allowed = np.zeros(scores.shape[-1], bool)
        allowed[np.asarray(list(class_filter), np.int64)] = True
    for i in range(boxes.shape[0]):
        sc = scores[i]
        if allowed is not None:
            sc = np.where(allowed[None, :], sc, 0.0)
        cls = sc.argmax(1)
        conf = np.take_along_axis(sc, cls[:, None], 1)[:, 0]
        m = conf >= conf_threshold
        if not m.any():
            out.append(Detections.empty())
            continue
        b, conf, cls = boxes[i][m], conf[m], cls[m]
        keep = nms(b, conf, iou_threshold, cls, max_keep=max_detections)
        b = b[keep].astype(np.float32)
        meta = metas[i] if i < len(metas) else None
        if meta is not None:
            b = np.asarray(meta.to_original(b), np.float32)
        out.append(Detections(b, conf[keep].astype(np.float32), cls[keep].astype(np.int32)))
    return out


def cxcywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    xy, wh = b[..., :2], b[..., 2:4]
    return np.concatenate([xy - wh / 2, xy + wh / 2], -1)
