"""The zone and counting-line editor: a screen over a camera's preview.

Push it with ``app.push_screen(GeometryEditor(jpeg, frame_size, zones, lines, camera_id=...), callback)``; the
callback gets ``{"zones": [...], "lines": [...]}`` (each object validated with the agent's ZoneConfig /
LineConfig and set_zones / set_lines bounds: send them as they are; a kind left as it was comes back as the
very list passed in, so compare before sending: set_zones / set_lines end the camera's live tracks) or None
when the user cancelled. Editing happens in :class:`edge_agent.tui.geometry.EditorModel`; this screen maps
keys (and clicks) onto it and draws the result live on a :class:`edge_agent.tui.preview.PreviewImage`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, HelpPanel, Input, Static

from edge_agent.tui.geometry import DEFAULT_FRAME, EditError, EditorModel
from edge_agent.tui.preview import PreviewImage, frame_size_of

EditorResult = dict[str, list[dict[str, Any]]]

# Actions that change or move something: off while the name input is open (its keys are the input's).
_EDIT_ACTIONS = frozenset(
    {
        "cursor",
        "new_shape",
        "add_vertex",
        "delete_vertex",
        "move_vertex",
        "select_vertex",
        "select_shape",
        "rename",
        "delete_shape",
        "reverse_line",
        "submit",
        "toggle_help",
    }
)


def _arrows() -> list[BindingType]:
    out: list[BindingType] = []
    for key, dx, dy in (("left", -1, 0), ("right", 1, 0), ("up", 0, -1), ("down", 0, 1)):
        out.append(Binding(key, f"cursor({dx}, {dy}, False)", "Cursor", show=False))
        out.append(Binding(f"shift+{key}", f"cursor({dx}, {dy}, True)", "Cursor x10", show=False))
    return out


class GeometryEditor(Screen[EditorResult | None]):
    """Edit one camera's zones and counting lines on its preview (see the module docstring)."""

    # Footer order: what an 80-column footer must show first (the rest is in the ? panel).
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "submit", "Send"),
        Binding("escape", "cancel", "Cancel"),
        Binding("question_mark", "toggle_help", "Keys"),
        Binding("n", "new_shape('zone')", "Zone"),
        Binding("l", "new_shape('line')", "Line"),
        Binding("a", "add_vertex", "Add"),
        Binding("space", "move_vertex", "Move"),
        Binding("x,delete", "delete_vertex", "Del"),
        Binding("r", "rename", "Name"),
        Binding("d", "delete_shape", "Del shape", show=False),
        Binding("tab", "select_shape(1)", "Next shape", show=False),
        Binding("shift+tab", "select_shape(-1)", "Prev shape", show=False),
        Binding("left_square_bracket", "select_vertex(-1)", "Prev point", show=False),
        Binding("right_square_bracket", "select_vertex(1)", "Next point", show=False),
        Binding("f", "reverse_line", "Flip line", show=False),
        *_arrows(),
    ]

    DEFAULT_CSS = """
    GeometryEditor { layout: vertical; }
    GeometryEditor #ge-body { height: 1fr; }
    GeometryEditor #ge-preview { width: 1fr; height: 1fr; }
    GeometryEditor #ge-side { width: 26; height: 1fr; padding: 0 1; border-left: solid $primary; }
    GeometryEditor #ge-message { height: auto; max-height: 3; padding: 0 1; }
    GeometryEditor #ge-message.error { color: $error; }
    GeometryEditor #ge-name { display: none; }
    GeometryEditor #ge-name.open { display: block; }
    """

    def __init__(
        self,
        jpeg: bytes | None = None,
        frame_size: tuple[int, int] | object | None = None,
        zones: Iterable[object] = (),
        lines: Iterable[object] = (),
        *,
        camera_id: str = "",
        graphics: bool = True,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.camera_id = camera_id
        self.preview = PreviewImage(jpeg, frame_size, id="ge-preview", graphics=graphics)
        size = frame_size_of(frame_size) or self.preview.frame_size
        notes: list[str] = []
        if size is None:
            size = DEFAULT_FRAME
            notes.append(f"frame size unknown: drawing on a {size[0]}x{size[1]} canvas, saved normalized")
        self.model, problems = EditorModel.from_config(size, zones, lines)
        self._discard_armed = False
        self._start_message = "; ".join(notes + [f"left out (sending removes it): {p}" for p in problems]) or (
            "n new zone · l new line · a add point at the cursor · ctrl+s send · ? keys"
        )
        self._start_error = bool(notes or problems)

    # ---- layout --------------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal(id="ge-body"):
            yield self.preview
            with VerticalScroll(id="ge-side"):
                yield Static(id="ge-shapes", markup=False)
        yield Static(id="ge-message", markup=False)
        yield Input(id="ge-name", placeholder="name: letters, digits, _ . - (enter to keep, escape to leave)")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._say(self._start_message, error=self._start_error)
        self._refresh_view()

    @property
    def naming(self) -> bool:
        return self.query_one("#ge-name", Input).has_class("open")

    @property
    def status_text(self) -> str:
        """The text of the message line (the last operation's result or error)."""
        return str(self.query_one("#ge-message", Static).content)

    def _say(self, text: str, *, error: bool = False) -> None:
        msg = self.query_one("#ge-message", Static)
        msg.update(text)
        msg.set_class(error, "error")

    def _refresh_view(self) -> None:
        m = self.model
        self.preview.set_shapes(m.shapes, selected=m.selected, vertex=m.vertex, cursor=m.cursor)
        w, h = m.frame_size
        lines = [f"{self.camera_id or 'camera'} {w}x{h}"]
        for kind, title in (("zone", "ZONES"), ("line", "LINES")):
            lines.append(title)
            items = [(i, s) for i, s in enumerate(m.shapes) if s.kind == kind]
            lines.extend(f"{'>' if i == m.selected else ' '} {s.name[:16]:<16} {len(s.points):>3}p" for i, s in items)
            if not items:
                lines.append("  (none)")
        cx, cy = m.cursor
        lines.append(f"cursor {cx},{cy} ({cx / w:.3f},{cy / h:.3f})")
        shape = m.current
        if shape is not None and m.vertex is not None:
            state = "moving (space drops)" if m.moving else "space moves"
            lines.append(f"point {m.vertex + 1}/{len(shape.points)} · {state}")
        if shape is not None and shape.kind == "line" and len(shape.points) == 2:
            d = shape.extra.get("directions", ["in", "out"])
            lines.append(f"arrow = {d[0]}")
        self.query_one("#ge-shapes", Static).update("\n".join(lines))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in _EDIT_ACTIONS and self.is_mounted and self.naming:
            return False
        return True

    def _run(self, op: Any, *args: Any, done: str = "") -> bool:
        """Apply a model operation; show its refusal (or ``done``) on the message line and redraw."""
        self._discard_armed = False
        try:
            op(*args)
        except EditError as e:
            self._say(str(e), error=True)
            return False
        if done:
            self._say(done)
        self._refresh_view()
        return True

    # ---- actions --------------------------------------------------------------------------------------------
    def action_cursor(self, dx: int, dy: int, big: bool) -> None:
        self._run(lambda: self.model.move_cursor(dx, dy, big=big))

    def action_new_shape(self, kind: str) -> None:
        if self._run(self.model.new_shape, kind, done=f"new {kind}: type its name, enter"):
            self._open_name()

    def action_add_vertex(self) -> None:
        self._run(self.model.add_vertex, done="point added at the cursor")

    def action_delete_vertex(self) -> None:
        self._run(self.model.delete_vertex, done="point deleted")

    def action_move_vertex(self) -> None:
        if self._run(self.model.toggle_move):
            self._say("moving the point: arrows move it, space drops it" if self.model.moving else "point dropped")

    def action_select_vertex(self, delta: int) -> None:
        self._run(self.model.select_vertex, delta)

    def action_select_shape(self, delta: int) -> None:
        if self._run(self.model.select_shape, delta) and self.model.current is not None:
            self._say(f"{self.model.current.kind} {self.model.current.name!r} selected")

    def action_delete_shape(self) -> None:
        current = self.model.current
        if self._run(self.model.delete_shape) and current is not None:
            self._say(f"{current.kind} {current.name!r} deleted")

    def action_reverse_line(self) -> None:
        self._run(self.model.reverse_line, done="line reversed: its directions swap")

    def action_rename(self) -> None:
        if self.model.current is None:
            self._say("no zone or line selected: press n for a new zone, l for a new line", error=True)
            return
        self._open_name()

    def action_toggle_help(self) -> None:
        panels = self.query(HelpPanel)
        if panels:
            panels.remove()
        else:
            self.mount(HelpPanel())

    def action_submit(self) -> None:
        try:
            result = self.model.submit()
        except EditError as e:
            self._say(f"not sent: {e}", error=True)
            self._refresh_view()
            return
        self.dismiss(result)

    def action_cancel(self) -> None:
        if self.naming:
            self._close_name()
            self._say("name left as it was")
            return
        if self.model.to_config() != self.model.initial and not self._discard_armed:
            self._discard_armed = True
            self._say("unsent changes: escape again discards them, ctrl+s sends", error=True)
            return
        self.dismiss(None)

    # ---- naming -----------------------------------------------------------------------------------------------
    def _open_name(self) -> None:
        shape = self.model.current
        name_input = self.query_one("#ge-name", Input)
        name_input.value = shape.name if shape is not None else ""
        name_input.add_class("open")
        name_input.focus()
        name_input.select_all()
        self.refresh_bindings()

    def _close_name(self) -> None:
        self.query_one("#ge-name", Input).remove_class("open")
        self.set_focus(None)
        self.refresh_bindings()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        shape = self.model.current
        try:
            self.model.rename(event.value)
        except EditError as e:
            self._say(str(e), error=True)
            return
        self._close_name()
        if shape is not None:
            self._say(f"{shape.kind} named {shape.name!r}: a adds points at the cursor")
        self._refresh_view()

    # ---- mouse (optional) ---------------------------------------------------------------------------------------
    def on_click(self, event: events.Click) -> None:
        """A click on the image puts the cursor there (a held point follows)."""
        image = self.preview.query_one("#preview-image")
        offset = event.get_content_offset(image)
        if offset is None or self.naming or not image.content_size.width or not image.content_size.height:
            return
        w, h = self.model.frame_size
        x = (offset.x + 0.5) / image.content_size.width * w
        y = (offset.y + 0.5) / image.content_size.height * h
        self._run(self.model.set_cursor, x, y)
