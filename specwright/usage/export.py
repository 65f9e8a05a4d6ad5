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
        prefix = f".{target.name}{PARTIAL}{socket.gethostname()}-"
        partial = target.parent / f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}"
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
    _remove_stale(target.parent, prefix)
    return counts


# the infix of the hidden sibling an export is written into before it is renamed into place
PARTIAL = ".partial-"


def _remove_stale(folder: Path, prefix: str) -> None:
    """Remove what exports of ``folder``'s export killed on this machine left (``prefix``, then
    the pid of a process that is gone): each a whole export's size, synced wherever the folder
    is. Another machine's, or one of a process still running, is left alone."""
    try:
        entries = list(folder.glob(glob.escape(prefix) + "*"))
    except OSError:
        return
    for entry in entries:
        named = re.fullmatch(r"(\d+)-[0-9a-f]{8}", entry.name[len(prefix) :])
        if named is None:  # a host whose name starts as this one's ("a" and "a-2")
            continue
        try:
            os.kill(int(named[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except OSError:  # another user's process: running
            continue


def _replace(partial: Path, target: Path) -> None:
    """Rename the finished export ``partial`` to ``target``, an earlier export there set aside
    first and removed after (no moment shows a mix of the two)."""
    if not target.exists():
        partial.rename(target)
        return
    partial.chmod(stat.S_IMODE(target.stat().st_mode))  # as it was (a shared folder's, say)
    aside = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:12]}"
    target.rename(aside)
    try:
        partial.rename(target)
    except BaseException:
        aside.rename(target)
        raise
    ours = {f"{t}.parquet" for t in TABLES} | {"manifest.json"}
    for entry in aside.iterdir():  # what else the folder held (a sync tool's marker, notes)
        if entry.name not in ours:
            entry.rename(target / entry.name)
    shutil.rmtree(aside, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _is_export(directory: Path) -> bool:
    """Whether ``directory`` holds an export's manifest.json (one to replace)."""
    return bool(_own_manifest(directory))


def _own_manifest(directory: Path) -> dict[str, object]:
    """``directory``'s manifest.json if it is an export's, else {}."""
    try:
        data = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("format") == FORMAT else {}


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")
