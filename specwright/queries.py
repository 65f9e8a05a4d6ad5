"""Named read queries -> pandas DataFrames (``*_sql``: a query the CLI reads without pandas).
All read-side SQL of usage, cost and runs lives here. Two kinds of cost: ``usage_records``
(imported from agents' logs, one row per model reply) and ``executions`` (what Specwright ran,
with reported and computed cost). Log cost is ``coalesce(reported_cost_usd, computed_cost_usd)``
-- what ccusage calls ``auto`` mode. Time filters take ``YYYY-MM-DD`` (or ``YYYYMMDD``) dates;
``until`` is inclusive. A window's ``tz`` (default UTC) makes its dates, and any grouping by
day, week or month, local days; columns stay naive UTC. Queries aggregate in DuckDB.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from specwright.windows import _PERIODS, _local, _period, _truncated, _window

# the public helpers of date windows, where they have always been read (``Q.parse_day``...)
from specwright.windows import FIRST_DAY as FIRST_DAY
from specwright.windows import LAST_DAY as LAST_DAY
from specwright.windows import WEEKDAYS as WEEKDAYS
from specwright.windows import check_timezone as check_timezone
from specwright.windows import check_window as check_window
from specwright.windows import parse_day as parse_day

if TYPE_CHECKING:
    import pandas as pd

    from specwright.store import Store

BIGINT_MAX = 2**63 - 1


def total(expr: str, where: str | None = None) -> str:
    """SQL for ``sum(expr)`` (``FILTER (WHERE where)``) as a BIGINT, held at BIGINT's largest
    value: DuckDB sums BIGINTs as HUGEINT, and the cast (int64 columns for the DataFrames) of a
    sum past it failed every report, which ~1,100 records at the ingests' per-record bound
    (2**53) reach. Such a total reads 9,223,372,036,854,775,807: absurd, as its records are."""
    summed = f"sum({expr})" + (f" FILTER (WHERE {where})" if where else "")
    # not least(): it skips NULL, and a sum of no rows must stay NULL (unknown, not huge)
    return f"(CASE WHEN {summed} > {BIGINT_MAX} THEN {BIGINT_MAX} ELSE {summed} END)::BIGINT"


# A log line stamped outside the days a window can name (a hostile or broken log, or an export
# carrying one) is in no report: a block from 9999-12-31 ends past the last time Python has, one
# of 0001-01-01 in a zone west of UTC is before its first, and `usage blocks`, `usage session`
# and the dashboard failed with a traceback
IN_DAYS = " AND u.ts >= ? AND u.ts < ?"
IN_DAYS_PARAMS = [datetime(FIRST_DAY.year, 1, 1), datetime(LAST_DAY.year + 1, 1, 1)]

LOG_COST = "coalesce(u.reported_cost_usd, u.computed_cost_usd)"
TOKENS = (
    "u.input_tokens + u.output_tokens + u.cache_read_tokens + u.cache_write_5m_tokens "
    "+ u.cache_write_1h_tokens"
)
# the token and cost totals of a group of usage_records rows (alias u)
_SUMS = f"""{total("u.input_tokens")} AS input_tokens,
               {total("u.output_tokens")} AS output_tokens,
               {total("u.cache_write_5m_tokens + u.cache_write_1h_tokens")}
                   AS cache_creation_tokens,
               {total("u.cache_read_tokens")} AS cache_read_tokens,
               {total(TOKENS)} AS total_tokens,
               sum(coalesce({LOG_COST}, 0)) AS cost_usd"""
_UNPRICED = f"count(*) FILTER (WHERE {LOG_COST} IS NULL AND ({TOKENS}) > 0) AS unpriced"


def usage_filter(
    since: str | date | None, until: str | date | None, source: str | None, tz: str = "UTC"
) -> tuple[str, list[Any]]:
    """A WHERE fragment (starting with AND) for usage_records ``u``: the local-date window and,
    unless it is ``all``, the source. Records stamped outside ``FIRST_DAY``..``LAST_DAY`` are
    left out (``IN_DAYS``)."""
    where, params = _window("u.ts", since, until, tz)
    where, params = f"{where}{IN_DAYS}", [*params, *IN_DAYS_PARAMS]
    if source and source != "all":
        where, params = f"{where} AND u.source = ?", [*params, source]
    return where, params


def out_of_days(store: Store, source: str | None = None) -> int:
    """How many records (of ``source``, as ``usage_filter`` reads it) are stamped outside ``FIRST_DAY``..
    ``LAST_DAY``: in no report (``IN_DAYS``), which says so rather than drop them unsaid."""
    where, params = ("u.source = ?", [source]) if source and source != "all" else ("true", [])
    sql = f"SELECT count(*) FROM usage_records u WHERE {where} AND NOT (true{IN_DAYS})"
    return int(store.query(sql, [*params, *IN_DAYS_PARAMS])[0][0])


# --- agent-log usage (ccusage's reports) ------------------------------------------------------


def usage_by_period(
    store: Store,
    period: str = "day",
    *,
    since: str | date | None = None,
    until: str | date | None = None,
    source: str | None = None,
    tz: str = "UTC",
    week_start: str = "monday",
) -> pd.DataFrame:
    """Tokens and cost of imported log usage per period (day/week/month) and model; a week
    starts on ``week_start``."""
    unit, fmt = _period(period)
    where, params = usage_filter(since, until, source, tz)
    sql = f"""
        SELECT strftime(p, '{fmt}') AS period, * EXCLUDE (p) FROM (
            SELECT {_truncated(unit, _local("u.ts", tz), week_start)} AS p,
                   coalesce(u.model, '') AS model,
                   {_SUMS},
                   {_UNPRICED},
                   count(*) AS records
            FROM usage_records u WHERE true{where}
            GROUP BY ALL)
        ORDER BY period, cost_usd DESC, model"""
    return store.query_df(sql, params)


def _breakdowns(
    models: list[str], toks: list[list[int]], costs: list[float]
) -> list[dict[str, Any]]:
    """ccusage's ``modelBreakdowns``: per model [in, out, cache write, cache read] and cost."""
    keys = ("inputTokens", "outputTokens", "cacheCreationTokens", "cacheReadTokens")
    return [
        {"modelName": name, **dict(zip(keys, t, strict=True)), "cost": c}
        for name, t, c in zip(models, toks, costs, strict=True)
    ]


