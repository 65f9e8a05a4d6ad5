"""The pure stream parsers on recorded streams: Claude Code (2.1.197 and 2.1.332), OpenCode's
`/event` stream and `codex exec --json`. No process, no network."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from specwright.agents.claude_stream import (
    ClaudeStreamState,
    outcome_from_state,
    parse_line,
    retry_hint_s,
)
from specwright.agents.command import LineState, parse_codex_line, parse_plain_line
from specwright.agents.opencode_events import (
    OpenCodeState,
    error_kind,
    finish_parse,
    parse_event,
)
from specwright.agents.opencode_outcome import session_outcome
from specwright.loop.lines import tool_line
from specwright.model import AgentEvent, ErrorEvent, TextEvent, ToolCall, ToolResult, UsageEvent
from tests.support_agents import STREAMS, opencode_events, stream_lines


def run_claude(name: str, returncode: int | None = 0) -> tuple[list[AgentEvent], Any]:
    state = ClaudeStreamState()
    events: list[AgentEvent] = []
    for line in stream_lines(f"claude-code/{name}"):
        events += parse_line(line, state)
    return events, outcome_from_state(state, returncode)


def kinds(events: list[AgentEvent]) -> list[str]:
    return [f"error:{e.kind}" if isinstance(e, ErrorEvent) else e.type for e in events]


# --- claude code ----------------------------------------------------------------------------

SUCCESS = [
    "acceptEdits",
    "allowedTools",
    "offline1",
    "old_ok",
    "preamble",
    "unknown_model",
    "old_partial",
    "specwright_write",
]


@pytest.mark.parametrize("name", SUCCESS)
def test_claude_success_streams(name: str) -> None:
    events, outcome = run_claude(name)
    assert outcome.status == "ok", outcome
    assert outcome.exit_reason == "completed"
    calls = [e for e in events if isinstance(e, ToolCall)]
    results = [e for e in events if isinstance(e, ToolResult)]
    assert [c.tool for c in calls] == ["Write"]
    assert calls[0].input["file_path"].endswith("hello.txt")
    assert [r.call_id for r in results] == [calls[0].call_id]
    assert results[0].tool == "Write" and not results[0].is_error
    assert events.index(calls[0]) < events.index(results[0])
    usage = [e for e in events if isinstance(e, UsageEvent)]
    assert len(usage) == 1 and usage[0].final and events[-1] is usage[0]
    assert outcome.session_id and outcome.num_turns == 2
    assert outcome.final_text.startswith("Done")
    assert not [e for e in events if isinstance(e, ErrorEvent)]


@pytest.mark.parametrize("name", ["acceptEdits", "old_ok", "preamble"])
def test_claude_tokens_come_from_the_result_line_only(name: str) -> None:
    # every assistant line repeats a message_start snapshot (output_tokens 1): never summed
    events, outcome = run_claude(name)
    u = outcome.usage
    assert (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens) == (
        2500,
        52,
        200,
        100,
    )
    assert u.cost_usd == pytest.approx(0.008715)
    assert u.model == "claude-sonnet-4-5"
    final = next(e for e in events if isinstance(e, UsageEvent))
    assert final.usage == u


def test_claude_preamble_keeps_both_blocks_of_one_message() -> None:
    # 2.1.332 prints one line per content block with the same message id
    events, _ = run_claude("preamble")
    assert kinds(events) == ["step", "text", "tool_call", "tool_result", "text", "usage"]
    assert [e.text for e in events if isinstance(e, TextEvent)] == [
        "I will write the file now.",
        "Done: I wrote hello.txt.",
    ]


def test_claude_repeated_lines_are_deduplicated() -> None:
    lines = stream_lines("claude-code/preamble")
    state = ClaudeStreamState()
    events: list[AgentEvent] = []
    for line in [lines[0], lines[1], lines[1], lines[2], lines[2], lines[3], lines[3], *lines[4:]]:
        events += parse_line(line, state)
    assert kinds(events) == ["step", "text", "tool_call", "tool_result", "text", "usage"]


def test_claude_permission_denied_is_a_failed_tool_call_not_a_failed_run() -> None:
    events, outcome = run_claude("default_noperm")
    assert outcome.status == "ok"
    result = next(e for e in events if isinstance(e, ToolResult))
    assert result.is_error and "permission" in result.output
    assert "error:warning" in kinds(events)


@pytest.mark.parametrize(
    ("name", "status", "reason", "kind"),
    [
        ("err400", 400, "api_error", "api_error"),
        ("err401_r0", 401, "auth", "auth"),
        ("err401", 401, "auth", "auth"),
        ("err500_r1", 500, "api_error", "api_error"),
        ("err529_r0", 529, "overloaded", "overloaded"),
    ],
)
def test_claude_api_errors_fail_even_though_subtype_says_success(
    name: str, status: int, reason: str, kind: str
) -> None:
    events, outcome = run_claude(name, returncode=1)
    assert outcome.status == "error"
    assert outcome.exit_reason == reason
    assert str(status) in (outcome.error or "")
    assert outcome.raw and outcome.raw["subtype"] == "success" and outcome.raw["is_error"]
    errors = [e for e in events if isinstance(e, ErrorEvent) and e.kind != "warning"]
    assert [e.kind for e in errors] == [kind]  # once, not again for the result line
    assert outcome.usage.cost_usd == 0


def test_claude_retries_are_warnings() -> None:
    events, _ = run_claude("err401", returncode=1)
    retries = [e for e in events if isinstance(e, ErrorEvent) and e.kind == "warning"]
    assert len(retries) == 10
    assert "retry 1/10" in retries[0].message and "401" in retries[0].message


@pytest.mark.parametrize(
    ("source", "fixed_token", "gives_up"),
    [
        ("ANTHROPIC_API_KEY", False, True),
        ("none", True, True),  # ANTHROPIC_AUTH_TOKEN in a fresh config dir
        ("apiKeyHelper", False, False),
        ("none", False, False),  # a login
    ],
)
def test_claude_gives_up_on_a_refused_fixed_key_at_its_first_retry(
    source: str, fixed_token: bool, gives_up: bool
) -> None:
    """A fixed ANTHROPIC_API_KEY or token cannot change between Claude Code's retries of a 401
    (10, ~3 min): the state says to stop claude at the first. A helper's key or a login may be
    refreshed on a 401: those retries are waited for."""
    state = ClaudeStreamState(fixed_token=fixed_token)
    for line in stream_lines("claude-code/err401"):
        obj = json.loads(line)
        if obj.get("subtype") == "init":
            obj["apiKeySource"] = source
        parse_line(json.dumps(obj), state)
        if obj.get("subtype") == "api_retry":
            break
    assert state.give_up is gives_up
    if gives_up:  # claude is stopped: no result line, killed by its signal
        outcome = outcome_from_state(state, -15)
        assert (outcome.status, outcome.exit_reason) == ("error", "auth")
        variable = "ANTHROPIC_AUTH_TOKEN" if fixed_token else "ANTHROPIC_API_KEY"
        assert "401" in (outcome.error or "") and variable in (outcome.error or "")


@pytest.mark.parametrize("name", ["maxturns1", "old_maxturns1"])
def test_claude_max_turns(name: str) -> None:
    _events, outcome = run_claude(name, returncode=1)
    assert (outcome.status, outcome.exit_reason) == ("error", "max_turns")
    assert "maximum number of turns" in (outcome.error or "")
    assert outcome.usage.input_tokens == 1200 and outcome.usage.cost_usd == pytest.approx(0.004635)


def test_claude_not_logged_in_says_how_to_fix_it() -> None:
    _, outcome = run_claude("nokey", returncode=1)
    assert (outcome.status, outcome.exit_reason) == ("error", "auth")  # the loop does not retry
    assert "ANTHROPIC_API_KEY" in (outcome.error or "") and "config_dir" in (outcome.error or "")


def _claude_api_failure(text: str, status: int, etype: str, **fields: Any) -> list[str]:
    """The two lines claude 2.1.332 ends a failed API call with: its synthetic assistant
    message (with its own ``error``, ``api_error``...) and the result line."""
    assistant = {
        "type": "assistant",
        "message": {
            "id": "m1",
            "model": "<synthetic>",
            "content": [{"type": "text", "text": text}],
        },
        "is_api_error_message": True,
        "api_error_status": status,
        "api_error_type": etype,
        **fields,
    }
    result = {
        "type": "result",
        "subtype": "success",
        "is_error": True,
        "result": text,
        "api_error_status": status,
        "api_error_type": etype,
        "terminal_reason": "api_error",
    }
    return [json.dumps(assistant), json.dumps(result)]


@pytest.mark.parametrize(
    ("lines", "reason", "advice"),
    [
        # a login that expired or was revoked, which claude could not renew (strings of its own)
        (
            _claude_api_failure(
                "Login expired · Please run /login",
                401,
                "authentication_error",
                error="authentication_failed",
            ),
            "auth",
            "log in again",
        ),
        (
            _claude_api_failure(
                "OAuth token revoked · Please run /login",
                403,
                "permission_error",
                error="authentication_failed",
            ),
            "auth",
            "log in again",
        ),
        # an account on hold (its OAuth refresh refused), an organization refusing this sign-in
        (
            _claude_api_failure(
                "Your account is on hold and can't use Claude Code. View details or appeal: "
                "https://claude.ai/appeal",
                403,
                "permission_error",
                error="account_on_hold",
            ),
            "account",
            "the account's owner must act on this",
        ),
        (
            _claude_api_failure(
                "Your organization has disabled Claude subscription access for Claude Code · Use an "
                "Anthropic API key instead, or ask your admin to enable access",
                403,
                "permission_error",
                error="oauth_org_not_allowed",
            ),
            "account",
            "the account's owner must act on this",
        ),
    ],
    ids=["login-expired", "token-revoked", "on-hold", "org-not-allowed"],
)
def test_claude_account_states_say_what_to_do(lines: list[str], reason: str, advice: str) -> None:
    """Claude's account states it cannot be driven into offline (its own login's renewal):
    an expired login says to log in again (not "no credentials: set ANTHROPIC_API_KEY"), an
    account its owner must put right is ``account`` (not a refused key)."""
    state = ClaudeStreamState()
    events = [e for line in lines for e in parse_line(line, state)]
    outcome = outcome_from_state(state, 1)
    assert (outcome.status, outcome.exit_reason) == ("error", reason), outcome
    assert advice in (outcome.error or "") and "ANTHROPIC_API_KEY" not in (outcome.error or "")
    assert [e.kind for e in events if isinstance(e, ErrorEvent)] == [reason]


@pytest.mark.parametrize(("rc", "status"), [(143, "killed"), (-9, "killed"), (1, "error")])
def test_claude_without_result_line_was_killed_or_crashed(rc: int, status: str) -> None:
    state = ClaudeStreamState()
    for line in stream_lines("claude-code/acceptEdits")[:-1]:
        parse_line(line, state)
    outcome = outcome_from_state(state, rc, stderr_tail="boom\nlast words")
    assert outcome.status == status
    assert outcome.exit_reason.startswith("no result")
    assert "without a result line" in (outcome.error or "") and "last words" in (
        outcome.error or ""
    )
    # its tokens: the replies it had started, once per message (this stream's result line says
    # 2,500 input, 200 cache read, 100 cache write: the same; 52 output, of which the
    # snapshots show 1 a reply), not none
    u = outcome.usage
    assert (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens) == (2500, 200, 100)
    assert u.output_tokens == 2 and u.cost_usd is None and outcome.session_id
    assert u.model == "claude-sonnet-4-5"


def test_a_reply_seen_on_several_lines_counts_once_when_there_is_no_result_line() -> None:
    state = ClaudeStreamState()
    first = next(line for line in stream_lines("claude-code/acceptEdits") if b'"assistant"' in line)
    for line in (first, first, first):  # one line per content block, the same snapshot
        parse_line(line, state)
    usage = outcome_from_state(state, -9).usage
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens) == (1200, 1, 200)


def test_claude_cancel_and_timeout_outcomes() -> None:
    state = ClaudeStreamState()
    assert outcome_from_state(state, -15, cancelled=True).status == "cancelled"
    timed = outcome_from_state(state, -15, timed_out=True)
    assert (timed.status, timed.exit_reason) == ("killed", "timeout")


def test_claude_malformed_lines_become_warnings() -> None:
    state = ClaudeStreamState()
    bad = [
        b'{"type":"assistant","message":{"id":"m1","content":[{"type":"te',  # truncated
        b'{"type":"brand_new_event","x":1}\n',
        b'{"type":"assistant","message":{"id":"m2","content":[{"type":"text","text":"caf\xe9"}]}}\n',
        b"[1, 2, 3]\n",
        b"plain words from stderr\n",
        b"\n",
        b'{"type":"user","message":"not a dict"}\n',
        b'{"type":"assistant","message":{"id":"m3","content":"oops"}}\n',
    ]
    events: list[AgentEvent] = []
    for line in bad:
        events += parse_line(line, state)
    warnings = [e for e in events if isinstance(e, ErrorEvent) and e.kind == "warning"]
    texts = [e for e in events if isinstance(e, TextEvent)]
    assert [t.text for t in texts] == ["caf\ufffd"]  # replaced, and still parsed
    messages = " | ".join(w.message for w in warnings)
    assert "line 1: not valid JSON" in messages
    assert "unknown event type 'brand_new_event'" in messages
    assert "line 3: invalid UTF-8" in messages
    assert "expected a JSON object, got list" in messages
    assert len(warnings) >= 6 and state.warnings == len(warnings)
    outcome = outcome_from_state(state, 0)
    assert outcome.status == "error" and "without a result line" in (outcome.error or "")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_claude_parser_never_raises(line: bytes) -> None:
    events = parse_line(line, ClaudeStreamState())
    assert all(
        e.type in ("text", "tool_call", "tool_result", "usage", "error", "step") for e in events
    )


@settings(max_examples=150, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda c: (
            st.lists(c, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "type",
                        "message",
                        "content",
                        "id",
                        "usage",
                        "subtype",
                        "is_error",
                        "result",
                        "text",
                        "tool_use_id",
                    ]
                ),
                c,
                max_size=4,
            )
        ),
        max_leaves=12,
    )
)
def test_claude_parser_survives_odd_shapes(obj: Any) -> None:
    for kind in ("assistant", "user", "result", "system"):
        value = {**obj, "type": kind} if isinstance(obj, dict) else {"type": kind, "message": obj}
        parse_line(json.dumps(value), ClaudeStreamState())


def test_claude_rate_limit_event_sets_retry_after() -> None:
    state = ClaudeStreamState()
    line = {
        "type": "rate_limit_event",
        "rate_limit_info": {"status": "rejected", "resetsAt": time.time() + 120},
    }
    events = parse_line(json.dumps(line), state)
    assert isinstance(events[0], ErrorEvent) and events[0].kind == "rate_limit"
    assert state.retry_after_s is not None and 100 < state.retry_after_s <= 120
    assert outcome_from_state(state, 1).retry_after_s == state.retry_after_s


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("Rate limited. Try again in 30 seconds.", 30.0),
        ("retry after 1500 ms", 1.5),
        ("please try again in 2 minutes", 120.0),
        ("try again in a moment", None),
    ],
)
def test_retry_hints(text: str, seconds: float | None) -> None:
    assert retry_hint_s(text) == seconds


def test_claude_big_tool_output_is_passed_whole_and_raw_is_slim() -> None:
    big = "x" * 2_000_000
    line = {
        "type": "user",
        "message": {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "content": [{"type": "text", "text": big}],
                }
            ],
        },
        "tool_use_result": {"stdout": big},
    }
    events = parse_line(json.dumps(line), ClaudeStreamState())
    result = events[0]
    assert isinstance(result, ToolResult) and len(result.output) == 2_000_000
    assert len(json.dumps(result.raw)) < 10_000


# --- opencode -------------------------------------------------------------------------------


def run_opencode(name: str) -> tuple[list[AgentEvent], OpenCodeState]:
    events_in = opencode_events(name)
    session = next(
        e["properties"]["info"]["id"] for e in events_in if e["type"] == "session.created"
    )
    state = OpenCodeState(session_id=session)
    out: list[AgentEvent] = []
    for event in events_in:
        out += parse_event(event, state)
    out += finish_parse(state)
    return out, state


@pytest.mark.parametrize("name", ["prompt_write_tool", "permission_asked", "specwright_write"])
def test_opencode_write_tool_stream(name: str) -> None:
    events, state = run_opencode(name)
    assert [k for k in kinds(events) if k != "step"] == [
        "tool_call",
        "tool_result",
        "usage",
        "text",
        "usage",
    ]
    call = next(e for e in events if isinstance(e, ToolCall))
    result = next(e for e in events if isinstance(e, ToolResult))
    assert call.tool == "write" and call.input["filePath"].endswith("hello.txt")
    assert result.call_id == call.call_id and not result.is_error
    assert "Wrote file" in result.output
    steps = [e.usage for e in events if isinstance(e, UsageEvent)]
    assert [(u.input_tokens, u.output_tokens, u.cache_read_tokens) for u in steps] == [
        (1200, 40, 200),
        (1300, 12, 0),
    ]  # input excludes the cached tokens
    assert state.usage.cost_usd == pytest.approx(0.00834)
    assert state.usage.model == "fake-model"
    assert state.idle and state.error is None
    assert state.last_text == "Done: I wrote hello.txt."
    assert [e.name for e in events if e.type == "step"].count("idle") == 1
    # the live progress line names the file, as it does for Claude Code's Write
    assert tool_line(call) == f"write {call.input['filePath']}"
    claude_call = next(e for e in run_claude("acceptEdits")[0] if isinstance(e, ToolCall))
    assert tool_line(claude_call) == f"Write {claude_call.input['file_path']}"


@pytest.mark.parametrize(("name", "turns"), [("specwright_write", 2), ("http400", 0)])
def test_opencode_num_turns_counts_the_sessions_steps(name: str, turns: int) -> None:
    """An OpenCode execution's num_turns is its session's steps (one model call each), as
    Claude Code's is its turns; a session that failed before any step made none."""
    _, state = run_opencode(name)
    usage = state.usage
    outcome = session_outcome(state, "idle", usage, None, url="u", timeout_s=None, policy="allow")
    assert outcome.num_turns == turns


