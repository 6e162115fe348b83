"""Edge pipeline benchmark (issue 5): throughput vs the raw inference ceiling, publish rate, latency.

    python -m ops.bench.pipeline_bench --cameras 1,2,4 --seconds 30

For each camera count N, measured in the same run on the same machine:
- ceiling: the detector alone (same model variant, threads and batch size) on
  pre-decoded vtest frames, frames/s (measured before and after the pipeline, averaged);
- pipeline: the whole agent (N file cameras of vtest.avi paced like live
  cameras at --source-fps, 15 by default, more than the detector can take, so
  the pipeline is inference-bound as a site with many cameras is; capture -> inference -> tracking -> events/keyframes ->
  publisher -> broker acks on the embedded stack), frames/s inferred;
- ratio pipeline / ceiling (target >= 0.85);
- publish: detection events/s acknowledged by the broker, and the latency
  from frame capture to broker acknowledgement (p50/p95) of new/update events
  (``end`` events carry the track's last sighting time, seconds before the
  tracker gives up on it, so they are left out of the latency).
- cpu: where the CPU went during the measured window (this process's threads by name, the stack's servers).
The embedded stack is started privately on free ports and stopped at the end; its broker keeps its records in
memory by default (``--broker-storage s3`` for SeaweedFS): on a site the broker and its storage are the cloud's
CPU, here they share the detector's two cores, and SeaweedFS's bursts alone took 0.07 to 0.3 off the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgesight.samples import VTEST, read_video_frames
from ops.bench.common import kafka_settings


def ceiling(engine, frames: list[np.ndarray], batch: int, seconds: float) -> float:
    engine.infer(frames[:batch])  # warm-up
    n, t0, i = 0, time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        b = [frames[(i + k) % len(frames)] for k in range(batch)]
        engine.infer(b)
        n += batch
        i += batch
    return n / (time.perf_counter() - t0)


def make_publisher_class():
    from edge_agent.publish.producer import EdgePublisher
    from edge_agent.publish.spool import KIND_EVENT

    class TimedPublisher(EdgePublisher):
        """Records capture -> broker-ack latency of each detection event (benchmark instrumentation)."""

        lat: list[float] = []

        def _on_delivery(self, gen, seq, kind, size, accept_ms, err, msg):
            if err is None and kind == KIND_EVENT and msg is not None:
                try:
                    doc = json.loads(msg.value())
                    if doc["kind"] == "end":  # stamped with the track's last sighting, seconds before it ends
                        raise ValueError
                    ts = doc["ts"]
                    from datetime import datetime

                    cap = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
                    self.lat.append(time.time() - cap)
                except Exception:  # noqa: BLE001
                    pass
            super()._on_delivery(gen, seq, kind, size, accept_ms, err, msg)

    return TimedPublisher


def run_pipeline(
    n_cams: int,
    seconds: float,
    kafka: dict,
    base: dict,
    tmp: Path,
    engine,
    source_fps: float,
    servers: dict[str, int] | None = None,
) -> dict:
    """The whole agent on ``n_cams`` paced file cameras for ``seconds`` (after a warm-up): frames/s inferred,
    events/s acknowledged, capture -> ack latency, and where the CPU went meanwhile (:class:`CpuAccount`: this
    process's threads and the ``servers`` processes, name -> pid)."""
    from edge_agent.agent import Agent
    from edge_agent.config import AgentConfig
    from ops.bench.cpu import CpuAccount

    cfg = AgentConfig.model_validate(
        {
            **base,
            "agent_id": f"bench{n_cams}",
            "cameras": [
                {"id": f"cam{i}", "url": str(VTEST), "loop": True, "source_fps": source_fps} for i in range(n_cams)
            ],
            "publish": {
                "kafka": {**kafka, "topic_prefix": f"bench{n_cams}{uuid.uuid4().hex[:6]}"},
                "spool": {"dir": str(tmp / f"spool{n_cams}"), "max_bytes": "512MiB"},
            },
            "control": {"enabled": False},
            "metrics": {"enabled": False},
        }
    )
    Pub = make_publisher_class()
    Pub.lat = []
    agent = Agent(cfg, engine=engine, publisher=Pub(cfg.publish, cfg.agent_id)).start()
    try:
        time.sleep(min(8.0, seconds / 3))  # warm-up: streams open, first batches
        f0, e0, t0 = (
            agent.pipeline.frames_inferred,
            agent.publisher.stats()["by_topic"]["detections"]["acked"],
            time.perf_counter(),
        )
        lat0 = len(Pub.lat)
        with CpuAccount(servers) as acct:
            time.sleep(seconds)
        dt = time.perf_counter() - t0
        f1, e1 = agent.pipeline.frames_inferred, agent.publisher.stats()["by_topic"]["detections"]["acked"]
        lat = sorted(Pub.lat[lat0:])
        drops = {c: s.counters.get("frames_dropped", {}) for c, s in agent.supervisor.status().items()}
    finally:
        agent.stop(timeout=20)
    q = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 1) if lat else None  # noqa: E731 - local shorthand
    return {
        "fps": (f1 - f0) / dt,
        "events_per_s": (e1 - e0) / dt,
        "lat_p50_ms": q(0.5),
        "lat_p95_ms": q(0.95),
        "events_timed": len(lat),
        "batches": agent.pipeline.batches,
        "dropped_overwritten": sum(d.get("overwritten_unconsumed", 0) for d in drops.values()),
        "cpu_cores": acct.cores(),
    }


