"""gitops on real temporary repositories."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from specwright import branches, gitdiff, gitops, worktrees
from tests.support_loop import git, make_repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


def test_not_a_repository_and_no_commits(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(gitops.GitError, match="not a git repository"):
        gitops.root_of(plain)
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    with pytest.raises(gitops.GitError, match="no commits yet"):
        gitops.head_commit(empty)


def test_dirty_tree_refusal_lists_every_kind_of_change(repo: Path) -> None:
    gitops.ensure_clean(repo)
    (repo / "calc.py").write_text("changed\n")
    (repo / "new dir").mkdir()
    (repo / "new dir" / "untracked.txt").write_text("x")
    (repo / "staged.txt").write_text("s")
    git(repo, "add", "staged.txt")
    (repo / "data").mkdir()
    (repo / "data" / "ignored.db").write_text("db")  # ignored: not dirty
    with pytest.raises(gitops.DirtyTreeError) as info:
        gitops.ensure_clean(repo)
    assert sorted(info.value.files) == ["calc.py", "new dir/untracked.txt", "staged.txt"]
    message = str(info.value)
    assert "calc.py" in message and "staged.txt" in message and "uncommitted" in message


def test_an_untracked_file_refusal_says_how_to_stash_it(repo: Path) -> None:
    """The README's answers.yaml left in the project: the refusal said "commit or stash them",
    and a plain `git stash` leaves an untracked file where it is, so the run was refused again."""
    (repo / "answers.yaml").write_text("- per IP\n")
    git(repo, "stash", "-q")  # what the message said to do: it does not take the file
    with pytest.raises(gitops.DirtyTreeError) as info:
        gitops.ensure_clean(repo)
    assert "(answers.yaml); commit, stash (`git stash -u`: a plain `git stash`" in str(info.value)
    git(repo, "stash", "-q", "-u")
    gitops.ensure_clean(repo)


def test_branch_create_reuse_and_commit_with_trailer(repo: Path) -> None:
    base = gitops.head_commit(repo)
    branch = gitops.spec_branch("my-spec")
    assert branch == "specwright/my-spec"
    assert branches.ensure_branch(repo, branch) == base
    assert gitops.current_branch(repo) == branch
    (repo / "new.py").write_text("x = 1\n")
    sha = gitops.commit_all(repo, "Add  the\nthing", "chunk-123", "what it did")
    message = git(repo, "log", "-1", "--format=%B")
    assert message.splitlines()[0] == "Add the thing"
    assert "what it did" in message
    assert git(repo, "log", "-1", "--format=%(trailers:key=Specwright-Chunk,valueonly)") == (
        "chunk-123"
    )
    assert gitops.chunk_commits(repo, "chunk-123") == [sha]
    git(repo, "checkout", "-q", "main")
    assert branches.ensure_branch(repo, branch) == sha  # reused, not recreated at main
    assert gitops.current_branch(repo) == branch


def test_a_spec_branch_started_from_another_specs_branch_is_pointed_out(
    repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    branches.ensure_branch(repo, gitops.spec_branch("first"))
    (repo / "first.py").write_text("x = 1\n")
    first = gitops.commit_all(repo, "First", "chunk-1", "")
    with caplog.at_level("WARNING", logger="specwright.branches"):
        # the same spec's branch again, and a compare branch of it: nothing to say
        branches.ensure_branch(repo, gitops.spec_branch("first"))
        branches.ensure_branch(repo, "specwright/first@glm")
        git(repo, "checkout", "-q", "specwright/first")
        assert caplog.messages == []
        assert branches.ensure_branch(repo, gitops.spec_branch("second")) == first
    assert caplog.messages == [
        "specwright/second starts from specwright/first, the branch checked out: it and its "
        "pull request carry that spec's commits too (check out your base branch first for a "
        "branch of its own)"
    ]


def test_a_spec_branch_that_lacks_the_commit_checked_out_is_pointed_out(
    repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A spec branch that exists already is gone on from, not made from HEAD: when it lacks
    HEAD (main moved on after its PR was merged, an old branch of that name) that is said."""
    branch = gitops.spec_branch("calc")
    branches.ensure_branch(repo, branch)
    (repo / "shipped.py").write_text("x = 1\n")
    gitops.commit_all(repo, "A chunk", "chunk-1", "")
    git(repo, "checkout", "-q", "main")
    with caplog.at_level("WARNING", logger="specwright.branches"):
        branches.ensure_branch(repo, branch)  # a resume: it has main's head
        assert caplog.messages == []
        git(repo, "checkout", "-q", "main")
        (repo / "later.py").write_text("x = 1\n")
        git(repo, "add", "later.py")
        git(repo, "commit", "-q", "-m", "later on main")
        later = gitops.head_commit(repo)
        branches.ensure_branch(repo, branch)
    assert gitops.current_branch(repo) == branch
    assert caplog.messages == [
        f"specwright/calc already exists and lacks the commit checked out (main {later[:10]}): "
        "the run goes on from that branch's head, without that commit (rebase the branch onto "
        "it, or delete the branch, for a run on top of it)"
    ]


