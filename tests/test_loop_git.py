"""What an agent does to the repository outside its work tree (refs, stash, config, hooks),
on real git repositories with the scripted executor: undone once it ends, and said."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from specwright import catalog, gitops
from specwright import config as config_mod
from specwright.loop import run_chunk
from specwright.runner import run_all
from specwright.store import Store, resolve_db_path
from tests.support_loop import (
    CALC,
    MUL_OK,
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
from tests.test_runner import _project, _spec

MUL_REST = MUL_OK.removeprefix("return a + b\n")  # what good_mul adds after add()
AS_AGENT = "git -c user.name=agent -c user.email=agent@example.com"
# every way an agent can change the repository outside its work tree, in one command
MESSING = (
    "git tag -d v1 && git tag agent-tag && git branch agent-branch && git stash drop -q"
    " && git config user.email agent@example.com && git config alias.zz status"
    " && git config --global user.email agent@example.com"
    " && mkdir -p hooks && printf '#!/bin/sh\\ntouch \"$0.ran\"\\n' > hooks/post-commit"
    " && chmod +x hooks/post-commit && git config core.hooksPath hooks"
    ' && cp hooks/post-commit "$(git rev-parse --git-common-dir)/hooks/post-checkout"'
    f" && git switch -q main && {AS_AGENT} commit -q --allow-empty -m on-main && git tag agent-own"
    " && git switch -q - && echo hidden > hidden.txt && git stash -q -u"
)


def repository(repo: Path) -> tuple[str, str, str, list[str]]:
    """Everything outside the work tree a run must leave as it was: refs (the spec branch
    aside), the stash, the config and the hooks."""
    refs = git(repo, "for-each-ref", "--format=%(refname) %(objectname)").splitlines()
    refs = "\n".join(r for r in refs if "/specwright/" not in r)
    hooks = sorted(p.name for p in (repo / ".git" / "hooks").iterdir())
    config = (repo / ".git" / "config").read_text() + Path(
        os.environ["GIT_CONFIG_GLOBAL"]
    ).read_text()
    return refs, git(repo, "stash", "list"), config, hooks


def users_things(repo: Path) -> None:
    """A tag and a stash entry of the user's."""
    git(repo, "tag", "v1")
    (repo / "mine.txt").write_text("mine\n")
    git(repo, "stash", "-q", "-u", "-m", "my work")


@pytest.mark.parametrize("ships", [True, False])
def test_what_an_agent_changes_outside_its_tree_is_undone_and_recorded(
    tmp_path: Path, store: Store, ships: bool
) -> None:
    """An agent that drops the user's stash and tag, commits on `main`, sets `core.hooksPath`
    to a script of its own, `user.email`, an alias, writes a hook into `.git/hooks` and hides
    work in a stash: all of it outlived the attempt, shipped or rolled back (and the agent's
    post-commit hook ran at the chunk's own commit)."""
    repo = make_repo(tmp_path / "repo", {"test_calc.py": TEST_CALC})
    users_things(repo)
    chunk = make_chunk(store, repo)
    before = repository(repo)
    base = git(repo, "rev-parse", "HEAD")
    script = [{"run": MESSING, "check": True}, *(good_mul() if ships else bad_mul())]
    result = run_chunk(
        store, make_config(), repo, chunk, executor=scripted(script), max_iterations=1
    )
    assert result.shipped is ships, result.reason
    # a new tag or branch at a commit the repository had is left (it may be the user's, made
    # meanwhile in another terminal); one at a commit of the agent's goes
    assert git(repo, "rev-parse", "agent-tag", "agent-branch").splitlines() == [base] * 2
    git(repo, "tag", "-d", "agent-tag")
    git(repo, "branch", "-D", "agent-branch")
    assert repository(repo) == before
    assert git(repo, "stash", "list") == "stash@{0}: On main: my work"
    assert gitops.current_branch(repo) == "specwright/calc" and gitops.dirty_files(repo) == []
    assert not list(repo.glob("hooks/*.ran")) and not list(repo.glob(".git/hooks/*.ran"))
    if ships:  # the author is the user's, not the one the agent configured
        assert git(repo, "log", "-1", "--format=%ae", result.commit or "") != "agent@example.com"
    [warning] = rows(store, "SELECT text FROM events WHERE type = 'error'")
    said = warning["text"]
    assert said.startswith("git: changed outside the work tree while the agent ran, undone: ")
    for part in (
        "tag v1 put back at",
        "tag agent-own removed (made at",
        "left tag agent-tag (made at",
        "left branch agent-branch (made at",
        "branch main put back at",
        "1 stash entry put back (dropped)",  # the user's
        "stash entry ",  # the agent's hidden work, with the sha that gives it back
        "`git stash apply SHA`",
        ".git/config put back (changed: alias.zz, core.hookspath, user.email)",
        "hooks/post-checkout removed (written)",
        ".gitconfig put back (changed: user.email)",
    ):
        assert part in said, part


