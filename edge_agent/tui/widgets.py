"""The main screen's widgets; each is refreshed from a :class:`~edge_agent.tui.state.SiteState` reading."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.text import Text
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Label, Sparkline, Static

from edgesight.limits import clip
from edgesight.wire import CameraStatus, FeedEvent

from .state import AckView, AgentSnapshot, Command, Connection, Sample

if TYPE_CHECKING:
    from .app import EdgeSightApp

MAX_ROWS = 64
"""Cameras shown in the table (the state keeps more; the rest are counted in the title)."""
EVENTS_SHOWN = 50

STATE_STYLE = {
    "streaming": "green",
    "starting": "yellow",
    "reconnecting": "yellow",
    "failed": "bold red",
    "stopped": "dim",
    "disabled": "dim",
    "running": "green",
    "degraded": "yellow",
    "stopping": "yellow",
    "offline": "bold red",
    "unknown": "dim",
}
COLUMNS = (  # key, label, width (None: as wide as the content); 80 columns show all but the error's tail
    ("camera", "camera", 12),
    ("state", "state", 12),
    ("fps", "fps/cfg", 8),
    ("age", "age", 5),
    ("drops", "drops", 5),
    ("reconnects", "recon", 5),
    ("variant", "model", 5),
    ("dets", "det/s", 5),
    ("error", "last error", None),
)


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - the loop returns at GiB


def fmt_duration(s: float | None) -> str:
    if s is None:
        return "-"
    s = max(0.0, s)
    if s < 10:
        return f"{s:.1f}s"
    if s < 120:
        return f"{s:.0f}s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h{m:02d}m"
    return f"{h // 24}d{h % 24:02d}h"


def fmt_count(n: int) -> str:
    return str(n) if n < 100_000 else f"{n / 1000:.0f}k"


def camera_cells(c: CameraStatus) -> tuple[Text | str, ...]:
    """One camera table row: what the agent reports, formatted."""
    target = f"{c.target_fps:g}" if c.target_fps else "-"
    error = c.last_error or (c.reason if c.state in ("failed", "reconnecting") else "")
    return (
        c.camera_id,
        Text(c.state, style=STATE_STYLE.get(c.state, "")),
        f"{c.fps:.1f}/{target}",
        fmt_duration(c.frame_age_s),
        fmt_count(c.dropped),
        fmt_count(c.reconnects),
        c.model.variant if c.model else "-",
        f"{c.detections_per_s:.1f}",
        Text(clip(error, 120), style="red") if error else "",
    )


class StateScreen(Screen):
    """A screen that shows the state: the app calls :meth:`redraw` after state changes and :meth:`show_ack`
    when an ack arrived; :attr:`tui` is the app with its state and commander."""

    @property
    def tui(self) -> EdgeSightApp:
        from .app import EdgeSightApp

        app = self.app
        assert isinstance(app, EdgeSightApp)
        return app

    def redraw(self) -> None:
        raise NotImplementedError

    def show_ack(self) -> None:
        ack = self.tui.state.last_ack()
        if ack is not None and ack.command_id == self.tui.last_command_id:
            self.query_one("#ack", AckLine).show_ack(ack)


class AgentBar(Static):
    """The site's agents (from their retained status) on one line; the selected one is highlighted. ``[``/``]``
    switch, a click selects (mouse optional), the command palette lists them too."""

    def show(self, agents: Sequence[AgentSnapshot], selected: str | None) -> None:
        if not agents:
            self.update("[dim]no agent has reported on this site yet[/]")
            return
        parts = []
        for a in agents:  # agent ids are identifiers (letters, digits, _ . -): safe inside markup
            mark = f"[{STATE_STYLE.get(a.state, '')}]●[/]" if a.online else "[red]○[/]"
            name = f"[reverse]{a.agent_id}[/]" if a.agent_id == selected else a.agent_id
            parts.append(f"[@click=screen.pick_agent('{a.agent_id}')]{mark} {name}[/]")
        self.update("agents: " + "  ".join(parts))


class CameraTable(DataTable):
    """The selected agent's cameras, one row each; only cells whose value changed are redrawn."""

    def __init__(self, **kw) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, cell_padding=1, **kw)
        self._rows: dict[str, tuple[Text | str, ...]] = {}
        self.updated: dict[str, float] = {}
        """camera id -> time.monotonic() of the last change shown (the latency benchmark reads it)."""

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    def show(self, cameras: Sequence[CameraStatus]) -> None:
        shown = list(cameras)[:MAX_ROWS]
        ids = [c.camera_id for c in shown]
        now = time.monotonic()
        if ids != list(self._rows):
            cursor = self.selected_camera
            self.clear()
            self._rows = {}
            for c in shown:
                cells = camera_cells(c)
                self.add_row(*cells, key=c.camera_id)
                self._rows[c.camera_id] = cells
                self.updated[c.camera_id] = now
            if cursor in ids:
                self.move_cursor(row=ids.index(cursor), animate=False)
            return
        for c in shown:
            cells = camera_cells(c)
            old = self._rows[c.camera_id]
            if cells == old:
                continue
            for (key, _, _), new, before in zip(COLUMNS, cells, old):
                if new != before:
                    self.update_cell(c.camera_id, key, new)
            self._rows[c.camera_id] = cells
            self.updated[c.camera_id] = now

    @property
    def selected_camera(self) -> str | None:
        if not self._rows or self.cursor_row < 0 or self.cursor_row >= self.row_count:
            return None
        return str(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)

    def cell_text(self, camera_id: str, column: str) -> str:
        return str(self.get_cell(camera_id, column))


