"""Processes that outlive a killed Specwright, and how crash recovery stops them.

Specwright itself may die without a chance to clean up (kill -9, OOM). So on Linux each process
it starts in its own group (an agent, a verification step, a scripted ``run:`` step, `opencode
serve`) gets SIGKILL when the thread that started it ends (``die_with_parent``), and is
registered in a small file under ``runtime_dir()`` (pid, process group, start stamps, ``kind``;
removed when it ends), which crash recovery reads to stop what a dead run left running in the
group (``stop_orphans``; ``stop_abandoned`` for what no run owns, like a server). Its temp
folders (a verification step's, a fresh Claude Code config) carry its pid and start stamp in
their names, so ``sweep_scratch`` removes those a killed process left.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RUNTIME_DIR_ENV = "SPECWRIGHT_RUNTIME_DIR"
# in an agent's environment, inherited by all it starts: what recovery stops with it
AGENT_TOKEN_ENV = "SPECWRIGHT_AGENT_TOKEN"
STOP_GRACE_S = 3.0  # after SIGTERM, how long an orphan's group gets before SIGKILL
# temp folders of ours: "specwright-<kind>-<pid>.<start stamp>-<random>", whose process it is
SCRATCH_KINDS = ("verify", "claude")  # a verification step's, a fresh Claude Code config's
_SCRATCH_NAME = re.compile(r"specwright-(?:verify|claude)-(\d+)\.(\w+)-\w+")
OLD_SCRATCH_AGE_S = 86400.0  # one named by an older version (no pid) is swept when this old
# No later than any run row this process writes: the adapters import this module before a run
# starts. Recovery trusts an agent record only if its owner existed by the run's start, so a later
# process that was given the dead owner's pid is never taken for it.
_OWNER_SINCE = time.time()


def pid_alive(pid: int | None) -> bool:
    """True when a process with this id runs on this host (even one we may not signal); a
    zombie (killed, its parent has not reaped it yet) does not: it runs nothing any more."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # Linux: the state follows the parenthesised command name
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rpartition(b")")[2].split()[:1] != [b"Z"]
    except OSError:
        return True


def gone_here(pid: int | None, host: str | None) -> bool:
    """True when the process a row records as running it (its pid and host) ran on this host
    and is gone (kill -9, a reboot): the row stays ``running`` with nothing behind it. A
    process on another host cannot be told from here."""
    return host == socket.gethostname() and not pid_alive(pid)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@functools.cache
