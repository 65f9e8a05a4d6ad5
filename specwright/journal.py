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
back): a replay skips them. Values are JSON-normal: timestamps are ISO
strings, JSON columns are strings, so the live path and the replay path write identical rows.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

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


# one encoder for every call: json.dumps with options builds a new JSONEncoder each time
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)


def dumps(obj: Any) -> str:
    """Compact, deterministic JSON for journal lines and JSON columns."""
    return _ENCODER.encode(obj)


@dataclass
class ReadResult:
    ops: list[dict[str, Any]]
    skipped: int


class JournalWriter:
    """Keeps one journal file open; each ``append`` is a single O_APPEND ``write``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, ops: list[dict[str, Any]]) -> int:
        """Write ``ops`` as lines with one ``write``; returns the bytes written."""
        if self._fd is None:
            raise ValueError(f"{self.path}: journal writer is closed")
        data = "".join(dumps(op) + "\n" for op in ops).encode("utf-8")
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        return len(data)

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

    def append(self, name: str, ops: list[dict[str, Any]]) -> None:
        """Append ops to journal ``name`` with one ``write`` (O_APPEND: safe across processes)."""
        if not ops:
            return
        writer = self.writer(name)
        try:
            writer.append(ops)
        finally:
            writer.close()

    def abort(self, name: str, ops: list[dict[str, Any]]) -> None:
        """Mark ``ops``, appended to journal ``name`` and then refused by the database, as not
        applied (``replay_order`` skips them)."""
        self.append(name, [{"t": op_time(), "op": "abort", "ops": [op["t"] for op in ops]}])

    def writer(self, name: str) -> JournalWriter:
        """An open append handle on journal ``name`` (for a stream of events)."""
        path = self.path_for(name)
        path.parent.mkdir(parents=True, exist_ok=True)
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
        """Read one journal; a torn or garbled line is skipped with a warning, never fatal."""
        ops: list[dict[str, Any]] = []
        skipped = 0
        with open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                try:
                    op = json.loads(raw)
                    if not isinstance(op, dict) or "op" not in op:
                        raise ValueError("not an op")
                except ValueError:
                    skipped += 1
                    torn = not raw.endswith(b"\n")
                    log.warning(
                        "%s:%d: skipped %s journal line",
                        path,
                        lineno,
                        "a torn (incomplete) last" if torn else "an unreadable",
                    )
                    continue
                ops.append(op)
        return ReadResult(ops, skipped)

    def replay_order(self) -> Iterator[dict[str, Any]]:
        """All ops of all journals, ordered by their time stamp (stable within a file), less
        the aborted ones."""
        tagged: list[tuple[int, int, int, dict[str, Any]]] = []
        for file_no, path in enumerate(self.files()):
            ops = self.read(path).ops
            aborted = {t for op in ops if op["op"] == "abort" for t in op.get("ops") or []}
            for i, op in enumerate(ops):
                if op["op"] != "abort" and op.get("t") not in aborted:
                    tagged.append((int(op.get("t", 0)), file_no, i, op))
        tagged.sort(key=lambda x: (x[0], x[1], x[2]))
        for _, _, _, op in tagged:
            yield op
