"""Bounds on untrusted input, and a JSON parser that enforces them.

Every input boundary (MQTT command payloads, Kafka records and headers, HTTP
requests, config files) has a bound in size and depth, named here. Past a bound
the input is refused with :class:`BoundExceeded`, whose message names the bound
and its value; nothing else is affected. :func:`loads_bounded` is the one place
JSON from outside is parsed: its cost is linear in the input and it never raises
``RecursionError`` or the interpreter's big-integer ``ValueError``.

:func:`clip` shortens input echoed into errors, acks and logs.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any, Final

# ---- the bounds ------------------------------------------------------------------------

RECORD_MAX_BYTES: Final = 1_048_576
"""A JSON record read from Kafka (detection event, status); the broker's default message.max.bytes."""
COMMAND_MAX_BYTES: Final = 65_536
"""A control command's MQTT payload."""
HEADER_MAX_BYTES: Final = 4_096
"""One Kafka header value (keyframe metadata)."""
HEADERS_MAX_COUNT: Final = 64
"""Headers on one Kafka record."""
JSON_MAX_DEPTH: Final = 32
"""Nesting of JSON arrays and objects."""
MAX_INT_DIGITS: Final = 32
"""Digits of a JSON integer (a 64-bit integer has at most 20)."""
MAX_FLOAT_CHARS: Final = 64
"""Characters of a JSON number with a fraction or exponent."""
ECHO_MAX_CHARS: Final = 200
"""Characters of input echoed into an error, an ack or a log line; the rest is cut."""
CONFIG_MAX_BYTES: Final = 1_048_576
"""A YAML configuration file."""
CONFIG_MAX_ALIASES: Final = 100
"""YAML alias references (``*name``) in one configuration file."""
CONFIG_MAX_DEPTH: Final = 32
"""Nesting of mappings and sequences in a configuration file."""
CONFIG_MAX_NODES: Final = 100_000
"""Values in a configuration once its aliases are expanded (a "billion laughs" file is small)."""


class InputError(ValueError):
    """Input that cannot be accepted: not UTF-8, not valid JSON, or past a bound. ``path`` names the value at
    fault inside the document (``fps``, ``camera.zones[0].polygon``) when there is one, else ``None``."""

    path: str | None = None

    def at(self, path: str | None) -> InputError:
        self.path = path or None
        return self


class BoundExceeded(InputError):
    """Input past a named bound; ``bound`` is the bound's name, ``limit`` its value."""

    def __init__(self, bound: str, limit: int, message: str):
        self.bound, self.limit = bound, limit
        super().__init__(f"{message} (bound {bound} = {limit})")


# ---- echoing input ---------------------------------------------------------------------


def clip(text: str, n: int = ECHO_MAX_CHARS) -> str:
    """``text`` cut to ``n`` characters, with a marker that gives the original length."""
    if len(text) <= n:
        return text
    return f"{text[:n]}...[{len(text)} chars, cut to {n}]"


# ---- bounded JSON ----------------------------------------------------------------------

