"""ONNX Runtime detector: provider/variant selection, letterbox, batched run, post-processing.

Frames in (BGR uint8, any size), :class:`~edge_agent.detections.Detections` out,
boxes in original-frame pixels. Provider choice: the configured list, else by
availability TensorRT > CUDA > CPU; a requested provider that this onnxruntime
build lacks (or that fails to initialise) is logged with the reason and CPU is
used. ``variant: auto`` = fp16 on a GPU provider, int8 on CPU (fp32 if not built).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge_agent.detections import Detections
from edge_agent.preprocess import Letterbox
from edgesight import metrics
from edgesight.log import get_logger
from edgesight.modelstore import ModelStore, StoredModel

from .postprocess import cxcywh_to_xyxy, postprocess
from .settings import InferenceConfig

log = get_logger("inference")

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")

LATENCY = metrics.histogram(
    "inference_latency_seconds", "Wall time of one model run (pre+infer+post) per batch", ["model", "variant"]
)
BATCH_SIZE = metrics.histogram(
    "inference_batch_size", "Frames per model run", ["model"], buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64)
)
FRAMES = metrics.counter("inference_frames_total", "Frames run through the detector", ["model", "variant"])


# --- provider selection ---------------------------------------------------------------------------------------------


def select_providers(requested: Sequence[str] | None = None, available: Sequence[str] | None = None) -> list[str]:
    """Providers to try, in order. Unavailable requested ones are dropped with a warning; CPU always last."""
    available = list(ort.get_available_providers() if available is None else available)
    if not requested:
        chosen = [p for p in PREFERENCE if p in available]
    else:
        chosen = []
        for p in requested:
            if p in available:
                chosen.append(p)
            else:
                log.warning(
                    f"{p} requested but not available in this onnxruntime build "
                    f"(available: {', '.join(available)}); falling back to CPUExecutionProvider",
                    extra={"requested": p, "available": available},
                )
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def choose_variant(variant: str, providers: Sequence[str], model: StoredModel) -> str:
    if variant != "auto":
        return variant
    on_gpu = any(p in GPU_PROVIDERS for p in providers)
    for v in ("fp16", "fp32") if on_gpu else ("int8", "fp32"):
        if model.has(v):
            return v
    raise FileNotFoundError(f"model {model.name} has no usable variant built in {model.root}")


def session_options(intra: int = 0, inter: int = 1, allow_spinning: bool = True) -> ort.SessionOptions:
    so = ort.SessionOptions()
    if not allow_spinning:  # on a box shared with capture/tracking threads, idle workers should sleep
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if intra:
        so.intra_op_num_threads = intra
    if inter:
        so.inter_op_num_threads = inter
    so.log_severity_level = 3
    return so


def provider_options(providers: Sequence[str], variant: str, cache_dir: Path) -> list[tuple[str, dict]]:
    out = []
    for p in providers:
        if p == "TensorrtExecutionProvider":
            cache_dir.mkdir(parents=True, exist_ok=True)
            out.append(
                (
                    p,
                    {
                        "trt_fp16_enable": variant == "fp16",
                        "trt_engine_cache_enable": True,
                        "trt_engine_cache_path": str(cache_dir),
                        "trt_timing_cache_enable": True,
                        "trt_timing_cache_path": str(cache_dir),
                        "trt_max_workspace_size": 2 << 30,
                    },
                )
            )
        else:
            out.append((p, {}))
    return out


def make_session(
    path: str | Path,
    providers: Sequence[str],
    variant: str = "fp32",
    *,
    intra: int = 0,
    inter: int = 1,
    cache_dir: Path | None = None,
    allow_spinning: bool = True,
) -> ort.InferenceSession:
    cache_dir = cache_dir or Path(path).parent / "trt_cache"
    sess = ort.InferenceSession(
        str(path),
        sess_options=session_options(intra, inter, allow_spinning),
        providers=provider_options(providers, variant, cache_dir),
    )
    got = sess.get_providers()
    for p in providers:
        if p not in got:
            log.warning(
                f"{p} could not be initialised (missing CUDA/TensorRT libraries?); running on {', '.join(got)}",
                extra={"requested": p, "active": got},
            )
    return sess


# --- the engine -----------------------------------------------------------------------------------------------------


class InferenceEngine:
    """Thread-safe detector over one ONNX Runtime session."""

    def __init__(
        self,
        config: InferenceConfig | None = None,
        *,
        store: ModelStore | None = None,
        model_path: str | Path | None = None,
    ):
        self.config = cfg = config or InferenceConfig()
        self.store = store or ModelStore(cfg.model_dir)
        self.model = self.store.get(cfg.model)
        self.providers = select_providers(cfg.providers or None)
        self.variant = choose_variant(cfg.variant, self.providers, self.model)
        path = Path(model_path) if model_path else self.model.path(self.variant, verify=cfg.verify_sha256)
        self.class_names = self.model.class_names()
        cache = Path(cfg.trt_cache_dir) if cfg.trt_cache_dir else self.model.root / "trt_cache"

        def session(model_file: Path, providers: Sequence[str]) -> ort.InferenceSession:
            return make_session(
                model_file,
                providers,
                self.variant,
                intra=cfg.intra_op_threads,
                inter=cfg.inter_op_threads,
                cache_dir=cache,
                allow_spinning=cfg.allow_spinning,
            )

        self.session = session(path, self.providers)
        self.active_providers = self.session.get_providers()
        if (
            cfg.variant == "auto"
            and model_path is None
            and not any(p in GPU_PROVIDERS for p in self.active_providers)
            and self.variant != choose_variant("auto", self.active_providers, self.model)
        ):
            # a GPU provider was listed but failed to initialise: use the CPU variant instead of fp16-on-CPU
            self.variant = choose_variant("auto", self.active_providers, self.model)
            path = self.model.path(self.variant, verify=cfg.verify_sha256)
            log.warning(f"GPU provider unavailable at run time; using the {self.variant} variant on CPU")
            self.session = session(path, self.active_providers)
        m = self.model.manifest
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_dtype = np.float16 if "float16" in inp.type else np.float32
        b = inp.shape[0]
        self.max_model_batch = b if isinstance(b, int) and b > 0 else None
        self.layout = m.output.layout
        self.letterbox = Letterbox(
            m.input.size, m.input.pad_value, m.input.color == "RGB", m.input.scale, dtype=self.input_dtype
        )
        self.class_filter = self._class_filter(cfg.classes)
        self._lock = threading.Lock()
        log.info(
            "inference engine ready",
            extra={
                "model": m.name,
                "variant": self.variant,
                "file": str(path),
                "providers": self.active_providers,
                "input": list(m.input.size),
                "intra_op_threads": cfg.intra_op_threads,
            },
        )

    def _class_filter(self, classes: list[str | int] | None) -> np.ndarray | None:
        if not classes:
            return None
        ids = []
        for c in classes:
            if isinstance(c, int) or (isinstance(c, str) and c.isdigit()):
                ids.append(int(c))
            elif c in self.class_names:
                ids.append(self.class_names.index(c))
            else:
                raise ValueError(f"class filter: unknown class {c!r} for model {self.model.name}")
        return np.asarray(ids, np.int64)

    @property
    def on_gpu(self) -> bool:
        return any(p in GPU_PROVIDERS for p in self.active_providers)

    def run_raw(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the network on a preprocessed (B, 3, H, W) batch; returns (boxes xyxy input px, scores)."""
        chunks = (
            [batch]
            if self.max_model_batch is None
            else [batch[i : i + self.max_model_batch] for i in range(0, len(batch), self.max_model_batch)]
        )
        boxes, scores = [], []
        for ch in chunks:
            outs = self.session.run(None, {self.input_name: ch.astype(self.input_dtype, copy=False)})
            if self.layout == "yolov8":
                o = np.asarray(outs[0], np.float32).transpose(0, 2, 1)
                boxes.append(cxcywh_to_xyxy(o[..., :4]))
                scores.append(o[..., 4:])
            else:
                names = [o.name for o in self.session.get_outputs()]
                boxes.append(np.asarray(outs[names.index("boxes")], np.float32))
                scores.append(np.asarray(outs[names.index("scores")], np.float32))
        if len(chunks) == 1:
            return boxes[0], scores[0]
        return np.concatenate(boxes), np.concatenate(scores)

    def infer(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """Detect on a list of BGR frames (one batched run); one Detections per frame."""
        if not frames:
            return []
        t0 = time.perf_counter()
        with self._lock:  # the letterbox buffer is shared
            batch, metas = self.letterbox.batch(frames)
            boxes, scores = self.run_raw(batch)
        cfg = self.config
        dets = postprocess(
            boxes,
            scores,
            metas,
            conf_threshold=cfg.conf_threshold,
            iou_threshold=cfg.nms_iou,
            class_filter=self.class_filter,
            max_detections=cfg.max_detections,
        )
        LATENCY.labels(self.model.name, self.variant).observe(time.perf_counter() - t0)
        BATCH_SIZE.labels(self.model.name).observe(len(frames))
        FRAMES.labels(self.model.name, self.variant).inc(len(frames))
        return dets

    def infer_one(self, frame: np.ndarray) -> Detections:
        return self.infer([frame])[0]
