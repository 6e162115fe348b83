"""The MongoDB sink connector's task: JSON -> wire contract -> transforms -> bulk upserts by ``_id``.

Pipelined: the bulk write of batch N runs on a worker thread while batch N+1 is consumed and
validated; batch N's result (and so its dead letters and offset commit) is handed to the loop
before batch N+1's write starts, so commits stay in order and after the data is durable."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from cloud.sinks import FlushResult, Item, MongoSink
from cloud.sinks.mongo import DEFAULT_MAX_BSON
from cloud.stream import TP, BatchLoop, Failure, Handler, WriteResult
from edgesight.wire import WireError, decode_event, parse_json

from ..options import MONGO_SINK
from ..smt import build_chain
from ..spec import ConnectorSpec

JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"
ID_STRATEGY = "com.mongodb.kafka.connect.sink.processor.id.strategy.ProvidedInValueStrategy"
MONGO_MAX_RECORD_BYTES = 2 * DEFAULT_MAX_BSON
"""A record the MongoDB sink parses: larger JSON is refused before parsing (a document must fit in BSON's 16 MiB;
JSON is at most about twice its BSON size)."""


class MongoSinkHandler(Handler):
    def __init__(self, spec: ConnectorSpec, task_id: int):
        self.name, self.c, self.task_id = spec.name, spec.config, task_id
        self._inflight: tuple[Future[FlushResult], dict[TP, int]] | None = None

    def open(self, loop: BatchLoop) -> None:
        from pymongo import MongoClient

        self.loop = loop
        self.client: Any = MongoClient(self.c["connection.uri"], tz_aware=True, serverSelectionTimeoutMS=10000)
        self.sink = MongoSink(
            self.client[self.c["database"]][self.c["collection"]],
            max_batch_size=int(self.c.get("max.batch.size", "0")),
            ordered=self.c.get("bulk.write.ordered", "true") == "true",
        )
        self.chain = build_chain(self.c)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-{self.task_id}-write")

    def accept(self, msg: Any) -> Failure | None:
        value = msg.value()
        if value is None:  # tombstone: delete.on.null.values is false -> ignored, as the connector does
            self.sink.mark(msg.topic(), msg.partition(), msg.offset())
            return None
        doc = self._document(value)
        if isinstance(doc, Failure):
            return doc
        self.sink.add(Item(doc, msg.topic(), msg.partition(), msg.offset(), ctx=msg))
        return None

    def discard(self, msg: Any) -> None:
        self.sink.mark(msg.topic(), msg.partition(), msg.offset())

    def _document(self, value: bytes) -> dict | Failure:
        try:  # bounded: size, depth, integer digits; not UTF-8 / not JSON
            obj = parse_json(value, "detection event", MONGO_MAX_RECORD_BYTES)
        except WireError as e:
            err = ValueError(f"Converting byte[] to Kafka Connect data failed due to serialization error: {e.message}")
            return Failure("VALUE_CONVERTER", JSON_CONVERTER, err)
        if not isinstance(obj, dict):  # JSON, but no document (Connect: a schemaless value that is not a Map)
            err = WireError("detection event", "(message)", f"expected a JSON object, got {type(obj).__name__}")
            return Failure("TASK_PUT", "edgesight.wire.decode_event", err)
        try:
            decode_event(obj)
        except WireError as e:
            return Failure("TASK_PUT", "edgesight.wire.decode_event", e)
        doc = obj
        for cls, fn in self.chain:
            try:
                doc = fn(doc)
            except Exception as e:  # noqa: BLE001 - whatever a transform raises fails this record at its stage
                return Failure("TRANSFORMATION", cls, e)
        if not isinstance(doc, dict) or "_id" not in doc:
            return Failure("TASK_PUT", ID_STRATEGY, ValueError("Provided _id field not found in the value document"))
        return doc

    def write(self, final: bool) -> WriteResult:
        items, checkpoint = self.sink.take()
        res = self._finish()
        if items or checkpoint:
            fut = self._pool.submit(self.loop.retry, lambda: self.sink.write(items))
            self._inflight = (fut, checkpoint)
            if final:
                res = _merge(res, self._finish())
        return res

    def _finish(self) -> WriteResult:
        """The in-flight write's result (waits for it)."""
        if self._inflight is None:
            return WriteResult(checkpoint={})
        fut, checkpoint = self._inflight
        self._inflight = None
        r = fut.result()
        failed = [(it.ctx, Failure("TASK_PUT", MONGO_SINK, exc)) for it, exc in r.failed]
        return WriteResult(written=r.written, failed=failed, checkpoint=checkpoint)

    def revoke(self, tps: set[TP]) -> WriteResult:
        res = self._finish()  # the in-flight batch is made durable and committed before the partitions go
        self.sink.drop_partitions(tps)
        return res

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.client.close()


def _merge(a: WriteResult, b: WriteResult) -> WriteResult:
    cp = dict(a.checkpoint or {})
    for tp, o in (b.checkpoint or {}).items():
        cp[tp] = max(cp.get(tp, 0), o)
    return WriteResult(written=a.written + b.written, failed=a.failed + b.failed, checkpoint=cp)
