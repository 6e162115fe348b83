"""Small helpers the benchmarks share."""

from __future__ import annotations

import time
import uuid
from typing import Any


def kafka_settings(kafka: Any, client_id: str = "edgesight-edge") -> dict[str, Any]:
    """An agent's ``publish.kafka`` section from a cloud :class:`~edgesight.kafka.KafkaConfig`: the same broker
    and security settings (TLS, SASL; the secret in clear, for a config object or a 0600 file only)."""
    d: dict[str, Any] = kafka.model_dump(mode="json", exclude_none=True)
    if kafka.sasl_password is not None:
        d["sasl_password"] = kafka.sasl_password.get_secret_value()
    d["client_id"] = client_id
    return d


def broker_round_trip(kafka: Any, samples: int) -> dict[str, Any]:
    """A bare produce -> consume round trip of one detection-event payload through the broker of ``kafka`` (a
    :class:`~edgesight.kafka.KafkaConfig`): acks=all producer, a consumer assigned to a fresh one-partition topic
    (no group join), librdkafka's default fetch settings. p50/p95/p99 over ``samples`` (after one warm-up)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

    from edgesight.kafka import TopicSpec, ensure_topics
    from edgesight.wire import encode_event
    from ops.testing.publish import event_stream

    conf = kafka.client_config()
    topic = f"rtt{uuid.uuid4().hex[:10]}"
    ensure_topics(conf, [TopicSpec(topic, 1)])
    payload = encode_event(next(iter(event_stream("rtt", 1, 1))))
    p = Producer({**conf, "acks": "all", "enable.idempotence": True, "linger.ms": 0})
    c = Consumer({**conf, "group.id": f"{topic}-g", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    times: list[float] = []
    try:
        for i in range(samples + 1):
            key = str(i).encode()
            t0 = time.perf_counter()
            p.produce(topic, key=key, value=payload)
            p.flush(30)
            deadline = time.monotonic() + 30
            while True:
                m = c.poll(1.0)
                if m is not None and m.error() is None and m.key() == key:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"round trip {i}: the record did not come back within 30 s")
            if i:  # the first one warms connections and metadata
                times.append(time.perf_counter() - t0)
    finally:
        c.close()
    times.sort()

    def q(x: float) -> float:
        return times[min(len(times) - 1, int(x * len(times)))]

    return {"samples": len(times), "payload_bytes": len(payload), "p50_s": q(0.5), "p95_s": q(0.95), "p99_s": q(0.99)}


def vtest_agent(
    cloud_config: Any,
    model_dir: Any,
    cameras: int,
    spool_dir: Any,
    *,
    name: str,
    variant: str = "int8",
    providers: tuple[str, ...] = ("cpu",),
    metrics_port: int | None = None,
) -> dict[str, Any]:
    """The agent the suite measures, as a config document: ``cameras`` looping vtest.avi cameras at their native
    10 fps, the detector (persons) on ``providers``, the agent's default tracking and keyframe policy, publishing
    to the broker of ``cloud_config`` under a fresh topic prefix; no control plane; metrics only on
    ``metrics_port``."""
    from edgesight.samples import VTEST

    return {
        "agent_id": f"{name}-{uuid.uuid4().hex[:6]}",
        "cameras": [{"id": f"cam{i}", "url": str(VTEST), "loop": True} for i in range(cameras)],
        "inference": {
            "model_dir": str(model_dir) if model_dir else None,
            "variant": variant,
            "providers": list(providers),
            "classes": ["person"],
        },
        "publish": {
            "kafka": {**kafka_settings(cloud_config.kafka), "topic_prefix": f"{name}{uuid.uuid4().hex[:8]}"},
            "spool": {"dir": str(spool_dir), "max_bytes": "256MiB"},
        },
        "control": {"enabled": False},
        "metrics": {"enabled": True, "host": "127.0.0.1", "port": metrics_port} if metrics_port else {"enabled": False},
    }