def test_a_parallel_runs_agents_leave_the_repository_as_it_was(git_repo: Path) -> None:
    """The same in the worktrees of `run-all --parallel`: the refs, the stash and the config
    are the whole repository's, shared by every worktree."""
    users_things(git_repo)
    made = [{"run": MESSING, "check": True}, {"write": "a.txt", "content": "A\n"}, {"say": "A"}]
    other = [
        {"write": "b.txt", "content": "B\n"},
        {"run": "git tag agent-b && git checkout -q -b side", "check": True},
        {"say": "B"},
    ]
    _project(git_repo, {"chunks": {"Make A": made, "Make B": other}})
    before = repository(git_repo)
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": [], "B": []})
    run_all(store, config_mod.load(git_repo), git_repo, spec, parallel=2)
    chunks = catalog.list_chunks(store, spec.id)
    assert [c.status for c in chunks] == ["shipped", "shipped"]
    for ref in ("agent-tag", "agent-b"):
        git(git_repo, "tag", "-d", ref)
    git(git_repo, "branch", "-D", "agent-branch", "side")
    assert repository(git_repo) == before
    assert gitops.current_branch(git_repo) == "specwright/diamond"
    assert git(git_repo, "show", "specwright/diamond:a.txt") == "A"
    said = " ".join(r["text"] for r in rows(store, "SELECT text FROM events WHERE type = 'error'"))
    assert "left tag agent-b (made at" in said and ".git/config put back" in said


def test_an_agent_that_starts_after_another_changed_the_repository_does_not_keep_its_change(
    git_repo: Path,
) -> None:
    """Agent A deletes the user's tag; B's second attempt starts while A runs and ends after
    A's tag was put back: B's end took the tag for one B's agent had made, and deleted it."""
    git(git_repo, "tag", "v1")
    a = [{"sleep": 0.5}, {"run": "git tag -d v1", "check": True}, {"sleep": 4}, {"write": "a.txt"}]
    first, second = [{"write": "b.txt", "content": "BAD"}], [{"sleep": 4}, {"write": "b.txt"}]
    script = {"chunks": {"Make A": a, "Make B": {"attempts": [first, second]}}}
    # B's first attempt fails its check 2 s after it ended: its second starts after A's delete
    _project(git_repo, script, verify="if grep -q BAD b.txt 2>/dev/null; then sleep 2; exit 1; fi")
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": [], "B": []})
    run_all(store, config_mod.load(git_repo), git_repo, spec, parallel=2)
    assert [c.status for c in catalog.list_chunks(store, spec.id)] == ["shipped"] * 2
    assert git(git_repo, "tag", "--list") == "v1"
    [said] = rows(store, "SELECT text FROM events WHERE type = 'error'")
    assert "tag v1 put back" in said["text"]


