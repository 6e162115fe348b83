"""`cloud-ops connectors run` against the real embedded stack: exactly-once into MongoDB, keyframes
in S3 with warehouse pointers, DLQ, crash/restart, two runners in one group, the BSON limit."""

from __future__ import annotations

import json
import threading
import time

import pytest

from cloud.warehouse import Names, Warehouse, WarehouseConfig, init_warehouse
from connectors.runner import ConnectorRunner
from connectors.spec import load_connector, variables
from edgesight.kafka import ensure_topics
from edgesight.wire import KeyframeRef, Topics, encode_event
from edgesight.wire.deadletter import VALUE_DROPPED
from ops.testing.warehouse import make_event, produce

from . import (
    cloud_for_test,
    cloud_yaml,
    create_topic,
    log_lines,
    make_keyframe,
    open_url,
    read_all,
    sha,
    start_runner,
    stop_runner,
    wait_for,
)

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def env(stack, topic_prefix):
    cfg = cloud_for_test(stack.config, topic_prefix)
    wh = WarehouseConfig(collection_prefix=f"{topic_prefix}_")
    client = cfg.mongo.client()
    init_warehouse(client, cfg.mongo.warehouse_db, wh)
    w = Warehouse.from_config(cfg, wh)
    yield cfg, wh, w, Topics(topic_prefix)
    client.close()


def _runner(cfg, wh, names=("mongo-sink-detections",), **kw) -> ConnectorRunner:
    v = variables(cfg, collection_prefix=wh.collection_prefix, name_prefix=f"{cfg.kafka.topic_prefix}-")
    client = cfg.mongo.client()
    r = ConnectorRunner(
        [load_connector(n, v) for n in names],
        cfg,
        tasks=1,
        warehouse=(client, cfg.mongo.warehouse_db, Names(wh.collection_prefix).keyframes),
        **kw,
    )
    ensure_topics(cfg.kafka.client_config(), r.wanted_topics())
    return r


def _run_until(r: ConnectorRunner, pred, what: str, timeout_s: float = 90):
    r.start()
    try:
        wait_for(lambda: pred() or (r.errors() and AssertionError(r.errors())), timeout_s, what)
    finally:
        assert r.stop(60), "runner did not stop"
    assert r.errors() == []


def _events(n, **kw):
    return [make_event(i, **kw) for i in range(n)]


def test_exactly_once_resend_and_dlq(env):
    cfg, wh, w, topics = env
    create_topic(cfg, topics.detections, 3)
    evs = _events(400, zones=["door"])
    batch = [(e.event_id.encode(), encode_event(e), None) for e in evs]
    bad_json = (b"bad-1", b'{"schema": "edgesight.detection/1", "event_id": ', None)
    bad_schema = (b"bad-2", encode_event(evs[0]).replace(b'"label":"person"', b'"label":""'), None)
    produce(cfg, topics.detections, batch + [bad_json, bad_schema])

    _run_until(_runner(cfg, wh), lambda: w.count() >= 400, "400 detections")
    assert w.count() == 400
    ids = {d["_id"] for d in w.detections.find({}, {"_id": 1})}
    assert ids == {e.event_id for e in evs}
    doc = w.detections.find_one({"_id": evs[5].event_id})
    assert doc["ts"] == evs[5].ts and doc["camera_id"] == "cam-1" and "event_id" not in doc  # ts is a BSON date

    # the same batch again, twice: still exactly once
    produce(cfg, topics.detections, batch)
    produce(cfg, topics.detections, batch)
    r = _runner(cfg, wh)
    _run_until(r, lambda: sum(t.stats["records_in"] for t in r.tasks) >= 800, "the re-sent batches")
    assert w.count() == 400
    assert sum(t.stats["records_out"] for t in r.tasks) == 800  # re-sends were written (replaced), not added

    # metrics
    from prometheus_client import REGISTRY

    name = r.tasks[0].name
    # both runs of this connector in this process: 402 records, then the 800 re-sent
    assert REGISTRY.get_sample_value("edgesight_connector_records_in_total", {"connector": name}) == 402 + 800
    assert (
        REGISTRY.get_sample_value("edgesight_connector_dlq_total", {"connector": name, "stage": "VALUE_CONVERTER"}) == 1
    )
    assert REGISTRY.get_sample_value("edgesight_connector_batch_seconds_count", {"connector": name}) >= 1

    # dead letters, read back with kafka-python (an independent client)
    dlq = read_all(cfg, topics.dlq("mongo-sink"), expect=2)
    assert len(dlq) == 2, [m.value for m in dlq]
    by_key = {m.key: m for m in dlq}
    assert by_key[b"bad-1"].value == bad_json[1] and by_key[b"bad-2"].value == bad_schema[1]
    h1, h2 = dict(by_key[b"bad-1"].headers), dict(by_key[b"bad-2"].headers)
    assert h1["__connect.errors.stage"] == b"VALUE_CONVERTER"
    assert b"serialization error" in h1["__connect.errors.exception.message"]
    assert h2["__connect.errors.stage"] == b"TASK_PUT"
    assert b"field 'label'" in h2["__connect.errors.exception.message"] and h2["edgesight.errors.field"] == b"label"
    for h in (h1, h2):
        assert h["__connect.errors.topic"] == topics.detections.encode()
        assert int(h["__connect.errors.offset"]) >= 0 and h["__connect.errors.connector.name"].endswith(
            b"mongo-sink-detections"
        )