def figures(i: int, o: int, cw: int, cr: int, cost: float) -> dict[str, Any]:
    """ccusage's token and cost keys of a report row: input, output, cache write and read."""
    return {
        "inputTokens": i,
        "outputTokens": o,
        "cacheCreationTokens": cw,
        "cacheReadTokens": cr,
        "totalTokens": i + o + cw + cr,
        "totalCost": cost,
    }


def usage_report(
    store: Store,
    period: str = "day",
    *,
    since: str | date | None = None,
    until: str | date | None = None,
    source: str | None = None,
    tz: str = "UTC",
    week_start: str = "monday",
) -> list[dict[str, Any]]:
    """ccusage's ``daily``/``weekly``/``monthly`` rows (camelCase keys, per-model breakdowns),
    built in one SQL query: no DataFrame on the hot path of a report. A week starts on
    ``week_start`` (ccusage's default is sunday)."""
    unit, fmt = _period(period)
    where, params = usage_filter(since, until, source, tz)
    # group by the truncated timestamp and format only the groups: strftime per row costs more
    # than the whole aggregate
    sql = f"""
        WITH m AS (
            SELECT {_truncated(unit, _local("u.ts", tz), week_start)} AS period,
                   coalesce(u.model, '') AS model,
                   {total("u.input_tokens")} AS i, {total("u.output_tokens")} AS o,
                   {total("u.cache_write_5m_tokens + u.cache_write_1h_tokens")} AS cw,
                   {total("u.cache_read_tokens")} AS cr,
                   sum(coalesce({LOG_COST}, 0)) AS cost
            FROM usage_records u WHERE true{where}
            GROUP BY ALL
        )
        SELECT strftime(period, '{fmt}'), {total("i")}, {total("o")}, {total("cw")},
               {total("cr")},
               sum(cost),
               list(model ORDER BY cost DESC, model) FILTER (
                   WHERE model <> '' AND model <> '<synthetic>'),
               list([i, o, cw, cr] ORDER BY cost DESC, model) FILTER (
                   WHERE model <> '' AND model <> '<synthetic>'),
               list(cost ORDER BY cost DESC, model) FILTER (
                   WHERE model <> '' AND model <> '<synthetic>')
        FROM m GROUP BY period ORDER BY period"""
    key = {"day": "date", "week": "week", "month": "month"}[unit]
    out: list[dict[str, Any]] = []
    for period_, i, o, cw, cr, cost, models, toks, costs in store.query(sql, params):
        models, toks, costs = models or [], toks or [], costs or []
        out.append(
            {
                key: period_,
                **figures(i, o, cw, cr, cost),
                "modelsUsed": list(models),
                "modelBreakdowns": _breakdowns(models, toks, costs),
            }
        )
    return out


