"""The camera preview: the agent's JPEG with detection boxes, zones and counting lines drawn on it.

:func:`decode_jpeg` decodes a preview JPEG within bounds (:data:`MAX_JPEG_BYTES`, :data:`MAX_SOURCE_SIDE`;
decoded images are reduced to :data:`MAX_DECODED_SIDE`) and raises :class:`PreviewError` on anything it cannot
read. :func:`compose_preview` draws the overlays on a copy (pure, Pillow only: the TUI needs no OpenCV).
:class:`PreviewImage` is the Textual widget: it composes at the resolution it is shown at (so 1-pixel strokes
stay visible in half-blocks) and renders with ``textual-image``: sixel or the kitty graphics protocol where the
terminal answers for them, coloured half-blocks everywhere else (also when stdout is not a terminal, as under
``textual-serve`` or in tests).

Import this module before the Textual app starts: ``textual-image`` queries the terminal (graphics support,
cell size in pixels) on import, which it cannot do once Textual owns stdin.
"""

from __future__ import annotations

import io
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from PIL import Image, ImageDraw, ImageFont
from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Static
from textual_image.renderable import Image as _AutoRenderable
from textual_image.renderable.sixel import Image as _SixelRenderable
from textual_image.renderable.tgp import Image as _TGPRenderable
from textual_image.widget import HalfcellImage
from textual_image.widget import Image as _AutoImageWidget
from textual_image.widget._base import Image as TextualImage  # the base of all its image widgets (for types)

from edge_agent.tui.geometry import DEFAULT_FRAME, Point, Shape, shapes_from_config

MAX_JPEG_BYTES: Final = 4 * 1024 * 1024  # a preview is <= 256 kB on the wire; a snapshot JPEG stays far below this
MAX_SOURCE_SIDE: Final = 8192  # width/height in the JPEG header beyond which it is not decoded at all
MAX_DECODED_SIDE: Final = 1280  # decoded images are reduced to fit (JPEG DCT scaling, then resampling)
MAX_DRAWN_DETECTIONS: Final = 256  # boxes drawn per preview; the caption counts the rest

GRAPHICS: Final = _AutoRenderable in (_SixelRenderable, _TGPRenderable)  # the terminal shows real pixels
GRAPHICS_PROTOCOL: Final = "sixel" if _AutoRenderable is _SixelRenderable else "kitty"

Rgb = tuple[int, int, int]
BOX_COLORS: Final[tuple[Rgb, ...]] = (
    (255, 64, 64),
    (64, 200, 255),
    (255, 200, 0),
    (64, 255, 96),
    (255, 96, 255),
    (255, 144, 32),
)
ZONE_COLOR: Final[Rgb] = (255, 230, 0)
LINE_COLOR: Final[Rgb] = (0, 230, 255)
SELECTED_COLOR: Final[Rgb] = (255, 0, 200)
CURSOR_COLOR: Final[Rgb] = (255, 255, 255)
CANVAS_COLOR: Final[Rgb] = (28, 28, 32)


class PreviewError(ValueError):
    """The preview JPEG cannot be shown; the message says why."""


@dataclass(frozen=True)
class Box:
    """One detection of a preview, its box in frame pixels."""

    label: str
    score: float
    box: tuple[float, float, float, float]
    track_id: int | None = None

    @property
    def caption(self) -> str:
        tid = f" #{self.track_id}" if self.track_id is not None else ""
        return f"{self.label}{tid} {self.score:.2f}"


def box_color(label: str) -> Rgb:
    """A stable colour per label (crc32, not hash(): the same in every process)."""
    return BOX_COLORS[zlib.crc32(label.encode()) % len(BOX_COLORS)]


def decode_jpeg(jpeg: bytes) -> tuple[Image.Image, tuple[int, int]]:
    """The JPEG as an RGB image no larger than :data:`MAX_DECODED_SIDE`, and its size before it was reduced;
    :class:`PreviewError` when it cannot be read."""
    if len(jpeg) > MAX_JPEG_BYTES:
        raise PreviewError(f"preview JPEG is {len(jpeg)} bytes; at most {MAX_JPEG_BYTES} (MAX_JPEG_BYTES)")
    try:
        img = Image.open(io.BytesIO(jpeg), formats=["JPEG"])
        if max(img.size) > MAX_SOURCE_SIDE:
            raise PreviewError(
                f"preview JPEG is {img.width}x{img.height} px; at most {MAX_SOURCE_SIDE} a side (MAX_SOURCE_SIDE)"
            )
        source = img.size
        img.draft("RGB", (MAX_DECODED_SIDE, MAX_DECODED_SIDE))
        rgb = img.convert("RGB")
    except PreviewError:
        raise
    except Exception as e:  # noqa: BLE001 - untrusted bytes: any decoder failure (OSError, SyntaxError, ...) is a message
        raise PreviewError(f"cannot decode the preview JPEG ({len(jpeg)} bytes): {e}") from None
    rgb.thumbnail((MAX_DECODED_SIDE, MAX_DECODED_SIDE))
    return rgb, source


