"""The worktrees of parallel waves (and of ``--executor`` comparisons), and merging a chunk's
branch back into the spec branch. Each function takes the main work tree (``repo``/``path``) and
uses git through ``gitops``.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from specwright.branches import checkout, git_landed
from specwright.gitops import (
    DirtyTreeError,
    GitError,
    _git,
    _identity,
    _plain,
    branch_exists,
    current_branch,
    ensure_clean,
    head_commit,
    is_ancestor,
    rollback,
)


@dataclass(frozen=True)
class MergeResult:
    """The outcome of merging one branch into another."""

    ok: bool
    commit: str | None = None  # the target's head after the merge (None when it failed)
    fast_forward: bool = False
    conflicts: tuple[str, ...] = ()
    message: str = ""


def add_worktree(
    repo: Path | str, path: Path | str, branch: str, base: str | None = None, *, reset: bool = False
) -> Path:
    """A new worktree at ``path`` on ``branch``: created at ``base`` (default HEAD) when it
    does not exist, or reset there when ``reset``; an existing branch is checked out as is."""
    target = Path(path).resolve()
    if target.exists() and any(target.iterdir()):
        raise GitError(f"{target}: worktree path exists and is not empty")
    target.parent.mkdir(parents=True, exist_ok=True)
    # a `git worktree add` killed midway leaves its worktree locked ("initializing"), which
    # prune keeps: unlocked here (the path is ours), pruned with the folder gone
    with contextlib.suppress(GitError):
        _git(repo, "worktree", "unlock", str(target))
    _git(repo, "worktree", "prune")  # a worktree whose folder is gone still holds its branch
    if branch_exists(repo, branch) and not reset:
        git_landed(repo, ("worktree", "add", "--quiet", str(target), branch), target, branch)
    else:
        how = ("worktree", "add", "--quiet", "-B", branch, str(target), base or "HEAD")
        git_landed(repo, how, target, branch)
    return target


def remove_worktree(
    repo: Path | str, path: Path | str, *, delete_branch: str | None = None
) -> None:
    """Remove a worktree (discarding its changes) and prune; optionally delete its branch."""
    target = Path(path).resolve()
    try:
        # twice: a locked one too (a `git worktree add` killed midway leaves it locked)
        _git(repo, "worktree", "remove", "--force", "--force", str(target))
    except GitError:
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
    _git(repo, "worktree", "prune")
    if delete_branch and branch_exists(repo, delete_branch):
        _git(repo, "branch", "--quiet", "-D", delete_branch)


def merge(
    path: Path | str, source: str, target: str | None = None, *, message: str = ""
) -> MergeResult:
    """Merge ``source`` into ``target`` (default: the checked-out branch) in the work tree at
    ``path``: fast-forward when possible, else a merge commit. A conflict aborts the merge and
    is reported with its files; the tree is never left conflicted. Anything else git refuses (a
    dirty tree, a lock it cannot take, a full disk) is a failure without conflicts, in git's
    words."""
    try:
        try:
            ensure_clean(path)
        except DirtyTreeError as exc:  # clean when the run began: run-all refuses it otherwise
            shown = ", ".join(exc.files[:20]) + (" …" if len(exc.files) > 20 else "")
            raise GitError(
                f"{path}: the project's work tree changed while chunks ran in their worktrees "
                f"({shown}): an agent that wrote outside its worktree, or an edit of yours; "
                "look at them, then commit, stash or delete them"
            ) from None
        if target is not None and current_branch(path) != target:
            checkout(path, target)
        before = head_commit(path)
        source_sha = _git(path, "rev-parse", "--verify", f"{source}^{{commit}}")
        if is_ancestor(path, source_sha, before):
            return MergeResult(ok=True, commit=before, message="already up to date")
        if is_ancestor(path, before, source_sha):
            try:
                _git(path, "merge", "--quiet", "--ff-only", source_sha)
            except GitError:
                # git moves the index and tree before HEAD: refused the ref (a HEAD.lock a
                # killed git left), it left the source's files staged in the clean tree
                with contextlib.suppress(GitError):
                    _git(path, "read-tree", "--reset", "-u", "HEAD")
                raise
            return MergeResult(ok=True, commit=head_commit(path), fast_forward=True)
    except GitError as exc:
        return MergeResult(ok=False, message=str(exc))
    identity = _identity(path)
    msg = _plain(message or f"Merge {source} into {target or current_branch(path) or 'HEAD'}")
    # --no-verify: as commit_all, the repository's commit hooks do not judge our commits
    how = ("--quiet", "--no-ff", "--no-edit", "--no-verify", "-m", msg, source_sha)
    try:
        _git(path, *identity, "merge", *how)
    except GitError as exc:
        conflicts = _git(path, "diff", "--name-only", "--diff-filter=U", "-z").split("\0")
        try:
            _git(path, "merge", "--abort")
        except GitError:
            with contextlib.suppress(GitError):  # refused before it began: nothing to undo
                rollback(path, before)
        return MergeResult(ok=False, conflicts=tuple(c for c in conflicts if c), message=str(exc))
    return MergeResult(ok=True, commit=head_commit(path))


def abort_merge(path: Path | str, prefix: str) -> str | None:
    """Abort a merge stopped midway (conflicted, its process killed) of a branch whose name
    starts with ``prefix``, as ``merge`` would have; returns that branch, else None."""
    try:
        head = _git(path, "rev-parse", "--verify", "--quiet", "MERGE_HEAD")
    except GitError:
        return None  # no merge under way
    names = _git(path, "for-each-ref", "--points-at", head, "--format=%(refname:short)")
    for name in (n for n in names.splitlines() if n.startswith(prefix)):
        _git(path, "merge", "--abort")
        return name
    return None
