"""Bench 2, the dashboard at scale: every query behind the usage dashboard on a store the size of
a year of heavy use, and the total to build all figures.

The store (generated with DuckDB SQL straight into the schema, deterministic): 3 projects, 365
specs, 3,650 chunks and their runs, 100k executions, 5M events (50 per execution: steps, text,
tool calls and results, usage), 1M imported usage records (20k sessions) and codexbar
snapshots. It is cached in ``out/bench/`` (git-ignored) while its name (scale, generator version,
schema version) matches; quick mode uses a tiny store in a temp folder.

Each query of ``specwright.queries`` and ``specwright.blocks`` (found by introspection, so new ones are timed too) and
``report.figures`` / ``report.write_html`` are timed as the median of 5 runs after one warm-up,
against the same call on an empty store (the fixed cost: connection, planning, pandas).
Targets: each query < 300 ms, the whole dashboard < 3 s.
"""

from __future__ import annotations

import functools
import inspect
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench.common import CACHE, median_time, row

NAME = "dashboard"

GENERATOR_VERSION = 1
DAY_S = 86_400


@dataclass(frozen=True)
class Scale:
    specs: int
    executions: int
    events_per_execution: int
    usage_records: int
    snapshots: int

    @property
    def events(self) -> int:
        return self.executions * self.events_per_execution


FULL = Scale(specs=365, executions=100_000, events_per_execution=50, usage_records=1_000_000,
             snapshots=6_000)  # fmt: skip
QUICK = Scale(specs=12, executions=600, events_per_execution=20, usage_records=6_000, snapshots=60)


@dataclass(frozen=True)
class YearStore:
    """Where the store is and the project directory its main project is rooted at."""

    db: Path
    project_dir: Path
    scale: Scale
    generated_s: float | None  # None when it came from the cache


def year_store(quick: bool, root: Path | None = None) -> YearStore:
    """The synthetic store for this mode: cached (full) or fresh in ``root``/a temp dir (quick)."""
    from specwright.migrations import latest_version

    scale = QUICK if quick else FULL
    if quick:
        base = root or Path(tempfile.mkdtemp(prefix="specwright-bench-year-"))
    else:
        base = CACHE / f"year-v{GENERATOR_VERSION}-s{latest_version()}-{scale.executions}"
    project_dir = base / "project"
    db = base / "year.duckdb"
    done = base / "complete"
    if done.exists() and db.exists():
        return YearStore(db, project_dir, scale, None)
    if base.exists():
        shutil.rmtree(base)
    project_dir.mkdir(parents=True)
    t = time.perf_counter()
    generate(db, project_dir, scale)
    done.write_text("ok\n")
    return YearStore(db, project_dir, scale, time.perf_counter() - t)


def generate(db: Path, project_dir: Path, scale: Scale) -> None:
    """Create the schema (through the Store's migrations) and fill it with SQL."""
    import duckdb

    from specwright.store import Store

    Store(db, journal_dir=db.parent / "journal").migrate()
    conn = duckdb.connect(str(db))
    try:
        conn.execute("SET enable_progress_bar = false")
        for sql in _statements(scale, str(project_dir.resolve())):
            conn.execute(sql)
        conn.execute("CHECKPOINT")
    finally:
        conn.close()


def _h(expr: str, salt: int, mod: int) -> str:
    """A deterministic pseudo-random integer in [0, mod) from ``expr``."""
    return f"(hash({expr} * 7919 + {salt}) % {mod})::BIGINT"


