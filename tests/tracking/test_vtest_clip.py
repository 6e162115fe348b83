"""The tracker on real detections of real video: counting pedestrians on vtest.avi.

Ground truth (established once, by eye, 2026-11-26)
---------------------------------------------------
Segment: frames 0..199 of vtest.avi (20 s). Counting line: the vertical
segment x = 550 from y = 110 to y = 470 (frame pixels), i.e. across the whole
road/walkway right of the sign post, from the kerb by the car park down to
the grass. Method: every 4th frame of the segment was rendered (crop x 380..768,
y 80..480, full resolution) with the line drawn in red, the raw person
detections (score >= 0.3, no tracker ids, so the tracker could not bias the
count) as boxes and each box's bottom-centre point as a dot, tiled 4x3 into
PNG contact sheets, and the people were followed by eye from tile to tile
(clothes: black coat, red/navy jacket with papers, woman in black, white
hoodie, navy jumper, ...). Crossings of the feet over the red line:

=====  ==================================  ==============  ==========
frame  who                                 direction       line dir
=====  ==================================  ==============  ==========
~12    man, black coat (from right edge)   right -> left   to_left
~48    man, red/navy jacket with papers    right -> left   to_left
~54    woman, black coat (walks with him)  right -> left   to_left
~108   woman, black coat, back up the road left -> right   to_right
~114   man, red/navy jacket, same          left -> right   to_right
~123   man in black, from the sign post    left -> right   to_right
~138   person in white hoodie              right -> left   to_left
~157   man, navy jumper, jeans             right -> left   to_left
~173   man, black jacket, from sign post   left -> right   to_right
~187   man, black jacket + jeans           left -> right   to_right
~190   man in grey, down from the car park right -> left   to_left
=====  ==================================  ==============  ==========

Total: 6 ``to_left`` + 5 ``to_right`` = 11 crossings by 9 people (the couple
in red/navy + black crosses twice, ~60 frames apart, after standing in the
group by the sign post). A man in a black jacket/jeans walks to ~x 580,
turns and goes back up the road without crossing (a good false-positive
trap). People visible anywhere in the frame during the segment: about 10
(three stand together behind the sign post for ~10 s, one far away on the
top-left path).

Line direction naming: start (550,110) is the top, end (550,470) the bottom;
facing down the image the right-hand side is screen-left, so
``directions[0]`` (left-hand -> right-hand side) is movement to screen-left.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from edge_agent.tracking import CameraTrackingConfig
from edge_agent.tracking.events import CameraTracking

from .conftest import PERSON, SEGMENT

GT_TO_LEFT = 6
GT_TO_RIGHT = 5
GT_PEOPLE_CROSSING = 9
GT_PEOPLE_IN_VIEW = 10
# the couple's (to_left frame, to_right frame) pairs, by eye from tiles 4 frames apart
GT_RETURNS = [(48, 114), (54, 108)]

LINE = {
    "name": "walkway",
    "start": [550, 110],
    "end": [550, 470],
    "labels": ["person"],
    "directions": ["to_left", "to_right"],
}


def _run(dets, **tracker):
    cfg = CameraTrackingConfig.model_validate({"tracker": {"frame_rate": 10, **tracker}, "lines": [LINE]})
    ct = CameraTracking(cfg, (768, 576), camera="vtest", class_names={PERSON: "person"})
    records, ids_per_frame = [], []
    for i, d in enumerate(dets):
        tracked, recs = ct.process(d.select(d.class_ids == PERSON), timestamp=i / 10)
        records += recs
        ids_per_frame.append(tracked.tracker_ids.tolist())
    records += ct.close()
    return ct, records, ids_per_frame


@pytest.fixture(scope="module")
def run(vtest_detections):
    assert SEGMENT == (0, 200), "ground truth below is for frames 0..199"
    return _run(vtest_detections)


def test_detector_sees_the_pedestrians(vtest_detections):
    """Sanity of the input: 2..8 confident people per frame on most frames (detector seam works)."""
    n = np.array([int(((d.class_ids == PERSON) & (d.scores >= 0.5)).sum()) for d in vtest_detections])
    assert len(vtest_detections) == 200
    assert np.mean((n >= 2) & (n <= 8)) > 0.9, n


def test_line_counts_match_hand_count(run):
    ct, records, _ = run
    totals = ct.zones.totals()["walkway"]
    assert abs(totals["to_left"] - GT_TO_LEFT) <= 1, totals
    assert abs(totals["to_right"] - GT_TO_RIGHT) <= 1, totals
    assert abs(totals["to_left"] + totals["to_right"] - (GT_TO_LEFT + GT_TO_RIGHT)) <= 1, totals
    # the same crossings are reported in the object records, once each
    crossings = [c for r in records for c in r.crossings]
    assert Counter(c.direction for c in crossings) == Counter(totals)
    assert all(c.label == "person" for c in crossings)


def test_crossing_people_keep_their_id(run):
    """Id stability where it matters for counting: 11 crossings by 9 people.

    An id switch while the couple stands in the group at the sign post would
    make their return crossings come from new ids (more than 9 distinct ids);
    an identity *transfer* between two people (the failure of a too-loose gate)
    makes one id cross in both directions although that person did not
    return (fewer than 9). Each returning id must cross once each way.
    """
    _, records, _ = run
    crossings = [c for r in records for c in r.crossings]
    per_id = Counter(c.track_id for c in crossings)
    assert abs(len(per_id) - GT_PEOPLE_CROSSING) <= 1, per_id
    assert max(per_id.values()) <= 2, per_id
    returns = []
    for tid in (t for t, n in per_id.items() if n == 2):
        cs = sorted((c for c in crossings if c.track_id == tid), key=lambda c: c.frame_index)
        assert [c.direction for c in cs] == ["to_left", "to_right"], (tid, cs)
        returns.append((cs[0].frame_index, cs[1].frame_index))
    # every "return" is one of the couple's, never two different people sharing an id
    for r in returns:
        assert any(abs(r[0] - g[0]) <= 6 and abs(r[1] - g[1]) <= 6 for g in GT_RETURNS), (r, GT_RETURNS)
    assert len(returns) >= 1, per_id


def test_id_count_is_sane(run):
    """Distinct ids vs ~10 people in view: at most 2x (fragmentation), at least as many (no merging),
    and tracks are long: mean visible length >= 30 frames (3 s)."""
    _, records, ids_per_frame = run
    lengths = Counter(t for ids in ids_per_frame for t in ids)
    assert GT_PEOPLE_IN_VIEW - 1 <= len(lengths) <= 2 * GT_PEOPLE_IN_VIEW, sorted(lengths.items())
    assert np.mean(list(lengths.values())) >= 30, sorted(lengths.items())
    assert all(len(set(ids)) == len(ids) for ids in ids_per_frame), "an id used twice in one frame"


def test_lifecycle_records_are_consistent(run):
    """Every id: exactly one ``new`` first, ``update``s, exactly one ``end`` last (close() ends the rest)."""
    _, records, _ = run
    by_id: dict[int, list] = {}
    for r in records:
        by_id.setdefault(r.track_id, []).append(r)
    assert by_id
    for tid, rs in by_id.items():
        kinds = [r.kind for r in rs]
        assert kinds[0] == "new" and kinds[-1] == "end", (tid, kinds[:3], kinds[-3:])
        assert kinds.count("new") == 1 and kinds.count("end") == 1, tid
        assert all(r.top_score >= r.score - 1e-6 for r in rs if r.kind != "end"), tid
        assert [r.frame_index for r in rs] == sorted(r.frame_index for r in rs), tid
        assert rs[-1].top_score == max(r.top_score for r in rs), tid


def test_fuse_score_setting_fragments_more(vtest_detections):
    """Why fuse_score is off by default: with YOLOv4-tiny person scores (~0.5-0.7) weighting IoU by
    score rejects re-associations after occlusions, giving more ids for the same people."""
    _, _, off = _run(vtest_detections, fuse_score=False)
    _, _, on = _run(vtest_detections, fuse_score=True)
    n_off = len({t for ids in off for t in ids})
    n_on = len({t for ids in on for t in ids})
    assert n_off < n_on, (n_off, n_on)
