"""Kafka settings and client defaults shared by the edge and the cloud.

- :class:`KafkaConfig` -- connection settings (bootstrap, TLS/SASL, topic prefix, session timeout);
- :func:`consumer_config` / :func:`producer_config` -- the one set of librdkafka defaults every
  EdgeSight consumer group member and dead-letter producer uses;
- :class:`ConsumedMessage` -- a consumed record whose headers are read once (a client crash otherwise);
- :class:`TopicSpec`, :func:`load_topic_specs` (a ``topics.yaml`` file, placeholders filled) and
  :func:`ensure_topics` -- the one way topics are created.

Importing this package does not import ``confluent_kafka``: the functions that talk to a broker
import it when called.
"""

from .clients import HEARTBEAT_FRACTION, consumer_config, producer_config
from .config import KafkaConfig
from .message import ConsumedMessage, HeadersUnreadable
from .topics import SpecError, TopicSpec, ensure_topics, load_topic_specs, render

__all__ = [
    "HEARTBEAT_FRACTION",
    "ConsumedMessage",
    "HeadersUnreadable",
    "KafkaConfig",
    "SpecError",
    "TopicSpec",
    "consumer_config",
    "ensure_topics",
    "load_topic_specs",
    "producer_config",
    "render",
]
