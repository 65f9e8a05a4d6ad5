"""Claude Code logs (``projects/**/*.jsonl``) -> ``usage_records``, in bulk, like ccusage counts.

Read with DuckDB's own NDJSON reader (``read_ndjson_objects``: one row per line, NULL for a
malformed line, so bad lines are counted and good ones never lost), then a set-based dedupe
that follows ccusage 20 (``adapter/claude``):

- a line counts when it has ``"usage":{`` and parses as an assistant entry (``message.usage``
  with input and output tokens) or an ``agent_progress`` entry carrying one;
- lines of one reply share message id + request id: keep one, preferring a non-sidechain line,
  then the most tokens, then the highest cost, then one with ``speed``, then the first seen;
- a sidechain line replaying a parent message (same message id, new request id) is dropped;
- cache writes come from ``cache_creation.ephemeral_5m/1h_input_tokens`` when present, else all
  of ``cache_creation_input_tokens`` are 5-minute writes; ``costUSD`` is the reported cost.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from specwright.usage import files as F
from specwright.usage.common import (
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

SOURCE = "claude-code"
MAX_LINE_BYTES = 256 * 1024 * 1024

_USAGE = (
    '{"input_tokens":"UBIGINT","output_tokens":"UBIGINT",'
    '"cache_creation_input_tokens":"UBIGINT","cache_read_input_tokens":"UBIGINT",'
    '"speed":"VARCHAR","cache_creation":{"ephemeral_5m_input_tokens":"UBIGINT",'
    '"ephemeral_1h_input_tokens":"UBIGINT"}}'
)
_SHAPE = (
    '{"timestamp":"VARCHAR","sessionId":"VARCHAR","cwd":"VARCHAR","version":"VARCHAR",'
    '"requestId":"VARCHAR","isSidechain":"BOOLEAN","costUSD":"DOUBLE",'
    f'"message":{{"id":"VARCHAR","model":"VARCHAR","usage":{_USAGE}}},'
    '"data":{"message":{"timestamp":"VARCHAR","requestId":"VARCHAR","isSidechain":"BOOLEAN",'
    f'"costUSD":"DOUBLE","message":{{"id":"VARCHAR","model":"VARCHAR","usage":{_USAGE}}}}}}}}}'
)


def claude_roots(env: dict[str, str] | None = None) -> list[Path]:
    """Where Claude Code keeps its logs: ``$CLAUDE_CONFIG_DIR`` (comma-separated, each a config
    dir or its ``projects/``), else ``$XDG_CONFIG_HOME/claude`` and ``~/.claude``."""
    env = dict(os.environ) if env is None else env
    roots: list[Path] = []
    raw = env.get("CLAUDE_CONFIG_DIR", "")
    if raw.strip():
        for part in (p.strip() for p in raw.split(",")):
            if not part:
                continue
            path = Path(part).expanduser()
            if path.name == "projects" and path.is_dir():
                roots.append(path)
            else:
                roots.append(path / "projects")
        return [r for r in roots if r.is_dir()]
    home = Path(env.get("HOME") or Path.home())
    xdg = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    for base in (xdg / "claude", home / ".claude"):
        if (base / "projects").is_dir():
            roots.append(base / "projects")
    return roots


def ingest(
    store: Store,
    roots: list[Path] | None = None,
    *,
    overrides: dict[str, Price] | None = None,
) -> IngestResult:
    """Import new lines of Claude Code logs under ``roots`` (default: ``claude_roots()``)."""
    return ingest_logs(
        store,
        SOURCE,
        claude_roots() if roots is None else roots,
        stage=_stage,
        merge=lambda conn, result, _ready: _merge(conn, result, overrides),
        temp_tables=("_cl_raw", "_cl_files", "_cl_new", "_cl_cand", "_cl_rates"),
    )


def _stage(conn: duckdb.DuckDBPyConnection, ready: list[F.Planned]) -> dict[str, tuple[int, int]]:
    """Read the planned files into ``_cl_raw``; returns path -> (usage lines, malformed lines)."""
    conn.execute("CREATE OR REPLACE TEMP TABLE _cl_files (read_path VARCHAR, path VARCHAR)")
    F.insert_rows(conn, "INSERT INTO _cl_files", [(p.read_path, p.path) for p in ready])
    # One scan: a malformed line comes back as NULL, a usage line is parsed into a struct.
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE _cl_raw AS
        SELECT filename, json IS NULL AS bad, hash(json) AS h,
               CASE WHEN json IS NOT NULL THEN json_transform(json, '{_SHAPE}') END AS j
        FROM read_ndjson_objects(?, ignore_errors = true, filename = true,
                                 maximum_object_size = {MAX_LINE_BYTES})
        WHERE json IS NULL OR contains(json, '"usage":{{')""",
        [[p.read_path for p in ready]],
    )
    rows = conn.execute(
        """SELECT f.path, count(*) FILTER (WHERE NOT r.bad), count(*) FILTER (WHERE r.bad)
        FROM _cl_raw r JOIN _cl_files f ON f.read_path = r.filename GROUP BY f.path"""
    ).fetchall()
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


