"""Kafka error responses for refused requests, encoded for the request's version.

:func:`refusal` answers a refused request the way a broker with ACLs would, so that the client sees an
authorization error at once: Produce and Fetch ``TOPIC_AUTHORIZATION_FAILED`` (29) per partition of each
refused topic, group APIs ``GROUP_AUTHORIZATION_FAILED`` (30), CreateTopics/DeleteTopics 29 per topic,
InitProducerId ``CLUSTER_AUTHORIZATION_FAILED`` (31) or ``TRANSACTIONAL_ID_AUTHORIZATION_FAILED`` (53).
A request is refused whole: where it also names resources the identity may use, those get a retriable
error (Produce: ``NOT_ENOUGH_REPLICAS``, OffsetCommit: ``COORDINATOR_LOAD_IN_PROGRESS``; nothing was
written, the client retries them), an empty fetch (Fetch), or ``INVALID_REQUEST`` (CreateTopics,
DeleteTopics). Other APIs have no synthesized answer: the gate closes the connection.
"""

from __future__ import annotations

from collections.abc import Callable

from .requests import Check, Request, is_flexible
from .wire import Writer

TOPIC_AUTHZ = 29
GROUP_AUTHZ = 30
CLUSTER_AUTHZ = 31
TXN_AUTHZ = 53
NOT_ENOUGH_REPLICAS = 19
COORDINATOR_LOAD_IN_PROGRESS = 14
INVALID_REQUEST = 42

_Builder = Callable[[Request, Writer, set[str], list[Check]], None]

NO_RESPONSE = b""  # the request expects no answer (Produce with acks=0)

_COLLATERAL_MESSAGE = "refused with the other resources of the request"


def frame(req: Request, body: Writer) -> bytes:
    """``size, correlation id[, header tags], body``: response header v1 for flexible versions (ApiVersions
    always answers with header v0)."""
    head = Writer().int32(req.correlation_id)
    if is_flexible(req.api_key, req.version) and req.api_key != 18:
        head.uvarint(0)
    payload = bytes(head.out) + bytes(body.out)
    return len(payload).to_bytes(4, "big") + payload


def refusal(req: Request, denied: list[Check]) -> bytes | None:
    """The error response to ``req`` (``NO_RESPONSE`` when none is expected), or None when the gate has no
    answer for this API and must close the connection."""
    build = _BUILDERS.get(req.api_key)
    if build is None:
        return None
    if req.api_key == 0 and req.acks == 0:
        return NO_RESPONSE
    w = Writer(flexible=is_flexible(req.api_key, req.version))
    build(req, w, {name for kind, name, _ in denied if kind == "topic"}, denied)
    return frame(req, w)


def _per_partition(w: Writer, req: Request, code: Callable[[str], int], rest: Callable[[Writer], object]) -> None:
    """``[topic name, [partition index, error code, rest..., tags], tags]`` for the request's topics."""
    w.array(len(req.topics))
    for name, parts in req.topics.items():
        w.string(name).array(len(parts))
        for p in parts:
            w.int32(p).int16(code(name))
            rest(w)
            w.tags()
        w.tags()


def _produce(req: Request, w: Writer, topics: set[str], denied: list[Check]) -> None:
    v = req.version
    txn = any(kind == "transactionalId" for kind, _, _ in denied)

    def rest(w: Writer) -> None:
        w.int64(-1)  # base_offset
        if v >= 2:
            w.int64(-1)  # log_append_time_ms
        if v >= 5:
            w.int64(-1)  # log_start_offset
        if v >= 8:
            w.array(0).string(None)  # record_errors, error_message

    _per_partition(w, req, lambda t: TXN_AUTHZ if txn else TOPIC_AUTHZ if t in topics else NOT_ENOUGH_REPLICAS, rest)
    if v >= 1:
        w.int32(0)  # throttle_time_ms
    w.tags()


def _fetch(req: Request, w: Writer, topics: set[str], denied: list[Check]) -> None:
    v = req.version
    if v >= 1:
        w.int32(0)
    if v >= 7:
        w.int16(0).int32(0)  # error_code, session_id

    def rest(w: Writer) -> None:
        w.int64(-1)  # high_watermark
        if v >= 4:
            w.int64(-1)  # last_stable_offset
        if v >= 5:
            w.int64(-1)  # log_start_offset
        if v >= 4:
            w.array(-1)  # aborted_transactions: null
        if v >= 11:
            w.int32(-1)  # preferred_read_replica
        w.bytes_(b"")  # records

    _per_partition(w, req, lambda t: TOPIC_AUTHZ if t in topics else 0, rest)
    w.tags()


