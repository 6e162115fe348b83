"""A consumed record whose headers are read once.

confluent-kafka (2.16.1 here) builds ``Message.headers()`` without checking each name's UTF-8 decode: a
header *name* that is not UTF-8 makes the first call raise, and the message keeps a half-built list, so a
second call returns a tuple holding a NULL and the process dies with a segmentation fault when it is read
(found by ``tests/cloud/test_hostile_records.py``). Worse, the first call returns the list *with the decode
error pending*, which only a checked call turns into an exception: once CPython 3.11 specialises a hot call
site (``msg.headers()`` in a loop), it no longer checks, and the pending error surfaces later and elsewhere.
Every consumer loop therefore wraps what it consumes in :class:`ConsumedMessage`, which calls ``headers()``
once, through :data:`_read_headers` (``operator.methodcaller``: a C-API call, always checked), and gives back
that result (or raises that error) every time after.
"""

from __future__ import annotations

import operator
from typing import Any

_read_headers = operator.methodcaller("headers")


class HeadersUnreadable(ValueError):
    """The record's headers cannot be decoded (a header name that is not UTF-8)."""


class ConsumedMessage:
    """A confluent-kafka ``Message`` with ``headers()`` memoised; every other method is the message's own."""

    __slots__ = ("_msg", "_headers", "_error")

    def __init__(self, msg: Any):
        self._msg = msg
        self._headers: list[tuple[str, bytes | None]] | None = None
        self._error: str | None = None
        try:
            raw = _read_headers(msg)
        except Exception as e:  # noqa: BLE001 - SystemError/UnicodeDecodeError from the client's C code
            self._error = f"headers unreadable: {type(e).__name__}: {str(e)[:200]}"
            return
        self._headers = None if raw is None else list(raw)

    def headers(self) -> list[tuple[str, bytes | None]] | None:
        if self._error is not None:
            raise HeadersUnreadable(self._error)
        return None if self._headers is None else list(self._headers)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._msg, name)
