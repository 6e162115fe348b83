"""Object detection on the edge: ONNX Runtime engine, cross-camera batcher, post-processing.

from edge_agent.inference import InferenceConfig, InferenceEngine, Batcher
engine = InferenceEngine(InferenceConfig(model="yolov4-tiny"))
dets = engine.infer_one(bgr_frame)          # Detections, boxes in frame pixels

Names are imported on first use, so ``from edge_agent.inference.settings import ...``
does not load onnxruntime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_agent._lazy import lazy_exports

if TYPE_CHECKING:
    from .batcher import Batcher
    from .engine import InferenceEngine, select_providers
    from .postprocess import nms, postprocess
    from .settings import InferenceConfig

__all__ = ["Batcher", "InferenceConfig", "InferenceEngine", "nms", "postprocess", "select_providers"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Batcher": ".batcher",
        "InferenceEngine": ".engine",
        "select_providers": ".engine",
        "nms": ".postprocess",
        "postprocess": ".postprocess",
        "InferenceConfig": ".settings",
    },
)
