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
        temp_tables=("_cl_new", "_cl_old", "_cl_rates"),
    )


# One scan, read and flattened in one statement: a malformed line comes back as NULL (kept as a
# ``bad`` row so it is counted), a line with ``"usage":{`` is parsed and flattened; ``keep`` marks
# the lines ccusage counts. The table's rowid is the line's order in the scan (``seq``). A line is
# hashed only when it has no message id (hashing every line cost as much as parsing it).
_STAGE = """
CREATE OR REPLACE TEMP TABLE _cl_new AS
WITH r AS (
    SELECT coalesce(map(?::VARCHAR[], ?::VARCHAR[])[filename], filename) AS file,
           json IS NULL AS bad, json,
           CASE WHEN json IS NOT NULL THEN json_transform(json, '{shape}') END AS j
    FROM read_ndjson_objects(?, ignore_errors = true, filename = true,
                             maximum_object_size = {max_bytes})
    WHERE json IS NULL OR contains(json, '"usage":{{')
), f AS (
    SELECT file, bad, json,
           (j.timestamp IS NOT NULL AND j.message.usage.input_tokens IS NOT NULL
            AND j.message.usage.output_tokens IS NOT NULL) AS direct, j
    FROM r
), g AS (
    SELECT file, bad, json, direct,
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
    SELECT *, try_cast(ts_raw AS TIMESTAMPTZ) AT TIME ZONE 'UTC' AS ts FROM g
)
SELECT
    file, bad,
    (NOT bad AND ts IS NOT NULL
     AND msg.usage.input_tokens IS NOT NULL AND msg.usage.output_tokens IS NOT NULL
     AND (version IS NULL OR regexp_matches(version, '^[0-9]+\\.[0-9]+\\.[0-9]'))
     AND (line_session IS NULL OR line_session <> '')
     AND (request_id IS NULL OR request_id <> '')
     AND (msg.id IS NULL OR msg.id <> '')
     AND (msg.model IS NULL OR msg.model <> '')) IS TRUE AS keep,
    ts, msg.id AS message_id, request_id, session_id, cwd AS project_path,
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
    CASE WHEN msg.id IS NULL THEN 'h:' || file || ':' || hash(json)::VARCHAR
         ELSE msg.id || chr(31) || coalesce(request_id, '') END AS dedup_key
FROM v
"""


def _stage(conn: duckdb.DuckDBPyConnection, ready: list[F.Planned]) -> dict[str, tuple[int, int]]:
    """Read and flatten the planned files into ``_cl_new``; returns path -> (usage lines,
    malformed lines)."""
    copies = [p for p in ready if p.read_path != p.path]
    conn.execute(
        _STAGE.format(shape=_SHAPE, max_bytes=F.max_object_size(ready, MAX_LINE_BYTES)),
        [
            [p.read_path for p in copies],
            [p.path for p in copies],
            [p.read_path for p in ready],
        ],
    )
    rows = conn.execute(
        "SELECT file, count(*) FILTER (WHERE NOT bad), count(*) FILTER (WHERE bad) "
        "FROM _cl_new GROUP BY file"
    ).fetchall()
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


_TOTAL = (
    "{t}.input_tokens + {t}.output_tokens + {t}.cache_read_tokens + {t}.cache_write_5m_tokens "
    "+ {t}.cache_write_1h_tokens"
)

# Stored records that compete with the new lines: same message id. Usually there are none (a
# first ingest, or appended lines of new messages), so they are only looked for (one scan of the
# message_id column) before being read whole.
_RIVALS = f"""
SELECT coalesce(max(seq), 0),
       count(*) FILTER (WHERE message_id IN (
           SELECT message_id FROM _cl_new WHERE keep AND message_id IS NOT NULL))
FROM usage_records WHERE source = '{SOURCE}'
"""
_OLD = f"""
CREATE OR REPLACE TEMP TABLE _cl_old AS
SELECT id, false AS is_new, seq, dedup_key, message_id, request_id,
       coalesce(is_sidechain, false) AS is_sidechain, {_TOTAL.format(t="u")} AS total,
       coalesce(reported_cost_usd, computed_cost_usd, 0) AS cost, speed IS NOT NULL AS fast
FROM usage_records u
WHERE source = '{SOURCE}'
  AND message_id IN (SELECT message_id FROM _cl_new WHERE keep AND message_id IS NOT NULL)
"""
_WITH_OLD = """
    UNION ALL
    SELECT id, is_new, seq, dedup_key, message_id, request_id, is_sidechain, total, cost, fast
    FROM _cl_old"""

