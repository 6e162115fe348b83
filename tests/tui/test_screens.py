"""The TUI's screens without a broker: the state is fed directly, commands go to a recorder."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from textual.widgets import HelpPanel

from edge_agent.tui.app import EdgeSightApp, MainScreen
from edge_agent.tui.forms import AddCameraForm, ConfirmForm, check_camera
from edge_agent.tui.preview import PreviewImage
from edge_agent.tui.preview_screen import PREVIEW_LEASE_S, PreviewScreen
from edge_agent.tui.state import SiteState
from edge_agent.tui.widgets import AckLine, CameraTable, camera_cells, fmt_bytes, fmt_duration
from edgesight.wire import AllowedSources, CameraStatus
from tests.tui.feeds import T0, Recorder, camera_doc, preview_doc, put, site

Script = Callable[[EdgeSightApp, Recorder, object], Awaitable[None]]


def run(script: Script, size: tuple[int, int] = (80, 24)) -> EdgeSightApp:
    state = site(SiteState(clock=lambda: T0.timestamp()))
    rec = Recorder(state)
    app = EdgeSightApp(state, rec)

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await script(app, rec, pilot)

    asyncio.run(main())
    return app


def ack_text(app: EdgeSightApp) -> str:
    return str(app.screen.query_one("#ack", AckLine).render())


def table(app: EdgeSightApp) -> CameraTable:
    return app.main.query_one("#cameras", CameraTable)


def test_formatting():
    assert fmt_duration(None) == "-" and fmt_duration(0.25) == "0.2s" and fmt_duration(3725) == "1h02m"
    assert fmt_duration(200_000) == "2d07h" and fmt_bytes(512) == "512 B" and fmt_bytes(3 * 2**20) == "3.0 MiB"
    cells = camera_cells(CameraStatus.model_validate(camera_doc("s", "c", state="failed", reason="gone", fps=0.0)))
    assert [str(c) for c in cells] == ["c", "failed", "0.0/5", "0.2s", "3", "0", "int8", "2.5", "gone"]


def test_the_table_shows_what_the_agent_reports_and_follows_it():
    async def script(app: EdgeSightApp, rec: Recorder, pilot) -> None:
        t = table(app)
        assert t.row_count == 3 and t.selected_camera == "entrance"
        assert t.cell_text("loading-dock", "state") == "reconnecting" and t.cell_text("loading-dock", "age") == "12s"
        assert t.cell_text("entrance", "fps") == "4.9/5" and t.cell_text("parking", "dets") == "0.4"
        assert "rtsp://10.0.0.7/stream: connection refused" in t.cell_text("loading-dock", "error")
        # A status message: only its row's changed cells are redrawn.
        put(
            app.state,
            "site-1/camera/parking/status",
            camera_doc("site-1", "parking", ts=T0.replace(minute=1), state="stopped", fps=0.0),
        )
        await pilot.pause()
        assert t.cell_text("parking", "state") == "stopped" and t.cell_text("parking", "fps") == "0.0/5"
        # A new camera appears; a removed one goes.
        put(app.state, "site-1/camera/zz-new/status", camera_doc("site-1", "zz-new"))
        put(app.state, "site-1/camera/loading-dock/status", b"")
        await pilot.pause()
        assert [str(k.value) for k in t.rows] == ["entrance", "parking", "zz-new"]
        # The health panel and the selected camera's events.
        health = str(app.main.query_one("#health").render())
        assert "cpu 88%" in health and "412.0 MiB" in health and "CPU/int8" in health and "lag 12" in health
        events = str(app.main.query_one("#events").render())
        assert "xmid:in" in events and "+door" in events
        # The cursor on the failing camera shows its error above its events.
        await pilot.press("down")
        assert t.selected_camera == "parking"
        # Switch agents: site-2 is offline and has no cameras.
        await pilot.press("right_square_bracket")
        assert app.main.agent_id == "site-2" and t.row_count == 0
        assert "○" in str(app.main.query_one("#agents").render())
        await pilot.press("left_square_bracket")
        assert app.main.agent_id == "site-1" and t.row_count == 3

    run(script)


def test_camera_actions_send_commands_and_show_the_ack():
    async def script(app: EdgeSightApp, rec: Recorder, pilot) -> None:
        await pilot.press("x")
        assert rec.sent[-1]["action"] == "stop_camera" and rec.sent[-1]["camera_id"] == "entrance"
        assert "waiting for the agent's ack" in ack_text(app)
        rec.ack(True, camera_id="entrance", state="stopped")
        await pilot.pause()
        assert "ok: stop_camera (camera_id=entrance, state=stopped)" in ack_text(app)
        for key, action in (("s", "start_camera"), ("r", "restart_camera"), ("n", "snapshot")):
            await pilot.press(key)
            assert rec.sent[-1]["action"] == action
        # set fps: the form checks the number; the agent's error comes back with the field at fault.
        await pilot.press("f")
        await pilot.press("end", "backspace", *"500", "enter")  # the form starts at the current 5
        assert "at most 240" in str(app.screen.query_one("#form-error").render())
        await pilot.press("backspace", "backspace", "enter")
        assert rec.sent[-1] == {**rec.sent[-1], "action": "set_fps", "fps": 5.0}
        rec.ack(False, "invalid control command: field 'fps': must be at most the camera's source rate")
        await pilot.pause()
        assert "error: set_fps [field fps]" in ack_text(app)
        # Remove asks first: no sends nothing, yes sends.
        n = len(rec.sent)
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmForm)
        await pilot.press("n")
        assert len(rec.sent) == n and isinstance(app.screen, MainScreen)
        await pilot.press("d", "y")
        assert rec.sent[-1]["action"] == "remove_camera"
        # Model variant: a list of the contract's variants.
        await pilot.press("m", "home", "enter")
        assert rec.sent[-1] == {**rec.sent[-1], "action": "set_model_variant", "variant": "auto"}
        assert "camera_id" not in rec.sent[-1]

    run(script)


def test_add_camera_form_checks_the_agents_allowlist():
    allowed = AllowedSources(schemes=["rtsp"], hosts=["*.cams.example", "10.20.0.0/16"], dirs=["/srv/clips"])
    assert check_camera({"id": "c1", "url": "rtsp://door.cams.example/s"}, allowed) is None
    assert check_camera({"id": "c1", "url": "rtsp://10.20.3.4/s"}, allowed) is None
    assert check_camera({"id": "c1", "url": "/srv/clips/a.mp4"}, allowed) is None
    assert "hosts" in check_camera({"id": "c1", "url": "rtsp://evil.example/s"}, allowed)
    assert "schemes" in check_camera({"id": "c1", "url": "http://door.cams.example/m"}, allowed)
    assert "directories" in check_camera({"id": "c1", "url": "/etc/passwd"}, allowed)
    assert check_camera({"id": "bad id!", "url": "rtsp://x/s"}, allowed).startswith("id:")
    assert check_camera({"id": "c1", "url": "rtsp://x/s", "target_fps": -1}, None).startswith("target_fps:")
    assert (
        check_camera({"id": "c1", "url": "/anywhere/a.mp4"}, None) is None
    )  # no allowlist reported: the agent decides

    async def script(app: EdgeSightApp, rec: Recorder, pilot) -> None:
        await pilot.press("a")
        form = app.screen
        assert isinstance(form, AddCameraForm)
        assert "files under /srv/clips" in str(form.query_one("#allowed").render())
        await pilot.press(*"door", "tab", *"/etc/passwd", "enter")
        assert "directories" in str(form.query_one("#form-error").render()) and not rec.sent
        await pilot.press(*["backspace"] * len("/etc/passwd"), *"rtsp://10.0.0.9/s", "tab", *"2.5", "enter")
        assert isinstance(app.screen, MainScreen)
        assert rec.sent[-1]["action"] == "add_camera"
        assert rec.sent[-1]["camera"] == {"id": "door", "url": "rtsp://10.0.0.9/s", "target_fps": 2.5}
        await pilot.press("a", *"door2", "escape")
        assert isinstance(app.screen, MainScreen) and rec.sent[-1]["camera"]["id"] == "door"

    run(script)


def test_keys_panel_palette_and_quit():
    async def script(app: EdgeSightApp, rec: Recorder, pilot) -> None:
        await pilot.press("question_mark")
        assert app.screen.query(HelpPanel)
        await pilot.press("question_mark")
        assert not app.screen.query(HelpPanel)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for t in ("Camera: stop", "Camera: add", "Camera: edit zones and lines", "Agent: show site-2", "Quit"):
            assert t in titles
        await pilot.press("q")

    app = run(script)
    assert app.return_code == 0


def test_preview_screen_holds_a_lease_while_shown():
    async def script(app: EdgeSightApp, rec: Recorder, pilot) -> None:
        await pilot.press("p")
        assert isinstance(app.screen, PreviewScreen)
        assert rec.preview == ("site-1", "entrance")
        assert rec.sent[-1] == {
            **rec.sent[-1],
            "action": "preview",
            "camera_id": "entrance",
            "seconds": PREVIEW_LEASE_S,
        }
        image = app.screen.query_one(PreviewImage)
        caption = image.query_one("#preview-caption")
        assert "no snapshot" in str(caption.render())  # nothing received yet: the frame's canvas
        put(app.state, "site-1/camera/entrance/preview", preview_doc("site-1", "entrance"))
        await pilot.pause()
        assert "no snapshot" not in str(caption.render()) and "1 det" in str(caption.render())
        assert image.composed is not None and image.frame_size == (768, 576)
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen) and rec.preview == (None, None)

    run(script, size=(100, 40))


def test_malformed_messages_show_in_the_title_and_change_nothing():
    async def script(app: EdgeSightApp, rec: Recorder, pilot) -> None:
        app.state.ingest("edgesight/site-1/camera/entrance/status", b"{oops")
        await pilot.pause()
        assert "1 malformed msg" in app.main.sub_title
        assert table(app).cell_text("entrance", "state") == "streaming"

    run(script)
