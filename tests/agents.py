"""The agent the tests run: one definition of its configuration, varied per test by keyword."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from edge_agent.config import AgentConfig
from edgesight import samples


def agent_config(
    stack: Any,
    model_dir: Path,
    spool_dir: Path,
    *,
    name: str,
    fps: float = 4,
    bootstrap: str | None = None,
    control: bool = True,
    control_extra: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    **sections: Any,
) -> AgentConfig:
    """An agent ``<name>-<random>`` with one looping vtest camera (``cam-a`` at ``fps``), the int8 detector on
    one thread (persons only), publishing to the session broker (or ``bootstrap``) under a fresh topic prefix
    with its spool in ``spool_dir``. Its control plane logs in to the session's MQTT broker (``control=False``:
    no control plane); either way ``add_camera`` may open local files next to vtest. Metrics are off unless
    ``metrics`` is given; other ``sections`` (``pipeline=...``) are added as they are."""
    allowed = {"allowed_sources": {"directories": [str(samples.VTEST.parent)]}}
    if control:
        mq = stack.config.mqtt
        ctl: dict[str, Any] = {
            "host": mq.host,
            "port": mq.port,
            "username": mq.username,
            "password": mq.password.get_secret_value() if mq.password else None,
            **allowed,
        }
    else:
        ctl = {"enabled": False, **allowed}
    return AgentConfig.model_validate(
        {
            "agent_id": f"{name}-{uuid.uuid4().hex[:6]}",
            "cameras": [{"id": "cam-a", "url": str(samples.VTEST), "loop": True, "target_fps": fps}],
            "inference": {"model_dir": str(model_dir), "variant": "int8", "classes": ["person"], "intra_op_threads": 1},
            "publish": {
                "kafka": {
                    "bootstrap_servers": bootstrap or stack.bootstrap,
                    "topic_prefix": f"t{uuid.uuid4().hex[:8]}",
                },
                "spool": {"dir": str(spool_dir), "max_bytes": "256MiB"},
            },
            "control": {**ctl, **(control_extra or {})},
            "metrics": metrics or {"enabled": False},
            **sections,
        }
    )