# The dedupe, set-based: every candidate (new line or stored record) gets its group key; the
# first of each group by ccusage's preference wins. A sidechain copy of a message that also has
# a non-sidechain line has no group: it never wins.
_RANKED = """
c AS (
    SELECT NULL::UUID AS id, true AS is_new, n.rowid AS seq, n.dedup_key, n.message_id,
           n.request_id, n.is_sidechain, {total} AS total,
           coalesce(n.reported_cost_usd,
                    CASE WHEN {total} = 0 THEN 0.0 ELSE {cost} END, 0) AS cost,
           n.speed IS NOT NULL AS fast
    FROM _cl_new n LEFT JOIN _cl_rates p ON p.model = n.model
    WHERE n.keep {new_filter}{old}
), main AS (
    SELECT DISTINCT message_id FROM c WHERE NOT is_sidechain AND message_id IS NOT NULL
), k AS (
    SELECT c.*, CASE
        WHEN c.message_id IS NULL THEN 'u:' || c.dedup_key
        WHEN c.is_sidechain AND c.message_id IN (SELECT message_id FROM main) THEN NULL
        WHEN c.is_sidechain THEN 'm:' || c.message_id
        ELSE 'r:' || c.dedup_key END AS gk
    FROM c
), w AS (
    SELECT id, is_new, seq, gk IS NOT NULL AND row_number() OVER (
            PARTITION BY gk ORDER BY is_sidechain, total DESC, cost DESC, fast DESC, is_new, seq
        ) = 1 AS wins
    FROM k
)"""

# a line without a message id is keyed by its hash: skip it when a stored record has that key
_NOT_STORED = f"""
        WHERE NOT (n.message_id IS NULL AND n.dedup_key IN (
            SELECT dedup_key FROM usage_records
            WHERE source = '{SOURCE}' AND message_id IS NULL))"""


def _merge(
    conn: duckdb.DuckDBPyConnection, result: IngestResult, overrides: dict[str, Price] | None
) -> None:
    from specwright.pricing import sql_cost

    kept, without_id, models = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE message_id IS NULL), list(DISTINCT model) "
        "FROM _cl_new WHERE keep"
    ).fetchall()[0]
    used, unknown = insert_rates(conn, "_cl_rates", list(models or []), "anthropic", overrides)
    result.unknown_models = unknown
    cost = sql_cost("p", "n")
    total = _TOTAL.format(t="n")
    base, rivals = conn.execute(_RIVALS).fetchall()[0]
    old = ""
    if rivals:
        conn.execute(_OLD)
        old = _WITH_OLD
        # stored records beaten by a new line are replaced: ranked within their groups only
        ranked = _RANKED.format(
            total=total,
            cost=cost,
            new_filter="AND n.message_id IN (SELECT message_id FROM _cl_old)",
            old=old,
        )
        deleted = conn.execute(
            f"""DELETE FROM usage_records WHERE id IN (
                WITH {ranked} SELECT id FROM w WHERE NOT is_new AND NOT wins)"""
        ).fetchall()
        result.replaced = int(deleted[0][0]) if deleted else 0
    ranked = _RANKED.format(total=total, cost=cost, new_filter="", old=old)
    inserted = conn.execute(
        f"""INSERT INTO usage_records (id, source, dedup_key, message_id, request_id,
            session_id, project_path, file, model, ts, input_tokens, output_tokens,
            cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens, reasoning_tokens,
            reported_cost_usd, computed_cost_usd, is_sidechain, speed, provider, seq,
            imported_at, host)
        WITH {ranked}
        SELECT uuidv7(), '{SOURCE}', n.dedup_key, n.message_id, n.request_id, n.session_id,
            n.project_path, n.file, n.model, n.ts, n.input_tokens, n.output_tokens,
            n.cache_read_tokens, n.cache_write_5m_tokens, n.cache_write_1h_tokens, 0,
            n.reported_cost_usd,
            CASE WHEN {total} = 0 THEN 0.0 ELSE {cost} END,
            n.is_sidechain, n.speed, p.provider, ? + n.rowid, now()::TIMESTAMP, ?
        FROM _cl_new n
        SEMI JOIN (SELECT seq FROM w WHERE is_new AND wins) x ON x.seq = n.rowid
        LEFT JOIN _cl_rates p ON p.model = n.model{_NOT_STORED if without_id else ""}
        ORDER BY n.rowid""",
        [base + 1, _host()],
    ).fetchall()
    result.imported = int(inserted[0][0]) if inserted else 0
    result.duplicates = int(kept) - result.imported
    save_prices(conn, used)
    result.linked = link_executions(conn, SOURCE)


def _host() -> str:
    import socket

    return socket.gethostname()
