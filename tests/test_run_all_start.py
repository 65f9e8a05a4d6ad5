"""How a run-all starts: what it refuses before any agent runs, and the commit it records as the
one it goes on from."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from specwright import catalog, gitops
from specwright import config as config_mod
from specwright.runner import run_all
from specwright.store import Store, resolve_db_path
from tests.conftest import git
from tests.test_runner import _project, _spec, _write_script


def _spec_status(store: Store, spec_id: str) -> str:
    return str(store.query("SELECT status FROM specs WHERE id = ?", [spec_id])[0][0])


def _chunk_statuses(store: Store, spec_id: str) -> list[str]:
    return [c.status for c in catalog.list_chunks(store, spec_id)]


def test_a_run_all_refused_before_any_agent_leaves_the_spec_as_it_was(
    git_repo: Path,
    cli,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A spec branch refused, a check that cannot run: nothing ran, yet the spec was left
    `failed` (the refused branch also left a failed run-all row, 'stopped by an error')."""
    monkeypatch.delenv("SPECWRIGHT_DB")  # the project's data/specwright.duckdb
    _project(git_repo, _write_script({"A": [], "B": []}), verify="no-such-check-tool")
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": [], "B": []})
    store.update("specs", {"id": spec.id}, {"status": "ready"})  # reviewed: plan --accept
    git(git_repo, "checkout", "-q", "-b", "specwright/diamond")  # made before data/ was ignored
    (git_repo / ".gitignore").write_text("")
    git(git_repo, "commit", "-q", "-am", "nothing ignored")
    git(git_repo, "checkout", "-q", "main")

    refused = cli("-C", str(git_repo), "run-all", spec.slug)
    assert refused.code == 2, refused
    assert refused.err.startswith("specwright: error: specwright/diamond does not git-ignore ")
    assert len(refused.err.strip().splitlines()) == 1 and refused.out == ""
    assert store.query("SELECT count(*) FROM runs") == [(0,)]
    assert _spec_status(store, spec.id) == "ready"
    assert git(git_repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"

    git(git_repo, "branch", "-q", "-D", "specwright/diamond")
    broken = cli("-C", str(git_repo), "run-all", spec.slug)
    assert broken.code == 2, broken
    [line] = broken.err.strip().splitlines()
    assert line.startswith("specwright: error: ") and "no agent ran" in line
    assert "check_broken: verification step 'check' cannot run in " in line
    assert _spec_status(store, spec.id) == "ready"
    assert store.query("SELECT count(*) FROM executions") == [(0,)]
    [run] = store.query_dicts("SELECT status, reason FROM runs WHERE kind = 'spec'")
    assert run["status"] == "failed" and "check_broken" in run["reason"]  # still recorded
    # nor its chunks: none of them was tried (they were left `failed` with 0 iterations)
    assert _chunk_statuses(store, spec.id) == ["pending", "pending"]
    [chunk_run] = store.query_dicts("SELECT status, iterations FROM runs WHERE kind = 'chunk'")
    assert chunk_run == {"status": "failed", "iterations": 0}  # the run row says what happened
    # `run` of one chunk says it alike (it printed its closing table and exited 1)
    one = cli("-C", str(git_repo), "run", f"{spec.slug}:1")
    assert one.code == 2  # its progress lines, then no closing table
    assert one.out.splitlines()[-1].startswith("  baseline verify check: error (exit 127"), one
    [line] = one.err.strip().splitlines()
    assert line.startswith("specwright: error: no agent ran: check_broken: verification step ")
    assert _chunk_statuses(store, spec.id) == ["pending", "pending"]


@pytest.mark.parametrize("parallel", [1, 2])
def test_a_resumed_run_all_records_the_commit_it_goes_on_from(
    git_repo: Path, parallel: int
) -> None:
    """A run-all resumed from main recorded main's head as its base commit, while its chunks
    went on from the spec branch's head (what shipped before)."""
    graph = {"A": [], "B": []}
    script = _write_script(graph)
    _project(git_repo, {"chunks": {**script["chunks"], "Make B": [{"say": "nothing"}]}})
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, graph)
    first = run_all(store, config_mod.load(git_repo), git_repo, spec, parallel=parallel)
    assert [c.status for c in first.chunks] == ["shipped", "failed"], first.reason
    shipped = git(git_repo, "rev-parse", "specwright/diamond")
    git(git_repo, "checkout", "-q", "main")
    assert git(git_repo, "rev-parse", "HEAD") != shipped
    (git_repo.parent / "script.yaml").write_text(yaml.safe_dump(script))
    again = run_all(store, config_mod.load(git_repo), git_repo, spec, parallel=parallel)
    assert again.status == "shipped", again.reason
    base = store.query("SELECT base_commit FROM runs WHERE id = ?", [again.run_id])[0][0]
    assert base == shipped
    [chunk_run] = store.query_dicts(
        "SELECT base_commit FROM runs WHERE parent_run_id = ? AND status = 'shipped'",
        [again.run_id],
    )
    assert chunk_run["base_commit"] == shipped
    assert catalog.list_chunks(store, spec.id)[1].status == "shipped"


