"""The REAL `opencode serve` with a custom OpenAI-compatible provider pointing at the fake model
server: a write through opencode's own tool in a temp git repo, recorded in the store;
permission asks answered by policy; a provider error; cancel mid-run. One server per module.
Transport failures (server down, wrong URL, a stream that drops) use small local stand-ins.

Set ``SPECWRIGHT_RECORD_STREAMS=1`` to refresh
tests/fixtures/streams/opencode/specwright_write.events.jsonl.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from specwright.agents import Task, run_execution
from specwright.agents.opencode import OpenCodeExecutor
from specwright.agents.opencode_server import OFFLINE_ENV, OpenCodeServer
from specwright.errors import AgentError, ConfigError
from specwright.loop import run_chunk
from specwright.model import AgentEvent, ErrorEvent
from specwright.recorder import ExecutionRecorder
from specwright.testing import (
    FakeModelServer,
    anthropic_error,
    openai_error,
    openai_text,
    openai_tool_call,
)
from tests.support_agents import (
    CREDIT_TOO_LOW,
    OPENCODE_BIN,
    STREAMS,
    alive,
    executor_config,
    opencode_config,
    opencode_serving,
    requires_opencode,
    stored_events,
    stored_execution,
)
from tests.support_loop import (
    failed_as_auth,
    make_chunk,
    make_config,
    make_repo,
)

RECORD = os.environ.get("SPECWRIGHT_RECORD_STREAMS") == "1"  # read before `isolate` scrubs it


def oc_config(**kw: Any) -> Any:
    return executor_config(
        type="opencode",
        provider="fake",
        model=kw.pop("model", "fake-model"),
        timeout_s=kw.pop("timeout_s", 120.0),
        **kw,
    )


@pytest.fixture(scope="module")
def model() -> Iterator[FakeModelServer]:
    with FakeModelServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def server(model: FakeModelServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not (os.path.isfile(OPENCODE_BIN) and os.access(OPENCODE_BIN, os.X_OK)):
        pytest.skip(
            f"real opencode CLI not installed (set OPENCODE_PATH or run .ci/run to "
            f"npm-install it into .agents/; looked at {OPENCODE_BIN})"
        )
    base = tmp_path_factory.mktemp("opencode")
    (base / "home").mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(base / "home"),
        **OFFLINE_ENV,
        "OPENCODE_CONFIG_CONTENT": json.dumps(opencode_config(model.openai_base_url)),
    }
    srv = OpenCodeServer(OPENCODE_BIN, base, env, ready_timeout_s=120).start()
    try:
        assert srv.url is not None and srv.url.startswith("http://127.0.0.1:")
        yield srv.url
    finally:
        srv.stop()
    assert srv.pid is not None and not alive(srv.pid)  # stopped, nothing left behind


@pytest.fixture
def oc(
    server: str, model: FakeModelServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeModelServer]:
    """The running server (OPENCODE_URL set) and the fake model, strict per test."""
    monkeypatch.setenv("OPENCODE_URL", server)
    failures = len(model.failures)
    yield model
    assert model.failures[failures:] == []
    assert model.pending == 0, "scripted turns left over"


def run(
    executor: OpenCodeExecutor, task: Task, cancel: threading.Event | None = None
) -> tuple[Any, list[AgentEvent]]:
    events: list[AgentEvent] = []
    outcome = executor.execute(task, events.append, cancel or threading.Event())
    return outcome, events


def write_turns(target: Path, done: str = "Done: I wrote hello.txt.") -> tuple[Any, Any]:
    return (
        openai_tool_call(
            "write",
            {"filePath": str(target), "content": "hello from the fake model\n"},
            prompt_tokens=1400,
            cached_tokens=200,
            completion_tokens=40,
            expect_text="Create hello.txt",
            expect_tools=("write",),
        ),
        openai_text(
            done,
            prompt_tokens=1300,
            completion_tokens=12,
            expect_tool_result=True,
        ),
    )


# --- the real server ------------------------------------------------------------------------


@pytest.mark.agents
def test_real_opencode_writes_a_file_and_everything_is_recorded(
    oc: FakeModelServer, git_repo: Path, store: Any, tmp_path: Path
) -> None:
    target = git_repo.resolve() / "hello.txt"
    log = tmp_path / "events.jsonl"
    # the model echoes a secret of the executor's env: the stream log is a record too
    oc.script(*write_turns(target, done="Done: I wrote hello.txt. tok-opencode-1234567"))
    secret = {"MY_SERVICE_TOKEN": "tok-opencode-1234567"}
    ex = OpenCodeExecutor(oc_config(options={"stream_log": str(log)}, env=secret))
    rec = ExecutionRecorder(store, role="executor", backend="opencode", executor="agent")
    outcome = run_execution(
        ex,
        Task("Create hello.txt saying hello", git_repo, system_prompt="PROJECT-RULES-MARKER"),
        rec,
    )
    assert outcome.status == "ok", outcome
    assert target.read_text() == "hello from the fake model\n"
    assert "PROJECT-RULES-MARKER" in oc.model_requests[-2].system_text
    rows = stored_events(store, rec.id)
    kinds = [r["type"] for r in rows if r["type"] != "step"]
    assert kinds == ["tool_call", "tool_result", "usage", "text", "usage", "usage"]
    call = next(r for r in rows if r["type"] == "tool_call")
    result = next(r for r in rows if r["type"] == "tool_result")
    assert call["tool_name"] == "write" and call["call_id"] == result["call_id"]
    assert json.loads(call["input"])["filePath"] == str(target)
    assert result["is_error"] is False and "Wrote file" in result["output"]
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    steps = [r for r in rows if r["type"] == "usage"]
    assert [(r["input_tokens"], r["cache_read_tokens"], r["output_tokens"]) for r in steps] == [
        (1200, 200, 40),
        (1300, 0, 12),
        (2500, 200, 52),
    ]  # input excludes cached tokens
    row = stored_execution(store, rec.id)
    assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"]) == (2500, 52, 200)
    # cost from the provider's configured prices ($3 / $15 / $0.3 per MTok)
    assert row["cost_usd"] == pytest.approx(0.00834) and row["cost_source"] == "reported"
    assert row["status"] == "ok" and row["session_id"] == outcome.session_id
    # its turns as Claude Code's are counted: one per model call (step), here the write and the
    # answer
    assert row["num_turns"] == outcome.num_turns == 2
    assert row["model"] == "fake-model"
    assert "tok-opencode-1234567" not in log.read_text()
    assert "[REDACTED:MY_SERVICE_TOKEN]" in log.read_text()
    if RECORD:
        text = log.read_text().replace(str(git_repo.resolve()), "<RUN>/work")
        (STREAMS / "opencode" / "specwright_write.events.jsonl").write_text(text)


@pytest.mark.agents
def test_real_opencode_stream_log_keeps_no_secret_cut_across_text_deltas(
    oc: FakeModelServer, git_repo: Path, tmp_path: Path
) -> None:
    """The model streams a secret in 3-character pieces: opencode sends each as its own
    message.part.delta, which the redaction let through piece by piece, so the stream log held
    the whole secret in order. The text event and the log's whole text are redacted."""
    log = tmp_path / "events.jsonl"
    secret = "tok-opencode-7654321"
    oc.script(openai_text(f"Here: {secret} done.", chunk_size=3))
    ex = OpenCodeExecutor(
        oc_config(options={"stream_log": str(log)}, env={"MY_SERVICE_TOKEN": secret})
    )
    outcome, _ = run(ex, Task("hi", git_repo))
    assert outcome.status == "ok", outcome
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    deltas = [e["properties"] for e in lines if e["type"] == "message.part.delta"]
    assert deltas, "no text deltas: the test no longer streams pieces"
    pieces = "".join(str(d.get("delta")) for d in deltas)
    assert "7654321" not in pieces and "tok-opencode" not in log.read_text(), pieces
    assert all(d["delta"].endswith(" chars]") for d in deltas), pieces  # lengths, no pieces
    assert "Here: [REDACTED:MY_SERVICE_TOKEN] done." in log.read_text()
    assert outcome.final_text == f"Here: {secret} done."  # run_execution redacts it for the store


