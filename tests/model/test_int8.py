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


def _qparams(model):
    """{float tensor: (scale, zero point)} of every QuantizeLinear in a QDQ model."""
    from onnx import numpy_helper

    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {
        n.input[0]: (float(init[n.input[1]]), int(init[n.input[2]]))
        for n in model.graph.node
        if n.op_type == "QuantizeLinear"
    }


def test_concat_inputs_share_the_output_quantization(built_model):
    """Every quantized Concat joins bytes of one scale: ORT copies instead of requantizing each input."""
    import onnx

    m = onnx.load(str(built_model.path("int8")))
    q = _qparams(m)
    producers = {o: n for n in m.graph.node for o in n.output}
    concats = [n for n in m.graph.node if n.op_type == "Concat" and n.output[0] in q]
    assert len(concats) >= 6
    for n in concats:
        for i in n.input:
            dq = producers[i]
            assert dq.op_type == "DequantizeLinear", (n.name, i)
            src = producers[dq.input[0]].input[0]  # DQ <- Q <- float tensor
            assert q[src] == q[n.output[0]], (n.name, src, q[src], q[n.output[0]])
    assert built_model.manifest.variants["int8"].recipe["unified_concat_tensors"] >= 2 * len(concats)


def test_concat_groups_follow_pass_through_ops():
    """Concat inputs, their pass-through producers (Resize/MaxPool) and a Concat feeding a Concat form one group."""
    from onnx import TensorProto, helper

    from model_zoo.compress import concat_groups

    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="r1"),
        helper.make_node("Relu", ["x"], ["b"], name="r2"),
        helper.make_node("Relu", ["x"], ["c0"], name="r3"),
        helper.make_node("Resize", ["c0", "", "sc"], ["c"], name="up"),
        helper.make_node("Concat", ["a", "b"], ["ab"], axis=1, name="cat1"),
        helper.make_node("MaxPool", ["ab"], ["p"], kernel_shape=[2, 2], name="pool"),
        helper.make_node("Concat", ["p", "c"], ["y"], axis=1, name="cat2"),
        helper.make_node("Relu", ["x"], ["alone"], name="r4"),
        helper.make_node("Concat", ["y", "alone"], ["z"], axis=1, name="decode/cat"),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
    )
    groups = concat_groups(helper.make_model(g))
    assert groups == [sorted(["a", "b", "ab", "p", "c", "c0", "y"])]  # the decode Concat is left alone
