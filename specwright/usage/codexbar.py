"""`codexbar` snapshots: plan limits (``usage``) and local cost scans (``cost``), with their time.

``codexbar usage --format json --json-only`` prints one payload per provider: ``provider``,
``usage.primary/secondary/tertiary`` rate windows (``usedPercent``, ``windowMinutes``,
``resetsAt``), ``usage.providerCost``, ``credits``, ``pace`` and ``error`` (schema from
steipete/CodexBar ``Sources/CodexBarCLI/CLIPayloads.swift``). ``codexbar cost --format json``
prints per-provider daily tokens and cost. Each payload is stored in ``usage_snapshots``.

``around(store, execution_id)`` takes a snapshot before and after an execution so the quota a
chunk used (the change of ``usedPercent``) is known. A missing binary, a failing command or bad
JSON gives a warning and no snapshot, never an exception.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specwright.model import new_id, utcnow

if TYPE_CHECKING:
    from specwright.store import Store

MAX_OUTPUT_BYTES = 8 * 1024 * 1024
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


def run(kind: str, binary: str | None = None, timeout_s: float = TIMEOUT_S) -> Snapshot:
    """Run `codexbar usage` or `codexbar cost` and parse its JSON (never raises)."""
    snap = Snapshot(kind=kind, taken_at=utcnow())
    exe = binary or codexbar_path()
    if not exe:
        where = os.environ.get("CODEXBAR_PATH")
        snap.warning = f"codexbar: CODEXBAR_PATH={where} does not exist" if where else _missing()
        return snap
    args = USAGE_ARGS if kind == "usage" else COST_ARGS
    try:
        proc = subprocess.run(
            [exe, *args],
            capture_output=True,
            timeout=timeout_s,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        snap.warning = f"codexbar {kind}: could not run {exe}: {exc}"
        return snap
    out = proc.stdout[:MAX_OUTPUT_BYTES].decode("utf-8", "replace").strip()
    try:
        data = json.loads(out) if out else None
    except json.JSONDecodeError as exc:
        snap.warning = (
            f"codexbar {kind}: output is not JSON ({exc.msg} at char {exc.pos}); "
            f"exit {proc.returncode}: {out[:120]!r}"
        )
        return snap
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(p, dict) for p in data):
        err = proc.stderr.decode("utf-8", "replace").strip()[:200]
        snap.warning = (
            f"codexbar {kind}: expected a JSON array of provider objects, got "
            f"{type(data).__name__} (exit {proc.returncode}{': ' + err if err else ''})"
        )
        return snap
    snap.payloads = data
    if proc.returncode != 0 and not data:
        snap.warning = f"codexbar {kind}: exit {proc.returncode}"
    for payload in data:
        err = payload.get("error")
        if isinstance(err, dict) and err.get("message"):
            msg = str(err["message"])[:200]
            snap.warning = (snap.warning + "; " if snap.warning else "") + (
                f"codexbar {kind}: {payload.get('provider')}: {msg}"
            )
    return snap


def store_snapshot(
    store: Store, snap: Snapshot, *, execution_id: str | None = None, phase: str = "manual"
) -> Snapshot:
    """Write each provider payload of ``snap`` as one ``usage_snapshots`` row (journaled)."""
    from specwright.store import Store as _S

    ops = []
    for payload in snap.payloads:
        sid = new_id()
        snap.ids.append(sid)
        err = payload.get("error")
        ops.append(
            _S.op_insert(
                "usage_snapshots",
                {
                    "id": sid,
                    "taken_at": snap.taken_at,
                    "source": "codexbar",
                    "provider": str(payload.get("provider") or "")[:100] or None,
                    "execution_id": execution_id,
                    "payload": json.dumps(payload, separators=(",", ":")),
                    "kind": snap.kind,
                    "phase": phase,
                    "error": str(err.get("message"))[:500] if isinstance(err, dict) else None,
                },
            )
        )
    if ops:
        store.write(ops)
    return snap


def ingest(
    store: Store, binary: str | None = None, *, kinds: tuple[str, ...] = ("usage", "cost")
) -> list[Snapshot]:
    """Take and store one `usage` and one `cost` snapshot now."""
    return [store_snapshot(store, run(kind, binary)) for kind in kinds]


@contextmanager
def around(
    store: Store, execution_id: str, binary: str | None = None
) -> Iterator[tuple[Snapshot, list[Snapshot]]]:
    """Snapshot `codexbar usage` before and after the block, both linked to the execution.

    Yields (before, [after]); ``after`` is filled when the block ends (even on error). With no
    codexbar the snapshots carry a warning and nothing is stored."""
    exe = binary or codexbar_path()
    before = run("usage", exe) if exe else Snapshot("usage", utcnow(), warning=_missing())
    if before.payloads:
        store_snapshot(store, before, execution_id=execution_id, phase="before")
    after: list[Snapshot] = []
    try:
        yield before, after
    finally:
        if exe:
            snap = run("usage", exe)
            if snap.payloads:
                store_snapshot(store, snap, execution_id=execution_id, phase="after")
            after.append(snap)


def _missing() -> str:
    return "codexbar: not found on PATH (set CODEXBAR_PATH); no snapshot taken"
