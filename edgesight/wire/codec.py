"""Encoding and validation of wire messages, shared by producers and consumers.

``decode_*`` functions validate and raise :class:`WireError`, whose ``field``
names the offending field (dotted path) and whose message says what was
expected: consumers send the record to a dead-letter topic with that reason.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from ..limits import (
    COMMAND_MAX_BYTES,
    HEADER_MAX_BYTES,
    HEADERS_MAX_COUNT,
    RECORD_MAX_BYTES,
    BoundExceeded,
    InputError,
    clip,
    loads_bounded,
)
from .models import (
    ACTIONS,
    EVENTS_MAX_BYTES,
    JPEG_MAGIC,
    PREVIEW_MAX_BYTES,
    SCHEMA_ACK,
    SCHEMA_COMMAND,
    SCHEMA_DETECTION,
    SCHEMA_DETECTION_V1,
    SCHEMA_EVENTS,
    SCHEMA_KEYFRAME,
    SCHEMA_PREVIEW,
    SCHEMA_STATUS,
    AgentStatus,
    AnyDetectionEvent,
    CameraEvents,
    CameraPreview,
    CameraStatus,
    ControlAck,
    ControlCommand,
    DetectionEvent,
    DetectionEventV1,
    KeyframeMeta,
)

_command_adapter: TypeAdapter[ControlCommand] = TypeAdapter(ControlCommand)
KNOWN_SCHEMAS = (
    SCHEMA_DETECTION,
    SCHEMA_DETECTION_V1,
    SCHEMA_KEYFRAME,
    SCHEMA_STATUS,
    SCHEMA_COMMAND,
    SCHEMA_ACK,
    SCHEMA_PREVIEW,
    SCHEMA_EVENTS,
)

Headers = Sequence[tuple[str, bytes | str | None]]
M = TypeVar("M", bound=BaseModel)


class WireError(ValueError):
    """A message that does not satisfy the contract."""

    def __init__(self, kind: str, field: str, message: str):
        self.kind, self.field, self.message = kind, field, message
        super().__init__(f"invalid {kind}: field '{field}': {message}")


def _field(loc: Sequence[Any]) -> str:
    out = ""
    for p in loc:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + ("schema" if p == "schema_" else str(p))
    return out or "(message)"


def _echo(value: Any) -> str:
    """``repr`` of a value from the message, clipped (see :func:`edgesight.limits.clip`)."""
    return clip(repr(value))


def _from_validation(kind: str, err: ValidationError) -> WireError:
    e = err.errors(include_url=False)[0]
    loc = list(e["loc"])
    # Discriminated unions put the tag in the path: drop it ("set_fps.fps" -> "fps").
    if kind == "control command" and len(loc) > 1 and loc[0] in ACTIONS:
        loc = loc[1:]
    msg = e["msg"]
    if e["type"] == "extra_forbidden":
        msg = "unknown field (not part of the contract)"
    elif e["type"] == "missing":
        msg = "required field is missing"
    elif e["type"] == "union_tag_invalid":
        loc, msg = (
            ["action"],
            f"unknown action {_echo(e.get('input', {}).get('action'))}; expected one of {e['ctx']['expected_tags']}",
        )
    elif e["type"] == "union_tag_not_found":
        loc, msg = ["action"], "required field is missing"
    more = len(err.errors()) - 1
    if more:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return WireError(kind, _field(loc), msg)


def parse_json(data: bytes | bytearray | str, kind: str = "message", max_bytes: int = RECORD_MAX_BYTES) -> Any:
    """Parse JSON from outside within the bounds of :mod:`edgesight.limits`; raises :class:`WireError`
    naming the bound and the value at fault (its path, or ``(message)`` for the whole document). For consumers
    that parse a record before decoding it."""
    try:
        return loads_bounded(data, max_bytes=max_bytes)
    except BoundExceeded as e:
        raise WireError(kind, e.path or "(message)", str(e)) from None
    except InputError as e:
        msg = str(e)
        if e.path is None and not msg.startswith("not valid JSON"):
            msg = f"not valid JSON: {msg}"
        raise WireError(kind, e.path or "(message)", msg) from None


def _load_json(kind: str, raw: bytes | bytearray | str | dict, max_bytes: int = RECORD_MAX_BYTES) -> dict:
    obj = raw if isinstance(raw, dict) else parse_json(raw, kind, max_bytes)
    if not isinstance(obj, dict):
        raise WireError(kind, "(message)", f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _check_schema(kind: str, obj: dict, expected: str, *older: str) -> str:
    """The message's schema (default: ``expected``) when it is ``expected`` or one of the ``older`` versions
    still accepted; else a :class:`WireError` naming the versions this build understands."""
    s = obj.get("schema", expected)
    if s == expected or s in older:
        return s
    known = " or ".join(repr(v) for v in (expected, *older))
    if isinstance(s, str) and s.split("/")[0] == expected.split("/")[0]:
        raise WireError(kind, "schema", f"unsupported version {_echo(s)}; this build understands {known}")
    raise WireError(kind, "schema", f"expected {known}, got {_echo(s)}")


def dumps(model: Any) -> bytes:
    return model.model_dump_json(by_alias=True, exclude_none=True).encode()


# ---- detection events ------------------------------------------------------------------


def encode_event(ev: DetectionEvent) -> bytes:
    return dumps(ev)


def event_key(ev: DetectionEvent) -> bytes:
    """Kafka key of a detection event: ``<agent_id>/<camera_id>``. One camera's events share a key, hence a
    partition, hence an order; cameras of different agents with the same id spread over partitions."""
    return f"{ev.agent_id}/{ev.camera_id}".encode()


def decode_event(raw: bytes | str | dict) -> AnyDetectionEvent:
    """A version-2 event, or a version-1 event (no ``run_id``; its ``run_id`` property is ``""``). A message
    without ``schema`` is read as the current version."""
    kind = "detection event"
    obj = _load_json(kind, raw)
    version = _check_schema(kind, obj, SCHEMA_DETECTION, SCHEMA_DETECTION_V1)
    model = DetectionEventV1 if version == SCHEMA_DETECTION_V1 else DetectionEvent
    try:
        return model.model_validate(obj)
    except ValidationError as err:
        raise _from_validation(kind, err) from None


# ---- keyframes -------------------------------------------------------------------------


# Keyframe fields whose header value is compact JSON (a list or an object); every other header is ``str(value)``.
KEYFRAME_JSON_HEADERS = frozenset({"crop", "frame"})


def keyframe_header_text(value: Any) -> str:
    """A keyframe field as header (or S3 metadata) text: compact JSON for a list or an object (``crop``,
    ``frame``: ``[10,20,110,220]``, ``{"width":768,"height":576}``), ``str`` for a scalar. The one encoding:
    :func:`decode_keyframe` reads it back."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def keyframe_headers(meta: KeyframeMeta) -> list[tuple[str, bytes]]:
    doc = json.loads(meta.model_dump_json(by_alias=True, exclude_none=True))
    return [(k, keyframe_header_text(v).encode()) for k, v in doc.items()]


