"""The README's TUI screenshots, written by ``edge_agent.tui.screenshots`` from a real run (``make test-slow``).

A real agent (two looping cameras, a zone and a counting line, the int8 detector) reports over the session
stack's MQTT broker; the script shoots the TUI's screens. ``EDGESIGHT_SCREENSHOTS_DIR=docs/tui`` writes them
where the README shows them; otherwise they go to a temporary directory and are only checked.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from edge_agent.tui.screenshots import SHOTS, capture
from edgesight import samples
from tests.tui.test_tui_live import start_agent

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
VTEST = str(samples.VTEST)


def test_readme_screenshots_from_a_real_run(stack, model_dir, tmp_path):
    cameras = [
        {
            "id": "entrance",
            "url": VTEST,
            "loop": True,
            "target_fps": 5,
            "zones": [{"name": "left", "polygon": [[0, 0], [384, 0], [384, 576], [0, 576]]}],
            "lines": [{"name": "mid", "start": [550, 110], "end": [550, 470]}],
        },
        {"id": "yard", "url": VTEST, "loop": True, "target_fps": 2},
    ]
    agent, op = start_agent(stack, model_dir, tmp_path, cameras)
    out = Path(os.environ.get("EDGESIGHT_SCREENSHOTS_DIR") or tmp_path / "shots")
    try:
        written = asyncio.run(capture(op, agent.agent_id, "entrance", out))
    finally:
        agent.stop(timeout=20)
    assert [p.name for p in written] == [f"tui-{s}.svg" for s in SHOTS]
    main = (out / "tui-main.svg").read_text()
    assert "entrance" in main and "yard" in main and "streaming" in main
    assert "left" in (out / "tui-editor.svg").read_text()
