"""The REAL Claude Code CLI against the fake model server: a tool call that writes a file in a
temp git repo, recorded in the store; API errors; a big prompt; cancel mid-run.

Skipped (with the reason) when the npm package is not installed. Set
``SPECWRIGHT_RECORD_STREAMS=1`` to refresh tests/fixtures/streams/claude-code/specwright_write.jsonl.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from specwright.agents import Task, run_execution
from specwright.agents.claude_code import ClaudeCodeExecutor, ClaudeStreamState, parse_line
from specwright.loop import run_chunk
from specwright.model import AgentEvent, StepEvent
from specwright.recorder import ExecutionRecorder
from specwright.testing import FakeModelServer, anthropic_error, anthropic_text, anthropic_tool_use
from tests.support_agents import (
    CLAUDE_BIN,
    CREDIT_TOO_LOW,
    STREAMS,
    alive,
    executor_config,
    group_members,
    requires_claude,
    stored_events,
    stored_execution,
)
from tests.support_loop import (
    failed_as_auth,
    make_chunk,
    make_config,
    make_repo,
)

pytestmark = [requires_claude, pytest.mark.agents]
RECORD = os.environ.get("SPECWRIGHT_RECORD_STREAMS") == "1"  # read before `isolate` scrubs it


@pytest.fixture(autouse=True)
def _claude_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDE_PATH", CLAUDE_BIN)


def fake_env(srv: FakeModelServer) -> dict[str, str]:
    return {
        "ANTHROPIC_BASE_URL": srv.base_url,
        "ANTHROPIC_API_KEY": "sk-ant-fake-key-for-tests",
        "CLAUDE_CODE_MAX_RETRIES": "0",
    }


def test_real_claude_writes_a_file_and_everything_is_recorded(
    git_repo: Path, store: Any, tmp_path: Path
) -> None:
    target = git_repo.resolve() / "hello.txt"
    log = tmp_path / "stream.jsonl"
    ex = ClaudeCodeExecutor(executor_config(max_turns=5, options={"stream_log": str(log)}))
    with FakeModelServer() as srv:
        srv.script(
            anthropic_tool_use(
                "Write",
                {"file_path": str(target), "content": "hello from the fake model\n"},
                text="I will write the file now.",
                input_tokens=1200,
                output_tokens=40,
                cache_read_input_tokens=200,
                cache_creation_input_tokens=100,
                expect_system="PROJECT-RULES-MARKER",
                expect_text="Create hello.txt",
                expect_tools=("Write",),
                expect_model="claude-sonnet-4-5",
            ),
            anthropic_text(  # an agent echoing its key: the stream log is a record too
                "Done: I wrote hello.txt. (key sk-ant-fake-key-for-tests)",
                expect_tool_result=True,
                input_tokens=1300,
                output_tokens=12,
            ),
        )
        rec = ExecutionRecorder(store, role="executor", backend="claude-code", executor="agent")
        task = Task(
            "Create hello.txt saying hello",
            git_repo,
            system_prompt="PROJECT-RULES-MARKER",
            env=fake_env(srv),
        )
        outcome = run_execution(ex, task, rec)
    assert target.read_text() == "hello from the fake model\n"
    assert outcome.status == "ok", outcome
    rows = stored_events(store, rec.id)
    assert [r["type"] for r in rows] == [
        "step",
        "step",
        "text",
        "tool_call",
        "tool_result",
        "text",
        "usage",
    ]
    call, result = rows[3], rows[4]
    assert call["tool_name"] == "Write" and result["tool_name"] == "Write"
    assert call["call_id"] == result["call_id"] and result["is_error"] is False
    assert json.loads(call["input"])["file_path"] == str(target)
    assert rows[-1]["text"] == "final" and rows[-1]["cost_usd"] == pytest.approx(0.008715)
    row = stored_execution(store, rec.id)
    assert (
        row["input_tokens"],
        row["output_tokens"],
        row["cache_read_tokens"],
        row["cache_write_tokens"],
    ) == (2500, 52, 200, 100)
    # claude-sonnet-4-5 at $3 / $15 per MTok, cache read 0.1x, cache write 1.25x
    assert row["cost_usd"] == pytest.approx(0.008715) and row["cost_source"] == "reported"
    assert row["status"] == "ok" and row["num_turns"] == 2 and row["session_id"]
    # the raw stream re-parses to the same tool calls (and becomes a fixture when recording)
    assert "sk-ant-fake-key-for-tests" not in log.read_text()
    assert "[REDACTED:ANTHROPIC_API_KEY]" in log.read_text()
    state = ClaudeStreamState()
    reparsed = [e for line in log.read_bytes().splitlines() for e in parse_line(line, state)]
    assert [e.type for e in reparsed if e.type in ("tool_call", "tool_result")] == [
        "tool_call",
        "tool_result",
    ]
    if RECORD:
        text = log.read_text().replace(str(git_repo.resolve()), "<RUN>/work")
        (STREAMS / "claude-code" / "specwright_write.jsonl").write_text(text)


@pytest.mark.parametrize(("status", "reason"), [(529, "overloaded"), (401, "auth"), (403, "auth")])
def test_real_claude_api_error_is_a_failure(git_repo: Path, status: int, reason: str) -> None:
    ex = ClaudeCodeExecutor(executor_config())
    events: list[AgentEvent] = []
    with FakeModelServer() as srv:
        srv.script(anthropic_error(status))
        outcome = ex.execute(
            Task("hi", git_repo, env=fake_env(srv)), events.append, threading.Event()
        )
    assert outcome.status == "error" and outcome.exit_reason == reason
    assert str(status) in (outcome.error or "")
    assert outcome.usage.cost_usd == 0


@pytest.mark.parametrize("variable", ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"])
def test_real_claude_refused_api_key_is_not_retried_for_minutes(
    git_repo: Path, variable: str
) -> None:
    """Claude Code retries a 401 ten times by default (~3 min of backoff) although the key or
    token it was given cannot change meanwhile: claude is stopped at its first retry, an
    ``auth`` failure within seconds that names the variable."""
    ex = ClaudeCodeExecutor(executor_config())
    events: list[AgentEvent] = []
    with FakeModelServer() as srv:
        srv.script(anthropic_error(401))  # strict: a retry would be an unexpected request
        env = {k: v for k, v in fake_env(srv).items() if k != "CLAUDE_CODE_MAX_RETRIES"}
        env[variable] = env.pop("ANTHROPIC_API_KEY")
        outcome = ex.execute(Task("hi", git_repo, env=env), events.append, threading.Event())
        asked = len(srv.model_requests)
    assert asked == 1, asked  # its first retry never went out: not minutes of them
    pid = next(e.raw["pid"] for e in events if isinstance(e, StepEvent) and e.name == "process")
    assert not alive(pid)
    assert (outcome.status, outcome.exit_reason) == ("error", "auth"), outcome
    assert "401" in (outcome.error or "") and variable in (outcome.error or "")


@pytest.mark.parametrize("key", ["sk-ant-refused-key", None], ids=["refused", "missing"])
def test_real_claude_auth_failure_stops_the_chunk_run_at_once(
    store: Any, tmp_path: Path, key: str | None
) -> None:
    """A key the API refuses (401), or none at all ("Not logged in"): no attempt can succeed, so
    the chunk run stops after one execution (not two: a second claude would start and fail the
    same way), recorded as failed for auth with one line naming the executor and the variable."""
    repo = make_repo(tmp_path / "proj")
    chunk = make_chunk(store, repo)
    with FakeModelServer() as srv:
        env = fake_env(srv)
        if key is None:
            del env["ANTHROPIC_API_KEY"]
        else:
            env["ANTHROPIC_API_KEY"] = key
            srv.script(anthropic_error(401))  # strict: a second request would be a failure
        ex = ClaudeCodeExecutor(executor_config(name="claude", env=env))
        result = run_chunk(store, make_config(), repo, chunk, executor=ex)
        assert srv.failures == [] and len(srv.model_requests) == (1 if key else 0)
    assert result.status == "failed", result.reason
    assert result.reason.startswith("auth: executor 'claude' (claude-code) could not authenticate")
    assert "ANTHROPIC_API_KEY" in result.reason and "not retried" in result.reason
    failed_as_auth(store, result.reason)


def test_a_config_dir_that_is_a_file_is_refused_before_claude_starts(
    store: Any, tmp_path: Path
) -> None:
    """`options.config_dir` naming a file: claude ran and answered, but could keep nothing
    there (no transcript for `ingest claude-logs`, no login), and nothing said so. The chunk
    run now fails at once as cannot_start, naming the option; no model request is made."""
    repo = make_repo(tmp_path / "proj")
    chunk = make_chunk(store, repo)
    (tmp_path / "not-a-folder").write_text("")
    with FakeModelServer() as srv:  # strict: any request would be a failure
        options = {"config_dir": str(tmp_path / "not-a-folder")}
        ex = ClaudeCodeExecutor(executor_config(name="claude", env=fake_env(srv), options=options))
        result = run_chunk(store, make_config(), repo, chunk, executor=ex)
        assert srv.requests == []
    assert result.status == "failed", result.reason
    assert result.reason.startswith("cannot_start: executor 'claude' (claude-code) could not start")
    assert f"options.config_dir {tmp_path / 'not-a-folder'}: not a folder" in result.reason


def test_real_claude_unknown_model_stops_the_chunk_run_at_once(store: Any, tmp_path: Path) -> None:
    """A model the API does not serve (its 404 not_found_error; claude asks once streamed and
    once not): every attempt would fail the same way, so the chunk run stops after one
    execution with one line naming the executor and the model, recorded as unknown_model."""
    repo = make_repo(tmp_path / "proj")
    chunk = make_chunk(store, repo)
    with FakeModelServer() as srv:
        for _ in range(2):  # strict: a second execution's requests would be failures
            srv.script(anthropic_error(404, "model: claude-nope-9", error_type="not_found_error"))
        ex = ClaudeCodeExecutor(
            executor_config(name="claude", env=fake_env(srv), model="claude-nope-9")
        )
        result = run_chunk(store, make_config(), repo, chunk, executor=ex)
        assert srv.failures == []
    assert result.status == "failed" and result.iterations == 1, result.reason
    assert result.reason.startswith(
        "unknown_model: executor 'claude' (claude-code) cannot use model 'claude-nope-9': "
    )
    assert "issue with the selected model" in result.reason and "not retried" in result.reason
    assert "\n" not in result.reason
    [execution] = store.query_dicts("SELECT status, exit_reason FROM executions")
    assert execution["status"] == "error"
    assert execution["exit_reason"].startswith("unknown_model: ")
    assert store.query_dicts("SELECT status, reason FROM runs") == [
        {"status": "failed", "reason": result.reason}
    ]


def _one_execution_fails(store: Any, tmp_path: Path, turn: Any, kind: str) -> Any:
    """A chunk run of claude whose one API request gets ``turn``: its result, asserted to have
    failed as ``kind`` after that one execution (the strict fake counts another request as a
    failure), on one line, the execution and the run recorded so."""
    repo = make_repo(tmp_path / "proj")
    chunk = make_chunk(store, repo)
    with FakeModelServer() as srv:
        srv.script(turn)
        ex = ClaudeCodeExecutor(executor_config(name="claude", env=fake_env(srv)))
        result = run_chunk(store, make_config(), repo, chunk, executor=ex)
        assert srv.failures == [] and len(srv.model_requests) == 1
    assert result.status == "failed" and result.iterations == 1, result.reason
    assert result.reason.startswith(f"{kind}: ") and "\n" not in result.reason, result.reason
    [execution] = store.query_dicts("SELECT status, exit_reason FROM executions")
    assert execution["status"] == "error" and execution["exit_reason"].startswith(f"{kind}: ")
    assert store.query_dicts("SELECT status, reason FROM runs") == [
        {"status": "failed", "reason": result.reason}
    ]
    return result


def test_real_claude_out_of_credit_stops_the_chunk_run_at_once(store: Any, tmp_path: Path) -> None:
    """The API's 400 "Your credit balance is too low" (claude: "Credit balance is too low",
    billing_error) was an api_error the loop ran claude again for, to fail alike: no retry or
    wait helps until someone pays, so the chunk run stops after one execution with one line
    naming the executor and what to do, recorded as billing."""
    credit = anthropic_error(400, CREDIT_TOO_LOW, error_type="invalid_request_error")
    result = _one_execution_fails(store, tmp_path, credit, "billing")
    assert result.reason.startswith(
        "billing: executor 'claude' (claude-code) is out of credit or its plan does not include "
        "this use: Credit balance is too low"
    )
    assert result.reason.endswith("add credits or change plan, then run the chunk again")


# what the API answers (and claude 2.1.332 makes of it, in its ``error``/``api_error`` fields):
# an API key of a disabled organization (400; org_disabled_credential) and an account asked to
# verify itself (403 permission_error with error_code verification_required)
DISABLED_ORG = anthropic_error(400, "This organization has been disabled.")
VERIFY_URL = "https://claude.ai/verify"
VERIFY = replace(
    anthropic_error(403),
    error={
        "type": "error",
        "error": {
            "type": "permission_error",
            "message": f"Verify your identity to keep using Claude. {VERIFY_URL}",
            "details": {"error_code": "verification_required", "remediation_url": VERIFY_URL},
        },
    },
)


@pytest.mark.parametrize(
    ("turn", "said"),
    [
        (DISABLED_ORG, "Your ANTHROPIC_API_KEY belongs to a disabled organization"),
        (VERIFY, f"Verify your identity to keep using Claude. {VERIFY_URL}"),
    ],
    ids=["disabled-organization", "verification-required"],
)
def test_real_claude_unusable_account_stops_the_chunk_run_at_once(
    store: Any, tmp_path: Path, turn: Any, said: str
) -> None:
    """An account its owner must put right: a disabled organization was an api_error the loop
    ran claude again for (and run-all went on to the next chunk, to fail alike); a verification
    the account awaits was "credentials refused: check the ANTHROPIC_API_KEY", though the key
    was fine. Both now end the chunk run after one execution, recorded as ``account``, one line
    quoting claude and saying no retry helps (run-all stops on it: STOPS_RUN_ALL)."""
    result = _one_execution_fails(store, tmp_path, turn, "account")
    assert result.reason.startswith(
        "account: executor 'claude' (claude-code) cannot use its account: "
    ), result.reason
    assert said in result.reason and "ANTHROPIC_API_KEY claude was given" not in result.reason
    assert result.reason.endswith("the account's owner must put it right, then run the chunk again")


def test_real_claude_expired_login_says_to_log_in_again(store: Any, tmp_path: Path) -> None:
    """A login token past its time (CLAUDE_CODE_OAUTH_TOKEN from `claude setup-token`; the
    API's 401 "OAuth token has expired", which claude tries once more itself): the run said
    "check the ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN claude was given", neither of which it
    had. It now stops at once as ``auth`` saying to log in again."""
    repo = make_repo(tmp_path / "proj")
    chunk = make_chunk(store, repo)
    expired = "OAuth token has expired. Please obtain a new token or refresh your existing token."
    with FakeModelServer() as srv:  # strict: another execution's requests would be failures
        srv.script(*[anthropic_error(401, expired) for _ in range(2)])
        env = fake_env(srv)
        env["CLAUDE_CODE_OAUTH_TOKEN"] = env.pop("ANTHROPIC_API_KEY")
        ex = ClaudeCodeExecutor(executor_config(name="claude", env=env))
        result = run_chunk(store, make_config(), repo, chunk, executor=ex)
        assert srv.failures == [] and srv.pending == 0
    assert result.status == "failed", result.reason
    assert result.reason.startswith("auth: executor 'claude' (claude-code) could not authenticate")
    assert "401 OAuth token has expired" in result.reason
    assert "log in again, with `claude auth login`" in result.reason
    assert "CLAUDE_CODE_OAUTH_TOKEN from `claude setup-token`" in result.reason
    assert "ANTHROPIC_API_KEY" not in result.reason
    failed_as_auth(store, result.reason)


def test_real_claude_overloaded_service_is_retried_after_a_backoff(
    store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API overloaded (529, after claude's own retries) was a rate limit: the loop asked
    codexbar when Claude's plan resets, and with its window used up (an unrelated 5 h away) the
    chunk run ended rate_limited at once. An overload is the service's, not the plan's: the loop
    now pauses (30 s, doubling) without asking codexbar, and the next try ships."""
    from tests.support_usage import write_fake_codexbar
    from tests.test_loop_limits import _window

    monkeypatch.setattr("specwright.loop.limits.OVERLOAD_WAIT_S", 0.01, raising=False)
    monkeypatch.setenv(
        "CODEXBAR_PATH", str(write_fake_codexbar(tmp_path / "cb", usage=[_window("claude", 5)]))
    )
    repo = make_repo(tmp_path / "proj")
    chunk = make_chunk(store, repo, files=("done.txt",))
    done = repo.resolve() / "done.txt"
    progress: list[Any] = []
    with FakeModelServer() as srv:
        srv.script(
            anthropic_error(529, "Overloaded"),
            anthropic_tool_use("Write", {"file_path": str(done), "content": "done\n"}),
            anthropic_text("Done.", expect_tool_result=True),
        )
        ex = ClaudeCodeExecutor(executor_config(name="claude", env=fake_env(srv)))
        config = make_config(verify=[{"name": "done", "command": "test -f done.txt"}])
        result = run_chunk(store, config, repo, chunk, executor=ex, on_progress=progress.append)
    assert result.status == "shipped", result.reason
    [pause] = [p.message for p in progress if p.kind == "pause"]
    assert pause.startswith("overloaded (API Error: 529 Overloaded") and "pausing" in pause
    executions = store.query_dicts("SELECT exit_reason FROM executions ORDER BY started_at")
    assert [e["exit_reason"].split(":")[0] for e in executions] == ["overloaded", "completed"]


@pytest.mark.parametrize(
    "prompt",
    [
        "Please read this carefully. " * 6000 + "END-OF-BIG-PROMPT",  # ~170 KB, over ARG_MAX
        "--help is not an option here. END-OF-BIG-PROMPT",  # would parse as an option
    ],
    ids=["big", "dash"],
)
def test_real_claude_prompt_via_stdin(git_repo: Path, prompt: str) -> None:
    ex = ClaudeCodeExecutor(executor_config())
    with FakeModelServer() as srv:
        srv.script(
            anthropic_text(
                "Read it.", expect_text="END-OF-BIG-PROMPT", expect_system="- RULE-MARKER"
            )
        )
        task = Task(prompt, git_repo, system_prompt="- RULE-MARKER", env=fake_env(srv))
        outcome = ex.execute(task, lambda e: None, threading.Event())
    assert outcome.status == "ok", outcome
    assert outcome.final_text == "Read it."


def test_real_claude_cancel_mid_run_leaves_no_process(git_repo: Path) -> None:
    cancel = threading.Event()
    events: list[AgentEvent] = []

    def on_event(event: AgentEvent) -> None:
        events.append(event)
        if isinstance(event, StepEvent) and event.name == "init":
            cancel.set()  # claude is now waiting on the model's (slow) answer

    ex = ClaudeCodeExecutor(executor_config())
    with FakeModelServer() as srv:
        srv.script(anthropic_text("too late", delay_s=60))
        outcome = ex.execute(Task("hi", git_repo, env=fake_env(srv)), on_event, cancel)
    assert outcome.status == "cancelled"
    pid = next(
        e.raw["pid"] for e in events if isinstance(e, StepEvent) and e.name == "process" and e.raw
    )
    assert not alive(pid) and group_members(pid) == []
