"""Scripted turns for the fake model server: the recorded ``Request``, the ``Turn`` a test expects
and the helpers that build turns (``anthropic_text``, ``openai_tool_call``, ``anthropic_error``...)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

Protocol = Literal["anthropic", "openai"]


MAX_BODY_BYTES = 64 * 1024 * 1024  # a request body beyond this is refused (413)

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", None),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}


def _short_id() -> str:
    return uuid.uuid4().hex[:16]


# --- requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One HTTP request the server received, with its parsed JSON body."""

    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: dict[str, str]  # names lowercased
    body: Any  # parsed JSON, or None when there was no body or it was not JSON
    raw_body: bytes = b""
    kind: str = "other"  # anthropic | openai | count_tokens | models | health | other
    turn: int | None = None  # index of the scripted turn it consumed, if any

    @property
    def json(self) -> dict[str, Any]:
        """The body as a dict (empty when it was not a JSON object)."""
        return self.body if isinstance(self.body, dict) else {}

    @property
    def model(self) -> str | None:
        """The ``model`` the client asked for."""
        value = self.json.get("model")
        return value if isinstance(value, str) else None

    @property
    def api_key(self) -> str | None:
        """The key the client sent (``x-api-key`` or ``Authorization: Bearer``)."""
        keys = _keys(self)
        return keys[0] if keys else None

    @property
    def stream(self) -> bool:
        """True when the client asked for a streamed answer."""
        return bool(self.json.get("stream"))

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The conversation the client sent (``messages``)."""
        value = self.json.get("messages")
        return [m for m in value if isinstance(m, dict)] if isinstance(value, list) else []

    @property
    def system_text(self) -> str:
        """The system prompt as one string (Anthropic ``system`` or OpenAI system messages)."""
        if self.kind == "openai":
            return "\n".join(
                _content_text(m.get("content")) for m in self.messages if m.get("role") == "system"
            )
        return _content_text(self.json.get("system"))

    @property
    def tool_names(self) -> list[str]:
        """Names of the tools the client offered."""
        names: list[str] = []
        for tool in self.json.get("tools") or []:
            if not isinstance(tool, dict):
                continue
            fn = tool.get("function")
            name = fn.get("name") if isinstance(fn, dict) else tool.get("name")
            if isinstance(name, str):
                names.append(name)
        return names

    @property
    def tool_results(self) -> list[dict[str, Any]]:
        """Tool results fed back in the latest turn (Anthropic ``tool_result`` blocks of the last
        user message, or the trailing OpenAI ``tool`` messages)."""
        msgs = self.messages
        if self.kind == "openai":
            out: list[dict[str, Any]] = []
            for m in reversed(msgs):
                if m.get("role") != "tool":
                    break
                out.insert(0, m)
            return out
        if not msgs or msgs[-1].get("role") != "user":
            return []
        content = msgs[-1].get("content")
        if not isinstance(content, list):
            return []
        return [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]

    @property
    def last_user_text(self) -> str:
        """Text of the last user message."""
        for m in reversed(self.messages):
            if m.get("role") == "user":
                return _content_text(m.get("content"))
        return ""

    @property
    def working_directory(self) -> str | None:
        """The working directory an agent CLI put in its prompt (Claude Code: ``Working
        directory: X`` or ``Primary working directory: X``; OpenCode likewise), if any."""
        match = _CWD_RE.search(self.all_text)
        return match.group(1) if match else None

    @property
    def all_text(self) -> str:
        """Every piece of text in the system prompt and the messages, joined (for ``in`` checks)."""
        parts = [self.system_text]
        parts += [_content_text(m.get("content")) for m in self.messages]
        return "\n".join(p for p in parts if p)


_CWD_RE = re.compile(r"[Ww]orking directory: ?(/[^\s<>\"']*)")


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict):
                if isinstance(block.get("text"), str):
                    parts.append(block["text"])
                elif block.get("type") == "tool_result":
                    parts.append(_content_text(block.get("content")))
        return "\n".join(parts)
    return ""


# --- turns ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    """One scripted model answer, and what the request that gets it must look like.

    Build turns with the helper functions (``anthropic_text``, ``openai_tool_call``...) rather
    than by hand. ``content`` holds Anthropic content blocks (``text`` / ``tool_use``); OpenAI
    turns use the same blocks and are translated (``tool_use`` -> a ``tool_calls`` entry).
    """

    protocol: Protocol
    content: tuple[dict[str, Any], ...] = ()
    stop_reason: str | None = "end_turn"
    usage: dict[str, Any] = field(default_factory=dict)
    model: str | None = None  # the model named in the answer; default: the one requested
    message_id: str | None = None
    status: int = 200
    error: dict[str, Any] | None = None  # the error body for status >= 400 or mid_stream errors
    headers: dict[str, str] = field(default_factory=dict)
    mid_stream_error: bool = False  # a streamed answer: 200, some content, then an error event
    delay_s: float = 0.0  # wait before answering (to test client timeouts)
    chunk_delay_s: float = 0.0  # wait between streamed events
    chunk_size: int = 24  # characters per text / JSON delta
    drop_after: int | None = None  # close the stream after this many SSE events
    # matchers: a request failing one gets an error answer and is recorded as a failure
    expect_tool_result: bool | None = None  # True: must feed back a tool result; False: must not
    expect_stream: bool | None = None
    expect_model: str | None = None
    expect_system: str | None = None  # a substring of the system prompt
    expect_text: str | None = None  # a substring of the system prompt or any message
    expect_tools: tuple[str, ...] = ()  # tool names that must be offered
    expect: Callable[[Request], Any] | None = None  # return False or raise to refuse
    label: str = ""

    def describe(self) -> str:
        """A short description for failure messages."""
        if self.label:
            return self.label
        if self.status >= 400:
            return f"{self.protocol} error {self.status}"
        kinds = [
            b.get("name", "?") if b.get("type") == "tool_use" else str(b.get("type"))
            for b in self.content
        ]
        return f"{self.protocol} [{', '.join(kinds) or 'empty'}]"

    def check(self, req: Request) -> str | None:
        """Why ``req`` does not match this turn, or None when it does."""
        if req.kind != self.protocol:
            return f"expected a {self.protocol} request, got {req.kind} {req.method} {req.path}"
        if self.expect_stream is not None and req.stream != self.expect_stream:
            return f"expected stream={self.expect_stream}, got stream={req.stream}"
        if self.expect_model is not None and req.model != self.expect_model:
            return f"expected model {self.expect_model!r}, got {req.model!r}"
        if self.expect_tool_result is True and not req.tool_results:
            return "expected the request to carry a tool result; it has none"
        if self.expect_tool_result is False and req.tool_results:
            return f"expected no tool result; the request carries {len(req.tool_results)}"
        if self.expect_system is not None and self.expect_system not in req.system_text:
            return f"expected the system prompt to contain {self.expect_system!r}"
        if self.expect_text is not None and self.expect_text not in req.all_text:
            return f"expected the prompt to contain {self.expect_text!r}"
        missing = [t for t in self.expect_tools if t not in req.tool_names]
        if missing:
            return f"expected tools {missing} to be offered; got {req.tool_names}"
        if self.expect is not None:
            try:
                ok = self.expect(req)
            except Exception as exc:
                return f"expect() refused the request: {type(exc).__name__}: {exc}"
            if ok is False:
                return "expect() returned False"
        return None


def _anthropic_usage(
    input_tokens: int,
    output_tokens: int,
    cache_read_input_tokens: int,
    cache_creation_input_tokens: int,
    cache_creation_1h_tokens: int,
) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": cache_creation_input_tokens,
        "cache_read_input_tokens": cache_read_input_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": cache_creation_input_tokens - cache_creation_1h_tokens,
            "ephemeral_1h_input_tokens": cache_creation_1h_tokens,
        },
        "service_tier": "standard",
    }


def text_block(text: str) -> dict[str, Any]:
    """An Anthropic text content block."""
    return {"type": "text", "text": text}


def tool_use_block(name: str, input: dict[str, Any], id: str | None = None) -> dict[str, Any]:
    """An Anthropic tool_use content block (``id`` generated when not given)."""
    return {
        "type": "tool_use",
        "id": id or f"toolu_fake_{_short_id()}",
        "name": name,
        "input": input,
    }


def anthropic_message(
    *content: dict[str, Any],
    stop_reason: str | None = None,
    input_tokens: int = 100,
    output_tokens: int = 20,
    cache_read_input_tokens: int = 0,
    cache_creation_input_tokens: int = 0,
    cache_creation_1h_tokens: int = 0,
    **options: Any,
) -> Turn:
    """An Anthropic answer made of the given content blocks (``text_block``/``tool_use_block``).

    ``stop_reason`` defaults to ``tool_use`` when a tool_use block is present, else ``end_turn``.
    ``options`` are other :class:`Turn` fields (matchers, delays, ``model``, ``label``...).
    """
    if stop_reason is None:
        has_tool = any(b.get("type") == "tool_use" for b in content)
        stop_reason = "tool_use" if has_tool else "end_turn"
    usage = _anthropic_usage(
        input_tokens,
        output_tokens,
        cache_read_input_tokens,
        cache_creation_input_tokens,
        cache_creation_1h_tokens,
    )
    return Turn("anthropic", tuple(content), stop_reason, usage, **options)


def anthropic_text(text: str, **options: Any) -> Turn:
    """An Anthropic answer with one text block (``stop_reason`` end_turn). See
    :func:`anthropic_message` for usage numbers and options."""
    return anthropic_message(text_block(text), **options)


def anthropic_tool_use(
    name: str,
    input: dict[str, Any],
    *,
    text: str | None = None,
    id: str | None = None,
    **options: Any,
) -> Turn:
    """An Anthropic answer calling tool ``name`` with ``input`` (after optional ``text``)."""
    blocks = ([text_block(text)] if text else []) + [tool_use_block(name, input, id)]
    return anthropic_message(*blocks, **options)


def anthropic_error(
    status: int,
    message: str | None = None,
    *,
    error_type: str | None = None,
    retry_after_ms: int | None = 10,
    retry_after_s: int | None = None,
    mid_stream: bool = False,
    **options: Any,
) -> Turn:
    """An Anthropic error answer: ``status`` with ``{"type":"error","error":{type,message}}``.

    ``retry-after-ms`` is sent (10 ms by default, so SDK retries are quick); ``retry_after_s``
    adds ``retry-after``. ``mid_stream=True`` answers a streamed request with 200, starts the
    message, then sends an ``error`` event (as the real API does for overload mid-stream); a
    non-streamed request to such a turn gets the plain ``status`` answer.
    """
    etype = error_type or _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    body = {"type": "error", "error": {"type": etype, "message": message or f"fake {etype}"}}
    headers = dict(options.pop("headers", {}))
    if retry_after_ms is not None:
        headers["retry-after-ms"] = str(retry_after_ms)
    if retry_after_s is not None:
        headers["retry-after"] = str(retry_after_s)
    if mid_stream:
        return Turn(
            "anthropic",
            (text_block("partial "),),
            None,
            _anthropic_usage(100, 1, 0, 0, 0),
            status=status,
            error=body,
            headers=headers,
            mid_stream_error=True,
            **options,
        )
    return Turn(
        "anthropic", status=status, error=body, headers=headers, stop_reason=None, **options
    )


def _openai_usage(
    prompt_tokens: int, completion_tokens: int, cached_tokens: int, reasoning_tokens: int
) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
    }


def openai_message(
    text: str | None = None,
    tool_calls: Iterable[tuple[str, dict[str, Any] | str]] = (),
    *,
    finish_reason: str | None = None,
    prompt_tokens: int = 100,
    completion_tokens: int = 20,
    cached_tokens: int = 0,
    reasoning_tokens: int = 0,
    **options: Any,
) -> Turn:
    """An OpenAI chat completion: optional ``text`` and ``(name, arguments)`` tool calls.

    ``arguments`` may be a dict (sent as JSON) or a raw string (to send malformed JSON).
    ``prompt_tokens`` includes ``cached_tokens``, as in the OpenAI API.
    """
    blocks: list[dict[str, Any]] = [text_block(text)] if text else []
    for name, args in tool_calls:
        raw = args if isinstance(args, str) else json.dumps(args)
        blocks.append(
            {"type": "tool_use", "id": f"call_fake_{_short_id()}", "name": name, "arguments": raw}
        )
    if finish_reason is None:
        has_tool = any(b["type"] == "tool_use" for b in blocks)
        finish_reason = "tool_calls" if has_tool else "stop"
    usage = _openai_usage(prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens)
    return Turn("openai", tuple(blocks), finish_reason, usage, **options)


def openai_text(text: str, **options: Any) -> Turn:
    """An OpenAI chat completion with plain text (``finish_reason`` stop)."""
    return openai_message(text, **options)


def openai_tool_call(
    name: str, arguments: dict[str, Any] | str, *, text: str | None = None, **options: Any
) -> Turn:
    """An OpenAI chat completion calling one function tool."""
    return openai_message(text, [(name, arguments)], **options)


def openai_error(
    status: int,
    message: str | None = None,
    *,
    error_type: str | None = None,
    code: str | None = None,
    retry_after_ms: int | None = 10,
    retry_after_s: int | None = None,
    **options: Any,
) -> Turn:
    """An OpenAI error answer: ``status`` with ``{"error":{message,type,param,code}}``."""
    default_type, default_code = _OPENAI_ERROR_TYPES.get(status, ("server_error", None))
    body = {
        "error": {
            "message": message or f"fake error {status}",
            "type": error_type or default_type,
            "param": None,
            "code": code or default_code,
        }
    }
    headers = dict(options.pop("headers", {}))
    if retry_after_ms is not None:
        headers["retry-after-ms"] = str(retry_after_ms)
    if retry_after_s is not None:
        headers["retry-after"] = str(retry_after_s)
    return Turn("openai", status=status, error=body, headers=headers, stop_reason=None, **options)


def _keys(req: Request) -> list[str]:
    keys = [req.headers.get("x-api-key", "")]
    auth = req.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        keys.append(auth[7:].strip())
    return [k for k in keys if k]


def _anthropic_error_body(status: int, message: str) -> dict[str, Any]:
    etype = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": etype, "message": message}}


def _error_body(protocol: Protocol, status: int, message: str) -> dict[str, Any]:
    if protocol == "anthropic":
        return _anthropic_error_body(status, message)
    etype, code = _OPENAI_ERROR_TYPES.get(status, ("server_error", None))
    return {"error": {"message": message, "type": etype, "param": None, "code": code}}
