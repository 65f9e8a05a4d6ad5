"""YAML nodes of a config -> plain Python values that remember their lines.

``config.load_text`` composes the YAML (nodes only: no tag is constructed yet) and hands them here:
``${VAR}`` is substituted in every string, ``<<`` merge keys are applied, and aliases are
counted where used, so a small file cannot expand into billions of values or recurse without end.
"""

from __future__ import annotations

from typing import Any

from specwright import envsubst
from specwright.errors import ConfigError

# A config has tens of values; these bound what aliases can make of a small file (an alias
# bomb expands 1 KB into 10**9 values) and how deep the recursion goes.
MAX_VALUES = 20_000
MAX_DEPTH = 40
MAX_BYTES = 1 << 20
_MERGE = "tag:yaml.org,2002:merge"
_warned: set[str] = set()


class Ctx:
    """One load: the file's name for errors and how many values its nodes have made so far."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.values = 0

    def fail(self, line: int | None, path: str, message: str) -> ConfigError:
        where = f"{self.source}:{line}" if line else self.source
        return ConfigError(f"{where}: {path}: {message}")

    def warn(self, line: int | None, path: str, message: str) -> None:
        """Log a warning in the form of ``fail``'s error, once per process (a command may load
        the config more than once)."""
        import logging

        text = str(self.fail(line, path, message))
        if text not in _warned:
            _warned.add(text)
            logging.getLogger("specwright.config").warning("%s", text)


def plain(node: Any, ctx: Ctx, path: str, depth: int = 0) -> Any:
    """Turn a composed YAML node into Python values, substituting ${VAR}; keeps line marks."""
    import yaml

    line = node.start_mark.line + 1
    ctx.values += 1
    if depth > MAX_DEPTH or ctx.values > MAX_VALUES:  # an alias holding itself, an alias bomb
        what = (
            f"over {MAX_DEPTH} levels deep"
            if depth > MAX_DEPTH
            else f"over {MAX_VALUES:,} values (an alias counts each use)"
        )
        where = path if len(path) < 60 else path[:57] + "..."
        raise ctx.fail(line, where or "(top level)", f"{what}; too big for a config")
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        marks: dict[str, int] = {}
        quoted: set[str] = set()  # keys whose value is one quoted ${...}
        texts: dict[str, str] = {}  # one unquoted ${...} read as a number: its text
        merged: list[Marked] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:  # `<<: *base`, or `<<: [*a, *b]` (the first one wins)
                sources = (
                    value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                )
                for src in sources:
                    part = plain(src, ctx, path, depth + 1)
                    if not isinstance(part, Marked):
                        raise ctx.fail(line, f"{path}.<<".lstrip("."), "expected mappings to merge")
                    merged.append(part)
                continue
            if not isinstance(key_node, yaml.ScalarNode):  # `? [a, b]`: its nodes made the path
                raise ctx.fail(
                    key_node.start_mark.line + 1,
                    path or "(top level)",
                    "expected text keys, got a list or mapping as a key",
                )
            key = str(key_node.value)
            kpath = f"{path}.{key}".lstrip(".")
            if key in out:
                raise ctx.fail(key_node.start_mark.line + 1, kpath, "duplicate key")
            out[key] = plain(value_node, ctx, kpath, depth + 1)
            marks[key] = key_node.start_mark.line + 1
            scalar = isinstance(value_node, yaml.ScalarNode)
            if scalar and value_node.style in ('"', "'") and envsubst.is_whole(value_node.value):
                quoted.add(key)
            if text := _text_of(value_node, out[key]):
                texts[key] = text
        inherited: set[str] = set()  # keys that came from `<<:` (shared, so not all used)
        for part in merged:  # keys written here win over merged ones
            for key, value in part.items():
                if key not in out:
                    out[key], marks[key] = value, part.marks.get(key, line)
                    inherited.add(key)
                    if key in part.quoted:
                        quoted.add(key)
                    if key in part.texts:
                        texts[key] = part.texts[key]
        return Marked(out, line, marks, quoted, inherited, texts)
    if isinstance(node, yaml.SequenceNode):
        items = [plain(v, ctx, f"{path}[{i}]", depth + 1) for i, v in enumerate(node.value)]
        found = {
            i: t
            for i, (v, n) in enumerate(zip(items, node.value, strict=True))
            if (t := _text_of(n, v))
        }
        return MarkedList(items, line, found)
    try:
        value = yaml.constructor.SafeConstructor().construct_object(node, deep=True)
    except yaml.YAMLError:  # a tag safe_load does not know: !env, !!python/name:...
        raise ctx.fail(
            line,
            path,
            f"unsupported YAML tag {node.tag!r}; write plain values "
            "(and ${VAR} or ${VAR:-default} for the environment)",
        ) from None
    if isinstance(value, str):
        whole = node.style is None and envsubst.is_whole(value)
        try:
            value = envsubst.substitute(value)
        except envsubst.Unset as exc:
            raise ctx.fail(
                line,
                path,
                f"environment variable {exc.name} is not set "
                f"(write ${{{exc.name}:-default}} to give a default)",
            ) from None
        except envsubst.Malformed as exc:
            shown = exc.text if len(exc.text) <= 60 else exc.text[:57] + "..."
            raise ctx.fail(line, path, f"{shown!r}: {exc.reason}") from None
        if whole:  # `max_turns: ${TURNS:-40}` is the number 40, as `max_turns: 40` would be
            value = envsubst.typed(value)
    return value


def _text_of(node: Any, value: Any) -> str | None:
    """The text of an unquoted ``${...}`` that became a number or a boolean (``${SEED}`` with
    SEED=42), for where text is wanted (an argv item, a model, an env value); else None."""
    import yaml

    if isinstance(value, str) or not isinstance(node, yaml.ScalarNode) or node.style:
        return None
    if not envsubst.is_whole(node.value):
        return None
    return envsubst.substitute(node.value)


class Marked(dict):
    """A mapping that knows its own line and each key's line (for errors), which keys hold
    one quoted ``${...}`` (``quoted``: text, or a number where the key wants one), which
    came from a ``<<:`` merge key (``inherited``), and the text of each unquoted ``${...}``
    read as a number or boolean (``texts``: used where the key wants text)."""

    def __init__(
        self,
        data: dict[str, Any],
        line: int,
        marks: dict[str, int],
        quoted: set[str] | None = None,
        inherited: set[str] | None = None,
        texts: dict[str, str] | None = None,
    ) -> None:
        super().__init__(data)
        self.line = line
        self.marks = marks
        self.quoted = quoted or set()
        self.inherited = inherited or set()
        self.texts = texts or {}


class MarkedList(list):
    """A list that knows its line (and, as ``Marked``, its items' ``texts``)."""

    def __init__(self, data: list[Any], line: int, texts: dict[int, str] | None = None) -> None:
        super().__init__(data)
        self.line = line
        self.texts = texts or {}


def line_of(obj: Any, key: str | None = None) -> int | None:
    """The line of ``obj``, or of its ``key`` when it is a ``Marked`` mapping; None if unknown."""
    if key is not None and isinstance(obj, Marked):
        return obj.marks.get(key, obj.line)
    return getattr(obj, "line", None)
