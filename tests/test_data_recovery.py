"""kill -9 between an execution's journal and its next flush: recovery writes what only the
journal has to the database, so an interrupted execution's last events are not missing there
until someone runs `db rebuild`. A real process, really killed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from specwright import catalog
from specwright import queries as Q
from specwright.recovery import recover_interrupted
from specwright.store import Store

CHILD = textwrap.dedent("""
    import os, signal, socket, sys, time
    from specwright import catalog
    from specwright.model import TextEvent, new_id, utcnow
    from specwright.recorder import ExecutionRecorder
    from specwright.store import Store

    store = Store(os.environ["SPECWRIGHT_DB"])
    spec = catalog.create_spec(store, catalog.ensure_project(store, sys.argv[1]), "Killed")
    run_id, now = new_id(), utcnow()
    store.insert("runs", {"id": run_id, "spec_id": spec.id, "kind": "spec",
        "status": "running", "pid": os.getpid(), "host": socket.gethostname(),
        "started_at": now, "heartbeat_at": now})
    rec = ExecutionRecorder(store, role="executor", backend="scripted", run_id=run_id,
        spec_id=spec.id, flush_interval_s=3600).start()
    deadline = time.monotonic() + 30  # the flusher writes the execution row at once
    while not store.query("SELECT 1 FROM executions WHERE id = ?", [rec.id]):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    for i in range(5):  # journaled now, flushed in an hour
        rec.on_event(TextEvent(f"line {i}"))
    os.kill(os.getpid(), signal.SIGKILL)
