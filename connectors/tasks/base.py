"""A connector task: one :class:`~cloud.stream.BatchLoop` (a consumer in the group ``connect-<name>``)
running the connector's handler, with Kafka Connect's ``errors.*`` options as its error policy."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from cloud.config import CloudConfig
from cloud.stream import TP, BatchLoop, ErrorPolicy, Handler, safe_text
from edgesight.log import get_logger
from edgesight.metrics import counter, gauge, histogram

from ..spec import ConnectorSpec

RECORDS_IN = counter("connector_records_in_total", "Records consumed by the connector runner", ["connector"])
RECORDS_OUT = counter(
    "connector_records_out_total", "Records made durable (MongoDB/S3) by the connector runner", ["connector"]
)
DLQ_OUT = counter("connector_dlq_total", "Records sent to the dead-letter topic", ["connector", "stage"])
BATCH_SECONDS = histogram("connector_batch_seconds", "Time to make one batch durable and commit it", ["connector"])
COMMITS = counter("connector_commits_total", "Offset commits", ["connector"])
ASSIGNED = gauge("connector_assigned_partitions", "Partitions assigned to this runner", ["connector", "task"])


class ConnectorMetrics:
    """The ``edgesight_connector_*`` family (connectors/README.md) for one task's loop."""

    def __init__(self, name: str, task_id: int):
        self.name, self.task = name, str(task_id)

    def consumed(self, n: int) -> None:
        RECORDS_IN.labels(self.name).inc(n)

    def written(self, n: int) -> None:
        RECORDS_OUT.labels(self.name).inc(n)

    def dead_lettered(self, stage: str) -> None:
        DLQ_OUT.labels(self.name, stage).inc()

    def batch(self, seconds: float) -> None:
        BATCH_SECONDS.labels(self.name).observe(seconds)

    def committed(self, offsets: Mapping[TP, int]) -> None:
        COMMITS.labels(self.name).inc()

    def assigned(self, n: int) -> None:
        ASSIGNED.labels(self.name, self.task).set(n)

    def error(self, kind: str) -> None:
        pass


def topics_of(config: Mapping[str, str]) -> list[str]:
    return [t.strip() for t in config["topics"].split(",") if t.strip()]


def error_policy(config: Mapping[str, str], task_id: int) -> ErrorPolicy:
    """Kafka Connect's ``errors.*`` options (and the MongoDB sink's ``mongo.errors.tolerance`` for write errors)."""
    tolerance = config.get("errors.tolerance", "none")
    return ErrorPolicy(
        tolerate=tolerance == "all",
        tolerate_writes=config.get("mongo.errors.tolerance", tolerance) == "all",
        dlq_topic=config.get("errors.deadletterqueue.topic.name", ""),
        context_headers=config.get("errors.deadletterqueue.context.headers.enable", "false") == "true",
        log_errors=config.get("errors.log.enable", "false") == "true",
        log_messages=config.get("errors.log.include.messages", "false") == "true",
        task_id=task_id,
    )


class ConnectorTask:
    """One task (thread body :meth:`run`) of a connector; the runner reads ``error`` and ``stats``."""

    def __init__(
        self,
        spec: ConnectorSpec,
        cloud: CloudConfig,
        task_id: int,
        handler: Handler,
        stop: threading.Event,
        *,
        group_id: str | None = None,
        max_poll_records: int = 500,
        poll_timeout_s: float = 0.5,
        idle_exit_s: float | None = None,
    ):
        self.spec, self.name, self.task_id = spec, spec.name, task_id
        self.group_id = group_id or f"connect-{spec.name}"  # Kafka Connect's consumer group for a sink connector
        self.idle_exit_s = idle_exit_s
        self.log = get_logger("connector-runner", connector=self.name, task=task_id)
        self.error: BaseException | None = None
        self.loop = BatchLoop(
            handler,
            cloud.kafka.client_config(),
            topics_of(spec.config),
            group_id=self.group_id,
            client_id=f"{self.name}-{task_id}",
            session_timeout_ms=cloud.kafka.session_timeout_ms,
            policy=error_policy(spec.config, task_id),
            metrics=ConnectorMetrics(self.name, task_id),
            batch_size=max_poll_records,
            batch_timeout_s=poll_timeout_s,
            stop=stop,
            log=self.log,
        )

    def run(self) -> None:
        try:
            self.loop.run(until_idle_s=self.idle_exit_s)
        except BaseException as e:  # noqa: BLE001 - reported by the runner
            self.error = e
            self.log.error("task failed", extra={"error": safe_text(e, 500)})

    @property
    def stats(self) -> dict[str, Any]:
        s = self.loop.stats
        return {
            "records_in": s.records,
            "records_out": s.good,
            "dlq": s.poison,
            "commits": s.commits,
            "batches": s.batches,
            "first_record_at": s.first_record_at,
            "last_commit_at": s.last_commit_at,
        }

    @property
    def timing(self) -> dict[str, float]:
        return self.loop.timing

    @property
    def partitions_seen(self) -> set[TP]:
        return self.loop.stats.partitions_seen