def test_opencode_permission_ask_is_queued_for_an_answer() -> None:
    _, state = run_opencode("permission_asked")
    assert len(state.permissions) == 1
    ask = state.permissions[0]
    assert ask["id"].startswith("per_") and ask["permission"] == "edit"


def test_opencode_rejected_permission() -> None:
    events, state = run_opencode("permission_rejected")
    result = next(e for e in events if isinstance(e, ToolResult))
    assert result.is_error and "rejected" in result.output
    assert state.rejected == 1 and state.idle


@pytest.mark.parametrize("name", ["http400", "provider_error"])
def test_opencode_session_error(name: str) -> None:
    events, state = run_opencode(name)
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert [e.kind for e in errors if e.kind != "warning"] == ["api_error"]
    assert "APIError" in errors[-1].message and "HTTP" in errors[-1].message
    assert len([e for e in errors if e.kind == "warning"]) == 5  # the retries
    assert state.error is not None and state.idle
    # not a rate limit: no reset time, else run-all pauses 0 s and retries it without end
    assert state.retry_after_s is None


@pytest.mark.parametrize(("headers", "reset"), [({}, None), ({"retry-after": "30"}, 30.0)])
def test_opencode_rate_limit_reset_is_the_errors_own(
    headers: dict[str, str], reset: float | None
) -> None:
    """The recorded provider-error stream as a 429 (an exhausted quota): OpenCode retried it
    itself, then gave up; its last retry time is past, and is no reset time (run-all would retry
    at once, without end). The error's retry-after header is one."""
    events = opencode_events("provider_error")
    session = next(e["properties"]["info"]["id"] for e in events if e["type"] == "session.created")
    state = OpenCodeState(session_id=session)
    out: list[AgentEvent] = []
    for event in events:
        if event["type"] == "session.error":
            data = event["properties"]["error"]["data"]
            data["statusCode"], data["responseHeaders"] = 429, headers
        out += parse_event(event, state)
    assert [e.kind for e in out if isinstance(e, ErrorEvent) and e.kind != "warning"] == [
        "rate_limit"
    ]
    assert state.retry_after_s == reset


