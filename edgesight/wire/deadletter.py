"""Dead-letter records: one header contract for every EdgeSight consumer.

A record that a consumer cannot handle (not JSON, a wire-contract violation, a
sink rejection) is copied *unchanged* (key, value, original headers) to a
dead-letter topic, with headers saying where it came from and why it failed.

The production path is Kafka Connect, whose sinks write its context headers
when ``errors.deadletterqueue.context.headers.enable=true``
(``__connect.errors.topic``, ``.partition``, ``.offset``, ``.connector.name``,
``.task.id``, ``.stage``, ``.class.name``, ``.exception.class.name``,
``.exception.message``, ``.exception.stacktrace``). The Python connector runner
and the data-engineering and fleet consumers write the *same* headers, so one
tool (``cloud-ops dlq show|replay``) reads and replays any dead-letter topic.
A wire-contract failure adds ``edgesight.errors.field`` and
``edgesight.errors.kind`` (the field at fault and the message kind).
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

PREFIX = "__connect.errors."
CONTEXT_KEYS = (
    "topic",
    "partition",
    "offset",
    "connector.name",
    "task.id",
    "stage",
    "class.name",
    "exception.class.name",
    "exception.message",
    "exception.stacktrace",
)
FIELD = "edgesight.errors.field"
KIND = "edgesight.errors.kind"
VALUE_DROPPED = "edgesight.errors.value.dropped.bytes"
# Kafka Connect's stages (org.apache.kafka.connect.runtime.errors.Stage)
STAGES = (
    "KEY_CONVERTER",
    "VALUE_CONVERTER",
    "HEADER_CONVERTER",
    "TRANSFORMATION",
    "TASK_PUT",
    "TASK_POLL",
    "KAFKA_PRODUCE",
    "KAFKA_CONSUME",
)
STACKTRACE_MAX = 8000


def _b(v: Any) -> bytes:
    return v if isinstance(v, bytes) else str(v).encode()


def context_headers(
    *,
    topic: str,
    partition: int,
    offset: int,
    connector: str,
    task_id: int | str,
    stage: str,
    class_name: str,
    exc: BaseException,
) -> list[tuple[str, bytes]]:
    """Kafka Connect's dead-letter context headers for a record that failed with ``exc``.

    ``edgesight.errors.field``/``kind`` are added when ``exc`` carries them (a WireError)."""
    if stage not in STAGES:
        raise ValueError(f"unknown dead-letter stage {stage!r}; one of {', '.join(STAGES)}")
    cls = type(exc)
    trace = "".join(traceback.format_exception(cls, exc, exc.__traceback__))[-STACKTRACE_MAX:]
    ctx = {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "connector.name": connector,
        "task.id": task_id,
        "stage": stage,
        "class.name": class_name,
        "exception.class.name": f"{cls.__module__}.{cls.__qualname__}",
        "exception.message": str(exc),
        "exception.stacktrace": trace,
    }
    out = [(PREFIX + k, _b(ctx[k])) for k in CONTEXT_KEYS]
    for name, attr in ((FIELD, "field"), (KIND, "kind")):
        v = getattr(exc, attr, None)
        if isinstance(v, str) and v:
            out.append((name, v.encode()))
    return out


def strip_context(headers: Iterable[tuple[str, bytes]] | None) -> list[tuple[str, bytes]]:
    """The record's own headers: everything but the dead-letter context (for a replay)."""
    return [(k, v) for k, v in (headers or []) if not k.startswith(PREFIX) and k not in (FIELD, KIND, VALUE_DROPPED)]


@dataclass
class DeadLetter:
    """The context of one dead-letter record, read back from its headers."""

    topic: str
    partition: int
    offset: int
    connector: str
    task_id: str
    stage: str
    class_name: str
    exception_class: str
    message: str
    field: str = ""
    kind: str = ""
    value_dropped_bytes: int = 0

    @property
    def source(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def parse_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> DeadLetter | None:
    """The dead-letter context of a record, or None when it carries none (not a dead letter).

    A record with some but not all of the context is reported with what it has: the
    topic/partition/offset must be present and numeric for it to count."""
    h: dict[str, str] = {}
    for k, v in headers or []:
        h[k] = (v or b"").decode(errors="replace")
    if PREFIX + "topic" not in h:
        return None
    try:
        partition, offset = int(h.get(PREFIX + "partition", "")), int(h.get(PREFIX + "offset", ""))
    except ValueError:
        return None
    return DeadLetter(
        topic=h[PREFIX + "topic"],
        partition=partition,
        offset=offset,
        connector=h.get(PREFIX + "connector.name", ""),
        task_id=h.get(PREFIX + "task.id", ""),
        stage=h.get(PREFIX + "stage", ""),
        class_name=h.get(PREFIX + "class.name", ""),
        exception_class=h.get(PREFIX + "exception.class.name", ""),
        message=h.get(PREFIX + "exception.message", ""),
        field=h.get(FIELD, ""),
        kind=h.get(KIND, ""),
        value_dropped_bytes=int(h.get(VALUE_DROPPED, "0") or 0),
    )