@pytest.mark.agents
def test_real_opencode_stream_log_keeps_no_secret_a_running_tool_printed_in_two_pieces(
    oc: FakeModelServer, git_repo: Path, tmp_path: Path
) -> None:
    """A running bash tool's output comes as snapshots of what it printed so far: one that
    ended mid-secret kept its first part in the stream log (no whole value to redact). The
    finished call's whole output, redacted, is logged as ever."""
    log = tmp_path / "events.jsonl"
    secret = "sk-secret-VALUE-123456"
    command = "printf 'tok sk-sec'; printf 'ret-VA'; sleep 1; printf 'LUE-123456'"
    oc.script(
        openai_tool_call("bash", {"command": command, "description": "print"}),
        openai_text("done", expect_tool_result=True),
    )
    ex = OpenCodeExecutor(oc_config(options={"stream_log": str(log)}, env={"MY_API_KEY": secret}))
    outcome, _ = run(ex, Task("print it", git_repo))
    assert outcome.status == "ok", outcome
    text = log.read_text()
    running = [
        e for e in map(json.loads, text.splitlines())
        if e["type"] == "message.part.updated"
        and e["properties"]["part"].get("state", {}).get("status") == "running"
    ]  # fmt: skip
    assert running, "no running tool snapshots: the test no longer shows the cut"
    assert "sk-secret-VA" not in text and "tok [REDACTED:MY_API_KEY]" in text


