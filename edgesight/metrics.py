"""Prometheus metrics shared by all long-running processes.

Metric objects are created through :func:`counter`, :func:`gauge` and
:func:`histogram`, which return the already-registered collector when a name is
asked for twice (several agents or tests in one interpreter). Every process
serves them with :func:`serve` on its configured port (0 = pick a free one).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, TypeVar

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

_lock = threading.Lock()
_made: dict[str, object] = {}

_Metric = TypeVar("_Metric", Counter, Gauge, Histogram)

PREFIX = "edgesight_"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _get(kind: type[_Metric], name: str, doc: str, labels: Sequence[str], **kw: Any) -> _Metric:
    full = name if name.startswith(PREFIX) else PREFIX + name
    with _lock:
        m = _made.get(full)
        if m is None:
            m = kind(full, doc, list(labels), registry=REGISTRY, **kw)
            _made[full] = m
        elif not isinstance(m, kind):
            raise ValueError(f"metric {full} already registered as {type(m).__name__}")
        return m


def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
    return _get(Counter, name, doc, labels)


def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
    return _get(Gauge, name, doc, labels)


def histogram(name: str, doc: str, labels: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS) -> Histogram:
    return _get(Histogram, name, doc, labels, buckets=tuple(buckets))
