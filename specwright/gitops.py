"""Git operations of the loop and run-all: the only module that imports GitPython (lazily).

Every function takes a work-tree path (the project root or a worktree of it). Nothing here ever
touches ignored files (``git clean`` runs without ``-x``), so the database under ``data/`` and
other ignored state survive a rollback; the dirty-tree refusal before a run guarantees that a
rollback never discards the user's own uncommitted work.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from specwright.errors import SpecwrightError, no_pings

if TYPE_CHECKING:
    import git

log = logging.getLogger(__name__)

BRANCH_PREFIX = "specwright/"
CHUNK_TRAILER = "Specwright-Chunk"
_FALLBACK_NAME, _FALLBACK_EMAIL = "Specwright", "specwright@localhost"


# git's words for a full disk (its own, and the system's)
_NO_ROOM = re.compile(r"no space left|out of diskspace|disk quota exceeded", re.IGNORECASE)
# the index another git holds (an editor refreshing it): waited for, up to LOCK_WAIT_S
_LOCKED = re.compile(r"Unable to create '([^']*index\.lock)': File exists")
LOCK_WAIT_S = 5.0


class GitError(SpecwrightError):
    """A git operation failed, or the work tree is not fit for a run."""


class DirtyTreeError(GitError):
    """The work tree has uncommitted changes that a rollback could destroy."""

    def __init__(self, root: Path, files: Sequence[str]) -> None:
        shown = ", ".join(files[:20]) + (f", … ({len(files)} files)" if len(files) > 20 else "")
        super().__init__(
            f"{root}: work tree has uncommitted changes ({shown}); "
            "commit, stash (`git stash -u`: a plain `git stash` leaves untracked files) or "
            "move them first — a failed attempt is rolled back with reset --hard and git clean"
        )
        self.files = list(files)


# --- plumbing -------------------------------------------------------------------------------


def _repo(path: Path | str) -> git.Repo:
    import git

    p = Path(path)
    if not p.is_dir():
        raise GitError(f"{p}: not a directory")
    try:
        return git.Repo(p, search_parent_directories=False)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        try:  # a subdirectory of a repository is fine too
            return git.Repo(p, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise GitError(f"{p}: not a git repository (run `git init` first)") from None


@contextmanager
def _open(path: Path | str) -> Iterator[git.Repo]:
    repo = _repo(path)
    try:
        yield repo
    finally:
        repo.close()


def _git(path: Path | str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run ``git args`` in ``path``; a failure becomes a one-line ``GitError``."""
    import git

    if not Path(path).is_dir():
        raise GitError(f"{path}: not a directory")
    waited, delay = 0.0, 0.02
    while True:
        try:
            cmd = git.Git(str(path))
            return str(cmd.execute(["git", *args], env=env, strip_newline_in_stdout=True))
        except git.GitCommandError as exc:
            err = str(exc.stderr or exc.stdout or "").strip().replace("\n", " ")
            err = err.removeprefix("stderr: ")  # GitPython's, around git's own words
            err = (err[1:-1] if len(err) > 1 and err[0] == err[-1] == "'" else err).strip()
            held = _LOCKED.search(err)
            if held is None:
                raise GitError(f"git {' '.join(args[:3])} in {path}: {err or exc}") from None
        if waited >= LOCK_WAIT_S:  # git refused before it changed anything: safe to try again
            raise GitError(
                f"git {' '.join(args[:3])} in {path}: {held[1]} is held by another git process "
                f"(an editor's git integration?) for over {LOCK_WAIT_S:g}s; if no git command "
                "is running, delete it (a git process that crashed left it)"
            )
        time.sleep(delay)
        waited, delay = waited + delay, min(delay * 2, 0.5)


def root_of(path: Path | str) -> Path:
    """The top of the work tree containing ``path``."""
    with _open(path) as repo:
        if repo.working_tree_dir is None:
            raise GitError(f"{path}: a bare repository has no work tree")
        return Path(repo.working_tree_dir)


