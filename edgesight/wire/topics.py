"""Topic names (Kafka) and MQTT topic layout, in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    """Kafka topic names; ``prefix`` lets several deployments share a cluster."""

    prefix: str = "edgesight"

    @property
    def detections(self) -> str:
        return f"{self.prefix}.detections.v1"

    @property
    def keyframes(self) -> str:
        return f"{self.prefix}.keyframes.v1"

    @property
    def status(self) -> str:
        return f"{self.prefix}.status.v1"

    def dlq(self, consumer: str) -> str:
        return f"{self.prefix}.dlq.{consumer}.v1"


def mqtt_topics(agent_id: str, root: str = "edgesight") -> dict[str, str]:
    """MQTT layout: commands in, acks out, retained status (agent and per camera), last will, and the TUI feed
    (per camera: retained preview image, live event batches)."""
    base = f"{root}/{agent_id}"
    return {
        "command": f"{base}/cmd",
        "ack": f"{base}/ack",
        "status": f"{base}/status",  # retained; last-will sets state=offline
        "camera_status": f"{base}/camera/{{camera_id}}/status",  # retained
        "camera_preview": f"{base}/camera/{{camera_id}}/preview",  # retained; edgesight.preview/1
        "camera_events": f"{base}/camera/{{camera_id}}/events",  # not retained; edgesight.events/1
    }
