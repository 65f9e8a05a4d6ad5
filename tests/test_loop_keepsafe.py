"""Files git cannot restore (the user's git-ignored files, those marked skip-worktree), on
real repositories with the scripted executor: a rolled-back attempt gives them back."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from specwright import gitops
from specwright.loop import run_chunk
from specwright.store import Store
from tests.support_loop import (
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

MINE = {".env": "SECRET=mine\n", "config/app.local.yaml": "port: 1\n", "conf.txt": "mine\n"}


def test_a_rolled_back_attempt_gives_back_the_users_ignored_and_skip_worktree_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An attempt that deleted .env and overwrote a local config (both git-ignored) and a file
    marked skip-worktree left them so after its rollback: `reset --hard` and `clean` never
    touch them, and the user's own values were gone for good."""
    repo = make_repo(
        tmp_path / "repo",
        {
            "test_calc.py": TEST_CALC,
            ".gitignore": "data/*\n.env\n*.local.yaml\nnode_modules/\nbig.bin\n",
            "config/app.yaml": "port: 0\n",
            "conf.txt": "base\n",
        },
    )
    git(repo, "update-index", "--skip-worktree", "conf.txt")
    for rel, text in MINE.items():
        (repo / rel).write_text(text)
    (repo / "big.bin").write_bytes(b"x" * (2**20 + 1))
    # the database inside the project, its files ignored one by one: never put back
    store = Store(repo / "data" / "specwright.duckdb")
    store.migrate()
    chunk = make_chunk(store, repo)
    messing = "rm .env && echo 'port: 9' > config/app.local.yaml && echo agent > conf.txt"
    said: list[str] = []
    with caplog.at_level(logging.WARNING, logger="specwright.keepsafe"):
        result = run_chunk(
            store,
            make_config(),
            repo,
            chunk,
            executor=scripted(
                {"attempts": [[{"run": messing, "check": True}, *bad_mul()], bad_mul("BUG2")]}
            ),
            max_iterations=2,
            on_progress=lambda p: said.append(p.message) if p.kind == "rollback" else None,
        )
    assert result.status == "failed", result.reason
    for rel, text in MINE.items():
        assert (repo / rel).read_text() == text, rel
    assert gitops.dirty_files(repo) == []
    assert said == [
        f"rolled back to {result.base_commit[:10]} (revise); put back as before the run (git "
        "does not restore them): .env (deleted), conf.txt (changed), config/app.local.yaml "
        "(changed)"
    ]
    assert "put back" not in result.reason  # the second attempt left them alone
    assert rows(store, "SELECT status FROM runs") == [{"status": "failed"}]  # the live database
    [warning] = [r.getMessage() for r in caplog.records]
    assert "not kept safe from the agent" in warning and "big.bin" in warning
    assert "specwright.duckdb" not in warning


def test_an_attempt_that_changes_a_skip_worktree_file_is_not_shipped(
    tmp_path: Path, store: Store
) -> None:
    """A file marked skip-worktree (the user's local settings in a tracked file): git shows no
    change to it and commits none, so an attempt that rewrote it shipped unreviewed without
    that change, which stayed in the tree, the user's content gone. Now the attempt is sent
    back saying why, the file is put back, and the next attempt ships."""
    repo = make_repo(tmp_path / "repo", {"test_calc.py": TEST_CALC, "conf.txt": "base\n"})
    git(repo, "update-index", "--skip-worktree", "conf.txt")
    (repo / "conf.txt").write_text("mine\n")
    chunk = make_chunk(store, repo)
    first = [{"write": "conf.txt", "content": "agent\n"}, *good_mul()]
    result = run_chunk(
        store,
        make_config(),
        repo,
        chunk,
        executor=scripted({"attempts": [first, good_mul()]}),
        max_iterations=2,
    )
    assert result.shipped and result.iterations == 2, result.reason
    assert (repo / "conf.txt").read_text() == "mine\n"
    [review] = rows(store, "SELECT summary FROM reviews WHERE iteration = 1")
    assert "the attempt changed conf.txt, marked skip-worktree" in review["summary"]
    assert git(repo, "show", "--name-only", "--format=", "HEAD").split() == ["calc.py"]
