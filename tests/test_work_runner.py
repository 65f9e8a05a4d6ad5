"""Run-all and compare interrupted as a user interrupts them: Ctrl-C mid-wave, SIGTERM mid-chunk,
kill -9 mid-wave then resume, a merge conflict's first attempt, Ctrl-C during a comparison."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from specwright import config as config_mod
from specwright.runner import run_all
from specwright.store import Store, resolve_db_path
from tests.conftest import git
from tests.test_runner import _files_on_branch, _project, _spec, conflicting_spec

# SIGINT as at a terminal, even when the tests run where it is ignored (a background job)
_CTRL_C_ABLE = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from specwright.cli import main; sys.exit(main(sys.argv[1:]))"
)

# SIGTERM taken by a thread other than the main one, as the kernel may hand it to any thread that
# does not block it (one of DuckDB's, say): only the catcher started here leaves it unblocked
OTHER_THREAD_TAKES_SIGTERM = (
    "import signal, sys, threading; "
    "threading.Thread(target=threading.Event().wait, daemon=True).start(); "
    "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM}); "
    "from specwright.cli import main; sys.exit(main(sys.argv[1:]))"
)

SLOW_B = {
    "chunks": {
        "Make A": [{"write": "a.txt", "content": "A"}],
        "Make B": [{"write": "b.txt", "content": "half"}, {"sleep": 120}],
        "Make C": [{"write": "c.txt", "content": "C"}],
    }
}
GRAPH = {"A": [], "B": [], "C": ["B"]}


def _start(repo: Path, *args: str, prelude: str = _CTRL_C_ABLE) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", prelude, "-C", str(repo), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _when_b_runs_and_a_shipped(store: Store, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while True:
        states = dict(store.query("SELECT title, status FROM chunks"))
        if states.get("Make A") == "shipped" and states.get("Make B") == "running":
            time.sleep(0.5)  # B's agent is in its sleep
            return
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, f"never got there: {states}"
        time.sleep(0.1)


def _finish(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return proc.returncode, out


def _resume(repo: Path, store: Store, spec) -> None:  # type: ignore[no-untyped-def]
    fixed = {"chunks": {**SLOW_B["chunks"], "Make B": [{"write": "b.txt", "content": "B"}]}}
    (repo.parent / "script.yaml").write_text(yaml.safe_dump(fixed))
    result = run_all(store, config_mod.load(repo), repo, spec, parallel=2)
    assert result.status == "shipped", result.reason
    assert _files_on_branch(repo, "specwright/diamond") == {
        "a.txt": "A",
        "b.txt": "B",
        "c.txt": "C",
    }


def test_ctrl_c_mid_wave_stops_the_agents_and_keeps_what_shipped(git_repo: Path) -> None:
    _project(git_repo, SLOW_B)
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, GRAPH)
    proc = _start(git_repo, "run-all", spec.slug, "--parallel", "2")
    _when_b_runs_and_a_shipped(store, proc)
    proc.send_signal(signal.SIGINT)
    code, out = _finish(proc)  # within 30 s: B's agent sleeps 120, so it was not waited for
    assert code == 130, out
    # A shipped before the Ctrl-C: its work is on the spec branch, not lost in a worktree
    assert _files_on_branch(git_repo, "specwright/diamond") == {"a.txt": "A"}
    states = dict(store.query("SELECT title, status FROM chunks"))
    assert states == {"Make A": "shipped", "Make B": "cancelled", "Make C": "pending"}
    assert store.query("SELECT status, reason FROM runs WHERE kind = 'spec'") == [
        ("cancelled", "interrupted (Ctrl-C); 1/3 chunks shipped")
    ]
    assert "\ncancelled: interrupted (Ctrl-C); 1/3 chunks shipped (branch " in out, out
    for table in ("runs", "executions", "chunks"):
        assert store.query(f"SELECT count(*) FROM {table} WHERE status = 'running'") == [(0,)]
    assert git(git_repo, "worktree", "list").count("\n") == 0  # only the main tree
    assert "--" not in git(git_repo, "branch", "--list", "specwright/*")
    _resume(git_repo, store, spec)


def _wait_for_agent(proc: subprocess.Popen[str], store: Store) -> None:
    """Until chunk A's agent is in its sleep (its execution journals)."""
    deadline = time.monotonic() + 60
    while not list((store.journal.root / "executions").glob("*.jsonl")):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "chunk A's agent never started"
        time.sleep(0.1)
    time.sleep(0.5)  # A's agent is in its sleep


