"""One classification of delivery errors for the edge publisher and the dead-letter producer: which errors
replace the producer. Built from librdkafka's own ``KafkaError`` values (no broker needed to construct them)."""

from __future__ import annotations

from confluent_kafka import KafkaError
from hypothesis import given
from hypothesis import strategies as st

from edgesight.kafka.errors import needs_new_producer, retriable_codes


def test_fenced_and_sequence_errors_replace_the_producer() -> None:
    # Tansu's answer to the epoch bump after an outage: a plain (non-fatal) error, the same for every later
    # record on that producer. Retrying on it forever was a hang (the dead-letter flush never returned).
    for code in (
        KafkaError.PRODUCER_FENCED,
        KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
        KafkaError.UNKNOWN_PRODUCER_ID,
        KafkaError.INVALID_PRODUCER_EPOCH,
    ):
        assert not KafkaError(code).fatal()
        assert needs_new_producer(KafkaError(code)), KafkaError(code).name()


def test_outage_errors_keep_the_producer() -> None:
    for code in (KafkaError._MSG_TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
        assert not needs_new_producer(KafkaError(code)), KafkaError(code).name()


@given(st.sampled_from(sorted(retriable_codes())), st.booleans())
def test_a_fatal_error_always_replaces_the_producer(code: int, fatal: bool) -> None:
    err = KafkaError(code, fatal=fatal)
    assert needs_new_producer(err) is fatal


@given(st.one_of(st.none(), st.integers(), st.text(), st.builds(TypeError, st.text()), st.builds(ValueError)))
def test_what_is_not_a_kafka_error_never_replaces_the_producer(err: object) -> None:
    assert needs_new_producer(err) is False
