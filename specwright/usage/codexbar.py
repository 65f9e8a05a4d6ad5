"""`codexbar` snapshots: plan limits (``usage``) and local cost scans (``cost``), with their time.

``codexbar usage --format json --json-only`` prints one payload per provider: ``provider``,
``usage.primary/secondary/tertiary`` rate windows (``usedPercent``, ``windowMinutes``,
``resetsAt``), ``usage.providerCost``, ``credits``, ``pace`` and ``error`` (schema from
steipete/CodexBar ``Sources/CodexBarCLI/CLIPayloads.swift``). ``codexbar cost --format json``
prints per-provider daily tokens and cost. Each payload is stored in ``usage_snapshots``.

``around(store, execution_id)`` takes a snapshot before and after an execution so the quota a
chunk used (the change of ``usedPercent``) is known. A missing binary, a command that prints no
provider objects (or nests them more than ``MAX_DEPTH`` levels deep), or one that hangs (stopped with its children after ``TIMEOUT_S``) gives a
warning and no snapshot, never an exception; a non-zero exit, a provider's error and NaN (stored
as null: the payload stays JSON) give a warning beside the snapshot. The values of secret
environment variables in what it prints are redacted before anything is stored or shown.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specwright.model import new_id, utcnow
from specwright.redact import Redactor

if TYPE_CHECKING:
    from specwright.store import Store

MAX_OUTPUT_BYTES = 8 * 1024 * 1024
ERR_BYTES = 64 * 1024  # of stderr kept (its first 200 characters are shown)
MAX_DEPTH = 64  # codexbar's payloads nest 4 or 5 levels
TIMEOUT_S = 60.0

USAGE_ARGS = ("usage", "--format", "json", "--json-only")
COST_ARGS = ("cost", "--format", "json")


@dataclass
class Snapshot:
    """One codexbar call: its payloads (one per provider), or a warning saying why none."""

    kind: str  # usage | cost
    taken_at: Any = None
    payloads: list[dict[str, Any]] = field(default_factory=list)
    warning: str | None = None
    ids: list[str] = field(default_factory=list)


def codexbar_path(env: dict[str, str] | None = None) -> str | None:
    """``$CODEXBAR_PATH``, else `codexbar` on PATH; None when neither exists."""
    env = dict(os.environ) if env is None else env
    explicit = env.get("CODEXBAR_PATH")
    if explicit:
        return explicit if Path(explicit).exists() else None
    return shutil.which("codexbar", path=env.get("PATH"))


def run(
    kind: str,
    binary: str | None = None,
    timeout_s: float = TIMEOUT_S,
    cancel: threading.Event | None = None,
) -> Snapshot:
    """Run `codexbar usage` or `codexbar cost` and parse its JSON (never raises); stopped at
    once when ``cancel`` is set."""
    snap = Snapshot(kind=kind, taken_at=utcnow())
    exe = binary or codexbar_path()
    if not exe:
        where = os.environ.get("CODEXBAR_PATH")
        snap.warning = f"codexbar: CODEXBAR_PATH={where} does not exist" if where else _missing()
        return snap
    args = USAGE_ARGS if kind == "usage" else COST_ARGS
    try:
        code, stdout, stderr = _call([exe, *args], timeout_s, cancel)
    except _Stopped:
        snap.warning = f"codexbar {kind}: stopped (the run is stopping); no snapshot taken"
        return snap
    except OSError as exc:
        snap.warning = f"codexbar {kind}: could not run {exe}: {exc}"
        return snap
    except subprocess.TimeoutExpired:
        snap.warning = f"codexbar {kind}: {exe} {TIMED_OUT} {timeout_s:g}s; no snapshot taken"
        return snap
    # what codexbar prints (an error quoting a token, say) is recorded and shown: secrets of
    # the environment go first, as from an agent
    redact = Redactor.from_env()
    err = redact(stderr.decode("utf-8", "replace")).strip()[:200]
    exited = f"exit {code}{': ' + err if err else ''}"
    if len(stdout) > MAX_OUTPUT_BYTES:
        snap.warning = f"codexbar {kind}: output larger than {MAX_OUTPUT_BYTES >> 20} MiB, ignored"
        return snap
    out = redact(stdout.decode("utf-8", "replace")).strip()
    if not out:
        snap.warning = f"codexbar {kind}: printed nothing ({exited})"
        return snap
    try:
        data = json.loads(out)
    except json.JSONDecodeError as exc:
        snap.warning = (
            f"codexbar {kind}: output is not JSON ({exc.msg} at char {exc.pos}); "
            f"{exited}: {out[:120]!r}"
        )
        return snap
    except RecursionError:  # [[[[... thousands deep
        data = None
    if data is None or _deeper(data, MAX_DEPTH):  # cleaning and storing it would recurse
        snap.warning = (
            f"codexbar {kind}: output nested more than {MAX_DEPTH} levels deep, ignored ({exited})"
        )
        return snap
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(p, dict) for p in data):
        got = type(data).__name__
        if isinstance(data, list):
            got = "a list holding " + ", ".join(
                sorted({type(p).__name__ for p in data if not isinstance(p, dict)})
            )
        snap.warning = (
            f"codexbar {kind}: expected a JSON array of provider objects, got {got} ({exited})"
        )
        return snap
    if not data:  # `[]`: no provider enabled, or none it could read
        snap.warning = f"codexbar {kind}: printed no provider ({exited})"
        return snap
    notes = [f"codexbar {kind}: {exited}"] if code != 0 else []
    cleaned = [_finite(p) for p in data]
    snap.payloads = [p for p, _ in cleaned]
    if any(bad for _, bad in cleaned):
        notes.append(f"codexbar {kind}: NaN or infinite numbers stored as null")
    for payload in snap.payloads:
        msg = _error_message(payload)
        if msg:
            notes.append(f"codexbar {kind}: {_provider(payload)}: {msg[:200]}")
    snap.warning = "; ".join(notes) or None
    return snap


TIMED_OUT = "did not finish within"


class _Stopped(Exception):
    """A codexbar call given up on: the run's cancel was set."""


