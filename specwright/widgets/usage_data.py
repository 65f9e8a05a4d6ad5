"""The usage notebook's figures: Specwright's executions filtered by time and project.

``specwright.queries`` filters by time only; the notebook also filters by project, so the few
queries it needs live here (read-only SQL over ``executions``, ``events``, ``chunks``), and
each figure gets a title, axis labels with units and a one-line caption. Days are local days in
the filters' time zone (by default this machine's, as in ``specwright usage``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from specwright.queries import SPEC_QUALIFIED

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from specwright.store import Store

GROUPS = ("model", "executor", "spec", "project", "role")
# an execution's cost; NaN or Infinity (an agent reported it) counts as unknown, like NULL; a
# call that used tokens without a price, still running, stopped mid-run or of an agent telling no
# usage (``incomplete``, ``unreported``) is unknown (NULL, its sum too when all are), not 0
COST = (
    "CASE WHEN isfinite(cost_usd) THEN cost_usd WHEN input_tokens + output_tokens "
    "+ cache_read_tokens + cache_write_tokens = 0 AND coalesce(cost_source, '') NOT IN "
    "('incomplete', 'unreported') AND status <> 'running' THEN 0 END"
)
UNPRICED = f"count(*) FILTER (WHERE ({COST}) IS NULL) AS unpriced"  # a sum beside them: >=
# a spec's slug is unique in its project only: one used by several projects names its project
# too (``SPEC_QUALIFIED``, as `usage specs` does), or their specs and chunks were one bar each;
# a project's name another project has too (two clones) comes with its folder, as there
_BASE = f"""
    SELECT e.*, CASE WHEN (SELECT count(DISTINCT o.project_id) FROM specs o WHERE o.slug = s.slug)
                          > 1 THEN q.qualified ELSE s.slug END AS spec,
           CASE WHEN (SELECT count(*) FROM projects o WHERE o.name = p.name) > 1
                THEN p.name || ' (' || p.root || ')' ELSE p.name END AS project,
           c.position AS chunk_position,
           c.title AS chunk_title, c.status AS chunk_status
    FROM executions e
    LEFT JOIN chunks c ON c.id = e.chunk_id
    LEFT JOIN specs s ON s.id = coalesce(e.spec_id, c.spec_id)
    LEFT JOIN projects p ON p.id = s.project_id
    LEFT JOIN {SPEC_QUALIFIED} q ON q.spec_id = s.id
"""


def machine_timezone() -> str:
    """This machine's IANA time zone, the default of ``specwright usage --timezone``."""
    # read at first use: the command line's module is no import of the widgets
    from specwright.cli.usage import local_timezone

    return local_timezone(pick="timezone")  # the notebook's parameter


@dataclass(frozen=True)
class Filters:
    """What the usage figures show: a window of days in ``tz`` (empty: this machine's zone),
    one project (or all), a grouping."""

    since: str = ""
    until: str = ""
    project: str = ""
    group_by: str = "model"
    tz: str = field(default_factory=machine_timezone)

    def zone(self) -> str:
        """``tz`` checked, as an IANA name ("UTC" for any spelling of it)."""
        from specwright.errors import ValidationError
        from specwright.windows import check_timezone

        try:
            return check_timezone(self.tz or machine_timezone())
        except ValidationError as exc:  # the notebook's parameter is ``timezone``
            raise ValidationError(str(exc).replace("--timezone", "timezone", 1)) from None

    def where(self) -> tuple[str, list[Any]]:
        """A WHERE clause over ``_BASE`` (aliases e, s, p)."""
        from specwright.errors import ValidationError
        from specwright.windows import _window, parse_day

        if self.group_by not in GROUPS:
            raise ValidationError(
                f"group_by: expected one of {', '.join(GROUPS)}, got {self.group_by!r}"
            )
        since, until = (
            parse_day(self.since or None, "since"),
            parse_day(self.until or None, "until"),
        )
        if since is not None and until is not None and since > until:
            raise ValidationError(
                f"since {since.isoformat()} is after until {until.isoformat()}: an empty window"
            )
        # the window's parameters come first: its clauses do
        window, params = _window("e.started_at", since, until, self.zone())
        where = f"true{window}"
        if self.project:
            where += " AND (p.name = ? OR p.root = ?)"
            params += [self.project, self.project]
        return where, params


def _df(store: Store, f: Filters, select: str, tail: str = "") -> pd.DataFrame:
    where, params = f.where()
    return store.query_df(f"WITH x AS ({_BASE} WHERE {where}) {select} {tail}", params)


def projects(store: Store) -> list[str]:
    """Project names (for messages)."""
    return [str(r[0]) for r in store.query("SELECT DISTINCT name FROM projects ORDER BY name")]


