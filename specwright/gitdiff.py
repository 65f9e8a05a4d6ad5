"""An attempt's diff (what the checks and the reviewer are shown) and its saved patch (what
``git apply`` gives back), bounded whatever the agent wrote.

Both stage the work tree in a scratch index and a scratch object store, never the real ones:
a rolled-back attempt leaves nothing in ``.git/objects``. A new file over ``MAX_FILE_BYTES``
(an agent that wrote 80 MB of text) is never staged: git would read and compress it for
nothing, its whole text being over the bounds. It is named instead. git writes the diff to a temporary file,
read from there a bounded piece at a time: memory stays bounded by the diff's limit, never by
the size of the files.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from specwright.gitops import _but, _git, _no_room, prefix_of

MAX_FILE_BYTES = 16 * 2**20  # a bigger new file is named in a diff, never staged nor read
_PIECE = 2**16  # read at a time from git's output


@dataclass(frozen=True)
class Diff:
    """What an attempt changed relative to a commit: unified diff text and the paths touched."""

    text: str
    files: tuple[str, ...] = ()  # from the top of the repository
    truncated: bool = False
    prefix: str = ""  # the folder the diff was taken in, from the top ("" there)

    @property
    def empty(self) -> bool:
        return not self.files

    @property
    def local_files(self) -> tuple[str, ...]:
        """``files`` from the folder the diff was taken in, as a project in a subfolder of its
        repository names them (``../`` for a file outside it)."""
        return tuple(posixpath.relpath(f, self.prefix) if self.prefix else f for f in self.files)


def _size(path: Path) -> int:
    try:
        st = os.lstat(path)
    except OSError:  # deleted
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


@contextmanager
def _staged(
    path: Path | str, exclude: Sequence[Path | str]
) -> Iterator[tuple[dict[str, str], Path, dict[str, int]]]:
    """A scratch index holding the work tree as ``commit_all`` would stage it (not what the
    agent staged itself), but ``exclude`` and the new files over ``MAX_FILE_BYTES``: yields git's
    environment for it, a scratch folder, and those big files (from the top) with their size."""
    where = ("rev-parse", "--path-format=absolute", "--git-path", "index", "--git-path", "objects")
    real_index, objects = map(Path, _git(path, *where).splitlines())
    tmp: str | None = None
    try:
        tmp = tempfile.mkdtemp(prefix="specwright-idx-")
        index = Path(tmp) / "index"
        (Path(tmp) / "objects").mkdir()
        if real_index.exists():
            shutil.copyfile(real_index, index)
    except OSError as exc:  # a full disk: the copy of the index does not fit
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise _no_room("diff", path, exc) from None
    try:
        # and a scratch object store, the real one read through it: the blobs of an attempt
        # rolled back (20,000 files of a node_modules) are not left loose in .git/objects
        alternates = [_alternate(objects), os.environ.get("GIT_ALTERNATE_OBJECT_DIRECTORIES")]
        env = {
            "GIT_INDEX_FILE": str(index),
            "GIT_OBJECT_DIRECTORY": str(Path(tmp) / "objects"),
            "GIT_ALTERNATE_OBJECT_DIRECTORIES": ":".join(a for a in alternates if a),
        }
        _git(path, "reset", "--quiet", env=env)  # as commit_all: not what the agent staged
        top = Path(_git(path, "rev-parse", "--show-toplevel"))
        spec = _but(top, exclude) or ["--", ":/"]
        # new files only: a big one the project tracks may have a line changed, a hunk to show
        listed = ("ls-files", "-z", "--others", "--exclude-standard", *spec)
        sizes = {n: _size(top / n) for n in _git(top, *listed, env=env).split("\0") if n}
        big = {n: size for n, size in sorted(sizes.items()) if size > MAX_FILE_BYTES}
        skip = [f":(top,exclude,literal){n}" for n in big]
        _git(path, "add", "--all", *spec, *skip, env=env)
        yield env, Path(tmp), big
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _alternate(folder: Path) -> str:
    """``folder`` as an entry of GIT_ALTERNATE_OBJECT_DIRECTORIES (quoted, C-style, when it
    holds its separator)."""
    text = str(folder)
    if ":" not in text and not text.startswith('"'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _listed(names: list[str]) -> str:
    """Up to 20 of ``names``, then how many there are."""
    return ", ".join(names[:20]) + (f", … ({len(names)} files)" if len(names) > 20 else "")


def _big_note(big: dict[str, int]) -> str:
    if not big:
        return ""
    shown = _listed([f"{n} ({s / 2**20:.1f} MiB)" for n, s in big.items()])
    return f"specwright: left out, over {MAX_FILE_BYTES / 2**20:g} MiB each: {shown}\n"


def diff(
    path: Path | str,
    base: str,
    *,
    max_chars: int | None = 200_000,
    exclude: Sequence[Path | str] = (),
) -> Diff:
    """The work tree (tracked and new untracked files) against ``base``, without touching the
    real index; at most ``max_chars`` bytes of it (None: all), cut there and said so; new files over
    ``MAX_FILE_BYTES`` named at its top, not diffed. ``exclude``: files and folders never in it,
    nor hashed into ``.git/objects``, whatever .gitignore says (the database and journals, when
    an agent's .gitignore stops ignoring them)."""
    with _staged(path, exclude) as (env, tmp, big):
        names = _git(path, "diff", "--cached", "--name-only", "-z", "--no-renames", base, env=env)
        out = tmp / "diff"
        how = ("--cached", "--no-color", "--no-ext-diff", f"--output={out}")
        _git(path, "diff", *how, base, env=env)
        size = out.stat().st_size
        with out.open("rb") as fh:
            data = fh.read(size if max_chars is None else max_chars)
    # a Latin-1 file's bytes (or a cut through a character) show as U+FFFD
    text = _big_note(big) + data.decode("utf-8", "replace")
    truncated = len(data) < size
    if truncated:
        text += f"\n…[diff truncated: {size} bytes]\n"
    files = tuple(sorted({n for n in names.split("\0") if n} | set(big)))
    return Diff(text=text, files=files, truncated=truncated, prefix=prefix_of(path))


def _sections(fh: Iterator[bytes]) -> Iterator[tuple[int, bytes]]:
    """Where each file's part of a patch starts (byte offset) and its ``diff --git`` line
    (cut at ``_PIECE``), read a bounded piece at a time; offset 0 first (what precedes)."""
    yield 0, b""
    offset, at_start = 0, True
    for piece in fh:
        if at_start and piece.startswith(b"diff --git "):
            yield offset, piece.rstrip(b"\n")
        offset += len(piece)
        at_start = piece.endswith(b"\n")


def save_patch(
    path: Path | str,
    base: str,
    dest: Path,
    *,
    max_bytes: int,
    exclude: Sequence[Path | str] = (),
    prefix: str = "",
) -> bool:
    """Write the work tree's change against ``base`` to ``dest`` as a patch ``git apply`` gives
    back, binary files too, of at most ``max_bytes``: the files that would take it over, and
    the new ones over ``MAX_FILE_BYTES``, are left out and named at its top (git apply skips it).
    ``prefix``: put before every path (a submodule's folder, for a patch applied above it).
    False when there was no change (nothing written)."""
    with _staged(path, exclude) as (env, tmp, big):
        out = tmp / "diff"
        how = ("--cached", "--no-color", "--no-ext-diff", "--binary", f"--output={out}")
        paths = (f"--src-prefix=a/{prefix}", f"--dst-prefix=b/{prefix}")
        _git(path, "diff", *how, *paths, base, env=env)
        size = out.stat().st_size
        if not size and not big:
            return False
        with out.open("rb") as fh:
            starts = list(_sections(iter(lambda: fh.readline(_PIECE), b"")))
        kept, left, total = [], [], 0
        for (start, header), (end, _) in zip(starts, [*starts[1:], (size, b"")], strict=True):
            if total + end - start > max_bytes:
                left.append(header.decode("utf-8", "replace").removeprefix("diff --git "))
            elif end > start:
                kept.append((start, end))
                total += end - start
        dest.parent.mkdir(parents=True, exist_ok=True)
        with out.open("rb") as src, dest.open("wb") as dst:
            if left:
                mib = f"{max_bytes / 2**20:g}"
                dst.write(
                    f"specwright: left out, over the {mib} MiB kept: {_listed(left)}\n".encode()
                )
            dst.write(_big_note(big).encode())
            dst.write(b"\n" if left or big else b"")
            for start, end in kept:
                src.seek(start)
                while start < end:
                    piece = src.read(min(_PIECE, end - start))
                    dst.write(piece)
                    start += len(piece)
    return True