def test_commit_message_shows_an_agents_control_characters_as_question_marks(
    repo: Path,
) -> None:
    """A chunk title and an agent's summary are untrusted; `git log` prints a message to the
    terminal as it is, so escapes, BEL and C1 controls are shown as '?', and a huge summary is
    cut."""
    (repo / "new.py").write_text("x = 1\n")
    title = "T\x1b[2J<b>tit</b>"
    body = "said \x1b]0;pwned\x07 and \x9b31m\n" + "x" * 20_000
    gitops.commit_all(repo, title, "chunk-1", body)
    message = git(repo, "log", "-1", "--format=%B")
    assert message.splitlines()[0] == "T?[2J<b>tit</b>"
    assert "said ?]0;pwned? and ?31m" in message
    assert not any(ch in message for ch in "\x1b\x07\x9b")
    assert len(message) < gitops.MAX_BODY_CHARS + 200 and "[... cut]" in message
    assert gitops.chunk_commits(repo, "chunk-1")


def test_an_agents_summary_in_a_commit_closes_no_issue_and_mentions_no_one(repo: Path) -> None:
    """The agent's summary is the commit's body: its "Fixes #1" closed issue 1 once the branch
    was merged on GitHub, and its #123 and @names linked and mentioned."""
    (repo / "x.txt").write_text("x")
    gitops.commit_all(repo, "Chunk", "c1", "Fixes #1 and acme/app#2, GH-3; thanks @bob (a@b.org)")
    body = git(repo, "log", "-1", "--format=%b")
    z = "\u200b"
    assert f"Fixes #{z}1 and acme/app#{z}2, GH-{z}3; thanks @{z}bob (a@b.org)" in body
    assert git(repo, "log", "-1", "--format=%(trailers:key=Specwright-Chunk,valueonly)") == "c1"


def test_an_ignored_file_the_agent_staged_itself_is_not_committed(repo: Path) -> None:
    """`git add -f .env` by the agent: the secret file the user keeps ignored went into the
    chunk's commit (and the pull request), and the diff shown to the reviewer; a tracked file in
    an ignored folder still counts."""
    (repo / "data").mkdir()
    (repo / "data" / "kept.txt").write_text("tracked\n")
    git(repo, "add", "-f", "data/kept.txt")
    git(repo, "commit", "-q", "-m", "a tracked file in an ignored folder")
    (repo / "data" / "secrets.env").write_text("API_KEY=sk-live\n")
    (repo / "data" / "kept.txt").write_text("changed\n")
    (repo / "new.py").write_text("x = 1\n")
    git(repo, "add", "-f", "data/secrets.env")
    base = gitops.head_commit(repo)
    seen = gitdiff.diff(repo, base)  # what the checks and the reviewer are shown
    assert sorted(seen.files) == ["data/kept.txt", "new.py"] and "sk-live" not in seen.text
    gitops.commit_all(repo, "Chunk", "c1")
    assert sorted(git(repo, "show", "--name-only", "--format=", "HEAD").split()) == [
        "data/kept.txt",
        "new.py",
    ]
    assert (repo / "data" / "secrets.env").exists() and gitops.dirty_files(repo) == []


