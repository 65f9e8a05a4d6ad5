"""A `parser: codex` agent whose plan's usage limit or key's quota is used up: a rate limit with
the reset its message names, as Claude Code's and OpenCode's, not an agent error retried at once
(each attempt failing the same way)."""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from specwright.agents import Task
from specwright.agents.command import LineState, parse_codex_line
from specwright.agents.resets import reset_in_s
from specwright.model import AgentEvent, ErrorEvent
from tests.support_agents import fake_codex, stream_lines

# a Friday afternoon, local time (no daylight-saving change on the day or the next)
NOW = datetime(2026, 11, 27, 15, 0).timestamp()


@pytest.mark.parametrize(
    ("text", "wait"),
    [
        ("... purchase more credits or try again at 3:04 PM.", 240),
        ("You've hit your usage limit. Try again at 2:59 PM.", 86400 - 60),  # tomorrow's
        ("You've hit your usage limit. Try again at 12:30 AM.", 9.5 * 3600),
        (
            "You've hit your usage limit. Try again at Dec 1st, 2026 9:05 AM.",
            datetime(2026, 12, 1, 9, 5).timestamp() - NOW,
        ),
        ("You've hit your usage limit. Try again at Aug 8th, 2026 12:30 PM.", 0),  # passed
        ("... or try again in 4 days 20 hours 9 minutes.", 4 * 86400 + 20 * 3600 + 9 * 60),
        ("Try again in 2 hours.", 7200),
        ("Try again in 45 seconds.", 45),
        ("You've hit your usage limit. Try again later.", None),
        ("You've hit your usage limit. Upgrade to Plus to continue using Codex.", None),
    ],
)
def test_the_reset_a_usage_limit_message_names(text: str, wait: float | None) -> None:
    """Codex says when its limit resets as a local clock time (today, else the next such
    time), a date and time, or (older releases) a time from now."""
    assert reset_in_s(text, now=NOW) == wait


def test_a_reset_in_the_minute_under_way_is_waited_for_until_it_ends() -> None:
    """Codex cuts the reset to the minute: at 3:00:30 PM, "3:00 PM" is not tomorrow's."""
    assert reset_in_s("You've hit your usage limit. Try again at 3:00 PM.", now=NOW + 30) == 30


def test_codex_usage_limit_stream_is_a_rate_limit_with_its_reset() -> None:
    """Codex's "You've hit your usage limit. ... try again at 3:04 PM." was an api_error."""
    state = LineState(model="gpt-5-codex")
    events: list[AgentEvent] = []
    for line in stream_lines("codex/usage-limit"):
        events += parse_codex_line(line, state)
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert [e.kind for e in errors] == ["rate_limit", "rate_limit"]
    assert state.error_kind == "rate_limit" and state.error is not None
    assert state.error.endswith("try again at 3:04 PM.") and "\n" not in state.error
    assert state.retry_after_s is not None and 0 < state.retry_after_s <= 86400


@pytest.mark.parametrize(
    ("message", "retry"),
    [
        ("exceeded retry limit, last status: 429 Too Many Requests, request id: r-1", None),
        (
            'unexpected status 429 Too Many Requests: {"error":{"type":"usage_limit_reached",'
            '"message":"The usage limit has been reached"}}',
            None,
        ),
        ("You've hit your usage limit. Try again in 2 hours 5 minutes.", 7500),
    ],
)
def test_codex_usage_limit_messages_are_rate_limits(message: str, retry: float | None) -> None:
    state = LineState()
    [event] = parse_codex_line(
        json.dumps({"type": "turn.failed", "error": {"message": message}}), state
    )
    assert isinstance(event, ErrorEvent) and event.kind == "rate_limit"
    assert state.retry_after_s == retry


def test_a_codex_agent_out_of_its_usage_limit_is_not_retried_at_once(
    git_repo: Path, store: Any
) -> None:
    """`codex exec --json` out of its plan's usage limit, reset in days: the chunk run retried
    it as an agent error, at once, each attempt failing alike; it is now a rate limit whose
    reset is past the loop's allowance, so the run ends rate_limited after one execution."""
    from specwright.loop import run_chunk
    from tests.support_loop import make_chunk, make_config

    ex = fake_codex("usage-limit-in", "gpt-5-codex")
    outcome = ex.execute(Task("hi", git_repo), lambda e: None, threading.Event())
    assert (outcome.status, outcome.exit_reason) == ("error", "rate_limit")
    reset = 5 * 86400 + 22 * 3600 + 11 * 60
    assert outcome.retry_after_s == reset
    chunk = make_chunk(store, git_repo)
    result = run_chunk(store, make_config(), git_repo, chunk, executor=ex)
    assert result.status == "failed" and result.iterations == 1, result.reason
    assert result.reason.startswith("rate_limited: You've hit your usage limit.")
    # the reset as people read it (not "reset in 511860s exceeds the 900s allowance"), after
    # the agent's sentence without its full stop (not "minutes.; reset")
    said = re.search(
        r"try again in 5 days 22 hours 11 minutes; resets in 5 d 22 h, "
        r"at (\d{4}-\d\d-\d\d \d\d:\d\d) local, beyond the 15 min allowance$",
        result.reason,
    )
    assert said, result.reason
    assert ".;" not in result.reason and "\n" not in result.reason
    assert result.resets_at is not None  # naive UTC; the line says it on the local clock
    local = result.resets_at.replace(tzinfo=UTC).astimezone().strftime("%Y-%m-%d %H:%M")
    assert said[1] == local
    [execution] = store.query_dicts(
        "SELECT status, exit_reason FROM executions WHERE run_id = ?", [result.run_id]
    )
    assert execution["status"] == "error" and execution["exit_reason"].startswith("rate_limit")


