"""The Ralph loop on real git repositories with the scripted executor."""

from __future__ import annotations

import _thread
import re
import threading
from pathlib import Path
from typing import Any

import pytest

from specwright import catalog, gitops, worktrees
from specwright.agents.base import Outcome, Task
from specwright.agents.scripted import ScriptedExecutor
from specwright.config import ExecutorConfig
from specwright.loop import Progress, build_prompt, run_chunk
from specwright.model import Chunk, ErrorEvent, Review
from specwright.store import Store
from specwright.testing import FakeModelServer, anthropic_tool_use
from tests.support_agents import alive
from tests.support_loop import (
    NO_BUG,
    PYTEST,
    TEST_CALC,
    bad_mul,
    git,
    good_mul,
    make_chunk,
    make_config,
    make_repo,
    no_running_rows,
    rows,
    scripted,
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"test_calc.py": TEST_CALC})


def trailer_commits(repo: Path, rev: str) -> list[str]:
    out = git(repo, "log", "--format=%H %(trailers:key=Specwright-Chunk,valueonly)", rev)
    return [line.split()[0] for line in out.splitlines() if len(line.split()) > 1]


def test_fail_then_pass_ships_one_commit_and_leaves_no_trace(repo: Path, store: Store) -> None:
    """Iteration 1 adds a failing test (a NEW failure), iteration 2 fixes it: one commit."""
    config = make_config(verify=[PYTEST])
    chunk = make_chunk(store, repo, files=("calc.py", "test_calc.py"))
    mul_test = "\n\ndef test_mul():\n    from calc import mul\n    assert mul(2, 3) == 6\n"
    attempt_1 = [
        *bad_mul(),
        {"write": "scratch/notes.txt", "content": "attempt 1 was here\n"},
        {"patch": "test_calc.py", "search": "== 3\n", "replace": "== 3\n" + mul_test},
    ]
    attempt_2 = [
        *good_mul("mul multiplies"),
        {"patch": "test_calc.py", "search": "== 3\n", "replace": "== 3\n" + mul_test},
    ]
    seen: list[Progress] = []
    base = gitops.head_commit(repo)
    result = run_chunk(
        store,
        config,
        repo,
        chunk,
        executor=scripted({"attempts": [attempt_1, attempt_2]}),
        on_progress=seen.append,
    )
    assert result.status == "shipped" and result.iterations == 2 and result.verdict == "SHIP"
    assert result.branch == "specwright/calc" and result.base_commit == base
    assert gitops.current_branch(repo) == "specwright/calc"
    assert trailer_commits(repo, "specwright/calc") == [result.commit]
    assert git(repo, "rev-list", "--count", f"{base}..specwright/calc") == "1"
    assert git(repo, "rev-parse", "main") == base  # main untouched
    assert not (repo / "scratch").exists()  # the rolled-back attempt left nothing behind
    assert "BUG" not in (repo / "calc.py").read_text()
    assert gitops.dirty_files(repo) == []
    assert git(repo, "log", "-1", "--format=%s") == "Add mul"

    [run] = rows(store, "SELECT * FROM runs")
    assert run["status"] == "shipped" and run["iterations"] == 2 and run["reason"] == "shipped"
    assert run["base_commit"] == base and run["head_commit"] == result.commit
    assert run["pid"] and run["heartbeat_at"] and run["finished_at"]
    [c] = rows(store, "SELECT status, iterations, verdict, summary FROM chunks")
    assert c == {
        "status": "shipped",
        "iterations": 2,
        "verdict": "SHIP",
        "summary": "mul multiplies",
    }
    verifs = rows(
        store,
        "SELECT iteration, status, tests_collected, tests_failed, is_baseline FROM verifications "
        "ORDER BY iteration",
    )
    assert verifs == [
        {
            "iteration": 0,
            "status": "passed",
            "tests_collected": 1,
            "tests_failed": 0,
            "is_baseline": True,
        },
        {
            "iteration": 1,
            "status": "failed",
            "tests_collected": 2,
            "tests_failed": 1,
            "is_baseline": False,
        },
        {
            "iteration": 2,
            "status": "passed",
            "tests_collected": 2,
            "tests_failed": 0,
            "is_baseline": False,
        },
    ]
    reviews = rows(store, "SELECT iteration, verdict, findings FROM reviews ORDER BY iteration")
    assert [r["verdict"] for r in reviews] == ["REVISE", "SHIP"]
    assert "test_mul" in reviews[0]["findings"]
    execs = rows(
        store, "SELECT iteration, status, backend, cost_usd FROM executions ORDER BY iteration"
    )
    assert [(e["iteration"], e["status"], e["backend"]) for e in execs] == [
        (1, "ok", "scripted"),
        (2, "ok", "scripted"),
    ]
    assert result.cost_usd == pytest.approx(0.02)
    kinds = [p.kind for p in seen]
    assert kinds[0] == "run" and kinds[-1] == "done" and "commit" in kinds and "rollback" in kinds
    assert any(p.kind == "event" and p.message.startswith("edit calc.py") for p in seen)
    no_running_rows(store)
    # the failed attempt's diff was saved beside the database, not lost
    patches = list((store.path.parent / "attempts" / result.run_id).glob("*.patch"))
    assert [p.name for p in patches] == ["iteration-1.patch"]
    assert "BUG" in patches[0].read_text()


def test_never_passing_stops_at_max_iterations_at_base(repo: Path, store: Store) -> None:
    chunk = make_chunk(store, repo)
    attempts = [bad_mul("BUG one"), bad_mul("BUG two")]
    base = gitops.head_commit(repo)
    result = run_chunk(
        store,
        make_config(),
        repo,
        chunk,
        executor=scripted({"attempts": attempts}),
        max_iterations=2,
    )
    assert result.status == "failed" and result.iterations == 2
    assert result.reason.startswith("max_iterations")
    assert git(repo, "rev-parse", "specwright/calc") == base
    assert result.head_commit == base and gitops.head_commit(repo) == base
    assert gitops.dirty_files(repo) == [] and trailer_commits(repo, "HEAD") == []
    [c] = rows(store, "SELECT status, iterations, verdict FROM chunks")
    assert c == {"status": "failed", "iterations": 2, "verdict": "REVISE"}
    # each attempt kept beside the database applies to the base again (it lacked its last
    # newline: "corrupt patch")
    patches = sorted((store.path.parent / "attempts" / result.run_id).glob("*.patch"))
    assert [p.name for p in patches] == ["iteration-1.patch", "iteration-2.patch"]
    for patch in patches:
        git(repo, "apply", "--check", str(patch))
    no_running_rows(store)


def test_a_rejected_attempt_inside_a_submodule_is_rolled_back_too(
    repo: Path, store: Store, tmp_path: Path
) -> None:
    """An agent's edits and new files in a submodule go with its attempt: `reset --hard` and
    `clean` leave them (another repository), so the run ended on a dirty tree the next run
    refused, and every later attempt started from the previous one's leftovers."""
    lib = make_repo(tmp_path / "lib", {"lib.py": "X = 1\n"})
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib")
    git(repo, "commit", "-q", "-m", "add lib")
    git(repo / "lib", "checkout", "-q", "-b", "work")  # the user's branch there stays
    chunk = make_chunk(store, repo)
    attempt = [
        {"write": "lib/lib.py", "content": "X = 2\n"},
        {"write": "lib/new.py", "content": "Y = 1\n"},
    ]
    attempt += bad_mul()
    result = run_chunk(
        store, make_config(), repo, chunk, executor=scripted(attempt), max_iterations=1
    )
    assert result.status == "failed"
    assert gitops.dirty_files(repo) == []
    assert (repo / "lib" / "lib.py").read_text() == "X = 1\n"
    assert not (repo / "lib" / "new.py").exists()
    assert git(repo / "lib", "symbolic-ref", "--short", "HEAD") == "work"
    # the user's own edit there is refused, even where .gitmodules has git status ignore it
    git(repo, "config", "-f", ".gitmodules", "submodule.lib.ignore", "all")
    git(repo, "commit", "-q", "-am", "ignore lib's changes")
    (repo / "lib" / "lib.py").write_text("X = 3  # mine\n")
    with pytest.raises(gitops.DirtyTreeError, match="lib"):
        run_chunk(store, make_config(), repo, chunk, executor=scripted(attempt))
    assert (repo / "lib" / "lib.py").read_text() == "X = 3  # mine\n"