def test_the_agents_own_commits_are_squashed_into_the_chunks_one_commit(
    tmp_path: Path, store: Store
) -> None:
    """An agent that committed its work itself: its commits (their messages unchecked, "Fixes
    #1" closing an issue once merged) stayed on the spec branch under the chunk's commit, when
    its commits on another branch went into the chunk's commit."""
    repo = make_repo(tmp_path / "repo", {"test_calc.py": TEST_CALC})
    chunk = make_chunk(store, repo)
    base = gitops.head_commit(repo)
    commit = f"git add -A && {AS_AGENT} commit -q -m 'Fixes #1'"
    script = [*good_mul(), {"run": commit, "check": True}, {"write": "calc_notes.txt"}]
    script += [{"run": commit.replace("#1", "#2"), "check": True}]
    result = run_chunk(store, make_config(), repo, chunk, executor=scripted(script))
    assert result.shipped, result.reason
    assert gitops.commits_between(repo, base, "specwright/calc") == [result.commit]
    assert git(repo, "log", "-1", "--format=%s", "specwright/calc") == "Add mul"
    files = git(repo, "show", "--name-only", "--format=", "specwright/calc").split()
    assert files == ["calc.py", "calc_notes.txt"]
    assert "Fixes" not in git(repo, "log", "--format=%B", f"{base}..specwright/calc")


def test_a_rebase_left_under_way_and_an_excluded_file_go_with_a_rolled_back_attempt(
    tmp_path: Path, store: Store
) -> None:
    """An agent that stopped a rebase midway and hid a file through `.git/info/exclude`: the
    rebase stayed under way after the rollback (a `git rebase --abort` then moved the spec
    branch to the agent's commits), and the file stayed in the tree, ignored."""
    repo = make_repo(tmp_path / "repo", {"test_calc.py": TEST_CALC})
    chunk = make_chunk(store, repo)
    base, exclude = gitops.head_commit(repo), (repo / ".git" / "info" / "exclude").read_text()
    commits = " && ".join(
        f"echo {n} > {n}.txt && git add {n}.txt && {AS_AGENT} commit -qm {n}" for n in "ab"
    )
    script = [
        {"run": f"{commits} && ! {AS_AGENT} rebase -q -x false HEAD~1", "check": True},
        {"run": "echo junk.txt >> .git/info/exclude && echo junk > junk.txt", "check": True},
        *bad_mul(),
    ]
    result = run_chunk(
        store, make_config(), repo, chunk, executor=scripted(script), max_iterations=1
    )
    assert result.status == "failed", result.reason
    assert not (repo / ".git" / "rebase-merge").exists()
    assert "rebase" not in git(repo, "status")
    assert (repo / ".git" / "info" / "exclude").read_text() == exclude
    assert not (repo / "junk.txt").exists()
    assert gitops.current_branch(repo) == "specwright/calc" and gitops.head_commit(repo) == base
    [said] = rows(store, "SELECT text FROM events WHERE type = 'error'")
    assert (
        "a rebase under way forgotten" in said["text"] and "info/exclude put back" in said["text"]
    )


def test_an_agent_that_deletes_the_spec_branch_still_ships_on_it(
    tmp_path: Path, store: Store
) -> None:
    """The agent deleted the spec branch: HEAD went back to a branch that did not exist, and
    the approved attempt failed as "repository has no commits yet"."""
    repo = make_repo(tmp_path / "repo", {"test_calc.py": TEST_CALC})
    chunk = make_chunk(store, repo)
    base = gitops.head_commit(repo)
    delete = {"run": "git checkout -q main && git branch -q -D specwright/calc", "check": True}
    result = run_chunk(store, make_config(), repo, chunk, executor=scripted([delete, *good_mul()]))
    assert result.shipped, result.reason
    assert gitops.commits_between(repo, base, "specwright/calc") == [result.commit]
    assert gitops.current_branch(repo) == "specwright/calc" and gitops.dirty_files(repo) == []


