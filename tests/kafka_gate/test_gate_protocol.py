"""The gate's parsers and error answers against an independent encoder/decoder: kafka-python's protocol classes
(generated from Apache Kafka's JSON message schemas). No server."""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.protocol.admin import configs, groups, topics
from kafka.protocol.consumer import fetch, group, offsets
from kafka.protocol.metadata.metadata import MetadataRequest
from kafka.protocol.producer import produce, transaction

from ops.kafka_gate import proxyproto, refusals
from ops.kafka_gate.acl import acl_document, parse_acl_document, role_acls
from ops.kafka_gate.requests import MAX_VERSION, parse
from ops.kafka_gate.server import cap_api_versions
from ops.kafka_gate.wire import Malformed

NAME = st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=40)
GROUP = st.text(min_size=1, max_size=30).filter(lambda s: "\x00" not in s)
PARTS = st.lists(st.integers(0, 1000), min_size=1, max_size=3)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _make(cls: Any, spec: list[dict[str, Any]], values: dict[str, Any]) -> Any:
    """A kafka-python message (or nested struct) from plain dicts."""
    kw = {}
    for key, val in values.items():
        field = next(f for f in spec if _snake(f["name"]) == key)
        if isinstance(val, list) and val and isinstance(val[0], dict):
            sub = getattr(cls, field["type"][2:])
            val = [_make(sub, field["fields"], v) for v in val]
        kw[key] = val
    return cls(**kw)


def encode(cls: Any, version: int, values: dict[str, Any], correlation_id: int = 42) -> bytes:
    msg = _make(cls, cls.json["fields"], values)
    msg.API_VERSION = version
    msg.with_header(correlation_id=correlation_id, client_id="prop-test")
    return bytes(msg.encode(header=True))


def _topic_parts(
    names: list[str], parts: list[int], name_key: str, part_key: str, **extra: Any
) -> list[dict[str, Any]]:
    return [{name_key: n, "partitions": [{part_key: p, **extra} for p in parts]} for n in names]


# api key -> (request class, body builder(version, topics, groups, parts), expected checks(topics, groups))
Build = Callable[[int, list[str], list[str], list[int]], dict[str, Any]]
Checks = Callable[[int, list[str], list[str]], set[tuple[str, str, str]]]


def _topics_op(op: str) -> Checks:
    return lambda v, ts, gs: {("topic", t, op) for t in ts}


def _group_op(op: str, first_only: bool = True) -> Checks:
    return lambda v, ts, gs: {("group", g, op) for g in (gs[:1] if first_only else gs)}


