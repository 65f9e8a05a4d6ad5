"""Plotly figures over ``queries`` DataFrames, and one standalone, offline HTML dashboard.

Every figure has a title and axis labels with units. plotly is imported inside functions only.
Text that came from agents (model names, spec slugs, chunk titles, tool names) is escaped
before it reaches HTML: plotly renders labels as HTML, so each label passes through ``_label``.
"""

from __future__ import annotations

import html
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from specwright.store import Store

MAX_LABEL = 80
# billing blocks are Claude Code's 5-hour windows (``specwright usage blocks``'s default source)
BLOCKS_SOURCE = "claude-code"
# a label's mark: its cost is unknown (no price; stopped mid-run; an agent telling no usage),
# so no bar is drawn
NO_PRICE = " (cost unknown)"


# shown as "?" wherever agents' text is rendered, as in the terminal: control characters
# (terminal escapes; not tab and line breaks) and the bidirectional overrides, embeddings and
# isolates (an RTL override in a chunk title drew the rest of it reversed)
_BIDI = (0x61C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
_HIDDEN = {c: "?" for c in (*range(0x20), *range(0x7F, 0xA0), *_BIDI) if chr(c) not in "\t\n\r"}


def visible(text: str) -> str:
    """``text`` with control and bidirectional-override characters shown as "?"."""
    return text.translate(_HIDDEN)


def _label(value: Any, limit: int = MAX_LABEL) -> str:
    """``value`` bounded and escaped for plotly's labels and for HTML alike: plotly decodes
    ``&amp;``, ``&lt;``, ``&gt;`` and numeric entities but shows ``&quot;`` as written, so
    quotes become numeric entities."""
    text = visible("" if value is None else str(value))
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return html.escape(text, quote=False).replace('"', "&#34;").replace("'", "&#39;")


def _distinct(texts: Any) -> list[str]:
    """Axis categories kept apart: two long names cut to the same text would be one category
    (their bars drawn over each other), so a repeat gets " (2)", " (3)"."""
    out: list[str] = []
    seen: dict[str, int] = {}
    for text in texts:
        seen[text] = seen.get(text, 0) + 1
        out.append(text if seen[text] == 1 else f"{text} ({seen[text]})")
    return out


def _labels(values: Any) -> list[str]:
    """``_label`` of each value, as distinct axis categories."""
    return _distinct(_label(v) for v in values)


def _costs(values: Any) -> list[float | None]:
    """Costs for a figure: an unknown one (NULL, NaN) is None, drawn as no bar, never 0."""
    import pandas as pd

    return [None if pd.isna(v) else float(v) for v in values]


def _cost_labels(names: Any, costs: Any, unpriced: Any = None) -> list[str]:
    """``_labels`` of ``names``, each whose cost is unknown marked "(cost unknown)", and each whose
    cost sums only its priced calls (``unpriced`` counts the others) "(+N unpriced)": a lower
    bound."""
    known = [c is not None for c in _costs(costs)]
    extra = [0] * len(known) if unpriced is None else [int(n or 0) for n in unpriced]
    return _distinct(
        _label(n) + (NO_PRICE if not k else f" (+{x} unpriced)" if x else "")
        for n, k, x in zip(names, known, extra, strict=True)
    )


MAX_SERIES = 12  # series in a stacked figure: the largest, then one summing the rest


def _unknown_costs(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``cost_usd`` NaN (unknown, drawn as no bar) where its records used tokens
    but none had a price (``unpriced``), rather than a bar of 0."""
    return df.assign(cost_usd=df["cost_usd"].mask((df["cost_usd"] == 0) & (df["unpriced"] > 0)))


def _stacked(
    df: pd.DataFrame, key: str, x: str, y: str, noun: str = "models"
) -> list[tuple[str, list[Any], list[Any]]]:
    """The series (name, xs, costs) of bars stacked by ``key``: one per value of ``key`` while
    they fit in ``MAX_SERIES``, else the largest by total ``y`` and one "other (N noun)"
    summing the rest per ``x``. Names (from agents' logs) are escaped, bounded and distinct."""
    keys = df[key].fillna("").astype(str)
    totals = df[y].fillna(0).groupby(keys).sum()
    ranked = sorted(totals.index, key=lambda k: (-float(totals[k]), k))
    top = ranked if len(ranked) <= MAX_SERIES else ranked[: MAX_SERIES - 1]
    unknown = df[y].isna()  # no price: no bar, and a series of only those says so
    unpriced = df.get("unpriced")  # a series summing only its priced part says so
    names = _cost_labels(
        [k or "?" for k in top],
        [None if unknown[keys == k].all() else 0 for k in top],
        None if unpriced is None else [unpriced[keys == k].sum() for k in top],
    )
    out = [
        (name, list(df[x][keys == k]), _costs(df[y][keys == k]))
        for name, k in zip(names, top, strict=True)
    ]
    if len(top) < len(ranked):
        rest = df[~keys.isin(top)].groupby(x, sort=True)[y].sum(min_count=1)
        out.append((f"other ({len(ranked) - len(top)} {noun})", list(rest.index), _costs(rest)))
    return out


def _empty(title: str, x: str, y: str) -> go.Figure:
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.update_layout(
        title=title,
        xaxis_title=x,
        yaxis_title=y,
        annotations=[
            {
                "text": "no data yet",
                "showarrow": False,
                "xref": "paper",
                "yref": "paper",
                "x": 0.5,
                "y": 0.5,
            }
        ],
    )
    return fig


# periods are labels ("2025-01-02", "2025-01"), one bar each, in time order (a category axis
# lists them in the order the series name them); on a date axis one day was drawn as a span
# of milliseconds, its tick "00:00:00"
PERIOD_AXIS: dict[str, Any] = {
    "xaxis_type": "category",
    "xaxis_categoryorder": "category ascending",
}


def cost_by_period_figure(df: pd.DataFrame, period: str = "day") -> go.Figure:
    """Stacked bars: log-derived cost per period, one color per model (the costliest
    ``MAX_SERIES - 1`` and "other" when there are more)."""
    import plotly.graph_objects as go

    title, x, y = f"Cost per {period} by model (agent logs)", period.capitalize(), "Cost (USD)"
    if df.empty:
        return _empty(title, x, y)
    fig = go.Figure()
    for name, xs, ys in _stacked(_unknown_costs(df), "model", "period", "cost_usd"):
        fig.add_bar(x=xs, y=ys, name=name)
    fig.update_layout(barmode="stack", title=title, xaxis_title=x, yaxis_title=y, **PERIOD_AXIS)
    return fig


def tokens_by_period_figure(df: pd.DataFrame, period: str = "day") -> go.Figure:
    """Stacked bars: tokens per period by kind (input, output, cache write, cache read)."""
    import plotly.graph_objects as go

    title, x, y = f"Tokens per {period} by kind (agent logs)", period.capitalize(), "Tokens"
    if df.empty:
        return _empty(title, x, y)
    # summed as floats: each model's total is held at BIGINT's largest value (``Q.total``), and
    # two such in one period wrapped round in int64 to a negative bar (a hostile log's counts)
    per = (
        df[["input_tokens", "output_tokens", "cache_creation_tokens", "cache_read_tokens"]]
        .astype(float)
        .groupby(df["period"], sort=True)
        .sum()
    )
    fig = go.Figure()
    for col, name in (
        ("input_tokens", "input"),
        ("output_tokens", "output"),
        ("cache_creation_tokens", "cache write"),
        ("cache_read_tokens", "cache read"),
    ):
        fig.add_bar(x=list(per.index), y=list(per[col]), name=name)
    fig.update_layout(barmode="stack", title=title, xaxis_title=x, yaxis_title=y, **PERIOD_AXIS)
    return fig


def cost_by_dim_figure(df: pd.DataFrame, dim: str) -> go.Figure:
    """Horizontal bars: Specwright executions' cost by project/spec/chunk/executor/model."""
    import plotly.graph_objects as go

    title, x, y = f"Execution cost by {dim}", "Cost (USD)", dim.capitalize()
    if df.empty:
        return _empty(title, x, y)
    top = _unknown_costs(df.head(30).iloc[::-1])
    fig = go.Figure(
        go.Bar(
            x=_costs(top["cost_usd"]),
            # calls of no spec (`agents check`) were a bar without a name
            y=_cost_labels(
                top[dim].where(top[dim].notna(), f"(no {dim})"), top["cost_usd"], top["unpriced"]
            ),
            orientation="h",
            name="cost",
        )
    )
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y)
    return fig


def blocks_figure(df: pd.DataFrame, tz: str = "UTC", who: str = "Claude Code") -> go.Figure:
    """Bars: cost of each 5-hour billing block (of ``who``'s messages) over time, its start
    shown in ``tz``."""
    import plotly.graph_objects as go

    title, x, y = f"Cost per 5-hour billing block ({who})", f"Block start ({tz})", "Cost (USD)"
    real = df[~df["is_gap"]] if not df.empty else df
    if real.empty:
        return _empty(title, x, y)
    fig = go.Figure(
        go.Bar(
            x=list(_wall_clocks(real["block_start"], tz)),
            y=list(real["cost_usd"]),
            marker_color=["#d62728" if a else "#1f77b4" for a in real["is_active"]],
            name="block cost",
            # a block's records of no known price count $0: its cost is at least the bar
            hovertext=[f"+{n:,} unpriced: at least this" if n else "" for n in real["unpriced"]],
            width=5 * 3600 * 1000,  # each bar spans its block's 5 hours (ms on a date axis),
            offset=0,  # so one block alone is not drawn over a span of milliseconds
        )
    )
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y)
    return fig


def tool_calls_figure(df: pd.DataFrame) -> go.Figure:
    """Bars of tool calls by tool, with the failure rate (%) on a second axis."""
    import plotly.graph_objects as go

    title, x, y = "Tool calls and failure rate", "Tool", "Calls"
    if df.empty:
        return _empty(title, x, y)
    top = df.head(25)
    names = _labels(top["tool"])
    fig = go.Figure()
    fig.add_bar(x=names, y=list(top["calls"]), name="calls")
    fig.add_scatter(
        x=names,
        y=list(top["failure_rate"] * 100),
        name="failure rate (%)",
        yaxis="y2",
        mode="markers+lines",
    )
    fig.update_layout(
        title=title,
        xaxis_title=x,
        yaxis_title=y,
        yaxis2={"title": "Failure rate (%)", "overlaying": "y", "side": "right", "range": [0, 100]},
    )
    return fig


def latency_figure(df: pd.DataFrame, by: str = "role") -> go.Figure:
    """Grouped bars: p50/p90/p99 execution duration (seconds)."""
    import plotly.graph_objects as go

    title, x, y = f"Execution latency by {by}", by.capitalize(), "Duration (s)"
    if df.empty:
        return _empty(title, x, y)
    names = _labels(df[by])
    fig = go.Figure()
    for col in ("p50_s", "p90_s", "p99_s"):
        fig.add_bar(x=names, y=list(df[col]), name=col.removesuffix("_s"))
    fig.update_layout(barmode="group", title=title, xaxis_title=x, yaxis_title=y)
    return fig


def limits_figure(df: pd.DataFrame) -> go.Figure:
    """Bars: codexbar's latest used % per provider window."""
    import plotly.graph_objects as go

    title, x, y = "Plan limits used (codexbar, latest)", "Provider / window", "Used (%)"
    if df.empty:
        return _empty(title, x, y)
    names = _distinct(
        f"{_label(p)} {_label(w)}" for p, w in zip(df["provider"], df["window"], strict=True)
    )
    fig = go.Figure(go.Bar(x=names, y=list(df["used_percent"]), name="used %"))
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, yaxis_range=[0, 100])
    return fig


