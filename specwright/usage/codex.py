"""Codex CLI session logs (``$CODEX_HOME/sessions/**`` and ``archived_sessions/``) -> usage.

The rules are ccusage's (``ccusage codex``), checked against it by tests/test_usage_codex_parity.
Each ``event_msg`` / ``token_count`` line carries the turn's ``last_token_usage`` and the
session's cumulative ``total_token_usage``; Codex repeats the last event now and then (a
rate-limit refresh), so an event whose cumulative totals did not move is a duplicate. An event
with totals only counts their rise since the last totals (a count that fell counts 0). Codex's
``input_tokens`` include cached input: stored input is input minus cached (cached capped at the
input), cached is a cache read. The model is the latest one a ``turn_context`` or a counted event
names (``gpt-5`` when none did yet, as ccusage assumes). A fork (``forked_from_id``, or a
subagent's parent thread) starts by replaying its parent's events, rewritten to the fork's time:
those are the parent's, not counted again (see ``_drop_replays``). The rate-limit windows of the
newest event of each file become a snapshot. Read in bulk by DuckDB; the per-file running state
(model, totals) carries over between runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specwright.usage import files as F
from specwright.usage.common import (
    STORED_PRICES,
    IngestResult,
    ingest_logs,
    insert_rates,
    link_executions,
    reprice_unpriced,
    save_prices,
)

if TYPE_CHECKING:
    import duckdb

    from specwright.config import Price
    from specwright.store import Store

SOURCE = "codex"
FALLBACK_MODEL = "gpt-5"

_TOK = (
    '{"input_tokens":"BIGINT","cached_input_tokens":"BIGINT","output_tokens":"BIGINT",'
    '"reasoning_output_tokens":"BIGINT","total_tokens":"BIGINT"}'
)
_NAMED = '"model":"VARCHAR","model_name":"VARCHAR","metadata":{"model":"VARCHAR"}'
_SHAPE = (
    '{"timestamp":"VARCHAR","type":"VARCHAR","payload":{"type":"VARCHAR","id":"VARCHAR",'
    f'"cwd":"VARCHAR","forked_from_id":"VARCHAR","source":"JSON","rate_limits":"JSON",{_NAMED},'
    f'"info":{{"total_token_usage":{_TOK},"last_token_usage":{_TOK},{_NAMED}}}}}}}'
)

_COUNTS = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_output_tokens")
_COUNT_BELOW = 2**53


def _count(value: str) -> str:
    """``value`` (a BIGINT) if in [0, 2**53), else NULL."""
    return f"CASE WHEN {value} BETWEEN 0 AND {_COUNT_BELOW - 1} THEN {value} END"


def _bounded(usage: str) -> str:
    """``usage`` (a ``_TOK`` struct) with each count outside [0, 2**53) read as missing: no real
    count is near, and differences and sums of such counts overflowed BIGINT and failed every
    ingest from then on."""
    fields = ", ".join(f"'{f}': {_count(f'{usage}.{f}')}" for f in (*_COUNTS, "total_tokens"))
    return f"CASE WHEN {usage} IS NOT NULL THEN {{{fields}}} END"


def _model(obj: str) -> str:
    """The model an object names (``model``, ``model_name``, ``metadata.model``, trimmed and
    not empty, as ccusage reads it), or NULL."""
    names = ", ".join(f"nullif(trim({obj}.{f}), '')" for f in ("model", "model_name"))
    return f"coalesce({names}, nullif(trim({obj}.metadata.model), ''))"


def codex_roots(env: dict[str, str] | None = None) -> list[Path]:
    """``$CODEX_HOME`` (default ``~/.codex``) ``sessions/`` and ``archived_sessions/``."""
    env = dict(os.environ) if env is None else env
    home = Path(env.get("CODEX_HOME") or Path(env.get("HOME") or Path.home()) / ".codex")
    # a relative CODEX_HOME is made absolute: a file keeps its name from any folder
    home = Path(os.path.abspath(home.expanduser()))
    return [d for d in (home / "sessions", home / "archived_sessions") if d.is_dir()]


def ingest(
    store: Store,
    roots: list[Path] | None = None,
    *,
    overrides: dict[str, Price] | None = None,
    progress: Callable[[str], None] | None = None,
) -> IngestResult:
    """Import new token_count events of Codex session logs under ``roots``; ``progress`` as for
    ``ingest_logs``."""
    return ingest_logs(
        store,
        SOURCE,
        codex_roots() if roots is None else roots,
        stage=_stage,
        merge=lambda conn, result, ready: _merge(conn, result, ready, overrides),
        temp_tables=("_cx_raw", "_cx_files", "_cx_ev", "_cx_new", "_cx_rates"),
        progress=progress,
        reprice=lambda conn: reprice_unpriced(conn, SOURCE, "openai", overrides),
    )


def _carried(total: Any) -> int | None:
    """A file's cumulative total kept from the last run, bounded like every count (a state
    written before the bound could hold -2**63, and the next run's difference overflowed)."""
    if isinstance(total, int) and not isinstance(total, bool) and 0 <= total < _COUNT_BELOW:
        return total
    return None