def encode_keyframe(meta: KeyframeMeta, jpeg: bytes) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """Kafka record for a keyframe: (key = object_key, value = JPEG bytes, headers = metadata)."""
    if not jpeg.startswith(JPEG_MAGIC):
        raise WireError("keyframe", "value", "not a JPEG (missing FF D8 FF magic)")
    if len(jpeg) != meta.size:
        raise WireError("keyframe", "size", f"metadata says {meta.size} bytes, value has {len(jpeg)}")
    return meta.object_key.encode(), jpeg, keyframe_headers(meta)


def _text(kind: str, field: str, raw: bytes | bytearray) -> str:
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError as e:
        raise WireError(kind, field, f"not UTF-8: invalid byte at offset {e.start}") from None


def _keyframe_headers(headers: Headers | None) -> dict[str, Any]:
    kind = "keyframe"
    if headers and len(headers) > HEADERS_MAX_COUNT:
        raise WireError(kind, "headers", f"{len(headers)} headers (bound HEADERS_MAX_COUNT = {HEADERS_MAX_COUNT})")
    hdr: dict[str, Any] = {}
    for k, v in headers or ():
        name = clip(str(k), 64) or "headers"
        if v is not None and len(v) > HEADER_MAX_BYTES:
            raise WireError(kind, name, f"header of {len(v)} bytes (bound HEADER_MAX_BYTES = {HEADER_MAX_BYTES})")
        hdr[k] = _text(kind, name, v) if isinstance(v, (bytes, bytearray)) else v
        if k in KEYFRAME_JSON_HEADERS and isinstance(hdr[k], str):
            try:
                hdr[k] = parse_json(hdr[k], kind, HEADER_MAX_BYTES)
            except WireError as e:
                raise WireError(kind, name, e.message) from None
    if not hdr:
        raise WireError(kind, "headers", "no metadata headers")
    return hdr


