"""Stream service scaling: cameras per agent (vertical) and agents publishing to one cloud (horizontal).

- cameras per agent: the agent's capture supervisor (one worker thread per camera, latest-frame-wins hand-off)
  with 1..N looping vtest.avi file cameras and a consumer taking a frame every 200 ms (a detector's pace), in a
  child process of its own so its CPU and memory are the agent's alone (:func:`ops.bench.capture_bench.run_n`);
- agents: 1..K processes, each the agent's real publisher (:class:`edge_agent.publish.EdgePublisher`: spool,
  idempotent acks=all producer) offering a fixed event rate to the same cloud broker; what is acknowledged
  per second in total and the accept -> broker ack latency.
"""

from __future__ import annotations

import multiprocessing
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from cloud.config import CloudConfig
from ops.optest.scale import Curve, Progress, ScaleOptions, Series, point, secret_dump

AGENT_RATE = 400.0  # events/s offered by each agent (8 cameras x 50 tracked objects updated once a second)
CONSUMER_DELAY_S = 0.2  # the capture consumer's pace (a detector at 5 frames/s)


def _cameras(n: int, seconds: float) -> dict[str, Any]:
    from ops.bench.capture_bench import run_n

    return run_n(n, seconds, CONSUMER_DELAY_S, window=max(1.0, seconds / 2))


def cameras_point(n: int, seconds: float) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        r = pool.apply(_cameras, (n, seconds))
    return {
        "delivered_fps_per_camera": r["delivered_fps_per_camera"],
        "delivered_fps_total": round(r["delivered_fps_per_camera"] * n, 1),
        "age_p50_ms": r["age_ms"]["p50"],
        "age_p95_ms": r["age_ms"]["p95"],
        "cpu_pct": round(r["cpu_pct_per_camera"] * n, 1),
        "cpu_pct_per_camera": r["cpu_pct_per_camera"],
        "rss_mb": r["rss_mb_end"],
        "rss_growth_after_first_window_mb": r["rss_growth_after_first_window_mb"],
        "states": ",".join(r["states"]),
    }


def _agent(
    kafka: dict[str, Any], prefix: str, agent_id: str, spool: str, rate: float, seconds: float, start_at: float
) -> dict[str, Any]:
    """One agent process: its publisher offers ``rate`` events/s for ``seconds``, then flushes."""
    from edge_agent.publish import EdgePublisher, PublishConfig
    from edgesight.log import setup_logging
    from ops.testing.publish import event_stream

    setup_logging("WARNING")
    cfg = PublishConfig(kafka={**kafka, "client_id": agent_id}, topic_prefix=prefix, spool={"dir": spool})
    n = int(rate * seconds)
    evs = list(event_stream(agent_id, 8, n))
    pub = EdgePublisher(cfg, agent_id).start()
    time.sleep(max(0.0, start_at - time.time()))
    t0 = time.perf_counter()
    late = 0.0
    for i, ev in enumerate(evs):
        pub.publish_event(ev)
        d = t0 + (i + 1) / rate - time.perf_counter()
        if d > 0:
            time.sleep(d)
        else:
            late = max(late, -d)
    t1 = time.perf_counter()
    flushed = pub.flush(120)
    t2 = time.perf_counter()
    st = pub.stats()
    pub.close(5)
    det = st["by_topic"].get("detections", {})
    return {
        "offered": n,
        "accepted": det.get("accepted", 0),
        "acked": det.get("acked", 0),
        "flushed": flushed,
        "offer_s": t1 - t0,
        "ack_s": t2 - t0,
        "lat_p50_ms": (st["latency_s"]["p50"] or 0) * 1e3,
        "lat_p95_ms": (st["latency_s"]["p95"] or 0) * 1e3,
        "max_behind_s": late,
    }


