"""Hostile input at the wire boundary: every decode is a model or a WireError, within bounds, in linear time.

Property tests throw random bytes and JSON of every shape (huge strings and integers, deep nesting, wrong
types, bad keyframe headers) at the decoders; the invariants hold for every input, not only the examples
the issue found (a 5,000-digit integer, JSON nested 100,000 deep, a non-UTF-8 header).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgesight.limits import (
    COMMAND_MAX_BYTES,
    ECHO_MAX_CHARS,
    HEADER_MAX_BYTES,
    JSON_MAX_DEPTH,
    MAX_INT_DIGITS,
    RECORD_MAX_BYTES,
    BoundExceeded,
    InputError,
    clip,
    json_depth,
    loads_bounded,
)
from edgesight.wire import (
    KeyframeMeta,
    WireError,
    decode_ack,
    decode_command,
    decode_event,
    decode_keyframe,
    decode_status,
    encode_keyframe,
    parse_json,
)
from edgesight.wire.models import KeyframeReason
from tests.test_wire import make_event

DECODERS = [decode_event, decode_status, decode_command, decode_ack]
# A WireError's message: the decoder's own text plus clipped echoes, never the whole input.
MAX_MESSAGE = 4 * ECHO_MAX_CHARS + 400
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**60), max_value=10**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=50)
    | st.sampled_from(["[/red]", "edgesight.detection/1", "edgesight.command/1", "set_fps", "\x00", "é" * 3])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=30,
)


def _decodes_or_wire_error(fn, raw) -> None:
    try:
        fn(raw)
    except WireError as e:
        assert e.field and len(str(e)) <= MAX_MESSAGE, str(e)[:500]


# ---- loads_bounded ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, bound",
    [
        ("[" * 100_000 + "]" * 100_000, "max_depth"),
        ('{"a":' * 50_000 + "1" + "}" * 50_000, "max_depth"),
        ('{"fps": ' + "9" * 5000 + "}", "max_int_digits"),
        ("-" + "1" * (MAX_INT_DIGITS + 1), "max_int_digits"),
        ("1." + "0" * 100, "MAX_FLOAT_CHARS"),
    ],
)
@pytest.mark.timeout(30)
def test_bounds_are_named(text, bound):
    with pytest.raises(BoundExceeded) as ei:
        loads_bounded(text, max_bytes=RECORD_MAX_BYTES)
    assert ei.value.bound == bound and bound in str(ei.value)


def test_size_bound_counts_utf8_bytes():
    with pytest.raises(BoundExceeded, match="max_bytes"):
        loads_bounded('"' + "é" * 600 + '"', max_bytes=1000)  # 600 characters, 1202 bytes
    assert loads_bounded('"' + "é" * 400 + '"', max_bytes=1000) == "é" * 400


def test_brackets_inside_strings_do_not_count():
    deep_looking = json.dumps({"s": "[" * 10_000 + '\\"{' * 1000, "t": ["]]]"]})
    assert json_depth(deep_looking) == 2
    assert loads_bounded(deep_looking, max_bytes=RECORD_MAX_BYTES)["t"] == ["]]]"]
    assert loads_bounded("[" * JSON_MAX_DEPTH + "]" * JSON_MAX_DEPTH, max_bytes=1000) is not None


@pytest.mark.parametrize(
    "data, why",
    [
        ("NaN", "NaN"),
        ("[-Infinity]", "Infinity"),
        ("1e999", "out of range"),
        (b"\xff\xfe{}", "not UTF-8"),
        ('"\\ud800"', "surrogate"),
        ('{"\\udfff": 1}', "surrogate"),
        ("{not json", "not valid JSON"),
    ],
)
def test_invalid_input_is_an_input_error(data, why):
    with pytest.raises(InputError, match=why):
        loads_bounded(data, max_bytes=1000)


def test_paired_surrogates_and_escaped_backslashes_are_fine():
    assert loads_bounded('"\\ud83d\\ude00"', max_bytes=100) == "\U0001f600"
    assert loads_bounded('"\\\\ud800"', max_bytes=100) == "\\ud800"


@given(st.text(max_size=3000), st.integers(min_value=0, max_value=5000))
@PROPS
def test_clip_is_bounded_and_keeps_short_text(text, n):
    out = clip(text, n)
    assert out == text if len(text) <= n else (out.startswith(text[:n]) and len(out) <= n + 40)


@given(json_values)
@PROPS
def test_loads_bounded_agrees_with_json_within_bounds(value):
    text = json.dumps(value)
    try:
        assert loads_bounded(text, max_bytes=RECORD_MAX_BYTES) == json.loads(text)
    except BoundExceeded as e:
        assert e.bound in ("max_int_digits", "MAX_FLOAT_CHARS")


# ---- the decoders ----------------------------------------------------------------------


@given(st.binary(max_size=2000))
@PROPS
def test_random_bytes_decode_or_wire_error(raw):
    for fn in DECODERS:
        _decodes_or_wire_error(fn, raw)


@given(json_values)
@PROPS
def test_json_of_every_shape_decodes_or_wire_error(value):
    raw = json.dumps(value).encode()
    for fn in DECODERS:
        _decodes_or_wire_error(fn, raw)


EVENT = json.loads(make_event().model_dump_json(by_alias=True, exclude_none=True))


@given(st.sampled_from(sorted(EVENT)), json_values)
@PROPS
def test_an_event_with_one_field_replaced_decodes_or_wire_error(field, value):
    doc = {**EVENT, field: value}
    _decodes_or_wire_error(decode_event, json.dumps(doc).encode())
    _decodes_or_wire_error(decode_event, doc)


@pytest.mark.parametrize(
    "raw, field, bound",
    [
        (json.dumps({**EVENT, "seq": 0}).replace('"seq": 0', '"seq": ' + "9" * 5000), "seq", "max_int_digits"),
        (json.dumps({**EVENT, "seq": 0}).replace('"seq": 0', '"seq": NaN'), "seq", "NaN"),
        (json.dumps({**EVENT, "seq": 2**63}), "seq", "less than or equal to 9223372036854775807"),
        (json.dumps({**EVENT, "track_id": 2**63}), "track_id", "less than or equal to 9223372036854775807"),
        (json.dumps({**EVENT, "schema": "x" * 30_000}), "schema", None),
        (json.dumps({**EVENT, "label": "y" * 2_000_000}), "(message)", "max_bytes"),
    ],
)
@pytest.mark.timeout(30)
def test_huge_values_are_refused_naming_the_bound_with_a_clipped_echo(raw, field, bound):
    with pytest.raises(WireError) as ei:
        decode_event(raw.encode())
    assert ei.value.field == field and len(str(ei.value)) <= MAX_MESSAGE
    if bound:
        assert bound in ei.value.message


# A path into a JSON document: object keys (any text, including quotes, brackets and backslashes) and indexes.
path_parts = st.lists(st.text(min_size=1, max_size=12) | st.integers(min_value=0, max_value=3), max_size=6)
bad_numbers = st.sampled_from(
    [("NaN", "NaN"), ("-Infinity", "Infinity"), ("1e999", "out of range"), ("7" * 40, "max_int_digits")]
)


def _place(parts: list, leaf: str) -> tuple[str, str]:
    """A JSON text holding ``leaf`` (raw JSON) at ``parts``, each list padded with ``0`` before the index,
    and the path the parser should name."""
    text, name = leaf, ""
    for p in reversed(parts):
        text = "[" + "0, " * p + text + "]" if isinstance(p, int) else "{" + json.dumps(p) + ": " + text + "}"
    for p in parts:
        name += f"[{p}]" if isinstance(p, int) else ("." if name else "") + p
    return text, name


@given(path_parts, bad_numbers)
@PROPS
def test_a_refused_number_is_named_by_its_path(parts, bad):
    raw, reason = bad
    text, name = _place(parts, raw)
    with pytest.raises(InputError, match=reason) as ei:
        loads_bounded(text, max_bytes=RECORD_MAX_BYTES)
    assert ei.value.path == (name or None)
    with pytest.raises(WireError) as wi:
        parse_json(text.encode(), "detection event")
    assert wi.value.field == (name or "(message)") and reason in wi.value.message


@given(path_parts, st.integers(min_value=1, max_value=200))
@PROPS
def test_nesting_past_the_bound_is_named_by_where_it_goes_past(parts, extra):
    deep = "[" * (JSON_MAX_DEPTH + extra) + "]" * (JSON_MAX_DEPTH + extra)
    text, _ = _place(parts, deep)
    with pytest.raises(BoundExceeded, match="max_depth") as ei:
        loads_bounded(text, max_bytes=RECORD_MAX_BYTES)
    # The path goes through the given keys and indexes, then down the first items of the nested lists, to
    # the last level within the bound; past 8 levels the rest is summarised.
    full = parts + [0] * (JSON_MAX_DEPTH - len(parts))
    _, shown = _place(full[:8], "0")
    assert ei.value.path == f"{shown}...({len(full) - 8} levels more)"


@pytest.mark.timeout(30)
def test_deep_nesting_is_refused_before_parsing():
    for fn in DECODERS:
        with pytest.raises(WireError, match="max_depth"):
            fn(b"[" * 30_000 + b"]" * 30_000)


def test_commands_have_their_own_size_bound():
    big = json.dumps({"schema": "edgesight.command/1", "command_id": "c", "action": "x" * COMMAND_MAX_BYTES})
    with pytest.raises(WireError, match="max_bytes"):
        decode_command(big.encode())


def test_parse_json_for_consumers_that_parse_first():
    assert parse_json(b'{"a": [1]}') == {"a": [1]}
    with pytest.raises(WireError, match="not valid JSON") as ei:
        parse_json(b"\xff", "detection event")
    assert ei.value.kind == "detection event" and ei.value.field == "(message)"


# ---- keyframes -------------------------------------------------------------------------

JPEG = b"\xff\xd8\xff\xe0" + b"k" * 200 + b"\xff\xd9"


def _keyframe():
    meta = KeyframeMeta(
        keyframe_id="a" * 32,
        agent_id="site-1",
        camera_id="cam-1",
        ts=datetime(2026, 11, 28, 5, 0, tzinfo=timezone.utc),
        seq=1,
        width=64,
        height=48,
        reason=KeyframeReason.track_start,
        size=len(JPEG),
        sha256=hashlib.sha256(JPEG).hexdigest(),
        object_key="keyframes/site-1/cam-1/a.jpg",
    )
    return encode_keyframe(meta, JPEG)


def test_a_good_keyframe_still_decodes():
    key, value, headers = _keyframe()
    meta, jpeg = decode_keyframe(key, value, headers)
    assert jpeg == JPEG and meta.object_key == key.decode()


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda h: [(k, b"\xff\xfe" if k == "camera_id" else v) for k, v in h], "camera_id"),
        (lambda h: [(k, b"9" * (HEADER_MAX_BYTES + 1) if k == "size" else v) for k, v in h], "size"),
        (lambda h: h + [(f"x{i}", b"1") for i in range(100)], "headers"),
        (lambda h: [(k, b"x" * 30_000 if k == "schema" else v) for k, v in h], "schema"),
    ],
)
def test_bad_keyframe_headers_are_wire_errors_naming_the_header(mutate, field):
    key, value, headers = _keyframe()
    with pytest.raises(WireError) as ei:
        decode_keyframe(key, value, mutate(headers))
    assert ei.value.field == field and len(str(ei.value)) <= MAX_MESSAGE


def test_a_non_utf8_record_key_is_a_wire_error():
    _, value, headers = _keyframe()
    with pytest.raises(WireError) as ei:
        decode_keyframe(b"\xc3\x28", value, headers)
    assert ei.value.field == "key"


header_values = st.none() | st.binary(max_size=80) | st.text(max_size=40).map(str.encode)


@given(
    st.one_of(st.none(), st.binary(max_size=40)),
    st.one_of(st.none(), st.binary(max_size=300)),
    st.lists(st.tuples(st.text(max_size=12), header_values), max_size=20),
    st.data(),
)
@PROPS
def test_random_keyframe_records_decode_or_wire_error(key, value, headers, data):
    good_key, good_value, good_headers = _keyframe()
    # half the time start from a good record and break one part, so the later checks are reached too
    if data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(good_headers) - 1))
        headers = [*good_headers[:i], (good_headers[i][0], data.draw(header_values)), *good_headers[i + 1 :]]
        key, value = (key, good_value) if data.draw(st.booleans()) else (good_key, value)
    try:
        decode_keyframe(key, value, headers)
    except WireError as e:
        assert e.field and len(str(e)) <= MAX_MESSAGE
