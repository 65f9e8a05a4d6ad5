"""Claude Code logs (``projects/**/*.jsonl``) -> ``usage_records``, in bulk, like ccusage counts.

Read with DuckDB's own NDJSON reader (``read_ndjson_objects``: one row per line, NULL for a
malformed line, so bad lines are counted and good ones never lost); small files and new tails
from a few shared copies (``GROUP_BELOW``, ``F.readable``: the reader pays per file), big files
in place; a later run with little new (``IN_MEMORY_BYTES``) reads the new lines in Python:
parsed with msgspec (``claude_lines``) when every line is in a shape it reads exactly as the
stage below does, else handed to DuckDB, trimmed and validated exactly as its reader does. Then
a dedupe that follows ccusage 20 (``adapter/claude``), set-based in SQL, or for the few rows of
a later run in Python (``pick``, the same rules):

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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specwright.usage import files as F
from specwright.usage.claude_lines import Candidate, counts, insert, lines_of, parse, pick
from specwright.usage.common import (
    COPY_RANK,
    LINKABLE,
    RATES_SQL,
    STORED_PRICES,
    IngestResult,
    ingest_logs,
    link_executions,
    rate_columns,
    rates_by_model,
    reprice_unpriced,
    save_prices,
)

if TYPE_CHECKING:
    import duckdb

    from specwright.config import Price
    from specwright.store import Store

SOURCE = "claude-code"
MAX_LINE_BYTES = 256 * 1024 * 1024
# A later run with at most this many new bytes reads them in Python and hands DuckDB the lines:
# DuckDB's reader costs a fixed part per file (a temp copy of each tail, a buffer, a task) but
# parses in parallel, so it is ahead again from about 2 MB of new lines (measured with 1, 20
# and 80 files). More, and every first ingest, go through the reader.
IN_MEMORY_BYTES = 2 << 20
# Files smaller than this (and every part of a file) are read from shared copies (``F.readable``):
# DuckDB's reader pays ~0.3 ms for each file it reads, copying costs ~0.7 ms a MB.
GROUP_BELOW = 256 << 10
# A later run that stages at most this many rows merges them in Python (``pick``): below it,
# fetching the rows costs less than planning the set-based merge. Measured with 1% more lines:
# ~1,200 rows at 200 MB, ~7% faster in Python; ~5,800 at 1 GB, ~25% slower. A first ingest always
# merges in SQL.
SMALL_MERGE_ROWS = 2_000
# Such a run reads its lines with msgspec (``claude_lines``) when they are in the shape it reads
# exactly as DuckDB's stage does: 1% more lines of a 200 MB corpus staged in ~7 ms instead of
# ~35, the whole run ~62 -> ~51 ms (the INSERT then binds its columns from Python; ~40-45 ms
# with the structs untracked by the collector, see ``claude_lines``).
PARSE_IN_PYTHON = True

_USAGE = (
    '{"input_tokens":"UBIGINT","output_tokens":"UBIGINT",'
    '"cache_creation_input_tokens":"UBIGINT","cache_read_input_tokens":"UBIGINT",'
    '"speed":"VARCHAR","cache_creation":{"ephemeral_5m_input_tokens":"UBIGINT",'
    '"ephemeral_1h_input_tokens":"UBIGINT"}}'
)
# A line's own fields; an ``agent_progress`` line carries the same under ``data.message``.
_SHAPE = (
    '{"timestamp":"VARCHAR","sessionId":"VARCHAR","cwd":"VARCHAR","version":"VARCHAR",'
    '"requestId":"VARCHAR","isSidechain":"BOOLEAN","costUSD":"DOUBLE",'
    f'"message":{{"id":"VARCHAR","model":"VARCHAR","usage":{_USAGE}}}}}'
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
            # a relative one is made absolute: a file keeps its name from any folder
            path = Path(os.path.abspath(Path(part).expanduser()))
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
    progress: Callable[[str], None] | None = None,
) -> IngestResult:
    """Import new lines of Claude Code logs under ``roots`` (default: ``claude_roots()``);
    ``progress`` as for ``ingest_logs``."""
    run = _Run(overrides)
    return ingest_logs(
        store,
        SOURCE,
        claude_roots() if roots is None else roots,
        stage=run.stage,
        merge=run.merge,
        temp_tables=("_cl_new",),
        in_memory=IN_MEMORY_BYTES,
        group_below=GROUP_BELOW,
        progress=progress,
        reprice=lambda conn: reprice_unpriced(conn, SOURCE, "anthropic", overrides),
    )


# The lines to stage: those with ``"usage":{`` and the malformed ones (``json`` NULL), in order,
# and the marker lines of ranges copied into a shared file (``F.readable``; a range copied to a
# file of its own is named by the map). DuckDB's reader gives one row per line, ``json`` NULL
# for a malformed line:
_READ_FILES = """
    SELECT coalesce(map(?::VARCHAR[], ?::VARCHAR[])[filename], filename) AS file, json
    FROM read_ndjson_objects(?, ignore_errors = true, filename = true,
                             maximum_object_size = {max_bytes})
    WHERE json IS NULL OR contains(json, '"usage":{{'){marks}"""

# the same from lines split in Python (``claude_lines.lines_of``; one text per file), validated
# as the reader does; only a line without ``"usage":{`` is validated before the filter (one
# pass over most)
_READ_LINES = """
    SELECT file, CASE WHEN json_valid(line) THEN line END AS json
    FROM (SELECT file, unnest(string_split(text, chr(10))) AS line
          FROM (SELECT unnest(?::VARCHAR[]) AS file, unnest(?::VARCHAR[]) AS text))
    WHERE contains(line, '"usage":{') OR NOT json_valid(line)"""

# One scan, read and flattened in one statement: a malformed line comes back as NULL (kept as a
# ``bad`` row so it is counted), a line with ``"usage":{`` is parsed and flattened (a line that
# is not an assistant entry is parsed again at ``data.message``: an agent_progress entry); ``keep``
# marks the lines ccusage counts. The table's rowid keeps the lines' order in the scan (less the
# markers of shared copies: ``pos``, set by ``_PLACE``); ``seq`` counts on from the first staged
# line, which ``_INFO`` reads. A line is hashed only when it has no message id (hashing every line
# cost as much as parsing it). A token count of 2**53 or more (``_count``: beyond any real reply,
# and where sums of them could overflow BIGINT) reads as missing (no input or output count: the
# line is not kept; a cache count: 0) rather than failing every later run.
_STAGE = """
CREATE OR REPLACE TEMP TABLE _cl_new AS
WITH r AS (
    SELECT file, json IS NULL AS bad, json,
           CASE WHEN json IS NOT NULL THEN json_transform(json, '{shape}') END AS a
    FROM ({lines})
), d AS (
    SELECT *, (a.timestamp IS NOT NULL AND a.message.usage.input_tokens IS NOT NULL
               AND a.message.usage.output_tokens IS NOT NULL) AS direct
    FROM r
), e AS (
    SELECT file, bad, json, a.sessionId AS session_id, a.cwd AS cwd,
           CASE WHEN direct THEN a.version END AS version,
           CASE WHEN direct THEN a.sessionId END AS line_session,
           CASE WHEN direct THEN a
                ELSE json_transform(json_extract(json, '$.data.message'), '{shape}') END AS e
    FROM d
), v AS (
    SELECT file, bad, json, session_id, cwd, version, line_session, e.message AS msg,
           e.requestId AS request_id, e.isSidechain AS is_sidechain, e.costUSD AS cost_usd,
           try_cast(e.timestamp AS TIMESTAMPTZ) AT TIME ZONE 'UTC' AS ts,
           {count_in} AS input_tokens, {count_out} AS output_tokens
    FROM e
)
SELECT
    file, bad, {mark}::VARCHAR AS mark, NULL::BIGINT AS pos,
    (NOT bad AND ts IS NOT NULL AND input_tokens IS NOT NULL AND output_tokens IS NOT NULL
     AND (version IS NULL OR regexp_matches(version, '^[0-9]+\\.[0-9]+\\.[0-9]'))
     AND (line_session IS NULL OR line_session <> '')
     AND (request_id IS NULL OR request_id <> '')
     AND (msg.id IS NULL OR msg.id <> '')
     AND (msg.model IS NULL OR msg.model <> '')) IS TRUE AS keep,
    ts, msg.id AS message_id, request_id, session_id, cwd AS project_path,
    CASE WHEN msg.usage.speed = 'fast' THEN msg.model || '-fast' ELSE msg.model END AS model,
    msg.usage.speed AS speed,
    coalesce(is_sidechain, false) AS is_sidechain,
    input_tokens,
    output_tokens,
    coalesce({count_read}, 0) AS cache_read_tokens,
    coalesce({count_5m}, 0) AS cache_write_5m_tokens,
    coalesce({count_1h}, 0) AS cache_write_1h_tokens,
    cost_usd AS reported_cost_usd,
    CASE WHEN msg.id IS NULL THEN 'h:' || file || ':' || hash(json)::VARCHAR
         ELSE msg.id || chr(31) || coalesce(request_id, '') END AS dedup_key
