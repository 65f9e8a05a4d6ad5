"""An agent's work inside a git submodule (another repository's files), on real repositories
with the scripted executor: never shipped as if committed, kept in the attempt's patch, and
the submodule put back as it was (its HEAD and the user's branch there) by a rollback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from specwright import config as config_mod
from specwright import gitops
from specwright.loop import ChunkResult, run_chunk
from specwright.runner import run_all
from specwright.store import Store, resolve_db_path
from tests.support_loop import (
    NO_BUG,
    TEST_CALC,
    bad_mul,
    git,
    good_mul,
    make_chunk,
    make_config,
    make_repo,
    rows,
    scripted,
)
from tests.test_runner import _project, _spec, run_all_killed_when_thinking

AS_AGENT = "git -c user.name=agent -c user.email=agent@example.com"


def with_submodule(tmp_path: Path) -> Path:
    """The calc project with a submodule `lib`, checked out on the user's branch `work`."""
    repo = make_repo(tmp_path / "repo", {"test_calc.py": TEST_CALC})
    lib = make_repo(tmp_path / "lib", {"lib.py": "X = 1\n"})
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib")
    git(repo, "commit", "-q", "-m", "add lib")
    git(repo / "lib", "checkout", "-q", "-b", "work")
    return repo


def test_edits_in_a_submodule_are_not_shipped_and_the_agent_is_told_why(
    tmp_path: Path, store: Store
) -> None:
    """An attempt that edited lib/lib.py besides its own work shipped without it (no commit of
    the project can hold it), the edit left in the tree, where the next chunk's run was refused
    for "uncommitted changes (lib)" as if the user had made them; so was a file the checks
    left in the submodule. Now that attempt is sent back with a finding saying why, its edit
    kept in its patch, and the next one ships clean."""
    repo = with_submodule(tmp_path)
    lib = repo / "lib"
    chunk = make_chunk(store, repo)
    base = gitops.head_commit(repo)
    first = [{"write": "lib/lib.py", "content": "X = 2\n"}, *good_mul()]
    leftover = {"name": "leftover", "command": "touch lib/leftover.txt", "timeout_s": 30}
    result = run_chunk(
        store,
        make_config([NO_BUG, leftover]),
        repo,
        chunk,
        executor=scripted({"attempts": [first, good_mul()]}),
        max_iterations=2,
    )
    assert result.shipped and result.iterations == 2, result.reason
    assert gitops.dirty_files(repo) == []
    assert (lib / "lib.py").read_text() == "X = 1\n"
    assert git(lib, "symbolic-ref", "--short", "HEAD") == "work"
    [review] = rows(store, "SELECT verdict, summary FROM reviews WHERE iteration = 1")
    assert review["verdict"] == "REVISE"
    assert "lib/ is a git submodule, another repository" in review["summary"]
    assert "(lib.py)" in review["summary"]
    assert git(repo, "show", "--name-only", "--format=", "HEAD").split() == ["calc.py"]
    # the rejected edit is in the attempt's patch, as a path from the top: it applies there
    [patch] = (store.path.parent / "attempts" / result.run_id).glob("iteration-1.patch")
    assert "+++ b/lib/lib.py" in patch.read_text()
    git(repo, "reset", "-q", "--hard", base)
    git(repo, "apply", str(patch))
    assert (lib / "lib.py").read_text() == "X = 2\n"


