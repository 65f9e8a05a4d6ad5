"""Which log files to read and from where: discovery, per-file offsets, tails of grown files.

Each file's ingest state (size read, byte offset, a hash of its head) is kept in
``usage_ingest_files``. A re-run reads only what was appended since; a file that shrank or whose
head changed was replaced and is read again from the start (dedupe keeps that harmless). Only
complete lines are read: a trailing fragment without a newline waits for the next run unless it is
already a complete JSON value. A small re-read is handed over as bytes (read while planning: one
open per file) rather than as temp-file copies of the tails.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specwright.model import utcnow

if TYPE_CHECKING:
    import duckdb

HEAD_BYTES = 4096
# a new tail up to this size is read whole while planning (the newline search needs its end
# anyway), so an in-memory re-ingest opens each file once
TAIL_KEEP_BYTES = 1 << 20
# a group file of copied ranges (``readable``) is closed once it holds this much, or an eighth of
# all the bytes copied (from 1 MB): DuckDB parses a file on one thread, so 10 MB of new tails
# in one file took ~75 ms to stage where eight files of 1.25 MB took ~42 ms
GROUP_BYTES = 32 << 20
GROUP_MIN_BYTES = 1 << 20
_BOM = b"\xef\xbb\xbf"


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
    mtime: float | None = None


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
    data: bytes | None = None  # the bytes [start, end) when read into memory
    marker: str | None = None  # the line before the range in a shared copy (``readable``)


def insert_rows(conn: duckdb.DuckDBPyConnection, head: str, rows: list[Any]) -> None:
    """``head`` (``INSERT INTO t (cols)``) with ``rows``, passed as one list per column and
    unnested: one short statement, where multi-row VALUES with a parameter per value costs
    milliseconds to bind (and executemany milliseconds per row)."""
    if not rows:
        return
    columns = [list(col) for col in zip(*rows, strict=True)]
    conn.execute(f"{head} SELECT {', '.join('unnest(?)' for _ in columns)}", columns)


def glob_literal(path: str) -> str:
    """``path`` for DuckDB's readers, which read a path as a glob: its ``*``, ``?`` and ``[``
    match only themselves (a log under ``h[1]/`` read ``h1/``'s copy of it, or nothing)."""
    return re.sub(r"([*?\[])", r"[\1]", path)


def max_object_size(ready: list[Planned], limit: int) -> int:
    """DuckDB's ``maximum_object_size`` for reading ``ready``: no line is longer than the range
    it is in, and the reader sets aside a buffer of this size per file, so a limit far above the
    longest range makes many small tails slow to read."""
    longest = max((p.end - p.start for p in ready), default=0)
    return max(1 << 20, min(limit, longest + 1))


def _digest(head: bytes) -> str:
    return hashlib.blake2b(head[:HEAD_BYTES], digest_size=12).hexdigest()


def jsonl_files(roots: Iterable[Path]) -> list[str]:
    """Every ``*.jsonl`` under ``roots``, recursively (not into linked folders, like
    ``os.walk``), sorted by path (ccusage's order). Paths as strings: making a ``Path`` of each
    of 3,000 session files cost ~15 ms of a ~100 ms run that found nothing new."""
    found: list[str] = []
    folders: list[str] = []
    for root in roots:
        if root.is_file():
            found.append(str(root))
        else:
            folders.append(str(root))
    while folders:
        try:
            entries = os.scandir(folders.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                if entry.is_dir():
                    if not entry.is_symlink():
                        folders.append(entry.path)
                elif entry.name.endswith(".jsonl") and entry.is_file():
                    found.append(entry.path)  # a regular file (a FIFO would block the read)
    return sorted(set(found))


def load_states(conn: duckdb.DuckDBPyConnection, source: str) -> dict[str, FileState]:
    """The ingest state of every file of ``source`` seen before."""
    rows = conn.execute(
        'SELECT path, size, "offset", head_hash, lines, malformed, state, mtime '
        "FROM usage_ingest_files WHERE source = ?",
        [source],
    ).fetchall()
    return {
        r[0]: FileState(
            r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]) if r[6] else None, r[7]
        )
        for r in rows
    }


def _complete_end(fd: int, start: int, size: int) -> int:
    """The end of the last complete line in [start, size): after its newline, or ``size`` when
    the trailing fragment is itself a complete JSON value."""
    if size <= start:
        return start
    if os.pread(fd, 1, size - 1) == b"\n":
        return size
    # find the last newline, reading backwards in blocks
    pos = size
    block = 1 << 16
    while pos > start:
        lo = max(start, pos - block)
        chunk = os.pread(fd, pos - lo, lo)
        idx = chunk.rfind(b"\n")
        if idx >= 0:
            last_nl = lo + idx + 1
            break
        pos = lo
    else:
        last_nl = start
    return _fragment_end(os.pread(fd, size - last_nl, last_nl), last_nl)


