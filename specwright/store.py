"""The DuckDB store: short-lived connections, migrations on connect, journaled writes.

DuckDB lets one process hold a database file at a time, so every operation opens a connection,
does its work and closes it (the instance lingers briefly between operations and is handed over
when another process asks: keeper.py); a lock held by another process is retried with backoff
up to ``lock_timeout_s`` and then reported clearly. Every write is journaled first (see
journal.py), so the database can always be rebuilt from the journals.

Which journal directory belongs to a database is recorded in the database itself (``store_meta``,
key ``journal_dir``), so two databases in one folder never share one: ``specwright.duckdb`` and
any database from before that record existed use ``journal/`` beside it, another database
created now ``<stem>.journal/`` (see ``Store.journal``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specwright import interrupts, keeper
from specwright.errors import StoreError, StoreLockedError, StoreTooNewError, first_line
from specwright.journal import (
    CATALOG,
    Journal,
    apply_ops,
    normal,
    op_time,
)
from specwright.journal import normal_row as _normal_row
from specwright.migrations import MIGRATIONS, STORE_META_VERSION, latest_version

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

log = logging.getLogger(__name__)

DEFAULT_DB = Path("data") / "specwright.duckdb"
DEFAULT_LOCK_TIMEOUT_S = 30.0
_CONFLICT_RETRIES = 8  # same-row write conflicts between threads of one process

_migrated: set[str] = set()
# Each database's own journal directory, read from its store_meta with the migration check:
# once per process per database file.
_journal_roots: dict[str, Path] = {}
JOURNAL_DIR_KEY = "journal_dir"
# Databases this process opened read-only, with why (the file or its folder cannot be written):
# DuckDB keeps one instance per file per process, so every later connection must ask the same.
_read_only: dict[str, str] = {}
_UNWRITABLE = re.compile(r"Read-only file system|Permission denied|Operation not permitted")


def resolve_db_path(project_root: Path | str | None = None, override: str | None = None) -> Path:
    """The database file: ``--db`` first, then ``SPECWRIGHT_DB``, then ``data/`` of the project.
    A URL is refused (it would make a folder named ``http:``)."""
    for what, value in (("--db", override), ("SPECWRIGHT_DB", os.environ.get("SPECWRIGHT_DB"))):
        if value:
            if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", value):
                raise StoreError(f"{what} {value}: expected a database file path, not a URL")
            return Path(value).expanduser().resolve()
    return (Path(project_root or Path.cwd()) / DEFAULT_DB).resolve()


def folder_error(path: Path) -> StoreError:
    """What a database path that is a folder (``--db data``) is told, by every command."""
    return StoreError(
        f"{path}: a folder, not a database file (such as {path / DEFAULT_DB.name}; check --db / "
        "SPECWRIGHT_DB)"
    )


def _lock_timeout_from_env() -> float:
    raw = os.environ.get("SPECWRIGHT_LOCK_TIMEOUT")
    if not raw:
        return DEFAULT_LOCK_TIMEOUT_S
    with contextlib.suppress(ValueError):
        if not math.isnan(value := float(raw)):  # a deadline of nan: a lock waited for forever
            return value
    raise StoreError(f"SPECWRIGHT_LOCK_TIMEOUT: expected seconds as a number, got {raw!r}")


def is_conflict(exc: BaseException) -> bool:
    """DuckDB aborted a transaction that wrote a row another transaction of this process wrote
    meanwhile (threads: only one process opens the file at a time): the whole transaction may
    be tried again."""
    import duckdb

    return isinstance(exc, duckdb.TransactionException) and "conflict" in str(exc).lower()


def _commit_failed(exc: BaseException) -> bool:
    import duckdb

    return isinstance(exc, duckdb.TransactionException) and "failed to commit" in str(exc).lower()


@contextmanager
def _signals_kept() -> Iterator[None]:
    """A Ctrl-C or SIGTERM that landed in a query raised as the KeyboardInterrupt its handler
    raised, not as DuckDB's RuntimeError (``interrupts.query_interrupted``)."""
    try:
        yield
    except Exception as exc:
        stopped = interrupts.query_interrupted(exc)
        if stopped is None:
            raise
        raise stopped from None