@pytest.mark.agents
@pytest.mark.parametrize(("policy", "status"), [("allow", "ok"), ("reject", "error")])
def test_real_opencode_permission_asks_are_answered(
    oc: FakeModelServer, git_repo: Path, policy: str, status: str
) -> None:
    # a project config in the work tree makes edits ask; an unanswered ask would block forever
    (git_repo / "opencode.json").write_text(json.dumps({"permission": {"edit": "ask"}}))
    target = git_repo.resolve() / "hello.txt"
    turns = write_turns(target)
    oc.script(*(turns if policy == "allow" else turns[:1]))
    outcome, events = run(
        OpenCodeExecutor(oc_config(permission_policy=policy)), Task("Create hello.txt", git_repo)
    )
    asked = [e for e in events if e.type == "step" and e.name.startswith("permission.asked")]
    assert len(asked) == 1
    assert outcome.status == status, outcome
    assert target.exists() == (policy == "allow")
    if policy == "reject":
        assert outcome.exit_reason == "permission_rejected"
        assert [e.is_error for e in events if e.type == "tool_result"] == [True]


@pytest.mark.agents
@pytest.mark.parametrize("policy", ["allow", "always"])
def test_real_opencode_may_not_write_outside_its_work_tree(
    oc: FakeModelServer, git_repo: Path, tmp_path: Path, policy: str
) -> None:
    """Whatever the policy allows, a write outside the work tree (OpenCode asks for
    ``external_directory``) is refused, as Claude Code refuses it: the agent reads why as the
    tool's error and carries on; the refusal is a warning of the run."""
    outside = tmp_path / "outside" / "pwned.txt"
    oc.script(
        openai_tool_call("write", {"filePath": str(outside), "content": "pwned\n"}),
        openai_text("I may only work in the project.", expect_tool_result=True),
    )
    outcome, events = run(
        OpenCodeExecutor(oc_config(permission_policy=policy)), Task("Write there", git_repo)
    )
    assert not outside.exists()
    assert outcome.status == "ok", outcome
    result = next(e for e in events if e.type == "tool_result")
    assert result.is_error and "work only inside the working directory" in result.output
    warned = [e for e in events if isinstance(e, ErrorEvent) and e.kind == "warning"]
    assert any("refused a write outside the work tree" in e.message for e in warned), warned


@pytest.mark.agents
def test_real_opencode_computed_cost_prices_each_step_at_its_own_tier(
    oc: FakeModelServer, git_repo: Path, store: Any
) -> None:
    # two calls of 150k and 120k prompt tokens: 270k in all, but neither is over 200k, so both
    # are billed at Sonnet 4.5's base rates ($3 in, $15 out, $0.30 cache read per MTok)
    target = git_repo.resolve() / "hello.txt"
    oc.script(
        openai_tool_call(
            "write",
            {"filePath": str(target), "content": "hi\n"},
            prompt_tokens=150_000,
            cached_tokens=40_000,
            completion_tokens=400,
        ),
        openai_text("Done.", prompt_tokens=120_000, completion_tokens=100, expect_tool_result=True),
    )
    ex = OpenCodeExecutor(oc_config(model="claude-sonnet-4-5"))
    rec = ExecutionRecorder(store, role="executor", backend="opencode", executor="agent")
    outcome = run_execution(ex, Task("Create hello.txt", git_repo), rec)
    assert outcome.status == "ok", outcome
    row = stored_execution(store, rec.id)
    assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"]) == (
        230_000,
        40_000,
        500,
    )
    expected = (110_000 * 3 + 40_000 * 0.3 + 400 * 15 + 120_000 * 3 + 100 * 15) / 1e6
    assert row["computed_cost_usd"] == pytest.approx(expected, abs=1e-9)
    assert row["reported_cost_usd"] == pytest.approx(expected, abs=1e-9)


@pytest.mark.agents
def test_real_opencode_reasoning_tokens_are_output_and_priced(
    oc: FakeModelServer, git_repo: Path, store: Any
) -> None:
    # 1000 completion tokens of which 600 reasoning: opencode says output 400, reasoning 600,
    # and bills all 1000 at the output rate, as the provider does
    oc.script(
        openai_text("Done.", prompt_tokens=10_000, completion_tokens=1000, reasoning_tokens=600)
    )
    ex = OpenCodeExecutor(oc_config(model="claude-sonnet-4-5"))
    rec = ExecutionRecorder(store, role="executor", backend="opencode", executor="agent")
    assert run_execution(ex, Task("Say done", git_repo), rec).status == "ok"
    row = stored_execution(store, rec.id)
    assert (row["output_tokens"], row["reasoning_tokens"]) == (1000, 600)
    expected = (10_000 * 3 + 1000 * 15) / 1e6
    assert row["computed_cost_usd"] == pytest.approx(expected, abs=1e-9)
    assert row["reported_cost_usd"] == pytest.approx(expected, abs=1e-9)


