"""Agent sessions as ccusage's ``session`` report sees them (read side, like ``queries``).

A Claude Code session is its log file under ``projects/`` (``<project>/<session>.jsonl`` or
``<project>/<session>/subagents/*.jsonl``), not the lines' sessionId: a resumed session's file
is a session of its own; its project is that directory's name. Other sources keep their session
id and working directory.
"""

from __future__ import annotations

import re
from datetime import date
from typing import TYPE_CHECKING, Any

from specwright.queries import _breakdowns, figures, total, usage_filter

if TYPE_CHECKING:
    import pandas as pd

    from specwright.store import Store

# each row's session (``sid``) and project, as the module's docstring says
_SESSION_KEYS = """
    p AS (SELECT u.*, regexp_split_to_array(u.file, '[/\\\\]') AS parts
          FROM usage_records u WHERE true{where}),
    r AS (SELECT *, CASE WHEN list_contains(parts, 'projects')  -- the last one: ccusage takes
                         -- the first, which a config folder under a ``projects`` folder misreads
                         THEN parts[len(parts) - list_position(list_reverse(parts), 'projects')
                                    + 2:] ELSE parts END AS rel
          FROM p),
    k AS (SELECT *, len(rel) AS n,
                 source = 'claude-code' AND file IS NOT NULL AS by_file,
                 len(rel) >= 4 AND rel[len(rel) - 1] = 'subagents' AS sub FROM r),
    s AS (SELECT *,
            CASE WHEN NOT by_file THEN session_id
                 WHEN n = 2 THEN regexp_replace(rel[2], '\\.jsonl$', '')
                 WHEN sub THEN rel[n - 2]
                 WHEN n > 1 THEN rel[n - 1] ELSE 'unknown' END AS sid,
            CASE WHEN NOT by_file THEN project_path
                 ELSE coalesce(nullif(CASE WHEN n = 2 THEN rel[1]
                                           WHEN sub THEN array_to_string(rel[1:n - 3], '/')
                                           WHEN n > 2 THEN array_to_string(rel[1:n - 2], '/')
                                      END, ''), 'Unknown Project') END AS project
          FROM k)"""


def usage_session_report(
    store: Store,
    *,
    since: str | date | None = None,
    until: str | date | None = None,
    source: str | None = None,
    tz: str = "UTC",
) -> list[dict[str, Any]]:
    """ccusage's ``session`` rows (camelCase keys, per-model breakdowns), most expensive first;
    ``since``/``until`` keep the messages of those days in ``tz`` (as ccusage)."""
    where, params = usage_filter(since, until, source, tz)
    iso = "'%Y-%m-%dT%H:%M:%S.%gZ'"
    named = "WHERE model <> '' AND model <> '<synthetic>'"
    sql = f"""
        WITH {_SESSION_KEYS.format(where=where)},
        m AS (
            SELECT sid, project, coalesce(model, '') AS model,
                   any_value(source) AS src, any_value(execution_id) AS eid,
                   min(ts) AS first, max(ts) AS last,
                   {total("input_tokens")} AS i, {total("output_tokens")} AS o,
                   {total("cache_write_5m_tokens + cache_write_1h_tokens")} AS cw,
                   {total("cache_read_tokens")} AS cr,
                   sum(coalesce(reported_cost_usd, computed_cost_usd, 0)) AS cost
            FROM s GROUP BY ALL
        )
        SELECT sid, project, any_value(src), strftime(min(first), {iso}),
               strftime(max(last), {iso}), {total("i")}, {total("o")}, {total("cw")},
               {total("cr")}, sum(cost),
               list(model ORDER BY cost DESC, model) FILTER ({named}),
               list([i, o, cw, cr] ORDER BY cost DESC, model) FILTER ({named}),
               list(cost ORDER BY cost DESC, model) FILTER ({named}),
               any_value(eid)::VARCHAR
        FROM m GROUP BY sid, project ORDER BY sum(cost) DESC, max(last), sid"""
    rows = store.query(sql, params)
    return [
        {
            "sessionId": sid,
            "projectPath": proj,
            **figures(i, o, cw, cr, cost),
            "firstActivity": first,
            "lastActivity": last,
            "modelsUsed": list(models or []),
            "modelBreakdowns": _breakdowns(models or [], toks or [], costs or []),
            "source": src,
            "executionId": eid,
        }
        for sid, proj, src, first, last, i, o, cw, cr, cost, models, toks, costs, eid in rows
    ]


def usage_sessions(
    store: Store,
    *,
    since: str | date | None = None,
    until: str | date | None = None,
    source: str | None = None,
) -> pd.DataFrame:
    """Tokens and cost per agent session (ccusage ``session``), most expensive first."""
    import pandas as pd

    rows = usage_session_report(store, since=since, until=until, source=source)
    keys = "sessionId source projectPath firstActivity lastActivity inputTokens outputTokens "
    keys += "cacheCreationTokens cacheReadTokens totalTokens totalCost modelsUsed executionId"
    snake = {"totalCost": "cost_usd", "modelsUsed": "models"}  # the other names: snake_case
    cols = [snake.get(k) or re.sub("([A-Z])", r"_\1", k).lower() for k in keys.split()]
    df = pd.DataFrame([[r[k] for k in keys.split()] for r in rows], columns=cols)
    for col in ("first_activity", "last_activity"):  # timestamps (UTC, naive) as elsewhere
        df[col] = pd.to_datetime(df[col].str.removesuffix("Z"))
    return df
