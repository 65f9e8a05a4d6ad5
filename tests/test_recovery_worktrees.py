"""`run-all --parallel` killed (SIGKILL, as kill -9) during its merge-back: the chunk worktrees
and branches it left are settled by the next run-all, whatever its options, and a chunk it had
shipped in its worktree lands instead of running again. A real process, really killed, at a
precise point (the merge of chunk 2), in a real git repo."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from specwright import config as config_mod
from specwright.runner import run_all
from specwright.store import Store
from tests.conftest import git
from tests.test_runner import _files_on_branch, _project, _spec, _write_script

# run-all --parallel 2, killed as it merges chunk 2 back: chunk 1 is merged, chunk 2 shipped in
# its worktree (its run and its chunk recorded shipped), its commit on its own branch only
KILLED_AT_THE_SECOND_MERGE = textwrap.dedent("""
    import os, signal, sys
    from specwright import runner
    real = runner.merge
    def merge(root, branch, *args, **kw):
        if branch.endswith("--2"):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(root, branch, *args, **kw)
    runner.merge = merge
    from specwright.cli import main
    sys.exit(main(sys.argv[1:]))
""")

GRAPH: dict[str, list[str]] = {"A": [], "B": []}


@pytest.mark.parametrize("parallel", [1, 2])
def test_a_chunk_shipped_before_the_kill_lands_and_its_worktree_goes(
    git_repo: Path, parallel: int
) -> None:
    """Resumed serially, the killed run's worktrees and `specwright/<slug>--N` branches stayed
    for good; resumed either way, chunk 2, recorded shipped, ran (and was paid for) again
    because its commit had not been merged back. Now the commit is merged and the trees go."""
    _project(git_repo, _write_script(GRAPH))
    store = Store(os.environ["SPECWRIGHT_DB"])
    spec = _spec(store, git_repo, GRAPH)
    cli = [sys.executable, "-c", KILLED_AT_THE_SECOND_MERGE, "-C", str(git_repo)]
    killed = subprocess.run(
        [*cli, "run-all", spec.slug, "--parallel", "2"],
        env={**os.environ, "SPECWRIGHT_LINGER": "0"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert store.query("SELECT status FROM chunks ORDER BY position") == [
        ("shipped",),
        ("shipped",),
    ]
    assert _files_on_branch(git_repo, "specwright/diamond") == {"a.txt": "A"}
    assert "specwright/diamond--2" in git(git_repo, "branch", "--format=%(refname:short)")

    result = run_all(store, config_mod.load(git_repo), git_repo, spec, parallel=parallel)

    assert result.status == "shipped", result.reason
    assert [c.reason for c in result.chunks] == ["already shipped (skipped)"] * 2
    calls = store.query("SELECT count(*) FROM executions WHERE role = 'executor'")
    assert calls == [(2,)]  # one per chunk: none ran again
    assert _files_on_branch(git_repo, "specwright/diamond") == {"a.txt": "A", "b.txt": "B"}
    log = git(git_repo, "log", "--format=%B", "main..specwright/diamond")
    assert log.count("Specwright-Chunk:") == 2
    branches = git(git_repo, "branch", "--format=%(refname:short)").split()
    assert sorted(branches) == ["main", "specwright/diamond"]
    assert git(git_repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert not list((Path(os.environ["SPECWRIGHT_DB"]).parent / "worktrees").rglob("*.txt"))
    assert git(git_repo, "status", "--porcelain") == ""
