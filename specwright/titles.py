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
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
# zero-width (non-)joiners: format characters that join an emoji sequence (👩\u200d💻) or the
# letters of a word (Persian's می\u200cخواهم) and move nothing
JOINERS = frozenset("\u200c\u200d")


def hidden(ch: str) -> bool:
    """A character no title holds and no line shows as itself (``cli.common.terminal_safe``
    prints '?'): a control (Cc: a tab, an escape, C1), a lone surrogate (Cs: an undecodable
    byte of argv), a line or paragraph separator, or a format character but the joiners (Cf:
    a bidirectional override reorders what follows, a zero-width space or BOM hides). An
    unassigned code point (an emoji newer than Python's tables) or a private-use glyph is
    shown as itself: no terminal acts on one."""
    category = unicodedata.category(ch)
    return category in ("Cc", "Cs", "Zl", "Zp") or (category == "Cf" and ch not in JOINERS)


def title_problem(title: str, what: str) -> str | None:
    """Why ``title`` (already trimmed) cannot be the title ``what`` names, in one line that
    names it; None when it can."""
    if not title:
        return f"{what}: expected a non-empty title"
    shown = repr(title) if len(title) <= 60 else repr(title[:57]) + "..."
    if any(ch in _LINE_BREAKS for ch in title):
        return f"{what} {shown}: expected a single line"
    bad = next((i for i, ch in enumerate(title) if hidden(ch)), None)
    if bad is not None:
        kind = "format" if unicodedata.category(title[bad]) == "Cf" else "control"
        return (
            f"{what} {shown}: a {kind} character (U+{ord(title[bad]):04X}) at character "
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
    text = "".join(" " if hidden(ch) or ch in _LINE_BREAKS else ch for ch in text)
    return " ".join(text.split())[:MAX_TITLE_CHARS].rstrip()


def chunk_label(position: int, title: str) -> str:
    """A chunk as messages name it, ``#2 'Add tests'``: its position tells apart two chunks of
    one title."""
    return f"#{position} {title!r}"
