"""What an agent may change in a repository outside its work tree, and putting it back.

An attempt is undone with ``reset --hard`` and ``clean`` (``gitops.rollback``), which leave the
rest of the repository alone: an agent's ``git stash`` (or its ``stash drop`` of the user's),
its tags and branches (or its ``tag -d`` of the user's, its commits on ``main``), its ``git
config`` (``core.hooksPath`` to a script of its own, ``user.email``, an alias), a hook it
wrote into ``.git/hooks``, a file it hid through ``.git/info/exclude`` and a rebase it left
under way would outlive the attempt, shipped or not. ``Watch`` takes a
``snapshot`` before the agent starts and ``restore`` puts all that back once it has ended (in a
parallel run-all, whatever changed while the agent ran: another agent's changes too), naming
what it changed. Left alone: the ``specwright/`` branches (the loop and run-all settle them,
another run may be using one), remote-tracking refs (a fetch), a branch checked out in another
worktree (someone works there), and anything outside the repository but the user's git config
(``git config --global``).
A new branch or tag at a commit the repository already had is left, and named: it may be the
user's, made in another terminal while the agent ran (one at a commit the agent made is removed,
its sha named: nothing else points at that work once the attempt is squashed or rolled back).
A lock of git's in the work tree (index, HEAD, the run's branch) that was not there when the agent
started is removed once every process of the agent has ended: its git left it (killed or crashed
mid-command), and the rollback and every later run would fail on it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from specwright.gitops import (
    GitError,
    _git,
    _identity,
    branch_exists,
    current_branch,
    lock_paths,
    reattach,
    still_there,
    under_way,
    unnest,
)

_NO_REF = "0" * 40
LOCK_GRACE_S = 1.0  # how long a lock the agent left is given to go, in case it is not its own
_SETTLING = threading.RLock()  # a parallel wave's agents end in threads of one process
# a repository (its common git folder) -> its state before the agents under way there started,
# and those agents (their ``Watch``)
_WATCHED: dict[str, tuple[RepoState, set[int]]] = {}


@dataclass(frozen=True)
class RepoState:
    """The refs (name -> object), stash entries (oldest first: sha, message), config files
    and hooks (path -> bytes) of a repository."""

    refs: dict[str, str] = field(default_factory=dict)
    stash: tuple[tuple[str, str], ...] = ()
    files: dict[str, tuple[bytes, int] | None] = field(default_factory=dict)
    tips: frozenset[str] = frozenset()  # what every ref pointed at, those left alone too


def _skipped(ref: str) -> bool:
    """Refs ``restore`` leaves alone, and the stash, which it restores entry by entry."""
    return ref.startswith(("refs/remotes/", "refs/heads/specwright/")) or ref == "refs/stash"


def _named(ref: str) -> str:
    for prefix, kind in (("refs/heads/", "branch "), ("refs/tags/", "tag ")):
        if ref.startswith(prefix):
            return kind + ref.removeprefix(prefix)
    return ref


def _read(file: Path) -> tuple[bytes, int] | None:
    if not file.is_file() or file.is_symlink():
        return None
    return file.read_bytes(), file.stat().st_mode & 0o7777


def _global_files() -> tuple[Path, ...]:
    """The user's git config files (``git config --global`` writes one: an agent that met "tell
    me who you are" sets its own email there, for every repository)."""
    if os.environ.get("GIT_CONFIG_GLOBAL"):
        return (Path(os.environ["GIT_CONFIG_GLOBAL"]),)
    home = Path(os.path.expanduser("~"))
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    return home / ".gitconfig", xdg / "git" / "config"


def _global_names() -> set[str]:
    return set(map(str, _global_files()))


