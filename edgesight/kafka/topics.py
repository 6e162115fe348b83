"""Topic specs and the one function that creates missing topics.

The production specs live in ``connectors/topics.yaml`` (operators edit it next to the connector
files). This module does not know where that file is: the caller passes its path to
:func:`load_topic_specs`, so the shared core stays free of the packages built on it. Processes that
need only a few topics of their own (the edge agent, the analytics consumers' dead-letter topics)
build :class:`TopicSpec` objects directly and hand them to the same :func:`ensure_topics`.

``cloud-ops topics diff|apply|describe`` manage the live topics declaratively: :func:`plan_topics` compares the
specs with what the broker describes (missing topics, partitions, the configs a spec names) and
:func:`apply_topics` makes the changes (creation through :func:`ensure_topics`), then describes again so a
change the broker accepted but did not store is reported, not hidden.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgesight.log import ContextLogger

_PH = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
SPEC_FILE_MAX_BYTES = 1 << 20  # a topics.yaml file
MAX_TOPICS = 1000  # topics in one file
MAX_PARTITIONS = 10000  # per topic


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

    size = Path(path).stat().st_size
    if size > SPEC_FILE_MAX_BYTES:
        raise SpecError(f"{path}: {size} bytes, more than the {SPEC_FILE_MAX_BYTES} a topic file may have")
    try:
        doc = render(yaml.safe_load(Path(path).read_text()), vars, "")
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not YAML: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("topics", []), list):
        raise SpecError(f"{path}: expected a mapping with a `topics` list")
    if len(doc.get("topics", [])) > MAX_TOPICS:
        raise SpecError(f"{path}: topics: {len(doc['topics'])} topics, more than {MAX_TOPICS}")
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
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise SpecError(f"{path}: topics[{i}]: {e}") from None
        if not 1 <= out[-1].partitions <= MAX_PARTITIONS:
            raise SpecError(f"{path}: topics[{i}].partitions: {out[-1].partitions}, expected 1..{MAX_PARTITIONS}")
    return out


def _effective(spec: TopicSpec, brokers: int, log: ContextLogger | None = None) -> tuple[int, dict[str, str]]:
    """The replication factor and configs ``spec`` gets on a cluster of ``brokers``: a factor above the broker
    count is clamped to it (with a warning) and then ``min.insync.replicas`` is left out."""
    rf, conf = spec.replication_factor, dict(spec.config)
    if rf > brokers:
        conf.pop("min.insync.replicas", None)
        if log:
            log.warning("replication factor clamped", extra={"topic": spec.name, "wanted": rf, "brokers": brokers})
        rf = brokers
    return rf, conf


def ensure_topics(
    conf: Mapping[str, Any], specs: Iterable[TopicSpec], *, log: ContextLogger | None = None, timeout: float = 15.0
) -> dict[str, str]:
    """Create the topics of ``specs`` that do not exist; returns ``{name: "created" | "exists"}``.

    Existing topics are left as they are. A replication factor above the cluster's broker count is
    clamped to it (with a warning, and without ``min.insync.replicas``); -1 leaves it to the broker.
    A topic created meanwhile by another process counts as existing."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    admin = _admin(conf)
    md = admin.list_topics(timeout=timeout)
    brokers = max(1, len(md.brokers))
    result: dict[str, str] = {}
    todo = []
    for s in specs:
        if s.name in md.topics:
            result[s.name] = "exists"
            continue
        rf, topic_conf = _effective(s, brokers, log)
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


def _admin(conf: Mapping[str, Any]) -> Any:
    from confluent_kafka.admin import AdminClient

    from .clients import rdkafka_logger

    admin_conf: dict[str, Any] = {"logger": rdkafka_logger("admin"), **conf}
    return AdminClient(admin_conf)


@dataclass
class TopicState:
    """A live topic: its partition count and the configs the broker describes (Tansu: only those set)."""

    name: str
    partitions: int
    config: dict[str, str]


@dataclass
class TopicChange:
    """One difference between a spec and the live topic, and (after :func:`apply_topics`) what became of it.

    ``action``: ``create``, ``alter config``, ``add partitions`` or ``impossible`` (Kafka cannot do it)."""

    topic: str
    action: str
    setting: str  # "partitions", a config key, or "" for a whole topic
    live: str | None
    wanted: str | None
    ok: bool | None = None  # None: not applied (yet)
    outcome: str = ""  # "created", "altered", or the broker's answer when it refused or did not store it


def _describe(admin: Any, md: Any, names: Iterable[str], timeout: float) -> dict[str, TopicState]:
    from confluent_kafka.admin import ConfigResource, ResourceType

    present = [n for n in names if n in md.topics]
    out: dict[str, TopicState] = {}
    if not present:
        return out
    futs = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in present], request_timeout=timeout)
    for res, fut in futs.items():
        entries = fut.result(timeout=timeout)
        out[res.name] = TopicState(
            res.name,
            len(md.topics[res.name].partitions),
            {k: str(e.value) for k, e in sorted(entries.items()) if e.value is not None},
        )
    return out


def describe_topics(conf: Mapping[str, Any], names: Iterable[str], *, timeout: float = 15.0) -> dict[str, TopicState]:
    """The live state of the topics ``names`` that exist (missing ones are absent from the result)."""
    admin = _admin(conf)
    return _describe(admin, admin.list_topics(timeout=timeout), list(names), timeout)


