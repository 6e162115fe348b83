"""No record stops a cloud consumer (issue #11): streams that mix good records with hostile ones, through
the real broker, MongoDB and S3, into the MongoDB sink task, the S3 sink task and the engineering consumer.

Invariants: every good record lands exactly once, every bad one is dead-lettered exactly once with its
reason in the headers, the loops do not die, and the offsets are committed past everything."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import confluent_kafka
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka import KafkaConsumer, TopicPartition

from cloud.engineering.engineering import build_engineering
from cloud.engineering.fleet import build_fleet
from cloud.engineering.settings import EngineeringConfig, FleetConfig
from cloud.engineering.store import count_facts
from cloud.engineering.synthetic import heartbeat
from cloud.stream import DLQ_MAX_VALUE, BatchLoop, ErrorPolicy, Failure, Handler, TaskFailed, WriteResult
from cloud.stream.dlq import DeadLetterProducer, build_letter
from cloud.warehouse import Names
from connectors.runner import ConnectorRunner
from connectors.spec import load_connector, variables
from edgesight.kafka import ensure_topics
from edgesight.log import get_logger
from edgesight.wire import Topics, dumps, encode_event
from edgesight.wire.deadletter import STAGES, VALUE_DROPPED, parse_headers
from ops.testing.clients import kafka_python
from ops.testing.warehouse import T0, make_event, produce

from . import create_topic, make_keyframe

pytestmark = pytest.mark.timeout(300)

SESSION_MS = 3000  # Tansu completes a group join in about half of it
IDLE_S = 1.5
HYPO = settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---- hostile payloads -------------------------------------------------------------------------------------

BIG = 1_100_000  # over the broker's default message size and over every record bound
EVENT = json.loads(encode_event(make_event(0)))


def _event_with(**fields: Any) -> bytes:
    return json.dumps({**EVENT, **fields}).encode()


FIXED_BAD: list[bytes] = [
    b"[1, 2, 3]",
    b'{"schema": "edgesight.detection/1", "seq": ' + b"9" * 5000 + b"}",
    b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
    _event_with(seq=2**70),  # a valid JSON integer that BSON cannot hold
    _event_with(seq=-1),
    _event_with(schema="s" * 30_000),
    _event_with(label="\ud800"),
    _event_with(extra_field=1),
    json.dumps([EVENT]).encode(),
    encode_event(make_event(0))[:-1] + b'\xff"}',
    b'{"label": "\\ud800"}',
    b"\xff\xfe\x00garbage",
    b"NaN",
    b"",
]
HUGE_BAD: list[bytes] = [b'{"pad": "' + b"x" * BIG + b'"}', b"\x00" * BIG]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=12,
)
hostile_values = st.one_of(
    st.binary(max_size=64),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from(FIXED_BAD),
    st.none(),
)
header_lists = st.one_of(
    st.none(),
    st.lists(st.tuples(st.text(min_size=1, max_size=10), st.binary(max_size=30)), max_size=4),
    st.sampled_from(
        [
            [("h", b"\xff\xfe")],
            [("h", b"x" * 10_000)],
            [(f"h{i}", b"v") for i in range(100)],
        ]
    ),
)


@dataclass
class Rec:
    """One record of a generated stream and what must become of it."""

    good: bool
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None
    ts_ms: int | None = None
    meta: Any = None  # a good keyframe's metadata
    jpeg: bytes = b""

    def record(self) -> tuple:
        return (self.key, self.value, self.headers, self.ts_ms)


@st.composite
def detection_streams(draw: Any) -> list[Rec]:
    n = draw(st.integers(10, 40))
    huge = draw(st.integers(0, 1))  # at most one record over 1 MB per stream (each costs a second)
    out = []
    for i in range(n):
        headers = draw(header_lists)
        if draw(st.booleans()):
            e = make_event(i, camera=f"cam-{i % 3}")
            out.append(Rec(True, e.event_id.encode(), encode_event(e), headers))
        else:
            value = HUGE_BAD[i % 2] if huge and i == n // 2 else draw(hostile_values)
            out.append(Rec(False, draw(st.none() | st.binary(max_size=20)), value, headers))
    return out


HEARTBEAT = json.loads(dumps(heartbeat("agent-0", {"cam-1": "streaming"}, T0)))
STATUS_BAD: list[bytes] = [
    json.dumps({**HEARTBEAT, "spool": {"records": 2**70}}).encode(),  # valid, but no BSON form
    json.dumps({**HEARTBEAT, "cameras": [{**HEARTBEAT["cameras"][0], "frames": 2**70}]}).encode(),
    json.dumps({**HEARTBEAT, "state": "s" * 30_000}).encode(),
    json.dumps({**HEARTBEAT, "cameras": "none"}).encode(),
    json.dumps([HEARTBEAT]).encode(),
]


@st.composite
def status_streams(draw: Any) -> list[Rec]:
    n = draw(st.integers(10, 30))
    out = []
    for i in range(n):
        if draw(st.booleans()):
            hb = heartbeat(f"agent-{i}", {"cam-1": "streaming"}, T0 + timedelta(seconds=i))
            out.append(Rec(True, f"agent-{i}".encode(), dumps(hb), draw(header_lists)))
        else:
            value = draw(hostile_values | st.sampled_from(STATUS_BAD))
            out.append(Rec(False, draw(st.none() | st.binary(max_size=20)), value, draw(header_lists)))
    return out


KEYFRAME_DAMAGE = (
    "non_utf8_header",
    "duplicate_header",
    "oversized_header",
    "many_headers",
    "no_key",
    "random_value",
    "truncated",
    "no_headers",
    "huge_value",
    "random_headers",
    "tombstone",
)


def _damaged_keyframe(i: int, how: str, draw: Any) -> Rec:
    meta, jpeg, key, value, headers = make_keyframe(i)
    ts = int(meta.ts.timestamp() * 1000)
    hdrs = list(headers)
    if how == "non_utf8_header":
        hdrs = [(k, b"\xff\xfe" if k == "camera_id" else v) for k, v in hdrs]
    elif how == "duplicate_header":
        hdrs.append(("seq", b"7"))
    elif how == "oversized_header":
        hdrs = [(k, v + b"x" * 5000 if k == "reason" else v) for k, v in hdrs]
    elif how == "many_headers":
        hdrs += [(f"x{j}", b"1") for j in range(70)]
    elif how == "no_key":
        key = None
    elif how == "random_value":
        value = draw(st.binary(max_size=64))
    elif how == "truncated":
        value = value[:-10]
    elif how == "no_headers":
        hdrs = []
    elif how == "huge_value":
        value = jpeg[:3] + b"\x00" * BIG
    elif how == "random_headers":
        hdrs = draw(st.lists(st.tuples(st.text(min_size=1, max_size=10), st.binary(max_size=30)), max_size=5))
    elif how == "tombstone":
        value = None
    return Rec(False, key, value, hdrs or None, ts)


@st.composite
def keyframe_streams(draw: Any) -> list[Rec]:
    n = draw(st.integers(10, 30))
    out = []
    huge_done = False
    for i in range(n):
        if draw(st.booleans()):
            meta, jpeg, key, value, headers = make_keyframe(i)
            out.append(Rec(True, key, value, headers, int(meta.ts.timestamp() * 1000), meta, jpeg))
        else:
            how = draw(st.sampled_from(KEYFRAME_DAMAGE))
            if how == "huge_value":
                if huge_done:
                    how = "truncated"
                huge_done = True
            out.append(_damaged_keyframe(i, how, draw))
    return out


# ---- running the consumers ---------------------------------------------------------------------------------


@dataclass
class Run:
    cfg: Any
    prefix: str
    topics: Topics
    client: Any
    collection_prefix: str
    analytics_db: str

    @property
    def detections(self) -> Any:
        return self.client[self.cfg.mongo.warehouse_db][Names(self.collection_prefix).detections]

    @property
    def keyframe_index(self) -> Any:
        return self.client[self.cfg.mongo.warehouse_db][Names(self.collection_prefix).keyframes]

    def runner(self, names: tuple[str, ...], **config: str) -> ConnectorRunner:
        v = variables(self.cfg, collection_prefix=self.collection_prefix, name_prefix=f"{self.prefix}-")
        specs = [load_connector(n, v) for n in names]
        for s in specs:
            s.config.update(config)
        r = ConnectorRunner(
            specs,
            self.cfg,
            tasks=1,
            warehouse=(self.client, self.cfg.mongo.warehouse_db, Names(self.collection_prefix).keyframes),
            idle_exit_s=IDLE_S,
        )
        ensure_topics(self.cfg.kafka.client_config(), r.wanted_topics())
        return r

    def analytics_cfg(self) -> Any:
        return self.cfg.model_copy(
            update={"mongo": self.cfg.mongo.model_copy(update={"analytics_db": self.analytics_db})}
        )

    def engineering(self, group: str = "eng") -> Any:
        st_ = EngineeringConfig(group_id=f"{self.prefix}-{group}", session_timeout_ms=SESSION_MS, batch_timeout_s=0.2)
        return build_engineering(self.analytics_cfg(), st_, mongo_client=self.client)

    def fleet(self) -> Any:
        st_ = FleetConfig(group_id=f"{self.prefix}-fleet", session_timeout_ms=SESSION_MS, batch_timeout_s=0.2)
        return build_fleet(self.analytics_cfg(), st_, mongo_client=self.client)

    def group(self, connector: str) -> str:
        return f"connect-{self.prefix}-{connector}"


def new_run(stack: Any) -> Run:
    prefix = f"h{uuid.uuid4().hex[:10]}"
    base = stack.config
    cfg = base.model_copy(
        update={"kafka": base.kafka.model_copy(update={"topic_prefix": prefix, "session_timeout_ms": SESSION_MS})}
    )
    topics = Topics(prefix)
    create_topic(cfg, topics.detections, 1)
    create_topic(cfg, topics.keyframes, 1)
    create_topic(cfg, topics.status, 1)
    return Run(cfg, prefix, topics, cfg.mongo.client(), f"{prefix}_", f"an_{prefix}")


def run_all(r: Run, *, mongo: bool = False, s3: bool = False, engineering: bool = False) -> dict[str, Any]:
    """Run the chosen consumers concurrently until each is idle; returns their stats/errors."""
    out: dict[str, Any] = {}
    names = tuple(n for n, on in (("mongo-sink-detections", mongo), ("s3-sink-keyframes", s3)) if on)
    eng_thread = None
    if engineering:
        loop = r.engineering()

        def eng() -> None:
            try:
                out["engineering"] = loop.run(until_idle_s=IDLE_S, max_seconds=120)
            except BaseException as e:  # noqa: BLE001 - reported to the test
                out["engineering_error"] = e

        eng_thread = threading.Thread(target=eng)
        eng_thread.start()
    if names:
        runner = r.runner(names)
        runner.start()
        assert runner.wait(150), "the connector runner did not go idle"
        out["runner"] = runner
        out["errors"] = runner.errors()
    if eng_thread is not None:
        eng_thread.join(150)
        assert not eng_thread.is_alive(), "the engineering consumer did not go idle"
    return out


def dead_letters(cfg: Any, topic: str) -> list[Any]:
    """Every record of the (1-partition) dead-letter topic, read with kafka-python (an independent client)."""
    kc = KafkaConsumer(
        **kafka_python(cfg.kafka),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1500,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=64 * 1024 * 1024,
    )
    tp = TopicPartition(topic, 0)
    kc.assign([tp])
    kc.seek_to_beginning()
    try:
        return list(kc)
    finally:
        kc.close()


def committed(cfg: Any, group: str, topic: str) -> int:
    c = confluent_kafka.Consumer({**cfg.kafka.client_config(), "group.id": group, "enable.auto.commit": False})
    try:
        return c.committed([confluent_kafka.TopicPartition(topic, 0)], timeout=10)[0].offset
    finally:
        c.close()


def assert_dead_lettered_once(cfg: Any, dlq_topic: str, source: str, recs: list[Rec], expected: set[int]) -> None:
    """The dead-letter topic holds exactly one letter per offset in ``expected``, each with its reason."""
    got = dead_letters(cfg, dlq_topic)
    ctx = [parse_headers(m.headers) for m in got]
    assert all(c is not None for c in ctx), [m.headers for m in got]
    offsets = [c.offset for c in ctx]  # type: ignore[union-attr]
    assert sorted(offsets) == sorted(expected), (sorted(offsets), sorted(expected))
    for m, c in zip(got, ctx):
        assert c is not None and c.topic == source
        assert c.stage in STAGES and c.message and c.exception_class, c
        original = recs[c.offset].value
        if original is not None and len(original) > DLQ_MAX_VALUE:
            assert m.value in (b"", None) and c.value_dropped_bytes == len(original)
            assert dict(m.headers)[VALUE_DROPPED] == str(len(original)).encode()
        else:
            assert m.value == original
        assert len(m.value or b"") + sum(len(k) + len(v or b"") for k, v in m.headers) < 1_000_000


# ---- properties --------------------------------------------------------------------------------------------


@HYPO
@given(stream=detection_streams())
def test_detection_streams_mongo_sink_and_engineering(stack: Any, stream: list[Rec]) -> None:
    r = new_run(stack)
    try:
        produce(r.cfg, r.topics.detections, [x.record() for x in stream])
        out = run_all(r, mongo=True, engineering=True)
        assert out["errors"] == [] and "engineering_error" not in out, out
        good = {json.loads(x.value)["event_id"] for x in stream if x.good}
        # MongoDB sink: each good event once; each bad record (tombstones are ignored) once in its DLQ
        assert r.detections.count_documents({}) == len(good)
        assert {d["_id"] for d in r.detections.find({}, {"_id": 1})} == good
        bad = {i for i, x in enumerate(stream) if not x.good}
        assert_dead_lettered_once(
            r.cfg,
            r.topics.dlq("mongo-sink"),
            r.topics.detections,
            stream,
            {i for i in bad if stream[i].value is not None},
        )
        # engineering: each good event one fact; every bad record (tombstones too) once in its DLQ
        assert out["engineering"].reason == "idle"
        assert count_facts(r.client[r.analytics_db]) == len(good)
        assert_dead_lettered_once(r.cfg, r.topics.dlq("engineering"), r.topics.detections, stream, bad)
        # offsets past everything
        assert committed(r.cfg, r.group("mongo-sink-detections"), r.topics.detections) == len(stream)
        assert committed(r.cfg, f"{r.prefix}-eng", r.topics.detections) == len(stream)
    finally:
        r.client.drop_database(r.analytics_db)
        r.detections.drop()


@HYPO
@given(stream=keyframe_streams())
def test_keyframe_streams_s3_sink(stack: Any, stream: list[Rec]) -> None:
    r = new_run(stack)
    try:
        produce(r.cfg, r.topics.keyframes, [x.record() for x in stream])
        out = run_all(r, s3=True)
        assert out["errors"] == [], out
        s3 = r.cfg.s3.client()
        listed = s3.list_objects_v2(Bucket=r.cfg.s3.keyframe_bucket, Prefix=f"keyframes/{r.topics.keyframes}/")
        objects = {o["Key"] for o in listed.get("Contents", [])}
        good = [(i, x) for i, x in enumerate(stream) if x.good]
        assert len(objects) == len(good)
        assert r.keyframe_index.count_documents({}) == len(good)
        for i, x in good:
            doc = r.keyframe_index.find_one({"_id": x.meta.keyframe_id})
            assert doc is not None and doc["kafka"]["offset"] == i and doc["s3_key"] in objects
            body = s3.get_object(Bucket=r.cfg.s3.keyframe_bucket, Key=doc["s3_key"])["Body"].read()
            assert body == x.jpeg
        bad = {i for i, x in enumerate(stream) if not x.good and x.value is not None}  # tombstones: ignored
        assert_dead_lettered_once(r.cfg, r.topics.dlq("s3-sink"), r.topics.keyframes, stream, bad)
        assert committed(r.cfg, r.group("s3-sink-keyframes"), r.topics.keyframes) == len(stream)
    finally:
        r.keyframe_index.drop()


@HYPO
@given(stream=status_streams())
def test_status_streams_fleet(stack: Any, stream: list[Rec]) -> None:
    r = new_run(stack)
    try:
        produce(r.cfg, r.topics.status, [x.record() for x in stream])
        stats = r.fleet().run(until_idle_s=IDLE_S, max_seconds=120)
        assert stats.reason == "idle"
        good = {f"agent-{i}" for i, x in enumerate(stream) if x.good}
        db = r.client[r.analytics_db]
        assert {d["_id"] for d in db["agents"].find({}, {"_id": 1})} == good
        assert db["cameras"].count_documents({}) == len(good)
        bad = {i for i, x in enumerate(stream) if not x.good}
        assert_dead_lettered_once(r.cfg, r.topics.dlq("fleet"), r.topics.status, stream, bad)
        assert committed(r.cfg, f"{r.prefix}-fleet", r.topics.status) == len(stream)
    finally:
        r.client.drop_database(r.analytics_db)


# ---- one test per row of issue #11's table -----------------------------------------------------------------


def _good(i: int) -> Rec:
    e = make_event(i)
    return Rec(True, e.event_id.encode(), encode_event(e))


@pytest.mark.parametrize(
    "poison",
    [
        pytest.param(b"[1, 2, 3]", id="json-array"),
        pytest.param(b'{"seq": ' + b"7" * 5000 + b"}", id="5000-digit-int"),
        pytest.param(b"[" * 5000 + b"]" * 5000, id="nested-5000"),
        pytest.param(b'{"x": "' + b"y" * (5 * 1024 * 1024) + b'"}', id="5MB-value"),
        pytest.param(_event_with(schema="s" * 30_000), id="30kB-schema"),
    ],
)
def test_poison_between_good_records_mongo_sink_and_engineering(stack: Any, poison: bytes) -> None:
    """The good records around the poison land once, the poison is dead-lettered once, and a second run of
    both consumers (a restart) consumes nothing new and dead-letters nothing again."""
    r = new_run(stack)
    try:
        stream = [_good(0), Rec(False, b"poison", poison), _good(1)]
        produce(r.cfg, r.topics.detections, [x.record() for x in stream])
        for _ in range(2):
            out = run_all(r, mongo=True, engineering=True)
            assert out["errors"] == [] and "engineering_error" not in out, out
            assert r.detections.count_documents({}) == 2
            assert count_facts(r.client[r.analytics_db]) == 2
            for dlq in ("mongo-sink", "engineering"):
                assert_dead_lettered_once(r.cfg, r.topics.dlq(dlq), r.topics.detections, stream, {1})
        second = out["runner"].tasks[0].stats
        assert second["records_in"] == 0 and out["engineering"].records == 0  # nothing redelivered
    finally:
        r.client.drop_database(r.analytics_db)
        r.detections.drop()


def test_keyframe_with_non_utf8_header_after_a_good_one(stack: Any) -> None:
    r = new_run(stack)
    try:
        good = make_keyframe(1)
        stream = [
            Rec(True, good[2], good[3], good[4], int(good[0].ts.timestamp() * 1000), good[0], good[1]),
            _damaged_keyframe(2, "non_utf8_header", None),
        ]
        produce(r.cfg, r.topics.keyframes, [x.record() for x in stream])
        out = run_all(r, s3=True)
        assert out["errors"] == []
        assert r.keyframe_index.count_documents({}) == 1
        assert_dead_lettered_once(r.cfg, r.topics.dlq("s3-sink"), r.topics.keyframes, stream, {1})
        letter = parse_headers(dead_letters(r.cfg, r.topics.dlq("s3-sink"))[0].headers)
        assert letter is not None and "UTF-8" in letter.message and letter.field == "camera_id"
        assert committed(r.cfg, r.group("s3-sink-keyframes"), r.topics.keyframes) == 2
    finally:
        r.keyframe_index.drop()


def test_tolerance_none_stops_at_the_record_after_writing_those_before_it(stack: Any) -> None:
    """``errors.tolerance=none`` (Kafka Connect's contract): the task fails on the poison record with an error
    naming it, after the good record before it was written and committed; a restart stops at the same
    record, and nothing is dead-lettered."""
    r = new_run(stack)
    try:
        stream = [_good(0), Rec(False, b"poison", b"[1, 2, 3]"), _good(1)]
        produce(r.cfg, r.topics.detections, [x.record() for x in stream])
        for attempt in range(2):
            runner = r.runner(("mongo-sink-detections",), **{"errors.tolerance": "none"})
            runner.start()
            assert runner.wait(60)
            err = runner.tasks[0].error
            assert isinstance(err, TaskFailed), (attempt, err)
            assert f"{r.topics.detections}[0]@1" in str(err) and "errors.tolerance=none" in str(err)
            assert r.detections.count_documents({}) == 1
            assert committed(r.cfg, r.group("mongo-sink-detections"), r.topics.detections) == 1
            assert runner.tasks[0].stats["records_out"] == (1 if attempt == 0 else 0)
        assert dead_letters(r.cfg, r.topics.dlq("mongo-sink")) == []
    finally:
        r.detections.drop()


def test_a_dead_letter_the_broker_refuses_is_shrunk_then_skipped_never_looped(stack: Any) -> None:
    """A producer whose limit is below the dead letter (as a broker with a small max.message.bytes would be):
    the dead letter goes out without its value; when even that is refused, the record is logged and skipped,
    and ``flush`` returns (the loop commits and goes on) instead of failing forever."""
    prefix = f"h{uuid.uuid4().hex[:10]}"
    source, topic = f"{prefix}.source", f"{prefix}.dlq"
    create_topic(stack.config, source, 1)
    create_topic(stack.config, topic, 1)
    produce(stack.config, source, [(b"k", b"v" * 200_000, [("h", b"1")])])
    c = confluent_kafka.Consumer(
        {**stack.config.kafka.client_config(), "group.id": prefix, "enable.auto.commit": False}
    )
    c.assign([confluent_kafka.TopicPartition(source, 0, 0)])
    msg = None
    deadline = time.monotonic() + 30
    while msg is None and time.monotonic() < deadline:
        m = c.poll(1.0)
        msg = m if m is not None and m.error() is None else None
    c.close()
    assert msg is not None
    ctx = [("__connect.errors.topic", source.encode()), ("__connect.errors.offset", b"0"), ("x", b"y" * 3000)]
    letter = build_letter(msg, ctx, max_value_bytes=DLQ_MAX_VALUE)
    assert letter.value == b"v" * 200_000  # within the configured bound
    stop = threading.Event()
    log = get_logger("test.dlq")
    small = DeadLetterProducer(
        stack.config.kafka.client_config(), topic, "t", log=log, stop=stop, max_message_bytes=100_000
    )
    small.send(letter)
    small.flush(10)
    assert small.skipped == 0
    tiny = DeadLetterProducer(
        stack.config.kafka.client_config(), topic, "t", log=log, stop=stop, max_message_bytes=1000
    )
    tiny.send(letter)
    tiny.flush(10)
    assert tiny.skipped == 1
    for p in (small, tiny):
        p.close(5)
    got = dead_letters(stack.config, topic)
    assert len(got) == 1 and got[0].value in (b"", None) and got[0].key is None
    assert dict(got[0].headers)[VALUE_DROPPED] == b"200000"


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message")


class _Collecting(Handler):
    """A handler that takes every record but raises, for the ones marked, an exception nobody foresaw."""

    name = "collecting"

    def __init__(self) -> None:
        self.taken: list[bytes] = []
        self._batch: list[bytes] = []

    def accept(self, msg: Any) -> Failure | None:
        value = msg.value() or b""
        if value.startswith(b"key-error"):
            raise KeyError("no such thing")
        if value.startswith(b"recursion"):
            raise RecursionError("maximum recursion depth exceeded")
        if value.startswith(b"unprintable"):
            raise _Unprintable()
        self._batch.append(value)
        return None

    def write(self, final: bool) -> WriteResult:
        batch, self._batch = self._batch, []
        self.taken += batch
        return WriteResult(written=len(batch))


def test_any_exception_a_handler_raises_is_that_records_failure(stack: Any) -> None:
    """The loop's own guarantee, whatever the handler: an exception for one record dead-letters that record
    (with a reason even when the exception cannot be printed), the loop goes on and commits past it."""
    r = new_run(stack)
    topic, dlq = r.topics.detections, r.topics.dlq("collecting")
    create_topic(r.cfg, dlq, 1)
    values = [b"good-0", b"key-error", b"good-1", b"recursion" + b"x" * (2 * 1024 * 1024), b"unprintable", b"good-2"]
    stream = [Rec(v.startswith(b"good"), b"k", v) for v in values]
    produce(r.cfg, topic, [x.record() for x in stream])

    def run() -> tuple[_Collecting, Any]:
        h = _Collecting()
        loop = BatchLoop(
            h,
            r.cfg.kafka.client_config(),
            [topic],
            group_id=f"{r.prefix}-collecting",
            client_id="collecting",
            session_timeout_ms=SESSION_MS,
            policy=ErrorPolicy(dlq_topic=dlq),
            batch_timeout_s=0.2,
        )
        return h, loop.run(until_idle_s=IDLE_S, max_seconds=60)

    h, stats = run()
    assert h.taken == [b"good-0", b"good-1", b"good-2"] and stats.reason == "idle"
    assert_dead_lettered_once(r.cfg, dlq, topic, stream, {1, 3, 4})
    letters = {c.offset: c for c in (parse_headers(m.headers) for m in dead_letters(r.cfg, dlq)) if c}
    assert "KeyError" in letters[1].exception_class and letters[1].stage == "TASK_PUT"
    assert "RecursionError" in letters[3].exception_class and letters[3].value_dropped_bytes == len(values[3])
    assert letters[4].message  # a reason even though str() of the exception fails
    assert committed(r.cfg, f"{r.prefix}-collecting", topic) == len(stream)
    h, stats = run()  # a restart: nothing again, no second dead letter
    assert h.taken == [] and stats.records == 0
    assert len(dead_letters(r.cfg, dlq)) == 3


class _RawName(str):
    """A header name that encodes to bytes that are not UTF-8: kafka-python writes what ``encode`` returns,
    so the record on the broker carries a header name no UTF-8 decoder accepts."""

    def encode(self, *_a: Any, **_k: Any) -> bytes:  # type: ignore[override]
        return b"\xff\xfe-name"


def test_keyframe_with_a_non_utf8_header_name_between_good_ones(stack: Any) -> None:
    """A header *name* that is not UTF-8 (not only a value): the S3 sink dead-letters that record once, the good
    keyframes around it land once, offsets move past it."""
    from kafka import KafkaProducer

    r = new_run(stack)
    try:
        recs = []
        for i in (1, 2, 3):
            meta, jpeg, key, value, headers = make_keyframe(i)
            if i == 2:
                headers = [*headers, (_RawName("x"), b"1")]
            recs.append((key, value, headers))
        p = KafkaProducer(**kafka_python(r.cfg.kafka), acks="all")
        for key, value, headers in recs:
            p.send(r.topics.keyframes, key=key, value=value, headers=headers).get(30)
        p.close()
        stream = [Rec(i != 1, k, v, h) for i, (k, v, h) in enumerate(recs)]
        out = run_all(r, s3=True)
        assert out["errors"] == []
        assert r.keyframe_index.count_documents({}) == 2
        assert_dead_lettered_once(r.cfg, r.topics.dlq("s3-sink"), r.topics.keyframes, stream, {1})
        assert committed(r.cfg, r.group("s3-sink-keyframes"), r.topics.keyframes) == 3
    finally:
        r.keyframe_index.drop()


def _letter_for(stack: Any, prefix: str) -> Any:
    source = f"{prefix}.source"
    create_topic(stack.config, source, 1)
    produce(stack.config, source, [(b"k", b"poison", [("h", b"1")])])
    c = confluent_kafka.Consumer(
        {**stack.config.kafka.client_config(), "group.id": prefix, "enable.auto.commit": False}
    )
    c.assign([confluent_kafka.TopicPartition(source, 0, 0)])
    msg, deadline = None, time.monotonic() + 30
    while msg is None and time.monotonic() < deadline:
        m = c.poll(1.0)
        msg = m if m is not None and m.error() is None else None
    c.close()
    assert msg is not None
    return build_letter(msg, [("__connect.errors.topic", source.encode())], max_value_bytes=DLQ_MAX_VALUE)


def test_dead_letters_wait_out_a_broker_outage_and_land_once(stack: Any) -> None:
    """The broker that takes the dead letters is down: ``flush`` (before the offsets are committed) keeps
    retrying instead of dropping the letter or committing; when the broker returns it lands exactly once."""
    from ops.testing.publish import BrokerControl

    prefix = f"h{uuid.uuid4().hex[:10]}"
    topic = f"{prefix}.dlq"
    create_topic(stack.config, topic, 1)
    letter = _letter_for(stack, prefix)
    dlq = DeadLetterProducer(
        {**stack.config.kafka.client_config(), "message.timeout.ms": 3000},
        topic,
        "t",
        log=get_logger("test.dlq"),
        stop=threading.Event(),
    )
    broker = BrokerControl(stack)
    out: dict[str, Any] = {}
    broker.freeze()
    try:
        dlq.send(letter)
        t = threading.Thread(target=lambda: out.setdefault("r", dlq.flush(timeout=1.0)))
        t.start()
        t.join(8)  # several delivery timeouts and retries while the broker is down
        assert t.is_alive(), "flush returned while the dead letter could not be delivered"
    finally:
        broker.thaw()
    t.join(90)
    assert not t.is_alive() and dlq.skipped == 0
    got = dead_letters(stack.config, topic)
    assert [m.value for m in got] == [b"poison"]


def test_stopping_during_a_dead_letter_outage_raises_and_commits_nothing(stack: Any) -> None:
    """Asked to stop while the dead letters cannot be delivered: ``flush`` raises (the loop then fails the task
    without committing, so a restart re-reads the batch) within its stop bound, instead of hanging."""
    from cloud.stream.dlq import DeadLetterError
    from ops.testing.publish import BrokerControl

    prefix = f"h{uuid.uuid4().hex[:10]}"
    topic = f"{prefix}.dlq"
    create_topic(stack.config, topic, 1)
    letter = _letter_for(stack, prefix)
    stop = threading.Event()
    dlq = DeadLetterProducer(
        {**stack.config.kafka.client_config(), "message.timeout.ms": 3000},
        topic,
        "t",
        log=get_logger("test.dlq"),
        stop=stop,
    )
    broker = BrokerControl(stack)
    broker.freeze()
    try:
        dlq.send(letter)
        threading.Timer(2.0, stop.set).start()
        with pytest.raises(DeadLetterError, match="offsets not committed"):
            dlq.flush(timeout=1.0)
    finally:
        broker.thaw()


def test_many_records_with_unreadable_header_names_never_leak_an_error(stack: Any) -> None:
    """Past a few calls the interpreter specialises a call site and stops checking a C method's result: the
    client's ``headers()`` then returns a half-built list *with an exception pending* (a SystemError later,
    or a crash). :class:`ConsumedMessage` reads the headers through a checked call, once: over many records
    every unreadable one is reported as such and every readable one reads back intact."""
    from kafka import KafkaProducer

    from edgesight.kafka import ConsumedMessage, HeadersUnreadable

    topic = f"h{uuid.uuid4().hex[:10]}.names"
    create_topic(stack.config, topic, 1)
    p = KafkaProducer(**kafka_python(stack.config.kafka), acks="all", linger_ms=5)
    n, bad = 300, set(range(7, 300, 9))
    for i in range(n):
        hdrs = [("i", str(i).encode()), ("a", b"1")]
        if i in bad:
            hdrs.insert(1, (_RawName("x"), b"1"))
        p.send(topic, key=str(i).encode(), value=b"v", headers=hdrs)
    p.flush(30)
    p.close()
    c = confluent_kafka.Consumer({**stack.config.kafka.client_config(), "group.id": topic, "enable.auto.commit": False})
    c.assign([confluent_kafka.TopicPartition(topic, 0, 0)])
    unreadable, readable, deadline = set(), {}, time.monotonic() + 60
    try:
        while len(unreadable) + len(readable) < n and time.monotonic() < deadline:
            for m in c.consume(100, 1.0):
                if m.error() is not None:
                    continue
                cm = ConsumedMessage(m)
                i = int(m.key())
                try:
                    readable[i] = cm.headers()
                except HeadersUnreadable as e:
                    assert "UnicodeDecodeError" in str(e) or "SystemError" in str(e)
                    unreadable.add(i)
    finally:
        c.close()
    assert unreadable == bad
    assert all(h == [("i", str(i).encode()), ("a", b"1")] for i, h in readable.items()) and len(readable) == n - len(
        bad
    )