def unpriced_models(
    store: Store,
    *,
    since: str | date | None = None,
    until: str | date | None = None,
    tz: str = "UTC",
    source: str | None = None,
) -> list[tuple[str, int]]:
    """Models with records that have tokens but no cost (no price known), and how many
    (``since``/``until``: dates in ``tz``, as everywhere below)."""
    where, params = usage_filter(since, until, source, tz)
    sql = f"""SELECT coalesce(u.model, ''), count(*) FROM usage_records u
        WHERE {LOG_COST} IS NULL AND ({TOKENS}) > 0{where} GROUP BY 1 ORDER BY 1"""
    return [(str(m), int(n)) for m, n in store.query(sql, params)]


def usage_models(
    store: Store,
    *,
    since: str | date | None = None,
    until: str | date | None = None,
    tz: str = "UTC",
    source: str | None = None,
) -> pd.DataFrame:
    """Tokens and cost per model over the window, most expensive first; a model none of whose
    records has a price has cost NULL (unknown, not 0)."""
    return store.query_df(*usage_models_sql(since, until, tz, source))


def usage_models_sql(
    since: str | date | None, until: str | date | None, tz: str, source: str | None
) -> tuple[str, list[Any]]:
    """``usage_models``'s query and parameters (the CLI reads its rows without pandas)."""
    where, params = usage_filter(since, until, source, tz)
    sql = f"""
        SELECT * EXCLUDE (priced)
                 REPLACE (CASE WHEN priced = 0 AND unpriced > 0 THEN NULL ELSE cost_usd END
                          AS cost_usd)
        FROM (SELECT coalesce(u.model, '') AS model, any_value(u.source) AS source,
                     {_SUMS},
                     {_UNPRICED},
                     count(*) FILTER (WHERE {LOG_COST} IS NOT NULL) AS priced,
                     count(*) AS records
              FROM usage_records u WHERE true{where} GROUP BY 1
              -- Claude Code's own notes (an API error shown in the chat) name no real model
              HAVING NOT (model = '<synthetic>' AND sum({TOKENS}) = 0))
        ORDER BY cost_usd DESC NULLS LAST, model"""
    return sql, params


# --- Specwright's own executions --------------------------------------------------------------

# a cost that is not a finite number (an agent reported NaN or Infinity) is unknown, like NULL:
# it must not turn a whole total into NaN
_EXEC_COST = "coalesce(CASE WHEN isfinite(e.cost_usd) THEN e.cost_usd END, 0)"
# tokens as told: an agent that tells no usage (``unreported``) has unknown tokens, not 0, so a
# group of only such executions sums to NULL, as its cost does
TOLD = "e.cost_source IS DISTINCT FROM 'unreported'"
# unpriced: tokens without a price; still running, stopped mid-run or telling no usage, whatever
EXEC_UNPRICED = """(e.cost_usd IS NULL OR NOT isfinite(e.cost_usd)) AND (e.status = 'running'
                   OR e.input_tokens + e.output_tokens + e.cache_read_tokens + e.cache_write_tokens
                   > 0 OR e.cost_source IN ('incomplete', 'unreported'))"""
# a group's cost: unknown (NULL), not 0, when none of its executions has a known cost and some
# spent tokens without one
EXEC_SUM = f"""CASE WHEN coalesce(bool_or(isfinite(e.cost_usd)), false)
               OR NOT coalesce(bool_or({EXEC_UNPRICED}), false) THEN sum({_EXEC_COST}) END"""


