"""Every exchange with an OpenCode server ends in bounded time, however the server misbehaves:
it trickles an answer a byte at a time (httpx's read timeout is per read, so that alone never
ends), sends headers and then nothing, says nothing, closes mid-body, or keeps an event stream
alive with comments only. The executor's ``timeout_s`` (1-2 s here) bounds each exchange and the
stream; a cancel (what the run's wall time sets) stops one mid-way; the session is aborted on
the way out; the error is one line naming the server, the exchange and the limit, and the store
is left consistent. Real HTTP on 127.0.0.1 (tests/support_opencode.py), the real executor and
`specwright run`; a Claude Code CLI that hangs silently or mid-line is bounded too.

Each run is given ``CAP`` seconds to end (many times its limits): one still going then is a
hang, reported as such rather than left to the suite's timeout."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from specwright.agents import Task, opencode, run_execution
from specwright.agents.claude_code import ClaudeCodeExecutor
from specwright.agents.opencode import OpenCodeExecutor
from specwright.errors import AgentError
from specwright.model import AgentEvent
from specwright.recorder import ExecutionRecorder
from specwright.store import Store
from tests.conftest import run_specwright
from tests.support_agents import executor_config, fake_cli, stored_events, stored_execution
from tests.support_loop import make_repo, no_running_rows, rows
from tests.support_opencode import SESSION, Deaf, Misbehaving

CAP = 12.0  # seconds a run gets to end before it counts as a hang (its limits are ~1 s)
ABORT = f"POST /session/{SESSION}/abort"


@pytest.fixture
def server() -> Iterator[Misbehaving]:
    with Misbehaving(gap=0.1) as srv:
        yield srv


def executor(url: str, timeout_s: float = 1.0) -> OpenCodeExecutor:
    return OpenCodeExecutor(
        executor_config(type="opencode", provider="p", model="m", url=url, timeout_s=timeout_s)
    )


def ends(fn: Callable[[], Any], cap: float = CAP) -> Any:
    """``fn()``'s result or the exception it raised, asserting it came within ``cap``."""
    box: dict[str, Any] = {}

    def call() -> None:
        try:
            box["result"] = fn()
        except Exception as exc:
            box["result"] = exc

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(cap)
    assert not worker.is_alive(), f"still running after {cap} s: it hangs"
    return box["result"]


def recorded(store: Store, ex: OpenCodeExecutor, tmp_path: Path, **kw: Any) -> tuple[Any, str]:
    """One run recorded in ``store``: its outcome (or error) and its execution id."""
    rec = ExecutionRecorder(store, role="executor", backend="opencode", executor=ex.name)
    result = ends(lambda: run_execution(ex, Task("hi", tmp_path, **kw), rec))
    return result, rec.id


# --- one exchange at a time -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "how", "exchange"),
    [
        ("GET /global/health", "trickle", "cannot check its health: GET /global/health"),
        ("GET /global/health", "trickle-headers", "cannot check its health: GET /global/health"),
        ("POST /session", "trickle", "cannot create a session: POST /session"),
        ("POST /session", "silent", "cannot create a session: POST /session"),
        (
            "POST /session/*/prompt_async",
            "trickle",
            f"cannot send the prompt: POST /session/{SESSION}/prompt_async",
        ),
        (
            "POST /session/*/prompt_async",
            "headers-only",
            f"cannot send the prompt: POST /session/{SESSION}/prompt_async",
        ),
    ],
)
def test_an_answer_that_never_completes_fails_the_run_by_its_timeout(
    server: Misbehaving, store: Store, tmp_path: Path, route: str, how: str, exchange: str
) -> None:
    server.behave[route] = how
    error, execution = recorded(store, executor(server.url), tmp_path)
    assert isinstance(error, AgentError), error
    message = str(error)
    assert message.startswith(f"OpenCode server at {server.url}: {exchange}: no complete answer")
    assert message.endswith("s (executor 'agent' timeout_s: 1 s)") and "\n" not in message
    # a prompt that may have landed leaves no session running
    assert (ABORT in server.requests) == ("prompt" in exchange)
    row = stored_execution(store, execution)
    assert row["status"] == "error" and row["exit_reason"] == f"agent_error: {message}"


