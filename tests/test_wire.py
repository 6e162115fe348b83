"""The wire contract: round trips, rejections naming the field, published JSON Schemas in step."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jsonschema
import pytest

from edgesight.wire import (
    AgentStatus,
    Box,
    CameraStatus,
    ControlAck,
    DetectionEvent,
    DetectionEventV1,
    FrameSize,
    KeyframeMeta,
    ModelRef,
    NormBox,
    WireError,
    decode_ack,
    decode_command,
    decode_event,
    decode_events,
    decode_keyframe,
    decode_preview,
    decode_status,
    dumps,
    encode_event,
    encode_keyframe,
    json_schemas,
    make_event_id,
)

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "edgesight" / "wire" / "schemas"
TS = datetime(2026, 11, 26, 12, 30, 15, 250000, tzinfo=timezone.utc)
RUN = "a1" * 16
JPEG = b"\xff\xd8\xff\xe0" + b"x" * 100 + b"\xff\xd9"


def make_event(**over) -> DetectionEvent:
    doc = dict(
        event_id=make_event_id("site-1", "cam-1", TS, 42, 7, "new", run_id=RUN),
        kind="new",
        agent_id="site-1",
        run_id=RUN,
        camera_id="cam-1",
        ts=TS,
        seq=42,
        model=ModelRef(name="yolov4-tiny", version="1", variant="int8"),
        label="person",
        class_id=0,
        score=0.91,
        box=Box(x1=10, y1=20, x2=110, y2=220),
        box_norm=NormBox(x1=10 / 768, y1=20 / 576, x2=110 / 768, y2=220 / 576),
        frame=FrameSize(width=768, height=576),
        track_id=7,
        zones=["door"],
        entered=["door"],
    )
    doc.update(over)
    return DetectionEvent(**doc)


def event_json(**over) -> dict:
    d = json.loads(encode_event(make_event()))
    d.update(over)
    return d


def test_event_round_trip_is_lossless():
    ev = make_event()
    raw = encode_event(ev)
    back = decode_event(raw)
    assert back == ev
    assert json.loads(raw)["schema"] == "edgesight.detection/2" and json.loads(raw)["run_id"] == RUN
    assert back.ts == TS and back.ts.tzinfo is not None


def test_event_id_is_deterministic_and_distinguishes_inputs():
    a = make_event_id("site-1", "cam-1", TS, 42, 7, "new")
    assert a == make_event_id("site-1", "cam-1", TS.timestamp(), 42, 7, "new")  # datetime or epoch: same id
    others = {
        make_event_id("site-1", "cam-2", TS, 42, 7, "new"),
        make_event_id("site-1", "cam-1", TS, 43, 7, "new"),
        make_event_id("site-1", "cam-1", TS, 42, 8, "new"),
        make_event_id("site-1", "cam-1", TS, 42, 7, "update"),
        make_event_id("site-1", "cam-1", TS + timedelta(milliseconds=1), 42, 7, "new"),
    }
    assert a not in others and len(others) == 5
    # detection/2: the agent run is part of the id (track ids and seq restart with the agent), a re-send is not
    v2 = make_event_id("site-1", "cam-1", TS, 42, 7, "new", run_id=RUN)
    assert v2 == make_event_id("site-1", "cam-1", TS, 42, 7, "new", run_id=RUN)
    assert len({a, v2, make_event_id("site-1", "cam-1", TS, 42, 7, "new", run_id="b2" * 16)}) == 3


def v1_json() -> dict:
    """The same event as a not yet upgraded agent sends it (detection/1: no run_id)."""
    d = event_json(schema="edgesight.detection/1", event_id=make_event_id("site-1", "cam-1", TS, 42, 7, "new"))
    del d["run_id"]
    return d


def test_detection_v1_is_still_accepted_with_an_empty_run_id():
    ev = decode_event(json.dumps(v1_json()).encode())
    assert isinstance(ev, DetectionEventV1) and ev.run_id == "" and ev.track_id == 7
    assert ev.event_id == make_event_id("site-1", "cam-1", TS, 42, 7, "new")  # v1 ids unchanged
    assert decode_event(encode_event(make_event())).run_id == RUN


@pytest.mark.parametrize(
    "doc, field",
    [
        ({k: v for k, v in event_json().items() if k != "run_id"}, "run_id"),  # v2 needs a run
        (event_json(run_id="not-hex"), "run_id"),
        ({**v1_json(), "run_id": RUN}, "run_id"),  # not part of v1
    ],
)
def test_run_id_belongs_to_v2_only(doc, field):
    with pytest.raises(WireError) as ei:
        decode_event(doc)
    assert ei.value.field == field, str(ei.value)


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d.pop("camera_id"), "camera_id"),
        (lambda d: d.update(score=1.5), "score"),
        (lambda d: d.update(label=""), "label"),
        (lambda d: d["box"].update(x2=1), "box"),
        (lambda d: d["box_norm"].update(y2=2.0), "box_norm.y2"),
        (lambda d: d.update(ts="2026-11-26T12:30:15"), "ts"),  # naive timestamp
        (lambda d: d.update(event_id="not-an-id"), "event_id"),
        (lambda d: d.update(camera_id="bad id with spaces"), "camera_id"),
        (lambda d: d.update(colour="red"), "colour"),  # unknown field
        (lambda d: d["model"].update(variant="int4"), "model.variant"),
        (lambda d: d.update(kind="moved"), "kind"),
        (lambda d: d.update(crossings=[{"line": "l1", "direction": "side ways"}]), "crossings[0].direction"),
        (lambda d: d["frame"].update(width=0), "frame.width"),
    ],
)
def test_malformed_event_is_rejected_naming_the_field(mutate, field):
    d = event_json()
    mutate(d)
    with pytest.raises(WireError) as ei:
        decode_event(json.dumps(d).encode())
    assert ei.value.field == field, str(ei.value)
    assert f"'{field}'" in str(ei.value)


def test_box_outside_frame_is_rejected():
    with pytest.raises(WireError, match="outside the frame"):
        decode_event(event_json(box={"x1": 10, "y1": 20, "x2": 900, "y2": 220}))


@pytest.mark.parametrize(
    "raw, msg",
    [(b"{not json", "not valid JSON"), (b"[1,2]", "expected a JSON object"), (b"\xff\xfe", "not valid JSON")],
)
def test_non_json_is_rejected(raw, msg):
    with pytest.raises(WireError, match=msg):
        decode_event(raw)


def test_unknown_major_version_is_named():
    with pytest.raises(WireError) as ei:
        decode_event(event_json(schema="edgesight.detection/3"))
    assert ei.value.field == "schema" and "unsupported version" in str(ei.value)
    assert "'edgesight.detection/2' or 'edgesight.detection/1'" in str(ei.value)


def test_keyframe_record_round_trip_and_integrity_checks():
    meta = KeyframeMeta.for_jpeg(
        JPEG,
        agent_id="site-1",
        camera_id="cam-1",
        ts=TS,
        seq=42,
        width=768,
        height=576,
        reason="track_start",
        track_id=7,
    )
    assert meta.object_key == f"keyframes/site-1/cam-1/2026/11/26/12/{meta.keyframe_id}.jpg"
    # Deterministic: the same keyframe re-sent keeps its id and object key.
    again = KeyframeMeta.for_jpeg(
        JPEG,
        agent_id="site-1",
        camera_id="cam-1",
        ts=TS,
        seq=42,
        width=768,
        height=576,
        reason="track_start",
        track_id=7,
    )
    assert again.object_key == meta.object_key
    key, value, headers = encode_keyframe(meta, JPEG)
    assert key == meta.object_key.encode() and value == JPEG
    back, jpeg = decode_keyframe(key, value, headers)
    assert back == meta and jpeg == JPEG

    with pytest.raises(WireError) as ei:
        decode_keyframe(key, JPEG[:-1] + b"\x00", headers)
    assert ei.value.field == "sha256"
    with pytest.raises(WireError) as ei:
        decode_keyframe(b"other/key.jpg", value, headers)
    assert ei.value.field == "key"
    with pytest.raises(WireError) as ei:
        decode_keyframe(key, b"GIF89a" + b"x" * 100, headers)
    assert ei.value.field == "value"
    with pytest.raises(WireError) as ei:
        decode_keyframe(key, value, [h for h in headers if h[0] != "camera_id"])
    assert ei.value.field == "camera_id"
    with pytest.raises(WireError):
        encode_keyframe(meta, b"not a jpeg")


def test_status_and_ack_round_trip():
    cam = CameraStatus(
        agent_id="site-1", camera_id="cam-1", ts=TS, state="reconnecting", reason="read timeout", fps=0.0
    )
    st = AgentStatus(agent_id="site-1", ts=TS, state="degraded", version="0.1.0", cameras=[cam])
    assert decode_status(dumps(st)) == st
    assert decode_status(dumps(cam)) == cam
    ack = ControlAck(command_id="c-1", agent_id="site-1", action="set_fps", ok=True, result={"fps": 5.0}, ts=TS)
    assert decode_ack(dumps(ack)) == ack
    with pytest.raises(WireError) as ei:
        decode_status(json.dumps({**json.loads(dumps(cam)), "state": "exploded"}))
    assert ei.value.field == "state"


def test_commands_decode_by_action_and_errors_name_the_field():
    cmd = decode_command(b'{"command_id":"c1","action":"set_fps","camera_id":"cam-1","fps":5}')
    assert cmd.action == "set_fps" and cmd.fps == 5.0 and cmd.camera_id == "cam-1"
    cases = [
        (b'{"command_id":"c1","action":"set_fps","camera_id":"cam-1","fps":0}', "fps"),
        (b'{"command_id":"c1","action":"set_fps","camera_id":"cam-1"}', "fps"),
        (b'{"command_id":"c1","action":"stop_camera"}', "camera_id"),
        (b'{"command_id":"c1","action":"self_destruct"}', "action"),
        (b'{"command_id":"c1"}', "action"),
        (b'{"action":"snapshot","camera_id":"cam-1"}', "command_id"),
        (b'{"command_id":"c1","action":"set_model_variant","variant":"int3"}', "variant"),
    ]
    for raw, field in cases:
        with pytest.raises(WireError) as ei:
            decode_command(raw)
        assert ei.value.field == field, (raw, str(ei.value))


def test_published_schema_files_match_the_models():
    generated = json_schemas()
    on_disk = {p.name for p in SCHEMA_DIR.glob("*.json")}
    assert on_disk == set(generated), "run `cloud-ops schemas export` after changing edgesight/wire/models.py"
    for name, doc in generated.items():
        assert json.loads((SCHEMA_DIR / name).read_text()) == json.loads(json.dumps(doc)), (
            f"{name} is stale: run `cloud-ops schemas export`"
        )


def test_published_schema_agrees_with_the_codec():
    """An independent validator (jsonschema) accepts what we emit and rejects what we reject."""
    v1 = jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / "detection.v1.json").read_text()))
    validator = jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / "detection.v2.json").read_text()))
    good = event_json()
    assert not list(validator.iter_errors(good))
    assert not list(v1.iter_errors(v1_json()))
    assert list(v1.iter_errors(good)) and list(validator.iter_errors(v1_json()))  # each file is its version
    for bad in (
        event_json(score=2),
        event_json(colour="red"),
        {k: v for k, v in good.items() if k != "label"},
        {k: v for k, v in good.items() if k != "run_id"},
        event_json(kind="moved"),
    ):
        assert list(validator.iter_errors(bad)), bad
        with pytest.raises(WireError):
            decode_event(bad)
    cmd_schema = json.loads((SCHEMA_DIR / "command.v1.json").read_text())
    jsonschema.validate({"command_id": "c1", "action": "set_fps", "camera_id": "cam-1", "fps": 5}, cmd_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"command_id": "c1", "action": "set_fps", "camera_id": "cam-1", "fps": -5}, cmd_schema)


def test_published_feed_schemas_agree_with_the_codec():
    """The TUI feed's schema files (preview/1, events/1) accept what the codec accepts and reject what it rejects."""
    preview = jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / "preview.v1.json").read_text()))
    events = jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / "events.v1.json").read_text()))
    jpeg = base64.b64encode(JPEG).decode()
    det = {"track_id": 7, "label": "person", "score": 0.9, "box": [10, 20, 110, 220]}
    good_preview = {
        "schema": "edgesight.preview/1",
        "agent_id": "site-1",
        "camera_id": "cam-1",
        "ts": "2026-11-26T12:30:15.250Z",
        "frame": {"width": 768, "height": 576},
        "jpeg": jpeg,
        "detections": [det],
    }
    ev = {"kind": "end", "ts": "2026-11-26T12:30:15.250Z", "label": "person", "track_id": 7, "score": 0.9}
    good_events = {**{k: good_preview[k] for k in ("agent_id", "camera_id", "ts")}, "dropped": 0, "events": [ev]}
    good_events["schema"] = "edgesight.events/1"
    assert not list(preview.iter_errors(good_preview)) and decode_preview(good_preview).detections[0].track_id == 7
    assert not list(events.iter_errors(good_events)) and decode_events(good_events).events[0].kind == "end"
    for bad in (
        {**good_preview, "detections": [{**det, "score": 2}]},
        {**good_preview, "colour": "red"},
        {k: v for k, v in good_preview.items() if k != "jpeg"},
    ):
        assert list(preview.iter_errors(bad)), bad
        with pytest.raises(WireError):
            decode_preview(bad)
    for bad in ({**good_events, "events": [{**ev, "kind": "moved"}]}, {**good_events, "dropped": -1}):
        assert list(events.iter_errors(bad)), bad
        with pytest.raises(WireError):
            decode_events(bad)


