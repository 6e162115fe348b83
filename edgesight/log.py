"""Structured logging: one JSON object per line, with agent, camera and component.

Every long-running process calls :func:`setup_logging` once; code then asks for a
logger bound to its component (and, where it applies, its camera)::

    log = get_logger("capture", camera="cam-1")
    log.info("stream opened", extra={"fps": 10.0})

Secrets never reach the output: values of fields whose name says secret
(:func:`is_secret_name`), the password in any URL's userinfo and credential-like
query parameters (``?pwd=``, ``&token=``...) are masked, and strings registered
with :func:`register_secret` are replaced wherever they appear (an exception
text, a line from a library...). Redaction is linear in the text's length; string
fields of a log line are cut to :data:`LOG_VALUE_MAX_CHARS` after redaction.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from .limits import clip

MASK = "***"
MAX_REGISTERED_SECRETS = 256  # each one costs a substring search per redacted string
LOG_VALUE_MAX_CHARS = 8192  # one string field of a log line, after redaction
LOG_EXC_MAX_CHARS = 65536  # a formatted traceback
LOG_TEE_ENV = "EDGESIGHT_LOG_TEE"
_REDACT_MAX_DEPTH = 64  # deeper containers are replaced, never recursed into

# Names (of fields, query parameters) whose values are secret: any name containing a strong word, or
# with a weak word as one of its parts (``rtsp_pass``, ``db-pwd``); ``key``/``sig`` only as query parameters.
_STRONG = re.compile(
    r"pass(word|wd|phrase)|secret|token|credential|(api|private|access)[_-]?key|signature|authorization", re.I
)
_PARTS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_WEAK = frozenset({"pass", "pwd", "pw", "auth"})
_WEAK_QUERY = _WEAK | {"key", "sig"}

# A URL scheme at the start of a word ({0,31}: a bounded scan, so finding them is linear).
_SCHEME = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}://")
_HOST_START = re.compile(r"[A-Za-z0-9\[]")
# A query parameter; in free text its value ends at white space or a quote, in a string that is one URL only at & or #.
_QUERY_TEXT = re.compile(r"(?<=[?&])([A-Za-z0-9_.\-]{1,64})=([^&#\s\"'<>]*)")
_QUERY_URL = re.compile(r"(?<=[?&])([A-Za-z0-9_.\-]{1,64})=([^&#]*)")

_secrets: set[str] = set()
_secrets_order: list[str] = []  # longest first
_secrets_lock = threading.Lock()
_secrets_full_warned = False
_context: dict[str, Any] = {}

# Standard LogRecord attributes; everything else passed in ``extra`` is emitted as a field.
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def is_secret_name(name: str, *, query: bool = False) -> bool:
    """Whether a field (or, with ``query``, a URL query parameter) of this name holds a secret."""
    if _STRONG.search(name):
        return True
    weak = _WEAK_QUERY if query else _WEAK
    return any(part.lower() in weak for part in _PARTS.findall(name))


def register_secret(value: str | None) -> None:
    """Mask this exact string wherever it would be logged (ignored when short/empty). At most
    :data:`MAX_REGISTERED_SECRETS` are kept; past that, a warning (without the value) is logged once."""
    global _secrets_order, _secrets_full_warned
    if not value or len(value) < 3 or value == MASK:
        return
    with _secrets_lock:
        if value in _secrets:
            return
        if len(_secrets) >= MAX_REGISTERED_SECRETS:
            warn, _secrets_full_warned = not _secrets_full_warned, True
        else:
            warn = False
            _secrets.add(value)
            _secrets_order = sorted(_secrets, key=len, reverse=True)
    if warn:
        logging.getLogger(__name__).warning(
            "secret registry full (bound MAX_REGISTERED_SECRETS = %d): later secrets are masked by pattern only",
            MAX_REGISTERED_SECRETS,
        )


def redact(value: Any, key: str | None = None, _depth: int = 0) -> Any:
    """Return ``value`` with secrets masked (recursively for dicts and lists); objects that are not JSON
    scalars or containers become their redacted ``str``."""
    if key is not None and value not in (None, "", False) and is_secret_name(key):
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if _depth >= _REDACT_MAX_DEPTH and isinstance(value, (Mapping, list, tuple, set, frozenset)):
        return f"(nested deeper than {_REDACT_MAX_DEPTH} levels)"
    if isinstance(value, Mapping):
        return {(redact_text(k) if isinstance(k, str) else k): redact(v, str(k), _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact(v, None, _depth + 1) for v in value]
    return redact_text(str(value))


def url_secret_spans(text: str) -> list[tuple[int, int]]:
    """Spans (start, end) of the secrets in ``text``'s URLs: the password of a userinfo (all of a userinfo
    without a ``user:`` part) and the values of credential-like query parameters. Linear in ``len(text)``."""
    spans = _userinfo_spans(text)
    whole = _is_one_url(text)
    for m in (_QUERY_URL if whole else _QUERY_TEXT).finditer(text):
        if m.group(2) and is_secret_name(m.group(1), query=True):
            spans.append(m.span(2))
    return spans


def _is_one_url(text: str) -> bool:
    m = _SCHEME.match(text)
    return m is not None and "\n" not in text


def _userinfo_spans(text: str) -> list[tuple[int, int]]:
    """The userinfo of ``scheme://userinfo@host`` ends at the last ``@`` before a host (or the last ``@`` when
    none is followed by one), so a password may hold ``@``, ``/``, spaces...; a URL's text ends at a line
    break or the next scheme. Each character is looked at a bounded number of times."""
    schemes = [m.span() for m in _SCHEME.finditer(text)]
    spans: list[tuple[int, int]] = []
    for i, (_, start) in enumerate(schemes):
        stop = schemes[i + 1][0] if i + 1 < len(schemes) else len(text)
        newline = text.find("\n", start, stop)
        end = stop if newline < 0 else newline
        last = at = text.rfind("@", start, end)
        while at >= 0 and not _HOST_START.match(text, at + 1, end):
            at = text.rfind("@", start, at)
        if at < 0:  # no host after any '@' ("rtsp://u:pw@"): the last one ends the userinfo
            at = last
        if at <= start:
            continue
        colon = text.find(":", start, at)
        if colon >= 0:
            spans.append((colon + 1, at))
        elif text.find("/", start, at) < 0:  # a user alone (or a token); with a '/', the '@' is in the path
            spans.append((start, at))
    return spans


def redact_text(text: str) -> str:
    """``text`` with registered secrets, URL passwords and credential query values replaced by ``***``."""
    with _secrets_lock:
        secrets = _secrets_order
    for s in secrets:
        if s in text:
            text = text.replace(s, MASK)
    spans = url_secret_spans(text)
    if not spans:
        return text
    out: list[str] = []
    pos = 0
    for a, b in sorted(spans):
        if b <= pos:
            continue
        a = max(a, pos)
        out += [text[pos:a], MASK]
        pos = b
    out.append(text[pos:])
    return "".join(out)


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
        out = redact(doc)
        for k, v in out.items():
            if isinstance(v, str):
                out[k] = clip(v, LOG_EXC_MAX_CHARS if k == "exc" else LOG_VALUE_MAX_CHARS)
        return json.dumps(out, default=str, separators=(",", ":"))


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
    """Configure the root logger for JSON lines on ``stream`` (stderr by default). Idempotent. When the
    environment names a file in ``EDGESIGHT_LOG_TEE``, every line is also appended there (the test suite's
    secrets audit collects the lines of every process it starts that way)."""
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
            h.close()
    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stderr)]
    tee = os.environ.get(LOG_TEE_ENV)
    if tee:
        handlers.append(logging.FileHandler(tee, mode="a", encoding="utf-8", delay=True))
    for handler in handlers:
        handler.setFormatter(JsonFormatter())
        handler._edgesight = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    # Chatty third-party loggers stay at warning.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "kafka", "pymongo"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


_tee_lock = threading.Lock()


def tee_output(source: str, text: str | bytes) -> None:
    """Append what this process showed outside (a status document served, a CLI's printed output) to the
    ``EDGESIGHT_LOG_TEE`` file as one JSON line, when that file is set: the test suite's secrets audit reads
    it with the log lines. A no-op otherwise."""
    tee = os.environ.get(LOG_TEE_ENV)
    if not tee:
        return
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    line = json.dumps({"tee": source, "text": text})
    with _tee_lock, open(tee, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def get_logger(component: str, **fields: Any) -> ContextLogger:
    """Logger for a component; extra keyword fields (camera=..., topic=...) go on every line."""
    return ContextLogger(logging.getLogger(f"edgesight.{component}"), {"component": component, **fields})
