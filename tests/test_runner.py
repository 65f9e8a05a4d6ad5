"""Run-all on real git repositories with the scripted executor: order, parallel worktrees,
merge conflicts, blocked dependents, the plan, and resume after kill -9."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from specwright import catalog, gitops
from specwright import config as config_mod
from specwright.errors import ValidationError
from specwright.model import Spec, new_id
from specwright.runner import run_all, run_summary
from specwright.store import Store, resolve_db_path
from tests.conftest import git

DIAMOND = {"A": [], "B": ["A"], "C": ["A"], "D": ["B", "C"]}


def _project(repo: Path, script: dict, verify: str = "") -> None:
    """Commit a config using the scripted executor with ``script`` (kept outside the repo)."""
    script_path = repo.parent / "script.yaml"
    script_path.write_text(yaml.safe_dump(script))
    (repo / ".handoff").mkdir(exist_ok=True)
    (repo / ".handoff" / "config.yaml").write_text(
        "tools:\n  executors:\n    scripted:\n      type: scripted\n"
        f"      script: {script_path}\n"
        "defaults:\n  executor: scripted\n  reviewer: checks\n  maxIterations: 2\n"
        + (f"verify:\n  - name: check\n    command: {verify}\n" if verify else "")
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "specwright config")


def _spec(store: Store, repo: Path, graph: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    spec = catalog.create_spec(store, catalog.ensure_project(store, repo), "Diamond")
    ids: dict[str, str] = {}
    for name, deps in graph.items():
        chunk = catalog.add_chunk(
            store,
            spec,
            f"Make {name}",
            f"Create {name.lower()}.txt",
            files=[f"{name.lower()}.txt"],
            depends_on=[ids[d] for d in deps],
        )
        ids[name] = chunk.id
    return spec


def _write_script(graph: dict[str, list[str]]) -> dict:
    return {
        "chunks": {
            f"Make {n}": [
                {"write": f"{n.lower()}.txt", "content": f"{n}\n"},
                {"say": f"made {n}"},
                {"usage": {"input_tokens": 100, "output_tokens": 10, "cost_usd": 0.001}},
            ]
            for n in graph
        }
    }


def _files_on_branch(repo: Path, branch: str) -> dict[str, str]:
    names = git(repo, "ls-tree", "-r", "--name-only", branch).splitlines()
    return {n: git(repo, "show", f"{branch}:{n}") for n in names if n.endswith(".txt")}


@pytest.mark.parametrize("parallel", [1, 2])
def test_diamond_ships_the_same_result_serial_and_parallel(git_repo: Path, parallel: int) -> None:
    _project(git_repo, _write_script(DIAMOND))
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, DIAMOND)
    events: list[str] = []
    result = run_all(
        store,
        config_mod.load(git_repo),
        git_repo,
        spec,
        parallel=parallel,
        on_progress=lambda p: events.append(f"{p.kind}:{p.message}"),
    )
    assert result.status == "shipped", result.reason
    assert [c.status for c in result.chunks] == ["shipped"] * 4
    assert _files_on_branch(git_repo, "specwright/diamond") == {
        "a.txt": "A",
        "b.txt": "B",
        "c.txt": "C",
        "d.txt": "D",
    }
    # one commit per chunk, each with its trailer
    log = git(git_repo, "log", "--format=%B", "specwright/diamond")
    assert log.count("Specwright-Chunk:") == 4
    # dependency order: D started after B and C were done
    starts = [e for e in events if e.startswith("chunk-start")]
    assert starts[0].endswith("Make A: starting") and starts[-1].endswith("Make D: starting")
    if parallel == 2:
        assert any(e.startswith("wave:wave: 2, 3") for e in events)
        assert not (git_repo.parent / "db" / "worktrees" / "diamond").exists() or not any(
            (git_repo.parent / "db" / "worktrees" / "diamond").iterdir()
        )
    rows = store.query_dicts("SELECT kind, status, reason FROM runs WHERE kind = 'spec'")
    assert rows == [{"kind": "spec", "status": "shipped", "reason": "all 4 chunks shipped"}]
    assert catalog.get_spec(store, spec.id).status == "done"


def test_a_chunk_added_while_the_spec_runs_leaves_it_ready_not_done(git_repo: Path) -> None:
    """`chunk add` (or an import) while run-all runs: that run-all does not run the new chunk,
    so the spec is not done; it says so and the next run-all runs it."""
    graph = {"A": [], "B": []}
    _project(git_repo, _write_script(graph))
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": []})
    added: list[str] = []

    def add_once(p: Any) -> None:
        if p.kind == "chunk-start" and not added:
            added.append(catalog.add_chunk(store, spec, "Make B", "Create b.txt").id)

    result = run_all(store, config_mod.load(git_repo), git_repo, spec, on_progress=add_once)
    assert result.status == "shipped", result.reason
    assert result.reason == "its chunk shipped; 1 chunk(s) added while it ran are still to run"
    assert catalog.get_spec(store, spec.id).status == "ready"
    again = run_all(store, config_mod.load(git_repo), git_repo, catalog.get_spec(store, spec.id))
    assert again.status == "shipped" and catalog.get_spec(store, spec.id).status == "done"
    assert catalog.get_chunk(store, added[0]).status == "shipped"


def test_failed_dependency_blocks_dependents(git_repo: Path) -> None:
    script = _write_script(DIAMOND)
    script["chunks"]["Make B"] = [{"fail": "the model gave up"}]
    _project(git_repo, script)
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, DIAMOND)
    result = run_all(store, config_mod.load(git_repo), git_repo, spec)
    status = {c.title: c.status for c in result.chunks}
    assert status == {
        "Make A": "shipped",
        "Make B": "failed",
        "Make C": "shipped",
        "Make D": "blocked",
    }
    blocked = next(c for c in result.chunks if c.status == "blocked")
    assert "dependency 2 'Make B' did not ship" in blocked.reason
    ran = {r["title"]: r["ran"] for r in run_summary(store, result.run_id)}
    assert ran == {"Make A": True, "Make B": True, "Make C": True, "Make D": False}
    assert result.status == "failed"
    assert store.query("SELECT count(*) FROM runs WHERE status = 'running'")[0][0] == 0


@pytest.mark.parametrize(("parallel", "ran"), [(1, ["Make A"]), (2, ["Make A", "Make B"])])
@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("auth", "could not authenticate"),
        ("unknown_model", "cannot use model 'scripted'"),
        ("billing", "is out of credit or its plan does not include this use"),
        ("account", "cannot use its account"),
    ],
)
def test_refused_credentials_stop_the_run_all(
    git_repo: Path, parallel: int, ran: list, kind: str, said: str
) -> None:
    """The executor's key is refused, its model unknown, its account out of credit or unusable
    (on hold, disabled, awaiting verification): every chunk would fail the same way,
    each after starting an agent, so run-all starts no more of them (a wave under way ends) and
    says why. C shares A's file: in parallel it waits for the next wave, which never comes."""
    fail = [{"fail": "401 invalid x-api-key", "kind": kind}]
    _project(git_repo, {"chunks": {f"Make {n}": fail for n in "ABC"}})
    store = Store(resolve_db_path(git_repo))
    spec = catalog.create_spec(store, catalog.ensure_project(store, git_repo), "Refused")
    for name, file in (("A", "a.txt"), ("B", "b.txt"), ("C", "a.txt")):
        catalog.add_chunk(store, spec, f"Make {name}", f"Write {file}", files=[file])
    result = run_all(store, config_mod.load(git_repo), git_repo, spec, parallel=parallel)
    assert result.status == "failed"
    assert f"chunk 1 failed: {kind}: executor 'scripted' (scripted) {said}" in result.reason
    assert [r["title"] for r in run_summary(store, result.run_id) if r["ran"]] == ran
    assert store.query("SELECT count(*) FROM executions")[0][0] == len(ran)
    assert store.query("SELECT count(*) FROM runs WHERE status = 'running'")[0][0] == 0


