"""Codex CLI session logs (``$CODEX_HOME/sessions/**`` and ``archived_sessions/``) -> usage.

Each ``event_msg`` / ``token_count`` line carries the turn's ``last_token_usage`` and the
session's cumulative ``total_token_usage``; Codex repeats the last event now and then (a
rate-limit refresh), so an event whose cumulative total did not move is a duplicate. Codex's
``input_tokens`` include cached input: stored input is input minus cached, cached is a cache
read. The model comes from the latest ``turn_context`` (``gpt-5`` when none came yet, as
ccusage assumes). The rate-limit windows of the newest event of each file become a snapshot.
Read in bulk by DuckDB; the per-file running state (model, totals) carries over between runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specwright.usage import files as F
from specwright.usage.common import (
    STORED_PRICES,
    IngestResult,
    ingest_logs,
    insert_rates,
    link_executions,
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
_SHAPE = (
    '{"timestamp":"VARCHAR","type":"VARCHAR","payload":{"type":"VARCHAR","id":"VARCHAR",'
    '"model":"VARCHAR","cwd":"VARCHAR","rate_limits":"JSON",'
    f'"info":{{"total_token_usage":{_TOK},"last_token_usage":{_TOK},"model":"VARCHAR"}}}}}}'
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


def codex_roots(env: dict[str, str] | None = None) -> list[Path]:
    """``$CODEX_HOME`` (default ``~/.codex``) ``sessions/`` and ``archived_sessions/``."""
    env = dict(os.environ) if env is None else env
    home = Path(env.get("CODEX_HOME") or Path(env.get("HOME") or Path.home()) / ".codex")
    home = home.expanduser()
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
        temp_tables=("_cx_raw", "_cx_files", "_cx_new", "_cx_rates"),
        progress=progress,
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
        "restart BOOLEAN, model VARCHAR, total BIGINT, session VARCHAR, "
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
                st.get("model"),
                _carried(st.get("total")),
                st.get("session"),
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
        [[p.read_path for p in ready]],
    )
    out = conn.execute(
        """SELECT f.path, count(*) FILTER (WHERE NOT r.bad), count(*) FILTER (WHERE r.bad)
        FROM _cx_raw r JOIN _cx_files f ON f.read_path = r.filename GROUP BY f.path"""
    ).fetchall()
    return {r[0]: (int(r[1]), int(r[2])) for r in out}


_FLATTEN = f"""
CREATE OR REPLACE TEMP TABLE _cx_new AS
WITH e AS (
    SELECT r.rowid - (SELECT min(rowid) FROM _cx_raw) AS rn, f.path AS file, r.h,
        f.model AS carried_model, f.total AS carried_total, f.session AS carried_session,
        f.c_in, f.c_cached, f.c_out, f.c_reason,
        r.j.type AS kind, r.j.payload.type AS ptype,
        try_cast(r.j.timestamp AS TIMESTAMPTZ) AT TIME ZONE 'UTC' AS ts,
        CASE WHEN r.j.type = 'turn_context' THEN r.j.payload.model END AS ctx_model,
        CASE WHEN r.j.type = 'session_meta' THEN r.j.payload.id END AS meta_session,
        CASE WHEN r.j.type = 'session_meta' THEN r.j.payload.cwd END AS meta_cwd,
        {_bounded("r.j.payload.info.total_token_usage")} AS tot,
        {_bounded("r.j.payload.info.last_token_usage")} AS last,
        coalesce(r.j.payload.model, r.j.payload.info.model) AS event_model,
        r.j.payload.rate_limits AS rate_limits
    FROM _cx_raw r JOIN _cx_files f ON f.read_path = r.filename
    WHERE NOT r.bad
), s AS (
    SELECT *,
        coalesce(last_value(ctx_model IGNORE NULLS) OVER w, carried_model) AS cur_model,
        coalesce(first_value(meta_session IGNORE NULLS) OVER (PARTITION BY file),
                 carried_session,
                 regexp_extract(file, '([0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f-]{{4,}})', 1),
                 file) AS session_id,
        first_value(meta_cwd IGNORE NULLS) OVER (PARTITION BY file) AS cwd
    FROM e
    WINDOW w AS (PARTITION BY file ORDER BY rn ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
), t AS (
    SELECT *,
        coalesce(lag(tot.total_tokens) OVER (PARTITION BY file ORDER BY rn), carried_total)
            AS prev_total
    FROM s WHERE kind = 'event_msg' AND ptype = 'token_count'
        AND (tot IS NOT NULL OR last IS NOT NULL)
), d AS (
    SELECT *,
        CASE WHEN last IS NOT NULL THEN last
             ELSE {{'input_tokens': tot.input_tokens - coalesce(prev_in, c_in, 0),
                    'cached_input_tokens': tot.cached_input_tokens
                        - coalesce(prev_cached, c_cached, 0),
                    'output_tokens': tot.output_tokens - coalesce(prev_out, c_out, 0),
                    'reasoning_output_tokens': tot.reasoning_output_tokens
                        - coalesce(prev_reason, c_reason, 0),
                    'total_tokens': tot.total_tokens - coalesce(prev_total, 0)}} END AS delta
    FROM (SELECT *,
            lag(tot.input_tokens) OVER (PARTITION BY file ORDER BY rn) AS prev_in,
            lag(tot.cached_input_tokens) OVER (PARTITION BY file ORDER BY rn) AS prev_cached,
            lag(tot.output_tokens) OVER (PARTITION BY file ORDER BY rn) AS prev_out,
            lag(tot.reasoning_output_tokens) OVER (PARTITION BY file ORDER BY rn) AS prev_reason
          FROM t)
    WHERE tot IS NULL OR prev_total IS NULL OR tot.total_tokens <> prev_total
)
SELECT rn, file, ts, session_id, cwd,
    coalesce(event_model, cur_model, '{FALLBACK_MODEL}') AS model,
    greatest(coalesce(delta.input_tokens, 0) - coalesce(delta.cached_input_tokens, 0), 0)
        AS input_tokens,
    coalesce(delta.output_tokens, 0) AS output_tokens,
    coalesce(delta.cached_input_tokens, 0) AS cache_read_tokens,
    coalesce(delta.reasoning_output_tokens, 0) AS reasoning_tokens,
    CASE WHEN tot.total_tokens IS NOT NULL THEN session_id || ':' || tot.total_tokens::VARCHAR
         ELSE 'h:' || file || ':' || h::VARCHAR END AS dedup_key,
    tot.total_tokens AS cum_total, rate_limits
FROM d
WHERE ts IS NOT NULL
  AND (coalesce(delta.input_tokens, 0) + coalesce(delta.output_tokens, 0)
       + coalesce(delta.cached_input_tokens, 0) + coalesce(delta.reasoning_output_tokens, 0)) > 0
"""


def _merge(
    conn: duckdb.DuckDBPyConnection,
    result: IngestResult,
    ready: list[F.Planned],
    overrides: dict[str, Price] | None,
) -> dict[str, dict[str, Any]]:
    from specwright.pricing import sql_cost

    conn.execute(_FLATTEN)
    models = [r[0] for r in conn.execute("SELECT DISTINCT model FROM _cx_new").fetchall()]
    stored = conn.execute(f"SELECT {STORED_PRICES}").fetchall()[0][0] or []
    used, unknown = insert_rates(conn, "_cx_rates", models, "openai", overrides, stored)
    result.unknown_models = unknown
    base = conn.execute(
        "SELECT coalesce(max(seq), 0) FROM usage_records WHERE source = ?", [SOURCE]
    ).fetchall()[0][0]
    before = conn.execute("SELECT count(*) FROM _cx_new").fetchall()[0][0]
    inserted = conn.execute(
        f"""INSERT INTO usage_records (id, source, dedup_key, session_id, project_path, file,
            model, ts, input_tokens, output_tokens, cache_read_tokens, cache_write_5m_tokens,
            cache_write_1h_tokens, reasoning_tokens, computed_cost_usd, provider, seq,
            imported_at, host)
        SELECT uuidv7(), '{SOURCE}', n.dedup_key, n.session_id, n.cwd, n.file, n.model, n.ts,
            n.input_tokens, n.output_tokens, n.cache_read_tokens, 0, 0, n.reasoning_tokens,
            {sql_cost("p", "n")}, p.provider, ? + n.rn, now()::TIMESTAMP, ?
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
    # carry each file's running state (model, cumulative totals, session) to the next run: an
    # event with totals only is counted against them
    states: dict[str, dict[str, Any]] = {}
    for path, model, total, session, totals, c_in, c_cached, c_out, c_reason in conn.execute(
        f"""SELECT f.path,
            coalesce((SELECT arg_max(coalesce(r.j.payload.model), r.rowid) FROM _cx_raw r
                      WHERE r.filename = f.read_path AND r.j.type = 'turn_context'), f.model),
            coalesce((SELECT arg_max({_count("r.j.payload.info.total_token_usage.total_tokens")},
                                     r.rowid)
                      FROM _cx_raw r WHERE r.filename = f.read_path
                        AND r.j.payload.info.total_token_usage IS NOT NULL), f.total),
            coalesce((SELECT any_value(session_id) FROM _cx_new n WHERE n.file = f.path),
                     f.session),
            (SELECT arg_max({_bounded("r.j.payload.info.total_token_usage")}, r.rowid)
             FROM _cx_raw r WHERE r.filename = f.read_path
               AND r.j.payload.info.total_token_usage IS NOT NULL),
            f.c_in, f.c_cached, f.c_out, f.c_reason
        FROM _cx_files f"""
    ).fetchall():
        carried = dict(zip(_COUNTS, (c_in, c_cached, c_out, c_reason), strict=True))
        latest = totals if isinstance(totals, dict) else {}
        states[path] = {
            "model": model,
            "total": total,
            "session": session,
            "totals": {c: latest.get(c) if c in latest else carried[c] for c in _COUNTS},
        }
    return states


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
