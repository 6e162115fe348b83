"""Configuration loading: YAML -> typed, validated models, once, at start-up.

Every configuration model derives from :class:`StrictModel` (unknown keys are
errors, not silently ignored). :func:`load_config` reads a YAML file, expands
``${ENV_VAR}`` / ``${ENV_VAR:-default}`` references (so secrets can live in the
environment instead of the file), applies ``<PREFIX>SECTION__KEY=value``
environment overrides (``EDGESIGHT_AGENT__`` for the agent's file, ``EDGESIGHT_CLOUD__``
for the cloud's: one process's overrides never leak into the other's file), validates, and raises :class:`ConfigError` whose message
names the file, the dotted key, what was expected and what was found.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .log import register_secret

T = TypeVar("T", bound=BaseModel)

ENV_PREFIX = "EDGESIGHT__"  # generic default; configs pass their own
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are rejected, values validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


class ConfigError(ValueError):
    """A configuration problem; ``str()`` is a readable message naming file and key."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"invalid configuration in {source}:"]
        lines += [f"  - {key}: {msg}" for key, msg in problems]
        super().__init__("\n".join(lines))


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def format_validation_error(err: ValidationError, data: Any = None) -> list[tuple[str, str]]:
    problems = []
    for e in err.errors(include_url=False):
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not a setting here; check spelling)"
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif "input" in e and e["type"] not in ("missing",):
            shown = e["input"]
            if loc and isinstance(loc[-1], str) and re.search(r"pass|secret|token|key$", loc[-1], re.I):
                shown = "***"
            text = repr(shown)
            if len(text) > 80:
                text = text[:77] + "..."
            msg = f"{msg} (got {text})"
        problems.append((_loc(loc), msg))
    return problems


def expand_env(value: Any, source: str = "<config>", path: str = "") -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string, recursively."""
    if isinstance(value, dict):
        return {k: expand_env(v, source, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, source, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                register_secret(os.environ[name]) if re.search(r"pass|secret|token|key", name, re.I) else None
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(source, [(path or "(top level)", f"environment variable {name} is not set")])

        return _ENV_REF.sub(sub, value)
    return value


def apply_env_overrides(
    data: dict[str, Any], environ: Mapping[str, str] | None = None, prefix: str = ENV_PREFIX
) -> dict[str, Any]:
    """``<prefix>KAFKA__SASL_PASSWORD=x`` sets ``kafka.sasl_password`` (keys lower-cased)."""
    environ = os.environ if environ is None else environ
    for name, value in environ.items():
        if not name.startswith(prefix):
            continue
        keys = [k.lower() for k in name[len(prefix) :].split("__") if k]
        if not keys:
            continue
        node = data
        for k in keys[:-1]:
            nxt = node.get(k)
            if not isinstance(nxt, dict):
                nxt = {}
                node[k] = nxt
            node = nxt
        node[keys[-1]] = yaml.safe_load(value) if value.strip() else value
        if re.search(r"pass|secret|token|key", keys[-1]):
            register_secret(value)
    return data


def parse_config(
    model: type[T],
    data: Any,
    source: str = "<config>",
    environ: Mapping[str, str] | None = None,
    env_prefix: str = ENV_PREFIX,
) -> T:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [("(top level)", f"expected a mapping of settings, got {type(data).__name__}")])
    data = expand_env(data, source)
    data = apply_env_overrides(data, environ, env_prefix)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(source, format_validation_error(err, data)) from None


def load_config(
    model: type[T], path: str | os.PathLike[str], environ: Mapping[str, str] | None = None, env_prefix: str = ENV_PREFIX
) -> T:
    """Read ``path`` (YAML) and validate it into ``model``; raises :class:`ConfigError`."""
    p = Path(path)
    source = str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, [("(file)", "file not found")]) from None
    except OSError as e:
        raise ConfigError(source, [("(file)", f"cannot read: {e.strerror}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ConfigError(source, [(where, f"not valid YAML: {getattr(e, 'problem', e)}")]) from None
    return parse_config(model, data, source, environ, env_prefix)
