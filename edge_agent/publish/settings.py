"""Configuration of the publish stage (the ``publish:`` section of the edge agent config).

Example::

    publish:
      kafka:
        bootstrap_servers: broker-1.example:9093,broker-2.example:9093
        client_id: edge-gate-7
        security_protocol: SASL_SSL
        sasl_mechanism: SCRAM-SHA-512
        sasl_username: edge-gate-7
        sasl_password: ${KAFKA_PASSWORD}
        ssl_ca_location: /etc/edgesight/ca.pem
      topic_prefix: acme          # default: kafka.topic_prefix
      compression: lz4
      linger_ms: 20
      spool:
        dir: /var/lib/edgesight/spool
        max_bytes: 2GiB
      keyframes:
        interval_s: 60
        score_margin: 0.1
        max_bytes: 300000

Sizes accept plain integers or strings with a unit (``512MiB``, ``2GB``).

Compression: ``lz4`` (default) costs the least CPU on the edge box; ``zstd``
roughly halves the bytes again for a metered uplink. Measured here
(``python -m ops.bench.publish_bench``): a batch of detection-event JSON shrinks
10x with lz4 and 19x with zstd; end-to-end publish throughput on the embedded
stack (5.7k-13k events/s on this noisy 2-core box) did not separate the three
codecs beyond run-to-run noise, so the uplink bytes decide.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from edgesight.config import StrictModel
from edgesight.kafka import KafkaConfig
from edgesight.wire import Topics

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.I)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
}

Compression = Literal["lz4", "zstd", "gzip", "snappy", "none"]


def parse_size(v: int | float | str) -> int:
    """``1048576``, ``"1MiB"``, ``"1.5 GB"`` -> bytes."""
    if isinstance(v, bool):
        raise ValueError("expected a size in bytes (e.g. 1048576 or '1MiB')")
    if isinstance(v, (int, float)):
        return int(v)
    m = _SIZE.match(str(v))
    if not m or (m.group(2) or "").lower() not in _UNITS:
        raise ValueError(f"expected a size such as 1048576, '512KiB', '64MiB' or '2GB', got {v!r}")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


class SpoolConfig(StrictModel):
    """The on-disk journal / store-and-forward spool (see :mod:`edge_agent.publish.spool`)."""

    dir: Path = Path("/var/lib/edgesight/spool")
    max_bytes: int = Field(
        1024**3, ge=1024**2, description="bound on not-yet-acknowledged data; oldest dropped beyond it"
    )
    segment_bytes: int = Field(16 * 1024**2, ge=64 * 1024, le=1024**3, description="size at which a segment file rolls")
    # "interval": write() on accept (survives SIGKILL of the agent), fsync every fsync_interval_ms
    # (bounds the loss window on power failure); "always": fsync before publish() returns; "never": OS decides.
    fsync: Literal["interval", "always", "never"] = "interval"
    fsync_interval_ms: int = Field(200, ge=1, le=60000)
    checkpoint_interval_ms: int = Field(200, ge=10, le=60000)

    @field_validator("max_bytes", "segment_bytes", mode="before")
    @classmethod
    def _size(cls, v):
        return parse_size(v)

    @model_validator(mode="after")
    def _segments(self) -> SpoolConfig:
        if self.segment_bytes * 4 > self.max_bytes:
            raise ValueError(
                f"spool.segment_bytes ({self.segment_bytes}) must be at most a quarter of "
                f"spool.max_bytes ({self.max_bytes}) so that dropping the oldest data frees disk"
            )
        return self


class KeyframePolicy(StrictModel):
    """When a keyframe (JPEG) is taken and how big it may be (see :mod:`edge_agent.publish.keyframes`)."""

    enabled: bool = True
    on_track_start: bool = True
    score_margin: float = Field(
        0.10, ge=0.0, le=1.0, description="a track's best score must improve by this much for a new keyframe"
    )
    track_cooldown_s: float = Field(
        2.0, ge=0.0, description="at most one score-improvement keyframe per track per this"
    )
    interval_s: float | None = Field(60.0, gt=0.0, description="periodic keyframe per camera; None = off")
    jpeg_quality: int = Field(85, ge=10, le=100)
    min_jpeg_quality: int = Field(35, ge=5, le=100)
    max_width: int | None = Field(1280, ge=64, le=16384, description="downscale wider frames first; None = keep")
    max_bytes: int = Field(300_000, ge=8_000, le=16 * 1024**2)
    crop: Literal["track", "frame"] = Field(
        "track",
        description="track: a track_start / score_improved keyframe is the crop of that track's box (one JPEG per "
        "track); frame: the whole frame (one JPEG per frame). interval and snapshot keyframes are whole frames",
    )
    crop_margin: float = Field(0.2, ge=0.0, le=2.0, description="added on each side of a box, as a share of its size")
    crop_min_px: int = Field(64, ge=8, le=4096, description="a crop is at least this wide and high (frame allowing)")
    max_crops_per_frame: int = Field(
        4, ge=1, le=64, description="crops encoded per frame; more wait for the camera's next frames (never dropped)"
    )

    @field_validator("max_bytes", mode="before")
    @classmethod
    def _size(cls, v):
        return parse_size(v)

    @model_validator(mode="after")
    def _quality(self) -> KeyframePolicy:
        if self.min_jpeg_quality > self.jpeg_quality:
            raise ValueError(
                f"keyframes.min_jpeg_quality ({self.min_jpeg_quality}) must be <= "
                f"keyframes.jpeg_quality ({self.jpeg_quality})"
            )
        return self


class PublishConfig(StrictModel):
    """Kafka producer, spool and keyframe policy of one edge agent."""

    kafka: KafkaConfig = KafkaConfig(client_id="edgesight-edge")
    topic_prefix: str | None = Field(
        None, pattern=r"^[A-Za-z0-9._-]{1,100}$", description="default: kafka.topic_prefix"
    )
    compression: Compression = "lz4"
    linger_ms: float = Field(20.0, ge=0.0, le=5000.0)
    batch_bytes: int = Field(1024**2, ge=1024, le=64 * 1024**2, description="librdkafka batch.size")
    message_max_bytes: int = Field(
        4 * 1024**2,
        ge=64 * 1024,
        le=100 * 1024**2,
        description="largest record (keyframes); the broker's limit must allow it",
    )
    # The window of records handed to librdkafka and not yet acknowledged. While the broker is down this
    # window fills and further records wait in the on-disk spool instead of in memory.
    max_inflight_records: int = Field(20_000, ge=10, le=1_000_000)
    max_inflight_bytes: int = Field(32 * 1024**2, ge=64 * 1024)
    spool: SpoolConfig = SpoolConfig()
    keyframes: KeyframePolicy = KeyframePolicy()
    extra_producer_config: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="raw librdkafka settings applied last (expert use)"
    )

    @field_validator("batch_bytes", "message_max_bytes", "max_inflight_bytes", mode="before")
    @classmethod
    def _size(cls, v):
        return parse_size(v)

    @field_validator("extra_producer_config")
    @classmethod
    def _guard(cls, v: dict) -> dict:
        locked = {"enable.idempotence", "acks", "message.timeout.ms", "delivery.timeout.ms"}
        bad = sorted(locked & set(v))
        if bad:
            raise ValueError(f"{', '.join(bad)} cannot be overridden: the spool's delivery guarantees depend on them")
        return v

    @model_validator(mode="after")
    def _bounds(self) -> PublishConfig:
        if self.max_inflight_bytes * 4 > self.spool.max_bytes:
            raise ValueError(
                f"spool.max_bytes ({self.spool.max_bytes}) must be at least 4x max_inflight_bytes "
                f"({self.max_inflight_bytes}): records in flight cannot be dropped"
            )
        if self.keyframes.max_bytes + 64 * 1024 > self.message_max_bytes:
            raise ValueError(
                f"keyframes.max_bytes ({self.keyframes.max_bytes}) plus 64 KiB of headers must fit "
                f"in message_max_bytes ({self.message_max_bytes})"
            )
        if self.message_max_bytes > self.max_inflight_bytes:
            raise ValueError(
                f"message_max_bytes ({self.message_max_bytes}) must not exceed max_inflight_bytes "
                f"({self.max_inflight_bytes})"
            )
        return self

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix or self.kafka.topic_prefix)
