"""Engineering consumer against the real embedded stack (Tansu + nx-27017): exact analytics, idempotent
redelivery, SIGKILL/restart, DLQ, two consumers in one group."""

from __future__ import annotations

import json
import os
import random
import signal
import urllib.request

import pytest
from kafka import KafkaConsumer, TopicPartition
from typer.testing import CliRunner

from cloud.engineering.engineering import build_engineering
from cloud.engineering.facts import counts_minute_docs, dwell_docs, event_to_fact, line_crossing_docs, track_summary
from cloud.engineering.settings import EngineeringConfig
from cloud.engineering.store import STALE, AnalyticsStore, count_facts
from cloud.engineering.synthetic import load_stream
from edgesight.kafka import TopicSpec, ensure_topics
from edgesight.wire import dumps
from edgesight.wire.deadletter import parse_headers
from ops.cli import app as cloud_ops
from ops.testing.clients import kafka_python

from .conftest import SESSION_MS, wait_for
from .known_stream import N_EVENTS, assert_analytics, events

ANALYTICS = ("counts_minute", "line_crossings_minute", "dwell", "tracks")


def run_inproc(env, group: str, idle_s: float = 2.0, **kw):
    st = EngineeringConfig(group_id=group, session_timeout_ms=SESSION_MS, batch_timeout_s=0.2, **kw)
    return build_engineering(env.cfg, st).run(until_idle_s=idle_s, max_seconds=120)


def read_partition(env, topic: str, n: int, partition: int = 0) -> list:
    """Up to ``n`` records of one partition from its start, read with kafka-python (an independent client)."""
    kc = KafkaConsumer(
        **kafka_python(env.cfg.kafka),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=10000,
    )
    kc.assign([TopicPartition(topic, partition)])
    kc.seek_to_beginning()
    got = []
    try:
        for m in kc:
            got.append(m)
            if len(got) == n:
                break
    finally:
        kc.close()
    return got


def snapshot(db) -> dict:
    return {c: sorted(db[c].find(), key=lambda d: d["_id"]) for c in ANALYTICS}


def expected_docs(evs) -> dict:
    """Oracle for the larger streams: the pure functions over the whole stream, each event once."""
    facts = [event_to_fact(e) for e in evs]
    by_track: dict[str, list] = {}
    for f in facts:
        if f["track"]:
            by_track.setdefault(f["track"], []).append(f)
    return {
        "counts_minute": counts_minute_docs(facts),
        "line_crossings_minute": line_crossing_docs(facts),
        "tracks": sorted((track_summary(t, fs) for t, fs in by_track.items()), key=lambda d: d["_id"]),
        "dwell": sorted((d for t, fs in by_track.items() for d in dwell_docs(t, fs)), key=lambda d: d["_id"]),
    }


def assert_matches(db, expected: dict) -> None:
    got = snapshot(db)
    for c in ANALYTICS:
        assert len(got[c]) == len(expected[c]), c
        assert got[c] == expected[c], c


# ---- pure functions (no I/O) ------------------------------------------------------------


def test_facts_are_order_and_duplicate_independent():
    evs = events()
    shuffled = evs + evs[:5]
    random.Random(3).shuffle(shuffled)
    a, b = expected_docs(evs), expected_docs(shuffled)  # duplicates collapse by event_id inside the functions
    assert a["counts_minute"] == b["counts_minute"] and a["line_crossings_minute"] == b["line_crossings_minute"]
    assert a["tracks"] == b["tracks"] and a["dwell"] == b["dwell"]
    assert len(a["counts_minute"]) == 17 and len(a["dwell"]) == 5


# ---- against the stack ------------------------------------------------------------------


def test_known_stream_exact_counts_and_redelivery_changes_nothing(env):
    evs = events()
    assert len(evs) == N_EVENTS
    stream = evs + [evs[2], evs[9]]  # two re-sends inside the stream
    random.Random(1).shuffle(stream)  # arrival order is not event-time order
    env.produce_events(stream)

    stats = run_inproc(env, "g-known")
    assert (stats.good, stats.poison) == (N_EVENTS + 2, 0)
    db = env.db
    assert count_facts(db) == N_EVENTS
    assert_analytics(db)
    before = snapshot(db)

    # The edge re-sends everything: the same group resumes from its committed offsets and reads only the copies.
    env.produce_events(evs)
    stats = run_inproc(env, "g-known")
    assert stats.good == N_EVENTS, "the group did not resume from its committed offsets"
    assert_analytics(db)
    assert snapshot(db) == before

    # A new group replays the whole log (2 copies + the re-sends): still the same documents.
    stats = run_inproc(env, "g-replay", batch_size=7)
    assert stats.good == 2 * N_EVENTS + 2
    assert snapshot(db) == before
    assert count_facts(db) == N_EVENTS


