"""Run-all reporting: what it would do (``plan``), how it ended (``outcome``, returned as a
``RunAllResult``) and what it did (``run_summary``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specwright import catalog, gitops
from specwright.model import Chunk, Spec
from specwright.queries import EXEC_UNPRICED, TOLD
from specwright.schedule import predicted_files, topological_order
from specwright.store import Store

if TYPE_CHECKING:
    from specwright.config import Config
    from specwright.loop import ChunkResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChunkSummary:
    """One line of a run-all's result table."""

    chunk_id: str
    position: int
    title: str
    status: str
    iterations: int = 0
    verdict: str | None = None
    reason: str = ""
    cost_usd: float = 0.0
    run_id: str | None = None


@dataclass(frozen=True)
class RunAllResult:
    run_id: str
    spec_id: str
    status: str  # shipped | failed | cancelled
    reason: str
    chunks: tuple[ChunkSummary, ...]
    branch: str | None = None
    refused: bool = False  # failed before any agent ran (a check that cannot run): nothing done
    # what stopped it short of its chunks (a STOPS_RUN_ALL kind: rate_limited, billing, ...),
    # and for a rate limit when it resets (naive UTC; None when not known)
    stopped_by: str | None = None
    resets_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.status == "shipped"


# tokens as told (``queries.TOLD``): NULL for a group of agents that tell no usage
TOKEN_SUMS = f"""sum(e.input_tokens) FILTER (WHERE {TOLD}) AS input_tokens,
                   sum(e.cache_read_tokens + e.cache_write_tokens) FILTER (WHERE {TOLD})
                       AS cache_tokens,
                   sum(e.output_tokens) FILTER (WHERE {TOLD}) AS output_tokens"""


def run_summary(store: Store, run_id: str) -> list[dict[str, Any]]:
    """Per chunk of a run-all: status, whether it ran in this run-all (``ran``: a chunk shipped
    by an earlier one is skipped, and its iterations, tokens, cost and time are not this run's:
    NULL; one blocked by a dependency that did not ship did not run either), iterations, verdict, tokens, cost and time. Tokens as everywhere else:
    ``input_tokens`` without the cache, ``cache_tokens`` the cache reads and writes,
    ``output_tokens`` (NULL when no call told them: an agent that tells no usage); ``unpriced``: calls of unknown cost (no price, or stopped mid-run),
    so ``cost_usd`` sums only the rest, a lower bound (NULL when none is known)."""
    return store.query_dicts(
        f"""
        WITH chunk_runs AS (
            SELECT r.id, r.chunk_id, r.status, r.iterations, r.started_at, r.finished_at
            FROM runs r WHERE r.parent_run_id = ? AND r.kind = 'chunk'
        ), per_chunk AS (
            SELECT cr.chunk_id,
                   arg_max(cr.status, cr.started_at) AS status,
                   sum(cr.iterations) AS iterations,
                   bool_or(cr.status <> 'blocked') AS ran,
                   sum(epoch(cr.finished_at) - epoch(cr.started_at)) AS time_s
            FROM chunk_runs cr GROUP BY cr.chunk_id
        ), costs AS (
            SELECT cr.chunk_id,
                   {TOKEN_SUMS},
                   sum(CASE WHEN isfinite(e.cost_usd) THEN e.cost_usd END) AS cost_usd,
                   count(*) FILTER (WHERE {EXEC_UNPRICED}) AS unpriced
            FROM chunk_runs cr JOIN executions e ON e.run_id = cr.id GROUP BY cr.chunk_id
        )
        SELECT c.position AS chunk, c.title, coalesce(p.status, c.status) AS status,
               coalesce(p.ran, false) AS ran, p.iterations, c.verdict,
               k.input_tokens, k.cache_tokens, k.output_tokens, k.cost_usd, k.unpriced, p.time_s
        FROM chunks c
        JOIN specs s ON s.id = c.spec_id
        JOIN runs top ON top.spec_id = s.id AND top.id = ?
        LEFT JOIN per_chunk p ON p.chunk_id = c.id
        LEFT JOIN costs k ON k.chunk_id = c.id
        ORDER BY c.position
        """,
        [run_id, run_id],
    )


