"""Usage export: the usage tables as Parquet files in a folder, with a manifest.json.

An export is a directory with ``usage_records.parquet``, ``usage_snapshots.parquet`` and
``prices.parquet`` plus ``manifest.json`` (each file's size and checksum). It is written into a
hidden sibling and renamed into place when whole; ``exchange`` merges exports.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from specwright.errors import SpecwrightError

if TYPE_CHECKING:
    from specwright.store import Store

TABLES = ("usage_records", "usage_snapshots", "prices")
FORMAT = "specwright-usage-export"
VERSION = 1


def export(store: Store, target: Path) -> dict[str, int]:
    """Write the usage tables under directory ``target``; returns rows per table. The files are
    written into a hidden sibling (``PARTIAL``) and renamed into place when complete, so an
    export cut short (killed, a full disk) leaves ``target`` as it was: an earlier export whole,
    never its files mixed with the new one's."""
    _restore(target)
    if target.exists() and not target.is_dir():
        raise SpecwrightError(f"{target}: exists and is not a directory; expected a directory")
    if target.is_dir() and any(target.iterdir()) and not _is_export(target):
        # its manifest.json or a prices.parquet would be written over: another tool's files
        raise SpecwrightError(
            f"{target}: a directory holding other files, not an earlier usage export; "
            "expected a new or empty directory"
        )
    counts: dict[str, int] = {}
    files: dict[str, dict[str, object]] = {}
    with store.connect() as conn:  # first: a database that cannot be read leaves no empty folder
        partial = _sibling(target, PARTIAL)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial.mkdir()
        except OSError as exc:  # "File exists" said nothing of the parent that is a file
            file = isinstance(exc, (FileExistsError, NotADirectoryError))
            why = "a parent is a file" if file else exc.strerror
            raise SpecwrightError(
                f"{target}: cannot create the export directory ({why}); expected a folder path"
            ) from None
        try:
            for table in TABLES:
                path = partial / f"{table}.parquet"
                conn.execute(f"COPY (SELECT * FROM {table}) TO '{_quote(path)}' (FORMAT parquet)")
                counts[table] = int(conn.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
                files[path.name] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
            (partial / "manifest.json").write_text(
                json.dumps(
                    {
                        "format": FORMAT,
                        "version": VERSION,
                        "host": socket.gethostname(),
                        "exported_at": datetime.now(UTC).isoformat(),  # read on another machine
                        "rows": counts,
                        "files": files,  # a file changed since (damaged, cut short) is refused
                    },
                    indent=2,
                ),
                encoding="utf-8",
            )
            _replace(partial, target)
        except BaseException as exc:
            shutil.rmtree(partial, ignore_errors=True)
            if isinstance(exc, OSError):  # a full disk, a folder made read-only meanwhile
                raise SpecwrightError(
                    f"{target}: cannot write the export: {exc.strerror or exc}"
                ) from None
            raise
    _remove_stale(target)
    return counts


# the infixes of an export's hidden siblings: the folder it is written into before it is renamed
# into place, and the earlier export set aside meanwhile; then host, pid and 8 hex digits
PARTIAL = ".partial-"
OLD = ".old-"


def _sibling(target: Path, infix: str) -> Path:
    """A new hidden sibling of ``target`` of this process (``infix``: ``PARTIAL`` or ``OLD``)."""
    name = f".{target.name}{infix}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return target.parent / name


def _dead(target: Path, infix: str) -> list[Path]:
    """``target``'s hidden siblings of ``infix`` that an export killed on this machine left (the
    pid in their name is of a process that is gone). Another machine's, or one of a process
    still running, is not one."""
    prefix = f".{target.name}{infix}{socket.gethostname()}-"
    try:
        entries = sorted(target.parent.glob(glob.escape(prefix) + "*"))
    except OSError:
        return []
    dead = []
    for entry in entries:
        named = re.fullmatch(r"(\d+)-[0-9a-f]{8}", entry.name[len(prefix) :])
        if named is None:  # a host whose name starts as this one's ("a" and "a-2")
            continue
        try:
            os.kill(int(named[1]), 0)
        except ProcessLookupError:
            dead.append(entry)
        except OSError:  # another user's process: running
            continue
    return dead


def _remove_stale(target: Path) -> None:
    """Remove what exports to ``target`` killed on this machine left: each a whole export's
    size, synced wherever the folder is. What else an earlier export set aside held (a sync
    tool's marker, notes) moves into ``target`` first."""
    for entry in _dead(target, PARTIAL):
        shutil.rmtree(entry, ignore_errors=True)
    for entry in _dead(target, OLD):
        try:
            _carry_over(entry, target)
        except OSError:  # kept: what it holds is not lost
            continue
        shutil.rmtree(entry, ignore_errors=True)


def _restore(target: Path) -> None:
    """Put back the earlier export that an export killed between its two renames (in
    ``_replace``) set aside, leaving no ``target``: the last whole export."""
    if target.exists() or target.is_symlink():
        return
    last = _last_whole(_dead(target, OLD))
    if last is not None:
        try:
            last.rename(target)
        except OSError:  # left where it is: the export goes on, merge names it
            return


def set_aside(target: Path) -> Path | None:
    """The last whole export to ``target``, missing, that an export killed while it replaced it
    set aside (on any machine), if there is one."""
    if target.exists():
        return None
    try:
        found = list(target.parent.glob(glob.escape(f".{target.name}{OLD}") + "*"))
    except OSError:
        return None
    return _last_whole(found)


def _last_whole(folders: list[Path]) -> Path | None:
    """The whole export of ``folders`` exported last, if any."""
    whole = [e for e in folders if _is_whole(e)]
    return max(whole, key=lambda e: str(_own_manifest(e).get("exported_at")), default=None)


def _replace(partial: Path, target: Path) -> None:
    """Rename the finished export ``partial`` to ``target``, an earlier export there set aside
    first and removed after (no moment shows a mix of the two)."""
    if not target.exists():
        partial.rename(target)
        return
    partial.chmod(stat.S_IMODE(target.stat().st_mode))  # as it was (a shared folder's, say)
    aside = _sibling(target, OLD)  # named as a partial: a kill leaves it to the next export
    target.rename(aside)
    try:
        partial.rename(target)
    except BaseException:
        aside.rename(target)
        raise
    _carry_over(aside, target)
    shutil.rmtree(aside, ignore_errors=True)


def _carry_over(aside: Path, target: Path) -> None:
    """Move what else the earlier export ``aside`` held (a sync tool's marker, notes) into
    ``target``, unless it has its own of that name."""
    ours = {f"{t}.parquet" for t in TABLES} | {"manifest.json"}
    for entry in aside.iterdir():
        if entry.name not in ours and not (target / entry.name).exists():
            entry.rename(target / entry.name)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _is_export(directory: Path) -> bool:
    """Whether ``directory`` holds an export's manifest.json (one to replace)."""
    return bool(_own_manifest(directory))


def _is_whole(directory: Path) -> bool:
    """Whether ``directory`` is a whole export: its manifest.json and every file."""
    return _is_export(directory) and all((directory / f"{t}.parquet").is_file() for t in TABLES)


def _own_manifest(directory: Path) -> dict[str, object]:
    """``directory``'s manifest.json if it is an export's, else {}."""
    try:
        data = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("format") == FORMAT else {}


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")