def _no_identity_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
    ):
        monkeypatch.delenv(name, raising=False)


def test_commit_without_identity_falls_back(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_identity_in_env(monkeypatch)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    (repo / "x.txt").write_text("x")
    gitops.commit_all(repo, "No identity", "c1")
    assert git(repo, "log", "-1", "--format=%ae") == "specwright@localhost"


def test_commit_fills_in_only_the_part_of_the_identity_the_user_did_not_set(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user.name without a user.email: the commits were made as "Specwright", the user's
    name replaced (and an EMAIL in the environment ignored)."""
    _no_identity_in_env(monkeypatch)
    monkeypatch.delenv("EMAIL", raising=False)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    git(repo, "config", "user.name", "Ada Lovelace")
    (repo / "x.txt").write_text("x")
    gitops.commit_all(repo, "Name only", "c1")
    assert git(repo, "log", "-1", "--format=%an <%ae> / %cn <%ce>") == (
        "Ada Lovelace <specwright@localhost> / Ada Lovelace <specwright@localhost>"
    )
    monkeypatch.setenv("EMAIL", "ada@example.org")
    (repo / "y.txt").write_text("y")
    gitops.commit_all(repo, "Name and EMAIL", "c2")
    assert git(repo, "log", "-1", "--format=%an <%ae>") == "Ada Lovelace <ada@example.org>"


def test_rollback_removes_attempt_but_keeps_ignored_files(repo: Path) -> None:
    base = gitops.head_commit(repo)
    (repo / "data").mkdir()
    (repo / "data" / "specwright.duckdb").write_text("precious")
    (repo / "calc.py").write_text("broken\n")
    (repo / "pkg").mkdir()
    (repo / "pkg" / "new.py").write_text("new\n")
    (repo / "staged.txt").write_text("s")
    git(repo, "add", "staged.txt")
    gitops.rollback(repo, base)
    assert gitops.dirty_files(repo) == []
    assert not (repo / "pkg").exists() and not (repo / "staged.txt").exists()
    assert (repo / "calc.py").read_text().startswith("def add")
    assert (repo / "data" / "specwright.duckdb").read_text() == "precious"


def test_diff_includes_untracked_files_and_leaves_the_index_alone(repo: Path) -> None:
    base = gitops.head_commit(repo)
    assert gitops.tracked_files(repo) == [".gitignore", "calc.py"]
    assert gitdiff.diff(repo, base).empty
    (repo / "calc.py").write_text("def add(a, b):\n    return b + a\n")
    (repo / "new_mod.py").write_text("VALUE = 42\n")
    (repo / "data").mkdir()
    (repo / "data" / "x.db").write_text("ignored")
    before = git(repo, "status", "--porcelain")
    d = gitdiff.diff(repo, base)
    assert set(d.files) == {"calc.py", "new_mod.py"}
    assert "+VALUE = 42" in d.text and "-    return a + b" in d.text
    assert git(repo, "status", "--porcelain") == before  # nothing staged by the diff
    small = gitdiff.diff(repo, base, max_chars=20)
    assert small.truncated and "truncated" in small.text


def test_a_diff_names_a_huge_new_file_without_reading_or_hashing_it(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the checks and the reviewer are shown of an attempt that wrote a huge file and a
    long one: the huge one named at the top (in the files touched, so its checks see it), the
    long one cut at the bound, saying how long the whole was; a line changed in a big file the
    project tracks is shown as any change."""
    monkeypatch.setattr(gitdiff, "MAX_FILE_BYTES", 2**17)
    (repo / "data.csv").write_text("x,1\n" * 50_000)  # 200 kB, the project's own
    git(repo, "add", "data.csv")
    git(repo, "commit", "-q", "-m", "data")
    base = gitops.head_commit(repo)
    listed = ("cat-file", "--batch-all-objects", "--batch-check=%(objectname)")
    before = git(repo, *listed)
    with (repo / "data.csv").open("a") as fh:
        fh.write("y,2\n")
    (repo / "dump.txt").write_text("x = 1\n" * 30_000)  # 180 kB: over the bound
    (repo / "long.txt").write_text("line\n" * 10_000)  # 50 kB
    d = gitdiff.diff(repo, base, max_chars=10_000)
    assert d.files == ("data.csv", "dump.txt", "long.txt") and d.truncated
    assert d.text.startswith("specwright: left out, over 0.125 MiB each: dump.txt (0.2 MiB)\n")
    assert "\n+y,2\n" in d.text and "dump.txt b/dump.txt" not in d.text
    assert "diff --git a/long.txt b/long.txt" in d.text
    assert d.text.endswith("\n…[diff truncated: 60267 bytes]\n") and len(d.text) < 10_200
    assert git(repo, *listed) == before  # nothing of the diff's in .git/objects


def test_database_inside_the_tree_must_be_ignored(repo: Path, tmp_path: Path) -> None:
    gitops.ensure_outside_or_ignored(repo, [tmp_path / "elsewhere.duckdb"])
    (repo / "data").mkdir()
    gitops.ensure_outside_or_ignored(repo, [repo / "data" / "specwright.duckdb"])
    with pytest.raises(gitops.GitError, match=r"not git-ignored.*state/"):
        gitops.ensure_outside_or_ignored(repo, [repo / "state" / "specwright.duckdb"])


def test_worktree_add_remove(repo: Path, tmp_path: Path) -> None:
    base = gitops.head_commit(repo)
    wt = worktrees.add_worktree(repo, tmp_path / "wt" / "c1", "specwright/s--c1", base)
    assert (wt / "calc.py").exists()
    assert gitops.current_branch(wt) == "specwright/s--c1"
    (wt / "feature.py").write_text("f = 1\n")
    sha = gitops.commit_all(wt, "Feature", "c1")
    assert gitops.head_commit(repo) == base  # the main tree did not move
    with pytest.raises(gitops.GitError, match="not empty"):
        worktrees.add_worktree(repo, wt, "other", base)
    worktrees.remove_worktree(repo, wt)
    assert not wt.exists()
    assert gitops.branch_exists(repo, "specwright/s--c1")  # commits are kept on the branch
    again = worktrees.add_worktree(repo, tmp_path / "wt2", "specwright/s--c1")
    assert gitops.head_commit(again) == sha  # an existing branch is checked out as is
    worktrees.remove_worktree(repo, again, delete_branch="specwright/s--c1")
    assert not gitops.branch_exists(repo, "specwright/s--c1")


def test_a_worktree_whose_folder_was_deleted_by_hand_is_added_again(
    repo: Path, tmp_path: Path
) -> None:
    """After a killed parallel run-all, `rm -rf data/worktrees` by the user: the next run-all
    failed with "'specwright/s--1' is already checked out at <the deleted folder>"."""
    import shutil

    base = gitops.head_commit(repo)
    wt = worktrees.add_worktree(repo, tmp_path / "wt" / "1", "specwright/s--1", base)
    shutil.rmtree(wt)
    again = worktrees.add_worktree(repo, wt, "specwright/s--1", base, reset=True)
    assert gitops.current_branch(again) == "specwright/s--1"


def test_merge_fast_forward_merge_commit_and_conflict(repo: Path) -> None:
    branches.ensure_branch(repo, "target")
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "a.txt").write_text("a\n")
    gitops.commit_all(repo, "A", "c1")
    git(repo, "checkout", "-q", "target")
    ff = worktrees.merge(repo, "feature", "target")
    assert ff.ok and ff.fast_forward and ff.commit == gitops.head_commit(repo)
    assert worktrees.merge(repo, "feature").message == "already up to date"

    git(repo, "checkout", "-q", "-b", "side")
    (repo / "b.txt").write_text("b\n")
    gitops.commit_all(repo, "B", "c2")
    git(repo, "checkout", "-q", "target")
    (repo / "c.txt").write_text("c\n")
    gitops.commit_all(repo, "C", "c3")
    merged = worktrees.merge(repo, "side", "target")
    assert merged.ok and not merged.fast_forward
    assert git(repo, "rev-list", "--count", "--merges", "HEAD") == "1"
    assert (repo / "b.txt").exists() and (repo / "c.txt").exists()

    git(repo, "checkout", "-q", "-b", "clash")
    (repo / "calc.py").write_text("clash side\n")
    gitops.commit_all(repo, "Clash 1", "c4")
    git(repo, "checkout", "-q", "target")
    (repo / "calc.py").write_text("target side\n")
    gitops.commit_all(repo, "Clash 2", "c5")
    head = gitops.head_commit(repo)
    conflict = worktrees.merge(repo, "clash", "target")
    assert not conflict.ok and conflict.conflicts == ("calc.py",)
    assert gitops.head_commit(repo) == head
    assert gitops.dirty_files(repo) == []
    assert not (Path(git(repo, "rev-parse", "--absolute-git-dir")) / "MERGE_HEAD").exists()


def test_a_lock_another_git_holds_for_a_moment_is_waited_for(repo: Path) -> None:
    """An editor's git integration refreshing the index (VS Code runs `git status` on every
    file an agent writes) holds `.git/index.lock` for a moment; the chunk's commit failed with
    "File exists" and the approved attempt was lost to a patch."""
    lock = repo / ".git" / "index.lock"
    lock.touch()
    freed = threading.Timer(0.3, lock.unlink)
    freed.start()
    try:
        (repo / "new.py").write_text("x = 1\n")
        sha = gitops.commit_all(repo, "Add new", "chunk-1")
    finally:
        freed.join()
    assert git(repo, "log", "-1", "--format=%H") == sha
    assert git(repo, "show", "--name-only", "--format=", sha) == "new.py"


def test_a_lock_left_behind_is_named_with_what_to_do(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gitops, "LOCK_WAIT_S", 0.2)
    lock = repo / ".git" / "index.lock"
    lock.touch()
    (repo / "new.py").write_text("x = 1\n")
    with pytest.raises(gitops.GitError) as info:
        gitops.commit_all(repo, "Add new", "chunk-1")
    message = str(info.value)
    assert "\n" not in message
    assert str(lock) in message and "another git process" in message
    assert "if no git command is running, delete it" in message
    assert lock.exists()  # never ours to remove


def test_head_moved_at_is_a_checkout_away_from_that_branch_only(git_repo: Path) -> None:
    """Recovery puts HEAD back on a killed run's branch only when the last checkout was away
    from it (its agent's): a user's own checkout just before a run (`git checkout main` and
    then `run-all`, or a comparison whose branches live in worktrees) is not the agent's, and
    taking it for one checked the run's branch out in the project tree over the user's index."""
    git(git_repo, "checkout", "-q", "-b", "specwright/x")
    git(git_repo, "checkout", "-q", "-b", "other")
    git(git_repo, "-c", "user.email=a@b", "commit", "-q", "--allow-empty", "-m", "agent's")
    moved = gitops.head_moved_at(git_repo, "specwright/x")  # the commit since does not hide it
    assert moved is not None and abs(moved - time.time()) < 60
    assert gitops.head_moved_at(git_repo, "main") is None
    git(git_repo, "checkout", "-q", "main")  # the user's, from another branch
    assert gitops.head_moved_at(git_repo, "specwright/x") is None


@pytest.mark.parametrize("folder_left", [True, False])
def test_a_worktree_left_locked_by_a_killed_add_is_removed_and_added_again(
    repo: Path, tmp_path: Path, folder_left: bool
) -> None:
    """A run-all killed during `git worktree add` leaves the worktree locked ("initializing"):
    `remove --force` and `prune` kept it, and its branch could be neither reset nor deleted
    (the resumed run-all failed with "Cannot delete branch ... checked out at ...")."""
    import shutil

    base = gitops.head_commit(repo)
    wt = worktrees.add_worktree(repo, tmp_path / "wt" / "1", "specwright/s--1", base)
    (repo / ".git" / "worktrees" / "1" / "locked").write_text("initializing")
    if folder_left:
        worktrees.remove_worktree(repo, wt, delete_branch="specwright/s--1")
        assert not gitops.branch_exists(repo, "specwright/s--1")
    else:
        shutil.rmtree(wt)
    again = worktrees.add_worktree(repo, wt, "specwright/s--1", base, reset=True)
    assert gitops.current_branch(again) == "specwright/s--1"
    worktrees.remove_worktree(repo, again, delete_branch="specwright/s--1")
    assert not gitops.branch_exists(repo, "specwright/s--1")


def test_a_fast_forward_git_refuses_leaves_the_tree_clean(repo: Path) -> None:
    """A HEAD.lock left by a git killed with kill -9: the fast-forward merge of a chunk's
    branch failed after git had already moved the index and tree, so the chunk's files stayed
    staged in the project tree and every later run-all was refused for uncommitted changes."""
    branches.ensure_branch(repo, "target")
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "a.txt").write_text("a\n")
    gitops.commit_all(repo, "A", "c1")
    git(repo, "checkout", "-q", "target")
    head = gitops.head_commit(repo)
    (repo / ".git" / "HEAD.lock").touch()
    refused = worktrees.merge(repo, "feature", "target")
    assert not refused.ok and "HEAD.lock" in refused.message
    assert gitops.head_commit(repo) == head
    assert git(repo, "status", "--porcelain") == ""
    assert not (repo / "a.txt").exists()
    (repo / ".git" / "HEAD.lock").unlink()
    assert worktrees.merge(repo, "feature", "target").fast_forward


