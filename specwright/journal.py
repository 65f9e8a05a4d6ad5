"""Append-only JSONL journals: the durable record the database is an index of.

Every write to the store is first appended here as an *op* (one JSON object a line), flushed to
the OS before the database sees it. Execution-scoped ops (the execution row, its events) go to
``<journal_dir>/executions/<execution_id>.jsonl``; everything else (projects, specs, chunks,
runs, reviews...) to ``<journal_dir>/catalog.jsonl``. ``specwright db rebuild`` replays every
journal, in time order, into a fresh database. Which ``<journal_dir>`` a database owns is recorded
in the database (``Store.journal``): ``journal/`` beside ``specwright.duckdb``, ``<stem>.journal/``
beside another database file, so databases in one folder never replay each other's ops.

An op is ``{"t": <ns>, "op": "insert"|"upsert"|"update"|"sql", "table": ..., ...}``:
insert/upsert carry ``row``; update carries ``key`` (column -> value) and ``set``; sql carries
``sql`` and ``params`` (used for multi-table deletes). ``{"t": <ns>, "op": "abort", "ops":
[<t>, ...]}`` says the database refused the write of those ops (journaled first, then rolled
back): a replay skips them; when even that mark cannot be written (a full disk), the refused
lines are overwritten with spaces in place, which a read skips. Values are JSON-normal: timestamps are ISO
strings, JSON columns are strings, so the live path and the replay path write identical rows.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specwright.errors import StoreError

if TYPE_CHECKING:
    import duckdb

    from specwright.store import Store

log = logging.getLogger(__name__)

CATALOG = "catalog"
_counter_lock = threading.Lock()
_last_t = 0


def op_time() -> int:
    """A strictly increasing nanosecond timestamp within this process (orders replay)."""
    global _last_t
    with _counter_lock:
        t = time.time_ns()
        _last_t = t if t > _last_t else _last_t + 1
        return _last_t


def normal(value: Any) -> Any:
    """Turn a Python value into the JSON-normal form stored in journals and the database."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, tuple):
        return [normal(v) for v in value]
    return value


_PLAIN = frozenset({str, int, float, bool, type(None)})


def normal_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row's values JSON-normal: lists, tuples and dicts (JSON columns) as JSON text."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if type(value) in _PLAIN:  # the common case (hot path of event ingest): as is
            out[key] = value
        elif isinstance(value, list | tuple | dict):
            out[key] = dumps(normal(value) if isinstance(value, tuple) else value)
        else:
            out[key] = normal(value)
    return out


# one encoder for every call: json.dumps with options builds a new JSONEncoder each time
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)


def dumps(obj: Any) -> str:
    """Compact, deterministic JSON for journal lines and JSON columns."""
    return _ENCODER.encode(obj)


@dataclass
class ReadResult:
    ops: list[dict[str, Any]]
    skipped: int
    lines: list[int] | None = None  # the line number of each op, for messages


# Every op line starts so (``dumps`` of a dict whose first key is ``t``): where an op glued to
# the torn line before it begins.
_OP_START = b'{"t":'
_OP_KINDS = frozenset({"insert", "upsert", "update", "sql", "abort"})


def _unwritable(path: Path, exc: OSError) -> StoreError:
    return StoreError(
        f"{path}: cannot write the journal ({exc.strerror or exc}); nothing was recorded"
    )


