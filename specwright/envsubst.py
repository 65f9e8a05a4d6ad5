"""``${VAR}`` substitution in config values, as shells and compose files read it: ``${VAR}``,
``${VAR:-default}`` (the default used when VAR is unset or empty, and it may hold ``${...}``
itself), ``$${`` for a literal ``${``. Any other ``${`` is an error (``${VAR-x}``, ``${VAR:=x}``,
``${1}``, one never closed): kept as written, it became a model or URL of that text; anything
else with a ``$`` (``$HOME``, ``$(cmd)``) is left as written."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


MAX_NESTING = 20  # defaults within defaults: past this it is no config (and no stack) anyone wants
_FORMS = "expected ${VAR} or ${VAR:-default} (write $${ for a literal ${)"


class Malformed(Exception):
    """A ``${`` that is not ``${VAR}`` nor ``${VAR:-default}``, or nested too deep."""

    def __init__(self, text: str, reason: str = _FORMS) -> None:
        super().__init__(text)
        self.text = text
        self.reason = reason


class Unset(Exception):
    """``${NAME}`` without a default, and NAME is not set."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def is_whole(text: str) -> bool:
    """``text`` is one ``${...}`` and nothing else (``${A}${B}`` is two)."""
    if not text.startswith("${"):
        return False
    scanned = _scan(text, 0)
    return scanned is not None and scanned[2] == len(text)


def typed(value: str) -> Any:
    """``value`` as a number or boolean when YAML would read it as one, else as it is: it is
    not parsed as YAML (a variable holding ``a: b`` or ``[`` stays text)."""
    import yaml

    tag = yaml.resolver.Resolver().resolve(yaml.ScalarNode, value, (True, False))
    if tag.rsplit(":", 1)[-1] in ("int", "float", "bool"):
        return yaml.constructor.SafeConstructor().construct_object(yaml.ScalarNode(tag, value))
    return value


def substitute(text: str, env: Mapping[str, str] | None = None, depth: int = 0) -> str:
    """``text`` with every ``${...}`` replaced from ``env`` (default: the environment)."""
    env = os.environ if env is None else env
    if depth > MAX_NESTING:
        raise Malformed(text, f"defaults nested over {MAX_NESTING} levels deep")
    out, i = [], 0
    while i < len(text):
        if text.startswith("$${", i):
            out.append("${")
            i += 3
        elif text.startswith("${", i):
            value, i = _expand(text, i, env, depth)
            out.append(value)
        else:
            j = text.find("$", i + 1)
            j = len(text) if j < 0 else j
            out.append(text[i:j])
            i = j
    return "".join(out)


def _scan(text: str, start: int) -> tuple[str, str | None, int] | None:
    """The name, the default and the end of the ``${...}`` at ``start``; None when it is not
    one (unterminated, no name)."""
    m = _NAME.match(text, start + 2)
    if m is None:
        return None
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
            return None
        default, i = text[i + 2 : j], j
    if not text.startswith("}", i):
        return None
    return name, default, i + 1


def _expand(text: str, start: int, env: Mapping[str, str], depth: int) -> tuple[str, int]:
    """The value of the ``${...}`` at ``start`` and where it ends; Malformed when it is not
    one."""
    scanned = _scan(text, start)
    if scanned is None:
        end = text.find("}", start)
        raise Malformed(text[start : end + 1] if end >= 0 else text[start:])
    name, default, end = scanned
    value = env.get(name)
    if value is None or (value == "" and default is not None):
        if default is None:
            raise Unset(name)
        value = substitute(default, env, depth + 1)
    return value, end
