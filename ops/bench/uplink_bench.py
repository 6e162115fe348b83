"""Uplink benchmark: the bytes a camera costs on the edge -> cloud link, against sending every frame as JPEG.

    python -m ops.bench.uplink_bench --cameras 1 --seconds 120

A real edge agent (looping vtest.avi cameras at their native 10 fps, the int8 detector, the agent's default
tracking and keyframe policy) publishes to a private embedded stack for ``--seconds``. Then every record it
produced is read back from its three topics (detections, keyframes, status) and its Kafka record bytes are
summed as produced: key + value + header names and values (before librdkafka's batch compression, which only
shrinks the JSON part). The baseline is every frame the cameras delivered (their ``frames_read`` counters),
each as a JPEG encoded exactly as the agent encodes keyframes (same quality, size bound and width cap; the
mean size over vtest.avi's frames measured in the same run). Both are given per camera-hour; the target is a
ratio <= 0.02.

Every track must keep its keyframe: a track (camera, track id in the detection events) counts as kept when one
of its events references a keyframe that arrived (``keyframe.keyframe_id``), or a keyframe names it. With the
default policy (``keyframes.crop: track``) a track's keyframe is the crop of its box; ``keyframe_crops`` and
``keyframe_whole_frames`` count the two kinds that arrived.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgesight.samples import VTEST, read_video_frames
from ops.bench.common import vtest_agent

TARGET_RATIO = 0.02


def jpeg_frame_bytes(policy: Any, step: int = 4) -> dict[str, float]:
    """Mean JPEG size of vtest.avi's frames (every ``step``-th) encoded as the agent encodes keyframes."""
    from edge_agent.publish.keyframes import encode_jpeg_bounded

    frames = read_video_frames(VTEST, range(0, 795, step))
    sizes = [
        len(
            encode_jpeg_bounded(
                f,
                quality=policy.jpeg_quality,
                min_quality=policy.min_jpeg_quality,
                max_bytes=policy.max_bytes,
                max_width=policy.max_width,
            )[0]
        )
        for f in frames
    ]
    return {"frames": len(sizes), "mean_bytes": sum(sizes) / len(sizes), "quality": policy.jpeg_quality}


