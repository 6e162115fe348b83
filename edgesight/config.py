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
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .limits import CONFIG_MAX_ALIASES, CONFIG_MAX_BYTES, CONFIG_MAX_DEPTH, CONFIG_MAX_NODES, clip
from .log import is_secret_name, redact, redact_text, register_secret, url_secret_spans

T = TypeVar("T", bound=BaseModel)

ENV_PREFIX = "EDGESIGHT__"  # generic default; configs pass their own
PROBLEM_KEY_MAX_CHARS = 200  # a dotted key in an error (keys come from the file)
PROBLEM_MAX_CHARS = 1000  # one problem's message
MAX_PROBLEMS = 50  # problems listed in one error
ECHO_VALUE_MAX_CHARS = 80  # the "(got ...)" part of a problem
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


PORT_MIN, PORT_MAX = 1, 65535
_PORT_RE = re.compile(r"^(?:\[[^\]]*\]|[^:]*):(?P<port>[^:]*)$")  # [ipv6]:port or host:port


def check_url_port(url: str, what: str) -> None:
    """Refuse a network URL whose explicit port is not a number in 1..65535; ``what`` names the setting
    in the message (the URL itself is never echoed: it may carry credentials)."""
    netloc = urlsplit(url).netloc.rpartition("@")[2]  # userinfo may hold ':' and '@' (user:password)
    pm = _PORT_RE.match(netloc)
    if pm is None:
        return  # no explicit port: the scheme's default
    port = pm.group("port")
    if not (port.isascii() and port.isdigit() and len(port) <= 5 and PORT_MIN <= int(port) <= PORT_MAX):
        shown = port if len(port) <= 12 else port[:12] + "..."
        raise ValueError(f"{what}: port {shown!r} is not a number in {PORT_MIN}..{PORT_MAX}")


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are rejected, values validated on assignment, floats finite."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True, allow_inf_nan=False)


