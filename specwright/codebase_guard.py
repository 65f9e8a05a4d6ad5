"""What of a project the codebase context may read into the planner's prompt (a remote model).

Only the few files the analysis reads (README, pyproject.toml, package.json, go.mod, Makefile)
reach the prompt as text. A cloned repository is untrusted: its README.md may be a link to the
user's own git-ignored ``.env`` or ``~/.ssh/id_rsa``. ``withheld`` names the top-level files
whose text must not be read, and why; ``read`` reads only regular files inside the root;
``redacted`` cuts the values of secret environment variables out of what is shown.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

from specwright.redact import Redactor

log = logging.getLogger("specwright.codebase")

# names of files that hold keys and passwords by convention: never read into a prompt
SECRET_NAMES = (
    ".env", ".env.*", "*.env", ".npmrc", ".pypirc", ".netrc", ".git-credentials", ".htpasswd",
    "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", "*.pem", "*.key", "*.p12", "*.pfx",
    "credentials*", "secrets*", "*.tfvars", ".dockercfg",
)  # fmt: skip
# the top-level files whose text the analysis reads (and README*)
READ_NAMES = ("pyproject.toml", "package.json", "go.mod", "Makefile", "makefile", "GNUmakefile")


def secret_name(rel: str) -> bool:
    """Whether a file at ``rel`` may hold a secret by its name (``.env``, ``id_rsa``...)."""
    name = rel.rsplit("/", 1)[-1].lower()
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in SECRET_NAMES)


_TEXT_SUFFIXES = ("md", "markdown", "rst", "txt", "adoc", "asciidoc", "org", "readme")


def readmes(top: list[str]) -> list[str]:
    """The top-level files named README*, text first (README.md before README-banner.png), the
    plainest name first (README.md before README.zh-CN.md)."""
    found = [p for p in top if p.lower().startswith("readme")]
    return sorted(
        found, key=lambda p: (p.lower().rsplit(".", 1)[-1] not in _TEXT_SUFFIXES, len(p), p)
    )


def regular_file(
    root: Path, rel: str, dirs: dict[str, str] | None = None
) -> tuple[str, int] | None:
    """The real path and size of ``rel`` if it is a regular file inside ``root``: a symlink out
    of an untrusted repo (README.md -> ~/.ssh/id_rsa) must not reach the prompt, nor a FIFO hang.
    ``dirs`` keeps the real paths of folders for one pass over many files (a 50,000-file tree
    resolved every folder of every path again: most of its analysis time)."""
    dirs = {} if dirs is None else dirs
    folder, _, name = rel.rpartition("/")
    try:
        if "" not in dirs:
            dirs[""] = os.path.realpath(root)
        if folder not in dirs:
            dirs[folder] = os.path.realpath(os.path.join(root, folder))
        real = os.path.join(dirs[folder], name)
        if os.path.islink(real):
            real = os.path.realpath(real)
        st = os.stat(real)
    except (OSError, ValueError):
        return None
    base = dirs[""]
    if not stat.S_ISREG(st.st_mode) or os.path.commonpath([base, real]) != base:
        return None
    return real, st.st_size


def read(root: Path, rel: str, limit: int = 256 * 1024) -> str | None:
    """At most ``limit`` bytes of ``rel`` as text, if it is a regular file inside ``root``."""
    found = regular_file(root, rel)
    if found is None:
        return None
    try:
        with open(found[0], "rb") as fh:
            return fh.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def withheld(root: Path, paths: list[str]) -> dict[str, str]:
    """The top-level files of ``paths`` (the ones the analysis reads) whose text must not reach
    the prompt, each with why: a link to a file the listing leaves out (git-ignored, untracked,
    outside the project) or to one whose name says it holds secrets. Each is warned about."""
    listed = set(paths)
    base = os.path.realpath(root)
    out: dict[str, str] = {}
    for rel in paths:
        if "/" in rel or not (rel in READ_NAMES or rel.lower().startswith("readme")):
            continue
        try:
            real = os.path.realpath(os.path.join(root, rel))
        except (OSError, ValueError):
            continue
        target = os.path.relpath(real, base).replace(os.sep, "/")
        if target == rel:
            continue
        if target not in listed:
            why = f"it links to {target}, which is not one of the project's files (ignored?)"
        elif secret_name(target):
            why = f"it links to {target}, whose name says it may hold secrets"
        else:
            continue  # a link to another listed file (README.md -> docs/README.md)
        out[rel] = why
        log.warning("%s: left out of the planner's codebase context: %s", rel, why)
    return out


def redacted(summary: Any, redact: Redactor) -> Any:
    """``summary`` (a ``codebase.Summary``) with the values of secret environment variables cut
    out of all it shows: a key pasted in the README or a commit subject, a file named after one."""
    if not redact:
        return summary
    keys = [
        replace(k, path=redact(k.path), why=redact(k.why), excerpt=redact.lines(k.excerpt))
        for k in summary.key_files
    ]
    commands = {kind: [redact(c) for c in cmds] for kind, cmds in summary.commands.items()}
    return replace(
        summary,
        paths=[redact(p) for p in summary.paths],
        commands=commands,
        key_files=keys,
        commits=[redact(c) for c in summary.commits],
    )


def printable(text: str) -> str:
    """A name from the project (a file's, a package.json script's) as one line of the prompt: a
    newline must not forge a line of the summary, a non-UTF-8 byte not stop the request."""
    return "".join(c if c.isprintable() else "?" for c in text)