def test_a_repository_an_agent_cloned_into_the_tree_goes_with_its_attempt(
    repo: Path, store: Store, tmp_path: Path
) -> None:
    """`git clean -d` skips nested repositories: a rejected attempt's `git clone` stayed, and
    the next chunk of the run-all was refused for uncommitted changes the user never made."""
    lib = make_repo(tmp_path / "lib", {"lib.py": "X = 1\n"})
    chunk = make_chunk(store, repo)
    attempt = [{"run": f"git clone -q {lib} vendor/lib"}, *bad_mul()]
    result = run_chunk(
        store, make_config(), repo, chunk, executor=scripted(attempt), max_iterations=1
    )
    assert result.status == "failed"
    assert gitops.dirty_files(repo) == []
    assert not (repo / "vendor").exists()


def test_the_users_empty_folders_survive_the_rollbacks(repo: Path, store: Store) -> None:
    """git status does not show an empty folder, so the clean-tree check passed, and the
    rollback's `git clean -d` deleted the user's (an agent's new one still goes)."""
    for folder in ("emptydir", "cache/a/b"):
        (repo / folder).mkdir(parents=True)
    chunk = make_chunk(store, repo)
    attempt = [{"run": "mkdir -p emptydir/new agent-made"}, *bad_mul()]
    result = run_chunk(
        store, make_config(), repo, chunk, executor=scripted(attempt), max_iterations=1
    )
    assert result.status == "failed" and result.iterations == 1
    assert (repo / "emptydir").is_dir() and (repo / "cache" / "a" / "b").is_dir()
    assert not (repo / "emptydir" / "new").exists() and not (repo / "agent-made").exists()
    assert gitops.dirty_files(repo) == []


