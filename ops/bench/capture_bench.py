"""Capture benchmark: N looping vtest cameras, a deliberately slow consumer.

::

    python -m ops.bench.capture_bench --cameras 1,2,4,8 --seconds 60 --consumer-delay-ms 200
    python -m ops.bench.capture_bench --decode-cost          # thread vs process decode figures

For each N it runs a :class:`~edge_agent.capture.Supervisor` with N cameras reading
vtest.avi (768x576, 10 fps) looped at native rate, and one consumer that takes the
newest frame of every camera with ``wait_any`` then sleeps ``--consumer-delay-ms`` (a
slow detector). It prints, per N: frames delivered per camera (into the hand-off slot)
and taken by the consumer, the age of the frames the consumer got (p50/p95/max) in the
first and last window (``--window`` s, default min(60, seconds/3)) to show there is no
drift, CPU per camera (process CPU time / wall / N) and resident memory at start and
end.

``--decode-cost`` measures what a frame costs to decode in a thread and in a separate
process that ships frames back through a pipe, for vtest and a 1080p H.264 clip made
with ffmpeg; the figures back the thread choice in ``edge_agent.capture.worker``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from edgesight.samples import VTEST


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def run_n(n: int, seconds: float, delay_s: float, window: float, source: str = str(VTEST)) -> dict:
    from edge_agent.capture import CameraConfig, Supervisor

    cams = [CameraConfig(id=f"cam{i}", url=source, loop=True) for i in range(n)]
    sup = Supervisor(cams)
    ages: list[tuple[float, float]] = []  # (time since start, age)
    taken = {c.id: 0 for c in cams}
    stop = threading.Event()

    def consume():
        while not stop.is_set():
            frames = sup.wait_any(timeout=0.5)
            now = time.monotonic()
            for f in frames:
                ages.append((now - t_start, now - f.mono))
                taken[f.camera_id] += 1
            if frames and delay_s:
                time.sleep(delay_s)

    sup.start()
    time.sleep(2.0)  # warm-up: open files, first allocations
    rss0 = rss_mb()
    cpu0 = cpu_s()
    t_start = time.monotonic()
    th = threading.Thread(target=consume, daemon=True)
    th.start()
    d0 = {cid: st.counters["frames_delivered"] for cid, st in sup.status().items()}
    time.sleep(min(window, seconds))
    rss_w = rss_mb()  # after the first window: growth past warm-up = a leak
    time.sleep(max(0.0, seconds - window))
    wall = time.monotonic() - t_start
    cpu = cpu_s() - cpu0
    status = sup.status()
    rss1 = rss_mb()
    stop.set()
    th.join(5)
    sup.stop()
    delivered = [status[c].counters["frames_delivered"] - d0[c] for c in status]
    overwritten = [status[c].counters["frames_dropped"]["overwritten_unconsumed"] for c in status]
    first = [a for t, a in ages if t < window]
    last = [a for t, a in ages if t >= wall - window]
    all_ages = [a for _t, a in ages]
    return {
        "cameras": n,
        "seconds": round(wall, 1),
        "delivered_per_camera": round(float(np.mean(delivered)), 1),
        "delivered_fps_per_camera": round(float(np.mean(delivered)) / wall, 2),
        "taken_per_camera": round(float(np.mean(list(taken.values()))), 1),
        "overwritten_per_camera": round(float(np.mean(overwritten)), 1),
        "age_ms": {
            "p50": round(pct(all_ages, 50) * 1e3, 1),
            "p95": round(pct(all_ages, 95) * 1e3, 1),
            "max": round(max(all_ages) * 1e3, 1) if all_ages else None,
        },
        "age_first_window_ms": {"p50": round(pct(first, 50) * 1e3, 1), "p95": round(pct(first, 95) * 1e3, 1)},
        "age_last_window_ms": {"p50": round(pct(last, 50) * 1e3, 1), "p95": round(pct(last, 95) * 1e3, 1)},
        "window_s": window,
        "cpu_pct_per_camera": round(100.0 * cpu / wall / n, 2),
        "rss_mb_start": round(rss0, 1),
        "rss_mb_end": round(rss1, 1),
        "rss_growth_mb": round(rss1 - rss0, 1),
        "rss_mb_after_first_window": round(rss_w, 1),
        "rss_growth_after_first_window_mb": round(rss1 - rss_w, 1),
        "states": sorted({st.state.value for st in status.values()}),
    }


# ---------------------------------------------------------------- decode cost (thread vs process)
def _decode_all(path: str, limit: int) -> tuple[int, float]:
    import cv2

    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    n = 0
    while n < limit:
        ok, img = cap.read()
        if not ok:
            break
        n += 1
    cap.release()
    return n, 0.0


def _child(path: str, limit: int, conn) -> None:
    import cv2

    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    t = os.times()
    c0 = t.user + t.system
    conn.send_bytes(b"ready")  # start-up (imports, open) is not counted
    n = 0
    while n < limit:
        ok, img = cap.read()
        if not ok:
            break
        conn.send_bytes(img.tobytes())  # what a process worker must do: ship the pixels back
        n += 1
    conn.send_bytes(b"")
    t = os.times()
    conn.send(t.user + t.system - c0)
    conn.close()


def decode_cost(path: str, frames: int, label: str) -> dict:
    import cv2

    cap = cv2.VideoCapture(path)
    ok, img = cap.read()
    cap.release()
    h, w = img.shape[:2]
    out: dict = {"clip": label, "size": f"{w}x{h}"}
    # 1 thread
    c0, t0 = cpu_s(), time.perf_counter()
    n, _ = _decode_all(path, frames)
    wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    out["thread_ms_per_frame"] = round(1e3 * wall / n, 2)
    out["thread_cpu_ms_per_frame"] = round(1e3 * cpu / n, 2)
    # 2 threads at once: does decode run in parallel (GIL released inside cap.read)?
    c0, t0 = cpu_s(), time.perf_counter()
    ths = [threading.Thread(target=_decode_all, args=(path, frames)) for _ in range(2)]
    [t.start() for t in ths]
    [t.join() for t in ths]
    wall2 = time.perf_counter() - t0
    out["two_threads_fps_total"] = round(2 * n / wall2, 1)
    out["one_thread_fps"] = round(n / wall, 1)
    # process + pipe
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(path, frames, child))
    p.start()
    child.close()
    assert parent.recv_bytes() == b"ready"
    c0, t0 = cpu_s(), time.perf_counter()
    got = 0
    while True:
        b = parent.recv_bytes()
        if not b:
            break
        frame = np.frombuffer(b, np.uint8).reshape(h, w, 3)
        got += 1
    child_cpu = parent.recv()
    p.join()
    wall_p = time.perf_counter() - t0
    parent_cpu = cpu_s() - c0
    out["process_ms_per_frame"] = round(1e3 * wall_p / got, 2)
    out["process_cpu_ms_per_frame"] = round(1e3 * (parent_cpu + child_cpu) / got, 2)
    out["process_parent_cpu_ms_per_frame"] = round(1e3 * parent_cpu / got, 2)
    out["frame_mb"] = round(frame.nbytes / 1e6, 2)
    return out


def make_1080p(tmpdir: str, frames: int) -> str:
    dst = os.path.join(tmpdir, "vtest1080.mp4")
    if not shutil.which("ffmpeg"):
        raise SystemExit("ffmpeg is needed to make the 1080p clip")
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(VTEST),
            "-frames:v",
            str(frames),
            "-vf",
            "scale=1920:1080",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            dst,
        ],
        check=True,
    )
    return dst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ops.bench.capture_bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cameras", default="1,2,4,8", help="comma-separated camera counts")
    ap.add_argument("--seconds", type=float, default=60.0, help="measured seconds per camera count")
    ap.add_argument("--consumer-delay-ms", type=float, default=200.0)
    ap.add_argument("--window", type=float, default=None, help="seconds of the first/last windows")
    ap.add_argument("--source", default=str(VTEST))
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    ap.add_argument("--decode-cost", action="store_true", help="measure thread vs process decode cost")
    ap.add_argument("--frames", type=int, default=200, help="frames per clip for --decode-cost")
    args = ap.parse_args(argv)

    if args.decode_cost:
        with tempfile.TemporaryDirectory() as d:
            clips = [(str(VTEST), "vtest"), (make_1080p(d, args.frames), "1080p h264")]
            for path, label in clips:
                r = decode_cost(path, args.frames, label)
                print(
                    json.dumps(r)
                    if args.json
                    else f"{r['clip']:>11} {r['size']:>9}: thread {r['thread_ms_per_frame']:6.2f} ms/frame "
                    f"(cpu {r['thread_cpu_ms_per_frame']:.2f}), 2 threads {r['two_threads_fps_total']:.0f} fps "
                    f"vs 1 thread {r['one_thread_fps']:.0f} fps; process+pipe {r['process_ms_per_frame']:6.2f} "
                    f"ms/frame (cpu {r['process_cpu_ms_per_frame']:.2f}, of which parent "
                    f"{r['process_parent_cpu_ms_per_frame']:.2f}), frame {r['frame_mb']} MB",
                    flush=True,
                )
        return 0

    from edgesight.log import setup_logging

    setup_logging("WARNING")
    for n in [int(x) for x in args.cameras.split(",") if x.strip()]:
        window = args.window or min(60.0, args.seconds / 3.0)
        r = run_n(n, args.seconds, args.consumer_delay_ms / 1e3, window, args.source)
        if args.json:
            print(json.dumps(r), flush=True)
            continue
        a, f, l = r["age_ms"], r["age_first_window_ms"], r["age_last_window_ms"]
        print(
            f"N={n:<2} {r['seconds']:.0f}s  delivered/cam {r['delivered_per_camera']:.0f} "
            f"({r['delivered_fps_per_camera']:.2f} fps)  taken/cam {r['taken_per_camera']:.0f}  "
            f"overwritten/cam {r['overwritten_per_camera']:.0f}\n"
            f"      age ms p50 {a['p50']} p95 {a['p95']} max {a['max']}  |  first {window:.0f}s p50 {f['p50']} "
            f"p95 {f['p95']}  last {window:.0f}s p50 {l['p50']} p95 {l['p95']}\n"
            f"      cpu/camera {r['cpu_pct_per_camera']:.1f}%  rss {r['rss_mb_start']:.0f} -> "
            f"{r['rss_mb_end']:.0f} MB ({r['rss_growth_mb']:+.1f}; {r['rss_growth_after_first_window_mb']:+.1f} "
            f"after the first {window:.0f}s)  states {r['states']}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
