"""Import hygiene, the public surface, and generated docs kept current."""

from __future__ import annotations

import subprocess
import sys

import specwright
from tests.conftest import REPO

HEAVY = (
    "ipywidgets",
    "plotly",
    "anthropic",
    "git",
    "pandas",
    "duckdb",
    "IPython",
    "papermill",
    "httpx",
    "pyarrow",
    "yaml",
)


def test_core_imports_without_heavy_modules() -> None:
    code = (
        "import sys, specwright, specwright.store, specwright.catalog, specwright.config, "
        "specwright.recorder, specwright.journal, specwright.agents.base, specwright.cli; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_surface_is_pinned() -> None:
    assert specwright.__all__ == [
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
    for name in specwright.__all__:
        assert hasattr(specwright, name), name


def test_schema_doc_is_current() -> None:
    from specwright.schemadoc import generate

    committed = (REPO / "docs" / "schema.md").read_text()
    assert committed == generate(), (
        "docs/schema.md is stale: run `specwright db schema > docs/schema.md`"
    )
