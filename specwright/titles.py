"""Titles of specs and chunks, and a chunk's name in messages.

Two chunks of a spec may share a title (a spec file's dependencies can name them by position or
id), so a message names a chunk by its position too: ``#2 'Add tests'``.
"""

from __future__ import annotations


def chunk_label(position: int, title: str) -> str:
    """A chunk as messages name it, ``#2 'Add tests'``: its position tells apart two chunks of
    one title."""
    return f"#{position} {title!r}"
