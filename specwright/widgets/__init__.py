"""ipywidgets views for the notebooks: spec studio, runs, usage. A leaf: nothing in the core
imports this package (it imports ipywidgets, IPython and plotly).

The notebooks call one function each: ``open_studio`` (01), ``run_spec`` (02),
``usage_dashboard`` (03). The view classes take their backend calls as constructor arguments.
"""

from __future__ import annotations

from specwright.widgets.common import dag_figure, interactive
from specwright.widgets.run_view import RunFailed, RunView, prepare_demo, run_spec
from specwright.widgets.studio_backend import ChunkRow, Draft, StudioBackend
from specwright.widgets.studio_entry import open_studio
from specwright.widgets.studio_view import StudioView
from specwright.widgets.usage_data import Filters
from specwright.widgets.usage_view import UsageView, usage_dashboard

__all__ = [
    "ChunkRow",
    "Draft",
    "Filters",
    "RunFailed",
    "RunView",
    "StudioBackend",
    "StudioView",
    "UsageView",
    "dag_figure",
    "interactive",
    "open_studio",
    "prepare_demo",
    "run_spec",
    "usage_dashboard",
]
