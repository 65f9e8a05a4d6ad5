"""Compare executors: the same spec, from the same base commit, once per executor.

Each executor gets its own worktree and branch ``specwright/<slug>@<executor>`` and runs every
chunk (shipped or not) serially there. The runs are siblings: one ``group_id`` ties their
spec-level runs, so the usage notebook can put iterations, verdicts, cost and time per chunk
side by side. The spec's own chunk rows are put back as they were afterwards: a comparison is an
experiment, not progress on the spec.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from specwright import gitops
from specwright.errors import ValidationError
from specwright.model import Spec, new_id
from specwright.store import Store

if TYPE_CHECKING:
    from specwright.config import Config
    from specwright.runner import ProgressSink, RunAllResult

_CHUNK_STATE = ("status", "iterations", "verdict", "summary")


def branch_for(spec: Spec, executor: str) -> str:
    """The branch a compared executor's work lands on."""
    return f"{gitops.spec_branch(spec.slug)}@{executor}"


def compare(
    store: Store,
    config: Config,
    project_root: Path | str,
    spec: Spec,
    executors: Sequence[str],
    *,
    reviewer_name: str | None = None,
    max_iterations: int | None = None,
    cancel: threading.Event | None = None,
    on_progress: ProgressSink | None = None,
) -> tuple[str, list[RunAllResult]]:
    """Run ``spec`` once per executor from the current HEAD; returns the group id and results
    (fewer than ``executors`` when cancelled: the executors not reached are not run)."""
    from specwright.runner import run_all

    if len(set(executors)) != len(executors) or len(executors) < 2:
        raise ValidationError("compare: give at least two different executors")
    from specwright.agents.base import make_executor, preflight

    for name in executors:  # unknown, missing or unreachable agents fail before anything runs
        preflight(make_executor(config.executor(name)))
    root = Path(project_root).resolve()
    gitops.ensure_clean(root)
    base = gitops.head_commit(root)
    group = new_id()
    saved = store.query_dicts(
        f"SELECT id, {', '.join(_CHUNK_STATE)} FROM chunks WHERE spec_id = ?", [spec.id]
    )
    trees = store.path.parent / "worktrees" / f"{spec.slug}@compare"
    gitops.ensure_outside_or_ignored(root, [trees])
    # one event for all the runs: Ctrl-C during one executor's run (the loop sets it) stops
    # the comparison, not only that run
    cancel = cancel or threading.Event()
    results = []
    try:
        for name in executors:
            if cancel.is_set():
                break
            tree = trees / name
            if tree.exists():
                gitops.remove_worktree(root, tree)
            gitops.add_worktree(root, tree, branch_for(spec, name), base, reset=True)
            try:
                results.append(
                    run_all(
                        store,
                        config,
                        root,
                        spec,
                        executor_name=name,
                        reviewer_name=reviewer_name,
                        max_iterations=max_iterations,
                        cancel=cancel,
                        on_progress=on_progress,
                        group_id=group,
                        workdir=tree,
                        fresh=True,
                    )
                )
            finally:
                gitops.remove_worktree(root, tree)  # the branch stays, for diffing
    finally:
        store.write(
            [
                Store.op_update("chunks", {"id": row["id"]}, {k: row[k] for k in _CHUNK_STATE})
                for row in saved
            ]
        )
    return group, results


def comparison(store: Store, group_id: str) -> list[dict[str, object]]:
    """Per executor and chunk of a comparison: status, iterations, verdict, cost and time."""
    return store.query_dicts(
        """
        SELECT top.executor, c.position AS chunk, c.title, r.status, r.iterations,
               (SELECT v.verdict FROM reviews v WHERE v.run_id = r.id
                ORDER BY v.created_at DESC LIMIT 1) AS verdict,
               (SELECT sum(e.cost_usd) FROM executions e WHERE e.run_id = r.id) AS cost_usd,
               epoch(r.finished_at) - epoch(r.started_at) AS time_s
        FROM runs top
        JOIN runs r ON r.parent_run_id = top.id AND r.kind = 'chunk'
        JOIN chunks c ON c.id = r.chunk_id
        WHERE top.group_id = ? AND top.kind = 'spec'
        ORDER BY c.position, top.executor
        """,
        [group_id],
    )