@pytest.mark.agents
def test_real_opencode_provider_error(oc: FakeModelServer, git_repo: Path) -> None:
    # an invalid_request_error 400 is not retried by opencode 1.18.33 (5xx would be, 6 times)
    oc.script(openai_error(400, "fake error 400"))
    outcome, events = run(OpenCodeExecutor(oc_config()), Task("hi", git_repo))
    assert (outcome.status, outcome.exit_reason) == ("error", "session_error")
    assert "APIError" in (outcome.error or "") and "400" in (outcome.error or "")
    assert [e.kind for e in events if e.type == "error" and e.kind != "warning"] == ["api_error"]


@pytest.mark.agents
def test_real_opencode_unknown_model_is_one_line_without_its_stack_trace(
    oc: FakeModelServer, git_repo: Path
) -> None:
    """opencode 1.18.33 reports an unknown model (twice) as an UnknownError whose message
    carries a JavaScript stack trace (a dozen `at ... (/$bunfs/root/chunk-...js)` lines): the error the
    user sees is its first line; the stack stays in the event's raw payload."""
    outcome, events = run(OpenCodeExecutor(oc_config(model="nosuch-model")), Task("hi", git_repo))
    assert outcome.status == "error"
    assert "Model not found: fake/nosuch-model" in (outcome.error or "")
    assert "\n" not in (outcome.error or "") and "$bunfs" not in (outcome.error or "")
    errors = [e for e in events if e.type == "error" and e.kind != "warning"]
    assert errors and all("$bunfs" not in e.message for e in errors)
    assert "$bunfs" in json.dumps([e.raw for e in errors])


@pytest.mark.agents
@pytest.mark.parametrize("status", [401, 403])
def test_real_opencode_refused_key_is_an_auth_failure(
    oc: FakeModelServer, git_repo: Path, status: int
) -> None:
    """The provider refuses the key: an ``auth`` failure (no retry can succeed) saying where
    the key is set, not a session error the loop would try again."""
    oc.script(openai_error(status, "Incorrect API key provided"))
    outcome, events = run(OpenCodeExecutor(oc_config()), Task("hi", git_repo))
    assert (outcome.status, outcome.exit_reason) == ("error", "auth")
    assert f"HTTP {status}" in (outcome.error or "") and "apiKey" in (outcome.error or "")
    assert [e.kind for e in events if e.type == "error" and e.kind != "warning"] == ["auth"]
    assert outcome.retry_after_s is None


@pytest.mark.agents
def test_real_opencode_overloaded_provider_is_overloaded_not_a_rate_limit(
    oc: FakeModelServer, git_repo: Path
) -> None:
    """The provider overloaded (a 529, after OpenCode's five retries) was a rate limit, which
    sent the loop to codexbar for a plan reset; it is now ``overloaded``, which the loop backs
    off from without asking codexbar."""
    oc.script(*[openai_error(529, "Overloaded") for _ in range(6)])
    outcome, events = run(OpenCodeExecutor(oc_config()), Task("hi", git_repo))
    assert (outcome.status, outcome.exit_reason) == ("error", "overloaded"), outcome
    assert "HTTP 529" in (outcome.error or "") and outcome.retry_after_s is None
    assert [e.kind for e in events if e.type == "error" and e.kind != "warning"] == ["overloaded"]