FROM v
"""
_COUNT_BELOW = 2**53


def _count(field: str) -> str:
    """A token count (UBIGINT) as BIGINT, NULL from ``_COUNT_BELOW`` on."""
    return f"CASE WHEN {field} < {_COUNT_BELOW} THEN {field}::BIGINT END"


_STAGE = (
    _STAGE.replace("{count_in}", _count("e.message.usage.input_tokens"))
    .replace("{count_out}", _count("e.message.usage.output_tokens"))
    .replace("{count_read}", _count("msg.usage.cache_read_input_tokens"))
    .replace(
        "{count_5m}",
        _count(
            "CASE WHEN msg.usage.cache_creation IS NOT NULL"
            " THEN msg.usage.cache_creation.ephemeral_5m_input_tokens"
            " ELSE msg.usage.cache_creation_input_tokens END"
        ),
    )
    .replace("{count_1h}", _count("msg.usage.cache_creation.ephemeral_1h_input_tokens"))
)


# The lines of ranges read from a shared copy take their file from the marker line before them
# (an as-of join on row ids; a hashed key names the file too), and every line after a marker a
# position that does not count the markers (``pos``: what a row id would be without them; NULL
# where it is the row id), so ``seq`` is the same however the lines were read. Then the markers go.
_PLACE = """
UPDATE _cl_new SET
    file = CASE WHEN _cl_new.file = m.file THEN m.path ELSE _cl_new.file END,
    pos = _cl_new.rowid - m.k
