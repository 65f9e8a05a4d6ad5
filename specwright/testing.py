"""A strict, scripted fake model server for tests: Anthropic Messages and OpenAI chat completions.

``FakeModelServer`` listens on 127.0.0.1 (an ephemeral port) in a background thread and speaks the
real wire protocols, so real clients work against it unchanged: the ``anthropic`` and ``openai``
SDKs, Claude Code (``ANTHROPIC_BASE_URL=srv.base_url``) and OpenCode's openai-compatible provider
(``baseURL = srv.openai_base_url``).

A test scripts the exact model turns it expects, in order. Each model request consumes the next
turn; the server answers with that turn (streamed as SSE when the request asks for ``stream``,
else one JSON body)::

    from specwright.testing import FakeModelServer, anthropic_text, anthropic_tool_use

    with FakeModelServer() as srv:
        srv.script(
            anthropic_tool_use("Write", {"file_path": "/tmp/x/hello.txt", "content": "hi\\n"}),
            anthropic_text("Done.", expect_tool_result=True),
        )
        client = anthropic.Anthropic(base_url=srv.base_url, api_key="sk-test")
        ...
        assert "You are" in srv.requests[0].system_text
    # leaving the block fails the test if a request was unexpected or a turn was left over

Strictness: a request with nothing left to answer it, of the wrong protocol, or failing a turn's
``expect_*`` matcher gets an error response (HTTP 400, in the protocol's own error shape) and is
recorded in ``srv.failures``; ``srv.assert_done()`` (called when the ``with`` block exits without
an exception) raises ``AssertionError`` listing every failure and every unconsumed turn.

A turn may also be a callable taking the :class:`Request` and returning a turn, for answers that
depend on what the client sent (a path the agent named, a working directory in the prompt).

Errors: ``anthropic_error(429)`` / ``openai_error(500)`` answer with the status, the provider's
error JSON and ``retry-after-ms`` (10 ms by default, so client retries are fast) or
``retry-after``. ``delay_s`` on any turn waits before answering (timeouts);
``chunk_delay_s`` waits between streamed events; ``drop_after`` closes a stream early.

Agent CLIs: ``Request.working_directory`` finds the directory Claude Code or OpenCode names in
its prompt, so a callable turn can write a file there. Claude Code (2.1.x) answers a mid-stream
error by retrying the same request without streaming (three times here, even with
``CLAUDE_CODE_MAX_RETRIES=0``): script those turns too, or expect them in ``srv.failures``.
Run it with ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`` so it sends nothing but model turns.

Not consuming turns (answered automatically, still recorded in ``srv.requests``): ``HEAD /`` and
``GET /`` (connection warm-up), ``GET /v1/models`` and ``POST /v1/messages/count_tokens``.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "FakeModelServer",
    "Request",
    "Turn",
    "anthropic_error",
    "anthropic_message",
    "anthropic_text",
    "anthropic_tool_use",
    "openai_error",
    "openai_message",
    "openai_text",
    "openai_tool_call",
    "text_block",
    "tool_use_block",
]

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
    mid_stream_error: bool = False  # stream status 200, some content, then an error event
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
    message, then sends an ``error`` event (as the real API does for overload mid-stream).
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


# --- wire formats ---------------------------------------------------------------------------


def _anthropic_json(turn: Turn, model: str, msg_id: str) -> dict[str, Any]:
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [dict(b) for b in turn.content],
        "stop_reason": turn.stop_reason,
        "stop_sequence": None,
        "usage": turn.usage,
    }


def _pieces(text: str, size: int) -> list[str]:
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _anthropic_events(turn: Turn, model: str, msg_id: str) -> Iterable[tuple[str, dict[str, Any]]]:
    start_usage = {**turn.usage, "output_tokens": 1 if turn.usage else 0}
    yield (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": start_usage,
            },
        },
    )
    yield "ping", {"type": "ping"}
    for index, block in enumerate(turn.content):
        if block.get("type") == "tool_use":
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            yield (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
            for piece in _pieces(json.dumps(block.get("input", {})), turn.chunk_size):
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": piece},
                    },
                )
        else:
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            for piece in _pieces(str(block.get("text", "")), turn.chunk_size):
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                )
        if turn.mid_stream_error:
            yield "error", turn.error or {}
            return
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": turn.stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": turn.usage.get("output_tokens", 0)},
        },
    )
    yield "message_stop", {"type": "message_stop"}


def _openai_tool_calls(turn: Turn) -> list[dict[str, Any]]:
    return [
        {
            "id": b["id"],
            "type": "function",
            "function": {
                "name": b["name"],
                "arguments": b.get("arguments", json.dumps(b.get("input", {}))),
            },
        }
        for b in turn.content
        if b.get("type") == "tool_use"
    ]


def _openai_text(turn: Turn) -> str | None:
    texts = [str(b.get("text", "")) for b in turn.content if b.get("type") == "text"]
    return "".join(texts) if texts else None


def _openai_json(turn: Turn, model: str, msg_id: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": _openai_text(turn), "refusal": None}
    calls = _openai_tool_calls(turn)
    if calls:
        message["tool_calls"] = calls
    return {
        "id": msg_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": turn.stop_reason}
        ],
        "usage": turn.usage,
        "system_fingerprint": None,
    }


def _openai_chunks(turn: Turn, model: str, msg_id: str, include_usage: bool) -> Iterable[Any]:
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": msg_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            out["usage"] = None
        return out

    yield chunk({"role": "assistant", "content": ""})
    text = _openai_text(turn)
    if text:
        for piece in _pieces(text, turn.chunk_size):
            yield chunk({"content": piece})
    for index, call in enumerate(_openai_tool_calls(turn)):
        fn = call["function"]
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": fn["name"], "arguments": ""},
                    }
                ]
            }
        )
        for piece in _pieces(fn["arguments"], turn.chunk_size):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield chunk({}, turn.stop_reason)
    if include_usage:
        yield {
            "id": msg_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
            "choices": [],
            "usage": turn.usage,
        }
    yield "[DONE]"


# --- the server -----------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fake: FakeModelServer) -> None:
        self.fake = fake
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.conn_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.conn_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that hangs up mid-answer (timeouts, cancel) is normal in tests
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        try:
            self.server.fake._dispatch(self)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            self.close_connection = True

    # response helpers used by FakeModelServer

    def read_body(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY_BYTES:
            raise ValueError(f"request body of {length} bytes is too large")
        return self.rfile.read(length) if length > 0 else b""

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", f"req_fake_{_short_id()}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    def start_sse(self, headers: dict[str, str] | None = None) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.send_header("request-id", f"req_fake_{_short_id()}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True

    def send_sse(self, event: str | None, data: Any) -> None:
        payload = data if isinstance(data, str) else json.dumps(data)
        head = f"event: {event}\n" if event else ""
        self.wfile.write(f"{head}data: {payload}\n\n".encode())
        self.wfile.flush()


class FakeModelServer:
    """A scripted, strict fake of the Anthropic and OpenAI model APIs on 127.0.0.1.

    Use as a context manager (starts, and on a clean exit calls :meth:`assert_done`), or call
    :meth:`start` / :meth:`stop` yourself. ``require_api_key`` makes requests without that key
    (``x-api-key`` or ``Authorization: Bearer``) get a 401 and count as failures.
    """

    def __init__(
        self,
        *,
        models: Iterable[str] = ("claude-sonnet-4-5", "fake-model"),
        require_api_key: str | None = None,
    ) -> None:
        self.models = list(models)
        self.require_api_key = require_api_key
        self.requests: list[Request] = []
        self.failures: list[str] = []
        self._turns: list[Turn | Callable[[Request], Turn]] = []
        self._consumed = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._port: int | None = None  # kept after stop(), so a test can aim at a closed port
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeModelServer:
        """Bind an ephemeral port on 127.0.0.1 and serve in a daemon thread."""
        if self._server is None:
            self._stopping.clear()
            self._server = _Server(self)
            self._port = int(self._server.server_address[1])
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="fake-model-server",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        with server.conn_lock:
            conns = list(server.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.stop()
        if exc_type is None:
            self.assert_done()

    @property
    def port(self) -> int:
        """The port the server listens (or, after ``stop()``, listened) on."""
        if self._port is None:
            raise RuntimeError("FakeModelServer is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: the Anthropic base URL (``ANTHROPIC_BASE_URL``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: the base URL OpenAI-style clients expect."""
        return f"{self.base_url}/v1"

    # --- script -----------------------------------------------------------------------------

    def script(self, *turns: Turn | Callable[[Request], Turn]) -> FakeModelServer:
        """Append turns, answered in order, one per model request."""
        for turn in turns:
            if not isinstance(turn, Turn) and not callable(turn):
                raise TypeError(f"a turn must be a Turn or a callable, not {type(turn).__name__}")
        with self._lock:
            self._turns.extend(turns)
        return self

    @property
    def pending(self) -> int:
        """How many scripted turns have not been consumed yet."""
        with self._lock:
            return len(self._turns) - self._consumed

    @property
    def model_requests(self) -> list[Request]:
        """The requests that asked for a model answer (Anthropic or OpenAI), in order."""
        return [r for r in self.requests if r.kind in ("anthropic", "openai")]

    def assert_done(self) -> None:
        """Raise AssertionError if any request was unexpected or any turn is left over."""
        with self._lock:
            problems = list(self.failures)
            left = self._turns[self._consumed :]
        for i, turn in enumerate(left, start=len(self._turns) - len(left)):
            desc = turn.describe() if isinstance(turn, Turn) else getattr(turn, "__name__", "fn")
            problems.append(f"turn {i} ({desc}) was never requested")
        if problems:
            raise AssertionError("fake model server: " + "; ".join(problems))

    # --- request handling -------------------------------------------------------------------

    def _dispatch(self, h: _Handler) -> None:
        split = urlsplit(h.path)
        path = split.path.rstrip("/") or "/"
        try:
            raw = h.read_body()
        except ValueError as exc:
            h.close_connection = True
            h.send_json(413, _anthropic_error_body(413, str(exc)))
            return
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        kind = _classify(h.command, path)
        req = Request(
            h.command,
            path,
            dict(parse_qsl(split.query)),
            {k.lower(): v for k, v in h.headers.items()},
            body,
            raw,
            kind,
        )

        if kind == "health":
            self._record(req)
            h.send_json(200, {"ok": True})
            return
        if kind == "models":
            self._record(req)
            h.send_json(200, self._models_body(req))
            return
        if kind == "other":
            self._record(req, failure=f"unexpected {h.command} {path}")
            h.send_json(
                404, _anthropic_error_body(404, f"fake model server: no route {h.command} {path}")
            )
            return
        proto: Protocol = "openai" if kind == "openai" else "anthropic"
        if self.require_api_key is not None and self.require_api_key not in _keys(req):
            self._record(req, failure=f"{h.command} {path} without the expected API key")
            h.send_json(401, _error_body(proto, 401, "fake model server: invalid x-api-key"))
            return
        problem = _validate(req)
        if problem:
            self._record(req, failure=f"malformed {kind} request: {problem}")
            h.send_json(400, _error_body(proto, 400, problem))
            return
        if kind == "count_tokens":
            self._record(req)
            h.send_json(200, {"input_tokens": max(1, len(raw) // 4)})
            return

        turn, index, problem = self._next_turn(req)
        if turn is None or index is None:
            h.send_json(400, _error_body(proto, 400, f"fake model server: {problem}"))
            return
        self._answer(h, req, turn)

    def _record(self, req: Request, failure: str | None = None) -> None:
        with self._lock:
            self.requests.append(req)
            if failure:
                self.failures.append(f"request {len(self.requests) - 1}: {failure}")

    def _next_turn(self, req: Request) -> tuple[Turn | None, int | None, str]:
        """Match ``req`` against the next turn; consume it when it matches."""
        with self._lock:
            number = len(self.requests)
            if self._consumed >= len(self._turns):
                problem = (
                    f"unexpected {req.kind} request {number} "
                    f"({req.method} {req.path}): no scripted turn left"
                )
                self.requests.append(req)
                self.failures.append(problem)
                return None, None, problem
            index = self._consumed
            spec = self._turns[index]
        # a callable turn runs outside the lock: it may be slow or touch files
        try:
            turn = spec if isinstance(spec, Turn) else spec(req)
            if not isinstance(turn, Turn):
                raise TypeError(f"returned {type(turn).__name__}, not a Turn")
            problem_or_none = turn.check(req)
        except Exception as exc:
            turn, problem_or_none = None, f"callable turn failed: {type(exc).__name__}: {exc}"
        with self._lock:
            if problem_or_none is not None or turn is None:
                problem = f"request {number} does not match turn {index}: {problem_or_none}"
                self.requests.append(req)
                self.failures.append(problem)
                return None, None, problem
            if self._consumed != index:  # another thread took it meanwhile: strict order broke
                problem = f"request {number} raced for turn {index}"
                self.requests.append(req)
                self.failures.append(problem)
                return None, None, problem
            self._consumed += 1
            self.requests.append(replace(req, turn=index))
        return turn, index, ""

    def _wait(self, seconds: float) -> bool:
        """Sleep unless the server stops; False when it stopped."""
        return not (seconds > 0 and self._stopping.wait(seconds))

    def _answer(self, h: _Handler, req: Request, turn: Turn) -> None:
        if not self._wait(turn.delay_s):
            return
        model = turn.model or req.model or "fake-model"
        if turn.status >= 400:
            h.send_json(
                turn.status, turn.error or _error_body(turn.protocol, turn.status, ""), turn.headers
            )
            return
        if turn.protocol == "anthropic":
            msg_id = turn.message_id or f"msg_fake_{_short_id()}"
            if not req.stream:
                h.send_json(200, _anthropic_json(turn, model, msg_id), turn.headers)
                return
            events: Iterable[tuple[str | None, Any]] = _anthropic_events(turn, model, msg_id)
        else:
            msg_id = turn.message_id or f"chatcmpl-fake{_short_id()}"
            if not req.stream:
                h.send_json(200, _openai_json(turn, model, msg_id), turn.headers)
                return
            opts = req.json.get("stream_options")
            include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
            events = ((None, c) for c in _openai_chunks(turn, model, msg_id, include_usage))
        h.start_sse(turn.headers)
        for sent, (name, data) in enumerate(events):
            if turn.drop_after is not None and sent >= turn.drop_after:
                break
            if sent and not self._wait(turn.chunk_delay_s):
                break
            h.send_sse(name, data)

    def _models_body(self, req: Request) -> dict[str, Any]:
        if "anthropic-version" in req.headers:
            data = [
                {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
                for m in self.models
            ]
            return {
                "data": data,
                "has_more": False,
                "first_id": self.models[0] if self.models else None,
                "last_id": self.models[-1] if self.models else None,
            }
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": 1735689600, "owned_by": "fake"}
                for m in self.models
            ],
        }


def _classify(method: str, path: str) -> str:
    if method in ("HEAD", "GET") and path == "/":
        return "health"
    if method == "GET" and path in ("/v1/models", "/models"):
        return "models"
    if method == "POST" and path == "/v1/messages":
        return "anthropic"
    if method == "POST" and path == "/v1/messages/count_tokens":
        return "count_tokens"
    if method == "POST" and path in ("/v1/chat/completions", "/chat/completions"):
        return "openai"
    return "other"


def _keys(req: Request) -> list[str]:
    keys = [req.headers.get("x-api-key", "")]
    auth = req.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        keys.append(auth[7:].strip())
    return [k for k in keys if k]


def _validate(req: Request) -> str | None:
    """What the real API would refuse with a 400: a missing model or messages, no max_tokens."""
    if not isinstance(req.body, dict):
        return "the body is not a JSON object"
    if not isinstance(req.body.get("model"), str):
        return "model: field required"
    if not isinstance(req.body.get("messages"), list):
        return "messages: field required"
    if req.kind == "anthropic":
        if not req.body["messages"]:
            return "messages: at least one message is required"
        if not isinstance(req.body.get("max_tokens"), int):
            return "max_tokens: field required"
    return None


def _anthropic_error_body(status: int, message: str) -> dict[str, Any]:
    etype = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": etype, "message": message}}


def _error_body(protocol: Protocol, status: int, message: str) -> dict[str, Any]:
    if protocol == "anthropic":
        return _anthropic_error_body(status, message)
    etype, code = _OPENAI_ERROR_TYPES.get(status, ("server_error", None))
    return {"error": {"message": message, "type": etype, "param": None, "code": code}}