def conflicting_spec(git_repo: Path) -> tuple[Store, Spec]:
    """Two independent chunks that both write shared.txt: run in parallel, they conflict."""
    graph = {"X": [], "Y": []}
    script = {
        "chunks": {
            f"Make {n}": [
                {"write": f"{n.lower()}.txt", "content": n},
                {"write": "shared.txt", "content": f"written by {n}\n"},
            ]
            for n in graph
        }
    }
    _project(git_repo, script)
    store = Store(resolve_db_path(git_repo))
    return store, _spec(store, git_repo, graph)


def test_parallel_merge_conflict_is_retried_on_top_of_the_merged_code(git_repo: Path) -> None:
    store, spec = conflicting_spec(git_repo)
    events: list[str] = []
    result = run_all(
        store,
        config_mod.load(git_repo),
        git_repo,
        spec,
        parallel=2,
        on_progress=lambda p: events.append(f"{p.kind}:{p.message}"),
    )
    assert result.status == "shipped", result.reason
    assert any(e.startswith("conflict:chunk 2: merge conflict in shared.txt") for e in events)
    files = _files_on_branch(git_repo, "specwright/diamond")
    assert files["shared.txt"] == "written by Y"  # the retry rebuilt on top of X's work
    assert files["x.txt"] == "X" and files["y.txt"] == "Y"
    assert git(git_repo, "status", "--porcelain") == ""


