"""The loop's own rows: a ``runs`` row per chunk run (with a heartbeat while it lives) and the
chunk's status at the end. Verifications and reviews are written by verify.py and review.py."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from specwright.model import utcnow

if TYPE_CHECKING:
    from pathlib import Path

    from specwright.model import Chunk, Spec
    from specwright.store import Store

log = logging.getLogger(__name__)

MAX_PATCH_BYTES = 16 * 1024 * 1024  # an attempt's saved patch
PATCH_FOLDERS = ("attempts", "patches")  # beside the database: rejected and interrupted attempts


def start_run(
    store: Store, values: dict[str, Any], *, track_chunk: bool = True, workdir: Path | None = None
) -> None:
    """Insert (or, for an id run-all created, update) the ``runs`` row as running, with this
    process's pid and host, and mark the chunk running (unless not ``track_chunk``: a run of a
    comparison) — one transaction. Agents started in ``workdir`` are the run's from now on."""
    from specwright.agents.orphans import tag_run
    from specwright.store import Store

    if workdir is not None:
        tag_run(workdir, values["id"])

    now = utcnow()
    row = {
        "kind": "chunk",
        "status": "running",
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "iterations": 0,
        "started_at": now,
        "heartbeat_at": now,
        "reason": None,
        "finished_at": None,
        **values,
    }
    run_id = row["id"]
    with store.connect():
        exists = store.query("SELECT count(*) FROM runs WHERE id = ?", [run_id])[0][0]
        run_op = (
            Store.op_update("runs", {"id": run_id}, {k: v for k, v in row.items() if k != "id"})
            if exists
            else Store.op_insert("runs", row)
        )
        chunk_op = Store.op_update(
            "chunks", {"id": row["chunk_id"]}, {"status": "running", "updated_at": now}
        )
        store.write([run_op, chunk_op] if track_chunk else [run_op])


def end_run(
    store: Store,
    run_id: str,
    chunk_id: str,
    *,
    status: str,
    reason: str,
    iterations: int,
    head_commit: str | None,
    verdict: str | None,
    summary: str | None,
    now: datetime,
    track_chunk: bool = True,
    was: str | None = None,
) -> None:
    """Write how the run ended on its ``runs`` row and (``track_chunk``) the chunk's row, in
    one transaction; the chunk's summary is only replaced when there is a new one. A run that
    ended before any agent ran (a check that cannot run, a Ctrl-C in the baseline) gives the
    chunk back the status it ``was`` in: nothing of it was tried."""
    from specwright.agents.orphans import untag_run
    from specwright.store import Store

    untag_run(run_id)

    run_values = {
        "status": status,
        "reason": reason[:2000],
        "iterations": iterations,
        "head_commit": head_commit,
        "finished_at": now,
        "heartbeat_at": now,
    }
    chunk_values: dict[str, Any] = {
        "status": status,
        "iterations": iterations,
        "verdict": verdict,
        "updated_at": now,
    }
    if summary is not None:
        chunk_values["summary"] = summary
    if was not in (None, "running") and status != "shipped" and not _executions(store, run_id):
        chunk_values = {"status": was, "updated_at": now}
    ops = [
        Store.op_update("runs", {"id": run_id}, run_values),
        Store.op_sql(  # an execution whose own end could not be written (a full disk)
            "UPDATE executions SET status = 'error', finished_at = ?, exit_reason = ? "
            "WHERE run_id = ? AND status = 'running'",
            [now, "its end was not recorded (the run ended without it)", run_id],
        ),
    ]
    if track_chunk:
        ops.append(Store.op_update("chunks", {"id": chunk_id}, chunk_values))
    write_if_running(store, run_id, ops)


def _executions(store: Store, run_id: str) -> int:
    try:
        return int(store.query("SELECT count(*) FROM executions WHERE run_id = ?", [run_id])[0][0])
    except Exception as exc:  # the run's end is still written, as if an agent had run
        log.warning("run %s: could not count its agents' calls: %s", run_id, exc)
        return 1


