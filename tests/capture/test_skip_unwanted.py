"""Frames the consumer would find overwritten are not colour-converted (``predict_takes``, the agent's setting),
and what the consumer gets is unchanged: as fresh, at the same rate, counted the same way."""

from __future__ import annotations

import statistics
import time

import pytest

from edge_agent.capture import CameraConfig, Supervisor

from .helpers import Consumer


@pytest.mark.timeout(90)
def test_predicted_overwrites_are_not_converted_and_the_consumer_sees_no_difference(vtest):
    got = {}
    for predict in (False, True):
        cams = [CameraConfig(id=f"p{int(predict)}-{c}", url=vtest, loop=True) for c in "ab"]
        sup = Supervisor(cams, predict_takes=predict)
        consumer = Consumer(sup, delay=0.35)  # a steady inference cycle, much slower than the 10 fps camera
        sup.start()
        consumer.start()
        try:
            time.sleep(8.0)
        finally:
            consumer.stop()
            sup.stop()
        for c in cams:
            with consumer.lock:
                recs = list(consumer.records[c.id])
            st = sup.status()[c.id].counters
            stats = sup._cams[c.id].stats
            got[(predict, c.id[-1])] = (recs, st, stats.unconverted)
    for cam in "ab":
        base_recs, base_st, base_unconv = got[(False, cam)]
        recs, st, unconv = got[(True, cam)]
        assert base_unconv == 0
        # most overwritten frames were never converted (the saving), and counted exactly as before
        assert unconv >= 0.5 * st["frames_dropped"]["overwritten_unconsumed"] > 10, (unconv, st)
        assert 0 <= st["frames_delivered"] - st["frames_taken"] - st["frames_dropped"]["overwritten_unconsumed"] <= 1
        # the consumer got as many frames, still strictly newer each time, as fresh as without the prediction
        assert len(recs) >= 0.8 * len(base_recs) and len(recs) >= 12, (len(recs), len(base_recs))
        seqs = [s for s, _t, _a in recs]
        assert all(b > a for a, b in zip(seqs, seqs[1:]))
        ages = [a for _s, _t, a in recs]
        assert statistics.median(ages) < 0.25 and max(ages) < 1.0, ages