FROM (
    SELECT n.rowid AS r, m.file, m.path, m.k
    FROM _cl_new n ASOF JOIN (
        SELECT c.file, c.rowid AS start, k.path, row_number() OVER (ORDER BY c.rowid) AS k
        FROM _cl_new c JOIN (SELECT unnest(?::VARCHAR[]) AS mark, unnest(?::VARCHAR[]) AS path) k
            ON c.mark = k.mark) m
    ON n.rowid >= m.start
    WHERE n.mark IS NULL) m
WHERE _cl_new.rowid = m.r
"""
_PLACE_HASHED = """
UPDATE _cl_new SET dedup_key = 'h:' || file || ':' || regexp_extract(dedup_key, '[0-9]+$')
WHERE message_id IS NULL AND NOT starts_with(dedup_key, 'h:' || file || ':')
"""

# What the merge needs to know, in one statement: lines and malformed lines per file, and the
# first staged row id (the rows of a table not yet committed are numbered from DuckDB's
# transaction-local base, ~2**55, not from 0); kept lines, those without a message id, their
# models; the last stored seq and how many stored records share a message id with a kept line
# (one scan of two columns); whether there are executions to link to; the stored prices.
_INFO = f"""
SELECT
    (SELECT (list((file, lines, bad)), min(first)) FROM (
        SELECT file, count(*) FILTER (WHERE NOT bad) AS lines, count(*) FILTER (WHERE bad) AS bad,
               min(coalesce(pos, rowid)) AS first
        FROM _cl_new GROUP BY file)),
    (SELECT (count(*), count(*) FILTER (WHERE message_id IS NULL), list(DISTINCT model))
     FROM _cl_new WHERE keep),
    (SELECT (coalesce(max(seq), 0), count(*) FILTER (WHERE message_id IN (
                SELECT message_id FROM _cl_new WHERE keep AND message_id IS NOT NULL)))
     FROM usage_records WHERE source = '{SOURCE}'),
    {LINKABLE},
    {STORED_PRICES}
