"""What a planner or reviewer call costs when an attempt is cut short, stalls or is refused: every
billed token counted, and a cost only partly known marked as a lower bound (``incomplete``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from specwright.config import PlannerConfig
from specwright.llm import LLMClient, LLMConnectionError, LLMTimeoutError
from specwright.store import Store
from specwright.testing import (
    FakeModelServer,
    anthropic_error,
    anthropic_text,
    anthropic_tool_use,
)
from tests.support_loop import make_repo

MODEL = "claude-sonnet-4-6"  # $3 in / $15 out per million tokens
ONE = 1000 * 3e-6 + 500 * 15e-6  # one whole answer of 1000 input and 500 output tokens
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"questions": {"type": "array", "items": {"type": "string"}}},
    "required": ["questions"],
}
GOOD = {"questions": ["Which database?", "Who are the users?", "How many of them?"]}


@pytest.fixture
def srv(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeModelServer]:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    with FakeModelServer() as server:
        yield server


def client_for(srv: FakeModelServer, store: Store, **kw: Any) -> LLMClient:
    planner = PlannerConfig(
        name="claude",
        model=MODEL,
        base_url=srv.base_url,
        max_retries=kw.pop("max_retries", 2),
        timeout_s=kw.pop("timeout_s", 10.0),
    )
    return LLMClient(planner, store, backoff_s=0.01)


def answer(**kw: Any) -> Any:
    return anthropic_tool_use("ask_questions", GOOD, input_tokens=1000, output_tokens=500, **kw)


def ask(client: LLMClient, **kw: Any) -> tuple[dict[str, Any], Any]:
    return client.structured(
        "You are the planner.", "Plan it.", "ask_questions", SCHEMA, role="planner", **kw
    )


def row(store: Store, client: LLMClient) -> dict[str, Any]:
    (out,) = store.query_dicts(
        "SELECT status, exit_reason, input_tokens, output_tokens, cost_usd, computed_cost_usd, "
        "cost_source FROM executions WHERE id = ?",
        [client.last_execution_id],
    )
    return out


def test_a_stream_cut_mid_answer_then_retried_counts_the_cut_attempts_tokens(
    srv: FakeModelServer, store: Store
) -> None:
    # 4 events: message_start (1000 input, 1 output so far), ping, the tool call's start and a
    # first piece of its input; then the connection drops
    srv.script(answer(drop_after=4), answer())
    client = client_for(srv, store)
    data, usage = ask(client, stream=True)
    assert data == GOOD
    assert (usage.input_tokens, usage.output_tokens) == (2000, 501)
    r = row(store, client)
    assert r["status"] == "ok"
    assert (r["input_tokens"], r["output_tokens"]) == (2000, 501)
    # the cut attempt's output is a lower bound: the cost is too, never shown as the whole
    assert (r["cost_usd"], r["cost_source"]) == (None, "incomplete")
    assert r["computed_cost_usd"] == pytest.approx(ONE + 1000 * 3e-6 + 1 * 15e-6)


def test_a_stream_cut_after_its_last_usage_is_counted_whole_and_priced(
    srv: FakeModelServer, store: Store
) -> None:
    # everything but message_stop arrived: message_delta told the attempt's final output tokens
    pieces = -(-len(json.dumps(GOOD)) // 24)  # the tool input's deltas, 24 characters each
    # message_start, ping, content_block_start, the deltas, content_block_stop, message_delta
    srv.script(answer(drop_after=3 + pieces + 2), answer())
    client = client_for(srv, store)
    ask(client, stream=True)
    r = row(store, client)
    assert (r["input_tokens"], r["output_tokens"]) == (2000, 1000)
    assert r["cost_source"] == "computed"
    assert r["cost_usd"] == pytest.approx(2 * ONE)


def test_a_stream_that_stalls_mid_answer_is_retried_as_a_timeout_and_counted(
    srv: FakeModelServer, store: Store
) -> None:
    # the first attempt's events come slower than the read timeout, after message_start
    srv.script(answer(chunk_delay_s=1.5), answer())
    client = client_for(srv, store, timeout_s=0.5)
    assert ask(client, stream=True)[0] == GOOD
    r = row(store, client)
    assert r["status"] == "ok"
    assert (r["input_tokens"], r["output_tokens"]) == (2000, 501)
    assert r["cost_source"] == "incomplete"


def test_a_stream_that_stalls_on_every_attempt_is_a_timeout_with_a_lower_bound(
    srv: FakeModelServer, store: Store
) -> None:
    srv.script(answer(chunk_delay_s=1.5), answer(chunk_delay_s=1.5))
    client = client_for(srv, store, timeout_s=0.5, max_retries=1)
    with pytest.raises(LLMTimeoutError, match=r"no answer within 0\.5s after 2 attempt"):
        ask(client, stream=True)
    r = row(store, client)
    assert r["status"] == "error" and r["exit_reason"].startswith("timeout:")
    assert (r["input_tokens"], r["output_tokens"]) == (2000, 2)
    assert (r["cost_usd"], r["cost_source"]) == (None, "incomplete")
    assert r["computed_cost_usd"] == pytest.approx(2 * (1000 * 3e-6 + 15e-6))


def test_streams_cut_on_every_attempt_record_what_they_told(
    srv: FakeModelServer, store: Store
) -> None:
    srv.script(answer(drop_after=4), answer(drop_after=3))
    client = client_for(srv, store, max_retries=1)
    with pytest.raises(LLMConnectionError, match="after 2 attempt"):
        ask(client, stream=True)
    r = row(store, client)
    assert r["exit_reason"].startswith("connection_failed:")
    assert (r["input_tokens"], r["output_tokens"]) == (2000, 2)
    assert (r["cost_usd"], r["cost_source"]) == (None, "incomplete")


def test_a_request_that_timed_out_then_answered_makes_the_cost_a_lower_bound(
    srv: FakeModelServer, store: Store
) -> None:
    # the first request may have been answered, and billed, after the client gave up on it
    srv.script(answer(delay_s=1.5), answer())
    client = client_for(srv, store, timeout_s=0.5)
    assert ask(client)[0] == GOOD
    r = row(store, client)
    assert r["status"] == "ok"
    assert (r["input_tokens"], r["output_tokens"]) == (1000, 500)
    assert (r["cost_usd"], r["cost_source"]) == (None, "incomplete")
    assert r["computed_cost_usd"] == pytest.approx(ONE)


@pytest.mark.parametrize("status", [429, 529])
def test_a_refused_attempt_is_not_billed_and_the_cost_stays_whole(
    srv: FakeModelServer, store: Store, status: int
) -> None:
    srv.script(anthropic_error(status), answer())
    client = client_for(srv, store)
    ask(client, stream=True)
    r = row(store, client)
    assert (r["input_tokens"], r["output_tokens"]) == (1000, 500)
    assert r["cost_source"] == "computed"
    assert r["cost_usd"] == pytest.approx(ONE)


def test_ctrl_c_mid_stream_keeps_the_tokens_told_so_far(srv: FakeModelServer, store: Store) -> None:
    srv.script(anthropic_text("a long answer " * 20, input_tokens=1000, output_tokens=500))
    client = client_for(srv, store)

    def interrupt(_text: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        client.text("You are the reviewer.", "Review it.", role="reviewer", stream=True,
                    on_text=interrupt)  # fmt: skip
    r = row(store, client)
    assert (r["status"], r["exit_reason"]) == ("cancelled", "interrupted")
    assert (r["input_tokens"], r["output_tokens"]) == (1000, 1)
    assert (r["cost_usd"], r["cost_source"]) == (None, "incomplete")
    assert r["computed_cost_usd"] == pytest.approx(1000 * 3e-6 + 15e-6)


def test_a_plain_text_answer_counts_its_cut_attempt(srv: FakeModelServer, store: Store) -> None:
    srv.script(
        anthropic_text("partial answer " * 10, input_tokens=1000, output_tokens=500, drop_after=4),
        anthropic_text("whole answer", input_tokens=1000, output_tokens=500),
    )
    client = client_for(srv, store)
    text, usage = client.text("You are the reviewer.", "Review it.", role="reviewer", stream=True)
    assert text == "whole answer"
    assert usage.input_tokens == 2000
    r = row(store, client)
    assert (r["input_tokens"], r["output_tokens"], r["cost_source"]) == (2000, 501, "incomplete")


def test_a_spec_budget_counts_what_a_cut_planner_call_spent(
    srv: FakeModelServer, store: Store, tmp_path: Path
) -> None:
    """A spec whose planning already cost more than its budget runs no attempt: the planner
    call's cost is a lower bound (incomplete), not nothing."""
    from specwright.loop import run_chunk
    from tests.support_loop import make_chunk, make_config, make_repo, scripted

    repo = make_repo(tmp_path / "repo")
    chunk = make_chunk(store, repo, spec_budget=0.01)
    srv.script(answer(drop_after=4), answer())
    client = client_for(srv, store)
    ask(client, stream=True, spec_id=chunk.spec_id)  # about $0.0135, at least
    assert row(store, client)["cost_source"] == "incomplete"
    result = run_chunk(store, make_config(verify=[]), repo, chunk, executor=scripted([]))
    assert result.status == "failed" and result.iterations == 0, result.reason
    assert result.reason.startswith("budget") and "spent $0.0135" in result.reason


def test_a_planner_model_without_a_price_is_said_once_in_one_line(
    srv: FakeModelServer, tmp_path: Path
) -> None:
    """Not a Python warning with the source line that raised it, then the same again."""
    import subprocess
    import sys

    from tests.test_studio import q_turn

    project = make_repo(tmp_path / "repo")
    (project / ".handoff").mkdir()
    (project / ".handoff" / "config.yaml").write_text(
        "tools:\n  planners:\n    claude:\n      type: anthropic\n"
        f"      model: my-private-model\n      base_url: {srv.base_url}\n      timeout_s: 5\n"
    )
    srv.script(q_turn())
    out = subprocess.run(
        [sys.executable, "-m", "specwright.cli", "plan", "--intent", "Add login"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    said = [line for line in out.stderr.splitlines() if "no price known" in line]
    assert said == [
        "specwright: warning: no price known for 'my-private-model': cost recorded as NULL; "
        "add it under `prices:` in .handoff/config.yaml (USD per million tokens)"
    ], out.stderr
    assert "Warning:" not in out.stderr and "compute_cost" not in out.stderr