_FLATTEN = """
CREATE OR REPLACE TEMP TABLE _cl_new AS
WITH f AS (
    SELECT r.rowid - (SELECT min(rowid) FROM _cl_raw) AS rn, m.path AS file, r.h,
           (r.j.timestamp IS NOT NULL AND r.j.message.usage.input_tokens IS NOT NULL
            AND r.j.message.usage.output_tokens IS NOT NULL) AS direct,
           r.j
    FROM _cl_raw r JOIN _cl_files m ON m.read_path = r.filename
    WHERE NOT r.bad
), g AS (
    SELECT rn, file, h, direct,
        CASE WHEN direct THEN j.timestamp ELSE j.data.message.timestamp END AS ts_raw,
        CASE WHEN direct THEN j.message ELSE j.data.message.message END AS msg,
        CASE WHEN direct THEN j.requestId ELSE j.data.message.requestId END AS request_id,
        CASE WHEN direct THEN j.isSidechain ELSE j.data.message.isSidechain END AS is_sidechain,
        CASE WHEN direct THEN j.costUSD ELSE j.data.message.costUSD END AS cost_usd,
        CASE WHEN direct THEN j.version END AS version,
        CASE WHEN direct THEN j.sessionId END AS line_session,
        j.sessionId AS session_id, j.cwd AS cwd
    FROM f
), v AS (
    SELECT *, try_cast(ts_raw AS TIMESTAMPTZ) AT TIME ZONE 'UTC' AS ts
    FROM g
    WHERE msg.usage.input_tokens IS NOT NULL AND msg.usage.output_tokens IS NOT NULL
      AND (version IS NULL OR regexp_matches(version, '^[0-9]+\\.[0-9]+\\.[0-9]'))
      AND (line_session IS NULL OR line_session <> '')
      AND (request_id IS NULL OR request_id <> '')
      AND (msg.id IS NULL OR msg.id <> '')
      AND (msg.model IS NULL OR msg.model <> '')
)
SELECT
    rn, file, ts,
    msg.id AS message_id, request_id, session_id, cwd AS project_path,
    CASE WHEN msg.usage.speed = 'fast' THEN msg.model || '-fast' ELSE msg.model END AS model,
    msg.usage.speed AS speed,
    coalesce(is_sidechain, false) AS is_sidechain,
    msg.usage.input_tokens::BIGINT AS input_tokens,
    msg.usage.output_tokens::BIGINT AS output_tokens,
    coalesce(msg.usage.cache_read_input_tokens, 0)::BIGINT AS cache_read_tokens,
    (CASE WHEN msg.usage.cache_creation IS NOT NULL
          THEN coalesce(msg.usage.cache_creation.ephemeral_5m_input_tokens, 0)
          ELSE coalesce(msg.usage.cache_creation_input_tokens, 0) END)::BIGINT
        AS cache_write_5m_tokens,
    (CASE WHEN msg.usage.cache_creation IS NOT NULL
          THEN coalesce(msg.usage.cache_creation.ephemeral_1h_input_tokens, 0)
          ELSE 0 END)::BIGINT AS cache_write_1h_tokens,
    cost_usd AS reported_cost_usd,
    CASE WHEN msg.id IS NULL THEN 'h:' || file || ':' || h::VARCHAR
         ELSE msg.id || chr(31) || coalesce(request_id, '') END AS dedup_key
FROM v WHERE ts IS NOT NULL
"""