@pytest.mark.parametrize(
    "message",
    [
        "Quota exceeded. Check your plan and billing details.",
        "To use Codex with your ChatGPT plan, upgrade to Plus: https://chatgpt.com/explore/plus.",
        "Your workspace is out of credits. Add credits to continue.",
        "Your workspace is out of credits. Ask your workspace owner to refill in order to continue.",
        "You hit your spend cap set in your workspace. Increase your spend cap to continue.",
        "You hit your spend cap set by the owner of your workspace. Ask an owner to increase your "
        "spend cap to continue.",
    ],
)
def test_codex_out_of_credit_messages_are_billing_not_rate_limits(message: str) -> None:
    """Codex's messages (codex-rs error.rs) for a quota or credits used up, a spend cap, a plan
    without Codex: none resets, so no wait helps; a "Quota exceeded" was a rate limit waited on
    60 s at a time, the others agent errors retried at once."""
    state = LineState()
    [event] = parse_codex_line(
        json.dumps({"type": "turn.failed", "error": {"message": message}}), state
    )
    assert isinstance(event, ErrorEvent) and event.kind == "billing"
    assert state.error_kind == "billing" and state.retry_after_s is None


@pytest.mark.parametrize(
    ("stream", "said"),
    [
        ("quota-exceeded", "Quota exceeded. Check your plan and billing details."),
        ("usage-not-included", "To use Codex with your ChatGPT plan, upgrade to Plus: "),
    ],
)
def test_a_codex_agent_out_of_credit_stops_the_chunk_run_at_once(
    git_repo: Path, store: Any, stream: str, said: str
) -> None:
    """`codex exec --json` whose key's quota is used up, or whose ChatGPT plan lacks Codex: the
    chunk run paused 60 s at a time for a limit that never resets (quota), or retried it as an
    agent error (plan); it now ends after one execution as billing, saying what to do."""
    from specwright.loop import run_chunk
    from tests.support_loop import make_chunk, make_config

    ex = fake_codex(stream, "gpt-5-codex")
    chunk = make_chunk(store, git_repo)
    progress: list[Any] = []
    result = run_chunk(
        store, make_config(), git_repo, chunk, executor=ex, on_progress=progress.append
    )
    assert result.status == "failed" and result.iterations == 1, result.reason
    assert result.reason.startswith(
        "billing: executor 'codex' (command) is out of credit or its plan does not include this "
        f"use: {said}"
    )
    assert result.reason.endswith(
        "not retried: add credits or change plan, then run the chunk again"
    )
    assert "\n" not in result.reason
    assert not [p for p in progress if p.kind == "pause"]  # no wait for a reset that never comes
    [execution] = store.query_dicts(
        "SELECT status, exit_reason FROM executions WHERE run_id = ?", [result.run_id]
    )
    assert execution["status"] == "error" and execution["exit_reason"].startswith("billing")
    assert store.query_dicts("SELECT status, reason FROM runs") == [
        {"status": "failed", "reason": result.reason}
    ]


def test_a_codex_agent_whose_account_is_deactivated_stops_the_chunk_run_at_once(
    git_repo: Path, store: Any
) -> None:
    """`codex exec --json` refused with a 401 whose body says the OpenAI account was deactivated:
    it read as a refused key ("fix its key"), though no key or login mends it. It is now the
    account's state: one execution, a line saying its owner must put it right, run-all stops."""
    from specwright.loop import run_chunk
    from specwright.loop.lines import STOPS_RUN_ALL
    from tests.support_loop import make_chunk, make_config

    ex = fake_codex("account-deactivated", "gpt-5-codex")
    result = run_chunk(store, make_config(), git_repo, make_chunk(store, git_repo), executor=ex)
    assert result.status == "failed" and result.iterations == 1, result.reason
    assert result.reason.startswith(
        "account: executor 'codex' (command) cannot use its account: unexpected status 401"
    )
    assert "Your OpenAI account has been deactivated" in result.reason
    assert "the account's owner must put it right" in result.reason
    assert result.reason.startswith(STOPS_RUN_ALL)
