"""Dead letters the dead-letter topic can always take, and what happens when it still refuses one.

A dead letter is the failed record (key, value, headers) plus Kafka Connect's context headers. It is
bounded so that it never exceeds what a broker with default settings accepts (Kafka's
``max.message.bytes`` is 1,048,588 bytes; librdkafka's ``message.max.bytes`` 1,000,000):

- a value over ``max_value_bytes`` (``ErrorPolicy.dlq_max_value_bytes``) is dropped; the header
  ``edgesight.errors.value.dropped.bytes`` keeps its size (the record is still on its source topic);
- the record's own headers: at most :data:`DLQ_MAX_HEADERS` and :data:`DLQ_MAX_OWN_HEADERS_BYTES`, each
  value cut to :data:`DLQ_MAX_HEADER_BYTES`, names to :data:`DLQ_MAX_HEADER_NAME`; the rest is dropped;
- the context headers' values are cut to :data:`DLQ_MAX_HEADER_BYTES`; a key to :data:`DLQ_MAX_KEY`.

Delivery failures (:meth:`DeadLetterProducer.flush`):

- the broker refuses *this* record (too large for the topic's ``max.message.bytes``, invalid): it is sent
  again as a minimal dead letter (no value, no own headers, context only); if even that is refused, the
  record is logged with its coordinates and skipped. Stopping instead would never end: the record is
  redelivered after every restart and refused again (a crash loop that dead-letters the records before it
  over and over). Nothing accepted is lost: the record stays on its source topic at the logged offset;
- anything else (broker down, topic missing, timeout) is not the record's fault: the dead letters are
  retried with back-off, nothing is committed meanwhile (after a producer-state error such as
  ``PRODUCER_FENCED`` on a new producer: :func:`edgesight.kafka.errors.needs_new_producer`); once a stop was requested it waits at most
  :data:`STOPPING_FLUSH_S`, then gives up with :class:`DeadLetterError` (nothing committed: the batch is
  redelivered, and the letters already delivered may then appear twice).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from edgesight.kafka import producer_config
from edgesight.kafka.errors import needs_new_producer
from edgesight.limits import HEADER_MAX_BYTES, HEADERS_MAX_COUNT, clip
from edgesight.log import ContextLogger
from edgesight.wire import deadletter

DLQ_MAX_RECORD_BYTES: Final = 900_000
"""A whole dead letter (key + value + headers); under librdkafka's and Kafka's default message size limits."""
DLQ_MAX_VALUE: Final = 512 * 1024
"""Default ``ErrorPolicy.dlq_max_value_bytes``: a larger value is dropped from the dead letter."""
DLQ_MAX_KEY: Final = 16 * 1024
"""A longer key is cut in the dead letter."""
DLQ_MAX_HEADERS: Final = HEADERS_MAX_COUNT
"""The record's own headers copied into its dead letter; the rest are dropped."""
DLQ_MAX_OWN_HEADERS_BYTES: Final = 64 * 1024
"""Bytes (names + values) of the record's own headers copied into its dead letter; the rest are dropped."""
DLQ_MAX_HEADER_BYTES: Final = HEADER_MAX_BYTES
"""A header value in a dead letter (own or context) is cut to this (a stack trace keeps its end)."""
DLQ_MAX_HEADER_NAME: Final = 256
"""A header name in a dead letter is cut to this many bytes."""
_OVERHEAD: Final = 8192  # record framing, per-header varints
_CONTEXT_HEADERS: Final = len(deadletter.CONTEXT_KEYS) + 3  # + field, kind, value dropped
DLQ_MAX_OTHER: Final = (
    DLQ_MAX_KEY + DLQ_MAX_OWN_HEADERS_BYTES + _CONTEXT_HEADERS * (DLQ_MAX_HEADER_BYTES + 64) + _OVERHEAD
)
"""Most bytes of a dead letter that are not its value: what ``dlq_max_value_bytes`` must leave room for."""
# librdkafka / Kafka error codes that mean "this record is refused", not "the broker is unavailable".
_RECORD_REFUSED: Final = {
    2,  # INVALID_MSG (CORRUPT_MESSAGE)
    4,  # INVALID_MSG_SIZE
    10,  # MSG_SIZE_TOO_LARGE (the broker's, or the client's own message.max.bytes check)
    18,  # RECORD_LIST_TOO_LARGE
    87,  # INVALID_RECORD
    -186,  # _INVALID_ARG
}


STOPPING_FLUSH_S: Final = 10.0
"""Once a stop was requested, how long the dead letters may take before the loop gives up (nothing committed)."""


class DeadLetterError(RuntimeError):
    """Dead letters were not acknowledged by the broker: nothing is committed."""


