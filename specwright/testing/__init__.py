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
``chunk_delay_s`` waits between streamed events; ``drop_after`` closes a stream early;
``srv.events_sent`` counts the streamed events sent (a client can tell what it saw mid-stream).

Agent CLIs: ``Request.working_directory`` finds the directory Claude Code or OpenCode names in
its prompt, so a callable turn can write a file there. Claude Code (2.1.x) answers a mid-stream
error by retrying the same request without streaming (three times here, even with
``CLAUDE_CODE_MAX_RETRIES=0``): script those turns too, or expect them in ``srv.failures``.
Run it with ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`` so it sends nothing but model turns.

Like the real APIs, requests missing ``model``/``messages``/``max_tokens`` and tool results that
answer no tool call (or tool calls left unanswered) get a 400 and count as failures.

Order: turns are consumed in arrival order. Several agents sharing one server race for turns;
give each concurrent agent its own ``FakeModelServer``.

Not consuming turns (answered automatically, still recorded in ``srv.requests``): ``HEAD /`` and
``GET /`` (connection warm-up), ``GET /v1/models`` and ``POST /v1/messages/count_tokens``.
"""

from __future__ import annotations

from specwright.testing.model_server import FakeModelServer
from specwright.testing.model_turns import (
    Request,
    Turn,
    anthropic_error,
    anthropic_message,
    anthropic_text,
    anthropic_tool_use,
    openai_error,
    openai_message,
    openai_text,
    openai_tool_call,
    text_block,
    tool_use_block,
)

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
