"""Recovery after a crash: runs a dead process left ``running`` become ``interrupted``.

Run-all and ``specwright run`` call ``recover_interrupted`` before they start, so a spec killed
mid-run (kill -9, a reboot) resumes cleanly: the agent, verification step or scripted command
the dead run left running is stopped (its whole process group), the run, its executions and its
chunk are marked, and an interrupted serial attempt's changes are saved as a patch and rolled
back in the project tree; the temp folders dead processes left (verification steps, Claude
Code configs) go.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from specwright import gitdiff, gitops, submodules, worktrees
from specwright.agents.orphans import (
    gone_here,
    pid_alive,
    stop_abandoned,
    stop_orphans,
    sweep_scratch,
)
from specwright.journal import CATALOG, Journal
from specwright.model import Spec, Usage, utcnow
from specwright.store import Store

log = logging.getLogger(__name__)

STALE_HEARTBEAT_S = 120.0
# a run beats every 10 s: what its agent committed before the kill is at most that much later
_AGENT_COMMIT_MARGIN_S = 30.0


def recover_interrupted(
    store: Store, spec: Spec, project_root: Path | str, stale_s: float = STALE_HEARTBEAT_S
) -> list[str]:
    """Mark runs of ``spec`` left ``running`` by a dead process as ``interrupted``, their
    executions ``killed`` and their chunks ``interrupted``; first stop any agent such a run
    left running on this host (it would go on writing into the tree), then put the project tree
    back at the base commit of an interrupted serial attempt (its diff is saved beside the
    database). Returns the run ids recovered."""
    now = utcnow()
    host = socket.gethostname()
    recovered = []
    running = (
        "SELECT id, chunk_id, pid, host, heartbeat_at, started_at, branch, base_commit, kind, "
        "group_id FROM runs WHERE spec_id = ? AND status = 'running' "
        "ORDER BY kind = 'spec', started_at",  # a chunk run first: the agents are its own
        [spec.id],
    )
    rows = store.query_dicts(*running)
    # a dead run-all's catalog journal lines, read once for both catch-ups
    journaled = {
        r["id"]: _catalog_ops(store, r)
        for r in rows
        if r["kind"] == "spec" and why_dead(r, stale_s, now)
    }
    if sum(_catch_up_started(store, run_id, ops) for run_id, ops in journaled.items()):
        rows = store.query_dicts(*running)
    for run in rows:
        found = why_dead(run, stale_s, now)
        if found is None:
            continue
        why = found
        caught_up = _catch_up(store, run, journaled.get(run["id"]))
        if caught_up:
            why += f"; {caught_up} journaled row(s) it had not written to the database were added"
        if run["host"] == host and run["pid"]:
            since = run["started_at"].replace(tzinfo=UTC).timestamp()
            groups = stop_orphans(int(run["pid"]), since, runs=_run_and_parts(store, run))
            if groups:
                listed = ", ".join(str(g) for g in groups)
                why += f"; stopped the agent it left running (process group {listed})"
        # the tree first: a run marked before its tree is back would leave the agent's edits
        # to a later run-all, refused for a dirty tree with nothing left to undo them
        if run["kind"] == "chunk" and not _restore_tree(store, Path(project_root), run):
            continue
        if run["kind"] == "spec" and run["branch"] and not _end_merge(Path(project_root), run):
            continue
        parallel = run["kind"] == "spec" and run["branch"] and not run["group_id"]
        if parallel and not _settle_worktrees(store, Path(project_root), spec, run):
            continue
        ops = [
            Store.op_update(
                "runs",
                {"id": run["id"]},
                {"status": "interrupted", "finished_at": now, "reason": f"interrupted: {why}"},
            ),
            *_killed_executions(store, run["id"], now),
            Store.op_sql(  # the run's row counts them when it ends: it never did
                "UPDATE runs SET iterations = (SELECT coalesce(max(iteration), 0) FROM executions "
                "WHERE run_id = ?) WHERE id = ? AND iterations = 0",
                [run["id"], run["id"]],
            ),
        ]
        if run["chunk_id"]:
            ops.append(
                Store.op_sql(
                    "UPDATE chunks SET status = 'interrupted', updated_at = ? "
                    "WHERE id = ? AND status = 'running'",
                    [now, run["chunk_id"]],
                )
            )
        if run["kind"] == "spec" and not run["group_id"]:  # its run-all set the spec running
            ops.append(
                Store.op_sql(
                    "UPDATE specs SET status = 'ready', updated_at = ? WHERE id = ? "
                    "AND status = 'running' AND NOT EXISTS (SELECT 1 FROM runs WHERE spec_id = ? "
                    "AND kind = 'spec' AND group_id IS NULL AND status = 'running' AND id <> ?)",
                    [now, spec.id, spec.id, run["id"]],
                )
            )
        store.write(ops)
        recovered.append(run["id"])
        log.warning("run %s marked interrupted: %s", run["id"], why)
    # then what ended Specwright processes left that no run of this spec owns (a server, a run
    # of another spec); after the runs, so each of theirs is stopped, and said so, above
    groups = stop_abandoned()
    if groups:
        listed = ", ".join(str(g) for g in groups)
        log.warning("stopped what ended Specwright processes left running (groups %s)", listed)
    sweep_scratch()  # and the temp folders (verification, Claude Code) killed runs left
    return recovered


def _killed_executions(store: Store, run_id: str, now: datetime) -> list[dict[str, Any]]:
    """The run's executions left ``running``, marked ``killed`` with what their events told:
    the model call under way died with it, so the cost is unknown (NULL, never 0), and the
    tokens and costs of the calls that told theirs (usage events: a final one, else each
    call's) are a lower bound, as for an execution cancelled mid-run. Their rows used to keep
    0 tokens and 0 events while their events held the tokens told."""
    from specwright.recorder import told_usage, usage_columns

    execs = store.query_dicts(
        "SELECT id, backend, model FROM executions WHERE run_id = ? AND status = 'running'",
        [run_id],
    )
    ops = []
    for e in execs:
        counted = store.query("SELECT count(*) FROM events WHERE execution_id = ?", [e["id"]])[0][0]
        total, calls = told_usage(
            (Usage(i or 0, o or 0, r or 0, w or 0, x or 0, cost, model), final)
            for i, o, r, w, x, cost, model, final in store.query(
                "SELECT input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, "
                "reasoning_tokens, cost_usd, model, text = 'final' FROM events "
                "WHERE execution_id = ? AND type = 'usage' ORDER BY seq",
                [e["id"]],
            )
        )
        values: dict[str, Any] = {
            "status": "killed",
            "finished_at": now,
            "exit_reason": "interrupted",
            "event_count": counted,
            **usage_columns(
                total, calls, model=total.model or e["model"], backend=e["backend"], incomplete=True
            ),
        }
        ops.append(Store.op_update("executions", {"id": e["id"]}, values))
    return ops


def _run_and_parts(store: Store, run: dict[str, Any]) -> set[str]:
    """The run and the chunk runs a run-all ran under it: the runs whose agents are its own
    (another run of its process, a paused worker's other item, keeps its agents)."""
    rows = store.query("SELECT id FROM runs WHERE parent_run_id = ?", [run["id"]])
    return {str(run["id"]), *(str(r[0]) for r in rows)}


def why_dead(
    run: dict[str, Any], stale_s: float = STALE_HEARTBEAT_S, now: datetime | None = None
) -> str | None:
    """Why nothing runs a run recorded ``running`` any more, or None while something may: its
    process on this host is gone, or it has not beaten for ``stale_s`` (after a reboot its pid
    can be another process's; a run of another host is known by its heartbeat only)."""
    beat = run["heartbeat_at"] or run["started_at"]
    stale = ((now or utcnow()) - beat).total_seconds() > stale_s
    if run["host"] != socket.gethostname():
        return f"no heartbeat from {run['host']} since {beat:%H:%M:%S}" if stale else None
    if gone_here(run["pid"], run["host"]):
        return f"process {run['pid']} is gone"
    return f"no heartbeat since {beat:%H:%M:%S}" if stale and run["pid"] != os.getpid() else None


def say_which_runs_died(runs: list[dict[str, Any]]) -> None:
    """A run still ``running`` that nothing runs any more (kill -9, a reboot) says so in its
    reason, as the next run or run-all of its spec will mark it. Takes each run's ``pid``,
    ``host`` and ``heartbeat_at`` out (they stay out of the output)."""
    for run in runs:
        held = {k: run.pop(k) for k in ("pid", "host", "heartbeat_at")}
        if run["status"] == "running" and (why := why_dead({**held, **run})):
            run["reason"] = f"{why}; run-all marks it interrupted"


def gone_reasons(store: Store, spec_id: str) -> dict[str | None, str]:
    """Of the spec's runs left ``running`` by a process that is gone, the reason (as status
    says it) by chunk id, the run of the whole spec under ``None``."""
    runs = store.query_dicts(
        "SELECT chunk_id, kind, status, pid, host, heartbeat_at, started_at, NULL AS reason "
        "FROM runs "
        "WHERE spec_id = ? AND status = 'running' AND group_id IS NULL ORDER BY started_at",
        [spec_id],
    )
    say_which_runs_died(runs)
    return {
        (r["chunk_id"] if r["kind"] == "chunk" else None): r["reason"] for r in runs if r["reason"]
    }


def live_runs(store: Store, project_id: str | None = None) -> list[dict[str, Any]]:
    """Top-level runs a live process on this host is running (fresh heartbeat), of one project
    or of every one; runs comparing executors (in worktrees of their own) are left out."""
    from datetime import timedelta

    rows = store.query_dicts(
        "SELECT r.id, r.pid, s.slug FROM runs r JOIN specs s ON s.id = r.spec_id "
        "WHERE (s.project_id = ? OR ? IS NULL) AND r.status = 'running' AND r.host = ? "
        "AND r.parent_run_id IS NULL AND r.group_id IS NULL "
        "AND coalesce(r.heartbeat_at, r.started_at) > ? ORDER BY r.started_at",
        [
            project_id,
            project_id,
            socket.gethostname(),
            utcnow() - timedelta(seconds=STALE_HEARTBEAT_S),
        ],
    )
    return [run for run in rows if pid_alive(run["pid"])]


def ensure_tree_free(store: Store, spec: Spec, project_root: Path | str) -> None:
    """Refuse to start a run in the project's own work tree while a live process (this host,
    fresh heartbeat) runs a spec of the same project there: the new run would switch branches
    and roll back under that run's agent, and each would commit the other's work. Runs that
    compare executors work in worktrees of their own and are left out."""
    from specwright.errors import SpecwrightError

    for run in live_runs(store, spec.project_id)[:1]:
        raise SpecwrightError(
            f"{project_root}: run {str(run['id'])[:13]} of spec {run['slug']!r} (pid "
            f"{run['pid']}) is working in this tree; wait for it to end or stop it "
            "(`specwright queue add` runs one after the other)"
        )


def _catch_up(
    store: Store, run: dict[str, Any], catalog: list[dict[str, Any]] | None = None
) -> int:
    """Write to the database what the dead run's executions journaled but had not flushed (an
    execution journals each event at once and writes them in batches, so a kill -9 leaves up to
    a batch, or even the execution row, in its journal only), and its catalog rows
    (``_catch_up_catalog``; ``catalog``: its ``_catalog_ops`` when already read). Returns the
    rows added."""
    exec_dir = store.journal.root / "executions"
    since = run["started_at"].replace(tzinfo=UTC).timestamp() - 1
    added = 0
    try:
        files = [f for f in exec_dir.glob("*.jsonl") if f.stat().st_mtime >= since]
    except OSError:
        return 0
    for path in files:
        exec_id, ops = _ops_of_run(path, run["id"])
        if not ops:
            continue
        have = {
            str(r[0])
            for r in store.query(
                "SELECT id FROM executions WHERE id = ? "
                "UNION ALL SELECT id FROM events WHERE execution_id = ?",
                [exec_id, exec_id],
            )
        }
        missing = [
            op for op in ops if op["op"] == "update" or str(op.get("row", {}).get("id")) not in have
        ]
        inserts = sum(1 for op in missing if op["op"] != "update")
        if inserts:  # the updates (an execution's end) are re-applied only with what was lost
            store.write(missing, path.stem, journaled=True)
            added += inserts
    return added + _catch_up_catalog(store, run, catalog)


# the catalog rows an attempt writes on its way, under its run's id
_RUN_ROWS = ("reviews", "verifications")


def _catch_up_catalog(
    store: Store, run: dict[str, Any], catalog: list[dict[str, Any]] | None = None
) -> int:
    """Write to the database the dead run's own catalog rows (its reviews and verifications)
    that it journaled and was killed before committing: the database lacked them, a
    ``db rebuild`` (which replays the journal) had them, so the two differed for good."""
    mine = [
        op
        for op in (_catalog_ops(store, run) if catalog is None else catalog)
        if op["op"] == "insert"
        and op.get("table") in _RUN_ROWS
        and op["row"].get("run_id") == run["id"]
    ]
    added = 0
    for table in _RUN_ROWS:
        rows = [op for op in mine if op["table"] == table]
        if not rows:
            continue
        have = {
            str(r[0]) for r in store.query(f"SELECT id FROM {table} WHERE run_id = ?", [run["id"]])
        }
        missing = [op for op in rows if str(op["row"]["id"]) not in have]
        if missing:
            store.write(missing, CATALOG, journaled=True)
            added += len(missing)
    return added


def _catalog_ops(store: Store, run: dict[str, Any]) -> list[dict[str, Any]]:
    """The catalog journal's inserts and updates since ``run`` started, not aborted, on the
    lines that name it and on the line after each (the rest of a batch: a chunk run's start
    marks its chunk on the next line), in the journal's order."""
    path = store.journal.path_for(CATALOG)
    since = int((run["started_at"].replace(tzinfo=UTC).timestamp() - 1) * 1e9)
    ops, follows = [], False
    try:  # only those lines and the abort marks: quietly (a rebuild names a torn line)
        with open(path, "rb") as fh:
            for raw in fh:
                names = run["id"].encode() in raw
                if names or follows or b'"op":"abort"' in raw:
                    with contextlib.suppress(ValueError):
                        op = json.loads(raw)
                        if isinstance(op, dict) and isinstance(op.get("t"), int):
                            ops.append(op)
                follows = names
    except OSError:  # no catalog yet, or unreadable: nothing to add
        return []
    aborted = {t for op in ops if op.get("op") == "abort" for t in op.get("ops") or []}
    return [
        op
        for op in ops
        if op.get("op") in ("insert", "update")
        and op["t"] >= since
        and op["t"] not in aborted
        and isinstance(op.get("row" if op["op"] == "insert" else "key"), dict)
        and (op["op"] != "insert" or op["row"].get("id") is not None)
    ]


def _catch_up_started(store: Store, run_id: str, ops: list[dict[str, Any]]) -> int:
    """Write to the database the chunk runs a dead run-all journaled as started and was killed
    before committing (with their chunk marked running, the same batch): the database lacked
    them while ``db rebuild`` had them, `running` for good. Written, they are recovered as any
    other; ``ops``: its ``_catalog_ops``. Returns the runs added."""
    have = {str(r[0]) for r in store.query("SELECT id FROM runs WHERE parent_run_id = ?", [run_id])}
    missing: list[dict[str, Any]] = []
    for op, after in zip(ops, [*ops[1:], None], strict=True):
        row = op.get("row") or {}
        if op["op"] != "insert" or op.get("table") != "runs" or str(row["id"]) in have:
            continue
        if row.get("parent_run_id") != run_id or row.get("status") != "running":
            continue
        missing.append(op)
        if (
            after is not None
            and after["op"] == "update"
            and after.get("table") == "chunks"
            and after["key"].get("id") == row.get("chunk_id")
        ):
            missing.append(after)
    if missing:
        store.write(missing, CATALOG, journaled=True)
    return sum(1 for op in missing if op["op"] == "insert")


def _ops_of_run(path: Path, run_id: str) -> tuple[str | None, list[dict[str, Any]]]:
    """The execution id and ops of an execution journal, when its execution belongs to
    ``run_id`` (the first op inserts the execution row); aborted ops left out."""
    try:
        with open(path, "rb") as fh:
            first = json.loads(fh.readline() or b"null")
    except (OSError, ValueError):
        return None, []
    row = first.get("row") if isinstance(first, dict) else None
    if not isinstance(row, dict) or first.get("table") != "executions":
        return None, []
    if row.get("run_id") != run_id:
        return None, []
    ops = Journal.read(path).ops
    aborted = {t for op in ops if op["op"] == "abort" for t in op.get("ops") or []}
    kept = [
        op
        for op in ops
        if op["op"] in ("insert", "update")
        and op["t"] not in aborted
        and op.get("table") in ("executions", "events")
    ]
    return str(row.get("id")), kept


def _end_merge(root: Path, run: dict[str, Any]) -> bool:
    """Abort the merge of a chunk's branch a run-all --parallel killed mid merge-back left in
    the project tree (conflicted: the next run-all was refused for uncommitted changes). False
    when git failed: the run is left to the next recovery."""
    try:
        merged = worktrees.abort_merge(root, f"{run['branch']}--")
    except gitops.GitError as exc:
        log.warning("could not abort the merge run %s left midway: %s", run["id"], exc)
        return False
    if merged:
        log.warning("aborted the merge of %s run %s left midway", merged, run["id"])
    return True


def _settle_worktrees(store: Store, root: Path, spec: Spec, run: dict[str, Any]) -> bool:
    """Settle the chunk worktrees a killed ``run-all --parallel`` left (``<database folder>/
    worktrees/<slug>/<position>-…`` on branches ``<spec branch>--<position>``): a chunk
    recorded shipped whose commit had not been merged back yet is merged now, in position order,
    as the run would have (a conflict leaves it to run again); then the trees go, with their
    branches. They stayed for good when the next run-all ran serially or had no chunk left to
    run there, and the shipped chunk's reviewed commit was dropped and the chunk paid for
    again. False when git failed: the run is left to the next recovery."""
    folder = store.path.parent / "worktrees" / spec.slug
    chunks = store.query(
        "SELECT id, position, title, status FROM chunks WHERE spec_id = ? ORDER BY position",
        [spec.id],
    )
    try:
        for chunk_id, position, title, status in chunks:
            cid = str(chunk_id)
            branch, tree = f"{run['branch']}--{position}", folder / f"{position}-{cid[-8:]}"
            if not gitops.branch_exists(root, branch):
                if tree.exists():
                    worktrees.remove_worktree(root, tree)
                continue
            if (
                status == "shipped"
                and gitops.chunk_commits(root, cid, branch)
                and not gitops.chunk_commits(root, cid, run["branch"])
            ):
                merged = worktrees.merge(
                    root, branch, run["branch"], message=f"Merge chunk {position}: {title}"
                )
                if not merged.ok and not merged.conflicts:
                    raise gitops.GitError(merged.message)
                log.warning(
                    "chunk %s shipped before the kill %s",
                    position,
                    f"and is now merged into {run['branch']}"
                    if merged.ok
                    else f"but its commit conflicts with {run['branch']} "
                    f"({', '.join(merged.conflicts)}): it runs again",
                )
            worktrees.remove_worktree(root, tree, delete_branch=branch)
    except (gitops.GitError, OSError) as exc:
        log.warning(
            "could not settle the worktrees run %s left (it stays running until a run-all can): %s",
            run["id"],
            exc,
        )
        return False
    return True


def _the_attempts(root: Path, run: dict[str, Any], base: str, head: str) -> bool:
    """Whether the commits from ``base`` to ``head`` on the run's branch are the killed
    attempt's: the one commit carrying its chunk's trailer (the kill came before the ship was
    recorded), or commits its agent made itself (none with a trailer, each committed while the
    run lived: a commit of the user's since the kill comes later)."""
    commits = gitops.commits_between(root, base, head)
    if not commits or not gitops.is_ancestor(root, base, head):
        return False
    if commits == [head] and gitops.chunk_commits(root, run["chunk_id"], head)[:1] == [head]:
        return True
    if gitops.chunk_commits(root, "", f"{base}..{head}"):
        return False  # a chunk's commit: Specwright's, never an agent's
    return all(_while_it_lived(run, t) for t in gitops.commit_times(root, base, head))


def _while_it_lived(run: dict[str, Any], when: float | None) -> bool:
    """Whether ``when`` (Unix seconds) is between the run's start and its last heartbeat (and
    the little more until the kill: what its agent did then)."""
    start = run["started_at"].replace(tzinfo=UTC).timestamp() - 1
    beat = (run["heartbeat_at"] or run["started_at"]).replace(tzinfo=UTC).timestamp()
    return when is not None and start <= when <= beat + _AGENT_COMMIT_MARGIN_S


def _restore_tree(store: Store, root: Path, run: dict[str, Any]) -> bool:
    """Undo a killed attempt in the project tree, but only when it is provably the attempt's:
    the run's branch is checked out (or was until the agent checked out another while the run
    lived: HEAD goes back to it) at its base commit (the loop refused a dirty tree, so
    anything uncommitted there came from the agent), or at commits the attempt made on it
    (``_the_attempts``: kept, the chunk would run again on top of them, and the next run-all
    was refused for the files the agent's tools left). False when git failed (a stale
    index.lock, a full disk): the run is left to the next recovery."""
    try:
        if not run["branch"] or not gitops.branch_exists(root, run["branch"]):
            return True
        if gitops.current_branch(root) != run["branch"]:
            if not _while_it_lived(run, gitops.head_moved_at(root, run["branch"])):
                return True  # not on the run's branch since before it, or since the kill
            gitops.reattach(root, run["branch"])  # its agent checked out another branch
        base, head = run["base_commit"], gitops.head_commit(root)
        if head == base:
            if not gitops.dirty_files(root):
                return True
        elif not _the_attempts(root, run, base, head):
            return True
        from specwright.loop.records import MAX_PATCH_BYTES, store_files

        ours = store_files(store)  # never in it, whatever the agent's .gitignore says
        saved = store.path.parent / "patches" / f"{run['id']}-interrupted.patch"
        gitdiff.save_patch(root, base, saved, max_bytes=MAX_PATCH_BYTES, exclude=ours)
        submodules.patch(root, base, saved, MAX_PATCH_BYTES)  # reset below: not in the project's
        kept = saved.exists()
        gitops.rollback(root, run["base_commit"])
        undone = "" if head == base else f", and its commit {head[:10]} it had not recorded,"
        if head != base and not gitops.chunk_commits(root, run["chunk_id"], f"{base}..{head}"):
            undone = f", and the commits its agent made (up to {head[:10]}),"
        log.warning(
            "rolled back the interrupted attempt of run %s%s (%s)",
            run["id"],
            undone,
            f"diff saved to {saved}" if kept else "it changed no file: no diff to save",
        )
    except (gitops.GitError, OSError) as exc:  # OSError: the patch could not be saved
        log.warning(
            "could not restore the tree after run %s (it stays running until a run-all can): %s",
            run["id"],
            exc,
        )
        return False
    return True