def test_timestamps_serialise_with_exactly_millisecond_precision():
    """Kafka Connect's TimestampConverter (Java SimpleDateFormat ...ss.SSSX) needs three fractional digits."""
    for us in (0, 250000, 123456, 999999):
        ev = make_event(ts=TS.replace(microsecond=us))
        ts = json.loads(encode_event(ev))["ts"]
        assert len(ts) == len("2026-11-26T12:30:15.250Z") and ts.endswith("Z"), ts
        assert ts[-4:-1] == f"{us // 1000:03d}"
        assert decode_event(encode_event(ev)) == ev


# ---- dead-letter headers (one contract for the connector runner and the cloud consumers) ----


def test_dead_letter_headers_round_trip_and_strip():
    from edgesight.wire import WireError
    from edgesight.wire.deadletter import PREFIX, context_headers, parse_headers, strip_context

    try:
        raise WireError("detection event", "score", "must be <= 1")
    except WireError as e:
        hdr = context_headers(
            topic="t.v1",
            partition=3,
            offset=42,
            connector="engineering",
            task_id=0,
            stage="VALUE_CONVERTER",
            class_name="edgesight.wire.codec",
            exc=e,
        )
    names = [k for k, _ in hdr]
    assert names[:10] == [
        PREFIX + k
        for k in (
            "topic",
            "partition",
            "offset",
            "connector.name",
            "task.id",
            "stage",
            "class.name",
            "exception.class.name",
            "exception.message",
            "exception.stacktrace",
        )
    ]
    own = [("traceparent", b"00-abc"), ("content-type", b"application/json")]
    c = parse_headers(own + hdr)
    assert (c.topic, c.partition, c.offset, c.connector, c.stage) == ("t.v1", 3, 42, "engineering", "VALUE_CONVERTER")
    assert (c.field, c.kind, c.exception_class) == ("score", "detection event", "edgesight.wire.codec.WireError")
    assert "field 'score'" in c.message and c.source == "t.v1[3]@42"
    assert "WireError" in dict(hdr)[PREFIX + "exception.stacktrace"].decode()
    assert strip_context(own + hdr) == own
    assert parse_headers(own) is None
    assert parse_headers([(PREFIX + "topic", b"t"), (PREFIX + "partition", b"x"), (PREFIX + "offset", b"1")]) is None


def test_dead_letter_stage_must_be_a_connect_stage():
    from edgesight.wire.deadletter import context_headers

    with pytest.raises(ValueError, match="unknown dead-letter stage 'DECODE'"):
        context_headers(
            topic="t",
            partition=0,
            offset=0,
            connector="c",
            task_id=0,
            stage="DECODE",
            class_name="x",
            exc=RuntimeError("boom"),
        )
