"""The Dockerfiles (deploy/images, deploy/compose) linted structurally; Docker itself is not available here.

Each must be multi-stage, end as a non-root user, pin every base image, carry no secret, download nothing
with ADD, copy only what its ``.dockerignore`` lets into the build context, and copy ``--from`` stages that
exist. A broken copy of each rule is rejected, so the lint can fail.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "deploy" / "images"
DOCKERFILES = sorted([*IMAGES.glob("*.Dockerfile"), ROOT / "deploy" / "compose" / "connect.Dockerfile"])
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|PRIVATE_KEY|ACCESS_KEY)", re.I)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse(text: str) -> list[Stage]:
    """Stages of a Dockerfile: ``FROM`` lines and the (instruction, arguments) after each, continuations joined."""
    logical, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    stages: list[Stage] = []
    for line in logical:
        instr, _, args = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif stages:
            stages[-1].instructions.append((instr, args.strip()))
    return stages


def problems(path: Path, text: str | None = None) -> list[str]:
    text = path.read_text() if text is None else text
    stages = parse(text)
    out = []
    if len(stages) < 2:
        out.append("not multi-stage")
    names = set()
    for s in stages:
        if s.base not in names and (":" not in s.base or s.base.endswith(":latest")):
            out.append(f"base image {s.base} is not pinned to a version tag")
        for instr, args in s.instructions:
            if instr == "ADD" and re.search(r"https?://", args):
                out.append(f"ADD downloads {args}: use RUN curl with a checksum, or a build stage")
            if instr in ("ENV", "ARG"):
                for key, _, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)(=(\S+))?", args):
                    if SECRET_NAME.search(key) and value:
                        out.append(f"{instr} {key} puts a secret into the image")
            if instr == "COPY":
                m = re.search(r"--from=(\S+)", args)
                if m and m.group(1) not in names:
                    out.append(f"COPY --from={m.group(1)}: no earlier stage of that name")
        if s.name:
            names.add(s.name)
    users = [args for instr, args in (stages[-1].instructions if stages else []) if instr == "USER"]
    if not users:
        out.append("the final stage runs as root (no USER)")
    elif users[-1].split(":")[0] in ("root", "0"):
        out.append(f"the final stage runs as {users[-1]}")
    return out


def context_sources(path: Path) -> list[str]:
    """Paths the Dockerfile copies from the build context (``COPY`` without ``--from``)."""
    out = []
    for s in parse(path.read_text()):
        for instr, args in s.instructions:
            if instr == "COPY" and "--from" not in args:
                words = [w for w in shlex.split(args) if not w.startswith("--")]
                out += words[:-1]
    return out


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_lint(dockerfile):
    assert problems(dockerfile) == []


@pytest.mark.parametrize("dockerfile", sorted(IMAGES.glob("*.Dockerfile")), ids=lambda p: p.name)
def test_build_context_has_what_is_copied(dockerfile):
    ignore = Path(f"{dockerfile}.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "**" in ignore, "the context should start from nothing and list what it needs"
    for src in context_sources(dockerfile):
        top = src.rstrip("/").split("/")[0]
        assert top in allowed, f"{dockerfile.name} copies {src}, which its .dockerignore leaves out"
        assert (ROOT / src).exists(), src


def test_edge_agent_image():
    stages = parse((IMAGES / "edge-agent.Dockerfile").read_text())
    runtime = stages[-1]
    assert re.fullmatch(r"nvidia/cuda:[\d.]+-cudnn-runtime-ubuntu[\d.]+", runtime.base)
    text = (IMAGES / "edge-agent.Dockerfile").read_text()
    assert "onnxruntime-gpu" in text and "'.[gpu]'" in text
    assert "model-zoo import yolov4-tiny" in text
    copies = [a for i, a in runtime.instructions if i == "COPY"]
    assert any("--from=models" in a and "/opt/edgesight/models" in a for a in copies)
    env = " ".join(a for i, a in runtime.instructions if i == "ENV")
    assert "EDGESIGHT_MODEL_DIR=/opt/edgesight/models" in env
    assert ("ENTRYPOINT", '["edge-agent"]') in runtime.instructions


def test_cloud_image():
    runtime = parse((IMAGES / "cloud.Dockerfile").read_text())[-1]
    assert ("ENTRYPOINT", '["cloud-ops"]') in runtime.instructions
    assert not any(i == "RUN" and "pip" in a for i, a in runtime.instructions), "pip belongs in the build stage"


def test_lint_rejects_broken_copies():
    path = IMAGES / "cloud.Dockerfile"
    good = path.read_text()
    assert problems(path, good.replace("USER 10001:10001", "")) == ["the final stage runs as root (no USER)"]
    assert problems(path, good.replace("USER 10001:10001", "USER root")) == ["the final stage runs as root"]
    single = "FROM python:3.12.8-slim-bookworm\nUSER 10001\n"
    assert problems(path, single) == ["not multi-stage"]
    secret = good.replace("ENV PATH=", "ENV AWS_SECRET_ACCESS_KEY=abc PATH=")
    assert any("secret" in p for p in problems(path, secret))
    assert any(
        "not pinned" in p
        for p in problems(path, good.replace("python:3.12.8-slim-bookworm AS build", "python AS build"))
    )
    assert any("--from=bild" in p for p in problems(path, good.replace("--from=build", "--from=bild")))
    assert any(
        "ADD downloads" in p for p in problems(path, good.replace("WORKDIR /src", "ADD https://x.example/a.tgz /src"))
    )
