"""Helpers for the notebook, widget and browser tests: a tiny scripted project, the demo database
(built once per session), papermill in a subprocess, and paths under the git-ignored ``out/``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from specwright import catalog
from specwright.model import Spec
from specwright.store import Store
from tests.conftest import REPO, git, run_specwright

NOTEBOOKS = REPO / "notebooks"
OUT = REPO / "out"
NOTEBOOK_PARAMETERS = {
    "01_spec_studio.ipynb": {"project_dir", "intent", "planner", "answers"},
    "02_run.ipynb": {"project_dir", "spec", "executor", "reviewer", "max_iterations", "parallel"},
    "03_usage.ipynb": {"project_dir", "since", "until", "project", "group_by", "timezone"},
}
# fails when a chunk wrote BUG into its file (and passes at the base, where none exists)
NO_BUG = {"name": "nobug", "command": "! grep -qs BUG one.txt two.txt three.txt", "timeout_s": 30}


def _script(bad_chunk: int | None) -> dict[str, Any]:
    chunks: dict[str, Any] = {}
    for n, name in ((1, "one"), (2, "two"), (3, "three")):
        text = "BUG\n" if n == bad_chunk else f"{name}\n"
        chunks[str(n)] = [
            {"write": f"{name}.txt", "content": text},
            {"say": f"wrote {name}.txt"},
            {"usage": {"input_tokens": 100 * n, "output_tokens": 10 * n, "cost_usd": 0.01 * n}},
        ]
    return {"chunks": chunks}


def make_project(
    root: Path, *, bad_chunk: int | None = None, planner_url: str | None = None
) -> Path:
    """A git project with a scripted executor (chunk ``bad_chunk`` writes BUG), the checks
    reviewer, a fast verification step and, optionally, a planner at ``planner_url``."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    config: dict[str, Any] = {
        "tools": {
            "executors": {"scripted": {"type": "scripted", "script": ".handoff/script.yaml"}},
            "reviewers": {"checks": {"type": "checks"}},
        },
        "defaults": {"executor": "scripted", "reviewer": "checks", "maxIterations": 2},
        "verify": [NO_BUG],
    }
    if planner_url:
        config["tools"]["planners"] = {
            "fake": {"type": "anthropic", "model": "claude-sonnet-4-6", "base_url": planner_url,
                     "timeout_s": 10, "max_retries": 0}
        }  # fmt: skip
        config["defaults"]["planner"] = "fake"
    (root / ".handoff").mkdir(exist_ok=True)
    (root / ".handoff" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / ".handoff" / "script.yaml").write_text(yaml.safe_dump(_script(bad_chunk)))
    (root / ".gitignore").write_text("data/\n__pycache__/\n")
    (root / "README.md").write_text("# sample\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


def make_spec(store: Store, root: Path, title: str = "Three files") -> Spec:
    """Three chunks: 1, 2 (needs 1), 3 (needs 2)."""
    project = catalog.ensure_project(store, root)
    spec = catalog.create_spec(store, project, title, "Write three files.", status="ready")
    for n, name in ((1, "one"), (2, "two"), (3, "three")):
        deps = [str(n - 1)] if n > 1 else []
        catalog.add_chunk(store, spec, f"Write {name}.txt", f"Create {name}.txt.",
                          files=[f"{name}.txt"], depends_on=deps)  # fmt: skip
    return spec


_demo: Path | None = None


def demo_database(factory: pytest.TempPathFactory) -> Path:
    """A database made by `specwright demo` (built once per test session; copy before use)."""
    global _demo
    if _demo is None or not _demo.exists():
        base = factory.mktemp("demo-db")
        db = base / "db" / "specwright.duckdb"
        result = run_specwright("demo", "--dir", str(base / "db" / "demo"),
                                env={"SPECWRIGHT_DB": str(db)}, timeout=600)  # fmt: skip
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        _demo = db
    return _demo


def copy_database(src: Path, dest_dir: Path) -> Path:
    """A private copy of a database file (its journals are not needed to read it)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / "specwright.duckdb"
    shutil.copy2(src, dest)
    return dest


def papermill(
    notebook: str, output: Path, db: Path, *params: tuple[str, Any], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``papermill notebooks/NOTEBOOK OUTPUT -p ...`` in a subprocess, cwd = notebooks/."""
    output.parent.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "papermill", str(NOTEBOOKS / notebook), str(output),
            "--cwd", str(NOTEBOOKS), "-k", "python3", "--no-progress-bar"]  # fmt: skip
    for name, value in params:
        args += ["-p", name, str(value)]
    env = {**os.environ, "SPECWRIGHT_DB": str(db)}
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)


def out_dir(name: str) -> Path:
    """A fresh folder under the git-ignored ``out/`` for executed copies and screenshots."""
    path = OUT / name
    path.mkdir(parents=True, exist_ok=True)
    return path