def measure_pipeline(
    kafka: Any,
    cameras: list[int],
    seconds: float,
    *,
    variant: str = "int8",
    threads: int = 0,
    batch: int = 4,
    spin: bool = False,
    source_fps: float = 15.0,
    model_dir: str | None = None,
    providers: tuple[str, ...] = ("cpu",),
    on_row: Callable[[dict], None] | None = None,
    servers: dict[str, int] | None = None,
) -> dict:
    """Pipeline frames/s against the engine alone (same variant, threads, batch), per camera count, on the broker
    of ``kafka`` (a :class:`~edgesight.kafka.KafkaConfig`); ``servers`` (name -> pid, the stack's processes on
    this machine) are counted in each row's CPU breakdown. Returns {variant, providers, threads, rows}."""
    from edge_agent.inference import InferenceConfig, InferenceEngine

    inf = {
        "variant": variant,
        "classes": ["person"],
        "intra_op_threads": threads,
        "allow_spinning": spin,
        "batch_max_size": batch,
        "batch_max_wait_ms": 5,
        "model_dir": model_dir,
        "providers": list(providers),
    }
    engine = InferenceEngine(InferenceConfig(**inf))
    frames = read_video_frames(VTEST, range(64))
    base = {"inference": inf, "tracking": {"update_interval_s": 1.0}}
    tmp = Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    rows = []
    try:
        for n in cameras:
            b = min(n, batch)
            before = ceiling(engine, frames, b, max(3.0, seconds / 2))
            res = run_pipeline(n, seconds, kafka_settings(kafka), base, tmp, engine, source_fps, servers)
            after = ceiling(engine, frames, b, max(3.0, seconds / 2))  # before + after: a shared machine's load drifts
            ceil = (before + after) / 2
            row = {
                "cameras": n,
                "batch": b,
                "ceiling_fps": ceil,
                "ceiling_fps_before_after": [before, after],
                **res,
                "ratio": res["fps"] / ceil,
            }
            rows.append(row)
            if on_row:
                on_row(row)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"variant": engine.variant, "providers": engine.active_providers, "threads": threads, "rows": rows}


def server_pids(stack: Any) -> dict[str, int]:
    """The stack's running server processes (name -> pid), for the CPU breakdown."""
    return {name: svc.pid for name, svc in stack.read_state().items()}


def _print_row(row: dict) -> None:
    print(
        f"cameras={row['cameras']} batch={row['batch']} ceiling={row['ceiling_fps']:.1f} fps "
        f"pipeline={row['fps']:.1f} fps ratio={row['ratio']:.2f} events/s={row['events_per_s']:.1f} "
        f"capture->ack p50={row['lat_p50_ms']} ms p95={row['lat_p95_ms']} ms "
        f"(frames overwritten at capture: {row['dropped_overwritten']})\n  cpu (cores): "
        + ", ".join(f"{k} {v:.2f}" for k, v in row["cpu_cores"].items()),
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", default="1,2,4")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--variant", default="int8")
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0 = default)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--spin", action="store_true", help="ONNX Runtime workers spin while idle (default: sleep)")
    ap.add_argument(
        "--source-fps",
        type=float,
        default=15.0,
        help="each file camera is paced like a live camera at this rate (above the detector's ceiling, "
        "so the pipeline is inference-bound; frames it cannot take are dropped at capture)",
    )
    ap.add_argument("--model-dir", default=os.environ.get("EDGESIGHT_MODEL_DIR"))
    ap.add_argument(
        "--broker-storage",
        choices=("memory", "s3"),
        default="memory",
        help="the private broker's storage (s3: SeaweedFS on the same cores as the detector, as it is not on a site)",
    )
    args = ap.parse_args()

    from edgesight.log import setup_logging
    from ops.testing import make_stack

    setup_logging("WARNING")
    tmp = Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    stack = make_stack(tmp / "stack", broker_storage=args.broker_storage)
    stack.up()
    try:
        res = measure_pipeline(
            stack.config.kafka,
            [int(x) for x in args.cameras.split(",")],
            args.seconds,
            variant=args.variant,
            threads=args.threads,
            batch=args.batch,
            spin=args.spin,
            source_fps=args.source_fps,
            model_dir=args.model_dir,
            on_row=_print_row,
            servers=server_pids(stack),
        )
    finally:
        stack.down()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({k: res[k] for k in ("variant", "providers", "rows")}, indent=1))


if __name__ == "__main__":
    main()