def _call(
    argv: list[str], timeout_s: float, cancel: threading.Event | None = None
) -> tuple[int, bytes, bytes]:
    """Run ``argv`` in its own process group; on a timeout the whole group is killed (a
    codexbar that hangs in a child would otherwise leave it running). What it prints is read as
    it comes, at most ``MAX_OUTPUT_BYTES`` + 1 of stdout (then the group is stopped: a codexbar
    printing without end must not fill the memory) and ``ERR_BYTES`` of stderr."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    out, err = bytearray(), bytearray()
    room = {
        proc.stdout.fileno(): (out, MAX_OUTPUT_BYTES + 1),
        proc.stderr.fileno(): (err, ERR_BYTES),
    }
    deadline = time.monotonic() + timeout_s
    try:
        with selectors.DefaultSelector() as sel:
            for fd in room:
                sel.register(fd, selectors.EVENT_READ)
            while sel.get_map() and len(out) <= MAX_OUTPUT_BYTES:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise subprocess.TimeoutExpired(argv, timeout_s)
                if cancel is not None and cancel.is_set():
                    raise _Stopped
                for key, _ in sel.select(left if cancel is None else min(left, 0.1)):
                    data = os.read(key.fd, 1 << 16)
                    if not data:
                        sel.unregister(key.fd)
                        continue
                    buf, cap = room[key.fd]
                    buf += data[: max(cap - len(buf), 0)]  # past the cap: drained, not kept
        if len(out) > MAX_OUTPUT_BYTES:  # too much: the rest is not wanted
            _stop(proc)
        code = proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
    except BaseException:
        _stop(proc)
        raise
    finally:
        proc.stdout.close()
        proc.stderr.close()
    return code, bytes(out), bytes(err)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.kill()
    proc.wait()


def _deeper(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists and objects more than ``limit`` levels (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in children)
    return False


def _finite(value: Any) -> tuple[Any, bool]:
    """``value`` with NaN and infinities as None (they are not JSON: the payload column and
    other tools reading it would refuse them); and whether there were any."""
    if isinstance(value, float) and not math.isfinite(value):
        return None, True
    if isinstance(value, dict):
        pairs = {k: _finite(v) for k, v in value.items()}
        return {k: v for k, (v, _) in pairs.items()}, any(b for _, b in pairs.values())
    if isinstance(value, list):
        items = [_finite(v) for v in value]
        return [v for v, _ in items], any(b for _, b in items)
    return value, False


def _provider(payload: dict[str, Any]) -> str | None:
    """The payload's provider name: text only (a number or an object is no name)."""
    name = payload.get("provider")
    return (name.strip()[:100] or None) if isinstance(name, str) else None