def plan(
    store: Store,
    config: Config,
    project_root: Path | str,
    spec: Spec,
    *,
    executor_name: str | None = None,
    max_iterations: int | None = None,
) -> dict[str, Any]:
    """What run-all would do: order, waves, predicted files and overlaps, a cost estimate."""
    from specwright.schedule import estimate_cost, overlaps, waves

    chunks = catalog.list_chunks(store, spec.id)
    order = topological_order(chunks)
    known = gitops.tracked_files(project_root)
    files = {c.id: predicted_files(c, known) for c in chunks}
    pos = {c.id: c.position for c in chunks}
    ex = config.executor(executor_name)
    todo = [c for c in chunks if c.status != "shipped"]
    estimate = estimate_cost(
        store, ex.name, ex.model, len(todo), max_iterations or config.defaults.max_iterations
    )
    pairs = []
    for i, a in enumerate(chunks):
        for b in chunks[i + 1 :]:
            shared = overlaps(files[a.id], files[b.id])
            if shared:
                pairs.append({"a": a.position, "b": b.position, "files": sorted(shared)})
    return {
        "spec": spec.slug,
        "executor": ex.name,
        "order": [
            {
                "position": c.position,
                "title": c.title,
                "status": c.status,
                "depends_on": [pos[d] for d in c.depends_on],
                "files": list(files[c.id]),
            }
            for c in order
        ],
        "waves": [
            {
                "chunks": [c.position for c in w.chunks],
                "deferred": [{"position": c.position, "why": why} for c, why in w.deferred],
            }
            for w in waves(chunks, files)
        ],
        "overlaps": pairs,
        "estimate": {
            "low_usd": estimate.low_usd,
            "high_usd": estimate.high_usd,
            "per_iteration_usd": estimate.per_iteration_usd,
            "iterations": list(estimate.iterations),
            "samples": estimate.samples,
            "text": estimate.text(),
        },
    }


def outcome(
    chunks: Sequence[Chunk],
    results: Mapping[str, ChunkSummary],
    cancelled: bool,
    interrupted_by: str | None,
    limited: tuple[Chunk, ChunkResult] | None = None,
    resume: str | None = None,
) -> tuple[str, str]:
    """A run-all's status (shipped | cancelled | failed) and reason, from its chunks' lines;
    ``limited``: the first chunk run that ended rate_limited (it stopped run-all), ``resume``:
    the command that goes on once its limit has reset."""
    status, reason = "failed", ""
    summaries = [results.get(c.id) for c in chunks]
    shipped = sum(1 for s in summaries if s and s.status == "shipped")
    if shipped == len(chunks) and not any(s and s.run_id for s in summaries):
        status, reason = (
            "shipped",
            "nothing to run: "
            + (f"all {shipped} chunks had shipped" if shipped != 1 else "its chunk had shipped"),
        )
    elif shipped == len(chunks):
        status, reason = (
            "shipped",
            f"all {shipped} chunks shipped" if shipped != 1 else "its chunk shipped",
        )
    elif cancelled:  # the status says cancelled: the reason says why, if known
        why = f"interrupted ({interrupted_by}); " if interrupted_by else ""
        status, reason = "cancelled", f"{why}{shipped}/{len(chunks)} chunks shipped"
    elif limited is not None:
        reason = _rate_limited(shipped, len(chunks), *limited, resume)
    else:
        bad = [s for s in summaries if s and s.status != "shipped"]
        first = bad[0] if bad else None
        reason = f"{shipped}/{len(chunks)} chunks shipped" + (
            f"; chunk {first.position} {first.status}: {_clip(first.reason)}" if first else ""
        )
    return status, reason


def _rate_limited(
    shipped: int, total: int, chunk: Chunk, result: ChunkResult, resume: str | None
) -> str:
    """When the limit that stopped a run-all resets, and the command that goes on then."""
    from specwright.loop.limits import reset_text

    said = f"{shipped}/{total} chunks shipped; stopped: chunk {chunk.position} rate limited"
    if result.resets_at is not None:
        now = time.time()
        wait = result.resets_at.replace(tzinfo=UTC).timestamp() - now
        said += f", the limit {reset_text(wait, now)}"
    else:  # a reset a moment away, every time: "still rate limited after 20 pauses"
        said += f", {result.reason.rsplit('; ', 1)[-1]}"
    return said + (f"; {resume} again resumes" if resume else "")


def _clip(text: str, limit: int = 300) -> str:
    """A chunk's reason (it may carry an agent's error message) as part of the run's."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def added_since(store: Store, spec_id: str, chunks: list[Chunk]) -> int:
    """How many of the spec's chunks are not among ``chunks`` (the ones a run-all started with)
    and have not shipped."""
    had = {c.id for c in chunks}
    return sum(
        1 for c in catalog.list_chunks(store, spec_id) if c.id not in had and c.status != "shipped"
    )


def agents_ran(store: Store, run_id: str) -> bool:
    """Whether any agent was called in the run-all ``run_id`` (True when that cannot be told)."""
    from specwright.loop.records import agents_called

    try:
        return agents_called(store, run_id) > 0
    except Exception as exc:  # the run's end is still written
        log.warning("run %s: could not count its agents' calls: %s", run_id, exc)
        return True


def head_or_none(root: Path) -> str | None:
    """The commit checked out in ``root``; None when git cannot tell (the run's end is written)."""
    try:
        return gitops.head_commit(root)
    except gitops.GitError:
        return None