"""

_TOTAL = (
    "{t}.input_tokens + {t}.output_tokens + {t}.cache_read_tokens + {t}.cache_write_5m_tokens "
    "+ {t}.cache_write_1h_tokens"
)

# Stored records that compete with the new lines: same message id (``_INFO`` counts them first:
# usually there are none, and they are not read).
_OLD = f"""
CREATE OR REPLACE TEMP TABLE _cl_old AS
SELECT id, false AS is_new, seq, dedup_key, message_id, coalesce(is_sidechain, false) AS is_sidechain,
       {_TOTAL.format(t="u")} AS total,
       coalesce(reported_cost_usd, computed_cost_usd, 0) AS cost, speed IS NOT NULL AS fast
FROM usage_records u
WHERE source = '{SOURCE}'
  AND message_id IN (SELECT message_id FROM _cl_new WHERE keep AND message_id IS NOT NULL)
"""
_WITH_OLD = """
    UNION ALL
    SELECT id, is_new, seq, dedup_key, message_id, is_sidechain, total, cost, fast FROM _cl_old"""

# a line without a message id is keyed by its hash: skip it when a stored record has that key
_NOT_STORED = f"""
      AND NOT (n.message_id IS NULL AND n.dedup_key IN (
          SELECT dedup_key FROM usage_records WHERE source = '{SOURCE}' AND message_id IS NULL))"""

# The dedupe, set-based: every candidate (new line ``c`` with its rates ``p`` and cost, or stored
# record) gets its group key; the first of each group by ccusage's preference wins (``w``; a
# grouped arg_min, ordered by a key that sorts like ORDER BY is_sidechain, total DESC, cost DESC,
# fast DESC, is_new, seq — cheaper than a window). A sidechain copy of a message that also has a
# non-sidechain line has no group: it never wins.
_RANKED = """
p AS ({rates}),
c AS (
    SELECT coalesce(n.pos, n.rowid) AS seq, n.dedup_key, n.message_id, n.request_id,
           n.session_id, n.project_path, n.file, n.model, n.ts, n.input_tokens, n.output_tokens,
           n.cache_read_tokens, n.cache_write_5m_tokens, n.cache_write_1h_tokens,
           n.reported_cost_usd, n.is_sidechain, n.speed, p.provider, {total} AS total,
           CASE WHEN {total} = 0 THEN 0.0 ELSE {cost} END AS computed
    FROM _cl_new n LEFT JOIN p ON p.model = n.model
    WHERE n.keep{not_stored}
), r AS (
    SELECT NULL::UUID AS id, true AS is_new, seq, dedup_key, message_id, is_sidechain, total,
           coalesce(reported_cost_usd, computed, 0) AS cost, speed IS NOT NULL AS fast
    FROM c{old}
), main AS (
    SELECT DISTINCT message_id FROM r WHERE NOT is_sidechain AND message_id IS NOT NULL
), k AS (
    SELECT *, CASE
        WHEN message_id IS NULL THEN 'u:' || dedup_key
        WHEN is_sidechain AND message_id IN (SELECT message_id FROM main) THEN NULL
        WHEN is_sidechain THEN 'm:' || message_id
        ELSE 'r:' || dedup_key END AS gk
    FROM r
), w AS (
    SELECT arg_min((is_new, seq, id), {rank}) AS win
    FROM k WHERE gk IS NOT NULL GROUP BY gk
)"""

_INSERT = f"""
INSERT INTO usage_records (id, source, dedup_key, message_id, request_id, session_id,
    project_path, file, model, ts, input_tokens, output_tokens, cache_read_tokens,
    cache_write_5m_tokens, cache_write_1h_tokens, reasoning_tokens, reported_cost_usd,
    computed_cost_usd, is_sidechain, speed, provider, seq, imported_at, host)
WITH {{ranked}}
SELECT uuidv7(), '{SOURCE}', dedup_key, message_id, request_id, session_id, project_path, file,
    model, ts, input_tokens, output_tokens, cache_read_tokens, cache_write_5m_tokens,
    cache_write_1h_tokens, 0, reported_cost_usd, computed, is_sidechain, speed, provider,
    ? + seq, (now() AT TIME ZONE 'UTC'), ?
