"""Loading the connector files (``connectors/*.json``) and topic specs (``connectors/topics.yaml``).

The files hold ``{{placeholders}}`` (double braces, so they never clash with Kafka Connect's
own ``${provider:path:key}`` config-provider references) filled from the cloud config:

==========================  ====================================================
placeholder                 value
==========================  ====================================================
``topic_prefix``            ``kafka.topic_prefix``
``name_prefix``             ``""`` (or ``--name-prefix``: several deployments on one Connect cluster)
``mongo_uri``               ``mongo.uri``
``warehouse_db``            ``mongo.warehouse_db``
``collection_prefix``       warehouse collection prefix (``""`` by default)
``s3_endpoint``             ``s3.endpoint_url`` (empty = AWS)
``s3_region`` / ``s3_bucket``  ``s3.region`` / ``s3.keyframe_bucket``
``aws_access_key_id`` / ``aws_secret_access_key``  ``s3.access_key`` / ``s3.secret_key``
==========================  ====================================================

In production, put a config-provider reference in the file instead of a secret
placeholder (e.g. ``"connection.uri": "${file:/etc/kafka/secrets.properties:mongo_uri}"``):
the Python runner refuses ``${...}`` references it cannot resolve, naming the option.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONNECTORS_DIR = Path(__file__).resolve().parent
CONNECTOR_FILES = {
    "mongo-sink-detections": CONNECTORS_DIR / "mongo-sink-detections.json",
    "s3-sink-keyframes": CONNECTORS_DIR / "s3-sink-keyframes.json",
}
TOPICS_FILE = CONNECTORS_DIR / "topics.yaml"

_PH = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
SECRET_OPTIONS = ("connection.uri", "aws.secret.access.key", "s3.proxy.password", "s3.sse.customer.key")


class SpecError(ValueError):
    """A connector or topic file problem; the message names the file and the option."""


def variables(cfg, *, collection_prefix: str = "", name_prefix: str = "") -> dict[str, str]:
    """Placeholder values from a :class:`cloud.config.CloudConfig`."""
    return {
        "topic_prefix": cfg.kafka.topic_prefix,
        "name_prefix": name_prefix,
        "mongo_uri": cfg.mongo.uri.get_secret_value(),
        "warehouse_db": cfg.mongo.warehouse_db,
        "collection_prefix": collection_prefix,
        "s3_endpoint": cfg.s3.endpoint_url or "",
        "s3_region": cfg.s3.region,
        "s3_bucket": cfg.s3.keyframe_bucket,
        "aws_access_key_id": cfg.s3.access_key,
        "aws_secret_access_key": cfg.s3.secret_key.get_secret_value(),
    }


def render(value: Any, vars: Mapping[str, str], where: str) -> Any:
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


@dataclass
class ConnectorSpec:
    name: str
    config: dict[str, str]
    source: str = ""

    @property
    def connector_class(self) -> str:
        return self.config.get("connector.class", "")

    def redacted(self) -> dict[str, str]:
        from edgesight.log import redact_text

        return {
            k: ("***" if k in SECRET_OPTIONS and v and not v.startswith("${") else redact_text(v))
            for k, v in self.config.items()
        }


def load_connector(path_or_name: str | Path, vars: Mapping[str, str] | None = None) -> ConnectorSpec:
    """Read a connector file (``{"name":..., "config": {...}}``, the Connect REST body) and fill placeholders."""
    path = CONNECTOR_FILES.get(str(path_or_name), Path(path_or_name))
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SpecError(f"{path}: file not found (known connectors: {', '.join(CONNECTOR_FILES)})") from None
    except json.JSONDecodeError as e:
        raise SpecError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict) or not isinstance(doc.get("name"), str):
        raise SpecError(f'{path}: expected {{"name": str, "config": {{option: value}}}}')
    if vars is not None:
        doc = render(doc, vars, "")
    config = {}
    for k, v in doc["config"].items():
        if not isinstance(v, (str, int, float, bool)):
            raise SpecError(f"{path}: config.{k}: Kafka Connect options are strings, got {type(v).__name__}")
        config[k] = str(v).lower() if isinstance(v, bool) else str(v)
    config.setdefault("name", doc["name"])
    if config["name"] != doc["name"]:
        raise SpecError(f"{path}: config.name {config['name']!r} differs from name {doc['name']!r}")
    return ConnectorSpec(name=doc["name"], config=config, source=str(path))


@dataclass
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


def load_topics(vars: Mapping[str, str], path: Path = TOPICS_FILE) -> list[TopicSpec]:
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
    admin_conf: dict,
    specs: list[TopicSpec],
    log=None,
    only: set[str] | None = None,
    partitions_override: int | None = None,
) -> dict[str, str]:
    """Create missing topics; replication factor is clamped to the cluster's broker count (reported)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(admin_conf)
    md = admin.list_topics(timeout=10)
    brokers = max(1, len(md.brokers))
    result: dict[str, str] = {}
    todo = []
    for s in specs:
        if only is not None and s.name not in only:
            continue
        if s.name in md.topics:
            result[s.name] = "exists"
            continue
        rf = min(s.replication_factor, brokers)
        conf = dict(s.config)
        if rf < s.replication_factor:
            conf.pop("min.insync.replicas", None)
            if log:
                log.warning(
                    "replication factor clamped",
                    extra={"topic": s.name, "wanted": s.replication_factor, "brokers": brokers},
                )
        todo.append(
            NewTopic(s.name, num_partitions=partitions_override or s.partitions, replication_factor=rf, config=conf)
        )
    if todo:
        for name, fut in admin.create_topics(todo).items():
            try:
                fut.result(timeout=15)
                result[name] = "created"
            except KafkaException as e:
                if "TOPIC_ALREADY_EXISTS" in str(e):
                    result[name] = "exists"
                else:
                    raise
    return result