def test_a_spec_branch_with_no_commits_of_its_own_is_brought_up_to_head(
    repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run-all that shipped nothing left its branch at the old main; the user committed a
    fix to the config on main and ran again: the run went on from the old commit, without it."""
    branch = gitops.spec_branch("calc")
    base = branches.ensure_branch(repo, branch)
    git(repo, "checkout", "-q", "main")
    (repo / "fix.py").write_text("x = 1\n")
    git(repo, "add", "fix.py")
    git(repo, "commit", "-q", "-m", "the fix")
    fix = gitops.head_commit(repo)
    with caplog.at_level("WARNING", logger="specwright.branches"):
        assert branches.ensure_branch(repo, branch) == fix
    assert gitops.current_branch(repo) == branch
    assert caplog.messages == [
        f"specwright/calc had no commits of its own: moved from {base[:10]} to {fix[:10]}, the "
        "commit checked out (main)"
    ]
    assert git(repo, "rev-parse", "main") == fix


def test_a_stacked_spec_branch_moved_up_to_another_specs_branch_is_said(
    repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A spec branch made from another spec's branch, with nothing of its own yet: once that
    branch has moved on, checking it out from there moved it along without a word."""
    branches.ensure_branch(repo, gitops.spec_branch("first"))
    branches.ensure_branch(repo, gitops.spec_branch("second"))  # stacked (said when made)
    made = gitops.head_commit(repo)
    git(repo, "checkout", "-q", "specwright/first")
    (repo / "first.py").write_text("x = 1\n")
    later = gitops.commit_all(repo, "First", "chunk-1", "")
    caplog.clear()
    with caplog.at_level("WARNING", logger="specwright.branches"):
        assert branches.ensure_branch(repo, gitops.spec_branch("second")) == later
        git(repo, "checkout", "-q", "specwright/first")
        branches.ensure_branch(repo, gitops.spec_branch("second"))  # at it already: not moved
    assert caplog.messages == [
        f"specwright/second had no commits of its own: moved from {made[:10]} to {later[:10]}, "
        "the commit checked out (specwright/first); it now carries specwright/first's commits "
        "too"
    ]


def test_a_git_error_keeps_the_quotes_of_its_own_words(repo: Path, tmp_path: Path) -> None:
    """GitPython puts git's message in quotes; taking them off took the closing quote of a path
    at its end too ("already checked out at '/path/to/tree")."""
    git(repo, "branch", "busy")
    git(repo, "worktree", "add", "-q", str(tmp_path / "tree"), "busy")
    with pytest.raises(gitops.GitError) as refused:
        gitops._git(repo, "checkout", "--quiet", "busy")
    assert str(refused.value).endswith(f"is already checked out at '{tmp_path / 'tree'}'")
