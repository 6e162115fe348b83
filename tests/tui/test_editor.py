"""The zone/line editor: its pure editing model (unit and property tests) and the screen driven by keys in a
tiny host app (Textual's Pilot; no broker: the editor only returns what set_zones / set_lines would carry).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import cv2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from textual.app import App
from textual.pilot import Pilot

from edge_agent.tracking.settings import CameraTrackingConfig, LineConfig, ZoneConfig
from edge_agent.tui.editor import GeometryEditor
from edge_agent.tui.geometry import EditError, EditorModel, Shape
from edge_agent.tui.preview import SELECTED_COLOR
from edgesight.samples import read_video_frames

W, H = 768, 576
STEP = 8  # 1% of 768, rounded
WALK = {"name": "walk", "polygon": [[0.0, 0.45], [1.0, 0.45], [1.0, 0.8], [0.0, 0.8]], "labels": ["person"]}
GATE = {"name": "gate", "start": [300, 150], "end": [300, 500], "directions": ["north", "south"]}


def _validate(result: dict[str, list[dict[str, Any]]]) -> None:
    """What the agent does with set_zones / set_lines (and the per-camera uniqueness of names)."""
    for z in result["zones"]:
        ZoneConfig.model_validate(z)
    for ln in result["lines"]:
        LineConfig.model_validate(ln)
    CameraTrackingConfig.model_validate(result)


# ---- the model ------------------------------------------------------------------------------------------------
def test_unchanged_geometry_comes_back_as_it_came_and_changed_with_explicit_coords() -> None:
    m, problems = EditorModel.from_config((W, H), [WALK], [GATE])
    assert problems == []
    assert m.shapes[0].points == [(0.0, 259.2), (768.0, 259.2), (768.0, 460.8), (0.0, 460.8)]
    assert m.submit() == {"zones": [WALK], "lines": [GATE]}  # unchanged: the very objects, nothing to send
    m.select_shape(1)  # the gate, its end selected
    m.select_vertex(1)  # its start
    m.toggle_move()
    m.move_cursor(1, 0)
    out = m.submit()
    assert out == {  # the changed kind comes back in the editor's form: coords explicit, other fields kept
        "zones": [WALK],
        "lines": [{**GATE, "start": [308, 150], "coords": "pixels"}],
    }
    m.toggle_move()  # submit dropped the point: grab it again
    m.move_cursor(-1, 0)
    assert m.submit() == {"zones": [WALK], "lines": [GATE]}  # moved back: unchanged again
    _validate(out)


def test_draw_a_zone_and_a_line() -> None:
    m = EditorModel((W, H))
    assert m.cursor == (384, 288) and m.current is None
    m.new_shape("zone")
    m.rename("walkway")
    m.add_vertex()
    m.move_cursor(1, 0, big=True)
    m.add_vertex()
    m.move_cursor(0, 1, big=True)
    m.add_vertex()
    m.new_shape("line")
    assert m.current is not None and m.current.name == "line-1"
    m.add_vertex()
    m.move_cursor(-1, 0)
    m.add_vertex()
    out = m.submit()
    assert out["zones"] == [
        {"name": "walkway", "polygon": [[0.5, 0.5], [0.604167, 0.5], [0.604167, 0.638889]], "coords": "normalized"}
    ]
    assert out["lines"] == [
        {"name": "line-1", "start": [0.604167, 0.638889], "end": [0.59375, 0.638889], "coords": "normalized"}
    ]
    _validate(out)
    m.reverse_line()
    assert m.submit()["lines"][0]["start"] == [0.59375, 0.638889]


def test_move_insert_and_delete_vertices() -> None:
    m, _ = EditorModel.from_config((W, H), [], [GATE])
    assert m.vertex == 1 and m.cursor == (300, 500)  # the last point of the selected shape
    m.select_vertex(1)  # wraps to the start
    assert m.vertex == 0 and m.cursor == (300, 150)
    assert m.toggle_move() is True
    m.move_cursor(1, 1)
    m.move_cursor(-100, -100, big=True)  # clamped to the frame
    assert m.cursor == (0, 0) and m.shapes[0].points[0] == (0.0, 0.0)
    assert m.toggle_move() is False
    m.move_cursor(1, 0)
    assert m.shapes[0].points[0] == (0.0, 0.0)  # dropped: no longer follows
    with pytest.raises(EditError, match="already has its two points"):
        m.add_vertex()
    m.delete_vertex()
    assert m.shapes[0].points == [(300.0, 500.0)]
    with pytest.raises(EditError, match="line 'gate': end"):
        m.submit()
    m.new_shape("zone")
    for dx, dy in ((0, 0), (10, 0), (0, 10)):
        m.move_cursor(dx, dy)
        m.add_vertex()
    m.select_vertex(-1)  # from the third point back to the second; a new one goes after it
    m.move_cursor(5, -5)
    m.add_vertex()
    assert m.vertex == 2 and len(m.shapes[1].points) == 4


def test_refusals_leave_the_model_unchanged() -> None:
    m = EditorModel((W, H))
    for op in (m.add_vertex, m.delete_vertex, m.toggle_move, m.delete_shape, m.reverse_line):
        with pytest.raises(EditError, match="no zone or line selected"):
            op()
    with pytest.raises(EditError, match="press n"):
        m.select_shape(1)
    m.new_shape("zone")
    m.add_vertex()
    with pytest.raises(EditError, match="already has a point"):
        m.add_vertex()
    with pytest.raises(EditError, match="letters, digits"):
        m.rename("bad name")
    m.new_shape("zone")
    with pytest.raises(EditError, match="another zone has it"):
        m.rename("zone-1")
    m.rename("zone-1b")
    with pytest.raises(EditError, match="has no direction"):
        m.reverse_line()
    assert [s.name for s in m.shapes] == ["zone-1", "zone-1b"]
    m.select_shape(-1)
    assert m.current is not None and m.current.name == "zone-1"
    m.delete_shape()
    assert [s.name for s in m.shapes] == ["zone-1b"] and m.selected == 0


def test_submit_names_the_shape_and_field_at_fault() -> None:
    m = EditorModel((W, H))
    m.new_shape("zone")
    m.rename("bowtie")
    for x, y in ((100, 100), (200, 200), (200, 100), (100, 200)):  # edges 0-1 and 2-3 cross
        m.set_cursor(x, y)
        m.add_vertex()
    with pytest.raises(EditError, match=r"zone 'bowtie': polygon: polygon is self-intersecting"):
        m.submit()
    m.delete_vertex()
    m.delete_vertex()
    with pytest.raises(EditError, match=r"zone 'bowtie': polygon: polygon needs at least 3 distinct points, got 2"):
        m.submit()


def test_unreadable_geometry_is_reported_and_left_out() -> None:
    m, problems = EditorModel.from_config((W, H), [WALK, {"name": "bad", "polygon": [[0, 0], [1, 1]]}], [])
    assert [s.name for s in m.shapes] == ["walk"]
    assert problems == ["zone 'bad': polygon: polygon needs at least 3 distinct points, got 2"]


def test_pixel_geometry_near_the_origin_stays_pixels() -> None:
    """``coords: auto`` would read a 1-pixel triangle at the origin as normalised: the editor says pixels."""
    m = EditorModel((W, H), [Shape("zone", "tiny", [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0)], "pixels")])
    out = m.submit()
    assert out["zones"][0]["coords"] == "pixels"
    assert ZoneConfig.model_validate(out["zones"][0]).pixel_polygon(W, H) == [(0, 0), (1, 0), (1, 1)]


_OPS = st.one_of(
    st.tuples(st.just("move"), st.integers(-3, 3), st.integers(-3, 3), st.booleans()),
    st.tuples(st.just("set"), st.integers(-50, W + 50), st.integers(-50, H + 50)),
    st.tuples(st.just("new"), st.sampled_from(["zone", "line"])),
    st.tuples(st.sampled_from(["add", "add", "add", "delv", "grab", "dels", "rev"])),
    st.tuples(st.just("selv"), st.sampled_from([-1, 1])),
    st.tuples(st.just("sels"), st.sampled_from([-1, 1])),
    st.tuples(st.just("name"), st.sampled_from(["a", "b", "gate", "bad name", "", "x" * 70, "zone-1"])),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_OPS, max_size=40), start_with=st.booleans())
def test_any_edit_sequence_keeps_the_model_valid(ops: list[tuple[Any, ...]], start_with: bool) -> None:
    """Whatever the keys, the model stays consistent, and what it emits either validates with the agent's own
    models or submit refuses it with a reason."""
    m, _ = EditorModel.from_config((W, H), [WALK] if start_with else [], [GATE] if start_with else [])
    for op, *args in ops:
        fn = {
            "move": lambda dx, dy, big: m.move_cursor(dx, dy, big=big),
            "set": m.set_cursor,
            "new": m.new_shape,
            "add": m.add_vertex,
            "delv": m.delete_vertex,
            "grab": m.toggle_move,
            "dels": m.delete_shape,
            "rev": m.reverse_line,
            "selv": m.select_vertex,
            "sels": m.select_shape,
            "name": m.rename,
        }[op]
        try:
            fn(*args)
        except EditError as e:
            assert str(e)
        # invariants after every operation
        assert 0 <= m.cursor[0] < W and 0 <= m.cursor[1] < H
        assert (m.selected is None) == (not m.shapes)
        if m.current is not None:
            assert 0 <= m.selected < len(m.shapes)
            assert (m.vertex is None) == (not m.current.points)
            if m.vertex is not None:
                assert 0 <= m.vertex < len(m.current.points)
        assert all(len(s.points) <= 2 for s in m.shapes if s.kind == "line")
        for kind in ("zone", "line"):
            names = [s.name for s in m.shapes if s.kind == kind]
            assert len(names) == len(set(names))
    try:
        result = m.submit()
    except EditError as e:
        assert str(e) and m.problems()
    else:
        _validate(result)


# ---- the screen ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def frame_jpeg(vtest_path) -> bytes:
    frame = read_video_frames(vtest_path, [120])[0]
    return cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


class _Host(App[None]):
    """Pushes the editor on mount and keeps what it dismisses with."""

    def __init__(self, editor: GeometryEditor) -> None:
        super().__init__()
        self.editor = editor
        self.results: list[object] = []

    def on_mount(self) -> None:
        self.push_screen(self.editor, self.results.append)


def _drive(editor: GeometryEditor, script: Callable[[_Host, Pilot[None]], Awaitable[None]]) -> list[object]:
    async def go() -> list[object]:
        app = _Host(editor)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await script(app, pilot)
            await pilot.pause()
        return app.results

    return asyncio.run(go())


def test_draw_name_and_send_a_zone_with_keys(frame_jpeg: bytes) -> None:
    editor = GeometryEditor(frame_jpeg, (W, H), [], [GATE], camera_id="cam-1", graphics=False)

    async def script(app: _Host, pilot: Pilot[None]) -> None:
        assert app.screen is editor
        await pilot.press("n")  # new zone: the name input opens with a default name, selected
        assert editor.naming
        await pilot.press(*"walkway", "enter")
        assert not editor.naming and "named 'walkway'" in editor.status_text
        await pilot.press("left", "left")  # cursor starts at the line's end (300, 500)
        await pilot.press("a", "shift+up", "a", "shift+right", "a")
        assert "walkway" in str(editor.query_one("#ge-shapes").content)
        composed = editor.preview.composed
        assert composed is not None  # the zone is drawn live, selected
        assert SELECTED_COLOR in {
            composed.getpixel((x, y)) for x in range(composed.width) for y in range(composed.height)
        }
        await pilot.press("ctrl+s")

    results = _drive(editor, script)
    assert len(results) == 1
    result = results[0]
    assert isinstance(result, dict)
    _validate(result)
    x0, y0 = (300 - 2 * STEP) / W, 500 / H
    x1, y1 = (300 - 2 * STEP + 10 * STEP) / W, (500 - 10 * STEP) / H
    assert result["zones"] == [
        {
            "name": "walkway",
            "polygon": [[round(x0, 6), round(y0, 6)], [round(x0, 6), round(y1, 6)], [round(x1, 6), round(y1, 6)]],
            "coords": "normalized",
        }
    ]
    assert result["lines"] == [GATE]  # untouched: handed back as it came, so the caller sends nothing for it


def test_invalid_zone_is_not_sent_and_the_error_names_it(frame_jpeg: bytes) -> None:
    editor = GeometryEditor(frame_jpeg, (W, H), camera_id="cam-1", graphics=False)

    async def script(app: _Host, pilot: Pilot[None]) -> None:
        await pilot.press("n", *"door", "enter", "a", "right", "a", "ctrl+s")
        assert app.screen is editor  # still open
        assert "zone 'door': polygon: polygon needs at least 3 distinct points, got 2" in editor.status_text
        await pilot.press("r", *"bad name", "enter")  # the input stays open on a bad name
        assert editor.naming and "letters, digits" in editor.status_text
        await pilot.press("escape")  # leaves the input, not the editor
        assert not editor.naming and app.screen is editor
        await pilot.press("escape")  # unsent changes: asks first
        assert app.screen is editor and "escape again" in editor.status_text
        await pilot.press("escape")

    assert _drive(editor, script) == [None]


def test_cancel_returns_none(frame_jpeg: bytes) -> None:
    editor = GeometryEditor(frame_jpeg, (W, H), [WALK], [GATE], camera_id="cam-1", graphics=False)

    async def script(app: _Host, pilot: Pilot[None]) -> None:
        await pilot.press("question_mark")  # the keys panel opens and closes
        assert editor.query("HelpPanel")
        await pilot.press("question_mark")
        assert not editor.query("HelpPanel")
        await pilot.press("escape")

    assert _drive(editor, script) == [None]


def test_move_a_vertex_of_an_existing_line(frame_jpeg: bytes) -> None:
    editor = GeometryEditor(frame_jpeg, {"width": W, "height": H}, [WALK], [GATE], camera_id="cam-1", graphics=False)

    async def script(app: _Host, pilot: Pilot[None]) -> None:
        await pilot.press("tab")  # walk -> gate
        assert editor.model.current is not None and editor.model.current.name == "gate"
        await pilot.press("space", "shift+right", "down", "space", "f", "ctrl+s")

    (result,) = _drive(editor, script)
    assert isinstance(result, dict)
    _validate(result)
    end = [300 + 10 * STEP, 500 + STEP]
    assert result["lines"] == [{**GATE, "start": end, "end": GATE["start"], "coords": "pixels"}]
    assert result["zones"] == [WALK]


def test_editor_without_a_snapshot_uses_the_frame_size() -> None:
    editor = GeometryEditor(None, (1920, 1080), camera_id="cam-1", graphics=False)

    async def script(app: _Host, pilot: Pilot[None]) -> None:
        assert editor.model.frame_size == (1920, 1080) and editor.preview.composed is not None
        await pilot.press("l", "enter", "a", "shift+right", "a", "ctrl+s")

    (result,) = _drive(editor, script)
    assert result == {
        "zones": [],
        "lines": [{"name": "line-1", "start": [0.5, 0.5], "end": [0.598958, 0.5], "coords": "normalized"}],
    }


def test_a_click_on_the_preview_moves_the_cursor(frame_jpeg: bytes) -> None:
    editor = GeometryEditor(frame_jpeg, (W, H), camera_id="cam-1", graphics=False)

    async def script(app: _Host, pilot: Pilot[None]) -> None:
        image = editor.preview.query_one("#preview-image")
        cols, rows = image.content_size.width, image.content_size.height
        await pilot.click(image, offset=(cols - 1, 0))  # the top-right cell
        x, y = editor.model.cursor
        assert x > W * (cols - 1.5) / cols and y < H / rows
        await pilot.press("escape")

    assert _drive(editor, script) == [None]
