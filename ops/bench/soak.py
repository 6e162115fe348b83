"""Soak (issue 15): 4 cameras for 30 minutes with the whole cloud path running; curves into docs/bench/.

    python -m ops.bench.soak --minutes 30                      # private embedded stack
    python -m ops.bench.soak --minutes 2 --out /tmp/soak       # a short check

The agent and the sink runner of :class:`ops.bench.e2e_bench.E2ERun` run for ``--minutes``; every
``--interval`` seconds (default: 1/180 of the run, at least 2 s) one sample is taken:

- ``rss_mb``: resident memory of this process (the agent and the sink runner together; the stack's servers are
  other processes);
- ``frame_age_p50_s`` / ``p95``: age of the frames the detector took in the interval (capture -> batch start);
- ``e2e_p50_s`` / ``p95``: capture -> document visible in MongoDB of the documents that became visible in the
  interval;
- ``lag_records`` / ``lag_oldest_s``: detection events acknowledged by the broker and not yet visible in MongoDB
  (the sink's consumer lag, counted from both ends: the embedded broker's high watermarks are not reliable), and
  the age of the oldest of them.

Writes ``soak-<date>.json`` (the samples) and ``soak-<date>.png`` (four curves, matplotlib Agg) into ``--out``
(default ``docs/bench``), and logs each sample as a JSON line. Finished samples are dropped from the benchmark's
own bookkeeping as they are taken, so the RSS curve is the pipeline's, not the benchmark's.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgesight.log import get_logger
from ops.bench.e2e_bench import STAGES, Clock, E2ERun, add_run_args, check_run_args, cloud_of, event_stages

log = get_logger("bench.soak")

DOCS_BENCH = Path(__file__).resolve().parents[2] / "docs" / "bench"


def _q(xs: list[float], p: float) -> float | None:
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(p * len(s)))], 4) if s else None


def _sample(clock: Clock, t: float, since: float, rss: int) -> dict[str, Any]:
    """One sample: the interval's frame ages and completed events (removed from ``clock``), and the lag now."""
    with clock.lock:
        ages = [a for t0, a in clock.frame_age if t0 <= t]
        clock.frame_age = [x for x in clock.frame_age if x[0] > t]
        done, lat = [], []
        stages: list[tuple[float, ...]] = []
        for e, a in clock.accepted.items():
            if a[3] == "end":
                if e in clock.visible:
                    done.append(e)
                continue
            st = event_stages(clock, e, a)
            if st is not None:
                done.append(e)
                lat.append(sum(st))
                stages.append(st)
        pending = [t - clock.acked[e] for e in clock.acked if e not in clock.visible]
        for e in done:
            a = clock.accepted.pop(e)
            for d in (clock.acked, clock.written, clock.visible):
                d.pop(e, None)
        for k in [k for k, (t0, _) in clock.infer.items() if t0 < t - 120]:
            del clock.infer[k]
        for obj, key in [(o, k) for o, k in clock.s3_key.items() if k in clock.s3_seen]:
            del clock.s3_key[obj], clock.s3_seen[key]
            clock.keyframes.pop(obj, None)
    return {
        "t_s": round(t - since, 1),
        "rss_mb": round(rss / 2**20, 1),
        "frame_age_p50_s": _q(ages, 0.5),
        "frame_age_p95_s": _q(ages, 0.95),
        "frames": len(ages),
        "e2e_p50_s": _q(lat, 0.5),
        "e2e_p95_s": _q(lat, 0.95),
        "documents": len(lat),
        "lag_records": len(pending),
        "lag_oldest_s": round(max(pending), 3) if pending else 0.0,
        # where the interval's capture -> visible time went (p50 of each stage; they add up to about e2e p50)
        "stage_p50_s": {name: _q([st[i] for st in stages], 0.5) for i, name in enumerate(STAGES)},
    }