# Gemini's 429 for a per-minute quota (quoted in continuedev/continue #10062): it resets
GEMINI_PER_MINUTE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n"
    "* Quota exceeded for metric: generativelanguage.googleapis.com/"
    "generate_content_free_tier_requests, limit: 0, model: gemini-2.5-pro\n"
    "Please retry in 20.04466179s."
)


@pytest.mark.parametrize(
    ("status", "message", "body", "kind"),
    [
        (402, "Payment Required", None, "billing"),
        (
            429,
            "You exceeded your current quota",
            '{"error":{"code":"insufficient_quota"}}',
            "billing",
        ),
        (429, "Quota exceeded. Check your plan and billing details.", None, "billing"),
        (400, "Your credit balance is too low to access the Anthropic API.", None, "billing"),
        (429, "余额不足或无可用资源包,请充值。", '{"error":{"code":"1113"}}', "billing"),
        (429, GEMINI_PER_MINUTE, '{"error":{"status":"RESOURCE_EXHAUSTED"}}', "rate_limit"),
        (429, "Rate limit reached for requests", None, "rate_limit"),
    ],
)
def test_opencode_out_of_credit_is_billing_and_a_quota_that_resets_a_rate_limit(
    status: int, message: str, body: str | None, kind: str
) -> None:
    """A provider's account out of credit is ``billing`` (no wait helps); a per-minute quota
    worded alike ("You exceeded your current quota", Gemini's) stays a rate limit."""
    error = {"name": "APIError", "data": {"message": message, "statusCode": status}}
    error["data"]["responseBody"] = body
    assert error_kind(error) == kind


