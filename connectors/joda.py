"""Joda-Time ``path.format`` patterns of the S3 sink's TimeBasedPartitioner, formatted in Python."""

from __future__ import annotations

from datetime import datetime

from .options import RunnerConfigError

_JODA = [("YYYY", "%Y"), ("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S")]


def joda_format(pattern: str, dt: datetime) -> str:
    """Format ``dt`` with a Joda-Time pattern (subset: YYYY yyyy MM dd HH mm ss and 'quoted' literals)."""
    out, i = "", 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "'":
            j = pattern.index("'", i + 1)
            out += pattern[i + 1 : j] if j > i + 1 else "'"
            i = j + 1
            continue
        for tok, st in _JODA:
            if pattern.startswith(tok, i):
                out += dt.strftime(st)
                i += len(tok)
                break
        else:
            if ch.isalpha():
                raise RunnerConfigError(f"path.format: pattern letter {ch!r} is not implemented by the Python runner")
            out += ch
            i += 1
    return out
