"""Object detection on the edge: ONNX Runtime engine, cross-camera batcher, post-processing.

from edge_agent.inference import InferenceConfig, InferenceEngine, Batcher
engine = InferenceEngine(InferenceConfig(model="yolov4-tiny"))
dets = engine.infer_one(bgr_frame)          # Detections, boxes in frame pixels
"""

from .batcher import Batcher
from .engine import InferenceEngine, select_providers
from .postprocess import box_iou, nms, postprocess
from .settings import InferenceConfig

__all__ = ["Batcher", "InferenceConfig", "InferenceEngine", "box_iou", "nms", "postprocess", "select_providers"]