def head_commit(path: Path | str) -> str:
    """The full sha of HEAD; a repository without commits is an error."""
    try:
        return _git(path, "rev-parse", "--verify", "HEAD")
    except GitError:
        raise GitError(f"{path}: repository has no commits yet; commit something first") from None


def current_branch(path: Path | str) -> str | None:
    """The checked-out branch name, or None on a detached HEAD."""
    try:
        return _git(path, "symbolic-ref", "--quiet", "--short", "HEAD") or None
    except GitError:
        return None


def branch_exists(path: Path | str, branch: str) -> bool:
    try:
        _git(path, "show-ref", "--verify", "--quiet", f"refs/heads/{branch}")
    except GitError:
        return False
    return True


def spec_branch(slug: str) -> str:
    """The branch a spec's chunks are committed on."""
    return f"{BRANCH_PREFIX}{slug}"


# --- state checks ---------------------------------------------------------------------------


def dirty_files(path: Path | str) -> list[str]:
    """Modified, staged, deleted and untracked (not ignored) paths, relative to the root."""
    # every change in a submodule too, whatever .gitmodules' `ignore` says: a rollback resets them
    out = _git(
        path, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignore-submodules=none"
    )
    files: list[str] = []
    entries = out.split("\0")
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        status, name = entry[:2], entry[3:]
        if "R" in status or "C" in status:
            i += 1  # the next entry is the rename's source
        files.append(name)
    return files


def hidden_changes(path: Path | str) -> list[str]:
    """Tracked files marked ``assume-unchanged`` (``git update-index``) that differ from the
    index: ``git status`` does not show them, but ``reset --hard`` overwrites them."""
    root = _git(path, "rev-parse", "--show-toplevel")
    # `ls-files -v` tags an assume-unchanged file with a lowercase letter
    marked = [e[2:] for e in _git(root, "ls-files", "-v", "-z").split("\0") if e[:1].islower()]
    if not marked:
        return []
    wanted, staged = set(marked), {}
    for entry in _git(root, "ls-files", "-s", "-z").split("\0"):
        info, _, name = entry.partition("\t")
        # regular files only: a symlink's or a submodule's hash is not its content's
        if name in wanted and info.startswith("100"):
            staged[name] = info.split()[1]
    present = [m for m in staged if os.path.isfile(os.path.join(root, m))]
    now: dict[str, str] = {}
    for i in range(0, len(present), 200):  # a bounded command line
        batch = present[i : i + 200]
        now.update(zip(batch, _git(root, "hash-object", "--", *batch).splitlines(), strict=True))
    return [m for m in staged if now.get(m) != staged[m]]


def lock_paths(path: Path | str, branches: Sequence[str | None] = ()) -> list[str]:
    """Where git's own locks of the work tree at ``path`` go (absolute): its index's, its
    HEAD's, its checked-out branch's and those of ``branches`` (names under refs/heads/)."""
    refs = {f"refs/heads/{b}" for b in branches if b}
    with contextlib.suppress(GitError):  # a detached HEAD has no branch to lock
        refs.add(_git(path, "symbolic-ref", "-q", "HEAD"))
    args = ["--git-path", "index.lock", "--git-path", "HEAD.lock"]
    for ref in sorted(refs):
        args += ["--git-path", f"{ref}.lock"]
    return _git(path, "rev-parse", "--path-format=absolute", *args).splitlines()


def ensure_unlocked(path: Path | str) -> None:
    """Refuse to go on while git's own locks (the index, HEAD, the current branch) are taken:
    a git command is running, or one was killed (kill -9, a crash) and left its lock behind.
    Every commit, checkout and merge of the run would fail on it, after its agents' work."""
    locks = lock_paths(path)
    deadline = time.monotonic() + LOCK_WAIT_S
    while held := [lock for lock in locks if os.path.exists(lock)]:
        if time.monotonic() >= deadline:
            raise GitError(
                f"{held[0]} is held by another git process (an editor's git integration?) for "
                f"over {LOCK_WAIT_S:g}s; if no git command is running, delete it (a git process "
                "that crashed or was killed left it)"
            )
        time.sleep(0.1)


