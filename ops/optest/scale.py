"""``cloud-ops test scale``: vertical and horizontal scaling curves of each service on this machine (issue #14).

Each service gives one or more :class:`Curve` (x: the size that grows; y: what it delivers); each curve is
printed as a table, written as ``<out>/<name>.json`` and plotted as ``<out>/<name>.png`` (matplotlib Agg) with
the machine's core count and CPU model in the title: the shape is the result, not the absolute figures.

- stream (:mod:`ops.optest.scale_stream`): cameras per agent (capture supervisor: delivered fps, frame age, CPU,
  memory) and agents publishing to one cloud (the edge publisher in separate processes);
- model (:mod:`ops.optest.scale_model`): the inference engine's threads and batch size (frames/s, latency);
- sinks, engineering (:mod:`ops.optest.scale_consumers`): 1..M instances (separate ``cloud-ops connectors run`` /
  ``cloud-ops engineering run`` processes) in one consumer group on a pre-filled topic of P partitions;
  throughput from the group's committed offsets over time;
- warehouse (:mod:`ops.optest.scale_warehouse`): concurrent writers x document sizes (IOPS, p95) and the
  in/out limit probe of :mod:`cloud.warehouse.perf`.

A failing point never stops a curve: its row carries ``error`` and the plot leaves it out.
"""

from __future__ import annotations

import json
import os
import platform
import textwrap
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr

from cloud.config import CloudConfig
from edgesight.log import get_logger

SERVICES = ("stream", "model", "sinks", "engineering", "warehouse")
Progress = Callable[[str], None]
log = get_logger("test-scale")


@dataclass
class ScaleOptions:
    """The sizes of a run (the command's options)."""

    services: tuple[str, ...] = SERVICES
    max_cameras: int = 4
    max_agents: int = 3
    max_instances: int = 6
    partitions: int = 4
    seconds: float = 10.0
    records: int | None = None  # pre-filled records per consumer curve; default from seconds and partitions
    max_writers: int = 4
    doc_sizes: tuple[int, ...] = (256, 4096, 65536)
    max_threads: int = 2
    batches: tuple[int, ...] = (1, 2, 4)
    model_dir: str | None = None
    limits: bool = True
    repeats: int = 1  # runs of each instance count (sinks/engineering), interleaved; the best is plotted
    keep: bool = False  # keep the scratch collections / databases of the consumer curves (tests count them back)


@dataclass
class Series:
    key: str  # the row field plotted
    label: str
    axis: int = 1  # 1: left axis, 2: right axis
    group: str | None = None  # rows are split into one line per value of this field (e.g. document size)


@dataclass
class Curve:
    name: str  # file stem
    service: str
    title: str
    x: str  # the row field on the x axis
    x_label: str
    y_label: str
    series: list[Series]
    rows: list[dict[str, Any]] = field(default_factory=list)
    y2_label: str | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # figures that are not a curve (e.g. the limits probe)
    columns: list[str] | None = None  # the table's columns (default: every scalar field of the rows)
    annotate: str | None = None  # a row field (a CPU %) written under each point of the plot
    annotate_label: str = ""
    vline: float | None = None  # e.g. the partition count
    vline_label: str | None = None

    def good(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if not r.get("error")]


def machine() -> dict[str, Any]:
    """Core count, CPU model and memory of this machine (for the titles and the JSON)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        import psutil

        mem_gb = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": mem_gb,
        "python": platform.python_version(),
        "host_kernel": platform.release(),
    }


def title_suffix(m: dict[str, Any]) -> str:
    return f"{m['cores']} cores, {m['cpu_model']}"


def point(rows: list[dict[str, Any]], base: dict[str, Any], fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one point of a curve: its figures, or ``error`` naming why it failed (the curve goes on)."""
    t0 = time.monotonic()
    try:
        row = {**base, **fn()}
    except Exception as e:  # noqa: BLE001 - a failing point is a row of the report, never the end of the curve
        row = {**base, "error": f"{type(e).__name__}: {e}"[:500]}
        log.warning("scale point failed", extra={**base, "error": row["error"]})
    row["point_s"] = round(time.monotonic() - t0, 1)
    rows.append(row)
    return row


def secret_dump(model: BaseModel, exclude: set[str] | None = None) -> dict[str, Any]:
    """A config model as plain YAML-able data, secrets revealed (for a 0600 file a child process reads)."""

    def plain(v: Any) -> Any:
        if isinstance(v, SecretStr):
            return v.get_secret_value()
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        return v

    return plain(model.model_dump(exclude=exclude))


