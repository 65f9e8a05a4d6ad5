"""Spec branches: checking one out for a run (made, gone on from, or brought up to HEAD).
Git through ``gitops``, the only module importing GitPython."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from specwright.gitops import (
    BRANCH_PREFIX,
    GitError,
    _git,
    _identity,
    branch_exists,
    commits_between,
    current_branch,
    head_commit,
    is_ancestor,
    is_ignored,
    root_of,
)

log = logging.getLogger(__name__)


def ensure_branch(
    path: Path | str, branch: str, *, start: str | None = None, keep: Sequence[Path | str] = ()
) -> str:
    """Check out ``branch`` (created at ``start`` or HEAD if missing); returns its head sha.

    The tree must be clean (``ensure_clean``): checkout would otherwise carry changes along. An
    existing ``branch`` with no commits HEAD lacks is moved to HEAD; one with is gone on from.
    ``keep``: Specwright's files (the database, journals): an existing branch that does not
    ignore them is refused, HEAD put back (its rollbacks' ``git clean`` would delete them)."""
    head_commit(path)  # without commits, `checkout -b` would move the user's unborn branch
    ensure_can_sign(path)
    if branch_exists(path, branch):
        on = current_branch(path)
        if on != branch:
            here = head_commit(path)
            old = _git(path, "rev-parse", "--verify", f"refs/heads/{branch}")
            if old != here and is_ancestor(path, old, here):  # nothing of its own: caught up
                _git(path, "branch", "--force", branch, here)
                _say_moved(branch, old, here, on)
            checkout(path, branch)
            if exposed := [t for t in keep if not is_ignored(path, t)]:
                checkout(path, on or here)
                raise GitError(
                    f"{branch} does not git-ignore {exposed[0]} (its .gitignore lacks what "
                    f"{on or here[:10]} has): a rollback there would delete it — merge "
                    f"{on or here[:10]} into {branch}, or delete {branch}, then run again"
                )
            if not is_ancestor(path, here, branch):  # resumed on, not made from, HEAD
                log.warning(
                    "%s already exists and lacks the commit checked out (%s %s): the run goes "
                    "on from that branch's head, without that commit (rebase the branch onto "
                    "it, or delete the branch, for a run on top of it)",
                    *(branch, on or "detached HEAD", here[:10]),
                )
        return head_commit(path)
    on = current_branch(path) if start is None else None
    checkout(path, "-b", branch, *([start] if start else []), to=branch)
    if on and _spec_of(on) not in (None, _spec_of(branch)):
        # stacking may be meant (this spec builds on that one's work), so it is only said
        log.warning(
            "%s starts from %s, the branch checked out: it and its pull request carry that "
            "spec's commits too (check out your base branch first for a branch of its own)",
            branch,
            on,
        )
    return head_commit(path)


def ensure_can_sign(path: Path | str) -> None:
    """Refuse a run when git is set to sign commits (``commit.gpgsign``) and cannot (no key,
    a gpg that fails): every chunk's commit would fail, after its agent's work and cost.
    Signing a commit of HEAD's tree (left unreferenced) tells, before any agent runs."""
    try:
        if _git(path, "config", "--type=bool", "commit.gpgsign") != "true":
            return
    except GitError:  # not set
        return
    try:
        _git(path, *_identity(path), "commit-tree", "-S", "-m", "signing check", "HEAD^{tree}")
    except GitError as exc:
        said = str(exc).split(": ", 1)[-1]  # git's words, without the command
        raise GitError(
            f"{root_of(path)}: commit.gpgsign is set but git cannot sign a commit ({said}); fix "
            "the signing key, or turn signing off here: `git config commit.gpgsign false`"
        ) from None


def dropped_by_rollback(path: Path | str, base: str, branch: str | None) -> str:
    """What a rollback of ``branch`` (HEAD when None) to ``base`` would drop of its commits
    (the agent's, or one you made meanwhile in this work tree), as a phrase naming them and
    the way back ("" when none: nothing is said)."""
    try:
        shas = commits_between(path, base, branch or "HEAD")
    except GitError:
        return ""
    if not shas:
        return ""
    named = ", ".join(sha[:10] for sha in shas[:5]) + (", …" if len(shas) > 5 else "")
    return (
        f"{len(shas)} commit(s) made on {branch or 'HEAD'} during the attempt dropped ({named}; "
        "`git cherry-pick SHA` gives one back)"
    )


def checkout(path: Path | str, *args: str, to: str | None = None) -> None:
    """``git checkout args`` in the work tree at ``path``, to end on ``to`` (a branch, or a
    commit for a detached HEAD; default: the last of ``args``); ``git_landed``."""
    git_landed(path, ("checkout", "--quiet", *args), path, to or args[-1])


def git_landed(path: Path | str, args: Sequence[str], tree: Path | str, to: str) -> None:
    """Run ``git args`` in ``path`` (a checkout, a ``worktree add``) that leaves the work tree
    at ``tree`` on ``to``. git reports a failed post-checkout hook as its own failure though it
    has switched (the user's hook: one needing a git-lfs not installed, say): landed there, that
    is a warning, not a refusal of every run."""
    try:
        _git(path, *args)
    except GitError as exc:
        if not _on(tree, to):
            raise
        log.warning("%s: a hook failed after `git %s` (%s); went on", tree, args[0], exc)


def _on(tree: Path | str, to: str) -> bool:
    """Whether ``tree`` is the top of a work tree whose HEAD is on ``to`` (branch or commit)."""
    try:
        top = _git(tree, "rev-parse", "--show-toplevel")
        head = _git(tree, "rev-parse", "--verify", "HEAD")
    except GitError:
        return False
    if Path(top).resolve() != Path(tree).resolve():
        return False
    return current_branch(tree) == to or head == to


def _say_moved(branch: str, old: str, here: str, on: str | None) -> None:
    """A spec branch with no commits of its own moved up to HEAD (a failed run's, or one a
    stacked spec's branch has moved on from): said, as it changes what the run builds on."""
    stacked = _spec_of(on or "") not in (None, _spec_of(branch))
    log.warning(
        "%s had no commits of its own: moved from %s to %s, the commit checked out (%s)%s",
        *(branch, old[:10], here[:10], on or "detached HEAD"),
        f"; it now carries {on}'s commits too" if stacked else "",
    )


def _spec_of(branch: str) -> str | None:
    """The spec slug of a spec branch (``specwright/<slug>`` or ``...@<executor>``), else None."""
    if not branch.startswith(BRANCH_PREFIX):
        return None
    return branch[len(BRANCH_PREFIX) :].split("@", 1)[0]