CASES: dict[int, tuple[Any, Build, Checks]] = {
    0: (
        produce.ProduceRequest,
        lambda v, ts, gs, ps: {
            "acks": -1,
            "timeout_ms": 1000,
            "topic_data": [
                {"name": t, "partition_data": [{"index": p, "records": b"\x01" * 10} for p in ps]} for t in ts
            ],
        },
        _topics_op("Write"),
    ),
    1: (
        fetch.FetchRequest,
        lambda v, ts, gs, ps: {"topics": _topic_parts(ts, ps, "topic", "partition", fetch_offset=7)},
        _topics_op("Read"),
    ),
    2: (
        offsets.ListOffsetsRequest,
        lambda v, ts, gs, ps: {"topics": _topic_parts(ts, ps, "name", "partition_index", timestamp=-1)},
        _topics_op("Describe"),
    ),
    8: (
        group.OffsetCommitRequest,
        lambda v, ts, gs, ps: {
            "group_id": gs[0],
            "topics": _topic_parts(ts, ps, "name", "partition_index", committed_offset=3),
        },
        lambda v, ts, gs: {("group", gs[0], "Read")} | {("topic", t, "Read") for t in ts},
    ),
    9: (
        group.OffsetFetchRequest,
        lambda v, ts, gs, ps: (
            {"group_id": gs[0], "topics": [{"name": t, "partition_indexes": ps} for t in ts]}
            if v < 8
            else {"groups": [{"group_id": g, "topics": [{"name": t, "partition_indexes": ps} for t in ts]} for g in gs]}
        ),
        lambda v, ts, gs: {("group", g, "Describe") for g in (gs if v >= 8 else gs[:1])},
    ),
    11: (
        group.JoinGroupRequest,
        lambda v, ts, gs, ps: {
            "group_id": gs[0],
            "session_timeout_ms": 6000,
            "member_id": "",
            "protocol_type": "consumer",
            "protocols": [{"name": "range", "metadata": b"m"}],
        },
        _group_op("Read"),
    ),
    12: (group.HeartbeatRequest, lambda v, ts, gs, ps: {"group_id": gs[0], "member_id": "m"}, _group_op("Read")),
    13: (group.LeaveGroupRequest, lambda v, ts, gs, ps: {"group_id": gs[0], "member_id": "m"}, _group_op("Read")),
    14: (group.SyncGroupRequest, lambda v, ts, gs, ps: {"group_id": gs[0], "member_id": "m"}, _group_op("Read")),
    15: (groups.DescribeGroupsRequest, lambda v, ts, gs, ps: {"groups": gs}, _group_op("Describe", first_only=False)),
    16: (groups.ListGroupsRequest, lambda v, ts, gs, ps: {}, lambda v, ts, gs: {("group", "*", "Describe")}),
    19: (
        topics.CreateTopicsRequest,
        lambda v, ts, gs, ps: {
            "topics": [
                {"name": t, "num_partitions": 1, "replication_factor": 1, "configs": [{"name": "a", "value": "b"}]}
                for t in ts
            ],
            "timeout_ms": 1000,
        },
        _topics_op("Create"),
    ),
    20: (topics.DeleteTopicsRequest, lambda v, ts, gs, ps: {"topic_names": ts}, _topics_op("Delete")),
    21: (
        topics.DeleteRecordsRequest,
        lambda v, ts, gs, ps: {"topics": _topic_parts(ts, ps, "name", "partition_index", offset=1)},
        _topics_op("Delete"),
    ),
    22: (
        transaction.InitProducerIdRequest,
        lambda v, ts, gs, ps: {"transactional_id": None, "transaction_timeout_ms": 1000},
        lambda v, ts, gs: {("cluster", "", "IdempotentWrite")},
    ),
    32: (
        configs.DescribeConfigsRequest,
        lambda v, ts, gs, ps: {
            "resources": [{"resource_type": 2, "resource_name": t, "configuration_keys": None} for t in ts]
        },
        _topics_op("DescribeConfigs"),
    ),
    37: (
        topics.CreatePartitionsRequest,
        lambda v, ts, gs, ps: {"topics": [{"name": t, "count": 3, "assignments": None} for t in ts], "timeout_ms": 1},
        _topics_op("Alter"),
    ),
    42: (groups.DeleteGroupsRequest, lambda v, ts, gs, ps: {"groups_names": gs}, _group_op("Delete", first_only=False)),
    44: (
        configs.IncrementalAlterConfigsRequest,
        lambda v, ts, gs, ps: {
            "resources": [
                {
                    "resource_type": 2,
                    "resource_name": t,
                    "configs": [{"name": "x", "config_operation": 0, "value": "1"}],
                }
                for t in ts
            ]
        },
        _topics_op("AlterConfigs"),
    ),
    47: (
        group.OffsetDeleteRequest,
        lambda v, ts, gs, ps: {"group_id": gs[0], "topics": _topic_parts(ts, ps, "name", "partition_index")},
        lambda v, ts, gs: {("group", gs[0], "Delete")} | {("topic", t, "Read") for t in ts},
    ),
}


def _response_class(cls: Any) -> Any:
    module = __import__(cls.__module__, fromlist=["_"])
    return getattr(module, cls.__name__.replace("Request", "Response"))


@pytest.mark.parametrize("api_key", sorted(CASES))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), ts=st.lists(NAME, min_size=1, max_size=3), gs=st.lists(GROUP, min_size=1, max_size=3), ps=PARTS)
def test_parser_round_trips_names_and_refusal_decodes(
    api_key: int, data: st.DataObject, ts: list[str], gs: list[str], ps: list[int]
) -> None:
    cls, build, expected = CASES[api_key]
    version = data.draw(st.integers(0, min(MAX_VERSION[api_key], cls.max_version)), label="version")
    frame = encode(cls, version, build(version, ts, gs, ps))
    req = parse(frame)
    assert (req.api_key, req.version, req.correlation_id, req.client_id) == (api_key, version, 42, "prop-test")
    assert set(req.checks) == expected(version, ts, gs)
    if api_key in (0, 1, 2, 8, 21, 47):
        assert req.topics == {t: [p for t2 in ts if t2 == t for p in ps] for t in ts}
    answer = refusals.refusal(req, req.checks)
    if answer is None:
        return  # no synthesized answer: the gate closes the connection
    decoded = _response_class(cls).decode(answer, version=version, header=True, framed=True)
    decoded.with_header(correlation_id=42)
    assert bytes(decoded.encode(header=True, framed=True)) == answer, decoded
    assert (
        str(refusals.TOPIC_AUTHZ) in repr(decoded)
        or str(refusals.GROUP_AUTHZ) in repr(decoded)
        or "31" in repr(decoded)
    )


