"""``run_chunk``: one chunk through execute -> verify -> review, every step persisted (see the
package docstring for the rules)."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specwright import branches, gitdiff, gitops, gitstate
from specwright.errors import LoopExit, SpecwrightError, one_line
from specwright.keepsafe import Keepsafe
from specwright.loop import records
from specwright.loop.agent import AgentRun, agent_exit, run_agent
from specwright.loop.limits import codexbar_reset_wait, overload_wait, provider_of, reset_text, span
from specwright.loop.lines import (
    interrupted_by,
    lost_line,
    refused_for_good,
    review_line,
    review_stop_line,
    tool_line,
    verify_line,
)
from specwright.loop.prompt import Feedback, build_prompt, system_prompt
from specwright.loop.results import ChunkResult, Progress, ProgressSink
from specwright.model import AgentEvent, Chunk, ErrorEvent, Review, new_id, utcnow

if TYPE_CHECKING:
    from specwright.agents.base import Executor, Outcome
    from specwright.config import Config
    from specwright.review import Reviewer
    from specwright.store import Store
    from specwright.verify import Assessment, StepResult

log = logging.getLogger(__name__)

MAX_SUMMARY_CHARS = 2000
DEFAULT_RATE_LIMIT_WAIT_S = 60.0  # a rate limit with no reset time from the agent or codexbar
# rate-limit pauses of one chunk run: the allowance (``max_rate_limit_wait_s``) counts seconds,
# so a server that answers every try with a reset a moment away would be retried without end
MAX_RATE_LIMIT_PAUSES = 20
_EXIT_STATUS = {"shipped": "shipped", "blocked": "blocked", "cancelled": "cancelled"}
LOST = "repository_lost"  # the agent deleted the repository: nothing to roll back to


# --- the run --------------------------------------------------------------------------------


def run_chunk(
    store: Store,
    config: Config,
    project_root: Path | str,
    chunk: Chunk,
    *,
    workdir: Path | str | None = None,
    executor: Executor | None = None,
    reviewer: Reviewer | None = None,
    max_iterations: int | None = None,
    cancel: threading.Event | None = None,
    on_progress: ProgressSink | None = None,
    run_id: str | None = None,
    parent_run_id: str | None = None,
    group_id: str | None = None,
    rollback_policy: str | None = None,
    wall_time_s: float | None = None,
    baseline: bool = True,
    agent_retries: int = 1,
    max_rate_limit_wait_s: float = 900.0,
    heartbeat_s: float = 10.0,
    dep_summaries: Mapping[str, str | None] | None = None,
) -> ChunkResult:
    """Take ``chunk`` through the loop and return how it ended.

    ``workdir`` None: the project root, switched to the spec's branch ``specwright/<slug>``;
    given (a worktree): used on whatever branch it has. ``cancel`` stops the run at once (the
    agent is killed); Ctrl-C does the same. Raises only for problems found before the run
    starts (dirty tree, not a repository, unknown executor); everything after is in the result
    and the store.

    ``dep_summaries`` (chunk id -> summary, for the dependencies shipped in this run-all) marks
    a run of a comparison, an experiment: the chunk's own row is left alone and its dependencies
    are described by what this run-all shipped, not by the spec's rows."""
    opts = _Options(
        workdir=Path(workdir) if workdir else None,
        max_iterations=int(max_iterations or config.defaults.max_iterations),
        cancel=cancel or threading.Event(),
        on_progress=on_progress,
        run_id=run_id or new_id(),
        parent_run_id=parent_run_id,
        group_id=group_id,
        rollback_policy=rollback_policy or config.defaults.rollback,
        wall_time_s=wall_time_s if wall_time_s is not None else config.defaults.wall_time_s,
        baseline=baseline,
        agent_retries=agent_retries,
        max_rate_limit_wait_s=max_rate_limit_wait_s,
        heartbeat_s=heartbeat_s,
        dep_summaries=dep_summaries,
    )
    run = _ChunkRun(store, config, Path(project_root), chunk, executor, reviewer, opts)
    return run.run()


