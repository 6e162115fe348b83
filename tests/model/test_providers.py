"""Execution-provider selection."""

import logging

import onnxruntime as ort

from edge_agent.inference import InferenceConfig, InferenceEngine, select_providers


def test_auto_order_prefers_tensorrt_then_cuda():
    avail = ["CUDAExecutionProvider", "TensorrtExecutionProvider", "CPUExecutionProvider"]
    assert select_providers(None, avail) == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert select_providers(["CPUExecutionProvider"], avail) == ["CPUExecutionProvider"]


def test_config_accepts_short_names():
    assert InferenceConfig(providers=["tensorrt", "cuda", "cpu"]).providers == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]


def test_cuda_requested_falls_back_to_cpu_with_log(built_model, model_store, caplog):
    if "CUDAExecutionProvider" in ort.get_available_providers():  # GPU build: the fallback case cannot happen here
        assert select_providers(["CUDAExecutionProvider"])[0] == "CUDAExecutionProvider"
        return
    caplog.set_level(logging.WARNING, logger="edgesight.inference")
    eng = InferenceEngine(InferenceConfig(model_dir=str(model_store), providers=["cuda"], variant="auto"))
    assert eng.active_providers == ["CPUExecutionProvider"]
    assert eng.variant == "int8"  # auto picks the CPU variant once CUDA is gone
    msgs = [r.getMessage() for r in caplog.records]
    assert any(
        "CUDAExecutionProvider requested but not available" in m and "falling back to CPUExecutionProvider" in m
        for m in msgs
    ), msgs