def test_a_failing_merge_hook_is_not_a_conflict_nor_a_second_agent_run(git_repo: Path) -> None:
    """Chunk commits skip the repository's commit hooks; merging them back does too (a failing
    pre-merge-commit or commit-msg hook was taken for a conflict and the agent paid again)."""
    graph = {"A": [], "B": []}
    _project(git_repo, _write_script(graph))
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, graph)
    for name in ("pre-merge-commit", "commit-msg"):
        hook = git_repo / ".git" / "hooks" / name
        hook.write_text("#!/bin/sh\necho no >&2\nexit 1\n")
        hook.chmod(0o755)
    result = run_all(store, config_mod.load(git_repo), git_repo, spec, parallel=2)
    assert result.status == "shipped", result.reason
    runs = store.query("SELECT status FROM runs WHERE kind = 'chunk'")
    assert sorted(r[0] for r in runs) == ["shipped", "shipped"]
    assert _files_on_branch(git_repo, "specwright/diamond") == {"a.txt": "A", "b.txt": "B"}


def test_a_merge_git_refuses_for_no_conflict_keeps_the_work_and_runs_no_agent_again(
    git_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merge-back that failed for anything but a conflict (a lock left in the repository, a
    full disk) was taken for a conflict: the agent was paid to do the chunk again, the merge
    failed again, and the reason said "merge conflict" with the shipped work deleted."""
    monkeypatch.setattr(gitops, "LOCK_WAIT_S", 0.2)
    graph = {"A": [], "B": []}
    script = _write_script(graph)
    # B's agent leaves a lock in the main work tree's git folder (its worktree's index is its
    # own): every merge into the spec branch fails from then on, with no conflict
    script["chunks"]["Make B"].insert(
        0, {"run": 'touch "$(git rev-parse --git-common-dir)/index.lock"'}
    )
    _project(git_repo, script)
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, graph)
    result = run_all(store, config_mod.load(git_repo), git_repo, spec, parallel=2)
    assert result.status == "failed"
    runs = store.query_dicts(
        "SELECT c.title, r.status, r.reason FROM runs r JOIN chunks c ON c.id = r.chunk_id "
        "WHERE r.kind = 'chunk' ORDER BY c.position"
    )
    # A lands unless it finished after B left the lock: then it fails the same way
    kept = [f"specwright/diamond--{i}" for i, r in enumerate(runs, 1) if r["status"] == "failed"]
    assert runs[1]["status"] == "failed" and runs[0]["status"] in ("shipped", "failed")
    for run, branch in zip([r for r in runs if r["status"] == "failed"], kept, strict=True):
        reason = run["reason"]
        assert "conflict" not in reason and "index.lock" in reason, reason
        assert f"kept on branch {branch}" in reason, reason
    assert store.query("SELECT count(*) FROM executions")[0][0] == 2  # no agent ran again
    (git_repo / ".git" / "index.lock").unlink()
    for branch in kept:
        git(git_repo, "merge", "-q", "--no-edit", branch)
    assert _files_on_branch(git_repo, "specwright/diamond") == {"a.txt": "A", "b.txt": "B"}


def test_cycle_and_missing_dependency_are_refused_before_running(git_repo: Path) -> None:
    _project(git_repo, _write_script(DIAMOND))
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": [], "B": ["A"]})
    a, b = catalog.list_chunks(store, spec.id)
    store.insert("chunk_deps", {"chunk_id": a.id, "depends_on_id": b.id})  # bypass the CRUD check
    with pytest.raises(ValidationError, match=r"cycle: .*'Make A' -> .*'Make B' -> .*'Make A'"):
        run_all(store, config_mod.load(git_repo), git_repo, spec)
    assert store.query("SELECT count(*) FROM runs")[0][0] == 0


@pytest.mark.parametrize("lock", ["index.lock", "HEAD.lock", "refs/heads/main.lock"])
def test_a_git_lock_left_behind_refuses_the_run_before_any_agent(
    git_repo: Path, monkeypatch: pytest.MonkeyPatch, lock: str
) -> None:
    """A git killed mid-command (kill -9, a crash) leaves its lock: the run's agents worked,
    and then every commit or merge of their work failed on it ("Unable to create
    '.git/HEAD.lock': File exists"); a lock of a git running meanwhile is waited for."""
    monkeypatch.setattr(gitops, "LOCK_WAIT_S", 0.5)
    _project(git_repo, _write_script({"A": []}))
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": []})
    held = git_repo / ".git" / lock
    held.touch()
    with pytest.raises(gitops.GitError) as refused:
        run_all(store, config_mod.load(git_repo), git_repo, spec)
    assert str(held) in str(refused.value), refused.value
    assert "if no git command is running, delete it" in str(refused.value)
    assert store.query("SELECT count(*) FROM executions") == [(0,)]
    assert held.exists()  # never ours to remove
    freed = threading.Timer(0.2, held.unlink)  # another git's, ending meanwhile
    freed.start()
    try:
        assert run_all(store, config_mod.load(git_repo), git_repo, spec).status == "shipped"
    finally:
        freed.join()


def test_plan_shows_order_waves_overlaps_and_estimate(git_repo: Path, cli) -> None:  # type: ignore[no-untyped-def]
    _project(git_repo, _write_script(DIAMOND))
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, DIAMOND)
    catalog.update_chunk(store, catalog.list_chunks(store, spec.id)[2].id, files=["b.txt", "c.txt"])
    result = cli(
        "-C", str(git_repo), "--json", "run-all", spec.slug, "--plan", "--executor", "scripted"
    )
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    assert [c["position"] for c in plan["order"]] == [1, 2, 3, 4]
    assert plan["overlaps"] == [{"a": 2, "b": 3, "files": ["b.txt"]}]
    assert [w["chunks"] for w in plan["waves"]] == [[1], [2], [3], [4]]
    assert plan["waves"][1]["deferred"][0]["why"] == "shares b.txt with chunk 2"
    assert plan["estimate"]["text"].startswith("unknown (no past priced runs of scripted")
    # after a run, the estimate comes from the store
    run_all(store, config_mod.load(git_repo), git_repo, spec)
    catalog.update_chunk(store, catalog.list_chunks(store, spec.id)[3].id, status="pending")
    plan = json.loads(cli("-C", str(git_repo), "--json", "run-all", spec.slug, "--plan").out)
    assert plan["estimate"]["low_usd"] == pytest.approx(0.001)
    assert "median $0.0010/iteration" in plan["estimate"]["text"]


def test_plan_estimate_leaves_out_a_past_cost_that_is_not_a_number(store: Store) -> None:
    """One past call of NaN cost (an older database, a merged one) made `run-all --plan` say
    "$nan – $nan (median $nan/iteration ...)"; it is unknown, as in every cost report."""
    from specwright.model import Usage
    from specwright.recorder import ExecutionRecorder
    from specwright.schedule import estimate_cost

    for cost in (0.5, float("nan"), 1.5):
        with ExecutionRecorder(store, role="executor", backend="opencode", executor="glm") as rec:
            rec.finish(status="ok", usage=Usage(input_tokens=10, cost_usd=cost))
    estimate = estimate_cost(store, "glm", None, 2, 3)
    assert estimate.samples == 2 and estimate.per_iteration_usd == 1.0
    assert "nan" not in estimate.text(), estimate.text()


KILLABLE = {
    "chunks": {
        "Make A": [{"write": "a.txt", "content": "A"}],
        "Make B": [{"write": "b.txt", "content": "half-done"}, {"say": "thinking"}, {"sleep": 120}],
        "Make C": [{"write": "c.txt", "content": "C"}],
    }
}


def kill_when_thinking(proc: subprocess.Popen[Any], store: Store, timeout: float = 120) -> None:
    """SIGKILL ``proc``'s group once an agent it runs has said "thinking" (a script's cue that it
    is mid-chunk: the journal has the event); fails if ``proc`` ends or nothing says it."""
    executions = store.journal.root / "executions"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(executions.glob("*.jsonl")) if executions.exists() else []
        if any('"text":"thinking"' in p.read_text() for p in found):
            break
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else "it ended"
        time.sleep(0.2)
    else:
        pytest.fail("no agent said 'thinking'")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def run_all_killed_when_thinking(git_repo: Path, slug: str, store: Store) -> None:
    """``specwright run-all SLUG`` in a process of its own, SIGKILLed mid-chunk
    (``kill_when_thinking``)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "specwright", "-C", str(git_repo), "run-all", slug],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        kill_when_thinking(proc, store)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def test_kill_minus_9_mid_chunk_then_resume_finishes(git_repo: Path) -> None:
    graph = {"A": [], "B": ["A"], "C": ["B"]}
    _project(git_repo, KILLABLE)
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, graph)
    run_all_killed_when_thinking(git_repo, spec.slug, store)
    assert (git_repo / "b.txt").read_text() == "half-done"  # the killed attempt's leftovers

    # the resumed run finishes: B's leftovers rolled back, B re-run from its base
    fixed = dict(KILLABLE["chunks"], **{"Make B": [{"write": "b.txt", "content": "B"}]})
    (git_repo.parent / "script.yaml").write_text(yaml.safe_dump({"chunks": fixed}))
    result = run_all(store, config_mod.load(git_repo), git_repo, spec)
    assert result.status == "shipped", result.reason
    assert result.chunks[0].reason == "already shipped (skipped)"
    summary = {r["title"]: r for r in run_summary(store, result.run_id)}
    a = summary["Make A"]  # shipped by the killed run: not this run's work
    assert a["status"] == "shipped" and a["ran"] is False
    assert a["iterations"] is None and a["cost_usd"] is None and a["time_s"] is None
    assert summary["Make B"]["ran"] is True and summary["Make B"]["iterations"] >= 1
    assert _files_on_branch(git_repo, "specwright/diamond") == {
        "a.txt": "A",
        "b.txt": "B",
        "c.txt": "C",
    }
    interrupted = store.query_dicts(
        "SELECT kind, reason, iterations FROM runs WHERE status = 'interrupted' ORDER BY kind"
    )
    assert [r["kind"] for r in interrupted] == ["chunk", "spec"]
    assert interrupted[0]["iterations"] == 1  # the attempt under way when it was killed
    assert "process" in interrupted[0]["reason"] and "is gone" in interrupted[0]["reason"]
    assert store.query("SELECT count(*) FROM runs WHERE status = 'running'")[0][0] == 0
    assert store.query("SELECT count(*) FROM executions WHERE status = 'running'")[0][0] == 0
    assert list((store.path.parent / "patches").glob("*-interrupted.patch"))


def test_the_patch_saved_for_a_killed_attempt_restores_it_all(
    git_repo: Path, tmp_path: Path
) -> None:
    """The next run-all rolls a killed attempt back and keeps its diff "saved" beside the
    database: `git apply` of that file gives back its binary files and all of a large one."""
    big = "".join(f"line {i} of a long generated file\n" for i in range(20_000))  # ~640 kB
    script = [
        {"write": "big.txt", "content": big},
        {"run": "head -c 5000 /dev/urandom > blob.bin"},
        {"say": "thinking"},
        {"sleep": 120},
    ]
    _project(git_repo, {"chunks": {"Make A": script}})
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": []})
    base = git(git_repo, "rev-parse", "HEAD")
    run_all_killed_when_thinking(git_repo, spec.slug, store)
    blob = (git_repo / "blob.bin").read_bytes()
    (git_repo.parent / "script.yaml").write_text(
        yaml.safe_dump({"chunks": {"Make A": [{"write": "a.txt", "content": "A"}]}})
    )
    assert run_all(store, config_mod.load(git_repo), git_repo, spec).status == "shipped"
    [patch] = (store.path.parent / "patches").glob("*-interrupted.patch")
    copy = tmp_path / "copy"
    git(tmp_path, "clone", "-q", str(git_repo), str(copy))
    git(copy, "checkout", "-q", base)
    git(copy, "apply", str(patch))
    assert (copy / "blob.bin").read_bytes() == blob
    assert (copy / "big.txt").read_text() == big


def test_cli_finds_a_spec_of_another_project_and_runs_it_in_its_root(
    git_repo: Path, tmp_path: Path, cli
) -> None:  # type: ignore[no-untyped-def]
    _project(git_repo, _write_script({"A": []}))
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": []})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    status = cli("-C", str(elsewhere), "status")
    assert "showing every project in the database" in status.out and spec.slug in status.out
    result = cli("-C", str(elsewhere), "--json", "run-all", spec.slug)
    assert result.code == 0, result.err
    assert json.loads(result.out)["status"] == "shipped"
    assert git(git_repo, "show", "specwright/diamond:a.txt") == "A"
    assert not (elsewhere / "a.txt").exists()


def _agents_spec(repo: Path, executors: str, default: str) -> tuple[Store, Spec]:
    """A committed config of ``executors`` (YAML lines under ``tools.executors``) with the checks
    reviewer, and a spec of one chunk."""
    (repo / ".handoff").mkdir()
    (repo / ".handoff" / "config.yaml").write_text(
        f"tools:\n  executors:\n{executors}defaults: {{executor: {default}, reviewer: checks}}\n"
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "config")
    store = Store(resolve_db_path(repo))
    return store, _spec(store, repo, {"A": []})


def test_missing_agent_or_dead_server_is_one_line_before_anything_runs(
    git_repo: Path, cli, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    store, spec = _agents_spec(
        git_repo,
        "    claude: {type: claude-code, model: claude-sonnet-4-5}\n"
        "    glm: {type: opencode, model: glm-4.7, provider: zai}\n",
        "claude",
    )
    monkeypatch.setenv("CLAUDE_PATH", str(git_repo / "no-such-claude"))
    monkeypatch.setenv("OPENCODE_URL", "http://127.0.0.1:9")
    for args, message in (
        (["run-all", spec.slug], "no-such-claude: no executable file there"),
        (["run", f"{spec.slug}:1"], "no-such-claude: no executable file there"),
        (
            ["run-all", spec.slug, "--executor", "glm"],
            "OpenCode server at http://127.0.0.1:9 is not reachable",
        ),
    ):
        result = cli("-C", str(git_repo), *args)
        assert result.code == 2, result.out
        assert message in result.err and len(result.err.strip().splitlines()) == 1
    assert store.query("SELECT count(*) FROM runs")[0][0] == 0
    assert [c.status for c in catalog.list_chunks(store, spec.id)] == ["pending"]
    assert git(git_repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"


def test_an_agent_location_the_environment_overrides_is_said_before_the_run(
    git_repo: Path, cli, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """OPENCODE_URL wins over every opencode executor's url: two executors meant for two servers
    both went to the variable's, and run/run-all said nothing of it (only `agents list` did)."""
    _, spec = _agents_spec(
        git_repo,
        "    glm: {type: opencode, model: glm-4.7, provider: zai, url: 'http://127.0.0.1:8/'}\n"
        "    same: {type: opencode, model: glm-4.7, provider: zai, url: 'http://127.0.0.1:7'}\n",
        "glm",
    )
    monkeypatch.setenv("OPENCODE_URL", "http://dev:hunter2pass@127.0.0.1:7")
    for args in (["run-all", spec.slug], ["run", f"{spec.slug}:1"]):
        result = cli("-C", str(git_repo), *args)
        assert result.code == 2, result.out  # the server is down: the run stops there as before
        first, error = result.err.strip().splitlines()
        assert first == (
            "specwright: warning: executor 'glm': OPENCODE_URL=http://***@127.0.0.1:7 is used, "
            "not its url http://127.0.0.1:8/ from the config"
        )
        assert "is not reachable" in error and "hunter2pass" not in result.err
    # the same server as the config's (a trailing slash aside): nothing to say
    monkeypatch.setenv("OPENCODE_URL", "http://127.0.0.1:7/")
    result = cli("-C", str(git_repo), "run-all", spec.slug, "--executor", "same")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err


def test_a_second_spec_run_from_the_first_specs_branch_is_warned_about(
    git_repo: Path,
    cli,  # type: ignore[no-untyped-def]
) -> None:
    _project(git_repo, _write_script({"A": [], "B": []}))
    store = Store(resolve_db_path(git_repo))
    project = catalog.ensure_project(store, git_repo)
    for name in ("A", "B"):
        spec = catalog.create_spec(store, project, f"Spec {name}")
        catalog.add_chunk(store, spec, f"Make {name}", files=[f"{name.lower()}.txt"])
    first = cli("-C", str(git_repo), "run-all", "spec-a")
    assert first.code == 0 and "warning" not in first.err, first
    second = cli("-C", str(git_repo), "run-all", "spec-b")
    assert second.code == 0, second
    assert (
        "specwright: warning: specwright/spec-b starts from specwright/spec-a, the branch checked "
        "out" in second.err
    ), second.err
    assert "a.txt" in _files_on_branch(git_repo, "specwright/spec-b")


def test_a_spec_branch_deleted_before_it_was_merged_is_said_not_silently_trusted(
    git_repo: Path,
) -> None:
    """The user deleted specwright/<slug> (to start over, or by mistake) while a chunk had
    shipped on it: run-all skipped that chunk and said all shipped on a branch without it."""
    graph = {"A": [], "B": []}
    script = _write_script(graph)
    _project(git_repo, {"chunks": {**script["chunks"], "Make B": [{"say": "nothing"}]}})
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, graph)
    assert run_all(store, config_mod.load(git_repo), git_repo, spec).status == "failed"
    git(git_repo, "checkout", "-q", "main")
    git(git_repo, "branch", "-q", "-D", "specwright/diamond")
    (git_repo.parent / "script.yaml").write_text(yaml.safe_dump(script))
    events: list[str] = []
    result = run_all(
        store,
        config_mod.load(git_repo),
        git_repo,
        spec,
        on_progress=lambda p: events.append(f"{p.kind}:{p.message}"),
    )
    said = [e for e in events if e.startswith("skip:chunk 1 Make A") and "gone" in e]
    assert len(said) == 1 and "specwright/diamond is gone" in said[0], events
    assert "specwright run diamond:1 --force" in said[0]
    assert result.chunks[0].status == "shipped"  # its record stands: a merge may have kept it
    # merged and then deleted (the usual end of a PR): B, whose commit the new branch's start
    # has, is skipped without a word; A still lacks its work, and is still said
    git(git_repo, "checkout", "-q", "main")
    git(git_repo, "merge", "-q", "--ff-only", "specwright/diamond")
    git(git_repo, "branch", "-q", "-D", "specwright/diamond")
    events.clear()
    run_all(
        store,
        config_mod.load(git_repo),
        git_repo,
        spec,
        on_progress=lambda p: events.append(f"{p.kind}:{p.message}"),
    )
    assert [e.split(":")[1] for e in events if "is gone" in e] == ["chunk 1 Make A"], events


