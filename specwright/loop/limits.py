"""When a rate-limited agent may try again: its own reset hint, else what codexbar says.

codexbar (``CODEXBAR_PATH`` or on PATH) reports each provider's rate windows with ``usedPercent``
and ``resetsAt``; an exhausted window (100 %) resets at its ``resetsAt``. Without codexbar, or
without an exhausted window, the caller falls back to a default wait.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

_PROVIDER_OF_BACKEND = {"claude-code": "claude", "codex": "codex"}


_UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


def span(seconds: float) -> str:
    """A duration for people, in its two largest units: ``0.5 s``, ``45 s``, ``15 min``,
    ``2 h 5 min``, ``5 d 22 h`` (the rest cut off)."""
    if seconds < 10:
        return f"{max(0.0, seconds):.2g} s"
    left, parts = round(seconds), list[str]()
    for unit, size in _UNITS:
        count, left = divmod(left, size)
        if count or parts:
            parts.append(f"{count} {unit}" if count else "")
        if len(parts) == 2:
            break
    return " ".join(p for p in parts if p)


def reset_text(wait_s: float, now: float | None = None) -> str:
    """When a limit resets, ``wait_s`` from ``now`` (epoch seconds; the clock when None): ``resets
    in 5 d 22 h, at 2026-12-03 15:04 local``."""
    at = datetime.fromtimestamp((time.time() if now is None else now) + max(0.0, wait_s))
    return f"resets in {span(wait_s)}, at {at:%Y-%m-%d %H:%M} local"


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def reset_wait_from_payloads(
    payloads: list[dict[str, Any]], provider: str | None, now: datetime
) -> float | None:
    """Seconds until every exhausted window of ``provider`` (all providers when None) resets."""
    resets: list[datetime] = []
    for payload in payloads:
        if provider and payload.get("provider") != provider:
            continue
        usage = payload.get("usage")
        if not isinstance(usage, dict):
            continue
        for key in ("primary", "secondary", "tertiary"):
            window = usage.get(key)
            if not isinstance(window, dict):
                continue
            used = window.get("usedPercent")
            at = _parse_time(window.get("resetsAt"))
            if isinstance(used, int | float) and used >= 100 and at is not None:
                resets.append(at)
    if not resets:
        return None
    return max(0.0, (max(resets) - now).total_seconds())


def provider_of(executor: Any) -> str | None:
    """The codexbar provider whose limits are the agent's: ``claude`` for Claude Code, ``codex``
    for a command agent reading ``codex exec --json`` (``parser: codex``); None when not known (a
    command agent of another parser, OpenCode, whose model may be any provider's)."""
    backend = getattr(executor, "backend", None) or ""
    if backend == "command":
        return "codex" if getattr(executor.config, "parser", None) == "codex" else None
    return _PROVIDER_OF_BACKEND.get(backend)


def codexbar_reset_wait(
    provider: str | None, cancel: threading.Event | None = None
) -> float | None:
    """Seconds until codexbar says ``provider``'s exhausted quota resets; None when unknown (or
    when ``cancel`` stopped the asking). An agent of no known provider is not judged by any
    other's limits: None, without asking."""
    from specwright.usage import codexbar

    if provider is None or codexbar.codexbar_path() is None:
        return None
    snap = codexbar.run("usage", timeout_s=20, cancel=cancel)
    return reset_wait_from_payloads(snap.payloads, provider, datetime.now(UTC))