# what a git command stopped midway leaves in a work tree's git folder, and that command
UNDER_WAY = (
    ("rebase-merge", "rebase"),
    ("rebase-apply", "rebase"),
    ("MERGE_HEAD", "merge"),
    ("sequencer", "cherry-pick"),
    ("CHERRY_PICK_HEAD", "cherry-pick"),
    ("REVERT_HEAD", "revert"),
)


def under_way(path: Path | str, states: Sequence[tuple[str, str]] = UNDER_WAY) -> list[str]:
    """The commands of ``states`` (``UNDER_WAY``) stopped midway in the work tree at ``path``
    (a rebase at an ``edit`` or a conflict...), in that order, each once."""
    asked = [arg for name, _ in states for arg in ("--git-path", name)]
    found = _git(path, "rev-parse", "--path-format=absolute", *asked).splitlines()
    return list(
        dict.fromkeys(c for (_, c), f in zip(states, found, strict=True) if os.path.exists(f))
    )


def ensure_nothing_under_way(path: Path | str) -> None:
    """Refuse to go on while the user's rebase, merge, cherry-pick, revert or bisect is stopped
    midway: the run would check out another branch and quit it, its state lost."""
    for command in under_way(path, (*UNDER_WAY, ("BISECT_LOG", "bisect"))):
        how = (
            "end it (`git bisect reset`)"
            if command == "bisect"
            else f"finish it (`git {command} --continue`) or abort it (`git {command} --abort`)"
        )
        raise GitError(f"{root_of(path)}: a {command} is under way; {how}, then run again")


def ensure_clean(path: Path | str) -> None:
    """Refuse to go on when the work tree has uncommitted changes (naming the files), a git
    command stopped midway (``ensure_nothing_under_way``) or git's locks are taken
    (``ensure_unlocked``)."""
    ensure_unlocked(path)
    ensure_nothing_under_way(path)
    files = dirty_files(path) + [
        f"{name} (marked assume-unchanged: git status hides it)" for name in hidden_changes(path)
    ]
    if files:
        raise DirtyTreeError(root_of(path), files)


def is_ignored(path: Path | str, target: Path | str) -> bool:
    """Whether ``target`` (inside the work tree of ``path``) is git-ignored."""
    root = root_of(path)
    try:
        rel = Path(target).resolve().relative_to(root.resolve())
    except ValueError:
        return True  # outside the work tree: git never touches it
    return _ignored(root, str(rel))


def ensure_outside_or_ignored(path: Path | str, targets: Sequence[Path | str]) -> None:
    """Refuse when a file Specwright keeps (the database, journals) is inside the work tree
    without being git-ignored: a rollback's ``git clean`` would delete it."""
    root = root_of(path)
    for target in targets:
        if not is_ignored(root, target):
            rel = Path(target).resolve().relative_to(root.resolve())
            top = rel.parts[0] if rel.parts else str(rel)
            raise GitError(
                f"{target}: inside the repository {root} but not git-ignored; a rollback "
                f"would delete it — add `{top}/` to {root / '.gitignore'} and commit that"
            )


# --- branches and commits -------------------------------------------------------------------


def reattach(path: Path | str, branch: str | None) -> None:
    """Put HEAD back on ``branch`` when an agent checked out another branch or commit, leaving
    the work tree as it is: what it committed there is in the attempt's diff against the base,
    and goes into the chunk's commit on ``branch`` if it ships."""
    here = current_branch(path)
    if branch is None or here == branch:
        return
    _git(path, "symbolic-ref", "HEAD", f"refs/heads/{branch}")
    log.warning("the agent switched to %s: its work goes back to %s", here or "a commit", branch)


def _configured(path: Path | str, key: str) -> bool:
    """Whether the user gave git a ``user.<key>``: in its config, or for both author and
    committer in the environment (an email also as ``EMAIL``, which git reads too)."""
    env = os.environ
    if env.get(f"GIT_AUTHOR_{key.upper()}") and env.get(f"GIT_COMMITTER_{key.upper()}"):
        return True
    if key == "email" and env.get("EMAIL"):
        return True
    try:
        return bool(_git(path, "config", f"user.{key}"))
    except GitError:
        return False


