"""``specwright db rebuild``: a fresh database from a store's journals, with the tables that are
not journaled (imported usage, codexbar snapshots, caches) carried over from the old file."""

from __future__ import annotations

import codecs
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from specwright import migrations
from specwright.errors import StoreError, StoreLockedError, StoreTooNewError
from specwright.journal import Journal, one_project_per_root, replay_batch

if TYPE_CHECKING:
    from specwright.store import Store

log = logging.getLogger(__name__)

# Tables written in bulk (imports from agents' logs, codexbar) or derived (caches): not
# journaled, so a rebuild copies them from the previous database instead.
UNJOURNALED = ("usage_records", "usage_snapshots", "usage_ingest_files", "prices", "codebase_cache")


def refuse_no_database(path: Path) -> None:
    """Refuse to rebuild in place what is no database, damaged or not: a directory, or a text
    file (a DuckDB file, damaged too, has NUL bytes in its first block). A mistyped ``--db``
    beside a ``journal/`` (``data``, ``data/report.html``) was moved to ``<name>.bak`` and
    replaced by a database of that journal, another database's."""
    from specwright.store import folder_error

    if path.is_dir():
        raise folder_error(path)
    utf8 = codecs.getincrementaldecoder("utf-8")
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError:  # not there (rebuilt from scratch) or unreadable (said when it is opened)
        return
    with contextlib.suppress(UnicodeDecodeError):  # a character cut at 4096 bytes is no error
        if head and b"\0" not in head and utf8().decode(head, final=False) is not None:
            raise StoreError(
                f"{path}: a text file, not a database (damaged or not); expected the database "
                "file (`--output PATH` rebuilds the journals into another file)"
            )


def rebuild_into(
    store: Store, target: Path, batch: int = 5000, *, journal_dir: Path | None = None
) -> int:
    """Replay every journal of ``store`` (or those in ``journal_dir``, then the fresh
    database's own) into a fresh database at ``target``; returns ops applied.

    Tables that are not journaled (imported usage, codexbar snapshots, caches: see
    ``UNJOURNALED``) are copied over from ``store`` when it can still be read."""
    from specwright.store import Store

    if target.exists():
        raise StoreError(f"{target}: already exists; rebuild writes a fresh database")
    journal = Journal(journal_dir) if journal_dir else store.journal
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


def copy_out(store: Store, target: Path) -> int:
    """``db rebuild --output``: ``rebuild_into`` a copy with a journal of its own, a copy of the
    store's, beside it (``journal/`` or ``<stem>.journal/``, as for a new database). Sharing the
    store's journal, the copy could not be written where that one cannot (a read-only mount),
    and each database's rebuild would replay the other's writes."""
    import shutil

    from specwright.store import DEFAULT_DB

    if target.exists():
        raise StoreError(f"{target}: already exists; rebuild writes a fresh database")
    source = store.journal.root
    name = "journal" if target.name == DEFAULT_DB.name else f"{target.stem}.journal"
    own = target.parent / name
    if own.exists() and (not own.is_dir() or any(own.iterdir())):
        raise StoreError(
            f"{own}: already exists; the copy's own journal goes there (choose another --output)"
        )
    try:
        shutil.copytree(source, own, dirs_exist_ok=True)
        return rebuild_into(store, target, journal_dir=own)
    except BaseException as exc:
        shutil.rmtree(own, ignore_errors=True)
        if isinstance(exc, OSError):
            raise StoreError(f"{own}: cannot copy the journal there: {exc}") from None
        raise


def _carry_unjournaled(store: Store, fresh: Store) -> None:
    if not store.path.exists():
        return
    try:
        store.migrate()
    except (StoreLockedError, StoreTooNewError):  # carrying nothing would lose the imports
        raise
    except StoreError as exc:
        if store.read_only:  # at an older schema, where it cannot be migrated: a copy can
            with contextlib.suppress(StoreError):  # damaged too: warned of below
                _carry_from_migrated_copy(store, fresh)
                return
        log.warning("%s: cannot read it to carry imported usage over: %s", store.path, exc)
        return
    store.release()  # attached below by another instance: not open twice in one process
    _attach_and_copy(store.path, fresh)


def _carry_from_migrated_copy(store: Store, fresh: Store) -> None:
    """Carry a read-only database's imports from a copy of it beside ``fresh``, migrated to
    this schema (the migrations correct data too: its rows are not taken as they are)."""
    import shutil

    from specwright.store import Store

    copy = fresh.path.with_name(fresh.path.name + ".old")
    try:
        shutil.copyfile(store.path, copy)
        wal = store.path.with_name(store.path.name + ".wal")
        if wal.exists():  # the last writes of a process killed before its checkpoint
            shutil.copyfile(wal, copy.with_name(copy.name + ".wal"))
        old = Store(copy)  # its journal is never written: it is only migrated and read
        old.migrate()
        old.release()
        _attach_and_copy(copy, fresh)
    finally:
        for leftover in (copy, copy.with_name(copy.name + ".wal")):
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)


def _attach_and_copy(path: Path, fresh: Store) -> None:
    with fresh.transaction() as conn:
        conn.execute("ATTACH ? AS old (READ_ONLY)", [path.as_posix()])  # o'brien/
        try:
            for table in UNJOURNALED:
                conn.execute(f"INSERT OR IGNORE INTO {table} BY NAME SELECT * FROM old.{table}")
        finally:
            conn.execute("DETACH old")