def run_on_anthropic(
    base_url: str,
    env: dict[str, str],
    git_repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    """ "hi" sent to a server of its own whose one provider is OpenCode's Anthropic one at
    ``base_url``, started with ``env`` added; its outcome."""
    config = {
        "$schema": "https://opencode.ai/config.json",
        "provider": {"anthropic": {"options": {"baseURL": base_url}}},
        "enabled_providers": ["anthropic"],
        "model": "anthropic/claude-sonnet-4-5",
        "small_model": "anthropic/claude-sonnet-4-5",
        "autoupdate": False,
        "share": "disabled",
    }
    with opencode_serving(config, tmp_path, monkeypatch, env):
        cfg = executor_config(
            type="opencode", provider="anthropic", model="claude-sonnet-4-5", timeout_s=60.0
        )
        return run(OpenCodeExecutor(cfg), Task("hi", git_repo))[0]


@requires_opencode
@pytest.mark.agents
def test_real_opencode_without_a_provider_key_is_an_auth_failure(
    git_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server whose provider has no key at all: OpenCode's ProviderAuthError (no request
    made) is an ``auth`` failure naming the variable, not a session error to try again."""
    outcome = run_on_anthropic("http://127.0.0.1:9/v1", {}, git_repo, tmp_path, monkeypatch)
    assert (outcome.status, outcome.exit_reason) == ("error", "auth"), outcome
    assert "ProviderAuthError" in (outcome.error or "")
    assert "ANTHROPIC_API_KEY" in (outcome.error or "")


@pytest.mark.agents
def test_real_opencode_refused_key_stops_the_chunk_run_at_once(
    oc: FakeModelServer, store: Any, tmp_path: Path
) -> None:
    """A 401 through the whole loop: one execution (the strict fake would count a second
    request as a failure), the run recorded failed as auth, naming the executor."""
    repo = make_repo(tmp_path / "proj")
    chunk = make_chunk(store, repo)
    oc.script(openai_error(401, "Incorrect API key provided"))
    ex = OpenCodeExecutor(oc_config(name="glm"))
    result = run_chunk(store, make_config(), repo, chunk, executor=ex)
    assert result.status == "failed", result.reason
    assert result.reason.startswith("auth: executor 'glm' (opencode) could not authenticate")
    assert "HTTP 401" in result.reason and "not retried" in result.reason
    failed_as_auth(store, result.reason)


# an account its owner must put right: Anthropic's disabled organization (400) and a
# verification it awaits (403, error_code verification_required); OpenAI's deactivated one (401)
ANTHROPIC_DISABLED = anthropic_error(400, "This organization has been disabled.")
ANTHROPIC_VERIFY = replace(
    anthropic_error(403),
    error={
        "type": "error",
        "error": {
            "type": "permission_error",
            "message": "Verify your identity to keep using Claude. https://claude.ai/verify",
            "details": {"error_code": "verification_required"},
        },
    },
)
OPENAI_DEACTIVATED = (
    "The OpenAI account associated with this API key has been deactivated. If you are the "
    "developer for this OpenAI app, please check your email for more information."
)


@requires_opencode
@pytest.mark.agents
@pytest.mark.parametrize(
    ("turn", "said"),
    [
        (ANTHROPIC_DISABLED, "This organization has been disabled. (HTTP 400)"),
        (ANTHROPIC_VERIFY, "Verify your identity to keep using Claude."),
    ],
    ids=["disabled-organization", "verification-required"],
)
def test_real_opencode_anthropic_unusable_account_is_account(
    git_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, turn: Any, said: str
) -> None:
    """OpenCode's Anthropic provider on an account its owner must put right: a disabled
    organization was a session error the loop ran again (and run-all went on to the next
    chunk, to fail alike); a verification was "the provider refused or lacks its key". Both
    are now ``account``, saying no key or retry helps."""
    with FakeModelServer() as model:  # strict: one request, no retry
        model.script(turn)
        key = {"ANTHROPIC_API_KEY": "sk-ant-fake-key-for-tests"}
        outcome = run_on_anthropic(f"{model.base_url}/v1", key, git_repo, tmp_path, monkeypatch)
    assert (outcome.status, outcome.exit_reason) == ("error", "account"), outcome
    assert said in (outcome.error or "") and "lacks its key" not in (outcome.error or "")
    assert "cannot be used until its owner puts it right" in (outcome.error or "")


@pytest.mark.agents
def test_real_opencode_deactivated_account_stops_the_chunk_run_at_once(
    oc: FakeModelServer, store: Any, tmp_path: Path
) -> None:
    """OpenAI's 401 account_deactivated through the whole loop: one execution (the strict
    fake would count a second request as a failure), the run failed as ``account`` (run-all
    stops on it), not as a key to fix."""
    repo = make_repo(tmp_path / "proj")
    chunk = make_chunk(store, repo)
    turn = openai_error(401, OPENAI_DEACTIVATED, code="account_deactivated")
    oc.script(turn)
    ex = OpenCodeExecutor(oc_config(name="glm"))
    result = run_chunk(store, make_config(), repo, chunk, executor=ex)
    assert result.status == "failed" and result.iterations == 1, result.reason
    assert result.reason.startswith(
        "account: executor 'glm' (opencode) cannot use its account: APIError: "
    ), result.reason
    assert OPENAI_DEACTIVATED in result.reason and "HTTP 401" in result.reason
    assert result.reason.endswith("the account's owner must put it right, then run the chunk again")
    assert "\n" not in result.reason
    [execution] = store.query_dicts("SELECT status, exit_reason FROM executions")
    assert execution["status"] == "error" and execution["exit_reason"].startswith("account: ")


@pytest.mark.agents
@pytest.mark.parametrize("where", ["opencode's config", "the provider"])
def test_real_opencode_unknown_model_stops_the_chunk_run_at_once(
    oc: FakeModelServer, store: Any, tmp_path: Path, where: str
) -> None:
    """A model the server's config lacks (OpenCode's ProviderModelNotFoundError, no request
    made) or one the provider answers 404 for: no attempt can succeed, so one execution (the
    strict fake would count a second request as a failure), the run failed as unknown_model."""
    repo = make_repo(tmp_path / "proj")
    chunk = make_chunk(store, repo)
    name = "nope-model" if where == "opencode's config" else "fake-model"
    if where == "the provider":
        oc.script(
            openai_error(
                404,
                "The model `fake-model` does not exist or you do not have access to it.",
                error_type="invalid_request_error",
                code="model_not_found",
            )
        )
    ex = OpenCodeExecutor(oc_config(name="glm", model=name))
    result = run_chunk(store, make_config(), repo, chunk, executor=ex)
    assert result.status == "failed" and result.iterations == 1, result.reason
    assert result.reason.startswith(
        f"unknown_model: executor 'glm' (opencode) cannot use model {name!r}: "
    )
    said = "Model not found: fake/nope-model" if name == "nope-model" else "HTTP 404"
    assert said in result.reason and "not retried" in result.reason
    assert "\n" not in result.reason
    [execution] = store.query_dicts("SELECT status, exit_reason FROM executions")
    assert execution["status"] == "error"
    assert execution["exit_reason"].startswith("unknown_model: ")


# the providers' answers to an account out of credit, both 429s OpenCode retries five times:
# OpenAI's insufficient_quota, z.ai's 1113 (quoted in vercel/ai #9290, zai-org/GLM-5 #148)
OPENAI_QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, read the docs: "
    "https://platform.openai.com/docs/guides/error-codes/api-errors."
)
ZAI_BALANCE = "Insufficient balance or no resource package. Please recharge."


@pytest.mark.agents
@pytest.mark.parametrize("provider", ["openai", "z.ai"])
def test_real_opencode_out_of_credit_stops_the_chunk_run_at_once(
    oc: FakeModelServer, store: Any, tmp_path: Path, provider: str
) -> None:
    """The provider's account is out of credit: OpenCode gave up on the 429 after its retries,
    and the loop took it for a rate limit, pausing 60 s at a time for a reset that never comes.
    It now ends the chunk run after one execution (the strict fake would count another request
    as a failure), recorded as billing, saying what to do."""
    repo = make_repo(tmp_path / "proj")
    chunk = make_chunk(store, repo)
    if provider == "openai":
        turn = openai_error(429, OPENAI_QUOTA, error_type="insufficient_quota")
        turn = replace(turn, error={"error": {**turn.error["error"], "code": "insufficient_quota"}})
    else:  # z.ai's body is this alone
        turn = replace(openai_error(429), error={"error": {"code": "1113", "message": ZAI_BALANCE}})
    for _ in range(6):  # its first try and five retries
        oc.script(turn)
    progress: list[Any] = []
    ex = OpenCodeExecutor(oc_config(name="glm"))
    result = run_chunk(store, make_config(), repo, chunk, executor=ex, on_progress=progress.append)
    assert result.status == "failed" and result.iterations == 1, result.reason
    assert result.reason.startswith(
        "billing: executor 'glm' (opencode) is out of credit or its plan does not include this "
        "use: APIError: "
    )
    said = OPENAI_QUOTA if provider == "openai" else ZAI_BALANCE
    assert said in result.reason and "HTTP 429" in result.reason and "\n" not in result.reason
    assert result.reason.endswith(
        "not retried: add credits or change plan, then run the chunk again"
    )
    assert not [p for p in progress if p.kind == "pause"]  # no wait for a reset
    [execution] = store.query_dicts("SELECT status, exit_reason FROM executions")
    assert execution["status"] == "error" and execution["exit_reason"].startswith("billing: ")


@requires_opencode
@pytest.mark.agents
def test_real_opencode_anthropic_out_of_credit_is_billing(
    git_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenCode's own Anthropic provider answered 400 "Your credit balance is too low" (not
    retried by OpenCode): a session error the loop ran again, to fail alike; now ``billing``,
    saying to add credits."""
    with FakeModelServer() as model:  # strict: one request, no retry
        model.script(anthropic_error(400, CREDIT_TOO_LOW, error_type="invalid_request_error"))
        key = {"ANTHROPIC_API_KEY": "sk-ant-fake-key-for-tests"}
        outcome = run_on_anthropic(f"{model.base_url}/v1", key, git_repo, tmp_path, monkeypatch)
    assert (outcome.status, outcome.exit_reason) == ("error", "billing"), outcome
    assert CREDIT_TOO_LOW in (outcome.error or "") and "HTTP 400" in (outcome.error or "")
    assert "add credits" in (outcome.error or "") and outcome.retry_after_s is None


