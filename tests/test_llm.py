"""LLMClient against the fake model server: structured output, retries, every error, recording."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from specwright.config import PlannerConfig
from specwright.errors import SpecwrightError
from specwright.llm import (
    LLMAuthError,
    LLMCancelled,
    LLMClient,
    LLMConnectionError,
    LLMError,
    LLMMissingKeyError,
    LLMOutputError,
    LLMOverloadedError,
    LLMRateLimitError,
    LLMRequestError,
    LLMServerError,
    LLMTimeoutError,
    schema_problems,
)
from specwright.store import Store
from specwright.testing import (
    FakeModelServer,
    Request,
    Turn,
    anthropic_error,
    anthropic_message,
    anthropic_text,
    anthropic_tool_use,
    tool_use_block,
)
from tests.support_http import CannedHTTP

MODEL = "claude-sonnet-4-6"  # priced by genai-prices: $3 in / $15 out / $0.30 read / $3.75 write
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "questions": {"type": "array", "items": {"type": "string"}},
        "done": {"type": "boolean"},
    },
    "required": ["questions"],
}
GOOD = {"questions": ["Which database?", "Who are the users?"], "done": False}


@pytest.fixture
def srv() -> Iterator[FakeModelServer]:
    with FakeModelServer() as server:
        yield server


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")


def make_client(srv: FakeModelServer, store: Store | None, **kw: Any) -> LLMClient:
    planner = PlannerConfig(
        name="claude",
        model=kw.pop("model", MODEL),
        base_url=srv.base_url,
        max_retries=kw.pop("max_retries", 2),
        timeout_s=kw.pop("timeout_s", 10.0),
        api_key_env=kw.pop("api_key_env", "ANTHROPIC_API_KEY"),
    )
    return LLMClient(planner, store, backoff_s=0.01, **kw)


def execution(store: Store, client: LLMClient) -> dict[str, Any]:
    assert client.last_execution_id is not None
    (row,) = store.query_dicts("SELECT * FROM executions WHERE id = ?", [client.last_execution_id])
    return row


def events(store: Store, client: LLMClient) -> list[dict[str, Any]]:
    return store.query_dicts(
        "SELECT type, tool_name, text, input, is_error, input_tokens, output_tokens "
        "FROM events WHERE execution_id = ? ORDER BY seq",
        [client.last_execution_id],
    )


def ask(client: LLMClient, **kw: Any) -> tuple[dict[str, Any], Any]:
    return client.structured(
        "You are the planner.", "Plan a todo app.", "ask_questions", SCHEMA, role="planner", **kw
    )


# --- structured output -----------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.usefixtures("key")
def test_structured_forced_tool_use_is_recorded(
    srv: FakeModelServer, store: Store, stream: bool
) -> None:
    srv.script(
        anthropic_tool_use(
            "ask_questions",
            GOOD,
            input_tokens=1000,
            output_tokens=200,
            cache_read_input_tokens=5000,
            cache_creation_input_tokens=400,
            cache_creation_1h_tokens=100,
            expect_stream=stream,
            expect_system="You are the planner.",
            expect_tools=("ask_questions",),
        )
    )
    pieces: list[str] = []
    client = make_client(srv, store)
    data, usage = ask(client, stream=stream, spec_id=None, on_text=pieces.append)
    assert data == GOOD
    assert (usage.input_tokens, usage.output_tokens) == (1000, 200)
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (5000, 400)
    body = srv.requests[0].json
    assert body["tool_choice"] == {"type": "tool", "name": "ask_questions"}
    assert body["tools"][0]["input_schema"] == SCHEMA
    assert body["model"] == MODEL and body["messages"][0]["content"] == "Plan a todo app."

    row = execution(store, client)
    assert (row["role"], row["backend"], row["executor"], row["model"]) == (
        "planner",
        "anthropic",
        "claude",
        MODEL,
    )
    assert row["status"] == "ok" and row["num_turns"] == 1
    assert (row["input_tokens"], row["output_tokens"]) == (1000, 200)
    assert (row["cache_read_tokens"], row["cache_write_tokens"]) == (5000, 400)
    assert row["cache_write_1h_tokens"] == 100
    # 1000*3 + 200*15 + 5000*0.3 + 300*3.75 + 100*6 (1-hour cache writes) per million
    expected = (3000 + 3000 + 1500 + 1125 + 600) / 1e6
    assert row["computed_cost_usd"] == pytest.approx(expected)
    assert row["cost_usd"] == pytest.approx(expected) and row["cost_source"] == "computed"
    kinds = [(e["type"], e["tool_name"]) for e in events(store, client)]
    assert kinds == [("step", None), ("tool_call", "ask_questions"), ("usage", None)]


@pytest.mark.usefixtures("key")
def test_an_absurd_token_count_in_an_answer_is_read_as_the_agents_are(
    srv: FakeModelServer, store: Store
) -> None:
    """An endpoint (a proxy, say) that answers a count past BIGINT: the execution's final write
    failed, leaving it `running` with no tokens; it is read as 0, as an agent's would be."""
    srv.script(anthropic_tool_use("ask_questions", GOOD, input_tokens=2**63 + 5, output_tokens=7))
    client = make_client(srv, store)
    data, usage = ask(client)
    assert data == GOOD and (usage.input_tokens, usage.output_tokens) == (0, 7)
    row = execution(store, client)
    assert row["status"] == "ok" and (row["input_tokens"], row["output_tokens"]) == (0, 7)


