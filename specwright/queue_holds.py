"""Queue items held back by an executor's limit: no worker claims one before ``not_before``.

A run-all a rate limit stopped leaves its item queued until the limit resets; one stopped by an
account out of credit (``billing``) or that cannot be used (``account``: on hold, disabled)
leaves it queued for an hour, then it tries again. The queued
items that would run on the same executor are held until then too, rather than each meeting the
limit in turn (a worker left running overnight failed the whole queue within seconds).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from specwright.model import local_minute, utcnow
from specwright.store import Store

# How long an executor's items wait after a rate limit stopped one whose reset is not known (it
# kept resetting within moments: "still rate limited after 20 pauses")
UNKNOWN_RESET_S = 900.0
# How long they wait after an account out of credit (or on hold) stopped one: it tries again then
# (a refused call costs nothing), so the queue goes on by itself once the account is put right
BILLING_RETRY_S = 3600.0
DUE = "(not_before IS NULL OR not_before <= ?)"  # SQL: a queued item not held (param: now)


def due_params() -> list[Any]:
    """The parameters of ``DUE``."""
    return [utcnow()]


def held_until(stopped_by: str | None, resets_at: datetime | None, reason: str) -> datetime | None:
    """Until when a run-all stopped by ``stopped_by`` (its ``reason``) holds its executor's items
    (naive UTC), or None when it holds none (a refused key, a check that cannot run: no wait
    mends them; a reviewer out of credit: the executor is not)."""
    if stopped_by == "rate_limited":
        return resets_at or utcnow() + timedelta(seconds=UNKNOWN_RESET_S)
    if stopped_by in ("billing", "account") and f"{stopped_by}: executor " in reason:
        return utcnow() + timedelta(seconds=BILLING_RETRY_S)
    return None


def limit_note(executor: str, until: datetime, stopped_by: str) -> str:
    """``rate limited until 2026-12-03 15:04 local (executor 'x')`` (a time, not "in 2 h": the
    reason is read later; first: `queue list` cuts a long reason), or ``out of credit, tries
    again at ...``."""
    at = local_minute(until.replace(tzinfo=UTC).timestamp())
    if stopped_by == "billing":
        return f"out of credit, tries again at {at} (executor {executor!r}: billing)"
    if stopped_by == "account":
        return f"account unusable, tries again at {at} (executor {executor!r}: account)"
    return f"rate limited until {at} (executor {executor!r})"


def hold(store: Store, executor: str, until: datetime, stopped_by: str) -> int:
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
    note = f"waits: {limit_note(executor, until, stopped_by)}, as another item met it"
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


def waiting(store: Store) -> str | None:
    """``2 queued item(s) wait for their executor's limit, the first until ...``, or None."""
    rows = store.query(
        "SELECT count(*), min(not_before) FROM queue WHERE status = 'queued' AND not_before > ?",
        due_params(),
    )
    count, first = rows[0]
    if not count:
        return None
    at = local_minute(first.replace(tzinfo=UTC).timestamp())
    return f"{count} queued item(s) wait for their executor's limit, the first until {at}"
