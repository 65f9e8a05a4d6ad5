"""Run-all: every chunk of a spec through the loop, in dependency order.

Serial by default, on the spec's branch in the project's own work tree. With ``parallel > 1``
ready chunks run side by side, each in its own git worktree on its own branch off the spec
branch, one *wave* at a time: a wave is the set of ready chunks whose predicted files do not
overlap; when it is done its shipped chunks are merged back into the spec branch in position
order, so the result does not depend on which agent finished first. A merge conflict sends the
chunk back to the loop once (on top of the merged code, with the conflict as feedback), then
fails it. A chunk whose dependency did not ship is ``blocked``. Shipped chunks are skipped on a
re-run, and runs left ``running`` by a dead process are marked ``interrupted`` first
(``specwright.recovery``). ``plan`` and ``run_summary`` live in ``specwright.run_report``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specwright import branches, catalog, gitops, interrupts
from specwright.errors import first_line
from specwright.loop import ChunkResult, Progress, run_chunk
from specwright.loop.lines import STOPS_RUN_ALL, interrupted_by
from specwright.loop.records import Heartbeat, store_files, write_if_running
from specwright.model import Chunk, Spec, new_id, utcnow
from specwright.recovery import ensure_tree_free, recover_interrupted
from specwright.run_report import ChunkSummary as ChunkSummary  # re-exported: callers import
from specwright.run_report import RunAllResult as RunAllResult  # them here
from specwright.run_report import added_since, agents_ran, head_or_none, outcome
from specwright.run_report import plan as plan  # re-exported: the CLI and widgets import it here
from specwright.run_report import run_summary as run_summary
from specwright.schedule import check_graph, next_wave, predicted_files, topological_order
from specwright.store import Store
from specwright.worktrees import add_worktree, merge, remove_worktree

if TYPE_CHECKING:
    from specwright.agents.base import Executor
    from specwright.config import Config
    from specwright.review import Reviewer

log = logging.getLogger(__name__)

ProgressSink = Callable[[Progress], None]


# --- run-all --------------------------------------------------------------------------------


class _RunAll:
    def __init__(
        self,
        store: Store,
        config: Config,
        root: Path,
        spec: Spec,
        *,
        executor: Executor | None,
        reviewer: Reviewer | None,
        parallel: int,
        max_iterations: int | None,
        cancel: threading.Event,
        on_progress: ProgressSink | None,
        run_id: str,
        group_id: str | None,
        workdir: Path | None = None,
        fresh: bool = False,
    ) -> None:
        self.store, self.config, self.root, self.spec = store, config, root, spec
        self.executor, self.reviewer = executor, reviewer
        self.parallel, self.max_iterations = parallel, max_iterations
        self.cancel, self.on_progress = cancel, on_progress
        self.run_id, self.group_id = run_id, group_id
        self.workdir, self.fresh = workdir, fresh
        self.results: dict[str, ChunkSummary] = {}
        self.interrupted_by: str | None = None  # Ctrl-C or SIGTERM, when one stopped the run
        self.branch_was_gone = False  # no spec branch before run_all made it (a resume's is)
        self.stopped = False  # credentials refused, a check that cannot run: no chunk can
        self.stopped_by: str | None = None  # the first such reason's kind (``rate_limited``)
        self.limited: tuple[Chunk, ChunkResult] | None = None  # the first chunk rate_limited
        # a run of a comparison leaves the spec's chunk rows alone: what its chunks shipped
        # (their summaries, for the prompts of their dependents) is kept here instead
        self.summaries: dict[str, str | None] | None = {} if workdir is not None else None
        self.branch = (
            (gitops.current_branch(workdir) or gitops.spec_branch(spec.slug))
            if workdir
            else gitops.spec_branch(spec.slug)
        )
        self._lock = threading.Lock()
        # concurrent `git worktree add`s race on .git/worktrees ("fatal: failed to read
        # .git/worktrees/<name>/commondir"): one at a time (each takes ~30 ms)
        self._worktree_lock = threading.Lock()

    def progress(self, kind: str, chunk: Chunk | None, message: str, data: Any = None) -> None:
        if self.on_progress is None:
            return
        try:
            self.on_progress(
                Progress(kind, self.run_id, chunk.id if chunk else "", 0, message, data)
            )
        except Exception as exc:
            log.warning("on_progress callback failed: %s", exc)

    def _sink(self, event: Progress) -> None:
        if self.on_progress is not None:
            self.on_progress(event)

    def record(
        self, chunk: Chunk, status: str, reason: str, result: ChunkResult | None = None
    ) -> None:
        with self._lock:
            self.results[chunk.id] = ChunkSummary(
                chunk.id,
                chunk.position,
                chunk.title,
                status,
                iterations=result.iterations if result else 0,
                verdict=result.verdict if result else None,
                reason=reason,
                cost_usd=result.cost_usd if result else 0.0,
                run_id=result.run_id if result else None,
            )
            if result is not None and result.interrupted_by:
                self.interrupted_by = self.interrupted_by or result.interrupted_by
            if self.summaries is not None and result is not None and result.shipped:
                self.summaries[chunk.id] = result.summary

    def block(self, chunk: Chunk, failed_deps: Sequence[Chunk]) -> None:
        names = ", ".join(f"{d.position} {d.title!r}" for d in failed_deps)
        reason = f"blocked: dependency {names} did not ship"
        now = utcnow()
        self.store.write(
            [
                Store.op_insert(
                    "runs",
                    {
                        "id": new_id(),
                        "spec_id": self.spec.id,
                        "chunk_id": chunk.id,
                        "kind": "chunk",
                        "status": "blocked",
                        "parent_run_id": self.run_id,
                        "group_id": self.group_id,
                        "executor": self.executor.name if self.executor else None,
                        "reason": reason,
                        "started_at": now,
                        "finished_at": now,
                    },
                ),
            ]
            + (
                []
                if self.summaries is not None
                else [
                    Store.op_update(
                        "chunks", {"id": chunk.id}, {"status": "blocked", "updated_at": now}
                    )
                ]
            )
        )
        self.record(chunk, "blocked", reason)
        self.progress("blocked", chunk, f"chunk {chunk.position} {chunk.title}: {reason}")

    def run_one(self, chunk: Chunk, workdir: Path | None) -> ChunkResult:
        self.progress("chunk-start", chunk, f"chunk {chunk.position} {chunk.title}: starting")
        result = run_chunk(
            self.store,
            self.config,
            self.root,
            chunk,
            workdir=workdir,
            executor=self.executor,
            reviewer=self.reviewer,
            max_iterations=self.max_iterations,
            cancel=self.cancel,
            on_progress=self._sink,
            parent_run_id=self.run_id,
            group_id=self.group_id,
            dep_summaries=self.summaries,
        )
        # refused credentials, a check or an agent that cannot run, a limit that resets past
        # the loop's allowance: every later chunk would end so (each one more agent call)
        if result.reason.startswith(STOPS_RUN_ALL):
            self.stopped = True
            with self._lock:  # a wave's: the first by position is named
                self.stopped_by = self.stopped_by or result.reason.split(":", 1)[0]
                was = self.limited
                if result.reason.startswith("rate_limited:") and (
                    was is None or chunk.position < was[0].position
                ):
                    self.limited = (chunk, result)
        self.progress(
            "chunk-done",
            chunk,
            f"chunk {chunk.position} {chunk.title}: {result.status} after "
            f"{result.iterations} iteration(s) ({result.reason})",
            result,
        )
        return result

    # --- the two schedules ------------------------------------------------------------------

    def execute(self, chunks: list[Chunk]) -> None:
        done = set() if self.fresh else self._landed([c for c in chunks if c.status == "shipped"])
        for c in chunks:
            if c.id in done:
                self.record(c, "shipped", "already shipped (skipped)")
                self.progress("skip", c, f"chunk {c.position} {c.title}: already shipped")
        pending = [c for c in chunks if c.id not in done]
        if self.parallel <= 1:
            self._serial(pending, done, {c.id: c for c in chunks})
        else:
            self._parallel(pending, done, {c.id: c for c in chunks})

    def _landed(self, shipped: list[Chunk]) -> set[str]:
        """The shipped chunks whose commit is on the spec branch: one never merged back from its
        worktree (killed mid-wave) runs again rather than being skipped with its work lost.
        Without the branch (deleted after a merge) the rows are trusted, and a gap is said."""
        if self.workdir is not None or not shipped:
            return {c.id for c in shipped}
        gone = self.branch_was_gone
        landed = {c.id for c in shipped} if gone else set()  # (a squash merge rewrites commits)
        for c in shipped:
            if gitops.chunk_commits(self.root, c.id, "HEAD" if gone else self.branch):
                landed.add(c.id)
                continue
            why = (
                f"{self.branch} is gone and its commit is not in HEAD: the new branch starts "
                f"without it unless a merge brought it (`specwright run {self.spec.slug}:"
                f"{c.position} --force` runs it again)"
                if gone
                else f"its commit is not on {self.branch} (never merged back); running it again"
            )
            self.progress("skip", c, f"chunk {c.position} {c.title}: shipped, but {why}")
        return landed

    def _unshippable_deps(
        self, chunk: Chunk, done: set[str], by_id: dict[str, Chunk]
    ) -> list[Chunk]:
        return [by_id[d] for d in chunk.depends_on if d not in done and d in self.results]

    def _serial(self, pending: list[Chunk], done: set[str], by_id: dict[str, Chunk]) -> None:
        for chunk in topological_order(pending + [by_id[i] for i in done]):
            if chunk.id in done:
                continue
            if self.cancel.is_set() or self.stopped:
                break
            bad = self._unshippable_deps(chunk, done, by_id)
            if bad:
                self.block(chunk, bad)
                continue
            result = self.run_one(chunk, self.workdir)
            self.record(chunk, result.status, result.reason, result)
            if result.shipped:
                done.add(chunk.id)

    def _parallel(self, pending: list[Chunk], done: set[str], by_id: dict[str, Chunk]) -> None:
        known = gitops.tracked_files(self.root)
        files = {c.id: predicted_files(c, known) for c in pending}
        gitops.ensure_clean(self.root)
        worktrees = self.store.path.parent / "worktrees" / self.spec.slug  # (run_all checked it)
        with ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="chunk") as pool:
            while pending and not (self.cancel.is_set() or self.stopped):
                for chunk in list(pending):
                    bad = self._unshippable_deps(chunk, done, by_id)
                    if bad:
                        self.block(chunk, bad)
                        pending.remove(chunk)
                wave = next_wave(pending, done, files, None)
                if not wave.chunks:
                    break
                self.progress(
                    "wave",
                    None,
                    "wave: "
                    + ", ".join(f"{c.position}" for c in wave.chunks)
                    + "".join(f"; {c.position} waits ({why})" for c, why in wave.deferred),
                    wave,
                )
                base = gitops.head_commit(self.root)
                futures = {
                    c.id: pool.submit(self._wave_chunk, c, worktrees, base) for c in wave.chunks
                }
                stopped: BaseException | None = None
                try:
                    for f in futures.values():
                        interrupts.result(f)  # not f.result(): see interrupts.py
                except BaseException as exc:  # Ctrl-C, SIGTERM, a crash: stop the wave's
                    stopped = exc  # agents and wait for them, then keep what shipped
                    if isinstance(exc, KeyboardInterrupt):
                        self.interrupted_by = interrupted_by(exc)
                    self.cancel.set()
                    self.progress("cancel", None, "stopping: waiting for the wave's agents")
                    wait(futures.values())
                for chunk in sorted(wave.chunks, key=lambda c: c.position):
                    pending.remove(chunk)
                    future = futures[chunk.id]
                    if future.exception() is not None:  # crashed in its thread: drop its tree
                        tree, branch = self._tree(chunk, worktrees)
                        remove_worktree(self.root, tree, delete_branch=branch)
                        continue
                    ran = future.result()
                    if ran is None:  # its turn came after run-all stopped: not run
                        continue
                    result, tree, branch = ran
                    if result.shipped:
                        result = self._merge_back(chunk, result, tree, branch, worktrees)
                    else:
                        remove_worktree(self.root, tree, delete_branch=branch)
                    self.record(chunk, result.status, result.reason, result)
                    if result.shipped:
                        done.add(chunk.id)
                if stopped is not None and not isinstance(stopped, KeyboardInterrupt):
                    raise stopped

    def _tree(self, chunk: Chunk, worktrees: Path) -> tuple[Path, str]:
        """Where a chunk runs in a parallel wave: its worktree and branch."""
        return worktrees / f"{chunk.position}-{chunk.id[-8:]}", f"{self.branch}--{chunk.position}"

    def _wave_chunk(self, c: Chunk, trees: Path, base: str) -> tuple[ChunkResult, Path, str] | None:
        """A wave's chunk, not run when one before it (more than ``parallel``) stopped run-all."""
        return None if self.stopped else self._in_worktree(c, trees, base)

    def _in_worktree(
        self, chunk: Chunk, worktrees: Path, base: str, note: str = ""
    ) -> tuple[ChunkResult, Path, str]:
        tree, branch = self._tree(chunk, worktrees)
        with self._worktree_lock:
            if tree.exists():
                remove_worktree(self.root, tree)
            add_worktree(self.root, tree, branch, base, reset=True)
        if note:
            chunk = replace(chunk, prompt=f"{chunk.prompt}\n\n{note}")
        return self.run_one(chunk, tree / gitops.prefix_of(self.root)), tree, branch

    def _merge_back(
        self, chunk: Chunk, result: ChunkResult, tree: Path, branch: str, worktrees: Path
    ) -> ChunkResult:
        landed, conflict = self._land(chunk, result, tree, branch)
        if landed is not None:
            return landed
        if self.cancel.is_set():  # stopping: no second attempt, and the chunk did not land
            reason = f"merge conflict with the spec branch in {conflict}; not run again: cancelled"
            self._unship(chunk, result.run_id, "cancelled", reason)
            return replace(result, status="cancelled", reason=reason)
        # this attempt's commit never lands: its run must not stay 'shipped'
        self._unship(
            chunk,
            result.run_id,
            "failed",
            f"merge conflict with the spec branch in {conflict}; run again on top of it",
        )
        self.progress(
            "conflict",
            chunk,
            f"chunk {chunk.position}: merge conflict in {conflict}; "
            "running it again on top of the merged code",
        )
        note = (
            f"NOTE: a previous attempt at this chunk conflicted, when merged, with work that "
            f"has landed since (files: {conflict}). Make the change again on top of the "
            "current code, keeping what is already there."
        )
        retry, tree2, branch2 = self._in_worktree(
            chunk, worktrees, gitops.head_commit(self.root), note
        )
        if not retry.shipped:
            remove_worktree(self.root, tree2, delete_branch=branch2)
            return retry  # the retry itself did not ship: its own reason stands
        landed, conflict = self._land(chunk, retry, tree2, branch2)
        if landed is not None:
            return landed
        reason = f"merge conflict with the spec branch in {conflict} (after one retry)"
        self._unship(chunk, retry.run_id, "failed", reason)
        return replace(retry, status="failed", reason=reason)

    def _land(
        self, chunk: Chunk, result: ChunkResult, tree: Path, branch: str
    ) -> tuple[ChunkResult | None, str]:
        """Merge a chunk's branch (shipped in its worktree) into the spec branch: the chunk's
        result once settled, else (None, the files in conflict). A merge git refuses for no
        conflict (a dirty tree, a lock, a full disk) is no work for an agent: the chunk fails
        and its branch stays, its commit on it."""
        merged = merge(
            self.root, branch, self.branch, message=f"Merge chunk {chunk.position}: {chunk.title}"
        )
        remove_worktree(
            self.root, tree, delete_branch=branch if merged.ok or merged.conflicts else None
        )
        if merged.ok:
            self.progress("merge", chunk, f"chunk {chunk.position}: merged into {self.branch}")
            return result, ""
        if merged.conflicts:
            return None, ", ".join(merged.conflicts)
        reason = (
            f"could not merge it into {self.branch}: {merged.message}; its commit is kept on "
            f"branch {branch} (`git merge {branch}` once that is fixed, or run the chunk again)"
        )
        self._unship(chunk, result.run_id, "failed", reason)
        return replace(result, status="failed", reason=reason), ""

    def _unship(self, chunk: Chunk, run_id: str | None, status: str, reason: str) -> None:
        """A chunk run that shipped in its worktree but did not land on the spec branch."""
        now = utcnow()
        ops = [Store.op_update("chunks", {"id": chunk.id}, {"status": status, "updated_at": now})]
        if run_id:
            ops.append(
                Store.op_update("runs", {"id": run_id}, {"status": status, "reason": reason})
            )
        self.store.write(ops)