def _error_message(payload: dict[str, Any]) -> str | None:
    """The provider's error: ``{"message": ...}`` as codexbar prints it, or plain text."""
    err = payload.get("error")
    if isinstance(err, dict) and err.get("message"):
        return str(err["message"])
    if isinstance(err, str) and err.strip():
        return err.strip()
    return None


def store_snapshot(
    store: Store, snap: Snapshot, *, execution_id: str | None = None, phase: str = "manual"
) -> Snapshot:
    """Write each provider payload of ``snap`` as one ``usage_snapshots`` row (journaled)."""
    from specwright.store import Store as _S

    ops = []
    for payload in snap.payloads:
        sid = new_id()
        snap.ids.append(sid)
        err = _error_message(payload)
        ops.append(
            _S.op_insert(
                "usage_snapshots",
                {
                    "id": sid,
                    "taken_at": snap.taken_at,
                    "source": "codexbar",
                    "provider": _provider(payload),
                    "execution_id": execution_id,
                    "payload": json.dumps(_finite(payload)[0], separators=(",", ":")),
                    "kind": snap.kind,
                    "phase": phase,
                    "error": err[:500] if err else None,
                },
            )
        )
    if ops:
        store.write(ops)
    return snap


def ingest(
    store: Store,
    binary: str | None = None,
    *,
    kinds: tuple[str, ...] = ("usage", "cost"),
    timeout_s: float = TIMEOUT_S,
) -> list[Snapshot]:
    """Take and store one `usage` and one `cost` snapshot now (a codexbar that hangs is not
    waited for twice)."""
    snaps: list[Snapshot] = []
    for kind in kinds:
        hung = next((s for s in snaps if s.warning and TIMED_OUT in s.warning), None)
        if hung is not None:
            snaps.append(
                Snapshot(kind, utcnow(), warning=f"codexbar {kind}: not run: {hung.warning}")
            )
            continue
        snaps.append(store_snapshot(store, run(kind, binary, timeout_s)))
    return snaps


AROUND_TIMEOUT_S = 20.0  # a snapshot around an execution: the agent waits for it


@contextmanager
def around(
    store: Store,
    execution_id: str,
    binary: str | None = None,
    timeout_s: float = AROUND_TIMEOUT_S,
    cancel: threading.Event | None = None,
) -> Iterator[tuple[Snapshot, list[Snapshot]]]:
    """Snapshot `codexbar usage` before and after the block, both linked to the execution.

    Yields (before, [after]); ``after`` is filled when the block ends, on an error too, but not
    on Ctrl-C or once ``cancel`` is set (a stop must not wait for codexbar) nor after a
    ``before`` codexbar did not finish. With no codexbar the snapshots carry a warning and
    nothing is stored."""
    exe = binary or codexbar_path()
    before = (
        run("usage", exe, timeout_s, cancel)
        if exe
        else Snapshot("usage", utcnow(), warning=_missing())
    )
    if before.payloads:
        store_snapshot(store, before, execution_id=execution_id, phase="before")
    after: list[Snapshot] = []
    hung = bool(before.warning and TIMED_OUT in before.warning)
    interrupted = False
    try:
        yield before, after
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        if exe and not hung and not interrupted and not (cancel and cancel.is_set()):
            snap = run("usage", exe, timeout_s)
            if snap.payloads:
                store_snapshot(store, snap, execution_id=execution_id, phase="after")
            after.append(snap)


def _missing() -> str:
    return "codexbar: not found on PATH (set CODEXBAR_PATH); no snapshot taken"
