"""The MongoDB warehouse: collections, indexes, retention and a query library.

See :mod:`cloud.warehouse.schema` (collections, indexes, TTL, time-series detection),
:mod:`cloud.warehouse.store` (queries, keyframe URLs, delete, export) and
:mod:`cloud.warehouse.perf` (IOPS and size-limit probes).
"""

from .config import RetentionConfig, WarehouseConfig
from .schema import Names, detect_timeseries, init_warehouse, set_retention, ttl_index
from .store import Query, Warehouse

__all__ = [
    "Names",
    "Query",
    "RetentionConfig",
    "Warehouse",
    "WarehouseConfig",
    "detect_timeseries",
    "init_warehouse",
    "set_retention",
    "ttl_index",
]
