"""Structured logging: one JSON object per line, with agent, camera and component.

Every long-running process calls :func:`setup_logging` once; code then asks for a
logger bound to its component (and, where it applies, its camera)::

    log = get_logger("capture", camera="cam-1")
    log.info("stream opened", extra={"fps": 10.0})

Secrets never reach the output: values of keys that look like secrets are masked,
and strings registered with :func:`register_secret` are replaced wherever they
appear in a message (an URL with an embedded password, an exception text...).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

_SECRET_KEY = re.compile(r"(pass(word|wd)?|secret|token|api[_-]?key|credential|sasl_password|private[_-]?key)", re.I)
_URL_CREDS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):(?P<pw>[^@/\s]+)@", re.I)
MASK = "***"

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_context: dict[str, Any] = {}

# Standard LogRecord attributes; everything else passed in ``extra`` is emitted as a field.
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def register_secret(value: str | None) -> None:
    """Mask this exact string wherever it would be logged (ignored when short/empty)."""
    if value and len(value) >= 3:
        with _secrets_lock:
            _secrets.add(value)


def redact(value: Any, key: str | None = None) -> Any:
    """Return ``value`` with secrets masked (recursively for dicts and lists)."""
    if key is not None and _SECRET_KEY.search(key) and value not in (None, "", False):
        return MASK
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_text(text: str) -> str:
    text = _URL_CREDS.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", text)
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for s in secrets:
        if s in text:
            text = text.replace(s, MASK)
    return text


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: ts, level, logger, msg, agent, camera, component, extras."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        doc.update(_context)
        for k, v in record.__dict__.items():
            if k not in _RESERVED and not k.startswith("_"):
                doc[k] = v
        doc["msg"] = record.getMessage()
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(redact(doc), default=str, separators=(",", ":"))


class ContextLogger(logging.LoggerAdapter):
    """A logger bound to fields (component, camera, ...) merged into every line."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return msg, kwargs

    def bind(self, **fields: Any) -> ContextLogger:
        merged = dict(self.extra or {})
        merged.update(fields)
        return ContextLogger(self.logger, merged)


def setup_logging(
    level: str | int = "INFO",
    *,
    stream: Any = None,
    agent: str | None = None,
    service: str | None = None,
    secrets: Iterable[str | None] = (),
) -> None:
    """Configure the root logger for JSON lines on ``stream`` (stderr by default). Idempotent."""
    if agent:
        _context["agent"] = agent
    if service:
        _context["service"] = service
    for s in secrets:
        register_secret(s)
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_edgesight", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._edgesight = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    # Chatty third-party loggers stay at warning.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "kafka", "pymongo"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(component: str, **fields: Any) -> ContextLogger:
    """Logger for a component; extra keyword fields (camera=..., topic=...) go on every line."""
    return ContextLogger(logging.getLogger(f"edgesight.{component}"), {"component": component, **fields})