def check_max_value(n: int) -> int:
    """``ErrorPolicy.dlq_max_value_bytes``: positive and leaving room for the key and headers."""
    most = DLQ_MAX_RECORD_BYTES - DLQ_MAX_OTHER
    if not 0 < n <= most:
        raise ValueError(
            f"dlq_max_value_bytes must be in 1..{most} (DLQ_MAX_RECORD_BYTES = {DLQ_MAX_RECORD_BYTES} less "
            f"room for key and headers), got {n}"
        )
    return n


def safe_text(exc: BaseException, n: int) -> str:
    """``Type: message`` of an exception, cut to ``n`` characters; never raises (a hostile ``__str__``)."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - an exception whose __str__ fails still needs a reason
        text = "(message unavailable)"
    return f"{type(exc).__name__}: {clip(text, n)}"


def _cut(b: bytes, n: int) -> bytes:
    return b if len(b) <= n else b[:n]


def _text_cut(b: bytes, n: int) -> bytes:
    """Cut to ``n`` bytes without splitting a UTF-8 character (context headers are text)."""
    return b if len(b) <= n else b[:n].decode("utf-8", "ignore").encode()


def _tail(b: bytes) -> bytes:
    """The last :data:`DLQ_MAX_HEADER_BYTES` of a stack trace (the innermost frames and the error)."""
    return b if len(b) <= DLQ_MAX_HEADER_BYTES else b[-DLQ_MAX_HEADER_BYTES:].decode("utf-8", "ignore").encode()


def coordinates(msg: Any) -> str:
    return f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"


@dataclass
class Letter:
    """One dead letter and the record it stands for."""

    source: str  # topic[partition]@offset
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]  # own headers first, then context
    context: list[tuple[str, bytes]]
    minimal: bool = False
    notes: str = ""  # what was cut or dropped (for the log)

    def shrunk(self) -> Letter:
        """The minimal form: context headers only, no value (its size kept), no key."""
        size = len(self.value or b"")
        hdrs = [(k, _text_cut(v, 1024)) for k, v in self.context]
        hdrs.append((deadletter.VALUE_DROPPED, str(size).encode()))
        return Letter(self.source, None, b"", hdrs, self.context, minimal=True, notes="minimal dead letter")


def build_letter(msg: Any, context: Sequence[tuple[str, bytes]], *, max_value_bytes: int) -> Letter:
    """The bounded dead letter of ``msg`` (see the module doc)."""
    notes = []
    own: list[tuple[str, bytes]] = []
    try:
        raw = list(msg.headers() or [])
    except Exception as e:  # noqa: BLE001 - headers the client cannot even decode: dropped
        raw = []
        notes.append(f"own headers unreadable ({safe_text(e, 100)})")
    if len(raw) > DLQ_MAX_HEADERS:
        notes.append(f"{len(raw) - DLQ_MAX_HEADERS} of {len(raw)} headers dropped")
        raw = raw[:DLQ_MAX_HEADERS]
    budget = DLQ_MAX_OWN_HEADERS_BYTES
    for i, (k, v) in enumerate(raw):
        name = k if isinstance(k, str) else bytes(k).decode("utf-8", "replace")
        if len(name.encode()) > DLQ_MAX_HEADER_NAME:
            name = _text_cut(name.encode(), DLQ_MAX_HEADER_NAME).decode()
            notes.append("a header name cut")
        value = b"" if v is None else (v.encode() if isinstance(v, str) else bytes(v))
        if len(value) > DLQ_MAX_HEADER_BYTES:
            notes.append(f"header {clip(name, 40)!r} cut from {len(value)} bytes")
            value = _cut(value, DLQ_MAX_HEADER_BYTES)
        budget -= len(name.encode()) + len(value)
        if budget < 0:
            notes.append(f"{len(raw) - i} headers dropped (over {DLQ_MAX_OWN_HEADERS_BYTES} bytes)")
            break
        own.append((name, value))
    ctx = [(k, _tail(v) if k.endswith("stacktrace") else _text_cut(v, DLQ_MAX_HEADER_BYTES)) for k, v in context]
    key = msg.key()
    if key is not None and len(key) > DLQ_MAX_KEY:
        notes.append(f"key cut from {len(key)} bytes")
        key = _cut(key, DLQ_MAX_KEY)
    headers = own + ctx
    value = msg.value()
    used = len(key or b"") + sum(len(k.encode()) + len(v) + 16 for k, v in headers) + _OVERHEAD
    room = min(max_value_bytes, DLQ_MAX_RECORD_BYTES - used)
    if value is not None and len(value) > room:
        headers.append((deadletter.VALUE_DROPPED, str(len(value)).encode()))
        notes.append(f"value of {len(value)} bytes dropped (over {room})")
        value = b""
    return Letter(coordinates(msg), key, value, headers, ctx, notes="; ".join(notes))


class DeadLetterProducer:
    """Copies failed records to the dead-letter topic; :meth:`flush` returns once each was acknowledged,
    or was refused even in its minimal form (logged, skipped), or raises :class:`DeadLetterError`."""

    def __init__(
        self,
        base: Mapping[str, Any],
        topic: str,
        client_id: str,
        *,
        log: ContextLogger,
        stop: threading.Event,
        on_skip: Any = None,
        max_message_bytes: int | None = None,
    ):
        from confluent_kafka import Producer

        self.topic, self.log, self.stop, self.on_skip = topic, log, stop, on_skip
        self._conf = producer_config(base, client_id=client_id, max_message_bytes=max_message_bytes)
        self._p = Producer(self._conf)
        self._failed: list[tuple[Letter, Any]] = []
        self.skipped = 0  # records that could not be dead-lettered at all
        self.recreated = 0  # producers replaced after a fatal error

    def send(self, letter: Letter) -> None:
        self._produce(letter)

    def _produce(self, letter: Letter) -> None:
        from confluent_kafka import KafkaException

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                self._failed.append((letter, err))

        while True:
            try:
                hdrs: list[tuple[str, str | bytes | None]] = list(letter.headers)
                self._p.produce(self.topic, key=letter.key, value=letter.value, headers=hdrs, on_delivery=delivered)
            except BufferError:  # the local queue is full: let it drain
                self._p.poll(0.5)
                continue
            except KafkaException as e:  # refused before it left (e.g. over message.max.bytes)
                self._failed.append((letter, e.args[0] if e.args else e))
            except (TypeError, ValueError) as e:  # e.g. a header the client cannot encode
                self._failed.append((letter, e))
            break
        self._p.poll(0)

    def flush(self, timeout: float = 30.0) -> None:
        delay = 0.5
        while True:
            left = self._p.flush(min(timeout, STOPPING_FLUSH_S) if self.stop.is_set() else timeout)
            failed, self._failed = self._failed, []
            if not left and not failed:
                return
            transient = []
            for letter, err in failed:
                if not _record_refused(err):
                    transient.append((letter, err))
                elif not letter.minimal:
                    self.log.warning(
                        "dead letter refused; sending a minimal one",
                        extra={"source": letter.source, "error": clip(str(err), 300), "topic": self.topic},
                    )
                    self._produce(letter.shrunk())
                else:
                    self._skip(letter, err)
            if not (transient or left):
                continue
            if any(needs_new_producer(e) for _, e in transient):
                self._recreate(transient)
            if self.stop.is_set():
                self._p.purge(in_queue=True, in_flight=False)
                raise DeadLetterError(
                    f"dead-letter delivery to {self.topic} failed ({left} undelivered, errors: "
                    f"{[clip(str(e), 200) for _, e in transient[:3]]}); offsets not committed"
                )
            self.log.error(
                "dead-letter delivery failed; retrying",
                extra={
                    "topic": self.topic,
                    "undelivered": left,
                    "failed": len(transient),
                    "error": clip(str(transient[0][1]), 300) if transient else "timed out",
                    "retry_in_s": delay,
                },
            )
            self.stop.wait(delay)
            delay = min(delay * 2, 15.0)
            for letter, _ in transient:
                self._produce(letter)

    def _recreate(self, transient: list[tuple[Letter, Any]]) -> None:
        """A producer-state error (:func:`~edgesight.kafka.errors.needs_new_producer`: fatal, or e.g.
        PRODUCER_FENCED, which Tansu answers the epoch bump after an outage with, as a non-fatal delivery
        error that the same producer then gets for every record) leaves the producer unusable: replace it. Letters still in its queue were purged
        with it and are in ``transient`` (their callbacks ran), so they are produced again on the new one."""
        from confluent_kafka import Producer

        self.log.warning(
            "dead-letter producer hit a fatal error; replacing it",
            extra={
                "topic": self.topic,
                "error": clip(str(next(e for _, e in transient if needs_new_producer(e))), 300),
            },
        )
        old, self._p = self._p, Producer(self._conf)
        old.purge(in_queue=True, in_flight=True)
        old.poll(0)
        self._failed, purged = [], self._failed
        transient.extend(purged)
        self.recreated += 1

    def _skip(self, letter: Letter, err: Any) -> None:
        self.skipped += 1
        self.log.error(
            "record could not be dead-lettered, even without its value; skipped (it stays on its source topic)",
            extra={"source": letter.source, "error": clip(str(err), 300), "topic": self.topic},
        )
        if self.on_skip is not None:
            self.on_skip()

    def close(self, timeout: float) -> None:
        self._p.flush(timeout)
        close = getattr(self._p, "close", None)  # confluent-kafka >= 2.13
        if close is not None:
            close()


def _record_refused(err: Any) -> bool:
    if isinstance(err, (TypeError, ValueError)):
        return True
    code = getattr(err, "code", None)
    return callable(code) and code() in _RECORD_REFUSED
