"""The camera preview: JPEG decoding within bounds, overlays drawn at the right pixels, the widget in a real
(headless) Textual app, and a corrupt JPEG shown as a message. No broker: the preview only draws what it is given.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from textual.app import App, ComposeResult

from edge_agent.tui.geometry import shapes_from_config
from edge_agent.tui.preview import (
    LINE_COLOR,
    MAX_DECODED_SIDE,
    MAX_JPEG_BYTES,
    MAX_SOURCE_SIDE,
    ZONE_COLOR,
    PreviewError,
    PreviewImage,
    box_color,
    compose_preview,
    decode_jpeg,
    parse_detections,
)
from edgesight.samples import read_video_frames

W, H = 768, 576  # vtest.avi
PERSON = {"track_id": 7, "label": "person", "score": 0.91, "box": [200, 150, 300, 400]}


@pytest.fixture(scope="module")
def frame_jpeg(vtest_path: Path) -> bytes:
    frame = read_video_frames(vtest_path, [120])[0]
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def _jpeg(width: int, height: int) -> bytes:
    img = np.zeros((height, width, 3), np.uint8)
    img[:, : width // 2] = (0, 0, 255)  # left half red (BGR)
    return cv2.imencode(".jpg", img)[1].tobytes()


def test_box_zone_and_line_are_drawn_on_the_frame(frame_jpeg: bytes) -> None:
    base, source = decode_jpeg(frame_jpeg)
    assert base.size == (W, H) and source == (W, H)
    boxes, skipped = parse_detections([PERSON])
    assert skipped == 0
    shapes, problems = shapes_from_config(
        [{"name": "walk", "polygon": [[0.1, 0.1], [0.9, 0.1], [0.9, 0.2], [0.1, 0.2]]}],
        [{"name": "gate", "start": [600, 300], "end": [600, 500]}],
        (W, H),
    )
    assert problems == []
    out = compose_preview(base, (W, H), boxes, shapes)
    assert out.size == (W, H) and base.getpixel((200, 275)) != box_color("person")  # the input is not drawn on
    px = np.asarray(out)
    before = np.asarray(base)
    color = np.array(box_color("person"))
    # the box's four edges carry its colour (stroke grows inwards from the box)
    assert (px[275, 200] == color).all() and (px[275, 300] == color).all()
    assert (px[150, 250] == color).all() and (px[400, 250] == color).all()
    # inside and outside the box the frame is untouched
    assert (px[275, 250] == before[275, 250]).all() and (px[275, 330] == before[275, 330]).all()
    # the zone's top edge (y = 0.1 * 576) and the line (x = 600, below its direction arrow's end)
    assert (px[round(0.1 * H), W // 2] == np.array(ZONE_COLOR)).all()
    assert (px[480, 600] == np.array(LINE_COLOR)).all()
    # the direction arrow points to the line's right-hand side: a line drawn downwards has it on screen-left
    mid = 400
    left = px[mid, 560:598]
    right = px[mid, 603:640]
    assert (left == np.array(LINE_COLOR)).all(axis=1).sum() > 10
    assert (right == np.array(LINE_COLOR)).all(axis=1).sum() == 0


def test_boxes_scale_from_frame_pixels_to_a_downscaled_jpeg(frame_jpeg: bytes) -> None:
    """The agent downscales the preview JPEG; boxes and pixel zones stay in frame pixels."""
    base, _ = decode_jpeg(frame_jpeg)
    boxes, _ = parse_detections([{**PERSON, "box": [400, 300, 600, 800]}])  # frame twice the JPEG's size
    px = np.asarray(compose_preview(base, (2 * W, 2 * H), boxes))
    assert (px[275, 200] == np.array(box_color("person"))).all()
    assert (px[275, 250] == np.asarray(base)[275, 250]).all()


def test_normalized_and_pixel_zones_land_on_the_same_pixels(frame_jpeg: bytes) -> None:
    base, _ = decode_jpeg(frame_jpeg)
    norm, _ = shapes_from_config([{"name": "z", "polygon": [[0.25, 0.25], [0.75, 0.25], [0.5, 0.75]]}], [], (W, H))
    pix, _ = shapes_from_config(
        [{"name": "z", "polygon": [[192, 144], [576, 144], [384, 432]], "coords": "pixels"}], [], (W, H)
    )
    assert norm[0].points == pix[0].points
    a = np.asarray(compose_preview(base, (W, H), shapes=norm))
    b = np.asarray(compose_preview(base, (W, H), shapes=pix))
    assert (a == b).all() and (a != np.asarray(base)).any()


def test_compose_fits_the_target_and_keeps_aspect(frame_jpeg: bytes) -> None:
    base, _ = decode_jpeg(frame_jpeg)
    boxes, _ = parse_detections([PERSON])
    small = compose_preview(base, (W, H), boxes, target=(54, 40))  # an 80x24 terminal in half-blocks
    assert small.size == (53, 40)
    assert any(small.getpixel((x, y)) == box_color("person") for x in range(53) for y in range(40))
    canvas = compose_preview(None, (1920, 1080), target=(160, 160))  # no JPEG yet: a blank canvas of the frame
    assert canvas.size == (160, 90)


def test_decode_bounds() -> None:
    with pytest.raises(PreviewError, match="MAX_JPEG_BYTES"):
        decode_jpeg(b"\xff" * (MAX_JPEG_BYTES + 1))
    with pytest.raises(PreviewError, match="MAX_SOURCE_SIDE"):
        decode_jpeg(_jpeg(MAX_SOURCE_SIDE + 8, 16))
    img, source = decode_jpeg(_jpeg(2000, 1500))
    assert source == (2000, 1500) and max(img.size) <= MAX_DECODED_SIDE
    assert img.getpixel((10, 10))[0] > 200  # left half red: decoded, not a blank image
    with pytest.raises(PreviewError, match="cannot decode"):
        decode_jpeg(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(PreviewError, match="cannot decode"):
        decode_jpeg(_jpeg(640, 480)[:300])  # truncated
    png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    with pytest.raises(PreviewError, match="cannot decode"):
        decode_jpeg(png)  # the preview contract is JPEG


def test_malformed_detections_are_counted_not_drawn() -> None:
    boxes, skipped = parse_detections(
        [
            PERSON,
            {"label": "car", "score": 0.5},  # no box
            {"label": "car", "score": 0.5, "box": [1, 2, 3]},
            {"label": "car", "score": float("nan"), "box": [1, 2, 3, 4]},
            {"label": "car", "score": 0.5, "box": ["a", 2, 3, 4]},
        ]
    )
    assert [b.caption for b in boxes] == ["person #7 0.91"] and skipped == 4


class _Host(App[None]):
    def __init__(self, preview: PreviewImage) -> None:
        super().__init__()
        self.preview = preview

    def compose(self) -> ComposeResult:
        yield self.preview


def _run(preview: PreviewImage, check, size: tuple[int, int] = (80, 24)) -> None:
    async def go() -> None:
        app = _Host(preview)
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await check(app, pilot)

    asyncio.run(go())


def _message(preview: PreviewImage) -> str:
    msg = preview.query_one("#preview-message")
    return str(msg.content) if msg.display else ""


def test_widget_renders_a_real_frame_with_its_box(frame_jpeg: bytes) -> None:
    walk = {"name": "walk", "polygon": [[0, 0.5], [1, 0.5], [1, 1]]}
    preview = PreviewImage(frame_jpeg, (W, H), [PERSON], [walk], graphics=False)

    async def check(app, pilot) -> None:
        assert preview.error is None and _message(preview) == ""
        assert preview.renderer == "halfcell"
        img = preview.composed
        assert isinstance(img, Image.Image)
        assert img.width <= 80 and img.height <= 2 * 23 and abs(img.width / img.height - W / H) < 0.05
        assert box_color("person") in {img.getpixel((x, y)) for x in range(img.width) for y in range(img.height)}
        screen = app.export_screenshot()
        assert "▀" in screen  # half-block cells on the screen
        caption = str(preview.query_one("#preview-caption").content)
        assert caption == "768x576 · 1 det · 1 zones · 0 lines"
        # a new preview with other boxes redraws; a new size recomposes at the new resolution
        preview.update_preview(frame_jpeg, (W, H), [], [])
        await pilot.pause()
        assert box_color("person") not in {preview.composed.getpixel((x, 20)) for x in range(preview.composed.width)}
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        assert preview.composed.width > img.width

    _run(preview, check)


def test_corrupt_jpeg_shows_a_message_and_recovers(frame_jpeg: bytes) -> None:
    preview = PreviewImage(b"\xff\xd8\xff garbage, not a JPEG", (W, H), [PERSON], graphics=False)

    async def check(app, pilot) -> None:
        assert preview.composed is None
        assert _message(preview).startswith("Preview unavailable: cannot decode the preview JPEG")
        assert preview.query_one("#preview-message").region.area > 0  # laid out on screen, not just set
        assert not preview.query_one("#preview-image").display
        preview.update_preview(frame_jpeg[: len(frame_jpeg) // 3], (W, H))  # truncated
        await pilot.pause()
        assert "cannot decode" in _message(preview)
        preview.update_preview(frame_jpeg, (W, H), [PERSON])
        await pilot.pause()
        assert preview.error is None and _message(preview) == "" and preview.composed is not None

    _run(preview, check)


def test_no_jpeg_yet() -> None:
    preview = PreviewImage(graphics=False)

    async def check(app, pilot) -> None:
        assert _message(preview) == "No preview yet" and preview.composed is None
        preview.update_preview(None, (1280, 720), zones=[{"name": "z", "polygon": [[0, 0], [1, 0], [1, 1]]}])
        await pilot.pause()
        assert preview.composed is not None and _message(preview) == ""  # zones drawn on a blank canvas

    _run(preview, check)