@pytest.mark.parametrize("version", range(0, 10))
def test_metadata_auto_creation_flag_is_found(version: int) -> None:
    values: dict[str, Any] = {"topics": [{"name": "gt.new"}]}
    if version >= 4:
        values["allow_auto_topic_creation"] = True
    frame = encode(MetadataRequest, version, values)
    req = parse(frame)
    assert req.checks == []
    if version >= 4:
        assert req.create_topics == ["gt.new"]
        assert req.auto_create_at is not None and frame[req.auto_create_at] == 1


def test_init_producer_id_with_transactional_id_needs_write_on_it() -> None:
    frame = encode(transaction.InitProducerIdRequest, 3, {"transactional_id": "tx-1", "transaction_timeout_ms": 1})
    req = parse(frame)
    assert req.checks == [("transactionalId", "tx-1", "Write")]
    assert refusals.TXN_AUTHZ.to_bytes(2, "big") in refusals.refusal(req, req.checks)  # type: ignore[operator]


def test_versions_above_the_parsed_ones_are_refused() -> None:
    frame = encode(fetch.FetchRequest, 13, {"topics": []})
    with pytest.raises(Malformed):
        parse(frame)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_frames_raise_malformed_only(data: bytes) -> None:
    try:
        parse(data)
    except Malformed:
        pass


def test_api_versions_answer_is_capped_and_filtered() -> None:
    from kafka.protocol.metadata.api_versions import ApiVersionsResponse

    keys = [(0, 0, 11), (1, 0, 17), (20, 0, 6), (71, 0, 0), (18, 0, 4)]
    for version in (0, 3):
        values: dict[str, Any] = {
            "error_code": 0,
            "api_keys": [dict(zip(("api_key", "min_version", "max_version"), k)) for k in keys],
        }
        resp = _make(ApiVersionsResponse, ApiVersionsResponse.json["fields"], values)
        resp.API_VERSION = version
        body = bytes(resp.encode())
        out = cap_api_versions(version, body, keep_unparsed=False)
        got = ApiVersionsResponse.decode(out, version=version)
        assert [(k.api_key, k.max_version) for k in got.api_keys] == [(0, 11), (1, 12), (20, 5), (18, 4)]
        full = ApiVersionsResponse.decode(cap_api_versions(version, body, keep_unparsed=True), version=version)
        assert (71, 0) in [(k.api_key, k.max_version) for k in full.api_keys]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_proxy_header_parser_raises_proxy_error_only(data: bytes) -> None:
    head, rest = data[:16], data[16:]
    try:
        n = proxyproto.payload_length(head)
        proxyproto.parse(head, rest[:n])
    except proxyproto.ProxyError:
        pass


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"cn": None}, "without CN"),
        ({"cn": "x", "verify": 1}, "not verified"),
        ({"cn": "x", "client": 0x01}, "no client certificate"),
    ],
)
def test_proxy_header_refusals(kwargs: dict[str, Any], reason: str) -> None:
    raw = proxyproto.encode(**kwargs)
    with pytest.raises(proxyproto.ProxyError, match=reason):
        proxyproto.parse(raw[:16], raw[16 : 16 + proxyproto.payload_length(raw[:16])])


def test_proxy_header_identity() -> None:
    raw = proxyproto.encode("agent-1", peer=("10.1.2.3", 5555))
    info = proxyproto.parse(raw[:16], raw[16:])
    assert (info.cn, info.peer, info.tls_version) == ("agent-1", "10.1.2.3:5555", "TLSv1.3")


def test_acl_semantics() -> None:
    ids = parse_acl_document(
        acl_document(
            role_acls({"a": "agent", "e": "engineering", "o": "ops", "x": "operator"}, prefix="p", connect="c")
        )
    )
    assert "x" not in ids  # operator: no Kafka right, no entry
    a, e, o = ids["a"], ids["e"], ids["o"]
    assert a.allows("topic", "p.detections.v1", "Write") and a.allows("topic", "p.detections.v1", "Describe")
    assert not a.allows("topic", "p.detections.v1", "Read")
    assert not a.allows("topic", "p.dlq.engineering.v1", "Write")
    assert a.allows("cluster", "", "IdempotentWrite") and not a.allows("cluster", "", "All")
    assert e.allows("group", "edgesight-engineering", "Read") and e.allows("group", "edgesight-engineering", "Describe")
    assert not e.allows("group", "edgesight-fleet", "Read")
    assert o.allows("topic", "p.anything", "Delete") and not o.allows("topic", "q.anything", "Describe")  # prefix
    assert o.allows("group", "any-group", "Delete")  # literal * with All
    assert o.allows("cluster", "", "DescribeConfigs") and not o.allows("cluster", "", "AlterConfigs")
