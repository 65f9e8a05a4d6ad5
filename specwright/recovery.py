"""Recovery after a crash: runs a dead process left ``running`` become ``interrupted``.

Run-all and ``specwright run`` call ``recover_interrupted`` before they start, so a spec killed
mid-run (kill -9, a reboot) resumes cleanly: the agent the dead run left running is stopped (its
whole process group), the run, its executions and its chunk are marked, and an interrupted serial
attempt's changes are saved as a patch and rolled back in the project tree.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import UTC
from pathlib import Path
from typing import Any

from specwright import gitops
from specwright.agents.orphans import pid_alive, stop_orphans
from specwright.model import Spec, utcnow
from specwright.store import Store

log = logging.getLogger(__name__)

STALE_HEARTBEAT_S = 120.0


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
    rows = store.query_dicts(
        "SELECT id, chunk_id, pid, host, heartbeat_at, started_at, branch, base_commit, kind "
        "FROM runs WHERE spec_id = ? AND status = 'running' "
        "ORDER BY kind = 'spec', started_at",  # a chunk run first: the agents are its own
        [spec.id],
    )
    for run in rows:
        beat = run["heartbeat_at"] or run["started_at"]
        stale = (now - beat).total_seconds() > stale_s
        if run["host"] == host:
            dead = not pid_alive(run["pid"]) or (stale and run["pid"] != os.getpid())
            why = (
                f"process {run['pid']} is gone"
                if not pid_alive(run["pid"])
                else f"no heartbeat since {beat:%H:%M:%S}"
            )
        else:
            dead, why = stale, f"no heartbeat from {run['host']} since {beat:%H:%M:%S}"
        if not dead:
            continue
        if run["host"] == host and run["pid"]:
            since = run["started_at"].replace(tzinfo=UTC).timestamp()
            groups = stop_orphans(int(run["pid"]), since)
            if groups:
                listed = ", ".join(str(g) for g in groups)
                why += f"; stopped the agent it left running (process group {listed})"
        ops = [
            Store.op_update(
                "runs",
                {"id": run["id"]},
                {"status": "interrupted", "finished_at": now, "reason": f"interrupted: {why}"},
            ),
            Store.op_sql(
                "UPDATE executions SET status = 'killed', finished_at = ?, "
                "exit_reason = 'interrupted' WHERE run_id = ? AND status = 'running'",
                [now, run["id"]],
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
        store.write(ops)
        if run["kind"] == "chunk":
            _restore_tree(store, Path(project_root), run)
        recovered.append(run["id"])
        log.warning("run %s marked interrupted: %s", run["id"], why)
    return recovered


def _restore_tree(store: Store, root: Path, run: dict[str, Any]) -> None:
    """Undo a killed attempt in the project tree, but only when it is provably the attempt's:
    the run's branch is checked out at its base commit (the loop refused a dirty tree, so
    anything uncommitted there came from the agent)."""
    try:
        if not run["branch"] or gitops.current_branch(root) != run["branch"]:
            return
        if gitops.head_commit(root) != run["base_commit"] or not gitops.dirty_files(root):
            return
        patch = gitops.diff(root, run["base_commit"])
        saved = store.path.parent / "patches" / f"{run['id']}-interrupted.patch"
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(patch.text, encoding="utf-8")
        gitops.rollback(root, run["base_commit"])
        log.warning(
            "rolled back the interrupted attempt of run %s (diff saved to %s)", run["id"], saved
        )
    except gitops.GitError as exc:
        log.warning("could not restore the tree after run %s: %s", run["id"], exc)
