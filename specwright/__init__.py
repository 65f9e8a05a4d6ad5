"""Specwright: run AI coding agents from a spec, verify and review every attempt, and know
exactly what it cost.

The public surface is small and pinned by a test (``tests/test_public_api.py``); everything
heavy (DuckDB, pandas, plotly, the model SDKs, git) is imported only where it is used.
"""

from specwright.config import Config
from specwright.config import load as load_config
from specwright.errors import SpecwrightError
from specwright.model import Chunk, Project, Spec, Usage
from specwright.store import Store

__version__ = "0.1.0"

__all__ = [
    "Chunk",
    "Config",
    "Project",
    "Spec",
    "SpecwrightError",
    "Store",
    "Usage",
    "__version__",
    "load_config",
]