def _table_html(
    df: pd.DataFrame, title: str, limit: int = 50, latest: bool = False, total: int | None = None
) -> str:
    """``df`` as an HTML table of at most ``limit`` rows: its first ones, or its last when
    ``latest`` (rows in time order), saying so when rows are left out. ``total``: how many rows
    there are when ``df`` holds only the latest ones, newest first (its query was cut)."""
    import math

    import pandas as pd

    head = "".join(f"<th>{_label(c)}</th>" for c in df.columns)
    body = []
    for row in (df.tail(limit) if latest else df.head(limit)).to_dict("records"):
        cells = []
        for c, v in row.items():
            if v is pd.NaT or v is pd.NA or (isinstance(v, float) and not math.isfinite(v)):
                # unknown (a cost without a price, a run not finished, a sum past the largest
                # float): blank, not "nan" or "inf"
                v = None
            text = f"{v:,.4f}" if isinstance(v, float) else v
            if c == "cost_usd" and v is not None and row.get("unpriced"):
                text = f"≥{text}"  # the priced calls' sum: the unpriced ones cost more
            cells.append(f"<td>{_label(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    rows = "".join(body) or (  # on the left: a wide table's right end is off screen
        f'<tr><td colspan="{max(len(df.columns), 1)}" style="text-align:left">no data yet</td></tr>'
    )
    n = len(df) if total is None else total
    cut = (
        f"<p>The {'latest' if latest or total is not None else 'first'} {limit} of {n:,} rows.</p>"
    )
    return (
        f"<h2>{_label(title)}</h2>{cut if n > limit else ''}"
        f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    )


