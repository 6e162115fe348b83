"""Manifests, the model store and sha256 integrity checks."""

import shutil

import pytest
import yaml

from edge_agent.inference import InferenceConfig, InferenceEngine
from edgesight.modelstore import ModelIntegrityError, ModelNotFoundError, sha256_file
from model_zoo.registry import Registry, load_recipe


def test_recipe_is_complete():
    m = load_recipe("yolov4-tiny")
    assert m.input.size == (640, 640) and m.output.layout == "boxes_xyxy_scores"
    assert set(m.variants) == {"fp32", "int8", "fp16"}
    assert all(len(f.sha256) == 64 for f in m.source.files.values())


def test_store_manifest_records_produced_files(built_model):
    data = yaml.safe_load((built_model.root / "manifest.yaml").read_text())
    for v in ("fp32", "int8"):
        spec = data["variants"][v]
        assert spec["sha256"] == sha256_file(built_model.root / spec["file"])
    assert data["classes_sha256"] == sha256_file(built_model.root / "coco.names")
    assert len(built_model.class_names()) == 80


def test_store_dir_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGESIGHT_MODEL_DIR", str(tmp_path))
    assert Registry().store == tmp_path


def test_tampered_variant_is_rejected(built_model, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(built_model.root, copy / built_model.name)
    f = copy / built_model.name / built_model.manifest.variants["int8"].file
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(
        ModelIntegrityError,
        match=r"sha256 mismatch for yolov4-tiny int8 variant .* manifest says [0-9a-f]{64}, file has [0-9a-f]{64}",
    ):
        Registry(copy).get("yolov4-tiny").path("int8")
    with pytest.raises(ModelIntegrityError, match="sha256 mismatch"):
        InferenceEngine(InferenceConfig(model_dir=str(copy), variant="int8", providers=["cpu"]))


def test_wrong_source_file_is_rejected(tmp_path, yolo_dir):
    fake = tmp_path / "yolov4-tiny.weights"
    fake.write_bytes((yolo_dir / "cfgs/yolov4_tiny/yolov4-tiny.weights").read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ModelIntegrityError, match="source weights of yolov4-tiny"):
        Registry(tmp_path / "store").import_darknet("yolov4-tiny", weights=fake)


def test_missing_model_message(tmp_path):
    with pytest.raises(ModelNotFoundError, match="model-zoo import"):
        Registry(tmp_path).get("yolov4-tiny")


def test_register_existing_onnx(built_model, tmp_path, sample_images):
    reg = Registry(tmp_path)
    sm = reg.register_onnx(built_model.path("fp32"), "my-detector", built_model.root / "coco.names", licence="test")
    assert sm.available() == ["fp32"] and sm.manifest.input.size == (640, 640)
    eng = InferenceEngine(InferenceConfig(model="my-detector", model_dir=str(tmp_path), providers=["cpu"]))
    assert eng.variant == "fp32"
    assert len(eng.infer_one(sample_images["bus.jpg"])) >= 4
