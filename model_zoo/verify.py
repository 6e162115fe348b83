"""Detection agreement of a variant (int8, fp16) with the fp32 reference on real frames.

Per frame, detections of the two models are matched greedily (highest score
first) on *same class and IoU >= 0.5*. Over the whole frame set:

- ``precision`` = matched / detections of the variant (variant does not invent boxes)
- ``recall``    = matched / detections of fp32 (variant does not lose boxes)
- ``agreement`` = F1 of the two = 2*matched / (n_variant + n_fp32)
- ``mean_iou``  of the matched pairs
- ``class_agnostic_agreement``: the same F1 when the class is ignored (how much of the
  disagreement is the two models naming one box differently, e.g. dog vs sheep)

The fixed frame set: vtest.avi frames at *odd* indices (calibration uses even
ones) plus the bus/zidane sample images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edge_agent.detections import Detections, box_iou
from edgesight.samples import find_video, read_video_frames, sample_images_dir


@dataclass
class Agreement:
    frames: int
    n_ref: int
    n_var: int
    matched: int
    mean_iou: float
    matched_any_class: int = 0

    @property
    def precision(self) -> float:
        return self.matched / self.n_var if self.n_var else 1.0

    @property
    def recall(self) -> float:
        return self.matched / self.n_ref if self.n_ref else 1.0

    @property
    def agreement(self) -> float:
        tot = self.n_ref + self.n_var
        return 2 * self.matched / tot if tot else 1.0

    @property
    def class_agnostic_agreement(self) -> float:
        tot = self.n_ref + self.n_var
        return 2 * self.matched_any_class / tot if tot else 1.0

    def as_dict(self) -> dict:
        return {
            **asdict(self),
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "agreement": round(self.agreement, 4),
            "class_agnostic_agreement": round(self.class_agnostic_agreement, 4),
        }


def match(
    ref: Detections, var: Detections, iou_thr: float = 0.5, class_aware: bool = True
) -> list[tuple[int, int, float]]:
    """Greedy matching (class-aware by default); list of (ref index, var index, iou)."""
    if len(ref) == 0 or len(var) == 0:
        return []
    iou = box_iou(ref.xyxy, var.xyxy)
    if class_aware:
        iou[ref.class_ids[:, None] != var.class_ids[None, :]] = 0.0
    pairs = []
    free = np.ones(len(var), bool)
    for i in np.argsort(-ref.scores, kind="stable"):
        row = np.where(free, iou[i], -1.0)
        j = int(np.argmax(row))
        if row[j] >= iou_thr:
            free[j] = False
            pairs.append((int(i), j, float(row[j])))
    return pairs


def agreement(refs: Sequence[Detections], vars_: Sequence[Detections], iou_thr: float = 0.5) -> Agreement:
    m, ma, ious, nr, nv = 0, 0, [], 0, 0
    for r, v in zip(refs, vars_):
        p = match(r, v, iou_thr)
        m += len(p)
        ma += len(match(r, v, iou_thr, class_aware=False))
        ious += [x[2] for x in p]
        nr += len(r)
        nv += len(v)
    return Agreement(len(refs), nr, nv, m, float(np.mean(ious)) if ious else 0.0, ma)


def verification_frames(
    n_video: int = 40,
    video: str | Path | None = None,
    include_samples: bool = True,
    start: int = 1,
    step: int | None = None,
) -> list[np.ndarray]:
    """The fixed evaluation set: ``n_video`` vtest frames at odd indices + sample images."""
    frames: list[np.ndarray] = []
    v = Path(video) if video else find_video()
    if v is not None and n_video > 0:
        step = step or max(2, (790 // n_video) // 2 * 2)
        frames += read_video_frames(v, range(start, start + step * n_video, step))
    d = sample_images_dir()
    if include_samples and d is not None:
        import cv2

        frames += [cv2.imread(str(p)) for p in sorted(d.glob("*.jpg"))]
    return frames


def run_detector(
    engine, frames: Sequence[np.ndarray], batch: int = 1, progress: Callable[[int], None] | None = None
) -> list[Detections]:
    out: list[Detections] = []
    for i in range(0, len(frames), batch):
        out += engine.infer(list(frames[i : i + batch]))
        if progress:
            progress(min(batch, len(frames) - i))
    return out


def verify(
    name: str = "yolov4-tiny",
    variants: Sequence[str] = ("int8",),
    store: str | Path | None = None,
    frames: Sequence[np.ndarray] | None = None,
    conf_threshold: float = 0.25,
    threads: int = 0,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Agreement]:
    from edge_agent.inference import InferenceConfig, InferenceEngine

    frames = list(frames) if frames is not None else verification_frames()

    def engine(variant: str):
        return InferenceEngine(
            InferenceConfig(
                model=name,
                model_dir=str(store) if store else None,
                variant=variant,
                providers=["cpu"],
                conf_threshold=conf_threshold,
                intra_op_threads=threads,
            )
        )

    ref = run_detector(engine("fp32"), frames, progress=progress)
    return {v: agreement(ref, run_detector(engine(v), frames, progress=progress)) for v in variants}