def test_keyframes_in_s3_and_warehouse_pointer(env):
    cfg, wh, w, topics = env
    create_topic(cfg, topics.keyframes, 2)
    create_topic(cfg, topics.detections, 1)
    kfs = [make_keyframe(i, crop=(10 * i, 20, 10 * i + 64, 84) if i % 2 else None) for i in range(6)]
    recs = [(k, v, h, int(m.ts.timestamp() * 1000)) for m, _, k, v, h in kfs]
    m0, j0, k0, v0, h0 = make_keyframe(99)
    corrupt = (k0, v0[:-4] + b"\x00\x00\xff\xd9", h0)  # sha256 no longer matches
    produce(cfg, topics.keyframes, recs + [corrupt])
    ev = make_event(1, keyframe=KeyframeRef(keyframe_id=kfs[2][0].keyframe_id))
    produce(cfg, topics.detections, [(ev.event_id.encode(), encode_event(ev), None)])

    r = _runner(cfg, wh, names=("mongo-sink-detections", "s3-sink-keyframes"))
    _run_until(r, lambda: w.keyframes.count_documents({}) >= 6 and w.count() >= 1, "6 keyframes + 1 detection")
    s3 = cfg.s3.client()
    for meta, jpeg, *_ in kfs:
        doc = w.keyframe(meta.keyframe_id)
        kp, ko = doc["kafka"]["partition"], doc["kafka"]["offset"]
        # Connect's S3 sink naming, computed independently: <topics.dir>/<topic>/<encodedPartition>/<topic>+<p>+<offset:010>.jpg
        expected = (
            f"keyframes/{topics.keyframes}/dt={meta.ts:%Y-%m-%d}/hour={meta.ts:%H}/"
            f"{topics.keyframes}+{kp}+{ko:010d}.jpg"
        )
        assert doc["s3_key"] == expected and doc["object_key"] == meta.object_key and doc["camera_id"] == "cam-1"
        obj = s3.get_object(Bucket=cfg.s3.keyframe_bucket, Key=expected)
        assert obj["Body"].read() == jpeg
        # A per-track crop says so (index and object metadata); a whole frame carries no crop.
        if meta.crop is None:
            assert "crop" not in doc and "frame" not in doc and "keyframe-crop" not in obj["Metadata"]
        else:
            assert doc["crop"] == meta.crop and doc["frame"] == {"width": 768, "height": 576}
            assert obj["Metadata"]["keyframe-crop"] == json.dumps(meta.crop, separators=(",", ":"))
            assert json.loads(obj["Metadata"]["keyframe-frame"]) == doc["frame"]
        with open_url(cfg, doc["url"]) as resp:  # the presigned URL, no credentials
            body = resp.read()
        assert body == jpeg and sha(body) == meta.sha256
    # the detection points at its keyframe
    kd = w.keyframe_for_event(ev.event_id)
    with open_url(cfg, kd["url"]) as resp:
        assert resp.read() == kfs[2][1]
    dlq = read_all(cfg, topics.dlq("s3-sink"), expect=1)
    assert len(dlq) == 1 and b"sha256" in dict(dlq[0].headers)["__connect.errors.exception.message"]
    assert w.keyframes.find_one({"_id": m0.keyframe_id}) is None