@pytest.mark.usefixtures("key")
def test_malformed_output_is_retried_once_with_a_correction(
    srv: FakeModelServer, store: Store
) -> None:
    def corrected(req: Request) -> Any:
        fix = req.messages[-1]["content"]
        assert isinstance(fix, str) and "no call of tool 'ask_questions'" in fix
        return anthropic_tool_use("ask_questions", GOOD, input_tokens=50, output_tokens=5)

    srv.script(
        anthropic_text("Here are my questions: ...", input_tokens=40, output_tokens=9), corrected
    )
    client = make_client(srv, store)
    data, usage = ask(client)
    assert data == GOOD
    assert (usage.input_tokens, usage.output_tokens) == (90, 14)  # both attempts count
    row = execution(store, client)
    assert row["status"] == "ok" and row["num_turns"] == 2
    assert (row["input_tokens"], row["output_tokens"]) == (90, 14)
    warnings = [e for e in events(store, client) if e["type"] == "error"]
    assert len(warnings) == 1 and "malformed ask_questions output" in warnings[0]["text"]


@pytest.mark.usefixtures("key")
def test_a_retried_answer_is_priced_call_by_call_not_as_one_long_prompt(
    srv: FakeModelServer, store: Store
) -> None:
    # two calls of 150k prompt tokens: 300k in all, but each is billed at Sonnet 4.5's
    # base rates ($3 in, $15 out per MTok), not the >200k ones ($6 / $22.50)
    srv.script(
        anthropic_text("Questions: ...", input_tokens=150_000, output_tokens=900),
        anthropic_tool_use("ask_questions", GOOD, input_tokens=150_000, output_tokens=300),
    )
    client = make_client(srv, store, model="claude-sonnet-4-5")
    ask(client)
    row = execution(store, client)
    assert (row["num_turns"], row["input_tokens"]) == (2, 300_000)
    expected = (150_000 * 3 + 900 * 15 + 150_000 * 3 + 300 * 15) / 1e6
    assert row["computed_cost_usd"] == pytest.approx(expected, abs=1e-9)


@pytest.mark.usefixtures("key")
def test_malformed_twice_raises_output_error_and_records_it(
    srv: FakeModelServer, store: Store
) -> None:
    srv.script(
        anthropic_tool_use("ask_questions", {"done": "yes"}),
        anthropic_tool_use("ask_questions", {"questions": "not a list"}, expect_tool_result=True),
    )
    client = make_client(srv, store)
    with pytest.raises(LLMOutputError) as info:
        ask(client)
    msg = str(info.value)
    assert "malformed ask_questions output after 2 attempt(s)" in msg
    assert "questions: expected array, got str" in msg and MODEL in msg
    # the corrective turn answered the bad tool call with an error tool_result
    result = srv.requests[1].tool_results[0]
    assert result["is_error"] is True and "questions: required but missing" in result["content"]
    row = execution(store, client)
    assert row["status"] == "error" and row["exit_reason"].startswith("malformed_output:")
    assert row["num_turns"] == 2 and row["input_tokens"] == 200


