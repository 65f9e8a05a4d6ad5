"""``specwright db rebuild``: a fresh database from a store's journals, with the tables that are
not journaled (imported usage, codexbar snapshots, caches) carried over from the old file."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from specwright import migrations
from specwright.errors import StoreError, StoreLockedError, StoreTooNewError
from specwright.journal import one_project_per_root, replay_batch

if TYPE_CHECKING:
    from specwright.store import Store

log = logging.getLogger(__name__)

# Tables written in bulk (imports from agents' logs, codexbar) or derived (caches): not
# journaled, so a rebuild copies them from the previous database instead.
UNJOURNALED = ("usage_records", "usage_snapshots", "usage_ingest_files", "prices", "codebase_cache")


def rebuild_into(store: Store, target: Path, batch: int = 5000) -> int:
    """Replay every journal of ``store`` into a fresh database at ``target``; returns ops
    applied.

    Tables that are not journaled (imported usage, codexbar snapshots, caches: see
    ``UNJOURNALED``) are copied over from ``store`` when it can still be read."""
    from specwright.store import Store

    if target.exists():
        raise StoreError(f"{target}: already exists; rebuild writes a fresh database")
    journal = store.journal
    fresh = Store(target, journal_dir=journal.root, lock_timeout_s=store.lock_timeout_s)
    try:
        fresh.migrate()  # records this journal as its own: a swapped-in copy journals here
        ops = one_project_per_root(list(journal.replay_located()))
        count = sum(replay_batch(fresh, ops[i : i + batch]) for i in range(0, len(ops), batch))
        with fresh.transaction() as conn:  # results journaled before migration 10
            conn.execute(migrations.BACKFILL_TOOL_RESULTS)
        _carry_unjournaled(store, fresh)
    except BaseException:  # half a database would only block the next attempt
        fresh.release()
        for leftover in (target, target.with_name(target.name + ".wal")):
            with contextlib.suppress(OSError):  # a read-only folder: nothing was left
                leftover.unlink(missing_ok=True)
        raise
    fresh.release()  # checkpointed and closed: the caller may move the file
    return count


def _carry_unjournaled(store: Store, fresh: Store) -> None:
    if not store.path.exists():
        return
    try:
        store.migrate()
    except (StoreLockedError, StoreTooNewError):  # carrying nothing would lose the imports
        raise
    except StoreError as exc:
        log.warning("%s: cannot read it to carry imported usage over: %s", store.path, exc)
        return
    store.release()  # attached below by another instance: not open twice in one process
    with fresh.transaction() as conn:
        conn.execute("ATTACH ? AS old (READ_ONLY)", [store.path.as_posix()])  # o'brien/
        try:
            for table in UNJOURNALED:
                conn.execute(f"INSERT OR IGNORE INTO {table} BY NAME SELECT * FROM old.{table}")
        finally:
            conn.execute("DETACH old")
