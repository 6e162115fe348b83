"""Kafka settings and client defaults shared by the edge and the cloud.

- :class:`KafkaConfig` -- connection settings (bootstrap, TLS/SASL, topic prefix, session timeout);
- :func:`consumer_config` / :func:`producer_config` -- the one set of librdkafka defaults every
  EdgeSight consumer group member and dead-letter producer uses;
- :class:`ConsumedMessage` -- a consumed record whose headers are read once (a client crash otherwise);
- :class:`TopicSpec`, :func:`load_topic_specs` (a ``topics.yaml`` file, placeholders filled) and
  :func:`ensure_topics` -- the one way topics are created; :func:`plan_topics`, :func:`apply_topics` and
  :func:`describe_topics` (:class:`TopicChange`, :class:`TopicState`) manage them declaratively.

Importing this package does not import ``confluent_kafka``: the functions that talk to a broker
import it when called.
"""

from .clients import HEARTBEAT_FRACTION, consumer_config, producer_config
from .config import KafkaConfig
from .message import ConsumedMessage, HeadersUnreadable
from .topics import (
    SpecError,
    TopicChange,
    TopicSpec,
    TopicState,
    apply_topics,
    describe_topics,
    ensure_topics,
    load_topic_specs,
    plan_topics,
    render,
)

__all__ = [
    "HEARTBEAT_FRACTION",
    "ConsumedMessage",
    "HeadersUnreadable",
    "KafkaConfig",
    "SpecError",
    "TopicChange",
    "TopicSpec",
    "TopicState",
    "apply_topics",
    "consumer_config",
    "describe_topics",
    "ensure_topics",
    "load_topic_specs",
    "plan_topics",
    "producer_config",
    "render",
]