def _identity(path: Path | str) -> tuple[str, ...]:
    """``-c`` options giving a commit an identity where the user set none: an email (git's
    own guess may be refused), and a name only when there is none either; what the user set
    (a name without an email, say) is never replaced."""
    if _configured(path, "email"):
        return ()
    name = () if _configured(path, "name") else ("-c", f"user.name={_FALLBACK_NAME}")
    return (*name, "-c", f"user.email={_FALLBACK_EMAIL}")


# Control characters (but tab and newline) in a message: a chunk's title and an agent's summary
# are untrusted text, and `git log` prints a message to the terminal as it is
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
MAX_BODY_CHARS = 8000


def _plain(text: str) -> str:
    return _CONTROL.sub("?", text)


def commit_message(title: str, chunk_id: str, body: str = "") -> str:
    """A commit message: the chunk title, an optional body (at most ``MAX_BODY_CHARS``), and the
    chunk trailer; control characters show as '?'."""
    subject = _plain(" ".join(title.split()))[:72] or "Specwright chunk"
    parts = [subject]
    body = no_pings(_plain(body.strip()))  # the agent's: no "Fixes #1" closing an issue
    if len(body) > MAX_BODY_CHARS:
        body = body[:MAX_BODY_CHARS].rstrip() + "\n[... cut]"
    if body:
        parts.append(body)
    parts.append(f"{CHUNK_TRAILER}: {chunk_id}")
    return "\n\n".join(parts) + "\n"


def commit_all(
    path: Path | str, title: str, chunk_id: str, body: str = "", base: str = "HEAD"
) -> str:
    """Stage every change (ignored files excluded) and commit it on ``base`` (an ancestor of
    HEAD: the commits the agent made after it are squashed into this one); returns the sha."""
    # what the agent staged itself (a `git add -f .env`) is not staged, nor what it committed
    _git(path, "reset", "--quiet", base)
    _git(path, "add", "--all")
    identity = _identity(path)
    try:
        fd, msg_file = tempfile.mkstemp(prefix="specwright-msg-", suffix=".txt")
    except OSError as exc:
        raise _no_room("commit", path, exc) from None
    try:
        with open(fd, "w", encoding="utf-8") as fh:
            fh.write(commit_message(title, chunk_id, body))
        _git(path, *identity, "commit", "--quiet", "--no-verify", "--allow-empty", "-F", msg_file)
    except OSError as exc:  # a full disk: the message did not fit (the file goes all the same)
        raise _no_room("commit", path, exc) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(msg_file)
    return head_commit(path)


def _no_room(what: str, path: Path | str, exc: OSError) -> GitError:
    return GitError(
        f"cannot {what} in {path}: a temporary file in {tempfile.gettempdir()} could not be "
        f"written ({exc.strerror or exc})"
    )


def chunk_commits(path: Path | str, chunk_id: str, rev: str = "HEAD") -> list[str]:
    """Commits reachable from ``rev`` whose message carries ``Specwright-Chunk: <chunk_id>``."""
    out = _git(
        path, "log", "--format=%H", "--fixed-strings", f"--grep={CHUNK_TRAILER}: {chunk_id}", rev
    )
    return [line for line in out.splitlines() if line]


def head_moved_at(path: Path | str, away_from: str) -> int | None:
    """When HEAD was last checked out elsewhere, if that was away from the branch ``away_from``
    (Unix seconds, from its reflog: commits made there since are later entries); None
    otherwise, or when there is no reflog."""
    try:
        log = _git(path, "reflog", "show", "--date=unix", "--format=%gd %gs", "-n", "100", "HEAD")
    except GitError:
        return None
    for entry in log.splitlines():
        found = re.match(r"\S*@\{(\d+)\} checkout: moving from (.+?) to ", entry)
        if found:
            return int(found[1]) if found[2] == away_from else None
    return None