def project_choices(store: Store) -> list[tuple[str, str]]:
    """The project filter's choices, ``(label, root)``: each project's name and folder (two
    clones of one repository share the name), both plain (no control or bidirectional
    characters, bounded); the root is the value, which ``Filters.project`` takes."""
    from specwright.widgets.common import plain

    rows = store.query("SELECT name, root FROM projects ORDER BY name, root")
    return [(f"{plain(name, 80)} ({plain(root, 200)})", str(root)) for name, root in rows]


def check_project(store: Store, project: str) -> None:
    """A NotFoundError unless ``project`` ("" = all) names a project (or its root) in ``store``:
    a typo must not look like a project that cost nothing."""
    from specwright.errors import NotFoundError
    from specwright.widgets.common import plain

    sql = "SELECT count(*) FROM projects WHERE name = ? OR root = ?"
    if not project or store.query(sql, [project, project])[0][0]:
        return
    known = projects(store)
    listed = ", ".join(repr(plain(n, 80)) for n in known[:20]) + (" ..." if len(known) > 20 else "")
    raise NotFoundError(
        f"project {plain(project, 200)!r}: no such project in {store.path} "
        f"(known: {listed or 'none yet'}); give a name or root directory, or leave it empty"
    )


def _layout(fig: go.Figure, title: str, x: str, y: str, **kw: Any) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, **kw)
    return fig


def _empty(title: str, x: str, y: str) -> go.Figure:
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_annotation(
        text="no data in this window", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper"
    )
    return _layout(fig, title, x, y)


def _grouped(f: Filters) -> str:
    """The group_by expression, over the ``x`` CTE's columns."""
    return {
        "model": "coalesce(model, '?')",
        "executor": "coalesce(executor, backend)",
        "spec": "coalesce(spec, '(no spec)')",
        "project": "coalesce(project, '(no project)')",
        "role": "role",
    }[f.group_by]


def _day(f: Filters) -> str:
    """The local day (``YYYY-MM-DD`` in the filters' zone) of an ``x`` row's start."""
    from specwright.windows import _local

    return f"strftime({_local('started_at', f.zone())}, '%Y-%m-%d')"


def cost_per_day(store: Store, f: Filters) -> go.Figure:
    """Stacked bars: cost per local day, one colour per ``group_by`` value (the costliest
    and one "other" when there are too many for a legend)."""
    import plotly.graph_objects as go

    from specwright.report import PERIOD_AXIS, _stacked

    title = f"Cost per day by {f.group_by}"
    x, y = f"Day ({f.zone()})", "Cost (USD)"
    df = _df(
        store,
        f,
        f"SELECT {_day(f)} AS day, {_grouped(f)} AS grp, sum({COST}) AS cost_usd, {UNPRICED} "
        "FROM x",
        "GROUP BY ALL ORDER BY day",
    )
    if df.empty:
        return _empty(title, x, y)
    fig = go.Figure()
    for name, days, costs in _stacked(df, "grp", "day", "cost_usd", f"{f.group_by}s"):
        fig.add_bar(x=[str(d) for d in days], y=costs, name=name)
    return _layout(fig, title, x, y, barmode="stack", **PERIOD_AXIS)


def tokens_by_kind(store: Store, f: Filters) -> go.Figure:
    """Stacked bars: tokens per local day by kind (input, output, cache read, cache write)."""
    import plotly.graph_objects as go

    from specwright.report import PERIOD_AXIS

    title, x, y = "Tokens per day by kind", f"Day ({f.zone()})", "Tokens (count)"
    df = _df(
        store,
        f,
        f"SELECT {_day(f)} AS day, sum(input_tokens) AS input, "
        "sum(output_tokens) AS output, sum(cache_read_tokens) AS cache_read, "
        "sum(cache_write_tokens) AS cache_write FROM x",
        "GROUP BY ALL ORDER BY day",
    )
    if df.empty:
        return _empty(title, x, y)
    fig = go.Figure()
    for col, name in (
        ("input", "input"),
        ("output", "output"),
        ("cache_read", "cache read"),
        ("cache_write", "cache write"),
    ):
        fig.add_bar(x=[str(d) for d in df["day"]], y=[int(v or 0) for v in df[col]], name=name)
    return _layout(fig, title, x, y, barmode="stack", **PERIOD_AXIS)


def _hbar(df: pd.DataFrame, label: str, value: str, title: str, x: str, y: str) -> go.Figure:
    import plotly.graph_objects as go

    from specwright.report import _cost_labels, _costs

    if df.empty:
        return _empty(title, x, y)
    top = df.head(30).iloc[::-1]
    fig = go.Figure(
        go.Bar(
            x=_costs(top[value]),
            y=_cost_labels(top[label], top[value], top.get("unpriced")),
            orientation="h",
            name=x,
        )
    )
    return _layout(fig, title, x, y, height=max(320, 120 + 24 * len(top)))