class ConfigError(ValueError):
    """A configuration problem; ``str()`` is a readable message naming file and key."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        # Keys and messages may echo the file's content: secrets are masked and long text is cut.
        shown = [
            (clip(redact_text(k), PROBLEM_KEY_MAX_CHARS), clip(redact_text(m), PROBLEM_MAX_CHARS))
            for k, m in problems[:MAX_PROBLEMS]
        ]
        if len(problems) > MAX_PROBLEMS:
            shown.append(("(more)", f"{len(problems) - MAX_PROBLEMS} more problems not shown (bound MAX_PROBLEMS)"))
        problems = shown
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


def format_validation_error(err: ValidationError) -> list[tuple[str, str]]:
    """(dotted key, message) for each problem; the value found is shown redacted and clipped, and not at all
    under a key whose name says secret."""
    problems = []
    for e in err.errors(include_url=False):
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not a setting here; check spelling)"
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif "input" in e:
            secret = any(isinstance(p, str) and is_secret_name(p) for p in loc)
            text = "***" if secret else repr(redact(e["input"]))
            msg = f"{msg} (got {clip(text, ECHO_VALUE_MAX_CHARS)})"
        problems.append((_loc(loc), msg))
    return problems


class _Budget:
    """Values visited while expanding: aliases make a small file a big tree (a "billion laughs")."""

    def __init__(self, source: str):
        self.source, self.nodes = source, 0

    def visit(self, path: str, depth: int) -> None:
        self.nodes += 1
        if self.nodes > CONFIG_MAX_NODES:
            raise ConfigError(
                self.source,
                [("(file)", f"more than {CONFIG_MAX_NODES} values with aliases expanded (bound CONFIG_MAX_NODES)")],
            )
        if depth > CONFIG_MAX_DEPTH:
            raise ConfigError(
                self.source,
                [(path or "(top level)", f"nested deeper than {CONFIG_MAX_DEPTH} levels (bound CONFIG_MAX_DEPTH)")],
            )


def expand_env(
    value: Any, source: str = "<config>", path: str = "", _budget: _Budget | None = None, _depth: int = 0
) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string, recursively (a copy, within
    :data:`CONFIG_MAX_NODES` and :data:`CONFIG_MAX_DEPTH`). A value from the environment is registered as a
    secret (see :func:`edgesight.log.register_secret`) when the variable or the key says secret, or when it
    lands in a URL's password or a credential query parameter."""
    budget = _budget or _Budget(source)
    budget.visit(path, _depth)
    if isinstance(value, dict):
        return {
            k: expand_env(v, source, f"{path}.{k}" if path else str(k), budget, _depth + 1) for k, v in value.items()
        }
    if isinstance(value, list):
        return [expand_env(v, source, f"{path}[{i}]", budget, _depth + 1) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        return _expand_string(value, source, path)
    return value


def _expand_string(value: str, source: str, path: str) -> str:
    secret_key = is_secret_name(path.rsplit(".", 1)[-1])
    parts: list[str] = []
    substituted: list[tuple[int, int, str]] = []  # (start, end, variable) of each value from the environment
    pos = size = 0
    for m in _ENV_REF.finditer(value):
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            sub = os.environ[name]
        elif default is not None:
            sub = default
        else:
            raise ConfigError(source, [(path or "(top level)", f"environment variable {name} is not set")])
        literal = value[pos : m.start()]
        parts += [literal, sub]
        size += len(literal)
        if name in os.environ:
            substituted.append((size, size + len(sub), name))
        size += len(sub)
        pos = m.end()
    parts.append(value[pos:])
    out = "".join(parts)
    spans = url_secret_spans(out)
    for a, b, name in substituted:
        if secret_key or is_secret_name(name, query=True) or any(a < y and x < b for x, y in spans):
            register_secret(out[a:b])
    return out


def apply_env_overrides(
    data: dict[str, Any], environ: Mapping[str, str] | None = None, prefix: str = ENV_PREFIX
) -> dict[str, Any]:
    """``<prefix>KAFKA__SASL_PASSWORD=x`` sets ``kafka.sasl_password`` (keys lower-cased). The value is read as
    YAML, except under a key whose name says secret (a string as it is); a value that is not valid YAML is a
    :class:`ConfigError` naming the variable."""
    environ = os.environ if environ is None else environ
    for name, value in environ.items():
        if not name.startswith(prefix):
            continue
        keys = [k.lower() for k in name[len(prefix) :].split("__") if k]
        if not keys:
            continue
        if is_secret_name(keys[-1]):  # a secret is a string, taken as it is (never parsed, never echoed)
            register_secret(value)
            parsed: Any = value
        else:
            for a, b in url_secret_spans(value):
                register_secret(value[a:b])
            parsed = _load_yaml(value, f"environment variable {name}") if value.strip() else value
        node = data
        for k in keys[:-1]:
            nxt = node.get(k)
            if not isinstance(nxt, dict):
                nxt = {}
                node[k] = nxt
            node = nxt
        node[keys[-1]] = parsed
    return data


class _BoundError(yaml.YAMLError):
    def __init__(self, mark: Any, problem: str):
        super().__init__(problem)
        self.problem_mark, self.problem = mark, problem


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built in: ~20x faster


def _check_bounds(text: str) -> None:
    """One pass over the parser's events (no tree is built): refuse nesting deeper than
    :data:`CONFIG_MAX_DEPTH` (the composer recurses), more than :data:`CONFIG_MAX_ALIASES` aliases and more
    than :data:`CONFIG_MAX_NODES` values."""
    depth = aliases = nodes = 0
    for ev in yaml.parse(text, Loader=_Loader):
        if isinstance(ev, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth, nodes = depth + 1, nodes + 1
            if depth > CONFIG_MAX_DEPTH:
                raise _BoundError(
                    ev.start_mark, f"nested deeper than {CONFIG_MAX_DEPTH} levels (bound CONFIG_MAX_DEPTH)"
                )
        elif isinstance(ev, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1
        elif isinstance(ev, yaml.ScalarEvent):
            nodes += 1
        elif isinstance(ev, yaml.AliasEvent):
            aliases += 1
            if aliases > CONFIG_MAX_ALIASES:
                raise _BoundError(ev.start_mark, f"more than {CONFIG_MAX_ALIASES} aliases (bound CONFIG_MAX_ALIASES)")
        if nodes > CONFIG_MAX_NODES:
            raise _BoundError(ev.start_mark, f"more than {CONFIG_MAX_NODES} values (bound CONFIG_MAX_NODES)")


def _load_yaml(text: str, source: str) -> Any:
    """Parse YAML text within the bounds; every problem is a :class:`ConfigError`."""
    try:
        _check_bounds(text)
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ConfigError(source, [(where, f"not valid YAML: {getattr(e, 'problem', None) or e}")]) from None
    except (ValueError, OverflowError) as e:  # a value the YAML constructor cannot make (2026-02-30, a huge int...)
        why = "an integer of more than 4300 digits" if "integer string conversion" in str(e) else str(e)
        raise ConfigError(source, [("(file)", f"not valid YAML: {why}")]) from None


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
        raise ConfigError(source, format_validation_error(err)) from None
    except (ArithmeticError, TypeError, ValueError, RecursionError) as e:  # a validator that failed on odd input
        raise ConfigError(source, [("(top level)", f"cannot validate: {type(e).__name__}: {e}")]) from None


def load_config(
    model: type[T], path: str | os.PathLike[str], environ: Mapping[str, str] | None = None, env_prefix: str = ENV_PREFIX
) -> T:
    """Read ``path`` (YAML) and validate it into ``model``; raises :class:`ConfigError`."""
    p = Path(path)
    source = str(p)
    try:
        with p.open("rb") as f:
            raw = f.read(CONFIG_MAX_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(source, [("(file)", "file not found")]) from None
    except OSError as e:
        raise ConfigError(source, [("(file)", f"cannot read: {e.strerror}")]) from None
    if len(raw) > CONFIG_MAX_BYTES:
        raise ConfigError(source, [("(file)", f"larger than {CONFIG_MAX_BYTES} bytes (bound CONFIG_MAX_BYTES)")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ConfigError(source, [(f"line {line}", f"not UTF-8: invalid byte at offset {e.start}")]) from None
    return parse_config(model, _load_yaml(text, source), source, environ, env_prefix)
