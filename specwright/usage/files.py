"""Which log files to read and from where: discovery, per-file offsets, tails of grown files.

Each file's ingest state (size read, byte offset, a hash of its head) is kept in
``usage_ingest_files``. A re-run reads only what was appended since; a file that shrank or whose
head changed was replaced and is read again from the start (dedupe keeps that harmless). Only
complete lines are read: a trailing fragment without a newline waits for the next run unless it is
already a complete JSON value.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specwright.model import utcnow

if TYPE_CHECKING:
    import duckdb

HEAD_BYTES = 4096


@dataclass
class FileState:
    """What was read of one log file last time."""

    path: str
    size: int = 0
    offset: int = 0
    head_hash: str | None = None
    lines: int = 0
    malformed: int = 0
    state: dict[str, Any] | None = None


@dataclass
class Planned:
    """One file to read now: the bytes [start, end) of ``path``, via ``read_path``."""

    path: str
    start: int
    end: int
    size: int
    mtime: float
    head_hash: str
    restart: bool
    read_path: str = ""
    prev: FileState | None = None


def insert_rows(conn: duckdb.DuckDBPyConnection, head: str, rows: list[Any]) -> None:
    """``head`` (``INSERT INTO t (cols)``) with ``rows``, passed as one list per column and
    unnested: one short statement, where multi-row VALUES with a parameter per value costs
    milliseconds to bind (and executemany milliseconds per row)."""
    if not rows:
        return
    columns = [list(col) for col in zip(*rows, strict=True)]
    conn.execute(f"{head} SELECT {', '.join('unnest(?)' for _ in columns)}", columns)


def max_object_size(ready: list[Planned], limit: int) -> int:
    """DuckDB's ``maximum_object_size`` for reading ``ready``: no line is longer than the range
    it is in, and the reader sets aside a buffer of this size per file, so a limit far above the
    longest range makes many small tails slow to read."""
    longest = max((p.end - p.start for p in ready), default=0)
    return max(1 << 20, min(limit, longest + 1))


def _head_hash(path: Path, length: int) -> str:
    with path.open("rb") as fh:
        return hashlib.blake2b(fh.read(min(length, HEAD_BYTES)), digest_size=12).hexdigest()


def jsonl_files(roots: Iterable[Path]) -> list[Path]:
    """Every ``*.jsonl`` under ``roots``, recursively, sorted by path (ccusage's order)."""
    found: list[Path] = []
    for root in roots:
        if root.is_file():
            found.append(root)
            continue
        for dirpath, _dirs, names in os.walk(root):
            found.extend(Path(dirpath) / n for n in names if n.endswith(".jsonl"))
    return sorted(set(found), key=str)


def load_states(conn: duckdb.DuckDBPyConnection, source: str) -> dict[str, FileState]:
    """The ingest state of every file of ``source`` seen before."""
    rows = conn.execute(
        'SELECT path, size, "offset", head_hash, lines, malformed, state '
        "FROM usage_ingest_files WHERE source = ?",
        [source],
    ).fetchall()
    return {
        r[0]: FileState(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]) if r[6] else None)
        for r in rows
    }


def _complete_end(path: Path, start: int, size: int) -> int:
    """The end of the last complete line in [start, size): after its newline, or ``size`` when
    the trailing fragment is itself a complete JSON value."""
    if size <= start:
        return start
    with path.open("rb") as fh:
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return size
        # find the last newline, reading backwards in blocks
        pos = size
        block = 1 << 16
        while pos > start:
            lo = max(start, pos - block)
            fh.seek(lo)
            chunk = fh.read(pos - lo)
            idx = chunk.rfind(b"\n")
            if idx >= 0:
                last_nl = lo + idx + 1
                break
            pos = lo
        else:
            last_nl = start
        fh.seek(last_nl)
        fragment = fh.read(size - last_nl)
    try:
        json.loads(fragment)
    except ValueError:
        return last_nl
    return size


def plan(files: list[Path], states: dict[str, FileState]) -> list[Planned]:
    """The files (and byte ranges) to read now, given what was read before."""
    out: list[Planned] = []
    for path in files:
        try:
            st = path.stat()
        except OSError:
            continue
        key = str(path)
        prev = states.get(key)
        restart = True
        start = 0
        if prev is not None:
            if st.st_size == prev.size and prev.offset == prev.size:
                continue  # nothing new (the common case: no read at all)
            same_head = prev.offset > 0 and _head_hash(path, prev.offset) == prev.head_hash
            if same_head and st.st_size >= prev.offset:
                restart, start = False, prev.offset
        end = _complete_end(path, start, st.st_size)
        head = _head_hash(path, max(end, 1)) if end > 0 else ""
        if end <= start and not restart:
            if prev is not None and st.st_size != prev.size:
                out.append(
                    Planned(key, start, start, st.st_size, st.st_mtime, head, False, "", prev)
                )
            continue
        out.append(Planned(key, start, end, st.st_size, st.st_mtime, head, restart, "", prev))
    return out


@contextmanager
def readable(planned: list[Planned]) -> Iterator[list[Planned]]:
    """Give each planned range a path DuckDB can read whole: the file itself when the range is
    the complete file, else a temporary copy of just that range. Temp copies are removed after."""
    tmp: str | None = None
    try:
        for i, p in enumerate(planned):
            if p.end <= p.start:
                continue
            if p.start == 0 and p.end == p.size:
                p.read_path = p.path
                continue
            if tmp is None:
                tmp = tempfile.mkdtemp(prefix="specwright-ingest-")
            target = Path(tmp) / f"{i:06d}.jsonl"
            with open(p.path, "rb") as src, target.open("wb") as dst:
                src.seek(p.start)
                remaining = p.end - p.start
                while remaining > 0:
                    chunk = src.read(min(remaining, 1 << 20))
                    if not chunk:
                        break
                    dst.write(chunk)
                    remaining -= len(chunk)
                if p.end == p.size and chunk and not chunk.endswith(b"\n"):
                    dst.write(b"\n")
            p.read_path = str(target)
        yield planned
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def save_states(
    conn: duckdb.DuckDBPyConnection,
    source: str,
    planned: list[Planned],
    counts: dict[str, tuple[int, int]],
    states: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Record how far each planned file was read; ``counts`` maps path -> (lines, malformed)."""
    if not planned:
        return
    now = utcnow()
    rows = []
    for p in planned:
        lines, bad = counts.get(p.path, (0, 0))
        prev = p.prev if not p.restart else None
        rows.append(
            (
                source,
                p.path,
                p.size,
                p.end,
                p.mtime,
                p.head_hash,
                lines + (prev.lines if prev else 0),
                bad + (prev.malformed if prev else 0),
                json.dumps((states or {}).get(p.path))
                if states and p.path in states
                else (json.dumps(prev.state) if prev and prev.state else None),
                now,
            )
        )
    insert_rows(
        conn,
        'INSERT OR REPLACE INTO usage_ingest_files (source, path, size, "offset", mtime, '
        "head_hash, lines, malformed, state, updated_at)",
        rows,
    )
