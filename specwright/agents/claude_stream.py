"""The pure parser of Claude Code's stream-json output (no process, no I/O).

``parse_line`` turns one line into normalized events and updates a ``ClaudeStreamState``;
``outcome_from_state`` says how the run ended. Facts it relies on (Claude Code 2.1.197 and
2.1.332): an ``assistant`` line carries one content block and repeats its message's usage snapshot,
so tokens come from the final ``result`` line; an API failure ends with ``subtype: success``
but ``is_error: true``; a killed process prints no ``result`` line at all. Its tokens are then
the snapshots of the replies it had started, once per message id: input and cache tokens as
the API counted them, output tokens the transcript's final count for a finished reply (the
executor reads it once the process is gone), else a lower bound (the snapshot's is 1).
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any

from specwright.agents.base import Outcome
from specwright.agents.claude_errors import AUTH_STATUSES, error_kind, explained
from specwright.agents.process import (
    clean_tail,
    cost,
    count,
    decode_json_line,
    mapping,
    slim,
    timeout_message,
)
from specwright.journal import dumps
from specwright.model import (
    AgentEvent,
    ErrorEvent,
    StepEvent,
    TextEvent,
    ToolCall,
    ToolResult,
    Usage,
    UsageEvent,
)


@dataclass
class ClaudeStreamState:
    """What the parser has seen so far in one stream."""

    lineno: int = 0
    session_id: str | None = None
    model: str | None = None
    version: str | None = None
    seen_blocks: set[tuple[str, str]] = field(default_factory=set)
    tool_names: dict[str, str] = field(default_factory=dict)  # tool_use id -> tool name
    seen_results: set[str] = field(default_factory=set)
    last_text: str = ""
    result: dict[str, Any] | None = None  # the final `result` line
    turns: int = 0  # num_turns of every result line (a background task's end adds a turn)
    api_error_status: int | None = None
    api_error_message: str | None = None
    rate_limited: bool = False
    auth_failed: bool = False  # a 401/403, or no credentials at all ("Not logged in")
    model_missing: bool = False  # a 404: the model does not exist or is not this key's
    billing: bool = False  # out of credit ("Credit balance is too low"): paying is the fix
    account: bool = False  # on hold, disabled, awaiting verification: its owner must act
    overloaded: bool = False  # the service overloaded (a 529): a later try may work
    key_source: str | None = None  # the init line's apiKeySource
    fixed_token: bool = False  # ANTHROPIC_AUTH_TOKEN and no login to refresh (source: none)
    give_up: bool = False  # a fixed key refused: stop claude rather than wait out its retries
    retry_after_s: float | None = None
    warnings: int = 0
    # message id -> its usage snapshot: the tokens of a run killed before its result line, and
    # the input side of each API request (each is priced at its own tier: ``requests_of``)
    replies: dict[str, Usage] = field(default_factory=dict)
    # message id -> its final output tokens, from the session's transcript (claude_transcript)
    # read once the process ended
    outputs: dict[str, int] = field(default_factory=dict)


MAX_KEY_CHARS = 256  # a longer key is kept as its hash: seen blocks must not hold whole texts
MAX_REPLIES = 100_000  # usage snapshots kept for a run that ends without its result line


def _short(key: str) -> str:
    if len(key) <= MAX_KEY_CHARS:
        return key
    return "#" + hashlib.blake2b(key.encode("utf-8", "replace"), digest_size=16).hexdigest()


def _block_key(message_id: str, block: dict[str, Any]) -> tuple[str, str]:
    # One line carries one block, so its list index is always 0: key blocks by what they are.
    kind = str(block.get("type"))
    if kind in ("tool_use", "server_tool_use") and block.get("id"):
        return _short(message_id), _short(f"{kind}:{block['id']}")
    return _short(message_id), _short(f"{kind}:{dumps(block)}")


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for item in content:
            if isinstance(item, dict) and item.get("type") == "text":
                parts.append(str(item.get("text", "")))
            elif isinstance(item, dict):
                parts.append(f"[{item.get('type', 'content')}]")
            else:
                parts.append(str(item))
        return "\n".join(parts)
    return "" if content is None else dumps(content)


_RETRY_HINT = re.compile(
    r"(?:retry|try again)\s+(?:after|in)\s+(\d+(?:\.\d+)?)\s*(ms|s|sec|secs|seconds?|m|min|mins|minutes?)\b",
    re.I,
)


def retry_hint_s(text: str) -> float | None:
    """Seconds to wait, when an error message says so ("try again in 30 seconds")."""
    m = _RETRY_HINT.search(text or "")
    if not m:
        return None
    value, unit = float(m.group(1)), m.group(2).lower()
    if unit == "ms":
        return value / 1000
    if unit.startswith("m"):
        return value * 60
    return value


def _usage_from_result(obj: dict[str, Any], model: str | None) -> Usage:
    u = mapping(obj.get("usage"))
    details = mapping(u.get("output_tokens_details"))
    model_usage = mapping(obj.get("modelUsage"))
    if model is None and model_usage:
        model = str(next(iter(model_usage)))
    totals = {
        "input_tokens": count(u.get("input_tokens")),
        "output_tokens": count(u.get("output_tokens")),
        "cache_read_tokens": count(u.get("cache_read_input_tokens")),
        "cache_write_tokens": count(u.get("cache_creation_input_tokens")),
        "reasoning_tokens": count(details.get("thinking_tokens")),
        # of the cache writes, the 1-hour ones (2x input, not 1.25x); older versions: no split
        "cache_write_1h_tokens": count(
            mapping(u.get("cache_creation")).get("ephemeral_1h_input_tokens")
        ),
    }
    # ``usage`` counts the main thread's last turn; ``modelUsage`` the whole process, which
    # total_cost_usd prices: a background sub-agent's replies, and the turn its notification
    # starts (another result line) too. Its totals, where it has them.
    per_model = [m for m in model_usage.values() if isinstance(m, dict)]
    for name, key in _MODEL_USAGE_KEYS:
        if any(key in m for m in per_model):
            totals[name] = sum(count(m.get(key)) for m in per_model)
    totals["cache_write_1h_tokens"] = min(
        totals["cache_write_1h_tokens"], totals["cache_write_tokens"]
    )
    return Usage(**totals, cost_usd=cost(obj.get("total_cost_usd")), model=model)


_MODEL_USAGE_KEYS = (
    ("input_tokens", "inputTokens"),
    ("output_tokens", "outputTokens"),
    ("cache_read_tokens", "cacheReadInputTokens"),
    ("cache_write_tokens", "cacheCreationInputTokens"),
    ("reasoning_tokens", "thinkingTokens"),
    ("cache_write_1h_tokens", "cacheCreationEphemeral1hInputTokens"),
)


def _started_replies(state: ClaudeStreamState) -> list[Usage]:
    """The replies a run without a result line had started: their snapshots, with the output
    tokens the transcript gives for those that were finished (else the snapshot's)."""
    outputs = {_short(k): v for k, v in state.outputs.items()}
    return [
        replace(reply, output_tokens=max(reply.output_tokens, outputs.get(key, 0)))
        for key, reply in state.replies.items()
    ]


def _started(state: ClaudeStreamState) -> Usage:
    """The tokens of the replies a run without a result line had started (see the module)."""
    total = Usage(model=state.model)
    for reply in _started_replies(state):
        total = total + reply  # a snapshot has no cost: the total has none either
    return total


def requests_of(state: ClaudeStreamState) -> tuple[Usage, ...] | None:
    """The execution's API requests, one Usage each, to price each at its own tier (a request
    whose prompt is over 200k tokens costs the long-context rates, input and output alike);
    None when they cannot be told apart exactly (the caller prices the totals as one).

    A request's input and cache tokens are its snapshot's, exact. Its output is the
    transcript's final count when known; the result's output tokens not accounted for so are
    spread evenly over the other requests (each at least its snapshot's), so the total is the
    result's exactly and only the tier of those parts is an estimate. Used only when the
    snapshots add up to the result's input and cache tokens, which are what is stored; a run
    killed before its result line has its started replies as its totals (``_started``)."""
    replies = state.replies
    if not replies or len(replies) >= MAX_REPLIES:
        return None
    if state.result is None:
        return tuple(_started_replies(state))
    total = _usage_from_result(state.result, state.model)
    for name in (
        "input_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "cache_write_1h_tokens",
    ):
        if sum(getattr(u, name) for u in replies.values()) != getattr(total, name):
            return None
    outputs = {_short(k): v for k, v in state.outputs.items()}
    known = {k: outputs[k] for k in replies if k in outputs}
    unknown = [k for k in replies if k not in known]
    extra = total.output_tokens - sum(known.values())
    extra -= sum(replies[k].output_tokens for k in unknown)
    if extra < 0 or (extra and not unknown):
        return None  # the transcript and the result disagree: price the totals
    share, left = divmod(extra, len(unknown)) if unknown else (0, 0)
    out = []
    for key, reply in replies.items():
        if key in known:
            output = known[key]
        else:
            output = reply.output_tokens + share + (1 if left > 0 else 0)
            left -= 1
        out.append(replace(reply, output_tokens=output, reasoning_tokens=0, cost_usd=None))
    return tuple(out)


def _errors_text(obj: dict[str, Any]) -> str:
    errors = obj.get("errors")
    if isinstance(errors, list):
        return "; ".join(map(str, errors))
    return "" if errors is None else str(errors)


def parse_line(line: bytes | str, state: ClaudeStreamState) -> list[AgentEvent]:
    """Turn one stream-json line into normalized events (never raises on bad input)."""
    state.lineno += 1
    obj, events = decode_json_line(line, state.lineno)
    state.warnings += len(events)
    if obj is None:
        return list(events)
    out: list[AgentEvent] = list(events)
    kind = obj.get("type")
    try:
        if kind == "system":
            out.extend(_system(obj, state))
        elif kind == "assistant":
            out.extend(_assistant(obj, state))
        elif kind == "user":
            out.extend(_user(obj, state))
        elif kind == "result":
            out.extend(_result(obj, state))
        elif kind == "rate_limit_event":
            out.extend(_rate_limit(obj, state))
        elif kind in ("stream_event", "keep_alive"):
            pass  # partial-message deltas duplicate the assistant lines; not requested anyway
        elif kind == "control_response":
            out.append(StepEvent("control_response", state.session_id, raw=slim(obj)))
        else:
            state.warnings += 1
            out.append(
                ErrorEvent(
                    f"line {state.lineno}: unknown event type {kind!r}",
                    kind="warning",
                    raw=slim(obj),
                )
            )
    except (AttributeError, TypeError, ValueError, KeyError, OverflowError) as exc:
        state.warnings += 1
        out.append(
            ErrorEvent(
                f"line {state.lineno}: unexpected {kind!r} event shape ({type(exc).__name__}: {exc})",
                kind="warning",
                raw=slim(obj),
            )
        )
    return out


def _system(obj: dict[str, Any], state: ClaudeStreamState) -> list[AgentEvent]:
    sub = obj.get("subtype")
    if obj.get("session_id"):
        state.session_id = obj["session_id"]
    if sub == "init":
        state.model = obj.get("model") or state.model
        state.version = obj.get("claude_code_version") or state.version
        state.key_source = obj.get("apiKeySource")
        raw = {
            k: obj.get(k)
            for k in (
                "cwd",
                "model",
                "permissionMode",
                "tools",
                "mcp_servers",
                "apiKeySource",
                "claude_code_version",
                "session_id",
            )
        }
        return [StepEvent("init", state.session_id, raw=slim(raw))]
    if sub == "api_retry":
        status, err = obj.get("error_status"), obj.get("error")
        msg = (
            f"API error {status} ({err}); retry {obj.get('attempt')}/{obj.get('max_retries')}"
            f" in {obj.get('retry_delay_ms')} ms"
        )
        # A fixed ANTHROPIC_API_KEY or token cannot change between retries (10 by default, ~3
        # min of backoff); an OAuth login or an apiKeyHelper may be refreshed on a 401, so waits.
        fixed = state.key_source == "ANTHROPIC_API_KEY" or (
            state.key_source == "none" and state.fixed_token
        )
        if status in AUTH_STATUSES and fixed:
            state.auth_failed = state.give_up = True
            state.api_error_message = f"API Error: {status} ({err})"
        return [ErrorEvent(msg, kind="warning", raw=slim(obj))]
    if sub == "permission_denied":
        msg = f"permission denied for {obj.get('tool_name')}: {obj.get('message', '')}"
        return [ErrorEvent(msg, kind="warning", raw=slim(obj))]
    return [StepEvent(f"system/{sub}", state.session_id, raw=slim(obj))]


def _assistant(obj: dict[str, Any], state: ClaudeStreamState) -> list[AgentEvent]:
    message = obj.get("message") or {}
    msg_id = str(message.get("id") or obj.get("uuid") or f"line{state.lineno}")
    if obj.get("session_id"):
        state.session_id = obj["session_id"]
    model = message.get("model")
    synthetic = obj.get("is_api_error_message") or model == "<synthetic>"
    if model and not synthetic:
        state.model = model
    snapshot = message.get("usage")
    if isinstance(snapshot, dict) and not synthetic and len(state.replies) < MAX_REPLIES:
        name = model or state.model
        if name and snapshot.get("speed") == "fast":  # served in fast mode: its own price,
            name = f"{name}-fast"  # under the name ccusage (and the log ingest) give it
        state.replies.setdefault(_short(msg_id), _usage_from_result({"usage": snapshot}, name))
    out: list[AgentEvent] = []
    envelope = {k: obj.get(k) for k in ("uuid", "parent_tool_use_id", "session_id", "timestamp")}
    envelope["message_id"] = msg_id
    for block in message.get("content") or []:
        if not isinstance(block, dict):
            continue
        key = _block_key(msg_id, block)
        if key in state.seen_blocks:
            continue
        state.seen_blocks.add(key)
        btype = block.get("type")
        raw = {**envelope, "block": slim(block)}
        if btype == "text":
            text = str(block.get("text", ""))
            if synthetic:
                status, etype = obj.get("api_error_status"), obj.get("api_error_type")
                state.api_error_status = status if isinstance(status, int) else None
                state.api_error_message = text
                kind = error_kind(status, etype, obj.get("error"), obj.get("api_error"))
                _note_kind(state, kind)
                if kind == "rate_limit":
                    state.rate_limited = True
                    hint = retry_hint_s(text)
                    if hint is not None:
                        state.retry_after_s = hint
                raw.update(api_error_status=status, api_error_type=etype, error=obj.get("error"))
                out.append(ErrorEvent(text, kind=kind, raw=raw))
            else:
                state.last_text = text
                out.append(TextEvent(text, raw=raw))
        elif btype in ("tool_use", "server_tool_use"):
            call_id = str(block.get("id"))
            name = str(block.get("name"))
            state.tool_names[_short(call_id)] = name[:MAX_KEY_CHARS]
            tool_input = block.get("input")
            if not isinstance(tool_input, dict):
                tool_input = {"value": tool_input}
            out.append(ToolCall(call_id, name, tool_input, raw=raw))
        elif btype in ("thinking", "redacted_thinking"):
            out.append(StepEvent("thinking", state.session_id, raw=raw))
        else:
            out.append(StepEvent(f"block/{btype}", state.session_id, raw=raw))
    return out


def _user(obj: dict[str, Any], state: ClaudeStreamState) -> list[AgentEvent]:
    message = obj.get("message") or {}
    content = message.get("content")
    if not isinstance(content, list):
        return []  # a replayed plain user message
    out: list[AgentEvent] = []
    for block in content:
        if not isinstance(block, dict) or block.get("type") != "tool_result":
            continue
        call_id = str(block.get("tool_use_id"))
        if _short(call_id) in state.seen_results:
            continue
        state.seen_results.add(_short(call_id))
        raw = {
            "uuid": obj.get("uuid"),
            "parent_tool_use_id": obj.get("parent_tool_use_id"),
            "tool_use_result": slim(obj.get("tool_use_result")),
            "tool_result_meta": slim(obj.get("tool_result_meta")),
        }
        out.append(
            ToolResult(
                call_id,
                _result_text(block.get("content")),
                is_error=bool(block.get("is_error")),
                tool=state.tool_names.get(_short(call_id)),
                raw=raw,
            )
        )
    return out


def _result(obj: dict[str, Any], state: ClaudeStreamState) -> list[AgentEvent]:
    state.result = obj
    state.turns += count(obj.get("num_turns"))
    if obj.get("session_id"):
        state.session_id = obj["session_id"]
    usage = _usage_from_result(obj, state.model)
    raw = {k: slim(v) for k, v in obj.items() if k not in ("result",)}
    out: list[AgentEvent] = [UsageEvent(usage, final=True, raw=raw)]
    if obj.get("is_error"):
        status, etype = obj.get("api_error_status"), obj.get("api_error_type")
        text = obj.get("result") or _errors_text(obj) or str(obj.get("subtype"))
        api_error = obj.get("api_error")
        kind = error_kind(status, etype, None, api_error) if (status or etype) else "error"
        if "/login" in str(text):  # "Not logged in · Please run /login", "Invalid API key · ..."
            kind = "auth"
        _note_kind(state, kind)
        if kind == "rate_limit":
            state.rate_limited = True
            hint = retry_hint_s(str(text))
            if hint is not None:
                state.retry_after_s = hint
        if text != state.api_error_message:  # else the synthetic message already said it
            reason = obj.get("terminal_reason") or obj.get("subtype")
            out.append(ErrorEvent(f"{reason}: {text}", kind=kind, raw={"result": slim(text)}))
    return out


def _note_kind(state: ClaudeStreamState, kind: str) -> None:
    state.auth_failed = state.auth_failed or kind == "auth"
    state.model_missing = state.model_missing or kind == "unknown_model"
    state.billing = state.billing or kind == "billing"
    state.account = state.account or kind == "account"
    state.overloaded = state.overloaded or kind == "overloaded"


def _rate_limit(obj: dict[str, Any], state: ClaudeStreamState) -> list[AgentEvent]:
    info = obj.get("rate_limit_info") or {}
    status = info.get("status")
    resets = info.get("resetsAt")
    if status == "rejected":
        state.rate_limited = True
        resets_at = cost(resets)  # a finite epoch time, or None
        if resets_at is not None:
            state.retry_after_s = max(0.0, resets_at - time.time())
        return [
            ErrorEvent(f"rate limit reached (resets at {resets})", kind="rate_limit", raw=slim(obj))
        ]
    return [StepEvent(f"rate_limit/{status}", state.session_id, raw=slim(obj))]


def outcome_from_state(
    state: ClaudeStreamState,
    returncode: int | None,
    *,
    cancelled: bool = False,
    timed_out: bool = False,
    timeout_s: float | None = None,
    stderr_tail: str = "",
) -> Outcome:
    """How the run ended, from the parsed stream and the process's exit."""
    result = state.result
    usage = _usage_from_result(result, state.model) if result else _started(state)
    common: dict[str, Any] = {
        "usage": usage,
        "session_id": state.session_id,
        "model": usage.model or state.model,
        "num_turns": state.turns if result else None,
        "retry_after_s": state.retry_after_s,
        "raw": {k: slim(v) for k, v in result.items()} if result else None,
        "requests": requests_of(state),
        # no result line after claude started (its init line): the reply under way, and any
        # whose snapshot never came, told no tokens: the cost is unknown, the replies'
        # snapshots a lower bound (a refused key's retry given up on is billed nothing)
        "incomplete": result is None and state.session_id is not None and not state.give_up,
    }
    stderr = stderr_tail.strip()
    if cancelled:
        return Outcome("cancelled", final_text=state.last_text, exit_reason="cancelled", **common)
    if timed_out:
        return Outcome(
            "killed",
            final_text=state.last_text,
            exit_reason="timeout",
            error=timeout_message(timeout_s),
            **common,
        )
    if result is None and state.give_up:
        return Outcome(
            "error",
            final_text=state.last_text,
            exit_reason="auth",
            error=f"{state.api_error_message} (credentials refused: check the "
            f"{'ANTHROPIC_API_KEY' if state.key_source != 'none' else 'ANTHROPIC_AUTH_TOKEN'} "
            "claude was given; stopped at its first retry)",
            **common,
        )
    if result is None:
        signal_exit = returncode is not None and (returncode < 0 or returncode >= 128)
        how = (
            f"signal {-returncode}"
            if returncode is not None and returncode < 0
            else f"exit {returncode}"
        )
        detail = f"claude ended without a result line ({how})"
        if stderr:
            detail += f": {stderr.splitlines()[-1][:500]}"
        return Outcome(
            "killed" if signal_exit else "error",
            final_text=state.last_text,
            exit_reason=f"no result ({how})",
            error=detail,
            **common,
        )
    final_text = result.get("result") if isinstance(result.get("result"), str) else state.last_text
    reason = str(result.get("terminal_reason") or result.get("subtype") or "completed")
    if result.get("is_error"):
        text = result.get("result") or _errors_text(result)
        if result.get("terminal_reason") == "completed" and result.get("api_error_status"):
            reason = "api_error"  # 2.1.197 says completed even for API errors
        if state.overloaded:
            reason = "overloaded"
        if state.rate_limited:
            reason = "rate_limit"
        if state.model_missing:
            reason = "unknown_model"
        if state.billing:
            reason = "billing"
        if state.auth_failed:
            reason = "auth"
        if state.account:  # a 403 of an account on hold is no credentials' fault
            reason = "account"
        return Outcome(
            "error",
            final_text=final_text or "",
            exit_reason=reason,
            error=explained(str(text), reason) if text else reason,
            **common,
        )
    if returncode not in (0, None):
        return Outcome(
            "error",
            final_text=final_text or "",
            exit_reason=f"exit {returncode}",
            error=clean_tail(stderr, 500) if stderr else f"claude exited with {returncode}",
            **common,
        )
    return Outcome("ok", final_text=final_text or "", exit_reason=reason, **common)
