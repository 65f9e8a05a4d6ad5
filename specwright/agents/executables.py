"""Finding an agent's program and telling whether the system can start it, before it runs.

``find_executable`` looks where an adapter's program may be (an environment variable, the
executor's ``path``, PATH); ``unrunnable`` says why a file cannot be started (missing, a
directory, no execute bit, no ``#!`` line); ``version_of`` runs ``--version`` for `agents list`.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Mapping

from specwright.errors import AgentStartError

NOT_A_PROGRAM = "not a program this system can run (a script needs a #! line)"  # ENOEXEC
MAX_VERSION_CHARS = 200  # of the first line `--version` prints: it is the program's output


def which(name: str, path: str | None = None) -> str | None:
    """``shutil.which`` (kept here so adapters share one lookup)."""
    import shutil

    return shutil.which(name, path=path)


def is_executable(path: str) -> bool:
    """True when ``path`` is an existing executable file."""
    return os.path.isfile(path) and os.access(path, os.X_OK)


def unrunnable(path: str) -> str | None:
    """Why the system could not start the file ``path`` as a program, or None when it can, as
    far as can be told without running it: missing, a directory, not executable, a script
    whose ``#!`` interpreter is missing (exec's ENOENT), or (on Linux) neither a script nor an
    ELF binary, which exec refuses (ENOEXEC)."""
    if not os.path.exists(path):
        return "no executable file there"
    if os.path.isdir(path):
        return "a directory, not a program"
    if not os.path.isfile(path):
        return "not a regular file, not a program"
    if not os.access(path, os.X_OK):
        return "not executable (chmod +x it)"
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError:  # execute-only (mode 111): the system may still run it
        return None
    if head.startswith(b"#!"):
        words = head[2:].split(b"\n")[0].split()
        if words and not os.path.exists(words[0]):
            return missing_interpreter(words[0].decode(errors="replace"))
    elif sys.platform.startswith("linux") and not head.startswith(b"\x7fELF"):
        return NOT_A_PROGRAM
    return None


def missing_interpreter(interpreter: str) -> str:
    """Why a script whose ``#!`` names a program that is not there cannot start."""
    return f"a script whose #! line names {interpreter}, which does not exist"


def why_not_started(executable: str, exc: OSError) -> str | None:
    """What exec's error ``exc`` means for ``executable``, when no retry could change it."""
    if exc.errno == errno.ENOEXEC:
        return NOT_A_PROGRAM
    if exc.errno == errno.ENOENT and os.path.isfile(executable):  # the file is there
        return unrunnable(executable) or exc.strerror
    return exc.strerror if exc.errno in (errno.ENOENT, errno.EACCES) else None


def find_executable(
    name: str,
    env_var: str,
    config_path: str | None,
    *,
    backend: str,
    install: str,
    env: Mapping[str, str] | None = None,
) -> str:
    """An agent's executable: ``$env_var``, then the executor config's ``path``, then ``name``
    on PATH; a clear error naming where it looked (and ``install``, how to get it) otherwise.
    Both take ``~`` and a bare name on PATH alike. A relative path is made absolute here, where
    it was found: the agent starts in its work tree, where it would name another file or none."""
    env = os.environ if env is None else env

    def given(path: str, where: str) -> str:
        path = os.path.expanduser(path)
        found = path if os.sep in path or is_executable(path) else which(path, env.get("PATH"))
        why = unrunnable(found or path)
        if why is None:
            return os.path.abspath(found or path)
        raise AgentStartError(f"{where}: {why}")

    from_env = env.get(env_var)
    if from_env:
        return given(from_env, f"{env_var}={from_env}")
    if config_path:
        return given(config_path, f"{backend} executor path {config_path!r}")
    found = which(name, env.get("PATH"))
    if found:
        why = unrunnable(found)
        if why is None:
            return os.path.abspath(found)
        raise AgentStartError(f"`{name}` on PATH, {found}: {why}")
    raise AgentStartError(
        f"{name} executable not found: {env_var} is not set, the executor config has no "
        f"`path`, and `{name}` is not on PATH ({install})"
    )


def version_of(executable: str, timeout_s: float = 15.0) -> str | None:
    """The first line ``EXE --version`` prints, or None if it fails; an ``AgentStartError``
    when the system cannot start it (ENOEXEC, ENOENT, EACCES): no run of it could work."""
    try:
        out = subprocess.run(
            [executable, "--version"],
            capture_output=True,  # bytes: what it prints need not be UTF-8
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        why = why_not_started(executable, exc)
        if why is None:
            return None
        raise AgentStartError(f"{executable}: cannot start: {why}") from None
    except subprocess.TimeoutExpired:
        return None
    text = (out.stdout or out.stderr).decode(errors="replace").strip().splitlines()
    return text[0].strip()[:MAX_VERSION_CHARS] if out.returncode == 0 and text else None
