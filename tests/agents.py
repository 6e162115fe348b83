"""The agent the tests run: one definition of its configuration, varied per test by keyword."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from edge_agent.config import AgentConfig
from edgesight import samples

AGENT_SITE = "tests"


def agent_links(
    stack: Any, agent_id: str, directory: Path, *, topic_prefix: str, identity: bool = True
) -> dict[str, dict[str, Any]]:
    """The ``publish.kafka`` and ``control`` sections of agent ``agent_id`` publishing under ``topic_prefix`` on
    ``stack`` (plain values: they may go into a YAML file). On the secure stack the agent has its own identity
    (site :data:`AGENT_SITE`, Kafka rules for ``topic_prefix``), issued at the first call for ``agent_id`` with its
    password kept 0600 in ``directory`` (a later call, e.g. for a restart, reuses it): Kafka over TLS with its client
    certificate and, with ``identity``, MQTT over TLS with its own login (else no control section). On a plain
    stack: its address and shared development login."""
    kafka: dict[str, Any] = {"bootstrap_servers": stack.bootstrap, "topic_prefix": topic_prefix}
    if stack.identities is None:
        mq = stack.config.mqtt
        login = {"username": mq.username, "password": mq.password.get_secret_value() if mq.password else None}
        return {"kafka": kafka, "control": {"host": mq.host, "port": mq.port, **login}}
    from ops.testing.secure import agent_links as secure_links
    from ops.testing.secure import issue_live

    pw_file = directory / f"{agent_id}.mqtt-password"
    if pw_file.exists():
        password = pw_file.read_text().strip()
    else:
        issued = issue_live(stack, agent_id, "agent", site=AGENT_SITE, topic_prefix=topic_prefix)
        assert issued.mqtt_password is not None
        password = issued.mqtt_password
    links = secure_links(stack, agent_id, password, directory, topic_prefix=topic_prefix)
    return links if identity else {"kafka": links["kafka"], "control": {}}


def create_edge_topics(stack: Any, topic_prefix: str) -> None:
    """Create the edge topics of ``topic_prefix`` as the stack's own client (Kafka's super user on the secure stack):
    an agent may only produce to them (ops creates topics, as ``cloud-ops connectors topics --create`` does)."""
    from edgesight.kafka import TopicSpec, ensure_topics
    from edgesight.wire import Topics

    t = Topics(topic_prefix)
    ensure_topics(stack.config.kafka.client_config(), [TopicSpec(n, 6) for n in (t.detections, t.keyframes, t.status)])


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
    with its spool in ``spool_dir``. On the secure stack it speaks Kafka over TLS (trusting the stack CA) and its
    control plane logs in to MQTT over TLS with its own agent identity (site :data:`AGENT_SITE`, issued here), which
    may read only its ``cmd`` and write only its status/ack/camera topics (``control=False``: no control plane);
    either way ``add_camera`` may open local files next to vtest. Metrics are off unless
    ``metrics`` is given; other ``sections`` (``pipeline=...``) are added as they are."""
    agent_id = f"{name}-{uuid.uuid4().hex[:6]}"
    allowed = {"allowed_sources": {"directories": [str(samples.VTEST.parent)]}}
    prefix = f"t{uuid.uuid4().hex[:8]}"
    links = (
        agent_links(stack, agent_id, spool_dir.parent, topic_prefix=prefix, identity=control)
        if stack is not None
        else {}
    )
    kafka = {**links.get("kafka", {}), **({"bootstrap_servers": bootstrap} if bootstrap else {})}
    kafka["topic_prefix"] = prefix
    if stack is not None and bootstrap is None:
        create_edge_topics(stack, prefix)
    if control:
        ctl = {**links["control"], **allowed}
        ctl.pop("keepalive_s", None)  # the agent's default keepalive
    else:
        ctl = {"enabled": False, **allowed}
    return AgentConfig.model_validate(
        {
            "agent_id": agent_id,
            "cameras": [{"id": "cam-a", "url": str(samples.VTEST), "loop": True, "target_fps": fps}],
            "inference": {"model_dir": str(model_dir), "variant": "int8", "classes": ["person"], "intra_op_threads": 1},
            "publish": {
                "kafka": kafka,
                "spool": {"dir": str(spool_dir), "max_bytes": "256MiB"},
            },
            "control": {**ctl, **(control_extra or {})},
            "metrics": metrics or {"enabled": False},
            **sections,
        }
    )
