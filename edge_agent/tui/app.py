"""The ``edge-agent tui`` Textual app: the site's agents, their cameras, health, trends, events and actions.

The app shows a :class:`~edge_agent.tui.state.SiteState` and sends commands through a :class:`Commander`
(:class:`~edge_agent.tui.feed.MqttFeed` in production). The state's listener runs on the feed's network thread:
it only posts one :class:`StateChanged` message at a time (thread-safe, coalesced), and the app thread then
redraws from a fresh reading of the state.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from functools import partial
from typing import Any, Protocol

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header

from edgesight.limits import clip
from edgesight.wire import WireError

from .forms import AddCameraForm, ConfirmForm, FpsForm, VariantForm
from .preview_screen import PreviewScreen, open_editor
from .state import AgentSnapshot, Change, Command, SiteState
from .widgets import AckLine, AgentBar, CameraTable, EventsFeed, HealthPanel, StateScreen, Trends, connection_text


class Commander(Protocol):
    """Sends commands to agents (:class:`~edge_agent.tui.feed.MqttFeed`)."""

    def send(self, agent_id: str, action: str, camera_id: str | None = None, **fields: Any) -> Command: ...

    def watch_preview(self, agent_id: str | None, camera_id: str | None = None) -> None: ...


class StateChanged(Message):
    """Posted (from any thread) when the state changed since the app last drew it."""


class MainScreen(StateScreen):
    """Agents, the selected agent's camera table and health, the selected camera's trends and events."""

    BINDINGS = [
        Binding("s", "start", "Start"),
        Binding("x", "stop", "Stop"),
        Binding("r", "restart", "Restart"),
        Binding("a", "add", "Add"),
        Binding("d", "remove", "Remove"),
        Binding("f", "fps", "Fps"),
        Binding("m", "variant", "Model"),
        Binding("n", "snapshot", "Snap"),
        Binding("p", "preview", "Preview"),
        Binding("e", "edit_zones", "Zones"),
        Binding("left_square_bracket", "agent(-1)", "Prev agent", show=False),
        Binding("right_square_bracket", "agent(1)", "Next agent", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.agent_id: str | None = None

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◉")
        yield AgentBar(id="agents")
        yield CameraTable(id="cameras")
        with Horizontal(id="middle"):
            yield HealthPanel(id="health")
            yield Trends(id="trends")
        yield EventsFeed(id="events")
        yield AckLine("", id="ack")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#cameras").border_title = "cameras"
        self.query_one("#health").border_title = "health"
        self.query_one("#cameras", CameraTable).focus()
        self.redraw()

    # ------------------------------------------------------------------ drawing
    @property
    def camera_id(self) -> str | None:
        return self.query_one("#cameras", CameraTable).selected_camera

    def snapshot_agent(self) -> AgentSnapshot | None:
        return self.tui.state.agent(self.agent_id) if self.agent_id else None

    def redraw(self) -> None:
        state = self.tui.state
        ids = state.agent_ids()
        if self.agent_id not in ids:
            self.agent_id = ids[0] if ids else None
        agents = [a for a in (state.agent(i) for i in ids) if a is not None]
        self.query_one("#agents", AgentBar).show(agents, self.agent_id)
        agent = self.snapshot_agent()
        table = self.query_one("#cameras", CameraTable)
        table.show(agent.cameras if agent else ())
        n = len(agent.cameras) if agent else 0
        table.border_title = f"cameras of {clip(self.agent_id, 30)} ({n})" if self.agent_id else "cameras"
        self.query_one("#health", HealthPanel).show(agent)
        self.redraw_camera()
        self.sub_title = connection_text(state.connection, state.malformed_count)

    def redraw_camera(self) -> None:
        state = self.tui.state
        cam = self.camera_id
        agent = self.agent_id
        if agent and cam:
            samples = state.samples(agent, cam)
            events, dropped = state.events(agent, cam)
        else:
            samples, events, dropped = [], [], 0
        self.query_one("#trends", Trends).show(cam, samples)
        status = state.camera(agent, cam) if agent and cam else None
        self.query_one("#events", EventsFeed).show(status, events, dropped)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.redraw_camera()

    def action_pick_agent(self, agent_id: str) -> None:
        if agent_id != self.agent_id and agent_id in self.tui.state.agent_ids():
            self.agent_id = agent_id
            self.redraw()

    def _ack_line(self) -> AckLine:
        """The ack line of the screen shown (a preview screen has its own), else this one's."""
        lines = self.app.screen.query("#ack")
        line = lines.first() if lines else None
        return line if isinstance(line, AckLine) else self.query_one("#ack", AckLine)

    # ------------------------------------------------------------------ actions
    def send(self, action: str, camera_id: str | None = None, *, agent_id: str | None = None, **fields: Any) -> None:
        agent = agent_id or self.agent_id
        line = self._ack_line()
        if agent is None:
            line.show_error("no agent selected")
            return
        try:
            cmd = self.tui.commander.send(agent, action, camera_id, **fields)
        except (WireError, RuntimeError) as e:
            line.show_error(str(e))
            return
        self.tui.last_command_id = cmd.command_id
        line.show_command(cmd)

    def _camera_or_say(self) -> str | None:
        cam = self.camera_id
        if cam is None:
            self.query_one("#ack", AckLine).show_error("no camera selected")
        return cam

    def action_agent(self, step: int) -> None:
        ids = self.tui.state.agent_ids()
        if ids:
            i = ids.index(self.agent_id) if self.agent_id in ids else 0
            self.agent_id = ids[(i + step) % len(ids)]
            self.redraw()

    def action_start(self) -> None:
        if cam := self._camera_or_say():
            self.send("start_camera", cam)

    def action_stop(self) -> None:
        if cam := self._camera_or_say():
            self.send("stop_camera", cam)

    def action_restart(self) -> None:
        if cam := self._camera_or_say():
            self.send("restart_camera", cam)

    def action_snapshot(self) -> None:
        if cam := self._camera_or_say():
            self.send("snapshot", cam)

    def action_add(self) -> None:
        agent = self.snapshot_agent()
        if agent is None:
            self.query_one("#ack", AckLine).show_error("no agent selected")
            return
        allowed = agent.status.allowed_sources if agent.status else None
        existing = [c.camera_id for c in agent.cameras]

        def done(camera: dict[str, Any] | None) -> None:
            if camera is not None:
                self.send("add_camera", agent_id=agent.agent_id, camera=camera)

        self.app.push_screen(AddCameraForm(agent.agent_id, allowed, existing), done)

    def action_remove(self) -> None:
        cam = self._camera_or_say()
        agent = self.agent_id
        if cam is None or agent is None:
            return

        def done(yes: bool | None) -> None:
            if yes:
                self.send("remove_camera", cam, agent_id=agent)

        self.app.push_screen(ConfirmForm(f"Remove camera {cam} from {agent}?"), done)

    def action_fps(self) -> None:
        cam = self._camera_or_say()
        agent = self.agent_id
        if cam is None or agent is None:
            return
        st = self.tui.state.camera(agent, cam)

        def done(fps: float | None) -> None:
            if fps is not None:
                self.send("set_fps", cam, agent_id=agent, fps=fps)

        self.app.push_screen(FpsForm(cam, st.target_fps if st else None), done)

    def action_variant(self) -> None:
        agent = self.snapshot_agent()
        if agent is None:
            return
        current = None
        if agent.status and agent.status.inference:
            current = agent.status.inference.variant
        elif agent.cameras and agent.cameras[0].model:
            current = agent.cameras[0].model.variant

        def done(variant: str | None) -> None:
            if variant is not None:
                self.send("set_model_variant", agent_id=agent.agent_id, variant=variant)

        self.app.push_screen(VariantForm(agent.agent_id, current), done)

    def action_preview(self) -> None:
        cam = self._camera_or_say()
        if cam is None or self.agent_id is None:
            return
        self.app.push_screen(PreviewScreen(self.agent_id, cam))

    def action_edit_zones(self) -> None:
        cam = self._camera_or_say()
        if cam is None or self.agent_id is None:
            return
        open_editor(self, self.agent_id, cam)


