"""Deterministic agent reports for the TUI's state and screen tests (fixed clock, fixed data)."""

from __future__ import annotations

import base64
import io
import json
from datetime import datetime, timedelta, timezone
from typing import Any

from edge_agent.tui.state import Command, SiteState
from edgesight.wire import decode_command

T0 = datetime(2026, 11, 28, 8, 0, 0, tzinfo=timezone.utc)
ROOT = "edgesight"


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def camera_doc(agent_id: str, camera_id: str, *, ts: datetime = T0, **kw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema": "edgesight.status/1",
        "agent_id": agent_id,
        "camera_id": camera_id,
        "ts": iso(ts),
        "state": "streaming",
        "fps": 4.9,
        "target_fps": 5.0,
        "model": {"name": "yolov4-tiny", "version": "1", "variant": "int8"},
        "frames": 1200,
        "dropped": 3,
        "reconnects": 0,
        "frame_age_s": 0.2,
        "detections_per_s": 2.5,
        "latency_ms": 96.0,
        "frame": {"width": 768, "height": 576},
    }
    doc.update(kw)
    return doc


def agent_doc(agent_id: str, cameras: list[dict[str, Any]], *, ts: datetime = T0, **kw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema": "edgesight.status/1",
        "agent_id": agent_id,
        "ts": iso(ts),
        "state": "running",
        "version": "0.1.0",
        "hostname": "edge-box",
        "uptime_s": 3725.0,
        "cameras": cameras,
        "spool": {"records": 12, "bytes": 40960, "limit_bytes": 268435456, "dropped": 0},
        "cpu_percent": 87.5,
        "memory_rss_bytes": 412 * 2**20,
        "inference": {"provider": "CPUExecutionProvider", "variant": "int8"},
        "broker": {"connected": True, "last_error": "", "undelivered": 12},
        "allowed_sources": {"schemes": ["rtsp", "rtsps", "http", "https"], "hosts": ["*"], "dirs": ["/srv/clips"]},
    }
    doc.update(kw)
    return doc


def events_doc(agent_id: str, camera_id: str, events: list[dict[str, Any]], *, dropped: int = 0) -> dict[str, Any]:
    return {
        "schema": "edgesight.events/1",
        "agent_id": agent_id,
        "camera_id": camera_id,
        "ts": iso(T0),
        "dropped": dropped,
        "events": events,
    }


def event(kind: str, track: int, *, seconds: float = 0.0, **kw: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "ts": iso(T0 + timedelta(seconds=seconds)),
        "label": "person",
        "track_id": track,
        "score": 0.81,
        **kw,
    }


def jpeg(width: int = 96, height: int = 72) -> bytes:
    from PIL import Image

    img = Image.new("RGB", (width, height), (40, 90, 140))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return buf.getvalue()


def preview_doc(agent_id: str, camera_id: str) -> dict[str, Any]:
    return {
        "schema": "edgesight.preview/1",
        "agent_id": agent_id,
        "camera_id": camera_id,
        "ts": iso(T0),
        "frame": {"width": 768, "height": 576},
        "jpeg": base64.b64encode(jpeg()).decode(),
        "detections": [{"track_id": 7, "label": "person", "score": 0.9, "box": [100, 120, 180, 400]}],
    }


def put(state: SiteState, topic: str, doc: dict[str, Any] | bytes) -> None:
    state.ingest(f"{ROOT}/{topic}", doc if isinstance(doc, bytes) else json.dumps(doc).encode())


def site_messages() -> list[tuple[str, bytes]]:
    """Two agents: site-1 with three cameras (one failing, one with a zone and a line) and events, site-2
    offline. (topic under the root, payload) in the order an agent sends them."""
    out: list[tuple[str, bytes]] = []

    def add(topic: str, doc: dict[str, Any]) -> None:
        out.append((topic, json.dumps(doc).encode()))

    cams = [
        camera_doc(
            "site-1",
            "entrance",
            zones=[{"name": "door", "polygon": [[0.1, 0.25], [0.45, 0.25], [0.45, 0.95], [0.1, 0.95]]}],
            lines=[{"name": "mid", "start": [0.62, 0.1], "end": [0.62, 0.95]}],
        ),
        camera_doc(
            "site-1",
            "loading-dock",
            state="reconnecting",
            fps=0.0,
            frame_age_s=12.5,
            reconnects=4,
            dropped=0,
            detections_per_s=0.0,
            latency_ms=None,
            last_error="rtsp://10.0.0.7/stream: connection refused",
        ),
        camera_doc("site-1", "parking", fps=2.0, target_fps=2.0, detections_per_s=0.4, latency_ms=120.0),
    ]
    for i in range(12):  # two minutes of heartbeats: the sparklines have history
        ts = T0 + timedelta(seconds=10 * (i - 12))
        add(
            "site-1/camera/entrance/status",
            camera_doc("site-1", "entrance", ts=ts, fps=3.0 + (i % 4) * 0.6, latency_ms=80.0 + 5 * (i % 5)),
        )
    add("site-1/status", agent_doc("site-1", cams))
    add("site-2/status", agent_doc("site-2", [], state="offline"))
    add(
        "site-1/camera/entrance/events",
        events_doc(
            "site-1",
            "entrance",
            [
                event("new", 41, entered=["door"]),
                event("update", 41, seconds=1.5, zones=["door"], crossings=[{"line": "mid", "direction": "in"}]),
                event("end", 39, seconds=2.0),
            ],
            dropped=2,
        ),
    )
    return out


def site(state: SiteState) -> SiteState:
    """The state after :func:`site_messages`."""
    for topic, payload in site_messages():
        put(state, topic, payload)
    return state


class Recorder:
    """A commander for screen tests without a broker: records what the screens send (checked with the
    contract), acks nothing by itself; tests answer with :meth:`ack`."""

    def __init__(self, state: SiteState):
        self.state = state
        self.sent: list[dict[str, Any]] = []
        self.preview: tuple[str | None, str | None] = (None, None)

    def send(self, agent_id: str, action: str, camera_id: str | None = None, **fields: Any) -> Command:
        cmd = self.state.new_command(agent_id, action, camera_id)
        doc = {"command_id": cmd.command_id, "action": action, "agent_id": agent_id, **fields}
        if camera_id is not None:
            doc["camera_id"] = camera_id
        decode_command(doc)
        self.sent.append(doc)
        return cmd

    def watch_preview(self, agent_id: str | None, camera_id: str | None = None) -> None:
        self.preview = (agent_id, camera_id)

    def ack(self, ok: bool, error: str | None = None, **result: Any) -> None:
        doc = self.sent[-1]
        put(
            self.state,
            f"{doc['agent_id']}/ack",
            {
                "schema": "edgesight.ack/1",
                "command_id": doc["command_id"],
                "agent_id": doc["agent_id"],
                "action": doc["action"],
                "ok": ok,
                "result": result,
                **({"error": error} if error else {}),
                "ts": iso(T0),
            },
        )
