"""Error types. A ``SpecwrightError`` is a user-facing problem: the CLI prints its message on one
line and exits 2, without a traceback. Loop exits are exceptions that carry their reason."""

from __future__ import annotations

import re


class SpecwrightError(Exception):
    """A problem the user can fix: bad input, missing file, unreachable service."""

    exit_code = 2


class ConfigError(SpecwrightError):
    """`.handoff/config.yaml` is malformed or names something that does not exist."""


class StoreError(SpecwrightError):
    """The database cannot be opened, is locked for too long, or refuses an operation."""


class StoreLockedError(StoreError):
    """Another process held the database lock for longer than the configured limit."""


class StoreTooNewError(StoreError):
    """The database's schema is newer than this Specwright's: it must not be read, rebuilt or
    written by this version."""


class NotFoundError(SpecwrightError):
    """A project, spec, chunk or run named by the user does not exist."""


class ValidationError(SpecwrightError):
    """Input that parses but makes no sense (a dependency cycle, an unknown chunk)."""


class AgentError(SpecwrightError):
    """An agent could not be started or failed in a way that is not the chunk's fault."""


class AgentStartError(AgentError):
    """The agent's program cannot be started (missing, not a program, not executable, its
    options refused before it ran): another try would fail the same way."""


class LoopExit(Exception):
    """Leaving the Ralph loop early; ``reason`` is recorded on the run."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def one_line(text: str, limit: int) -> str:
    """Text from outside (a server's answer, an error body) for a one-line message: characters
    that are not printable as spaces, runs of spaces as one, at most ``limit`` characters (an
    ellipsis marks a cut)."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= limit else flat[:limit] + "…"


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of an exception's message (DuckDB's go on with the SQL), or its type's
    name when it has none; at most ``limit`` characters."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if limit is None else line[:limit]


def named(values: list[str], most: int = 5, limit: int = 100) -> str:
    """Names from outside (models a log or an agent reported) for a one-line message: each
    quoted on one bounded line, at most ``most`` of them, then how many more."""
    shown = ", ".join(repr(one_line(str(v), limit)) for v in values[:most])
    return shown + (f" and {len(values) - most} more" if len(values) > most else "")


# what GitHub turns into a notification, a cross-reference or a closed issue: @user,
# @org/team, #123, owner/name#123, GH-123 (an email's @ is not a mention)
_PINGS = re.compile(r"(?<![\w`])@(?=[\w-])|(?<!&)#(?=\d)|\bGH-(?=\d)", re.IGNORECASE)


def no_pings(text: str, mark: str = "\u200b") -> str:
    """Text from a model (a review, an agent's summary) that pings no one and links no issue on
    GitHub ("Fixes #1" in a commit closes it): ``mark``, a zero-width space, after each such
    ``@`` or ``#``, so it reads the same."""
    return _PINGS.sub(lambda m: m.group() + mark, text)