def _stage(conn: duckdb.DuckDBPyConnection, ready: list[F.Planned]) -> dict[str, tuple[int, int]]:
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE _cx_files (read_path VARCHAR, path VARCHAR, "
        "restart BOOLEAN, fresh BOOLEAN, model VARCHAR, total BIGINT, session VARCHAR, cwd VARCHAR, "
        "c_in BIGINT, c_cached BIGINT, c_out BIGINT, c_reason BIGINT)"
    )
    rows = []
    for p in ready:
        st = (p.prev.state or {}) if (p.prev and not p.restart) else {}
        kept = st.get("totals")
        totals: dict[str, Any] = kept if isinstance(kept, dict) else {}
        rows.append(
            (
                p.read_path,
                p.path,
                p.restart,
                p.start == 0,
                st.get("model"),
                _carried(st.get("total")),
                st.get("session"),
                st.get("cwd"),
                *(_carried(totals.get(c)) for c in _COUNTS),
            )
        )
    F.insert_rows(conn, "INSERT INTO _cx_files", rows)
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE _cx_raw AS
        SELECT filename, json IS NULL AS bad, hash(json) AS h,
               CASE WHEN json IS NOT NULL THEN json_transform(json, '{_SHAPE}') END AS j
        FROM read_ndjson_objects(?, ignore_errors = true, filename = true,
                                 maximum_object_size = {F.max_object_size(ready, 268435456)})
        WHERE json IS NULL OR contains(json, '"token_count"') OR contains(json, '"turn_context"')
           OR contains(json, '"session_meta"')""",
        [[F.glob_literal(p.read_path) for p in ready]],
    )
    # a usage line whose time does not parse counts nowhere (ccusage stops on it): malformed
    out = conn.execute(
        """SELECT f.path, count(*) FILTER (WHERE NOT bad), count(*) FILTER (WHERE bad)
        FROM (SELECT filename, r.bad OR (r.j.type = 'event_msg'
                  AND r.j.payload.type = 'token_count' AND nullif(trim(r.j.timestamp), '') IS NOT NULL
                  AND try_cast(r.j.timestamp AS TIMESTAMPTZ) IS NULL) IS TRUE AS bad
              FROM _cx_raw r) r
        JOIN _cx_files f ON f.read_path = r.filename GROUP BY f.path"""
    ).fetchall()
    return {r[0]: (int(r[1]), int(r[2])) for r in out}


_COUNT_NAMES = (*_COUNTS, "total_tokens")

# every usage line and turn_context of the files read, in file order: a usage line's tokens (the
# turn's ``last_token_usage`` while the totals move, else the rise of the totals since the last
# ones, each count at least 0), and the model a line names
_EVENTS = f"""
CREATE OR REPLACE TEMP TABLE _cx_ev AS
WITH e AS (
    SELECT r.rowid - (SELECT min(rowid) FROM _cx_raw) AS rn, f.path AS file, r.h,
        f.model AS carried_model, f.session AS carried_session, f.cwd AS carried_cwd,
        CASE WHEN f.total IS NOT NULL THEN {{'input_tokens': f.c_in,
            'cached_input_tokens': f.c_cached, 'output_tokens': f.c_out,
            'reasoning_output_tokens': f.c_reason, 'total_tokens': f.total}} END AS carried,
        r.j.type AS kind, r.j.payload.type AS ptype,
        nullif(trim(r.j.timestamp), '') IS NOT NULL AS stamped,
        try_cast(r.j.timestamp AS TIMESTAMPTZ) AT TIME ZONE 'UTC' AS ts,
        CASE WHEN r.j.type = 'turn_context' THEN {_model("r.j.payload")} END AS ctx_model,
        CASE WHEN r.j.type = 'session_meta' THEN r.j.payload.id END AS meta_session,
        CASE WHEN r.j.type = 'session_meta' THEN r.j.payload.cwd END AS meta_cwd,
        {_bounded("r.j.payload.info.total_token_usage")} AS tot,
        {_bounded("r.j.payload.info.last_token_usage")} AS last,
        coalesce({_model("r.j.payload")}, {_model("r.j.payload.info")}) AS event_model,
        r.j.payload.rate_limits AS rate_limits
    FROM _cx_raw r JOIN _cx_files f ON f.read_path = r.filename
    WHERE NOT r.bad
), s AS (
    SELECT *,
        coalesce(first_value(meta_session IGNORE NULLS) OVER (PARTITION BY file),
                 carried_session,
                 regexp_extract(file, '([0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f-]{{4,}})', 1),
                 file) AS session_id,
        coalesce(first_value(meta_cwd IGNORE NULLS) OVER (PARTITION BY file), carried_cwd) AS cwd
    FROM e
), t AS (
    -- a line without a timestamp is skipped whole, as ccusage does: it moves no totals
    SELECT *,
        coalesce(last_value(tot IGNORE NULLS) OVER (PARTITION BY file ORDER BY rn
                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), carried) AS prev
    FROM s WHERE kind = 'event_msg' AND ptype = 'token_count' AND stamped
        AND (tot IS NOT NULL OR last IS NOT NULL)
), d AS (
    SELECT *,
        CASE WHEN last IS NOT NULL AND (tot IS NULL OR prev IS NULL OR tot IS DISTINCT FROM prev)
             THEN last
             WHEN prev IS NULL THEN tot
             -- a count missing on either side rose by 0 (greatest skips a NULL)
             ELSE {{{", ".join(f"'{c}': greatest(tot.{c} - prev.{c}, 0)" for c in _COUNT_NAMES)}}}
        END AS delta
    FROM t
), n AS (
    SELECT *, coalesce(delta.input_tokens, 0) AS gross,
        least(coalesce(delta.cached_input_tokens, 0), coalesce(delta.input_tokens, 0)) AS cached,
        coalesce(delta.output_tokens, 0) AS output_tokens,
        coalesce(delta.reasoning_output_tokens, 0) AS reasoning_tokens
    FROM d
)
SELECT rn, file, true AS counted, event_model AS said, carried_model, ts, session_id, cwd,
    gross - cached AS input_tokens, output_tokens, cached AS cache_read_tokens, reasoning_tokens,
    CASE WHEN tot.total_tokens IS NOT NULL THEN session_id || ':' || tot.total_tokens::VARCHAR
         ELSE 'h:' || session_id || ':' || h::VARCHAR END AS dedup_key,
    tot.total_tokens AS cum_total, rate_limits
