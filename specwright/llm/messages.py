"""Pure helpers around SDK messages: usage, the forced tool's input, corrective turns, error
details. They take SDK objects duck-typed, so nothing here imports the SDK."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from specwright.agents.process import count
from specwright.errors import one_line
from specwright.llm.errors import (
    LLMAuthError,
    LLMBillingError,
    LLMError,
    LLMRateLimitError,
    LLMUnknownModelError,
)
from specwright.llm.schema import schema_problems
from specwright.model import Usage

if TYPE_CHECKING:
    from specwright.recorder import ExecutionRecorder

MAX_ERROR_DETAIL = 300  # characters of the server's error message kept in our one-line errors


@dataclass(frozen=True)
class Answer:
    """One API response, reduced to what callers need."""

    message: Any  # anthropic.types.Message
    usage: Usage
    cache_write_1h: int


@dataclass(frozen=True)
class Spent:
    """What an attempt cut short (stream dropped, timed out) consumed: the tokens it told, and
    whether they are all of them (``exact``) or a lower bound (none told: unknown)."""

    usage: Usage
    cache_write_1h: int
    exact: bool


def to_messages(prompt: str | Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [dict(m) for m in prompt]


def emit(rec: ExecutionRecorder | None, event: Any) -> None:
    if rec is not None:
        rec.on_event(event)


def error_kind(error: LLMError) -> str:
    """The error event's kind, as the agents' adapters name them (auth: a refused key)."""
    if isinstance(error, LLMAuthError):
        return "auth"
    if isinstance(error, LLMBillingError | LLMUnknownModelError):
        return error.reason
    return "rate_limit" if isinstance(error, LLMRateLimitError) else "api_error"


def answer_of(message: Any, model: str) -> Answer:
    """The answer with its usage, each count bounded as the agents' are (``count``: one past
    BIGINT from a misbehaving endpoint failed the execution's write, left it ``running``)."""
    u = message.usage
    cache_1h = 0
    details = getattr(u, "cache_creation", None)
    if details is not None:
        cache_1h = count(getattr(details, "ephemeral_1h_input_tokens", 0))
    usage = Usage(
        input_tokens=count(u.input_tokens),
        output_tokens=count(u.output_tokens),
        cache_read_tokens=count(getattr(u, "cache_read_input_tokens", 0)),
        cache_write_tokens=count(getattr(u, "cache_creation_input_tokens", 0)),
        model=getattr(message, "model", None) or model,
    )
    return Answer(message, usage, cache_1h)


def message_problem(message: Any, content_type: str | None = None) -> str | None:
    """Why ``message`` (what the SDK made of a 200 answer) is not a Messages answer, or None."""
    usage = getattr(message, "usage", None)
    if (
        isinstance(getattr(message, "content", None), list)
        and usage is not None
        and isinstance(getattr(usage, "input_tokens", None), int)
    ):
        return None
    kind = f"{content_type} " if content_type else ""
    if isinstance(message, str | bytes):
        got = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    else:
        dumped = dump_message(message)
        got = str(dumped if dumped is not None else message)
    cut = one_line(got, MAX_ERROR_DETAIL)
    return f"the answer is not a Messages API response (got {kind}{cut!r})"


def extract_tool_input(
    message: Any, name: str, schema: dict[str, Any]
) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """The forced tool's input, or why it is unusable (and the tool_use id to answer)."""
    blocks = [b for b in message.content if getattr(b, "type", "") == "tool_use"]
    named = [b for b in blocks if b.name == name]
    truncated = " (the answer hit max_tokens)" if message.stop_reason == "max_tokens" else ""
    if message.stop_reason == "refusal":  # not a malformed answer: say so, with its words
        said = " ".join(b.text for b in message.content if getattr(b, "type", "") == "text")
        said = one_line(said, 300) if said.strip() else "stop_reason refusal"
        truncated = f" (the model refused: {said!r})"
    if not named:
        seen = ", ".join(b.name for b in blocks) or "none"
        return (
            None,
            f"no call of tool {name!r} (tool calls: {seen}){truncated}",
            (blocks[0].id if blocks else None),
        )
    block = named[0]
    data = block.input
    if not isinstance(data, dict):
        return None, f"the tool input is {type(data).__name__}, not an object{truncated}", block.id
    problems = schema_problems(data, schema)
    if problems:
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        return None, "; ".join(problems[:5]) + more + truncated, block.id
    return data, None, block.id