def commit_times(path: Path | str, base: str, head: str = "HEAD") -> list[int]:
    """When the commits from ``base`` to ``head`` were committed (Unix seconds)."""
    return [int(t) for t in _git(path, "log", "--format=%ct", f"{base}..{head}").split()]


def commits_between(path: Path | str, base: str, head: str = "HEAD") -> list[str]:
    """The commits reachable from ``head`` and not from ``base``, newest first."""
    return [line for line in _git(path, "rev-list", f"{base}..{head}").splitlines() if line]


_SUBMODULE_ROLLBACK = "git reset --quiet --hard && git clean --quiet -f -f -d"


def empty_dirs(path: Path | str) -> tuple[str, ...]:
    """The untracked folders holding no file (from the top): git status does not show them,
    so a clean tree may have them, and a rollback's ``git clean -d`` would delete them."""
    root = Path(_git(path, "rev-parse", "--show-toplevel"))
    listed = ("ls-files", "--others", "--exclude-standard", "--directory", "-z")
    tops = set(_git(root, *listed).split("\0")) - set(
        _git(root, *listed, "--no-empty-directory").split("\0")
    )
    found: list[str] = []
    for top in sorted(t for t in tops if t.endswith("/")):
        for folder, _, _ in os.walk(root / top):
            found.append(Path(folder).relative_to(root).as_posix())
    return tuple(found)


def rollback(
    path: Path | str, base: str, keep: Sequence[str] = (), branch: str | None = None
) -> None:
    """Reset the work tree and index to ``base`` and delete untracked files (never ignored
    ones), in submodules too: every trace of an attempt is gone, but for the empty folders
    ``keep`` names (``empty_dirs`` before the run: the user's). ``branch``: the run's, which
    HEAD is put back on first (``reattach``), so the branch an agent switched to (the user's
    ``main``) is never the one reset. When the reset finds no room for the index (the attempt
    filled the disk), the untracked files go first and it is tried again."""
    reattach(path, branch)
    # -f twice: a repository the attempt cloned or created goes too (one that was there before
    # the run is untracked, so ensure_clean refused the run, or ignored, so clean skips it)
    clean = ("clean", "--quiet", "-f", "-f", "-d")
    try:
        _git(path, "reset", "--quiet", "--hard", base)
    except GitError as exc:
        if not _NO_ROOM.search(str(exc)):
            raise  # a stale index.lock, say: the tree is left as it is, all of it
        _git(path, *clean)
        _git(path, "reset", "--quiet", "--hard", base)
    _git(path, *clean)
    # a submodule is a repository of its own, which the two above leave as the attempt left it
    # (clean before the run, as ensure_clean saw it; its checked-out branch stays)
    _git(path, "submodule", "--quiet", "foreach", "--recursive", _SUBMODULE_ROLLBACK)
    if keep:
        root = Path(_git(path, "rev-parse", "--show-toplevel"))
        for folder in keep:
            with contextlib.suppress(OSError):  # a file of the same name took its place
                (root / folder).mkdir(parents=True, exist_ok=True)


def unnest(path: Path | str) -> list[str]:
    """Delete the ``.git`` of each repository made inside the work tree at ``path`` (an
    agent's ``git init`` or ``git clone``; untracked, not ignored): ``git add`` refuses one
    without a commit and stores one with commits as a bare pointer, its files in no commit
    of the project's. Its files stay, the project's to diff and commit. Returns the folders
    (from the top). A repository there before the run was untracked: ``ensure_clean``
    refused the run."""
    root = Path(_git(path, "rev-parse", "--show-toplevel"))
    out = _git(root, "ls-files", "--others", "--exclude-standard", "-z")
    done: list[str] = []
    for rel in (p for p in out.split("\0") if p.endswith("/")):  # git does not go into one
        dot_git = root / rel / ".git"
        try:
            if dot_git.is_dir() and not dot_git.is_symlink():
                shutil.rmtree(dot_git)
            else:
                dot_git.unlink()
        except FileNotFoundError:
            continue
        done.append(rel.rstrip("/"))
    return done


