"""keyframe/1's optional crop fields: ``crop`` [x1, y1, x2, y2] and ``frame`` {width, height} (source pixels)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import jsonschema
import pytest

from edgesight.wire import KeyframeMeta, WireError, decode_keyframe, encode_keyframe, keyframe_header_text

TS = datetime(2026, 11, 26, 12, 30, 15, 250000, tzinfo=timezone.utc)
JPEG = b"\xff\xd8\xff\xe0" + b"x" * 100 + b"\xff\xd9"
SCHEMA = json.loads((Path(__file__).parents[1] / "edgesight/wire/schemas/keyframe.v1.json").read_text())


def _meta(**kw) -> KeyframeMeta:
    args = dict(agent_id="site-1", camera_id="cam-1", ts=TS, seq=42, width=96, height=160, reason="track_start")
    return KeyframeMeta.for_jpeg(JPEG, **{**args, "track_id": 7, **kw})


def _headers(meta: KeyframeMeta, **override: bytes) -> list[tuple[str, bytes]]:
    hdr = dict(encode_keyframe(meta, JPEG)[2])
    hdr.update(override)
    return [(k, v) for k, v in hdr.items() if v is not None]


def test_crop_fields_round_trip_through_headers_and_match_the_schema():
    meta = _meta(crop=(80, 60, 220, 340), frame=(768, 576))
    key, value, headers = encode_keyframe(meta, JPEG)
    h = dict(headers)
    assert h["crop"] == b"[80,60,220,340]" and h["frame"] == b'{"width":768,"height":576}'
    assert keyframe_header_text(meta.crop) == "[80,60,220,340]" and keyframe_header_text(7) == "7"
    back, jpeg = decode_keyframe(key, value, headers)
    assert back == meta and back.crop == [80, 60, 220, 340] and (back.frame.width, back.frame.height) == (768, 576)
    jsonschema.validate(json.loads(meta.model_dump_json(by_alias=True, exclude_none=True)), SCHEMA)
    # The crop fields are new in keyframe/1 and optional: a whole frame carries neither, an older record parses.
    whole = _meta()
    assert whole.crop is None and whole.frame is None
    assert {k for k, _ in encode_keyframe(whole, JPEG)[2]}.isdisjoint({"crop", "frame"})
    assert decode_keyframe(*encode_keyframe(whole, JPEG))[0] == whole
    # A crop changes nothing of the id: the id names the keyframe (agent, camera, time, seq, reason, track).
    assert whole.keyframe_id == meta.keyframe_id
    jsonschema.validate(json.loads(whole.model_dump_json(by_alias=True, exclude_none=True)), SCHEMA)
    # A frame size without a crop is allowed (a whole frame that says its size).
    assert decode_keyframe(*encode_keyframe(_meta(frame=(768, 576)), JPEG))[0].crop is None


@pytest.mark.parametrize(
    ("crop", "frame", "why"),
    [
        (b"[80,60,220,340]", None, "crop needs frame"),
        (b"[80,60,800,340]", b'{"width":768,"height":576}', "x2 <= frame.width"),
        (b"[80,600,220,700]", b'{"width":768,"height":576}', "y2 <= frame.height"),
        (b"[80,60,80,340]", b'{"width":768,"height":576}', "x1 < x2"),
        (b"[220,60,80,340]", b'{"width":768,"height":576}', "x1 < x2"),
        (b"[80,60,220]", b'{"width":768,"height":576}', "at least 4"),
        (b"[80,60,220,340,1]", b'{"width":768,"height":576}', "at most 4"),
        (b"[80.5,60,220,340]", b'{"width":768,"height":576}', "integer"),
        (b'["80",60,220,340]', b'{"width":768,"height":576}', "integer"),
        (b"[-1,60,220,340]", b'{"width":768,"height":576}', "greater than or equal to 0"),
        (b"[0,0,20000,340]", b'{"width":768,"height":576}', "less than or equal to 16384"),
        (b"80,60,220,340", b'{"width":768,"height":576}', "JSON"),
        (b"[80,60,220,340]", b'{"width":0,"height":576}', "greater than 0"),
        (b"[80,60,220,340]", b'{"width":768}', "required"),
        (b"[80,60,220,340]", b"[768,576]", "dictionary"),
    ],
)
def test_invalid_crop_headers_are_refused_naming_the_field(crop, frame, why):
    meta = _meta()
    key, value, _ = encode_keyframe(meta, JPEG)
    headers = _headers(meta, crop=crop, frame=frame)
    with pytest.raises(WireError) as ei:
        decode_keyframe(key, value, headers)
    assert re.split(r"[.\[]", ei.value.field)[0] in {"crop", "frame", "(message)"}, ei.value
    assert why in ei.value.message, ei.value
    if ei.value.field != "(message)":
        return
    assert "crop" in ei.value.message  # the model-level check names the fields


def test_crop_must_be_built_from_ints_inside_the_frame():
    with pytest.raises(ValueError, match="x1 < x2 <= frame.width"):
        _meta(crop=(10, 10, 900, 20), frame=(768, 576))
    with pytest.raises(ValueError, match="crop needs frame"):
        _meta(crop=(10, 10, 20, 20))
    with pytest.raises(ValueError, match="integer"):
        _meta(crop=(10.0, 10, 20, 20), frame=(768, 576))
