"""Cross-camera batching returns, per frame, what single-frame inference returns."""

import threading

import numpy as np
import pytest

from edge_agent.inference import Batcher
from model_zoo.verify import verification_frames


@pytest.fixture(scope="module")
def frames(sample_images):
    return verification_frames(4, include_samples=False) + list(sample_images.values())


def same(a, b):
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.class_ids, b.class_ids)
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=0.5)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-3)


def test_batcher_matches_single_frame(fp32_engine, frames):
    single = [fp32_engine.infer_one(f) for f in frames]
    results = [None] * len(frames)
    with Batcher(fp32_engine, max_size=4, max_wait_ms=200) as b:
        barrier = threading.Barrier(len(frames))

        def camera(i):
            barrier.wait()
            results[i] = b.infer(frames[i], camera=f"cam-{i}")

        threads = [threading.Thread(target=camera, args=(i,)) for i in range(len(frames))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        sizes = list(b.batch_sizes)
    assert max(sizes) > 1 and max(sizes) <= 4 and sum(sizes) == len(frames)
    for s, r in zip(single, results):
        same(s, r)


def test_batcher_flushes_on_timeout(fp32_engine, frames):
    with Batcher(fp32_engine, max_size=8, max_wait_ms=20) as b:
        d = b.submit(frames[0]).result(60)  # a lone frame must not wait for 8
        assert b.batch_sizes == [1]
    same(d, fp32_engine.infer_one(frames[0]))


def test_batcher_propagates_errors():
    class Broken:
        def infer(self, frames):
            raise RuntimeError("boom")

    with Batcher(Broken(), max_size=2, max_wait_ms=1) as b:
        with pytest.raises(RuntimeError, match="boom"):
            b.infer(np.zeros((10, 10, 3), np.uint8), timeout=10)