FROM n WHERE gross + output_tokens + reasoning_tokens > 0
UNION ALL BY NAME
SELECT rn, file, false AS counted, ctx_model AS said, carried_model
FROM s WHERE ctx_model IS NOT NULL
"""

# the counted events with their model: the latest a line named up to them (a model named by an
# event that does not count, being a duplicate or empty, changes nothing: ccusage's rule)
_NEW = f"""
CREATE OR REPLACE TEMP TABLE _cx_new AS
SELECT * EXCLUDE (counted, said, carried_model) FROM (
    SELECT *, coalesce(last_value(said IGNORE NULLS) OVER (PARTITION BY file ORDER BY rn
                           ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW),
                       carried_model, '{FALLBACK_MODEL}') AS model
    FROM _cx_ev)
WHERE counted AND ts IS NOT NULL
"""


def _merge(
    conn: duckdb.DuckDBPyConnection,
    result: IngestResult,
    ready: list[F.Planned],
    overrides: dict[str, Price] | None,
) -> dict[str, dict[str, Any]]:
    from specwright.pricing import sql_cost

    conn.execute(_EVENTS)
    conn.execute(_NEW)
    before = conn.execute("SELECT count(*) FROM _cx_new").fetchall()[0][0]
    base = conn.execute(
        "SELECT coalesce(max(seq), 0) FROM usage_records WHERE source = ?", [SOURCE]
    ).fetchall()[0][0]
    _drop_replays(conn, base)
    models = [r[0] for r in conn.execute("SELECT DISTINCT model FROM _cx_new").fetchall()]
    stored = conn.execute(f"SELECT {STORED_PRICES}").fetchall()[0][0] or []
    used, unknown = insert_rates(conn, "_cx_rates", models, "openai", overrides, stored)
    result.unknown_models = unknown
    inserted = conn.execute(
        f"""INSERT INTO usage_records (id, source, dedup_key, session_id, project_path, file,
            model, ts, input_tokens, output_tokens, cache_read_tokens, cache_write_5m_tokens,
            cache_write_1h_tokens, reasoning_tokens, computed_cost_usd, provider, seq,
            imported_at, host)
        SELECT uuidv7(), '{SOURCE}', n.dedup_key, n.session_id, n.cwd, n.file, n.model, n.ts,
            n.input_tokens, n.output_tokens, n.cache_read_tokens, 0, 0, n.reasoning_tokens,
            {sql_cost("p", "n")}, p.provider, ? + n.rn, (now() AT TIME ZONE 'UTC'), ?
        FROM (SELECT *, 0 AS cache_write_5m_tokens, 0 AS cache_write_1h_tokens,
                     row_number() OVER (PARTITION BY dedup_key ORDER BY rn) AS k
              FROM _cx_new) n
        LEFT JOIN _cx_rates p ON p.model = n.model
        WHERE n.k = 1 AND NOT EXISTS (SELECT 1 FROM usage_records u
                                      WHERE u.source = '{SOURCE}' AND u.dedup_key = n.dedup_key)
        ORDER BY n.rn""",
        [base + 1, _host()],
    ).fetchall()
    result.imported = int(inserted[0][0]) if inserted else 0
    result.duplicates = int(before) - result.imported
    save_prices(conn, used, stored)
    _snapshot_rate_limits(conn)
    result.linked = link_executions(conn, SOURCE)
    # carry each file's running state (model, cumulative totals, session and its directory) to
    # the next run: an event with totals only is counted against them, and a tail without the
    # session_meta line stays in its session and project
    states: dict[str, dict[str, Any]] = {}
    stamped = "nullif(trim(r.j.timestamp), '') IS NOT NULL"
    for path, model, total, session, cwd, totals, *kept in conn.execute(
        f"""SELECT f.path,
            coalesce((SELECT arg_max(e.said, e.rn) FROM _cx_ev e
                      WHERE e.file = f.path AND e.said IS NOT NULL), f.model),
            coalesce((SELECT arg_max({_count("r.j.payload.info.total_token_usage.total_tokens")},
                                     r.rowid)
                      FROM _cx_raw r WHERE r.filename = f.read_path AND {stamped}
                        AND r.j.payload.info.total_token_usage IS NOT NULL), f.total),
            coalesce((SELECT arg_min(r.j.payload.id, r.rowid) FROM _cx_raw r
                      WHERE r.filename = f.read_path AND r.j.type = 'session_meta'), f.session),
            coalesce((SELECT arg_min(r.j.payload.cwd, r.rowid) FROM _cx_raw r
                      WHERE r.filename = f.read_path AND r.j.type = 'session_meta'), f.cwd),
            (SELECT arg_max({_bounded("r.j.payload.info.total_token_usage")}, r.rowid)
             FROM _cx_raw r WHERE r.filename = f.read_path AND {stamped}
               AND r.j.payload.info.total_token_usage IS NOT NULL),
            f.c_in, f.c_cached, f.c_out, f.c_reason
        FROM _cx_files f"""
    ).fetchall():
        carried = dict(zip(_COUNTS, kept, strict=True))
        latest = totals if isinstance(totals, dict) else {}
        states[path] = {
            "model": model,
            "total": total,
            "session": session,
            "cwd": cwd,
            "totals": {c: latest.get(c) if c in latest else carried[c] for c in _COUNTS},
        }
    return states


# A fork's first line is its ``session_meta``: it names the parent (``forked_from_id``, or a
# subagent's ``parent_thread_id``), and its time is the fork's
_FORKS = """
SELECT f.path, f.read_path, r.j.payload.id,
    coalesce(nullif(r.j.payload.forked_from_id, ''), nullif(json_extract_string(
        r.j.payload.source, '$.subagent.thread_spawn.parent_thread_id'), '')) AS parent,
    try_cast(r.j.timestamp AS TIMESTAMPTZ) AT TIME ZONE 'UTC'
