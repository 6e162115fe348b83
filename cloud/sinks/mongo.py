from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import bson
from pymongo import InsertOne, ReplaceOne
from pymongo.errors import BulkWriteError

from edgesight.limits import clip

from .base import BatchingSink, FlushResult, Item

# MongoDB's hard limit; the server's hello reply says the exact figure (16 MiB + 16 KiB for commands).
DEFAULT_MAX_BSON = 16 * 1024 * 1024


class DocumentTooLarge(ValueError):
    pass


class DocumentNotEncodable(ValueError):
    """A document BSON cannot hold (an integer beyond 64 bits, a string that is not UTF-8, ...)."""


def bson_size(doc: Mapping[str, Any]) -> int:
    """Bytes of ``doc`` as BSON; :class:`DocumentNotEncodable` when it has no BSON form. Only the document is
    at fault, so the error is that record's failure, never a reason to retry the batch."""
    try:
        return len(bson.encode(doc))
    except Exception as e:  # noqa: BLE001 - OverflowError, InvalidDocument, UnicodeEncodeError, RecursionError, ...
        raise DocumentNotEncodable(
            f"the document cannot be stored as BSON: {type(e).__name__}: {clip(str(e))}"
        ) from None


def max_bson_size(client) -> int:
    """The server's document size limit, from its ``hello`` reply (16 MiB on MongoDB)."""
    try:
        return int(client.admin.command("hello").get("maxBsonObjectSize", DEFAULT_MAX_BSON))
    except Exception:  # noqa: BLE001 - a server without hello: assume MongoDB's limit
        return DEFAULT_MAX_BSON


class MongoSink(BatchingSink):
    """Idempotent writes with the MongoDB sink connector's ReplaceOneDefaultStrategy semantics: after a
    flush each ``_id`` holds the *last* document written for it, whether it existed before or not.

    ``mode="replace"``: ``ReplaceOne({_id}, doc, upsert=True)`` per item. ``mode="insert_first"``
    (the default): the same end state, cheaper when most ids are new (the normal case): the batch is
    de-duplicated keeping the last document per ``_id``, inserted with ``insert_many(ordered=False)``,
    and only the ids that already existed (duplicate key, code 11000) are then replaced. ``mode="insert"``:
    plain inserts (duplicates are failures).

    Per-document failures (write errors, documents over the BSON limit) are returned in
    ``FlushResult.failed``; the rest of the batch is written. Any other error (server down) raises:
    nothing is checkpointed and the caller retries or exits."""

    def __init__(self, collection, *, max_batch_size: int = 500, ordered: bool = False, mode: str = "insert_first"):
        super().__init__()
        if mode not in ("insert_first", "replace", "insert"):
            raise ValueError(f"mode must be insert_first, replace or insert, got {mode!r}")
        self.collection = collection
        self.max_batch_size = max(1, max_batch_size) if max_batch_size else 10_000
        self.ordered = ordered
        self.mode = mode
        self.max_bson = max_bson_size(collection.database.client)

    def _write(self, items: list[Item]) -> FlushResult:
        res = FlushResult()
        ok: list[Item] = []
        for it in items:
            try:
                size = bson_size(it.payload)
            except DocumentNotEncodable as e:
                res.failed.append((it, e))
                continue
            if size > self.max_bson:
                res.failed.append(
                    (
                        it,
                        DocumentTooLarge(
                            f"document _id={clip(repr(it.payload.get('_id')))} is {size} bytes, over the server's BSON limit of "
                            f"{self.max_bson} bytes"
                        ),
                    )
                )
            else:
                ok.append(it)
        for i in range(0, len(ok), self.max_batch_size):
            chunk = ok[i : i + self.max_batch_size]
            if self.mode == "insert_first":
                self._insert_first(chunk, res)
            else:
                self._bulk(chunk, res, replace=self.mode == "replace")
        return res

    def _bulk(self, chunk: list[Item], res: FlushResult, *, replace: bool) -> None:
        ops = [
            ReplaceOne({"_id": it.payload["_id"]}, it.payload, upsert=True) if replace else InsertOne(it.payload)
            for it in chunk
        ]
        try:
            r = self.collection.bulk_write(ops, ordered=self.ordered)
            res.written += r.upserted_count + r.matched_count + r.inserted_count
        except BulkWriteError as e:
            details = e.details or {}
            bad = {we["index"]: we for we in details.get("writeErrors", [])}
            for idx, we in sorted(bad.items()):
                res.failed.append(
                    (chunk[idx], RuntimeError(f"MongoDB write error {we.get('code')}: {we.get('errmsg')}"))
                )
            if self.ordered and bad:
                # ordered bulk: everything after the first error was not attempted
                for it in chunk[min(bad) + 1 :]:
                    res.failed.append((it, RuntimeError("not attempted: an earlier write in the ordered bulk failed")))
            res.written += details.get("nUpserted", 0) + details.get("nMatched", 0) + details.get("nInserted", 0)

    def _insert_first(self, chunk: list[Item], res: FlushResult) -> None:
        last: dict = {}
        for it in chunk:
            last[it.payload["_id"]] = it  # the last document per _id wins, as with successive replaces
        uniq = list(last.values())
        res.written += len(chunk) - len(uniq)  # superseded within the batch
        try:
            self.collection.insert_many([it.payload for it in uniq], ordered=False)
            res.written += len(uniq)
            return
        except BulkWriteError as e:
            details = e.details or {}
            dups, other = [], {}
            for we in details.get("writeErrors", []):
                (dups.append(uniq[we["index"]]) if we.get("code") == 11000 else other.__setitem__(we["index"], we))
            for idx, we in sorted(other.items()):
                res.failed.append(
                    (uniq[idx], RuntimeError(f"MongoDB write error {we.get('code')}: {we.get('errmsg')}"))
                )
            res.written += details.get("nInserted", 0)
        if dups:
            self._bulk(dups, res, replace=True)
