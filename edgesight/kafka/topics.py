"""Topic specs and the one function that creates missing topics.

The production specs live in ``connectors/topics.yaml`` (operators edit it next to the connector
files). This module does not know where that file is: the caller passes its path to
:func:`load_topic_specs`, so the shared core stays free of the packages built on it. Processes that
need only a few topics of their own (the edge agent, the analytics consumers' dead-letter topics)
build :class:`TopicSpec` objects directly and hand them to the same :func:`ensure_topics`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgesight.log import ContextLogger

_PH = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class SpecError(ValueError):
    """A connector or topic file problem; the message names the file and the option."""


@dataclass
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int = -1  # -1: the broker's default.replication.factor
    config: dict[str, str] = field(default_factory=dict)


def render(value: Any, vars: Mapping[str, str], where: str) -> Any:
    """``value`` (nested dicts/lists/strings) with every ``{{name}}`` replaced from ``vars``."""
    if isinstance(value, dict):
        return {k: render(v, vars, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, vars, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in vars:
                raise SpecError(f"{where}: unknown placeholder {{{{{m.group(1)}}}}}; known: {', '.join(sorted(vars))}")
            return str(vars[m.group(1)])

        return _PH.sub(sub, value)
    return value


def load_topic_specs(path: Path, vars: Mapping[str, str]) -> list[TopicSpec]:
    """The topics of a ``topics.yaml`` file (``defaults`` + ``topics``), placeholders filled from ``vars``."""
    import yaml

    doc = render(yaml.safe_load(Path(path).read_text()), vars, "")
    d = doc.get("defaults", {})
    out = []
    for i, t in enumerate(doc.get("topics", [])):
        try:
            conf = {
                **{k: str(v) for k, v in d.get("config", {}).items()},
                **{k: str(v) for k, v in t.get("config", {}).items()},
            }
            out.append(
                TopicSpec(
                    name=t["name"],
                    partitions=int(t["partitions"]),
                    replication_factor=int(t.get("replication_factor", d.get("replication_factor", 1))),
                    config=conf,
                )
            )
        except (KeyError, TypeError, ValueError) as e:
            raise SpecError(f"{path}: topics[{i}]: {e}") from None
    return out


def ensure_topics(
    conf: Mapping[str, Any], specs: Iterable[TopicSpec], *, log: ContextLogger | None = None, timeout: float = 15.0
) -> dict[str, str]:
    """Create the topics of ``specs`` that do not exist; returns ``{name: "created" | "exists"}``.

    Existing topics are left as they are. A replication factor above the cluster's broker count is
    clamped to it (with a warning, and without ``min.insync.replicas``); -1 leaves it to the broker.
    A topic created meanwhile by another process counts as existing."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    from .clients import rdkafka_logger

    admin_conf: dict[str, Any] = {"logger": rdkafka_logger("admin"), **conf}
    admin = AdminClient(admin_conf)
    md = admin.list_topics(timeout=timeout)
    brokers = max(1, len(md.brokers))
    result: dict[str, str] = {}
    todo = []
    for s in specs:
        if s.name in md.topics:
            result[s.name] = "exists"
            continue
        rf, topic_conf = s.replication_factor, dict(s.config)
        if rf > brokers:
            topic_conf.pop("min.insync.replicas", None)
            if log:
                log.warning("replication factor clamped", extra={"topic": s.name, "wanted": rf, "brokers": brokers})
            rf = brokers
        todo.append(NewTopic(s.name, num_partitions=s.partitions, replication_factor=rf, config=topic_conf))
    for name, fut in admin.create_topics(todo, request_timeout=timeout).items() if todo else ():
        try:
            fut.result(timeout=timeout)
            result[name] = "created"
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
            result[name] = "exists"
    return result
