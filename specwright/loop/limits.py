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

from specwright.model import local_minute

_PROVIDER_OF_BACKEND = {"claude-code": "claude", "codex": "codex"}
# An OpenCode model's provider (its models.dev id, before the "/") -> the codexbar provider
# (CodexBar's UsageProvider raw values) that reports the same account's limits. OpenCode's
# "anthropic" and "openai" sign in with a Claude or ChatGPT plan, whose limits codexbar reads as
# "claude" and "codex"; z.ai's coding plan is "zai" in both regions (zhipuai is its China one).
_PROVIDER_OF_OPENCODE = {
    "anthropic": "claude",
    "openai": "codex",
    "zai": "zai",
    "zai-coding-plan": "zai",
    "zhipuai": "zai",
    "zhipuai-coding-plan": "zai",
    "opencode": "opencode",
    "opencode-go": "opencodego",
    "github-copilot": "copilot",
    "kimi-for-coding": "kimi",
    "moonshotai": "moonshot",
    "moonshotai-cn": "moonshot",
    "minimax": "minimax",
    "minimax-cn": "minimax",
    "minimax-coding-plan": "minimax",
    "minimax-cn-coding-plan": "minimax",
    "openrouter": "openrouter",
    "google-vertex": "vertexai",
    "amazon-bedrock": "bedrock",
    "azure": "azureopenai",
    "deepseek": "deepseek",
    "mistral": "mistral",
    "xai": "xai",
    "groq": "groq",
    "fireworks-ai": "fireworks",
    "deepinfra": "deepinfra",
}


# an overloaded service: pauses of 30 s, doubling up to 5 min (no reset to ask codexbar for)
OVERLOAD_WAIT_S, OVERLOAD_MAX_WAIT_S = 30.0, 300.0


def overload_wait(pauses: int) -> float:
    """The pause before another try at an overloaded service, after ``pauses`` such pauses."""
    return float(min(OVERLOAD_MAX_WAIT_S, OVERLOAD_WAIT_S * 2 ** min(pauses, 30)))


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
    at = (time.time() if now is None else now) + max(0.0, wait_s)
    return f"resets in {span(wait_s)}, at {local_minute(at)}"


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
    for a command agent reading ``codex exec --json`` (``parser: codex``), for OpenCode its
    model's provider's (``zai-coding-plan/glm-4.7``: ``zai``); None when not known (a command
    agent of another parser, an OpenCode provider codexbar does not track, or no model set)."""
    backend = getattr(executor, "backend", None) or ""
    config = getattr(executor, "config", None)
    if backend == "command":
        return "codex" if getattr(config, "parser", None) == "codex" else None
    if backend == "opencode":
        return _PROVIDER_OF_OPENCODE.get(_opencode_provider(config))
    return _PROVIDER_OF_BACKEND.get(backend)


def _opencode_provider(config: Any) -> str:
    """An OpenCode executor's provider id: ``provider``, else the part of ``model`` before its
    first "/" (as the adapter sends them); "" when neither names one."""
    provider = getattr(config, "provider", None)
    model = getattr(config, "model", None) or ""
    if not provider and "/" in model:
        provider = model.split("/", 1)[0]
    return str(provider or "").strip().lower()


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
