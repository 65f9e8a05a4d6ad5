"""Titles of specs and chunks: what one may hold, and a chunk's name in messages.

A title is one line of printable text of at most ``MAX_TITLE_CHARS`` characters: it heads a
commit message, a branch's PR, every table and log line that names its spec or chunk. A control
character (a tab, an escape, a bidirectional override) would be shown as ``?`` or drive the
terminal, so where a person types a title it is refused; a planner's title is cleaned instead
(``clean_title``), so a model's stray tab does not fail a whole plan.

Two chunks of a spec may share a title (a spec file's dependencies can name them by position or
id), so a message names a chunk by its position too: ``#2 'Add tests'``.
"""

from __future__ import annotations

import unicodedata

from specwright.errors import ValidationError

MAX_TITLE_CHARS = 200  # a sentence, not a spec: GitHub cuts a PR title at 256
# bidirectional embeddings, overrides and isolates: they reorder what a title shows
_BIDI = frozenset([*range(0x202A, 0x202F), *range(0x2066, 0x206A)])
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def _control(ch: str) -> bool:
    # Cc: C0 and C1 controls and DEL (tab, escape); Cs: a lone surrogate, an undecodable byte
    # of argv, which the store cannot encode
    return unicodedata.category(ch) in ("Cc", "Cs") or ord(ch) in _BIDI


def title_problem(title: str, what: str) -> str | None:
    """Why ``title`` (already trimmed) cannot be the title ``what`` names, in one line that
    names it; None when it can."""
    if not title:
        return f"{what}: expected a non-empty title"
    shown = repr(title) if len(title) <= 60 else repr(title[:57]) + "..."
    if any(ch in _LINE_BREAKS for ch in title):
        return f"{what} {shown}: expected a single line"
    bad = next((i for i, ch in enumerate(title) if _control(ch)), None)
    if bad is not None:
        return (
            f"{what} {shown}: a control character (U+{ord(title[bad]):04X}) at character "
            f"{bad + 1}; expected printable text"
        )
    if len(title) > MAX_TITLE_CHARS:
        return f"{what} {shown}: {len(title)} characters; expected at most {MAX_TITLE_CHARS}"
    return None


def check_title(title: str, what: str) -> str:
    """``title`` trimmed, or a ``ValidationError`` saying why it cannot be one."""
    problem = title_problem(title.strip(), what)
    if problem:
        raise ValidationError(problem)
    return title.strip()


def clean_title(text: str) -> str:
    """A title made of a model's text: control characters and runs of white space one space,
    cut to ``MAX_TITLE_CHARS``; may be empty."""
    text = "".join(" " if _control(ch) or ch in _LINE_BREAKS else ch for ch in text)
    return " ".join(text.split())[:MAX_TITLE_CHARS].rstrip()


def chunk_label(position: int, title: str) -> str:
    """A chunk as messages name it, ``#2 'Add tests'``: its position tells apart two chunks of
    one title."""
    return f"#{position} {title!r}"
