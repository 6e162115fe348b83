"""Snapshots of the main screens (pytest-textual-snapshot), from fixed data and a fixed clock.

Update after an intended change: ``pytest tests/tui/test_snapshots.py --snapshot-update`` and look at the
report it writes (``snapshot_report.html``) before committing the new SVGs.
"""

from __future__ import annotations

from edge_agent.tui.app import EdgeSightApp
from edge_agent.tui.state import SiteState
from tests.tui.feeds import T0, Recorder, preview_doc, put, site


def make_app(preview: bool = False) -> EdgeSightApp:
    state = site(SiteState(clock=lambda: T0.timestamp()))
    state.set_connection(True, "127.0.0.1:1883")
    if preview:
        put(state, "site-1/camera/entrance/preview", preview_doc("site-1", "entrance"))
    return EdgeSightApp(state, Recorder(state))


def test_main_screen_80x24(snap_compare):
    assert snap_compare(make_app(), terminal_size=(80, 24))


def test_main_screen_wide(snap_compare):
    assert snap_compare(make_app(), terminal_size=(120, 36), press=["down"])


def test_keys_panel(snap_compare):
    assert snap_compare(make_app(), terminal_size=(80, 24), press=["question_mark"])


def test_add_camera_form(snap_compare):
    assert snap_compare(make_app(), terminal_size=(80, 24), press=["a", *"door", "tab", *"/etc/passwd", "enter"])


def test_preview_screen(snap_compare):
    assert snap_compare(make_app(preview=True), terminal_size=(80, 24), press=["p"])