FROM c WHERE seq IN (SELECT win[2] FROM w WHERE win[1])"""

# stored records beaten by a new line are replaced
_DELETE = """
DELETE FROM usage_records
WHERE id IN (SELECT id FROM _cl_old)
  AND id NOT IN (WITH {ranked} SELECT win[3] FROM w WHERE NOT win[1])"""


# A later run with few new lines (``SMALL_MERGE_ROWS``) merges in Python instead: for ~1,000 staged
# rows, planning the set-based merge above (~8 ms) and its own statement for ``_INFO`` cost more
# than the merge (the INSERT went from ~16 to ~7 ms for 1% more lines of a 200 MB corpus). One
# query brings back the staged rows in line order, one the stored records sharing a message id
# with a kept line (and the rest of what ``_INFO`` gives); ``pick`` applies the same rules; one
# plain INSERT copies the winners from ``_cl_new`` with the cost computed in Python (``Rates.cost``
# sums in ``sql_cost``'s order: the same doubles).
_SMALL_ROWS = """
SELECT coalesce(pos, rowid), file, bad, keep, message_id, dedup_key, is_sidechain, model,
       speed IS NOT NULL, input_tokens, output_tokens, cache_read_tokens, cache_write_5m_tokens,
       cache_write_1h_tokens, reported_cost_usd
FROM _cl_new ORDER BY rowid"""

# a stored record ``u`` as a ``Candidate`` for ``pick`` (less ``is_new``): one tuple in a list
_STORED_CANDIDATES = f"""list((id, seq, dedup_key, message_id, coalesce(is_sidechain, false),
    {_TOTAL.format(t="u")}, coalesce(reported_cost_usd, computed_cost_usd, 0),
    speed IS NOT NULL))"""

_SMALL_INFO = f"""
SELECT
    (SELECT coalesce(max(seq), 0) FROM usage_records WHERE source = '{SOURCE}'),
    (SELECT {_STORED_CANDIDATES}
     FROM usage_records u WHERE source = '{SOURCE}' AND {{rivals}}),
    {LINKABLE},
    {STORED_PRICES}
"""
_STAGED_RIVALS = (
    "message_id IN (SELECT message_id FROM _cl_new WHERE keep AND message_id IS NOT NULL)"
)
# the same for the message ids of parsed rows: their range bounds the scan (``_STAGED_RIVALS`` gets
# that from DuckDB's join filters; sorted ids skip row groups, random ones cost nothing more)
_LISTED_RIVALS = "message_id BETWEEN $2 AND $3 AND message_id IN (SELECT unnest($1::VARCHAR[]))"

# stored records keyed by the hash of a line without a message id (asked only when there is one)
_STORED_HASHED = f"""
SELECT {_STORED_CANDIDATES}
FROM usage_records u WHERE source = '{SOURCE}' AND message_id IS NULL AND dedup_key IN (
    SELECT unnest(?::VARCHAR[]))"""

_INSERT_PICKED = f"""
INSERT INTO usage_records (id, source, dedup_key, message_id, request_id, session_id,
    project_path, file, model, ts, input_tokens, output_tokens, cache_read_tokens,
    cache_write_5m_tokens, cache_write_1h_tokens, reasoning_tokens, reported_cost_usd,
    computed_cost_usd, is_sidechain, speed, provider, seq, imported_at, host)
SELECT uuidv7(), '{SOURCE}', n.dedup_key, n.message_id, n.request_id, n.session_id,
    n.project_path, n.file, n.model, n.ts, n.input_tokens, n.output_tokens, n.cache_read_tokens,
    n.cache_write_5m_tokens, n.cache_write_1h_tokens, 0, n.reported_cost_usd, w.computed,
    n.is_sidechain, n.speed, w.provider, ? + w.id, (now() AT TIME ZONE 'UTC'), ?
FROM (SELECT unnest(?::BIGINT[]) AS id, unnest(?::DOUBLE[]) AS computed,
             unnest(?::VARCHAR[]) AS provider) w