def _fragment_end(fragment: bytes, at: int) -> int:
    """Where a read ending in ``fragment`` (the bytes after the last newline, at offset ``at``)
    stops: after the fragment when it is a complete JSON value, else before it."""
    try:
        json.loads(fragment)
    except ValueError:
        return at
    return at + len(fragment)


def _tail_end(data: bytes, start: int) -> int:
    """``_complete_end`` for a range already read: ``data`` holds the bytes from ``start``."""
    if not data or data.endswith(b"\n"):
        return start + len(data)
    cut = data.rfind(b"\n") + 1
    return _fragment_end(data[cut:], start + cut)


def plan(
    files: Sequence[str | Path], states: dict[str, FileState], *, keep_bytes: int = 0
) -> list[Planned]:
    """The files (and byte ranges) to read now, given what was read before. Each file is opened
    once; a new tail of at most ``TAIL_KEEP_BYTES`` is read whole and kept in ``data`` while
    ``keep_bytes`` in all allow it."""
    out: list[Planned] = []
    budget = keep_bytes
    for path in files:
        key = str(path)
        try:
            st = os.stat(key)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue  # a FIFO or device named *.jsonl: opening it could block forever
        prev = states.get(key)
        if (
            prev is not None
            and st.st_size == prev.size
            and prev.offset == prev.size
            and st.st_mtime == prev.mtime
        ):
            continue  # nothing new (the common case: no read at all)
        try:
            fd = os.open(key, os.O_RDONLY)
        except OSError:
            continue
        try:
            planned = _plan_file(fd, key, st, prev, budget)
        finally:
            os.close(fd)
        if planned is None:
            continue
        if planned.data is not None:
            budget -= len(planned.data)
        out.append(planned)
    return out


def _plan_file(
    fd: int, key: str, st: os.stat_result, prev: FileState | None, budget: int
) -> Planned | None:
    head = os.pread(fd, HEAD_BYTES, 0)
    digest = _digest(head)
    restart = True
    start = 0
    if prev is not None:
        seen = digest if prev.offset >= len(head) else _digest(head[: prev.offset])
        if prev.offset > 0 and seen == prev.head_hash and st.st_size >= prev.offset:
            restart, start = False, prev.offset
    size = st.st_size
    data: bytes | None = None
    if budget > 0 and size - start <= min(budget, TAIL_KEEP_BYTES):
        data = head[start:size] if size <= len(head) else os.pread(fd, size - start, start)
        end = _tail_end(data, start)
        data = data[: end - start]
    else:
        end = _complete_end(fd, start, size)
    if end < len(head):  # the head hash covers only the bytes read so far
        digest = _digest(head[:end]) if end > 0 else ""
    elif end == 0:
        digest = ""
    if end <= start and not restart:
        # nothing to read; a new size (a cut line) or mtime (touched, same head) is remembered
        if prev is not None and (size != prev.size or st.st_mtime != prev.mtime):
            return Planned(key, start, start, size, st.st_mtime, digest, False, "", prev)
        return None
    return Planned(key, start, end, size, st.st_mtime, digest, restart, "", prev, data)


