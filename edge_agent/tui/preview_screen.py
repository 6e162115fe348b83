"""The preview screen (the camera's latest frame, its detections, zones and lines) and the way to the editor.

While the screen is shown the TUI holds a preview lease on the camera: one ``preview`` command at once, renewed
at half its length, so the agent publishes a frame every ``control.preview_interval_s`` and stops by itself
when the TUI goes away. The TUI subscribes to that camera's (retained) preview topic only meanwhile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header

from edgesight.limits import clip

from .preview import PreviewImage
from .widgets import AckLine, StateScreen

if TYPE_CHECKING:
    from .app import MainScreen

PREVIEW_LEASE_S = 60.0
"""Seconds of preview one command asks for; renewed at half of it while the preview is shown."""


class PreviewScreen(StateScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("e", "edit_zones", "Edit zones"),
        Binding("n", "snapshot", "Snapshot"),
    ]

    def __init__(self, agent_id: str, camera_id: str):
        super().__init__()
        self.agent_id = agent_id
        self.camera_id = camera_id

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◉")
        yield PreviewImage(id="preview")
        yield AckLine("", id="ack")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"preview {clip(self.agent_id, 30)}/{clip(self.camera_id, 30)}"
        self.tui.commander.watch_preview(self.agent_id, self.camera_id)
        self.renew()
        self.set_interval(PREVIEW_LEASE_S / 2, self.renew)
        self.redraw()

    def on_unmount(self) -> None:
        self.tui.commander.watch_preview(None)

    def renew(self) -> None:
        self.tui.main.send("preview", self.camera_id, agent_id=self.agent_id, seconds=PREVIEW_LEASE_S)

    def redraw(self) -> None:
        state = self.tui.state
        pv = state.preview(self.agent_id, self.camera_id)
        cam = state.camera(self.agent_id, self.camera_id)
        frame = (pv.frame if pv else None) or (cam.frame if cam else None)
        self.query_one(PreviewImage).update_preview(
            pv.jpeg_bytes() if pv else None,
            frame,
            pv.detections if pv else (),
            cam.zones if cam else (),
            cam.lines if cam else (),
        )
        self.show_ack()

    def action_snapshot(self) -> None:
        self.tui.main.send("snapshot", self.camera_id, agent_id=self.agent_id)

    def action_edit_zones(self) -> None:
        open_editor(self.tui.main, self.agent_id, self.camera_id)


def open_editor(main: MainScreen, agent_id: str, camera_id: str) -> None:
    """Push the zone/line editor on the camera's latest preview; send what changed when it is saved."""
    from .editor import GeometryEditor

    state = main.tui.state
    pv = state.preview(agent_id, camera_id)
    cam = state.camera(agent_id, camera_id)
    zones = list(cam.zones) if cam else []
    lines = list(cam.lines) if cam else []
    frame = (pv.frame if pv else None) or (cam.frame if cam else None)

    def done(result: dict[str, Any] | None) -> None:
        if result is None:
            return
        if result.get("zones", zones) != zones:
            main.send("set_zones", camera_id, agent_id=agent_id, zones=result["zones"])
        if result.get("lines", lines) != lines:
            main.send("set_lines", camera_id, agent_id=agent_id, lines=result["lines"])

    editor = GeometryEditor(pv.jpeg_bytes() if pv else None, frame, zones, lines, camera_id=camera_id)
    main.app.push_screen(editor, done)
