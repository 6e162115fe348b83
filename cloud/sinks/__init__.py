"""Small batching sinks with explicit checkpoints (Quix Streams style).

A sink buffers items with :meth:`add` and makes them durable with :meth:`flush`, which
returns a :class:`FlushResult`: how many were written, which items failed (with the
reason: the caller dead-letters or aborts) and the *checkpoint*: for each Kafka
partition, the next offset to commit. Callers commit offsets only after ``flush``
returned, so a crash replays at most the unflushed batch, and idempotent writes
(upsert by id, deterministic object keys) make the replay harmless.
"""

from .base import BatchingSink, FlushResult, Item
from .mongo import DocumentNotEncodable, MongoSink, bson_size
from .s3 import S3Sink

__all__ = ["BatchingSink", "DocumentNotEncodable", "FlushResult", "Item", "MongoSink", "S3Sink", "bson_size"]
