"""Bench 4, parallel run-all: 12 chunks in three layers of four (critical path: 3 chunks), each
executed by the scripted agent sleeping a fixed time, ``run_all(..., parallel=4)``.

The baseline is the critical path measured in the same run: 3 x the median time of the same
chunk's execution by the agent alone. The figure is wall time / critical path; target < 1.15.
What is left over is run-all's own cost: git worktrees, the loop's store rows and git calls, the
recorder, merging each shipped chunk back.
"""

from __future__ import annotations

import functools
import shutil
import statistics
import tempfile
import threading
from pathlib import Path
from typing import Any

from bench.common import make_repo, row, scripted_config, timed

NAME = "parallel"
LAYERS, WIDTH = 3, 4
TARGET = 1.15


def _ignore(event: Any) -> None:
    """An event sink for the agent run alone: nothing recorded."""


def _title(layer: int, i: int) -> str:
    return f"L{layer} part {i}"


def _steps(layer: int, i: int, sleep_s: float) -> list[dict[str, Any]]:
    name = f"l{layer}_{i}.py"
    return [
        {"sleep": sleep_s},
        {"write": name, "content": f"VALUE = {layer * 10 + i}\n"},
        {"say": f"Wrote {name}."},
        {"usage": {"input_tokens": 1000, "output_tokens": 100, "cost_usd": 0.001}},
    ]


def _script(sleep_s: float) -> dict[str, Any]:
    return {
        "chunks": {
            _title(layer, i): _steps(layer, i, sleep_s)
            for layer in range(LAYERS)
            for i in range(WIDTH)
        }
    }


def _spec(store: Any, repo: Path) -> Any:
    """Three layers of four chunks; each depends on the chunk below it (and its neighbour)."""
    from specwright import catalog

    spec = catalog.create_spec(store, catalog.ensure_project(store, repo), "Parallel bench")
    below: list[str] = []
    for layer in range(LAYERS):
        ids = []
        for i in range(WIDTH):
            deps = [below[i], below[(i + 1) % WIDTH]] if below else []
            chunk = catalog.add_chunk(
                store,
                spec,
                _title(layer, i),
                f"Create l{layer}_{i}.py",
                files=[f"l{layer}_{i}.py"],
                depends_on=deps,
            )
            ids.append(chunk.id)
        below = ids
    return spec


def run(quick: bool) -> list[dict[str, Any]]:
    """Wall time of run-all --parallel 4 against its critical path."""
    from specwright.agents.base import Task
    from specwright.agents.scripted import ScriptedExecutor
    from specwright.config import ExecutorConfig
    from specwright.runner import run_all
    from specwright.store import Store

    sleep_s = 0.3 if quick else 5.0
    executor = ScriptedExecutor(
        ExecutorConfig(name="scripted", type="scripted"), script=_script(sleep_s)
    )
    work = Path(tempfile.mkdtemp(prefix="specwright-bench-parallel-"))
    try:
        scratch = make_repo(work / "direct")
        direct = []
        for k in range(4):  # the first is a warm-up
            task = Task("x", scratch, metadata={"chunk_title": _title(0, k % WIDTH)})
            took, outcome = timed(
                functools.partial(executor.execute, task, _ignore, threading.Event())
            )
            if outcome.status != "ok":
                raise RuntimeError(f"direct run: {outcome.status} {outcome.error}")
            direct.append(took)
        critical = LAYERS * statistics.median(direct[1:])
        repo = make_repo(work / "repo")
        store = Store(work / "store" / "db.duckdb")
        store.migrate()
        spec = _spec(store, repo)
        wall, result = timed(
            lambda: run_all(store, scripted_config(), repo, spec, executor=executor, parallel=4)
        )
        if result.status != "shipped":
            raise RuntimeError(f"run-all: {result.status}: {result.reason}")
        per_chunk = store.query(
            "SELECT median(epoch(finished_at) - epoch(started_at)) FROM runs WHERE kind = 'chunk'"
        )[0][0]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [
        row(
            NAME,
            "run-all --parallel 4 wall / critical path",
            wall,
            "s",
            baseline=critical,
            ratio=wall / critical,
            target=f"< {TARGET:g}x",
            note=f"{LAYERS * WIDTH} chunks, {LAYERS} layers of {WIDTH}; agent sleeps {sleep_s:g} s; "
            f"critical path = {LAYERS} x the agent's own median time",
        ),
        row(
            NAME,
            "chunk run (loop) vs agent alone",
            float(per_chunk),
            "s",
            baseline=critical / LAYERS,
            ratio=float(per_chunk) / (critical / LAYERS),
            note="median chunk run inside run-all (in its worktree) vs one direct execution",
        ),
    ]