def test_opencode_abort_keeps_the_partial_text() -> None:
    events, state = run_opencode("abort")
    assert state.error is not None and state.error["name"] == "MessageAbortedError"
    assert any(e.type == "step" and e.name == "aborted" for e in events)
    assert [e for e in events if isinstance(e, TextEvent)]


def test_opencode_other_sessions_and_noise_are_ignored() -> None:
    state = OpenCodeState(session_id="ses_mine")
    foreign = {
        "type": "message.part.updated",
        "properties": {
            "sessionID": "ses_other",
            "part": {
                "id": "p",
                "messageID": "m",
                "type": "text",
                "text": "hi",
                "time": {"start": 1, "end": 2},
            },
        },
    }
    assert parse_event(foreign, state) == []
    assert parse_event({"type": "server.heartbeat", "properties": {}}, state) == []
    odd = parse_event(
        {"type": "message.part.updated", "properties": {"sessionID": "ses_mine"}}, state
    )
    assert isinstance(odd[0], ErrorEvent) and odd[0].kind == "warning"
    assert parse_event({"nonsense": True}, state)[0].type == "error"


def test_opencode_text_without_end_mark_is_flushed_at_the_end() -> None:
    state = OpenCodeState(session_id="s")
    parse_event(
        {
            "type": "message.part.updated",
            "properties": {
                "sessionID": "s",
                "part": {
                    "id": "p1",
                    "messageID": "m",
                    "type": "text",
                    "text": "",
                    "time": {"start": 1},
                },
            },
        },
        state,
    )
    parse_event(
        {
            "type": "message.part.delta",
            "properties": {
                "sessionID": "s",
                "messageID": "m",
                "partID": "p1",
                "field": "text",
                "delta": "half ",
            },
        },
        state,
    )
    parse_event(
        {
            "type": "message.part.delta",
            "properties": {
                "sessionID": "s",
                "messageID": "m",
                "partID": "p1",
                "field": "text",
                "delta": "done",
            },
        },
        state,
    )
    flushed = finish_parse(state)
    assert [e.text for e in flushed if isinstance(e, TextEvent)] == ["half done"]
    assert finish_parse(state) == []