@pytest.mark.agents
def test_real_opencode_cancel_aborts_the_session(oc: FakeModelServer, git_repo: Path) -> None:
    oc.script(openai_text("too late", delay_s=60))
    cancel = threading.Event()
    asked = len(oc.model_requests)

    def cancel_once_the_model_is_called() -> None:
        deadline = time.monotonic() + 60
        while len(oc.model_requests) == asked and time.monotonic() < deadline:
            time.sleep(0.05)
        cancel.set()

    threading.Thread(target=cancel_once_the_model_is_called, daemon=True).start()
    ex = OpenCodeExecutor(oc_config())
    outcome, _ = run(ex, Task("hi", git_repo), cancel)
    assert outcome.status == "cancelled"
    status = httpx.get(
        f"{ex.url}/session/status",
        params={"directory": str(git_repo.resolve())},
        timeout=5,
        trust_env=False,
    ).json()
    assert status.get(outcome.session_id, {"type": "idle"})["type"] == "idle"


@pytest.mark.agents
def test_real_opencode_cancelled_mid_tool_call_costs_unknown_not_0(
    oc: FakeModelServer, git_repo: Path, store: Any
) -> None:
    """Ctrl-C while the agent's tool runs: the step under way never reports its tokens and
    OpenCode's session totals read 0 after the abort. The execution is recorded with cost
    NULL, marked incomplete, and counted unpriced in `usage specs`, never as $0.00."""
    from specwright import queries as Q

    started = git_repo.resolve() / "started"
    oc.script(
        openai_tool_call(
            "bash",
            {"command": f"touch {started} && sleep 30", "description": "wait"},
            prompt_tokens=1400,
            completion_tokens=40,
        )
    )
    cancel = threading.Event()

    def cancel_once_the_tool_runs() -> None:
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        cancel.set()

    threading.Thread(target=cancel_once_the_tool_runs, daemon=True).start()
    rec = ExecutionRecorder(store, role="executor", backend="opencode", executor="glm")
    outcome = run_execution(OpenCodeExecutor(oc_config()), Task("Wait", git_repo), rec, cancel)
    assert outcome.status == "cancelled"
    row = stored_execution(store, rec.id)
    assert (row["cost_usd"], row["cost_source"]) == (None, "incomplete")
    assert (row["reported_cost_usd"], row["computed_cost_usd"]) == (None, None)  # nor a part
    by = Q.cost_by(store, "executor").to_dict("records")
    assert [(r["executor"], r["unpriced"]) for r in by] == [("glm", 1)]
    assert pd.isna(by[0]["cost_usd"])  # unknown, not 0