def _files(path: Path | str) -> dict[str, tuple[bytes, int] | None]:
    """The config files and hooks of the repository (content and mode): ``None`` for one
    that is not there."""
    common, wt = map(
        Path,
        _git(
            path, "rev-parse", "--path-format=absolute", "--git-common-dir",
            "--git-path", "config.worktree",
        ).splitlines(),
    )  # fmt: skip
    # info/: what the agent adds to exclude outlives a rollback (ignored files are never
    # cleaned), and attributes change what the diff shows of its work (`*.py -diff`)
    files = (common / "config", wt, common / "info" / "exclude", common / "info" / "attributes")
    found = {str(file): _read(file) for file in (*files, *_global_files())}
    hooks = common / "hooks"
    if hooks.is_dir():
        for entry in sorted(hooks.iterdir()):
            if not entry.name.endswith(".sample") and (content := _read(entry)) is not None:
                found[str(entry)] = content
    return found


def _write(target: Path, content: bytes, mode: int) -> None:
    """Replace ``target`` at once (a git reading it meanwhile sees the old or the new file)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _keys(path: Path | str, content: bytes) -> set[tuple[str, ...]]:
    """``(key, value)`` entries of a config file's text (empty when git cannot read it)."""
    with tempfile.TemporaryDirectory(prefix="specwright-config-") as tmp:
        file = Path(tmp) / "config"
        file.write_bytes(content)
        try:
            out = _git(path, "config", "--file", str(file), "--list", "-z")
        except GitError:
            return set()
    return {tuple(entry.split("\n", 1)) for entry in out.split("\0") if entry}


def _changed_keys(path: Path | str, old: bytes, new: bytes) -> str:
    """The keys (not their values: they may be secrets) whose values differ, as a phrase."""
    changed = {e[0] for e in _keys(path, old) ^ _keys(path, new)}
    return f" (changed: {', '.join(sorted(changed))})" if changed else ""


def snapshot(path: Path | str) -> RepoState:
    """The repository's refs (but those ``restore`` leaves alone), stash entries, config
    files and hooks."""
    out = _git(path, "for-each-ref", "--format=%(objectname) %(refname)")
    refs = {}
    for line in out.splitlines():
        sha, _, ref = line.partition(" ")
        if ref and not _skipped(ref):
            refs[ref] = sha
    stash: list[tuple[str, str]] = []
    if "refs/stash" in (line.partition(" ")[2] for line in out.splitlines()):
        try:
            log = _git(path, "reflog", "show", "--format=%H %gs", "refs/stash", "--")
        except GitError:  # dropped meanwhile (another agent of a parallel run)
            log = ""
        for entry in reversed(log.splitlines()):  # oldest first, as they are stored again
            sha, _, message = entry.partition(" ")
            stash.append((sha, message))
    tips = frozenset(line.partition(" ")[0] for line in out.splitlines() if line)
    return RepoState(refs, tuple(stash), _files(path), tips)


