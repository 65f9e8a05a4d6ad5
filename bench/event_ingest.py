"""Bench 1, event ingest: normalized agent events through the recorder's buffered writer vs one
INSERT per event.

The recorder path is what every execution does: ``ExecutionRecorder.start`` / ``on_event`` /
``finish`` (journal line per event, batched Arrow inserts, one short connection per flush), over
executions of ``PER_EXECUTION`` events each. The baseline writes the same rows (built by the
same code) into the same schema with one ``INSERT`` per event over one open connection
(autocommit, as a naive writer would). The baseline is slow (a few hundred rows/s: every commit
syncs the WAL), so it runs on the first ``baseline_events`` events only: its figure is a rate.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.common import row, timed

NAME = "event_ingest"
PER_EXECUTION = 5_000
TOOLS = ("Bash", "Read", "Edit", "Grep", "Write")


def make_events(n: int) -> list[Any]:
    """``n`` events in turns of tool call, tool result, text and usage (like an agent's)."""
    from specwright.model import TextEvent, ToolCall, ToolResult, Usage, UsageEvent

    output = "".join(f"src/module_{i}.py:{i * 7}: def handler_{i}(request):\n" for i in range(12))
    events: list[Any] = []
    turn = 0
    while len(events) < n:
        tool = TOOLS[turn % len(TOOLS)]
        call = f"toolu_{turn:010d}"
        events.append(
            ToolCall(call, tool, {"command": f"grep -rn handler_{turn} src", "timeout": 120000})
        )
        events.append(ToolResult(call, output, turn % 17 == 0, tool))
        events.append(TextEvent(f"Looking at handler_{turn}: it needs the new argument."))
        events.append(
            UsageEvent(Usage(1200 + turn % 50, 300, 45_000, 800, 0, None, "claude-sonnet-4-5"))
        )
        turn += 1
    return events[:n]


def _recorder_ingest(store: Any, events: list[Any], total: int) -> int:
    """Feed ``total`` events (cycling over ``events``) through recorders; returns executions."""
    from specwright.recorder import ExecutionRecorder

    done = executions = 0
    while done < total:
        n = min(PER_EXECUTION, total - done)
        rec = ExecutionRecorder(store, role="executor", backend="scripted", executor="bench")
        rec.start()
        on_event = rec.on_event
        for i in range(n):
            on_event(events[i % len(events)])
        rec.finish(status="ok")
        done += n
        executions += 1
    return executions


def _row_by_row(store: Any, events: list[Any], total: int) -> None:
    """One INSERT per event over one connection: the same rows, no batching."""
    import duckdb

    from specwright.recorder import ExecutionRecorder

    shaper = ExecutionRecorder(store, role="executor", backend="scripted", executor="baseline")
    conn = duckdb.connect(str(store.path))
    try:
        cols: tuple[str, ...] | None = None
        sql = ""
        for i in range(total):
            r = shaper._event_row(events[i % len(events)], i + 1)
            if cols is None:
                cols = tuple(r)
                marks = ", ".join("?" for _ in cols)
                sql = f"INSERT INTO events ({', '.join(cols)}) VALUES ({marks})"
            conn.execute(sql, [r[c] for c in cols])
    finally:
        conn.close()


def run(quick: bool) -> list[dict[str, Any]]:
    """Events/s through the recorder and row by row, and the ratio."""
    from specwright.store import Store

    total = 20_000 if quick else 1_000_000
    baseline_events = 500 if quick else 20_000
    events = make_events(PER_EXECUTION)
    work = Path(tempfile.mkdtemp(prefix="specwright-bench-ingest-"))
    try:
        store = Store(work / "recorder" / "db.duckdb")
        store.migrate()
        rec_s, executions = timed(lambda: _recorder_ingest(store, events, total))
        stored = store.query("SELECT count(*) FROM events")[0][0]
        if stored != total:
            raise AssertionError(f"recorder stored {stored} events, expected {total}")
        base = Store(work / "baseline" / "db.duckdb")
        base.migrate()
        base_s, _ = timed(lambda: _row_by_row(base, events, baseline_events))
        stored = base.query("SELECT count(*) FROM events")[0][0]
        if stored != baseline_events:
            raise AssertionError(f"baseline stored {stored} events, expected {baseline_events}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rec_rate = total / rec_s
    base_rate = baseline_events / base_s
    return [
        row(
            NAME,
            "recorder events/s",
            rec_rate,
            "ev/s",
            note=f"{total:,} events in {executions} executions, {rec_s:.1f} s, journal included",
        ),
        row(
            NAME,
            "row-by-row INSERT events/s",
            base_rate,
            "ev/s",
            note=f"first {baseline_events:,} events, one INSERT each, one connection",
        ),
        row(
            NAME,
            "recorder vs row-by-row",
            rec_rate / base_rate,
            "x",
            baseline=base_rate,
            ratio=rec_rate / base_rate,
        ),
    ]
