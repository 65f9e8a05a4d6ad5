"""The pure parser of OpenCode's ``/event`` stream (no HTTP, no I/O).

``parse_event`` maps one event of a session to normalized events and updates an
``OpenCodeState``. Tool parts are followed by ``callID`` through pending -> running ->
completed | error; each ``step-finish`` part carries one LLM call's tokens (``input`` excludes
cache reads) and cost; ``session.idle`` may come twice, and ``permission.asked`` is queued in the
state for the transport to answer.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from specwright.agents.process import cost, count, mapping, slim
from specwright.agents.resets import account_unusable, out_of_credit
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

# Text kept per part while it streams: 16x what the store keeps of one text event
# (recorder.MAX_TEXT_CHARS); endless deltas past it are counted, not kept.
MAX_PART_TEXT_CHARS = 1024 * 1024
MAX_STEPS = 100_000  # step usages kept to price each call at its own tier; past it, the sum

NOISE = {
    "server.connected",
    "server.heartbeat",
    "plugin.added",
    "catalog.updated",
    "reference.updated",
    "integration.updated",
    "file.watcher.updated",
    "lsp.updated",
    "lsp.client.diagnostics",
    "installation.updated",
    "project.updated",
}


@dataclass
class OpenCodeState:
    """What the parser has seen of one session."""

    session_id: str | None = None
    children: set[str] = field(default_factory=set)  # sub-agent sessions started by ours
    roles: dict[str, str] = field(default_factory=dict)  # message id -> user | assistant
    text: dict[str, str] = field(default_factory=dict)  # text part id -> text so far
    text_done: set[str] = field(default_factory=set)
    text_cut: dict[str, int] = field(default_factory=dict)  # part id -> chars not kept
    tool_called: set[str] = field(default_factory=set)  # callIDs with a ToolCall emitted
    tool_done: set[str] = field(default_factory=set)
    steps_done: set[str] = field(default_factory=set)
    turns: int = 0  # of them, our session's own (a sub-agent's are not): its num_turns
    usage: Usage = field(default_factory=Usage)  # the sum of step-finish parts
    steps: list[Usage] = field(default_factory=list)  # each step's (one model call), to price
    model: str | None = None
    provider: str | None = None
    busy: bool = False
    idle: bool = False
    error: dict[str, Any] | None = None
    retry_after_s: float | None = None
    permissions: list[dict[str, Any]] = field(default_factory=list)  # asks to answer
    rejected: int = 0
    refused: int = 0  # of them, writes outside the work tree (``permission_answer``)
    last_text: str = ""
    totals: dict[str, Any] | None = None  # session info cost/tokens from session.updated
    warnings: int = 0
    events: int = 0  # events read from the stream (the transport counts them)


def _step_usage(part: dict[str, Any], model: str | None) -> Usage:
    tokens = mapping(part.get("tokens"))
    cache = mapping(tokens.get("cache"))
    reasoning = count(tokens.get("reasoning"))
    return Usage(
        input_tokens=count(tokens.get("input")),
        # opencode counts reasoning apart from output (and bills it at the output rate); here,
        # as in Claude Code's and Codex's numbers, output includes it, reasoning is its part
        output_tokens=count(tokens.get("output")) + reasoning,
        cache_read_tokens=count(cache.get("read")),
        cache_write_tokens=count(cache.get("write")),
        reasoning_tokens=reasoning,
        cost_usd=cost(part.get("cost")),
        model=model,
    )


def usage_from_totals(info: dict[str, Any], model: str | None) -> Usage:
    """A session's running totals (``GET /session/{id}`` or ``session.updated``) as Usage."""
    return _step_usage({"tokens": info.get("tokens"), "cost": info.get("cost")}, model)


def _retry_after(headers: dict[str, Any]) -> float | None:
    lower = {str(k).lower(): v for k, v in (headers or {}).items()}
    try:
        if "retry-after-ms" in lower:
            seconds = float(lower["retry-after-ms"]) / 1000
        elif "retry-after" in lower:
            seconds = float(lower["retry-after"])
        else:
            return None
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def as_error(error: Any) -> dict[str, Any]:
    """A session or message error as OpenCode's ``{name, data: {message}}`` object, whatever
    shape it came in (a bare string, a list...)."""
    if isinstance(error, dict):
        return error if isinstance(error.get("data"), dict | None) else {**error, "data": {}}
    return {"name": "Error", "data": {"message": str(error)[:2000]}}


