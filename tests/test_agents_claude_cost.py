"""The computed cost of a REAL Claude Code execution against the fake model server, to the cent:
each API request at its own rates, checked against Anthropic's list prices written out here
(Sonnet 4.5, USD per million tokens), not against the code's own price lookup.

Skipped (with the reason) when the npm package is not installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from specwright.agents import Task, run_execution
from specwright.agents.claude_code import ClaudeCodeExecutor
from specwright.recorder import ExecutionRecorder
from specwright.testing import FakeModelServer, anthropic_text
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


def run_claude(git_repo: Path, store: Any, *turns: Any) -> dict[str, Any]:
    """Run the real claude on scripted turns; the stored execution row."""
    ex = ClaudeCodeExecutor(executor_config(max_turns=8))
    with FakeModelServer() as srv:
        srv.script(*turns)
        rec = ExecutionRecorder(store, role="executor", backend="claude-code", executor="agent")
        env = {
            "ANTHROPIC_BASE_URL": srv.base_url,
            "ANTHROPIC_API_KEY": "sk-ant-fake-key-for-tests",
            "CLAUDE_CODE_MAX_RETRIES": "0",
        }
        outcome = run_execution(ex, Task("Write the files", git_repo, env=env), rec)
    assert outcome.status == "ok", outcome
    return stored_execution(store, rec.id)


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
    assert row["cache_write_tokens"] == 10_000
    assert row["computed_cost_usd"] == pytest.approx(expected, abs=1e-9)
    # Claude Code's own price says the same
    assert row["reported_cost_usd"] == pytest.approx(expected, abs=1e-9)
