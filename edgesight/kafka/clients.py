"""The librdkafka defaults of every EdgeSight consumer group member and dead-letter producer.

Consumers commit by hand, after the effect of a batch is durable (``enable.auto.commit`` and
``enable.auto.offset.store`` off), start a new group at the earliest offset, and heartbeat at
:data:`HEARTBEAT_FRACTION` of the session timeout (librdkafka asks for at most a third; a fifth
lets four heartbeats go missing on a loaded box before the broker drops the member).
Producers are idempotent with ``acks=all``: a record the broker acknowledged is on every in-sync
replica, and librdkafka's own retries add no duplicates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgesight.log import get_logger
from edgesight.nativelog import RateLimitedLog

HEARTBEAT_FRACTION = 5  # heartbeat.interval.ms = session.timeout.ms / HEARTBEAT_FRACTION
MIN_HEARTBEAT_MS = 500
MIN_MAX_POLL_INTERVAL_MS = 300_000  # librdkafka's default; it must not be below the session timeout


def rdkafka_logger(component: str) -> RateLimitedLog:
    """A ``logger`` for a confluent-kafka client: librdkafka's lines join the JSON log stream (they go to
    stderr as plain text otherwise), repeats rate-limited (a broker outage logs once, not per retry)."""
    return RateLimitedLog(get_logger(f"librdkafka.{component}"))


def consumer_config(
    base: Mapping[str, Any], *, group_id: str, client_id: str, session_timeout_ms: int
) -> dict[str, Any]:
    """``base`` (connection settings, e.g. :meth:`KafkaConfig.client_config`) plus the consumer defaults."""
    return {
        **base,
        "group.id": group_id,
        "client.id": client_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": session_timeout_ms,
        "heartbeat.interval.ms": max(MIN_HEARTBEAT_MS, session_timeout_ms // HEARTBEAT_FRACTION),
        "max.poll.interval.ms": max(MIN_MAX_POLL_INTERVAL_MS, session_timeout_ms),
        "logger": base.get("logger") or rdkafka_logger("consumer"),
    }


def producer_config(
    base: Mapping[str, Any], *, client_id: str, linger_ms: float = 5, max_message_bytes: int | None = None
) -> dict[str, Any]:
    """``base`` plus the producer defaults: idempotent, ``acks=all``; ``max_message_bytes`` raises
    librdkafka's ``message.max.bytes`` (1 MB by default) for large records."""
    conf: dict[str, Any] = {
        **base,
        "client.id": client_id,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": linger_ms,
        "logger": base.get("logger") or rdkafka_logger("producer"),
    }
    if max_message_bytes is not None:
        conf["message.max.bytes"] = max_message_bytes
    return conf
