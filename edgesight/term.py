"""Printing outside text through rich.

Every string a CLI prints that came from a file, a user, a server or an exception goes through
:func:`esc`: rich reads ``[...]`` as markup, so a value holding ``[/red]`` would otherwise raise
``MarkupError`` (hiding the real message) or restyle the output. Every CLI prints through a
:func:`cli_console`, which also hands what it prints to :func:`edgesight.log.tee_output` (the test suite's
secrets audit).
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape

from .log import LOG_TEE_ENV, tee_output


class _TeeStream:
    """The process's current stdout or stderr (looked up at each write, so a test runner's swap is seen),
    with each write also teed."""

    def __init__(self, stderr: bool):
        self._stderr = stderr

    @property
    def _target(self) -> TextIO:
        return sys.stderr if self._stderr else sys.stdout

    def write(self, text: str) -> int:
        tee_output("stderr" if self._stderr else "stdout", text)
        return self._target.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


def cli_console(*, stderr: bool = False) -> Console:
    """The console a CLI prints through (stdout, or stderr for errors)."""
    if os.environ.get(LOG_TEE_ENV):
        return Console(file=_TeeStream(stderr))  # type: ignore[arg-type]
    return Console(stderr=stderr)


def esc(value: object) -> str:
    """``str(value)`` with rich markup escaped, printed as it is."""
    return escape(str(value))