@contextmanager
def readable(
    planned: list[Planned], *, in_memory: int = 0, group_below: int = 0
) -> Iterator[list[Planned]]:
    """Give each planned range something to read from. When the ranges hold ``in_memory`` bytes
    or fewer in all, their bytes (``data``); else a path DuckDB can read whole: the file itself
    when the range is the complete file, else a temporary copy of just that range, removed
    after. Either way ``read_path`` is set on every range with bytes to read.

    With ``group_below``, the copies are shared: every range that is not a whole file of at
    least ``group_below`` bytes is copied into a group file (``GROUP_BYTES``), each range
    after a marker line (``Planned.marker``) that tells which lines are whose. DuckDB's reader
    pays a fixed part per file (~0.3 ms: a buffer, a task, a batch to merge back into line
    order): 3,000 small session files cost it ~1.4 s where one copy of them in a few groups
    costs ~0.15 s to write and ~0.5 s to read. Files are read in the order planned."""
    if in_memory > 0 and sum(max(p.end - p.start, 0) for p in planned) <= in_memory:
        for p in planned:
            if p.end > p.start:
                if p.data is None:
                    p.data = _read_range(p)
                p.read_path = p.path
        yield planned
        return
    tmp: str | None = None
    group: _Group | None = None
    key = f"specwright-range-{secrets.token_hex(8)}"
    copies = [
        p.end - p.start
        for p in planned
        if p.end > p.start and not (p.start == 0 and p.end == p.size and p.size >= group_below)
    ]
    if group_below and not _worth_grouping(len(copies), sum(copies), planned):
        group_below = 0
    full = min(GROUP_BYTES, max(GROUP_MIN_BYTES, sum(copies) // 8))
    # whole files are copied while a quarter of the free temp space lasts, then read in place
    spare = shutil.disk_usage(tempfile.gettempdir()).free // 4 if group_below else 0
    try:
        for i, p in enumerate(planned):
            p.data = None
            if p.end <= p.start:
                continue
            whole = p.start == 0 and p.end == p.size
            if whole and group_below and p.size < group_below:
                spare -= p.size
            if whole and (p.size >= group_below or spare < 0):
                p.read_path = p.path
                if group is not None:  # a later range starts a new group: the order planned
                    group.close()
                    group = None
                continue
            if tmp is None:
                tmp = tempfile.mkdtemp(prefix="specwright-ingest-")
            if not group_below:
                target = os.path.join(tmp, f"{i:06d}.jsonl")
                with open(target, "wb") as dst:
                    _copy_range(p, dst.fileno())
                p.read_path = target
                continue
            if group is None:
                group = _Group(os.path.join(tmp, f"{i:06d}.jsonl"))
            p.marker = f'{{"{key}":{i}}}'
            os.write(group.fd, p.marker.encode() + b"\n")
            group.size += _copy_range(p, group.fd)
            p.read_path = group.path
            if group.size >= full:
                group.close()
                group = None
        if group is not None:
            group.close()
            group = None
        yield planned
    finally:
        if group is not None:
            group.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _worth_grouping(ranges: int, copied: int, planned: list[Planned]) -> bool:
    """Whether reading ``ranges`` ranges (``copied`` bytes) from group files beats reading them
    one file each: it saves ~0.3 ms a range and costs ~0.7 ms a MB copied, plus ~0.3 ms a MB
    read in all for placing each line (``claude._PLACE``). 40 small subagent files beside 80
    big ones are not worth it; 3,000 small files, or 80 new tails, are."""
    total = sum(max(p.end - p.start, 0) for p in planned)
    return ranges * 0.3 > (0.7 * copied + 0.3 * total) / (1 << 20)


class _Group:
    """A group file being written (``readable``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.size = 0

    def close(self) -> None:
        os.close(self.fd)


def _copy_range(p: Planned, dst: int) -> int:
    """Append the bytes [start, end) of ``p`` to ``dst`` as DuckDB's reader would see them in a
    file of their own: without a UTF-8 BOM at the start, ending with a newline. Returns the
    bytes written (kernel to kernel with ``sendfile`` where it can)."""
    fd = os.open(p.path, os.O_RDONLY)
    try:
        start = p.start
        if os.pread(fd, len(_BOM), start) == _BOM:
            start += len(_BOM)
        written = 0
        while start + written < p.end:
            at = start + written
            try:
                n = os.sendfile(dst, fd, at, p.end - at)
            except (OSError, AttributeError):  # not to a file here (macOS): copy in blocks
                n = os.write(dst, os.pread(fd, min(p.end - at, 1 << 20), at))
            if n <= 0:
                break
            written += n
        if written and os.pread(fd, 1, p.end - 1) != b"\n":
            written += os.write(dst, b"\n")
        return written
    finally:
        os.close(fd)


def _read_range(p: Planned) -> bytes:
    fd = os.open(p.path, os.O_RDONLY)
    try:
        return os.pread(fd, p.end - p.start, p.start)
    finally:
        os.close(fd)


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
    # files seen before are updated in place, new ones inserted (an upsert costs ~1.5-2x: 45-63
    # vs 28-43 ms for 3,000 new files)
    known = [row[1:-1] for p, row in zip(planned, rows, strict=True) if p.prev is not None]
    if known:
        columns = [list(col) for col in zip(*known, strict=True)]
        conn.execute(
            'UPDATE usage_ingest_files f SET size = u.size, "offset" = u.upto, mtime = u.mtime, '
            "head_hash = u.head_hash, lines = u.lines, malformed = u.malformed, state = u.state, "
            "updated_at = ? FROM (SELECT unnest(?) AS path, unnest(?) AS size, unnest(?) AS upto, "
            "unnest(?) AS mtime, unnest(?) AS head_hash, unnest(?) AS lines, "
            "unnest(?) AS malformed, unnest(?::VARCHAR[]) AS state) u "
            "WHERE f.source = ? AND f.path = u.path",
            [now, *columns, source],
        )
    insert_rows(  # no state row for these (``load_states`` read them all in this transaction)
        conn,
        'INSERT INTO usage_ingest_files (source, path, size, "offset", mtime, '
        "head_hash, lines, malformed, state, updated_at)",
        [row for p, row in zip(planned, rows, strict=True) if p.prev is None],
    )
