"""Fixtures shared by the benchmarks (``ops/bench``) and the tests: throw-away stacks, synthetic events.

Real servers and real clients only (nothing here fakes Kafka, MongoDB or S3):

- :func:`make_stack`: a private embedded stack on free 127.0.0.1 ports;
- :mod:`ops.testing.publish`: the edge side (a deterministic detection-event stream, broker outages);
- :mod:`ops.testing.warehouse`: the cloud side (recent events for the warehouse, an acks=all producer).
"""

from __future__ import annotations

from pathlib import Path

from ops.stack import Stack, private_settings


def make_stack(data_dir: Path, *, broker_storage: str = "s3") -> Stack:
    """A throw-away stack (not started) whose data, logs and state live under ``data_dir``."""
    return Stack(settings=private_settings(data_dir, broker_storage=broker_storage))
