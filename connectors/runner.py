"""``cloud-ops connectors run``: the connector files executed in Python on one machine.

Each connector becomes ``tasks.max`` tasks (threads), each a Kafka consumer in the group
``connect-<connector name>`` (Kafka Connect's own naming), so several runner processes
share the partitions. Each task is the cloud consumer loop (:mod:`cloud.stream`) running the
connector's handler (:mod:`connectors.tasks`). Per batch: convert -> validate with the wire
contract -> transforms -> sink write (MongoDB bulk upserts / S3 puts) -> dead-letter the failures
-> wait for the DLQ acks -> commit offsets (``enable.auto.commit=false``). A crash replays at most
the uncommitted batch; upserts by ``_id`` and deterministic S3 keys make that harmless.

See connectors/README.md for the implemented subset; anything else is refused at start.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from cloud.config import CloudConfig
from cloud.stream import Handler, safe_text
from edgesight.kafka import TopicSpec
from edgesight.log import get_logger

from .options import MONGO_SINK, RunnerConfigError, check_options, unsupported_by_runner
from .spec import ConnectorSpec
from .tasks import ConnectorTask, MongoSinkHandler, S3SinkHandler, topics_of


def validate_for_runner(spec: ConnectorSpec) -> None:
    problems = check_options(spec.config)
    problems += unsupported_by_runner(spec.config)
    for k, v in spec.config.items():
        if "${" in v:
            problems.append(f"{k}: config-provider reference {v!r} cannot be resolved by the Python runner")
    if problems:
        raise RunnerConfigError(f"connector {spec.name!r} ({spec.source}):\n  - " + "\n  - ".join(problems))


class ConnectorRunner:
    """Runs connector specs as threads of tasks; :meth:`stop` flushes, commits and returns."""

    def __init__(
        self,
        specs: list[ConnectorSpec],
        cloud: CloudConfig,
        *,
        tasks: int | None = None,
        warehouse: tuple[Any, str, str] | None = None,
        index_keyframes: bool = True,
        idle_exit_s: float | None = None,
        topic_specs: list[TopicSpec] | None = None,
        max_poll_records: int = 500,
        index_only: bool = False,
    ):
        self.specs, self.cloud = specs, cloud
        self.stop_event = threading.Event()
        self.log = get_logger("connector-runner")
        for s in specs:
            validate_for_runner(s)
        self.tasks: list[ConnectorTask] = []
        for s in specs:
            for i in range(tasks or int(s.config.get("tasks.max", "1"))):
                handler: Handler
                group_id = None
                if s.connector_class == MONGO_SINK:
                    handler = MongoSinkHandler(s, i)
                else:
                    handler = S3SinkHandler(
                        s,
                        index_keyframes=index_keyframes,
                        warehouse=warehouse,
                        index_only=index_only,
                        ca_file=cloud.s3.ca_file,
                    )
                    if index_only:  # next to Kafka Connect's own S3 sink, in a group of its own
                        group_id = f"edgesight-keyframe-indexer-{s.name}"
                self.tasks.append(
                    ConnectorTask(
                        s,
                        cloud,
                        i,
                        handler,
                        self.stop_event,
                        group_id=group_id,
                        idle_exit_s=idle_exit_s,
                        max_poll_records=max_poll_records,
                    )
                )
        self.topic_specs = topic_specs
        self.threads: list[threading.Thread] = []

    def wanted_topics(self) -> list[TopicSpec]:
        """The topics the connectors read and dead-letter to: their spec from ``topic_specs`` (topics.yaml)
        where there is one, else a DLQ of 1 partition with the connector's DLQ replication factor, or 3x3."""
        known = {t.name: t for t in (self.topic_specs or [])}
        wanted: dict[str, TopicSpec] = {}
        for s in self.specs:
            for t in topics_of(s.config):
                wanted[t] = known.get(t, TopicSpec(t, 3, 3))
            dlq = s.config.get("errors.deadletterqueue.topic.name")
            if dlq:
                rf = int(s.config.get("errors.deadletterqueue.topic.replication.factor", "3"))
                wanted[dlq] = known.get(dlq, TopicSpec(dlq, 1, rf))
        return list(wanted.values())

    def start(self) -> None:
        for t in self.tasks:
            th = threading.Thread(target=t.run, name=f"{t.name}-{t.task_id}", daemon=True)
            th.start()
            self.threads.append(th)

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for th in self.threads:
            th.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(th.is_alive() for th in self.threads)

    def stop(self, timeout: float = 60.0) -> bool:
        self.stop_event.set()
        return self.wait(timeout)

    def running(self) -> bool:
        """Every task's loop is running (for /healthz)."""
        return bool(self.tasks) and all(t.loop.running for t in self.tasks)

    def errors(self) -> list[str]:
        return [f"{t.name}[{t.task_id}]: {safe_text(t.error, 1000)}" for t in self.tasks if t.error]

    def summary(self) -> list[dict]:
        return [
            {
                "connector": t.name,
                "task": t.task_id,
                **t.stats,
                "partitions": sorted(f"{a}[{b}]" for a, b in t.partitions_seen),
                "error": safe_text(t.error, 1000) if t.error else None,
            }
            for t in self.tasks
        ]