class HealthPanel(Static):
    """The selected agent's health: state, version, uptime, CPU, memory, inference, spool, broker."""

    def show(self, a: AgentSnapshot | None) -> None:
        if a is None or a.status is None:
            self.update(Text("no agent reports on this site yet", style="dim"))
            return
        s = a.status
        t = Text()
        t.append(f"{clip(a.agent_id, 40)} ", style="bold")
        t.append(s.state, style=STATE_STYLE.get(s.state, ""))
        t.append(f" v{clip(s.version, 16)} up {fmt_duration(s.uptime_s)}\n")
        t.append(f"cpu {s.cpu_percent:.0f}%  mem {fmt_bytes(s.memory_rss_bytes)}")
        if s.inference:
            provider = s.inference.provider.removesuffix("ExecutionProvider")
            t.append(f"  {clip(provider, 16)}/{clip(s.inference.variant, 8)}")
        t.append("\n")
        sp = s.spool
        if sp is not None:
            t.append(f"spool {fmt_count(sp.records)} rec {fmt_bytes(sp.bytes)}")
            if sp.dropped:
                t.append(f" dropped {fmt_count(sp.dropped)}", style="red")
            t.append("\n")
        b = s.broker
        if b is None:
            t.append("kafka: not reported", style="dim")
        elif b.connected:
            t.append("kafka ok", style="green")
            t.append(f"  lag {fmt_count(b.undelivered)} undelivered")
        else:
            t.append("kafka down", style="bold red")
            t.append(f"  {fmt_count(b.undelivered)} undelivered {clip(b.last_error, 60)}")
        if a.cameras_dropped:
            t.append(f"\n{a.cameras_dropped} camera reports beyond the TUI's bound ignored", style="yellow")
        self.update(t)


class Trends(Vertical):
    """Sparklines of the selected camera's fps and inference latency over the last minutes."""

    def compose(self):
        with Horizontal(classes="trend"):
            yield Label("fps     ", id="fps-label")
            yield Sparkline([], id="fps-line", summary_function=max)
        with Horizontal(classes="trend"):
            yield Label("latency ", id="lat-label")
            yield Sparkline([], id="lat-line", summary_function=max)

    def show(self, camera: str | None, samples: Sequence[Sample]) -> None:
        fps = [s.fps for s in samples]
        lat = [s.latency_ms for s in samples if s.latency_ms is not None]
        self.query_one("#fps-label", Label).update(f"fps {fps[-1]:5.1f} " if fps else "fps     -")
        self.query_one("#lat-label", Label).update(f"ms {lat[-1]:6.0f} " if lat else "ms      -")
        self.query_one("#fps-line", Sparkline).data = fps
        self.query_one("#lat-line", Sparkline).data = lat
        self.border_title = f"trends {camera}" if camera else "trends"


def event_line(e: FeedEvent) -> Text:
    style = {"new": "green", "end": "dim"}.get(e.kind.value, "")
    t = Text(f"{e.ts:%H:%M:%S} ", style="dim")
    t.append(f"{e.kind.value:<6}", style=style)
    t.append(f" {clip(e.label, 20)}")
    if e.track_id is not None:
        t.append(f" #{e.track_id}")
    t.append(f" {e.score:.2f}", style="dim")
    if e.entered:
        t.append(" +" + ",".join(clip(z, 20) for z in e.entered[:4]), style="cyan")
    if e.exited:
        t.append(" -" + ",".join(clip(z, 20) for z in e.exited[:4]), style="magenta")
    for c in e.crossings[:4]:
        t.append(f" x{clip(c.line, 20)}:{clip(c.direction, 10)}", style="yellow")
    if e.zones and not e.entered and not e.exited:
        t.append(" in " + ",".join(clip(z, 20) for z in e.zones[:4]), style="dim")
    return t


class EventsFeed(Static):
    """The selected camera's recent events, newest first, under its last error (when it has one)."""

    def show(self, camera: CameraStatus | None, events: Sequence[FeedEvent], dropped: int) -> None:
        self.border_title = f"events {camera.camera_id}" if camera else "events"
        self.border_subtitle = f"{dropped} dropped by the agent" if dropped else ""
        lines = []
        if camera is not None and (camera.last_error or camera.reason) and camera.state != "streaming":
            lines.append(Text(f"{camera.state}: {clip(camera.last_error or camera.reason, 300)}", style="red"))
        lines += [event_line(e) for e in reversed(events[-EVENTS_SHOWN:])]
        self.update(Text("\n").join(lines) if lines else Text("no events yet", style="dim"))


class AckLine(Static):
    """The last command sent and its acknowledgement (or error, with the field at fault)."""

    def show_command(self, cmd: Command) -> None:
        ack = cmd.ack
        if ack is None:
            what = f"{cmd.action} {cmd.camera_id or ''}".strip()
            self.update(Text(f"… {what}: sent, waiting for the agent's ack", style="yellow"))
        else:
            self.show_ack(ack)

    def show_ack(self, ack: AckView) -> None:
        self.update(Text(("✔ " if ack.ok else "✘ ") + ack.summary(), style="green" if ack.ok else "bold red"))

    def show_error(self, message: str) -> None:
        self.update(Text(f"✘ not sent: {clip(message, 300)}", style="bold red"))


def connection_text(c: Connection, malformed: int) -> str:
    if c.connected:
        text = f"mqtt {c.broker} connected" + (f" (reconnected {c.reconnects}x)" if c.reconnects else "")
    else:
        text = f"mqtt {c.broker or '-'} DISCONNECTED {c.error}".rstrip() + " (retrying)"
    if malformed:
        text += f" | {malformed} malformed msg"
    return text
