"""Spooled detections and keyframes are readable by their owner only: directory 0700, files 0600 (issue #11)."""

from __future__ import annotations

import os
import stat

from edge_agent.publish import Spool, SpoolConfig
from edge_agent.publish.spool import KIND_EVENT, KIND_KEYFRAME


def _modes(root) -> dict[str, int]:
    out = {".": stat.S_IMODE(os.stat(root).st_mode)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            out[os.path.relpath(full, root)] = stat.S_IMODE(os.lstat(full).st_mode)
    return out


def _private(modes: dict[str, int], root) -> list[str]:
    bad = []
    for rel, mode in modes.items():
        is_dir = os.path.isdir(os.path.join(root, rel))
        if mode != (0o700 if is_dir else 0o600):
            bad.append(f"{rel}: {oct(mode)}")
    return bad


def test_spool_files_are_private_even_with_a_permissive_umask(tmp_path):
    d = tmp_path / "spool"
    old = os.umask(0o022)  # a service manager's usual umask
    try:
        sp = Spool(SpoolConfig(dir=d, max_bytes=4 * 1024**2, segment_bytes=64 * 1024)).open()
        for i in range(2000):  # several segments
            sp.append(KIND_EVENT if i % 5 else KIND_KEYFRAME, b"cam", b"x" * 100)
        sp.checkpoint()
        modes = _modes(d)
        sp.close()
    finally:
        os.umask(old)
    assert len([m for m in modes if m.startswith("seg-")]) >= 2, modes
    assert not _private(modes, d), _private(modes, d)


def test_spool_written_by_an_older_version_is_tightened_on_open(tmp_path):
    d = tmp_path / "spool"
    sp = Spool(SpoolConfig(dir=d)).open()
    sp.append(KIND_EVENT, b"cam", b"payload")
    sp.close()
    os.chmod(d, 0o755)
    for name in os.listdir(d):
        os.chmod(d / name, 0o644)
    sp = Spool(SpoolConfig(dir=d)).open()
    try:
        assert not _private(_modes(d), d), _modes(d)
    finally:
        sp.close()