def plan_topics(conf: Mapping[str, Any], specs: Iterable[TopicSpec], *, timeout: float = 15.0) -> list[TopicChange]:
    """What :func:`apply_topics` would change, per topic and setting (empty: the cluster matches the specs)."""
    specs = list(specs)
    admin = _admin(conf)
    md = admin.list_topics(timeout=timeout)
    brokers = max(1, len(md.brokers))
    live = _describe(admin, md, [s.name for s in specs], timeout)
    changes: list[TopicChange] = []
    for s in specs:
        rf, wanted = _effective(s, brokers)
        cur = live.get(s.name)
        if cur is None:
            conf_text = ", ".join(f"{k}={v}" for k, v in sorted(wanted.items()))
            desc = f"{s.partitions} partitions, replication {rf}" + (f", {conf_text}" if conf_text else "")
            changes.append(TopicChange(s.name, "create", "", None, desc))
            continue
        if s.partitions > cur.partitions:
            changes.append(TopicChange(s.name, "add partitions", "partitions", str(cur.partitions), str(s.partitions)))
        elif s.partitions < cur.partitions:
            changes.append(
                TopicChange(
                    s.name,
                    "impossible",
                    "partitions",
                    str(cur.partitions),
                    str(s.partitions),
                    ok=False,
                    outcome="Kafka cannot decrease a topic's partitions (delete and re-create the topic, "
                    "losing its records, or keep the count)",
                )
            )
        for k, v in sorted(wanted.items()):
            if cur.config.get(k) != v:
                changes.append(TopicChange(s.name, "alter config", k, cur.config.get(k), v))
    return changes


def apply_topics(
    conf: Mapping[str, Any],
    specs: Iterable[TopicSpec],
    *,
    log: ContextLogger | None = None,
    progress: Callable[[TopicChange], None] | None = None,
    timeout: float = 15.0,
) -> list[TopicChange]:
    """Make the live topics match ``specs``; returns the changes of :func:`plan_topics` with their outcome.

    Missing topics are created (:func:`ensure_topics`), configs set (IncrementalAlterConfigs, one request per
    topic), partitions added (CreatePartitions). A change the broker refuses carries its answer; afterwards the
    topics are described again and a change the broker accepted but does not describe is marked not stored.
    Idempotent: a second run finds nothing to do."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, ResourceType

    specs = list(specs)
    changes = plan_topics(conf, specs, timeout=timeout)
    admin = _admin(conf)

    def done(c: TopicChange, ok: bool, outcome: str) -> None:
        c.ok, c.outcome = ok, outcome
        if log:
            (log.info if ok else log.warning)(
                "topic change", extra={"topic": c.topic, "action": c.action, "setting": c.setting, "outcome": outcome}
            )
        if progress:
            progress(c)

    creates = {c.topic: c for c in changes if c.action == "create"}
    if creates:
        try:
            made = ensure_topics(conf, [s for s in specs if s.name in creates], log=log, timeout=timeout)
            for name, what in made.items():
                done(creates[name], True, "created" if what == "created" else "created meanwhile by another client")
        except Exception as e:  # noqa: BLE001 - the broker's answer is the outcome
            for c in creates.values():
                done(c, False, f"refused: {e}")
    alters: dict[str, list[TopicChange]] = {}
    for c in changes:
        if c.action == "alter config":
            alters.setdefault(c.topic, []).append(c)
    if alters:
        resources = [
            ConfigResource(
                ResourceType.TOPIC,
                topic,
                incremental_configs=[
                    ConfigEntry(c.setting, c.wanted, incremental_operation=AlterConfigOpType.SET) for c in cs
                ],
            )
            for topic, cs in alters.items()
        ]
        for res, fut in admin.incremental_alter_configs(resources, request_timeout=timeout).items():
            try:
                fut.result(timeout=timeout)
                answer: tuple[bool, str] = (True, "altered")
            except Exception as e:  # noqa: BLE001
                answer = (False, f"refused: {e}")
            for c in alters[res.name]:
                done(c, *answer)
    grow = [c for c in changes if c.action == "add partitions"]
    if grow:
        futs = admin.create_partitions(
            [NewPartitions(c.topic, int(c.wanted or 0)) for c in grow], request_timeout=timeout
        )
        by_topic = {c.topic: c for c in grow}
        for name, fut in futs.items():
            try:
                fut.result(timeout=timeout)
                done(by_topic[name], True, "partitions added")
            except Exception as e:  # noqa: BLE001
                done(by_topic[name], False, f"refused: {e}")
    for c in changes:
        if c.action == "impossible":
            done(c, False, c.outcome)
    # What the broker says now: an accepted change that is still a difference was not stored.
    left = {(c.topic, c.setting): c for c in plan_topics(conf, specs, timeout=timeout)}
    for c in changes:
        if c.ok and c.action != "create" and (c.topic, c.setting) in left:
            c.ok = False
            c.outcome = f"not stored: the broker accepted it but describes {left[c.topic, c.setting].live!r}"
    for c in changes:
        if c.ok and c.action == "create":
            missed = [k for (t, k) in left if t == c.topic and k]
            if missed:
                c.ok = False
                c.outcome = f"created, but the broker does not describe: {', '.join(missed)}"
    return changes