JOIN _cl_new n ON coalesce(n.pos, n.rowid) = w.id"""


def _read_files(ready: list[F.Planned], marked: list[F.Planned]) -> tuple[str, list[Any]]:
    """``_STAGE`` through DuckDB's reader, and its parameters. A marker is ``{"<key>":<n>}``;
    the key is random for each run, so no line of a log can pass for one."""
    prefix = (marked[0].marker or "").split(":")[0] + ":" if marked else ""
    lines = _READ_FILES.format(
        max_bytes=F.max_object_size(ready, MAX_LINE_BYTES),
        marks=f" OR starts_with(json, '{prefix}')" if marked else "",
    )
    mark = f"CASE WHEN starts_with(json, '{prefix}') THEN json END" if marked else "NULL"
    copies = [p for p in ready if p.read_path != p.path and not p.marker]
    read = [F.glob_literal(r) for r in dict.fromkeys(p.read_path for p in ready)]
    sql = _STAGE.format(shape=_SHAPE, lines=lines, mark=mark)
    return sql, [[p.read_path for p in copies], [p.path for p in copies], read]


class _Run:
    """One ingest run: the stage reads and flattens the lines and learns what the merge needs."""

    def __init__(self, overrides: dict[str, Price] | None) -> None:
        self.overrides = overrides
        self.info: tuple[Any, ...] = ()
        self.first = 0  # the row id of the first staged line
        self.small = False  # a later run with few rows: merged in Python (``_merge_small``)
        self.rows: list[tuple[Any, ...]] = []  # then every staged row (``_SMALL_ROWS``)
        self.parsed = False  # ... read by ``claude_lines.parse``, with the INSERT's columns

    def stage(
        self, conn: duckdb.DuckDBPyConnection, ready: list[F.Planned]
    ) -> dict[str, tuple[int, int]]:
        """Read and flatten the planned ranges into ``_cl_new``; returns path -> (usage lines,
        malformed lines)."""
        marked = [p for p in ready if p.marker]
        later = any(p.prev is not None and not p.restart for p in ready)
        if all(p.data is not None for p in ready):
            files = lines_of(ready)
            if later and PARSE_IN_PYTHON:
                rows = parse(conn, files)
                if rows is not None and len(rows) <= SMALL_MERGE_ROWS:
                    return self._parsed(conn, rows)
            sql = _STAGE.format(shape=_SHAPE, lines=_READ_LINES, mark="NULL")
            params: list[Any] = [[f for f, _ in files], ["\n".join(lines) for _, lines in files]]
        else:
            sql, params = _read_files(ready, marked)
        staged = conn.execute(sql, params).fetchall()
        if marked:
            conn.execute(_PLACE, [[p.marker for p in marked], [p.path for p in marked]])
            conn.execute(_PLACE_HASHED)
            conn.execute("DELETE FROM _cl_new WHERE mark IS NOT NULL")
        self.small = later and int(staged[0][0]) - len(marked) <= SMALL_MERGE_ROWS
        if self.small:  # rows as tuples: ~2x faster to fetch than one list of structs
            self.rows = conn.execute(_SMALL_ROWS).fetchall()
            self.info = tuple(
                conn.execute(_SMALL_INFO.replace("{rivals}", _STAGED_RIVALS)).fetchall()[0]
            )
            return counts(self.rows)
        (files, first), *info = conn.execute(_INFO).fetchall()[0]
        self.first = int(first or 0)
        self.info = tuple(info)
        return {f: (int(n), int(bad)) for f, n, bad in files or []}

    def _parsed(
        self, conn: duckdb.DuckDBPyConnection, rows: list[tuple[Any, ...]]
    ) -> dict[str, tuple[int, int]]:
        """``stage`` for rows ``claude_lines.parse`` read: no staging table; the merge inserts
        the winners from the rows themselves."""
        self.small = self.parsed = True
        self.rows = rows
        ids = sorted({row[4] for row in rows if row[3] and row[4] is not None})
        bounds = [ids[0], ids[-1]] if ids else [None, None]
        sql = _SMALL_INFO.replace("{rivals}", _LISTED_RIVALS)
        self.info = tuple(conn.execute(sql, [ids, *bounds]).fetchall()[0])
        return counts(rows)

    def merge(
        self, conn: duckdb.DuckDBPyConnection, result: IngestResult, _ready: list[F.Planned]
    ) -> None:
        """Dedupe the staged lines against each other and the stored records; insert winners."""
        from specwright.pricing import sql_cost

        if self.small:
            self._merge_small(conn, result)
            return

        (kept, without_id, models), (base, rivals), linkable, prices = self.info
        rates, used, result.unknown_models = rate_columns(
            list(models or []), "anthropic", self.overrides, prices
        )
        parts = {
            "rates": RATES_SQL,
            "total": _TOTAL.format(t="n"),
            "cost": sql_cost("p", "n"),
            "not_stored": _NOT_STORED if without_id else "",
            "old": "",
            "rank": COPY_RANK,
        }
        if rivals:
            conn.execute(_OLD)
            parts["old"] = _WITH_OLD
            deleted = conn.execute(_DELETE.format(ranked=_RANKED.format(**parts)), rates).fetchall()
            result.replaced = int(deleted[0][0]) if deleted else 0
        inserted = conn.execute(
            _INSERT.format(ranked=_RANKED.format(**parts)),
            [*rates, base + 1 - self.first, _host()],
        ).fetchall()
        if rivals:
            conn.execute("DROP TABLE _cl_old")
        result.imported = int(inserted[0][0]) if inserted else 0
        result.duplicates = int(kept) - result.imported
        save_prices(conn, used, prices or [])
        result.linked = link_executions(conn, SOURCE, bool(linkable))

    def _merge_small(self, conn: duckdb.DuckDBPyConnection, result: IngestResult) -> None:
        """``merge`` for a few staged rows: pick the winners in Python (``pick``), delete the
        stored records they beat, insert them with their computed cost."""
        base, stored, linkable, prices = self.info
        kept = [row for row in self.rows if row[3]]
        models = sorted({row[7] for row in kept if row[7]})
        rates, used, result.unknown_models = rates_by_model(
            models, "anthropic", self.overrides, prices
        )
        first = self.rows[0][0] if self.rows else 0
        priced: dict[int, tuple[float | None, str | None]] = {}  # row id -> (cost, provider)
        candidates: list[Candidate] = []
        for row in kept:
            rowid, _, _, _, message_id, key, side, model, fast, *tokens, reported = row[:15]
            total = sum(tokens)
            price = rates.get(model)
            # the order of ``Rates.cost``'s arguments and ``sql_cost``'s sum: the same double
            cost = 0.0 if total == 0 else price.cost(*tokens) if price else None
            priced[rowid] = (cost, price.provider if price else None)
            spent = reported if reported is not None else cost if cost is not None else 0.0
            candidates.append(Candidate(message_id, key, side, total, spent, fast, True, rowid))
        hashed = [c.dedup_key for c in candidates if c.message_id is None]
        if hashed:
            more = conn.execute(_STORED_HASHED, [hashed]).fetchall()[0][0]
            stored = [*(stored or []), *(more or [])]
        for ref, seq, key, message_id, side, total, spent, fast in stored or []:
            candidates.append(Candidate(message_id, key, side, total, spent, fast, False, seq, ref))
        winners = pick(candidates)
        kept_refs = {c.ref for c in winners if not c.is_new}
        beaten = [c.ref for c in candidates if not c.is_new and c.ref not in kept_refs]
        if beaten:
            conn.execute(
                "DELETE FROM usage_records WHERE id IN (SELECT unnest(?::UUID[]))", [beaten]
            )
        new = sorted(c.seq for c in winners if c.is_new)
        computed, providers = [priced[i][0] for i in new], [priced[i][1] for i in new]
        if self.parsed:
            insert(
                conn,
                SOURCE,
                _host(),
                base + 1 - first,
                [self.rows[i] for i in new],
                computed,
                providers,
            )
        else:
            conn.execute(_INSERT_PICKED, [base + 1 - first, _host(), new, computed, providers])
        result.replaced = len(beaten)
        result.imported = len(new)
        result.duplicates = len(kept) - len(new)
        save_prices(conn, used, prices or [])
        result.linked = link_executions(conn, SOURCE, bool(linkable))


def _host() -> str:
    import socket

    return socket.gethostname()
