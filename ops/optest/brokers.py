"""``cloud-ops test brokers``: several brokers on several nodes, through a SIGKILL and a link down (issue #14).

::

    report = run_brokers(BrokersOptions(brokers=3, link_down_s=30), progress=print)
    report.passed, report.lost, report.duplicate_documents, report.faults[0].failover_s

Embedded (default): :class:`ops.optest.brokers_cluster.BrokerCluster` starts N Tansu brokers, each a node in its
own network namespace, on one SeaweedFS storage, behind haproxy. The edge's real publisher
(:class:`edge_agent.publish.EdgePublisher`: journal + Kafka producer) sends a deterministic detection stream
(:func:`ops.testing.publish.event_stream`) at a steady rate through the one bootstrap address, and the real sink
(:class:`connectors.runner.ConnectorRunner` running ``mongo-sink-detections``: upserts by event id) writes it into
the MongoDB warehouse. Mid-run: SIGKILL of the broker carrying the producer's traffic; after ``settle_s`` the link
of the node carrying it then is taken down for ``link_down_s``; when it is back the killed broker is restarted.
At the end the test reads the warehouse itself (acknowledged vs landed: lost, duplicate documents by event
identity) and the topic with a plain consumer (copies of a record in Kafka: informational).

Failover time: from the fault until the publisher's acknowledged count (sampled every 20 ms) exceeds the count
of events accepted at the fault, i.e. until a record accepted after the fault is acknowledged. Throughput: acknowledged and landed records per second before the kill, between the kill
and the restarted broker's return (during), and after.

``--bootstrap``: the same produce/consume checks against a production cluster (and the warehouse of ``--config``),
without any fault injected; the report says what was tested where.

Producer settings on Tansu 0.6 (README "Several brokers: the failover test"): the edge publisher's production
setting is an idempotent producer (right for Apache Kafka). Through a SIGKILL of a Tansu broker the idempotent
producer's retry can be answered as a duplicate of a batch the dead broker never stored (no error, base offset
-1); the publisher takes an acknowledgement without a new offset as "not stored" and re-sends the record (seen
here: 6 records in a 30 s run, none lost), but an acknowledgement that names an offset the batch does not hold could
not be told from a good one. So the embedded run uses the publisher with
idempotence off (``idempotence=None`` picks that for the embedded cluster and on for ``--bootstrap``): retries may
write a batch twice in Kafka, and the sink's upsert by event id keeps one document per event.
"""

from __future__ import annotations

import json
import re
import signal
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cloud.config import CloudConfig
from edgesight.log import get_logger

log = get_logger("optest.brokers")

Progress = Callable[[str], None]
AGENT_ID = "optest-brokers"
CAMERAS = 4
SAMPLE_S = 0.02


@dataclass
class BrokersOptions:
    brokers: int = 3
    link_down_s: float = 30.0
    before_s: float = 10.0  # steady production before the SIGKILL
    settle_s: float = 5.0  # between the SIGKILL and the link down
    after_s: float = 10.0  # after the killed broker is back
    rate: float = 200.0  # events per second, paced
    idempotence: bool | None = None  # None: off on the embedded Tansu cluster, on (production) with --bootstrap
    mode: str | None = None  # "netns" | "loopback" | None (namespaces when possible)
    workdir: Path | None = None
    bootstrap: str | None = None  # a production cluster: checks only, nothing killed
    config: CloudConfig | None = None  # the cloud config (MongoDB, Kafka security) for --bootstrap
    drain_timeout_s: float = 120.0

    def validate(self) -> None:
        problems = []
        if not 2 <= self.brokers <= 9:
            problems.append(f"--brokers must be 2..9, got {self.brokers}")
        for name in ("link_down_s", "before_s", "settle_s", "after_s"):
            v = getattr(self, name)
            if not 0.5 <= v <= 3600:
                problems.append(f"--{name.replace('_', '-')} must be 0.5..3600 s, got {v}")
        if not 1 <= self.rate <= 20000:
            problems.append(f"--rate must be 1..20000 events/s, got {self.rate}")
        if self.mode not in (None, "netns", "loopback"):
            problems.append(f"--mode must be netns or loopback, got {self.mode!r}")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass
class Fault:
    kind: str  # "SIGKILL" | "link down" | "restart"
    broker: str
    at_s: float  # since the start of production
    failover_s: float | None  # fault -> first record acknowledged after it
    longest_ack_gap_s: float | None  # the longest silence between acknowledgements in the next 60 s
    sink_resume_s: float | None  # fault -> the warehouse grew again
    traffic_share: float | None  # its share of the bytes clients sent through haproxy in the second before
    detail: str = ""


@dataclass
class Phase:
    name: str
    seconds: float
    accepted_per_s: float
    acked_per_s: float
    landed_per_s: float


@dataclass
class BrokersReport:
    where: str
    target: str
    cluster: dict[str, Any]
    producer: dict[str, Any]
    accepted: int = 0
    acked: int = 0  # acknowledged by the broker, as the publisher counted them
    unacknowledged: int = 0
    landed: int = 0  # distinct events of this run in the warehouse
    lost: int = 0  # acknowledged, not in the warehouse
    duplicate_documents: int = 0  # documents beyond one per event identity
    unexpected_documents: int = 0  # documents of no event this run sent
    kafka_records_read: int = 0
    kafka_duplicates: int = 0  # extra copies in the topic (informational: the sink upserts by event id)
    kafka_missing: int = 0  # acknowledged, not in the topic
    publisher: dict[str, Any] = field(default_factory=dict)  # suspicious acks, producer recreations, requeued
    sink_errors: list[str] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return (
            self.lost == 0
            and self.duplicate_documents == 0
            and self.unexpected_documents == 0
            and self.unacknowledged == 0
            and self.acked == self.accepted
            and not self.sink_errors
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")


# ---- sampling -------------------------------------------------------------------------------------


class _Sampler(threading.Thread):
    """Samples (t, value) of ``read`` every ``every`` s until stopped."""

    def __init__(self, read: Callable[[], int], every: float, name: str):
        super().__init__(name=name, daemon=True)
        self.read, self.every = read, every
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.samples.append((time.monotonic(), self.read()))
            except Exception as e:  # noqa: BLE001 - a failed sample is skipped, the last error kept
                self.error = f"{type(e).__name__}: {e}"
            self.stop.wait(self.every)

    def value_at(self, t: float) -> int:
        v = 0
        for ts, val in self.samples:
            if ts > t:
                break
            v = val
        return v

    def first_increase_after(self, t: float, base: int | None = None) -> float | None:
        """Seconds from ``t`` to the first sample above ``base`` (default: the value at ``t``)."""
        base = self.value_at(t) if base is None else base
        for ts, val in self.samples:
            if ts > t and val > base:
                return ts - t
        return None

    def longest_gap(self, t0: float, t1: float) -> float | None:
        """The longest time without an increase, between t0 and t1."""
        last, gap, prev = t0, 0.0, self.value_at(t0)
        for ts, val in self.samples:
            if ts <= t0:
                continue
            if ts > t1:
                break
            if val > prev:
                gap, last, prev = max(gap, ts - last), ts, val
        return gap if last > t0 else None

    def rate(self, t0: float, t1: float) -> float:
        return (self.value_at(t1) - self.value_at(t0)) / (t1 - t0) if t1 > t0 else 0.0


class _Producer(threading.Thread):
    """Publishes the deterministic event stream at ``rate`` per second through the edge publisher."""

    def __init__(self, publisher: Any, rate: float):
        super().__init__(name="optest-producer", daemon=True)
        self.publisher, self.rate = publisher, rate
        self.ids: list[str] = []
        self.stop = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        from ops.testing.publish import event_stream

        t0 = time.monotonic()
        try:
            for i, ev in enumerate(event_stream(AGENT_ID, CAMERAS, 10**9)):
                if self.stop.is_set():
                    break
                wait = t0 + i / self.rate - time.monotonic()
                if wait > 0 and self.stop.wait(wait):
                    break
                self.publisher.publish_event(ev)
                self.ids.append(ev.event_id)
        except Exception as e:
            self.error = f"{type(e).__name__}: {e}"
            log.exception("producer thread failed")


# ---- the run --------------------------------------------------------------------------------------


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM ends the run like Ctrl-C (the cleanup in ``finally`` runs); main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@dataclass
class RunView:
    """What a caller may check against the report while the servers still run (``run_brokers(inspect=...)``)."""

    cloud: CloudConfig  # clients' settings: Kafka through the bootstrap address, the warehouse's MongoDB
    database: str
    collection: str
    topic: str
    accepted_ids: list[str]  # the event ids the publisher accepted, in order
    report: BrokersReport


def run_brokers(
    opts: BrokersOptions, progress: Progress | None = None, inspect: Callable[[RunView], None] | None = None
) -> BrokersReport:
    """Run the test (see the module doc); every process, namespace and link it made is gone when it returns.
    ``inspect`` is called with the finished report while the cluster and the warehouse still run."""
    opts.validate()

    def say(message: str) -> None:
        log.info(re.sub(r"\[/?(bold|red|green|yellow)\]", "", message))  # the structured log has every step
        if progress is not None:
            progress(message)

    own_tmp = opts.workdir is None
    workdir = Path(opts.workdir or tempfile.mkdtemp(prefix="edgesight-test-brokers-"))
    with _sigterm_raises():
        try:
            if opts.bootstrap:
                return _run_production(opts, workdir, say, inspect)
            return _run_embedded(opts, workdir, say, inspect)
        finally:
            if own_tmp:
                import shutil

                shutil.rmtree(workdir, ignore_errors=True)


def _publisher(cfg: CloudConfig, workdir: Path, idempotence: bool) -> Any:
    from edge_agent.publish import EdgePublisher, PublishConfig, SpoolConfig

    kafka = cfg.kafka.model_copy(update={"client_id": f"{AGENT_ID}-edge"})
    pc = PublishConfig(kafka=kafka, spool=SpoolConfig(dir=workdir / "spool", fsync="never"), linger_ms=20)
    if not idempotence:
        # The publisher refuses this override in its config (validation): for Apache Kafka it must stay on. Set
        # here on purpose, for Tansu, after validation (README "Several brokers: the failover test").
        pc = pc.model_copy(update={"extra_producer_config": {"enable.idempotence": False}})
    return EdgePublisher(pc, AGENT_ID, poll_interval_s=0.02)


@dataclass
class _Pipeline:
    cfg: CloudConfig
    publisher: Any
    producer: _Producer
    runner: Any
    mongo: Any
    collection: Any
    acked: _Sampler
    landed: _Sampler
    offered: _Sampler
    topic: str

    def start(self) -> float:
        """Start the samplers, then the producer; the monotonic time it started."""
        for sampler in (self.acked, self.landed, self.offered):
            sampler.start()
        t0 = time.monotonic()
        self.producer.start()
        return t0


@contextmanager
def _pipeline(cfg: CloudConfig, workdir: Path, idempotence: bool, rate: float, say: Progress) -> Iterator[_Pipeline]:
    """The sink (assigned its partitions), the publisher and the paced producer thread (not started yet). On every
    way out, the producer, the sink and the publisher are stopped before the caller stops the servers."""
    from cloud.warehouse import Names, WarehouseConfig, init_warehouse
    from connectors.runner import ConnectorRunner
    from connectors.spec import load_connector, load_topics, variables
    from edgesight.kafka import ensure_topics

    prefix = f"{cfg.kafka.topic_prefix}_"
    wh = WarehouseConfig(collection_prefix=prefix)
    mongo = cfg.mongo.client()
    runner = pub = p = None
    try:
        init_warehouse(mongo, cfg.mongo.warehouse_db, wh)
        spec = load_connector(
            "mongo-sink-detections",
            variables(cfg, collection_prefix=prefix, name_prefix=f"{cfg.kafka.topic_prefix}-"),
        )
        runner = ConnectorRunner([spec], cfg, tasks=1, topic_specs=load_topics(variables(cfg)))
        ensure_topics(cfg.kafka.client_config(), runner.wanted_topics(), log=log)
        collection = mongo[cfg.mongo.warehouse_db][Names(prefix).detections]
        runner.start()
        deadline = time.monotonic() + 60
        while not all(t.loop.stats.assigned for t in runner.tasks):
            if runner.errors() or time.monotonic() > deadline:
                raise RuntimeError(f"the sink got no partitions within 60 s: {runner.errors()}")
            time.sleep(0.1)
        say(f"sink running (group connect-{spec.name}) into {cfg.mongo.warehouse_db}.{collection.name}")
        pub = _publisher(cfg, workdir, idempotence).start()
        acked = _Sampler(lambda: int(pub.stats()["by_topic"]["detections"]["acked"]), SAMPLE_S, "optest-acked")
        landed = _Sampler(lambda: int(collection.estimated_document_count()), 0.25, "optest-landed")
        producer = _Producer(pub, rate)
        offered = _Sampler(lambda: len(producer.ids), 0.25, "optest-offered")
        p = _Pipeline(cfg, pub, producer, runner, mongo, collection, acked, landed, offered, spec.config["topics"])
        yield p
    finally:
        if p is not None:
            for stop in (p.producer.stop, p.acked.stop, p.landed.stop, p.offered.stop):
                stop.set()
        if runner is not None and not runner.stop(30):
            log.error("the sink did not stop within 30 s")
        if pub is not None:
            pub.close(1)
        mongo.close()


def _finish(p: _Pipeline, rep: BrokersReport, drain_timeout_s: float, say: Progress) -> None:
    """Stop producing, wait for every acknowledgement and for the warehouse, then count."""
    p.producer.stop.set()
    p.producer.join(10)
    rep.accepted = len(p.producer.ids)
    say(f"production stopped: {rep.accepted} events accepted; waiting for acknowledgements")
    if not p.publisher.flush(drain_timeout_s):
        rep.notes.append(f"the publisher still held unacknowledged records after {drain_timeout_s:.0f} s")
    stats = p.publisher.stats()
    det = stats["by_topic"]["detections"]
    rep.acked = int(det["acked"])
    rep.unacknowledged = int(stats["spool"]["records"])
    rep.publisher = {
        "suspicious_acks_resent": stats["suspicious_acks"],
        "producer_recreations": stats["producer_recreations"],
        "requeued": det["requeued"],
        "failed": det["failed"],
        "dropped": det["dropped"],
        "sent": det["sent"],
    }
    if p.producer.error:
        rep.notes.append(f"producer thread: {p.producer.error}")
    expected = set(p.producer.ids)
    say(f"{rep.acked} acknowledged; waiting for the warehouse")
    deadline, last_n, last_change = time.monotonic() + drain_timeout_s, -1, time.monotonic()
    while time.monotonic() < deadline:
        n = p.collection.count_documents({})
        if n >= len(expected) and n == last_n:
            break
        if n != last_n:
            last_n, last_change = n, time.monotonic()
        elif time.monotonic() - last_change > 20:
            break  # nothing more comes
        time.sleep(0.5)
    time.sleep(1.0)
    for sampler in (p.landed, p.acked, p.offered):
        sampler.stop.set()
    p.runner.stop(60)
    rep.sink_errors = p.runner.errors()
    _count_warehouse(p, rep, expected)
    _count_topic(p, rep, expected)


def _count_warehouse(p: _Pipeline, rep: BrokersReport, expected: set[str]) -> None:
    fields = {"_id": 1, "agent_id": 1, "camera_id": 1, "seq": 1, "track_id": 1, "kind": 1}
    docs = list(p.collection.find({}, fields))
    ids = [d["_id"] for d in docs]
    identity = Counter(
        (d.get("agent_id"), d.get("camera_id"), d.get("seq"), d.get("track_id"), d.get("kind")) for d in docs
    )
    landed = set(ids) & expected
    rep.landed = len(landed)
    rep.duplicate_documents = sum(c - 1 for c in identity.values()) + (len(ids) - len(set(ids)))
    rep.unexpected_documents = len(set(ids) - expected)
    if rep.unacknowledged == 0 and rep.acked == rep.accepted:
        rep.lost = len(expected - landed)
    else:  # not every record was acknowledged: which ones were is not known one by one, so a lower bound
        rep.lost = max(0, rep.acked - len(landed))
        rep.notes.append("lost is a lower bound: not every accepted event was acknowledged")


def _count_topic(p: _Pipeline, rep: BrokersReport, expected: set[str]) -> None:
    """Every copy of this run's events in the topic, read with a plain consumer from the beginning."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    conf = {
        **p.cfg.kafka.client_config(),
        "group.id": f"optest-reader-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "logger": log,
    }
    c = Consumer(conf)
    try:
        md = c.list_topics(p.topic, timeout=15)
        parts = sorted(md.topics[p.topic].partitions)
        c.assign([TopicPartition(p.topic, part, OFFSET_BEGINNING) for part in parts])
        seen: Counter[str] = Counter()
        deadline, last = time.monotonic() + 60, time.monotonic()
        while time.monotonic() < deadline:
            msgs = c.consume(500, 0.5)
            if not msgs:
                if time.monotonic() - last > (3 if sum(seen.values()) >= len(expected) else 8):
                    break
                continue
            last = time.monotonic()
            for m in msgs:
                value = m.value() if m.error() is None else None
                if value is not None:
                    try:
                        seen[json.loads(value)["event_id"]] += 1
                    except (ValueError, KeyError, TypeError):
                        seen["(unreadable)"] += 1
    finally:
        c.close()
    rep.kafka_records_read = sum(seen.values())
    rep.kafka_duplicates = sum(n - 1 for n in seen.values() if n > 1)
    rep.kafka_missing = len(expected - set(seen)) if rep.acked == rep.accepted else 0


def _busiest(before: dict[str, int], after: dict[str, int], among: list[str]) -> tuple[str, float]:
    """The broker that received the most client bytes between two haproxy samples, and its share of them."""
    delta = {n: after.get(n, 0) - before.get(n, 0) for n in after}
    name = max(among, key=lambda n: delta.get(n, 0))
    total = sum(max(0, d) for d in delta.values())
    return name, round(delta.get(name, 0) / total, 3) if total else 0.0


def _view(p: _Pipeline, rep: BrokersReport) -> RunView:
    return RunView(p.cfg, p.cfg.mongo.warehouse_db, p.collection.name, p.topic, list(p.producer.ids), rep)


def _run_embedded(
    opts: BrokersOptions, workdir: Path, say: Progress, inspect: Callable[[RunView], None] | None
) -> BrokersReport:
    from ops.optest.brokers_cluster import BrokerCluster

    idempotence = bool(opts.idempotence) if opts.idempotence is not None else False
    t_start = time.monotonic()
    mode = opts.mode if opts.mode in ("netns", "loopback") else None
    with BrokerCluster(workdir / "cluster", brokers=opts.brokers, mode=mode, progress=say) as cl:  # type: ignore[arg-type]
        cfg = cl.client_config(f"optest_brokers_{uuid.uuid4().hex[:6]}")
        where = (
            f"embedded: {opts.brokers} Tansu 0.6 brokers, each in its own network namespace, on one SeaweedFS "
            f"storage, behind haproxy at {cl.bootstrap}"
            if cl.mode == "netns"
            else f"embedded (FALLBACK, no namespaces: {cl.fallback_reason}): {opts.brokers} Tansu 0.6 brokers as "
            f"processes on 127.0.0.x, on one SeaweedFS storage, behind haproxy at {cl.bootstrap}; the link down is "
            "emulated by freezing the broker (SIGSTOP)"
        )
        rep = BrokersReport(
            where=where,
            target="embedded",
            cluster=cl.describe(),
            producer={"client": "edge_agent.publish.EdgePublisher", "acks": "all", "enable.idempotence": idempotence},
        )
        say(where)
        with _pipeline(cfg, workdir, idempotence, opts.rate, say) as p:
            t0 = p.start()
            faults, marks = _faults(cl, p, opts, say)
            _finish(p, rep, opts.drain_timeout_s, say)
        horizon = 60.0
        for kind, name, t, accepted, share, detail in faults:
            rep.faults.append(
                Fault(
                    kind=kind,
                    broker=name,
                    at_s=round(t - t0, 3),
                    # acknowledged count above the accepted count at the fault: a record accepted after it is in
                    failover_s=_r(p.acked.first_increase_after(t, accepted)),
                    longest_ack_gap_s=_r(p.acked.longest_gap(t, min(t + horizon, marks["stop"]))),
                    sink_resume_s=_r(p.landed.first_increase_after(t)),
                    traffic_share=share,
                    detail=detail,
                )
            )
        rep.phases = [
            _phase(p, name, marks[a], marks[b])
            for name, a, b in (("before", "start", "kill"), ("during", "kill", "back"), ("after", "back", "stop"))
        ]
        rep.notes.append(f"haproxy's view of the brokers at the end of production: {marks['states']}")
        rep.cluster = cl.describe()
        rep.seconds = round(time.monotonic() - t_start, 1)
        if inspect is not None:
            inspect(_view(p, rep))
    rep.seconds = round(time.monotonic() - t_start, 1)
    return rep


def _faults(cl: Any, p: _Pipeline, opts: BrokersOptions, say: Progress) -> tuple[list[tuple], dict[str, Any]]:
    """The timeline: steady production, SIGKILL of the broker carrying the producer, link down of the node carrying
    it then, link up, restart of the killed one, steady production. Returns the faults (kind, broker, time,
    accepted count then, traffic share, detail) and the marks (monotonic times, haproxy's final view)."""
    t0 = time.monotonic()
    marks: dict[str, Any] = {"start": t0}
    names = [b.name for b in cl.brokers]

    def busiest(among: list[str]) -> tuple[str, float]:
        b0 = cl.bytes_to_servers()
        time.sleep(1.0)
        return _busiest(b0, cl.bytes_to_servers(), among)

    say(f"producing {opts.rate:g} events/s; {opts.before_s:g} s before the first fault")
    time.sleep(max(0.0, opts.before_s - 1.0))
    victim, victim_share = busiest(names)
    vi = names.index(victim)
    marks["kill"], n_kill = time.monotonic(), len(p.producer.ids)
    cl.kill(vi)
    say(f"[bold]SIGKILL {victim}[/bold] ({victim_share:.0%} of client bytes) at {marks['kill'] - t0:.1f} s")
    time.sleep(max(0.0, opts.settle_s - 1.0))
    part, part_share = busiest([n for n in names if n != victim])
    pi = names.index(part)
    t_down, n_down = time.monotonic(), len(p.producer.ids)
    cl.link_down(pi)
    say(
        f"[bold]link down on {part}[/bold] ({part_share:.0%} of client bytes) for {opts.link_down_s:g} s "
        f"at {t_down - t0:.1f} s"
    )
    time.sleep(opts.link_down_s)
    cl.link_up(pi)
    say(f"link up on {part} at {time.monotonic() - t0:.1f} s; restarting {victim}")
    n_restart = len(p.producer.ids)
    took = cl.restart(vi)
    marks["back"] = time.monotonic()
    say(f"{victim} back after {took:.2f} s, at {marks['back'] - t0:.1f} s; {opts.after_s:g} s more production")
    time.sleep(opts.after_s)
    marks["stop"] = time.monotonic()
    marks["states"] = cl.server_states()
    down = "node link down" if cl.mode == "netns" else "broker frozen (SIGSTOP)"
    faults = [
        ("SIGKILL", victim, marks["kill"], n_kill, victim_share, "broker process killed, no warning"),
        ("link down", part, t_down, n_down, part_share, f"{down} for {opts.link_down_s:g} s"),
        ("restart", victim, marks["back"], n_restart, None, f"ready {took:.2f} s after start"),
    ]
    return faults, marks


def _phase(p: _Pipeline, name: str, a: float, b: float) -> Phase:
    return Phase(
        name=name,
        seconds=round(b - a, 2),
        accepted_per_s=round(p.offered.rate(a, b), 1),
        acked_per_s=round(p.acked.rate(a, b), 1),
        landed_per_s=round(p.landed.rate(a, b), 1),
    )


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def _run_production(
    opts: BrokersOptions, workdir: Path, say: Progress, inspect: Callable[[RunView], None] | None
) -> BrokersReport:
    """``--bootstrap``: produce with the edge publisher and consume with the sink against a production cluster;
    nothing is killed. The warehouse is the one of ``--config``; collections and topics carry a scratch prefix."""
    base = opts.config or CloudConfig()
    idempotence = True if opts.idempotence is None else opts.idempotence
    prefix = f"optest_brokers_{uuid.uuid4().hex[:6]}"
    kafka = base.kafka.model_copy(update={"bootstrap_servers": opts.bootstrap, "topic_prefix": prefix})
    cfg = base.model_copy(update={"kafka": kafka})
    t_start = time.monotonic()
    rep = BrokersReport(
        where=f"production cluster at {opts.bootstrap} (warehouse {cfg.mongo.warehouse_db} of the config); "
        "produce/consume checks only, no fault injected",
        target="production",
        cluster={"bootstrap": opts.bootstrap, "security_protocol": cfg.kafka.security_protocol},
        producer={"client": "edge_agent.publish.EdgePublisher", "acks": "all", "enable.idempotence": idempotence},
    )
    say(rep.where)
    duration = opts.before_s + opts.after_s
    with _pipeline(cfg, workdir, idempotence, opts.rate, say) as p:
        t0 = p.start()
        say(f"producing {opts.rate:g} events/s for {duration:g} s")
        time.sleep(duration)
        t_stop = time.monotonic()
        _finish(p, rep, opts.drain_timeout_s, say)
    rep.phases = [_phase(p, "steady", t0, t_stop)]
    rep.notes.append(f"scratch topic prefix {prefix} and collection prefix {prefix}_ were left for inspection")
    rep.seconds = round(time.monotonic() - t_start, 1)
    if inspect is not None:
        inspect(_view(p, rep))
    return rep
