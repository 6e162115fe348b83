"""End-to-end latency (issue 15): frame capture -> detection document visible in MongoDB, -> keyframe in S3.

    python -m ops.bench.e2e_bench --cameras 4 --seconds 30            # on a private embedded stack
    python -m ops.bench.e2e_bench --config cloud.yaml --cameras 4     # on the stack of a cloud config

A real agent (N looping vtest file cameras paced like live cameras, the int8 detector, tracking, events and
keyframes, the publisher and its spool) and the real connector runner (MongoDB sink of detections, S3 sink of
keyframes with its warehouse index) run in this process against the stack. Every detection event whose frame was
captured inside the measured window is followed through, on one clock (``time.time()`` of this process):

==========  ===========================================================================================
capture     frame capture (the event's ``ts``) -> its batch enters the detector (waiting in the hand-off)
inference   that batch's detector run (letterbox, network, NMS)
publish     detector done -> the event accepted by the publisher (tracking, zones, keyframe JPEG, spool)
broker      accepted -> the broker's acknowledgement
sink_batch  acknowledged -> the sink's ``bulk_write`` that holds it returned (consume, batch, write)
visible     that write returned -> the document seen by this process's watcher
==========  ===========================================================================================

The six stages add up to the total. The watcher is a MongoDB change stream on the detections collection when
the server offers one (nx-27017 does), else an indexed ``_id $in`` query of the pending ids every 20 ms; its
resolution is measured at start (insert -> seen, median of probes) and reported. Keyframes: from the keyframe's
capture ``ts`` to the first successful ``head_object`` of its S3 object (polled every 50 ms), whose key the S3
sink names from the record's partition, offset and timestamp (known from the broker's ack). ``end`` events are left out (they carry the track's last
sighting, seconds before the tracker gives up on it). Nothing is mocked; the instrumentation only wraps methods of
this benchmark's own agent and runner objects.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from edgesight.log import get_logger
from edgesight.samples import VTEST

log = get_logger("bench.e2e")

STAGES = ("capture", "inference", "publish", "broker", "sink_batch", "visible")
POLL_S = 0.02
S3_POLL_S = 0.05


def _ts(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _quantiles(xs: list[float]) -> dict[str, float | None]:
    s = sorted(xs)

    def q(p: float) -> float | None:
        return round(s[min(len(s) - 1, int(p * len(s)))], 4) if s else None

    return {"p50_s": q(0.5), "p95_s": q(0.95), "p99_s": q(0.99)}


class Clock:
    """Timestamps of the stages, keyed by event id / (camera, seq) / keyframe id (written by several threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.infer: dict[tuple[str, int], tuple[float, float]] = {}  # (camera, seq) -> (batch start, batch done)
        self.frame_age: list[tuple[float, float]] = []  # (batch start, its age then) of every inferred frame
        self.accepted: dict[str, tuple[float, str, int, str, float]] = {}  # event id -> (t, camera, seq, kind, ts)
        self.acked: dict[str, float] = {}
        self.written: dict[str, float] = {}  # event id -> the sink's bulk write returned
        self.visible: dict[str, float] = {}
        self.keyframes: dict[str, float] = {}  # keyframe object_key -> capture ts
        self.s3_key: dict[str, str] = {}  # keyframe object_key -> its S3 key (from the broker's ack)
        self.s3_seen: dict[str, float] = {}  # S3 key -> first readable


def _instrument_agent(agent: Any, clock: Clock, s3_sink: Any) -> None:
    """Wrap the detector call and the publisher of this benchmark's agent to stamp each frame and event; a
    keyframe's S3 key is named from its broker ack by the S3 sink (``s3_sink``) that will write it."""
    pipeline, engine = agent.pipeline, agent.engine
    done = threading.local()

    class TimedDetector:
        def infer(self, frames):
            out = engine.infer(frames)
            done.t = time.time()
            return out

    timed = TimedDetector()
    pipeline.detector_ref = lambda: timed
    orig_batch = pipeline._infer_batch

    def infer_batch(frames: list) -> None:
        t0 = time.time()
        done.t = None
        orig_batch(frames)
        if done.t is not None:
            with clock.lock:
                for f in frames:
                    clock.infer[(f.camera_id, f.seq)] = (t0, done.t)
                    clock.frame_age.append((t0, t0 - f.ts))

    pipeline._infer_batch = infer_batch
    pub = agent.publisher
    orig_event, orig_keyframe, orig_delivery = pub.publish_event, pub.publish_keyframe, pub._on_delivery

    def publish_event(event: Any) -> int:
        seq = orig_event(event)
        with clock.lock:
            clock.accepted[event.event_id] = (time.time(), event.camera_id, event.seq, event.kind, _ts(event.ts))
        return seq

    def publish_keyframe(meta: Any, jpeg: bytes) -> int:
        with clock.lock:
            clock.keyframes[meta.object_key] = _ts(meta.ts)
        return orig_keyframe(meta, jpeg)

    def on_delivery(gen, seq, kind, size, accept_ms, err, msg) -> None:
        if err is None and msg is not None and msg.topic().endswith(".detections.v1"):
            try:
                event_id = json.loads(msg.value())["event_id"]
            except (ValueError, KeyError, TypeError):
                event_id = None
            if event_id:
                with clock.lock:
                    clock.acked[event_id] = time.time()
        elif err is None and msg is not None and msg.topic().endswith(".keyframes.v1"):
            try:
                key = s3_sink.object_key(msg.topic(), msg.partition(), s3_sink.encoded_partition(msg), msg.offset())
            except ValueError:  # no record timestamp: the sink dead-letters it
                key = None
            if key:
                with clock.lock:
                    clock.s3_key[msg.key().decode()] = key
        orig_delivery(gen, seq, kind, size, accept_ms, err, msg)

    pub.publish_event, pub.publish_keyframe, pub._on_delivery = publish_event, publish_keyframe, on_delivery


def _instrument_mongo_sink(handler: Any, clock: Clock) -> None:
    """Stamp each document when the sink's bulk write that holds it returns."""
    orig_open = handler.open

    def open_(loop: Any) -> None:
        orig_open(loop)
        sink = handler.sink
        orig_write = sink.write

        def write(items: list) -> Any:
            res = orig_write(items)
            t = time.time()
            with clock.lock:
                for it in items:
                    clock.written[it.payload["_id"]] = t
            return res

        sink.write = write

    handler.open = open_


class _MongoWatcher(threading.Thread):
    """Records when each detection document becomes visible: a change stream, else an indexed poll."""

    def __init__(self, coll: Any, clock: Clock):
        super().__init__(name="e2e-mongo-watch", daemon=True)
        self.coll, self.clock = coll, clock
        self.stop_evt = threading.Event()
        self.method = "change stream"
        self.stream: Any = None
        try:
            self.stream = coll.watch(max_await_time_ms=50)
        except Exception as e:  # noqa: BLE001 - the server lacks change streams: poll instead
            self.method = f"indexed _id poll every {POLL_S * 1000:.0f} ms (no change stream: {type(e).__name__})"

    def run(self) -> None:
        if self.stream is not None:
            with self.stream:
                while not self.stop_evt.is_set():
                    ch = self.stream.try_next()
                    if ch is not None and ch.get("operationType") in ("insert", "replace", "update"):
                        t = time.time()
                        with self.clock.lock:
                            self.clock.visible.setdefault(ch["documentKey"]["_id"], t)
            return
        while not self.stop_evt.wait(POLL_S):
            with self.clock.lock:
                pending = [i for i in self.clock.acked if i not in self.clock.visible]
            for k in range(0, len(pending), 500):
                found = [d["_id"] for d in self.coll.find({"_id": {"$in": pending[k : k + 500]}}, {"_id": 1})]
                t = time.time()
                with self.clock.lock:
                    for i in found:
                        self.clock.visible.setdefault(i, t)


class _S3Watcher(threading.Thread):
    """Records when each acknowledged keyframe's S3 object becomes readable (``head_object`` every 50 ms)."""

    def __init__(self, s3: Any, bucket: str, clock: Clock):
        super().__init__(name="e2e-s3-watch", daemon=True)
        self.s3, self.bucket, self.clock = s3, bucket, clock
        self.stop_evt = threading.Event()

    def run(self) -> None:
        from botocore.exceptions import ClientError

        while not self.stop_evt.wait(S3_POLL_S):
            with self.clock.lock:
                pending = [k for k in self.clock.s3_key.values() if k not in self.clock.s3_seen]
            for key in pending:
                try:
                    self.s3.head_object(Bucket=self.bucket, Key=key)
                except ClientError:
                    continue  # not there yet
                except Exception as e:  # noqa: BLE001 - a slow or restarting S3: try again next tick
                    log.warning("S3 head_object failed", extra={"error": repr(e)})
                    break
                t = time.time()
                with self.clock.lock:
                    self.clock.s3_seen.setdefault(key, t)


def _watch_resolution(coll: Any, watcher_cls: type[_MongoWatcher], probes: int = 5) -> float | None:
    """Median insert -> seen delay of ``probes`` documents through a watcher of the same kind (its resolution)."""
    clock = Clock()
    w = watcher_cls(coll, clock)
    w.start()
    delays = []
    try:
        time.sleep(0.2)
        for i in range(probes):
            pid = f"probe-{uuid.uuid4().hex}"
            coll.insert_one({"_id": pid, "i": i})
            t0 = time.time()
            with clock.lock:
                clock.acked[pid] = t0  # the poll fallback watches acked ids
            deadline = time.monotonic() + 5
            while pid not in clock.visible and time.monotonic() < deadline:
                time.sleep(0.002)
            if pid in clock.visible:
                delays.append(max(0.0, clock.visible[pid] - t0))
    finally:
        w.stop_evt.set()
        w.join(2)
    return round(statistics.median(delays), 4) if delays else None


class E2ERun:
    """The agent, the sink runner and the watchers of one measurement, on the stack of ``cloud_config`` (a
    :class:`cloud.config.CloudConfig`): entered, everything runs and :attr:`clock` fills; left, all is stopped
    (the agent first, if :meth:`stop_agent` was not called). Shared by :func:`measure_e2e` and the soak."""

    def __init__(
        self,
        cloud_config: Any,
        model_dir: str | Path | None,
        *,
        cameras: int,
        progress: Callable[[str], None] | None = None,
    ):
        if cameras < 1:
            raise ValueError(f"cameras must be >= 1, got {cameras}")
        self.cloud_config, self.model_dir, self.cameras = cloud_config, model_dir, cameras
        self.say = progress or (lambda _m: None)
        self.clock = Clock()
        self.prefix = f"e2e{uuid.uuid4().hex[:8]}"
        self.watchers: list[Any] = []
        self.runner: Any = None
        self.agent: Any = None
        self.resolution: float | None = None
        self.method = ""
        self.tmp = Path(tempfile.mkdtemp(prefix="e2e-bench-"))

    def __enter__(self) -> E2ERun:
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        from cloud.warehouse import WarehouseConfig
        from cloud.warehouse.schema import Names, init_warehouse
        from connectors.runner import ConnectorRunner
        from connectors.spec import load_connector, variables
        from connectors.tasks import MongoSinkHandler, S3SinkHandler
        from edge_agent.agent import Agent
        from edge_agent.config import AgentConfig
        from edgesight.kafka import ensure_topics
        from ops.bench.common import kafka_settings

        prefix, clock = self.prefix, self.clock
        kafka = self.cloud_config.kafka.model_copy(update={"topic_prefix": prefix, "session_timeout_ms": 6000})
        cfg = self.cloud_config.model_copy(update={"kafka": kafka})
        wh = WarehouseConfig(collection_prefix=f"{prefix}_")
        names = Names(wh.collection_prefix)
        mongo = cfg.mongo.client()
        init_warehouse(mongo, cfg.mongo.warehouse_db, wh)
        db = mongo[cfg.mongo.warehouse_db]
        self.detections = db[names.detections]
        self.resolution = _watch_resolution(db[f"{prefix}_probe"], _MongoWatcher)
        v = variables(cfg, collection_prefix=wh.collection_prefix, name_prefix=f"{prefix}-")
        self.runner = runner = ConnectorRunner(
            [load_connector(n, v) for n in ("mongo-sink-detections", "s3-sink-keyframes")],
            cfg,
            tasks=1,
            warehouse=(mongo, cfg.mongo.warehouse_db, names.keyframes),
        )
        s3_sink = None
        for task in runner.tasks:
            if isinstance(task.loop.handler, MongoSinkHandler):
                _instrument_mongo_sink(task.loop.handler, clock)
            elif isinstance(task.loop.handler, S3SinkHandler):
                s3_sink = task.loop.handler
        ensure_topics(cfg.kafka.client_config(), runner.wanted_topics())
        mw = _MongoWatcher(self.detections, clock)
        self.method = mw.method
        self.watchers = [mw, _S3Watcher(cfg.s3.client(), cfg.s3.keyframe_bucket, clock)]
        for w in self.watchers:
            w.start()
        runner.start()
        joined = time.monotonic() + 60
        while not all(t.loop.stats.assigned for t in runner.tasks):  # records are not timed through a group join
            if time.monotonic() > joined or runner.errors():
                raise RuntimeError(f"the sink runner's consumers got no partitions within 60 s: {runner.errors()}")
            time.sleep(0.1)
        self.say(f"sink runner started; documents watched through a {mw.method} (resolution {self.resolution} s)")
        agent_cfg = AgentConfig.model_validate(
            {
                "agent_id": f"{prefix}-agent",
                "cameras": [{"id": f"cam{i}", "url": str(VTEST), "loop": True} for i in range(self.cameras)],
                "inference": {
                    "model_dir": str(self.model_dir) if self.model_dir else None,
                    "variant": "int8",
                    "classes": ["person"],
                    "providers": ["cpu"],
                },
                "tracking": {"update_interval_s": 1.0},
                "publish": {
                    "kafka": {**kafka_settings(cfg.kafka), "topic_prefix": prefix},
                    "spool": {"dir": str(self.tmp / "spool"), "max_bytes": "256MiB"},
                },
                "control": {"enabled": False},
                "metrics": {"enabled": False},
            }
        )
        self.agent = Agent(agent_cfg)
        _instrument_agent(self.agent, clock, s3_sink)
        self.agent.start()
        self.say(f"agent started with {self.cameras} camera(s)")

    def stop_agent(self) -> None:
        """Stop the agent (it ends its tracks and flushes its publisher); the sink and watchers keep running."""
        if self.agent is not None:
            agent, self.agent = self.agent, None
            agent.stop(timeout=20)

    def events_between(self, t_from: float, t_to: float) -> tuple[dict[str, tuple], set[str]]:
        """Acknowledged non-``end`` events and keyframes whose frame was captured in [t_from, t_to]."""
        clock = self.clock
        with clock.lock:
            events = {
                e: a for e, a in clock.accepted.items() if a[3] != "end" and t_from <= a[4] <= t_to and e in clock.acked
            }
            keyframes = {k for k, ts in clock.keyframes.items() if t_from <= ts <= t_to and k in clock.s3_key}
        return events, keyframes

    def wait_arrived(self, events: dict[str, tuple], keyframes: set[str], timeout: float) -> None:
        """Until every event of ``events`` is visible and every keyframe readable, or ``timeout`` s."""
        clock = self.clock
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with clock.lock:
                missing = sum(1 for e in events if e not in clock.visible)
                missing += sum(1 for k in keyframes if clock.s3_key[k] not in clock.s3_seen)
            if not missing:
                return
            time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop_agent()
        finally:
            for w in self.watchers:
                w.stop_evt.set()
            if self.runner is not None:
                self.runner.stop()
            for w in self.watchers:
                w.join(5)
            shutil.rmtree(self.tmp, ignore_errors=True)


def measure_e2e(
    cloud_config: Any,
    model_dir: str | Path | None,
    *,
    cameras: int,
    seconds: float,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Capture -> document visible in MongoDB (p50/p95/p99) and -> keyframe readable in S3, with the stages, for
    an agent of ``cameras`` vtest cameras measured for ``seconds`` on the stack of ``cloud_config`` (a
    :class:`cloud.config.CloudConfig`). See the module docstring for what each figure spans."""
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    with E2ERun(cloud_config, model_dir, cameras=cameras, progress=progress) as run:
        warm = min(5.0, max(1.0, seconds / 3))
        run.say(f"warming up {warm:.0f} s")
        time.sleep(warm)
        t_from = time.time()
        run.say(f"measuring {seconds:g} s")
        time.sleep(seconds)
        t_to = time.time()
        run.stop_agent()
        events, keyframes = run.events_between(t_from, t_to)
        run.say(f"agent stopped; waiting for {len(events)} documents and {len(keyframes)} keyframes to arrive")
        run.wait_arrived(events, keyframes, 30 + seconds / 2)
        found = run.detections.count_documents({"_id": {"$in": list(events)}})
    return _report(run.clock, events, keyframes, found, run.resolution, run.method, cameras, seconds)


def event_stages(clock: Clock, event_id: str, accepted: tuple[float, str, int, str, float]) -> tuple[float, ...] | None:
    """The six stage durations of one event (they add up to capture -> visible), None while not visible (caller
    holds no lock: dict reads are atomic)."""
    t_acc, cam, seq, _kind, ts = accepted
    t_vis, t_inf, t_ack = clock.visible.get(event_id), clock.infer.get((cam, seq)), clock.acked.get(event_id)
    if t_vis is None or t_inf is None or t_ack is None:
        return None
    t_w = min(max(clock.written.get(event_id) or t_vis, t_ack), t_vis)  # written between the ack and the sighting
    return (t_inf[0] - ts, t_inf[1] - t_inf[0], t_acc - t_inf[1], t_ack - t_acc, t_w - t_ack, t_vis - t_w)


def _report(
    clock: Clock,
    measured: dict[str, tuple[float, str, int, str, float]],
    kf_ids: set[str],
    documents: int,
    resolution: float | None,
    method: str,
    cameras: int,
    seconds: float,
) -> dict[str, Any]:
    total: list[float] = []
    stage: dict[str, list[float]] = {s: [] for s in STAGES}
    for e, a in measured.items():
        got = event_stages(clock, e, a)
        if got is None:
            continue
        total.append(sum(got))
        for name, d in zip(STAGES, got):
            stage[name].append(d)
    kf = [clock.s3_seen[clock.s3_key[k]] - clock.keyframes[k] for k in kf_ids if clock.s3_key[k] in clock.s3_seen]
    q, kq = _quantiles(total), _quantiles(kf)
    return {
        "cameras": cameras,
        "seconds": seconds,
        **q,
        "keyframe_p50_s": kq["p50_s"],
        "keyframe_p95_s": kq["p95_s"],
        "stages": {s: {k: v for k, v in _quantiles(xs).items() if k != "p99_s"} for s, xs in stage.items()},
        "samples": len(total),
        "documents": documents,
        "events_measured": len(measured),
        "keyframes": len(kf),
        "keyframes_expected": len(kf_ids),
        "observer": {
            "mongo": method,
            "mongo_resolution_s": resolution,
            "s3": f"head_object of each acknowledged keyframe's key every {S3_POLL_S * 1000:.0f} ms",
        },
    }


def add_run_args(ap: argparse.ArgumentParser) -> None:
    """The options the e2e bench and the soak share: cameras, the stack, the model store."""
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--config", type=Path, help="cloud config of a running stack (default: a private stack)")
    ap.add_argument("--model-dir", type=Path, help="model store (default: $EDGESIGHT_MODEL_DIR or ~/.cache)")


def check_run_args(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not 1 <= args.cameras <= 64:
        ap.error(f"--cameras must be 1..64, got {args.cameras}")
    if args.config is not None and not args.config.is_file():
        ap.error(f"--config {args.config}: no such file")
    if args.model_dir is not None and not args.model_dir.is_dir():
        ap.error(f"--model-dir {args.model_dir}: no such directory")


@contextlib.contextmanager
def cloud_of(args: argparse.Namespace, console: Any) -> Iterator[Any]:
    """The CloudConfig of ``--config``, or of a private stack started here and stopped (and deleted) after."""
    if args.config is not None:
        from ops.cli_common import load_cloud

        yield load_cloud(args.config)
        return
    from ops.testing import make_stack

    stack = make_stack(Path(tempfile.mkdtemp(prefix="bench-stack-")) / "stack")
    try:
        with console.status("starting a private stack"):
            stack.up()
        yield stack.config
    finally:
        stack.down()
        shutil.rmtree(stack.data_dir.parent, ignore_errors=True)


def main() -> None:
    from edgesight.log import setup_logging
    from edgesight.term import cli_console, esc

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(ap)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    args = ap.parse_args()
    check_run_args(ap, args)
    if not 1 <= args.seconds <= 3600:
        ap.error(f"--seconds must be 1..3600, got {args.seconds:g}")
    setup_logging("WARNING", service="e2e-bench")
    console = cli_console()
    with cloud_of(args, console) as cloud, console.status("measuring") as st:
        res = measure_e2e(
            cloud,
            args.model_dir,
            cameras=args.cameras,
            seconds=args.seconds,
            progress=lambda m: (console.print(f"  {esc(m)}"), st.update(esc(m))),
        )
    console.print(
        f"capture -> document visible: p50 {res['p50_s']} s, p95 {res['p95_s']} s, p99 {res['p99_s']} s "
        f"({res['samples']} events); capture -> keyframe in S3: p50 {res['keyframe_p50_s']} s, "
        f"p95 {res['keyframe_p95_s']} s ({res['keyframes']} keyframes)"
    )
    for name, s in res["stages"].items():
        console.print(f"  {name:<11} p50 {s['p50_s']} s  p95 {s['p95_s']} s")
    console.print(f"  observed through: {esc(res['observer'])}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