def test_kill_mid_stream_and_restart(env, tmp_path):
    cfg, wh, w, topics = env
    create_topic(cfg, topics.detections, 4)
    n = 4000
    evs = _events(n)
    yml = cloud_yaml(cfg, tmp_path / "cloud.yaml", topic_prefix=cfg.kafka.topic_prefix)
    args = [
        "--tasks",
        "1",
        "--collection-prefix",
        wh.collection_prefix,
        "--name-prefix",
        f"{cfg.kafka.topic_prefix}-",
        "mongo-sink-detections",
    ]
    p = start_runner(yml, *args, log_path=tmp_path / "run1.log")

    def feeder():
        for i in range(0, n, 200):
            produce(cfg, topics.detections, [(e.event_id.encode(), encode_event(e), None) for e in evs[i : i + 200]])
            time.sleep(0.15)

    th = threading.Thread(target=feeder)
    th.start()
    try:
        wait_for(lambda: w.count() >= 800, 90, "the first runner to write 800 docs")
        p.kill()  # SIGKILL: no flush, no commit, no leave-group
        p.wait(10)
        killed_at = w.count()
        assert killed_at < n, "the runner finished before it was killed; nothing was tested"
        p2 = start_runner(yml, *args, log_path=tmp_path / "run2.log")
        th.join()
        wait_for(lambda: w.count() >= n, 120, f"all {n} docs after restart")
        summary = stop_runner(p2)
    finally:
        th.join()
        if p.poll() is None:
            p.kill()
    assert w.count() == n
    assert {d["_id"] for d in w.detections.find({}, {"_id": 1})} == {e.event_id for e in evs}
    assert summary["summary"][0]["error"] is None
    assert read_all(cfg, topics.dlq("mongo-sink"), expect=1, timeout_s=3) == []


