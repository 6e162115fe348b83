"""Prometheus metrics shared by all long-running processes.

Metric objects are created through :func:`counter`, :func:`gauge` and
:func:`histogram`, which return the already-registered collector when a name is
asked for twice (several agents or tests in one interpreter). Every process
serves them with :func:`serve` on its configured port (0 = pick a free one).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_lock = threading.Lock()
_made: dict[str, object] = {}

PREFIX = "edgesight_"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _get(kind: type, name: str, doc: str, labels: Sequence[str], **kw):
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


def serve(port: int, addr: str = "127.0.0.1", registry: CollectorRegistry = REGISTRY) -> int:
    """Serve ``/metrics`` on ``addr:port`` in a daemon thread; returns the bound port."""
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return int(server.server_address[1])