@pytest.mark.parametrize("parallel", [1, 2])
def test_a_project_in_a_subfolder_of_its_repository_runs_there(
    git_repo: Path, parallel: int
) -> None:
    """A monorepo package with its own `.handoff/`: chunks naming their files never shipped
    (the diff's paths are the repository's, the chunk's the project's), and in parallel the
    agents and checks ran at the worktree's top, putting files there, unverified."""
    project = git_repo / "packages" / "calc"
    project.mkdir(parents=True)
    (project / "calc.py").write_text("X = 1\n")
    _project(git_repo, _write_script({"A": [], "B": []}), verify="test -f calc.py")
    (git_repo / ".handoff").rename(project / ".handoff")
    (git_repo / ".gitignore").write_text("data/\n**/data/\n")
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "a package")
    store = Store(resolve_db_path(project))
    spec = _spec(store, project, {"A": [], "B": []})
    result = run_all(store, config_mod.load(project), project, spec, parallel=parallel)
    assert result.status == "shipped", result.reason
    files = git(git_repo, "ls-tree", "-r", "--name-only", "specwright/diamond").split()
    assert {"packages/calc/a.txt", "packages/calc/b.txt"} <= set(files)
    assert "a.txt" not in files and "b.txt" not in files
    checks = store.query("SELECT DISTINCT status FROM verifications")
    assert checks == [("passed",)]