def cost_per_spec(store: Store, f: Filters) -> go.Figure:
    """Horizontal bars: cost per spec (every role: planner, executor, reviewer)."""
    df = _df(
        store,
        f,
        f"SELECT coalesce(spec, '(no spec)') AS spec, sum({COST}) AS cost_usd, {UNPRICED} FROM x",
        "GROUP BY 1 ORDER BY cost_usd DESC",
    )
    return _hbar(df, "spec", "cost_usd", "Cost per spec", "Cost (USD)", "Spec")


def cost_per_chunk(store: Store, f: Filters) -> go.Figure:
    """Horizontal bars: cost per chunk across all its iterations."""
    df = _df(
        store,
        f,
        "SELECT spec || ' #' || chunk_position::VARCHAR || ' ' || chunk_title "
        f"AS chunk, sum({COST}) AS cost_usd, {UNPRICED} FROM x WHERE chunk_id IS NOT NULL",
        "GROUP BY 1 ORDER BY cost_usd DESC",
    )
    return _hbar(df, "chunk", "cost_usd", "Cost per chunk (all iterations)", "Cost (USD)", "Chunk")


def cost_per_shipped_chunk(store: Store, f: Filters) -> go.Figure:
    """Box plot: what one shipped chunk cost, per executor: the calls (its reviews too) of the
    runs of the executor that shipped it, not those of another that failed it before."""
    import plotly.graph_objects as go

    from specwright.report import _cost_labels, _costs

    title, x, y = "Cost per shipped chunk by executor", "Executor", "Cost per shipped chunk (USD)"
    # a call's executor is its run's (a review has none of its own); calls without a run
    # (recorded by hand) count for a shipped chunk as they did
    df = _df(
        store,
        f,
        "SELECT chunk_id, coalesce(run_executor, executor, backend) AS executor, "
        f"sum({COST}) AS cost_usd, {UNPRICED} FROM x LEFT JOIN (SELECT id AS run_key, "
        "executor AS run_executor, status AS run_status FROM runs) r ON r.run_key = x.run_id "
        "WHERE chunk_id IS NOT NULL",
        "GROUP BY 1, 2 HAVING bool_or(role = 'executor') AND (bool_or(run_status = 'shipped') "
        "OR (bool_and(run_key IS NULL) AND any_value(chunk_status) = 'shipped'))",
    )
    df = df[df["executor"].notna()] if not df.empty else df
    if df.empty:
        return _empty(title, x, y)
    fig = go.Figure()
    for ex, rows in df.groupby("executor", sort=True):
        costs = _costs(rows["cost_usd"])  # a chunk of unknown cost is no point, not one at 0
        known = None if all(c is None for c in costs) else 0  # some only a lower bound: said
        (name,) = _cost_labels([ex], [known], [rows["unpriced"].sum()])
        fig.add_box(y=costs, name=name, boxpoints="all", jitter=0.3)
    # from 0: alone, one chunk's cost was drawn at the middle of an axis from -0.5 to 1
    return _layout(fig, title, x, y, showlegend=False, yaxis_rangemode="tozero")


def iterations_to_ship(store: Store, f: Filters) -> go.Figure:
    """Histogram: how many iterations shipped chunks needed (over all their runs)."""
    import plotly.graph_objects as go

    from specwright.queries import ITERATIONS, TRIES

    title, x, y = "Iterations to SHIP", "Iterations (attempts)", "Shipped chunks (count)"
    df = _df(
        store,
        f,
        f"SELECT {ITERATIONS} AS iterations, count(DISTINCT c.id) AS chunks FROM chunks c "
        f"LEFT JOIN {TRIES} t ON t.chunk_id = c.id "
        "WHERE c.status = 'shipped' AND c.id IN (SELECT chunk_id FROM x)",
        "GROUP BY 1 ORDER BY 1",
    )
    if df.empty:
        return _empty(title, x, y)
    fig = go.Figure(go.Bar(x=[int(v) for v in df["iterations"]], y=[int(v) for v in df["chunks"]]))
    return _layout(fig, title, x, y, xaxis={"dtick": 1})


def tool_calls(store: Store, f: Filters) -> go.Figure:
    """Bars of tool calls by tool name, with the failure rate (%) on a second axis."""
    from specwright.report import tool_calls_figure

    df = _df(
        store,
        f,
        # a failed call's first failed result names it (migration 10): no grouping by call
        """, r AS (
            SELECT ev.call_tool AS tool, count(*) AS failures FROM events ev
            WHERE ev.type = 'tool_result' AND ev.first_failure
              AND ev.execution_id IN (SELECT id FROM x)
            GROUP BY 1), c AS (
            SELECT ev.tool_name AS tool, count(*) AS calls FROM events ev
            WHERE ev.type = 'tool_call' AND ev.execution_id IN (SELECT id FROM x)
            GROUP BY 1)
        SELECT c.tool, c.calls, coalesce(r.failures, 0)::DOUBLE / c.calls AS failure_rate
        FROM c LEFT JOIN r ON r.tool IS NOT DISTINCT FROM c.tool""",
        "ORDER BY c.calls DESC, c.tool",
    )
    fig = tool_calls_figure(df)
    return fig.update_layout(
        title="Tool calls by name, with failure rate", yaxis_title="Calls (count)"
    )