""")


def killed_child(script: str, project: Path) -> Store:
    """Run ``script`` (it kills itself with SIGKILL) for ``project``; the store it wrote."""
    killed = subprocess.run(
        [sys.executable, "-c", script, str(project)],
        env={**os.environ, "SPECWRIGHT_LINGER": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr
    return Store(os.environ["SPECWRIGHT_DB"])


def test_recovery_writes_the_events_a_killed_run_only_journaled(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    store = killed_child(CHILD, project)
    assert store.query("SELECT count(*) FROM events") == [(0,)]
    recovered = recover_interrupted(store, catalog.get_spec(store, "killed"), project)
    assert len(recovered) == 1
    texts = store.query("SELECT text FROM events ORDER BY seq")
    assert texts == [(f"line {i}",) for i in range(5)]
    assert store.query("SELECT status, exit_reason FROM executions") == [("killed", "interrupted")]
    # its cost died with it: unknown, counted unpriced, not a spec that cost $0.00
    assert store.query("SELECT cost_usd, cost_source FROM executions") == [(None, "incomplete")]
    assert store.query_dicts(*Q.cost_by_sql("spec", None, None, "UTC"))[0]["unpriced"] == 1
    (reason,) = store.query("SELECT reason FROM runs")[0]
    assert "5 journaled row(s) it had not written to the database were added" in reason
    # the journal and the database agree: a rebuild gives the same rows
    store.rebuild_into(tmp_path / "rebuilt.duckdb")
    rebuilt = Store(tmp_path / "rebuilt.duckdb")
    assert rebuilt.query("SELECT text FROM events ORDER BY seq") == texts
    assert rebuilt.query("SELECT status, cost_source FROM executions") == [("killed", "incomplete")]


# run-all, killed (SIGKILL, as kill -9) after the reviewer's verdict is journaled and before the
# database commits it
KILLED_AT_THE_REVIEW = textwrap.dedent("""
    import os, signal, sys
    from specwright import store
    real = store.apply_ops
    def apply_ops(conn, ops):
        if any(op.get("table") == "reviews" for op in ops):
            os.kill(os.getpid(), signal.SIGKILL)
        real(conn, ops)
    store.apply_ops = apply_ops
    from specwright.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_a_review_journaled_before_a_kill_is_in_the_database_after_recovery(
    git_repo: Path, tmp_path: Path
) -> None:
    """The reviewer's verdict was journaled, then kill -9 before its commit: the live database
    never had it, `db rebuild` (replaying the journal) did, and the two differed for good."""
    from specwright import config as config_mod
    from specwright.runner import run_all
    from tests.test_runner import _files_on_branch, _project, _spec, _write_script

    _project(git_repo, _write_script({"A": []}))
    store = Store(os.environ["SPECWRIGHT_DB"])
    spec = _spec(store, git_repo, {"A": []})
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AT_THE_REVIEW, "-C", str(git_repo), "run-all", spec.slug],
        env={**os.environ, "SPECWRIGHT_LINGER": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert store.query("SELECT count(*) FROM reviews") == [(0,)]
    result = run_all(store, config_mod.load(git_repo), git_repo, spec)
    assert result.status == "shipped", result.reason
    assert _files_on_branch(git_repo, "specwright/diamond") == {"a.txt": "A"}
    reviews = store.query("SELECT id, run_id, verdict FROM reviews ORDER BY created_at")
    assert len(reviews) == 2  # the killed attempt's, then the resumed one's
    (reason,) = store.query(
        "SELECT reason FROM runs WHERE kind = 'chunk' AND status = 'interrupted'"
    )[0]
    assert "1 journaled row(s) it had not written to the database were added" in reason
    store.rebuild_into(tmp_path / "rebuilt.duckdb")
    rebuilt = Store(tmp_path / "rebuilt.duckdb")
    assert rebuilt.query("SELECT id, run_id, verdict FROM reviews ORDER BY created_at") == reviews


def test_a_killed_execution_keeps_the_tokens_its_events_told(tmp_path: Path) -> None:
    """kill -9 after two model calls told their usage (an OpenCode step, a Codex turn) and
    before the execution's end: recovery marked it killed with 0 tokens and 0 events, so
    `usage specs` counted none of the tokens its events held. Now its row has what they told
    (a lower bound: the cost stays unknown)."""
    project = tmp_path / "proj"
    project.mkdir()
    told = (
        "from specwright.model import Usage, UsageEvent\n"
        "for n in (1000, 200):\n"
        "    rec.on_event(UsageEvent(Usage(n, n // 10, 5 * n, 7, 3, n / 1e6, 'm')))\n"
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    store = killed_child(CHILD.replace("os.kill(os.getpid(), signal.SIGKILL)", told), project)
    assert recover_interrupted(store, catalog.get_spec(store, "killed"), project)
    columns = (
        "status, event_count, input_tokens, output_tokens, cache_read_tokens, "
        "cache_write_tokens, reasoning_tokens, round(reported_cost_usd, 9), cost_usd, cost_source"
    )
    got = store.query(f"SELECT {columns} FROM executions")
    assert got == [("killed", 7, 1200, 120, 6000, 14, 6, 0.0012, None, "incomplete")]
    by_spec = store.query_dicts(*Q.cost_by_sql("spec", None, None, "UTC"))[0]
    assert by_spec["input_tokens"] == 1200 and by_spec["unpriced"] == 1, by_spec
    store.rebuild_into(tmp_path / "rebuilt.duckdb")
    assert Store(tmp_path / "rebuilt.duckdb").query(f"SELECT {columns} FROM executions") == got


# run-all, killed (SIGKILL) after its first chunk run's start (the run row, its chunk marked
# running) is journaled and before the database commits it
KILLED_AT_A_CHUNK_RUNS_START = KILLED_AT_THE_REVIEW.replace(
    'op.get("table") == "reviews"',
    'op.get("table") == "runs" and op.get("op") == "insert" and op["row"]["kind"] == "chunk"',
)


def test_a_chunk_run_journaled_as_started_before_a_kill_is_recovered(
    git_repo: Path, tmp_path: Path
) -> None:
    """Killed between journaling a chunk run's start and committing it: the live database
    never had the run, `db rebuild` had it `running` for good (and its chunk running), so the
    two differed. Recovery now writes it and marks it interrupted like any other."""
    from specwright import config as config_mod
    from specwright.runner import run_all
    from tests.test_runner import _project, _spec, _write_script

    _project(git_repo, _write_script({"A": []}))
    store = Store(os.environ["SPECWRIGHT_DB"])
    spec = _spec(store, git_repo, {"A": []})
    cli = [sys.executable, "-c", KILLED_AT_A_CHUNK_RUNS_START, "-C", str(git_repo)]
    killed = subprocess.run(
        [*cli, "run-all", spec.slug],
        env={**os.environ, "SPECWRIGHT_LINGER": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert store.query("SELECT kind FROM runs") == [("spec",)]
    result = run_all(store, config_mod.load(git_repo), git_repo, spec)
    assert result.status == "shipped", result.reason
    runs = "SELECT id, kind, status, parent_run_id FROM runs ORDER BY started_at"
    got = store.query(runs)
    assert [(kind, status) for _, kind, status, _ in got] == [
        ("spec", "interrupted"),
        ("chunk", "interrupted"),
        ("spec", "shipped"),
        ("chunk", "shipped"),
    ]
    assert got[1][3] == got[0][0]
    store.rebuild_into(tmp_path / "rebuilt.duckdb")
    rebuilt = Store(tmp_path / "rebuilt.duckdb")
    assert rebuilt.query(runs) == got
    chunks = "SELECT id, status FROM chunks"
    assert rebuilt.query(chunks) == store.query(chunks)
    assert [status for _, status in store.query(chunks)] == ["shipped"]
