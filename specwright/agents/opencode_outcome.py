"""How an OpenCode run ended, as an Outcome: from what the event parser saw of the session
(opencode_events.py) and how following it ended (cancelled, timeout, stream_dropped, idle)."""

from __future__ import annotations

from typing import Any

from specwright.agents.base import Outcome
from specwright.agents.opencode_events import MAX_STEPS, OpenCodeState, error_kind, error_text
from specwright.agents.opencode_http import seconds
from specwright.model import Usage


def session_outcome(
    state: OpenCodeState,
    end: str,
    usage: Usage,
    raw: dict[str, Any] | None,
    *,
    url: str,
    timeout_s: float | None,
    policy: str,
) -> Outcome:
    """The Outcome of a session followed until ``end``; ``usage`` and ``raw`` are its tokens
    and totals, ``url`` the server as shown, ``policy`` the executor's permission policy."""
    common: dict[str, Any] = {
        "usage": usage,
        "session_id": state.session_id,
        "model": state.model,
        "final_text": state.last_text,
        "retry_after_s": state.retry_after_s,
        # its steps (one model call each), as Claude Code's num_turns, a sub-agent's not counted
        "num_turns": state.turns if state.session_id is not None else None,
        "raw": raw,
        # each step is one model call, priced at its own tier (never the sum's)
        "requests": tuple(state.steps) if 0 < len(state.steps) < MAX_STEPS else None,
        # aborted mid-run: the step under way never reports (its tokens, its cost), and the
        # session's totals read 0 after an abort: the cost is unknown, not 0
        "incomplete": state.session_id is not None
        and (end != "idle" or (state.error or {}).get("name") == "MessageAbortedError"),
    }
    if end == "cancelled":
        return Outcome("cancelled", exit_reason="cancelled", **common)
    if end == "timeout":
        return Outcome(
            "killed",
            exit_reason="timeout",
            error=f"the session on {url} ran past its time limit "
            f"({seconds(timeout_s or 0)} s) and was aborted",
            **common,
        )
    if end == "stream_dropped":
        why = ((state.error or {}).get("data") or {}).get("message")
        return Outcome(
            "error",
            exit_reason="stream_dropped",
            error=f"the OpenCode event stream from {url} ended mid-run "
            f"({why}); the server may have stopped",
            **common,
        )
    if state.error is not None:
        # billing | account | rate_limit | auth | unknown_model | api_error
        kind = error_kind(state.error)
        reason = "session_error" if kind == "api_error" else kind
        if state.error.get("name") == "MessageAbortedError":
            reason = "aborted"
        return Outcome("error", exit_reason=reason, error=error_text(state.error), **common)
    if state.rejected > state.refused:  # the agent goes on after a refused outside write
        return Outcome(
            "error",
            exit_reason="permission_rejected",
            error=f"{state.rejected - state.refused} permission request(s) rejected by policy "
            f"{policy!r}",
            **common,
        )
    return Outcome("ok", exit_reason="completed", **common)