def write_cloud_yaml(cfg: CloudConfig, path: Path) -> Path:
    """``cfg`` as a cloud config file for ``cloud-ops ... --config`` in a child process (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(secret_dump(cfg, exclude={"stack"}), sort_keys=False))
    path.chmod(0o600)
    return path


# ------------------------------------------------------------------------------------------------ output


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.3g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, dict | list):
        return json.dumps(v)[:60]
    return str(v)


def table_columns(curve: Curve) -> list[str]:
    if curve.columns:
        present = {k for r in curve.rows for k in r}
        return [c for c in curve.columns if c in present] + (["error"] if "error" in present else [])
    cols: list[str] = []
    for r in curve.rows:
        for k in r:
            if k not in cols and not isinstance(r[k], dict | list):
                cols.append(k)
    first = [c for c in (curve.x, *(s.group for s in curve.series if s.group)) if c in cols]
    return first + [c for c in cols if c not in first and c != "error"] + (["error"] if "error" in cols else [])


def print_curve(curve: Curve, console: Any) -> None:
    from rich.table import Table

    from edgesight.term import esc

    t = Table(title=esc(curve.title), title_justify="left")
    cols = table_columns(curve)
    for c in cols:
        t.add_column(esc(c), overflow="fold")
    for r in curve.rows:
        t.add_row(*(("[red]" + esc(_fmt(r.get(c))) + "[/red]") if c == "error" else esc(_fmt(r.get(c))) for c in cols))
    console.print(t)
    for n in curve.notes:
        console.print(f"  {esc(n)}")


def plot_curve(curve: Curve, path: Path) -> int:
    """Write the PNG; returns the number of points drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=100)
    ax2 = None
    drawn = lines = 0
    markers = "osD^v<>p*"
    for i, s in enumerate(curve.series):
        target = ax
        if s.axis == 2:
            ax2 = ax2 or ax.twinx()
            target = ax2
        rows = [r for r in curve.good() if isinstance(r.get(s.key), int | float)]
        groups: dict[Any, list[dict[str, Any]]] = {}
        for r in rows:
            groups.setdefault(r.get(s.group) if s.group else None, []).append(r)
        for j, (g, rs) in enumerate(groups.items()):
            rs = sorted(rs, key=lambda r: r[curve.x])
            label = s.label if g is None else f"{s.label}, {s.group} {g}"
            style = "--" if s.axis == 2 else "-"
            target.plot(
                [r[curve.x] for r in rs],
                [r[s.key] for r in rs],
                style,
                color=f"C{lines % 10}",
                marker=markers[(i + j) % len(markers)],
                label=label,
            )
            lines += 1
            drawn += len(rs)
    if curve.annotate:
        for r in curve.good():
            v = r.get(curve.annotate)
            if isinstance(v, int | float):
                ax.annotate(
                    f"{curve.annotate_label}{v:.0f}%",
                    (r[curve.x], 0),
                    textcoords="offset points",
                    xytext=(0, 6),
                    ha="center",
                    fontsize=7,
                    color="dimgrey",
                )
    if curve.vline is not None:
        ax.axvline(curve.vline, color="grey", linestyle=":", label=curve.vline_label)
    ax.set_xlabel(curve.x_label)
    ax.set_ylabel(curve.y_label)
    ax.set_ylim(bottom=0)
    xs = sorted({r[curve.x] for r in curve.rows if isinstance(r.get(curve.x), int)})
    if xs and len(xs) <= 16:
        ax.set_xticks(xs)
        ax.set_xlim(min(xs) - 0.5, max(xs) + 0.5)
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if ax2 is not None:
        ax2.set_ylabel(curve.y2_label or "")
        ax2.set_ylim(bottom=0)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if handles:
        ax.legend(handles, labels, fontsize=8, loc="best")
    ax.set_title("\n".join(textwrap.wrap(curve.title, 90)), fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return drawn


def write_curve(curve: Curve, out: Path, mach: dict[str, Any]) -> dict[str, Path]:
    """``<out>/<name>.json`` and ``<out>/<name>.png``; the JSON says how many points the plot drew."""
    out.mkdir(parents=True, exist_ok=True)
    png, js = out / f"{curve.name}.png", out / f"{curve.name}.json"
    points = plot_curve(curve, png)
    doc = {
        "machine": mach,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "plot": png.name,
        "plotted_points": points,
        **{k: v for k, v in asdict(curve).items() if k != "series"},
        "series": [asdict(s) for s in curve.series],
    }
    js.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return {"json": js, "png": png}


# ------------------------------------------------------------------------------------------------ the run


def run_scale(
    cfg: CloudConfig, opts: ScaleOptions, work: Path, progress: Progress, on_curve: Callable[[Curve], None]
) -> list[Curve]:
    """Every curve of ``opts.services`` against ``cfg``'s servers; ``on_curve`` as each one is done."""
    mach = machine()
    suffix = title_suffix(mach)
    curves: list[Curve] = []

    def emit(cs: Iterable[Curve]) -> None:
        for c in cs:
            curves.append(c)
            on_curve(c)

    for svc in opts.services:
        progress(f"service {svc}")
        t0 = time.monotonic()
        if svc == "sinks":
            from ops.optest.scale_consumers import sinks_curve

            emit([sinks_curve(cfg, opts, work, progress, suffix, connector="mongo-sink-detections")])
            emit([sinks_curve(cfg, opts, work, progress, suffix, connector="s3-sink-keyframes")])
        elif svc == "engineering":
            from ops.optest.scale_consumers import engineering_curve

            emit([engineering_curve(cfg, opts, work, progress, suffix)])
        elif svc == "warehouse":
            from ops.optest.scale_warehouse import warehouse_curves

            emit(warehouse_curves(cfg, opts, progress, suffix))
        elif svc == "model":
            from ops.optest.scale_model import model_curves

            emit(model_curves(opts, progress, suffix))
        elif svc == "stream":
            from ops.optest.scale_stream import stream_curves

            emit(stream_curves(cfg, opts, work, progress, suffix))
        else:
            raise ValueError(f"--service {svc!r}: one of {', '.join(SERVICES)} or all")
        log.info("scale service done", extra={"service": svc, "seconds": round(time.monotonic() - t0, 1)})
    return curves