# a spec named with its project, ``project/slug``; when another project of the same name has a
# spec of that slug too (two clones of one repository), with the end of the project's folder
# (its last two parts, ``api (…/work/api)/add-tests``; its whole root when those are alike too)
SPEC_QUALIFIED = """(
    SELECT spec_id, CASE WHEN count(*) OVER (PARTITION BY name, slug) = 1 THEN name
        WHEN tail <> '' AND count(*) OVER (PARTITION BY name, slug, tail) = 1
            THEN name || ' (…/' || tail || ')'
        ELSE name || ' (' || root || ')' END || '/' || slug AS qualified
    FROM (SELECT s2.id AS spec_id, s2.slug, p2.name, p2.root,
                 regexp_extract(replace(p2.root, chr(92), '/'), '([^/]+/[^/]+)/*$', 1) AS tail
          FROM specs s2 JOIN projects p2 ON p2.id = s2.project_id))"""


def cost_by(
    store: Store,
    dim: str,
    *,
    since: str | date | None = None,
    until: str | date | None = None,
    tz: str = "UTC",
) -> pd.DataFrame:
    """Executions' tokens and cost grouped by project, spec, chunk, executor, model or role."""
    return store.query_df(*cost_by_sql(dim, since, until, tz))


def cost_by_sql(
    dim: str, since: str | date | None, until: str | date | None, tz: str
) -> tuple[str, list[Any]]:
    """``cost_by``'s query and parameters (the CLI reads its rows without pandas). A project,
    spec or chunk is a group of its own (slugs are unique in a project only, names not at all);
    one whose name another group shares is named with its project (a project: its root)."""
    of_spec = (
        "LEFT JOIN specs s ON s.id = e.spec_id LEFT JOIN projects p ON p.id = s.project_id "
        f"LEFT JOIN {SPEC_QUALIFIED} q ON q.spec_id = s.id"
    )
    chunk = "s.slug || '#' || c.position::VARCHAR || ' ' || c.title"
    # dim -> (name, group key, the name when another group has it too, joins)
    dims = {
        "project": ("p.name", "p.id", "p.name || ' (' || p.root || ')'", of_spec),
        "spec": ("s.slug", "s.id", "q.qualified", of_spec),
        "chunk": (
            chunk,
            "c.id",
            "q.qualified || '#' || c.position::VARCHAR || ' ' || c.title",
            "LEFT JOIN chunks c ON c.id = e.chunk_id LEFT JOIN specs s ON s.id = c.spec_id "
            f"LEFT JOIN {SPEC_QUALIFIED} q ON q.spec_id = s.id",
        ),
        "executor": ("coalesce(e.executor, e.backend)", "", "", ""),
        "model": ("e.model", "", "", ""),
        "role": ("e.role", "", "", ""),
        "backend": ("e.backend", "", "", ""),
    }
    if dim not in dims:
        raise ValueError(f"dim: expected one of {sorted(dims)}, got {dim!r}")
    expr, key, full, joins = dims[dim]
    where, params = _window("e.started_at", since, until, tz)
    sql = f"""
        SELECT CASE WHEN count(*) OVER (PARTITION BY g_name) > 1 THEN g_full ELSE g_name END
                   AS {dim},
               * EXCLUDE (g_key, g_name, g_full)
        FROM (
            SELECT {key or expr} AS g_key, {expr} AS g_name, {full or expr} AS g_full,
               count(*) AS executions,
               {total("e.input_tokens", TOLD)} AS input_tokens,
               {total("e.output_tokens", TOLD)} AS output_tokens,
               {total("e.cache_read_tokens", TOLD)} AS cache_read_tokens,
               {total("e.cache_write_tokens", TOLD)} AS cache_write_tokens,
               {EXEC_SUM} AS cost_usd,
               sum(e.reported_cost_usd) FILTER (WHERE isfinite(e.reported_cost_usd))
                   AS reported_cost_usd,
               sum(e.computed_cost_usd) FILTER (WHERE isfinite(e.computed_cost_usd))
                   AS computed_cost_usd,
               -- the two sums above count different calls when some have only one of them:
               -- their difference over the calls that have both
               sum(e.reported_cost_usd - e.computed_cost_usd) FILTER (
                   WHERE isfinite(e.reported_cost_usd) AND isfinite(e.computed_cost_usd))
                   AS reported_minus_computed,
               count(*) FILTER (WHERE {EXEC_UNPRICED}) AS unpriced
            FROM executions e {joins}
            WHERE true{where}
            GROUP BY ALL)
        ORDER BY cost_usd DESC NULLS LAST, {dim}"""
    return sql, params