def _wall_clock(t: datetime, tz: str) -> str:
    """A naive UTC time as ``YYYY-MM-DD HH:MM`` in ``tz``."""
    from zoneinfo import ZoneInfo

    return t.replace(tzinfo=UTC).astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def _wall_clocks(times: pd.Series, tz: str) -> pd.Series:
    """Naive UTC times (as stored) as naive wall-clock times in ``tz``."""
    if tz == "UTC" or times.empty:
        return times
    return times.dt.tz_localize("UTC").dt.tz_convert(tz).dt.tz_localize(None)


def _in_zone(df: pd.DataFrame, col: str, tz: str) -> pd.DataFrame:
    """``df`` with its naive UTC column ``col`` as wall-clock time in ``tz``, named
    ``col (tz)``."""
    return df.assign(**{col: _wall_clocks(df[col], tz)}).rename(columns={col: f"{col} ({tz})"})


def figures(
    store: Store,
    since: str | date | None = None,
    until: str | date | None = None,
    tz: str = "UTC",
) -> dict[str, go.Figure]:
    """Every dashboard figure, by name; days (those of the window and the daily bars) are
    local days in ``tz``."""
    from specwright import blocks
    from specwright import queries as Q

    tz = Q.check_timezone(tz)
    win: dict[str, Any] = {"since": since, "until": until, "tz": tz}
    daily = Q.usage_by_period(store, "day", **win)
    return {
        "cost_by_day": cost_by_period_figure(daily, "day"),
        "tokens_by_day": tokens_by_period_figure(daily, "day"),
        "blocks": blocks_figure(blocks.billing_blocks(store, **win, source=BLOCKS_SOURCE), tz),
        "cost_by_spec": cost_by_dim_figure(Q.cost_by(store, "spec", **win), "spec"),
        "cost_by_executor": cost_by_dim_figure(Q.cost_by(store, "executor", **win), "executor"),
        "tool_calls": tool_calls_figure(Q.tool_calls(store, **win)),
        "latency": latency_figure(Q.latency(store, "role", **win), "role"),
        "limits": limits_figure(Q.codexbar_limits(store)),
    }