def read_back(kafka_conf: dict, topics: list[str], expected: int, timeout_s: float = 60.0) -> list[Any]:
    """Every record of ``topics`` from the beginning (a fresh group), until ``expected`` arrived or it is idle."""
    from confluent_kafka import Consumer

    c = Consumer(
        {
            **kafka_conf,
            "group.id": f"uplink-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    c.subscribe(topics)
    out: list[Any] = []
    deadline, idle_since = time.monotonic() + timeout_s, None
    try:
        while len(out) < expected and time.monotonic() < deadline:
            msgs = c.consume(num_messages=1000, timeout=0.5)
            good = [m for m in msgs if m.error() is None]
            out += good
            if good:
                idle_since = None
            elif out:
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > 10:
                    break
    finally:
        c.close()
    return out


def record_bytes(msg: Any) -> int:
    """A Kafka record's bytes as produced: key + value + header names and values."""
    n = len(msg.key() or b"") + len(msg.value() or b"")
    for k, v in msg.headers() or ():
        n += len(k.encode()) + len(v or b"")
    return n


def measure_uplink(
    cloud_config: Any,
    model_dir: str | Path | None,
    *,
    cameras: int = 1,
    seconds: float = 60.0,
    variant: str = "int8",
    providers: tuple[str, ...] = ("cpu",),
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Run an agent with ``cameras`` vtest cameras for ``seconds`` on the broker of ``cloud_config``; its uplink
    bytes per camera-hour against every frame as JPEG, and how many tracks kept a keyframe."""
    from edge_agent.agent import Agent
    from edge_agent.config import AgentConfig
    from edge_agent.publish import edge_topic_specs
    from edgesight.kafka import ensure_topics
    from edgesight.wire import WireError, decode_event, decode_keyframe

    say = progress or (lambda _m: None)
    tmp = Path(tempfile.mkdtemp(prefix="uplink-bench-"))
    cfg = AgentConfig.model_validate(
        vtest_agent(
            cloud_config, model_dir, cameras, tmp / "spool", name="uplink", variant=variant, providers=providers
        )
    )
    try:
        ensure_topics(cfg.publish.kafka.client_config(), edge_topic_specs(cfg.publish, partitions=3))
        jpeg = jpeg_frame_bytes(cfg.publish.keyframes)
        say(f"uplink: every-frame JPEG baseline {jpeg['mean_bytes'] / 1000:.1f} kB/frame; agent runs {seconds:.0f}s")
        agent = Agent(cfg).start()
        t0 = time.monotonic()
        try:
            time.sleep(seconds)
            frames_read = sum(s.counters.get("frames_read", 0) for s in agent.supervisor.status().values())
            elapsed = time.monotonic() - t0
        finally:
            agent.stop(timeout=30)
        acked = {k: v["acked"] for k, v in agent.publisher.stats()["by_topic"].items()}
        t = cfg.publish.topics
        say(f"uplink: reading back {sum(acked.values())} records")
        msgs = read_back(cfg.publish.kafka.client_config(), [t.detections, t.keyframes, t.status], sum(acked.values()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    by_topic: dict[str, dict[str, int]] = {}
    tracks: set[tuple[str, int]] = set()
    kept: set[tuple[str, int]] = set()
    refs: dict[tuple[str, int], set[str]] = {}
    arrived: dict[str, tuple[Any, bytes]] = {}
    bad = 0
    for m in msgs:
        name = {t.detections: "detections", t.keyframes: "keyframes", t.status: "status"}[m.topic()]
        d = by_topic.setdefault(name, {"records": 0, "bytes": 0})
        d["records"] += 1
        d["bytes"] += record_bytes(m)
        try:
            if name == "detections":
                ev = decode_event(m.value())
                if ev.track_id is not None:
                    key = (ev.camera_id, ev.track_id)
                    tracks.add(key)
                    if ev.keyframe is not None:
                        refs.setdefault(key, set()).add(ev.keyframe.keyframe_id)
            elif name == "keyframes":
                meta, jpeg_bytes = decode_keyframe(m.key(), m.value(), m.headers())
                arrived[meta.keyframe_id] = (meta, jpeg_bytes)
                if meta.track_id is not None:
                    kept.add((meta.camera_id, meta.track_id))
        except WireError:
            bad += 1
    kept |= {k for k, ids in refs.items() if ids & arrived.keys()}
    total = sum(d["bytes"] for d in by_topic.values())
    cam_hours = cameras * elapsed / 3600.0
    baseline_total = frames_read * jpeg["mean_bytes"]
    missing = sorted(tracks - kept)
    crops = [len(data) for meta, data in arrived.values() if meta.crop is not None]
    return {
        "cameras": cameras,
        "seconds": elapsed,
        "frames_read": frames_read,
        "records_acked": acked,
        "records_read": len(msgs),
        "undecodable": bad,
        "by_topic": by_topic,
        "bytes": total,
        "bytes_per_camera_hour": total / cam_hours,
        "jpeg": jpeg,
        "every_frame_jpeg_bytes": baseline_total,
        "every_frame_jpeg_bytes_per_camera_hour": baseline_total / cam_hours,
        "ratio": total / baseline_total if baseline_total else None,
        "ratio_without_keyframes": (total - by_topic.get("keyframes", {}).get("bytes", 0)) / baseline_total
        if baseline_total
        else None,
        "tracks": len(tracks),
        "tracks_with_keyframe": len(tracks & kept),
        "tracks_missing_keyframe": [f"{c}/{tid}" for c, tid in missing[:20]],
        "keyframes": len(arrived),
        "keyframe_crops": len(crops),
        "keyframe_crop_mean_bytes": sum(crops) / len(crops) if crops else None,
        "keyframe_whole_frames": len(arrived) - len(crops),
    }


def main(argv: list[str] | None = None) -> int:
    import os

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--model-dir", default=os.environ.get("EDGESIGHT_MODEL_DIR"))
    a = ap.parse_args(argv)
    if a.cameras < 1 or a.seconds <= 0:
        ap.error("--cameras must be >= 1 and --seconds > 0")
    from edgesight.log import setup_logging
    from ops.testing import make_stack

    setup_logging("WARNING")
    tmp = Path(tempfile.mkdtemp(prefix="uplink-stack-"))
    st = make_stack(tmp)
    st.up()
    try:
        r = measure_uplink(st.config, a.model_dir, cameras=a.cameras, seconds=a.seconds, progress=print)
    finally:
        st.down()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(r, indent=1))
    print(
        f"uplink: {r['bytes_per_camera_hour'] / 1e6:.1f} MB per camera-hour vs every frame as JPEG "
        f"{r['every_frame_jpeg_bytes_per_camera_hour'] / 1e6:.0f} MB -> ratio {r['ratio']:.4f} (target <= "
        f"{TARGET_RATIO}); tracks with a keyframe {r['tracks_with_keyframe']}/{r['tracks']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