def _py(value: Any) -> Any:
    return str(value) if isinstance(value, uuid.UUID) else value


class Store:
    """One DuckDB database file and the journals beside it."""

    def __init__(
        self,
        path: Path | str,
        *,
        journal_dir: Path | str | None = None,
        lock_timeout_s: float | None = None,
        linger_s: float | None = None,
    ) -> None:
        self.path = Path(path)
        # explicit (tests, rebuild): used as is and recorded as the database's own on connect
        self._journal_dir = Path(journal_dir) if journal_dir else None
        self._journal = Journal(self._journal_dir) if self._journal_dir else None
        self._journal_recorded = False
        self.lock_timeout_s = _lock_timeout_from_env() if lock_timeout_s is None else lock_timeout_s
        self.linger_s = keeper.linger_from_env() if linger_s is None else linger_s
        self._key = self.path.resolve()
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # --- journal directory ------------------------------------------------------------------

    @property
    def journal(self) -> Journal:
        """This database's journals: an explicit ``journal_dir``, else the directory the
        database records as its own (read on first use, once per process; opening the
        database for it only when no connection has read it yet)."""
        if self._journal is not None:
            return self._journal
        root = _journal_roots.get(str(self._key))
        if root is None:
            if not self._key.exists():
                # created by its first write, which records this same directory
                return Journal(self._journal_root(self._default_journal(created=True)))
            try:
                with self.connect() as conn:
                    root = _journal_roots.get(str(self._key)) or self._own_journal(
                        conn, created=False
                    )
            except (StoreLockedError, StoreTooNewError):
                raise
            except StoreError as exc:  # damaged: the journals are how it gets rebuilt
                guess = self._guess_journal()
                log.warning(
                    "%s: cannot read which journal is its own, using %s: %s", self.path, guess, exc
                )
                self._journal = Journal(guess)  # said once: the file stays as damaged
                return self._journal
        self._journal = Journal(root)
        return self._journal

    def _default_journal(self, *, created: bool) -> str:
        """``journal`` (shared, as before) for a database from before store_meta and for
        ``specwright.duckdb``; ``<stem>.journal`` for any other database created now."""
        if not created or self._key.name == DEFAULT_DB.name:
            return "journal"
        return f"{self._key.stem}.journal"

    def _journal_root(self, recorded: str) -> Path:
        path = Path(recorded)
        return path if path.is_absolute() else self._key.parent / path

    def _journal_value(self, root: Path) -> str:
        """How ``root`` is recorded: relative to the database's folder when inside it (the
        pair can move together), else absolute."""
        root = root.resolve()
        try:
            return root.relative_to(self._key.parent).as_posix()
        except ValueError:
            return str(root)

    def _guess_journal(self) -> Path:
        """The journal of a database that cannot be read: its own if there is one, else the
        shared ``journal/``."""
        own = self._journal_root(self._default_journal(created=True))
        return own if own.is_dir() else self._journal_root("journal")

    def _own_journal(self, conn: duckdb.DuckDBPyConnection, *, created: bool) -> Path:
        """Read, or record the first time, the journal directory that is this database's own
        (``created``: the database had no schema before this connection). An explicit
        ``journal_dir`` wins and is recorded."""
        sql = "SELECT value FROM store_meta WHERE key = ?"
        rows = conn.execute(sql, [JOURNAL_DIR_KEY]).fetchall()
        recorded: str | None = rows[0][0] if rows else None
        if self._journal_dir is not None:
            value = self._journal_value(self._journal_dir)
            self._journal_recorded = True
        else:
            value = recorded or self._default_journal(created=created)
        if value != recorded and not self.read_only:
            if recorded is not None:
                log.warning(
                    "%s: journaling into %s from now on (it journaled into %s)",
                    self.path,
                    value,
                    recorded,
                )
            conn.execute(
                "INSERT OR REPLACE INTO store_meta (key, value) VALUES (?, ?)",
                [JOURNAL_DIR_KEY, value],
            )
        root = self._journal_root(value)
        _journal_roots[str(self._key)] = root
        return root

    # --- connections ------------------------------------------------------------------------

    def _open(self) -> duckdb.DuckDBPyConnection:
        import duckdb

        if self._key.is_dir():  # `--db data/`: DuckDB's "Could not read from file" said less
            raise folder_error(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file where the folder should be, a read-only parent
            raise StoreError(
                f"{self.path}: cannot create its folder {self.path.parent}: {exc.strerror or exc}"
            ) from None
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.005
        asked = False
        with ExitStack() as marked:
            while True:
                try:
                    return duckdb.connect(str(self._key), read_only=self.read_only)
                except duckdb.IOException as exc:
                    text = str(exc)
                    unwritable = None if self.read_only else _UNWRITABLE.search(text)
                    if unwritable and self._key.is_file():
                        # a file this process cannot write (a read-only mount, another user's
                        # file): reports can still read it; a write says why it cannot
                        _read_only[str(self._key)] = unwritable[0].lower()
                        continue
                    if "lock" not in text.lower():
                        if self._key.is_file() and not _UNWRITABLE.search(text):
                            raise self._damaged(exc) from None  # truncated, overwritten
                        raise StoreError(f"{self.path}: cannot open the database: {text}") from None
                    stopped = keeper.stopped_holder(text)
                    if stopped:  # waiting is no use: it cannot let go until resumed
                        raise StoreLockedError(
                            f"{self.path}: database is locked by process {stopped}, which is "
                            f"stopped (Ctrl-Z?); resume it (`fg` in its terminal, or `kill "
                            f"-CONT {stopped}`) or end it"
                        ) from None
                    if time.monotonic() >= deadline:
                        holder = text.split("Conflicting lock is held in", 1)[-1].strip()
                        raise StoreLockedError(
                            f"{self.path}: database is locked by another process ({holder}) "
                            f"for more than {self.lock_timeout_s:g}s; "
                            "raise SPECWRIGHT_LOCK_TIMEOUT or stop the other process"
                        ) from None
                    if not asked:  # tell a lingering holder to let go, once
                        marked.enter_context(keeper.waiting(self._key))
                        asked = True
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 1.6, 0.2)
                except duckdb.Error as exc:
                    raise StoreError(f"{self.path}: not a usable DuckDB database: {exc}") from None

    @property
    def read_only(self) -> bool:
        """Whether this process opened the database read-only (it cannot write the file)."""
        return str(self._key) in _read_only

    def read_only_error(self, then: str = "nothing was saved") -> StoreError:
        """The error of a write to a database opened read-only, ending with ``then``."""
        why = _read_only.get(str(self._key), "read-only")
        return StoreError(f"{self.path}: the database can only be read here ({why}); {then}")

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection to a migrated database; closed on exit.

        Re-entrant within a thread: inside ``with store.connect():`` every store call reuses
        the same connection, so a group of reads and writes costs one open. Between
        connections the database instance lingers (see keeper.py) unless another process
        waits for the file."""
        current = getattr(self._local, "conn", None)
        if current is not None:
            with _signals_kept():
                yield current
            return
        held = keeper.acquire(self._key)
        try:
            conn = self._open()
        except BaseException:
            keeper.release(held, 0)
            raise
        keeper.opened(held, self.linger_s, self.read_only)
        self._local.conn = conn
        try:
            with _signals_kept(), interrupts.interruptible(conn):
                if str(self._key) not in _migrated:
                    self._migrate_checked(conn)
                    _migrated.add(str(self._key))
                elif self._journal_dir is not None and not self._journal_recorded:
                    self._own_journal(conn, created=False)
                yield conn
        finally:
            self._local.conn = None
            conn.close()
            keeper.release(held, self.linger_s)

    def release(self) -> None:
        """Close this database's lingering connection now (it is about to be replaced, moved
        or attached elsewhere)."""
        keeper.close(self._key)

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection inside BEGIN/COMMIT; rolled back if the block raises. Nested use
        joins the outer transaction."""
        if getattr(self._local, "in_tx", False):
            with self.connect() as conn:
                yield conn
            return
        with self.connect() as conn:
            if self.read_only:
                raise self.read_only_error()
            conn.execute("BEGIN TRANSACTION")
            self._local.in_tx, self._local.tx_logged = True, []
            try:
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except BaseException as exc:
                # what writes inside it journaled never reached the database: not replayed
                for logged, ops, written in self._local.tx_logged:
                    self.journal.abort(logged, ops, written)
                if _commit_failed(exc):  # a full disk, at COMMIT
                    raise self._unwritable(exc) from None
                raise
            finally:
                self._local.in_tx = False

    # --- migrations -------------------------------------------------------------------------

    @staticmethod
    def _current_version(conn: duckdb.DuckDBPyConnection) -> int:
        import duckdb

        # asked directly: a look in information_schema cost ~6 ms of every process's first use
        try:
            row = conn.execute("SELECT max(version) FROM schema_version").fetchall()[0][0]
        except duckdb.CatalogException:
            return 0
        return int(row or 0)

    def _migrate(self, conn: duckdb.DuckDBPyConnection) -> list[int]:
        """Apply pending migrations, then read (or record) the database's own journal."""
        if self.read_only:
            return self._check_read_only(conn)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"
        )
        current = self._current_version(conn)
        if current > latest_version():
            raise StoreTooNewError(
                f"{self.path}: database schema is version {current}, newer than this Specwright "
                f"understands (up to {latest_version()}); upgrade Specwright to open it"
            )
        applied = []
        for migration in MIGRATIONS:
            if migration.version <= current:
                continue
            conn.execute("BEGIN TRANSACTION")
            try:
                for statement in migration.statements:
                    conn.execute(statement)
                if migration.version == STORE_META_VERSION:
                    # in the table's own transaction: no database is left without a record,
                    # so one found without it is from before this migration
                    self._own_journal(conn, created=current == 0)
                conn.execute(
                    "INSERT INTO schema_version VALUES (?, ?, (now() AT TIME ZONE 'UTC'))",
                    [migration.version, migration.name],
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            applied.append(migration.version)
        if STORE_META_VERSION not in applied:
            self._own_journal(conn, created=current == 0)
        return applied

    def _check_read_only(self, conn: duckdb.DuckDBPyConnection) -> list[int]:
        """``_migrate`` for a database opened read-only: usable only at this schema version."""
        current = self._current_version(conn)
        if current != latest_version():
            newer = current > latest_version()
            raise (StoreTooNewError if newer else StoreError)(
                f"{self.path}: can only be read here ({_read_only[str(self._key)]}) and its "
                f"schema is version {current}; this Specwright reads version {latest_version()}"
                + (
                    ": upgrade Specwright"
                    if newer
                    else ": run `specwright db migrate` once where the file can be written"
                )
            )
        self._own_journal(conn, created=False)
        return []

    def _migrate_checked(self, conn: duckdb.DuckDBPyConnection) -> list[int]:
        """``_migrate``, with a database that opens but cannot be read (a truncated file, a
        damaged block) reported as such rather than as DuckDB's exception."""
        import duckdb

        try:
            return self._migrate(conn)
        except duckdb.Error as exc:
            raise self._damaged(exc) from None

    def _damaged(self, exc: Exception) -> StoreError:
        """A file that does not open as a database: damaged (with journals to rebuild it from),
        or, without any, maybe never one (``--db notes.txt``)."""
        if Journal(self._journal_dir or self._guess_journal()).files():
            return StoreError(
                f"{self.path}: the database is damaged or unreadable ({first_line(exc, 300)}); "
                "`specwright db rebuild` recreates it from its journals"
            )
        if "not a valid DuckDB database" in str(exc):
            return StoreError(f"{self.path}: not a DuckDB database (check --db / SPECWRIGHT_DB)")
        return StoreError(
            f"{self.path}: the database is damaged or unreadable ({first_line(exc, 300)}); "
            "there are no journals beside it to rebuild it from"
        )

    def migrate(self) -> list[int]:
        """Apply pending migrations now; returns the versions applied."""
        conn = self._open()
        try:
            applied = self._migrate_checked(conn)
            _migrated.add(str(self.path.resolve()))
            return applied
        finally:
            conn.close()

    def schema_version(self) -> int:
        with self.connect() as conn:
            return self._current_version(conn)

    # --- reads ------------------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read query and return every row (UUIDs as strings)."""
        with self.connect() as conn:
            rows = conn.execute(sql, list(params)).fetchall()
        return [tuple(_py(v) for v in row) for row in rows]

    def query_dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run a read query and return rows as dicts keyed by column name."""
        with self.connect() as conn:
            cur = conn.execute(sql, list(params))
            cols = [d[0] for d in cur.description or []]
            rows = cur.fetchall()
        return [{c: _py(v) for c, v in zip(cols, row, strict=True)} for row in rows]

    def query_df(
        self, sql: str, params: Sequence[Any] = (), *, via_arrow: bool = False
    ) -> pd.DataFrame:
        """Run a read query and return a pandas DataFrame. ``via_arrow`` builds it from an Arrow
        table: ~3x faster for many rows of numbers, text and timestamps (1M rows: ~0.1 s instead
        of ~0.3 s), but HUGEINT, DECIMAL and LIST columns would arrive as Python objects."""
        with self.connect() as conn:
            if via_arrow:
                return conn.sql(sql, params=list(params)).to_arrow_table().to_pandas()
            return conn.execute(sql, list(params)).df()

    # --- writes -----------------------------------------------------------------------------

    @staticmethod
    def op_insert(table: str, row: dict[str, Any], *, upsert: bool = False) -> dict[str, Any]:
        return {
            "t": op_time(),
            "op": "upsert" if upsert else "insert",
            "table": table,
            "row": _normal_row(row),
        }

    @staticmethod
    def op_update(table: str, key: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
        return {
            "t": op_time(),
            "op": "update",
            "table": table,
            "key": _normal_row(key),
            "set": _normal_row(values),
        }

    @staticmethod
    def op_sql(sql: str, params: Sequence[Any] = ()) -> dict[str, Any]:
        return {"t": op_time(), "op": "sql", "sql": sql, "params": [normal(p) for p in params]}

    def write(
        self, ops: list[dict[str, Any]], journal: str | None = CATALOG, *, journaled: bool = False
    ) -> None:
        """Journal ``ops`` (unless ``journal`` is None or they already are), then apply them
        to the database in one transaction. Ops the database refuses (a value of the wrong
        type, say) are marked aborted in the journal, so a rebuild does not replay them."""
        if not ops:
            return
        if self.read_only:  # known from an earlier connection: no journal line to take back
            raise self.read_only_error()
        logged = None if journaled else journal  # the journal these ops went to here
        written = self.journal.append(logged, ops) if logged is not None else None
        import duckdb

        for attempt in range(1, _CONFLICT_RETRIES + 1):
            try:
                with self.transaction() as conn:
                    apply_ops(conn, ops)
                if logged is not None and getattr(self._local, "in_tx", False):
                    self._local.tx_logged.append((logged, ops, written))  # aborted with it
                return
            except BaseException as exc:
                # Two threads of this process updated the same row at once (a heartbeat and
                # the loop, say): DuckDB aborts one of them. Retry the whole transaction,
                # unless it is nested in an outer one (that one is aborted too: let it decide).
                if (
                    is_conflict(exc)
                    and not getattr(self._local, "in_tx", False)
                    and attempt < _CONFLICT_RETRIES
                ):
                    time.sleep(0.005 * attempt * (0.5 + random.random()))
                    continue
                if logged is not None:  # never raises: the database's error is the one told
                    self.journal.abort(logged, ops, written)
                if isinstance(exc, duckdb.IOException | duckdb.PermissionException) or (
                    _commit_failed(exc)
                ):  # the file cannot be written (a read-only folder, a full disk)
                    raise self._unwritable(exc) from None
                raise

    def _unwritable(self, exc: BaseException) -> StoreError:
        return StoreError(
            f"{self.path}: cannot write the database ({first_line(exc, 300)}); nothing was saved"
        )

    def insert(self, table: str, row: dict[str, Any], journal: str = CATALOG) -> None:
        self.write([self.op_insert(table, row)], journal)

    def update(
        self, table: str, key: dict[str, Any], values: dict[str, Any], journal: str = CATALOG
    ) -> None:
        self.write([self.op_update(table, key, values)], journal)

    # --- rebuild ----------------------------------------------------------------------------

    def rebuild_into(self, target: Path | str, batch: int = 5000) -> int:
        """Replay every journal into a fresh database at ``target``; returns ops applied (see
        ``rebuild.rebuild_into``)."""
        from specwright import rebuild

        return rebuild.rebuild_into(self, Path(target), batch)
