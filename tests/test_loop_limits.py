"""Whose plan limits decide a rate-limited agent's wait, when it names no reset: codexbar's
windows of its own provider only (Codex for ``parser: codex``, an OpenCode model's provider's),
never another provider's."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from specwright.agents.command import CommandExecutor, LineState
from specwright.agents.opencode import OpenCodeExecutor
from specwright.loop.limits import provider_of
from specwright.model import AgentEvent, ErrorEvent
from specwright.store import Store
from specwright.testing import FakeModelServer, openai_error
from tests.support_agents import executor_config, opencode_serving, requires_opencode
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


@pytest.mark.parametrize(
    ("provider", "model", "codexbar"),
    [
        (None, "anthropic/claude-sonnet-4-5", "claude"),
        (None, "openai/gpt-5", "codex"),
        (None, "zai-coding-plan/glm-4.7", "zai"),
        (None, "zhipuai/glm-4.7", "zai"),
        ("zai", "glm-4.7", "zai"),
        ("openrouter", "anthropic/claude-sonnet-4-5", "openrouter"),  # OpenRouter's credits
        (None, "fake/fake-model", None),  # a provider codexbar does not track
        (None, "glm-4.7", None),  # no provider: the server's default, unknown here
        (None, None, None),
    ],
)
def test_an_opencode_agents_provider_is_its_models(
    provider: str | None, model: str | None, codexbar: str | None
) -> None:
    """The codexbar provider of an OpenCode executor is its model's provider's, read as the
    adapter sends them (``provider``, else ``model``'s part before "/")."""
    config = executor_config(type="opencode", provider=provider, model=model)
    assert provider_of(OpenCodeExecutor(config)) == codexbar


@requires_opencode
@pytest.mark.agents
def test_a_rate_limited_opencode_agent_waits_for_its_providers_reset(
    git_repo: Path, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenCode on z.ai's coding plan gave up on its 429s (no reset named): the loop asked
    codexbar for no provider, as OpenCode's model may be any provider's, and waited the default
    60 s however long z.ai's exhausted window had left. It now waits for z.ai's window (2 h;
    Claude's 5 h is another account's)."""
    import re

    from specwright.loop import run_chunk
    from tests.support_loop import make_chunk, make_config

    fake = write_fake_codexbar(
        tmp_path / "codexbar", usage=[_window("claude", 5), _window("zai", 2)]
    )
    monkeypatch.setenv("CODEXBAR_PATH", str(fake))
    config = {
        "$schema": "https://opencode.ai/config.json",
        "enabled_providers": ["zai-coding-plan"],
        "autoupdate": False,
        "share": "disabled",
        "permission": {"edit": "allow", "bash": "allow", "webfetch": "deny"},
    }
    with FakeModelServer() as model:
        # OpenCode's first try and five quick retries; the last 429 names no reset
        model.script(*[openai_error(429) for _ in range(5)], openai_error(429, retry_after_ms=None))
        config["provider"] = {
            "zai-coding-plan": {
                "npm": "@ai-sdk/openai-compatible",
                "options": {"baseURL": model.openai_base_url, "apiKey": "sk-fake-test"},
                "models": {"glm-4.7": {"name": "GLM by the fake"}},
            }
        }
        with opencode_serving(config, tmp_path, monkeypatch, {}):
            ex = OpenCodeExecutor(
                executor_config(
                    name="glm", type="opencode", model="zai-coding-plan/glm-4.7", timeout_s=60.0
                )
            )
            result = run_chunk(
                store,
                make_config(),
                git_repo,
                make_chunk(store, git_repo),
                executor=ex,
                max_rate_limit_wait_s=1,
            )
    assert result.status == "failed" and result.reason.startswith("rate_limited: "), result.reason
    assert re.search(r"resets in (1 h 59 min|2 h), at ", result.reason), result.reason