def frame_size_of(value: object) -> tuple[int, int] | None:
    """A frame size from ``(w, h)``, ``{"width", "height"}`` or an object with ``width``/``height`` (the
    status's ``frame``); None when absent or not two positive integers."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        w, h = value.get("width"), value.get("height")
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        w, h = value
    else:
        w, h = getattr(value, "width", None), getattr(value, "height", None)
    if isinstance(w, bool) or isinstance(h, bool) or not isinstance(w, int) or not isinstance(h, int):
        return None
    return (w, h) if w > 0 and h > 0 else None


def parse_detections(detections: Iterable[object]) -> tuple[list[Box], int]:
    """Boxes from detection dicts (or objects with label/score/box/track_id attributes); returns the boxes
    and how many were left out (malformed ones, and those past :data:`MAX_DRAWN_DETECTIONS`)."""
    out: list[Box] = []
    skipped = 0
    for d in detections:
        f: dict[str, Any] = (
            dict(d)
            if isinstance(d, Mapping)
            else {k: getattr(d, k, None) for k in ("label", "score", "box", "track_id")}
        )
        try:
            x1, y1, x2, y2 = (float(v) for v in f["box"])
            tid = f.get("track_id")
            box = Box(
                str(f.get("label") or "?"),
                float(f.get("score") or 0.0),
                (x1, y1, x2, y2),
                None if tid is None else int(tid),
            )
        except (KeyError, TypeError, ValueError):
            skipped += 1
            continue
        if len(out) >= MAX_DRAWN_DETECTIONS or not all(math.isfinite(v) for v in (*box.box, box.score)):
            skipped += 1
            continue
        out.append(box)
    return out, skipped


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (OSError, ValueError):  # a Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit(size: tuple[int, int], bound: tuple[int, int]) -> tuple[int, int]:
    """``size`` scaled down (never up) to fit ``bound``, keeping its aspect ratio."""
    k = min(1.0, bound[0] / size[0], bound[1] / size[1])
    return max(1, round(size[0] * k)), max(1, round(size[1] * k))


def compose_preview(
    image: Image.Image | None,
    frame_size: tuple[int, int] | None,
    boxes: Sequence[Box] = (),
    shapes: Sequence[Shape] = (),
    *,
    selected: int | None = None,
    vertex: int | None = None,
    cursor: Point | None = None,
    target: tuple[int, int] | None = None,
) -> Image.Image:
    """A new RGB image: ``image`` (or a blank canvas of the frame's aspect) reduced to fit ``target``, with the
    boxes, zones and lines (frame pixel coordinates; ``frame_size`` defaults to the image's size) drawn on it.
    ``selected`` (an index of ``shapes``) is highlighted with its ``vertex``; ``cursor`` is drawn as a cross."""
    fw, fh = frame_size or (image.size if image is not None else DEFAULT_FRAME)
    if image is None:
        image = Image.new("RGB", _fit((fw, fh), (MAX_DECODED_SIDE, MAX_DECODED_SIDE)), CANVAS_COLOR)
    size = _fit(image.size, target) if target else image.size
    canvas = image.resize(size, Image.Resampling.BOX) if size != image.size else image.copy()
    sx, sy = canvas.width / fw, canvas.height / fh
    stroke = max(1, round(min(canvas.size) / 240))
    draw = ImageDraw.Draw(canvas)
    font_px = max(10, canvas.height // 36)
    font = _font(font_px) if canvas.height >= 160 else None  # text is noise in half-blocks

    def px(p: Sequence[float]) -> tuple[float, float]:
        return (p[0] * sx, p[1] * sy)

    for i, shape in enumerate(shapes):
        is_sel = i == selected
        color = SELECTED_COLOR if is_sel else (ZONE_COLOR if shape.kind == "zone" else LINE_COLOR)
        pts = [px(p) for p in shape.points]
        width = stroke + 1 if is_sel else stroke
        if shape.kind == "zone" and len(pts) >= 3:
            draw.polygon(pts, outline=color, width=width)
        elif len(pts) >= 2:
            draw.line(pts, fill=color, width=width)
        if shape.kind == "line" and len(pts) == 2:
            _arrow(draw, pts[0], pts[1], color, width, canvas.size)
        if is_sel or len(pts) < 2:
            for j, (x, y) in enumerate(pts):
                r = stroke if j == vertex and is_sel else stroke - 1
                draw.rectangle((x - r, y - r, x + r, y + r), outline=color, fill=color if j == vertex else None)
        if font is not None and pts:
            draw.text((pts[0][0] + 3, pts[0][1] + 2), shape.name, fill=color, font=font)

    for b in boxes:
        color = box_color(b.label)
        x1, y1 = px(b.box[:2])
        x2, y2 = px(b.box[2:])
        draw.rectangle((min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)), outline=color, width=stroke)
        if font is not None:
            draw.text((min(x1, x2), max(0, min(y1, y2) - font_px - 2)), b.caption, fill=color, font=font)

    if cursor is not None:
        cx, cy = px(cursor)
        arm = max(3, round(min(canvas.size) / 30))
        for color, w in (((0, 0, 0), stroke + 2), (CURSOR_COLOR, stroke)):
            draw.line((cx - arm, cy, cx + arm, cy), fill=color, width=w)
            draw.line((cx, cy - arm, cx, cy + arm), fill=color, width=w)
    return canvas


def _arrow(draw: ImageDraw.ImageDraw, a: Point, b: Point, color: Rgb, width: int, size: tuple[int, int]) -> None:
    """An arrow from the line's middle towards its first direction's side (right-hand of start -> end)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    n = math.hypot(dx, dy)
    if n == 0:
        return
    nx, ny = -dy / n, dx / n  # right-hand normal, y pointing down the image
    length = max(4.0, min(size) / 12)
    mx, my = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
    tx, ty = mx + nx * length, my + ny * length
    draw.line((mx, my, tx, ty), fill=color, width=width)
    head = length / 3
    for side in (1, -1):  # two barbs at 45 degrees back from the tip
        bx = tx - nx * head + side * (dx / n) * head
        by = ty - ny * head + side * (dy / n) * head
        draw.line((tx, ty, bx, by), fill=color, width=width)


class PreviewImage(Widget):
    """A camera preview with its overlays; see the module docstring.

    ``update_preview`` takes what a preview message and the camera's status carry; the editor draws its own
    shapes with :meth:`set_shapes`. ``composed`` is the last image handed to the terminal renderer and ``error``
    the message shown instead of an image (a JPEG that cannot be decoded), or None.
    """

    DEFAULT_CSS = """
    PreviewImage { width: 1fr; height: 1fr; }
    PreviewImage > #preview-image { width: auto; height: auto; }
    PreviewImage > #preview-message { width: 1fr; height: 1fr; content-align: center middle; color: $text-muted; }
    PreviewImage > #preview-caption { width: 1fr; height: 1; color: $text-muted; }
    """

    def __init__(
        self,
        jpeg: bytes | None = None,
        frame_size: tuple[int, int] | object | None = None,
        detections: Iterable[object] = (),
        zones: Iterable[object] = (),
        lines: Iterable[object] = (),
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        graphics: bool = True,
    ) -> None:
        """``graphics=False`` keeps to half-blocks even where the terminal has sixel or kitty graphics."""
        super().__init__(name=name, id=id, classes=classes)
        self._graphics = graphics and GRAPHICS
        self._jpeg: bytes | None = None
        self._base: Image.Image | None = None
        self._frame_size: tuple[int, int] | None = None
        self._source_size: tuple[int, int] | None = None
        self._boxes: list[Box] = []
        self._shapes: list[Shape] = []
        self._selected: int | None = None
        self._vertex: int | None = None
        self._cursor: Point | None = None
        self._notes: list[str] = []
        self.error: str | None = None
        self.composed: Image.Image | None = None
        self.update_preview(jpeg, frame_size, detections, zones, lines)

    def compose(self) -> ComposeResult:
        yield (_AutoImageWidget if self._graphics else HalfcellImage)(id="preview-image")
        yield Static("No preview yet", id="preview-message")
        yield Static("", id="preview-caption", markup=False)

    @property
    def renderer(self) -> str:
        """How the image reaches the terminal: ``sixel``, ``kitty`` or ``halfcell``."""
        return GRAPHICS_PROTOCOL if self._graphics else "halfcell"

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """The camera frame's size: as given, else the JPEG's (before it was reduced), else None."""
        return self._frame_size

    def update_preview(
        self,
        jpeg: bytes | None = None,
        frame_size: tuple[int, int] | object | None = None,
        detections: Iterable[object] = (),
        zones: Iterable[object] = (),
        lines: Iterable[object] = (),
    ) -> None:
        """Show a new preview (the same JPEG bytes are not decoded again). ``frame_size`` is the camera frame's
        size that boxes and pixel coordinates refer to (see :func:`frame_size_of`); None: the JPEG's own."""
        notes: list[str] = []
        if jpeg != self._jpeg or self.error is not None:
            self._jpeg, self._base, self._source_size, self.error = jpeg, None, None, None
            if jpeg is not None:
                try:
                    self._base, self._source_size = decode_jpeg(jpeg)
                except PreviewError as e:
                    self.error = f"Preview unavailable: {e}"
        self._frame_size = frame_size_of(frame_size) or self._source_size
        self._boxes, skipped = parse_detections(detections)
        if skipped:
            notes.append(f"{skipped} detections not drawn")
        shapes, problems = shapes_from_config(zones, lines, self._frame_size or DEFAULT_FRAME)
        notes.extend(f"not drawn: {p}" for p in problems)
        self._notes = notes
        self._shapes, self._selected, self._vertex, self._cursor = shapes, None, None, None
        self._redraw()

    def set_shapes(
        self,
        shapes: Sequence[Shape],
        *,
        selected: int | None = None,
        vertex: int | None = None,
        cursor: Point | None = None,
    ) -> None:
        """Draw these shapes (frame pixels) instead of the zones and lines, with a selection and a cursor."""
        self._shapes, self._selected, self._vertex, self._cursor = list(shapes), selected, vertex, cursor
        self._redraw()

    def on_mount(self) -> None:
        self._redraw()

    def on_resize(self) -> None:
        self._redraw()

    def _target(self) -> tuple[int, int] | None:
        cols, rows = self.content_size.width, self.content_size.height - 1  # the caption takes a row
        if cols <= 0 or rows <= 0:
            return None
        if self._graphics:
            from textual_image._terminal import get_cell_size  # cached at import of textual_image.widget

            cell = get_cell_size()
            return cols * cell.width, rows * cell.height
        return cols, rows * 2  # one half-block is one pixel

    def _caption(self) -> str:
        if self.error is not None:
            return ""
        parts = []
        if self._frame_size:
            parts.append(f"{self._frame_size[0]}x{self._frame_size[1]}")
        if self._jpeg is None:
            parts.append("no snapshot")
        n_z = sum(1 for s in self._shapes if s.kind == "zone")
        n_l = len(self._shapes) - n_z
        parts.append(f"{len(self._boxes)} det · {n_z} zones · {n_l} lines")
        return " · ".join(parts + self._notes)

    def _redraw(self) -> None:
        if not self.is_mounted:
            return
        image_w = self.query_one("#preview-image", TextualImage)
        message = self.query_one("#preview-message", Static)
        self.query_one("#preview-caption", Static).update(self._caption())
        if self.error is not None or (self._base is None and self._frame_size is None):
            self.composed = None
            message.update(self.error or "No preview yet")
            message.display, image_w.display = True, False
            return
        target = self._target()
        if target is None:
            return
        self.composed = compose_preview(
            self._base,
            self._frame_size,
            self._boxes,
            self._shapes,
            selected=self._selected,
            vertex=self._vertex,
            cursor=self._cursor,
            target=target,
        )
        image_w.image = self.composed
        if not self._graphics:  # exactly one half-block per pixel, whatever the terminal's cell size in pixels
            image_w.styles.width = self.composed.width
            image_w.styles.height = (self.composed.height + 1) // 2
        message.display, image_w.display = False, True


__all__: list[str] = [
    "MAX_DECODED_SIDE",
    "MAX_DRAWN_DETECTIONS",
    "MAX_JPEG_BYTES",
    "MAX_SOURCE_SIDE",
    "Box",
    "PreviewError",
    "PreviewImage",
    "compose_preview",
    "decode_jpeg",
    "frame_size_of",
    "parse_detections",
]
