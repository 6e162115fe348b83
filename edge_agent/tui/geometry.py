"""Zones and counting lines as the TUI draws and edits them (pure: no Textual, no Pillow).

A :class:`Shape` holds its points in *pixels of the camera frame* whatever the agent's config says;
:func:`shapes_from_config` converts with the agent's own :meth:`ZoneConfig.pixel_polygon` /
:meth:`LineConfig.pixel_points`, and :meth:`Shape.to_config` converts back to the coordinates the shape came
in (``coords`` is then always explicit, ``pixels`` or ``normalized``, never ``auto``: a small pixel polygon near
the origin would otherwise read as normalised).

:class:`EditorModel` is the zone/line editor without a screen: the shapes, the selection, a cursor and the
editing operations. An operation the model refuses raises :class:`EditError` with the reason and leaves the
model as it was; :meth:`EditorModel.submit` returns ``{"zones": [...], "lines": [...]}`` only when every object
validates with the agent's :class:`ZoneConfig` / :class:`LineConfig` (and the wire bounds of set_zones /
set_lines), else raises :class:`EditError` naming the shape and the field at fault. A kind the user left as
it was comes back as the very objects it came in, so ``result["zones"] == zones`` tells there is nothing to send.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter, ValidationError

from edge_agent.tracking.settings import CameraTrackingConfig, LineConfig, ZoneConfig
from edgesight.wire.models import ID_PATTERN, MAX_LINES, MAX_VERTICES, MAX_ZONES, Lines, Zones

Point = tuple[float, float]
ShapeKind = Literal["zone", "line"]
Coords = Literal["pixels", "normalized"]

DEFAULT_FRAME: tuple[int, int] = (640, 480)  # canvas when neither the frame size nor a JPEG is known
NORMALIZED_DIGITS = 6  # decimals of emitted normalised coordinates (1e-6 of a 16k-pixel frame is < 0.02 px)

_ZONES_ADAPTER: TypeAdapter[list[dict[str, Any]]] = TypeAdapter(Zones)
_LINES_ADAPTER: TypeAdapter[list[dict[str, Any]]] = TypeAdapter(Lines)


class EditError(ValueError):
    """An editing operation or a submission the editor refuses; the message says why."""


@dataclass
class Shape:
    """A zone (polygon) or a counting line (two points, start then end), points in frame pixels."""

    kind: ShapeKind
    name: str
    points: list[Point] = field(default_factory=list)
    coords: Coords = "normalized"  # how :meth:`to_config` writes the points
    extra: dict[str, Any] = field(default_factory=dict)  # the config's other fields (labels, anchor, ...), kept

    def to_config(self, frame_size: tuple[int, int]) -> dict[str, Any]:
        """The object set_zones / set_lines take (plain JSON types), not validated."""
        w, h = frame_size
        if self.coords == "normalized":
            pts = [[round(x / w, NORMALIZED_DIGITS), round(y / h, NORMALIZED_DIGITS)] for x, y in self.points]
        else:
            pts = [[_num(x), _num(y)] for x, y in self.points]
        out: dict[str, Any] = {"name": self.name}
        if self.kind == "zone":
            out["polygon"] = pts
        else:
            out["start"] = pts[0] if len(pts) > 0 else None
            out["end"] = pts[1] if len(pts) > 1 else None
        out["coords"] = self.coords
        out.update(self.extra)
        return out


def _num(v: float) -> float | int:
    return int(v) if float(v).is_integer() else v


def _as_dict(obj: object) -> object:
    return obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj


def _resolved_coords(numbers: Sequence[Point], pixels: Sequence[Point]) -> Coords:
    """``pixels`` when the agent's conversion left the numbers as they were, else ``normalized``."""
    return "pixels" if [tuple(p) for p in numbers] == [tuple(p) for p in pixels] else "normalized"


def describe_error(what: str, err: ValidationError) -> str:
    """Each pydantic error as ``<what>: <field>: <reason>``, e.g.
    ``zone 'gate': polygon: polygon needs at least 3 distinct points, got 2``."""
    out = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(object)"
        msg = str(e["msg"]).removeprefix("Value error, ")
        out.append(f"{what}: {loc}: {msg}")
    return "; ".join(out)