def latency(store: Store, f: Filters) -> go.Figure:
    """Grouped bars: p50/p90/p99 of agent call duration (seconds) by role."""
    from specwright.report import latency_figure

    df = _df(
        store,
        f,
        "SELECT role, quantile_cont(duration_ms, 0.5) / 1000.0 AS p50_s, "
        "quantile_cont(duration_ms, 0.9) / 1000.0 AS p90_s, "
        "quantile_cont(duration_ms, 0.99) / 1000.0 AS p99_s FROM x "
        "WHERE duration_ms IS NOT NULL",
        "GROUP BY 1 ORDER BY 1",
    )
    fig = latency_figure(df, "role")
    return fig.update_layout(title="Agent latency percentiles by role (p50, p90, p99)")


def limits(store: Store, f: Filters) -> go.Figure:
    """Bars: codexbar's latest used % per provider window (plan-wide, not per project)."""
    from specwright import queries
    from specwright.report import limits_figure

    return limits_figure(queries.codexbar_limits(store))


FIGURES: tuple[tuple[str, Any, str], ...] = (
    (
        "cost_per_day",
        cost_per_day,
        "Where the money went each day; the colours follow group_by (scripted demo costs are synthetic).",
    ),
    (
        "tokens_by_kind",
        tokens_by_kind,
        "Token volume per day; a large cache-read share means prompts are being reused cheaply.",
    ),
    ("cost_per_spec", cost_per_spec, "Total cost of each spec, planning and reviewing included."),
    (
        "cost_per_chunk",
        cost_per_chunk,
        "The most expensive chunks first: candidates for splitting or a clearer prompt.",
    ),
    (
        "cost_per_shipped_chunk",
        cost_per_shipped_chunk,
        "What one shipped chunk costs with each executor: compare medians, not single points.",
    ),
    (
        "iterations_to_ship",
        iterations_to_ship,
        "How often the first attempt shipped; a long tail means chunks are too big or too vague.",
    ),
    (
        "tool_calls",
        tool_calls,
        "Which tools the agents lean on, and which ones fail most (right axis).",
    ),
    (
        "latency",
        latency,
        "How long one agent call takes; p99 far above p50 means occasional stalls.",
    ),
    (
        "limits",
        limits,
        "How much of each plan window is used, from the latest codexbar snapshot (all projects).",
    ),
)


def figures(store: Store, f: Filters) -> list[tuple[go.Figure, str]]:
    """Every usage figure with its caption, for ``f``."""
    f.where()  # validate before any query
    return [(build(store, f), caption) for _name, build, caption in FIGURES]


def out_of_days_text(store: Store) -> str:
    """How many records of the agents' logs no usage report counts for their stamps (plain
    text, "" when none), as `specwright usage` and `report --html` warn."""
    from specwright import queries

    stray = queries.out_of_days(store)
    if not stray:
        return ""
    return (
        f"{stray} record(s) of the agents' logs stamped outside {queries.FIRST_DAY}.."
        f"{queries.LAST_DAY} (a broken clock or log) are left out of every usage report "
        "(`specwright usage`, `specwright report`); the figures here count Specwright's own calls."
    )


def credits_text(store: Store) -> str:
    """codexbar's latest credits and provider cost, one line per provider (plain text)."""
    from specwright import queries

    df = queries.codexbar_limits(store)
    if df.empty:
        return "No codexbar snapshot yet (`specwright ingest codexbar` takes one)."
    import math

    from specwright.widgets.common import plain

    def number(value: Any) -> float | None:
        ok = isinstance(value, int | float) and math.isfinite(value)
        return float(value) if ok else None

    lines = []
    for provider, rows in df.groupby("provider", sort=True):
        r = rows.iloc[0]
        # the provider's name is what codexbar printed: one bounded line, no terminal escapes
        parts = [f"{plain(provider, 80)}: snapshot {r['taken_at']} UTC"]
        remaining = number(r["credits_remaining"])
        used, limit = number(r["provider_cost_used"]), number(r["provider_cost_limit"])
        if remaining is not None:
            parts.append(f"credits remaining {remaining:,.2f}")
        if limit:
            spent = "?" if used is None else f"{used:,.2f}"
            parts.append(f"spent {spent} of {limit:,.2f}")
        lines.append("; ".join(parts))
    return "\n".join(lines)
