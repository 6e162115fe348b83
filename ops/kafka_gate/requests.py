"""Request headers and, per API, the resources a request touches: ``(resource type, name, operation)``.

Only the fields up to the resource names are read (record batches are skipped by length, never copied).
A body that does not parse for its names raises :class:`~ops.kafka_gate.wire.Malformed`: the gate refuses
it and closes the connection. :data:`MAX_VERSION` is the highest version parsed per API; the gate lowers
the broker's ApiVersions answer to it (Fetch to 12, DeleteTopics to 5: from 13 and 6 they name topics by
id), and refuses a request above it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .wire import Malformed, Reader

API_NAMES: dict[int, str] = {
    0: "Produce",
    1: "Fetch",
    2: "ListOffsets",
    3: "Metadata",
    8: "OffsetCommit",
    9: "OffsetFetch",
    10: "FindCoordinator",
    11: "JoinGroup",
    12: "Heartbeat",
    13: "LeaveGroup",
    14: "SyncGroup",
    15: "DescribeGroups",
    16: "ListGroups",
    17: "SaslHandshake",
    18: "ApiVersions",
    19: "CreateTopics",
    20: "DeleteTopics",
    21: "DeleteRecords",
    22: "InitProducerId",
    23: "OffsetForLeaderEpoch",
    24: "AddPartitionsToTxn",
    25: "AddOffsetsToTxn",
    26: "EndTxn",
    28: "TxnOffsetCommit",
    32: "DescribeConfigs",
    33: "AlterConfigs",
    36: "SaslAuthenticate",
    37: "CreatePartitions",
    42: "DeleteGroups",
    44: "IncrementalAlterConfigs",
    47: "OffsetDelete",
    60: "DescribeCluster",
}

# First flexible version (compact strings/arrays, tagged fields, request header v2) of each parsed API;
# None: never flexible.
FLEXIBLE_FROM: dict[int, int | None] = {
    0: 9,
    1: 12,
    2: 6,
    3: 9,
    8: 8,
    9: 6,
    10: 3,
    11: 6,
    12: 4,
    13: 4,
    14: 4,
    15: 5,
    16: 3,
    18: 3,
    19: 5,
    20: 4,
    21: 2,
    22: 2,
    32: 4,
    33: 2,
    37: 2,
    42: 2,
    44: 1,
    47: None,
    60: 0,
}

MAX_VERSION: dict[int, int] = {
    0: 11,
    1: 12,
    2: 9,
    3: 12,
    8: 9,
    9: 9,
    10: 6,
    11: 9,
    12: 4,
    13: 5,
    14: 5,
    15: 5,
    16: 5,
    18: 4,
    19: 7,
    20: 5,
    21: 2,
    22: 5,
    32: 4,
    33: 2,
    37: 3,
    42: 2,
    44: 1,
    47: 0,
    60: 1,
}

ALWAYS_ALLOWED = frozenset({3, 10, 18, 60})  # Metadata, FindCoordinator, ApiVersions, DescribeCluster
DENIED = frozenset({17, 36})  # SaslHandshake, SaslAuthenticate: identities come from client certificates

CONFIG_RESOURCE = {2: "topic", 4: "cluster", 8: "cluster"}  # DescribeConfigs/AlterConfigs resource types


def api_name(key: int) -> str:
    return API_NAMES.get(key, f"api{key}")


def is_flexible(key: int, version: int) -> bool:
    first = FLEXIBLE_FROM.get(key)
    return first is not None and version >= first


Check = tuple[str, str, str]  # (resource type, name, operation)


@dataclass
class Request:
    """A parsed request: header, the checks to pass, and what a refusal answer needs."""

    api_key: int
    version: int
    correlation_id: int
    client_id: str | None
    body: int  # offset of the body in the frame
    checks: list[Check] = field(default_factory=list)
    topics: dict[str, list[int]] = field(default_factory=dict)  # topic -> partitions (Produce, Fetch, ...)
    groups: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # CreateTopics / DeleteTopics
    acks: int = -1
    transactional_id: str | None = None
    auto_create_at: int | None = None  # Metadata: offset of allow_auto_topic_creation
    create_topics: list[str] = field(default_factory=list)  # Metadata: topics auto-creation would make

    @property
    def name(self) -> str:
        return api_name(self.api_key)

    @property
    def flexible(self) -> bool:
        return is_flexible(self.api_key, self.version)


def parse_header(frame: bytes | bytearray | memoryview) -> Request:
    """The request header of ``frame`` (the bytes after the size). Tagged header fields are skipped for the
    APIs whose flexible versions are known; for others the body offset is not needed (they are not parsed)."""
    r = Reader(frame)
    api_key, version, corr = r.int16(), r.int16(), r.int32()
    client_id = r.nullable_string()
    req = Request(api_key, version, corr, client_id, 0)
    if is_flexible(api_key, version):
        r.flexible = True
        r.tags()
    req.body = r.pos
    return req


def parse(frame: bytes | bytearray | memoryview) -> Request:
    """Header and resources of a request; raises :class:`Malformed` for a body that does not parse and for
    a version above :data:`MAX_VERSION`."""
    req = parse_header(frame)
    parser = _PARSERS.get(req.api_key)
    if parser is None or req.api_key == 18:  # ApiVersions: any version (a broker answers newer ones with v0)
        return req
    if req.version < 0 or req.version > MAX_VERSION[req.api_key]:
        raise Malformed(f"{req.name} v{req.version} not handled (max v{MAX_VERSION[req.api_key]})")
    r = Reader(frame, req.body, flexible=req.flexible)
    parser(req, r)
    return req


_Skip = Callable[[Reader], None]
_Parser = Callable[[Request, Reader], None]


def _topics(req: Request, r: Reader, op: str, partition: _Skip) -> None:
    for _ in range(r.array()):
        name = r.string()
        parts = req.topics.setdefault(name, [])
        for _ in range(r.array()):
            parts.append(r.int32())
            partition(r)
            r.tags()
        r.tags()
        req.checks.append(("topic", name, op))


def _produce(req: Request, r: Reader) -> None:
    v = req.version
    if v >= 3:
        req.transactional_id = r.nullable_string()
    req.acks = r.int16()
    r.int32()  # timeout
    _topics(req, r, "Write", lambda r: r.skip_bytes())
    if req.transactional_id is not None:
        req.checks.append(("transactionalId", req.transactional_id, "Write"))


def _fetch(req: Request, r: Reader) -> None:
    v = req.version
    r.skip(12)  # replica_id, max_wait_ms, min_bytes
    if v >= 3:
        r.skip(4)
    if v >= 4:
        r.skip(1)
    if v >= 7:
        r.skip(8)  # session id and epoch

    def part(r: Reader) -> None:
        r.skip((4 if v >= 9 else 0) + 8 + (4 if v >= 12 else 0) + (8 if v >= 5 else 0) + 4)

    _topics(req, r, "Read", part)


def _list_offsets(req: Request, r: Reader) -> None:
    v = req.version
    r.skip(4)  # replica_id
    if v >= 2:
        r.skip(1)
    _topics(req, r, "Describe", lambda r: r.skip((4 if v >= 4 else 0) + 8 + (4 if v == 0 else 0)))


def _metadata(req: Request, r: Reader) -> None:
    v = req.version
    n = r.array(nullable=v >= 1)
    names = []
    for _ in range(max(n, 0)):
        if v >= 10:
            r.uuid()
            name = r.nullable_string()
        else:
            name = r.string()
        r.tags()
        if name is not None:
            names.append(name)
    if v >= 4:
        req.auto_create_at = r.pos
        if r.int8():
            req.create_topics = names


def _group_first(req: Request, r: Reader, op: str = "Read") -> None:
    group = r.string()
    req.groups.append(group)
    req.checks.append(("group", group, op))


def _offset_commit(req: Request, r: Reader) -> None:
    v = req.version
    _group_first(req, r)
    if v >= 1:
        r.int32()
        r.string()
    if v >= 7:
        r.nullable_string()
    if 2 <= v <= 4:
        r.skip(8)

    def part(r: Reader) -> None:
        r.skip(8 + (4 if v >= 6 else 0) + (8 if v == 1 else 0))
        r.nullable_string()

    _topics(req, r, "Read", part)


def _offset_fetch(req: Request, r: Reader) -> None:
    v = req.version

    def topic_list() -> None:
        n = r.array(nullable=v >= 2)
        for _ in range(max(n, 0)):
            name = r.string()
            req.topics.setdefault(name, []).extend(r.int32() for _ in range(r.array()))
            r.tags()

    if v < 8:
        _group_first(req, r, "Describe")
        topic_list()
    else:
        for _ in range(r.array()):
            _group_first(req, r, "Describe")
            if v >= 9:
                r.nullable_string()
                r.int32()
            topic_list()
            r.tags()


def _group_list(req: Request, r: Reader, op: str) -> None:
    for group in r.string_array() or []:
        req.groups.append(group)
        req.checks.append(("group", group, op))


def _create_topics(req: Request, r: Reader) -> None:
    for _ in range(r.array()):
        name = r.string()
        r.skip(6)  # num_partitions, replication_factor
        for _ in range(r.array()):
            r.int32()
            r.skip(4 * r.array())
            r.tags()
        for _ in range(r.array()):
            r.string()
            r.nullable_string()
            r.tags()
        r.tags()
        req.names.append(name)
        req.checks.append(("topic", name, "Create"))


def _delete_topics(req: Request, r: Reader) -> None:
    for name in r.string_array() or []:
        req.names.append(name)
        req.checks.append(("topic", name, "Delete"))


def _delete_records(req: Request, r: Reader) -> None:
    _topics(req, r, "Delete", lambda r: r.skip(8))  # offset


def _init_producer_id(req: Request, r: Reader) -> None:
    req.transactional_id = r.nullable_string()
    if req.transactional_id is None:
        req.checks.append(("cluster", "", "IdempotentWrite"))
    else:
        req.checks.append(("transactionalId", req.transactional_id, "Write"))


def _configs(op_topic: str, incremental: bool = False) -> _Parser:
    def parse(req: Request, r: Reader) -> None:
        for _ in range(r.array()):
            rtype = r.int8()
            name = r.string()
            kind = CONFIG_RESOURCE.get(rtype)
            if kind is None:
                raise Malformed(f"config resource type {rtype}")
            if op_topic == "DescribeConfigs":
                r.string_array(nullable=True)
            else:
                for _ in range(r.array()):
                    r.string()
                    if incremental:
                        r.int8()
                    r.nullable_string()
                    r.tags()
            r.tags()
            req.checks.append((kind, name if kind == "topic" else "", op_topic))

    return parse


def _create_partitions(req: Request, r: Reader) -> None:
    for _ in range(r.array()):
        name = r.string()
        r.int32()
        for _ in range(max(r.array(nullable=True), 0)):
            r.skip(4 * r.array())
            r.tags()
        r.tags()
        req.checks.append(("topic", name, "Alter"))


def _offset_delete(req: Request, r: Reader) -> None:
    _group_first(req, r, "Delete")
    _topics(req, r, "Read", lambda r: None)


_PARSERS: dict[int, _Parser] = {
    0: _produce,
    1: _fetch,
    2: _list_offsets,
    3: _metadata,
    8: _offset_commit,
    9: _offset_fetch,
    11: lambda req, r: _group_first(req, r),
    12: lambda req, r: _group_first(req, r),
    13: lambda req, r: _group_first(req, r),
    14: lambda req, r: _group_first(req, r),
    15: lambda req, r: _group_list(req, r, "Describe"),
    19: _create_topics,
    20: _delete_topics,
    21: _delete_records,
    22: _init_producer_id,
    32: _configs("DescribeConfigs"),
    33: _configs("AlterConfigs"),
    37: _create_partitions,
    42: lambda req, r: _group_list(req, r, "Delete"),
    44: _configs("AlterConfigs", incremental=True),
    47: _offset_delete,
    10: lambda req, r: None,  # no resource checked (as ALWAYS_ALLOWED)
    16: lambda req, r: req.checks.append(("group", "*", "Describe")),  # lists every group
    18: lambda req, r: None,
    60: lambda req, r: None,
}
