"""Derived variants: static INT8 (QDQ) for CPU, FP16 for GPU.

INT8: ``onnxruntime.quantization.quantize_static`` in QDQ format, uint8
activations, int8 per-channel weights, calibrated on *real* frames (evenly spaced
frames of OpenCV's ``vtest.avi`` + the bus/zidane sample images), letterboxed
exactly as the engine does. The box decode (every node named ``decode/...`` by
:mod:`model_zoo.darknet`: sigmoid/exp/grid/anchor arithmetic, whose outputs range
over 0..640 pixels and 0..1 scores in one tensor) stays float -- quantizing it
collapses all scores to zero. Optionally the final 1x1 head convolutions (the
ones feeding the decode) stay float too (``exclude_heads``): they are a tiny part
of the compute and their outputs are the raw logits that the decode amplifies.

Concat scale unification (``unify_concat``, on by default): the inputs and the
output of every Concat (and the tensors that share their parameters through
MaxPool/Resize/Slice) get *one* quantization range, the union of their calibrated
ranges. ONNX Runtime then concatenates uint8 bytes without requantizing each
input (QLinearConcat's copy path), as TensorRT does; measured ~3 % of int8
latency on this CPU, agreement unchanged. Done in two passes over one
calibration: ranges -> unified ranges -> quantization from the cached ranges.

FP16: ``onnxruntime.transformers.float16`` with float32 inputs/outputs kept and
the decode kept float32 (box coordinates up to 640 px lose sub-pixel precision in
fp16). Exact to ~1e-3 on GPU; on CPU it is slower than fp32 (no fp16 kernels).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import onnx

from edgesight.log import get_logger
from edgesight.samples import find_video, read_video_frames, sample_images_dir

from .darknet import DECODE_PREFIX
from .registry import StoredModel, add_variant

log = get_logger("model_zoo.compress")


def calibration_frames(
    n_video: int = 48, video: str | Path | None = None, include_samples: bool = True
) -> list[np.ndarray]:
    """Real frames for INT8 calibration: ``n_video`` evenly spaced vtest frames (even indices) + samples."""
    frames: list[np.ndarray] = []
    v = Path(video) if video else find_video()
    if v is not None and n_video > 0:
        total = int(cv2.VideoCapture(str(v)).get(cv2.CAP_PROP_FRAME_COUNT)) or 795
        step = max(2, (total // n_video) // 2 * 2)
        frames += read_video_frames(v, range(0, step * n_video, step))
    d = sample_images_dir()
    if include_samples and d is not None:
        frames += [cv2.imread(str(p)) for p in sorted(d.glob("*.jpg"))]
    if not frames:
        raise FileNotFoundError("no calibration frames: vtest.avi and the sample images are both missing")
    return frames


def letterbox_batch(frames: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    from edge_agent.preprocess import Letterbox

    lb = Letterbox(size)
    return np.concatenate([lb(f)[0].copy() for f in frames])


class _Reader:
    """CalibrationDataReader over preprocessed frames, one at a time.

    Supports ``set_range`` so that quantize_static (``CalibStridedMinMax``) collects in chunks:
    the histogram calibrators (percentile/entropy) otherwise keep every intermediate tensor of
    every frame in memory (~200 MB per frame for this model).
    """

    def __init__(self, batch: np.ndarray, input_name: str, progress: Callable[[int], None] | None = None):
        self.batch, self.input_name, self.i, self.progress = batch, input_name, 0, progress
        self.end = len(batch)

    def __len__(self) -> int:
        return len(self.batch)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.i, self.end = start_index, min(end_index, len(self.batch))

    def get_next(self):
        if self.i >= self.end:
            return None
        x = self.batch[self.i : self.i + 1]
        self.i += 1
        if self.progress:
            self.progress(1)
        return {self.input_name: x}

    def rewind(self) -> None:
        self.i = 0


@dataclass
class Int8Config:
    per_channel: bool = True
    calibrate_method: str = "percentile"  # minmax | entropy | percentile
    percentile: float = 99.999
    exclude_decode: bool = True
    exclude_heads: bool = True  # keep the last 1x1 head convs float as well
    activation_symmetric: bool = False
    moving_average: bool = False  # minmax: average per-frame min/max instead of global extremes
    reduce_range: bool = True  # 7-bit weights (avoids VPMADDUBSW saturation on AVX2 without VNNI)
    weight_type: str = "int8"  # int8 (U8S8) | uint8 (U8U8)
    calib_video_frames: int = 48
    unify_concat: bool = True  # one quantization range per Concat group (copy instead of requantize)
    extra_exclude: list[str] = field(default_factory=list)


def head_conv_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the Conv nodes whose output feeds the decode (the YOLO head convolutions)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    heads = []
    for n in model.graph.node:
        if n.name.startswith(DECODE_PREFIX) and n.op_type == "Reshape":
            p = producers.get(n.input[0])
            if p is not None and not p.name.startswith(DECODE_PREFIX) and p.op_type == "Conv":
                heads.append(p.name)
    return heads


def excluded_nodes(model: onnx.ModelProto, s: Int8Config) -> list[str]:
    names = []
    if s.exclude_decode:
        names += [n.name for n in model.graph.node if n.name.startswith(DECODE_PREFIX)]
    if s.exclude_heads:
        names += head_conv_nodes(model)
    names += s.extra_exclude
    return names


# ops whose output ONNX Runtime's QDQ quantizer gives the quantization parameters of their input
_SHARES_INPUT_PARAMS = {
    "MaxPool",
    "Resize",
    "Upsample",
    "Slice",
    "Split",
    "Reshape",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
}


def concat_groups(model: onnx.ModelProto, skip_prefix: str = DECODE_PREFIX) -> list[list[str]]:
    """Tensors that must share one quantization range so that every Concat is a plain byte copy.

    Each Concat joins its inputs and output; an op that passes its input's parameters on
    (MaxPool, Resize, Slice, ...) joins its input and output. Only groups of 2+ tensors
    that touch a Concat are returned."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    nodes = [n for n in model.graph.node if not n.name.startswith(skip_prefix)]
    for n in nodes:
        if n.op_type == "Concat":
            for i in n.input:
                parent[find(i)] = find(n.output[0])
    changed = True
    while changed:  # pull pass-through neighbours of the groups in (a chain may be several ops long)
        changed = False
        for n in nodes:
            if n.op_type in _SHARES_INPUT_PARAMS and (n.input[0] in parent or n.output[0] in parent):
                a, b = find(n.input[0]), find(n.output[0])
                if a != b:
                    parent[a] = b
                    changed = True
    groups: dict[str, list[str]] = {}
    for t in list(parent):
        groups.setdefault(find(t), []).append(t)
    return [sorted(g) for g in groups.values() if len(g) > 1]


