"""Settings of the engineering (analytics) consumer and of the fleet registry consumer."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cloud.stream.dlq import DLQ_MAX_OTHER, DLQ_MAX_RECORD_BYTES, DLQ_MAX_VALUE
from edgesight.config import StrictModel


class ConsumerConfig(StrictModel):
    group_id: str = Field(min_length=1, max_length=200)
    batch_size: int = Field(1000, ge=1, le=100000, description="max records per batch (one bulk write + one commit)")
    batch_timeout_s: float = Field(0.5, gt=0, le=60, description="max wait for a batch's first record")
    write_concern: Literal["majority", "1"] = Field(
        "majority",
        description="MongoDB write concern of every write; 'majority' falls back to 1 (logged) "
        "only where the server rejects it",
    )
    write_retries: int = Field(
        5,
        ge=0,
        le=100,
        description="retries of a failed bulk write before the process exits "
        "(offsets stay uncommitted: records are redelivered)",
    )
    metrics_port: int | None = Field(None, ge=0, lt=65536, description="Prometheus /metrics port (0 = any free port)")
    metrics_host: str = Field(
        "127.0.0.1",
        min_length=1,
        max_length=255,
        description="address /metrics, /healthz and /status listen on (0.0.0.0 in a pod, for probes and scraping)",
    )
    session_timeout_ms: int | None = Field(None, ge=1000, le=300000, description="default: kafka.session_timeout_ms")
    dlq_max_value_bytes: int = Field(
        DLQ_MAX_VALUE,
        ge=1,
        le=DLQ_MAX_RECORD_BYTES - DLQ_MAX_OTHER,
        description="a failed record's value larger than this is dropped from its dead letter (the header "
        "edgesight.errors.value.dropped.bytes keeps its size), so every dead letter fits the broker's default "
        "message size",
    )


class EngineeringConfig(ConsumerConfig):
    group_id: str = "edgesight-engineering"
    dlq_name: str = "engineering"
    facts_ttl_days: float = Field(
        14.0,
        ge=0,
        description="facts expire this long after they were written (TTL "
        "index; 0 = keep). Must exceed the detections topic's retention + the edge spool's "
        "longest offline period, so a redelivered event still finds its fact. Aggregates "
        "never shrink when facts expire (n_events guard)",
    )
    cache_max_keys: int = Field(20000, ge=0, description="(camera, minute) and track fact sets kept in memory")


class FleetConfig(ConsumerConfig):
    group_id: str = "edgesight-fleet"
    batch_size: int = Field(500, ge=1, le=100000)
    dlq_name: str = "fleet"
    stale_after_s: float = Field(60.0, gt=0, description="a camera/agent silent longer than this is marked stale")
    sweep_interval_s: float = Field(5.0, gt=0, description="how often the consumer marks silent cameras stale")
