"""The single message transforms the Python runner implements, on schemaless (dict) values,
with Kafka Connect's semantics for the options listed in connectors/README.md."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from .options import REPLACE_FIELD, TIMESTAMP_CONVERTER, transform_aliases


class TransformError(ValueError):
    """A record the transformation cannot handle (Connect stage TRANSFORMATION)."""

    def __init__(self, smt: str, message: str):
        self.smt = smt
        super().__init__(message)


def _list(v: str | None) -> list[str]:
    return [x.strip() for x in (v or "").split(",") if x.strip()]


class ReplaceField:
    """ReplaceField$Value: ``exclude`` (wins over include), ``include``, ``renames`` (``a:b,c:d``)."""

    cls = REPLACE_FIELD

    def __init__(self, conf: Mapping[str, str]):
        self.exclude = set(_list(conf.get("exclude")))
        self.include = set(_list(conf.get("include")))
        self.renames: dict[str, str] = {}
        for pair in _list(conf.get("renames")):
            old, sep, new = pair.partition(":")
            if not sep or not old or not new:
                raise ValueError(f"renames: expected 'old:new' pairs, got {pair!r}")
            self.renames[old] = new

    def __call__(self, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise TransformError(
                self.cls,
                f"Only Map objects supported in absence of schema for [field replacement], "
                f"found: {type(value).__name__}",
            )
        out = {}
        for k, v in value.items():
            if k in self.exclude or (self.include and k not in self.include):
                continue
            out[self.renames.get(k, k)] = v
        return out


# Java SimpleDateFormat letters the runner understands (the ISO-8601 family).
_JAVA_TOKENS = {
    "yyyy": r"(?P<Y>\d{4})",
    "YYYY": r"(?P<Y>\d{4})",
    "MM": r"(?P<m>\d{2})",
    "dd": r"(?P<d>\d{2})",
    "HH": r"(?P<H>\d{2})",
    "mm": r"(?P<M>\d{2})",
    "ss": r"(?P<S>\d{2})",
}


def _java_pattern_regex(fmt: str) -> re.Pattern[str]:
    """Compile a SimpleDateFormat pattern of the ISO family into a regex.

    Difference from Java, on purpose (documented): a ``.S…`` fraction is optional and of
    any precision, read as a fraction of a second (Java requires it and reads the digits
    as a millisecond *count*, so ``.123456`` would add 123 s)."""
    out, i = "", 0
    while i < len(fmt):
        if fmt[i] == "'":
            j = fmt.index("'", i + 1)
            out += re.escape(fmt[i + 1 : j]) if j > i + 1 else "'"
            i = j + 1
            continue
        for tok, rx in _JAVA_TOKENS.items():
            if fmt.startswith(tok, i):
                out += rx
                i += len(tok)
                break
        else:
            if fmt[i] == "." and fmt.startswith("S", i + 1):
                j = i + 1
                while j < len(fmt) and fmt[j] == "S":
                    j += 1
                out += r"(?:\.(?P<f>\d{1,9}))?"
                i = j
            elif fmt[i] == "X":
                j = i
                while j < len(fmt) and fmt[j] == "X":
                    j += 1
                out += r"(?P<z>Z|[+-]\d{2}(?::?\d{2})?)"
                i = j
            elif fmt[i].isalpha():
                raise ValueError(
                    f"format: pattern letter {fmt[i]!r} is not implemented by the Python runner "
                    f"(implemented: yyyy MM dd HH mm ss .S X and quoted literals)"
                )
            else:
                out += re.escape(fmt[i])
                i += 1
    return re.compile("^" + out + "$")


class TimestampConverter:
    """TimestampConverter$Value with ``target.type=Timestamp``: string (``format``), epoch-millis
    number, or already-a-date field -> timezone-aware UTC datetime (a BSON date in MongoDB)."""

    cls = TIMESTAMP_CONVERTER

    def __init__(self, conf: Mapping[str, str]):
        self.field = conf.get("field", "")
        if conf.get("target.type") != "Timestamp":
            raise ValueError(f"target.type: only 'Timestamp' is implemented, got {conf.get('target.type')!r}")
        self.format = conf.get("format", "")
        self.rx = _java_pattern_regex(self.format) if self.format else None

    def _convert(self, v: Any) -> datetime:
        if isinstance(v, datetime):
            return v
        if isinstance(v, bool):
            raise TransformError(self.cls, "Cannot convert boolean to Timestamp")
        if isinstance(v, (int, float)):
            return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=int(v))
        if isinstance(v, str):
            if self.rx is None:
                raise TransformError(self.cls, "Cannot convert a string timestamp without 'format'")
            m = self.rx.match(v)
            if not m:
                raise TransformError(
                    self.cls, f"Could not parse timestamp: value ({v}) does not match pattern ({self.format})"
                )
            g = m.groupdict()
            frac = g.get("f") or "0"
            tz = timezone.utc
            z = g.get("z")
            if z and z != "Z":
                sign = 1 if z[0] == "+" else -1
                digits = z[1:].replace(":", "")
                tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0)))
            try:
                dt = datetime(
                    int(g["Y"]),
                    int(g.get("m") or 1),
                    int(g.get("d") or 1),
                    int(g.get("H") or 0),
                    int(g.get("M") or 0),
                    int(g.get("S") or 0),
                    int(frac.ljust(6, "0")[:6]),
                    tzinfo=tz,
                )
            except ValueError as e:
                raise TransformError(self.cls, f"Could not parse timestamp {v!r}: {e}") from None
            return dt.astimezone(timezone.utc)
        raise TransformError(self.cls, f"Cannot convert {type(v).__name__} to Timestamp")

    def __call__(self, value: Any) -> Any:
        if value is None:
            return None
        if not self.field:
            return self._convert(value)
        if not isinstance(value, dict):
            raise TransformError(
                self.cls, f"Only Map objects supported in absence of schema, found {type(value).__name__}"
            )
        if self.field not in value or value[self.field] is None:
            return value
        out = dict(value)
        out[self.field] = self._convert(value[self.field])
        return out


_SMTS = {REPLACE_FIELD: ReplaceField, TIMESTAMP_CONVERTER: TimestampConverter}


def build_chain(config: Mapping[str, str]) -> list[tuple[str, Callable[[Any], Any]]]:
    """The configured transforms, in order, as (class name, callable)."""
    chain = []
    for alias in transform_aliases(config):
        cls = config.get(f"transforms.{alias}.type", "")
        prefix = f"transforms.{alias}."
        conf = {k[len(prefix) :]: v for k, v in config.items() if k.startswith(prefix)}
        try:
            chain.append((cls, _SMTS[cls](conf)))
        except KeyError:
            raise ValueError(f"transforms.{alias}.type: {cls!r} is not implemented by the Python runner") from None
        except ValueError as e:
            raise ValueError(f"transforms.{alias}.{e}") from None
    return chain