def shapes_from_config(
    zones: Iterable[object], lines: Iterable[object], frame_size: tuple[int, int]
) -> tuple[list[Shape], list[str]]:
    """Pixel shapes from zone/line objects (dicts as set_zones/set_lines take them, or their pydantic models),
    plus one problem line per object that does not validate (it is left out)."""
    w, h = frame_size
    shapes: list[Shape] = []
    problems: list[str] = []
    groups: tuple[tuple[ShapeKind, Iterable[object]], ...] = (("zone", zones), ("line", lines))
    for kind, items in groups:
        for i, raw in enumerate(items):
            data = _as_dict(raw)
            name = data.get("name", f"#{i + 1}") if isinstance(data, Mapping) else f"#{i + 1}"
            try:
                if kind == "zone":
                    z = ZoneConfig.model_validate(data)
                    pts = z.pixel_polygon(w, h)
                    mode = _resolved_coords(z.polygon, pts)
                    extra = z.model_dump(mode="json", exclude={"name", "polygon", "coords"}, exclude_defaults=True)
                else:
                    ln = LineConfig.model_validate(data)
                    start, end = ln.pixel_points(w, h)
                    pts = [start, end]
                    mode = _resolved_coords([ln.start, ln.end], pts)
                    extra = ln.model_dump(
                        mode="json", exclude={"name", "start", "end", "coords"}, exclude_defaults=True
                    )
            except ValidationError as e:
                problems.append(describe_error(f"{kind} {name!r}", e))
                continue
            shapes.append(Shape(kind, str(name), [(float(x), float(y)) for x, y in pts], mode, extra))
    return shapes, problems