# Candidates: the new lines plus stored records sharing a message id; one winner per group.
_CANDIDATES = """
CREATE OR REPLACE TEMP TABLE _cl_cand AS
WITH priced AS (
    SELECT n.*,
        CASE WHEN n.input_tokens + n.output_tokens + n.cache_read_tokens
                  + n.cache_write_5m_tokens + n.cache_write_1h_tokens = 0 THEN 0.0
             ELSE {cost} END AS computed_cost_usd
    FROM _cl_new n LEFT JOIN _cl_rates p ON p.model = n.model
), c AS (
    SELECT NULL::UUID AS id, true AS is_new, rn AS seq, dedup_key, message_id, request_id,
           is_sidechain, input_tokens + output_tokens + cache_read_tokens
               + cache_write_5m_tokens + cache_write_1h_tokens AS total,
           coalesce(reported_cost_usd, computed_cost_usd, 0) AS cost, speed IS NOT NULL AS fast
    FROM priced
    UNION ALL
    SELECT id, false, seq, dedup_key, message_id, request_id,
           coalesce(is_sidechain, false), input_tokens + output_tokens + cache_read_tokens
               + cache_write_5m_tokens + cache_write_1h_tokens,
           coalesce(reported_cost_usd, computed_cost_usd, 0), speed IS NOT NULL
    FROM usage_records
    WHERE source = '{source}'
      AND message_id IN (SELECT message_id FROM _cl_new WHERE message_id IS NOT NULL)
), k AS (
    SELECT *, CASE
        WHEN message_id IS NULL THEN 'u:' || dedup_key
        WHEN is_sidechain AND message_id IN (SELECT message_id FROM c WHERE NOT is_sidechain)
            THEN NULL
        WHEN is_sidechain THEN 'm:' || message_id
        ELSE 'r:' || dedup_key END AS gk
    FROM c
)
SELECT *, gk IS NOT NULL AND row_number() OVER (
        PARTITION BY gk ORDER BY is_sidechain, total DESC, cost DESC, fast DESC, is_new, seq
    ) = 1 AS wins
FROM k
"""


def _merge(
    conn: duckdb.DuckDBPyConnection, result: IngestResult, overrides: dict[str, Price] | None
) -> None:
    from specwright.pricing import sql_cost

    conn.execute(_FLATTEN)
    models = [r[0] for r in conn.execute("SELECT DISTINCT model FROM _cl_new").fetchall()]
    used, unknown = insert_rates(conn, "_cl_rates", models, "anthropic", overrides)
    result.unknown_models = unknown
    conn.execute(_CANDIDATES.format(cost=sql_cost("p", "n"), source=SOURCE))
    base = conn.execute(
        "SELECT coalesce(max(seq), 0) FROM usage_records WHERE source = ?", [SOURCE]
    ).fetchall()[0][0]
    dropped = conn.execute(
        "SELECT count(*) FILTER (WHERE is_new AND NOT wins), "
        "count(*) FILTER (WHERE NOT is_new AND NOT wins) FROM _cl_cand"
    ).fetchall()[0]
    result.duplicates = int(dropped[0])
    result.replaced = int(dropped[1])
    conn.execute(
        "DELETE FROM usage_records WHERE id IN "
        "(SELECT id FROM _cl_cand WHERE NOT is_new AND NOT wins)"
    )
    inserted = conn.execute(
        f"""INSERT INTO usage_records (id, source, dedup_key, message_id, request_id,
            session_id, project_path, file, model, ts, input_tokens, output_tokens,
            cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens, reasoning_tokens,
            reported_cost_usd, computed_cost_usd, is_sidechain, speed, provider, seq,
            imported_at, host)
        SELECT uuidv7(), '{SOURCE}', n.dedup_key, n.message_id, n.request_id, n.session_id,
            n.project_path, n.file, n.model, n.ts, n.input_tokens, n.output_tokens,
            n.cache_read_tokens, n.cache_write_5m_tokens, n.cache_write_1h_tokens, 0,
            n.reported_cost_usd,
            CASE WHEN n.input_tokens + n.output_tokens + n.cache_read_tokens
                      + n.cache_write_5m_tokens + n.cache_write_1h_tokens = 0 THEN 0.0
                 ELSE {sql_cost("p", "n")} END,
            n.is_sidechain, n.speed, p.provider, ? + n.rn, now()::TIMESTAMP, ?
        FROM _cl_new n
        JOIN _cl_cand c ON c.is_new AND c.seq = n.rn AND c.wins
        LEFT JOIN _cl_rates p ON p.model = n.model
        WHERE NOT EXISTS (SELECT 1 FROM usage_records u
                          WHERE u.source = '{SOURCE}' AND u.dedup_key = n.dedup_key
                            AND n.message_id IS NULL)
        ORDER BY n.rn""",
        [base + 1, _host()],
    ).fetchall()
    result.imported = int(inserted[0][0]) if inserted else 0
    save_prices(conn, used)
    result.linked = link_executions(conn, SOURCE)


def _host() -> str:
    import socket

    return socket.gethostname()