EXEC_TOKENS = "e.input_tokens + e.output_tokens + e.cache_read_tokens + e.cache_write_tokens"


def executions_by_period(
    store: Store,
    period: str = "day",
    *,
    since: str | date | None = None,
    until: str | date | None = None,
    tz: str = "UTC",
) -> pd.DataFrame:
    """Executions' tokens and cost (a lower bound with ``unpriced``) per period in ``tz``, model."""
    unit = _PERIODS.get(period, "day")
    where, params = _window("e.started_at", since, until, tz)
    sql = f"""
        SELECT date_trunc('{unit}', {_local("e.started_at", tz)})::DATE AS period,
               coalesce(e.model, '') AS model, count(*) AS executions,
               {total(EXEC_TOKENS, TOLD)} AS total_tokens,
               {EXEC_SUM} AS cost_usd, count(*) FILTER (WHERE {EXEC_UNPRICED}) AS unpriced
        FROM executions e WHERE true{where}
        GROUP BY ALL ORDER BY period, cost_usd DESC"""
    return store.query_df(sql, params)


# the iterations a chunk took: those of all its runs (a chunk that failed 3 and shipped on the
# next run's first needed 4; the chunk's row keeps its last run's 1), not counting comparisons'
# runs (``group_id``), which leave the chunk's row alone; the row's own for a chunk without runs
TRIES = """(SELECT chunk_id, sum(iterations)::INTEGER AS iterations FROM runs
            WHERE kind = 'chunk' AND group_id IS NULL GROUP BY 1)"""
ITERATIONS = "coalesce(nullif(t.iterations, 0), c.iterations)"


def cost_per_shipped_chunk(
    store: Store,
    *,
    since: str | date | None = None,
    until: str | date | None = None,
    tz: str = "UTC",
) -> pd.DataFrame:
    """Per shipped chunk: its cost across every iteration, its iterations (``ITERATIONS``), and
    executions. With a window: the chunks with executions in it, and what those cost. A spec
    whose slug another spec there has too (of another project) is ``SPEC_QUALIFIED``, as in
    ``cost_by``."""
    where, params = _window("e.started_at", since, until, tz)
    sql = f"""
        SELECT CASE WHEN count(DISTINCT spec_id) OVER (PARTITION BY spec) > 1
                    THEN qualified ELSE spec END AS spec,
               * EXCLUDE (spec, spec_id, qualified)
        FROM (
            SELECT s.slug AS spec, s.id AS spec_id, q.qualified, c.position, c.title,
                   {ITERATIONS} AS iterations, count(e.id) AS executions, {EXEC_SUM} AS cost_usd,
                   count(e.id) FILTER (WHERE {EXEC_UNPRICED}) AS unpriced,
                   sum(e.duration_ms) / 1000.0 AS agent_seconds
            FROM chunks c JOIN specs s ON s.id = c.spec_id
            LEFT JOIN {SPEC_QUALIFIED} q ON q.spec_id = s.id
            LEFT JOIN {TRIES} t ON t.chunk_id = c.id
            LEFT JOIN executions e ON e.chunk_id = c.id{where}
            WHERE c.status = 'shipped'
            GROUP BY s.slug, s.id, q.qualified, c.id, c.position, c.title, c.iterations, t.iterations
            {"HAVING count(e.id) > 0" if where else ""})
        ORDER BY 1, position"""
    return store.query_df(sql, params)