def _prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    fn.restype = ctypes.c_int
    return fn


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` giving the child SIGKILL when the *thread* that spawns it ends (Linux
    PR_SET_PDEATHSIG), so an agent never outlives a Specwright killed by kill -9; None on other
    systems. The thread must live until the agent ends (run_agent's worker does)."""
    prctl = _prctl()  # looked up here, in the parent: the child only calls it
    if prctl is None:
        return None
    parent, sig = os.getpid(), int(signal.SIGKILL)

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the call above: nothing would come
            os._exit(1)

    return preexec


def process_start(pid: int) -> str | None:
    """A stamp of when ``pid`` started, telling it from a later process given the same id
    (clock ticks after boot on Linux, ``ps``'s start time elsewhere); None when it is gone."""
    if os.path.exists("/proc/self/stat"):
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        except (OSError, IndexError):
            return None
    try:
        out = subprocess.run(
            ["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def runs_since(pid: int | None, since: datetime) -> bool:
    """True when process ``pid`` of this host runs (not stopped by SIGSTOP or Ctrl-Z, not a
    zombie) and started by ``since`` (naive UTC): the very process that recorded something then,
    not one given its pid after a reboot. A live process whose heartbeats could not be written
    (the database held by another program for minutes) is so told from a dead one. Linux only
    (``/proc``); False elsewhere."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rpartition(b")")[2].split()
        with open("/proc/stat", "rb") as fh:
            boot = next(int(line.split()[1]) for line in fh if line.startswith(b"btime "))
        started = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError, IndexError):
        return False
    if fields[0] in (b"T", b"t", b"Z", b"X"):  # stopped: another may take its work over
        return False
    return started <= since.replace(tzinfo=UTC).timestamp() + 1.0  # btime is in whole seconds


def group_alive(pgid: int) -> bool:
    """True while a process of group ``pgid`` runs (on Linux, zombies left for a reaper that
    has not come yet do not count)."""
    if not os.path.isdir("/proc/self"):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                return True
    return False


def stop_group(pgid: int, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM process group ``pgid``, give it ``grace_s`` to end, then SIGKILL what is left
    and wait (as long again at most) for it to be gone. For a group that is not our child."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace_s
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not group_alive(pgid):
            return


def runtime_dir() -> Path:
    """Where running agents are registered: ``$SPECWRIGHT_RUNTIME_DIR``, else
    ``$XDG_RUNTIME_DIR/specwright-agents``, else ``specwright-agents-UID`` in the temp folder
    (per host and user, like the pids in it; cleared by a reboot, which ends them anyway)."""
    env = os.environ.get(RUNTIME_DIR_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "specwright-agents"
    return Path(tempfile.gettempdir()) / f"specwright-agents-{os.getuid()}"


def _own_runtime_dir(create: bool) -> Path | None:
    folder = runtime_dir()
    try:
        if create:
            folder.mkdir(mode=0o700, parents=bool(os.environ.get(RUNTIME_DIR_ENV)), exist_ok=True)
        if folder.stat().st_uid != os.getuid():  # never trust records someone else can write
            log.warning("%s belongs to another user; agents are not registered there", folder)
            return None
    except OSError:
        return None
    return folder


@functools.cache
def _owner_start(pid: int) -> str | None:
    return process_start(pid)


# The run each work tree of this process is the tree of (a serial run: the project's folder;
# a parallel one: its worktree), so an agent's record names its run: recovery of one run of a
# process then stops that run's agents only, not the others the process runs (a paused worker).
_run_of_dir: dict[str, str] = {}


def tag_run(workdir: Path | str, run_id: str) -> None:
    """Agents started from now on in ``workdir`` (or below it) belong to run ``run_id``."""
    _run_of_dir[os.path.realpath(workdir)] = run_id


def untag_run(run_id: str) -> None:
    for folder, run in list(_run_of_dir.items()):
        if run == run_id:
            _run_of_dir.pop(folder, None)


def _run_at(cwd: Path | str) -> str | None:
    """The run whose tree holds ``cwd``: the innermost tagged one (a worktree inside the
    project's folder is its own run's)."""
    path, best = os.path.realpath(cwd), None
    for folder, run in list(_run_of_dir.items()):
        inside = path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)
        if inside and (best is None or len(folder) > len(best[0])):
            best = (folder, run)
    return best[1] if best else None


def register_agent(
    pid: int, argv0: str, cwd: Path | str, kind: str = "agent", token: str | None = None
) -> Path | None:
    """Record a just-started agent, or another process of ours of ``kind`` (``verify``,
    ``run``, ``server``), leading its own process group, for crash recovery; the record's path,
    or None when it could not be written (the run goes on without it). ``token``: the
    ``AGENT_TOKEN_ENV`` value in its environment (``stop_strays``)."""
    folder = _own_runtime_dir(create=True)
    if folder is None:
        return None
    owner = os.getpid()
    record = {
        "pid": pid,
        "pgid": pid,  # start_new_session: the process leads its own group
        "start": process_start(pid),
        "kind": kind,
        "owner_pid": owner,
        "owner_since": _OWNER_SINCE,
        "owner_start": _owner_start(owner),  # tells a dead owner from one given its pid since
        "started_at": time.time(),
        "argv0": argv0,
        "cwd": str(cwd),
        "run_id": _run_at(cwd),
        "token": token,
    }
    path = folder / f"{os.getpid()}-{pid}.json"
    try:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not register agent %s in %s: %s", pid, folder, exc)
        return None
    return path


def _still_running(record: dict[str, Any]) -> bool:
    """The recorded agent, or a process it left in its group, still runs."""
    pid, pgid = int(record["pid"]), int(record["pgid"])
    if pid_alive(pid) and (record.get("start") is None or process_start(pid) != record["start"]):
        return False  # the id is another process's now: ours ended, and its group with it
    return group_alive(pgid)


def new_token() -> str:
    """A value for ``AGENT_TOKEN_ENV`` naming one agent process and what it starts."""
    return secrets.token_hex(12)


def carrying(token: str) -> list[int]:
    """Processes of ours whose environment holds ``AGENT_TOKEN_ENV=token`` (Linux; none
    elsewhere): an agent and what it started, even in sessions of their own."""
    needle = f"{AGENT_TOKEN_ENV}={token}".encode()
    found: list[int] = []
    if not os.path.isdir("/proc/self"):
        return found
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"{entry.path}/environ", "rb") as fh:
                    if needle in fh.read().split(b"\0"):
                        found.append(int(entry.name))
            except OSError:  # gone, or another user's
                continue
    return found


def stop_strays(token: str | None, grace_s: float = STOP_GRACE_S) -> list[int]:
    """Stop the process groups of what still carries an agent's ``token`` once the agent's own
    group is stopped: Claude Code runs each Bash command in a session of its own, which a
    signal to the agent's group misses, so a command of an agent that was SIGKILLed (its
    grace over, or Specwright killed with kill -9) ran on, in the tree it was rolled back
    from. SIGTERM, then SIGKILL after ``grace_s``. The groups stopped."""
    if not token:
        return []
    groups: set[int] = set()
    for pid in carrying(token):
        with contextlib.suppress(OSError):
            groups.add(os.getpgid(pid))
    groups.discard(os.getpgrp())  # never our own
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)
        deadline = time.monotonic() + grace_s
        while any(group_alive(g) for g in groups) and time.monotonic() < deadline:
            time.sleep(0.05)
    return sorted(groups)


def _sweep(mine: Callable[[dict[str, Any]], bool], grace_s: float) -> list[int]:
    """Stop the group of every record ``mine`` accepts that still runs, and what carries its
    token; remove the records of ended processes on the way. The process groups stopped."""
    folder = _own_runtime_dir(create=False)
    if folder is None:
        return []
    stopped = []
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            ours = mine(record)
            running = _still_running(record)
            token = record.get("token")
            strays = bool(token) and bool(carrying(str(token)))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written, or not ours to read
        if (running or strays) and not ours:
            continue
        if running:
            stop_group(int(record["pgid"]), grace_s)
            stopped.append(int(record["pgid"]))
        if strays:
            stopped += stop_strays(str(token), grace_s)
        with contextlib.suppress(OSError):
            path.unlink()
    return stopped


def stop_orphans(
    owner_pid: int,
    since: float,
    grace_s: float = STOP_GRACE_S,
    runs: frozenset[str] | set[str] | None = None,
) -> list[int]:
    """Stop the agents process ``owner_pid`` started and left running (it died, or its run is
    being given up): each group still alive gets SIGTERM, then SIGKILL after ``grace_s``.
    Records of an owner started after ``since`` (the run's start, epoch seconds) are another
    process's; a leader whose start stamp differs is a reused pid and never signalled. With
    ``runs``, an agent whose record names another run of that process is left alone (one
    without a run: any). Returns the process groups stopped; records of ended agents are
    removed on the way."""
    return _sweep(
        lambda r: (
            r["owner_pid"] == owner_pid
            and float(r["owner_since"]) <= since
            and (runs is None or not r.get("run_id") or r["run_id"] in runs)
        ),
        grace_s,
    )


def _owner_gone(record: dict[str, Any]) -> bool:
    """The process that registered ``record`` has ended (its pid is free, or another process's
    now); False when the record does not say when its owner started (written by an older
    version: only ``stop_orphans`` may judge it)."""
    stamp = record.get("owner_start")
    if not stamp:
        return False
    owner = int(record["owner_pid"])
    if not pid_alive(owner):
        return True
    now = process_start(owner)
    return now is not None and now != stamp  # unreadable: it may be the owner, leave it


def stop_abandoned(grace_s: float = STOP_GRACE_S) -> list[int]:
    """Stop what a Specwright process that is gone left running, whatever its run (an
    `opencode serve` started by a killed ``agents serve-opencode`` has none): like
    ``stop_orphans``, for every owner that has provably ended. The process groups stopped."""
    return _sweep(_owner_gone, grace_s)


def unregister_agent(path: Path | None) -> None:
    """Remove an agent's record once its whole group is gone."""
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


def _stamp(pid: int) -> str | None:
    """A live process's start stamp as a name may hold it ("0" when unknown), None when gone."""
    if not pid_alive(pid):
        return None
    return re.sub(r"\W", "", process_start(pid) or "") or "0"


def scratch_prefix(kind: str) -> str:
    """The prefix of this process's temp folders of ``kind`` (``SCRATCH_KINDS``): its pid and
    start stamp, so ``sweep_scratch`` tells those a killed process left (kill -9 runs no
    cleanup) from a live one's."""
    return f"specwright-{kind}-{os.getpid()}.{_stamp(os.getpid())}-"


def sweep_scratch(folder: Path | str | None = None, old_age_s: float = OLD_SCRATCH_AGE_S) -> int:
    """Remove the temp folders (in the temp folder, or ``folder``) of processes that are gone
    (their pid free, or another process's now), and empty ones named by an older version once
    ``old_age_s`` old; only this user's folders. Returns how many were removed."""
    folder = Path(folder or tempfile.gettempdir())
    removed = 0
    try:
        paths = [p for kind in SCRATCH_KINDS for p in folder.glob(f"specwright-{kind}-*")]
    except OSError:
        return 0
    for path in paths:
        try:
            st = path.lstat()
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
                continue  # a link, a file, someone else's: not ours to remove
            if found := _SCRATCH_NAME.fullmatch(path.name):
                if _stamp(int(found[1])) == found[2]:
                    continue  # its process runs
                shutil.rmtree(path)
            elif time.time() - st.st_mtime > old_age_s:
                path.rmdir()  # only when empty: its process is not known
            else:
                continue
        except OSError:
            continue
        removed += 1
    return removed
