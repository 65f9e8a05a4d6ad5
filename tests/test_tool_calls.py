"""The tool-call report scans results marked by the recorder (migration 10) instead of grouping
every tool event by call, and gives the numbers the grouping gave: recorded through the real
recorder (a crashed process and its resume included), migrated from a version-9 database,
rebuilt from journals written before the columns existed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from specwright import queries as Q
from specwright import recorder
from specwright.model import ToolCall, ToolResult
from specwright.recorder import ExecutionRecorder
from specwright.store import Store

# The report as it was before migration 10: the reference the new query must equal.
OLD_SQL = """
    WITH per_call AS (
        SELECT any_value(tool_name) FILTER (WHERE type = 'tool_call') AS tool,
               min(ts) FILTER (WHERE type = 'tool_call') AS called,
               min(ts) FILTER (WHERE type = 'tool_result') AS answered,
               bool_or(is_error) FILTER (WHERE type = 'tool_result') AS failed
        FROM events
        WHERE type IN ('tool_call', 'tool_result') AND call_id IS NOT NULL{where}
        GROUP BY execution_id, call_id
    )
    SELECT tool, calls, failures, failure_rate, no_result, q[1] AS p50_ms, q[2] AS p90_ms
    FROM (
        SELECT tool, count(*) AS calls,
               count(*) FILTER (WHERE failed) AS failures,
               count(*) FILTER (WHERE failed)::DOUBLE / count(*) AS failure_rate,
               count(*) FILTER (WHERE answered IS NULL) AS no_result,
               quantile_cont(epoch_ms(answered - called), [0.5, 0.9]) AS q
        FROM per_call WHERE called IS NOT NULL
        GROUP BY 1)
    ORDER BY calls DESC"""

MARKS = ("call_tool", "call_ts", "first_result", "first_failure")
SINCE = datetime(2026, 3, 2)  # --since 2026-03-02
END = datetime(2026, 3, 4)  # --until 2026-03-03: up to the end of that day
WINDOWS = [
    (None, None),
    ("2026-03-02", None),
    (None, "2026-03-03"),
    ("2026-03-02", "2026-03-03"),
    ("2026-03-03", "2026-03-03"),
    ("2026-03-04", None),
    (None, "2026-03-01"),
    (date.today().isoformat(), None),  # the crashed and resumed executions (real clock)
]

# Records one tool call in a new execution, writes it to the store, then dies by SIGKILL:
# the crash of a process in the middle of a tool.
CRASH = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from specwright.model import ToolCall
    from specwright.recorder import ExecutionRecorder
    from specwright.store import Store

    rec = ExecutionRecorder(Store(Path(sys.argv[1])), role="executor", backend="claude_code")
    rec.start()
    rec.on_event(ToolCall("toolu_resume", "Bash", {"command": "make test"}))
    rec.flush()
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def old_report(store: Store, since: str | None = None, until: str | None = None) -> pd.DataFrame:
    clauses, params = "", []
    if since:
        clauses, params = " AND ts >= ?", [datetime.fromisoformat(since)]
    if until:
        clauses += " AND ts < ?"
        params.append(datetime.fromisoformat(until) + timedelta(days=1))
    return store.query_df(OLD_SQL.format(where=clauses), params)


def _same_report(store: Store, since: str | None, until: str | None) -> pd.DataFrame:
    """The report, checked equal to the old SQL's (rows in one order: ties had none)."""
    new = Q.tool_calls(store, since=since, until=until)
    old = old_report(store, since, until)
    order = ["calls", "tool"]
    old = old.sort_values(order, ascending=[False, True]).reset_index(drop=True)
    pd.testing.assert_frame_equal(new, old, obj=f"tool_calls since={since} until={until}")
    return new


