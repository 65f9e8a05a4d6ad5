"""A git lock an agent's git left behind (it ran `git add` and was killed, or crashed): on real
repositories with real agent processes. Once the agent's processes are all gone, a lock that
was not there when it started is its own: removed before the rollback, and said."""

from __future__ import annotations

from pathlib import Path

import pytest

from specwright import gitops, gitstate
from specwright.agents.command import CommandExecutor
from specwright.loop import run_chunk
from specwright.store import Store
from tests.support_agents import executor_config
from tests.support_loop import (
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

# what `git add` does when it is killed before it is done: its lock of the index stays
LEAVE_LOCK = 'echo "# work" >> calc.py && git add calc.py && touch "$(git rev-parse --git-path {})"'


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(gitops, "LOCK_WAIT_S", 0.2)  # a lock no one removes fails fast
    monkeypatch.setattr(gitstate, "LOCK_GRACE_S", 0.1)
    return make_repo(tmp_path / "repo", {"test_calc.py": TEST_CALC})


@pytest.mark.parametrize("lock", ["index.lock", "HEAD.lock", "refs/heads/specwright/calc.lock"])
def test_a_lock_the_agent_left_is_removed_and_the_attempt_rolled_back(
    repo: Path, store: Store, lock: str
) -> None:
    """The rollback of the rejected attempt failed on the agent's lock ("held by another git
    process ... delete it"), and every later run was refused until the user deleted it."""
    chunk = make_chunk(store, repo)
    attempts = [[{"run": LEAVE_LOCK.format(lock), "check": True}, *bad_mul()], good_mul()]
    result = run_chunk(store, make_config(), repo, chunk, executor=scripted({"attempts": attempts}))
    assert result.shipped and result.iterations == 2, result.reason
    assert not (repo / ".git" / lock).exists()
    assert "# work" not in git(repo, "show", "HEAD:calc.py")  # the first attempt's, undone
    assert gitops.dirty_files(repo) == []
    [said] = rows(store, "SELECT text FROM events WHERE type = 'error'")
    assert said["text"] == (
        "git: changed outside the work tree while the agent ran, undone: "
        f".git/{lock} removed (its git left it, killed or crashed mid-command)"
    )
    gitops.ensure_clean(repo)  # the next run is not refused
    no_running_rows(store)


def test_a_command_agent_that_dies_holding_the_index_lock_is_rolled_back(
    repo: Path, store: Store
) -> None:
    """A command agent that exits (1) with the index locked after its `git add`: the retry's
    rollback failed on the lock, and the run ended with the work tree as the agent left it."""
    base = gitops.head_commit(repo)
    agent = CommandExecutor(
        executor_config(
            name="dies",
            type="command",
            argv=("sh", "-c", LEAVE_LOCK.format("index.lock") + " && exit 1", "{prompt}"),
        )
    )
    result = run_chunk(store, make_config(), repo, make_chunk(store, repo), executor=agent)
    assert result.status == "failed" and result.reason.startswith("agent_error: exit 1")
    assert "index.lock" not in result.reason, result.reason
    assert not (repo / ".git" / "index.lock").exists()
    assert gitops.head_commit(repo) == base and gitops.dirty_files(repo) == []
    said = [r["text"] for r in rows(store, "SELECT text FROM events WHERE type = 'error'")]
    assert (
        said.count(
            "git: changed outside the work tree while the agent ran, undone: "
            ".git/index.lock removed (its git left it, killed or crashed mid-command)"
        )
        == 2
    )  # both attempts
    gitops.ensure_clean(repo)


def test_a_lock_there_before_the_agent_or_while_it_may_run_is_left_alone(repo: Path) -> None:
    """A lock there when the agent started is the user's business (a git of theirs may hold
    it); one whose agent may still run (an OpenCode server's tools) may be its live git's."""
    lock = repo / ".git" / "index.lock"
    lock.touch()
    watch = gitstate.Watch(repo, None)
    assert watch.settle(agent_gone=True) == [] and lock.exists()
    lock.unlink()
    watch = gitstate.Watch(repo, None)
    lock.touch()
    assert watch.settle(agent_gone=False) == [] and lock.exists()