def iterations_to_ship(
    store: Store,
    *,
    since: str | date | None = None,
    until: str | date | None = None,
    tz: str = "UTC",
) -> pd.DataFrame:
    """How many iterations shipped chunks needed (over all their runs: ``ITERATIONS``): count of
    chunks per iteration count. With a window: the shipped chunks with executions in it."""
    where, params = _window("e.started_at", since, until, tz)
    within = (
        f" AND c.id IN (SELECT e.chunk_id FROM executions e WHERE true{where})" if where else ""
    )
    sql = f"""
        SELECT {ITERATIONS} AS iterations, count(*) AS chunks
        FROM chunks c LEFT JOIN {TRIES} t ON t.chunk_id = c.id
        WHERE c.status = 'shipped'{within}
        GROUP BY 1 ORDER BY 1"""
    return store.query_df(sql, params)


def tool_calls(
    store: Store,
    *,
    since: str | date | None = None,
    until: str | date | None = None,
    tz: str = "UTC",
) -> pd.DataFrame:
    """Tool calls by tool name: count, failures, failure rate, result latency percentiles."""
    where, params = _window("ts", since, until, tz)
    called, called_params = _window("call_ts", since, until, tz)
    # No grouping by call (that took ~290 ms of a year's 2.4M tool events): the recorder writes
    # on each result the call it answers, ``call_tool`` and ``call_ts``, and marks the call's
    # first result and first failed one (migration 10). So: the calls per tool, and one scan of
    # those marked results. A window counts the calls made in it and, of their results, those
    # that came in it: a result counts when its time and its call's are both inside.
    sql = f"""
        WITH c AS (
            SELECT tool_name AS tool, count(*) AS calls FROM events
            WHERE type = 'tool_call' AND call_id IS NOT NULL{where}
            GROUP BY 1
        ), r AS (
            SELECT call_tool AS tool,
                   count(*) FILTER (WHERE first_result) AS answered,
                   count(*) FILTER (WHERE first_failure) AS failures,
                   -- both percentiles from one aggregate: two collect and sort the values twice
                   quantile_cont(epoch_ms(ts - call_ts), [0.5, 0.9])
                       FILTER (WHERE first_result) AS q
            FROM events
            WHERE type = 'tool_result' AND (first_result OR first_failure){where}{called}
            GROUP BY 1
        )
        SELECT c.tool, c.calls, coalesce(r.failures, 0) AS failures,
               coalesce(r.failures, 0)::DOUBLE / c.calls AS failure_rate,
               c.calls - coalesce(r.answered, 0) AS no_result, r.q[1] AS p50_ms, r.q[2] AS p90_ms
        FROM c LEFT JOIN r ON r.tool IS NOT DISTINCT FROM c.tool
        ORDER BY c.calls DESC, c.tool"""
    return store.query_df(sql, [*params, *params, *called_params])


def latency(
    store: Store,
    by: str = "role",
    *,
    since: str | date | None = None,
    until: str | date | None = None,
    tz: str = "UTC",
) -> pd.DataFrame:
    """Execution duration percentiles (p50/p90/p99, seconds) by role, backend or model."""
    if by not in ("role", "backend", "model", "executor"):
        raise ValueError(f"by: expected role, backend, model or executor, got {by!r}")
    where, params = _window("e.started_at", since, until, tz)
    sql = f"""
        SELECT coalesce(e.{by}, '') AS {by}, count(*) AS executions,
               quantile_cont(e.duration_ms, 0.5) / 1000.0 AS p50_s,
               quantile_cont(e.duration_ms, 0.9) / 1000.0 AS p90_s,
               quantile_cont(e.duration_ms, 0.99) / 1000.0 AS p99_s,
               max(e.duration_ms) / 1000.0 AS max_s
        FROM executions e WHERE e.duration_ms IS NOT NULL{where}
        GROUP BY 1 ORDER BY executions DESC"""
    return store.query_df(sql, params)