def test_sigterm_mid_chunk_is_recorded_as_sigterm(git_repo: Path) -> None:
    """`kill` on a serial run-all: exit 143, the chunk's run and the spec's run say SIGTERM (not
    Ctrl-C), and the last line says "cancelled" once."""
    slow_a = {"chunks": {"Make A": [{"write": "a.txt", "content": "half"}, {"sleep": 120}]}}
    _project(git_repo, slow_a)
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": [], "B": ["A"], "C": ["B"]})
    proc = _start(git_repo, "run-all", spec.slug)
    _wait_for_agent(proc, store)
    proc.send_signal(signal.SIGTERM)
    code, out = _finish(proc)
    assert code == 143, out
    runs = store.query("SELECT kind, status, reason FROM runs ORDER BY kind DESC")
    assert runs == [
        ("spec", "cancelled", "interrupted (SIGTERM); 0/3 chunks shipped"),
        ("chunk", "cancelled", "cancelled: interrupted (SIGTERM)"),
    ]
    assert "\ncancelled: interrupted (SIGTERM); 0/3 chunks shipped (branch " in out, out
    assert "Ctrl-C" not in out and "cancelled: cancelled" not in out


def test_sigterm_another_thread_took_still_stops_a_wave(git_repo: Path) -> None:
    """The main thread waited for a wave's chunk in one piece (``Future.result()``): a SIGTERM
    the kernel handed to another thread went unseen until the chunk ended (here 120 s)."""
    _project(git_repo, SLOW_B)
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, GRAPH)
    proc = _start(
        git_repo, "run-all", spec.slug, "--parallel", "2", prelude=OTHER_THREAD_TAKES_SIGTERM
    )
    _when_b_runs_and_a_shipped(store, proc)
    proc.send_signal(signal.SIGTERM)
    code, out = _finish(proc)
    assert code == 143, out
    assert store.query("SELECT status, reason FROM runs WHERE kind = 'spec'") == [
        ("cancelled", "interrupted (SIGTERM); 1/3 chunks shipped")
    ]
    for table in ("runs", "executions", "chunks"):
        assert store.query(f"SELECT count(*) FROM {table} WHERE status = 'running'") == [(0,)]


def test_ctrl_c_pressed_again_while_stopping_still_stops_cleanly(git_repo: Path) -> None:
    """An impatient Ctrl-C Ctrl-C Ctrl-C: the later ones used to cut the cleanup short, the
    process exited with its runs recorded as running; they are ignored, as later SIGTERMs are."""
    slow_a = {"chunks": {"Make A": [{"write": "a.txt", "content": "half"}, {"sleep": 120}]}}
    _project(git_repo, slow_a)
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": [], "B": ["A"]})
    proc = _start(git_repo, "run-all", spec.slug)
    _wait_for_agent(proc, store)
    for _ in range(5):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.01)
    code, out = _finish(proc)
    assert code == 130, out
    assert "Traceback" not in out, out
    for table in ("runs", "executions", "chunks"):
        assert store.query(f"SELECT count(*) FROM {table} WHERE status = 'running'") == [(0,)]
    assert store.query("SELECT status FROM runs WHERE kind = 'spec'") == [("cancelled",)]
    assert git(git_repo, "status", "--porcelain") == ""


