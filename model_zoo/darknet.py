"""Darknet ``.cfg`` + ``.weights`` -> ONNX, with the YOLO box decode inside the graph.

Generic over the darknet YOLO family built from these sections: ``[convolutional]``
(with or without batch-norm, any stride/groups, activations linear/leaky/relu/
logistic/mish/swish), ``[maxpool]``, ``[route]`` (several layers, ``groups``/
``group_id``), ``[shortcut]``, ``[upsample]`` and ``[yolo]`` (``scale_x_y``,
``new_coords``). Anything else is rejected with a clear error rather than being
converted wrongly.

Produced graph (documented layout, the one :mod:`edge_agent.inference` expects):

- input ``images``: ``(batch, 3, H, W)`` float32, RGB, values in ``[0, 1]``
  (letterboxed frame); ``batch`` is a dynamic dimension, H and W are fixed at
  conversion time (multiples of the network stride, default 640x640).
- output ``boxes``: ``(batch, N, 4)`` float32, ``x1 y1 x2 y2`` in *input pixels*.
- output ``scores``: ``(batch, N, C)`` float32, objectness x class probability.

``N`` is the number of anchor positions over all YOLO heads (6000 for
YOLOv4-tiny at 640). Rows are ordered head by head, then grid row, grid column,
anchor -- the same order as OpenCV's darknet reader, which the tests compare
against. No confidence filtering or NMS happens in the graph.

Batch-norm is folded into the convolutions (darknet's own epsilon, 1e-6). Every
float of the weights file must be consumed; a size mismatch raises
:class:`DarknetError` (a wrong cfg for the weights cannot silently "work").

All nodes of the box decode are named with the :data:`DECODE_PREFIX` prefix so
that INT8 quantization can leave them in float (quantizing the decode destroys
the detections; see :mod:`model_zoo.compress`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
DECODE_PREFIX = "decode/"
INPUT_NAME = "images"
OUTPUT_BOXES = "boxes"
OUTPUT_SCORES = "scores"
BN_EPS = 1e-6


class DarknetError(ValueError):
    """The cfg or weights cannot be converted (unsupported layer, size mismatch...)."""


@dataclass
class Section:
    kind: str
    opts: dict[str, str] = field(default_factory=dict)
    line: int = 0

    def get(self, key: str, default: Any = None, cast: type = str) -> Any:
        if key not in self.opts:
            return default
        return cast(self.opts[key])

    def ints(self, key: str, default: list[int] | None = None) -> list[int]:
        if key not in self.opts:
            return list(default or [])
        return [int(v) for v in self.opts[key].split(",") if v.strip()]

    def floats(self, key: str) -> list[float]:
        return [float(v) for v in self.opts.get(key, "").split(",") if v.strip()]


def parse_cfg(text: str) -> list[Section]:
    """Parse a darknet cfg into sections (``[net]`` first)."""
    sections: list[Section] = []
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"\[([A-Za-z_]+)\]", line)
        if m:
            sections.append(Section(m.group(1).lower(), {}, no))
            continue
        if "=" not in line or not sections:
            raise DarknetError(f"cfg line {no}: cannot parse {raw!r}")
        k, v = line.split("=", 1)
        sections[-1].opts[k.strip()] = v.strip()
    if not sections or sections[0].kind not in ("net", "network"):
        raise DarknetError("cfg must start with a [net] section")
    return sections


class _WeightReader:
    def __init__(self, path: Path):
        data = Path(path).read_bytes()
        major, minor, _rev = np.frombuffer(data[:12], dtype=np.int32)
        header = 12 + (8 if major * 10 + minor >= 2 else 4)
        self.version = (int(major), int(minor))
        self.buf = np.frombuffer(data[header:], dtype=np.float32)
        self.pos = 0

    def take(self, n: int, what: str) -> np.ndarray:
        if self.pos + n > self.buf.size:
            raise DarknetError(
                f"weights file too short reading {what}: need {n} floats at offset {self.pos}, "
                f"only {self.buf.size - self.pos} left (cfg does not match weights?)"
            )
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    @property
    def remaining(self) -> int:
        return self.buf.size - self.pos


@dataclass
class YoloHead:
    tensor: str  # name of the raw head tensor (B, A*(5+C), h, w)
    anchors: np.ndarray  # (A, 2) in input pixels
    classes: int
    stride: tuple[int, int]  # (sy, sx)
    grid: tuple[int, int]  # (h, w)
    scale_x_y: float
    new_coords: bool


@dataclass
class ConversionResult:
    model: onnx.ModelProto
    input_size: tuple[int, int]  # (H, W)
    num_classes: int
    num_boxes: int
    weights_consumed: int
    head_tensors: list[str]
    layers: int


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def const(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(self, op: str, inputs: list[str], name: str, out: str | None = None, **attrs: Any) -> str:
        out = out or name
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out


def _activation(b: _Builder, x: str, act: str, name: str) -> str:
    if act == "linear":
        return x
    if act == "leaky":
        return b.node("LeakyRelu", [x], f"{name}/leaky", alpha=0.1)
    if act == "relu":
        return b.node("Relu", [x], f"{name}/relu")
    if act == "logistic":
        return b.node("Sigmoid", [x], f"{name}/sigmoid")
    if act == "mish":
        return b.node("Mish", [x], f"{name}/mish")
    if act in ("swish", "silu"):
        s = b.node("Sigmoid", [x], f"{name}/swish_sig")
        return b.node("Mul", [x, s], f"{name}/swish")
    raise DarknetError(f"{name}: unsupported activation {act!r}")


def convert(
    cfg_path: str | Path,
    weights_path: str | Path,
    input_size: int | tuple[int, int] | None = 640,
    *,
    expose_heads: bool = False,
    model_name: str = "darknet",
) -> ConversionResult:
    """Convert a darknet model. ``input_size`` None keeps the cfg's width/height.

    ``expose_heads`` adds the raw YOLO head tensors as extra outputs ``head_0``,
    ``head_1``... (used to compare against OpenCV's darknet reader).
    """
    sections = parse_cfg(Path(cfg_path).read_text())
    net = sections[0]
    channels = net.get("channels", 3, int)
    if input_size is None:
        in_h, in_w = net.get("height", 416, int), net.get("width", 416, int)
    elif isinstance(input_size, int):
        in_h = in_w = input_size
    else:
        in_h, in_w = input_size
    reader = _WeightReader(Path(weights_path))
    b = _Builder()

    # Per layer: (tensor name, channels, h, w)
    outs: list[tuple[str, int, int, int]] = []
    cur = (INPUT_NAME, channels, in_h, in_w)
    heads: list[YoloHead] = []

    def resolve(i: int, ref: int) -> int:
        j = i + ref if ref < 0 else ref
        if not 0 <= j < i:
            raise DarknetError(f"layer {i}: reference {ref} out of range")
        return j

    for i, sec in enumerate(sections[1:]):
        name = f"{sec.kind}_{i}"
        x, c, h, w = cur
        if sec.kind == "convolutional":
            filters = sec.get("filters", 1, int)
            size = sec.get("size", 1, int)
            stride = sec.get("stride", 1, int)
            groups = sec.get("groups", 1, int)
            pad = size // 2 if sec.get("pad", 0, int) else sec.get("padding", 0, int)
            bn = sec.get("batch_normalize", 0, int)
            if c % groups or filters % groups:
                raise DarknetError(f"layer {i}: channels {c}/filters {filters} not divisible by groups {groups}")
            nw = filters * (c // groups) * size * size
            if bn:
                beta = reader.take(filters, f"{name} bn beta")
                gamma = reader.take(filters, f"{name} bn gamma")
                mean = reader.take(filters, f"{name} bn mean")
                var = reader.take(filters, f"{name} bn var")
                wts = reader.take(nw, f"{name} weights").reshape(filters, c // groups, size, size)
                with np.errstate(invalid="ignore", divide="ignore"):  # garbage if cfg != weights; caught below
                    scale = gamma / np.sqrt(var + BN_EPS)
                W = (wts * scale[:, None, None, None]).astype(np.float32)
                B = (beta - mean * scale).astype(np.float32)
            else:
                B = reader.take(filters, f"{name} bias").astype(np.float32)
                W = reader.take(nw, f"{name} weights").reshape(filters, c // groups, size, size).astype(np.float32)
            y = b.node(
                "Conv",
                [x, b.const(f"{name}.weight", W), b.const(f"{name}.bias", B)],
                name,
                kernel_shape=[size, size],
                strides=[stride, stride],
                pads=[pad] * 4,
                group=groups,
            )
            y = _activation(b, y, sec.get("activation", "logistic"), name)
            oh = (h + 2 * pad - size) // stride + 1
            ow = (w + 2 * pad - size) // stride + 1
            cur = (y, filters, oh, ow)
        elif sec.kind == "maxpool":
            size = sec.get("size", 1, int)
            stride = sec.get("stride", size, int)
            padding = sec.get("padding", size - 1, int)
            lo, hi = padding // 2, padding - padding // 2
            y = b.node("MaxPool", [x], name, kernel_shape=[size, size], strides=[stride, stride], pads=[lo, lo, hi, hi])
            cur = (y, c, (h + padding - size) // stride + 1, (w + padding - size) // stride + 1)
        elif sec.kind == "route":
            refs = [resolve(i, r) for r in sec.ints("layers")]
            groups = sec.get("groups", 1, int)
            gid = sec.get("group_id", 0, int)
            parts, total = [], 0
            for j in refs:
                t, cj, hj, wj = outs[j]
                if (hj, wj) != (outs[refs[0]][2], outs[refs[0]][3]):
                    raise DarknetError(f"layer {i}: route of different spatial sizes")
                if groups > 1:
                    gc = cj // groups
                    t = b.node(
                        "Slice",
                        [
                            t,
                            b.const(f"{name}.starts{j}", np.array([gid * gc], np.int64)),
                            b.const(f"{name}.ends{j}", np.array([(gid + 1) * gc], np.int64)),
                            b.const(f"{name}.axes{j}", np.array([1], np.int64)),
                        ],
                        f"{name}/slice{j}",
                    )
                    cj = gc
                parts.append(t)
                total += cj
            y = parts[0] if len(parts) == 1 else b.node("Concat", parts, name, axis=1)
            cur = (y, total, outs[refs[0]][2], outs[refs[0]][3])
        elif sec.kind == "shortcut":
            j = resolve(i, sec.ints("from")[0])
            if outs[j][1:] != (c, h, w):
                raise DarknetError(f"layer {i}: shortcut between different shapes {outs[j][1:]} and {(c, h, w)}")
            y = b.node("Add", [x, outs[j][0]], name)
            y = _activation(b, y, sec.get("activation", "linear"), name)
            cur = (y, c, h, w)
        elif sec.kind == "upsample":
            s = sec.get("stride", 2, int)
            y = b.node(
                "Resize",
                [x, "", b.const(f"{name}.scales", np.array([1, 1, s, s], np.float32))],
                name,
                mode="nearest",
                coordinate_transformation_mode="asymmetric",
                nearest_mode="floor",
            )
            cur = (y, c, h * s, w * s)
        elif sec.kind == "yolo":
            mask = sec.ints("mask")
            all_anchors = np.array(sec.floats("anchors"), np.float32).reshape(-1, 2)
            if not mask:
                mask = list(range(len(all_anchors)))
            classes = sec.get("classes", 80, int)
            if c != len(mask) * (5 + classes):
                raise DarknetError(f"layer {i}: yolo expects {len(mask) * (5 + classes)} channels, got {c}")
            heads.append(
                YoloHead(
                    x,
                    all_anchors[mask],
                    classes,
                    (in_h // h, in_w // w),
                    (h, w),
                    sec.get("scale_x_y", 1.0, float),
                    bool(sec.get("new_coords", 0, int)),
                )
            )
            cur = (x, c, h, w)
        else:
            raise DarknetError(f"cfg line {sec.line}: unsupported section [{sec.kind}]")
        outs.append(cur)

    if reader.remaining:
        raise DarknetError(f"{reader.remaining} floats of the weights file were not used (cfg does not match weights)")
    if not heads:
        raise DarknetError("no [yolo] layer in cfg")
    classes = heads[0].classes
    if any(hd.classes != classes for hd in heads):
        raise DarknetError("yolo heads disagree on the number of classes")

    box_parts, score_parts, head_names = [], [], []
    for k, hd in enumerate(heads):
        p = f"{DECODE_PREFIX}h{k}/"
        A, (gh, gw), C = len(hd.anchors), hd.grid, hd.classes
        n = gh * gw * A
        head_names.append(hd.tensor)
        # (B, A*(5+C), gh, gw) -> (B, A, 5+C, gh, gw) -> (B, gh, gw, A, 5+C) -> (B, n, 5+C)
        t = b.node(
            "Reshape", [hd.tensor, b.const(p + "shape5", np.array([-1, A, 5 + C, gh, gw], np.int64))], p + "reshape5"
        )
        t = b.node("Transpose", [t], p + "transpose", perm=[0, 3, 4, 1, 2])
        t = b.node("Reshape", [t, b.const(p + "shape3", np.array([-1, n, 5 + C], np.int64))], p + "reshape3")
        sl = lambda s, e, tag: b.node(  # noqa: E731 - local shorthand
            "Slice",
            [
                t,  # noqa: B023 - called in the same iteration
                b.const(f"{p}{tag}.s", np.array([s], np.int64)),  # noqa: B023 - called in the same iteration
                b.const(f"{p}{tag}.e", np.array([e], np.int64)),  # noqa: B023 - called in the same iteration
                b.const(f"{p}{tag}.a", np.array([2], np.int64)),  # noqa: B023 - called in the same iteration
            ],
            p + tag,  # noqa: B023 - called in the same iteration
        )
        txy, twh, tobj, tcls = sl(0, 2, "xy"), sl(2, 4, "wh"), sl(4, 5, "obj"), sl(5, 5 + C, "cls")
        gy, gx = np.meshgrid(np.arange(gh, dtype=np.float32), np.arange(gw, dtype=np.float32), indexing="ij")
        grid = np.stack([gx, gy], -1)[:, :, None, :].repeat(A, 2).reshape(1, n, 2)
        anchors = np.broadcast_to(hd.anchors[None, None], (gh, gw, A, 2)).reshape(1, n, 2).astype(np.float32)
        stride = np.array([hd.stride[1], hd.stride[0]], np.float32).reshape(1, 1, 2)
        s = hd.scale_x_y
        if hd.new_coords:  # activations already logistic in the cfg (scaled-YOLOv4 style)
            xy_act, obj, cls = txy, tobj, tcls
            wh2 = b.node("Mul", [twh, b.const(p + "two", np.array(2.0, np.float32))], p + "wh2")
            wh = b.node("Mul", [b.node("Mul", [wh2, wh2], p + "whsq"), b.const(p + "anchors", anchors)], p + "whpx")
        else:
            xy_act = b.node("Sigmoid", [txy], p + "xy_sig")
            obj = b.node("Sigmoid", [tobj], p + "obj_sig")
            cls = b.node("Sigmoid", [tcls], p + "cls_sig")
            wh = b.node("Mul", [b.node("Exp", [twh], p + "wh_exp"), b.const(p + "anchors", anchors)], p + "whpx")
        # xy = (act*s - 0.5*(s-1) + grid) * stride  ==  (act*s + (grid - 0.5*(s-1))) * stride
        off = (grid - 0.5 * (s - 1.0)).astype(np.float32)
        xy = b.node("Mul", [xy_act, b.const(p + "sxy", np.array(s, np.float32))], p + "xy_scale")
        xy = b.node("Add", [xy, b.const(p + "grid", off)], p + "xy_grid")
        xy = b.node("Mul", [xy, b.const(p + "stride", stride)], p + "xy_px")
        half = b.node("Mul", [wh, b.const(p + "half", np.array(0.5, np.float32))], p + "wh_half")
        x1y1 = b.node("Sub", [xy, half], p + "x1y1")
        x2y2 = b.node("Add", [xy, half], p + "x2y2")
        box_parts.append(b.node("Concat", [x1y1, x2y2], p + "boxes", axis=2))
        score_parts.append(b.node("Mul", [obj, cls], p + "scores"))

    total = sum(hd.grid[0] * hd.grid[1] * len(hd.anchors) for hd in heads)
    if len(heads) > 1:
        b.node("Concat", box_parts, DECODE_PREFIX + "boxes", out=OUTPUT_BOXES, axis=1)
        b.node("Concat", score_parts, DECODE_PREFIX + "scores", out=OUTPUT_SCORES, axis=1)
    else:
        b.node("Identity", box_parts, DECODE_PREFIX + "boxes", out=OUTPUT_BOXES)
        b.node("Identity", score_parts, DECODE_PREFIX + "scores", out=OUTPUT_SCORES)

    outputs = [
        helper.make_tensor_value_info(OUTPUT_BOXES, TensorProto.FLOAT, ["batch", total, 4]),
        helper.make_tensor_value_info(OUTPUT_SCORES, TensorProto.FLOAT, ["batch", total, classes]),
    ]
    head_out = []
    if expose_heads:
        for k, (hd, t) in enumerate(zip(heads, head_names)):
            ident = b.node("Identity", [t], f"head_{k}")
            head_out.append(ident)
            outputs.append(
                helper.make_tensor_value_info(
                    ident, TensorProto.FLOAT, ["batch", len(hd.anchors) * (5 + hd.classes), hd.grid[0], hd.grid[1]]
                )
            )
    graph = helper.make_graph(
        b.nodes,
        model_name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", channels, in_h, in_w])],
        outputs,
        initializer=b.inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgesight.model_zoo.darknet"
    )
    model.ir_version = 8  # readable by older runtimes too (onnxruntime >= 1.14)
    onnx.checker.check_model(model)
    return ConversionResult(model, (in_h, in_w), classes, total, reader.pos, head_out or head_names, len(sections) - 1)
