"""Lazy re-exports for the stage packages (PEP 562), so that importing a settings module
(``edge_agent.capture.settings``, the whole ``edge_agent.config``) never pulls in the
runtime dependencies of its package (cv2, onnxruntime, confluent_kafka, paho)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` that import ``name`` from ``exports[name]``
    (a submodule name such as ``".engine"``) on first access."""

    def module_getattr(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module, package), name)

    def module_dir() -> list[str]:
        return sorted(exports)

    return module_getattr, module_dir
