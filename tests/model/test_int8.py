"""The INT8 variant agrees with fp32 on a fixed set of real frames (not the calibration frames)."""
import pytest

from model_zoo.verify import agreement, run_detector, verification_frames

MIN_AGREEMENT = 0.9


@pytest.fixture(scope="module")
def frames():
    # 20 vtest.avi frames at odd indices (calibration uses even ones) + bus.jpg + zidane.jpg
    return verification_frames(20)


def test_int8_is_smaller_and_recorded(built_model):
    fp32, int8 = built_model.path("fp32"), built_model.path("int8")
    assert int8.stat().st_size < fp32.stat().st_size / 3
    rec = built_model.manifest.variants["int8"].recipe
    assert rec["format"] == "QDQ" and rec["excluded_nodes"] > 0


def test_int8_agrees_with_fp32(built_model, model_store, fp32_engine, frames):
    from edge_agent.inference import InferenceConfig, InferenceEngine
    int8 = InferenceEngine(InferenceConfig(model_dir=str(model_store), variant="int8", providers=["cpu"]))
    assert int8.variant == "int8"
    ref = run_detector(fp32_engine, frames)
    got = run_detector(int8, frames, batch=2)
    a = agreement(ref, got)
    assert a.n_ref > 100, a.as_dict()
    assert a.agreement >= MIN_AGREEMENT, a.as_dict()
    assert a.mean_iou >= 0.85, a.as_dict()


def test_auto_variant_is_int8_on_cpu(built_model, model_store):
    from edge_agent.inference import InferenceConfig, InferenceEngine
    eng = InferenceEngine(InferenceConfig(model_dir=str(model_store), variant="auto"))
    assert eng.active_providers == ["CPUExecutionProvider"] and eng.variant == "int8"