def test_poison_records_go_to_the_dlq_with_the_reason_and_processing_continues(env):
    good = events()[:6]  # agent-a/cam-1 track 1
    bad_score = json.loads(dumps(good[1]))
    bad_score["score"] = 1.5
    no_camera = json.loads(dumps(good[2]))
    del no_camera["camera_id"]
    v2 = json.loads(dumps(good[3]))
    v2["schema"] = "edgesight.detection/3"  # a major version this build does not know
    key = b"agent-a/cam-1"
    poison = [
        b"{not json",
        json.dumps(bad_score).encode(),
        json.dumps(no_camera).encode(),
        json.dumps(v2).encode(),
        None,
    ]
    records = []
    for i, e in enumerate(good):
        records.append((key, dumps(e)))
        if i < len(poison):
            records.append((key, poison[i]))
    env.produce(env.topics.detections, records)

    stats = run_inproc(env, "g-dlq")
    assert (stats.good, stats.poison) == (6, 5)
    db = env.db
    assert count_facts(db) == 6
    t = db["tracks"].find_one({"_id": "agent-a/cam-1/1"})
    assert t["events"] == 6 and t["ended"] is True and t["best_score"] == 0.90

    # Read the DLQ back with an independent client (kafka-python).
    got = read_partition(env, env.topics.dlq("engineering"), 5)
    assert len(got) == 5
    # Kafka Connect's dead-letter context headers, as the sink connectors write them
    ctx = [parse_headers(m.headers) for m in got]
    assert all(c is not None for c in ctx)
    assert [c.field for c in ctx] == ["(message)", "score", "camera_id", "schema", "(message)"]
    assert "not valid JSON" in ctx[0].message
    assert "field 'score'" in ctx[1].message and "less than or equal to 1" in ctx[1].message
    assert "field 'camera_id'" in ctx[2].message and "missing" in ctx[2].message
    assert "unsupported version" in ctx[3].message
    assert "tombstone" in ctx[4].message
    assert all(c.kind == "detection event" and c.stage == "VALUE_CONVERTER" for c in ctx)
    assert all(c.exception_class == "edgesight.wire.codec.WireError" for c in ctx)
    assert [m.value for m in got] == poison
    assert all(m.key == key for m in got)
    assert all(c.topic == env.topics.detections and c.connector == "engineering" for c in ctx)
    assert sorted(c.offset for c in ctx) == [1, 3, 5, 7, 9]
    assert all(dict(m.headers)["__connect.errors.topic"] == env.topics.detections.encode() for m in got)

    # The operator's view: cloud-ops dlq show lists the same five with the field at fault.
    r = CliRunner().invoke(
        cloud_ops, ["dlq", "show", "-c", str(env.config_path), "--consumer", "engineering", "--json"]
    )
    assert r.exit_code == 0, r.output
    shown = [json.loads(line) for line in r.output.splitlines() if line.startswith("{")]
    assert [x["field"] for x in shown] == [c.field for c in ctx], r.output
    assert all(x["stage"] == "VALUE_CONVERTER" and x["source"].startswith(env.topics.detections) for x in shown)

    # Replay (say, to a quarantine topic after a fix): the records arrive unchanged, without the error context;
    # the replay group's committed progress means a second run sends nothing again.
    target = env.topics.prefix + ".quarantine"
    ensure_topics(env.cfg.kafka.client_config(), [TopicSpec(target, 1)])
    args = ["dlq", "replay", "-c", str(env.config_path), "--consumer", "engineering", "--to", target]
    r = CliRunner().invoke(cloud_ops, args)
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output.strip().splitlines()[-1])
    assert (rep["read"], rep["replayed"], rep["committed"], rep["to"]) == (5, 5, True, {target: 5})
    replayed = read_partition(env, target, 5)
    assert [m.value for m in replayed] == poison and all(m.key == key for m in replayed)
    assert all(parse_headers(m.headers) is None and not m.headers for m in replayed)
    r = CliRunner().invoke(cloud_ops, args)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["replayed"] == 0


def test_sigkill_mid_stream_then_restart_loses_nothing_and_counts_once(env):
    evs = list(load_stream(3000, cameras=6, tracks_per_camera=20, seed=11))
    env.produce_events(evs)
    db = env.db
    p = env.start("engineering", "--group", "g-kill", "--batch-size", "50", name="first")
    wait_for(lambda: count_facts(db) >= 500, 90, "first facts")
    os.kill(p.p.pid, signal.SIGKILL)
    p.p.wait(10)
    at_kill = count_facts(db)
    assert at_kill < len(evs), "the consumer finished before it was killed: the test proves nothing"

    q = env.start("engineering", "--group", "g-kill", "--batch-size", "200", name="second")
    expected = expected_docs(evs)
    wait_for(lambda: count_facts(db) == len(evs), 120, "all facts after restart")
    wait_for(
        lambda: db["tracks"].count_documents({}) == len(expected["tracks"]) and snapshot(db) == expected,
        60,
        "analytics after restart",
    )
    # SIGTERM: finish the batch, commit, leave the group, exit 0.
    os.kill(q.p.pid, signal.SIGTERM)
    out, _ = q.p.communicate(timeout=60)
    assert q.p.returncode == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["reason"] == "stop requested"
    assert summary["records"] >= len(evs) - at_kill  # resumed from the last commit before the kill (may re-read some)
    assert any(d.get("msg") == "consumer stopped" for d in q.log_lines())
    assert_matches(db, expected)

    # Everything was committed: the group has nothing left to read.
    stats = run_inproc(env, "g-kill", idle_s=1.5)
    assert stats.records == 0
    assert_matches(db, expected)