def _record(store: Store, monkeypatch: pytest.MonkeyPatch, extra: bool = False) -> None:
    """Executions through the real recorder at chosen times (its clock set per event), one of
    them in a process killed mid-call and resumed by another execution."""
    clock = [SINCE]
    ms = lambda n: timedelta(milliseconds=n)  # noqa: E731

    def execution(name: str, events: list[tuple[datetime, Any]]) -> None:
        rec = ExecutionRecorder(store, role="executor", backend="claude_code", executor=name)
        with monkeypatch.context() as patch, rec:
            patch.setattr(recorder, "utcnow", lambda: clock[0])
            for at, event in events:
                clock[0] = at
                rec.on_event(event)
            rec.finish(status="ok")

    def call(cid: str, tool: str) -> ToolCall:
        return ToolCall(cid, tool, {"command": "true"})

    def result(cid: str, failed: bool = False) -> ToolResult:
        return ToolResult(cid, "error" if failed else "ok", is_error=failed)

    h = timedelta(hours=1)
    execution(
        "a",
        [
            (SINCE - ms(0.5), call("c1", "Bash")),  # a call before the window...
            (SINCE + ms(0.4), result("c1")),  # ...answered in it
            (SINCE, call("c2", "Read")),  # on the window's first instant
            (SINCE + ms(1500), result("c2", failed=True)),
            (SINCE + h, call("c3", "Edit")),  # answered twice: fine, then failed
            (SINCE + h + ms(100), result("c3")),
            (SINCE + h + ms(300), result("c3", failed=True)),
            (SINCE + 2 * h, call("c4", "Edit")),  # failed twice: one failure
            (SINCE + 2 * h + ms(50), result("c4", failed=True)),
            (SINCE + 2 * h + ms(70), result("c4", failed=True)),
            (SINCE + 3 * h, call("c5", "Edit")),  # failed, then fine
            (SINCE + 3 * h + ms(20), result("c5", failed=True)),
            (SINCE + 3 * h + ms(40), result("c5")),
            (SINCE + 4 * h, call("c6", "Grep")),  # never answered
            (SINCE + 5 * h, result("ghost", failed=True)),  # answers no call
            (SINCE + 6 * h, call("c7", "Bash")),
            (SINCE + 6 * h + ms(0.9), result("c7")),  # under a millisecond
            (SINCE + 7 * h, call("c8", "Bash")),
            (SINCE + 7 * h - ms(5), result("c8")),  # the wall clock stepped back
            (END - ms(500), call("c9", "Read")),  # answered before the window ends,
            (END - ms(200), result("c9")),
            (END + ms(100), result("c9", failed=True)),  # failed after it
            (END - ms(1), call("c10", "Bash")),  # called in the window,
            (END + ms(1), result("c10", failed=True)),  # answered after it
            (END + h, call("c11", "Write")),
            (END + h + ms(250), result("c11")),
        ],
    )
    day = timedelta(days=1)
    execution(  # the same call ids in another execution: other calls
        "b",
        [
            (SINCE + day, call("c1", "Write")),
            (SINCE + day + ms(10), result("c1", failed=True)),
            (SINCE + day + ms(1000), call("c2", "Read")),
            (SINCE + day + ms(3000), result("c2")),
            (SINCE + day + ms(5000), result("c6")),  # c6 of execution a: not this one's
        ],
    )
    if extra:  # where the marks differ from the old grouping by call (see test below)
        execution(
            "e",
            [
                (SINCE + 3 * day, result("x")),  # before any call with its id
                (SINCE + 3 * day + ms(10), call("x", "Bash")),
                (SINCE + 3 * day + ms(20), result("x", failed=True)),
                (SINCE + 3 * day + ms(30), call("x", "Read")),  # the id used again
                (SINCE + 3 * day + ms(90), result("x")),
            ],
        )
    store.release()  # the crashing process opens the file
    crash = subprocess.run(
        [sys.executable, "-c", CRASH, str(store.path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SPECWRIGHT_LINGER": "0"},
    )
    assert crash.returncode == -9, crash.stderr[-2000:]
    # The resumed run is a new execution (a new process always makes one): the agent's
    # session replays the result of the call the dead process made, then goes on.
    with ExecutionRecorder(store, role="executor", backend="claude_code", executor="d") as rec:
        rec.on_event(result("toolu_resume"))
        rec.on_event(call("toolu_2", "Read"))
        rec.on_event(result("toolu_2"))
        rec.finish(status="ok")


def test_the_report_equals_the_grouping_by_call_in_every_window(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _record(store, monkeypatch)
    for since, until in WINDOWS:
        _same_report(store, since, until)
    # the cases are there: in 2026-03-02..03, c1 (called before) is out, c10 (answered after)
    # has no result, c9's failure after the window does not count, c3 failed on its 2nd result
    got = _same_report(store, "2026-03-02", "2026-03-03").set_index("tool")
    assert got.loc["Bash", ["calls", "no_result", "failures"]].tolist() == [3, 1, 0]
    assert got.loc["Read", ["calls", "failures", "p50_ms"]].tolist() == [3, 1, 1500.0]
    assert got.loc["Edit", ["calls", "failures", "no_result"]].tolist() == [3, 3, 0]
    assert got.loc["Grep", "no_result"] == 1
    whole = _same_report(store, None, None).set_index("tool")
    assert whole.loc["Bash", ["calls", "no_result", "failures"]].tolist() == [5, 1, 1]
    assert whole.loc["Read", "failures"] == 2  # c9's second result counts now


def _version_9_copy(source: Store, path: Path) -> Store:
    """A database at schema version 9 holding ``source``'s executions and events, as the
    recorder wrote them before migration 10 (without the four columns)."""
    import duckdb

    from specwright.migrations import MIGRATIONS

    old_cols = [c for c in _columns(source, "events") if c not in MARKS]
    source.release()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = duckdb.connect(str(path))
    try:
        conn.execute(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, "
            "applied_at TIMESTAMP NOT NULL)"
        )
        for migration in MIGRATIONS[:9]:
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version VALUES (?, ?, now()::TIMESTAMP)",
                [migration.version, migration.name],
            )
        conn.execute(f"ATTACH '{source.path}' AS src (READ_ONLY)")
        # the executions columns of version 9 (later migrations add more)
        ex_cols = ", ".join(
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = 'executions' "
                "AND database_name = current_database() ORDER BY column_index"
            ).fetchall()
        )
        conn.execute(f"INSERT INTO executions ({ex_cols}) SELECT {ex_cols} FROM src.executions")
        cols = ", ".join(old_cols)
        conn.execute(f"INSERT INTO events ({cols}) SELECT {cols} FROM src.events")
        conn.execute("DETACH src")
    finally:
        conn.close()
    return Store(path, journal_dir=path.parent / "journal")


def _columns(store: Store, table: str) -> list[str]:
    rows = store.query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
        "ORDER BY ordinal_position",
        [table],
    )
    return [r[0] for r in rows]


