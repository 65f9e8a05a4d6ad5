"""The computed cost of a REAL Claude Code execution against the fake model server, to the cent:
each API request at its own rates, checked against Anthropic's list prices written out here
(Sonnet 4.5, USD per million tokens), not against the code's own price lookup.

Skipped (with the reason) when the npm package is not installed.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from specwright.agents import Task, run_execution
from specwright.agents.claude_code import ClaudeCodeExecutor
from specwright.recorder import ExecutionRecorder
from specwright.testing import FakeModelServer, anthropic_text, anthropic_tool_use
from tests.support_agents import CLAUDE_BIN, executor_config, requires_claude, stored_execution

pytestmark = [requires_claude, pytest.mark.agents]

# claude-sonnet-4-5: a request whose prompt (input + cache read + cache write) is over 200k
# tokens is billed, all of it (its output too), at the long-context rates
BASE = {"in": 3.0, "out": 15.0, "cw5m": 3.75, "cw1h": 6.0, "cr": 0.30}
LONG = {"in": 6.0, "out": 22.50, "cw5m": 7.50, "cw1h": 12.0, "cr": 0.60}


def request_cost(i: int, o: int, cr: int = 0, cw5m: int = 0, cw1h: int = 0) -> float:
    """One API request's list price, by hand."""
    r = LONG if i + cr + cw5m + cw1h > 200_000 else BASE
    return (i * r["in"] + o * r["out"] + cr * r["cr"] + cw5m * r["cw5m"] + cw1h * r["cw1h"]) / 1e6


@pytest.fixture(autouse=True)
def _claude_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDE_PATH", CLAUDE_BIN)


def run_claude(git_repo: Path, store: Any, *turns: Any, **options: Any) -> dict[str, Any]:
    """Run the real claude on scripted turns; the stored execution row."""
    outcome, row = _execute(git_repo, store, turns, options)
    assert outcome.status == "ok", outcome
    return row


def _execute(
    git_repo: Path,
    store: Any,
    turns: Any,
    options: dict[str, Any] | None = None,
    timeout_s: float | None = None,
) -> tuple[Any, dict[str, Any]]:
    """The real claude on scripted ``turns`` (stopped after ``timeout_s``, a turn still under
    way); its outcome and stored execution row."""
    ex = ClaudeCodeExecutor(executor_config(max_turns=8, options=options or {}))
    with FakeModelServer() as srv:
        srv.script(*turns)
        rec = ExecutionRecorder(store, role="executor", backend="claude-code", executor="agent")
        env = {
            "ANTHROPIC_BASE_URL": srv.base_url,
            "ANTHROPIC_API_KEY": "sk-ant-fake-key-for-tests",
            "CLAUDE_CODE_MAX_RETRIES": "0",
        }
        task = Task("Write the files", git_repo, env=env, timeout_s=timeout_s)
        outcome = run_execution(ex, task, rec)
        if timeout_s is not None:
            srv.stop()  # a turn answering too late is still waiting
    return outcome, stored_execution(store, rec.id)


def test_real_claude_one_hour_cache_writes_cost_their_own_rate(git_repo: Path, store: Any) -> None:
    row = run_claude(
        git_repo,
        store,
        anthropic_text(
            "Done.",
            input_tokens=4000,
            output_tokens=300,
            cache_read_input_tokens=2000,
            cache_creation_input_tokens=10_000,
            cache_creation_1h_tokens=8000,
        ),
    )
    expected = request_cost(4000, 300, cr=2000, cw5m=2000, cw1h=8000)
    assert (row["cache_write_tokens"], row["cache_write_1h_tokens"]) == (10_000, 8000)
    assert row["computed_cost_usd"] == pytest.approx(expected, abs=1e-9)
    # Claude Code's own price says the same
    assert row["reported_cost_usd"] == pytest.approx(expected, abs=1e-9)


def three_requests(git_repo: Path) -> tuple[Any, ...]:
    """A long-context request (250k input) between two short ones, each with its own output."""
    a, b = (str(git_repo.resolve() / n) for n in ("a.txt", "b.txt"))
    return (
        anthropic_tool_use(
            "Write", {"file_path": a, "content": "a\n"}, input_tokens=20_000, output_tokens=700
        ),
        anthropic_tool_use(
            "Write",
            {"file_path": b, "content": "b\n"},
            input_tokens=190_000,
            cache_read_input_tokens=50_000,
            cache_creation_input_tokens=10_000,
            cache_creation_1h_tokens=4000,
            output_tokens=2000,
            expect_tool_result=True,
        ),
        anthropic_text("Done.", input_tokens=90_000, output_tokens=300, expect_tool_result=True),
    )


def test_real_claude_long_context_rate_applies_per_request_not_to_the_sum(
    git_repo: Path, store: Any
) -> None:
    row = run_claude(git_repo, store, *three_requests(git_repo))
    expected = (
        request_cost(20_000, 700)
        + request_cost(190_000, 2000, cr=50_000, cw5m=6000, cw1h=4000)
        + request_cost(90_000, 300)
    )
    # the stored totals are the result line's
    assert (row["input_tokens"], row["output_tokens"]) == (300_000, 3000)
    assert (row["cache_read_tokens"], row["cache_write_tokens"]) == (50_000, 10_000)
    assert row["computed_cost_usd"] == pytest.approx(expected, abs=1e-9)
    # (Claude Code 2.1.332's own total_cost_usd prices every request at the base rates)


