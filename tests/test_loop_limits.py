"""Whose plan limits decide a rate-limited command agent's wait, when it names no reset: codexbar's
windows of its own provider only (Codex for ``parser: codex``), never another provider's."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from specwright.agents.command import CommandExecutor, LineState
from specwright.model import AgentEvent, ErrorEvent
from specwright.store import Store
from tests.support_agents import executor_config
from tests.support_usage import write_fake_codexbar


def parse_quota_line(line: bytes | str, state: LineState) -> list[AgentEvent]:
    """A user's parser (``parser: module:function``) for an agent of no known provider: a line
    saying "quota" is a rate limit with no reset time."""
    text = (line.decode() if isinstance(line, bytes) else line).strip()
    if "quota" not in text:
        return []
    state.error, state.error_kind = text, "rate_limit"
    return [ErrorEvent(text, kind="rate_limit")]


def _window(provider: str, hours: int) -> dict[str, Any]:
    at = (datetime.now(UTC) + timedelta(hours=hours)).isoformat()
    return {"provider": provider, "usage": {"primary": {"usedPercent": 100.0, "resetsAt": at}}}


def _agent(tmp_path: Path, parser: str, line: str) -> CommandExecutor:
    """A real command agent printing ``line`` and exiting 1."""
    out = tmp_path / "out.jsonl"
    out.write_text(line + "\n")
    argv = ("sh", "-c", 'cat "$0"; exit 1', str(out), "{prompt}")
    return CommandExecutor(executor_config(name="agent", type="command", parser=parser, argv=argv))


@pytest.mark.parametrize(
    ("parser", "line", "waited"),
    [
        # Codex gave up on its 429s: Codex's exhausted window (2 h), not Claude's (5 h)
        (
            "codex",
            json.dumps(
                {
                    "type": "turn.failed",
                    "error": {
                        "message": "exceeded retry limit, last status: 429 Too Many Requests"
                    },
                }
            ),
            r"resets in (1 h 59 min|2 h), at ",
        ),
        # of no known provider: no other's window decides; the default wait of 60 s
        ("tests.test_loop_limits:parse_quota_line", "quota used up", r"resets in 1 min, at "),
    ],
)
def test_a_command_agent_is_judged_by_its_own_providers_limits_only(
    git_repo: Path,
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    parser: str,
    line: str,
    waited: str,
) -> None:
    """The loop asked codexbar with backend `command`, which no provider has: every provider's
    exhausted windows counted, so a Codex agent (or any other) waited for Claude's reset."""
    import re

    from specwright.loop import run_chunk
    from tests.support_loop import make_chunk, make_config

    fake = write_fake_codexbar(
        tmp_path / "codexbar", usage=[_window("claude", 5), _window("codex", 2)]
    )
    monkeypatch.setenv("CODEXBAR_PATH", str(fake))
    chunk = make_chunk(store, git_repo)
    agent = _agent(tmp_path, parser, line)
    result = run_chunk(
        store, make_config(), git_repo, chunk, executor=agent, max_rate_limit_wait_s=1
    )
    assert result.status == "failed" and result.reason.startswith("rate_limited: "), result.reason
    assert re.search(waited, result.reason), result.reason
