"""What the engineering and fleet consumers share: their loop (:class:`cloud.stream.BatchLoop`) with a
dead-letter topic of their own, and the failure of a record that breaks the wire contract."""

from __future__ import annotations

import socket
from typing import Any

from cloud.config import CloudConfig
from cloud.sinks import DocumentNotEncodable, bson_size
from cloud.stream import BatchLoop, ErrorPolicy, Failure, Handler
from edgesight.kafka import TopicSpec, ensure_topics
from edgesight.wire import Topics, WireError

from .settings import ConsumerConfig


def wire_failure(err: WireError) -> Failure:
    """A record the wire contract refused (not JSON, a field out of range, a tombstone)."""
    return Failure("VALUE_CONVERTER", "edgesight.wire.codec", err)


def storable(doc: dict[str, Any]) -> Failure | None:
    """A document derived from a valid record that BSON still cannot hold (an integer beyond 64 bits): that
    record's failure, found before the batch write (which would otherwise fail for every record in it)."""
    try:
        bson_size(doc)
    except DocumentNotEncodable as e:
        return Failure("TASK_PUT", "bson", e)
    return None


def consumer_loop(cfg: CloudConfig, st: ConsumerConfig, topic: str, dlq_name: str, handler: Handler) -> BatchLoop:
    """``handler`` on ``topic`` in the group ``st.group_id``; failed records go to ``<prefix>.dlq.<dlq_name>.v1``."""
    kconf = cfg.kafka.client_config()
    dlq = Topics(cfg.kafka.topic_prefix).dlq(dlq_name)
    ensure_topics(kconf, [TopicSpec(dlq, 1)])
    return BatchLoop(
        handler,
        kconf,
        [topic],
        group_id=st.group_id,
        client_id=f"{kconf.get('client.id', 'edgesight')}-{handler.name}-{socket.gethostname()}",
        session_timeout_ms=st.session_timeout_ms or cfg.kafka.session_timeout_ms,
        policy=ErrorPolicy(dlq_topic=dlq, dlq_max_value_bytes=st.dlq_max_value_bytes),
        batch_size=st.batch_size,
        batch_timeout_s=st.batch_timeout_s,
    )
