"""Queue items held back by a rate limit: no worker claims one before its ``not_before``.

A run-all a rate limit stopped leaves its item queued until the limit resets; the queued items
that would run on the same executor are held until then too, rather than each meeting the limit
in turn (a worker left running overnight failed the whole queue within seconds).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from specwright.model import utcnow
from specwright.store import Store

# How long an executor's items wait after a rate limit stopped one whose reset is not known (it
# kept resetting within moments: "still rate limited after 20 pauses")
UNKNOWN_RESET_S = 900.0
DUE = "(not_before IS NULL OR not_before <= ?)"  # SQL: a queued item not held (param: now)


def due_params() -> list[Any]:
    """The parameters of ``DUE``."""
    return [utcnow()]


def limit_note(executor: str, until: datetime) -> str:
    """``executor 'x' rate limited until 2026-12-03 15:04 local`` (a time, not "in 2 h": the
    reason is read later)."""
    at = until.replace(tzinfo=UTC).astimezone()
    return f"executor {executor!r} rate limited until {at:%Y-%m-%d %H:%M} local"


def hold(store: Store, executor: str, until: datetime) -> int:
    """Make the queued items that would run on ``executor`` wait until ``until``; how many."""
    from specwright import config as config_mod

    rows = store.query_dicts(
        "SELECT id, options, project_root FROM queue WHERE status = 'queued' "
        "AND (not_before IS NULL OR not_before < ?)",
        [until],
    )
    defaults: dict[str, str | None] = {}

    def runs_on(row: dict[str, Any]) -> str | None:
        named = (json.loads(row["options"]) if row["options"] else {}).get("executor")
        root = str(row["project_root"])
        if named is None and root not in defaults:
            try:  # a config that does not load fails its item at once: no agent call to save
                defaults[root] = config_mod.load(root).defaults.executor
            except Exception:
                defaults[root] = None
        return named or defaults[root]

    same = [r["id"] for r in rows if runs_on(r) == executor]
    note = f"waits: {limit_note(executor, until)} (another item met it)"
    if same:
        store.write(
            [
                Store.op_update(
                    "queue", {"id": i, "status": "queued"}, {"not_before": until, "reason": note}
                )
                for i in same
            ]
        )
    return len(same)