def test_a_port_that_accepts_and_never_answers(store: Store, tmp_path: Path) -> None:
    with Deaf() as deaf:
        error, _ = recorded(store, executor(deaf.url), tmp_path)
    assert isinstance(error, AgentError)
    assert str(error).startswith(
        f"OpenCode server at {deaf.url}: cannot check its health: GET /global/health: "
        "no complete answer within "
    )
    assert str(error).endswith("(executor 'agent' timeout_s: 1 s)")


def test_the_health_check_alone_is_bounded_by_the_timeout(server: Misbehaving) -> None:
    """What `specwright run` and `agents list` ask before anything is recorded."""
    server.behave["GET /global/health"] = "trickle"
    error = ends(executor(server.url).health)
    assert isinstance(error, AgentError) and "timeout_s: 1 s" in str(error)


@pytest.mark.parametrize("how", ["comments", "silent", "headers-only"])
def test_an_event_stream_that_never_connects(server: Misbehaving, tmp_path: Path, how: str) -> None:
    server.behave["GET /event"] = how
    error = ends(lambda: executor(server.url).execute(Task("hi", tmp_path), _drop, _never()))
    assert isinstance(error, AgentError)
    assert str(error).startswith(
        f"OpenCode server at {server.url}: cannot subscribe to /event (no server.connected within "
    )
    assert str(error).endswith(", executor 'agent' timeout_s: 1 s)")
    assert "POST /session" not in server.requests


def test_an_answer_cut_mid_body_names_the_exchange(server: Misbehaving, tmp_path: Path) -> None:
    server.behave["POST /session"] = "close-mid-body"
    error = ends(lambda: executor(server.url).execute(Task("hi", tmp_path), _drop, _never()))
    assert isinstance(error, AgentError)
    assert str(error).startswith(
        f"OpenCode server at {server.url}: cannot create a session: POST /session: "
        "RemoteProtocolError: peer closed connection"
    )


# --- while the session runs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "route"),
    [
        ("busy", None),  # keep-alive comments, never idle
        ("busy", "GET /session/status"),  # ...and asking whether it is idle trickles
        ("busy", "POST /session/*/abort"),  # ...and the abort sent at the timeout trickles
    ],
)
def test_a_session_that_never_ends_is_aborted_at_the_timeout(
    server: Misbehaving,
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stream: str,
    route: str | None,
) -> None:
    monkeypatch.setattr(opencode, "POLL_IDLE_S", 0.2)  # ask early whether the session is idle
    server.status = {SESSION: {"type": "busy"}}
    server.behave["GET /event"] = stream
    if route:
        server.behave[route] = "trickle"
    outcome, execution = recorded(store, executor(server.url), tmp_path)
    assert (outcome.status, outcome.exit_reason) == ("killed", "timeout"), outcome
    assert outcome.error == (
        f"the session on {server.url} ran past its time limit (1 s) and was aborted"
    )
    assert server.requests.count(ABORT) == 1
    if route == "GET /session/status":
        assert "GET /session/status" in server.requests
    row = stored_execution(store, execution)
    assert (row["status"], row["exit_reason"]) == ("killed", f"timeout: {outcome.error}")