@pytest.mark.parametrize("parallel", [1, 2])
def test_a_check_that_cannot_run_stops_the_run_before_any_agent(
    git_repo: Path, parallel: int
) -> None:
    """A check whose command is not found (exit 127: a worktree lacks the git-ignored .venv/)
    is not a pre-existing failure to work around: with it, buggy chunks shipped unverified.
    The run stops at the baseline, no agent paid, one line naming the check and its folder."""
    (git_repo / ".gitignore").write_text("data/\n.venv/\n")
    git(git_repo, "commit", "-q", "-am", "ignore .venv")
    tool = git_repo / ".venv" / "bin" / "check"
    tool.parent.mkdir(parents=True)
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(0o755)
    checked = ".venv/bin/check" if parallel > 1 else "no-such-check-tool"
    _project(git_repo, _write_script({"A": [], "B": []}), verify=checked)
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": [], "B": []})
    result = run_all(store, config_mod.load(git_repo), git_repo, spec, parallel=parallel)
    assert result.status == "failed"
    assert store.query("SELECT count(*) FROM executions")[0][0] == 0  # no agent ran
    failed = [c for c in result.chunks if c.status == "failed"]
    assert failed and all(c.iterations == 0 for c in failed)
    reason = failed[0].reason
    assert reason.startswith("check_broken: verification step 'check' cannot run in "), reason
    assert "\n" not in reason and "(command not found): " in reason
    if parallel > 1:  # in a worktree of the run, without the git-ignored .venv/
        assert f"{resolve_db_path(git_repo).parent / 'worktrees'}" in reason
        assert "a worktree has no git-ignored files (.venv/, node_modules/): call tools" in reason
    else:
        assert f"cannot run in {git_repo} (command not found): install it or fix" in reason
    assert f"chunk 1 failed: {reason}"[:250] in result.reason
    ran = [r["title"] for r in run_summary(store, result.run_id) if r["ran"]]
    assert ran == ["Make A", "Make B"][:parallel]  # no chunk is started after it
    assert store.query("SELECT count(*) FROM runs WHERE status = 'running'")[0][0] == 0


