"""Configuration of the detector (the ``inference:`` section of the edge agent config)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from edgesight.config import StrictModel

Variant = Literal["auto", "fp32", "fp16", "int8"]
PROVIDER_ALIASES = {
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "gpu": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


class InferenceConfig(StrictModel):
    """How frames are turned into detections.

    ``variant: auto`` picks fp16 on a GPU provider (TensorRT/CUDA) and int8 on CPU,
    falling back to fp32 when that variant is not built. ``providers`` empty = by
    availability, TensorRT > CUDA > CPU; short names (tensorrt, cuda, cpu) or full
    ONNX Runtime provider names are accepted. CPU is always appended as a fallback.
    """

    model: str = "yolov4-tiny"
    model_dir: str | None = None  # model store; default $EDGESIGHT_MODEL_DIR or ~/.cache/edgesight/models
    variant: Variant = "auto"
    providers: list[str] = Field(default_factory=list)
    intra_op_threads: int = Field(0, ge=0)  # 0 = ONNX Runtime default (all physical cores)
    inter_op_threads: int = Field(1, ge=0)
    # ORT worker threads sleep when idle instead of spinning: the edge box shares its cores with capture,
    # tracking and publish threads (measured with ops/bench/pipeline_bench.py: spinning costs the pipeline
    # several % of its inference ceiling with 4 cameras on 2 cores). True for a dedicated inference box.
    allow_spinning: bool = False
    batch_max_size: int = Field(4, ge=1, le=64)
    batch_max_wait_ms: float = Field(10.0, ge=0, le=1000)
    conf_threshold: float = Field(0.25, gt=0, le=1)
    nms_iou: float = Field(0.45, gt=0, le=1)
    classes: list[str | int] | None = None  # class filter by name or id; None = all
    max_detections: int = Field(300, ge=1)
    trt_cache_dir: str | None = None  # TensorRT engine cache; default <model dir>/trt_cache
    verify_sha256: bool = True

    @field_validator("providers")
    @classmethod
    def _providers(cls, v: list[str]) -> list[str]:
        out = []
        for p in v:
            full = PROVIDER_ALIASES.get(p.lower(), p)
            if not full.endswith("ExecutionProvider"):
                raise ValueError(
                    f"unknown provider {p!r}; use tensorrt, cuda, cpu or a full ONNX Runtime provider name"
                )
            out.append(full)
        return out