def taken_over(store: Store, run_id: str) -> bool:
    """Whether another process has recovered this process's run: it found the run silent past
    its heartbeat (this process was paused: SIGSTOP, a suspended laptop), marked it interrupted
    and may be running its chunk itself, in the same tree. False when the database cannot say
    (locked for long, a full disk): the run is this process's unless shown otherwise."""
    from specwright.errors import StoreError

    try:
        rows = store.query("SELECT status FROM runs WHERE id = ?", [run_id])
    except StoreError as exc:
        log.warning("run %s: could not check it is still this process's: %s", run_id, exc)
        return False
    return bool(rows) and rows[0][0] != "running"


def ensure_ours(store: Store, run_id: str) -> None:
    """Stop the run (cancelled) once it was taken over: the tree and the branch it works on are
    the other process's now, it must neither roll them back nor commit to them."""
    if taken_over(store, run_id):
        from specwright.errors import LoopExit

        raise LoopExit("cancelled", "taken over by another process that found it silent")


def write_if_running(store: Store, run_id: str, ops: list[dict[str, Any]]) -> bool:
    """Write a run's end (``ops``, one transaction) unless the run was taken over: what this
    process would record then overwrites what the process that took it over did. False when
    nothing was written."""
    with store.connect():  # the file stays ours from the check to the write
        if taken_over(store, run_id):
            log.warning("run %s was taken over by another process: its end is not recorded", run_id)
            return False
        store.write(ops)
    return True