def _had(path: Path | str, sha: str, tips: frozenset[str]) -> bool:
    """Whether the commit ``sha`` names is one the refs ``tips`` reached (the repository had it
    before the agent started)."""
    import subprocess

    lines = "\n".join([sha, *(f"^{tip}" for tip in tips)]) + "\n"
    done = subprocess.run(
        ["git", "rev-list", "--count", "--stdin"],
        cwd=path,
        input=lines,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode == 0 and done.stdout.strip() == "0"


def _checked_out(path: Path | str) -> dict[str, str]:
    """Branches checked out in a worktree: ref -> that worktree's folder."""
    out, here, found = _git(path, "worktree", "list", "--porcelain"), "", {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        if key == "worktree":
            here = value
        elif key == "branch":
            found[value] = here
    return found


def _now(path: Path | str, ref: str) -> str | None:
    try:
        return _git(path, "rev-parse", "--quiet", "--verify", ref) or None
    except GitError:
        return None


def _put_back_ref(path: Path | str, ref: str, old: str | None, new: str | None) -> str:
    """Set ``ref`` back to ``old`` (None: delete it) from ``new``; what was done."""
    name = _named(ref)
    try:
        if new is None:
            _git(path, "update-ref", ref, str(old), _NO_REF)
            return f"{name} put back at {str(old)[:10]} (deleted)"
        if old is None:
            _git(path, "update-ref", "-d", ref, new)
            return f"{name} removed (made at {new[:10]})"
        _git(path, "update-ref", ref, old, new)
        return f"{name} put back at {old[:10]} (moved to {new[:10]})"
    except GitError as exc:
        return "" if _now(path, ref) == old else f"could not put back {name}: {exc}"


def _entries(items: list[Any]) -> str:
    return "entry" if len(items) == 1 else "entries"


def _put_back_stash(path: Path | str, old: tuple[tuple[str, str], ...], new: Any) -> str:
    made = [sha[:10] for sha, m in new if (sha, m) not in old]
    dropped = [entry for entry in old if entry not in new]
    try:
        if new:
            _git(path, "update-ref", "-d", "refs/stash")
        for sha, message in old:  # oldest first: the newest ends as stash@{0}
            _git(path, *_identity(path), "stash", "store", "-m", message, sha)
    except GitError as exc:
        return f"could not put the stash back: {exc}"
    said = [f"{len(dropped)} stash {_entries(dropped)} put back (dropped)"] if dropped else []
    if made:
        shas = ", ".join(made)
        said.append(f"stash {_entries(made)} {shas} removed (`git stash apply SHA` gives it back)")
    return "; ".join(said) or "stash entries put back in their order"


def _put_back_file(path: Path | str, file: str, old: Any, new: Any) -> str:
    target = Path(file)
    what = f"{target.parent.name}/{target.name}"
    if file in _global_names():
        what = file.replace(os.path.expanduser("~"), "~", 1)
    try:
        if old is None:
            target.unlink(missing_ok=True)
            return f"{what} removed (written)"
        keys = _changed_keys(path, old[0], new[0]) if new else ""
        _write(target, *old)
        return f"{what} put back{keys}"
    except OSError as exc:
        return f"could not put back {what}: {exc.strerror or exc}"


def restore(path: Path | str, before: RepoState) -> list[str]:
    """Put back the refs, stash, config and hooks ``before`` had, once an agent has ended in
    the work tree at ``path``; returns what was put back, one phrase each ([] when nothing
    changed). HEAD must be back on the run's branch (``gitops.reattach``) first."""
    with _SETTLING:
        after = snapshot(path)
        done: list[str] = []
        changed = [
            r
            for r in sorted({*before.refs, *after.refs})
            if before.refs.get(r) != after.refs.get(r)
        ]
        busy = _checked_out(path) if changed else {}
        for ref in changed:
            old, new = before.refs.get(ref), after.refs.get(ref)
            if ref in busy:
                done.append(f"left {_named(ref)} as it is: checked out in {busy[ref]}")
            elif old is None and new is not None and _had(path, new, before.tips):
                done.append(f"left {_named(ref)} (made at {new[:10]}, a commit already there)")
            else:
                done.append(_put_back_ref(path, ref, old, new))
        if before.stash != after.stash:
            done.append(_put_back_stash(path, before.stash, after.stash))
        for file in sorted(set(before.files) | set(after.files)):
            old_file, new_file = before.files.get(file), after.files.get(file)
            if old_file != new_file:
                done.append(_put_back_file(path, file, old_file, new_file))
    return [d for d in done if d]


def _quit_operations(path: Path | str) -> list[str]:
    """Forget what the agent left under way (``git rebase --quit``...), the tree as it is: a
    rebase left in progress was the user's to ``--abort``, which moves the branch (none of the
    user's was under way: ``ensure_clean`` refused the run)."""
    done: list[str] = []
    for command in under_way(path):
        try:
            _git(path, command, "--quit")
            done.append(f"a {command} under way forgotten (`git {command} --quit`)")
        except GitError as exc:
            done.append(f"could not forget a {command} under way: {exc}")
    return done


class Watch:
    """The repository as it was before an agent starts in the work tree at ``path`` (on the
    run's ``branch``), to ``settle`` once it has ended, and to ``release`` after that (also when
    its thread was given up on). While agents of one process work in a repository at once (a
    parallel wave), they share the state from before the first of them started: one agent's
    changes, undone by another's settle meanwhile, are then never taken for the user's."""

    def __init__(self, path: Path | str, branch: str | None) -> None:
        self.path, self.branch = path, branch
        self.key, self.failed = "", ""
        self.before: RepoState | None = None
        self.head = ""  # the run's branch: at its base while the agent works
        self.top, self.start = "", ""  # the work tree's top and HEAD before the agent
        self.free: list[str] = []  # git's locks of the work tree not taken before the agent
        try:
            self.top = _git(path, "rev-parse", "--show-toplevel")
            self.start = _git(path, "rev-parse", "--verify", "HEAD")
            self.free = [p for p in lock_paths(path, (branch,)) if not os.path.lexists(p)]
            if branch:
                self.head = _git(path, "rev-parse", "--verify", f"refs/heads/{branch}")
            key = _git(path, "rev-parse", "--path-format=absolute", "--git-common-dir")
            with _SETTLING:
                if key not in _WATCHED:
                    state = snapshot(path)
                    for other, _ in list(_WATCHED.values())[:1]:  # the user's own config as
                        # it was before the agents under way in other repositories started
                        mine = {f: c for f, c in other.files.items() if f in _global_names()}
                        state = replace(state, files={**state.files, **mine})
                    _WATCHED[key] = (state, set())
                self.before, watching = _WATCHED[key]
                watching.add(id(self))
            self.key = key
        except (GitError, OSError) as exc:  # the run goes on: this is said once it has ended
            self.failed = f"could not read the repository before the agent started: {exc}"

    def settle(self, agent_gone: bool = False) -> list[str]:
        """A rebase, merge, cherry-pick or revert the agent left under way forgotten, the run's
        branch back if it deleted it, HEAD back on it (the work tree as the agent left it),
        then ``restore``; what was put back, one phrase each. ``agent_gone``: every process
        the agent started has ended (its adapter waited for them), so a lock of git's that was
        not there when it started is its git's, killed or crashed mid-command: removed first,
        or the rollback and every later run would fail on it."""
        try:
            if self.top and not still_there(self.path, self.top, self.start):
                return []  # its .git deleted: not the repository above to repair (the loop says)
            done = self._drop_locks() if agent_gone else []
            done += _quit_operations(self.path)
            done += [
                f"{rel}/.git removed (a repository made in the work tree: its files stay, "
                "committed as the project's)"
                for rel in unnest(self.path)
            ]
            if self.branch and self.head and not branch_exists(self.path, self.branch):
                ref = f"refs/heads/{self.branch}"
                _git(self.path, "update-ref", ref, self.head, _NO_REF)
                done.append(f"branch {self.branch} put back at {self.head[:10]} (deleted)")
            here = current_branch(self.path)
            if self.branch is not None and here != self.branch:
                reattach(self.path, self.branch)
                done.append(
                    f"HEAD put back on {self.branch} (was on {here or 'a detached commit'})"
                )
            if self.before is None:
                return [*done, self.failed]
            return done + restore(self.path, self.before)
        finally:
            self.release()

    def _drop_locks(self) -> list[str]:
        """Remove the locks in ``free`` that are there now; one that goes within
        ``LOCK_GRACE_S`` was a git of someone else's that took it meanwhile (an editor
        refreshing the index), and is left to it."""
        left = [lock for lock in self.free if os.path.lexists(lock)]
        deadline = time.monotonic() + LOCK_GRACE_S
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = [lock for lock in left if os.path.lexists(lock)]
        done = []
        for lock in left:
            shown = os.path.relpath(lock, self.top) if self.top else lock
            shown = lock if shown.startswith("..") else shown
            try:
                os.unlink(lock)
            except FileNotFoundError:
                continue
            except OSError as exc:
                done.append(f"could not remove {shown}, which the agent's git left: {exc}")
            else:
                done.append(f"{shown} removed (its git left it, killed or crashed mid-command)")
        return done

    def release(self) -> None:
        """This agent is no longer under way (again: no-op)."""
        with _SETTLING:
            entry = _WATCHED.get(self.key)
            if entry is not None:
                entry[1].discard(id(self))
                if not entry[1]:
                    del _WATCHED[self.key]