def _marks(store: Store) -> list[tuple[Any, ...]]:
    return store.query(
        f"SELECT id, {', '.join(MARKS)} FROM events WHERE type = 'tool_result' ORDER BY id"
    )


def test_migration_10_marks_old_results_as_the_recorder_does(
    store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The backfill pairs a result with the latest call before it, as the recorder does. Where
    that differs from the old grouping by call, for ids no agent Specwright drives repeats in
    one execution: a result before any call answers none (the grouping paired them, with a
    negative latency), and an id called twice makes two calls (the grouping merged them)."""
    _record(store, monkeypatch, extra=True)
    old = _version_9_copy(store, tmp_path / "v9" / "old.duckdb")
    assert old.migrate()[0] == 10
    assert _marks(old) == _marks(store)
    for since, until in WINDOWS:
        pd.testing.assert_frame_equal(
            Q.tool_calls(old, since=since, until=until),
            Q.tool_calls(store, since=since, until=until),
        )
    marked = store.query(
        "SELECT call_tool, first_result, first_failure FROM events e JOIN executions x "
        "ON x.id = e.execution_id WHERE x.executor = 'e' AND e.type = 'tool_result' ORDER BY seq"
    )
    assert marked == [(None, None, None), ("Bash", True, True), ("Read", True, False)]


def test_a_rebuild_from_journals_older_than_the_columns_marks_their_results(
    store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _record(store, monkeypatch)
    for path in store.journal.files():  # as the recorder journaled events before migration 10
        ops = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        for op in ops:
            if op.get("table") == "events" and "row" in op:
                for col in MARKS:
                    del op["row"][col]
        path.write_text("".join(json.dumps(op) + "\n" for op in ops))
    store.rebuild_into(tmp_path / "rebuilt.duckdb")
    rebuilt = Store(tmp_path / "rebuilt.duckdb", journal_dir=store.journal.root)
    assert _marks(rebuilt) == _marks(store)
    for since, until in WINDOWS:
        _same_report(rebuilt, since, until)
