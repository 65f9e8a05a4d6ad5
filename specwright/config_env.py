"""The environment variables that win over `.handoff/config.yaml`.

``CLAUDE_PATH`` is the ``path`` of every claude-code executor, ``OPENCODE_URL`` the ``url`` and
``OPENCODE_PATH`` the ``path`` of every opencode executor, whatever the file says (the adapters
read them: ``find_claude``, ``OpenCodeExecutor.url``, ``find_opencode``). `config show` and
`agents list` name them, so a file that says one thing while another is used is not a mystery.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from specwright.config import Config, ExecutorConfig

# (executor type, key, variable): the variable, when set and not empty, is the key's value
OVERRIDES = (
    ("claude-code", "path", "CLAUDE_PATH"),
    ("opencode", "url", "OPENCODE_URL"),
    ("opencode", "path", "OPENCODE_PATH"),
)


@dataclass(frozen=True)
class Override:
    """One executor key the environment decides."""

    executor: str
    key: str
    variable: str
    value: str  # the variable's value, which is used
    file_value: str | None  # what the config says (None: nothing)

    @property
    def path(self) -> str:
        return f"tools.executors.{self.executor}.{self.key}"


def overrides(config: Config, env: Mapping[str, str] | None = None) -> list[Override]:
    """Each executor key that an environment variable overrides, in the config's order."""
    env = os.environ if env is None else env
    out = []
    for name, entry in config.executors.items():
        for kind, key, variable in OVERRIDES:
            value = env.get(variable)
            if entry.type == kind and value:
                out.append(Override(name, key, variable, value, getattr(entry, key)))
    return out


def conflicts(entry: ExecutorConfig, env: Mapping[str, str] | None = None) -> list[str]:
    """One line for each key of ``entry`` an environment variable overrides with another value
    than the config's own (a run says them: with two opencode executors of different ``url``
    and ``OPENCODE_URL`` set, both went to one server without a word)."""
    from specwright.redact import without_password

    env = os.environ if env is None else env
    out = []
    for kind, key, variable in OVERRIDES:
        value, own = env.get(variable), getattr(entry, key)
        if entry.type == kind and value and own and value.rstrip("/") != str(own).rstrip("/"):
            out.append(
                f"executor {entry.name!r}: {variable}={without_password(value)} is used, "
                f"not its {key} {without_password(str(own))} from the config"
            )
    return out


def effective(config: Config, env: Mapping[str, str] | None = None) -> Config:
    """``config`` with the environment's values in the keys it overrides."""
    executors = dict(config.executors)
    for o in overrides(config, env):
        changes: dict[str, Any] = {o.key: o.value}
        executors[o.executor] = replace(executors[o.executor], **changes)
    return replace(config, executors=executors)


def require_database(
    path: Path, db_override: str | None = None, other: str = "--db PATH names another"
) -> None:
    """A ``NotFoundError`` unless the database file ``path`` is there, naming what picked it
    (``--db``, ``SPECWRIGHT_DB`` or the project's default): for what only reads it, where
    opening it would create an empty one (a mistyped path) and show no data instead of an
    error. ``other`` says how else to name one."""
    from specwright.errors import NotFoundError

    if path.exists():
        return
    picked = database_source(db_override)
    if picked:
        given = db_override or os.environ.get("SPECWRIGHT_DB", "")
        raise NotFoundError(
            f"{picked} {given}: no database file at {path}; nothing created (check the path)"
        )
    raise NotFoundError(
        f"{path}: no database yet (the project's default); nothing created "
        f"(`specwright init` creates it, or {other})"
    )


def database_source(db_override: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """What picks the database: ``--db``, ``SPECWRIGHT_DB``, or None (the project's)."""
    env = os.environ if env is None else env
    if db_override:
        return "--db"
    return "SPECWRIGHT_DB" if env.get("SPECWRIGHT_DB") else None