class Heartbeat:
    """Updates ``runs.heartbeat_at`` every ``interval_s`` so a dead process can be told from a
    slow one (run-all marks a stale ``running`` row ``interrupted``); sets ``cancel`` once the
    run was taken over (this process was paused past its heartbeat), and stops beating."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        interval_s: float,
        cancel: threading.Event | None = None,
    ) -> None:
        self.store, self.run_id, self.interval_s = store, run_id, interval_s
        self.cancel = cancel
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop beating and wait for a beat in flight, so the run's final row is the last
        write to it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if taken_over(self.store, self.run_id):
                    log.warning("run %s was taken over by another process; stopping", self.run_id)
                    if self.cancel is not None:
                        self.cancel.set()
                    return
                key = {"id": self.run_id, "status": "running"}
                self.store.update("runs", key, {"heartbeat_at": utcnow()})
            except Exception as exc:  # the next beat retries; the run goes on
                log.warning("run %s: heartbeat failed: %s", self.run_id, exc)


def store_files(store: Store, *, trees: bool = True) -> tuple[Path, ...]:
    """What Specwright keeps beside the database (it, its WAL, the journals, saved patches and,
    with ``trees``, the worktrees of parallel runs): never in an attempt's diff, nor deleted as
    its leftovers, whatever .gitignore says."""
    folder = store.path.parent
    wal = store.path.with_name(f"{store.path.name}.wal")
    kept = (store.path, wal, store.journal.root, *(folder / n for n in PATCH_FOLDERS))
    return (*kept, folder / "worktrees") if trees else kept


def save_patch(store: Store, run_id: str, iteration: int, workdir: Path, base: str) -> None:
    """Keep an unshipped attempt's diff beside the database (``attempts/<run>/iteration-N.patch``)
    before the tree is rolled back, whole and binary files too, so that ``git apply`` gives it
    back; files that would take it over ``MAX_PATCH_BYTES`` are left out, named at its top."""
    from specwright import gitops

    try:
        _keep_patch(store, run_id, iteration, workdir, base)
    except (gitops.GitError, OSError) as exc:
        log.warning("could not save the attempt's patch: %s", exc)


def _keep_patch(store: Store, run_id: str, iteration: int, workdir: Path, base: str) -> Path:
    """Write ``attempts/<run>/iteration-N.patch``: the project's change, then what the attempt
    changed in its submodules (another repository's files: no commit of the project has them)."""
    from specwright import gitdiff, submodules

    saved = store.path.parent / "attempts" / run_id / f"iteration-{iteration}.patch"
    ours = store_files(store)
    gitdiff.save_patch(workdir, base, saved, max_bytes=MAX_PATCH_BYTES, exclude=ours)
    submodules.patch(workdir, base, saved, MAX_PATCH_BYTES)
    return saved


def commit(
    store: Store, run_id: str, iteration: int, workdir: Path, base: str, chunk: Chunk, summary: str
) -> str:
    """Commit an approved attempt on ``base``, as one commit (the agent's own are squashed
    into it); returns the sha. When git refuses (a signing key that fails,
    a full disk), or the agent moved the branch off ``base`` (``git reset --hard HEAD~1``: a
    commit there would drop the chunks before), the attempt is kept whole (binary files too)
    as ``iteration-N.patch`` beside the database before the run ends and rolls it back (the
    branch back to ``base`` too)."""
    from specwright import gitops, submodules
    from specwright.errors import LoopExit

    try:
        head = gitops.head_commit(workdir)
        if not gitops.is_ancestor(workdir, base, head):  # the chunks before it would be lost
            raise gitops.GitError(
                f"the agent moved the branch off the run's base {base[:10]} to {head[:10]} (a "
                "git reset, a commit --amend?): not committed there, the branch stays at its base"
            )
        sha = gitops.commit_all(workdir, chunk.title, chunk.id, summary, base)
        submodules.tidy(workdir)  # the checks' leftovers there: the agent's could not ship
        return sha
    except gitops.GitError as exc:
        saved = _keep_patch(store, run_id, iteration, workdir, base)
        raise LoopExit(  # the path first: a long reason is cut where it is shown
            "commit_failed", f"the approved change is saved to {saved}; {exc}"
        ) from None


def agents_called(store: Store, parent_run_id: str) -> int:
    """How many executor calls the chunk runs of a run-all made."""
    return int(
        store.query(
            "SELECT count(*) FROM executions WHERE run_id IN "
            "(SELECT id FROM runs WHERE parent_run_id = ?)",
            [parent_run_id],
        )[0][0]
    )


def spent(store: Store, column: str, value: str) -> float:
    """What the executions whose ``column`` is ``value`` cost, for budgets: one stopped or cut
    mid-answer (``incomplete``, cost NULL) counts what it is known to have cost, a lower bound."""
    return _spent(store, column, value)[0]


def _spent(store: Store, column: str, value: str) -> tuple[float, int]:
    """``spent``, and how many of those executions have finished with no known cost."""
    rows = store.query(
        "SELECT coalesce(sum(coalesce(cost_usd, CASE WHEN cost_source = 'incomplete' "
        "THEN coalesce(reported_cost_usd, computed_cost_usd) END)), 0), "
        "count(*) FILTER (WHERE cost_usd IS NULL AND finished_at IS NOT NULL) "
        f"FROM executions WHERE {column} = ?",
        [value],
    )
    return float(rows[0][0] or 0.0), int(rows[0][1] or 0)


def check_budgets(
    store: Store,
    spec: Spec,
    chunk: Chunk,
    default: float | None,
    attempt_cost: float,
    warned: set[str],
    say: Callable[[str], None],
) -> None:
    """``LoopExit("budget")`` when the spec's or the chunk's budget (else ``default``) is spent,
    or another attempt costing ``attempt_cost`` would pass it. Work of no known cost (a model
    without a price, a command agent that tells no usage: cost NULL) counts what is known of it,
    so such a budget can be passed unseen: ``say`` says so once per budget (``warned``)."""
    from specwright.errors import LoopExit

    for what, own, column, key in (
        ("spec", spec.budget_usd, "spec_id", spec.id),
        ("chunk", chunk.budget_usd, "chunk_id", chunk.id),
    ):
        budget = own if own is not None else default
        if budget is None:
            continue
        so_far, unknown = _spent(store, column, key)
        if unknown and what not in warned:
            warned.add(what)
            say(
                f"{what} budget ${budget:.2f} counts only what is priced: {unknown} execution(s) "
                "have no known cost (a model without a price, an agent that tells no usage, or "
                f"one stopped mid-run); ${so_far:.4f} is known to be spent"
            )
        if so_far >= budget or so_far + attempt_cost > budget:
            raise LoopExit(
                "budget",
                f"{what} budget ${budget:.2f}: spent ${so_far:.4f}, another attempt "
                f"(last cost ${attempt_cost:.4f}) would exceed it",
            )