@pytest.mark.usefixtures("key")
def test_no_retry_when_output_retries_is_zero(srv: FakeModelServer, store: Store) -> None:
    srv.script(anthropic_text("no tool"))
    with pytest.raises(LLMOutputError, match="after 1 attempt"):
        ask(make_client(srv, store), output_retries=0)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.usefixtures("key")
def test_text_completion(srv: FakeModelServer, store: Store, stream: bool) -> None:
    srv.script(anthropic_text("A short summary.", output_tokens=4, expect_stream=stream))
    client = make_client(srv, store)
    got: list[str] = []
    text, usage = client.text(
        "Summarize.", "the diff", role="summarizer", stream=stream, on_text=got.append
    )
    assert text == "A short summary." and usage.output_tokens == 4
    assert ("".join(got) == text) if stream else got == []
    row = execution(store, client)
    assert (row["role"], row["status"], row["exit_reason"]) == ("summarizer", "ok", "end_turn")
    assert [e["type"] for e in events(store, client)] == ["step", "text", "usage"]


@pytest.mark.parametrize("call", ["text", "structured"])
@pytest.mark.usefixtures("key")
def test_ctrl_c_mid_answer_is_recorded_as_interrupted(
    srv: FakeModelServer, store: Store, call: str
) -> None:
    """Ctrl-C (or SIGTERM, which Specwright turns into it) during a review or a plan: the
    execution said 'KeyboardInterrupt: ' (an empty message), unlike an agent's 'interrupted'."""
    if call == "text":
        srv.script(anthropic_text("A short summary.", expect_stream=True))
    else:
        srv.script(anthropic_tool_use("ask_questions", {"questions": []}, text="Thinking."))
    client = make_client(srv, store)

    def stop(_: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        if call == "text":
            client.text("Summarize.", "the diff", role="summarizer", stream=True, on_text=stop)
        else:
            ask(client, stream=True, on_text=stop)
    row = execution(store, client)
    assert (row["status"], row["exit_reason"]) == ("cancelled", "interrupted")
    assert (row["cost_usd"], row["cost_source"]) == (None, "incomplete")  # unknown, not $0


@pytest.mark.usefixtures("key")
def test_a_cancel_gives_up_on_the_call_at_once_and_sends_no_retry(
    srv: FakeModelServer, store: Store
) -> None:
    """A run's cancel (a reviewer's client) while the answer is awaited: the call raises at
    once, recorded cancelled with its cost unknown; the abandoned attempt, answered later with
    a retryable error, is not retried and adds nothing to the record. A call after the cancel
    sends nothing."""
    cancel, go, answered = threading.Event(), threading.Event(), threading.Event()

    def answer_when_told(request: Request) -> Turn:  # the model answers once the test says so
        cancel.set()
        go.wait(30)
        answered.set()
        return anthropic_error(529)

    srv.script(answer_when_told)
    client = make_client(srv, store, cancel=cancel)
    with pytest.raises(LLMCancelled, match="cancelled while waiting for the answer"):
        ask(client)
    assert not answered.is_set()  # given up on before the answer came
    row = execution(store, client)
    assert (row["status"], row["cost_usd"], row["cost_source"]) == ("cancelled", None, "incomplete")
    go.set()
    answered.wait(10)
    time.sleep(0.5)  # the 529 has come: the abandoned call ends without a second request
    assert len(srv.requests) == 1
    assert execution(store, client) == row and len(events(store, client)) == row["event_count"]
    with pytest.raises(LLMCancelled, match="cancelled before the call"):
        ask(client)
    assert len(srv.requests) == 1 and execution(store, client)["status"] == "cancelled"


@pytest.mark.usefixtures("key")
def test_without_a_store_nothing_is_recorded(srv: FakeModelServer) -> None:
    srv.script(anthropic_tool_use("ask_questions", GOOD))
    client = make_client(srv, None)
    assert ask(client)[0] == GOOD and client.last_execution_id is None


@pytest.mark.usefixtures("key")
def test_deprecated_model_name_does_not_raise_a_warning(srv: FakeModelServer, store: Store) -> None:
    srv.script(anthropic_text("ok", expect_model="claude-opus-4-5"))
    text, _ = make_client(srv, store, model="claude-opus-4-5").text("s", "p", role="planner")
    assert text == "ok"


@pytest.mark.usefixtures("key")
def test_base_url_from_environment(
    srv: FakeModelServer, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.base_url + "/")
    srv.script(anthropic_text("via env"))
    client = LLMClient(PlannerConfig(name="p", model=MODEL), store)
    assert client.endpoint == srv.base_url + "/v1/messages"
    assert client.text("s", "p", role="planner")[0] == "via env"


# --- errors ----------------------------------------------------------------------------------


def failed(store: Store, client: LLMClient, reason: str) -> dict[str, Any]:
    row = execution(store, client)
    assert row["status"] == "error", row
    assert row["exit_reason"].startswith(reason + ":"), row["exit_reason"]
    assert row["finished_at"] is not None
    return row


def test_missing_api_key_fails_before_any_request(
    srv: FakeModelServer, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(srv, store, api_key_env="MY_PLANNER_KEY")
    monkeypatch.setenv("MY_PLANNER_KEY", "  ")
    with pytest.raises(LLMMissingKeyError) as info:
        ask(client)
    assert "set the environment variable MY_PLANNER_KEY" in str(info.value)
    assert "planner 'claude'" in str(info.value)
    assert srv.requests == []
    failed(store, client, "missing_api_key")


@pytest.mark.usefixtures("key")
def test_401_is_an_auth_error_without_retry(srv: FakeModelServer, store: Store) -> None:
    srv.script(anthropic_error(401, "invalid x-api-key"))
    client = make_client(srv, store)
    with pytest.raises(LLMAuthError) as info:
        ask(client)
    msg = str(info.value)
    assert "the API key from ANTHROPIC_API_KEY was refused (HTTP 401" in msg
    assert "invalid x-api-key" in msg and srv.base_url + "/v1/messages" in msg and MODEL in msg
    assert len(srv.requests) == 1
    failed(store, client, "auth_failed")
    error_events = [e for e in events(store, client) if e["type"] == "error"]
    assert error_events[-1]["is_error"] is True
    assert error_events[-1]["tool_name"] == "auth"  # the kind the agents' auth errors have


@pytest.mark.usefixtures("key")
def test_429_is_retried_with_backoff_then_rate_limited(srv: FakeModelServer, store: Store) -> None:
    srv.script(anthropic_error(429), anthropic_error(429), anthropic_error(429))
    client = make_client(srv, store, max_retries=2)
    with pytest.raises(LLMRateLimitError) as info:
        ask(client)
    assert "rate limited (HTTP 429) after 3 attempt(s)" in str(info.value)
    assert len(srv.requests) == 3
    failed(store, client, "rate_limited")
    evs = events(store, client)
    retries = [e for e in evs if e["type"] == "error" and not e["is_error"]]
    assert len(retries) == 2 and "retrying in 0.01s" in retries[0]["text"]
    assert evs[-1]["tool_name"] == "rate_limit" and evs[-1]["is_error"] is True


@pytest.mark.usefixtures("key")
def test_429_then_success(srv: FakeModelServer, store: Store) -> None:
    srv.script(anthropic_error(429), anthropic_tool_use("ask_questions", GOOD))
    client = make_client(srv, store)
    assert ask(client)[0] == GOOD
    assert execution(store, client)["status"] == "ok"


@pytest.mark.usefixtures("key")
def test_429_asking_for_a_long_wait_fails_at_once(srv: FakeModelServer, store: Store) -> None:
    srv.script(anthropic_error(429, retry_after_s=3600, retry_after_ms=None))
    client = make_client(srv, store, max_retries=3)
    with pytest.raises(LLMRateLimitError, match="asks to retry after 3600s"):
        ask(client)
    assert len(srv.requests) == 1


@pytest.mark.usefixtures("key")
def test_529_overloaded(srv: FakeModelServer, store: Store) -> None:
    srv.script(anthropic_error(529), anthropic_error(529, "Overloaded"))
    client = make_client(srv, store, max_retries=1)
    with pytest.raises(LLMOverloadedError) as info:
        ask(client)
    assert "overloaded (HTTP 529) after 2 attempt(s): Overloaded" in str(info.value)
    failed(store, client, "overloaded")


@pytest.mark.usefixtures("key")
def test_overloaded_mid_stream(srv: FakeModelServer, store: Store) -> None:
    srv.script(anthropic_error(529, "Overloaded", mid_stream=True))
    client = make_client(srv, store, max_retries=0)
    with pytest.raises(LLMOverloadedError, match="Overloaded"):
        ask(client, stream=True)
    failed(store, client, "overloaded")


@pytest.mark.usefixtures("key")
def test_5xx_server_error(srv: FakeModelServer, store: Store) -> None:
    srv.script(anthropic_error(500, "boom"), anthropic_error(503, "still down"))
    client = make_client(srv, store, max_retries=1)
    with pytest.raises(LLMServerError) as info:
        ask(client)
    assert "server error HTTP 503 after 2 attempt(s): still down" in str(info.value)
    failed(store, client, "server_error")


@pytest.mark.usefixtures("key")
def test_400_is_refused_without_retry(srv: FakeModelServer, store: Store) -> None:
    srv.script(anthropic_error(400, "prompt is too long"))
    client = make_client(srv, store)
    with pytest.raises(LLMRequestError, match=r"request refused \(HTTP 400 invalid_request_error"):
        ask(client)
    assert len(srv.requests) == 1
    failed(store, client, "request_refused")


@pytest.mark.usefixtures("key")
def test_timeout(srv: FakeModelServer, store: Store) -> None:
    srv.script(anthropic_tool_use("ask_questions", GOOD, delay_s=5))
    client = make_client(srv, store, timeout_s=0.3, max_retries=0)
    with pytest.raises(LLMTimeoutError) as info:
        ask(client)
    assert "no answer within 0.3s" in str(info.value) and MODEL in str(info.value)
    row = failed(store, client, "timeout")
    # the request may have been answered (and billed) after we stopped waiting: unknown, not $0
    assert (row["cost_usd"], row["cost_source"]) == (None, "incomplete")


@pytest.mark.usefixtures("key")
def test_connection_refused(store: Store) -> None:
    down = FakeModelServer().start()
    down.stop()  # the port is now closed: nothing listens there
    client = make_client(down, store, max_retries=1)
    with pytest.raises(LLMConnectionError) as info:
        ask(client)
    msg = str(info.value)
    assert "cannot connect (connection refused) after 2 attempt(s)" in msg
    assert down.base_url in msg
    failed(store, client, "connection_failed")


def test_errors_are_distinct_one_line_specwright_errors() -> None:
    classes = [
        LLMMissingKeyError,
        LLMAuthError,
        LLMRateLimitError,
        LLMOverloadedError,
        LLMServerError,
        LLMTimeoutError,
        LLMConnectionError,
        LLMRequestError,
        LLMOutputError,
    ]
    assert all(issubclass(c, LLMError) and issubclass(c, SpecwrightError) for c in classes)
    assert len({c.reason for c in classes}) == len(classes)


# --- schema check ----------------------------------------------------------------------------


def test_schema_problems() -> None:
    schema = {
        "type": "object",
        "required": ["verdict", "findings"],
        "properties": {
            "verdict": {"type": "string", "enum": ["SHIP", "REVISE"]},
            "findings": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["message"],
                    "properties": {"line": {"type": ["integer", "null"]}},
                },
            },
        },
    }
    ok = {"verdict": "SHIP", "findings": [{"message": "x", "line": None}]}
    assert schema_problems(ok, schema) == []
    bad = {"verdict": "MAYBE", "findings": [{"line": True}, "no"]}
    assert schema_problems(bad, schema) == [
        "verdict: expected one of ['SHIP', 'REVISE'], got 'MAYBE'",
        "findings[0].message: required but missing",
        "findings[0].line: expected integer or null, got bool",
        "findings[1]: expected object, got str",
    ]
    assert schema_problems([], schema) == ["the answer: expected object, got list"]


