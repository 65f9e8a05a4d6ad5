"""What a rollback's ``reset --hard`` and ``clean`` in the project cannot give back, taken
before a chunk run's first attempt and put back by each of its rollbacks: the submodules'
checkouts (``submodules``), and copies of the files git never restores: the user's git-ignored
files (``.env``, a local config) and those marked ``skip-worktree`` (``git update-index``),
which an attempt may overwrite or delete. git neither diffs nor commits a skip-worktree file:
an attempt that changed one is not shipped (``findings``).

The copies are bounded: files git lists as ignored one by one (an ignored folder, a
``node_modules/`` or ``.venv/``, is one entry: never gone into), regular files of at most
``MAX_FILE_BYTES``, at most ``MAX_FILES`` of them and ``MAX_TOTAL_BYTES`` in all, those nearest
the top first; what is left out is said once, in a warning. Specwright's own files (the
database, journals, saved patches) are never copied nor put back.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from specwright import branches, gitops, submodules
from specwright.gitops import _git
from specwright.gitstate import _write
from specwright.model import Finding

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 2**20  # a bigger ignored file (a local database, a build) is not copied
MAX_FILES = 300
MAX_TOTAL_BYTES = 20 * 2**20
_WARNED: set[str] = set()  # work trees whose unprotected files were said (once a process)


@dataclass
class Copy:
    """A file as it was: its bytes, its mode, and its ``stamp`` (inode, size, change time),
    which no write can keep: while that is the file's, it is unchanged."""

    data: bytes
    mode: int
    stamp: tuple[int, int, int]
    hidden: bool = False  # marked skip-worktree: git neither shows nor commits its changes


def _stamp(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_size, st.st_ctime_ns


@dataclass(frozen=True)
class Keepsafe:
    """The work tree at ``path`` as it was before the run, beyond its commit ``base``."""

    path: Path
    base: str
    subs: tuple[submodules.Checkout, ...] = ()
    copies: dict[str, Copy] = field(default_factory=dict)  # from the top

    @classmethod
    def take(cls, path: Path | str, base: str, spare: Sequence[Path | str] = ()) -> Keepsafe:
        """Read it (the tree clean: ``gitops.ensure_clean``); ``spare``: Specwright's files
        and folders, never copied."""
        return cls(Path(path), base, submodules.checkouts(path, base), _copies(path, spare))

    def rollback(self, keep: Sequence[str] = (), branch: str | None = None) -> str:
        """``gitops.rollback`` to the base, the submodules put back first and the copies
        after; what the rollback line adds, "" for nothing: the commits it drops, what it put
        back."""
        dropped = branches.dropped_by_rollback(self.path, self.base, branch)
        said = [dropped] if dropped else []
        said += submodules.put_back(self.path, self.subs)
        gitops.rollback(self.path, self.base, keep, branch)
        if put := self.put_back():
            said.append(put)
        return "; ".join(said)

    def findings(self) -> list[Finding]:
        """Why the attempt cannot ship as it left the tree: changes in a submodule
        (``submodules.findings``), or to files marked skip-worktree, which git neither shows
        in its diff nor commits (they would stay in the tree, the user's own content gone)."""
        found = submodules.findings(self.path, self.subs)
        top = Path(_git(self.path, "rev-parse", "--show-toplevel"))
        hidden = [r for r, c in self.copies.items() if c.hidden and _changed(top / r, c)]
        if hidden:
            found.append(
                Finding(
                    f"the attempt changed {_shown(hidden)}, marked skip-worktree in this "
                    "repository (`git update-index --skip-worktree`: local content git neither "
                    "shows nor commits), so that is rolled back; leave them as they are",
                    check="completion",
                    file=hidden[0],
                )
            )
        return found

    def put_back(self) -> str:
        """Write back the copied files the attempt changed or deleted; what was, as a phrase."""
        if not self.copies:
            return ""
        top = Path(_git(self.path, "rev-parse", "--show-toplevel"))
        done, failed = [], []
        for rel, copy in self.copies.items():
            target = top / rel
            if not (how := _changed(target, copy)):
                continue
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                _write(target, copy.data, copy.mode)
                copy.stamp = _stamp(os.lstat(target))
            except OSError as exc:
                failed.append(f"{rel} ({exc.strerror or exc})")
                continue
            done.append(f"{rel} ({how})")
        said = [f"put back as before the run (git does not restore them): {_shown(done)}"]
        said = said if done else []
        said += [f"could not put back {_shown(failed)}"] * bool(failed)
        return "; ".join(said)


def _changed(target: Path, copy: Copy) -> str:
    """How the file at ``target`` differs from ``copy``: "deleted", "changed" or ""."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return "deleted"
    if stat.S_ISREG(st.st_mode):
        if _stamp(st) == copy.stamp:
            return ""
        same = stat.S_IMODE(st.st_mode) == copy.mode and st.st_size == len(copy.data)
        if same and target.read_bytes() == copy.data:
            copy.stamp = _stamp(st)  # touched, not changed
            return ""
    return "changed"


def _shown(names: list[str]) -> str:
    return ", ".join(names[:10]) + (f", … ({len(names)} files)" if len(names) > 10 else "")


def _candidates(top: Path) -> dict[str, bool]:
    """The ignored files git lists one by one, and the files marked skip-worktree (True),
    those nearest the top first."""
    listed = ("ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory")
    ignored = [n for n in _git(top, *listed).split("\0") if n and not n.endswith("/")]
    hidden = {e[2:] for e in _git(top, "ls-files", "-z", "-t").split("\0") if e[:2] == "S "}
    names = sorted({*ignored, *hidden}, key=lambda n: (n.count("/"), n))
    return {n: n in hidden for n in names}


def _copies(path: Path | str, spare: Sequence[Path | str]) -> dict[str, Copy]:
    top = Path(_git(path, "rev-parse", "--show-toplevel"))
    ours = [Path(p).resolve() for p in spare]
    copies: dict[str, Copy] = {}
    big, past, total = [], [], 0
    for rel, hidden in _candidates(top).items():
        target = top / rel
        resolved = target.resolve()
        if any(resolved == p or p in resolved.parents for p in ours):
            continue
        try:
            st = os.lstat(target)
            if not stat.S_ISREG(st.st_mode):
                continue  # a symlink, or gone (a skip-worktree file of a sparse checkout)
            if st.st_size > MAX_FILE_BYTES:
                big.append(rel)
                continue
            if len(copies) >= MAX_FILES or total + st.st_size > MAX_TOTAL_BYTES:
                past.append(rel)
                continue
            data = target.read_bytes()
        except OSError:
            continue
        copies[rel] = Copy(data, stat.S_IMODE(st.st_mode), _stamp(st), hidden)
        total += len(data)
    if (big or past) and str(top) not in _WARNED:
        _WARNED.add(str(top))
        what = [f"over {MAX_FILE_BYTES // 2**20} MiB each: {_shown(big)}"] * bool(big)
        cap = f"{MAX_FILES} files / {MAX_TOTAL_BYTES // 2**20} MiB"
        what += [f"past the {cap} copied: {_shown(past)}"] * bool(past)
        log.warning(
            "%s: git-ignored or skip-worktree files not kept safe from the agent (a rolled-back "
            "attempt that changes them leaves them so): %s",
            top,
            "; ".join(what),
        )
    return copies