def corrective_turns(
    message: Any, name: str, problem: str | None, block_id: str | None
) -> list[dict[str, Any]]:
    """The assistant's bad answer and a user turn saying what to fix."""
    fix = (
        f"Your answer was not usable: {problem}. Call the tool {name!r} exactly once, with an "
        "input that matches its input schema exactly (every required field, the right types)."
    )
    content = [_echo(b) for b in message.content] or [{"type": "text", "text": "(empty answer)"}]
    tool_ids = [b.id for b in message.content if getattr(b, "type", "") == "tool_use"]
    if tool_ids:
        results: list[dict[str, Any]] = [
            {
                "type": "tool_result",
                "tool_use_id": tid,
                "is_error": True,
                "content": fix if tid == (block_id or tool_ids[0]) else "Not used.",
            }
            for tid in tool_ids
        ]
        return [{"role": "assistant", "content": content}, {"role": "user", "content": results}]
    return [{"role": "assistant", "content": content}, {"role": "user", "content": fix}]


def _echo(block: Any) -> dict[str, Any]:
    """A content block of the model's answer as sent back to it; a tool input that is not an
    object (which the API would refuse with a 400, ending the retry) is sent as ``{}``."""
    out: dict[str, Any] = block.model_dump(exclude_none=True, warnings=False)
    if out.get("type") == "tool_use" and not isinstance(out.get("input"), dict):
        out["input"] = {}
    return out


def dump_message(message: Any) -> dict[str, Any] | None:
    try:
        out = message.model_dump(mode="json", exclude_none=True, warnings=False)
    except Exception:
        return None
    return out if isinstance(out, dict) else None


def usage_raw(message: Any) -> dict[str, Any] | None:
    try:
        out = message.usage.model_dump(mode="json", exclude_none=True)
    except Exception:
        return None
    if isinstance(out, dict):
        out["message_id"] = getattr(message, "id", None)
        out["stop_reason"] = getattr(message, "stop_reason", None)
        return out
    return None


def error_detail(exc: Any) -> tuple[str | None, str]:
    """The provider's error type and message, flattened to one bounded line."""
    body = getattr(exc, "body", None)
    etype, msg = None, ""
    if isinstance(body, dict):
        inner = body.get("error")
        err: dict[str, Any] = inner if isinstance(inner, dict) else body
        etype = err.get("type") if isinstance(err.get("type"), str) else None
        msg = str(err.get("message") or "")
    elif body is not None:
        msg = str(body)
    return etype, one_line(msg, MAX_ERROR_DETAIL)


def error_raw(exc: Exception) -> dict[str, Any]:
    raw: dict[str, Any] = {"exception": type(exc).__name__}
    status = getattr(exc, "status_code", None)
    if status is not None:
        raw["status"] = status
    body = getattr(exc, "body", None)
    if isinstance(body, dict | str):
        raw["body"] = body if isinstance(body, dict) else body[:2000]
    response = getattr(exc, "response", None)
    if response is not None:
        rid = response.headers.get("request-id")
        if rid:
            raw["request_id"] = rid
    return raw


def retry_after(headers: Any) -> float | None:
    """Seconds the server asks us to wait (``retry-after-ms`` or ``retry-after``), if any."""
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return float(ms) / 1000.0
        s = headers.get("retry-after")
        if s is not None:
            return float(s)
    except (TypeError, ValueError):
        return None
    return None


def root_cause(exc: BaseException) -> str:
    seen = set()
    cur: BaseException | None = exc
    last = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        last = cur
        cur = cur.__cause__ or cur.__context__
    text = str(last) or type(last).__name__
    if "refused" in text.lower():
        return "connection refused"
    return " ".join(text.split())[:200]


def pass_event(
    event: Any,
    on_text: Callable[[str], None] | None,
    on_input: Callable[[str | None], None] | None,
) -> bool:
    """Pass a stream event on; True when it is ``message_stop``."""
    if event.type == "text" and on_text is not None:
        on_text(event.text)
    elif event.type == "input_json" and on_input is not None:
        on_input(event.partial_json)
    elif (
        event.type == "content_block_start"
        and on_input is not None
        and getattr(event.content_block, "type", "") == "tool_use"
    ):
        on_input(None)
    return bool(event.type == "message_stop")


def httpx_error(exc: BaseException, name: str) -> bool:
    """Whether ``exc`` is the HTTP library's ``name`` error (or a subclass): what a stream broken
    mid-answer raises, unwrapped by the SDK (whose HTTP package may be ``httpx`` or a fork)."""
    return any(
        c.__name__ == name and c.__module__.split(".")[0].startswith("httpx")
        for c in type(exc).__mro__
    )