# --- command line agents --------------------------------------------------------------------


def test_codex_json_stream() -> None:
    state = LineState(model="gpt-test")
    events: list[AgentEvent] = []
    for line in (STREAMS / "codex" / "exec-json.jsonl").read_bytes().splitlines():
        events += parse_codex_line(line, state)
    assert state.session_id == "0199a213-81c0-7800-8aa1-bbab2a035a53"
    calls = [e for e in events if isinstance(e, ToolCall)]
    results = [e for e in events if isinstance(e, ToolResult)]
    assert [c.tool for c in calls] == ["shell", "apply_patch", "shell"]
    assert [r.is_error for r in results] == [False, False, True]
    assert "README" in results[0].output
    assert state.last_text == "Created hello.txt."
    assert state.usage is not None
    assert (state.usage.input_tokens, state.usage.cache_read_tokens, state.usage.output_tokens) == (
        24763 - 24448,
        24448,
        122,
    )
    assert "error:warning" in kinds(events)  # the unknown event type


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ('unexpected status 404 Not Found: {"error":{"code":"model_not_found"}}', "unknown_model"),
        (
            "stream disconnected before completion: The model `gpt-nope` does not exist or you "
            "do not have access to it.",
            "unknown_model",
        ),
        (
            'unexpected status 400 Bad Request: {"detail":"The \'o3\' model is not supported '
            'when using Codex with a ChatGPT account."}',
            "unknown_model",
        ),
        ("unexpected status 500 Internal Server Error: oops", "api_error"),
        ("unexpected status 401 Unauthorized: Incorrect API key provided: sk-x", "auth"),
        (
            "Your access token could not be refreshed because your refresh token has expired. "
            "Please log out and sign in again.",
            "auth",
        ),
    ],
)
def test_codex_says_its_model_is_not_served(message: str, kind: str) -> None:
    """Codex's ways of saying the API does not serve the model, or refused its key or login,
    were api_errors, retried attempt after attempt."""
    state = LineState(model="gpt-nope")
    events = parse_codex_line(
        json.dumps({"type": "turn.failed", "error": {"message": message}}), state
    )
    assert kinds(events) == [f"error:{kind}"] and state.error == message