@pytest.mark.agents
def test_real_opencode_check_past_its_timeout_says_its_cost_is_unknown(
    oc: FakeModelServer, tmp_path: Path, cli: Any
) -> None:
    """`agents check` printed the agent's own figure: OpenCode's session totals, 0 after the
    abort at the timeout, so a check cut short said cost_usd 0.0000. The error names the limit
    it ran past (`--timeout`), not as the executor's timeout_s (its default, 1800 s here)."""
    root = tmp_path / "proj"
    (root / ".handoff").mkdir(parents=True)
    (root / ".handoff" / "config.yaml").write_text(
        "tools:\n  executors:\n    glm: {type: opencode, provider: fake, model: fake-model}\n"
        "defaults:\n  executor: glm\n"
    )
    oc.script(openai_text("too late", delay_s=60))
    # 8 s: the server's first prompt (a fresh server's, in a new directory) takes ~5 s to reach
    # the model here; with 3 s, the check ended before it, the turn was left to the next test
    r = cli("-C", str(root), "--json", "agents", "check", "glm", "--timeout", "8")
    result = json.loads(r.out)
    assert (result["status"], result["exit_reason"]) == ("killed", "timeout"), r.err
    assert result["cost_usd"] is None, result  # unknown, not 0
    assert result["cost_source"] == "incomplete"
    assert "ran past its time limit (8 s) and was aborted" in result["error"], result
    assert "timeout_s" not in result["error"]