def test_kill_9_mid_wave_then_resume_lands_what_shipped_and_runs_the_rest(
    git_repo: Path,
) -> None:
    """A shipped in its worktree and was never merged back: the resume merges its commit (it
    used to run A again, paying for it twice); B, killed mid-attempt, runs again."""
    _project(git_repo, SLOW_B)
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, GRAPH)
    proc = _start(git_repo, "run-all", spec.slug, "--parallel", "2")
    _when_b_runs_and_a_shipped(store, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # A shipped in its worktree, never merged back
    _finish(proc)
    events: list[str] = []
    fixed = {"chunks": {**SLOW_B["chunks"], "Make B": [{"write": "b.txt", "content": "B"}]}}
    (git_repo.parent / "script.yaml").write_text(yaml.safe_dump(fixed))
    result = run_all(
        store,
        config_mod.load(git_repo),
        git_repo,
        spec,
        parallel=2,
        on_progress=lambda p: events.append(p.message),
    )
    assert result.status == "shipped", result.reason
    assert _files_on_branch(git_repo, "specwright/diamond") == {
        "a.txt": "A",
        "b.txt": "B",
        "c.txt": "C",
    }
    assert "chunk 1 Make A: already shipped" in events, events
    runs = "SELECT c.title, count(*) FROM executions e JOIN chunks c ON c.id = e.chunk_id "
    got = store.query(runs + "WHERE e.role = 'executor' GROUP BY 1 ORDER BY 1")
    assert got == [("Make A", 1), ("Make B", 2), ("Make C", 1)]


def test_a_conflicted_attempt_is_not_left_shipped(git_repo: Path) -> None:
    store, spec = conflicting_spec(git_repo)
    result = run_all(store, config_mod.load(git_repo), git_repo, spec, parallel=2)
    assert result.status == "shipped", result.reason
    runs = store.query_dicts(
        "SELECT c.title, r.status, r.reason, r.head_commit FROM runs r "
        "JOIN chunks c ON c.id = r.chunk_id ORDER BY c.title, r.started_at"
    )  # by chunk: X's and Y's first runs start together in one wave, in either order
    assert [(r["title"], r["status"]) for r in runs] == [
        ("Make X", "shipped"),
        ("Make Y", "failed"),  # its commit never landed: it conflicted
        ("Make Y", "shipped"),
    ]
    assert runs[1]["reason"].startswith("merge conflict with the spec branch in shared.txt")
    for run in runs:  # every shipped run's commit is on the branch
        landed = git(git_repo, "branch", "--contains", run["head_commit"])
        assert ("specwright/diamond" in landed) == (run["status"] == "shipped"), run


def test_ctrl_c_during_a_comparison_stops_it(git_repo: Path) -> None:
    slow = {"chunks": {"Make A": [{"write": "a.txt", "content": "A"}, {"sleep": 120}]}}
    fast = {"chunks": {"Make A": [{"write": "a.txt", "content": "A"}]}}
    for name, script in (("slow", slow), ("fast", fast)):
        (git_repo.parent / f"{name}.yaml").write_text(yaml.safe_dump(script))
    (git_repo / ".handoff").mkdir()
    (git_repo / ".handoff" / "config.yaml").write_text(
        "tools:\n  executors:\n"
        f"    slow: {{type: scripted, script: {git_repo.parent / 'slow.yaml'}}}\n"
        f"    fast: {{type: scripted, script: {git_repo.parent / 'fast.yaml'}}}\n"
        "defaults: {executor: slow, reviewer: checks}\n"
    )
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "config")
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": []})
    proc = _start(git_repo, "run-all", spec.slug, "--executor", "slow", "--executor", "fast")
    deadline = time.monotonic() + 60
    while store.query("SELECT 1 FROM runs WHERE kind = 'chunk' AND status = 'running'") == []:
        assert proc.poll() is None and time.monotonic() < deadline, "the slow run never started"
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    code, out = _finish(proc)
    assert code == 130, out
    assert "fast: not run (cancelled)" in out
    runs = store.query("SELECT executor, status FROM runs WHERE kind = 'spec'")
    assert runs == [("slow", "cancelled")]  # the Ctrl-C stopped the comparison, not one run


def test_resume_after_a_kill_during_git_worktree_add(git_repo: Path) -> None:
    """kill -9 while a wave's `git worktree add` ran leaves that worktree locked: the resumed
    run-all failed on it ("Cannot delete branch 'specwright/diamond--2' checked out at ...")
    every time, and the spec could never finish."""
    fixed = {"chunks": {**SLOW_B["chunks"], "Make B": [{"write": "b.txt", "content": "B"}]}}
    _project(git_repo, fixed)
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, GRAPH)
    chunk_b = store.query("SELECT id FROM chunks WHERE title = 'Make B'")[0][0]
    tree = store.path.parent / "worktrees" / spec.slug / f"2-{chunk_b[-8:]}"
    tree.parent.mkdir(parents=True)
    git(git_repo, "worktree", "add", "--quiet", "-b", "specwright/diamond--2", str(tree))
    (git_repo / ".git" / "worktrees" / tree.name / "locked").write_text("initializing")
    result = run_all(store, config_mod.load(git_repo), git_repo, spec, parallel=2)
    assert result.status == "shipped", result.reason
    assert _files_on_branch(git_repo, "specwright/diamond") == {
        "a.txt": "A",
        "b.txt": "B",
        "c.txt": "C",
    }
    assert git(git_repo, "worktree", "list").count("\n") == 0  # only the main tree
