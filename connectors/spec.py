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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edgesight.kafka import SpecError, TopicSpec, load_topic_specs, render

CONNECTORS_DIR = Path(__file__).resolve().parent
CONNECTOR_FILES = {
    "mongo-sink-detections": CONNECTORS_DIR / "mongo-sink-detections.json",
    "s3-sink-keyframes": CONNECTORS_DIR / "s3-sink-keyframes.json",
}
TOPICS_FILE = CONNECTORS_DIR / "topics.yaml"

SECRET_OPTIONS = ("connection.uri", "aws.secret.access.key", "s3.proxy.password", "s3.sse.customer.key")


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


@dataclass
class ConnectorSpec:
    name: str
    config: dict[str, str]
    source: str = ""

    @property
    def connector_class(self) -> str:
        return self.config.get("connector.class", "")


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


def load_topics(vars: Mapping[str, str], path: Path = TOPICS_FILE) -> list[TopicSpec]:
    """The topic specs of ``connectors/topics.yaml`` (or ``path``) for this deployment's placeholders."""
    return load_topic_specs(path, vars)