def test_an_agent_that_amends_the_base_commit_is_told_so_and_its_work_kept(
    tmp_path: Path, store: Store
) -> None:
    """An agent that ran `git commit --amend` on the run's base: the approved work was kept as
    a patch, the reason guessing "a git reset?" only."""
    repo = make_repo(tmp_path / "repo", {"test_calc.py": TEST_CALC})
    chunk = make_chunk(store, repo)
    base = gitops.head_commit(repo)
    amend = {"run": f"git add -A && {AS_AGENT} commit -q --amend --no-edit", "check": True}
    result = run_chunk(store, make_config(), repo, chunk, executor=scripted([*good_mul(), amend]))
    assert result.status == "failed" and "commit --amend" in result.reason, result.reason
    assert git(repo, "rev-parse", "specwright/calc") == base and gitops.dirty_files(repo) == []
    [patch] = (store.path.parent / "attempts" / result.run_id).glob("*.patch")
    assert "def mul" in patch.read_text()


def test_agents_in_two_repositories_at_once_share_the_users_own_git_config(
    tmp_path: Path,
) -> None:
    """A worker running two projects' chunks at once: the second agent started after the first
    set `user.email` in the user's own config, so the second's end put the first agent's email
    back after the first's end had undone it."""
    from specwright.gitstate import Watch

    one, two = make_repo(tmp_path / "one"), make_repo(tmp_path / "two")
    config = Path(os.environ["GIT_CONFIG_GLOBAL"])
    mine = config.read_text()
    first = Watch(one, "main")
    git(one, "config", "--global", "user.email", "agent@example.com")  # the first agent
    second = Watch(two, "main")
    try:
        assert any("user.email" in said for said in first.settle())
        assert config.read_text() == mine
        assert second.settle() == []
        assert config.read_text() == mine
    finally:
        first.release()
        second.release()


@pytest.mark.parametrize("parallel", [1, 2])
def test_a_spec_branch_that_does_not_ignore_the_database_is_refused_not_cleaned_away(
    tmp_path: Path, parallel: int
) -> None:
    """The spec's branch already exists, made before `data/` was ignored: checked out, a
    rollback's `git clean` deleted the database and its journals (every spec, every run)."""
    repo = make_repo(tmp_path / "repo")
    git(repo, "rm", "-q", "--cached", ".gitignore")
    git(repo, "commit", "-q", "-m", "no .gitignore yet")
    git(repo, "checkout", "-q", "-b", "specwright/calc")  # from before data/ was ignored
    git(repo, "commit", "-q", "--allow-empty", "-m", "a chunk shipped then")
    git(repo, "checkout", "-q", "main")
    git(repo, "checkout", "-q", "--", ".")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-q", "-m", "ignore data/")
    store = Store(repo / "data" / "specwright.duckdb")
    chunk = make_chunk(store, repo)
    spec = catalog.get_spec(store, chunk.spec_id)
    with pytest.raises(gitops.GitError, match=r"specwright/calc does not git-ignore .*data"):
        if parallel == 1:
            run_chunk(store, make_config(), repo, chunk, executor=scripted(bad_mul()))
        else:
            run_all(store, make_config(), repo, spec, executor=scripted(bad_mul()), parallel=2)
    assert store.path.exists() and store.journal.root.exists()
    assert rows(store, "SELECT title FROM chunks") == [{"title": "Add mul"}]
    assert gitops.current_branch(repo) == "main" and gitops.dirty_files(repo) == []