def test_two_runners_share_partitions(env, tmp_path):
    cfg, wh, w, topics = env
    create_topic(cfg, topics.detections, 4)
    yml = cloud_yaml(cfg, tmp_path / "cloud.yaml", topic_prefix=cfg.kafka.topic_prefix)
    args = [
        "--tasks",
        "1",
        "--collection-prefix",
        wh.collection_prefix,
        "--name-prefix",
        f"{cfg.kafka.topic_prefix}-",
        "mongo-sink-detections",
    ]
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [start_runner(yml, *args, log_path=logs[0])]
    wait_for(lambda: any(l.get("msg") == "partitions assigned" for l in log_lines(logs[0])), 60, "runner A assignment")
    procs.append(start_runner(yml, *args, log_path=logs[1]))

    def split():
        last = []
        for lp in logs:
            a = [l["partitions"] for l in log_lines(lp) if l.get("msg") == "partitions assigned"]
            last.append(set(a[-1]) if a else set())
        return last[0] and last[1] and not (last[0] & last[1]) and len(last[0] | last[1]) == 4 and last

    try:
        wait_for(split, 90, "the two runners to split the 4 partitions")
        n = 2000
        evs = [make_event(i, camera=f"cam-{i % 8}") for i in range(n)]
        produce(cfg, topics.detections, [(e.event_id.encode(), encode_event(e), None) for e in evs])
        wait_for(lambda: w.count() >= n, 120, f"{n} docs")
        sums = [stop_runner(p)["summary"][0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert w.count() == n
    assert all(s["records_in"] > 0 for s in sums), sums
    assert sum(s["records_in"] for s in sums) >= n
    parts = [set(s["partitions"]) for s in sums]
    assert not (parts[0] & parts[1]) and len(parts[0] | parts[1]) == 4, parts


def test_document_over_bson_limit_is_dead_lettered(env):
    cfg, wh, w, topics = env
    create_topic(cfg, topics.detections, 1)
    small = _events(50)
    # valid per the contract, but its BSON form exceeds 16 MiB (each zone id: 60 characters)
    big = make_event(10_000, zones=[f"z{i:059d}" for i in range(240_000)])
    raw_big = encode_event(big)
    assert len(raw_big) < 20 * 1024 * 1024
    recs = [(e.event_id.encode(), encode_event(e), None) for e in small[:25]]
    recs += [(big.event_id.encode(), raw_big, None)]
    recs += [(e.event_id.encode(), encode_event(e), None) for e in small[25:]]
    produce(cfg, topics.detections, recs)
    r = _runner(cfg, wh)
    _run_until(r, lambda: sum(t.stats["records_in"] for t in r.tasks) >= 51, "51 records")
    assert w.count() == 50 and w.detections.find_one({"_id": big.event_id}) is None
    dlq = read_all(cfg, topics.dlq("mongo-sink"), expect=1)
    # issue #11: a dead letter must fit the DLQ topic (broker default ~1 MB), so the value is not copied; its size is
    # kept in a header and the record itself stays on its source topic
    assert len(dlq) == 1 and dlq[0].value in (b"", None)
    assert dict(dlq[0].headers)[VALUE_DROPPED] == str(len(raw_big)).encode()
    msg = dict(dlq[0].headers)["__connect.errors.exception.message"].decode()
    assert "BSON limit" in msg and big.event_id in msg


def test_keyframe_indexer_next_to_connect(env):
    """Production layout: Connect's S3 sink writes the objects (stood in for by the runner without the
    index); the indexer, in its own group, computes the same keys, waits for each object and indexes it."""
    cfg, wh, w, topics = env
    create_topic(cfg, topics.keyframes, 2)
    kfs = [make_keyframe(i, camera=f"cam-{i % 2}") for i in range(5)]
    produce(cfg, topics.keyframes, [(k, v, h, int(m.ts.timestamp() * 1000)) for m, _, k, v, h in kfs])
    indexer = _runner(cfg, wh, names=("s3-sink-keyframes",), index_only=True)
    indexer.start()
    try:
        time.sleep(4)  # the indexer is up and finds no objects yet
        assert w.keyframes.count_documents({}) == 0
        writer = _runner(cfg, wh, names=("s3-sink-keyframes",), index_keyframes=False)
        s3 = cfg.s3.client()
        prefix = f"keyframes/{topics.keyframes}/"
        _run_until(
            writer,
            lambda: s3.list_objects_v2(Bucket=cfg.s3.keyframe_bucket, Prefix=prefix).get("KeyCount", 0) >= 5,
            "the writer's 5 objects",
        )
        assert indexer.tasks[0].group_id != writer.tasks[0].group_id
        wait_for(
            lambda: w.keyframes.count_documents({}) >= 5 or (indexer.errors() and AssertionError(indexer.errors())),
            90,
            "the indexer's 5 docs",
        )
    finally:
        assert indexer.stop(60)
    written = {o["Key"] for o in s3.list_objects_v2(Bucket=cfg.s3.keyframe_bucket, Prefix=prefix)["Contents"]}
    for meta, jpeg, *_ in kfs:
        doc = w.keyframe(meta.keyframe_id)
        assert doc["s3_key"] in written
        with open_url(cfg, doc["url"]) as resp:
            assert resp.read() == jpeg


def test_an_events_keyframe_reference_resolves_to_its_jpeg_in_s3(env):
    """Follow the reference from the detection document in MongoDB to the JPEG in S3 (boto3), for a
    detection/2 event (keyframe_id only) and a detection/1 event (whose object_key names no S3 object)."""
    import json

    from botocore.exceptions import ClientError

    from edgesight.wire import make_event_id

    cfg, wh, w, topics = env
    create_topic(cfg, topics.keyframes, 2)
    create_topic(cfg, topics.detections, 1)
    kfs = [make_keyframe(i) for i in range(3)]
    produce(cfg, topics.keyframes, [(k, v, h, int(m.ts.timestamp() * 1000)) for m, _, k, v, h in kfs])
    m1, m2 = kfs[1][0], kfs[2][0]
    ev2 = make_event(m1.seq, ts=m1.ts, track=m1.track_id, keyframe=KeyframeRef(keyframe_id=m1.keyframe_id))
    v1 = json.loads(encode_event(make_event(m2.seq, ts=m2.ts, track=m2.track_id)))
    del v1["run_id"]
    v1["schema"] = "edgesight.detection/1"
    v1["event_id"] = make_event_id("agent-1", "cam-1", m2.ts, m2.seq, m2.track_id, "update")
    v1["keyframe"] = {"keyframe_id": m2.keyframe_id, "object_key": m2.object_key}
    produce(
        cfg,
        topics.detections,
        [(ev2.event_id.encode(), encode_event(ev2), None), (v1["event_id"].encode(), json.dumps(v1).encode(), None)],
    )

    r = _runner(cfg, wh, names=("mongo-sink-detections", "s3-sink-keyframes"))
    _run_until(r, lambda: w.keyframes.count_documents({}) >= 3 and w.count() >= 2, "3 keyframes + 2 detections")
    s3 = cfg.s3.client()  # boto3
    for event_id, meta, jpeg in ((ev2.event_id, m1, kfs[1][1]), (v1["event_id"], m2, kfs[2][1])):
        det = w.detections.find_one({"_id": event_id})
        ref = det["keyframe"]
        assert ref["keyframe_id"] == meta.keyframe_id
        bucket, key, index = w.keyframe_object(ref)
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert body[:3] == b"\xff\xd8\xff" and body == jpeg and sha(body) == meta.sha256 == index["sha256"]
        # it is this event's keyframe: same agent, camera, frame and track
        assert (index["agent_id"], index["camera_id"], index["seq"], index["track_id"]) == (
            det["agent_id"],
            det["camera_id"],
            det["seq"],
            det["track_id"],
        )
    assert "object_key" not in w.detections.find_one({"_id": ev2.event_id})["keyframe"]  # v2: nothing misleading
    with pytest.raises(ClientError):  # v1's object_key was never an S3 key: resolution ignores it
        s3.head_object(Bucket=cfg.s3.keyframe_bucket, Key=m2.object_key)