def error_kind(error: dict[str, Any]) -> str:
    """``billing`` (a 402, or the provider's account out of credit: OpenAI's insufficient_quota
    and z.ai's 1113 come as 429s, Anthropic's as a 400; no wait helps), ``account`` (the
    account disabled, deactivated or awaiting verification: the same), ``overloaded`` (a 529:
    a later try may work), ``rate_limit`` (a 429), ``auth`` (a 401/403 or ProviderAuthError: the provider's key is wrong or missing,
    so no retry can succeed), ``unknown_model`` (the same: a 404 from the provider, or
    OpenCode's ProviderModelNotFoundError, a model its config lacks, which comes as an
    UnknownError naming it) or ``api_error``."""
    error = as_error(error)
    data = error.get("data") or {}
    status = data.get("statusCode")
    said = f"{data.get('message')} {data.get('responseBody')}"
    if status == 402 or out_of_credit(said):
        return "billing"
    if account_unusable(said):
        return "account"
    if status == 529:  # the service, not the account: no reset to wait for
        return "overloaded"
    if status == 429:
        return "rate_limit"
    if status in (401, 403) or error.get("name") == "ProviderAuthError":
        return "auth"
    named = (error.get("name"), str(data.get("message") or "").split(":", 1)[0].strip())
    if status == 404 or "ProviderModelNotFoundError" in named:
        return "unknown_model"
    return "api_error"


# the first frame of a JavaScript stack trace: opencode puts one in an UnknownError's message
_STACK_FRAME = re.compile(r"\n\s*at \S")


def error_text(error: dict[str, Any]) -> str:
    """One line for a session error: name, message and HTTP status when there is one (a stack
    trace in the message is left to the event's raw payload)."""
    error = as_error(error)
    data = error.get("data") or {}
    message = _STACK_FRAME.split(str(data.get("message") or error), maxsplit=1)[0].strip()
    text = f"{error.get('name', 'Error')}: {message}"
    if data.get("statusCode"):
        text += f" (HTTP {data['statusCode']})"
    if error_kind(error) == "auth":
        text += (
            " (the provider refused or lacks its key: the OpenCode server holds it; set the "
            "provider's API key variable where the server runs, its config's provider options "
            "apiKey, or `opencode auth login`, then restart the server)"
        )
    elif error_kind(error) == "billing":
        text += " (the provider's account is out of credit: add credits or change its plan)"
    elif error_kind(error) == "account":
        text += " (the provider's account cannot be used until its owner puts it right)"
    elif error_kind(error) == "unknown_model":
        text += (
            " (set the executor's provider and model to one the OpenCode server's config has "
            "and its provider serves)"
        )
    return text