def _statements(s: Scale, project_root: str) -> list[str]:
    from specwright.migrations import BACKFILL_TOOL_RESULTS

    n_chunks = s.specs * 10
    epe = s.events_per_execution
    t0 = "(date_trunc('day', now()::TIMESTAMP) - INTERVAL 365 DAY)"
    span_ms = 365 * DAY_S * 1000
    models = "['claude-sonnet-4-5', 'claude-opus-4-1', 'claude-haiku-4-5', 'gpt-5-codex']"
    backends = "['claude_code', 'opencode', 'codex', 'claude_code']"
    root = project_root.replace("'", "''")
    out: list[Any] = [
        "CREATE TEMP TABLE gp AS SELECT i, uuid() AS id FROM range(3) t(i)",
        f"""INSERT INTO projects SELECT id, CASE WHEN i = 0 THEN 'project' ELSE 'other-' || i END,
               CASE WHEN i = 0 THEN '{root}' ELSE '/srv/other-' || i END, {t0} FROM gp""",
        f"CREATE TEMP TABLE gs AS SELECT i, uuid() AS id, i % 3 AS p FROM range({s.specs}) t(i)",
        f"""INSERT INTO specs (id, project_id, slug, title, body, status, intent, created_at,
                               updated_at)
            SELECT gs.id, gp.id, 'spec-' || gs.i, 'Spec number ' || gs.i, '', 'done', '',
                   {t0} + to_days(gs.i::INTEGER), {t0} + to_days(gs.i::INTEGER) + INTERVAL 6 HOUR
            FROM gs JOIN gp ON gp.i = gs.p""",
        f"""CREATE TEMP TABLE gc AS SELECT i, uuid() AS id, uuid() AS run_id, i // 10 AS s,
                   CASE WHEN {_h("i", 1, 10)} < 8 THEN 'shipped' ELSE 'failed' END AS status,
                   1 + {_h("i", 2, 3)} AS iterations
            FROM range({n_chunks}) t(i)""",
        f"""INSERT INTO chunks (id, spec_id, position, title, prompt, status, iterations, verdict,
                                created_at, updated_at)
            SELECT gc.id, gs.id, gc.i % 10 + 1, 'Chunk ' || gc.i, 'Do part ' || gc.i, gc.status,
                   gc.iterations, CASE WHEN gc.status = 'shipped' THEN 'SHIP' ELSE 'REVISE' END,
                   {t0} + to_days(gs.i::INTEGER), {t0} + to_days(gs.i::INTEGER)
            FROM gc JOIN gs ON gs.i = gc.s""",
        f"""INSERT INTO runs (id, spec_id, chunk_id, kind, status, executor, reviewer, pid, host,
                              branch, iterations, started_at, finished_at, heartbeat_at)
            SELECT gc.run_id, gs.id, gc.id, 'chunk', gc.status, 'claude', 'checks', 1, 'bench',
                   'specwright/spec-' || gs.i, gc.iterations,
                   {t0} + to_days(gs.i::INTEGER) + to_minutes((gc.i % 10 * 20)::INTEGER),
                   {t0} + to_days(gs.i::INTEGER) + to_minutes((gc.i % 10 * 20 + 15)::INTEGER),
                   {t0} + to_days(gs.i::INTEGER) + to_minutes((gc.i % 10 * 20 + 15)::INTEGER)
            FROM gc JOIN gs ON gs.i = gc.s""",
        f"""CREATE TEMP TABLE ge AS
            SELECT i, uuid() AS id, i % {n_chunks} AS c,
                   {t0} + to_milliseconds((i * ({span_ms} // {s.executions})
                                           + {_h("i", 3, 600_000)})::BIGINT) AS started_at,
                   5000 + {_h("i", 4, 900_000)} AS duration_ms
            FROM range({s.executions}) t(i)""",
        f"""INSERT INTO executions (id, run_id, spec_id, chunk_id, iteration, role, backend,
                executor, model, status, session_id, started_at, finished_at, duration_ms,
                input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                reasoning_tokens, cost_usd, cost_source, reported_cost_usd, computed_cost_usd,
                num_turns, event_count)
            SELECT ge.id, gc.run_id, gs.id, gc.id, 1 + ge.i // {n_chunks} % 3,
                   CASE WHEN {_h("ge.i", 5, 100)} < 70 THEN 'executor'
                        WHEN {_h("ge.i", 5, 100)} < 90 THEN 'reviewer'
                        WHEN {_h("ge.i", 5, 100)} < 95 THEN 'planner' ELSE 'summarizer' END,
                   {backends}[1 + {_h("ge.i", 6, 4)}], 'exec-' || {_h("ge.i", 6, 4)},
                   {models}[1 + {_h("ge.i", 7, 4)}],
                   CASE WHEN {_h("ge.i", 8, 50)} = 0 THEN 'error' ELSE 'ok' END,
                   'sess-' || ge.i, ge.started_at,
                   ge.started_at + to_milliseconds(ge.duration_ms::BIGINT), ge.duration_ms,
                   2000 + {_h("ge.i", 9, 20000)}, 300 + {_h("ge.i", 10, 5000)},
                   {_h("ge.i", 11, 200000)}, {_h("ge.i", 12, 20000)}, 0,
                   ({_h("ge.i", 13, 100000)}) / 100000.0 * 0.8,
                   CASE WHEN {_h("ge.i", 14, 3)} = 0 THEN 'computed' ELSE 'reported' END,
                   ({_h("ge.i", 13, 100000)}) / 100000.0 * 0.8,
                   ({_h("ge.i", 13, 100000)}) / 100000.0 * 0.79,
                   1 + {_h("ge.i", 15, 30)}, {epe}
            FROM ge JOIN gc ON gc.i = ge.c JOIN gs ON gs.i = gc.s""",
        # events: per execution one step, then turns of text, tool_call, tool_result, usage
        f"""INSERT INTO events (id, execution_id, seq, ts, type, tool_name, call_id, input,
                output, output_len, is_error, text, model, input_tokens, output_tokens,
                cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_usd)
            WITH v AS (
                SELECT i, i // {epe} AS x, i % {epe} AS j, (i % {epe} - 1) % 4 AS m,
                       (i % {epe} - 1) // 4 AS turn
                FROM range({s.events}) t(i)
            )
            SELECT uuid(), ge.id, v.j + 1,
                   ge.started_at + to_milliseconds((v.j * 1500 + {_h("v.i", 20, 1000)})::BIGINT),
                   CASE WHEN v.j = 0 THEN 'step' WHEN v.m = 0 THEN 'text'
                        WHEN v.m = 1 THEN 'tool_call' WHEN v.m = 2 THEN 'tool_result'
                        ELSE 'usage' END,
                   CASE WHEN v.j > 0 AND v.m IN (1, 2)
                        THEN ['Bash', 'Read', 'Edit', 'Grep', 'Write'][1 + {_h("v.x * 100 + v.turn", 21, 5)}]
                   END,
                   CASE WHEN v.j > 0 AND v.m IN (1, 2) THEN 'toolu_' || v.turn END,
                   CASE WHEN v.j > 0 AND v.m = 1
                        THEN '{{"command":"grep -rn handler_' || v.i || ' src"}}' END,
                   CASE WHEN v.j > 0 AND v.m = 2
                        THEN repeat('src/module.py:12: def handler(request):' || chr(10), 5) END,
                   CASE WHEN v.j > 0 AND v.m = 2 THEN 205 END,
                   CASE WHEN v.j > 0 AND v.m = 2 THEN {_h("v.i", 22, 15)} = 0 END,
                   CASE WHEN v.j = 0 THEN 'init' WHEN v.m = 0
                        THEN 'Looking at the handler of request ' || v.i END,
                   CASE WHEN v.j > 0 AND v.m = 3 THEN 'claude-sonnet-4-5' END,
                   CASE WHEN v.j > 0 AND v.m = 3 THEN 1000 + {_h("v.i", 23, 3000)} END,
                   CASE WHEN v.j > 0 AND v.m = 3 THEN 100 + {_h("v.i", 24, 900)} END,
                   CASE WHEN v.j > 0 AND v.m = 3 THEN {_h("v.i", 25, 50000)} END,
                   CASE WHEN v.j > 0 AND v.m = 3 THEN {_h("v.i", 26, 2000)} END,
                   CASE WHEN v.j > 0 AND v.m = 3 THEN 0 END,
                   CASE WHEN v.j > 0 AND v.m = 3 THEN {_h("v.i", 27, 1000)} / 10000.0 END
            FROM v JOIN ge ON ge.i = v.x""",
        BACKFILL_TOOL_RESULTS,  # each result names its call, as the recorder writes it
        f"""INSERT INTO usage_records (id, source, dedup_key, message_id, request_id, session_id,
                project_path, file, model, ts, input_tokens, output_tokens, cache_read_tokens,
                cache_write_5m_tokens, cache_write_1h_tokens, reasoning_tokens,
                reported_cost_usd, computed_cost_usd, execution_id, is_sidechain, provider, seq,
                imported_at, host)
            SELECT uuid(), CASE WHEN {_h("t.i // 50", 30, 7)} = 0 THEN 'codex' ELSE 'claude' END,
                   'msg_' || i || ':req_' || i, 'msg_' || i, 'req_' || i, 'session-' || (i // 50),
                   '/home/dev/project-' || (i // 50 % 12), 'session-' || (i // 50) || '.jsonl',
                   {models}[1 + {_h("i // 50", 31, 4)}],
                   {t0} + to_milliseconds((i * ({span_ms} // {s.usage_records}))::BIGINT),
                   {_h("i", 32, 5000)}, {_h("i", 33, 2000)}, {_h("i", 34, 80000)},
                   {_h("i", 35, 5000)}, 0, 0, NULL, {_h("i", 36, 10000)} / 100000.0,
                   g.gid, false, 'anthropic', i % 50, now()::TIMESTAMP, 'bench'
            FROM range({s.usage_records}) t(i)
            LEFT JOIN (SELECT i AS gi, id AS gid FROM ge) g
                   ON t.i % 10 = 0 AND g.gi = t.i // 10 % {s.executions}""",
        f"""INSERT INTO usage_snapshots (id, taken_at, source, provider, execution_id, payload,
                kind, phase)
            SELECT uuid(), ge.started_at + CASE WHEN k.i = 1 THEN to_milliseconds(ge.duration_ms)
                                                ELSE INTERVAL 0 SECOND END,
                   'codexbar', CASE WHEN ge.i % 2 = 0 THEN 'claude' ELSE 'codex' END, ge.id,
                   json_object('usage', json_object(
                       'primary', json_object('usedPercent', (ge.i % 90) + k.i * 2,
                                              'windowMinutes', 300, 'resetsAt', '2030-01-01T00:00:00Z'),
                       'secondary', json_object('usedPercent', (ge.i % 60) + k.i,
                                                'windowMinutes', 10080,
                                                'resetsAt', '2030-01-07T00:00:00Z')),
                       'credits', json_object('remaining', 100 - ge.i % 100)),
                   'usage', CASE WHEN k.i = 0 THEN 'before' ELSE 'after' END
            FROM ge, range(2) k(i)
            WHERE ge.i % ({s.executions} // ({s.snapshots} // 2)) = 0""",
        "DROP TABLE gp",
        "DROP TABLE gs",
        "DROP TABLE gc",
        "DROP TABLE ge",
    ]
    return out


