"""`specwright config show`: the configuration as it is used, and what the environment decides."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from specwright.errors import SpecwrightError

if TYPE_CHECKING:
    from specwright.cli.common import Context

_MARK = "specwright-override-{}"  # stands for an overridden value until the YAML is written


def show(ctx: Context) -> int:
    """Print the resolved config: the values used, each one an environment variable decides
    marked (`# from OPENCODE_URL`), and the database and what picked it."""
    import yaml

    from specwright.config import to_dict
    from specwright.config_check import COMMON_KEYS, USED_BY
    from specwright.config_env import database_source, effective, overrides
    from specwright.redact import Redactor

    redact = Redactor.from_env()  # `${API_KEY}` in env, argv or a URL: output gets pasted

    def hidden(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: hidden(v) for k, v in value.items()}
        if isinstance(value, list):
            return [hidden(v) for v in value]
        return redact(value) if isinstance(value, str) else value

    config = ctx.config
    changed = overrides(config)
    data = hidden(to_dict(effective(config)))
    database: str | None = None
    error = None
    try:
        database = hidden(str(ctx.db_path))
    except SpecwrightError as exc:  # SPECWRIGHT_DB that is a URL: said here, not a traceback
        error = hidden(str(exc))
    picked_by = database_source(ctx.db_override)
    there = database is not None and ctx.db_path.exists()  # commands that only read need it
    if ctx.json:
        data["database"] = {"path": database, "from": picked_by, "exists": there} | (
            {"error": error} if error else {}
        )
        data["overridden"] = [
            {
                "key": o.path,
                "from": o.variable,
                "value": redact(o.value),
                "file": hidden(o.file_value),
            }
            for o in changed
        ]
        ctx.emit(data)
        return 0
    source = data.pop("source")
    print(f"# resolved from {source}" if source else "# no .handoff/config.yaml: built-in defaults")
    if error:
        print(f"# database: none ({error})")
    else:
        notes = [f"from {picked_by}"] if picked_by else []
        notes += [] if there else ["no file there yet"]
        print(f"# database: {database}" + (f" ({'; '.join(notes)})" if notes else ""))
    executors = data["tools"]["executors"]
    for body in executors.values():  # what the type reads, not another type's defaults
        used = {*COMMON_KEYS, *USED_BY.get(body["type"], ())}
        for key in [k for k in body if k not in used]:
            del body[key]
    for i, o in enumerate(changed):
        executors[o.executor][o.key] = _MARK.format(i)
    text = yaml.safe_dump(data, sort_keys=False, width=float("inf"))
    for i, o in enumerate(changed):
        note = f"  # from {o.variable}" + (
            f" (the file says {_scalar(hidden(o.file_value))})" if o.file_value else ""
        )
        text = text.replace(f": {_MARK.format(i)}\n", f": {_scalar(redact(o.value))}{note}\n", 1)
    print(text.rstrip())
    return 0


def _scalar(value: str) -> str:
    """``value`` as a YAML scalar on one line."""
    import yaml

    text = yaml.safe_dump(value, width=float("inf")).removesuffix("\n...\n").rstrip("\n")
    return text if "\n" not in text else json.dumps(value)