@pytest.mark.parametrize("detached", [False, True])
def test_a_commit_in_a_submodule_is_rolled_back_with_the_users_branch_there(
    tmp_path: Path, store: Store, detached: bool
) -> None:
    """An agent that committed in the submodule, on the user's branch there (or on its
    detached HEAD, as `git submodule update` leaves it): the rollback reset lib to the agent's
    commit, the user's branch `work` stayed moved, and the project was left with "lib (new
    commits)": the next run refused. The patch held only the submodule's new commit id."""
    repo = with_submodule(tmp_path)
    lib = repo / "lib"
    before = git(lib, "rev-parse", "work")
    if detached:
        git(lib, "checkout", "-q", "--detach")
    chunk = make_chunk(store, repo)
    commit = f"echo 'X = 5' > lib/lib.py && cd lib && {AS_AGENT} commit -q -am agent"
    script = {"attempts": [[{"run": commit, "check": True}, *bad_mul()], bad_mul("BUG2")]}
    said: list[str] = []
    result = run_chunk(
        store,
        make_config(),
        repo,
        chunk,
        executor=scripted(script),
        max_iterations=2,
        on_progress=lambda p: said.append(p.message) if p.kind == "rollback" else None,
    )
    assert result.status == "failed", result.reason
    assert gitops.dirty_files(repo) == []
    assert git(lib, "rev-parse", "--abbrev-ref", "HEAD") == ("HEAD" if detached else "work")
    assert git(lib, "rev-parse", "HEAD", "work").split() == [before, before]
    assert (lib / "lib.py").read_text() == "X = 1\n"
    [review] = rows(store, "SELECT summary FROM reviews WHERE iteration = 1")
    assert "the attempt committed in lib/, a git submodule" in review["summary"]
    [first] = said
    agents = git(lib, "log", "-g", "--format=%H %s", "HEAD").splitlines()
    [made] = {line.split()[0] for line in agents if line.endswith(" agent")}
    on = "" if detached else " on work"
    assert f"submodule lib put back at {before[:10]}{on} (1 commit(s) made there " in first
    assert made[:10] in first and "`git -C lib cherry-pick SHA`" in first
    patch = store.path.parent / "attempts" / result.run_id / "iteration-1.patch"
    assert "+X = 5" in patch.read_text()


def test_an_approved_attempt_that_committed_in_a_submodule_is_not_shipped(
    tmp_path: Path, store: Store
) -> None:
    """The chunk's commit recorded the agent's commit in lib, which only this machine has (a
    clone of the project could not check it out); now the attempt is sent back, and a
    checkout of a commit lib's remote has (a version bump) ships."""
    repo = with_submodule(tmp_path)
    lib = repo / "lib"
    published = git(lib, "rev-parse", "HEAD")
    chunk = make_chunk(store, repo)
    commit = f"echo 'X = 5' > lib/lib.py && cd lib && {AS_AGENT} commit -q -am agent"

    def attempt(command: str) -> ChunkResult:
        script = [{"run": command, "check": True}, *good_mul()]
        return run_chunk(
            store, make_config(), repo, chunk, executor=scripted(script), max_iterations=1
        )

    result = attempt(commit)
    assert result.status == "failed" and result.verdict == "REVISE", result.reason
    assert git(lib, "rev-parse", "HEAD") == published and gitops.dirty_files(repo) == []
    (tmp_path / "lib" / "lib.py").write_text("X = 3\n")  # lib's remote moves on
    git(tmp_path / "lib", "commit", "-q", "-am", "v2")
    bump = "cd lib && git fetch -q origin && git checkout -q origin/main"
    result = attempt(bump)
    assert result.shipped, result.reason
    files = git(repo, "show", "--name-only", "--format=", "HEAD").split()
    assert files == ["calc.py", "lib"] and gitops.dirty_files(repo) == []


def test_a_killed_attempts_edits_in_a_submodule_are_in_its_saved_patch(
    git_repo: Path, tmp_path: Path
) -> None:
    """A run-all killed (kill -9) while its agent had edited lib/lib.py: the next run-all
    rolled the attempt back, the submodule reset too, and saved a patch without that edit."""
    lib = make_repo(tmp_path / "lib", {"lib.py": "X = 1\n"})
    git(git_repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib")
    git(git_repo, "commit", "-q", "-m", "add lib")
    script = [{"write": "lib/lib.py", "content": "X = 2\n"}, {"say": "thinking"}, {"sleep": 120}]
    _project(git_repo, {"chunks": {"Make A": script}})
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": []})
    run_all_killed_when_thinking(git_repo, spec.slug, store)
    assert (git_repo / "lib" / "lib.py").read_text() == "X = 2\n"
    (tmp_path / "script.yaml").write_text(
        yaml.safe_dump({"chunks": {"Make A": [{"write": "a.txt", "content": "A"}]}})
    )
    assert run_all(store, config_mod.load(git_repo), git_repo, spec).status == "shipped"
    assert (git_repo / "lib" / "lib.py").read_text() == "X = 1\n"
    [patch] = (store.path.parent / "patches").glob("*-interrupted.patch")
    git(git_repo, "apply", str(patch))
    assert (git_repo / "lib" / "lib.py").read_text() == "X = 2\n"
