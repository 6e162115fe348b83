"""Warehouse settings (``--warehouse-config FILE``, YAML; defaults apply without a file)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from edgesight.config import StrictModel, load_config


class RetentionConfig(StrictModel):
    detections_days: float = Field(30.0, gt=0, le=3650, description="TTL of detection documents (on field ts)")
    keyframes_days: float = Field(30.0, gt=0, le=3650, description="TTL of keyframe index documents (on field ts)")


class WarehouseConfig(StrictModel):
    # Tenancy: one database per tenant/deployment is the rule (mongo.warehouse_db; MongoDB grants
    # roles per database). collection_prefix lets several deployments share one database
    # (tests, staging): collections become <prefix>detections, <prefix>keyframes.
    collection_prefix: str = Field("", pattern=r"^([A-Za-z0-9_-]{1,40}[._-])?$")
    retention: RetentionConfig = RetentionConfig()
    # Where detections and keyframe index docs are written by the runner; time-series is
    # detected and reported only (see README: time-series collections cannot upsert by _id).
    export_batch: int = Field(1000, ge=1, le=100000)

    @classmethod
    def load(cls, path: str | Path | None) -> WarehouseConfig:
        return cls() if path is None else load_config(cls, path)