def test_an_agent_that_cannot_start_stops_the_run_all(git_repo: Path, tmp_path: Path) -> None:
    """A program exec refuses (ENOEXEC: here an ELF header with nothing after it, which the
    look before the run cannot tell) fails its chunk at once, and no further chunk is started:
    each would fail the same way."""
    from specwright.agents.command import CommandExecutor
    from specwright.config import ExecutorConfig

    agent = tmp_path / "agent"
    agent.write_bytes(b"\x7fELF" + bytes(60))
    agent.chmod(0o755)
    executor = CommandExecutor(
        ExecutorConfig(name="broken", type="command", argv=(str(agent), "{prompt}"))
    )
    _project(git_repo, _write_script({"A": [], "B": []}))
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": [], "B": []})
    result = run_all(store, config_mod.load(git_repo), git_repo, spec, executor=executor)
    assert result.status == "failed"
    [failed] = [c for c in result.chunks if c.status == "failed"]
    assert failed.reason.startswith(
        f"cannot_start: executor 'broken' (command) could not start: {agent}: cannot start: "
    )
    ran = [r["title"] for r in run_summary(store, result.run_id) if r["ran"]]
    assert ran == ["Make A"]
    assert store.query("SELECT count(*), max(status) FROM executions")[0] == (1, "error")