# --- transport failures ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_server_down_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It says where the URL came from: OPENCODE_URL set (change it) or the config (set it)."""
    monkeypatch.setenv("OPENCODE_URL", f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(AgentError, match=r"is not reachable.*serve-opencode.*change OPENCODE_URL"):
        run(OpenCodeExecutor(oc_config()), Task("hi", tmp_path))
    monkeypatch.delenv("OPENCODE_URL")
    down = oc_config(url=f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(AgentError, match=r"is not reachable.*serve.*`, or set OPENCODE_URL$"):
        run(OpenCodeExecutor(down), Task("hi", tmp_path))


@pytest.mark.parametrize(
    "url", ["http://[::1", "http://127.0.0.1:abc", "127.0.0.1:4096", "ftp://x"]
)
def test_a_malformed_url_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    from specwright.errors import ConfigError

    monkeypatch.setenv("OPENCODE_URL", url)
    with pytest.raises(ConfigError, match=r"^OPENCODE_URL: expected an http\(s\) URL such as"):
        run(OpenCodeExecutor(oc_config()), Task("hi", tmp_path))


class _NotOpenCode(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html>nginx</html>"
        self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_wrong_url_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _NotOpenCode)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("OPENCODE_URL", f"http://127.0.0.1:{httpd.server_address[1]}")
        with pytest.raises(AgentError, match=r"is not an OpenCode server: .*HTTP 404"):
            run(OpenCodeExecutor(oc_config()), Task("hi", tmp_path))
    finally:
        httpd.shutdown()
        httpd.server_close()


def _stand_in(routes: dict[str, httpx.Response]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        for prefix, response in routes.items():
            if path == prefix or (prefix.endswith("*") and path.startswith(prefix[:-1])):
                return response
        return httpx.Response(404, json={"error": f"no route {path}"})

    return httpx.MockTransport(handler)


def _sse(*events: dict[str, Any]) -> httpx.Response:
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode()
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)


HEALTHY = httpx.Response(200, json={"healthy": True, "version": "1.18.33"})


def test_stream_dropped_mid_run_is_a_distinct_error(tmp_path: Path) -> None:
    transport = _stand_in(
        {
            "/global/health": HEALTHY,
            "/event": _sse(
                {"type": "server.connected", "properties": {}},
                {
                    "type": "session.status",
                    "properties": {"sessionID": "ses_1", "status": {"type": "busy"}},
                },
            ),
            "/session": httpx.Response(200, json={"id": "ses_1"}),
            "/session/ses_1/prompt_async": httpx.Response(204),
        }
    )
    outcome, _ = run(OpenCodeExecutor(oc_config(), transport=transport), Task("hi", tmp_path))
    assert (outcome.status, outcome.exit_reason) == ("error", "stream_dropped")
    assert "event stream" in (outcome.error or "") and "ended mid-run" in (outcome.error or "")


def test_session_create_refused(tmp_path: Path) -> None:
    transport = _stand_in(
        {
            "/global/health": HEALTHY,
            "/event": _sse({"type": "server.connected", "properties": {}}),
            "/session": httpx.Response(400, json={"error": "unknown provider fake"}),
        }
    )
    with pytest.raises(AgentError, match=r"cannot create a session: HTTP 400.*unknown provider"):
        run(OpenCodeExecutor(oc_config(), transport=transport), Task("hi", tmp_path))


def test_password_protected_server(tmp_path: Path) -> None:
    transport = _stand_in({"/global/health": httpx.Response(401, text="unauthorized")})
    with pytest.raises(AgentError, match="OPENCODE_SERVER_PASSWORD"):
        run(OpenCodeExecutor(oc_config(), transport=transport), Task("hi", tmp_path))


@requires_opencode
@pytest.mark.agents
def test_a_wrong_server_password_is_said_to_be_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server started with OPENCODE_SERVER_PASSWORD, ours set but wrong: the error said to
    set the variable that was set; it says the password was refused, naming the user."""
    (tmp_path / "server-home").mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "server-home"),
        **OFFLINE_ENV,
        "OPENCODE_SERVER_PASSWORD": "right-password-123",
    }
    server = OpenCodeServer(OPENCODE_BIN, tmp_path, env, ready_timeout_s=120).start()
    try:
        monkeypatch.setenv("OPENCODE_URL", str(server.url))
        monkeypatch.setenv("OPENCODE_SERVER_PASSWORD", "wrong-password-456")
        with pytest.raises(
            AgentError,
            match=r"refused the password in OPENCODE_SERVER_PASSWORD "
            r"\(user 'opencode'\): check it and OPENCODE_SERVER_USERNAME$",
        ):
            run(OpenCodeExecutor(oc_config()), Task("hi", tmp_path))
        monkeypatch.delenv("OPENCODE_SERVER_PASSWORD")
        with pytest.raises(AgentError, match=r"wants a password: set OPENCODE_SERVER_PASSWORD"):
            run(OpenCodeExecutor(oc_config()), Task("hi", tmp_path))
    finally:
        server.stop()


def test_the_version_a_server_reports_is_listed_as_bounded_text() -> None:
    """`agents list` showed whatever the health answer held as the version: a 100 KB string
    whole, a JSON object as one."""
    for version, shown in (("x" * 100_000, "x" * 200), ({"major": 1}, "{'major': 1}")):
        health = httpx.Response(200, json={"healthy": True, "version": version})
        ex = OpenCodeExecutor(oc_config(), transport=_stand_in({"/global/health": health}))
        assert ex.probe()["version"] == shown


def test_opencode_config_errors() -> None:
    with pytest.raises(ConfigError, match="permission_policy 'maybe'"):
        OpenCodeExecutor(oc_config(permission_policy="maybe"))
    ex = OpenCodeExecutor(executor_config(type="opencode", model="glm-4.7"))
    with pytest.raises(ConfigError, match="needs a provider"):
        ex._model()
    split = OpenCodeExecutor(executor_config(type="opencode", model="zai/glm-4.7"))
    assert split._model() == {"providerID": "zai", "modelID": "glm-4.7"}
