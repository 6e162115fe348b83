"""Printing outside text through rich.

Every string a CLI prints that came from a file, a user, a server or an exception goes through
:func:`esc`: rich reads ``[...]`` as markup, so a value holding ``[/red]`` would otherwise raise
``MarkupError`` (hiding the real message) or restyle the output.
"""

from __future__ import annotations

from rich.markup import escape


def esc(value: object) -> str:
    """``str(value)`` with rich markup escaped, printed as it is."""
    return escape(str(value))