def run_all(
    store: Store,
    config: Config,
    project_root: Path | str,
    spec: Spec,
    *,
    executor: Executor | None = None,
    reviewer: Reviewer | None = None,
    executor_name: str | None = None,
    reviewer_name: str | None = None,
    parallel: int | None = None,
    max_iterations: int | None = None,
    cancel: threading.Event | None = None,
    on_progress: ProgressSink | None = None,
    group_id: str | None = None,
    workdir: Path | str | None = None,
    fresh: bool = False,
) -> RunAllResult:
    """Run every chunk of ``spec`` that has not shipped yet; see the module docstring.

    ``workdir`` (a worktree) and ``fresh`` (run every chunk, shipped or not) are for
    comparing executors side by side (specwright/compare.py): such a run works serially in
    that tree, on its branch, and leaves the spec's own status alone."""
    root = Path(project_root).resolve()
    tree = Path(workdir).resolve() if workdir else None
    chunks = catalog.list_chunks(store, spec.id)
    check_graph(chunks)
    if not chunks:
        raise catalog.no_chunks(spec.slug)
    if executor is None:
        from specwright.agents.base import make_executor

        executor = make_executor(config.executor(executor_name))
    if reviewer is None:
        from specwright.review import make_reviewer

        reviewer = make_reviewer(config, reviewer_name, store)
    from specwright.agents.base import preflight
    from specwright.review import check_key

    preflight(executor)  # a missing agent binary or a dead server: one clear error, nothing run
    check_key(reviewer)  # an llm reviewer without its key: the same
    recover_interrupted(store, spec, root)
    if tree is None:
        ensure_tree_free(store, spec, root)
    chunks = catalog.list_chunks(store, spec.id)
    gitops.ensure_clean(tree or root)
    parallel = parallel or config.defaults.parallel
    gone = tree is None and not gitops.branch_exists(root, gitops.spec_branch(spec.slug))
    if tree is None:  # a branch refused is refused here, with nothing recorded
        _check_out(store, root, spec.slug, parallel)
    had = catalog.get_spec(store, spec.id).status  # kept when no agent runs
    run_id = new_id()
    now = utcnow()
    store.write(
        [
            Store.op_insert(
                "runs",
                {
                    "id": run_id,
                    "spec_id": spec.id,
                    "kind": "spec",
                    "status": "running",
                    "executor": executor.name,
                    "reviewer": reviewer.name,
                    "group_id": group_id,
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "branch": gitops.current_branch(tree)
                    if tree
                    else gitops.spec_branch(spec.slug),
                    "base_commit": gitops.head_commit(tree or root),  # the spec branch's
                    "started_at": now,
                    "heartbeat_at": now,
                },
            ),
        ]
        + (
            []
            if tree
            else [
                Store.op_update("specs", {"id": spec.id}, {"status": "running", "updated_at": now})
            ]
        )
    )
    job = _RunAll(
        store,
        config,
        root,
        spec,
        executor=executor,
        reviewer=reviewer,
        parallel=parallel,
        max_iterations=max_iterations,
        cancel=cancel or threading.Event(),
        on_progress=on_progress,
        run_id=run_id,
        group_id=group_id,
        workdir=tree,
        fresh=fresh,
    )
    job.branch_was_gone = gone
    if tree is not None:
        job.parallel = 1  # a compared executor runs its chunks one by one in its own tree
    status, reason = "failed", "run-all stopped by an error"
    try:
        with Heartbeat(store, run_id, 10.0, job.cancel):
            job.execute(chunks)
        resume = None if tree else f"`specwright run-all {spec.slug}`"  # (a comparison: no)
        status, reason = outcome(
            chunks, job.results, job.cancel.is_set(), job.interrupted_by, job.limited, resume
        )
    except KeyboardInterrupt as exc:
        status, reason = "cancelled", f"interrupted ({interrupted_by(exc)})"
        raise
    except Exception as exc:
        reason = f"run-all stopped by an error: {first_line(exc, 500)}"
        raise
    finally:
        done = utcnow()
        spec_status = {"shipped": "done", "cancelled": "ready"}.get(status, "failed")
        idle = status != "shipped" and not agents_ran(store, run_id)
        refused = idle and status == "failed"
        if idle:  # stopped before any agent ran (a check that cannot run, a Ctrl-C): as it was
            spec_status = had
        if status == "shipped" and not tree:  # `chunk add` while it ran (an import is refused then)
            added = added_since(store, spec.id, chunks)
            if added:
                spec_status = "ready"
                reason += f"; {added} chunk(s) added while it ran are still to run"
        values = {"status": status, "reason": reason, "finished_at": done}
        values["head_commit"] = head_or_none(tree or root)
        ops = [Store.op_update("runs", {"id": run_id}, values)]
        if not tree:
            spec_values = {"status": spec_status, "updated_at": done}
            ops.append(Store.op_update("specs", {"id": spec.id}, spec_values))
        write_if_running(store, run_id, ops)  # not when the run was taken over meanwhile
    ordered = tuple(
        job.results[c.id]
        if c.id in job.results
        else ChunkSummary(c.id, c.position, c.title, "pending", reason="not run")
        for c in sorted(chunks, key=lambda c: c.position)
    )
    resets = job.limited[1].resets_at if job.limited else None
    stopped_by = job.stopped_by if status == "failed" else None
    return RunAllResult(
        run_id, spec.id, status, reason, ordered, job.branch, refused, stopped_by, resets
    )


def _check_out(store: Store, root: Path, slug: str, parallel: int) -> None:
    """Put the project on the spec's branch before the run is recorded (``ensure_branch``): a
    branch refused leaves no run behind, and the run's base commit is the one it goes on from."""
    ours = list(store_files(store, trees=False))
    gitops.ensure_outside_or_ignored(root, ours)
    if parallel > 1:
        ours.append(store.path.parent / "worktrees" / slug)
    branches.ensure_branch(root, gitops.spec_branch(slug), keep=ours)
    gitops.ensure_outside_or_ignored(root, ours)
