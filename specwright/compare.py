"""Compare executors: the same spec, from the same base commit, once per executor.

Each executor gets its own worktree and branch ``specwright/<slug>@<executor>`` (reset to the
base on every comparison: a re-run starts both sides over, so they compare like with like) and
runs every chunk (shipped or not) serially there. The runs are siblings: one ``group_id`` ties
their spec-level runs, so the usage notebook can put iterations, verdicts, cost and time per
chunk side by side. The spec's own chunk rows are never written (not even by a run killed
mid-way): a comparison is an experiment, not progress on the spec.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specwright import branches, catalog, gitops, worktrees
from specwright.errors import ValidationError
from specwright.model import Spec, new_id
from specwright.queries import EXEC_UNPRICED
from specwright.run_report import TOKEN_SUMS

if TYPE_CHECKING:
    from specwright.config import Config
    from specwright.runner import ProgressSink, RunAllResult
    from specwright.store import Store


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
    from specwright.schedule import check_graph

    twice = sorted(n for n, k in Counter(executors).items() if k > 1)
    if twice:
        raise ValidationError(f"compare: executor {', '.join(twice)} given more than once")
    if len(executors) < 2:
        raise ValidationError("compare: give at least two different executors")
    chunks = catalog.list_chunks(store, spec.id)
    check_graph(chunks)  # a spec that cannot run fails before any branch is made
    if not chunks:
        raise ValidationError(f"spec {spec.slug!r} has no chunks to run")
    from specwright.agents.base import make_executor, preflight

    for name in executors:  # unknown, missing or unreachable agents fail before anything runs
        preflight(make_executor(config.executor(name)))
    root = Path(project_root).resolve()
    here = gitops.current_branch(root)
    if here in {branch_for(spec, n) for n in executors}:  # git could not reset it
        raise ValidationError(
            f"compare: {here} is checked out in {root}, and the comparison resets it to the "
            "base commit; check out the branch to compare from first"
        )
    gitops.ensure_clean(root)
    branches.ensure_can_sign(root)
    base = gitops.head_commit(root)
    group = new_id()
    trees = store.path.parent / "worktrees" / f"{spec.slug}@compare"
    gitops.ensure_outside_or_ignored(root, [trees])
    # one event for all the runs: Ctrl-C during one executor's run (the loop sets it) stops
    # the comparison, not only that run
    cancel = cancel or threading.Event()
    results = []
    for name in executors:
        if cancel.is_set():
            break
        tree = trees / name
        if tree.exists():
            worktrees.remove_worktree(root, tree)
        branch = branch_for(spec, name)
        worktrees.add_worktree(root, tree, branch, base, reset=True)
        _headline(on_progress, f"executor {name}: {branch} from {base[:10]}")
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
                    workdir=tree / gitops.prefix_of(root),  # a project in a subfolder
                    fresh=True,
                )
            )
        finally:
            worktrees.remove_worktree(root, tree)  # the branch stays, for diffing
    return group, results


def _headline(on_progress: ProgressSink | None, message: str) -> None:
    from specwright.loop import Progress

    if on_progress is not None:
        on_progress(Progress("executor", "", "", 0, message))


def comparison(store: Store, group_id: str) -> list[dict[str, Any]]:
    """Per chunk and executor (in the order they ran) of a comparison: status, iterations,
    verdict, tokens, cost (NaN left out; ``unpriced`` calls of unknown cost) and time."""
    return store.query_dicts(
        f"""
        SELECT top.executor, c.position AS chunk, c.title, r.status, r.iterations,
               (SELECT v.verdict FROM reviews v WHERE v.run_id = r.id
                ORDER BY v.created_at DESC LIMIT 1) AS verdict,
               k.input_tokens, k.cache_tokens, k.output_tokens, k.cost_usd, k.unpriced,
               epoch(r.finished_at) - epoch(r.started_at) AS time_s
        FROM runs top
        JOIN runs r ON r.parent_run_id = top.id AND r.kind = 'chunk'
        JOIN chunks c ON c.id = r.chunk_id
        LEFT JOIN (
            SELECT e.run_id, {TOKEN_SUMS},
                   sum(CASE WHEN isfinite(e.cost_usd) THEN e.cost_usd END) AS cost_usd,
                   count(*) FILTER (WHERE {EXEC_UNPRICED}) AS unpriced
            FROM executions e GROUP BY e.run_id
        ) k ON k.run_id = r.id
        WHERE top.group_id = ? AND top.kind = 'spec'
        ORDER BY c.position, top.started_at
        """,
        [group_id],
    )


def totals(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per executor of ``comparison`` rows: chunks shipped, iterations, tokens, cost, time."""
    out: dict[str, dict[str, Any]] = {}
    keys = (
        "iterations",
        "input_tokens",
        "cache_tokens",
        "output_tokens",
        "cost_usd",
        "unpriced",
        "time_s",
    )
    for row in rows:
        t = out.setdefault(row["executor"], {"shipped": 0, **dict.fromkeys(keys)})
        t["shipped"] += row["status"] == "shipped"
        for k in keys:
            if row[k] is not None:
                t[k] = (t[k] or 0) + row[k]
    return out