def drop_new_files(
    path: Path | str, kept: Sequence[str], spare: Sequence[Path | str] = ()
) -> list[str]:
    """Delete the untracked (not ignored) files of the work tree at ``path`` that are not in
    ``kept``: what verification left (``__pycache__``, a report) is not the agent's work and
    must not be committed as it. ``spare``: files and folders never deleted, whatever
    .gitignore says (the database). Returns the paths deleted, relative to the root."""
    root = Path(_git(path, "rev-parse", "--show-toplevel"))
    keep = set(kept)
    out = _git(root, "ls-files", "--others", "--exclude-standard", "-z", *_but(root, spare))
    dropped = [p for p in out.split("\0") if p and p not in keep]
    for rel in dropped:
        try:
            (root / rel).unlink()
        except OSError:  # a repository a step created, a folder: left to the rollback
            continue
    return dropped


# --- diffs ----------------------------------------------------------------------------------


def _but(path: Path | str, exclude: Sequence[Path | str]) -> list[str]:
    """Pathspecs for the whole work tree at ``path`` but ``exclude`` (files or folders, each
    with what is under it) where git does not ignore them (`git add` refuses a pathspec that
    names an ignored path); [] when there is nothing to leave out."""
    top = Path(_git(path, "rev-parse", "--show-toplevel")).resolve()
    rels = []
    for target in exclude:
        with contextlib.suppress(ValueError):  # outside: git never sees it
            rels.append(Path(target).resolve().relative_to(top).as_posix())
    specs = [f":(top,exclude,literal){r}" for r in rels if r != "." and not _ignored(top, r)]
    return ["--", ":/", *specs] if specs else []


def _ignored(top: Path, rel: str) -> bool:
    try:
        _git(top, "check-ignore", "-q", "--no-index", "--", rel)
    except GitError:  # exit 1: not ignored
        return False
    return True


def prefix_of(path: Path | str) -> str:
    """Where ``path`` is in its work tree, from the top: ``packages/app/``, or ``""``."""
    return _git(path, "rev-parse", "--show-prefix")


def committed_files(path: Path | str, base: str, head: str = "HEAD") -> list[str]:
    """Paths changed between two commits."""
    out = _git(path, "diff", "--name-only", "-z", "--no-renames", base, head)
    return [n for n in out.split("\0") if n]


# --- ancestry -----------------------------------------------------------------------------------


def still_there(path: Path | str, top: Path | str, sha: str) -> bool:
    """Whether ``path`` is still in the work tree at ``top``, whose repository has the commit
    ``sha``: not once an agent deleted its .git (git then finds the repository above it: the
    project's own, for the worktree of a parallel run) or made another (``git init``)."""
    try:
        here = _git(path, "rev-parse", "--show-toplevel")
        _git(path, "cat-file", "-e", f"{sha}^{{commit}}")
    except GitError:
        return False
    return Path(here).resolve() == Path(top).resolve()


def is_ancestor(path: Path | str, ancestor: str, descendant: str) -> bool:
    try:
        _git(path, "merge-base", "--is-ancestor", ancestor, descendant)
    except GitError:
        return False
    return True


def tracked_files(path: Path | str) -> list[str]:
    """Paths git tracks in the work tree at ``path`` (empty outside a repository)."""
    try:
        out = _git(path, "ls-files", "-z")
    except GitError:
        return []
    return [p for p in out.split("\0") if p]


def remote_url(path: Path | str, remote: str) -> str:
    """The fetch URL of ``remote`` (a clear error if there is no such remote)."""
    try:
        return _git(path, "remote", "get-url", remote)
    except GitError:
        raise GitError(
            f"{root_of(path)}: no git remote named {remote!r} (add one with `git remote add`)"
        ) from None


def push(path: Path | str, remote: str, branch: str) -> None:
    """Push ``branch`` to ``remote`` (same name there), setting its upstream."""
    _git(path, "push", "--quiet", "--set-upstream", remote, f"{branch}:{branch}")
