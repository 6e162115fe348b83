"""Fixtures shared by the benchmarks (``ops/bench``) and the tests: throw-away stacks, synthetic events.

Real servers and real clients only (nothing here fakes Kafka, MongoDB or S3):

- :func:`make_stack`: a private embedded stack on free 127.0.0.1 ports, secure (TLS, per-identity logins) unless
  told ``secure=False``;
- :mod:`ops.testing.clients`: clients of a stack built from its config (TLS and login when it has them);
- :mod:`ops.testing.secure`: identities and probes for the security tests;
- :mod:`ops.testing.publish`: the edge side (a deterministic detection-event stream, broker outages);
- :mod:`ops.testing.warehouse`: the cloud side (recent events for the warehouse, an acks=all producer).
"""

from __future__ import annotations

from pathlib import Path

from ops.stack import Stack, private_settings


def make_stack(data_dir: Path, *, broker_storage: str = "s3", secure: bool = True) -> Stack:
    """A throw-away stack (not started) whose data, logs and state live under ``data_dir``: secure like the
    default embedded stack; ``secure=False`` only where a caller says why."""
    return Stack(settings=private_settings(data_dir, broker_storage=broker_storage, secure=secure))