@pytest.mark.usefixtures("key")
def test_a_stream_cut_before_message_stop_is_retried_then_a_connection_error(
    srv: FakeModelServer, store: Store
) -> None:
    # 6 events: the whole tool call and message_delta arrive, only message_stop is missing
    srv.script(
        anthropic_tool_use("ask_questions", GOOD, drop_after=6),
        anthropic_tool_use("ask_questions", GOOD, drop_after=3),
    )
    client = make_client(srv, store, max_retries=1)
    with pytest.raises(LLMConnectionError, match="stream ended before message_stop after 2"):
        ask(client, stream=True)
    failed(store, client, "connection_failed")


@pytest.mark.usefixtures("key")
def test_a_cut_stream_then_a_whole_one_succeeds(srv: FakeModelServer, store: Store) -> None:
    srv.script(
        anthropic_tool_use("ask_questions", GOOD, drop_after=4),
        anthropic_tool_use("ask_questions", GOOD),
    )
    client = make_client(srv, store)
    assert ask(client, stream=True)[0] == GOOD
    assert execution(store, client)["status"] == "ok"


class _NotTheAPI(CannedHTTP):
    """Answers every request 200 with a fixed body: what a proxy's login page or another API
    looks like to the client."""

    def __init__(self, body: bytes, content_type: str) -> None:
        super().__init__(lambda _method, _path: (200, body, content_type))
        self.base_url = self.url


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("body", "content_type", "said"),
    [
        (b"<html><h1>Sign in to the proxy</h1></html>", "text/html", "text/html"),
        (b'{"id": 1, "content": "nope"}', "application/json", "application/json"),
        (b'{"id": "msg_1", "type": "mess', "application/json", "not valid JSON"),
    ],
)
@pytest.mark.usefixtures("key")
def test_a_200_that_is_not_a_messages_answer_is_a_one_line_error(
    store: Store, stream: bool, body: bytes, content_type: str, said: str
) -> None:
    server = _NotTheAPI(body, content_type)
    try:
        client = make_client(server, store, max_retries=0)  # type: ignore[arg-type]
        with pytest.raises(LLMError) as info:
            ask(client, stream=stream)
    finally:
        server.close()
    msg = str(info.value)
    assert "\n" not in msg and server.base_url in msg
    assert "is the base URL a Messages API endpoint?" in msg
    if stream:
        assert f"the answer stream carried no events ({content_type}" in msg
    else:
        assert said in msg and "unexpected failure" not in msg
    row = execution(store, client)
    assert row["status"] == "error" and row["exit_reason"].startswith("llm_error: ")


@pytest.mark.usefixtures("key")
def test_server_error_details_are_printable(srv: FakeModelServer, store: Store) -> None:
    srv.script(anthropic_error(400, "bad \x1b]0;owned\x07 request\x1b[2J"))
    with pytest.raises(LLMRequestError) as info:
        ask(make_client(srv, store))
    assert str(info.value).endswith("): bad ]0;owned request [2J")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.usefixtures("key")
def test_a_tool_input_that_is_not_an_object_is_corrected_quietly(
    srv: FakeModelServer, store: Store, stream: bool
) -> None:
    """A planner calling the tool with a string: no pydantic warning on the user's terminal, and
    the corrective request echoes a valid tool call (an object input: the real API refuses a
    string with a 400, which would end the retry meant to fix it)."""

    def corrected(req: Request) -> Any:
        (echo,) = [b for b in req.messages[-2]["content"] if b["type"] == "tool_use"]
        assert echo["input"] == {}
        return anthropic_tool_use("ask_questions", GOOD)

    srv.script(anthropic_message(tool_use_block("ask_questions", "not an object")), corrected)
    data, _ = ask(make_client(srv, store), stream=stream)  # warnings are errors here
    assert data == GOOD
