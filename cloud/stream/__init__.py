"""The cloud side's one consumer core: a batch loop that owns the checkpoint order
(write -> dead letters -> flush -> commit) and runs a :class:`Handler` per consumer.

Handlers: the MongoDB and S3 sink connector tasks (``connectors.tasks``), the engineering and
fleet consumers (``cloud.engineering``).
"""

from .dlq import DLQ_MAX_RECORD_BYTES, DLQ_MAX_VALUE, DeadLetterError, safe_text
from .handler import TP, ErrorPolicy, Failure, Handler, TaskFailed, WriteResult
from .loop import (
    BatchLoop,
    ConsumerMetrics,
    LoopMetrics,
    LoopStats,
    handle_signals,
    retry_durable,
)

__all__ = [
    "DLQ_MAX_RECORD_BYTES",
    "DLQ_MAX_VALUE",
    "TP",
    "BatchLoop",
    "ConsumerMetrics",
    "DeadLetterError",
    "ErrorPolicy",
    "Failure",
    "Handler",
    "LoopMetrics",
    "LoopStats",
    "TaskFailed",
    "WriteResult",
    "handle_signals",
    "retry_durable",
    "safe_text",
]