def test_a_rejected_attempts_patch_is_whole_and_binary_and_says_what_it_left_out(
    repo: Path, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The patch kept under attempts/ was the review's diff: cut at 200k characters, binary
    files as "Binary files differ", so git apply could not give the attempt back."""
    from specwright.loop import records

    logo = bytes(range(256)) * 4
    source = tmp_path / "logo.bin"
    source.write_bytes(logo)
    big = "".join(f"line {i}\n" for i in range(40_000))  # 400k characters
    attempt = [
        {"run": f"cp {source} logo.bin"},
        {"write": "big.txt", "content": big},
        *bad_mul(),
    ]
    chunk = make_chunk(store, repo)
    config = make_config()
    result = run_chunk(store, config, repo, chunk, executor=scripted(attempt), max_iterations=1)
    assert result.status == "failed"
    [patch] = (store.path.parent / "attempts" / result.run_id).glob("*.patch")
    git(repo, "apply", str(patch))
    assert (repo / "logo.bin").read_bytes() == logo and (repo / "big.txt").read_text() == big
    assert "BUG" in (repo / "calc.py").read_text()
    git(repo, "checkout", "-q", "--", ".")
    git(repo, "clean", "-q", "-f")
    monkeypatch.setattr(records, "MAX_PATCH_BYTES", 100_000)  # big.txt does not fit
    result = run_chunk(store, config, repo, chunk, executor=scripted(attempt), max_iterations=1)
    [patch] = (store.path.parent / "attempts" / result.run_id).glob("*.patch")
    assert patch.read_text().splitlines()[0] == (
        "specwright: left out, over the 0.0953674 MiB kept: a/big.txt b/big.txt"
    )
    git(repo, "apply", str(patch))
    assert (repo / "logo.bin").read_bytes() == logo and not (repo / "big.txt").exists()


def test_a_huge_file_an_attempt_wrote_is_named_in_its_patch_never_hashed_into_git(
    repo: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent that wrote 80 MB of text: the attempt's diff and patch staged it in a scratch
    index (60 MB of loose objects left in .git) and read it whole into memory (324 MB) before
    cutting the patch down to its bound."""
    from specwright import gitdiff

    monkeypatch.setattr(gitdiff, "MAX_FILE_BYTES", 2**20)  # stands for 16 MiB: a faster test
    make = "import base64, os; open('big.txt', 'w').write(base64.b64encode(os.urandom(3 << 20)).decode())"
    attempt = [{"run": f'python3 -c "{make}"', "check": True}, *bad_mul()]
    chunk = make_chunk(store, repo)
    result = run_chunk(
        store, make_config(), repo, chunk, executor=scripted(attempt), max_iterations=1
    )
    assert result.status == "failed"
    [patch] = (store.path.parent / "attempts" / result.run_id).glob("*.patch")
    said = patch.read_text()
    assert said.startswith("specwright: left out, over 1 MiB each: big.txt (4.0 MiB)\n")
    assert len(said) < 2000 and "diff --git a/calc.py b/calc.py" in said
    git(repo, "apply", str(patch))  # the rest of the attempt comes back
    assert "BUG" in (repo / "calc.py").read_text() and not (repo / "big.txt").exists()
    # nothing of 1 MiB or more went into .git/objects
    sizes = git(repo, "cat-file", "--batch-all-objects", "--batch-check=%(objectsize)").split()
    assert max(int(n) for n in sizes) < 2**20


def test_a_rejected_attempt_leaves_no_objects_in_git(repo: Path, store: Store) -> None:
    """An agent that left a node_modules of its own (not ignored): staging it for the attempt's
    diff and patch wrote a loose object per file into .git/objects, all left there after the
    rollback (20,000 files: 20,000 objects, 80 MB, until a `git gc` two weeks on)."""
    make = (
        "import os\n"
        "for i in range(300):\n"
        "    os.makedirs(f'node_modules/p{i % 10}', exist_ok=True)\n"
        "    open(f'node_modules/p{i % 10}/m{i}.js', 'w').write(f'module.exports = {i};')\n"
    )
    attempt = [{"write": "make.py", "content": make}, {"run": "python3 make.py", "check": True}]
    chunk = make_chunk(store, repo)

    def objects() -> list[str]:
        return sorted(p.name for p in (repo / ".git" / "objects").rglob("*") if p.is_file())

    before = objects()
    agent = scripted([*attempt, *bad_mul()])
    result = run_chunk(store, make_config(), repo, chunk, executor=agent, max_iterations=1)
    assert result.status == "failed"
    assert objects() == before and gitops.dirty_files(repo) == []
    [patch] = (store.path.parent / "attempts" / result.run_id).glob("*.patch")
    git(repo, "apply", str(patch))  # the attempt, whole, comes back from its patch
    assert (repo / "node_modules" / "p9" / "m299.js").read_text() == "module.exports = 299;"


def test_an_attempt_with_a_latin_1_file_is_reviewed_and_its_patch_kept_byte_for_byte(
    repo: Path, store: Store
) -> None:
    """An agent that wrote a file in Latin-1 (not UTF-8): saving the rejected attempt's patch
    crashed the run with a traceback (UnicodeEncodeError: surrogates not allowed)."""
    latin = "caf\u00e9 cr\u00e8me\n".encode("latin-1")
    write = {"run": "printf 'caf\\351 cr\\350me\\n' > notes.txt", "check": True}
    chunk = make_chunk(store, repo)
    agent = scripted({"attempts": [[write, *bad_mul()], [write, *good_mul()]]})
    result = run_chunk(store, make_config(), repo, chunk, executor=agent, max_iterations=2)
    assert result.status == "shipped" and result.iterations == 2, result.reason
    assert (repo / "notes.txt").read_bytes() == latin
    [patch] = (store.path.parent / "attempts" / result.run_id).glob("*.patch")
    git(repo, "rm", "-q", "notes.txt")
    git(repo, "apply", "--include=notes.txt", str(patch))  # the rejected attempt's bytes
    assert (repo / "notes.txt").read_bytes() == latin


def test_an_approved_attempt_git_refuses_to_commit_is_kept_as_a_patch(
    repo: Path, store: Store, tmp_path: Path
) -> None:
    """A key that fails once the run is under way (a gpg-agent gone; a full disk): the
    verified, approved change was rolled back with nothing kept, and the crash stopped a
    run-all's later chunks too. (A key that fails at the start is refused then.)"""
    signing = "git config commit.gpgsign true && git config gpg.program false"
    step = {**NO_BUG, "command": f"{signing} && {NO_BUG['command']}"}
    chunk = make_chunk(store, repo)
    base = gitops.head_commit(repo)
    result = run_chunk(store, make_config([step]), repo, chunk, executor=scripted(good_mul()))
    assert result.status == "failed", result.reason
    assert result.reason.startswith("commit_failed: the approved change is saved to ")
    assert gitops.head_commit(repo) == base and gitops.dirty_files(repo) == []
    [patch] = (store.path.parent / "attempts" / result.run_id).glob("*.patch")
    assert str(patch) in result.reason
    git(repo, "apply", str(patch))
    assert "def mul(a, b)" in (repo / "calc.py").read_text()
    no_running_rows(store)


def test_what_the_checks_leave_in_the_tree_is_not_committed_as_the_agents_work(
    repo: Path, store: Store
) -> None:
    """A verification step's files (`__pycache__/*.pyc`, a coverage or JUnit report, where the
    project does not ignore them) went into the chunk's commit, from the baseline run on."""
    step = {"name": "nobug", "command": "! grep -n BUG calc.py && date > report.txt"}
    chunk = make_chunk(store, repo)
    result = run_chunk(store, make_config([step]), repo, chunk, executor=scripted(good_mul()))
    assert result.status == "shipped", result.reason
    assert git(repo, "show", "--name-only", "--format=", "HEAD").split() == ["calc.py"]
    assert gitops.dirty_files(repo) == []


def test_an_agent_that_switches_branches_still_ships_on_the_spec_branch(
    repo: Path, store: Store
) -> None:
    """An agent that made a branch of its own and committed there: the chunk's commit went to
    that branch, and run-all said every chunk shipped on a spec branch without it."""
    chunk = make_chunk(store, repo)
    base = gitops.head_commit(repo)
    script = [
        {"run": "git checkout -q -b agent-feature"},
        *good_mul(),
        {"run": "git -c user.name=a -c user.email=a@b commit -q -am wip"},
    ]
    result = run_chunk(store, make_config(), repo, chunk, executor=scripted(script))
    assert result.status == "shipped", result.reason
    assert gitops.current_branch(repo) == "specwright/calc"
    assert git(repo, "rev-parse", "specwright/calc") == result.commit
    assert git(repo, "rev-parse", "specwright/calc^") == base
    assert "def mul" in git(repo, "show", "specwright/calc:calc.py")
    assert gitops.dirty_files(repo) == []


def test_an_agent_that_moves_the_branch_back_does_not_drop_the_commits_before(
    repo: Path, store: Store
) -> None:
    """An agent ran `git reset --hard HEAD~1` and its attempt passed: the chunk's commit went
    on top of the moved HEAD, and the commits of the chunks before it were off the branch."""
    first = make_chunk(store, repo, title="First", files=("first.txt",))
    write = [{"write": "first.txt", "content": "one\n"}, {"say": "first"}]
    assert run_chunk(store, make_config(), repo, first, executor=scripted(write)).shipped
    shipped = gitops.head_commit(repo)
    second = make_chunk(store, repo, title="Second", spec=catalog.get_spec(store, first.spec_id))
    script = [{"run": "git reset -q --hard HEAD~1"}, *good_mul()]
    result = run_chunk(store, make_config(), repo, second, executor=scripted(script))
    assert result.status == "failed", result.reason
    assert "the agent moved the branch off the run's base" in result.reason
    assert git(repo, "rev-parse", "specwright/calc") == shipped  # the first chunk's commit
    assert (repo / "first.txt").read_text() == "one\n" and gitops.dirty_files(repo) == []
    [patch] = (store.path.parent / "attempts" / result.run_id).glob("*.patch")
    assert str(patch) in result.reason
    no_running_rows(store)


def test_an_agent_that_fails_on_another_branch_leaves_that_branch_alone(
    repo: Path, store: Store
) -> None:
    """An agent switched to `main` and failed: the rollback reset `main` (the user's branch) to
    the spec branch's commit, and left the repository on it."""
    first = make_chunk(store, repo, title="First", files=("first.txt",))
    write = [{"write": "first.txt", "content": "one\n"}, {"say": "first"}]
    assert run_chunk(store, make_config(), repo, first, executor=scripted(write)).shipped
    main, shipped = git(repo, "rev-parse", "main"), gitops.head_commit(repo)
    second = make_chunk(store, repo, title="Second", spec=catalog.get_spec(store, first.spec_id))
    script = [{"run": "git switch -q main"}, {"write": "calc.py", "content": "x\n"}, {"fail": "x"}]
    result = run_chunk(store, make_config(), repo, second, executor=scripted(script))
    assert result.status == "failed" and result.reason.startswith("agent_error"), result.reason
    assert git(repo, "rev-parse", "main") == main
    assert gitops.current_branch(repo) == "specwright/calc" and gitops.head_commit(repo) == shipped
    assert gitops.dirty_files(repo) == [] and (repo / "first.txt").exists()


def test_no_progress_stops_early(repo: Path, store: Store) -> None:
    chunk = make_chunk(store, repo)
    result = run_chunk(
        store, make_config(), repo, chunk, executor=scripted(bad_mul()), max_iterations=5
    )
    assert result.status == "failed" and result.iterations == 2
    assert result.reason.startswith("no_progress")


def test_keep_policy_builds_on_the_previous_attempt(repo: Path, store: Store) -> None:
    chunk = make_chunk(store, repo)
    fix = [{"patch": "calc.py", "search": "  # BUG", "replace": ""}, {"say": "fixed the bug"}]
    result = run_chunk(
        store,
        make_config(),
        repo,
        chunk,
        executor=scripted({"attempts": [bad_mul(), fix]}),
        rollback_policy="keep",
    )
    assert result.status == "shipped" and result.iterations == 2  # patch 2 needs attempt 1's code
    assert (
        "def mul" in (repo / "calc.py").read_text() and "BUG" not in (repo / "calc.py").read_text()
    )


def test_completion_check_refuses_no_change_and_unnamed_files(repo: Path, store: Store) -> None:
    chunk = make_chunk(store, repo)
    attempts = [[{"say": "nothing to do"}], [{"write": "README.md", "content": "hi\n"}]]
    result = run_chunk(
        store,
        make_config(verify=[]),
        repo,
        chunk,
        executor=scripted({"attempts": attempts}),
        max_iterations=2,
    )
    assert result.status == "failed"
    reviews = rows(store, "SELECT verdict, summary, findings FROM reviews ORDER BY iteration")
    assert [r["verdict"] for r in reviews] == ["REVISE", "REVISE"]
    assert "changed no files" in reviews[0]["findings"]
    assert "none of the files the chunk names" in reviews[1]["findings"]


def test_budget_stop_leaves_store_consistent(repo: Path, store: Store) -> None:
    chunk = make_chunk(store, repo, chunk_budget=0.015)
    base = gitops.head_commit(repo)
    result = run_chunk(
        store, make_config(), repo, chunk, executor=scripted({"attempts": [bad_mul(), good_mul()]})
    )
    assert result.status == "failed" and result.iterations == 1
    assert result.reason.startswith("budget") and "chunk budget $0.01" in result.reason
    assert gitops.head_commit(repo) == base and gitops.dirty_files(repo) == []
    no_running_rows(store)
    # the spec budget counts every execution of the spec, also earlier runs
    chunk2 = make_chunk(store, repo, spec_title="Other", spec_budget=0.005)
    other = run_chunk(store, make_config(), repo, chunk2, executor=scripted(good_mul()))
    assert other.status == "shipped"  # the first attempt is allowed: nothing spent yet
    chunk3 = make_chunk(store, repo, title="Again", spec=None, spec_title="Third", spec_budget=0.0)
    third = run_chunk(store, make_config(), repo, chunk3, executor=scripted(good_mul()))
    assert third.status == "failed" and third.reason.startswith("budget") and third.iterations == 0


def _cancel_when_sleeping(cancel: threading.Event) -> Any:
    def on_progress(p: Progress) -> None:
        if p.kind == "event" and getattr(p.data, "tool", None) == "bash":
            cancel.set()

    return on_progress


def test_cancel_mid_execution_kills_the_agent(repo: Path, store: Store, tmp_path: Path) -> None:
    chunk = make_chunk(store, repo)
    pidfile = tmp_path / "agent.pid"
    script = [
        {"write": "calc.py", "content": "half done\n"},
        {"run": f"echo $$ > {pidfile}; exec sleep 60"},
        {"say": "never"},
    ]
    cancel = threading.Event()
    base = gitops.head_commit(repo)
    result = run_chunk(
        store,
        make_config(),
        repo,
        chunk,
        executor=scripted(script),
        cancel=cancel,
        on_progress=_cancel_when_sleeping(cancel),
    )
    assert result.status == "cancelled" and result.reason.startswith("cancelled")
    assert gitops.head_commit(repo) == base and gitops.dirty_files(repo) == []
    [ex] = rows(store, "SELECT status FROM executions")
    assert ex["status"] == "cancelled"
    [c] = rows(store, "SELECT status FROM chunks")
    assert c["status"] == "cancelled"
    no_running_rows(store)
    if pidfile.exists() and pidfile.read_text().strip():
        assert not alive(int(pidfile.read_text()))


def test_ctrl_c_cancels_cleanly(repo: Path, store: Store) -> None:
    chunk = make_chunk(store, repo)
    script = [{"write": "calc.py", "content": "half\n"}, {"run": "sleep 60"}]

    def interrupt(p: Progress) -> None:
        if p.kind == "event" and getattr(p.data, "tool", None) == "bash":
            _thread.interrupt_main()  # a real KeyboardInterrupt in the main thread

    result = run_chunk(
        store, make_config(), repo, chunk, executor=scripted(script), on_progress=interrupt
    )
    assert result.status == "cancelled" and "Ctrl-C" in result.reason
    assert gitops.dirty_files(repo) == []
    no_running_rows(store)


def test_agent_crash_after_retries(repo: Path, store: Store) -> None:
    chunk = make_chunk(store, repo)
    script = [{"write": "calc.py", "content": "partial\n"}, {"fail": "agent exploded"}]
    base = gitops.head_commit(repo)
    result = run_chunk(
        store, make_config(), repo, chunk, executor=scripted(script), agent_retries=1
    )
    assert result.status == "failed" and result.iterations == 1
    assert result.reason.startswith("agent_error") and "agent exploded" in result.reason
    assert "after 2 attempt(s)" in result.reason
    assert [e["status"] for e in rows(store, "SELECT status FROM executions")] == ["error", "error"]
    assert gitops.head_commit(repo) == base and gitops.dirty_files(repo) == []
    no_running_rows(store)


def test_refused_credentials_stop_the_chunk_run_at_once(repo: Path, store: Store) -> None:
    """A refused or missing key (kind ``auth``) cannot be fixed by another try: one execution,
    however many retries are allowed, the run failed as auth naming the executor, the tree back
    at its base."""
    chunk = make_chunk(store, repo)
    script = [
        {"write": "calc.py", "content": "partial\n"},
        {"fail": "401 invalid x-api-key", "kind": "auth"},
    ]
    base = gitops.head_commit(repo)
    lines: list[str] = []
    result = run_chunk(
        store,
        make_config(),
        repo,
        chunk,
        executor=scripted(script),
        agent_retries=3,
        on_progress=lambda p: lines.append(p.message),
    )
    assert result.status == "failed" and result.iterations == 1
    assert result.reason == (
        "auth: executor 'scripted' (scripted) could not authenticate: 401 invalid x-api-key; "
        "not retried: fix its credentials and run the chunk again"
    )
    assert [e["status"] for e in rows(store, "SELECT status FROM executions")] == ["error"]
    assert not [line for line in lines if "retrying" in line]
    assert gitops.head_commit(repo) == base and gitops.dirty_files(repo) == []
    no_running_rows(store)


@pytest.mark.parametrize("program", ["no #! line", "another system's binary"])
def test_an_agent_that_cannot_start_fails_the_chunk_run_at_once(
    repo: Path, store: Store, tmp_path: Path, program: str
) -> None:
    """An executable the system cannot start (exec's ENOEXEC) was retried as an agent error,
    failing the same way each time: now one execution, recorded as an error like a missing
    program, the run failed as cannot_start naming the executor, no retry, nothing paid."""
    from specwright.agents.command import CommandExecutor

    agent = tmp_path / "agent"
    # a script without #! is refused before the start; an ELF header with nothing after it
    # passes that look and is refused by exec itself
    agent.write_bytes(b"echo hi\n" if program == "no #! line" else b"\x7fELF" + bytes(60))
    agent.chmod(0o755)
    executor = CommandExecutor(
        ExecutorConfig(name="wrapped", type="command", argv=(str(agent), "{prompt}"))
    )
    chunk = make_chunk(store, repo)
    base = gitops.head_commit(repo)
    lines: list[str] = []
    result = run_chunk(
        store,
        make_config(),
        repo,
        chunk,
        executor=executor,
        agent_retries=3,
        on_progress=lambda p: lines.append(p.message),
    )
    why = (
        f"executor 'wrapped': {str(agent)!r} is not a program this system can run"
        if program == "no #! line"
        else f"{agent}: cannot start: not a program this system can run"
    )
    assert result.status == "failed" and result.iterations == 1
    assert result.reason.startswith(
        f"cannot_start: executor 'wrapped' (command) could not start: {why}"
    )
    assert result.reason.endswith("; not retried: fix it and run the chunk again")
    [execution] = rows(store, "SELECT status, exit_reason, cost_usd FROM executions")
    assert execution["status"] == "error" and why in execution["exit_reason"]
    assert not execution["cost_usd"]
    assert not [line for line in lines if "retrying" in line]
    assert gitops.head_commit(repo) == base and gitops.dirty_files(repo) == []
    no_running_rows(store)


class AuthEventOnly:
    """A command agent whose parser saw a 401 but whose process just exited 1."""

    name, backend = "codex", "command"

    def __init__(self) -> None:
        self.calls = 0

    def execute(self, task: Task, on_event: Any, cancel: threading.Event) -> Outcome:
        self.calls += 1
        on_event(ErrorEvent("unexpected status 401 Unauthorized: sk-codex-987654321", kind="auth"))
        return Outcome("error", error="codex exited with 1", exit_reason="exit 1")


def test_an_auth_error_event_alone_stops_the_chunk_run(
    repo: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reason quotes the event, redacted like everything recorded (it is the run's row)."""
    monkeypatch.setenv("CODEX_API_KEY", "sk-codex-987654321")
    chunk = make_chunk(store, repo)
    agent = AuthEventOnly()
    result = run_chunk(store, make_config(), repo, chunk, executor=agent, agent_retries=2)  # type: ignore[arg-type]
    assert agent.calls == 1 and result.status == "failed"
    assert result.reason.startswith(
        "auth: executor 'codex' (command) could not authenticate: unexpected status 401"
    )
    assert "sk-codex-987654321" not in result.reason and "REDACTED" in result.reason
    no_running_rows(store)


class Raising:
    """An executor whose adapter raises (a bug or a missing binary)."""

    name, backend = "boom", "command"

    def execute(self, task: Task, on_event: Any, cancel: threading.Event) -> Outcome:
        raise RuntimeError("adapter bug")


def test_executor_exception_is_an_agent_error(repo: Path, store: Store) -> None:
    chunk = make_chunk(store, repo)
    result = run_chunk(store, make_config(), repo, chunk, executor=Raising(), agent_retries=0)  # type: ignore[arg-type]
    assert result.status == "failed" and "RuntimeError: adapter bug" in result.reason
    no_running_rows(store)


class ServerGone:
    """An OpenCode-like adapter whose server went away mid-run, naming its URL (with the
    password the user wrote into it from the environment)."""

    name, backend = "oc", "opencode"

    def execute(self, task: Task, on_event: Any, cancel: threading.Event) -> Outcome:
        from specwright.errors import AgentError

        raise AgentError("OpenCode server at http://u:sk-oc-0123456789abcdef@127.0.0.1:9: gone")


def test_an_agent_error_quoting_a_secret_is_redacted_in_the_run(
    repo: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The execution's row was redacted, but the run's reason and the progress lines quoted
    the adapter's error as it was."""
    monkeypatch.setenv("OC_API_KEY", "sk-oc-0123456789abcdef")
    chunk = make_chunk(store, repo)
    lines: list[str] = []
    result = run_chunk(
        store,
        make_config(),
        repo,
        chunk,
        executor=ServerGone(),  # type: ignore[arg-type]
        agent_retries=1,
        on_progress=lambda p: lines.append(p.message),
    )
    assert result.status == "failed" and "[REDACTED:OC_API_KEY]" in result.reason
    [run] = rows(store, "SELECT reason FROM runs")
    shown = "\n".join([run["reason"], result.reason, *lines])
    assert "sk-oc-0123456789abcdef" not in shown and "retrying" in shown


class BrokenReviewer:
    name, kind = "broken", "checks"

    def review(self, request: Any, cancel: Any = None) -> Any:
        raise ValueError("reviewer bug")


def test_a_crash_in_the_loop_is_recorded_and_raised(repo: Path, store: Store) -> None:
    chunk = make_chunk(store, repo)
    with pytest.raises(ValueError, match="reviewer bug"):
        run_chunk(
            store,
            make_config(),
            repo,
            chunk,
            executor=scripted(good_mul()),
            reviewer=BrokenReviewer(),
        )
    [run] = rows(store, "SELECT status, reason FROM runs")
    assert run["status"] == "failed" and "crash: ValueError: reviewer bug" in run["reason"]
    assert gitops.dirty_files(repo) == []
    no_running_rows(store)


class RateLimitedOnce:
    """Answers the first call with a rate limit, then follows the script."""

    def __init__(self, inner: ScriptedExecutor, retry_after_s: float) -> None:
        self.inner, self.retry_after_s, self.calls = inner, retry_after_s, 0
        self.name, self.backend = inner.name, inner.backend

    def execute(self, task: Task, on_event: Any, cancel: threading.Event) -> Outcome:
        self.calls += 1
        if self.calls == 1:
            return Outcome(
                "error",
                error="429 quota",
                exit_reason="rate_limit",
                retry_after_s=self.retry_after_s,
            )
        return self.inner.execute(task, on_event, cancel)


def test_rate_limit_pauses_then_resumes_within_limits(repo: Path, store: Store) -> None:
    chunk = make_chunk(store, repo)
    agent = RateLimitedOnce(scripted(good_mul()), 0.05)
    seen: list[Progress] = []
    result = run_chunk(store, make_config(), repo, chunk, executor=agent, on_progress=seen.append)  # type: ignore[arg-type]
    assert result.status == "shipped" and result.iterations == 1 and agent.calls == 2
    assert any(p.kind == "pause" for p in seen)

    chunk2 = make_chunk(store, repo, title="Second")
    too_long = RateLimitedOnce(scripted(good_mul()), 3600)
    result = run_chunk(
        store, make_config(), repo, chunk2, executor=too_long, max_rate_limit_wait_s=60
    )  # type: ignore[arg-type]
    assert result.status == "failed" and result.reason.startswith("rate_limited")


class AlwaysRateLimited(RateLimitedOnce):
    """Every call a rate limit whose reset is a moment away (a proxy's ``retry-after-ms: 10``)."""

    def execute(self, task: Task, on_event: Any, cancel: threading.Event) -> Outcome:
        self.calls += 1
        return Outcome("error", error="429 busy", exit_reason="rate_limit", retry_after_s=0.001)


def test_a_rate_limit_that_never_ends_stops_after_a_bounded_number_of_pauses(
    repo: Path, store: Store
) -> None:
    """The allowance counts seconds; resets a moment away never use it up, so the number of
    pauses is bounded too: the chunk fails as rate limited instead of retrying without end."""
    from specwright.loop.run import MAX_RATE_LIMIT_PAUSES

    chunk = make_chunk(store, repo)
    agent = AlwaysRateLimited(scripted(good_mul()), 0.001)
    result = run_chunk(store, make_config(), repo, chunk, executor=agent)  # type: ignore[arg-type]
    assert result.status == "failed" and result.reason.startswith("rate_limited"), result.reason
    assert f"after {MAX_RATE_LIMIT_PAUSES} pauses" in result.reason
    assert agent.calls == MAX_RATE_LIMIT_PAUSES + 1
    no_running_rows(store)


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0.05, "0.05 s"),
        (45, "45 s"),
        (90, "1 min 30 s"),
        (900, "15 min"),
        (3600, "1 h"),
        (7500, "2 h 5 min"),
        (86400 + 30, "1 d"),
        (5 * 86400 + 22 * 3600 + 11 * 60, "5 d 22 h"),
    ],
)
def test_a_rate_limit_wait_is_said_in_days_hours_and_minutes(seconds: float, said: str) -> None:
    """The loop's rate-limit lines said "reset in 511860s exceeds the 900s allowance"."""
    from datetime import datetime

    from specwright.loop.limits import reset_text, span

    assert span(seconds) == said
    now = datetime(2026, 11, 27, 17, 0).timestamp()  # local time
    assert reset_text(7500, now) == "resets in 2 h 5 min, at 2026-11-27 19:05 local"


def test_rate_limit_event_without_reset_time_uses_the_default_wait(
    repo: Path, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODEXBAR_PATH", str(tmp_path / "no-codexbar"))  # a real one is ignored
    chunk = make_chunk(store, repo)
    agent = scripted([{"fail": "usage limit reached", "kind": "rate_limit"}])
    result = run_chunk(store, make_config(), repo, chunk, executor=agent, max_rate_limit_wait_s=1)
    assert result.status == "failed" and result.reason.startswith("rate_limited")
    assert "usage limit reached; resets in 1 min, at " in result.reason
    no_running_rows(store)


def test_codexbar_reset_time_decides_the_pause(
    repo: Path, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    from datetime import UTC, datetime, timedelta

    from specwright.loop.limits import reset_wait_from_payloads

    now = datetime(2025, 11, 2, 13, 0, tzinfo=UTC)
    payloads = [
        {
            "provider": "codex",
            "usage": {"primary": {"usedPercent": 100, "resetsAt": "2025-11-02T13:30:00Z"}},
        },
        {
            "provider": "claude",
            "usage": {"primary": {"usedPercent": 40, "resetsAt": "2025-11-02T14:00:00Z"}},
        },
    ]
    assert reset_wait_from_payloads(payloads, None, now) == 1800
    assert reset_wait_from_payloads(payloads, "claude", now) is None
    # a fake codexbar executable says the quota resets in an hour: beyond a 60 s allowance
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    fake = tmp_path / "codexbar"
    body = [{"provider": "claude", "usage": {"primary": {"usedPercent": 100.0, "resetsAt": soon}}}]
    fake.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(body)}\nEOF\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CODEXBAR_PATH", str(fake))
    chunk = make_chunk(store, repo)

    class ClaudeLike(ScriptedExecutor):
        backend = "claude-code"

    agent = ClaudeLike(
        ExecutorConfig(name="claude", type="scripted"),
        script=[{"fail": "usage limit reached", "kind": "rate_limit"}],
    )
    result = run_chunk(store, make_config(), repo, chunk, executor=agent, max_rate_limit_wait_s=60)
    assert result.status == "failed" and result.reason.startswith("rate_limited")
    assert re.search(
        r"resets in (59 min \d+ s|1 h), at .* local, beyond the 1 min allowance$", result.reason
    )


def test_codexbar_snapshots_around_each_execution_give_the_quota_it_used(
    repo: Path, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With codexbar installed, the plan quota each execution used is known: a reading before
    and one after each agent run (the dashboard's "Plan quota used per execution" was only ever
    filled by tests: the loop never took them)."""
    from specwright import queries as Q
    from tests.support_usage import CODEXBAR_USAGE, write_fake_codexbar

    fake = write_fake_codexbar(tmp_path / "bin", bump_file=tmp_path / "calls")
    monkeypatch.setenv("CODEXBAR_PATH", str(fake))
    chunk = make_chunk(store, repo)
    result = run_chunk(store, make_config(), repo, chunk, executor=scripted(good_mul()))
    assert result.status == "shipped", result.reason
    [execution] = rows(store, "SELECT id::VARCHAR AS id FROM executions")
    used = Q.quota_per_execution(store)
    codex = used[(used["provider"] == "codex") & (used["window"] == "primary")]
    assert list(codex["execution_id"]) == [execution["id"]]
    assert list(codex["chunk_id"]) == [chunk.id]
    before = CODEXBAR_USAGE[0]["usage"]["primary"]["usedPercent"]  # type: ignore[index]
    assert list(codex["before_percent"]) == [before]
    assert list(codex["used_percent"]) == [1.0]  # the fake adds a point a call
    assert (tmp_path / "calls").read_text() == "2"  # one before, one after: no more


def test_wall_time_limit_stops_a_running_agent(repo: Path, store: Store) -> None:
    chunk = make_chunk(store, repo)
    result = run_chunk(
        store, make_config(), repo, chunk, executor=scripted([{"sleep": 60}]), wall_time_s=3
    )  # 3 s, not less: on a loaded machine a shorter limit ran out before the agent started
    assert result.status == "failed" and result.reason.startswith("wall_time")
    [ex] = rows(store, "SELECT status FROM executions")
    assert ex["status"] == "cancelled"
    no_running_rows(store)


def test_dirty_tree_is_refused_before_any_row(repo: Path, store: Store) -> None:
    chunk = make_chunk(store, repo)
    (repo / "calc.py").write_text("my own work\n")
    with pytest.raises(gitops.DirtyTreeError, match=r"calc\.py"):
        run_chunk(store, make_config(), repo, chunk, executor=scripted(good_mul()))
    assert rows(store, "SELECT id FROM runs") == []
    assert (repo / "calc.py").read_text() == "my own work\n"


def test_local_edits_to_a_file_marked_assume_unchanged_are_refused_not_reset(
    repo: Path, store: Store
) -> None:
    """`git update-index --assume-unchanged` hides a local edit from `git status`, not from
    `reset --hard`: the rollback of the first rejected attempt overwrote it."""
    (repo / "settings.py").write_text("DEBUG = False\n")
    git(repo, "add", "settings.py")
    git(repo, "commit", "-q", "-m", "settings")
    git(repo, "update-index", "--assume-unchanged", "settings.py")
    (repo / "settings.py").write_text("DEBUG = True  # my local setting\n")
    chunk = make_chunk(store, repo)
    with pytest.raises(gitops.DirtyTreeError, match=r"settings\.py.*assume-unchanged"):
        run_chunk(store, make_config(), repo, chunk, executor=scripted(bad_mul()))
    assert rows(store, "SELECT id FROM runs") == []
    assert (repo / "settings.py").read_text() == "DEBUG = True  # my local setting\n"
    git(repo, "checkout", "-q", "main")
    git(repo, "update-index", "--no-assume-unchanged", "settings.py")
    git(repo, "checkout", "-q", "--", "settings.py")
    git(repo, "update-index", "--assume-unchanged", "settings.py")  # marked, but not edited
    result = run_chunk(store, make_config(), repo, chunk, executor=scripted(good_mul()))
    assert result.status == "shipped", result.reason


def test_heartbeat_is_updated_while_running(repo: Path, store: Store) -> None:
    chunk = make_chunk(store, repo)
    beats: list[Any] = []

    def wait_for_beat(p: Progress) -> None:
        if p.kind == "event" and getattr(p.data, "type", "") == "text":
            for _ in range(600):  # until the heartbeat thread has written once
                [run] = rows(store, "SELECT started_at, heartbeat_at FROM runs")
                if run["heartbeat_at"] > run["started_at"]:
                    beats.append(run)
                    return
                threading.Event().wait(0.05)

    run_chunk(
        store,
        make_config(),
        repo,
        chunk,
        executor=scripted(good_mul()),
        heartbeat_s=0.05,
        on_progress=wait_for_beat,
    )
    assert beats


def test_prompt_carries_dependencies_rules_and_feedback(repo: Path, store: Store) -> None:
    from specwright import catalog

    first = make_chunk(store, repo, title="Setup")
    catalog.update_chunk(store, first.id, status="shipped", summary="created calc.py with add()")
    second = make_chunk(
        store,
        repo,
        title="Add mul",
        spec=catalog.get_spec(store, first.spec_id),
        depends_on=(first.id,),
    )
    prompts: list[Task] = []

    class Recording(ScriptedExecutor):
        def execute(self, task: Task, on_event: Any, cancel: threading.Event) -> Outcome:
            prompts.append(task)
            return super().execute(task, on_event, cancel)

    agent = Recording(
        ExecutorConfig(name="rec", type="scripted"), script={"attempts": [bad_mul(), good_mul()]}
    )
    config = make_config(rules=["Always add type hints"])
    result = run_chunk(store, config, repo, second, executor=agent)
    assert result.shipped
    one, two = prompts
    assert "created calc.py with add()" in one.prompt and "mul(2, 3) == 6" in one.prompt
    assert "Always add type hints" in one.system_prompt
    assert "not accepted" not in one.prompt
    assert "Attempt 1 was not accepted" in two.prompt
    assert "nobug" in two.prompt and "BUG" in two.prompt  # the failing step and its output
    assert one.metadata["iteration"] == 1 and two.metadata["iteration"] == 2


def test_build_prompt_shows_review_findings() -> None:
    from specwright.loop import Feedback
    from specwright.model import Finding

    chunk = Chunk("c", "s", 3, "Parser", prompt="Write the parser.", files=("p.py",))
    review = Review(
        "REVISE", "handles no errors", (Finding("no error path", "errors", "error", "p.py", 9),)
    )
    text = build_prompt(chunk, None, [], Feedback(review), 2)
    assert "# Chunk 3: Parser" in text and "- p.py" in text
    assert "handles no errors" in text and "[error] errors (p.py:9): no error path" in text


def test_llm_reviewer_blocked_stops_the_loop(
    repo: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_review import llm_config

    monkeypatch.setenv("FAKE_ANTHROPIC_KEY", "sk-test-reviewer")
    chunk = make_chunk(store, repo)
    with FakeModelServer() as srv:
        srv.script(
            anthropic_tool_use(
                "submit_review",
                {
                    "verdict": "BLOCKED",
                    "summary": "mul needs a spec decision on floats",
                    "findings": [],
                },
            )
        )
        config = llm_config(srv)
        from specwright.review import make_reviewer

        result = run_chunk(
            store,
            config,
            repo,
            chunk,
            executor=scripted(good_mul()),
            reviewer=make_reviewer(config, "llm", store),
        )
    assert result.status == "blocked" and "spec decision on floats" in result.reason
    [c] = rows(store, "SELECT status, verdict FROM chunks")
    assert c == {"status": "blocked", "verdict": "BLOCKED"}
    roles = rows(store, "SELECT role FROM executions ORDER BY started_at")
    assert [r["role"] for r in roles] == ["executor", "reviewer"]
    assert gitops.dirty_files(repo) == []


@pytest.mark.parametrize("key", ["sk-refused-reviewer-key", None], ids=["refused", "missing"])
def test_llm_reviewer_credentials_refused_stop_the_loop_after_one_attempt(
    repo: Path, store: Store, monkeypatch: pytest.MonkeyPatch, key: str | None
) -> None:
    """The reviewer's key is refused (401) or unset: no attempt can be reviewed, so the loop
    does not run the agent again (a whole attempt, for a real agent) only to fail the same way.
    The run fails as auth naming the reviewer and the variable; the attempt's patch is kept,
    and no verdict is recorded for a review that was never made."""
    from specwright.review import make_reviewer
    from specwright.testing import anthropic_error
    from tests.test_review import llm_config

    if key:
        monkeypatch.setenv("FAKE_ANTHROPIC_KEY", key)
    chunk = make_chunk(store, repo)
    with FakeModelServer() as srv:
        if key:
            srv.script(anthropic_error(401))  # strict: a second review would be a failure
        config = llm_config(srv)
        result = run_chunk(
            store,
            config,
            repo,
            chunk,
            executor=scripted(good_mul()),
            reviewer=make_reviewer(config, "llm", store),
        )
    assert result.status == "failed" and result.iterations == 1, result.reason
    assert result.reason.startswith("auth: reviewer 'llm' could not authenticate: ")
    assert "FAKE_ANTHROPIC_KEY" in result.reason and "not retried" in result.reason
    roles = rows(store, "SELECT role FROM executions ORDER BY started_at")
    assert [r["role"] for r in roles] == ["executor", "reviewer"]
    # no review was given: the attempt is not counted a REVISE; the reviewer's call says why
    assert rows(store, "SELECT verdict FROM reviews") == []
    assert rows(store, "SELECT verdict FROM chunks") == [{"verdict": None}]
    [call] = rows(store, "SELECT status, exit_reason FROM executions WHERE role = 'reviewer'")
    assert call["status"] == "error" and "FAKE_ANTHROPIC_KEY" in call["exit_reason"]
    assert (store.path.parent / "attempts" / result.run_id / "iteration-1.patch").is_file()
    assert gitops.dirty_files(repo) == []
    no_running_rows(store)


def test_worktree_run_keeps_its_branch(repo: Path, store: Store, tmp_path: Path) -> None:
    base = gitops.head_commit(repo)
    wt = worktrees.add_worktree(repo, tmp_path / "wt", "specwright/calc--1", base)
    chunk = make_chunk(store, repo)
    result = run_chunk(store, make_config(), repo, chunk, workdir=wt, executor=scripted(good_mul()))
    assert result.shipped and result.branch == "specwright/calc--1"
    assert gitops.current_branch(repo) == "main" and gitops.head_commit(repo) == base
    assert trailer_commits(repo, "specwright/calc--1") == [result.commit]


@pytest.mark.parametrize("when", ["rollback", "review"])
def test_a_run_taken_over_while_paused_leaves_the_tree_and_rows_to_the_other(
    repo: Path, store: Store, when: str
) -> None:
    """Another process found the run silent (this one was paused: SIGSTOP, a suspended laptop),
    marked it interrupted and went on with the chunk in the same tree. On resuming, the run must
    neither roll the tree back under the other (after an agent error) nor commit on its branch
    (a passing attempt), nor write its end over the other's rows."""
    chunk = make_chunk(store, repo)
    failing = [{"write": "theirs.txt", "content": "the other process's work\n"}, {"fail": "x"}]
    script = {"attempts": [failing, good_mul()]} if when == "rollback" else good_mul()

    def recovered_meanwhile(p: Progress) -> None:
        if p.kind == when:  # just before the rollback after the agent error / the commit
            store.write(
                [Store.op_sql("UPDATE runs SET status = 'interrupted' WHERE id = ?", [p.run_id])]
            )
            store.write([Store.op_sql("UPDATE chunks SET status = 'shipped'")])

    base = gitops.head_commit(repo)
    result = run_chunk(
        store,
        make_config(),
        repo,
        chunk,
        executor=scripted(script),
        on_progress=recovered_meanwhile,
    )
    assert result.status == "cancelled" and "taken over" in result.reason
    assert rows(store, "SELECT status FROM runs") == [{"status": "interrupted"}]
    assert rows(store, "SELECT status FROM chunks") == [{"status": "shipped"}]
    assert gitops.head_commit(repo) == base
    assert gitops.dirty_files(repo) != []  # what is in the tree is left as it is


def test_a_budget_over_work_of_unknown_cost_says_it_counts_only_what_is_priced(
    repo: Path, store: Store, tmp_path: Path
) -> None:
    """A command agent that tells no usage costs unknown (NULL), which the budget summed as $0:
    a spec with `budget_usd` ran on as if nothing were spent, without a word."""
    from specwright.agents.command import CommandExecutor
    from tests.support_agents import executor_config, fake_cli

    agent = fake_cli(tmp_path / "bin", "agent", "print('nothing to do')\n")
    executor = CommandExecutor(executor_config(type="command", argv=(str(agent), "{prompt}")))
    chunk = make_chunk(store, repo, spec_budget=5.0)
    seen: list[Progress] = []
    result = run_chunk(
        store, make_config(), repo, chunk, executor=executor, max_iterations=2,
        on_progress=seen.append,
    )  # fmt: skip
    assert result.iterations == 2  # the budget did not stop it: nothing is known to be spent
    [said] = [p.message for p in seen if p.kind == "budget"]  # once, not at every attempt
    assert said.startswith("spec budget $5.00 counts only what is priced: 1 execution(s)")
    assert said.endswith("$0.0000 is known to be spent")


def test_an_agents_tokens_are_priced_from_the_configs_prices(
    repo: Path, store: Store, tmp_path: Path
) -> None:
    """A command agent telling tokens but no cost, its model priced only under `prices:`: the
    execution's cost is computed from there. It stayed NULL, with a warning to add the price
    under `prices:` where it already was."""
    import json

    from specwright.agents.command import CommandExecutor
    from tests.support_agents import executor_config, fake_cli

    usage = {"input_tokens": 1000, "cached_input_tokens": 200, "output_tokens": 50}
    lines = [{"type": "thread.started", "thread_id": "th_1"}]
    lines.append({"type": "turn.completed", "usage": usage})
    body = "".join(f"print({json.dumps(json.dumps(line))})\n" for line in lines)
    agent = fake_cli(tmp_path / "bin", "codex", body)
    executor = CommandExecutor(
        executor_config(
            type="command", parser="codex", model="acme-coder-1", argv=(str(agent), "{prompt}")
        )
    )
    prices = {"acme-coder-1": {"input": 1.0, "output": 10.0, "cache_read": 0.1}}
    run_chunk(
        store, make_config(prices=prices), repo, make_chunk(store, repo), executor=executor,
        max_iterations=1,
    )  # fmt: skip
    [execution] = rows(store, "SELECT cost_usd, cost_source FROM executions")
    # 800 input (codex counts the 200 cached in its 1000), 50 output, 200 cache reads
    assert execution["cost_usd"] == pytest.approx((800 * 1 + 50 * 10 + 200 * 0.1) / 1e6)
    assert execution["cost_source"] == "computed"


def test_a_cancel_while_codexbar_is_asked_for_a_rate_limit_reset_stops_at_once(
    repo: Path, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rate-limited agent that told no reset time: the loop asks codexbar when the quota
    resets. A stop meanwhile (Ctrl-C in a parallel run-all, `queue cancel`) waited for codexbar
    (up to 20 s) and then ended the run as failed (rate_limited), not cancelled."""
    import time

    from tests.support_usage import write_fake_codexbar

    real = write_fake_codexbar(tmp_path / "cb")
    calls, go, answered = tmp_path / "calls", tmp_path / "go", tmp_path / "answered"
    # the third call (after the before and after snapshots) answers once the test says so, or
    # after 15 s (within the 20 s the loop gives codexbar)
    wrapper = tmp_path / "codexbar"
    wrapper.write_text(
        f'#!/bin/sh\necho x >> {calls}\nif [ "$(wc -l < {calls})" -ge 3 ]; then\n'
        f"  i=0; while [ ! -e {go} ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done\n"
        f"  touch {answered}\nfi\n"
        f'exec {real} "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("CODEXBAR_PATH", str(wrapper))
    chunk = make_chunk(store, repo)

    class ClaudeLike(ScriptedExecutor):  # codexbar is asked for the agent's own provider
        backend = "claude-code"

    agent = ClaudeLike(
        ExecutorConfig(name="claude", type="scripted"),
        script=[{"fail": "usage limit reached", "kind": "rate_limit"}],
    )
    cancel = threading.Event()

    def cancel_once_asked() -> None:
        while not (calls.exists() and len(calls.read_text().split()) >= 3):
            time.sleep(0.05)
        cancel.set()

    threading.Thread(target=cancel_once_asked, daemon=True).start()
    try:
        result = run_chunk(
            store, make_config(), repo, chunk, executor=agent, cancel=cancel,
            max_rate_limit_wait_s=1,
        )  # fmt: skip
        assert not answered.exists()  # the run ended before codexbar answered
    finally:
        go.touch()
    assert result.status == "cancelled", result.reason
    no_running_rows(store)


def test_progress_says_which_checks_run_before_they_run(repo: Path, store: Store) -> None:
    """A ten-minute test suite after the agent's last edit showed nothing until it ended: the
    steps about to run are said first (not for an attempt that changed nothing: none run)."""
    config = make_config(
        verify=[
            {"name": "nobug", "command": "! grep -n BUG calc.py"},
            {"name": "slow", "command": "true", "timeout_s": 30},
        ]
    )
    seen: list[Progress] = []
    nothing = [{"say": "nothing to do"}]
    run_chunk(
        store,
        config,
        repo,
        make_chunk(store, repo),
        executor=scripted({"attempts": [nothing, good_mul()]}),
        on_progress=seen.append,
    )
    said = [(p.iteration, p.kind) for p in seen if p.kind in ("verifying", "verify")]
    assert said == [(0, "verify"), (0, "verify"), (2, "verifying"), (2, "verify"), (2, "verify")]
    assert [p.message for p in seen if p.kind == "verifying"] == ["verifying: nobug, slow"]


def test_an_attempt_the_reviewer_failed_on_is_not_blamed_on_the_agent(
    repo: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reviewer that failed (a malformed verdict, twice) gave no findings; the next prompt
    said "Attempt 1 was not accepted; fix these problems" over an empty list. It says the
    review failed instead."""
    from specwright.review import make_reviewer
    from specwright.testing import anthropic_text
    from tests.test_review import llm_config

    monkeypatch.setenv("FAKE_ANTHROPIC_KEY", "sk-test-reviewer")
    prompts: list[str] = []

    class Recording(ScriptedExecutor):
        def execute(self, task: Task, on_event: Any, cancel: threading.Event) -> Outcome:
            prompts.append(task.prompt)
            return super().execute(task, on_event, cancel)

    agent = Recording(ExecutorConfig(name="rec", type="scripted"), script=good_mul())
    ship = {"verdict": "SHIP", "summary": "fine", "findings": []}
    with FakeModelServer() as srv:
        srv.script(
            anthropic_tool_use("submit_review", {"verdict": "SHIP"}),  # summary, findings?
            anthropic_text("SHIP it!", expect_tool_result=True),  # no verdict at all
            anthropic_tool_use("submit_review", ship),
        )
        config = llm_config(srv)
        reviewer = make_reviewer(config, "llm", store)
        result = run_chunk(
            store, config, repo, make_chunk(store, repo), executor=agent, reviewer=reviewer
        )
    assert result.shipped and result.iterations == 2
    assert "Attempt 1 could not be reviewed (the reviewer failed, not your change)" in prompts[1]
    assert "fix these problems" not in prompts[1]


def test_a_review_that_got_no_answer_is_asked_again_rather_than_the_agent(
    repo: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reviewer's service failed (HTTP 500) through the client's retries: the attempt was
    taken for a REVISE, rolled back and the agent run (and paid) again. The same attempt is
    now reviewed once more, and ships; no REVISE is recorded for a review that never was."""
    from specwright.review import make_reviewer
    from specwright.testing import anthropic_error
    from tests.test_review import llm_config

    monkeypatch.setenv("FAKE_ANTHROPIC_KEY", "sk-test-reviewer")
    ship = {"verdict": "SHIP", "summary": "fine", "findings": []}
    seen: list[str] = []
    with FakeModelServer() as srv:
        srv.script(anthropic_error(500, "boom"), anthropic_tool_use("submit_review", ship))
        config = llm_config(srv)
        result = run_chunk(
            store,
            config,
            repo,
            make_chunk(store, repo),
            executor=scripted(good_mul()),
            reviewer=make_reviewer(config, "llm", store),
            on_progress=lambda p: seen.append(p.message),
        )
    assert result.shipped and result.iterations == 1, result.reason
    assert "review llm: no answer; asking again" in seen
    calls = rows(store, "SELECT role, status FROM executions ORDER BY started_at")
    assert calls == [
        {"role": "executor", "status": "ok"},
        {"role": "reviewer", "status": "error"},
        {"role": "reviewer", "status": "ok"},
    ]
    assert rows(store, "SELECT verdict FROM reviews") == [{"verdict": "SHIP"}]
