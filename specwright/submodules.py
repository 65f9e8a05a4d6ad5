"""Submodules in an attempt: another repository's files inside the work tree.

git records a submodule in the project as the commit checked out there, nothing of its files:
the chunk's commit cannot take what an agent edits inside one, and a rollback's ``reset --hard``
and ``clean`` in the project leave the submodule's own HEAD and branch where the agent moved
them. So an attempt that changes files in a submodule, or commits there, is not shipped
(``findings`` tell the agent why: a checkout of a commit its remote has, a version bump, is
the project's to commit and ships); its work there goes into the attempt's patch (``patch``:
paths from the project's top, so ``git apply`` there gives it back), and a rollback puts each
submodule back at the commit the base records, on the branch checked out before the run
(``put_back``, naming the agent's commits there with the way back). A submodule that is not
checked out (never ``git submodule update``-d) is left alone.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from specwright.gitops import _SUBMODULE_ROLLBACK, GitError, _git, dirty_files
from specwright.model import Finding

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkout:
    """A submodule checked out in the work tree."""

    path: str  # from the top of the project's work tree
    commit: str  # what the base commit records for it (its parent submodule's, when nested)
    branch: str | None  # ``refs/heads/...`` checked out there when taken; None: detached


def checkouts(path: Path | str, base: str) -> tuple[Checkout, ...]:
    """The submodules checked out in the work tree at ``path``, nested ones after theirs, with
    the commit ``base`` records for each (their HEAD before an attempt: ``ensure_clean``)."""
    top = Path(_git(path, "rev-parse", "--show-toplevel"))
    return tuple(_walk(top, top, base))


def _walk(top: Path, repo: Path, commit: str) -> Iterator[Checkout]:
    try:  # no .gitmodules: no submodule, and no reading of the whole tree
        _git(repo, "cat-file", "-e", f"{commit}:.gitmodules")
    except GitError:
        return
    for entry in _git(repo, "ls-tree", "-r", "-z", commit).split("\0"):
        info, _, rel = entry.partition("\t")
        if not info.startswith("160000 "):
            continue
        where = repo / rel
        if not _checked_out(where):
            continue
        sha = info.split()[2]
        yield Checkout(where.relative_to(top).as_posix(), sha, _branch(where))
        yield from _walk(top, where, sha)


def _checked_out(where: Path) -> bool:
    if not (where / ".git").exists():
        return False
    try:
        return Path(_git(where, "rev-parse", "--show-toplevel")).resolve() == where.resolve()
    except GitError:
        return False


def _branch(where: Path) -> str | None:
    try:
        return _git(where, "symbolic-ref", "-q", "HEAD") or None
    except GitError:
        return None


def _head(where: Path) -> str:
    try:
        return _git(where, "rev-parse", "--verify", "HEAD")
    except GitError:
        return ""


def findings(path: Path | str, subs: tuple[Checkout, ...]) -> list[Finding]:
    """Why the attempt cannot ship as it left the submodules ``subs``: files changed there
    (the project's commit cannot take them), or a commit made there that no remote of the
    submodule has (the project's commit would record a commit only this machine has)."""
    top = Path(_git(path, "rev-parse", "--show-toplevel"))
    found: list[Finding] = []
    for sub in subs:
        where = top / sub.path
        if not _checked_out(where):
            continue
        if changed := [f for f in dirty_files(where) if f"{sub.path}/{f}" not in _paths(subs)]:
            shown = ", ".join(changed[:10]) + (f", … ({len(changed)} files)" * (len(changed) > 10))
            found.append(
                Finding(
                    f"{sub.path}/ is a git submodule, another repository: the project's commit "
                    f"cannot take the changes the attempt made there ({shown}), so they are "
                    f"rolled back; change the project's own files, and leave {sub.path}/ as it is",
                    check="completion",
                    file=sub.path,
                )
            )
        head = _head(where)
        if head and head != sub.commit and _unpublished(where):
            found.append(
                Finding(
                    f"the attempt committed in {sub.path}/, a git submodule (another "
                    f"repository): the project's commit would record {head[:10]}, a commit only "
                    f"this machine has; leave {sub.path}/ at {sub.commit[:10]}",
                    check="completion",
                    file=sub.path,
                )
            )
    return found


def _paths(subs: tuple[Checkout, ...]) -> set[str]:
    return {sub.path for sub in subs}


def _unpublished(where: Path) -> bool:
    """Whether HEAD has commits none of the submodule's remote-tracking branches has."""
    try:
        return bool(_git(where, "rev-list", "-n", "1", "HEAD", "--not", "--remotes"))
    except GitError:
        return True


def put_back(path: Path | str, subs: tuple[Checkout, ...]) -> list[str]:
    """Each submodule of ``subs`` back at its commit, on its branch (moved back there if the
    agent committed on it), its tree reset and cleaned (never its ignored files); what was
    put back, one phrase each, naming the commits dropped."""
    top = Path(_git(path, "rev-parse", "--show-toplevel"))
    done: list[str] = []
    for sub in subs:  # a submodule before those nested in it
        where = top / sub.path
        if not _checked_out(where):
            continue
        try:
            done += _put_back_one(where, sub)
        except GitError as exc:
            done.append(f"could not put back the submodule {sub.path}: {exc}")
    return done


def _put_back_one(where: Path, sub: Checkout) -> list[str]:
    heads = {_head(where)}
    if sub.branch:
        with contextlib.suppress(GitError):  # deleted: made again
            heads.add(_git(where, "rev-parse", "--verify", "-q", sub.branch))
    heads -= {"", sub.commit}
    dropped: list[str] = []
    if heads:
        dropped = _git(where, "rev-list", *sorted(heads), "--not", sub.commit).split()
    moved = bool(heads) or _branch(where) != sub.branch
    if sub.branch:
        _git(where, "update-ref", sub.branch, sub.commit)
        _git(where, "symbolic-ref", "HEAD", sub.branch)
    else:
        _git(where, "update-ref", "--no-deref", "HEAD", sub.commit)
    _git(where, "reset", "--quiet", "--hard")
    _git(where, "clean", "--quiet", "-f", "-f", "-d")
    if not moved:
        return []
    on = f" on {sub.branch.removeprefix('refs/heads/')}" if sub.branch else ""
    said = f"submodule {sub.path} put back at {sub.commit[:10]}{on}"
    if dropped:
        named = ", ".join(sha[:10] for sha in dropped[:5]) + (", …" if len(dropped) > 5 else "")
        said += (
            f" ({len(dropped)} commit(s) made there dropped: {named}; "
            f"`git -C {sub.path} cherry-pick SHA` gives one back)"
        )
    return [said]


def tidy(path: Path | str) -> None:
    """Reset and clean every submodule at its HEAD once an attempt has shipped: what is left
    there is the checks' (``findings`` sent back an attempt that changed files there)."""
    try:
        _git(path, "submodule", "--quiet", "foreach", "--recursive", _SUBMODULE_ROLLBACK)
    except GitError as exc:  # shipped all the same: the next run names what is left
        log.warning("could not clean the submodules after the commit: %s", exc)


def patch(path: Path | str, base: str, dest: Path, max_bytes: int) -> None:
    """Add to the patch ``dest`` (made when missing) what the attempt changed in each submodule
    checked out, against the commit ``base`` records for it, paths from the project's top;
    at most ``max_bytes`` in all (``gitdiff.save_patch``)."""
    from specwright import gitdiff

    top = Path(_git(path, "rev-parse", "--show-toplevel"))
    for sub in checkouts(top, base):
        room = max_bytes - (dest.stat().st_size if dest.exists() else 0)
        piece = dest.with_name(f"{dest.name}.part")
        try:
            if gitdiff.save_patch(
                top / sub.path, sub.commit, piece, max_bytes=max(room, 0), prefix=f"{sub.path}/"
            ):
                with dest.open("ab") as out:
                    out.write(piece.read_bytes())
        finally:
            piece.unlink(missing_ok=True)