def test_a_run_all_cancelled_before_any_agent_leaves_the_spec_as_it_was(git_repo: Path) -> None:
    """A Ctrl-C (here: the cancel the CLI's handler sets) during the baseline checks, before any
    agent ran, turned a draft spec into `ready`, as if it had been reviewed and accepted."""
    import threading

    _project(git_repo, _write_script({"A": []}), verify="sleep 60")
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": []})
    assert _spec_status(store, spec.id) == "draft"
    cancel = threading.Event()

    def progress(p) -> None:  # type: ignore[no-untyped-def]
        if p.kind == "verify" or p.kind == "baseline":
            cancel.set()  # the baseline's check is under way

    result = run_all(
        store, config_mod.load(git_repo), git_repo, spec, cancel=cancel, on_progress=progress
    )
    assert result.status == "cancelled", result.reason
    assert store.query("SELECT count(*) FROM executions") == [(0,)]
    assert _spec_status(store, spec.id) == "draft"
    assert _chunk_statuses(store, spec.id) == ["pending"]  # not `cancelled`: it was not tried


def _stop_a_rebase_at_an_edit(repo: Path) -> None:
    """An interactive rebase stopped at an `edit`: the tree clean, HEAD detached."""
    (repo / "mine.txt").write_text("mine\n")
    git(repo, "add", "mine.txt")
    git(repo, "commit", "-q", "-m", "mine")
    git(repo, "-c", "sequence.editor=sed -i s/^pick/edit/", "rebase", "-q", "-i", "HEAD~1")


def _stop_a_merge_at_a_conflict(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "other")
    (repo / "README.md").write_text("theirs\n")
    git(repo, "commit", "-q", "-am", "theirs")
    git(repo, "checkout", "-q", "main")
    (repo / "README.md").write_text("ours\n")
    git(repo, "commit", "-q", "-am", "ours")
    import subprocess

    assert subprocess.run(["git", "merge", "-q", "other"], cwd=repo, capture_output=True).returncode


@pytest.mark.parametrize(
    ("stop", "command", "what", "state"),
    [
        (_stop_a_rebase_at_an_edit, "run-all", "rebase", "rebase-merge"),
        (_stop_a_merge_at_a_conflict, "run", "merge", "MERGE_HEAD"),
    ],
)
def test_a_run_is_refused_while_the_users_rebase_or_merge_is_under_way(
    git_repo: Path,
    cli,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
    stop,  # type: ignore[no-untyped-def]
    command: str,
    what: str,
    state: str,
) -> None:
    """A rebase stopped at an `edit` (a clean tree) was run on: the spec branch made from the
    commit it stopped at, and the rebase quit after the agent (`git rebase --quit`), the user's
    rebase lost; a merge stopped at a conflict was refused as 'uncommitted changes' with
    advice to stash (which git refuses mid-merge). Both are refused, saying what to do."""
    monkeypatch.delenv("SPECWRIGHT_DB")
    _project(git_repo, _write_script({"A": []}))
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": []})
    stop(git_repo)
    head = git(git_repo, "rev-parse", "HEAD")

    refused = cli(
        "-C", str(git_repo), command, spec.slug if command == "run-all" else spec.slug + ":1"
    )
    assert refused.code == 2, refused
    [line] = refused.err.strip().splitlines()
    assert line == (
        f"specwright: error: {git_repo}: a {what} is under way; finish it (`git {what} "
        f"--continue`) or abort it (`git {what} --abort`), then run again"
    )
    assert (git_repo / ".git" / state).exists()  # the user's, left as it was
    assert git(git_repo, "rev-parse", "HEAD") == head
    assert not gitops.branch_exists(git_repo, "specwright/diamond")
    assert store.query("SELECT count(*) FROM executions") == [(0,)]