def write_html(
    store: Store,
    path: Path | str,
    since: str | date | None = None,
    until: str | date | None = None,
    tz: str = "UTC",
) -> Path:
    """Write one standalone HTML dashboard (plotly.js inlined: works offline) to ``path``; its
    days, and the times it shows, are in ``tz``."""
    import plotly.io as pio

    from specwright import blocks
    from specwright import queries as Q
    from specwright.model import utcnow

    path = Path(path)
    tz = Q.check_timezone(tz)
    win: dict[str, Any] = {"since": since, "until": until, "tz": tz}
    figs = figures(store, since, until, tz)
    parts = []
    for i, fig in enumerate(figs.values()):
        parts.append(
            pio.to_html(
                fig,
                full_html=False,
                include_plotlyjs="inline" if i == 0 else False,
                default_width="100%",
                default_height="420px",
            )
        )
    costs = Q.cost_sources(store, limit=51, **win)  # the latest first: one more tells a cut
    n_costs = None
    if len(costs) > 50:  # the window's executions, every one in some spec's row (or NULL's)
        n_costs = int(Q.cost_by(store, "spec", **win)["executions"].sum())
    tables = [
        _table_html(Q.usage_models(store, **win), "Models (agent logs)"),
        _table_html(Q.cost_per_shipped_chunk(store, **win), "Cost per shipped chunk"),
        _table_html(Q.iterations_to_ship(store, **win), "Iterations to SHIP"),
        _table_html(
            _in_zone(costs, "started_at", tz),
            "Reported, computed and log-derived cost per execution",
            total=n_costs,
        ),
        _table_html(
            Q.quota_per_execution(store, **win),  # oldest first: the latest are the news
            "Plan quota used per execution (codexbar)",
            latest=True,
        ),
    ]
    burn = blocks.burn_rate(store, source=BLOCKS_SOURCE)
    if burn is None:
        burn_html = "<p>No active 5-hour block.</p>"
    else:
        # records of no known price count $0 in a block (as ccusage's): the cost is a lower bound
        unpriced = burn["unpriced"]
        burn_html = "<p>Active block: {:,} tokens, {}${:,.2f}{}; ".format(
            burn["total_tokens"],
            "≥" if unpriced else "",
            burn["cost_usd"],
            f" ({unpriced:,} record(s) with no known price)" if unpriced else "",
        )
        if burn["cost_per_hour"] is None:  # one message: no rate yet
            burn_html += "one message so far, no burn rate yet; it ends {} {}.</p>".format(
                _label(_wall_clock(burn["block_end"], tz)), _label(tz)
            )
        else:
            burn_html += "{:,.0f} tokens/min, ${:,.2f}/h; projected ${:,.2f} by {} {}.</p>".format(
                burn["tokens_per_minute"],
                burn["cost_per_hour"],
                burn["projected_cost_usd"],
                _label(_wall_clock(burn["block_end"], tz)),
                _label(tz),
            )
    window = (
        f"Showing days in {_label(tz)} from {_label(since or 'the start')} "
        f"to {_label(until or 'now')}"
    )
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Specwright cost dashboard</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;}} table{{border-collapse:collapse;margin-bottom:2em}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} th{{background:#f4f4f4}}</style>
</head><body>
<h1>Specwright cost dashboard</h1>
<p>{window}; generated {_label(_wall_clock(utcnow(), tz))} {_label(tz)}.</p>
{burn_html}
{"".join(parts)}
{"".join(tables)}
</body></html>
"""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(doc, encoding="utf-8")
    except OSError as exc:  # a read-only or full disk, a parent that is a file
        from specwright.errors import SpecwrightError

        why = "a parent is a file" if isinstance(exc, FileExistsError) else exc.strerror or exc
        raise SpecwrightError(
            f"{path}: cannot write the report ({why}); expected a writable path"
        ) from None
    return path