def unify_ranges(tensors_range, groups: list[list[str]]) -> int:
    """Give every tensor of a group the union of the group's calibrated ranges; returns tensors changed."""
    from onnxruntime.quantization.calibrate import TensorData

    changed = 0
    for g in groups:
        ts = [t for t in g if t in tensors_range.data]
        if len(ts) < 2:
            continue
        lo = min(float(np.min(tensors_range[t].range_value[0])) for t in ts)
        hi = max(float(np.max(tensors_range[t].range_value[1])) for t in ts)
        for t in ts:
            tensors_range.data[t] = TensorData(lowest=np.array(lo, np.float32), highest=np.array(hi, np.float32))
            changed += 1
    return changed


def quantize_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    frames: list[np.ndarray],
    settings: Int8Config | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Static QDQ INT8 quantization of ``fp32_path`` into ``out_path``; returns the recipe used."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    s = settings or Int8Config()
    model = onnx.load(str(fp32_path))
    inp = model.graph.input[0]
    dims = inp.type.tensor_type.shape.dim
    size = (dims[2].dim_value, dims[3].dim_value)
    batch = letterbox_batch(frames, size)
    exclude = excluded_nodes(model, s)
    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[s.calibrate_method]
    extra = {"ActivationSymmetric": s.activation_symmetric, "WeightSymmetric": s.weight_type == "int8"}
    if s.moving_average:
        extra["CalibMovingAverage"] = True
    if s.calibrate_method == "percentile":
        extra["CalibPercentile"] = s.percentile
    if s.calibrate_method != "minmax" or s.moving_average:
        # collect in chunks (bounded memory); the chunk must divide the number of frames
        extra["CalibStridedMinMax"] = next(k for k in (6, 5, 4, 3, 2, 1) if len(batch) % k == 0)
    unified = 0
    with tempfile.TemporaryDirectory() as td:
        pre = Path(td) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        common = dict(
            quant_format=QuantFormat.QDQ,
            per_channel=s.per_channel,
            reduce_range=s.reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QUInt8 if s.weight_type == "uint8" else QuantType.QInt8,
            nodes_to_exclude=exclude,
            calibrate_method=method,
            extra_options=extra,
        )
        cache = Path(td) / "ranges.json"
        # pass 1: calibrate (the expensive part) and keep the ranges
        quantize_static(
            str(pre),
            str(Path(td) / "pass1.onnx") if s.unify_concat else str(out_path),
            _Reader(batch, inp.name, progress),
            calibration_cache_path=str(cache),
            **common,
        )
        if s.unify_concat:
            # pass 2: the same quantization from the cached ranges, Concat groups unified
            from onnxruntime.quantization.calibrate import load_tensors_data, save_tensors_data

            ranges = load_tensors_data(cache)
            unified = unify_ranges(ranges, concat_groups(onnx.load(str(pre))))
            save_tensors_data(ranges, cache)
            quantize_static(str(pre), str(out_path), None, calibration_cache_path=str(cache), **common)
    recipe = {
        "method": "onnxruntime.quantization.quantize_static",
        "format": "QDQ",
        "activations": "uint8",
        "weights": f"{s.weight_type} {'per-channel' if s.per_channel else 'per-tensor'}",
        "calibration_frames": len(frames),
        "excluded_nodes": len(exclude),
        "unified_concat_tensors": unified,
        **asdict(s),
    }
    log.info("int8 model written", extra={"file": str(out_path), "excluded_nodes": len(exclude)})
    return recipe