def test_two_consumers_in_one_group_split_partitions_and_process_everything_once(env):
    db = env.db
    a = env.start("engineering", "--group", "g-two", "--batch-size", "100", "--metrics-port", "0", name="a")
    b = env.start(
        "engineering",
        "--group",
        "g-two",
        "--batch-size",
        "100",
        "--metrics-port",
        "0",
        "--metrics-host",
        "0.0.0.0",
        name="b",
    )

    def split():
        pa, pb = a.assigned(), b.assigned()
        return pa and pb and sorted(pa + pb) == [0, 1]

    wait_for(split, 90, "both members to hold one partition each", interval=0.5)
    revoked_at_split = [sum(d.get("msg") == "partitions revoked" for d in p.log_lines()) for p in (a, b)]
    evs = list(load_stream(2000, cameras=8, tracks_per_camera=20, seed=5))
    env.produce_events(evs)
    expected = expected_docs(evs)
    wait_for(lambda: count_facts(db) == len(evs), 120, "all facts")
    wait_for(lambda: snapshot(db) == expected, 60, "analytics")
    # Prometheus metrics of member a (port chosen at start, logged).
    port = next(d["port"] for d in a.log_lines() if d.get("msg") == "metrics served")
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    ok_a = [
        ln
        for ln in text.splitlines()
        if ln.startswith('edgesight_consumer_records_total{consumer="engineering",result="ok"}')
    ]
    assert ok_a and float(ok_a[0].split()[-1]) > 0
    assert "edgesight_engineering_docs_written_total" in text and "edgesight_consumer_batch_seconds_bucket" in text
    # --metrics-host: b listens on every address (a pod's probes and scrapes), a on loopback only (the default).
    # 127.0.0.2 is loopback too, but only a socket bound to 0.0.0.0 answers there.
    port_b = next(d["port"] for d in b.log_lines() if d.get("msg") == "metrics served")
    assert urllib.request.urlopen(f"http://127.0.0.2:{port_b}/healthz", timeout=10).read() == b"ok"
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.2:{port}/healthz", timeout=10)
    # Any revocation between the split and now means a rebalance happened while processing.
    rebalanced = any(
        sum(d.get("msg") == "partitions revoked" for d in p.log_lines()) > revoked_at_split[i]
        for i, p in enumerate((a, b))
    )
    results = []
    for p in (a, b):
        os.kill(p.p.pid, signal.SIGTERM)
    for p in (a, b):
        out, _ = p.p.communicate(timeout=60)
        assert p.p.returncode == 0
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert all(r["records"] > 0 for r in results), results
    if rebalanced:  # a member missed heartbeats on a loaded box: redelivery is allowed, the effect still exact
        assert sum(r["records"] for r in results) >= len(evs), results
    else:  # a stable group reads each record exactly once
        assert sum(r["records"] for r in results) == len(evs), results
    assert 0 < float(ok_a[0].split()[-1]) <= results[0]["records"]
    assert_matches(db, expected)


def test_a_zombie_writer_with_a_stale_view_cannot_overwrite_fresher_documents(env):
    """After a rebalance, the old owner of a partition may still finish a batch. Its cached view misses facts the
    new owner wrote: the n_events guard refuses its documents, it reloads from the ledger and writes the truth."""
    db = env.db
    evs = events()
    zombie = AnalyticsStore(db, cache_max_keys=100)
    zombie.apply([event_to_fact(e) for e in evs[9:11]])  # caches agent-a/cam-2's bucket and track with 2 facts
    owner = AnalyticsStore(db, cache_max_keys=100)
    owner.apply([event_to_fact(e) for e in evs])  # the new owner re-read everything
    assert_analytics(db)
    stale_before = STALE.labels("tracks")._value.get()
    zombie.apply([event_to_fact(e) for e in evs[11:13]])  # the zombie's in-flight batch: its view has 4 of 6 facts
    assert STALE.labels("tracks")._value.get() > stale_before, "the stale track summary was not refused"
    assert_analytics(db)
