"""The usage view of ``03_usage.ipynb``: the usage and cost figures under filter widgets.

``UsageView`` takes its backend as constructor arguments (``render(filters) -> [(figure,
caption)]`` and the project names), so tests set a filter's ``.value`` and check what was
rendered. ``usage_dashboard`` is what the notebook calls: live filters with a person at the
notebook, else every figure as a static output (title, axis labels, caption) so an executed,
exported notebook shows them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from specwright.errors import SpecwrightError
from specwright.widgets.common import (
    esc,
    figure_bundle,
    interactive,
    plain,
    project_start,
    show_figure,
    text_param,
)
from specwright.widgets.usage_data import GROUPS, Filters

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from specwright.store import Store

RenderFn = Callable[[Filters], list[tuple["go.Figure", str]]]
ALL = "(all projects)"


def _day(value: str) -> date | None:
    from specwright.windows import parse_day

    return parse_day(value or None)


class UsageView:
    """Filters (since, until, project, group_by) over the usage figures; the days are those of
    the filters' time zone, which a label beside the dates names."""

    def __init__(
        self,
        render: RenderFn,
        projects: Sequence[str | tuple[str, str]],
        filters: Filters | None = None,
    ) -> None:
        f = filters or Filters()
        self._render = render
        self.tz = f.zone()
        self.since = w.DatePicker(description="since", value=_day(f.since))
        self.until = w.DatePicker(description="until", value=_day(f.until))
        self.zone = w.HTML(f"days in <b>{esc(self.tz)}</b>")
        # a name, or (label, value): `name (folder)` and the root (``project_choices``)
        choices = [(ALL, ALL), *((p, p) if isinstance(p, str) else p for p in projects)]
        if f.project and f.project not in (value for _, value in choices):
            choices.append((plain(f.project, 200), f.project))  # a name: every project of it
        self.project = w.Dropdown(description="project", options=choices, value=f.project or ALL)
        self.group_by = w.Dropdown(description="group by", options=list(GROUPS), value=f.group_by)
        self.message = w.HTML()
        self.out = w.Output()
        self.renders = 0
        for control in (self.since, self.until, self.project, self.group_by):
            control.observe(lambda _c: self.refresh(), names="value")
        self.widget = w.VBox(
            [
                w.HBox([self.since, self.until, self.zone]),
                w.HBox([self.project, self.group_by]),
                self.message,
                self.out,
            ]
        )
        self.refresh()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    @property
    def filters(self) -> Filters:
        """The filters as set in the widgets."""
        return Filters(
            since=self.since.value.isoformat() if self.since.value else "",
            until=self.until.value.isoformat() if self.until.value else "",
            project="" if self.project.value == ALL else str(self.project.value),
            group_by=str(self.group_by.value),
            tz=self.tz,
        )

    def refresh(self) -> None:
        """Draw every figure again for the current filters."""
        f = self.filters
        if f.since and f.until and f.since > f.until:
            self.message.value = (
                f"<span style='color:#d62728'>since {esc(f.since)} is after until "
                f"{esc(f.until)}: nothing to show</span>"
            )
            self.out.outputs = ()  # not the figures of the filters before, as if of these
            return
        try:
            figs = self._render(f)
        except SpecwrightError as exc:
            self.message.value = f"<span style='color:#d62728'>{esc(exc)}</span>"
            self.out.outputs = ()
            return
        self.message.value = ""
        outputs: list[dict[str, Any]] = []
        for fig, caption in figs:
            outputs.append(
                {
                    "output_type": "display_data",
                    "data": figure_bundle(fig, html=False),
                    "metadata": {},
                }
            )
            outputs.append(
                {
                    "output_type": "display_data",
                    "metadata": {},
                    "data": {
                        "text/html": f"<p><i>{esc(caption, 400)}</i></p>",
                        "text/plain": caption,
                    },
                }
            )
        self.out.outputs = tuple(outputs)
        self.renders += 1


def usage_dashboard(
    since: str = "",
    until: str = "",
    project: str = "",
    group_by: str = "model",
    project_dir: str = "",
    timezone: str = "",
    *,
    store: Store | None = None,
    live: bool | None = None,
) -> UsageView | None:
    """The usage figures for the notebook (see the module docstring), by day in ``timezone``
    (empty: this machine's zone); the database is ``SPECWRIGHT_DB``, else that of the project
    at ``project_dir`` (or the nearest one)."""
    from IPython.display import HTML, display

    from specwright import config as config_mod
    from specwright.store import Store, resolve_db_path
    from specwright.widgets import usage_data

    start = project_start(project_dir)
    if store is None:  # it only reads: a mistyped SPECWRIGHT_DB is named, not made empty
        from specwright.config_env import require_database

        path = resolve_db_path(config_mod.find_project_root(start))
        require_database(path, other="SPECWRIGHT_DB or project_dir names another")
        store = Store(path)
    since, until, project, group_by, timezone = map(
        text_param, (since, until, project, group_by, timezone)
    )
    zone = timezone or usage_data.machine_timezone()
    filters = Filters(since, until, project, group_by or "model", zone)
    filters.where()  # a bad date, window, zone or grouping is one clear error before any figure
    usage_data.check_project(store, filters.project)
    # records no figure or report counts (a broken clock): said as the command line says it
    stray = usage_data.out_of_days_text(store)
    warning = HTML(f"<p style='color:#b45309'>{esc(stray)}</p>")
    live = interactive() if live is None else live
    if live:
        view = UsageView(
            lambda f: usage_data.figures(store, f), usage_data.project_choices(store), filters
        )
        if stray:
            display(warning)
        display(view.widget)
        return view
    window = (
        f"{filters.since or 'the start'} to {filters.until or 'now'} (days in {filters.zone()})"
    )
    scope = filters.project or "all projects"
    display(
        HTML(
            f"<p>Usage of <b>{esc(scope)}</b>, {esc(window)}; database "
            f"<code>{esc(store.path)}</code>.</p>"
        )
    )
    if stray:
        display(warning)
    for fig, caption in usage_data.figures(store, filters):
        show_figure(fig, caption)
    print(usage_data.credits_text(store))
    return None
