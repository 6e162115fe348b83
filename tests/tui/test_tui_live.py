"""The TUI driven with Textual's Pilot against a real running agent over the session stack's MQTT broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.agent import Agent
from edge_agent.config import AgentConfig
from edge_agent.tui.app import EdgeSightApp, MainScreen
from edge_agent.tui.feed import MqttFeed
from edge_agent.tui.settings import OperatorConfig
from edge_agent.tui.state import SiteState
from edge_agent.tui.widgets import AckLine, CameraTable
from edgesight import samples
from ops.testing.clients import kafka_link, mqtt_login

VTEST = str(samples.VTEST)
pytestmark = pytest.mark.timeout(300)


def start_agent(stack, model_dir: Path, tmp_path: Path, cameras: list[dict]) -> tuple[Agent, OperatorConfig]:
    """A running agent on a topic root of its own, and the operator's config to reach it. Both log in as the
    stack's own ``stack-admin`` over TLS: an agent identity's generated ACL grants only the ``edgesight`` root, and
    a root of its own keeps this test's site apart from the session's other agents."""
    mq = stack.config.mqtt
    root = f"t{uuid.uuid4().hex[:8]}"
    cfg = AgentConfig.model_validate(
        {
            "agent_id": f"tui-{uuid.uuid4().hex[:6]}",
            "cameras": cameras,
            "inference": {"model_dir": str(model_dir), "variant": "int8", "classes": ["person"], "intra_op_threads": 1},
            "publish": {
                "kafka": {**kafka_link(stack.config.kafka), "topic_prefix": f"t{uuid.uuid4().hex[:8]}"},
                "spool": {"dir": str(tmp_path / "spool"), "max_bytes": "256MiB"},
            },
            "control": {
                **mqtt_login(mq),
                "topic_root": root,
                "allowed_sources": {"directories": [str(samples.VTEST.parent)]},
            },
            "pipeline": {"heartbeat_interval_s": 1.0},
            "metrics": {"enabled": False},
        }
    )
    agent = Agent(cfg).start()
    op = OperatorConfig(**mqtt_login(mq), topic_root=root)
    return agent, op


@pytest.fixture
def site(stack, model_dir, tmp_path):
    """A running agent with one looping camera; yields (agent, operator config)."""
    agent, op = start_agent(stack, model_dir, tmp_path, [{"id": "cam-a", "url": VTEST, "loop": True, "target_fps": 4}])
    yield agent, op
    agent.stop(timeout=20)


async def until(pilot, pred: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        await pilot.pause(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def cell(app: EdgeSightApp, camera: str, column: str) -> str | None:
    table = app.main.query_one("#cameras", CameraTable)
    try:
        return table.cell_text(camera, column)
    except Exception:  # noqa: BLE001 - row not there (yet)
        return None


def ack_text(app: EdgeSightApp) -> str:
    return str(app.screen.query_one("#ack", AckLine).render())


def run_tui(op: OperatorConfig, script) -> None:
    state = SiteState(op.topic_root)
    feed = MqttFeed(op, state).start()

    async def main() -> None:
        app = EdgeSightApp(state, feed)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: state.connection.connected, "the TUI connected to the broker", 20)
            await script(app, pilot)
            await pilot.press("q")
        assert app.return_code in (0, None)

    try:
        asyncio.run(main())
    finally:
        feed.stop()


def test_stop_start_and_add_camera_from_the_ui(site):
    agent, op = site

    async def script(app: EdgeSightApp, pilot) -> None:
        await until(pilot, lambda: cell(app, "cam-a", "state") == "streaming", "cam-a streaming in the table")
        assert isinstance(app.screen, MainScreen) and app.main.agent_id == agent.agent_id
        # Stop: the ack is shown, the table follows the agent's retained status.
        await pilot.press("x")
        await until(pilot, lambda: cell(app, "cam-a", "state") == "stopped", "cam-a stopped in the table")
        await until(pilot, lambda: "ok: stop_camera" in ack_text(app), "the stop ack")
        assert agent.supervisor.status()["cam-a"].state.value == "stopped"
        await pilot.press("s")
        await until(pilot, lambda: cell(app, "cam-a", "state") == "streaming", "cam-a streaming again")
        assert "ok: start_camera" in ack_text(app)
        # Add a camera through the form.
        await pilot.press("a")
        await pilot.click("#cam-id")
        await pilot.press(*"cam-b")
        await pilot.click("#cam-url")
        await pilot.press(*VTEST)
        await pilot.click("#cam-fps")
        await pilot.press("3")
        await pilot.click("#cam-loop")
        await pilot.click("#ok")
        await until(pilot, lambda: "ok: add_camera" in ack_text(app), "the add_camera ack")
        await until(pilot, lambda: cell(app, "cam-b", "state") == "streaming", "cam-b streaming in the table")
        assert cell(app, "cam-b", "fps").endswith("/3")
        assert agent.cameras["cam-b"].loop

    run_tui(op, script)


def test_a_rejected_command_shows_the_agents_error(site):
    agent, op = site

    async def script(app: EdgeSightApp, pilot) -> None:
        await until(pilot, lambda: cell(app, "cam-a", "state") is not None, "cam-a in the table")
        # fp16 is not built in the test's model store: the agent refuses, the running variant stays.
        await pilot.press("m")
        await pilot.press("home", "down", "down", "enter")  # auto, fp32, [fp16]
        await until(pilot, lambda: "error: set_model_variant" in ack_text(app), "the agent's error")
        assert "fp16" in ack_text(app)
        assert agent.engine.variant == "int8"
        # A zone the agent's own model refuses (sent as a raw command, past the editor's checks): the error
        # names the field at fault.
        app.main.send("set_zones", "cam-a", zones=[{"name": "bad name!", "polygon": [[0, 0], [1, 0], [1, 1]]}])
        await until(pilot, lambda: "error: set_zones" in ack_text(app), "the agent's set_zones error")
        ack = app.state.last_ack()
        assert ack is not None and ack.field == "zones[0].name"  # the zone at fault, then its field
        assert f"[field {ack.field}]" in ack_text(app)
        # The form refuses what the agent would refuse (the id exists), before anything is sent.
        await pilot.press("a")
        await pilot.click("#cam-id")
        await pilot.press(*"cam-a")
        await pilot.click("#cam-url")
        await pilot.press(*"rtsp://10.0.0.1/s")
        await pilot.click("#ok")
        assert "already exists" in str(app.screen.query_one("#form-error").render())
        await pilot.press("escape")

    run_tui(op, script)


def test_draw_a_zone_in_the_editor_and_the_agent_reports_it(site):
    agent, op = site

    async def script(app: EdgeSightApp, pilot) -> None:
        await until(pilot, lambda: cell(app, "cam-a", "state") == "streaming", "cam-a streaming in the table")
        await until(pilot, lambda: app.state.camera(agent.agent_id, "cam-a").frame is not None, "the frame size")
        await pilot.press("e")
        assert type(app.screen).__name__ == "GeometryEditor"
        # A new zone: four corners around the frame's centre, moved with the arrow keys, then sent.
        await pilot.press("n", *"door", "enter")  # a new zone asks for its name first
        await pilot.press("a", "shift+right", "a", "shift+down", "a", "shift+left", "a", "ctrl+s")
        assert isinstance(app.screen, MainScreen)
        await until(pilot, lambda: "ok: set_zones" in ack_text(app), "the set_zones ack")
        await until(
            pilot,
            lambda: [z["name"] for z in app.state.camera(agent.agent_id, "cam-a").zones] == ["door"],
            "the agent's status reporting the zone",
        )
        zone = app.state.camera(agent.agent_id, "cam-a").zones[0]
        assert len(zone["polygon"]) == 4
        assert [z.name for z in agent.cameras["cam-a"].zones] == ["door"]

    run_tui(op, script)