@pytest.mark.parametrize("parallel", [1, 2])
def test_an_attempt_that_stops_ignoring_the_database_does_not_commit_it(
    tmp_path: Path, parallel: int
) -> None:
    """An agent that rewrites .gitignore without `data/`: its passing attempt shipped with the
    database, its WAL and the journals in the chunk's commit (and so in the PR)."""
    repo = make_repo(tmp_path / "repo")
    store = Store(repo / "data" / "specwright.duckdb")
    chunk = make_chunk(store, repo)
    spec = catalog.get_spec(store, chunk.spec_id)
    unignore = {"write": ".gitignore", "content": "__pycache__/\n"}
    agent = scripted({"attempts": [[unignore, *good_mul()], good_mul()]})
    run_all(store, make_config(), repo, spec, executor=agent, parallel=parallel)
    [review_1, review_2] = rows(store, "SELECT verdict, findings FROM reviews ORDER BY iteration")
    assert review_1["verdict"] == "REVISE" and "stop ignoring data" in review_1["findings"]
    assert review_2["verdict"] == "SHIP"
    assert gitops.committed_files(repo, "main", "specwright/calc") == ["calc.py"]
    assert "data/" in (repo / ".gitignore").read_text() and gitops.dirty_files(repo) == []
    assert rows(store, "SELECT status FROM chunks") == [{"status": "shipped"}]


