"""The model store, read side: what the edge agent needs to open a built model.

The *model store* (``$EDGESIGHT_MODEL_DIR`` or ``~/.cache/edgesight/models``)
holds one directory per model: the produced ``.onnx`` variants, the class
names file and ``manifest.yaml`` (the recipe plus the sha256 of every file
produced). Every time a variant is opened its sha256 is checked against that
manifest; a mismatch raises :class:`ModelIntegrityError` naming the file, the
expected and the actual digest.

Building models (darknet import, ONNX registration, derived variants) is the
write side, in :mod:`model_zoo.registry`; it uses the types defined here.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field

from edgesight.config import StrictModel

MANIFEST_FILE = "manifest.yaml"
VARIANTS = ("fp32", "fp16", "int8")
OutputLayout = Literal["boxes_xyxy_scores", "yolov8"]


class ModelIntegrityError(RuntimeError):
    """A model file is missing or its sha256 is not the one its manifest records."""


class ModelNotFoundError(LookupError):
    pass


class FileRef(StrictModel):
    path: str
    sha256: str | None = None


class SourceSpec(StrictModel):
    upstream: str | None = None
    python_package: str | None = None
    files: dict[str, FileRef] = Field(default_factory=dict)


class InputSpec(StrictModel):
    name: str = "images"
    size: tuple[int, int] = (640, 640)  # H, W
    layout: Literal["NCHW"] = "NCHW"
    color: Literal["RGB", "BGR"] = "RGB"
    scale: float = 1 / 255
    resize: Literal["letterbox", "stretch"] = "letterbox"
    pad_value: int = 114
    dynamic_batch: bool = True


class OutputSpec(StrictModel):
    layout: OutputLayout = "boxes_xyxy_scores"
    description: str = ""


class VariantSpec(StrictModel):
    file: str
    sha256: str | None = None
    size_bytes: int | None = None
    created: str | None = None
    note: str | None = None
    recipe: dict[str, Any] | None = None  # how it was produced (quantization settings...)


class Manifest(StrictModel):
    name: str
    version: str = "1"
    task: Literal["detection"] = "detection"
    framework: str = "onnx"
    licence: str = "unknown"
    source: SourceSpec = Field(default_factory=SourceSpec)
    classes: str  # names file (one class per line), relative to the model dir
    classes_sha256: str | None = None
    input: InputSpec = Field(default_factory=InputSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    variants: dict[str, VariantSpec] = Field(default_factory=dict)

    def dump(self, path: Path) -> None:
        data = self.model_dump(mode="json", exclude_none=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            return cls.model_validate(yaml.safe_load(Path(path).read_text()))
        except FileNotFoundError:
            raise ModelNotFoundError(f"no manifest at {path}") from None


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def verify_sha256(path: str | Path, expected: str | None, what: str = "file") -> str:
    path = Path(path)
    if not path.is_file():
        raise ModelIntegrityError(f"{what} {path} is missing")
    actual = sha256_file(path)
    if expected and actual != expected.lower():
        raise ModelIntegrityError(
            f"sha256 mismatch for {what} {path}: manifest says {expected}, file has {actual} "
            f"(corrupted or replaced file; re-run `model-zoo import` / `model-zoo compress`)"
        )
    return actual


def model_store_dir(store: str | Path | None = None) -> Path:
    if store is not None:
        return Path(store).expanduser()
    env = os.environ.get("EDGESIGHT_MODEL_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "edgesight" / "models"


class StoredModel:
    """A built model in the store."""

    def __init__(self, root: Path):
        self.root = root
        self.manifest = Manifest.load(root / MANIFEST_FILE)

    @property
    def name(self) -> str:
        return self.manifest.name

    def has(self, variant: str) -> bool:
        v = self.manifest.variants.get(variant)
        return v is not None and v.sha256 is not None and (self.root / v.file).is_file()

    def available(self) -> list[str]:
        return [v for v in VARIANTS if self.has(v)]

    def path(self, variant: str, verify: bool = True) -> Path:
        v = self.manifest.variants.get(variant)
        if v is None or v.sha256 is None:
            raise ModelNotFoundError(
                f"model {self.name} has no built {variant} variant in {self.root} (built: {', '.join(self.available()) or 'none'})"
            )
        p = self.root / v.file
        if verify:
            verify_sha256(p, v.sha256, f"{self.name} {variant} variant")
        return p

    def class_names(self) -> list[str]:
        p = self.root / self.manifest.classes
        verify_sha256(p, self.manifest.classes_sha256, f"{self.name} class names")
        return [ln.strip() for ln in p.read_text().splitlines() if ln.strip()]


class ModelStore:
    """The built models in one store directory (``store`` or :func:`model_store_dir`'s default)."""

    def __init__(self, store: str | Path | None = None):
        self.store = model_store_dir(store)

    def model_dir(self, name: str) -> Path:
        return self.store / name

    def names(self) -> list[str]:
        if not self.store.is_dir():
            return []
        return sorted(p.name for p in self.store.iterdir() if (p / MANIFEST_FILE).is_file())

    def get(self, name: str) -> StoredModel:
        d = self.model_dir(name)
        if not (d / MANIFEST_FILE).is_file():
            raise ModelNotFoundError(
                f"model {name!r} is not in the model store {self.store} (built: {', '.join(self.names()) or 'none'}); "
                f"run `model-zoo import {name}`"
            )
        return StoredModel(d)