def convert_fp16(fp32_path: str | Path, out_path: str | Path, keep_decode_fp32: bool = True) -> dict:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(fp32_path))
    block = [n.name for n in model.graph.node if n.name.startswith(DECODE_PREFIX)] if keep_decode_fp32 else []
    m16 = convert_float_to_float16(model, keep_io_types=True, node_block_list=block or None)
    onnx.save(m16, str(out_path))
    return {"method": "onnxruntime.transformers.float16", "keep_io_types": True, "decode_fp32": keep_decode_fp32}


def compress(
    model: StoredModel,
    variants: Iterable[str] = ("int8", "fp16"),
    settings: Int8Config | None = None,
    frames: list[np.ndarray] | None = None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> dict[str, Path]:
    """Build the requested derived variants of a stored model and record them in its manifest."""
    src = model.path("fp32")
    s = settings or Int8Config()
    made: dict[str, Path] = {}
    for v in variants:
        spec = model.manifest.variants.get(v)
        out = model.root / (spec.file if spec else f"{model.name}.{v}.onnx")
        if v == "int8":
            fr = frames if frames is not None else calibration_frames(s.calib_video_frames)
            if on_total:
                on_total(len(fr))
            recipe = quantize_int8(src, out, fr, s, progress)
        elif v == "fp16":
            recipe = convert_fp16(src, out)
        else:
            raise ValueError(f"cannot derive variant {v!r} (int8 or fp16)")
        add_variant(model, v, out, recipe=recipe)
        made[v] = out
    return made