class EditorModel:
    """The zone/line editor's state and operations (see the module docstring).

    ``selected`` is the index of the selected shape (None when there are none), ``vertex`` the selected vertex
    of it (None when it has no points), ``cursor`` an integer pixel of the frame, ``moving`` whether the
    selected vertex follows the cursor.
    """

    def __init__(self, frame_size: tuple[int, int], shapes: Iterable[Shape] = (), *, new_coords: Coords = "normalized"):
        w, h = int(frame_size[0]), int(frame_size[1])
        if w <= 0 or h <= 0:
            raise ValueError(f"frame size must be positive, got {w}x{h}")
        self.frame_size = (w, h)
        self.new_coords: Coords = new_coords
        self.shapes: list[Shape] = list(shapes)
        self.selected: int | None = 0 if self.shapes else None
        self.vertex: int | None = None
        self.cursor: tuple[int, int] = (w // 2, h // 2)
        self.moving = False
        self._select(self.selected)
        self.initial = self.to_config()  # to tell what the user changed
        self._source: dict[str, list[Any]] = {}  # the objects as they came (see from_config)

    @classmethod
    def from_config(
        cls, frame_size: tuple[int, int], zones: Iterable[object] = (), lines: Iterable[object] = ()
    ) -> tuple[EditorModel, list[str]]:
        """A model of the camera's current zones and lines; the problems list those that could not be read.

        :meth:`submit` hands back a kind (zones or lines) the user left as it was in the very objects it came in
        (``result["zones"] == zones``), so a caller can tell that there is nothing to send for it (set_zones /
        set_lines end the camera's live tracks)."""
        zones, lines = [_as_dict(z) for z in zones], [_as_dict(ln) for ln in lines]
        shapes, problems = shapes_from_config(zones, lines, frame_size)
        model = cls(frame_size, shapes)
        for kind, items in (("zones", zones), ("lines", lines)):
            if len(model.initial[kind]) == len(items):  # every object was read: they can stand for themselves
                model._source[kind] = items
        return model, problems

    # ---- reading ---------------------------------------------------------------------------------------
    @property
    def step(self) -> int:
        """Cursor step of an arrow key in pixels (1% of the frame's larger side); shift moves ten steps."""
        return max(1, round(max(self.frame_size) / 100))

    @property
    def current(self) -> Shape | None:
        return self.shapes[self.selected] if self.selected is not None else None

    def _need(self) -> Shape:
        if self.current is None:
            raise EditError("no zone or line selected: press n for a new zone, l for a new line")
        return self.current

    # ---- selection and cursor ----------------------------------------------------------------------------
    def _select(self, index: int | None) -> None:
        self.moving = False
        self.selected = index
        shape = self.current
        self.vertex = (len(shape.points) - 1) if shape is not None and shape.points else None
        if shape is not None and shape.points and self.vertex is not None:
            self._cursor_to(shape.points[self.vertex])

    def _cursor_to(self, p: Point) -> None:
        w, h = self.frame_size
        self.cursor = (min(max(int(round(p[0])), 0), w - 1), min(max(int(round(p[1])), 0), h - 1))

    def select_shape(self, delta: int) -> None:
        """Select the next (+1) or previous (-1) shape, wrapping."""
        if not self.shapes:
            raise EditError("no zones or lines yet: press n for a new zone, l for a new line")
        start = self.selected if self.selected is not None else -1
        self._select((start + delta) % len(self.shapes))

    def select_vertex(self, delta: int) -> None:
        """Select the next (+1) or previous (-1) vertex of the selected shape; the cursor jumps to it."""
        shape = self._need()
        if not shape.points:
            raise EditError(f"{shape.kind} {shape.name!r} has no points yet: press a to add one at the cursor")
        self.moving = False
        self.vertex = ((self.vertex if self.vertex is not None else -1) + delta) % len(shape.points)
        self._cursor_to(shape.points[self.vertex])

    def move_cursor(self, dx: int, dy: int, *, big: bool = False) -> None:
        """Move the cursor by (dx, dy) steps (ten times as far when ``big``); a grabbed vertex follows it."""
        k = self.step * (10 if big else 1)
        self.set_cursor(self.cursor[0] + dx * k, self.cursor[1] + dy * k)

    def set_cursor(self, x: float, y: float) -> None:
        """Put the cursor on a frame pixel (clamped to the frame); a grabbed vertex follows it."""
        self._cursor_to((x, y))
        shape = self.current
        if self.moving and shape is not None and self.vertex is not None:
            shape.points[self.vertex] = (float(self.cursor[0]), float(self.cursor[1]))

    # ---- editing -----------------------------------------------------------------------------------------
    def _default_name(self, kind: ShapeKind) -> str:
        taken = {s.name for s in self.shapes if s.kind == kind}
        i = 1
        while f"{kind}-{i}" in taken:
            i += 1
        return f"{kind}-{i}"

    def new_shape(self, kind: ShapeKind) -> Shape:
        """Add an empty zone or line with a free default name and select it."""
        count = sum(1 for s in self.shapes if s.kind == kind)
        bound = MAX_ZONES if kind == "zone" else MAX_LINES
        if count >= bound:
            raise EditError(f"a camera has at most {bound} {kind}s")
        shape = Shape(kind, self._default_name(kind), [], self.new_coords)
        self.shapes.append(shape)
        self._select(len(self.shapes) - 1)
        return shape

    def add_vertex(self) -> None:
        """Add a point at the cursor after the selected vertex (a line takes two points: start, then end)."""
        shape = self._need()
        p = (float(self.cursor[0]), float(self.cursor[1]))
        if shape.kind == "line" and len(shape.points) >= 2:
            raise EditError(
                f"line {shape.name!r} already has its two points: select one with [ ] and move it with space"
            )
        if shape.kind == "zone" and len(shape.points) >= MAX_VERTICES:
            raise EditError(f"a zone has at most {MAX_VERTICES} vertices")
        if p in shape.points:
            raise EditError(f"{shape.kind} {shape.name!r} already has a point at {self.cursor[0]},{self.cursor[1]}")
        at = (self.vertex + 1) if self.vertex is not None else len(shape.points)
        shape.points.insert(at, p)
        self.vertex = at
        self.moving = False

    def delete_vertex(self) -> None:
        """Delete the selected vertex; the one before it becomes selected."""
        shape = self._need()
        if self.vertex is None or not shape.points:
            raise EditError(f"{shape.kind} {shape.name!r} has no point to delete")
        del shape.points[self.vertex]
        self.moving = False
        if not shape.points:
            self.vertex = None
        else:
            self.vertex = (self.vertex - 1) % len(shape.points)
            self._cursor_to(shape.points[self.vertex])

    def toggle_move(self) -> bool:
        """Grab the selected vertex (it follows the cursor from now on) or drop it; returns whether it is held."""
        shape = self._need()
        if self.vertex is None:
            raise EditError(f"{shape.kind} {shape.name!r} has no point to move: press a to add one")
        if not self.moving:
            self._cursor_to(shape.points[self.vertex])
            self.moving = True
            shape.points[self.vertex] = (float(self.cursor[0]), float(self.cursor[1]))
        else:
            self.moving = False
        return self.moving

    def delete_shape(self) -> Shape:
        """Delete the selected zone or line; the previous one becomes selected."""
        shape = self._need()
        assert self.selected is not None
        del self.shapes[self.selected]
        self._select(min(self.selected, len(self.shapes) - 1) if self.shapes else None)
        return shape

    def rename(self, name: str) -> None:
        """Rename the selected shape; the name must be an identifier, unique among the camera's zones (lines)."""
        shape = self._need()
        name = name.strip()
        if not re.match(ID_PATTERN, name):
            raise EditError(f"name {name!r}: use 1-64 letters, digits, '_', '.', '-' (starting with a letter or digit)")
        if any(s is not shape and s.kind == shape.kind and s.name == name for s in self.shapes):
            raise EditError(f"name {name!r}: another {shape.kind} has it; names must be unique per camera")
        shape.name = name

    def reverse_line(self) -> None:
        """Swap a line's start and end, which swaps its two directions."""
        shape = self._need()
        if shape.kind != "line":
            raise EditError(f"zone {shape.name!r} has no direction: reverse works on lines")
        shape.points.reverse()
        if self.vertex is not None and len(shape.points) == 2:
            self.vertex = 1 - self.vertex

    # ---- output -------------------------------------------------------------------------------------------
    def to_config(self) -> dict[str, list[dict[str, Any]]]:
        """``{"zones": [...], "lines": [...]}`` as set_zones / set_lines take them, not validated."""
        return {
            "zones": [s.to_config(self.frame_size) for s in self.shapes if s.kind == "zone"],
            "lines": [s.to_config(self.frame_size) for s in self.shapes if s.kind == "line"],
        }

    def problems(self) -> list[str]:
        """Why the agent would refuse :meth:`to_config`, one line per shape (or bound) at fault; [] when valid."""
        cfg = self.to_config()
        out: list[str] = []
        for kind, model, items in (("zone", ZoneConfig, cfg["zones"]), ("line", LineConfig, cfg["lines"])):
            for item in items:
                try:
                    model.model_validate(item)
                except ValidationError as e:
                    out.append(describe_error(f"{kind} {item['name']!r}", e))
        if out:
            return out
        for kind, adapter, items in (("zones", _ZONES_ADAPTER, cfg["zones"]), ("lines", _LINES_ADAPTER, cfg["lines"])):
            try:
                adapter.validate_python(items)
            except ValidationError as e:
                out.append(describe_error(f"set_{kind}", e))
        try:
            CameraTrackingConfig.model_validate(cfg)
        except ValidationError as e:
            out.append(describe_error("camera", e))
        return out

    def submit(self) -> dict[str, list[dict[str, Any]]]:
        """The result to send, or :class:`EditError` with every reason the agent would refuse it."""
        self.moving = False
        problems = self.problems()
        if problems:
            raise EditError("; ".join(problems))
        out = self.to_config()
        for kind, source in self._source.items():
            if out[kind] == self.initial[kind]:
                out[kind] = source
        return out