class EdgeSightApp(App):
    """``edge-agent tui``: works at 80x24, mouse optional; ``?`` shows the keys, ``q`` quits."""

    TITLE = "EdgeSight"
    CSS = """
    #agents { height: 1; padding: 0 1; }
    #cameras { height: 2fr; min-height: 7; border: round $primary; }
    #middle { height: 6; }
    #health { width: 1fr; border: round $primary-darken-2; padding: 0 1; }
    #trends { width: 1fr; border: round $primary-darken-2; }
    .trend { height: 2; }
    .trend Label { width: 10; }
    .trend Sparkline { width: 1fr; height: 2; }
    #events { height: 1fr; min-height: 4; border: round $primary-darken-2; padding: 0 1; }
    #ack { height: 1; padding: 0 1; }
    .form { width: 72; height: auto; max-height: 22; border: thick $primary; background: $surface; padding: 0 1; }
    ModalScreen { align: center middle; }
    .form .title { text-style: bold; margin-bottom: 1; }
    .form .hint { color: $text-muted; }
    .form .error { color: $error; }
    .form .buttons { height: 3; align-horizontal: right; }
    .form OptionList { height: 6; }
    """
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "toggle_keys", "Keys"),
    ]

    def __init__(self, state: SiteState, commander: Commander, *, title: str = "EdgeSight"):
        super().__init__()
        self.state = state
        self.commander = commander
        self.title = title
        self.last_command_id: str | None = None
        self._pending = threading.Event()
        self._changes: list[Change] = []
        self._changes_lock = threading.Lock()
        self.state_redraws = 0

    def get_default_screen(self) -> Screen:
        return MainScreen()

    def on_mount(self) -> None:
        self.state.subscribe(self._on_change)

    def on_unmount(self) -> None:
        self.state.unsubscribe(self._on_change)

    def _on_change(self, change: Change) -> None:
        """The state's listener (any thread): coalesce, post at most one message until it is handled."""
        with self._changes_lock:
            if len(self._changes) < 1000:
                self._changes.append(change)
        if not self._pending.is_set():
            self._pending.set()
            self.post_message(StateChanged())

    def on_state_changed(self, message: StateChanged) -> None:
        self._pending.clear()
        with self._changes_lock:
            changes, self._changes = self._changes, []
        self.state_redraws += 1
        acks = any(c.kind == "ack" for c in changes)
        for screen in self.screen_stack:
            if not isinstance(screen, StateScreen):
                continue
            try:
                screen.redraw()
                if acks:
                    screen.show_ack()
            except NoMatches:  # a screen being composed or torn down (the app is starting or quitting)
                continue

    @property
    def main(self) -> MainScreen:
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                return screen
        raise LookupError("no main screen")

    def action_toggle_keys(self) -> None:
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if not isinstance(screen, MainScreen):
            return
        for title, help_text, action in (
            ("Camera: start", "Start the selected camera", screen.action_start),
            ("Camera: stop", "Stop the selected camera", screen.action_stop),
            ("Camera: restart", "Restart the selected camera", screen.action_restart),
            ("Camera: add", "Add a camera to the selected agent (form)", screen.action_add),
            ("Camera: remove", "Remove the selected camera (asks first)", screen.action_remove),
            ("Camera: set fps", "Change the selected camera's target fps", screen.action_fps),
            ("Camera: snapshot now", "Take a keyframe and a preview now", screen.action_snapshot),
            (
                "Camera: preview",
                "Show the camera's latest frame with detections, zones and lines",
                screen.action_preview,
            ),
            ("Camera: edit zones and lines", "Draw zones and counting lines on the preview", screen.action_edit_zones),
            ("Agent: set model variant", "Switch the agent's detector variant", screen.action_variant),
        ):
            yield SystemCommand(title, help_text, action)
        for agent_id in self.state.agent_ids():
            yield SystemCommand(
                f"Agent: show {agent_id}", "Switch the view to this agent", partial(screen.action_pick_agent, agent_id)
            )
