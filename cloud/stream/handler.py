"""What a handler of the :class:`~cloud.stream.loop.BatchLoop` is given and returns.

The loop hands each record to :meth:`Handler.accept` (convert, validate, buffer), then asks
:meth:`Handler.write` to make the buffered records durable. A record either

- is *taken* (``accept`` returns ``None``): its effect is written by a later ``write``;
- *fails* (``accept`` returns a :class:`Failure` or raises any exception, or ``write`` lists it in
  ``WriteResult.failed``): the loop applies the :class:`ErrorPolicy` (dead-letter it, or stop the task)
  and calls :meth:`Handler.discard`; an exception ``write`` raises is a batch failure (a server down): the
  handler retries it with ``loop.retry``;
- is *still buffered* after ``write`` (a sink that keeps files open across batches): then ``write``
  returns in ``WriteResult.checkpoint`` only the offsets that are safe to commit.

The loop, never the handler, produces the dead letters, flushes them and then commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .dlq import DLQ_MAX_VALUE, check_max_value

if TYPE_CHECKING:
    from .loop import BatchLoop

TP = tuple[str, int]  # (topic, partition)


class TaskFailed(RuntimeError):
    """A record failed and the policy does not tolerate it (``errors.tolerance=none``), as a Connect task would."""


@dataclass(frozen=True)
class Failure:
    """Why one record cannot be handled: Kafka Connect's stage, the class that failed, the error."""

    stage: str  # VALUE_CONVERTER, TRANSFORMATION, TASK_PUT, ... (edgesight.wire.deadletter.STAGES)
    class_name: str
    exc: BaseException


@dataclass
class WriteResult:
    written: int = 0  # records made durable
    failed: list[tuple[Any, Failure]] = field(default_factory=list)  # (message, failure) found by the sink
    # next offset to commit per partition; None = every record accepted since the last write
    checkpoint: dict[TP, int] | None = None

    def __bool__(self) -> bool:
        return bool(self.written or self.failed or self.checkpoint)


@dataclass(frozen=True)
class ErrorPolicy:
    """What happens to a failed record (Kafka Connect's ``errors.*`` options)."""

    tolerate: bool = True  # errors.tolerance=all; False: TaskFailed on the first failure
    tolerate_writes: bool = True  # failures the sink reports on write (mongo.errors.tolerance)
    dlq_topic: str = ""  # "" = failed records are counted and skipped
    context_headers: bool = True  # Kafka Connect's __connect.errors.* headers on each dead letter
    log_errors: bool = True
    log_messages: bool = False  # the record's key in the log line
    task_id: int = 0
    dlq_max_value_bytes: int = DLQ_MAX_VALUE  # a larger value is dropped from the dead letter (its size kept)

    def __post_init__(self) -> None:
        check_max_value(self.dlq_max_value_bytes)


class Handler:
    """Base class of the loop's handlers; the defaults do nothing."""

    name: str = "consumer"
    # Kafka Connect's stage for an exception ``accept`` did not turn into a Failure itself
    accept_stage: str = "TASK_PUT"

    def open(self, loop: BatchLoop) -> None:
        """Before the first poll: open clients; ``loop.retry`` makes durable writes retry with back-off."""

    def accept(self, msg: Any) -> Failure | None:
        """Convert/validate/buffer one record; a :class:`Failure` sends it to the error policy."""
        raise NotImplementedError

    def discard(self, msg: Any) -> None:
        """``msg`` failed in ``accept`` (returned a Failure or raised) and was dead-lettered or skipped: it has no
        effect, and its offset may be committed once nothing older is pending (handlers with their own
        checkpoint mark it here)."""

    def write(self, final: bool) -> WriteResult:
        """Called after every poll (with or without records) and once more with ``final=True`` at the end."""
        raise NotImplementedError

    def assign(self, tps: set[TP]) -> None:
        """Partitions were assigned (inside ``consume``: no batch is in flight)."""

    def revoke(self, tps: set[TP]) -> WriteResult | None:
        """Partitions are leaving: finish what may be committed for them (returned) and drop the rest."""
        return None

    def tick(self) -> None:
        """Periodic work between polls."""

    def close(self) -> None:
        """The loop ended (normally or not): release clients."""
