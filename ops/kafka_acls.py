"""Kafka rights of each role of issue #12, as data: the production ACLs (Strimzi ``KafkaUser`` resources,
``cloud-ops connectors export --format k8s``) are generated from :data:`KAFKA_ACLS`.

Names are templates: ``{prefix}`` is ``kafka.topic_prefix`` (the topics of :class:`edgesight.wire.topics.Topics`
and ``connectors/topics.yaml``), ``{connect}`` the Kafka Connect cluster's name (its group id and internal topics
``{connect}-configs|offsets|status``). Consumer groups are the ones the code uses: ``edgesight-engineering``,
``edgesight-fleet`` (cloud/engineering/settings.py), ``connect-<connector>`` (Kafka Connect's sink groups and the
Python runner's, connectors/tasks/base.py) and ``edgesight-keyframe-indexer-<connector>`` (connectors/runner.py).
A role with no entry (``operator``) has no Kafka right at all, so it gets no Kafka identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ResourceType = Literal["topic", "group", "cluster", "transactionalId"]


@dataclass(frozen=True)
class KafkaAcl:
    """One allow rule: ``operations`` on the resource ``type``/``name`` (``literal`` or ``prefix`` pattern)."""

    type: ResourceType
    name: str
    operations: tuple[str, ...]
    pattern: Literal["literal", "prefix"] = "literal"

    def resolve(self, prefix: str, connect: str) -> KafkaAcl:
        """This rule with its name template filled in."""
        return KafkaAcl(self.type, self.name.format(prefix=prefix, connect=connect), self.operations, self.pattern)


PRODUCE = ("Write", "Describe")
CONSUME = ("Read", "Describe")
DEAD_LETTERS = ("Write", "Describe", "Create")  # a consumer creates its own dead-letter topic at start
_SINK: tuple[KafkaAcl, ...] = (
    KafkaAcl("topic", "{prefix}.detections.v1", CONSUME),
    KafkaAcl("topic", "{prefix}.keyframes.v1", CONSUME),
    KafkaAcl("topic", "{prefix}.dlq.mongo-sink.v1", DEAD_LETTERS),
    KafkaAcl("topic", "{prefix}.dlq.s3-sink.v1", DEAD_LETTERS),
    KafkaAcl("group", "connect-", ("Read",), "prefix"),
    KafkaAcl("group", "edgesight-keyframe-indexer-", ("Read",), "prefix"),
)

KAFKA_ACLS: dict[str, tuple[KafkaAcl, ...]] = {
    # The edge agent: idempotent producer of the three edge topics, nothing else (ops creates them).
    "agent": (
        KafkaAcl("topic", "{prefix}.detections.v1", PRODUCE),
        KafkaAcl("topic", "{prefix}.keyframes.v1", PRODUCE),
        KafkaAcl("topic", "{prefix}.status.v1", PRODUCE),
        KafkaAcl("cluster", "", ("IdempotentWrite",)),
    ),
    "operator": (),
    # The Python runner of the connector files (`cloud-ops connectors run`).
    "sink": _SINK,
    # Kafka Connect's workers: the sinks' rights plus the worker group and its internal topics.
    "connector": _SINK
    + (
        KafkaAcl("topic", "{connect}-", ("Read", "Write", "Describe", "Create", "DescribeConfigs"), "prefix"),
        KafkaAcl("group", "{connect}", ("Read", "Describe")),
        KafkaAcl("cluster", "", ("Describe", "IdempotentWrite")),
    ),
    "engineering": (
        KafkaAcl("topic", "{prefix}.detections.v1", CONSUME),
        KafkaAcl("topic", "{prefix}.dlq.engineering.v1", DEAD_LETTERS),
        KafkaAcl("group", "edgesight-engineering", ("Read",)),
    ),
    "fleet": (
        KafkaAcl("topic", "{prefix}.status.v1", CONSUME),
        KafkaAcl("topic", "{prefix}.dlq.fleet.v1", DEAD_LETTERS),
        KafkaAcl("group", "edgesight-fleet", ("Read",)),
    ),
    # Operations: topics (create, configs, dead-letter show/replay), any group (lag, offsets), cluster describe.
    "ops": (
        KafkaAcl("topic", "{prefix}.", ("All",), "prefix"),
        KafkaAcl("group", "*", ("All",)),
        KafkaAcl("cluster", "", ("Describe", "DescribeConfigs", "IdempotentWrite")),
    ),
}
"""Role -> allow rules. Roles are those of ``ops.identities.ROLES``; a test keeps the two in step."""


def kafka_acls(role: str, *, prefix: str = "edgesight", connect: str = "edgesight-connect") -> list[KafkaAcl]:
    """The resolved rules of ``role`` (``KeyError`` for an unknown role)."""
    return [a.resolve(prefix, connect) for a in KAFKA_ACLS[role]]
