"""The engineering consumer: detection events -> analytics collections (``cloud-ops engineering run``)."""

from __future__ import annotations

import time
from typing import Any

from cloud.config import CloudConfig
from cloud.stream import TP, BatchLoop, Failure, Handler, WriteResult
from edgesight import metrics
from edgesight.wire import Topics, WireError, decode_event

from .consumer import consumer_loop, storable, wire_failure
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


class EngineeringHandler(Handler):
    """Detection events -> facts (per record) -> one store update per batch."""

    name = "engineering"
    accept_stage = "VALUE_CONVERTER"

    def __init__(self, store: AnalyticsStore):
        self.store = store
        self._facts: list = []

    def accept(self, msg: Any) -> Failure | None:
        fact, err = decode_record(msg.value())
        if err is not None:
            return wire_failure(err)
        failure = storable(fact)
        if failure is not None:
            return failure
        self._facts.append(fact)
        return None

    def write(self, final: bool) -> WriteResult:
        facts, self._facts = self._facts, []
        if facts:
            now = time.time()
            for f in facts:
                LATE.observe(max(0.0, now - f["ts"].timestamp()))
            self.store.apply(facts)  # returns after the writes are durable (raises otherwise)
        return WriteResult(written=len(facts))

    def assign(self, tps: set[TP]) -> None:
        self.store.clear_cache()  # partitions moved: drop caches that assume ownership

    def revoke(self, tps: set[TP]) -> None:
        self.store.clear_cache()


def build_engineering(cfg: CloudConfig, st: EngineeringConfig, *, mongo_client=None) -> BatchLoop:
    client = mongo_client or cfg.mongo.client()
    store = AnalyticsStore(
        client[cfg.mongo.analytics_db],
        write_concern=st.write_concern,
        facts_ttl_days=st.facts_ttl_days,
        cache_max_keys=st.cache_max_keys,
        write_retries=st.write_retries,
    )
    topics = Topics(cfg.kafka.topic_prefix)
    return consumer_loop(cfg, st, topics.detections, st.dlq_name, EngineeringHandler(store))
