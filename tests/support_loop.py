"""Helpers for the loop, gitops, verify and review tests: real temp repos, a store, chunks."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from specwright import catalog
from specwright.agents.scripted import ScriptedExecutor
from specwright.config import Config, ExecutorConfig, load_text
from specwright.model import Chunk, Spec
from specwright.store import Store

CALC = "def add(a, b):\n    return a + b\n"
TEST_CALC = "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
# A fast verification step: fails when calc.py contains BUG (and passes at the base).
NO_BUG = {"name": "nobug", "command": "! grep -n BUG calc.py", "timeout_s": 30}
PYTEST = {
    "name": "tests",
    "command": "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python -m pytest -q -p no:cacheprovider",
    "timeout_s": 120,
}


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` and return its stripped stdout."""
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(root: Path, files: dict[str, str] | None = None) -> Path:
    """A git repo on ``main`` with calc.py, its test, `.gitignore` (data/) — one commit."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    content = {".gitignore": "data/\n__pycache__/\n*.pyc\n", "calc.py": CALC}
    content.update(files or {})
    for rel, text in content.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


def make_config(
    verify: list[dict[str, Any]] | None = None, defaults: dict[str, Any] | None = None, **extra: Any
) -> Config:
    """A config with the scripted executor and checks reviewer as defaults."""
    import yaml

    data: dict[str, Any] = {
        "tools": {"executors": {"scripted": {"type": "scripted"}}},
        "defaults": {"executor": "scripted", "reviewer": "checks", "maxIterations": 3},
        "verify": verify if verify is not None else [NO_BUG],
    }
    data["defaults"].update(defaults or {})
    data.update(extra)
    return load_text(yaml.safe_dump(data), source="test-config.yaml")


def make_chunk(
    store: Store,
    repo: Path,
    *,
    title: str = "Add mul",
    files: tuple[str, ...] = ("calc.py",),
    spec_title: str = "Calc",
    spec_budget: float | None = None,
    chunk_budget: float | None = None,
    depends_on: tuple[str, ...] = (),
    spec: Spec | None = None,
) -> Chunk:
    """A spec (unless given) and one chunk in the store for the project at ``repo``."""
    if spec is None:
        project = catalog.ensure_project(store, repo)
        spec = catalog.create_spec(store, project, spec_title, budget_usd=spec_budget)
    return catalog.add_chunk(
        store,
        spec,
        title,
        "Add a mul(a, b) function to calc.py.",
        acceptance=["mul(2, 3) == 6"],
        files=files,
        depends_on=depends_on,
        budget_usd=chunk_budget,
    )


def scripted(script: Any) -> ScriptedExecutor:
    """A scripted executor following ``script``."""
    return ScriptedExecutor(ExecutorConfig(name="scripted", type="scripted"), script=script)


def good_mul(text: str = "done: mul added") -> list[dict[str, Any]]:
    return [
        {"patch": "calc.py", "search": "return a + b\n", "replace": MUL_OK},
        {"say": text},
        {"usage": {"input_tokens": 100, "output_tokens": 20, "cost_usd": 0.01}},
    ]


def bad_mul(tag: str = "BUG") -> list[dict[str, Any]]:
    return [
        {"patch": "calc.py", "search": "return a + b\n", "replace": MUL_BAD.replace("BUG", tag)},
        {"say": "tried"},
        {"usage": {"input_tokens": 100, "output_tokens": 20, "cost_usd": 0.01}},
    ]


MUL_OK = "return a + b\n\n\ndef mul(a, b):\n    return a * b\n"
MUL_BAD = "return a + b\n\n\ndef mul(a, b):\n    return a + b  # BUG\n"


def rows(store: Store, sql: str, *params: Any) -> list[dict[str, Any]]:
    return store.query_dicts(sql, list(params))


def failed_as_auth(store: Store, reason: str) -> None:
    """Assert a chunk run that failed on refused credentials is recorded so, on one line: its
    execution ended ``auth``, the run and the chunk failed, nothing left running."""
    assert "\n" not in reason
    [execution] = rows(store, "SELECT status, exit_reason FROM executions")
    assert execution["status"] == "error" and execution["exit_reason"].startswith("auth: ")
    assert rows(store, "SELECT status, reason FROM runs") == [
        {"status": "failed", "reason": reason}
    ]
    assert rows(store, "SELECT status FROM chunks") == [{"status": "failed"}]
    no_running_rows(store)


def no_running_rows(store: Store) -> None:
    """Assert nothing is left in status ``running`` (runs, executions, chunks)."""
    for table in ("runs", "executions", "chunks"):
        stuck = rows(store, f"SELECT id FROM {table} WHERE status = 'running'")
        assert not stuck, f"{table} rows left running: {stuck}"