def for_log(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` as ``options.stream_log`` keeps it: a text delta's piece, and a running tool's
    output so far, are left out (their length kept), since a secret cut across pieces (or at a
    snapshot's end) passes the redaction; the whole text or output, redacted, is in the part's
    next ``message.part.updated``, the tool's once it has ended."""
    props = event.get("properties")
    if not isinstance(props, dict):
        return event
    if event.get("type") == "message.part.delta":
        piece = props.get("delta")
        return {**event, "properties": {**props, "delta": f"[{len(str(piece or ''))} chars]"}}
    part = props.get("part")
    state = part.get("state") if isinstance(part, dict) else None
    meta = state.get("metadata") if isinstance(state, dict) else None
    if not (
        event.get("type") == "message.part.updated"
        and isinstance(part, dict)
        and isinstance(state, dict)
        and isinstance(meta, dict)
        and state.get("status") == "running"
        and isinstance(output := meta.get("output"), str)
    ):
        return event
    meta = {**meta, "output": f"[{len(output)} chars]"}
    part = {**part, "state": {**state, "metadata": meta}}
    return {**event, "properties": {**props, "part": part}}


def parse_event(event: dict[str, Any], state: OpenCodeState) -> list[AgentEvent]:
    """Turn one ``/event`` payload into normalized events for ``state.session_id``'s session."""
    kind = event.get("type")
    props = event.get("properties")
    if not isinstance(kind, str) or not isinstance(props, dict):
        state.warnings += 1
        return [
            ErrorEvent(
                f"malformed OpenCode event: {str(event)[:200]}", kind="warning", raw=slim(event)
            )
        ]
    if kind in NOISE:
        return []
    try:
        sid = _session_of(kind, props)
        if kind == "session.created" and state.session_id is not None:
            return _child(kind, props, state)  # a sub-agent's session, or none of ours
        if sid is not None and state.session_id is not None and sid != state.session_id:
            if sid not in state.children:
                return []  # another session in the same directory
            return _child(kind, props, state)
        return _dispatch(kind, props, state)
    except (AttributeError, TypeError, ValueError, KeyError, OverflowError) as exc:
        state.warnings += 1
        return [
            ErrorEvent(
                f"unexpected {kind!r} event shape ({type(exc).__name__}: {exc})",
                kind="warning",
                raw=slim(event),
            )
        ]


def _session_of(kind: str, props: dict[str, Any]) -> str | None:
    info = props.get("info") or {}
    sid = props.get("sessionID") or info.get("sessionID")
    if kind.startswith("session.") and sid is None:
        sid = info.get("id")
    return None if sid is None else str(sid)


def _child(kind: str, props: dict[str, Any], state: OpenCodeState) -> list[AgentEvent]:
    """Events of a sub-agent session (opencode's task tool): its work is ours, its lifecycle
    is not (its idle does not end our run)."""
    if kind == "session.created":
        info = props.get("info") or {}
        parent = info.get("parentID")
        if parent and (parent == state.session_id or parent in state.children):
            state.children.add(str(info["id"]))
            return [StepEvent("subagent_session", str(info["id"]), raw=slim(info))]
        return []
    if kind == "session.error":
        error = as_error(props.get("error") or {})
        return [
            ErrorEvent(f"sub-agent session: {error_text(error)}", kind="warning", raw=slim(error))
        ]
    if kind.startswith("session."):
        return []
    return _dispatch(kind, props, state)


def _dispatch(kind: str, props: dict[str, Any], state: OpenCodeState) -> list[AgentEvent]:
    if kind == "message.part.updated":
        return _part(props["part"], state)
    if kind == "message.part.delta":
        pid = str(props.get("partID") or "")
        if props.get("field") == "text" and pid and pid not in state.text_done:
            _keep_text(state, pid, state.text.get(pid, ""), str(props.get("delta") or ""))
        return []
    if kind == "message.updated":
        info = props["info"]
        state.roles[info["id"]] = info.get("role", "")
        if info.get("role") == "assistant":
            state.model = info.get("modelID") or state.model
            state.provider = info.get("providerID") or state.provider
            if info.get("error") and state.error is None:
                state.error = as_error(info["error"])
        return []
    if kind == "session.status":
        status = props.get("status") or {}
        if status.get("type") == "busy":
            state.busy = True
        elif status.get("type") == "retry":
            nxt = status.get("next")
            at_ms = cost(nxt)  # a finite number of ms since the epoch, or None
            if at_ms is not None:
                state.retry_after_s = max(0.0, at_ms / 1000 - time.time())
            return [
                ErrorEvent(
                    f"model call failed, retry {status.get('attempt')}: {status.get('message')}",
                    kind="warning",
                    raw=slim(status),
                )
            ]
        return []
    if kind == "session.idle":
        if state.idle or not state.busy:
            return []
        state.idle = True
        return [StepEvent("idle", state.session_id)]
    if kind == "session.error":
        error = as_error(props.get("error") or {})
        state.error = error
        data = error.get("data") or {}
        kind_ = error_kind(error)
        # The reset time is the error's own: a rate limit's alone (the loop would wait and retry
        # a 400, 401 or 500 for ever, never counting it), and never OpenCode's last retry time,
        # past by now (0 s: the loop would retry an exhausted quota at once, without end);
        # without one the loop waits its default.
        hint = _retry_after(data.get("responseHeaders") or {})
        state.retry_after_s = hint if kind_ == "rate_limit" else None
        if error.get("name") == "MessageAbortedError":
            return [StepEvent("aborted", state.session_id, raw=slim(error))]
        return [ErrorEvent(error_text(error), kind=kind_, raw=slim(error))]
    if kind in ("session.created", "session.updated"):
        info = props.get("info") or {}
        if "cost" in info or "tokens" in info:
            state.totals = {"cost": info.get("cost"), "tokens": info.get("tokens")}
        return []
    if kind == "permission.asked":
        state.permissions.append(props)
        tool = props.get("tool") or {}
        return [
            StepEvent(
                f"permission.asked {props.get('permission')}",
                state.session_id,
                raw=slim({**props, "callID": tool.get("callID")}),
            )
        ]
    if kind == "permission.replied":
        if props.get("reply") == "reject":
            state.rejected += 1
        return [
            StepEvent(f"permission.replied {props.get('reply')}", state.session_id, raw=slim(props))
        ]
    if kind in ("session.diff", "file.edited", "session.compacted", "todo.updated"):
        return []
    return [StepEvent(kind, state.session_id, raw=slim(props))]


def _part(part: dict[str, Any], state: OpenCodeState) -> list[AgentEvent]:
    ptype = part.get("type")
    pid = str(part.get("id"))
    if state.roles.get(str(part.get("messageID"))) == "user":
        return []  # our own prompt, echoed back
    if ptype == "text":
        if pid in state.text_done:
            return []
        if part.get("text"):  # the whole text so far
            state.text_cut.pop(pid, None)
            _keep_text(state, pid, "", str(part["text"]))
        if (part.get("time") or {}).get("end") is None:
            return []
        return _emit_text(pid, state, part)
    if ptype == "tool":
        return _tool(part, state)
    if ptype == "step-finish":
        if pid in state.steps_done:
            return []
        state.steps_done.add(pid)
        sid = part.get("sessionID")
        if sid is None or state.session_id is None or str(sid) == state.session_id:
            state.turns += 1  # a step is one model call: as a turn of Claude Code's
        step = _step_usage(part, state.model)
        state.usage = state.usage + step
        if len(state.steps) < MAX_STEPS:
            state.steps.append(step)
        return [
            UsageEvent(
                step,
                raw=slim({k: part.get(k) for k in ("reason", "tokens", "cost", "messageID", "id")}),
            )
        ]
    if ptype == "step-start":
        return [StepEvent("step_start", state.session_id)]
    if ptype == "reasoning":
        if (part.get("time") or {}).get("end") is None or pid in state.text_done:
            return []
        state.text_done.add(pid)
        return [StepEvent("reasoning", state.session_id, raw=slim(part))]
    return [StepEvent(f"part/{ptype}", state.session_id, raw=slim(part))]


def _keep_text(state: OpenCodeState, pid: str, have: str, more: str) -> None:
    """``have + more`` as the text of part ``pid``, up to ``MAX_PART_TEXT_CHARS``."""
    room = MAX_PART_TEXT_CHARS - len(have)
    if len(more) > room:
        state.text_cut[pid] = state.text_cut.get(pid, 0) + len(more) - max(room, 0)
        more = more[: max(room, 0)]
    state.text[pid] = have + more


def _emit_text(pid: str, state: OpenCodeState, part: dict[str, Any] | None) -> list[AgentEvent]:
    state.text_done.add(pid)
    text = state.text.pop(pid, "")
    if not text.strip():
        return []
    cut = state.text_cut.pop(pid, 0)
    if cut:
        text += f"\n…[truncated: {cut} more chars not kept, the first {len(text)} kept]"
    state.last_text = text
    raw = {k: part.get(k) for k in ("id", "messageID", "time")} if part else {"id": pid}
    return [TextEvent(text, raw=raw)]


def _tool(part: dict[str, Any], state: OpenCodeState) -> list[AgentEvent]:
    call_id = str(part.get("callID") or part.get("id"))
    tool = str(part.get("tool"))
    st = part.get("state") or {}
    status = st.get("status")
    out: list[AgentEvent] = []
    raw = {"id": part.get("id"), "messageID": part.get("messageID"), "status": status}
    if status in ("running", "completed", "error") and call_id not in state.tool_called:
        state.tool_called.add(call_id)
        tool_input = st.get("input")
        out.append(
            ToolCall(call_id, tool, tool_input if isinstance(tool_input, dict) else {}, raw=raw)
        )
    if status in ("completed", "error") and call_id not in state.tool_done:
        state.tool_done.add(call_id)
        if status == "completed":
            output = st.get("output")
            output = output if isinstance(output, str) else str(output or "")
        else:
            output = str(st.get("error") or "error")
        raw.update(title=st.get("title"), metadata=slim(st.get("metadata")), time=st.get("time"))
        out.append(ToolResult(call_id, output, is_error=status == "error", tool=tool, raw=raw))
    return out


def finish_parse(state: OpenCodeState) -> list[AgentEvent]:
    """Events still owed at the end: text parts that streamed but never got their end mark."""
    out: list[AgentEvent] = []
    for pid in list(state.text):
        if pid not in state.text_done:
            out.extend(_emit_text(pid, state, None))
    return out


# Asks refused whatever the policy: the agent works in its work tree (as Claude Code does in
# acceptEdits mode). A write elsewhere is refused with a message, which the agent reads as the
# tool's error and goes on from (a bare reject would end its turn).
OUTSIDE_THE_TREE = ("external_directory",)


def permission_answer(
    ask: dict[str, Any], reply: str, directory: str, state: OpenCodeState
) -> tuple[dict[str, str], ErrorEvent | None]:
    """The body answering ``permission.asked`` ``ask`` under a policy's ``reply``, and the
    warning to record when it is refused for being outside the work tree ``directory``."""
    if ask.get("permission") not in OUTSIDE_THE_TREE:
        return {"reply": reply}, None
    state.refused += 1
    where = ", ".join(str(p)[:200] for p in (ask.get("patterns") or [])[:3])
    message = f"Refused: work only inside the working directory {directory}."
    warning = ErrorEvent(f"refused a write outside the work tree: {where}", kind="warning")
    return {"reply": "reject", "message": message}, warning
