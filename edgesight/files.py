"""Private data on disk: directories 0700, files 0600 (spool segments, the embedded stack's data).

Everything the project writes that holds detections, keyframes, credentials or broker
data is readable by its owner only; :func:`private_dir` creates (or tightens) a
directory, :func:`restrict_tree` tightens what already exists below one (data written by
an older version, or by a server that ignores the umask).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
PRIVATE_UMASK = 0o077  # for server processes that write data files: 0600 files, 0700 directories


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and its parents) if missing; the directory itself ends up 0700."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    os.chmod(p, PRIVATE_DIR_MODE)
    return p


def restrict_tree(path: str | os.PathLike[str]) -> None:
    """chmod every directory below ``path`` (itself included) to 0700 and every file to 0600.

    Symbolic links are not followed; sockets and other special files are left alone."""
    root = Path(path)
    if not root.exists():
        return
    os.chmod(root, PRIVATE_DIR_MODE)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            try:
                st = os.lstat(full)
                if stat.S_ISDIR(st.st_mode):
                    os.chmod(full, PRIVATE_DIR_MODE)
                elif stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != PRIVATE_FILE_MODE:
                    os.chmod(full, PRIVATE_FILE_MODE)
            except FileNotFoundError:  # a server removed it meanwhile
                continue


def write_private(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` to ``path`` atomically with mode 0600 (its directory created 0700 if missing):
    credentials, keys and generated server files are never readable by others, not even for a moment."""
    p = Path(path)
    if not p.parent.exists():
        private_dir(p.parent)
    tmp = p.with_name(f".{p.name}.tmp")
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(raw)
    os.chmod(tmp, PRIVATE_FILE_MODE)
    os.replace(tmp, p)
    return p
