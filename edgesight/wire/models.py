"""The wire contract: one definition for edge and cloud, versioned.

Every message carries ``schema`` = ``edgesight.<kind>/<major>``. Within a major
version fields are only ever *added* as optional; a consumer rejects a major
version it does not know with an error that says so. Unknown fields are
rejected (typos and producer bugs surface at once): upgrade consumers (cloud)
before producers (edge) when a minor addition ships.

The JSON Schema files in ``edgesight/wire/schemas/`` are generated from these
models (``cloud-ops schemas export``) and a test keeps them in step.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, model_validator

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Ident = Annotated[str, Field(pattern=ID_PATTERN, description="identifier: letters, digits, '_', '.', '-' (max 64)")]

SCHEMA_DETECTION: Final = "edgesight.detection/2"
SCHEMA_DETECTION_V1: Final = "edgesight.detection/1"  # still accepted by every consumer (decode_event)
SCHEMA_KEYFRAME: Final = "edgesight.keyframe/1"
SCHEMA_STATUS: Final = "edgesight.status/1"
MAX_INT64: Final = 2**63 - 1  # integers the warehouse stores (BSON int64); larger ones are refused at the contract
SCHEMA_COMMAND: Final = "edgesight.command/1"
SCHEMA_ACK: Final = "edgesight.ack/1"
SCHEMA_PREVIEW: Final = "edgesight.preview/1"
SCHEMA_EVENTS: Final = "edgesight.events/1"

# Namespace for deterministic ids (uuid5): the same inputs give the same id on every re-send.
EDGESIGHT_NS = uuid.UUID("5b1f3c1e-8a4e-4f2b-9a57-3f0f6d2e9c11")


class WireModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, populate_by_name=True)


def utc(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        raise ValueError("timestamp must carry a timezone (use UTC, e.g. 2026-01-01T00:00:00Z)")
    return dt.astimezone(timezone.utc)


def _utc_ms(dt: datetime) -> datetime:
    dt = utc(dt)
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def iso_ms(dt: datetime) -> str:
    """``2026-11-26T12:30:15.250Z``: always exactly three fractional digits (what Java's
    ``yyyy-MM-dd'T'HH:mm:ss.SSSX`` in Kafka Connect's TimestampConverter parses)."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


# A timezone-aware timestamp, normalised to UTC at millisecond precision; naive timestamps are rejected.
UtcDatetime = Annotated[
    AwareDatetime, AfterValidator(_utc_ms), PlainSerializer(iso_ms, return_type=str, when_used="json")
]


class Box(WireModel):
    x1: float
    y1: float
    x2: float
    y2: float

    @model_validator(mode="after")
    def _ordered(self) -> Box:
        if self.x2 < self.x1:
            raise ValueError("x2 must be >= x1")
        if self.y2 < self.y1:
            raise ValueError("y2 must be >= y1")
        return self


class NormBox(Box):
    x1: float = Field(ge=0.0, le=1.0)
    y1: float = Field(ge=0.0, le=1.0)
    x2: float = Field(ge=0.0, le=1.0)
    y2: float = Field(ge=0.0, le=1.0)


class ModelRef(WireModel):
    name: Ident
    version: Annotated[str, Field(min_length=1, max_length=64)]
    variant: Literal["fp32", "fp16", "int8"] = "fp32"


class FrameSize(WireModel):
    width: int = Field(gt=0, le=16384)
    height: int = Field(gt=0, le=16384)


class Crossing(WireModel):
    line: Ident
    direction: Ident = Field(description="the line's direction name (default names: in, out)")


class KeyframeRef(WireModel):
    """An event's keyframe (detection/2): its ``keyframe_id``, nothing else. Where the JPEG lies is decided by
    the S3 sink (Kafka Connect names objects after topic, partition and offset, not after a field), so the
    warehouse resolves the id through its keyframes index: :meth:`cloud.warehouse.Warehouse.keyframe_object`."""

    keyframe_id: Annotated[str, Field(min_length=8, max_length=64)]


class KeyframeRefV1(KeyframeRef):
    """detection/1's keyframe reference. Its ``object_key`` names no object in S3 (the sink stores the JPEG
    elsewhere): accepted for compatibility, ignored; resolve ``keyframe_id`` as for version 2."""

    object_key: Annotated[str, Field(min_length=1, max_length=1024)]


class EventKind(str, Enum):
    new = "new"  # first sighting of a track
    update = "update"  # track moved / changed zones / crossed a line / better score
    end = "end"  # track lost for longer than the tracker's buffer


RunId = Annotated[
    str,
    Field(
        pattern=r"^[0-9a-f]{32}$",
        description="the agent run that produced the record: a random id minted at agent start (see new_run_id)",
    ),
]


def new_run_id() -> str:
    """A fresh run id, minted once per agent process start. Random (uuid4), not a persisted boot counter: it
    needs no state on the device, so a wiped, restored or copied spool directory can never make two runs share
    an id; records replayed from the spool keep the id they were written with."""
    return uuid.uuid4().hex


class _DetectionBody(WireModel):
    """The fields every major version of a detection event shares."""

    schema_: str = Field(alias="schema")
    event_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$", description="deterministic: see make_event_id")]
    kind: EventKind = EventKind.update
    agent_id: Ident
    camera_id: Ident
    ts: UtcDatetime = Field(description="frame capture time, UTC")
    seq: int = Field(ge=0, le=MAX_INT64, description="frame sequence number per camera (restarts with the agent run)")
    model: ModelRef
    label: Annotated[str, Field(min_length=1, max_length=64)]
    class_id: int = Field(ge=0, le=MAX_INT64)
    score: float = Field(ge=0.0, le=1.0)
    top_score: float | None = Field(None, ge=0.0, le=1.0)
    box: Box
    box_norm: NormBox
    frame: FrameSize
    track_id: int | None = Field(
        None, ge=0, le=MAX_INT64, description="unique within one agent run (run_id) and camera"
    )
    zones: list[Ident] = Field(default_factory=list, description="zones the object is in now")
    entered: list[Ident] = Field(default_factory=list)
    exited: list[Ident] = Field(default_factory=list)
    crossings: list[Crossing] = Field(default_factory=list)
    keyframe: KeyframeRef | None = None

    @model_validator(mode="after")
    def _consistent(self) -> _DetectionBody:
        if self.box.x2 > self.frame.width + 1 or self.box.y2 > self.frame.height + 1:
            raise ValueError("box lies outside the frame (box.x2/box.y2 exceed frame.width/height)")
        return self

    @property
    def ts_ms(self) -> int:
        return int(self.ts.timestamp() * 1000)


class DetectionEvent(_DetectionBody):
    """One tracked-object update on one frame (Frigate-style new/update/end lifecycle), version 2: ``run_id``
    names the agent run, so ``(agent_id, camera_id, run_id, track_id)`` and ``(.., run_id, seq)`` are unique
    across agent restarts."""

    schema_: Literal["edgesight.detection/2"] = Field(SCHEMA_DETECTION, alias="schema")
    run_id: RunId


class DetectionEventV1(_DetectionBody):
    """A version-1 detection event (no run id), still accepted from agents not yet upgraded. Its ``run_id`` is
    ``""``: its tracks are keyed without a run, as before (they may merge across a restart of such an agent)."""

    schema_: Literal["edgesight.detection/1"] = Field(SCHEMA_DETECTION_V1, alias="schema")
    keyframe: KeyframeRefV1 | None = None

    @property
    def run_id(self) -> str:
        return ""


AnyDetectionEvent = DetectionEvent | DetectionEventV1


def make_event_id(
    agent_id: str,
    camera_id: str,
    ts: datetime | float,
    seq: int,
    track_id: int | None,
    kind: str,
    index: int = 0,
    *,
    run_id: str = "",
) -> str:
    """Deterministic event id: identical inputs (a re-send) give an identical id. ``run_id`` (version 2) keeps
    ids of different agent runs apart; ``""`` (version 1) gives the version-1 id."""
    t = ts.timestamp() if isinstance(ts, datetime) else float(ts)
    track = track_id if track_id is not None else f"d{index}"
    run = f"{run_id}/" if run_id else ""
    name = f"{run}{agent_id}/{camera_id}/{int(round(t * 1000))}/{seq}/{track}/{kind}"
    return uuid.uuid5(EDGESIGHT_NS, name).hex


# A keyframe crop's coordinate: an integer pixel of the source frame (strict: 1.0 or "1" are refused).
CropCoord = Annotated[int, Field(strict=True, ge=0, le=16384)]


class KeyframeReason(str, Enum):
    track_start = "track_start"
    score_improved = "score_improved"
    interval = "interval"
    snapshot = "snapshot"


class KeyframeMeta(WireModel):
    """Metadata of one JPEG keyframe. On Kafka: key = object_key, value = JPEG bytes, headers = these fields
    (strings; ``crop`` and ``frame`` as compact JSON: :func:`edgesight.wire.codec.keyframe_header_text`).
    ``width``/``height`` are the JPEG's; a keyframe with ``crop`` shows that part of the source frame (a track's
    box with a margin), one without shows the whole frame. ``object_key`` is a stable name of the keyframe, *not* where it lies in S3: the S3 sink stores it
    under ``topics/<topic>/<partition>/<topic>+<partition>+<offset>.jpg`` and indexes keyframe_id -> bucket and
    ``s3_key`` in the warehouse (resolve with :meth:`cloud.warehouse.Warehouse.keyframe_object`)."""

    schema_: Literal["edgesight.keyframe/1"] = Field(SCHEMA_KEYFRAME, alias="schema")
    keyframe_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    agent_id: Ident
    camera_id: Ident
    ts: UtcDatetime
    seq: int = Field(ge=0, le=MAX_INT64)
    width: int = Field(gt=0, le=16384)
    height: int = Field(gt=0, le=16384)
    reason: KeyframeReason
    track_id: int | None = Field(None, ge=0, le=MAX_INT64)
    content_type: Literal["image/jpeg"] = "image/jpeg"
    size: int = Field(gt=0, le=MAX_INT64, description="bytes of the JPEG")
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    object_key: Annotated[str, Field(min_length=1, max_length=1024)]
    crop: Annotated[list[CropCoord], Field(min_length=4, max_length=4)] | None = Field(
        None,
        description="a crop of the frame (a track's box with a margin): [x1, y1, x2, y2] in source-frame pixels, "
        "inside ``frame``; absent: the JPEG shows the whole frame",
    )
    frame: FrameSize | None = Field(None, description="the source frame's size (required with ``crop``)")

    @model_validator(mode="after")
    def _crop_inside_frame(self) -> KeyframeMeta:
        if self.crop is None:
            return self
        if self.frame is None:
            raise ValueError("crop needs frame (the source frame's size)")
        x1, y1, x2, y2 = self.crop
        if not (x1 < x2 <= self.frame.width and y1 < y2 <= self.frame.height):
            raise ValueError(
                f"crop {self.crop} must satisfy x1 < x2 <= frame.width and y1 < y2 <= frame.height "
                f"(frame {self.frame.width}x{self.frame.height})"
            )
        return self

    @staticmethod
    def make_object_key(agent_id: str, camera_id: str, ts: datetime, keyframe_id: str) -> str:
        """Stable name (the Kafka record key): ``keyframes/<agent>/<camera>/YYYY/MM/DD/HH/<keyframe_id>.jpg`` (UTC)."""
        t = utc(ts)
        return f"keyframes/{agent_id}/{camera_id}/{t:%Y/%m/%d/%H}/{keyframe_id}.jpg"

    @classmethod
    def for_jpeg(
        cls,
        jpeg: bytes,
        *,
        agent_id: str,
        camera_id: str,
        ts: datetime,
        seq: int,
        width: int,
        height: int,
        reason: KeyframeReason | str,
        track_id: int | None = None,
        crop: tuple[int, int, int, int] | None = None,
        frame: tuple[int, int] | None = None,
    ) -> KeyframeMeta:
        kid = uuid.uuid5(
            EDGESIGHT_NS, f"kf/{agent_id}/{camera_id}/{int(round(ts.timestamp() * 1000))}/{seq}/{reason}/{track_id}"
        ).hex
        return cls(
            keyframe_id=kid,
            agent_id=agent_id,
            camera_id=camera_id,
            ts=ts,
            seq=seq,
            width=width,
            height=height,
            reason=reason,
            track_id=track_id,
            size=len(jpeg),
            sha256=hashlib.sha256(jpeg).hexdigest(),
            object_key=cls.make_object_key(agent_id, camera_id, ts, kid),
            crop=list(crop) if crop is not None else None,
            frame=FrameSize(width=frame[0], height=frame[1]) if frame is not None else None,
        )


# Zones and lines (set_zones, set_lines, add_camera, and the camera status that reports them). Bounds of a
# command's fields (the MQTT payload's size is bounded before parsing: control.max_payload_bytes).
MAX_ZONES: Final = 64  # zones of one set_zones / add_camera
MAX_LINES: Final = 64  # lines of one set_lines / add_camera
MAX_VERTICES: Final = 256  # vertices of one zone polygon
MAX_GEOMETRY_DEPTH: Final = 4  # nesting of one zone or line (zone > polygon > point > number)
MAX_CAMERA_DEPTH: Final = 6  # nesting of add_camera's camera object (camera > zones > zone > polygon > point)
MAX_CAMERA_NODES: Final = 50_000  # values (objects, lists, scalars) in add_camera's camera object
MAX_COMMAND_STRING: Final = 4096  # characters of any string inside a command's free-form objects


def _check_tree(value: Any, field: str, *, max_depth: int, depth_bound: str) -> None:
    """Refuse a JSON-like value nested deeper than ``max_depth``, with more than ``max_nodes`` values or a
    string longer than :data:`MAX_COMMAND_STRING` (iterative: no recursion on hostile input)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    nodes = 0
    while stack:
        v, depth = stack.pop()
        nodes += 1
        if nodes > MAX_CAMERA_NODES:
            raise ValueError(f"{field} holds more than {MAX_CAMERA_NODES} values (MAX_CAMERA_NODES)")
        if isinstance(v, str):
            if len(v) > MAX_COMMAND_STRING:
                raise ValueError(
                    f"{field} holds a string of {len(v)} characters; at most {MAX_COMMAND_STRING} (MAX_COMMAND_STRING)"
                )
            continue
        if not isinstance(v, (dict, list, tuple)):
            continue
        if depth >= max_depth:
            raise ValueError(f"{field} is nested deeper than {max_depth} levels ({depth_bound})")
        items = list(v.keys()) + list(v.values()) if isinstance(v, dict) else list(v)
        stack.extend((x, depth + 1) for x in items)


def _check_geometry(items: list[dict[str, Any]], field: str, max_items: int) -> list[dict[str, Any]]:
    if len(items) > max_items:
        raise ValueError(f"{len(items)} {field}; at most {max_items} per camera")
    for i, item in enumerate(items):
        _check_tree(item, f"{field}[{i}]", max_depth=MAX_GEOMETRY_DEPTH, depth_bound="MAX_GEOMETRY_DEPTH")
        polygon = item.get("polygon")
        if isinstance(polygon, list) and len(polygon) > MAX_VERTICES:
            raise ValueError(f"{field}[{i}].polygon has {len(polygon)} vertices; at most {MAX_VERTICES} (MAX_VERTICES)")
    return items


def _check_zones(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return _check_geometry(items, "zones", MAX_ZONES)


def _check_lines(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return _check_geometry(items, "lines", MAX_LINES)


def _check_camera(camera: dict[str, Any]) -> dict[str, Any]:
    _check_tree(camera, "camera", max_depth=MAX_CAMERA_DEPTH, depth_bound="MAX_CAMERA_DEPTH")
    for key, check in (("zones", _check_zones), ("lines", _check_lines)):
        if isinstance(camera.get(key), list):
            check(camera[key])
    return camera


Zones = Annotated[list[dict[str, Any]], Field(max_length=MAX_ZONES), AfterValidator(_check_zones)]
Lines = Annotated[list[dict[str, Any]], Field(max_length=MAX_LINES), AfterValidator(_check_lines)]


STATUS_TEXT_MAX: Final = 1024  # characters of a status's free-text field (last_error)

CameraState = Literal["starting", "streaming", "reconnecting", "failed", "stopped", "disabled"]


class CameraStatus(WireModel):
    schema_: Literal["edgesight.status/1"] = Field(SCHEMA_STATUS, alias="schema")
    agent_id: Ident
    camera_id: Ident
    ts: UtcDatetime
    state: CameraState
    reason: str = ""
    since: UtcDatetime | None = None
    fps: float = Field(0.0, ge=0.0)
    target_fps: float | None = Field(None, gt=0.0)
    model: ModelRef | None = None
    frames: int = Field(0, ge=0, le=MAX_INT64)
    dropped: int = Field(0, ge=0, le=MAX_INT64)
    reconnects: int = Field(0, ge=0, le=MAX_INT64)
    # optional additions within status/1 (the TUI's camera table and preview overlay)
    frame_age_s: float | None = Field(None, ge=0.0, description="seconds since the camera's last frame")
    detections_per_s: float = Field(0.0, ge=0.0, description="detections per second, recent window")
    latency_ms: float | None = Field(None, ge=0.0, description="inference latency per batch, recent mean")
    last_error: str = Field(
        "", max_length=STATUS_TEXT_MAX, description="the camera's last error; empty once it streams again"
    )
    frame: FrameSize | None = Field(
        None,
        description="size of the frames the pipeline sees (after ROI crop and resolution cap): preview boxes and "
        "pixel zone/line coordinates refer to it",
    )
    zones: Zones = Field(default_factory=list, description="the camera's zones, as set_zones takes them")
    lines: Lines = Field(default_factory=list, description="the camera's counting lines, as set_lines takes them")


class SpoolStatus(WireModel):
    records: int = Field(0, ge=0, le=MAX_INT64)
    bytes: int = Field(0, ge=0, le=MAX_INT64)
    limit_bytes: int = Field(0, ge=0, le=MAX_INT64)
    dropped: int = Field(0, ge=0, le=MAX_INT64)


class InferenceStatus(WireModel):
    provider: str = Field(max_length=64, description="ONNX Runtime provider in use, e.g. CPUExecutionProvider")
    variant: str = Field(max_length=64, description="model variant in use: fp32, fp16 or int8")


class BrokerStatus(WireModel):
    """The agent's Kafka producer side."""

    connected: bool
    last_error: str = Field("", max_length=STATUS_TEXT_MAX)
    undelivered: int = Field(0, ge=0, le=MAX_INT64, description="records spooled, not yet acknowledged by Kafka")


class AllowedSources(WireModel):
    """The agent's ``control.allowed_sources`` (what add_camera may open); the agent's ack stays authoritative."""

    schemes: list[Annotated[str, Field(max_length=16)]] = Field(default_factory=list, max_length=16)
    hosts: list[Annotated[str, Field(max_length=255)]] = Field(default_factory=list, max_length=256)
    dirs: list[Annotated[str, Field(max_length=4096)]] = Field(default_factory=list, max_length=256)


class AgentStatus(WireModel):
    """Heartbeat: sent periodically to Kafka (key = agent_id) and retained on MQTT."""

    schema_: Literal["edgesight.status/1"] = Field(SCHEMA_STATUS, alias="schema")
    agent_id: Ident
    ts: UtcDatetime
    state: Literal["starting", "running", "degraded", "stopping", "offline"]
    version: Annotated[str, Field(min_length=1, max_length=64)]
    run_id: RunId | None = Field(None, description="the agent's current run (optional addition within status/1)")
    hostname: str = ""
    uptime_s: float = Field(0.0, ge=0.0)
    cameras: list[CameraStatus] = Field(default_factory=list)
    spool: SpoolStatus | None = None
    # optional additions within status/1 (agent health for the TUI)
    cpu_percent: float = Field(0.0, ge=0.0, description="process CPU, percent of one core (may exceed 100)")
    memory_rss_bytes: int = Field(0, ge=0, le=MAX_INT64)
    inference: InferenceStatus | None = None
    broker: BrokerStatus | None = None
    allowed_sources: AllowedSources | None = None


# ---- control plane (MQTT) -------------------------------------------------------------


class _Command(WireModel):
    schema_: Literal["edgesight.command/1"] = Field(SCHEMA_COMMAND, alias="schema")
    command_id: Annotated[str, Field(min_length=1, max_length=128, description="correlation id, echoed in the ack")]
    agent_id: Ident | None = Field(None, description="target agent; None = the agent whose topic received it")


class AddCamera(_Command):
    action: Literal["add_camera"]
    camera: Annotated[dict[str, Any], AfterValidator(_check_camera)] = Field(
        description="a camera section as in the agent config file (its source must be in the agent's "
        "control.allowed_sources)"
    )


class _CameraCommand(_Command):
    camera_id: Ident


class RemoveCamera(_CameraCommand):
    action: Literal["remove_camera"]


class StartCamera(_CameraCommand):
    action: Literal["start_camera"]


class StopCamera(_CameraCommand):
    action: Literal["stop_camera"]


class RestartCamera(_CameraCommand):
    action: Literal["restart_camera"]


class SetFps(_CameraCommand):
    action: Literal["set_fps"]
    fps: float = Field(gt=0.0, le=240.0, strict=True, allow_inf_nan=False, description="a finite number (not a string)")


class SetModelVariant(_Command):
    action: Literal["set_model_variant"]
    variant: Literal["auto", "fp32", "fp16", "int8"]


class SetZones(_CameraCommand):
    action: Literal["set_zones"]
    zones: Zones


class SetLines(_CameraCommand):
    action: Literal["set_lines"]
    lines: Lines


class Snapshot(_CameraCommand):
    """A keyframe to Kafka now, and one preview on the camera's preview topic."""

    action: Literal["snapshot"]


PREVIEW_MAX_SECONDS: Final = 600  # the longest preview lease one command takes


class Preview(_CameraCommand):
    """Publish the camera's preview (JPEG + detections) every ``control.preview_interval_s`` for ``seconds``."""

    action: Literal["preview"]
    seconds: float = Field(
        60.0,
        ge=1.0,
        le=PREVIEW_MAX_SECONDS,
        strict=True,
        allow_inf_nan=False,
        description="length of the preview lease: a finite number of seconds, 1..600 (not a string)",
    )


ControlCommand = Annotated[
    AddCamera
    | RemoveCamera
    | StartCamera
    | StopCamera
    | RestartCamera
    | SetFps
    | SetModelVariant
    | SetZones
    | SetLines
    | Snapshot
    | Preview,
    Field(discriminator="action"),
]
COMMAND_TYPES: tuple[type[_Command], ...] = get_args(get_args(ControlCommand)[0])
ACTIONS: tuple[str, ...] = tuple(get_args(m.model_fields["action"].annotation)[0] for m in COMMAND_TYPES)


class ControlAck(WireModel):
    schema_: Literal["edgesight.ack/1"] = Field(SCHEMA_ACK, alias="schema")
    command_id: Annotated[str, Field(min_length=1, max_length=128)]
    agent_id: Ident
    action: str | None = None
    ok: bool
    result: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    ts: UtcDatetime


# ---- the TUI feed (MQTT): preview images and live events -------------------------------

PREVIEW_MAX_BYTES: Final = 262_144
"""A preview message (JSON, the JPEG in base64 included); the agent lowers JPEG quality and size to fit."""
PREVIEW_MAX_DETECTIONS: Final = 256  # detections drawn on one preview (the highest scores)
EVENTS_MAX_BYTES: Final = 262_144  # one events message
EVENTS_MAX_PER_MESSAGE: Final = 100  # events in one events message
MAX_EVENT_ZONES: Final = 64  # zone names / crossings listed by one feed event

_Label = Annotated[str, Field(min_length=1, max_length=64)]


JPEG_MAGIC: Final = b"\xff\xd8\xff"


def _jpeg_base64(value: str) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None
    if not raw.startswith(JPEG_MAGIC):
        raise ValueError("not a JPEG (missing FF D8 FF magic)")
    return value


class PreviewDetection(WireModel):
    track_id: int | None = Field(None, ge=0, le=MAX_INT64, description="null: not (yet) tracked")
    label: _Label
    score: float = Field(ge=0.0, le=1.0)
    box: tuple[float, float, float, float] = Field(description="[x1, y1, x2, y2] in frame pixels")

    @model_validator(mode="after")
    def _ordered(self) -> PreviewDetection:
        x1, y1, x2, y2 = self.box
        if not (0.0 <= x1 <= x2 and 0.0 <= y1 <= y2):
            raise ValueError("box must be [x1, y1, x2, y2] with 0 <= x1 <= x2 and 0 <= y1 <= y2")
        return self


class CameraPreview(WireModel):
    """The camera's latest frame as the pipeline saw it, downscaled JPEG + its tracked detections. Retained on
    ``<root>/<agent>/camera/<camera>/preview``."""

    schema_: Literal["edgesight.preview/1"] = Field(SCHEMA_PREVIEW, alias="schema")
    agent_id: Ident
    camera_id: Ident
    ts: UtcDatetime = Field(description="capture time of the frame")
    frame: FrameSize = Field(description="size of the frame (boxes are in its pixels); the JPEG may be smaller")
    jpeg: Annotated[str, Field(min_length=8, max_length=PREVIEW_MAX_BYTES), AfterValidator(_jpeg_base64)] = Field(
        description="base64 of a JPEG of the frame, at most control.preview_max_width pixels wide"
    )
    detections: list[PreviewDetection] = Field(default_factory=list, max_length=PREVIEW_MAX_DETECTIONS)

    @model_validator(mode="after")
    def _inside(self) -> CameraPreview:
        for i, d in enumerate(self.detections):
            if d.box[2] > self.frame.width + 1 or d.box[3] > self.frame.height + 1:
                raise ValueError(f"detections[{i}].box lies outside the frame (exceeds frame.width/height)")
        return self

    def jpeg_bytes(self) -> bytes:
        return base64.b64decode(self.jpeg)


class FeedEvent(WireModel):
    """One tracked-object record of the live feed (a detection event's gist)."""

    kind: EventKind
    ts: UtcDatetime
    label: _Label
    track_id: int | None = Field(None, ge=0, le=MAX_INT64)
    score: float = Field(ge=0.0, le=1.0)
    zones: list[Ident] = Field(default_factory=list, max_length=MAX_EVENT_ZONES, description="zones it is in now")
    entered: list[Ident] = Field(default_factory=list, max_length=MAX_EVENT_ZONES)
    exited: list[Ident] = Field(default_factory=list, max_length=MAX_EVENT_ZONES)
    crossings: list[Crossing] = Field(default_factory=list, max_length=MAX_EVENT_ZONES)


class CameraEvents(WireModel):
    """A batch of a camera's recent events, oldest first, on ``<root>/<agent>/camera/<camera>/events`` (not
    retained). ``dropped`` counts the events left out since the previous batch (updates go first)."""

    schema_: Literal["edgesight.events/1"] = Field(SCHEMA_EVENTS, alias="schema")
    agent_id: Ident
    camera_id: Ident
    ts: UtcDatetime = Field(description="when the batch was sent")
    dropped: int = Field(0, ge=0, le=MAX_INT64)
    events: list[FeedEvent] = Field(default_factory=list, max_length=EVENTS_MAX_PER_MESSAGE)
