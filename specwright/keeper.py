"""Keep a database warm between short-lived connections, and hand it over when asked.

DuckDB lets one process at a time hold a database file, so the store opens a connection per
operation and closes it. Opening is not free: a fresh DuckDB instance builds its catalog of
built-in functions (~14 ms here) and closing the last connection checkpoints the WAL (~10-30
ms), which costs more than most queries. So after the last connection of a process closes, one
idle connection keeps the instance alive for ``linger_s`` (``SPECWRIGHT_LINGER``, default 1 s):
the next connection in that time costs microseconds.

Fairness between processes: a process that finds the file locked leaves a marker file in
``.<db name>.waiting/`` beside the database while it retries (see ``waiting``). A process that
lingers watches for markers (every ``POLL_S``) and closes at once when one appears, and never
lingers after a use while one is there. So a waiting Specwright process gets the file within
about ``POLL_S`` of the holder going idle, as before. Other programs (a user's own ``duckdb``
shell) leave no marker: they find the file free at most ``linger_s`` after the last use.
``SPECWRIGHT_LINGER=0`` turns lingering off.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from specwright.errors import StoreError

if TYPE_CHECKING:
    import duckdb

DEFAULT_LINGER_S = 1.0
POLL_S = 0.01
_HOLDER_PID = re.compile(r"\(PID (\d+)\)")


def linger_from_env() -> float:
    raw = os.environ.get("SPECWRIGHT_LINGER")
    if not raw:
        return DEFAULT_LINGER_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if math.isnan(value):  # a deadline of nan is never reached: the file held while it runs
        raise StoreError(f"SPECWRIGHT_LINGER: expected seconds as a number, got {raw!r}")
    return max(value, 0.0)


def wait_dir(db: Path) -> Path:
    """Where processes waiting for ``db`` leave their markers."""
    return db.with_name(f".{db.name}.waiting")


@contextlib.contextmanager
def waiting(db: Path) -> Iterator[None]:
    """Mark this process as waiting for ``db`` while the block runs (best effort: a directory
    that cannot be written only means the holder is not told)."""
    marker = wait_dir(db) / f"{os.getpid()}-{threading.get_ident()}"
    try:
        marker.parent.mkdir(exist_ok=True)
        marker.touch()
    except OSError:
        marker = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if marker is not None:
            with contextlib.suppress(OSError):
                marker.unlink()


def stopped_holder(lock_error: str) -> int | None:
    """The pid of the process DuckDB's lock error names (``... (PID 123) ...``) when it is
    stopped (Ctrl-Z, SIGSTOP): it cannot let go of the file until it is resumed. Linux only
    (``/proc``); None elsewhere, or when it runs."""
    found = _HOLDER_PID.search(lock_error)
    if found is None:
        return None
    try:
        with open(f"/proc/{found[1]}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]  # after the command name
    except (OSError, IndexError):
        return None
    return int(found[1]) if state == b"T" else None


def others_waiting(db: Path) -> bool:
    """Whether another live process waits for ``db``; markers of dead processes are removed."""
    folder = wait_dir(db)
    try:
        names = os.listdir(folder)
    except OSError:
        return False
    me = os.getpid()
    for name in names:
        try:
            pid = int(name.split("-", 1)[0])
        except ValueError:
            continue
        if pid == me:
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                (folder / name).unlink()
            continue
        except PermissionError:
            pass  # alive, someone else's
        return True
    return False


class _Keeper:
    """One database file's idle connection and how many connections are in use."""

    __slots__ = ("active", "conn", "deadline", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn: duckdb.DuckDBPyConnection | None = None
        self.active = 0
        self.deadline = 0.0

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()  # the last connection of the instance: checkpoints the WAL


_keepers: dict[str, _Keeper] = {}
_cond = threading.Condition()
_reaper: threading.Thread | None = None


def acquire(path: Path) -> _Keeper:
    """Count a connection to ``path`` as in use (call before opening it)."""
    with _cond:
        keeper = _keepers.get(str(path))
        if keeper is None:
            keeper = _keepers[str(path)] = _Keeper(path)
        elif keeper.active == 0 and keeper.conn is not None and others_waiting(path):
            keeper.close()  # someone was waiting first: compete for the file like they do
        keeper.active += 1
        return keeper


def opened(keeper: _Keeper, linger_s: float, read_only: bool = False) -> None:
    """After a connection to ``keeper.path`` opened: make sure an idle one keeps the instance
    (a cache hit in DuckDB's instance cache, microseconds; ``read_only`` as that one was)."""
    if linger_s <= 0:
        return
    import duckdb

    with _cond:
        if keeper.conn is None:
            keeper.conn = duckdb.connect(str(keeper.path), read_only=read_only)


def release(keeper: _Keeper, linger_s: float) -> None:
    """A connection to ``keeper.path`` was closed: linger, or close now when lingering is off
    or another process waits."""
    global _reaper
    with _cond:
        keeper.active -= 1
        if keeper.active > 0 or keeper.conn is None:
            return
        if linger_s <= 0 or others_waiting(keeper.path):
            keeper.close()
            return
        keeper.deadline = time.monotonic() + linger_s
        if _reaper is None or not _reaper.is_alive():
            _reaper = threading.Thread(target=_reap, name="specwright-db-linger", daemon=True)
            _reaper.start()
        _cond.notify_all()


def close(path: Path | None = None) -> None:
    """Close the idle connection of ``path`` (every path when None) now, so the file can be
    replaced, attached elsewhere or handed to another program. Connections in use stay."""
    with _cond:
        for key, keeper in list(_keepers.items()):
            if (path is None or key == str(path)) and keeper.active == 0:
                keeper.close()
                del _keepers[key]


def _reap() -> None:
    """Close idle connections whose time is up, or that another process waits for."""
    with _cond:
        while True:
            now = time.monotonic()
            idle = [k for k in _keepers.values() if k.conn is not None and k.active == 0]
            for keeper in idle:
                if now >= keeper.deadline or others_waiting(keeper.path):
                    keeper.close()
            idle = [k for k in idle if k.conn is not None]
            if not idle:
                _cond.wait()
                continue
            nearest = min(k.deadline for k in idle) - now
            _cond.wait(timeout=max(min(POLL_S, nearest), 0.001))


def _forget_in_child() -> None:
    """A forked child must not touch the parent's DuckDB instance: drop it unclosed."""
    global _reaper, _cond
    _keepers.clear()
    _reaper = None
    _cond = threading.Condition()


atexit.register(close)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