class JournalWriter:
    """Keeps one journal file open; each ``append`` is a single O_APPEND ``write``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fd: int | None = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise _unwritable(path, exc) from None
        # A process killed mid-write leaves a last line without its newline: the next op would
        # be glued to it and lost with it on replay. Start on a line of its own.
        self._lead = b"\n" if self._torn_end() else b""
        self.last: tuple[int, bytes] | None = None  # where the last batch went, and its bytes

    def _torn_end(self) -> bool:
        assert self._fd is not None
        try:
            size = os.fstat(self._fd).st_size
            return size > 0 and os.pread(self._fd, 1, size - 1) != b"\n"
        except OSError:  # not seekable (a pipe, a device): nothing to mend
            return False

    def append(self, ops: list[dict[str, Any]]) -> int:
        """Write ``ops`` as lines with one ``write``; returns the bytes written."""
        if self._fd is None:
            raise ValueError(f"{self.path}: journal writer is closed")
        data = self._lead + "".join(dumps(op) + "\n" for op in ops).encode("utf-8")
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:  # a full disk: the caller must not go on as if it were saved
            self._take_back(data[: len(data) - len(view)])
            raise _unwritable(self.path, exc) from None
        self._lead = b""
        with contextlib.suppress(OSError):  # O_APPEND: the offset is now the batch's end
            self.last = (os.lseek(self._fd, 0, os.SEEK_CUR) - len(data), data)
        return len(data)

    def _take_back(self, part: bytes) -> None:
        """Remove ``part``, the start of a batch a failed write left (a full disk takes what
        fits), from the end of the file: its ops were not recorded, a rebuild must not replay
        them. Left when another process has appended since (the next batch starts on a new
        line, so a torn last op is skipped and glues nothing)."""
        assert self._fd is not None
        if not part:
            return
        try:
            size = os.fstat(self._fd).st_size
            if size >= len(part) and os.pread(self._fd, len(part), size - len(part)) == part:
                os.ftruncate(self._fd, size - len(part))
                return
        except OSError:
            pass
        if not part.endswith(b"\n"):
            self._lead = b"\n"

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Journal:
    """Writes and reads the JSONL journals under one directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, name: str) -> Path:
        if name == CATALOG:
            return self.root / "catalog.jsonl"
        return self.root / "executions" / f"{name}.jsonl"

    def append(self, name: str, ops: list[dict[str, Any]]) -> tuple[int, bytes] | None:
        """Append ops to journal ``name`` with one ``write`` (O_APPEND: safe across processes);
        returns where they went and their bytes (for ``abort``), None when unknown."""
        if not ops:
            return None
        writer = self.writer(name)
        try:
            writer.append(ops)
        finally:
            writer.close()
        return writer.last

    def abort(
        self, name: str, ops: list[dict[str, Any]], written: tuple[int, bytes] | None = None
    ) -> bool:
        """Mark ``ops``, appended to journal ``name`` (at ``written``, as ``append`` returned)
        and then refused by the database, as not applied (``replay_order`` skips them). When
        the mark cannot be appended (the full disk that made the database refuse them), their
        lines are blanked where they are, which takes no new space. Never raises: the caller
        reports the database's error; False (logged) when neither could be done."""
        try:
            self.append(name, [{"t": op_time(), "op": "abort", "ops": [op["t"] for op in ops]}])
            return True
        except StoreError as exc:
            why: Exception = exc
        path = self.path_for(name)
        if written is not None:
            start, data = written
            try:
                fd = os.open(path, os.O_RDWR)
                try:
                    if os.pread(fd, len(data), start) == data:
                        os.pwrite(fd, re.sub(rb"[^\n]", b" ", data), start)
                        return True
                finally:
                    os.close(fd)
            except OSError as exc:
                why = exc
        log.error("%s: could not mark %d refused op(s) aborted: %s", path, len(ops), why)
        return False

    def writer(self, name: str) -> JournalWriter:
        """An open append handle on journal ``name`` (for a stream of events)."""
        path = self.path_for(name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _unwritable(path, exc) from None
        return JournalWriter(path)

    def files(self) -> list[Path]:
        """Every journal file, the catalog first."""
        out = []
        catalog = self.path_for(CATALOG)
        if catalog.exists():
            out.append(catalog)
        exec_dir = self.root / "executions"
        if exec_dir.is_dir():
            out.extend(sorted(exec_dir.glob("*.jsonl")))
        return out

    @staticmethod
    def read(path: Path) -> ReadResult:
        """Read one journal; a torn or garbled line is skipped with a warning, never fatal. An
        op written right after a torn line (on the same line, by an older Specwright) is kept."""
        ops: list[dict[str, Any]] = []
        lines: list[int] = []
        skipped = 0
        with open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                op = _parse(raw)
                if op is None:
                    glued = raw.rfind(_OP_START)
                    op = _parse(raw[glued:]) if glued > 0 else None
                    skipped += 1
                    torn = not raw.endswith(b"\n")
                    log.warning(
                        "%s:%d: skipped %s journal line%s",
                        path,
                        lineno,
                        "a torn (incomplete) last" if torn else "an unreadable",
                        " (kept the op written after it)" if op is not None else "",
                    )
                    if op is None:
                        continue
                ops.append(op)
                lines.append(lineno)
        return ReadResult(ops, skipped, lines)

    def replay_order(self) -> Iterator[dict[str, Any]]:
        """All ops of all journals, ordered by their time stamp (stable within a file), less
        the aborted ones."""
        for op, _ in self.replay_located():
            yield op

    def replay_located(self) -> Iterator[tuple[dict[str, Any], str]]:
        """``replay_order`` with where each op is (``file:line``, for messages)."""
        tagged: list[tuple[int, int, int, dict[str, Any]]] = []
        files = self.files()
        lines: list[list[int]] = []
        for file_no, path in enumerate(files):
            read = self.read(path)
            lines.append(read.lines or [])
            aborted = {t for op in read.ops if op["op"] == "abort" for t in _list(op.get("ops"))}
            for i, op in enumerate(read.ops):
                if op["op"] != "abort" and op.get("t") not in aborted:
                    tagged.append((op["t"], file_no, i, op))
        tagged.sort(key=lambda x: (x[0], x[1], x[2]))
        for _, file_no, i, op in tagged:
            yield op, f"{files[file_no]}:{lines[file_no][i]}"


def one_project_per_root(
    located: list[tuple[dict[str, Any], str]],
) -> list[tuple[dict[str, Any], str]]:
    """Journal ops with a project recorded twice for one root (a database deleted, then used
    before `db rebuild`: its first command recorded the project anew) made one: the later
    project's row is left out and its id, wherever an op names it, becomes the first one's,
    so the specs made after the loss are found in their project again."""
    first: dict[Any, str] = {}
    alias: dict[str, str] = {}
    for op, _ in located:
        if op["op"] == "insert" and op.get("table") == "projects":
            pid, root = str(op["row"].get("id")), op["row"].get("root")
            if first.setdefault(root, pid) != pid:
                alias[pid] = first[root]
    if not alias:
        return located

    def swap(value: Any) -> Any:
        return alias.get(value, value) if isinstance(value, str) else value

    out = []
    for op, where in located:
        if op["op"] == "insert" and op.get("table") == "projects" and op["row"]["id"] in alias:
            continue
        op = dict(op)
        for part in ("row", "key", "set"):
            if isinstance(op.get(part), dict):
                op[part] = {k: swap(v) for k, v in op[part].items()}
        if isinstance(op.get("params"), list):
            op["params"] = [swap(v) for v in op["params"]]
        out.append((op, where))
    return out


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _parse(raw: bytes) -> dict[str, Any] | None:
    """One journal line as an op, or None when it is not one (garbled, torn, or JSON of
    another shape: an op needs an integer ``t`` and a known ``op`` with what that op carries)."""
    try:
        op = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(op, dict) or op.get("op") not in _OP_KINDS:
        return None
    t = op.get("t")
    if not isinstance(t, int) or isinstance(t, bool):
        return None
    kind = op["op"]
    if kind in ("insert", "upsert"):
        ok = isinstance(op.get("table"), str) and isinstance(op.get("row"), dict) and op["row"]
    elif kind == "update":
        ok = (
            isinstance(op.get("table"), str)
            and isinstance(op.get("key"), dict)
            and isinstance(op.get("set"), dict)
            and bool(op["key"])
            and bool(op["set"])
        )
    elif kind == "sql":
        ok = isinstance(op.get("sql"), str) and isinstance(op.get("params", []), list)
    else:
        ok = True
    return op if ok else None


# below this many rows executemany is cheaper than building an Arrow table
BULK_THRESHOLD = 16


def apply_ops(conn: duckdb.DuckDBPyConnection, ops: list[dict[str, Any]]) -> None:
    """Apply journal ops on an open connection, batching runs of inserts into one table."""
    i = 0
    while i < len(ops):
        op = ops[i]
        kind = op["op"]
        if kind in ("insert", "upsert"):
            cols = tuple(op["row"])
            j = i + 1
            while (
                j < len(ops)
                and ops[j]["op"] == kind
                and ops[j]["table"] == op["table"]
                and tuple(ops[j]["row"]) == cols
            ):
                j += 1
            _insert_rows(conn, op["table"], cols, [o["row"] for o in ops[i:j]], kind == "upsert")
            i = j
            continue
        if kind == "update":
            sets = ", ".join(f"{c} = ?" for c in op["set"])
            where = " AND ".join(f"{c} = ?" for c in op["key"])
            conn.execute(
                f"UPDATE {op['table']} SET {sets} WHERE {where}",
                [*op["set"].values(), *op["key"].values()],
            )
        elif kind == "sql":
            conn.execute(op["sql"], op.get("params") or [])
        else:
            raise StoreError(f"unknown journal op {kind!r}")
        i += 1


def _insert_rows(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    cols: tuple[str, ...],
    rows: list[dict[str, Any]],
    upsert: bool,
) -> None:
    verb = "INSERT OR REPLACE INTO" if upsert else "INSERT INTO"
    collist = ", ".join(cols)
    if len(rows) < BULK_THRESHOLD:
        marks = ", ".join("?" for _ in cols)
        conn.executemany(
            f"{verb} {table} ({collist}) VALUES ({marks})", [[r[c] for c in cols] for r in rows]
        )
        return
    import pyarrow as pa

    arrow_batch = pa.table({c: [r[c] for r in rows] for c in cols})
    conn.register("_sw_batch", arrow_batch)
    try:
        conn.execute(f"{verb} {table} ({collist}) SELECT {collist} FROM _sw_batch")
    finally:
        conn.unregister("_sw_batch")


def replay_batch(fresh: Store, located: list[tuple[dict[str, Any], str]]) -> int:
    """Apply journal ops to a database being rebuilt; returns how many were applied. An op it
    refuses (a row journaled twice: a killed process lost its abort mark) is left out with a
    warning naming its journal line: one bad line never costs the rest."""
    import duckdb

    try:
        fresh.write([op for op, _ in located], None)
        return len(located)
    except duckdb.Error:
        pass
    applied = 0
    with fresh.connect():  # one connection for the op-by-op pass
        for op, where in located:
            try:
                fresh.write([op], None)
                applied += 1
            except duckdb.Error as exc:
                log.warning("%s: left out a journal op the database refuses: %s", where, exc)
    return applied