def _offset_commit(req: Request, w: Writer, topics: set[str], denied: list[Check]) -> None:
    group = any(kind == "group" for kind, _, _ in denied)
    if req.version >= 3:
        w.int32(0)
    retry = COORDINATOR_LOAD_IN_PROGRESS
    _per_partition(w, req, lambda t: GROUP_AUTHZ if group else TOPIC_AUTHZ if t in topics else retry, lambda w: None)
    w.tags()


def _offset_fetch(req: Request, w: Writer, topics: set[str], denied: list[Check]) -> None:
    v = req.version
    if v >= 3:
        w.int32(0)
    if v >= 8:
        w.array(len(req.groups))
        for g in req.groups:
            w.string(g).array(0).int16(GROUP_AUTHZ).tags()
        w.tags()
        return
    w.array(len(req.topics) if v < 2 else 0)  # v0-1 carry the error per partition only
    if v < 2:
        for name, parts in req.topics.items():
            w.string(name).array(len(parts))
            for p in parts:
                w.int32(p).int64(-1).string("").int16(GROUP_AUTHZ)
    else:
        w.int16(GROUP_AUTHZ)
    w.tags()


def _join_group(req: Request, w: Writer, topics: set[str], denied: list[Check]) -> None:
    v = req.version
    if v >= 2:
        w.int32(0)
    w.int16(GROUP_AUTHZ).int32(-1)
    if v >= 7:
        w.string(None).string(None)  # protocol_type, protocol_name
    else:
        w.string("")
    w.string("")  # leader
    if v >= 9:
        w.int8(0)  # skip_assignment
    w.string("").array(0).tags()  # member_id, members


def _simple_group(with_members: int | None = None, sync: bool = False) -> _Builder:
    """Heartbeat, LeaveGroup (members from v3), SyncGroup (protocol fields from v5, assignment)."""

    def build(req: Request, w: Writer, topics: set[str], denied: list[Check]) -> None:
        v = req.version
        if v >= 1:
            w.int32(0)
        w.int16(GROUP_AUTHZ)
        if with_members is not None and v >= with_members:
            w.array(0)
        if sync:
            if v >= 5:
                w.string(None).string(None)
            w.bytes_(b"")
        w.tags()

    return build


def _describe_groups(req: Request, w: Writer, topics: set[str], denied: list[Check]) -> None:
    v = req.version
    if v >= 1:
        w.int32(0)
    w.array(len(req.groups))
    for g in req.groups:
        w.int16(GROUP_AUTHZ).string(g).string("").string("").string("").array(0)
        if v >= 3:
            w.int32(-2147483648)
        w.tags()
    w.tags()


def _delete_groups(req: Request, w: Writer, topics: set[str], denied: list[Check]) -> None:
    w.int32(0).array(len(req.groups))
    for g in req.groups:
        w.string(g).int16(GROUP_AUTHZ).tags()
    w.tags()


def _offset_delete(req: Request, w: Writer, topics: set[str], denied: list[Check]) -> None:
    w.int16(GROUP_AUTHZ).int32(0).array(0)


def _create_topics(req: Request, w: Writer, topics: set[str], denied: list[Check]) -> None:
    v = req.version
    if v >= 2:
        w.int32(0)
    w.array(len(req.names))
    for name in req.names:
        refused = name in topics
        w.string(name)
        if v >= 7:
            w.raw(bytes(16))  # topic_id
        w.int16(TOPIC_AUTHZ if refused else INVALID_REQUEST)
        if v >= 1:
            w.string(None if refused else _COLLATERAL_MESSAGE)
        if v >= 5:
            w.int32(-1).int16(-1)
            w.array(-1)  # configs: null
        w.tags()
    w.tags()


def _delete_topics(req: Request, w: Writer, topics: set[str], denied: list[Check]) -> None:
    v = req.version
    if v >= 1:
        w.int32(0)
    w.array(len(req.names))
    for name in req.names:
        refused = name in topics
        w.string(name).int16(TOPIC_AUTHZ if refused else INVALID_REQUEST)
        if v >= 5:
            w.string(None if refused else _COLLATERAL_MESSAGE)
        w.tags()
    w.tags()


def _init_producer_id(req: Request, w: Writer, topics: set[str], denied: list[Check]) -> None:
    code = TXN_AUTHZ if req.transactional_id is not None else CLUSTER_AUTHZ
    w.int32(0).int16(code).int64(-1).int16(-1).tags()


_BUILDERS: dict[int, _Builder] = {
    0: _produce,
    1: _fetch,
    8: _offset_commit,
    9: _offset_fetch,
    11: _join_group,
    12: _simple_group(),
    13: _simple_group(with_members=3),
    14: _simple_group(sync=True),
    15: _describe_groups,
    19: _create_topics,
    20: _delete_topics,
    22: _init_producer_id,
    42: _delete_groups,
    47: _offset_delete,
}
