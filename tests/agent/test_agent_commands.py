"""Every control action against a running agent (in-process; MQTT transport is covered in test_agent_e2e)."""

from __future__ import annotations

import time
import uuid

import pytest

from edge_agent.agent import Agent
from edge_agent.control.mqtt import CommandError
from edgesight import samples
from edgesight.wire import decode_command
from tests.agents import agent_config

VTEST = str(samples.VTEST)


def cmd(**kw):
    return decode_command({"command_id": uuid.uuid4().hex[:8], **kw})


def wait(pred, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.3)
    return False


@pytest.fixture
def agent(stack, model_dir, tmp_path):
    # add_camera commands may open local files only under allowed_sources.directories (next to vtest)
    cfg = agent_config(stack, model_dir, tmp_path / "spool", name="cmd", control=False)
    a = Agent(cfg).start()
    assert wait(lambda: a.pipeline.frames_inferred > 0)
    yield a
    a.stop(timeout=20)


def test_every_action(agent):
    a = agent
    # add_camera: validated like the config file; errors name the key.
    with pytest.raises(CommandError, match=r"target_fps"):
        a.handle_command(cmd(action="add_camera", camera={"id": "cam-b", "url": VTEST, "target_fps": -1}))
    with pytest.raises(CommandError, match=r"zones\[0\]\.polygon"):
        a.handle_command(
            cmd(
                action="add_camera", camera={"id": "cam-b", "url": VTEST, "zones": [{"name": "z", "polygon": [[0, 0]]}]}
            )
        )
    r = a.handle_command(cmd(action="add_camera", camera={"id": "cam-b", "url": VTEST, "loop": True, "target_fps": 4}))
    assert r["camera_id"] == "cam-b"
    with pytest.raises(CommandError, match="already exists"):
        a.handle_command(cmd(action="add_camera", camera={"id": "cam-b", "url": VTEST}))
    assert wait(lambda: a.supervisor.status()["cam-b"].state.value == "streaming")
    # Unknown camera ids are named.
    with pytest.raises(CommandError, match=r"unknown camera 'nope'.*cam-a, cam-b"):
        a.handle_command(cmd(action="stop_camera", camera_id="nope"))
    # Zones and lines: validated, applied (tracking rebuilt on the next frame).
    # The error names the zone at fault by its index, then its field.
    ok_zone = {"name": "fine", "polygon": [[0, 0], [1, 0], [1, 1]]}
    with pytest.raises(CommandError, match=r"invalid zones: zones\[1\]\.name: "):
        a.handle_command(
            cmd(
                action="set_zones",
                camera_id="cam-a",
                zones=[ok_zone, {"name": "bad name!", "polygon": [[0, 0], [1, 0], [1, 1]]}],
            )
        )
    r = a.handle_command(
        cmd(action="set_zones", camera_id="cam-a", zones=[{"name": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}])
    )
    assert r["zones"] == ["all"]
    r = a.handle_command(
        cmd(action="set_lines", camera_id="cam-a", lines=[{"name": "mid", "start": [0, 0.5], "end": [1, 0.5]}])
    )
    assert r["lines"] == ["mid"]
    assert a._tracking_config("cam-a").zones[0].name == "all"
    n0 = a.pipeline.events_published
    assert wait(lambda: a.pipeline.events_published > n0 + 3)
    # Snapshot returns the object key of a published keyframe.
    r = a.handle_command(cmd(action="snapshot", camera_id="cam-a"))
    assert r["object_key"].startswith(f"keyframes/{a.agent_id}/cam-a/") and r["bytes"] > 1000
    # fps, restart, remove.
    assert a.handle_command(cmd(action="set_fps", camera_id="cam-a", fps=2))["target_fps"] == 2
    assert a.supervisor.config("cam-a").target_fps == 2
    a.handle_command(cmd(action="restart_camera", camera_id="cam-b"))
    assert wait(lambda: a.supervisor.status()["cam-b"].state.value == "streaming")
    r = a.handle_command(cmd(action="remove_camera", camera_id="cam-b"))
    assert r["removed"] and "cam-b" not in a.supervisor.cameras()
    # Variant switch: an unbuilt variant is refused, the running one keeps working.
    with pytest.raises(CommandError, match="fp16"):
        a.handle_command(cmd(action="set_model_variant", variant="fp16"))
    assert a.handle_command(cmd(action="set_model_variant", variant="fp32"))["variant"] == "fp32"
    n1 = a.pipeline.frames_inferred
    assert wait(lambda: a.pipeline.frames_inferred > n1 + 2)
    assert a.status().cameras[0].model.variant == "fp32"