# A JSON string, or what is left of one when the input ends inside it. It always matches at a
# quote, so a search never rescans from a later quote: the strip below is linear.
_STRING = re.compile(r'"(?:[^"\\]+|\\[\s\S]?)*"?')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DELTA = {"[": 1, "{": 1, "]": -1, "}": -1}
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def json_depth(text: str) -> int:
    """Deepest nesting of arrays/objects in ``text`` (brackets inside strings do not count); linear."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_DELTA.__getitem__, brackets)), default=0)


class _Refused:
    """Stands in the parsed tree for a number the hooks refused, so the error can name where it is."""

    __slots__ = ("error",)

    def __init__(self, error: InputError):
        self.error = error


def _number_hooks(max_digits: int) -> tuple[Any, Any, Any, list[_Refused]]:
    """json.loads hooks that put a :class:`_Refused` in place of a number past a bound; the list collects
    them, so a document without one is not walked again."""
    refused: list[_Refused] = []

    def refuse(error: InputError) -> _Refused:
        refused.append(_Refused(error))
        return refused[-1]

    def parse_int(s: str) -> Any:
        digits = len(s) - s.startswith("-")
        if digits > max_digits:
            return refuse(BoundExceeded("max_int_digits", max_digits, f"integer with {digits} digits"))
        return int(s)

    def parse_float(s: str) -> Any:
        if len(s) > MAX_FLOAT_CHARS:
            return refuse(BoundExceeded("MAX_FLOAT_CHARS", MAX_FLOAT_CHARS, f"number of {len(s)} characters"))
        v = float(s)
        if not math.isfinite(v):
            return refuse(InputError(f"number {clip(s, 40)} is out of range (not a finite 64-bit float)"))
        return v

    def parse_constant(s: str) -> Any:
        return refuse(InputError(f"{s} is not a JSON number (JSON has no NaN or Infinity; send a finite number)"))

    return parse_int, parse_float, parse_constant, refused


PATH_MAX_PARTS: Final = 8
"""Keys and indexes of a path named in an error; deeper ones are summarised."""


def _path(parts: list[str | int]) -> str:
    out = ""
    for p in parts[:PATH_MAX_PARTS]:
        out += f"[{p}]" if isinstance(p, int) else ("." if out else "") + clip(p, 64)
    if len(parts) > PATH_MAX_PARTS:
        out += f"...({len(parts) - PATH_MAX_PARTS} levels more)"
    return out


def _first_refused(obj: Any) -> InputError | None:
    """The first refused number in document order, with its path; iterative (no recursion)."""
    stack: list[tuple[Any, list[str | int]]] = [(obj, [])]
    while stack:
        v, where = stack.pop()
        if isinstance(v, _Refused):
            return v.error.at(_path(where))
        if isinstance(v, dict):
            stack.extend((item, [*where, k]) for k, item in reversed(v.items()))
        elif isinstance(v, list):
            stack.extend((item, [*where, i]) for i, item in reversed(list(enumerate(v))))
    return None


_TOKEN = re.compile(r'"(?:[^"\\]+|\\[\s\S]?)*"?|[\[\]{}:,]|[^\[\]{}:,"]+')


def _deep_path(text: str, max_depth: int) -> str:
    """Where ``text`` first nests deeper than ``max_depth``: the path of keys and indexes leading there. One
    linear pass over the tokens; it stops at the first level past the bound."""
    frames: list[list[Any]] = []  # [key or index, expecting a key (objects only)]
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if tok in "[{":
            if len(frames) >= max_depth:
                break
            frames.append([0, False] if tok == "[" else [None, True])
        elif tok in "]}":
            if frames:
                frames.pop()
        elif not frames:
            continue
        elif tok == ",":
            top = frames[-1]
            if isinstance(top[0], int) and not top[1]:
                top[0] += 1
            else:
                top[1] = True
        elif tok == ":":
            frames[-1][1] = False
        elif tok.startswith('"') and frames[-1][1]:
            try:
                frames[-1][0] = json.loads(tok) if tok.endswith('"') and len(tok) > 1 else tok[1:]
            except ValueError:
                frames[-1][0] = tok[1:-1]
    return _path([f[0] for f in frames if f[0] is not None])


def _has_lone_surrogate(obj: Any) -> bool:
    stack = [obj]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


def loads_bounded(
    data: bytes | bytearray | str,
    *,
    max_bytes: int,
    max_depth: int = JSON_MAX_DEPTH,
    max_int_digits: int = MAX_INT_DIGITS,
) -> Any:
    """Parse JSON from outside. Raises :class:`BoundExceeded` past a bound (size in UTF-8 bytes,
    nesting depth, integer digits, number length) and :class:`InputError` for input that is not
    UTF-8, not JSON, holds NaN/Infinity or a number out of range, or escapes an unpaired surrogate.
    """
    if isinstance(data, (bytes, bytearray)):
        if len(data) > max_bytes:
            raise BoundExceeded("max_bytes", max_bytes, f"{len(data)} bytes")
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"not UTF-8: invalid byte at offset {e.start}") from None
    else:
        if len(data) > max_bytes:  # a character is at least one byte
            raise BoundExceeded("max_bytes", max_bytes, f"{len(data)} characters")
        try:
            size = len(data.encode("utf-8"))
        except UnicodeEncodeError as e:
            raise InputError(f"not UTF-8: unpaired surrogate at offset {e.start}") from None
        if size > max_bytes:
            raise BoundExceeded("max_bytes", max_bytes, f"{size} bytes")
        text = data
    depth = json_depth(text)
    if depth > max_depth:
        raise BoundExceeded("max_depth", max_depth, f"JSON nested {depth} levels deep").at(_deep_path(text, max_depth))
    parse_int, parse_float, parse_constant, refused = _number_hooks(max_int_digits)
    try:
        obj = json.loads(text, parse_int=parse_int, parse_float=parse_float, parse_constant=parse_constant)
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON: {e.msg} (char {e.pos})") from None
    if refused:
        raise _first_refused(obj) or refused[0].error
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(obj):
        raise InputError("not UTF-8: a string escapes an unpaired surrogate")
    return obj