# what git-lfs installs as .git/hooks/post-checkout, on a machine without git-lfs
LFS_HOOK = (
    '#!/bin/sh\ncommand -v git-lfs >/dev/null 2>&1 || { echo >&2 "This repository is '
    "configured for Git LFS but 'git-lfs' was not found on your path.\"; exit 2; }\n"
)


@pytest.mark.parametrize("parallel", [1, 2])
def test_a_failing_post_checkout_hook_does_not_refuse_every_run(
    git_repo: Path, parallel: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """git reports a post-checkout hook's failure as the checkout's (or `worktree add`'s)
    though it has switched: every run-all was refused at its spec branch's checkout, HEAD left
    on that branch, and a parallel one failed each chunk at its worktree."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no git-lfs, wherever the tests run
    hook = git_repo / ".git" / "hooks" / "post-checkout"
    hook.write_text(LFS_HOOK)
    hook.chmod(0o755)
    graph = {"A": [], "B": []}
    _project(git_repo, _write_script(graph))
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, graph)
    if parallel == 2:  # the spec branch there already: checked out, not created
        git(git_repo, "branch", "specwright/diamond")
    result = run_all(store, config_mod.load(git_repo), git_repo, spec, parallel=parallel)
    assert result.status == "shipped", result.reason
    assert git(git_repo, "rev-parse", "--abbrev-ref", "HEAD") == "specwright/diamond"
    assert git(git_repo, "ls-tree", "--name-only", "HEAD", "a.txt", "b.txt").split() == [
        "a.txt",
        "b.txt",
    ]


@pytest.mark.parametrize("command", ["run-all", "run", "compare"])
def test_a_run_is_refused_when_git_is_set_to_sign_commits_and_cannot(
    git_repo: Path,
    cli,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    """`commit.gpgsign` with no key that works: each chunk's agent ran, its checks passed,
    then its commit failed (the change saved as a patch), chunk after chunk, each paid for.
    Refused before any agent runs, in one line saying what to do; nothing left changed."""
    monkeypatch.delenv("SPECWRIGHT_DB")
    _project(git_repo, _write_script({"A": []}))
    config = git_repo / ".handoff" / "config.yaml"  # a second executor, to compare with
    config.write_text(
        config.read_text().replace("defaults:", "    other: {type: scripted}\ndefaults:")
    )
    git(git_repo, "commit", "-q", "-am", "two executors")
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": []})
    git(git_repo, "config", "commit.gpgsign", "true")
    git(git_repo, "config", "gpg.program", "false")  # a gpg that cannot sign
    head = git(git_repo, "rev-parse", "HEAD")

    args = {
        "run-all": ("run-all", spec.slug),
        "run": ("run", f"{spec.slug}:1"),
        "compare": ("run-all", spec.slug, "--executor", "scripted", "--executor", "other"),
    }[command]
    refused = cli("-C", str(git_repo), *args)
    assert refused.code == 2, refused
    [line] = refused.err.strip().splitlines()
    assert line.startswith(
        f"specwright: error: {git_repo}: commit.gpgsign is set but git cannot sign a commit ("
    )
    assert "gpg failed to sign the data" in line
    assert line.endswith("or turn signing off here: `git config commit.gpgsign false`")
    assert git(git_repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git(git_repo, "rev-parse", "HEAD") == head
    assert store.query("SELECT count(*) FROM executions") == [(0,)]