def test_real_claude_short_requests_adding_up_past_200k_stay_at_the_base_rate(
    git_repo: Path, store: Any
) -> None:
    path = str(git_repo.resolve() / "a.txt")
    row = run_claude(
        git_repo,
        store,
        anthropic_tool_use(
            "Write", {"file_path": path, "content": "a\n"}, input_tokens=90_000, output_tokens=200
        ),
        anthropic_text(
            "Done.", input_tokens=91_000, output_tokens=100, cache_read_input_tokens=30_000
        ),
    )
    expected = request_cost(90_000, 200) + request_cost(91_000, 100, cr=30_000)
    assert row["input_tokens"] + row["cache_read_tokens"] == 211_000
    assert row["computed_cost_usd"] == pytest.approx(expected, abs=1e-9)
    assert row["reported_cost_usd"] == pytest.approx(expected, abs=1e-9)


def test_real_claude_without_a_transcript_spreads_the_output_over_the_requests(
    git_repo: Path, store: Any
) -> None:
    # no transcript: the stream gives each request's input side, the result the output total
    turns = three_requests(git_repo)
    row = run_claude(git_repo, store, *turns, extra_args=["--no-session-persistence"])
    assert row["output_tokens"] == 3000
    # 3000 output tokens, 1000 a request: only the long request's share is at the long rate
    expected = (
        request_cost(20_000, 1000)
        + request_cost(190_000, 1000, cr=50_000, cw5m=6000, cw1h=4000)
        + request_cost(90_000, 1000)
    )
    assert row["computed_cost_usd"] == pytest.approx(expected, abs=1e-9)


def test_real_claude_background_sub_agent_is_in_the_totals_and_the_cost(
    git_repo: Path, store: Any
) -> None:
    # Claude Code 2.1.332 runs an Agent in the background: the main thread's turn ends (a
    # result line), the sub-agent answers, its notification starts another turn (a second
    # result line, whose `usage` is that turn's alone). Every request is in the totals.
    answers: list[tuple[int, int]] = []

    def answer(_request: Any) -> Any:
        n = len(answers) + 1
        answers.append((1000 * n, 10 * n))
        return anthropic_text(f"Answer {n}.", input_tokens=1000 * n, output_tokens=10 * n)

    spawn = {"description": "look", "prompt": "Look around", "subagent_type": "general-purpose"}
    row = run_claude(
        git_repo,
        store,
        anthropic_tool_use("Agent", spawn, input_tokens=150_000, output_tokens=500),
        answer,
        answer,
        answer,
    )
    calls = [(150_000, 500), *answers]
    assert (row["input_tokens"], row["output_tokens"]) == (
        sum(i for i, _ in calls),
        sum(o for _, o in calls),
    )
    expected = sum(request_cost(i, o) for i, o in calls)
    assert row["reported_cost_usd"] == pytest.approx(expected, abs=1e-9)
    assert row["computed_cost_usd"] == pytest.approx(expected, abs=1e-9)
    assert row["num_turns"] == 3  # the sub-agent's own request is not a main-thread turn


def test_real_claude_killed_mid_run_keeps_its_finished_replies_output(
    git_repo: Path, store: Any
) -> None:
    # the first reply finishes (its tool runs), the second never comes: no result line. The
    # first reply's output is the transcript's 700, not the stream snapshot's 1.
    path = str(git_repo.resolve() / "a.txt")
    write = anthropic_tool_use(
        "Write", {"file_path": path, "content": "a\n"}, input_tokens=20_000, output_tokens=700
    )
    late = anthropic_text("too late", delay_s=60)
    outcome, row = _execute(git_repo, store, (write, late), timeout_s=4)
    assert (outcome.status, outcome.exit_reason) == ("killed", "timeout")
    assert (row["input_tokens"], row["output_tokens"]) == (20_000, 700)
    assert row["computed_cost_usd"] == pytest.approx(request_cost(20_000, 700), abs=1e-9)
    # the second request was under way: that is a lower bound, the cost itself is unknown
    assert (row["cost_usd"], row["cost_source"]) == (None, "incomplete")


def test_real_claude_killed_before_any_reply_costs_unknown_not_0(
    git_repo: Path, store: Any
) -> None:
    """Killed while its first request is under way: nothing to recover, 0 tokens. The cost
    is unknown (NULL, incomplete), not a computed $0.00."""
    late = anthropic_text("too late", delay_s=60)
    outcome, row = _execute(git_repo, store, (late,), timeout_s=4)
    assert (outcome.status, outcome.exit_reason) == ("killed", "timeout")
    assert (row["input_tokens"], row["output_tokens"]) == (0, 0)
    assert (row["cost_usd"], row["cost_source"]) == (None, "incomplete")
    assert row["computed_cost_usd"] is None


def test_real_claude_reply_served_in_fast_mode_costs_the_fast_price(
    git_repo: Path, store: Any
) -> None:
    turn = anthropic_text("Done.", input_tokens=10_000, output_tokens=300)
    turn = replace(turn, usage={**turn.usage, "speed": "fast"})  # as the API answers it
    ex = ClaudeCodeExecutor(executor_config(model="claude-opus-4-8"))
    with FakeModelServer() as srv:
        srv.script(turn)
        rec = ExecutionRecorder(store, role="executor", backend="claude-code", executor="agent")
        env = {"ANTHROPIC_BASE_URL": srv.base_url, "ANTHROPIC_API_KEY": "sk-ant-fake-key"}
        assert run_execution(ex, Task("Say done", git_repo, env=env), rec).status == "ok"
    row = stored_execution(store, rec.id)
    # Opus 4.8 in fast mode: $10 in / $50 out per MTok (twice the standard $5 / $25)
    expected = (10_000 * 10 + 300 * 50) / 1e6
    assert row["computed_cost_usd"] == pytest.approx(expected, abs=1e-9)
    assert row["reported_cost_usd"] == pytest.approx(expected, abs=1e-9)