def test_an_answer_to_a_permission_that_never_lands_fails_the_run(
    server: Misbehaving, store: Store, tmp_path: Path
) -> None:
    """Unanswered, the session would wait for it until the timeout: the run fails at once."""
    server.behave["GET /event"] = "asks"
    server.behave["POST /permission/*/reply"] = "trickle"
    error, execution = recorded(store, executor(server.url, timeout_s=2.0), tmp_path)
    assert isinstance(error, AgentError)
    assert str(error).startswith(
        f"OpenCode server at {server.url}: cannot answer a permission: "
        "POST /permission/per_1/reply: no complete answer within "
    )
    assert str(error).endswith(" s (executor 'agent' timeout_s: 2 s)")
    assert server.requests.count(ABORT) == 1
    row = stored_execution(store, execution)
    assert (row["status"], row["exit_reason"]) == ("error", f"agent_error: {error}")
    steps = [e["text"] for e in stored_events(store, execution) if e["type"] == "step"]
    assert "permission.asked edit" in steps


def test_a_session_failing_after_a_model_call_keeps_the_calls_tokens(
    server: Misbehaving, store: Store, tmp_path: Path
) -> None:
    """The session's server stops answering after a step told its tokens and cost: the
    execution was recorded with 0 tokens and no cost, as if the call had been free. Now its row
    has what the step told, a lower bound (the cost itself stays unknown, "incomplete")."""
    server.behave["GET /event"] = "calls-then-asks"
    server.behave["POST /permission/*/reply"] = "trickle"
    error, execution = recorded(store, executor(server.url, timeout_s=2.0), tmp_path)
    assert isinstance(error, AgentError)
    [row] = store.query(
        "SELECT status, input_tokens, output_tokens, cache_read_tokens, reported_cost_usd, "
        "cost_usd, cost_source FROM executions WHERE id = ?",
        [execution],
    )
    assert row == ("error", 1200, 40, 200, 0.00426, None, "incomplete")


def test_totals_that_trickle_leave_the_steps_usage(server: Misbehaving, tmp_path: Path) -> None:
    server.behave[f"GET /session/{SESSION}"] = "trickle"
    outcome = ends(lambda: executor(server.url).execute(Task("hi", tmp_path), _drop, _never()))
    assert (outcome.status, outcome.final_text) == ("ok", "done")
    assert outcome.raw is None  # the totals never came
    assert ABORT not in server.requests  # the session ended by itself


def test_a_cancel_stops_an_exchange_mid_way_and_aborts(server: Misbehaving, tmp_path: Path) -> None:
    """The run's wall time reaches the executor as a cancel: a trickling prompt does not
    hold it up to the executor's (long) timeout."""
    server.behave["POST /session/*/prompt_async"] = "trickle"
    cancel = threading.Event()
    prompt = f"POST /session/{SESSION}/prompt_async"

    def cancel_once_the_prompt_is_sent() -> None:
        while prompt not in server.requests and not server.closing.wait(0.01):
            pass
        cancel.set()

    threading.Thread(target=cancel_once_the_prompt_is_sent, daemon=True).start()
    ex = executor(server.url, timeout_s=600)
    outcome = ends(lambda: ex.execute(Task("hi", tmp_path), _drop, cancel))
    assert (outcome.status, outcome.exit_reason) == ("cancelled", "cancelled")
    assert server.requests.count(ABORT) == 1


def test_a_cancel_during_the_health_check_is_a_cancel_not_a_crash(
    server: Misbehaving, tmp_path: Path
) -> None:
    """Ctrl-C or SIGTERM as an execution starts (the health check under way): the run is
    cancelled; before, joining the event reader that was not started yet raised RuntimeError,
    recorded as a crash."""
    server.behave["GET /global/health"] = "trickle"
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    ex = executor(server.url, timeout_s=600)
    outcome = ends(lambda: ex.execute(Task("hi", tmp_path), _drop, cancel))
    assert (outcome.status, outcome.exit_reason) == ("cancelled", "cancelled")


def _never() -> threading.Event:
    return threading.Event()


def _drop(event: AgentEvent) -> None:
    pass


# --- `specwright run` ------------------------------------------------------------------------