def test_a_run_all_killed_mid_merge_back_has_its_merge_aborted_by_the_next(
    git_repo: Path,
) -> None:
    """A run-all --parallel killed while merging a chunk back left the tree mid-merge
    (conflicted): the next run-all was refused ("commit or stash them") for files it left."""
    graph = {"A": [], "B": []}
    _project(git_repo, _write_script(graph))
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, graph)
    git(git_repo, "checkout", "-q", "-b", "specwright/diamond--2")
    (git_repo / "other.txt").write_text("from the chunk\n")
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "chunk 2's work")
    git(git_repo, "checkout", "-q", "-b", "specwright/diamond", "main")
    (git_repo / "other.txt").write_text("from the spec branch\n")
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "landed before")
    landed = git(git_repo, "rev-parse", "HEAD")
    merging = subprocess.run(
        ["git", "merge", "--no-ff", "-m", "Merge chunk 2", "specwright/diamond--2"],
        cwd=git_repo,
        capture_output=True,
    )
    assert merging.returncode == 1  # the conflict the killed run-all never aborted
    dead = subprocess.Popen(["true"])
    dead.wait()
    now = datetime.now(UTC).replace(tzinfo=None)
    row = {"id": new_id(), "spec_id": spec.id, "kind": "spec", "status": "running"}
    row.update(pid=dead.pid, host=socket.gethostname(), branch="specwright/diamond")
    row.update(base_commit=landed, started_at=now, heartbeat_at=now)
    store.write([Store.op_insert("runs", row)])
    result = run_all(store, config_mod.load(git_repo), git_repo, spec, parallel=2)
    assert result.status == "shipped", result.reason
    files = _files_on_branch(git_repo, "specwright/diamond")
    assert files == {"a.txt": "A", "b.txt": "B", "other.txt": "from the spec branch"}
    assert store.query("SELECT status FROM runs WHERE id = ?", [row["id"]])[0][0] == "interrupted"
