"""Shared helpers of the notebook views: is a person watching, escaping, figures, the DAG.

``interactive()`` decides between the two ways a notebook runs. In JupyterLab (or any frontend
that can answer ``input()``) the views are live widgets and long work runs in a background
thread. Under papermill, nbval or nbconvert (they execute with ``allow_stdin=False``) and outside
a kernel, the views print progress lines and display static outputs instead, and a failure
raises so the run exits non-zero. ``SPECWRIGHT_HEADLESS=1`` / ``0`` forces either.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from specwright.model import Chunk

MAX_TEXT = 2_000  # characters of agent-provided text shown in one place
MAX_MARKDOWN = 60_000

STATUS_COLORS = {
    "pending": "#9e9e9e",
    "queued": "#9e9e9e",
    "running": "#1f77b4",
    "shipped": "#2ca02c",
    "failed": "#d62728",
    "blocked": "#ff7f0e",
    "interrupted": "#9467bd",
    "cancelled": "#616161",
}


def interactive() -> bool:
    """True when a person is at a live notebook frontend (see the module docstring)."""
    forced = os.environ.get("SPECWRIGHT_HEADLESS", "").strip().lower()
    if forced in ("1", "true", "yes"):
        return False
    if forced in ("0", "false", "no"):
        return True
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    kernel = getattr(shell, "kernel", None)
    return bool(kernel is not None and getattr(kernel, "_allow_stdin", False))


def text_param(value: Any) -> str:
    """A notebook's text parameter as text: papermill passes ``-p spec 2025`` as the int 2025
    (and ``-p intent 1.5`` as a float), which string methods then failed on."""
    return "" if value is None else str(value)


def project_start(project_dir: Any) -> Path | None:
    """The notebooks' ``project_dir`` parameter as the folder to look for the project from
    (None: empty, the nearest project above the notebook); one that is not a directory (a typo)
    is refused before it is recorded as a project."""
    from specwright.errors import ValidationError

    if not project_dir:
        return None
    start = Path(str(project_dir)).expanduser()
    if not start.is_dir():
        raise ValidationError(f"project_dir: {clip(project_dir, 300)!r} is not a directory")
    return start


def clip(text: Any, limit: int = MAX_TEXT) -> str:
    """``text`` as a string of at most ``limit`` characters (an ellipsis marks the cut)."""
    s = "" if text is None else str(text)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def plain(text: Any, limit: int = MAX_TEXT) -> str:
    """Agent- or model-provided text for plain-text output (printed lines, error messages):
    bounded, on one line, control characters (terminal escapes) shown as '?'."""
    s = clip(text, limit)
    return "".join(ch if ch.isprintable() else ("?" if ch not in "\n\t" else " ") for ch in s)


def esc(text: Any, limit: int = MAX_TEXT) -> str:
    """Agent- or user-provided text, bounded and HTML-escaped, for HTML widgets (control and
    bidirectional-override characters shown as "?", as in the terminal)."""
    from specwright.report import visible

    return html.escape(visible(clip(text, limit)), quote=True)


def markdown_html(text: str, limit: int = MAX_MARKDOWN) -> str:
    """Markdown (e.g. a planner's spec) as HTML with raw HTML escaped, unsafe links dropped and
    images shown as links: an image would be fetched from wherever the text points as soon as
    it is shown (a tracking pixel), a link only when clicked."""
    import mistune

    from specwright.report import visible

    class NoFetch(mistune.HTMLRenderer):
        def image(self, text: str, url: str, title: str | None = None) -> str:
            return self.link(f"image: {text or mistune.escape(url)}", url, title)

    render = mistune.create_markdown(
        escape=True, renderer=NoFetch(escape=True), plugins=["table", "strikethrough"]
    )
    return str(render(visible(clip(text, limit))))


def badge(status: str) -> str:
    """A coloured status label (HTML)."""
    color = STATUS_COLORS.get(status, "#616161")
    return (
        f'<span style="background:{color};color:white;border-radius:3px;'
        f'padding:1px 6px;font-size:90%">{esc(status, 40)}</span>'
    )


def table_html(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], limit: int = 200) -> str:
    """A small escaped HTML table (floats with 4 decimals; a cost whose row counts
    ``unpriced`` calls is a lower bound, "≥")."""
    head = "".join(f"<th style='text-align:left;padding:2px 8px'>{esc(c)}</th>" for c in columns)
    body = []
    for row in list(rows)[:limit]:
        cells = []
        for c in columns:
            v = row.get(c)
            if isinstance(v, float) and not math.isfinite(v):
                v = None  # NaN, a sum past the largest float: unknown, blank (as in the dashboard)
            if c == "status" and isinstance(v, str):
                cell = badge(v)
            elif isinstance(v, bool):  # the run summary's "ran": yes/no, as the CLI prints it
                cell = "yes" if v else "no"
            else:
                cell = esc(f"{v:,.4f}" if isinstance(v, float) else ("" if v is None else v), 200)
                if c == "cost_usd" and v is not None and row.get("unpriced"):
                    cell = "&ge;" + cell  # the priced calls' sum: the unpriced ones cost more
            cells.append(f"<td style='padding:2px 8px'>{cell}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# --- figures --------------------------------------------------------------------------------

_plotlyjs_sent = False


def figure_bundle(fig: go.Figure, html: bool = True) -> dict[str, Any]:
    """A display bundle for ``fig``: plotly's JSON (JupyterLab renders it with its extension)
    and standalone HTML for exported notebooks, with plotly.js inlined in the first one (so an
    HTML export draws offline)."""
    global _plotlyjs_sent
    import json

    import plotly.io as pio

    bundle: dict[str, Any] = {
        "application/vnd.plotly.v1+json": json.loads(pio.to_json(fig, validate=False)),
        "text/plain": f"<plotly figure: {fig.layout.title.text or 'untitled'}>",
    }
    if not html:  # widget outputs: JupyterLab draws the JSON; no 4 MB of plotly.js per redraw
        return bundle
    inline = not _plotlyjs_sent
    _plotlyjs_sent = True
    return bundle | {
        "text/html": pio.to_html(
            fig,
            full_html=False,
            include_plotlyjs=inline,
            default_width="100%",
            default_height="420px",
            validate=False,
        ),
    }


def show_figure(fig: go.Figure, caption: str | None = None) -> None:
    """Display a plotly figure (and its one-line caption) in the current output."""
    from IPython.display import HTML, display

    display(figure_bundle(fig), raw=True)
    if caption:
        display(HTML(f"<p style='margin-top:0;color:#555'><i>{esc(caption, 400)}</i></p>"))


def dag_levels(chunks: Sequence[Chunk]) -> dict[str, int]:
    """Each chunk's depth in the dependency graph (0 = depends on nothing)."""
    by_id = {c.id: c for c in chunks}
    level: dict[str, int] = {}

    def depth(cid: str, seen: frozenset[str]) -> int:
        if cid in level:
            return level[cid]
        deps = [d for d in by_id[cid].depends_on if d in by_id and d not in seen]
        level[cid] = 1 + max((depth(d, seen | {cid}) for d in deps), default=-1)
        return level[cid]

    for c in chunks:
        depth(c.id, frozenset())
    return level


def dag_figure(
    chunks: Sequence[Chunk], statuses: Mapping[str, str] | None = None, title: str = ""
) -> go.Figure:
    """The chunks' dependency graph: columns by depth, arrows from dependency to dependent,
    nodes coloured by status."""
    import plotly.graph_objects as go

    from specwright.report import _label

    statuses = statuses or {}
    level = dag_levels(chunks)
    rows: dict[int, int] = {}
    pos: dict[str, tuple[float, float]] = {}
    for c in sorted(chunks, key=lambda c: (level[c.id], c.position)):
        row = rows.get(level[c.id], 0)
        rows[level[c.id]] = row + 1
        pos[c.id] = (float(level[c.id]), -float(row))
    fig = go.Figure()
    for c in chunks:
        for d in c.depends_on:
            if d in pos:
                (x0, y0), (x1, y1) = pos[d], pos[c.id]
                fig.add_annotation(
                    x=x1,
                    y=y1,
                    ax=x0,
                    ay=y0,
                    xref="x",
                    yref="y",
                    axref="x",
                    ayref="y",
                    showarrow=True,
                    arrowhead=2,
                    arrowsize=1.2,
                    standoff=14,
                    startstandoff=14,
                    arrowcolor="#888",
                )
    by_status: dict[str, list[Chunk]] = {}
    for c in chunks:
        by_status.setdefault(statuses.get(c.id, c.status), []).append(c)
    for status, group in sorted(by_status.items()):
        fig.add_scatter(
            x=[pos[c.id][0] for c in group],
            y=[pos[c.id][1] for c in group],
            mode="markers+text",
            marker={"size": 26, "color": STATUS_COLORS.get(status, "#616161")},
            text=[str(c.position) for c in group],
            textfont={"color": "white"},
            hovertext=[f"{c.position}. {_label(c.title)}" for c in group],
            hoverinfo="text",
            name=status,
        )
    fig.update_layout(
        title=title or "Chunk dependencies (arrows point from a dependency to its dependents)",
        xaxis={"visible": False, "range": [-0.5, max(level.values(), default=0) + 0.5]},
        yaxis={"visible": False, "range": [-max(rows.values(), default=1) + 0.5, 0.5]},
        height=160 + 60 * max(rows.values(), default=1),
        margin={"l": 20, "r": 20, "t": 50, "b": 20},
        legend_title_text="status",
    )
    return fig


def positions_text(ids: Iterable[str], position_of: Mapping[str, int]) -> str:
    """Dependency ids as ``"1, 2"`` (positions)."""
    return ", ".join(str(position_of[i]) for i in ids if i in position_of)
