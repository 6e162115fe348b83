"""The engineering consumer: detection events -> analytics collections (``cloud-ops engineering run``)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from cloud.config import CloudConfig
from edgesight import metrics
from edgesight.log import get_logger
from edgesight.wire import Topics, WireError, decode_event

from .consumer import BatchConsumer, Poison, ensure_topics
from .facts import event_to_fact
from .settings import EngineeringConfig
from .store import AnalyticsStore

LATE = metrics.histogram(
    "engineering_event_age_seconds",
    "Age of events when processed (capture ts -> now)",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, 86400),
)


def decode_record(value: bytes | None):
    """-> (fact, None) or (None, WireError). Pure."""
    if value is None:
        return None, WireError("detection event", "(message)", "empty value (tombstone); expected a JSON object")
    try:
        return event_to_fact(decode_event(value)), None
    except WireError as e:
        return None, e


class EngineeringHandler:
    name = "engineering"

    def __init__(self, store: AnalyticsStore):
        self.store = store
        self.log = get_logger("engineering")
        self.last_written: dict[str, int] = {}

    def handle(self, msgs: Sequence) -> list[Poison]:
        facts, poison = [], []
        for m in msgs:
            fact, err = decode_record(m.value())
            if err is not None:
                poison.append(Poison(m, err))
            else:
                facts.append(fact)
        if facts:
            now = time.time()
            for f in facts:
                LATE.observe(max(0.0, now - f["ts"].timestamp()))
            self.last_written = self.store.apply(facts)
        return poison

    def on_rebalance(self) -> None:
        self.store.clear_cache()

    def tick(self) -> None:
        pass


def build_engineering(cfg: CloudConfig, st: EngineeringConfig, *, mongo_client=None) -> BatchConsumer:
    topics = Topics(cfg.kafka.topic_prefix)
    kconf = cfg.kafka.client_config()
    ensure_topics(kconf, {topics.dlq(st.dlq_name): 1})
    client = mongo_client or cfg.mongo.client()
    store = AnalyticsStore(
        client[cfg.mongo.analytics_db],
        write_concern=st.write_concern,
        facts_ttl_days=st.facts_ttl_days,
        cache_max_keys=st.cache_max_keys,
        write_retries=st.write_retries,
    )
    return BatchConsumer(
        kconf,
        topics.detections,
        st.group_id,
        EngineeringHandler(store),
        dlq_topic=topics.dlq(st.dlq_name),
        batch_size=st.batch_size,
        batch_timeout_s=st.batch_timeout_s,
        session_timeout_ms=st.session_timeout_ms or cfg.kafka.session_timeout_ms,
    )
