"""The fake model server: real SDK clients and raw HTTP against it, and its strictness."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from specwright.testing import (
    FakeModelServer,
    Request,
    anthropic_error,
    anthropic_message,
    anthropic_text,
    anthropic_tool_use,
    openai_error,
    openai_text,
    openai_tool_call,
    text_block,
    tool_use_block,
)

MODEL = "claude-test-1"  # not a real model name: the SDK warns on deprecated ones
USER: Any = [{"role": "user", "content": "hello"}]


_clients: list[anthropic.Anthropic] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """Close every SDK client a test made (an open pool is a ResourceWarning, an error here)."""
    yield
    while _clients:
        _clients.pop().close()


def client(srv: FakeModelServer, api_key: str = "sk-ant-test", **kw: Any) -> anthropic.Anthropic:
    kw.setdefault("max_retries", 0)
    c = anthropic.Anthropic(base_url=srv.base_url, api_key=api_key, **kw)
    _clients.append(c)
    return c


def sse_events(response: httpx.Response) -> list[tuple[str | None, str]]:
    """Parse an SSE body into (event, data) pairs, checking the framing line by line."""
    events: list[tuple[str | None, str]] = []
    event: str | None = None
    for line in response.text.split("\n"):
        if line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: "):
            events.append((event, line[len("data: ") :]))
            event = None
        else:
            assert line == "", f"unexpected SSE line {line!r}"
    return events


# --- Anthropic through the real SDK ----------------------------------------------------------


def test_anthropic_non_streaming_text_with_usage_and_request_record() -> None:
    with FakeModelServer() as srv:
        srv.script(
            anthropic_text(
                "Hi there",
                input_tokens=1200,
                output_tokens=40,
                cache_read_input_tokens=200,
                cache_creation_input_tokens=100,
                cache_creation_1h_tokens=30,
            )
        )
        msg = client(srv).messages.create(
            model=MODEL,
            max_tokens=64,
            system=[{"type": "text", "text": "You are a planner."}],
            messages=USER,
        )
    assert msg.content[0].type == "text" and msg.content[0].text == "Hi there"
    assert msg.model == MODEL and msg.stop_reason == "end_turn"
    assert msg.id.startswith("msg_")
    u = msg.usage
    assert (u.input_tokens, u.output_tokens) == (1200, 40)
    assert (u.cache_read_input_tokens, u.cache_creation_input_tokens) == (200, 100)
    assert u.cache_creation is not None
    assert u.cache_creation.ephemeral_5m_input_tokens == 70
    assert u.cache_creation.ephemeral_1h_input_tokens == 30
    (req,) = srv.requests
    assert (req.method, req.path, req.kind, req.turn) == ("POST", "/v1/messages", "anthropic", 0)
    assert req.system_text == "You are a planner."
    assert req.api_key == "sk-ant-test"
    assert req.last_user_text == "hello" and not req.stream


def test_anthropic_streaming_tool_use_through_sdk() -> None:
    big_input = {"file_path": "/tmp/x/hello.txt", "content": "line\n" * 50, "n": [1, 2, 3]}
    with FakeModelServer() as srv:
        srv.script(
            anthropic_tool_use(
                "Write", big_input, text="Writing it.", output_tokens=77, expect_stream=True
            )
        )
        with client(srv).messages.stream(
            model=MODEL,
            max_tokens=64,
            messages=USER,
            tools=[{"name": "Write", "input_schema": {"type": "object"}}],
        ) as stream:
            texts = list(stream.text_stream)
            final = stream.get_final_message()
    assert "".join(texts) == "Writing it."
    assert [b.type for b in final.content] == ["text", "tool_use"]
    tool = final.content[1]
    assert tool.type == "tool_use" and tool.name == "Write" and tool.input == big_input
    assert tool.id.startswith("toolu_")
    assert final.stop_reason == "tool_use"
    assert final.usage.output_tokens == 77  # from message_delta, not the message_start snapshot
    assert srv.requests[0].tool_names == ["Write"]


def test_tool_loop_with_expect_tool_result_and_callable_turn() -> None:
    seen: list[Request] = []

    def second(req: Request) -> Any:
        seen.append(req)
        return anthropic_text(f"got {req.tool_results[0]['content']}", expect_tool_result=True)

    with FakeModelServer() as srv:
        srv.script(anthropic_tool_use("Read", {"path": "a"}, id="toolu_1"), second)
        c = client(srv)
        first = c.messages.create(model=MODEL, max_tokens=64, messages=USER)
        msgs: list[Any] = [
            *USER,
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"}],
            },
        ]
        answer = c.messages.create(model=MODEL, max_tokens=64, messages=msgs)
    assert answer.content[0].type == "text" and answer.content[0].text == "got 42"
    assert len(seen) == 1 and seen[0].tool_results[0]["tool_use_id"] == "toolu_1"


@pytest.mark.parametrize(
    ("status", "exc_type", "error_type"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
def test_anthropic_errors_map_to_sdk_exceptions(
    status: int, exc_type: type[Exception], error_type: str
) -> None:
    with FakeModelServer() as srv:
        srv.script(anthropic_error(status, "boom"))
        with pytest.raises(exc_type) as info:
            client(srv).messages.create(model=MODEL, max_tokens=8, messages=USER)
    err = info.value
    assert isinstance(err, anthropic.APIStatusError) and err.status_code == status
    assert err.body == {"type": "error", "error": {"type": error_type, "message": "boom"}}
    assert err.response.headers["retry-after-ms"] == "10"


def test_sdk_retries_honour_retry_after_ms() -> None:
    with FakeModelServer() as srv:
        srv.script(anthropic_error(429), anthropic_error(529), anthropic_text("finally"))
        msg = client(srv, max_retries=2).messages.create(model=MODEL, max_tokens=8, messages=USER)
        assert msg.content[0].type == "text" and msg.content[0].text == "finally"
        assert [r.headers.get("x-stainless-retry-count") for r in srv.requests] == ["0", "1", "2"]


def test_error_headers_retry_after_seconds() -> None:
    with FakeModelServer() as srv:
        srv.script(anthropic_error(429, retry_after_s=7, retry_after_ms=None))
        r = httpx.post(
            srv.base_url + "/v1/messages",
            json={"model": MODEL, "max_tokens": 8, "messages": USER},
        )
    assert r.status_code == 429
    assert r.headers["retry-after"] == "7" and "retry-after-ms" not in r.headers


def test_mid_stream_error_event_raises_in_sdk() -> None:
    with FakeModelServer() as srv:
        srv.script(anthropic_error(529, "overloaded mid-stream", mid_stream=True))
        with pytest.raises(anthropic.APIStatusError, match="overloaded mid-stream"):  # noqa: SIM117
            with client(srv).messages.stream(model=MODEL, max_tokens=8, messages=USER) as s:
                s.get_final_message()


def test_mid_stream_error_turn_answers_a_non_streamed_request_with_the_status() -> None:
    with FakeModelServer() as srv:
        srv.script(anthropic_error(529, "busy", mid_stream=True))
        with pytest.raises(anthropic.OverloadedError, match="busy"):
            client(srv).messages.create(model=MODEL, max_tokens=8, messages=USER)


def test_delay_makes_the_sdk_time_out() -> None:
    with FakeModelServer() as srv:
        srv.script(anthropic_text("too late", delay_s=5))
        with pytest.raises(anthropic.APITimeoutError):
            client(srv, timeout=0.2).messages.create(model=MODEL, max_tokens=8, messages=USER)
        # the turn was consumed by the request that timed out
        assert srv.pending == 0


def test_count_tokens_models_and_head_do_not_consume_turns() -> None:
    with FakeModelServer(models=["m-one", "m-two"]) as srv:
        c = client(srv)
        count = c.messages.count_tokens(model=MODEL, messages=USER)
        assert count.input_tokens > 0
        models = c.models.list()
        assert [m.id for m in models.data] == ["m-one", "m-two"]
        assert httpx.head(srv.base_url + "/").status_code == 200
        oa = httpx.get(srv.openai_base_url + "/models").json()
        assert oa["object"] == "list" and oa["data"][0]["id"] == "m-one"
        assert [r.kind for r in srv.requests] == ["count_tokens", "models", "health", "models"]
        assert srv.model_requests == []


# --- Anthropic SSE shape over raw HTTP -------------------------------------------------------


def test_anthropic_sse_event_sequence_and_shapes() -> None:
    turn = anthropic_message(
        text_block("abcdefghij"),
        tool_use_block("Edit", {"path": "x.py", "new": "y" * 30}, id="toolu_x"),
        chunk_size=4,
        input_tokens=5,
        output_tokens=9,
        cache_read_input_tokens=3,
    )
    with FakeModelServer() as srv:
        srv.script(turn)
        r = httpx.post(
            srv.base_url + "/v1/messages?beta=true",
            json={"model": MODEL, "max_tokens": 8, "messages": USER, "stream": True},
        )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r)
    names = [e for e, _ in events]
    datas = [json.loads(d) for _, d in events]
    assert all(d["type"] == n for n, d in zip(names, datas, strict=True))
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-2:] == ["message_delta", "message_stop"]
    start = datas[0]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["input_tokens"] == 5 and start["usage"]["output_tokens"] == 1
    assert start["usage"]["cache_read_input_tokens"] == 3
    text = "".join(
        d["delta"]["text"] for d in datas if d["type"] == "content_block_delta" and d["index"] == 0
    )
    assert text == "abcdefghij"
    tool_start = next(d for d in datas if d["type"] == "content_block_start" and d["index"] == 1)
    assert tool_start["content_block"] == {
        "type": "tool_use",
        "id": "toolu_x",
        "name": "Edit",
        "input": {},
    }
    pieces = [
        d["delta"]["partial_json"]
        for d in datas
        if d["type"] == "content_block_delta" and d["index"] == 1
    ]
    assert len(pieces) > 1 and all(len(p) <= 4 for p in pieces)
    assert json.loads("".join(pieces)) == {"path": "x.py", "new": "y" * 30}
    assert names.count("content_block_stop") == 2
    delta = datas[-2]
    assert delta["delta"]["stop_reason"] == "tool_use" and delta["usage"] == {"output_tokens": 9}
    assert srv.requests[0].query == {"beta": "true"}


def test_drop_after_cuts_the_stream() -> None:
    with FakeModelServer() as srv:
        srv.script(anthropic_text("x" * 100, chunk_size=10, drop_after=4))
        r = httpx.post(
            srv.base_url + "/v1/messages",
            json={"model": MODEL, "max_tokens": 8, "messages": USER, "stream": True},
        )
    names = [e for e, _ in sse_events(r)]
    assert names == ["message_start", "ping", "content_block_start", "content_block_delta"]


# --- OpenAI chat completions -----------------------------------------------------------------


def openai_post(srv: FakeModelServer, **body: Any) -> httpx.Response:
    body.setdefault("model", "fake-model")
    body.setdefault("messages", [{"role": "system", "content": "sys!"}, *USER])
    return httpx.post(
        srv.openai_base_url + "/chat/completions",
        json=body,
        headers={"authorization": "Bearer sk-test"},
    )


def test_openai_streaming_tool_call_chunks_and_usage() -> None:
    args = {"filePath": "/w/hello.txt", "content": "hello from the fake model\n"}
    with FakeModelServer() as srv:
        srv.script(
            openai_tool_call(
                "write",
                args,
                text="ok",
                prompt_tokens=1400,
                completion_tokens=40,
                cached_tokens=200,
                chunk_size=8,
            )
        )
        r = openai_post(srv, stream=True, stream_options={"include_usage": True})
    events = sse_events(r)
    assert all(e is None for e, _ in events)  # OpenAI streams have no `event:` field
    assert events[-1][1] == "[DONE]"
    chunks = [json.loads(d) for _, d in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    body = [c for c in chunks if c["choices"]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in body)
    assert text == "ok"
    calls = [tc for c in body for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0]["id"].startswith("call_") and calls[0]["function"]["name"] == "write"
    assert all(tc["index"] == 0 for tc in calls)
    assert json.loads("".join(tc["function"]["arguments"] for tc in calls)) == args
    assert body[-1]["choices"][0]["finish_reason"] == "tool_calls"
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["prompt_tokens"] == 1400
    assert usage_chunk["usage"]["completion_tokens"] == 40
    assert usage_chunk["usage"]["prompt_tokens_details"]["cached_tokens"] == 200
    req = srv.requests[0]
    assert req.kind == "openai" and req.system_text == "sys!"


def test_openai_stream_without_include_usage_has_no_usage_chunk() -> None:
    with FakeModelServer() as srv:
        srv.script(openai_text("plain"))
        r = openai_post(srv, stream=True)
    chunks = [json.loads(d) for _, d in sse_events(r)[:-1]]
    assert all(c["choices"] for c in chunks) and all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_openai_non_streaming_and_error() -> None:
    with FakeModelServer() as srv:
        srv.script(openai_tool_call("bash", '{"cmd": "ls"'), openai_error(429, "slow down"))
        r = openai_post(srv)
        e = openai_post(srv)
    body = r.json()
    assert body["object"] == "chat.completion"
    call = body["choices"][0]["message"]["tool_calls"][0]
    assert call["function"] == {"name": "bash", "arguments": '{"cmd": "ls"'}  # raw, malformed
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert body["usage"]["total_tokens"] == 120
    assert e.status_code == 429 and e.headers["retry-after-ms"] == "10"
    assert e.json()["error"]["message"] == "slow down"
    assert e.json()["error"]["code"] == "rate_limit_exceeded"


@pytest.mark.skipif(
    importlib.util.find_spec("openai") is None,
    reason="the openai SDK is not installed; the raw-HTTP tests above cover the wire format",
)
def test_openai_sdk_streaming_tool_call() -> None:  # pragma: no cover - optional dependency
    import openai

    with FakeModelServer() as srv:
        srv.script(openai_tool_call("write", {"a": 1}, completion_tokens=7))
        c = openai.OpenAI(base_url=srv.openai_base_url, api_key="sk-test", max_retries=0)
        stream = c.chat.completions.create(
            model="fake-model",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    args = "".join(
        tc.function.arguments or ""
        for ch in chunks
        if ch.choices
        for tc in ch.choices[0].delta.tool_calls or []
        if tc.function
    )
    assert json.loads(args) == {"a": 1}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7


# --- strictness ------------------------------------------------------------------------------


def test_unexpected_request_gets_an_error_and_fails_the_test() -> None:
    srv = FakeModelServer().start()
    try:
        with pytest.raises(anthropic.BadRequestError, match="no scripted turn left"):
            client(srv).messages.create(model=MODEL, max_tokens=8, messages=USER)
    finally:
        srv.stop()
    with pytest.raises(AssertionError, match="no scripted turn left"):
        srv.assert_done()


def test_context_manager_exit_fails_on_unconsumed_turn() -> None:
    with pytest.raises(AssertionError, match=r"turn 1 \(anthropic error 529\) was never"):  # noqa: SIM117
        with FakeModelServer() as srv:
            srv.script(anthropic_text("used"), anthropic_error(529))
            client(srv).messages.create(model=MODEL, max_tokens=8, messages=USER)


def test_context_manager_does_not_mask_the_tests_own_exception() -> None:
    with pytest.raises(KeyError):  # noqa: SIM117
        with FakeModelServer() as srv:
            srv.script(anthropic_text("never used"))
            raise KeyError("the real problem")


def test_wrong_protocol_is_refused_and_the_turn_kept() -> None:
    srv = FakeModelServer().start()
    try:
        srv.script(anthropic_text("for anthropic"))
        r = openai_post(srv)
        assert r.status_code == 400
        assert "expected a anthropic request" in r.json()["error"]["message"]
        assert srv.pending == 1
        msg = client(srv).messages.create(model=MODEL, max_tokens=8, messages=USER)
        assert msg.content[0].type == "text"
    finally:
        srv.stop()
    with pytest.raises(AssertionError, match="expected a anthropic request, got openai"):
        srv.assert_done()


@pytest.mark.parametrize(
    ("turn", "problem"),
    [
        (anthropic_text("x", expect_tool_result=True), "carry a tool result"),
        (anthropic_text("x", expect_stream=True), "expected stream=True"),
        (anthropic_text("x", expect_model="other"), "expected model 'other'"),
        (anthropic_text("x", expect_system="PLANNER"), "system prompt to contain 'PLANNER'"),
        (anthropic_text("x", expect_text="needle"), "prompt to contain 'needle'"),
        (anthropic_text("x", expect_tools=("Write",)), "expected tools ['Write']"),
        (anthropic_text("x", expect=lambda r: False), "expect() returned False"),
        (lambda r: 42, "callable turn failed: TypeError"),
    ],
)
def test_matchers_refuse_a_request(turn: Any, problem: str) -> None:
    srv = FakeModelServer().start()
    try:
        srv.script(turn)
        with pytest.raises(anthropic.BadRequestError, match=re.escape(problem)):
            client(srv).messages.create(model=MODEL, max_tokens=8, messages=USER)
    finally:
        srv.stop()
    assert srv.pending == 1
    with pytest.raises(AssertionError, match=re.escape(problem)):
        srv.assert_done()


def test_malformed_request_and_unknown_route_are_failures() -> None:
    srv = FakeModelServer().start()
    try:
        srv.script(anthropic_text("kept"))
        bad = httpx.post(srv.base_url + "/v1/messages", json={"model": MODEL, "messages": USER})
        assert bad.status_code == 400
        assert bad.json()["error"]["type"] == "invalid_request_error"
        assert "max_tokens" in bad.json()["error"]["message"]
        nope = httpx.get(srv.base_url + "/v1/nothing")
        assert nope.status_code == 404
    finally:
        srv.stop()
    with pytest.raises(AssertionError) as info:
        srv.assert_done()
    text = str(info.value)
    assert "max_tokens" in text and "GET /v1/nothing" in text and "never requested" in text


def test_require_api_key() -> None:
    srv = FakeModelServer(require_api_key="sk-right").start()
    try:
        srv.script(anthropic_text("ok"))
        with pytest.raises(anthropic.AuthenticationError):
            client(srv, "sk-wrong").messages.create(model=MODEL, max_tokens=8, messages=USER)
        msg = client(srv, "sk-right").messages.create(model=MODEL, max_tokens=8, messages=USER)
        assert msg.content[0].type == "text"
    finally:
        srv.stop()
    assert len(srv.failures) == 1 and "API key" in srv.failures[0]


def test_script_rejects_non_turns_and_stop_frees_the_port() -> None:
    srv = FakeModelServer().start()
    with pytest.raises(TypeError):
        srv.script("not a turn")  # type: ignore[arg-type]
    base = srv.base_url
    srv.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(base + "/", timeout=2)


# --- a real agent CLI against the fake ------------------------------------------------------

# read at import, before the autouse `isolate` fixture scrubs CLAUDE_* variables
_CLAUDE = os.environ.get("CLAUDE_PATH") or str(
    Path(__file__).resolve().parent.parent / ".agents" / "node_modules" / ".bin" / "claude"
)


@pytest.mark.agents
@pytest.mark.skipif(
    not os.access(_CLAUDE, os.X_OK),
    reason=f"real claude CLI not installed (looked at {_CLAUDE}; .ci/run npm-installs it)",
)
def test_real_claude_code_writes_a_file_through_the_fake(tmp_path: Path) -> None:
    work, cfg = tmp_path / "work", tmp_path / "cfg"
    work.mkdir()
    cfg.mkdir()

    def write(req: Request) -> Any:
        cwd = req.working_directory
        assert cwd is not None, "claude named no working directory"
        return anthropic_tool_use(
            "Write",
            {"file_path": f"{cwd}/hello.txt", "content": "hello from the fake model\n"},
            input_tokens=1200,
            output_tokens=40,
            cache_read_input_tokens=200,
            cache_creation_input_tokens=100,
            expect_stream=True,
            expect_tools=("Write",),
        )

    with FakeModelServer() as srv:
        srv.script(
            write,
            anthropic_text("Done.", input_tokens=1300, output_tokens=12, expect_tool_result=True),
        )
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(cfg),
            "CLAUDE_CONFIG_DIR": str(cfg),
            "ANTHROPIC_BASE_URL": srv.base_url,
            "ANTHROPIC_API_KEY": "sk-ant-fake",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "CLAUDE_CODE_MAX_RETRIES": "0",
        }
        proc = subprocess.run(
            [
                _CLAUDE,
                "-p",
                "Create hello.txt",
                "--output-format",
                "stream-json",
                "--verbose",
                "--permission-mode",
                "acceptEdits",
                "--model",
                "claude-sonnet-4-5",
                "--max-turns",
                "3",
            ],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (work / "hello.txt").read_text() == "hello from the fake model\n"
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["type"] == "result" and result["is_error"] is False
    assert result["usage"]["input_tokens"] == 2500 and result["usage"]["output_tokens"] == 52
    assert result["usage"]["cache_read_input_tokens"] == 200
    assert all(r.path == "/v1/messages" and r.query == {"beta": "true"} for r in srv.model_requests)


@pytest.mark.parametrize(
    ("system", "user", "expected"),
    [
        ("Env\nWorking directory: /tmp/run/work\nIs git: yes", "hi", "/tmp/run/work"),
        ("sys", "<env>\nPrimary working directory: /a/b-c</env>", "/a/b-c"),
        ("sys", "no directory here", None),
    ],
)
def test_request_working_directory(system: str, user: str, expected: str | None) -> None:
    body = {"system": system, "messages": [{"role": "user", "content": user}]}
    req = Request("POST", "/v1/messages", {}, {}, body, kind="anthropic")
    assert req.working_directory == expected


@pytest.mark.parametrize(
    ("messages", "problem"),
    [
        (
            [
                *USER,
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_nope", "content": "x"}
                    ],
                },
            ],
            "tool_result for 'toolu_nope' has no matching tool_use",
        ),
        (
            [
                *USER,
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "toolu_a", "name": "Read", "input": {}}],
                },
                {"role": "user", "content": "forgot the result"},
            ],
            "tool_use ids ['toolu_a'] were not answered",
        ),
    ],
)
def test_anthropic_tool_pairs_are_checked_like_the_real_api(messages: Any, problem: str) -> None:
    srv = FakeModelServer().start()
    try:
        srv.script(anthropic_text("kept"))
        with pytest.raises(anthropic.BadRequestError, match=re.escape(problem)):
            client(srv).messages.create(model=MODEL, max_tokens=8, messages=messages)
    finally:
        srv.stop()
    assert srv.pending == 1 and problem in srv.failures[0]


def test_openai_tool_message_must_answer_a_call() -> None:
    srv = FakeModelServer().start()
    try:
        r = openai_post(
            srv, messages=[*USER, {"role": "tool", "tool_call_id": "c1", "content": "x"}]
        )
        assert r.status_code == 400 and "answers no earlier tool call" in r.text
    finally:
        srv.stop()
    assert len(srv.failures) == 1


def test_chunked_request_body_is_read() -> None:
    body = json.dumps({"model": MODEL, "max_tokens": 8, "messages": USER}).encode()

    def chunks() -> Iterator[bytes]:
        yield body[:10]
        yield body[10:]

    with FakeModelServer() as srv:
        srv.script(anthropic_text("ok"))
        r = httpx.post(srv.base_url + "/v1/messages", content=chunks())
    assert r.status_code == 200 and r.json()["content"][0]["text"] == "ok"
    assert srv.requests[0].body["messages"] == USER
