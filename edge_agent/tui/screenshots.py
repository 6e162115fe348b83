"""Write the README's SVG screenshots of the TUI from a real run.

Connects to a site's broker like ``edge-agent tui``, waits until the agent reports its cameras, then drives the
app with Textual's Pilot through its main screens and saves each as an SVG::

    python -m edge_agent.tui.screenshots --mqtt-host 127.0.0.1 --mqtt-port 1883 --username edgesight \\
        --agent site-1 --camera entrance --out docs/tui      # password: $EDGESIGHT_TUI_PASSWORD

``tests/tui/test_readme_screenshots.py`` runs it against a real agent and broker (``make test-slow``); with
``EDGESIGHT_SCREENSHOTS_DIR=docs/tui`` it rewrites the README's images.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import typer

from edgesight.log import get_logger

from .settings import OperatorConfig

SHOTS = ("main", "add-camera", "keys", "preview", "editor", "main-wide")


async def capture(
    config: OperatorConfig, agent_id: str, camera_id: str, out: Path, *, timeout_s: float = 120.0
) -> list[Path]:
    """Save ``tui-<shot>.svg`` for each of :data:`SHOTS` under ``out``; returns the files written."""
    from . import preview  # noqa: F401 - textual-image probes the terminal on import
    from .app import EdgeSightApp
    from .feed import MqttFeed
    from .state import SiteState

    out.mkdir(parents=True, exist_ok=True)
    state = SiteState(config.topic_root)
    feed = MqttFeed(config, state).start()
    written: list[Path] = []
    log = get_logger("tui-screenshots")

    async def until(pilot, pred, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not pred():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            await pilot.pause(0.25)

    def save(app: EdgeSightApp, name: str) -> None:
        path = out / f"tui-{name}.svg"
        path.write_text(app.export_screenshot(title=f"edge-agent tui: {name}"))
        written.append(path)
        log.info("screenshot written", extra={"path": str(path)})

    try:
        app = EdgeSightApp(state, feed, title=f"EdgeSight {config.topic_root}")
        async with app.run_test(size=(80, 24)) as pilot:

            def streaming() -> bool:
                cam = state.camera(agent_id, camera_id)
                events, _ = state.events(agent_id, camera_id)
                return cam is not None and cam.state == "streaming" and len(events) >= 3

            await until(pilot, streaming, f"{agent_id}/{camera_id} streaming with events")
            app.main.action_pick_agent(agent_id)
            await until(pilot, lambda: app.main.camera_id is not None, "a camera row")
            for _ in range(64):  # the table's bound on rows
                if app.main.camera_id == camera_id:
                    break
                await pilot.press("down")
            await pilot.pause(2.0)  # a few more samples for the sparklines
            save(app, "main")
            await pilot.press("a")
            await pilot.press(*"door-2", "tab", *"rtsp://10.20.0.7/stream", "tab", *"5")
            await pilot.pause(0.3)
            save(app, "add-camera")
            await pilot.press("escape", "question_mark")
            await pilot.pause(0.3)
            save(app, "keys")
            await pilot.press("question_mark", "p")
            await until(pilot, lambda: state.preview(agent_id, camera_id) is not None, "a preview")
            await pilot.pause(1.5)
            save(app, "preview")
            await pilot.press("e")
            await pilot.pause(1.0)
            save(app, "editor")
            await pilot.press("escape", "escape")
            await pilot.resize_terminal(120, 36)
            await pilot.pause(0.5)
            save(app, "main-wide")
    finally:
        feed.stop()
    return written


def main(
    agent: str = typer.Option(..., help="The agent whose screens are shot."),
    camera: str = typer.Option(..., help="The camera selected in them."),
    out: Path = typer.Option(Path("docs/tui"), help="Where the SVGs go."),
    mqtt_host: str = typer.Option("127.0.0.1"),
    mqtt_port: int = typer.Option(1883),
    username: str | None = typer.Option(None, envvar="EDGESIGHT_TUI_USERNAME"),
    password: str | None = typer.Option(None, envvar="EDGESIGHT_TUI_PASSWORD"),
    topic_root: str = typer.Option("edgesight"),
) -> None:
    """Write the TUI's screenshots (SVG) from a running agent."""
    config = OperatorConfig.model_validate(
        {"host": mqtt_host, "port": mqtt_port, "username": username, "password": password, "topic_root": topic_root}
    )
    for path in asyncio.run(capture(config, agent, camera, out)):
        typer.echo(path)


if __name__ == "__main__":  # pragma: no cover
    typer.run(main)
