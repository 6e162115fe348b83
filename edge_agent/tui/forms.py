"""Modal forms of the TUI: add a camera, confirm a removal, set fps, pick a model variant.

Each validates what it can before anything is sent (the add form with the agent's own camera settings model
and the ``allowed_sources`` the agent reports) and dismisses with what to send, or None when cancelled.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from edge_agent.config import AgentCamera
from edge_agent.control.settings import SourceAllowlist
from edgesight.limits import clip
from edgesight.wire import AllowedSources

VARIANTS = ("auto", "fp32", "fp16", "int8")


def _field(err: ValidationError) -> str:
    e = err.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in e["loc"]) or "camera"
    return f"{loc}: {e['msg']}"


def check_camera(doc: dict[str, Any], allowed: AllowedSources | None) -> str | None:
    """None when ``doc`` is a camera the agent would take, else the problem, naming the field. The agent
    re-checks everything: this only saves a round trip."""
    try:
        cam = AgentCamera.model_validate(doc)
    except ValidationError as e:
        return _field(e)
    if allowed is None:
        return None
    try:
        allowlist = SourceAllowlist.model_validate(
            {"schemes": allowed.schemes, "hosts": allowed.hosts, "directories": allowed.dirs}
        )
    except ValidationError:
        return None  # an allowlist this build cannot read: the agent decides
    try:
        allowlist.check(cam.capture())
    except ValueError as e:
        return f"url: {clip(str(e), 300)}"
    return None


class AddCameraForm(ModalScreen[dict[str, Any] | None]):
    """id, source, target fps, loop; checked against the agent's allowlist before it is sent."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, agent_id: str, allowed: AllowedSources | None, existing: list[str]):
        super().__init__()
        self.agent_id = agent_id
        self.allowed = allowed
        self.existing = existing

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="form"):
            yield Label(f"Add a camera to {clip(self.agent_id, 40)}", classes="title")
            yield Input(placeholder="camera id (letters, digits, _ . -)", id="cam-id")
            yield Input(placeholder="source: rtsp://host/stream, http://.../mjpg, or a file path", id="cam-url")
            yield Input(placeholder="target fps (empty: the camera's rate)", id="cam-fps")
            yield Checkbox("loop a file source", id="cam-loop")
            yield Static(self._allow_text(), id="allowed", classes="hint")
            yield Static("", id="form-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Add", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def _allow_text(self) -> str:
        a = self.allowed
        if a is None:
            return "the agent reports no allowlist: it checks the source itself"
        dirs = ", ".join(a.dirs) or "none"
        return clip(
            f"allowed: {', '.join(a.schemes) or 'no schemes'} on {', '.join(a.hosts) or 'no hosts'}; "
            f"files under {dirs}",
            200,
        )

    def on_mount(self) -> None:
        self.query_one("#cam-id", Input).focus()

    def on_input_submitted(self) -> None:
        self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self.action_submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def camera_doc(self) -> tuple[dict[str, Any] | None, str | None]:
        cam_id = self.query_one("#cam-id", Input).value.strip()
        url = self.query_one("#cam-url", Input).value.strip()
        fps = self.query_one("#cam-fps", Input).value.strip()
        doc: dict[str, Any] = {"id": cam_id, "url": url}
        if not cam_id:
            return None, "id: required"
        if cam_id in self.existing:
            return None, f"id: camera {cam_id!r} already exists on {self.agent_id}"
        if not url:
            return None, "url: required"
        if fps:
            try:
                doc["target_fps"] = float(fps)
            except ValueError:
                return None, f"target_fps: {clip(fps, 20)!r} is not a number"
        if self.query_one("#cam-loop", Checkbox).value:
            doc["loop"] = True
        problem = check_camera(doc, self.allowed)
        return (None, problem) if problem else (doc, None)

    def action_submit(self) -> None:
        doc, problem = self.camera_doc()
        if problem:
            self.query_one("#form-error", Static).update(problem)
            return
        self.dismiss(doc)


class ConfirmForm(ModalScreen[bool]):
    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("y", "confirm", "Yes"), Binding("n", "cancel", "No")]

    def __init__(self, question: str):
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="form"):
            yield Label(self.question, classes="title")
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", variant="error", id="yes")
                yield Button("No (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)


class FpsForm(ModalScreen[float | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, camera_id: str, current: float | None):
        super().__init__()
        self.camera_id = camera_id
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="form"):
            yield Label(f"Target fps of {clip(self.camera_id, 40)} (0 < fps <= 240)", classes="title")
            yield Input(value=f"{self.current:g}" if self.current else "", id="fps")
            yield Static("", id="form-error", classes="error")

    def on_mount(self) -> None:
        self.query_one("#fps", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            fps = float(event.value)
        except ValueError:
            self.query_one("#form-error", Static).update(f"fps: {clip(event.value, 20)!r} is not a number")
            return
        if not 0 < fps <= 240:
            self.query_one("#form-error", Static).update("fps: must be greater than 0 and at most 240")
            return
        self.dismiss(fps)

    def action_cancel(self) -> None:
        self.dismiss(None)


class VariantForm(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, agent_id: str, current: str | None):
        super().__init__()
        self.agent_id = agent_id
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="form"):
            yield Label(f"Model variant of {clip(self.agent_id, 40)} (now {self.current or '?'})", classes="title")
            yield OptionList(*[Option(v, id=v) for v in VARIANTS], id="variants")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.focus()
        if self.current in VARIANTS:
            options.highlighted = VARIANTS.index(self.current)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(str(event.option.id))

    def action_cancel(self) -> None:
        self.dismiss(None)