def test_an_attempt_that_stops_ignoring_the_database_keeps_it_out_of_git_and_its_patch(
    tmp_path: Path,
) -> None:
    """Refused before any commit, the attempt's diff still staged the database, its WAL and the
    journals in a scratch index: their blobs (usage, an agent's output) went into .git/objects,
    and the attempt's saved patch carried them, binary and whole."""
    repo = make_repo(tmp_path / "repo")
    store = Store(repo / "data" / "specwright.duckdb")
    chunk = make_chunk(store, repo)
    unignore = {"write": ".gitignore", "content": "__pycache__/\n"}
    agent = scripted({"attempts": [[unignore, *good_mul()]]})

    def blobs() -> set[str]:
        out = git(repo, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)")
        return set(out.split())

    before = blobs()
    result = run_chunk(store, make_config(), repo, chunk, executor=agent, max_iterations=1)
    assert result.status == "failed"
    [review] = rows(store, "SELECT verdict, findings FROM reviews")
    assert review["verdict"] == "REVISE" and "stop ignoring data" in review["findings"]
    # the attempt's own files, hashed as it made them, and nothing of Specwright's
    made = {
        subprocess.run(
            ["git", "hash-object", "--stdin", "--path", name],
            cwd=repo,
            input=text,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for name, text in ((".gitignore", "__pycache__/\n"), ("calc.py", CALC + MUL_REST))
    }
    assert blobs() - before <= made
    [patch] = (store.path.parent / "attempts" / result.run_id).glob("*.patch")
    changed = [line for line in patch.read_text().splitlines() if line.startswith("diff --git")]
    assert changed == ["diff --git a/.gitignore b/.gitignore", "diff --git a/calc.py b/calc.py"]
    # and nothing of Specwright's was taken for the checks' leftovers
    assert store.path.is_file() and list(store.journal.root.rglob("*.jsonl"))
    assert rows(store, "SELECT status FROM chunks") == [{"status": "failed"}]
    assert "data/" in (repo / ".gitignore").read_text() and gitops.dirty_files(repo) == []


def test_a_run_is_refused_where_a_rollback_would_delete_the_saved_patches(
    tmp_path: Path,
) -> None:
    """A .gitignore that ignores the database and journals but not the rest of data/: the run
    went ahead, and the rollback after a rejected attempt (git clean) deleted the patch just
    saved for it, which the docs promise is kept."""
    ignore = "data/specwright.duckdb*\ndata/journal/\n__pycache__/\n"
    repo = make_repo(tmp_path / "repo", {".gitignore": ignore})
    store = Store(repo / "data" / "specwright.duckdb")
    chunk = make_chunk(store, repo)
    agent = scripted({"attempts": [bad_mul(), good_mul()]})
    with pytest.raises(gitops.GitError) as refused:
        run_chunk(store, make_config(), repo, chunk, executor=agent)
    said = str(refused.value)
    assert said.startswith(f"{store.path.parent / 'attempts'}: inside the repository ")
    assert "not git-ignored; a rollback would delete it — add `data/` to " in said
    assert rows(store, "SELECT count(*) AS n FROM runs") == [{"n": 0}]
    (repo / ".gitignore").write_text("data/\n__pycache__/\n")
    git(repo, "commit", "-q", "-am", "ignore data/")
    result = run_chunk(store, make_config(), repo, chunk, executor=agent)
    assert result.status == "shipped" and result.iterations == 2
    assert (store.path.parent / "attempts" / result.run_id / "iteration-1.patch").is_file()


def test_an_agent_that_deletes_the_repository_is_said_to_and_nothing_reset(
    tmp_path: Path, store: Store
) -> None:
    """An agent that ran `rm -rf .git && git init`: the run crashed on `git diff ... bad
    object <base>` after a reset that failed, saying nothing of what happened."""
    repo = make_repo(tmp_path / "repo")
    chunk = make_chunk(store, repo)
    agent = scripted([{"run": "rm -rf .git && git init -q"}, *good_mul()])
    result = run_chunk(store, make_config(), repo, chunk, executor=agent)
    assert result.status == "failed" and result.iterations == 1
    assert result.reason == (
        f"repository_lost: the agent deleted or replaced the .git of {repo}: the run's base "
        f"commit {result.base_commit[:10]} is not there, nothing could be rolled back; restore "
        ".git from a clone or a backup"
    )
    assert (repo / "calc.py").read_text().startswith(CALC)  # the work tree as the agent left it


def test_an_agent_that_deletes_its_worktrees_git_leaves_the_project_as_it_was(
    git_repo: Path,
) -> None:
    """`rm -rf .git` in a parallel run's worktree (inside the project, under data/): git then
    found the project's own repository above it, and the rollback switched the project's HEAD
    to the worktree's branch, then crashed the run-all deleting that branch."""
    script = {
        "chunks": {
            "Make A": [{"run": "rm -rf .git"}, {"write": "a.txt", "content": "A\n"}],
            "Make B": [{"write": "b.txt", "content": "B\n"}],
        }
    }
    _project(git_repo, script)
    store = Store(git_repo / "data" / "specwright.duckdb")  # the worktrees under data/ too
    spec = _spec(store, git_repo, {"A": [], "B": []})
    result = run_all(store, config_mod.load(git_repo), git_repo, spec, parallel=2)
    assert [c.status for c in result.chunks] == ["failed", "shipped"]
    assert result.chunks[0].reason.startswith(
        "repository_lost: the agent deleted or replaced the .git of its worktree "
    )
    assert result.chunks[0].reason.endswith("nothing rolled back; the project is untouched")
    assert gitops.current_branch(git_repo) == "specwright/diamond"
    assert gitops.dirty_files(git_repo) == [] and (git_repo / "b.txt").is_file()


def test_a_parallel_agent_that_writes_in_the_project_itself_is_named_as_a_cause(
    git_repo: Path,
) -> None:
    """An agent of `run-all --parallel` that wrote into the project's own work tree (outside its
    worktree): no chunk could merge, each said the tree had uncommitted changes and to commit or
    stash them first, as if they were the user's from before the run (which run-all refuses)."""
    top = '"$(git rev-parse --show-toplevel)"/../../../..'  # the worktree is under data/
    script = {
        "chunks": {
            "Make A": [
                {"run": f"echo stray > {top}/stray.txt"},
                {"write": "a.txt", "content": "A"},
            ],
            "Make B": [{"write": "b.txt", "content": "B\n"}],
        }
    }
    _project(git_repo, script)
    store = Store(git_repo / "data" / "specwright.duckdb")
    spec = _spec(store, git_repo, {"A": [], "B": []})
    result = run_all(store, config_mod.load(git_repo), git_repo, spec, parallel=2)
    assert result.status == "failed" and (git_repo / "stray.txt").is_file()
    said = result.chunks[0].reason
    assert said.startswith(f"could not merge it into specwright/diamond: {git_repo}: the project")
    assert (
        "changed while chunks ran in their worktrees (stray.txt): an agent that wrote outside "
        in said
    )


@pytest.mark.parametrize("commits", [False, True])
def test_a_repository_the_agent_makes_in_the_tree_ships_as_the_projects_files(
    tmp_path: Path, store: Store, commits: bool
) -> None:
    """An agent that ran `git init` in a new folder (a scaffolding tool does) crashed the run
    (`git add` refuses a repository without a commit), its approved work rolled back and not
    saved; with a commit there, the chunk's commit held a bare pointer to it (mode 160000,
    no .gitmodules), its files in no commit of the project's. Now its .git goes, said, and its
    files are committed as the project's."""
    repo = make_repo(tmp_path / "repo", {"test_calc.py": TEST_CALC})
    chunk = make_chunk(store, repo)
    made = "mkdir -p pkg/app && cd pkg/app && git init -q && echo app > app.txt"
    if commits:
        made += f" && git add app.txt && {AS_AGENT} commit -q -m app"
    script = [{"run": made, "check": True}, *good_mul()]
    result = run_chunk(
        store, make_config(), repo, chunk, executor=scripted(script), max_iterations=1
    )
    assert result.shipped, result.reason
    tree = git(repo, "ls-tree", "-r", result.commit or "", "pkg").splitlines()
    assert [line.split()[0] for line in tree] == ["100644"]  # a file, not a pointer
    assert git(repo, "show", f"{result.commit}:pkg/app/app.txt") == "app"
    assert not (repo / "pkg" / "app" / ".git").exists() and gitops.dirty_files(repo) == []
    [warning] = rows(store, "SELECT text FROM events WHERE type = 'error'")
    assert "pkg/app/.git removed (a repository made in the work tree" in warning["text"]


def test_a_commit_made_during_a_failed_attempt_is_named_with_the_way_back(
    tmp_path: Path, store: Store
) -> None:
    """A commit made on the spec branch while an attempt was under way (yours, in this work
    tree while its checks ran; or the agent's) went with the rollback without a word: only
    git's reflog still knew it (at the baseline's rollback too). The run's reason and the
    rollback lines now name it."""
    repo = make_repo(tmp_path / "repo", {"test_calc.py": TEST_CALC})
    chunk = make_chunk(store, repo)
    mine = "echo mine $$ > mine.txt && git add mine.txt && git commit -q -m mine"  # $$: one commit each
    step = {
        "name": "nobug",
        "command": f"{mine}; ! grep BUG calc.py",  # at the baseline too
    }
    said: list[str] = []
    result = run_chunk(
        store,
        make_config([step]),
        repo,
        chunk,
        executor=scripted({"attempts": [bad_mul(), bad_mul("BUG2")]}),
        max_iterations=2,
        on_progress=lambda p: said.append(p.message) if p.kind == "rollback" else None,
    )
    assert result.status == "failed", result.reason
    made = [  # newest first, each once
        *dict.fromkeys(
            line.split()[0]
            for line in git(repo, "log", "-g", "--format=%H %s").splitlines()
            if line.endswith(" mine")
        )
    ]
    assert len(made) == 3  # the baseline's, then one per attempt: all rolled back
    dropped = "1 commit(s) made on specwright/calc during the attempt dropped"
    way_back = "`git cherry-pick SHA` gives one back)"
    assert said == [
        f"rolled back to {result.base_commit[:10]} ({why}); {dropped} ({sha[:10]}; {way_back}"
        for why, sha in (("baseline", made[2]), ("revise", made[1]))
    ]
    assert result.reason.endswith(f"; {dropped} ({made[0][:10]}; {way_back}")
    assert rows(store, "SELECT reason FROM runs") == [{"reason": result.reason}]
    assert gitops.head_commit(repo) == result.base_commit
    git(repo, "cherry-pick", made[0])
    assert (repo / "mine.txt").read_text().startswith("mine ")