def soak(
    cloud_config: Any,
    model_dir: str | Path | None,
    *,
    minutes: float,
    cameras: int = 4,
    interval_s: float | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run the agent and the cloud path for ``minutes``; returns one sample per interval (see the module doc)."""
    import psutil

    if not minutes > 0:
        raise ValueError(f"minutes must be > 0, got {minutes}")
    step = interval_s or max(2.0, minutes * 60 / 180)
    proc = psutil.Process()
    samples: list[dict[str, Any]] = []
    with E2ERun(cloud_config, model_dir, cameras=cameras) as run:
        since = time.time()
        end = since + minutes * 60
        while (now := time.time()) < end:
            time.sleep(min(step, end - now))
            s = _sample(run.clock, time.time(), since, proc.memory_info().rss)
            samples.append(s)
            log.info("soak sample", extra=s)
            if progress:
                progress(s)
    return samples


def plot(samples: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t_s"] / 60 for s in samples]
    fig, axes = plt.subplots(5, 1, figsize=(9, 13.5), sharex=True)
    panels = [
        ("RSS (MB), agent + sink runner", [("rss_mb", "RSS")]),
        ("frame age at the detector (s)", [("frame_age_p50_s", "p50"), ("frame_age_p95_s", "p95")]),
        ("capture -> document visible (s)", [("e2e_p50_s", "p50"), ("e2e_p95_s", "p95")]),
        ("sink lag (events acked, not visible)", [("lag_records", "records")]),
    ]
    for ax, (label, series) in zip(axes, panels):
        for key, name in series:
            ax.plot(t, [s[key] if s[key] is not None else float("nan") for s in samples], label=name)
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    ax = axes[4]  # the stages of capture -> visible (p50 per interval), stacked
    staged = [s for s in samples if s.get("stage_p50_s")]
    if staged:
        ts = [s["t_s"] / 60 for s in staged]
        ys = [[(s["stage_p50_s"].get(name) or 0.0) for s in staged] for name in STAGES]
        ax.stackplot(ts, ys, labels=STAGES, alpha=0.8)
        ax.legend(fontsize=7, loc="upper left", ncol=3)
    ax.set_ylabel("stages of capture -> visible, p50 (s)", fontsize=8)
    ax.grid(alpha=0.3)
    lag_s = axes[3].twinx()
    lag_s.plot(t, [s["lag_oldest_s"] for s in samples], color="tab:red", alpha=0.6)
    lag_s.set_ylabel("oldest pending (s)", fontsize=8, color="tab:red")
    axes[-1].set_xlabel("minutes")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    from edgesight.log import setup_logging
    from edgesight.term import cli_console, esc

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(ap)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--interval", type=float, help="seconds between samples (default: 1/180 of the run, >= 2 s)")
    ap.add_argument("--out", type=Path, default=DOCS_BENCH, help="where the PNG and JSON go (default docs/bench)")
    args = ap.parse_args()
    check_run_args(ap, args)
    if not 0 < args.minutes <= 24 * 60:
        ap.error(f"--minutes must be in (0, 1440], got {args.minutes:g}")
    if args.interval is not None and not 0.5 <= args.interval <= 3600:
        ap.error(f"--interval must be 0.5..3600 s, got {args.interval:g}")
    if args.out.exists() and not args.out.is_dir():
        ap.error(f"--out {args.out}: not a directory")
    setup_logging("INFO", service="soak")
    console = cli_console(stderr=True)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with (
        cloud_of(args, console) as cloud,
        Progress(
            TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console, transient=True
        ) as bar,
    ):
        task = bar.add_task("soak", total=args.minutes * 60)

        def show(s: dict[str, Any]) -> None:
            bar.update(
                task,
                completed=s["t_s"],
                description=esc(
                    f"RSS {s['rss_mb']} MB, e2e p95 {s['e2e_p95_s']} s, frame age p95 {s['frame_age_p95_s']} s, "
                    f"lag {s['lag_records']}"
                ),
            )

        samples = soak(
            cloud, args.model_dir, minutes=args.minutes, cameras=args.cameras, interval_s=args.interval, progress=show
        )
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H%M")
    base = args.out / f"soak-{args.cameras}cam-{args.minutes:g}min-{stamp}"
    doc = {"cameras": args.cameras, "minutes": args.minutes, "samples": samples}
    base.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    plot(samples, base.with_suffix(".png"), f"soak: {args.cameras} cameras, {args.minutes:g} min ({stamp} UTC)")
    console.print(f"wrote {esc(base)}.json and .png ({len(samples)} samples)")


if __name__ == "__main__":
    main()
