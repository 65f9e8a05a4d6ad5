"""``${VAR}`` substitution in config values, as shells and compose files read it: ``${VAR}``,
``${VAR:-default}`` (the default used when VAR is unset or empty, and it may hold ``${...}``
itself), ``$${`` for a literal ``${``; anything else with a ``$`` is left as written."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# a value that is one ${...} and nothing else (config.py types its result like YAML's own)
_WHOLE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::-.*)?\}", re.DOTALL)


class Unset(Exception):
    """``${NAME}`` without a default, and NAME is not set."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def is_whole(text: str) -> bool:
    return _WHOLE.fullmatch(text) is not None


def substitute(text: str, env: Mapping[str, str] | None = None) -> str:
    """``text`` with every ``${...}`` replaced from ``env`` (default: the environment)."""
    env = os.environ if env is None else env
    out, i = [], 0
    while i < len(text):
        if text.startswith("$${", i):
            out.append("${")
            i += 3
        elif text.startswith("${", i):
            value, i = _expand(text, i, env)
            out.append(value)
        else:
            j = text.find("$", i + 1)
            j = len(text) if j < 0 else j
            out.append(text[i:j])
            i = j
    return "".join(out)


def _expand(text: str, start: int, env: Mapping[str, str]) -> tuple[str, int]:
    """The value of the ``${...}`` at ``start`` and where it ends; ``("${", start + 2)`` (as
    written) when it is not one."""
    m = _NAME.match(text, start + 2)
    if m is None:
        return "${", start + 2
    name, i = m.group(0), m.end()
    default: str | None = None
    if text.startswith(":-", i):
        depth, j = 0, i + 2
        while j < len(text) and not (text[j] == "}" and depth == 0):
            if text.startswith("${", j):
                depth, j = depth + 1, j + 2
                continue
            depth -= text[j] == "}"
            j += 1
        if j >= len(text):
            return "${", start + 2
        default, i = text[i + 2 : j], j
    if not text.startswith("}", i):
        return "${", start + 2
    value = env.get(name)
    if value is None or (value == "" and default is not None):
        if default is None:
            raise Unset(name)
        value = substitute(default, env)
    return value, i + 1