def cost_sources(
    store: Store,
    *,
    limit: int = 500,
    since: str | date | None = None,
    until: str | date | None = None,
    tz: str = "UTC",
) -> pd.DataFrame:
    """Per execution (the latest first): reported, computed and log-derived cost side by side,
    with differences."""
    where, params = _window("e.started_at", since, until, tz)
    sql = f"""
        WITH logs AS (
            SELECT u.execution_id, sum(coalesce({LOG_COST}, 0)) AS log_cost_usd,
                   count(*) AS log_records
            FROM usage_records u WHERE u.execution_id IS NOT NULL GROUP BY 1
        )
        SELECT e.id::VARCHAR AS execution_id, e.started_at, e.role, e.backend, e.model,
               e.cost_source, e.cost_usd, e.reported_cost_usd, e.computed_cost_usd,
               l.log_cost_usd, l.log_records,
               e.reported_cost_usd - e.computed_cost_usd AS reported_minus_computed,
               e.reported_cost_usd - l.log_cost_usd AS reported_minus_log
        FROM executions e LEFT JOIN logs l ON l.execution_id = e.id
        WHERE true{where}
        ORDER BY e.started_at DESC LIMIT {int(limit)}"""
    return store.query_df(sql, params)


# --- codexbar ---------------------------------------------------------------------------------

_WINDOWS = """
    SELECT s.id, s.taken_at, s.provider, s.execution_id, s.phase, w.name AS window,
           try_cast(json_extract(s.payload, '$.usage.' || w.name || '.usedPercent') AS DOUBLE)
               AS used_percent,
           try_cast(json_extract(s.payload, '$.usage.' || w.name || '.windowMinutes') AS BIGINT)
               AS window_minutes,
           json_extract_string(s.payload, '$.usage.' || w.name || '.resetsAt') AS resets_at
    FROM usage_snapshots s,
         (VALUES ('primary'), ('secondary'), ('tertiary')) w(name)
    WHERE s.source = 'codexbar' AND s.kind = 'usage'
"""


def codexbar_limits(store: Store) -> pd.DataFrame:
    """The latest codexbar reading per provider and window: used %, window length, reset time."""
    sql = f"""
        WITH w AS ({_WINDOWS}), latest AS (
            SELECT provider, max(taken_at) AS taken_at FROM usage_snapshots
            WHERE source = 'codexbar' AND kind = 'usage' AND error IS NULL GROUP BY 1
        )
        SELECT w.provider, w.window, w.used_percent, 100 - w.used_percent AS remaining_percent,
               w.window_minutes, w.resets_at, w.taken_at,
               try_cast(json_extract(s.payload, '$.usage.providerCost.used') AS DOUBLE)
                   AS provider_cost_used,
               try_cast(json_extract(s.payload, '$.usage.providerCost.limit') AS DOUBLE)
                   AS provider_cost_limit,
               try_cast(json_extract(s.payload, '$.credits.remaining') AS DOUBLE)
                   AS credits_remaining
        FROM w JOIN latest l ON l.provider = w.provider AND l.taken_at = w.taken_at
        JOIN usage_snapshots s ON s.id = w.id
        WHERE w.used_percent IS NOT NULL
        ORDER BY w.provider, w.window"""
    return store.query_df(sql)


def quota_per_execution(
    store: Store,
    *,
    since: str | date | None = None,
    until: str | date | None = None,
    tz: str = "UTC",
) -> pd.DataFrame:
    """How much of each plan window an execution used: after minus before ``usedPercent``
    (readings taken, on days in ``tz``, before executions that started in the window)."""
    where, params = _window("b.taken_at", since, until, tz)
    sql = f"""
        WITH w AS ({_WINDOWS})
        SELECT b.execution_id::VARCHAR AS execution_id, e.chunk_id::VARCHAR AS chunk_id,
               e.iteration, b.provider, b.window, b.used_percent AS before_percent,
               a.used_percent AS after_percent, a.used_percent - b.used_percent AS used_percent,
               b.resets_at <> a.resets_at AS window_reset
        FROM w b JOIN w a ON a.execution_id = b.execution_id AND a.provider = b.provider
             AND a.window = b.window AND a.phase = 'after'
        LEFT JOIN executions e ON e.id = b.execution_id
        WHERE b.phase = 'before' AND b.used_percent IS NOT NULL{where}
        ORDER BY b.taken_at, b.provider, b.window"""
    return store.query_df(sql, params)


def __getattr__(name: str) -> Any:
    """``usage_sessions`` and ``usage_session_report`` live in ``sessions`` (read at first use:
    it imports this module)."""
    if name in ("usage_sessions", "usage_session_report"):
        from specwright import sessions

        return getattr(sessions, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