def _project(tmp_path: Path, url: str, timeout_s: float) -> Path:
    config = {
        "tools": {
            "executors": {
                "oc": {"type": "opencode", "url": url, "provider": "p", "model": "m"},
            }
        },
        "defaults": {"executor": "oc", "reviewer": "checks", "maxIterations": 1},
        "verify": [{"name": "nobug", "command": "true", "timeout_s": 30}],
    }
    config["tools"]["executors"]["oc"]["timeout_s"] = timeout_s
    repo = make_repo(
        tmp_path / "repo", {".handoff/config.yaml": yaml.safe_dump(config, sort_keys=False)}
    )
    for args in (("spec", "new", "Demo"), ("chunk", "add", "demo", "Add mul", "--file", "calc.py")):
        done = run_specwright("-C", str(repo), *args, timeout=60)
        assert done.returncode == 0, done.stderr
    return repo


@pytest.mark.parametrize(
    ("timeout_s", "wall_time", "reason"),
    [
        (
            2.0,
            None,
            "agent_error: OpenCode server at {url}: cannot send the prompt: POST /session/"
            f"{SESSION}/prompt_async: no complete answer within ",
        ),
        (600.0, "2", "wall_time: wall-time limit of 2s reached"),
    ],
)
def test_specwright_run_ends_with_one_line_and_a_consistent_store(
    server: Misbehaving,
    tmp_path: Path,
    timeout_s: float,
    wall_time: str | None,
    reason: str,
) -> None:
    server.behave["POST /session/*/prompt_async"] = "trickle"
    repo = _project(tmp_path, server.url, timeout_s)
    args = ["-C", str(repo), "run", "demo:1", "--no-baseline"]
    if wall_time:
        args += ["--wall-time", wall_time]
    # the agent's stop grace is 30 s: a run that needed it would not end within the cap
    done = run_specwright(*args, timeout=25)
    assert done.returncode == 1, done.stderr
    last = done.stdout.splitlines()[-1]
    assert last.startswith(f"failed after 1 iteration(s): {reason.format(url=server.url)}")
    store = Store(Path(tmp_path / "db" / "specwright.duckdb"))
    no_running_rows(store)
    [run] = rows(store, "SELECT status, reason FROM runs")
    assert run["status"] == "failed" and run["reason"] in last
    if not wall_time:
        assert run["reason"].endswith("(executor 'oc' timeout_s: 2 s) (after 2 attempt(s))")
    executions = rows(store, "SELECT status FROM executions ORDER BY started_at")
    expected = ["cancelled"] if wall_time else ["error", "error"]  # one retry of an agent error
    assert [e["status"] for e in executions] == expected
    assert server.requests.count(ABORT) == len(expected)


# --- Claude Code ----------------------------------------------------------------------------

SILENT = "import time\nwhile True:\n    time.sleep(1)\n"
PARTIAL = (
    "import sys, time\nwhile True:\n    sys.stdout.write('x' * 100)\n"
    "    sys.stdout.flush()\n    time.sleep(0.01)\n"
)


@pytest.mark.parametrize("body", [SILENT, PARTIAL], ids=["prints nothing", "a partial line"])
@pytest.mark.parametrize("limit", ["timeout", "wall time"])
def test_a_claude_cli_that_never_ends_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, limit: str
) -> None:
    monkeypatch.setenv("CLAUDE_PATH", str(fake_cli(tmp_path / "bin", "claude", body)))
    cancel = threading.Event()
    task = Task("hi", tmp_path, timeout_s=1.0 if limit == "timeout" else None)
    if limit == "wall time":  # the loop cancels the agent when the run's wall time is up
        threading.Timer(1.0, cancel.set).start()
    events: list[AgentEvent] = []
    ex = ClaudeCodeExecutor(executor_config())
    outcome = ends(lambda: ex.execute(task, events.append, cancel))
    expected = ("killed", "timeout") if limit == "timeout" else ("cancelled", "cancelled")
    assert (outcome.status, outcome.exit_reason) == expected
