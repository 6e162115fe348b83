"""What a producer does after a delivery error: one classification for the edge publisher and the
cloud's dead-letter producer.

- *retriable*: the same producer sends the record again (broker down, timed out, leader moving...);
- *producer-state*: anything else that is not the record's fault (``PRODUCER_FENCED``,
  ``OUT_OF_ORDER_SEQUENCE_NUMBER``, ``UNKNOWN_PRODUCER_ID``, a fatal idempotence error, an error code
  this client does not know): the producer itself is unusable or suspect and must be replaced (a new
  producer id), then the record is sent again. Tansu answers the epoch bump that follows a timed-out
  idempotent batch with ``PRODUCER_FENCED`` as a plain (non-fatal) delivery error; the same producer
  then gets it for every later record, forever.

Which errors mean "this record can never be delivered" depends on the caller (the publisher
releases the record; the dead-letter producer first tries a minimal letter), so it is not decided here.

Importing this module does not import ``confluent_kafka``.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def retriable_codes() -> frozenset[int]:
    """Errors after which the same producer simply sends the record again."""
    from confluent_kafka import KafkaError as E

    return frozenset(
        {
            E._MSG_TIMED_OUT,
            E._TIMED_OUT,
            E._TRANSPORT,
            E._ALL_BROKERS_DOWN,
            E._PURGE_QUEUE,
            E._PURGE_INFLIGHT,
            E.NOT_LEADER_FOR_PARTITION,
            E.LEADER_NOT_AVAILABLE,
            E.REQUEST_TIMED_OUT,
            E.NOT_ENOUGH_REPLICAS,
            E.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
            E.UNKNOWN_TOPIC_OR_PART,
            E._UNKNOWN_TOPIC,
            E.NETWORK_EXCEPTION,
            E._UNKNOWN_PARTITION,
            E._QUEUE_FULL,
        }
    )


def needs_new_producer(err: Any) -> bool:
    """A delivery error (not the record's fault) after which the producer must be replaced: fatal, or
    neither flagged retriable by librdkafka nor in :func:`retriable_codes`. ``err`` is a ``KafkaError``;
    anything else (an exception raised by ``produce``) never asks for a new producer."""
    code, fatal, retriable = (getattr(err, n, None) for n in ("code", "fatal", "retriable"))
    if not (callable(code) and callable(fatal) and callable(retriable)):
        return False
    return bool(fatal()) or not (bool(retriable()) or code() in retriable_codes())