@dataclass
class _Options:
    workdir: Path | None
    max_iterations: int
    cancel: threading.Event
    on_progress: ProgressSink | None
    run_id: str
    parent_run_id: str | None
    group_id: str | None
    rollback_policy: str
    wall_time_s: float | None
    baseline: bool
    agent_retries: int
    max_rate_limit_wait_s: float
    heartbeat_s: float
    dep_summaries: Mapping[str, str | None] | None = None


class _ChunkRun:
    def __init__(
        self,
        store: Store,
        config: Config,
        root: Path,
        chunk: Chunk,
        executor: Executor | None,
        reviewer: Reviewer | None,
        opts: _Options,
    ) -> None:
        from specwright.catalog import get_spec

        self.store, self.config, self.root, self.chunk = store, config, root, chunk
        self.opts = opts
        self.run_id, self.cancel = opts.run_id, opts.cancel
        self.max_iterations, self.wall_time_s = opts.max_iterations, opts.wall_time_s
        self.rollback_policy = opts.rollback_policy
        if self.rollback_policy not in ("rollback", "keep"):
            raise SpecwrightError(
                f"rollback policy {self.rollback_policy!r}: expected rollback or keep"
            )
        if self.max_iterations < 1:
            raise SpecwrightError(f"max iterations: expected >= 1, got {self.max_iterations}")
        self.spec = get_spec(store, chunk.spec_id)
        if executor is None:
            from specwright.agents.base import make_executor

            executor = make_executor(config.executor())
        if reviewer is None:
            from specwright.review import make_reviewer

            reviewer = make_reviewer(config, None, store)
        self.executor: Executor = executor
        self.reviewer: Reviewer = reviewer
        self.workdir: Path = opts.workdir or root
        self.branch: str | None = None
        self.base, self.kept, self.top = "", tuple[str, ...](), Path()
        self.safe = Keepsafe(Path(), "")  # what git alone cannot put back: _prepare
        self.iteration = 0
        self.verdict: str | None = None
        self.commit: str | None = None
        self.summary: str | None = None
        self.attempt_cost = 0.0
        self.budget_warned: set[str] = set()  # budgets said to count only priced work
        self.paused_s, self.pauses, self.overloads = 0.0, 0, 0
        self.resets_at: datetime | None = None  # a rate limit's reset, past the allowance
        self._kinds: dict[str, str] = {}  # the attempt's error events: kind -> first message
        self.interrupted_by: str | None = None
        self.started = time.monotonic()
        self.baseline_results: list[StepResult] | None = None

    # --- progress and persistence -----------------------------------------------------------

    def progress(self, kind: str, message: str, data: Any = None) -> None:
        if self.opts.on_progress is None:
            return
        try:
            self.opts.on_progress(
                Progress(kind, self.run_id, self.chunk.id, self.iteration, message, data)
            )
        except Exception as exc:  # a broken UI must not break the run
            log.warning("on_progress callback failed: %s", exc)

    def _start_rows(self) -> None:
        records.start_run(
            self.store,
            {
                "id": self.run_id,
                "spec_id": self.spec.id,
                "chunk_id": self.chunk.id,
                "executor": self.executor.name,
                "reviewer": self.reviewer.name,
                "parent_run_id": self.opts.parent_run_id,
                "group_id": self.opts.group_id,
                "branch": self.branch,
                "base_commit": self.base,
            },
            track_chunk=self.opts.dep_summaries is None,
            workdir=self.workdir,
        )

    def _cost(self, column: str, value: str) -> float:
        return records.spent(self.store, column, value)

    # --- the loop ---------------------------------------------------------------------------

    def run(self) -> ChunkResult:
        self._prepare()
        self._start_rows()
        hb = records.Heartbeat(self.store, self.run_id, self.opts.heartbeat_s, self.cancel).start()
        self.started = time.monotonic()
        status, reason = "failed", "crash"
        self.progress("run", f"run {self.run_id[:8]} on {self.branch or 'detached HEAD'}")
        try:
            self._baseline()
            feedback: Feedback | None = None
            last_signature: tuple[Any, ...] | None = None
            review_errors = 0
            while True:
                if self.iteration >= self.max_iterations:
                    raise LoopExit("max_iterations", f"not shipped after {self.max_iterations}")
                self._check_limits()
                self.iteration += 1
                review, assessments, signature = self._attempt(feedback)
                if review.verdict == "SHIP":
                    status, reason = "shipped", "shipped"
                    break
                if review.verdict == "BLOCKED":
                    raise LoopExit("blocked", review.summary or "the reviewer said BLOCKED")
                review_errors = review_errors + 1 if review.error else 0
                if review_errors >= 2:
                    raise LoopExit("review_error", review.error or "")
                if self.iteration >= self.max_iterations:
                    raise LoopExit("max_iterations", f"not shipped after {self.max_iterations}")
                if signature == last_signature:
                    raise LoopExit("no_progress", "same failing checks and same diff as before")
                last_signature = signature
                feedback = Feedback(review, tuple(a for a in assessments if not a.ok))
                if self.rollback_policy == "rollback":
                    self._rollback("revise")
        except LoopExit as exc:
            status = _EXIT_STATUS.get(exc.reason, "failed")
            reason = str(exc)
        except KeyboardInterrupt as exc:
            self.cancel.set()
            self.interrupted_by = interrupted_by(exc)
            status, reason = "cancelled", f"cancelled: interrupted ({self.interrupted_by})"
        except BaseException as exc:
            status, reason = "failed", f"crash: {type(exc).__name__}: {exc}"
            raise
        finally:
            hb.stop()
            self._finish(status, reason)
        return self.result

    def _prepare(self) -> None:
        workdir = self.workdir
        self.top = gitops.root_of(workdir)
        ours = list(records.store_files(self.store, trees=False))  # a rollback must spare
        gitops.ensure_outside_or_ignored(workdir, ours)
        gitops.ensure_clean(workdir)
        if self.opts.workdir is None:
            self.branch = gitops.spec_branch(self.spec.slug)
            branches.ensure_branch(workdir, self.branch, keep=ours)
        else:
            self.branch = gitops.current_branch(workdir)
        self.base = gitops.head_commit(workdir)
        self.kept = gitops.empty_dirs(workdir)  # the user's: a rollback's clean would drop them
        self.safe = Keepsafe.take(workdir, self.base, records.store_files(self.store))

    def _baseline(self) -> None:
        from specwright import verify

        if not self.config.verify or not self.opts.baseline:
            return
        self.progress("baseline", f"baseline: {len(self.config.verify)} step(s) on the base commit")
        results = verify.run_steps(
            self.config.verify,
            self.workdir,
            cancel=self.cancel,
            is_baseline=True,
            on_result=lambda r: self.progress("verify", verify_line(r, baseline=True), r),
        )
        verify.record(self.store, results, run_id=self.run_id, chunk_id=self.chunk.id, iteration=0)
        if said := self.safe.rollback(self.kept, self.branch):  # the checks' leftovers go
            self.progress("rollback", f"rolled back to {self.base[:10]} (baseline); {said}")
        if self.cancel.is_set():
            raise LoopExit("cancelled", "during the baseline")
        if broken := verify.unrunnable(results, self.workdir, self.opts.workdir is not None):
            raise LoopExit("check_broken", broken)
        self.baseline_results = results

    def _check_limits(self) -> None:
        if self.cancel.is_set():
            raise LoopExit("cancelled", "cancel requested")
        if self.wall_time_s is not None and time.monotonic() - self.started >= self.wall_time_s:
            raise LoopExit("wall_time", f"wall-time limit of {self.wall_time_s:g}s reached")
        with self.store.connect():  # one connection for both sums
            records.check_budgets(
                self.store, self.spec, self.chunk, self.config.defaults.budget_usd,
                self.attempt_cost, self.budget_warned, lambda said: self.progress("budget", said),
            )  # fmt: skip

    def _attempt(self, feedback: Feedback | None) -> tuple[Review, list[Assessment], Any]:
        from specwright import review as rv
        from specwright import verify

        self.progress("iteration", f"iteration {self.iteration}/{self.max_iterations}")
        outcome = self._execute_with_retries(feedback)  # HEAD back on the branch: Watch
        held = self.safe.findings()  # the agent's changes git cannot commit, not the checks'
        spare = records.store_files(self.store)  # whatever the attempt's .gitignore says
        diff = gitdiff.diff(self.workdir, self.base, exclude=spare)
        steps = ", ".join(s.name for s in self.config.verify)
        if steps and not diff.empty:  # a long test suite: say what runs meanwhile
            self.progress("verifying", f"verifying: {steps}")
        # an attempt that changed nothing cannot ship: no point in running the checks
        results = (
            []
            if diff.empty
            else verify.run_steps(
                self.config.verify,
                self.workdir,
                cancel=self.cancel,
                on_result=lambda r: self.progress("verify", verify_line(r), r),
            )
        )
        verify.record(
            self.store,
            results,
            run_id=self.run_id,
            chunk_id=self.chunk.id,
            iteration=self.iteration,
        )
        gitops.drop_new_files(self.workdir, diff.files, spare)  # the checks' leftovers go
        if self.cancel.is_set():
            raise LoopExit("cancelled", "during verification")
        assessments = verify.assess(results, self.baseline_results, diff.local_files)
        ours = (self.store.path, self.store.journal.root)
        completion = (
            held
            or rv.completion_findings(self.chunk, diff.local_files)
            or rv.exposed_findings(self.workdir, self.root, ours)
        )
        request = rv.ReviewRequest(
            chunk=self.chunk,
            iteration=self.iteration,
            diff=diff,
            assessments=assessments,
            agent_text=outcome.final_text,
            rules=self.config.rules,
            run_id=self.run_id,
            spec_id=self.spec.id,
        )
        if completion:  # no model call for an attempt that cannot ship anyway
            result = rv.ReviewResult(
                Review("REVISE", f"not reviewed: {completion[0].message}", (), self.reviewer.name)
            )
        else:
            result = self.reviewer.review(request, self.cancel)
            if result.stop == rv.UNAVAILABLE and not self.cancel.is_set():  # this attempt
                self.progress("review", f"review {self.reviewer.name}: no answer; asking again")
                result = self.reviewer.review(request, self.cancel)  # not the agent: it costs more
            if self.cancel.is_set():  # no verdict to act on: the run stops as asked
                raise LoopExit("cancelled", "cancelled during the review")
            if result.stop:  # no attempt can be reviewed: no verdict, no other attempt paid for
                records.save_patch(self.store, self.run_id, self.iteration, self.workdir, self.base)
                error = result.review.error or ""
                raise LoopExit(result.stop, review_stop_line(self.reviewer, result.stop, error))
        final = rv.gate(result.review, completion + rv.verification_findings(assessments))
        result = replace(result, review=final)
        rv.record(
            self.store, result, run_id=self.run_id, chunk_id=self.chunk.id, iteration=self.iteration
        )
        self.verdict = final.verdict
        self.progress("review", review_line(final), final)
        if final.verdict == "SHIP":
            self._ship(final, outcome.final_text)
        else:
            records.save_patch(self.store, self.run_id, self.iteration, self.workdir, self.base)
        signature = (
            hashlib.sha256(diff.text.encode()).hexdigest(),
            tuple(sorted((f.check, f.message.splitlines()[0]) for f in final.findings)),
        )
        return final, assessments, signature

    def _execute_with_retries(self, feedback: Feedback | None) -> Outcome:
        from specwright.agents.base import Task

        errors = 0
        while True:
            self._kinds.clear()
            task = Task(
                prompt=build_prompt(self.chunk, self.spec, self._deps(), feedback, self.iteration),
                workdir=Path(self.workdir),
                system_prompt=system_prompt(self.config.rules),
                timeout_s=self._exec_timeout(),
                metadata={
                    "run_id": self.run_id,
                    "spec_slug": self.spec.slug,
                    "chunk_id": self.chunk.id,
                    "chunk_position": self.chunk.position,
                    "chunk_title": self.chunk.title,
                    "iteration": self.iteration,
                },
            )
            run = self._execute(task)
            if not gitops.still_there(self.workdir, self.top, self.base):  # `rm -rf .git`
                raise LoopExit(LOST, lost_line(self.top, self.base, self.opts.workdir is not None))
            outcome, crash = run.outcome, run.crash
            if outcome is not None:
                self.attempt_cost = outcome.usage.cost_usd or 0.0
            if self.cancel.is_set() or run.stopped_by == "cancel":
                raise LoopExit("cancelled", "cancelled during execution")
            if run.stopped_by == "deadline":
                raise LoopExit("wall_time", f"wall-time limit of {self.wall_time_s:g}s reached")
            if outcome is not None and outcome.ok:
                return outcome
            if outcome is not None and (
                why := refused_for_good(self.executor, outcome, self._kinds)
            ):
                raise LoopExit(*why)
            if outcome is not None and "overloaded" in (outcome.exit_reason, *self._kinds):
                self.overloads += 1  # the service's, not a limit's: back off, codexbar unasked
                self._pause(overload_wait(self.overloads - 1), outcome.error or "overloaded", True)
                continue
            if outcome is not None and (
                outcome.retry_after_s is not None or "rate_limit" in self._kinds
            ):
                wait = outcome.retry_after_s
                if wait is None:  # the agent gave no reset time: ask codexbar, else a default
                    wait = codexbar_reset_wait(provider_of(self.executor), self.cancel)
                    if self.cancel.is_set():
                        raise LoopExit("cancelled", "cancelled while asking codexbar")
                wait = DEFAULT_RATE_LIMIT_WAIT_S if wait is None else wait
                self._pause(wait, outcome.error or outcome.exit_reason or "rate limit")
                continue
            errors += 1
            message = crash or (outcome.error or outcome.exit_reason if outcome else "") or "?"
            if errors > self.opts.agent_retries or run.cannot_start:
                raise agent_exit(self.executor, run, message, errors)
            self.progress("rollback", f"agent error ({message}); retrying")
            if self.rollback_policy == "rollback":
                self._rollback("agent error")

    def _execute(self, task: Any) -> AgentRun:
        from specwright.recorder import ExecutionRecorder

        recorder = ExecutionRecorder(
            self.store,
            role="executor",
            backend=self.executor.backend,
            executor=self.executor.name,
            model=getattr(self.executor, "model", None),
            run_id=self.run_id,
            spec_id=self.spec.id,
            chunk_id=self.chunk.id,
            iteration=self.iteration,
            prices=self.config.prices or None,  # computed cost: `prices:` first, as planners'
        )
        self._recorder = recorder  # its redactor, with the agent's own secrets, for _on_event
        return run_agent(
            self.executor,
            task,
            recorder,
            cancel=self.cancel,
            deadline=self._past_wall_time,
            observe=self._on_event,
            watch=gitstate.Watch(self.workdir, self.branch),
        )

    def _past_wall_time(self) -> bool:
        return self.wall_time_s is not None and time.monotonic() - self.started >= self.wall_time_s

    def _on_event(self, event: AgentEvent) -> None:
        if isinstance(event, ErrorEvent):  # redacted: people see it (a notebook keeps it)
            said = self._recorder.redact(event.message[:1000])
            self._kinds.setdefault(event.kind, said)
            self.progress("event", f"agent {event.kind}: {said[:200]}", event)  # a warning too
        elif event.type == "tool_call":
            self.progress("event", self._recorder.redact(tool_line(event)), event)
        else:
            self.progress("event", event.type, event)

    def _exec_timeout(self) -> float | None:
        cfg = self.config.executors.get(self.executor.name)
        return cfg.timeout_s if cfg else None

    def _pause(self, wait_s: float, why: str, overloaded: bool = False) -> None:
        wait_s = max(0.0, float(wait_s))
        why = one_line(why, 300).rstrip(" .;")  # the agent's sentence, then ours: no ".;"
        allowance, waited = self.opts.max_rate_limit_wait_s, self.paused_s
        kind = "overloaded" if overloaded else "rate_limited"  # a service's state has no reset
        if overloaded and (waited + wait_s > allowance or self.pauses >= MAX_RATE_LIMIT_PAUSES):
            raise LoopExit(kind, f"{why}; still overloaded after {span(waited)} of pauses")
        if waited + wait_s > allowance:
            now = time.time()  # one reading: the stored reset and the line's agree
            self.resets_at = datetime.fromtimestamp(now + wait_s, UTC).replace(tzinfo=None)
            spent = f", {span(waited)} of it waited already" if waited else ""
            raise LoopExit(
                "rate_limited",
                f"{why}; {reset_text(wait_s, now)}, beyond the {span(allowance)} allowance{spent}",
            )
        self.pauses += 1
        if self.pauses > MAX_RATE_LIMIT_PAUSES:
            raise LoopExit(
                "rate_limited", f"{why}; still rate limited after {MAX_RATE_LIMIT_PAUSES} pauses"
            )
        self.progress("pause", f"{kind.replace('_', ' ')} ({why}); pausing {span(wait_s)}")
        if self.rollback_policy == "rollback":
            self._rollback("rate limit")
        self.paused_s += wait_s
        if self.cancel.wait(wait_s):
            what = "an overloaded service" if overloaded else "a rate limit"
            raise LoopExit("cancelled", f"cancelled while paused for {what}")

    def _deps(self) -> list[Chunk]:
        from specwright.catalog import get_chunk

        deps = [get_chunk(self.store, d) for d in self.chunk.depends_on]
        done = self.opts.dep_summaries
        if done is None:
            return deps
        return [
            replace(d, status="shipped", summary=done[d.id]) if d.id in done else d for d in deps
        ]

    # --- endings ----------------------------------------------------------------------------

    def _ship(self, review: Review, agent_text: str) -> None:
        text = agent_text.strip()
        if self.reviewer.kind == "llm" and review.summary:
            text = review.summary.strip()
        self.summary = (text or review.summary or self.chunk.title)[:MAX_SUMMARY_CHARS]
        records.ensure_ours(self.store, self.run_id)  # its branch may be another process's now
        attempt = (self.store, self.run_id, self.iteration, self.workdir, self.base)
        self.commit = records.commit(*attempt, self.chunk, self.summary)  # saved if git refuses
        self.progress("commit", f"shipped: commit {self.commit[:10]}")

    def _rollback(self, why: str) -> None:
        records.ensure_ours(self.store, self.run_id)  # its tree may be another process's now
        said = self.safe.rollback(self.kept, self.branch)
        self.progress(
            "rollback", f"rolled back to {self.base[:10]} ({why})" + f"; {said}" * bool(said)
        )

    def _finish(self, status: str, reason: str) -> None:
        head: str | None = None
        lost = reason.startswith(f"{LOST}:")  # no base to reset to: a reset would do harm
        try:
            if status != "shipped" and not lost and not records.taken_over(self.store, self.run_id):
                said = self.safe.rollback(self.kept, self.branch)
                reason += f"; {said}" * bool(said)
            head = None if lost else gitops.head_commit(self.workdir)
        except Exception as exc:  # keep going: the rows must be written
            log.error("run %s: could not restore the work tree: %s", self.run_id, exc)
            reason += f" (work tree not restored: {exc})"
        now = utcnow()
        with self.store.connect():
            cost = self._cost("run_id", self.run_id)
            records.end_run(
                self.store,
                self.run_id,
                self.chunk.id,
                status=status,
                reason=reason,
                iterations=self.iteration,
                head_commit=head,
                verdict=self.verdict,
                summary=self.summary,
                now=now,
                track_chunk=self.opts.dep_summaries is None,
                was=self.chunk.status,
            )
        self.result = ChunkResult(
            run_id=self.run_id,
            chunk_id=self.chunk.id,
            status=status,
            reason=reason,
            iterations=self.iteration,
            verdict=self.verdict,
            branch=self.branch,
            base_commit=self.base,
            head_commit=head,
            commit=self.commit,
            cost_usd=cost,
            summary=self.summary,
            interrupted_by=self.interrupted_by,
            resets_at=self.resets_at,
        )
        self.progress("done", f"{status}: {reason}", self.result)
