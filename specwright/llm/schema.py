"""A small JSON-schema check for structured model output (no dependency)."""

from __future__ import annotations

from typing import Any

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def schema_problems(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """What is wrong with ``value`` against a JSON schema's type/required/properties/items/enum
    (a practical subset; unknown keywords are ignored). Empty when it fits."""
    where = path or "the answer"
    problems: list[str] = []
    types = schema.get("type")
    if isinstance(types, str):
        types = [types]
    if isinstance(types, list):
        ok = any(
            _JSON_TYPES.get(t) is None
            or (
                isinstance(value, _JSON_TYPES[t])
                and not (isinstance(value, bool) and t in ("integer", "number"))
            )
            for t in types
        )
        if not ok:
            return [f"{where}: expected {' or '.join(types)}, got {type(value).__name__}"]
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        problems.append(f"{where}: expected one of {enum}, got {value!r}")
    if isinstance(value, dict):
        for key in schema.get("required") or []:
            if key not in value:
                problems.append(f"{path + '.' if path else ''}{key}: required but missing")
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if key in value and isinstance(sub, dict):
                problems += schema_problems(value[key], sub, f"{path + '.' if path else ''}{key}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            problems += schema_problems(item, schema["items"], f"{where}[{i}]")
            if len(problems) > 20:
                break
    return problems
