"""Helpers shared by the publish tests and the SIGKILL publisher script (the event stream and the broker
control live in :mod:`ops.testing.publish`, shared with the benchmark).

Nothing here fakes Kafka: records are read back with kafka-python (a pure-Python
client, independent of librdkafka) from the real embedded broker.
"""

from __future__ import annotations

import time

from edgesight.kafka import KafkaConfig
from edgesight.wire import decode_event, event_key
from ops.testing.clients import kafka_python
from ops.testing.publish import T0 as T0
from ops.testing.publish import BrokerControl as BrokerControl
from ops.testing.publish import event_stream as event_stream


def read_topic(
    kafka: KafkaConfig, topic: str, *, expect: int | None = None, idle_s: float = 5.0, max_wait_s: float = 180.0
) -> list:
    """Every record of ``topic`` from the beginning, via kafka-python, connected as ``kafka`` says (TLS and the
    stack CA on the secure stack). With ``expect``: stops once that
    many were read and nothing more arrives for a second (or after ``max_wait_s``); without: after
    ``idle_s`` without records."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(
        **kafka_python(kafka),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=500,
        max_partition_fetch_bytes=32 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    try:
        parts = None
        deadline = time.monotonic() + 30
        while not parts and time.monotonic() < deadline:
            parts = c.partitions_for_topic(topic)
            if not parts:
                time.sleep(0.2)
        assert parts, f"topic {topic} not found"
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        out: list = []
        last_new = time.monotonic()
        end = time.monotonic() + max_wait_s
        while time.monotonic() < end:
            got = c.poll(timeout_ms=500, max_records=10000)
            n = sum(len(v) for v in got.values())
            for recs in got.values():
                out.extend(recs)
            if n:
                last_new = time.monotonic()
                continue
            quiet = time.monotonic() - last_new
            if expect is not None and len(out) >= expect and quiet > 1.0:
                break
            if expect is None and quiet > idle_s:
                break
        return out
    finally:
        c.close()


def first_occurrences(recs) -> tuple[dict[str, bytes], dict[str, list[int]], int]:
    """Read-back detection records -> (first value per event id, per-camera seqs of first occurrences in
    arrival order, number of duplicates). Asserts every record is keyed by its camera and every re-send is
    byte-identical to the original."""
    first: dict[str, bytes] = {}
    by_cam: dict[str, list[int]] = {}
    dups = 0
    for r in recs:
        e = decode_event(r.value)
        assert r.key == event_key(e)
        if e.event_id in first:
            dups += 1
            assert first[e.event_id] == r.value, "a re-send differs from the original"
            continue
        first[e.event_id] = r.value
        by_cam.setdefault(e.camera_id, []).append(e.seq)
    return first, by_cam, dups