def test_plain_lines() -> None:
    state = LineState()
    events = parse_plain_line(b"hello \xff world\n", state) + parse_plain_line("   \n", state)
    assert [e.text for e in events if isinstance(e, TextEvent)] == ["hello \ufffd world"]
    assert state.last_text == "hello \ufffd world"


def test_opencode_sub_agent_sessions_are_followed() -> None:
    state = OpenCodeState(session_id="ses_main", busy=True)

    def ev(kind: str, **props: Any) -> list[AgentEvent]:
        return parse_event({"type": kind, "properties": props}, state)

    assert (
        ev("session.created", sessionID="ses_sub", info={"id": "ses_sub", "parentID": "ses_main"})[
            0
        ].type
        == "step"
    )
    assert ev("session.created", sessionID="ses_x", info={"id": "ses_x"}) == []
    part = {
        "id": "p1",
        "messageID": "m1",
        "sessionID": "ses_sub",
        "type": "tool",
        "tool": "bash",
        "callID": "call_1",
        "state": {"status": "completed", "input": {"command": "ls"}, "output": "README.md"},
    }
    assert kinds(ev("message.part.updated", sessionID="ses_sub", part=part)) == [
        "tool_call",
        "tool_result",
    ]
    ask = ev("permission.asked", id="per_1", sessionID="ses_sub", permission="bash")
    assert ask and state.permissions[0]["id"] == "per_1"  # answered like our own
    assert ev("session.idle", sessionID="ses_sub") == [] and not state.idle
    assert kinds(
        ev(
            "session.error",
            sessionID="ses_sub",
            error={"name": "UnknownError", "data": {"message": "x"}},
        )
    ) == ["error:warning"]
    assert state.error is None
    assert ev("message.part.updated", sessionID="ses_x", part={**part, "callID": "c9"}) == []
    step = {"id": "s1", "messageID": "m1", "type": "step-finish", "tokens": {"input": 5}}
    ev("message.part.updated", sessionID="ses_sub", part={**step, "sessionID": "ses_sub"})
    ev(
        "message.part.updated",
        sessionID="ses_main",
        part={**step, "id": "s2", "sessionID": "ses_main"},
    )
    assert state.turns == 1 and state.usage.input_tokens == 10  # the sub-agent's costs, not turns
    assert [e.type for e in ev("session.idle", sessionID="ses_main")] == ["step"] and state.idle