def agents_point(cfg: CloudConfig, k: int, seconds: float, work: Path) -> dict[str, Any]:
    from edge_agent.publish import PublishConfig, edge_topic_specs
    from edgesight.kafka import ensure_topics
    from edgesight.wire import Topics

    prefix = f"sa{uuid.uuid4().hex[:8]}"
    kafka = secret_dump(cfg.kafka)
    ensure_topics(
        cfg.kafka.client_config(), edge_topic_specs(PublishConfig(kafka=kafka, topic_prefix=prefix), partitions=3)
    )
    spools = [work / f"{prefix}-agent{i}" for i in range(k)]
    ctx = multiprocessing.get_context("spawn")
    try:
        start_at = time.time() + 4.0 + 0.8 * k
        with ctx.Pool(k) as pool:
            res = pool.starmap(
                _agent,
                [(kafka, prefix, f"scale-agent-{i}", str(spools[i]), AGENT_RATE, seconds, start_at) for i in range(k)],
            )
    finally:
        for s in spools:
            shutil.rmtree(s, ignore_errors=True)
    acked = sum(r["acked"] for r in res)
    wall = max(r["ack_s"] for r in res)
    on_topic = count_records(cfg, Topics(prefix).detections)
    return {
        "offered_per_s": round(k * AGENT_RATE, 1),
        "acked_per_s": round(acked / wall, 1),
        "acked": acked,
        "on_topic": on_topic,
        "all_flushed": all(r["flushed"] for r in res),
        "lat_p50_ms": round(max(r["lat_p50_ms"] for r in res), 1),
        "lat_p95_ms": round(max(r["lat_p95_ms"] for r in res), 1),
        "max_behind_s": round(max(r["max_behind_s"] for r in res), 2),
    }


def count_records(cfg: CloudConfig, topic: str, timeout_s: float = 60.0) -> int:
    """Records on ``topic`` counted by reading it from the start (not the broker's high watermarks)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(
        {
            **cfg.kafka.client_config(),
            "group.id": f"scale-count-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        md = c.list_topics(topic, timeout=10)
        parts = sorted(md.topics[topic].partitions)
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        n, idle_since = 0, time.monotonic()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and time.monotonic() - idle_since < 3.0:
            msgs = c.consume(1000, timeout=0.5)
            good = [m for m in msgs if m.error() is None]
            if good:
                n += len(good)
                idle_since = time.monotonic()
        return n
    finally:
        c.close()


def stream_curves(cfg: CloudConfig, opts: ScaleOptions, work: Path, progress: Progress, suffix: str) -> list[Curve]:
    cams = Curve(
        name="stream-cameras",
        service="stream",
        title=f"Edge agent capture: cameras per agent ({suffix})",
        x="cameras",
        x_label="file cameras (vtest.avi, 10 fps) in one agent process",
        y_label="delivered frames/s (all cameras) / CPU %",
        y2_label="frame age at hand-off, p95 ms",
        series=[
            Series("delivered_fps_total", "delivered frames/s, all cameras"),
            Series("cpu_pct", "CPU % of the agent process"),
            Series("age_p95_ms", "frame age p95 ms", axis=2),
        ],
        columns=["cameras", "delivered_fps_per_camera", "delivered_fps_total", "age_p50_ms", "age_p95_ms", "cpu_pct"]
        + ["cpu_pct_per_camera", "rss_mb", "rss_growth_after_first_window_mb", "states"],
        notes=[
            f"capture supervisor only (decode + hand-off), consumer takes the newest frames every "
            f"{CONSUMER_DELAY_S * 1000:.0f} ms; {opts.seconds:g} s per point after 2 s warm-up, own process."
        ],
    )
    for n in range(1, opts.max_cameras + 1):
        progress(f"stream: {n} camera(s) in one agent")
        r = point(cams.rows, {"cameras": n}, lambda n=n: cameras_point(n, opts.seconds))
        progress(f"stream: {n} camera(s): {r.get('delivered_fps_total') or r.get('error')} frames/s delivered")
    agents = Curve(
        name="stream-agents",
        service="stream",
        title=f"Edge agents publishing to one cloud broker ({suffix})",
        x="agents",
        x_label="agents (processes, each the edge publisher)",
        y_label="detection events/s",
        y2_label="accept -> broker ack, p95 ms",
        series=[
            Series("offered_per_s", "offered events/s"),
            Series("acked_per_s", "acknowledged events/s"),
            Series("lat_p95_ms", "accept -> ack p95 ms", axis=2),
        ],
        columns=["agents", "offered_per_s", "acked_per_s", "acked", "on_topic", "lat_p50_ms", "lat_p95_ms"]
        + ["max_behind_s", "all_flushed"],
        notes=[
            f"each agent offers {AGENT_RATE:g} events/s for {opts.seconds:g} s through its publisher (spool + "
            "idempotent acks=all producer); on_topic = records read back from the topic."
        ],
    )
    for k in range(1, opts.max_agents + 1):
        progress(f"stream: {k} agent(s) publishing")
        r = point(agents.rows, {"agents": k}, lambda k=k: agents_point(cfg, k, opts.seconds, work))
        progress(f"stream: {k} agent(s): {r.get('acked_per_s') or r.get('error')} events/s acknowledged")
    return [cams, agents]