def decode_keyframe(
    key: bytes | str | None, value: bytes | None, headers: Headers | None
) -> tuple[KeyframeMeta, bytes]:
    kind = "keyframe"
    if not value:
        raise WireError(kind, "value", "empty value; expected JPEG bytes")
    hdr = _keyframe_headers(headers)
    _check_schema(kind, hdr, SCHEMA_KEYFRAME)
    try:
        meta = KeyframeMeta.model_validate(hdr)
    except ValidationError as err:
        raise _from_validation(kind, err) from None
    record_key = _text(kind, "key", key) if isinstance(key, (bytes, bytearray)) else key
    if record_key != meta.object_key:
        raise WireError(
            kind, "key", f"record key {_echo(record_key)} differs from header object_key {_echo(meta.object_key)}"
        )
    if not value.startswith(JPEG_MAGIC):
        raise WireError(kind, "value", "not a JPEG (missing FF D8 FF magic)")
    if len(value) != meta.size:
        raise WireError(kind, "size", f"header says {meta.size} bytes, value has {len(value)}")
    if hashlib.sha256(value).hexdigest() != meta.sha256:
        raise WireError(kind, "sha256", "JPEG bytes do not match the sha256 header (corrupted in transit?)")
    return meta, value


# ---- status, control -------------------------------------------------------------------


def decode_status(raw: bytes | str | dict) -> AgentStatus | CameraStatus:
    kind = "status"
    obj = _load_json(kind, raw)
    _check_schema(kind, obj, SCHEMA_STATUS)
    model = CameraStatus if "camera_id" in obj else AgentStatus
    try:
        return model.model_validate(obj)
    except ValidationError as err:
        raise _from_validation(kind, err) from None


def decode_command(raw: bytes | str | dict) -> ControlCommand:
    kind = "control command"
    obj = _load_json(kind, raw, COMMAND_MAX_BYTES)
    _check_schema(kind, obj, SCHEMA_COMMAND)
    try:
        return _command_adapter.validate_python(obj)
    except ValidationError as err:
        raise _from_validation(kind, err) from None


def _decode(kind: str, raw: bytes | str | dict, model: type[M], schema: str, max_bytes: int = RECORD_MAX_BYTES) -> M:
    """A message of one model and schema version: parsed within ``max_bytes`` (and the JSON bounds), checked."""
    obj = _load_json(kind, raw, max_bytes)
    _check_schema(kind, obj, schema)
    try:
        return model.model_validate(obj)
    except ValidationError as err:
        raise _from_validation(kind, err) from None


def decode_ack(raw: bytes | str | dict) -> ControlAck:
    return _decode("control ack", raw, ControlAck, SCHEMA_ACK)


# ---- the TUI feed (MQTT) ---------------------------------------------------------------


def decode_preview(raw: bytes | str | dict) -> CameraPreview:
    """A camera preview (``edgesight.preview/1``), at most :data:`~edgesight.wire.models.PREVIEW_MAX_BYTES`;
    its JPEG is checked to be base64 with a JPEG's magic (:meth:`CameraPreview.jpeg_bytes` gives the bytes)."""
    return _decode("preview", raw, CameraPreview, SCHEMA_PREVIEW, PREVIEW_MAX_BYTES)


def decode_events(raw: bytes | str | dict) -> CameraEvents:
    """A batch of a camera's live events (``edgesight.events/1``), at most
    :data:`~edgesight.wire.models.EVENTS_MAX_BYTES` and :data:`~edgesight.wire.models.EVENTS_MAX_PER_MESSAGE`."""
    return _decode("events", raw, CameraEvents, SCHEMA_EVENTS, EVENTS_MAX_BYTES)


def json_schemas() -> dict[str, dict]:
    """The published JSON Schema documents, by file name."""
    out = {
        "detection.v1.json": DetectionEventV1.model_json_schema(by_alias=True),
        "detection.v2.json": DetectionEvent.model_json_schema(by_alias=True),
        "keyframe.v1.json": KeyframeMeta.model_json_schema(by_alias=True),
        "agent-status.v1.json": AgentStatus.model_json_schema(by_alias=True),
        "camera-status.v1.json": CameraStatus.model_json_schema(by_alias=True),
        "command.v1.json": _command_adapter.json_schema(by_alias=True),
        "ack.v1.json": ControlAck.model_json_schema(by_alias=True),
        "preview.v1.json": CameraPreview.model_json_schema(by_alias=True),
        "events.v1.json": CameraEvents.model_json_schema(by_alias=True),
    }
    for name, doc in out.items():
        doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        doc["$id"] = f"https://edgesight.dev/schemas/{name}"
    return out