# --- the bench ------------------------------------------------------------------------------

QUERY_TARGET_MS = 300.0
DASHBOARD_TARGET_S = 3.0
REPEATS = 5
WINDOW_DAYS = 30
# arguments worth timing separately; every other public query runs with its defaults
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "usage_by_period": [{"period": "day"}, {"period": "week"}, {"period": "month"}],
    "usage_report": [{"period": "day"}, {"period": "month"}],
    "cost_by": [
        {"dim": d} for d in ("project", "spec", "chunk", "executor", "model", "role", "backend")
    ],
    "latency": [{"by": "role"}, {"by": "model"}],
    "executions_by_period": [{"period": "day"}],
}


def query_calls() -> tuple[list[tuple[str, Callable[..., Any]]], list[str]]:
    """Every named query of ``specwright.queries`` and ``specwright.blocks`` (with its
    variants) as (label, call)."""
    from specwright import blocks, queries

    calls: list[tuple[str, Callable[..., Any]]] = []
    skipped: list[str] = []
    members = [
        (n, f, m) for m in (queries, blocks) for n, f in inspect.getmembers(m, inspect.isfunction)
    ]
    for name, fn, module in sorted(members, key=lambda x: x[0]):
        if name.startswith("_") or fn.__module__ != module.__name__:
            continue
        params = list(inspect.signature(fn).parameters.values())
        if not params or params[0].name != "store":
            continue
        variants = VARIANTS.get(name, [{}])
        needed = [
            p.name
            for p in params[1:]
            if p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        if any(n not in v for v in variants for n in needed):
            skipped.append(f"{name} (needs {', '.join(needed)})")
            continue
        for kw in variants:
            label = name + "".join(f" {v}" for v in kw.values())
            calls.append((label, functools.partial(fn, **kw)))
    return calls, skipped


def _params(call: Callable[..., Any]) -> set[str]:
    return set(inspect.signature(call).parameters)


def _seconds(fn: Callable[[], Any], quick: bool) -> float:
    """Median of ``REPEATS`` after a warm-up; quick mode (a smoke test) times one cold call."""
    return median_time(fn, 1, warmup=0) if quick else median_time(fn, REPEATS)


def run(quick: bool) -> list[dict[str, Any]]:
    """Latency of every dashboard query and of all figures on the year store, each against
    the same call on an empty store."""
    from specwright import report
    from specwright.store import Store

    year = year_store(quick)
    work = Path(tempfile.mkdtemp(prefix="specwright-bench-dash-"))
    rows: list[dict[str, Any]] = []
    try:
        empty = Store(work / "empty.duckdb")
        empty.migrate()
        store = Store(year.db, journal_dir=work / "journal")
        size = "tiny" if quick else "1-year"
        gen = (
            f"generated in {year.generated_s:.0f} s"
            if year.generated_s is not None
            else "cached in out/bench"
        )
        rows.append(
            row(
                NAME,
                f"{size} store",
                year.db.stat().st_size / 1e6,
                "MB",
                note=f"{year.scale.executions:,} executions, {year.scale.events:,} events, "
                f"{year.scale.usage_records:,} usage records; {gen}",
            )
        )
        calls, skipped = query_calls()
        since = (date.today() - timedelta(days=WINDOW_DAYS)).isoformat()
        for _, call in calls:  # imports (pandas, numpy) and the OS cache are not the query's
            call(empty)
        for label, call in calls:
            base = _seconds(lambda call=call: call(empty), quick) * 1000  # type: ignore[misc]
            value = _seconds(lambda call=call: call(store), quick) * 1000  # type: ignore[misc]
            rows.append(
                row(
                    NAME,
                    f"query {label}",
                    value,
                    "ms",
                    baseline=base,
                    ratio=value / base,
                    target=f"< {QUERY_TARGET_MS:g} ms",
                    note="whole year (the default window)",
                )
            )
            if value < QUERY_TARGET_MS or "since" not in _params(call):
                continue
            # over target on the whole year: does the usual window (last 30 days) meet it?
            windowed = functools.partial(call, since=since)
            value = _seconds(functools.partial(windowed, store), quick) * 1000
            rows.append(
                row(
                    NAME,
                    f"query {label} (last {WINDOW_DAYS} d)",
                    value,
                    "ms",
                    baseline=base,
                    ratio=value / base,
                    target=f"< {QUERY_TARGET_MS:g} ms",
                    note=f"since={since}",
                )
            )
        for what, fn in (
            ("build all figures", lambda s: report.figures(s)),
            ("whole dashboard (HTML)", lambda s: report.write_html(s, work / "dash.html")),
        ):
            base = _seconds(lambda fn=fn: fn(empty), quick)  # type: ignore[misc]
            value = _seconds(lambda fn=fn: fn(store), quick)  # type: ignore[misc]
            rows.append(
                row(
                    NAME,
                    what,
                    value,
                    "s",
                    baseline=base,
                    ratio=value / base,
                    target=f"< {DASHBOARD_TARGET_S:g} s",
                )
            )
        if skipped:
            rows.append(row(NAME, "queries not timed", len(skipped), "", note="; ".join(skipped)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if quick:
            shutil.rmtree(year.db.parent, ignore_errors=True)
    return rows