FROM _cx_raw r JOIN _cx_files f ON f.read_path = r.filename
WHERE f.fresh AND r.j.type = 'session_meta' AND parent IS NOT NULL
  AND r.rowid = (SELECT min(x.rowid) FROM _cx_raw x WHERE x.filename = r.filename)
"""

# Codex writes a replayed history in one burst at the fork's instant, and the fork's own first
# turn after a real pause: ccusage measured bursts of 10-40 ms, then pauses of 6 to 15 seconds
_BURST_MS = 1000
_EPOCH = datetime(1970, 1, 1)
_USAGE = "input_tokens, cache_read_tokens, output_tokens, reasoning_tokens"


def _drop_replays(conn: duckdb.DuckDBPyConnection, base: int) -> None:
    """Drop from ``_cx_new`` the events a fork read from its start replayed from its parent, as
    ccusage does: its leading events equal to the parent's, in order, up to the fork's time;
    or, when the parent is unknown or its first event differs, a leading burst of events each
    within ``_BURST_MS`` of the one before. The parent's stream is its stored and new records: a
    parent that is itself a fork read in an earlier run lacks its own replay, so its fork falls
    back to the burst, which a replay is."""
    forks = conn.execute(_FORKS).fetchall()
    if not forks:
        return
    parents = sorted({parent for _, _, _, parent, _ in forks})
    streams: dict[str, list[tuple[datetime, tuple[int, ...]]]] = {}
    for session, ts, *counts in conn.execute(
        f"""SELECT session_id, ts, {_USAGE} FROM (
            SELECT session_id, ts, {_USAGE}, seq FROM usage_records
            WHERE source = '{SOURCE}' AND session_id IN (SELECT unnest(?))
            UNION ALL
            SELECT session_id, ts, {_USAGE}, ? + rn FROM (
                SELECT *, row_number() OVER (PARTITION BY dedup_key ORDER BY rn) AS k
                FROM _cx_new) n
            WHERE session_id IN (SELECT unnest(?)) AND k = 1
              AND NOT EXISTS (SELECT 1 FROM usage_records u
                              WHERE u.source = '{SOURCE}' AND u.dedup_key = n.dedup_key))
        ORDER BY session_id, seq""",
        [parents, base, parents],
    ).fetchall():
        streams.setdefault(session, []).append((ts, tuple(counts)))
    paths = [path for path, *_ in forks]
    events: dict[str, list[tuple[int, datetime, tuple[int, ...]]]] = {}
    for path, rn, ts, *counts in conn.execute(
        f"SELECT file, rn, ts, {_USAGE} FROM _cx_new WHERE file IN (SELECT unnest(?)) "
        "ORDER BY file, rn",
        [paths],
    ).fetchall():
        events.setdefault(path, []).append((rn, ts, tuple(counts)))
    # the first two usage lines of each fork, counted or not: a burst starts a replay
    firsts: dict[str, list[datetime]] = {}
    for read_path, stamps in conn.execute(
        """SELECT filename, list(ts ORDER BY rowid)[1:2] FROM (
            SELECT filename, rowid, try_cast(j.timestamp AS TIMESTAMPTZ) AT TIME ZONE 'UTC' AS ts
            FROM _cx_raw WHERE filename IN (SELECT unnest(?)) AND j.type = 'event_msg'
              AND j.payload.type = 'token_count' AND (j.payload.info.total_token_usage IS NOT NULL
                                                      OR j.payload.info.last_token_usage IS NOT NULL))
        WHERE ts IS NOT NULL GROUP BY filename""",
        [[read for _, read, *_ in forks]],
    ).fetchall():
        firsts[read_path] = stamps
    drop: list[int] = []
    for path, read_path, own, parent, forked_at in forks:
        stream = streams.get(parent, []) if parent != own else []
        cut = next((i for i, (ts, _) in enumerate(stream) if forked_at and ts > forked_at), None)
        prefix = [tokens for _, tokens in stream[:cut]]
        stamps = firsts.get(read_path, [])
        burst = stamps[0] if len(stamps) == 2 and _within(stamps[0], stamps[1]) else None
        matched, state = 0, "parent"
        for rn, ts, tokens in events.get(path, []):
            if state == "parent":
                if matched < len(prefix) and prefix[matched] == tokens:
                    matched += 1
                    drop.append(rn)
                    continue
                state = "burst" if matched == 0 and burst is not None else "own"
            if state == "burst":
                if burst is not None and _within(burst, ts):
                    burst = ts
                    drop.append(rn)
                    continue
                state = "own"
            break
    if drop:
        conn.execute("DELETE FROM _cx_new WHERE rn IN (SELECT unnest(?))", [drop])


def _within(before: datetime, after: datetime) -> bool:
    """``after`` is 0 to ``_BURST_MS`` ms after ``before`` (in whole ms, as ccusage counts)."""
    ms = timedelta(milliseconds=1)
    return 0 <= (after - _EPOCH) // ms - (before - _EPOCH) // ms <= _BURST_MS


def _snapshot_rate_limits(conn: duckdb.DuckDBPyConnection) -> None:
    """The newest rate-limit windows of each file read, as a ``codex-log`` snapshot."""
    rows = conn.execute(
        """SELECT arg_max(ts, rn), arg_max(rate_limits, rn), any_value(session_id)
        FROM _cx_new WHERE rate_limits IS NOT NULL GROUP BY file"""
    ).fetchall()
    if not rows:
        return
    from specwright.model import new_id

    F.insert_rows(
        conn,
        "INSERT INTO usage_snapshots (id, taken_at, source, provider, payload, kind, phase)",
        [
            (
                new_id(),
                ts,
                "codex-log",
                "codex",
                limits if isinstance(limits, str) else json.dumps(limits),
                "rate_limits",
                f"session:{session}",
            )
            for ts, limits, session in rows
        ],
    )


def _host() -> str:
    import socket

    return socket.gethostname()
