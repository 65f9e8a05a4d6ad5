"""The CLI adapters' transport, driven with fake CLIs: real executables printing recorded
streams, so argv, environment, stdin, exit codes, cancel, timeouts and big or broken output are
tested through real processes (the real CLIs are in test_agents_claude.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from specwright.agents import Task, run_execution
from specwright.agents.base import make_executor
from specwright.agents.claude_code import ClaudeCodeExecutor, find_claude
from specwright.agents.command import CommandExecutor
from specwright.agents.orphans import process_start, stop_orphans
from specwright.agents.process import ProcessStream
from specwright.errors import AgentError, AgentStartError, ConfigError
from specwright.model import AgentEvent, StepEvent
from specwright.recorder import MAX_OUTPUT_CHARS, ExecutionRecorder
from tests.support_agents import (
    STREAMS,
    alive,
    executor_config,
    fake_cli,
    fake_codex,
    group_members,
    stored_events,
    stored_execution,
    wait_gone,
)

FAKE_CLAUDE = """
import json, os, subprocess, sys, time
dump = os.environ.get("FAKE_DUMP")
if dump:
    stdin = sys.stdin.read() if not os.isatty(0) else None
    with open(dump, "w") as fh:
        json.dump({"argv": sys.argv[1:], "env": dict(os.environ), "stdin": stdin,
                   "cwd": os.getcwd()}, fh)
stream = os.environ.get("FAKE_STREAM")
if stream:
    with open(stream, "rb") as fh:
        for line in fh:
            sys.stdout.buffer.write(line)
            sys.stdout.buffer.flush()
mode = os.environ.get("FAKE_MODE", "")
if mode in ("hang", "orphan"):
    child = subprocess.Popen(["sleep", "300"])
    print(json.dumps({"type": "system", "subtype": "child", "pid": child.pid}), flush=True)
    if mode == "hang":
        time.sleep(300)
sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
"""


@pytest.fixture
def claude(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = fake_cli(tmp_path / "bin", "claude", FAKE_CLAUDE)
    monkeypatch.setenv("CLAUDE_PATH", str(path))
    return path


def run(
    executor: Any, task: Task, cancel: threading.Event | None = None
) -> tuple[Any, list[AgentEvent]]:
    events: list[AgentEvent] = []
    outcome = executor.execute(task, events.append, cancel or threading.Event())
    return outcome, events


def child_pid(events: list[AgentEvent]) -> int:
    step = next(e for e in events if isinstance(e, StepEvent) and e.name == "system/child")
    assert step.raw is not None
    return int(step.raw["pid"])


def process_pid(events: list[AgentEvent]) -> int:
    step = next(e for e in events if isinstance(e, StepEvent) and e.name == "process")
    assert step.raw is not None
    return int(step.raw["pid"])


# --- claude: command line, environment, executable ------------------------------------------


def test_claude_argv_env_and_stdin(
    claude: Path, tmp_path: Path, git_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key-123")
    monkeypatch.setenv("SOME_UNRELATED_SECRET_TOKEN", "do-not-pass")
    dump = tmp_path / "dump.json"
    ex = ClaudeCodeExecutor(executor_config(max_turns=7, env={"FROM_CONFIG": "1"}))
    task = Task(
        "Create hello.txt",
        git_repo,
        system_prompt="RULES",
        env={"FAKE_DUMP": str(dump), "FAKE_STREAM": str(STREAMS / "claude-code/acceptEdits.jsonl")},
    )
    outcome, events = run(ex, task)
    seen = json.loads(dump.read_text())
    assert seen["argv"] == [
        "-p",
        "Create hello.txt",
        "--output-format",
        "stream-json",
        "--verbose",
        "--model",
        "claude-sonnet-4-5",
        "--permission-mode",
        "acceptEdits",
        "--max-turns",
        "7",
        "--append-system-prompt=RULES",
    ]
    env = seen["env"]
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert env["CLAUDE_CONFIG_DIR"] and env["CLAUDE_CONFIG_DIR"] != os.environ["HOME"]
    assert not Path(env["CLAUDE_CONFIG_DIR"]).exists()  # per run, removed afterwards
    # named for its process, so the sweep after a kill -9 knows it (a killed run's stayed)
    from specwright.agents.orphans import _SCRATCH_NAME

    named = _SCRATCH_NAME.fullmatch(Path(env["CLAUDE_CONFIG_DIR"]).name)
    assert named and named[1] == str(os.getpid()), env["CLAUDE_CONFIG_DIR"]
    assert env["ANTHROPIC_API_KEY"] == "sk-ant-test-key-123" and env["FROM_CONFIG"] == "1"
    assert "SOME_UNRELATED_SECRET_TOKEN" not in env and "SPECWRIGHT_DB" not in env
    assert "IS_SANDBOX" not in env and "CLAUDE_PATH" not in env
    assert seen["stdin"] == ""  # /dev/null: claude would otherwise wait 3 s for input
    assert seen["cwd"] == str(git_repo.resolve())
    assert outcome.status == "ok" and outcome.usage.cost_usd == pytest.approx(0.008715)
    assert events[0].type == "step" and events[0].name == "process"


def test_claude_big_prompt_goes_by_stdin(claude: Path, tmp_path: Path, git_repo: Path) -> None:
    dump = tmp_path / "dump.json"
    prompt = "do it " * 40_000  # 240 KB: over the 128 KiB limit of one argv string
    ex = ClaudeCodeExecutor(executor_config())
    run(ex, Task(prompt, git_repo, env={"FAKE_DUMP": str(dump)}))
    seen = json.loads(dump.read_text())
    assert seen["stdin"] == prompt and prompt not in seen["argv"] and seen["argv"][0] == "-p"


def test_claude_prompt_starting_with_a_dash_goes_by_stdin(
    claude: Path, tmp_path: Path, git_repo: Path
) -> None:
    dump = tmp_path / "dump.json"
    ex = ClaudeCodeExecutor(executor_config())
    run(
        ex,
        Task(
            "--help is not what I mean",
            git_repo,
            system_prompt="- rule one",
            env={"FAKE_DUMP": str(dump)},
        ),
    )
    seen = json.loads(dump.read_text())
    assert seen["stdin"] == "--help is not what I mean"
    assert "--help is not what I mean" not in seen["argv"]
    assert "--append-system-prompt=- rule one" in seen["argv"]


def test_command_prompt_too_long_for_an_argument(git_repo: Path) -> None:
    ex = CommandExecutor(executor_config(type="command", argv=("echo", "{prompt}")))
    with pytest.raises(AgentError, match="pass a long prompt by stdin"):
        run(ex, Task("x" * 200_000, git_repo))


def test_bypass_permissions_only_in_a_worktree(
    claude: Path, tmp_path: Path, git_repo: Path
) -> None:
    ex = ClaudeCodeExecutor(executor_config(permission_mode="bypassPermissions"))
    with pytest.raises(AgentError, match="only inside a git worktree"):
        run(ex, Task("x", git_repo))
    tree = tmp_path / "wt"
    subprocess.run(
        ["git", "worktree", "add", "-q", "-b", "wt", str(tree)], cwd=git_repo, check=True
    )
    dump = tmp_path / "dump.json"
    run(ex, Task("x", tree, env={"FAKE_DUMP": str(dump)}))
    seen = json.loads(dump.read_text())
    assert seen["env"]["IS_SANDBOX"] == "1"
    assert "bypassPermissions" in seen["argv"]


def test_claude_config_errors() -> None:
    with pytest.raises(ConfigError, match="permission_mode 'yolo'"):
        ClaudeCodeExecutor(executor_config(permission_mode="yolo"))
    with pytest.raises(ConfigError, match="model is required"):
        ClaudeCodeExecutor(executor_config(model=None))
    assert isinstance(make_executor(executor_config()), ClaudeCodeExecutor)


def test_find_claude_order_and_errors(
    claude: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = fake_cli(tmp_path / "other", "claude", "print('x')")
    assert find_claude(str(other)) == str(claude)  # CLAUDE_PATH wins over the config
    monkeypatch.delenv("CLAUDE_PATH")
    assert find_claude(str(other)) == str(other)
    monkeypatch.setenv("PATH", str(other.parent))
    assert find_claude(None) == str(other)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(AgentError) as err:
        find_claude(None)
    assert all(word in str(err.value) for word in ("CLAUDE_PATH", "`path`", "PATH"))
    monkeypatch.setenv("CLAUDE_PATH", str(tmp_path / "nope"))
    with pytest.raises(AgentError, match=r"CLAUDE_PATH=.*nope: no executable"):
        find_claude(None)


def test_missing_workdir(claude: Path, tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="does not exist"):
        run(ClaudeCodeExecutor(executor_config()), Task("x", tmp_path / "missing"))


# --- claude: ending badly -------------------------------------------------------------------


def test_cancel_mid_run_leaves_no_process(claude: Path, git_repo: Path) -> None:
    cancel = threading.Event()
    events: list[AgentEvent] = []

    def on_event(event: AgentEvent) -> None:
        events.append(event)
        if isinstance(event, StepEvent) and event.name == "system/child":
            cancel.set()

    # the stream minus its result line, then the agent hangs with a child: a run mid-way
    lines = (STREAMS / "claude-code/acceptEdits.jsonl").read_text().splitlines()
    partial = git_repo.parent / "partial.jsonl"
    partial.write_text("\n".join(lines[:-1]) + "\n")
    task = Task("x", git_repo, env={"FAKE_MODE": "hang", "FAKE_STREAM": str(partial)})
    outcome = ClaudeCodeExecutor(executor_config()).execute(task, on_event, cancel)
    assert outcome.status == "cancelled" and outcome.exit_reason == "cancelled"
    leader, child = process_pid(events), child_pid(events)
    assert not alive(leader) and not alive(child)
    assert group_members(leader) == []
    assert [e.type for e in events].count("tool_call") == 1  # lines before the cancel are kept


def test_timeout_kills_the_group(claude: Path, git_repo: Path) -> None:
    ex = ClaudeCodeExecutor(executor_config())
    outcome, events = run(ex, Task("x", git_repo, timeout_s=1.0, env={"FAKE_MODE": "hang"}))
    assert (outcome.status, outcome.exit_reason) == ("killed", "timeout")
    assert not alive(child_pid(events)) and group_members(process_pid(events)) == []


def test_children_left_behind_are_killed(claude: Path, git_repo: Path) -> None:
    ex = ClaudeCodeExecutor(executor_config())
    outcome, events = run(ex, Task("x", git_repo, env={"FAKE_MODE": "orphan"}))
    assert not alive(child_pid(events))
    assert outcome.status == "error" and "without a result line" in (outcome.error or "")


def test_crash_without_result_line(claude: Path, git_repo: Path) -> None:
    ex = ClaudeCodeExecutor(executor_config())
    outcome, _ = run(ex, Task("x", git_repo, env={"FAKE_EXIT": "3"}))
    assert (outcome.status, outcome.exit_reason) == ("error", "no result (exit 3)")


# --- claude + recorder: the store -----------------------------------------------------------


def _record(store: Any, executor: Any, task: Task) -> tuple[Any, str]:
    rec = ExecutionRecorder(
        store, role="executor", backend=executor.backend, executor=executor.name
    )
    outcome = run_execution(executor, task, rec)
    return outcome, rec.id


def test_recorded_run_in_the_store_in_order(claude: Path, git_repo: Path, store: Any) -> None:
    ex = ClaudeCodeExecutor(executor_config())
    task = Task("x", git_repo, env={"FAKE_STREAM": str(STREAMS / "claude-code/preamble.jsonl")})
    outcome, exec_id = _record(store, ex, task)
    rows = stored_events(store, exec_id)
    assert [r["type"] for r in rows] == [
        "step",
        "step",
        "text",
        "tool_call",
        "tool_result",
        "text",
        "usage",
    ]
    assert [r["seq"] for r in rows] == list(range(1, 8))
    assert rows[3]["tool_name"] == "Write" and rows[3]["call_id"] == rows[4]["call_id"]
    assert json.loads(rows[3]["input"])["file_path"].endswith("hello.txt")
    row = stored_execution(store, exec_id)
    assert row["status"] == "ok" and row["exit_reason"] == "completed"
    assert (
        row["input_tokens"],
        row["output_tokens"],
        row["cache_read_tokens"],
        row["cache_write_tokens"],
    ) == (2500, 52, 200, 100)
    assert row["cost_usd"] == pytest.approx(0.008715) and row["cost_source"] == "reported"
    assert row["session_id"] == outcome.session_id and row["num_turns"] == 2
    assert row["model"] == "claude-sonnet-4-5" and row["event_count"] == 7


def test_50mb_tool_output_is_truncated_with_its_size_kept(
    claude: Path, git_repo: Path, store: Any, tmp_path: Path
) -> None:
    size = 50 * 1024 * 1024
    stream = tmp_path / "big.jsonl"
    lines = (STREAMS / "claude-code/acceptEdits.jsonl").read_text().splitlines()
    user = json.loads(lines[2])
    user["message"]["content"][0]["content"] = "y" * size
    user["tool_use_result"] = {"stdout": "y" * size}
    lines[2] = json.dumps(user)
    stream.write_text("\n".join(lines) + "\n")
    ex = ClaudeCodeExecutor(executor_config())
    outcome, exec_id = _record(store, ex, Task("x", git_repo, env={"FAKE_STREAM": str(stream)}))
    assert outcome.status == "ok"
    row = next(r for r in stored_events(store, exec_id) if r["type"] == "tool_result")
    assert row["output_len"] == size
    assert len(row["output"]) < MAX_OUTPUT_CHARS + 200 and "truncated" in row["output"]
    assert len(row["raw"]) < 20_000
    journal = store.journal.path_for(exec_id)
    assert journal.stat().st_size < 1_000_000  # the journal keeps the bounded row too


def test_malformed_lines_are_recorded_as_warnings(
    claude: Path, git_repo: Path, store: Any, tmp_path: Path
) -> None:
    good = (STREAMS / "claude-code/acceptEdits.jsonl").read_bytes().splitlines(keepends=True)
    stream = tmp_path / "bad.jsonl"
    stream.write_bytes(
        b"".join(
            [
                good[0],
                b'{"type":"assistant","message":{"id":"m","content":[{"type":"te\n',  # truncated
                b'{"type":"mystery","x":1}\n',
                b"\xff\xfe not utf-8 \x80\n",
                *good[1:],
            ]
        )
    )
    ex = ClaudeCodeExecutor(executor_config())
    outcome, exec_id = _record(store, ex, Task("x", git_repo, env={"FAKE_STREAM": str(stream)}))
    assert outcome.status == "ok"
    rows = stored_events(store, exec_id)
    warnings = [r for r in rows if r["type"] == "error" and r["tool_name"] == "warning"]
    assert len(warnings) == 4  # truncated JSON; unknown type; bad UTF-8 + then not JSON
    assert any("not valid JSON" in w["text"] for w in warnings)
    assert any("unknown event type 'mystery'" in w["text"] for w in warnings)
    assert any("invalid UTF-8" in w["text"] for w in warnings)
    assert all(w["is_error"] is False for w in warnings)
    assert [r["type"] for r in rows if r["type"] != "error"] == [
        "step",
        "step",
        "tool_call",
        "tool_result",
        "text",
        "usage",
    ]


def test_agent_error_is_recorded_then_raised(
    store: Any, git_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    ex = ClaudeCodeExecutor(executor_config())
    rec = ExecutionRecorder(store, role="executor", backend="claude-code")
    with pytest.raises(AgentError, match="claude executable not found"):
        run_execution(ex, Task("x", git_repo), rec)
    row = stored_execution(store, rec.id)
    assert row["status"] == "error" and "claude executable not found" in row["exit_reason"]
    assert stored_events(store, rec.id)[0]["type"] == "error"


# --- command executor -----------------------------------------------------------------------


def test_command_prompt_as_argument(git_repo: Path, store: Any) -> None:
    ex = CommandExecutor(
        executor_config(
            type="command",
            argv=("sh", "-c", 'echo "got: $1"; echo; echo "in $(pwd)"', "sh", "{prompt}"),
        )
    )
    outcome, exec_id = _record(store, ex, Task("hello there", git_repo))
    assert outcome.status == "ok" and outcome.exit_reason == "exit 0"
    texts = [r["text"] for r in stored_events(store, exec_id) if r["type"] == "text"]
    assert texts == ["got: hello there", f"in {git_repo.resolve()}"]
    assert outcome.final_text.endswith(f"in {git_repo.resolve()}")


def test_a_prompt_holding_a_placeholder_reaches_the_command_agent_as_written(
    git_repo: Path, store: Any
) -> None:
    """The placeholders were filled one after the other, so a `{model}`, `{workdir}` or
    `{system_prompt}` in the prompt itself (a chunk about templates) was replaced too: the
    agent was given another task than the one recorded."""
    prompt = "Render the {model} and {workdir} fields; keep {system_prompt} and {prompt} as is"
    ex = CommandExecutor(
        executor_config(
            type="command",
            model="gpt-5",
            argv=("sh", "-c", 'echo "$1"; echo "$2"', "sh", "{prompt}", "{model} in {workdir}"),
        )
    )
    outcome, exec_id = _record(store, ex, Task(prompt, git_repo, system_prompt="RULES"))
    assert outcome.ok
    texts = [r["text"] for r in stored_events(store, exec_id) if r["type"] == "text"]
    assert texts == [prompt, f"gpt-5 in {git_repo.resolve()}"]


def test_an_agent_whose_first_event_fails_to_record_is_not_left_running(
    git_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recorder failing on the "process" step (a full disk, say), between the start and
    the reading of the lines: the error reaches the caller and the agent's group is killed."""
    from specwright.agents.orphans import group_alive

    monkeypatch.setenv("SPECWRIGHT_RUNTIME_DIR", str(tmp_path / "runtime"))
    ex = CommandExecutor(
        executor_config(type="command", argv=("sh", "-c", "sleep 60 & wait", "sh", "{prompt}"))
    )
    started: list[int] = []

    def sink(event: AgentEvent) -> None:
        if isinstance(event, StepEvent):
            started.append(int(event.raw["pid"]))  # the group's leader (its own session)
            raise OSError("no space left on device")

    with pytest.raises(OSError, match="no space left"):
        ex.execute(Task("go", git_repo), sink, threading.Event())
    # (the shell may be killed before it ran a line: a pid file it wrote raced the kill)
    pgid = started[0]
    deadline = time.monotonic() + 10
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not group_alive(pgid)
    assert list((tmp_path / "runtime").glob("*.json")) == []


def test_command_prompt_by_stdin_and_exit_code(git_repo: Path) -> None:
    ex = CommandExecutor(
        executor_config(
            type="command",
            prompt_via="stdin",
            argv=("sh", "-c", "tr a-z A-Z; echo oops >&2; exit 4"),
        )
    )
    outcome, events = run(ex, Task("shout this", git_repo))
    assert [e.text for e in events if e.type == "text"] == ["SHOUT THIS"]
    assert (outcome.status, outcome.exit_reason, outcome.error) == ("error", "exit 4", "oops")
    assert events[-1].type == "error" and "exit 4: oops" in events[-1].message


def test_command_codex_parser(git_repo: Path) -> None:
    ex = CommandExecutor(
        executor_config(
            type="command",
            parser="codex",
            model="gpt-test",
            argv=("cat", str(STREAMS / "codex/exec-json.jsonl"), "{prompt}"),
        )
    )
    outcome, events = run(ex, Task("/dev/null", git_repo))
    assert outcome.status == "ok"
    assert outcome.session_id == "0199a213-81c0-7800-8aa1-bbab2a035a53"
    assert outcome.usage.output_tokens == 122 and outcome.final_text == "Created hello.txt."
    assert [e.tool for e in events if e.type == "tool_call"] == ["shell", "apply_patch", "shell"]


def test_a_codex_agent_whose_model_is_not_served_stops_the_chunk_run_at_once(
    git_repo: Path, store: Any
) -> None:
    """`codex exec --json` saying the API does not know its model (a 404 model_not_found): the
    chunk run retried it as an agent error, each attempt failing the same way; Claude Code's
    and OpenCode's unknown model stop it after one execution, naming the executor and model."""
    from specwright.loop import run_chunk
    from tests.support_loop import make_chunk, make_config

    ex = fake_codex("unknown-model", "gpt-nope-9")
    outcome, _ = run(ex, Task("hi", git_repo))
    assert (outcome.status, outcome.exit_reason) == ("error", "unknown_model")
    chunk = make_chunk(store, git_repo)
    result = run_chunk(store, make_config(), git_repo, chunk, executor=ex)
    assert result.status == "failed" and result.iterations == 1, result.reason
    assert result.reason.startswith(
        "unknown_model: executor 'codex' (command) cannot use model 'gpt-nope-9': unexpected "
        "status 404 Not Found: "
    )
    assert "not retried" in result.reason and "\n" not in result.reason
    [execution] = store.query_dicts(
        "SELECT status, exit_reason FROM executions WHERE run_id = ?", [result.run_id]
    )
    assert execution["status"] == "error" and execution["exit_reason"].startswith("unknown_model: ")


def test_a_codex_agent_whose_key_is_refused_stops_the_chunk_run_at_once(
    git_repo: Path, store: Any, tmp_path: Path
) -> None:
    """`codex exec --json` told a 401: retried as an agent error, every attempt refused alike."""
    from specwright.loop import run_chunk
    from tests.support_loop import make_chunk, make_config

    said = "unexpected status 401 Unauthorized: Incorrect API key provided"
    stream = tmp_path / "refused.jsonl"
    lines = [
        {"type": "error", "message": said},
        {"type": "turn.failed", "error": {"message": said}},
    ]
    stream.write_text("".join(json.dumps(line) + "\n" for line in lines))
    argv = ("sh", "-c", 'cat "$0"; exit 1', str(stream), "{prompt}")
    ex = CommandExecutor(executor_config(name="codex", type="command", parser="codex", argv=argv))
    result = run_chunk(store, make_config(), git_repo, make_chunk(store, git_repo), executor=ex)
    assert result.status == "failed" and result.iterations == 1, result.reason
    assert result.reason.startswith(
        f"auth: executor 'codex' (command) could not authenticate: {said}; not retried"
    )
    assert store.query("SELECT count(*) FROM executions")[0][0] == 1


def test_command_cancel_kills_the_group(git_repo: Path) -> None:
    cancel = threading.Event()
    events: list[AgentEvent] = []

    def on_event(event: AgentEvent) -> None:
        events.append(event)
        if event.type == "text":
            cancel.set()

    ex = CommandExecutor(
        executor_config(
            type="command", prompt_via="stdin", argv=("sh", "-c", "sleep 300 & echo $!; wait")
        )
    )
    outcome = ex.execute(Task("", git_repo), on_event, cancel)
    assert outcome.status == "cancelled"
    sleeper = int(next(e.text for e in events if e.type == "text"))
    assert not alive(sleeper) and group_members(process_pid(events)) == []


def test_command_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="argv is required"):
        CommandExecutor(executor_config(type="command"))
    with pytest.raises(ConfigError, match="no \\{prompt\\} placeholder"):
        CommandExecutor(executor_config(type="command", argv=("echo",)))
    with pytest.raises(ConfigError, match="parser 'nope'"):
        CommandExecutor(executor_config(type="command", argv=("echo", "{prompt}"), parser="nope"))
    mine = executor_config(type="command", argv=("echo", "{prompt}"), parser="no_such_mod:f")
    with pytest.raises(ConfigError) as caught:  # it named neither the executor nor the key
        CommandExecutor(mine)
    assert str(caught.value) == (
        "executor 'agent': parser 'no_such_mod:f': cannot import (No module named 'no_such_mod')"
    )
    ex = CommandExecutor(executor_config(type="command", argv=("no-such-agent-cli", "{prompt}")))
    with pytest.raises(AgentError, match="'no-such-agent-cli' not found"):
        run(ex, Task("x", tmp_path))
    assert ex.probe()["found"] is False


def test_secrets_given_only_to_the_agent_are_redacted(git_repo: Path, store: Any) -> None:
    ex = CommandExecutor(
        executor_config(
            type="command",
            prompt_via="stdin",
            env={"VENDOR_TOKEN": "tok-from-config-987654"},
            argv=("sh", "-c", 'echo "key=$AGENT_API_KEY token=$VENDOR_TOKEN"'),
        )
    )
    task = Task("", git_repo, env={"AGENT_API_KEY": "sk-only-for-the-agent-123456"})
    _, exec_id = _record(store, ex, task)
    texts = [r["text"] for r in stored_events(store, exec_id) if r["type"] == "text"]
    assert texts == ["key=[REDACTED:AGENT_API_KEY] token=[REDACTED:VENDOR_TOKEN]"]
    journal = store.journal.path_for(exec_id).read_text()
    assert "sk-only-for-the-agent" not in journal and "tok-from-config" not in journal


def test_a_failing_event_sink_does_not_leave_the_agent_running(
    claude: Path, git_repo: Path
) -> None:
    seen: list[AgentEvent] = []

    def on_event(event: AgentEvent) -> None:
        seen.append(event)
        if isinstance(event, StepEvent) and event.name == "system/child":
            raise RuntimeError("the store is on fire")

    ex = ClaudeCodeExecutor(executor_config())
    with pytest.raises(RuntimeError, match="on fire"):
        ex.execute(Task("x", git_repo, env={"FAKE_MODE": "hang"}), on_event, threading.Event())
    assert not alive(child_pid(seen)) and group_members(process_pid(seen)) == []


# --- when Specwright itself dies: the agent goes too, and recovery can find what it left ----

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux's"
)

SPAWNER = """
import os, sys, threading, time
from pathlib import Path
from specwright.agents.process import ProcessStream

def work():
    stream = ProcessStream(["sleep", "60"], cwd=Path.cwd(), env=dict(os.environ)).start()
    print(stream.proc.pid, flush=True)
    for _ in stream.lines(threading.Event()):
        pass

threading.Thread(target=work, daemon=True).start()
time.sleep(60)
"""


@linux_only
def test_the_agent_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", SPAWNER], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    agent = 0
    try:
        assert parent.stdout is not None
        agent = int(parent.stdout.readline())
        assert alive(agent)
        parent.kill()  # SIGKILL: no cleanup of ours runs
        parent.communicate(timeout=60)
        wait_gone(agent)
        assert not alive(agent)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.communicate(timeout=60)
        if agent and alive(agent):
            os.kill(agent, signal.SIGKILL)


@linux_only
def test_a_running_agent_is_registered_until_it_ends(
    git_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPECWRIGHT_RUNTIME_DIR", str(tmp_path / "runtime"))
    stream = ProcessStream(["sleep", "60"], cwd=git_repo, env=dict(os.environ)).start()
    assert stream.proc is not None
    [path] = (tmp_path / "runtime").glob("*.json")
    record = json.loads(path.read_text())
    pid = stream.proc.pid
    assert (record["pid"], record["pgid"], record["owner_pid"]) == (pid, pid, os.getpid())
    assert record["start"] == process_start(pid) is not None
    cancel = threading.Event()
    cancel.set()
    assert list(stream.lines(cancel)) == [] and stream.result.cancelled
    assert not path.exists() and not alive(pid)


@linux_only
def test_stop_orphans_stops_a_dead_owners_group_but_never_a_reused_pid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("SPECWRIGHT_RUNTIME_DIR", str(runtime))
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)
    owner, since, pid = 4_000_001, time.time(), sleeper.pid
    try:

        def record(**changes: Any) -> Path:
            path = runtime / f"{owner}-{pid}.json"
            values = {"pid": pid, "pgid": pid, "start": process_start(pid)}
            path.write_text(json.dumps({**values, "owner_pid": owner, "owner_since": 0, **changes}))
            return path

        stale = record(start="12345")  # the pid was given to another process since
        assert stop_orphans(owner, since) == [] and alive(pid)
        assert not stale.exists()  # that agent is over: its record goes
        later = record(owner_since=since + 60)  # another owner that got the same pid later
        assert stop_orphans(owner, since) == [] and alive(pid) and later.exists()
        assert stop_orphans(owner + 1, since) == [] and alive(pid)
        orphan = record()
        assert stop_orphans(owner, since, grace_s=10) == [pid]
        assert sleeper.wait(timeout=60) == -signal.SIGTERM
        assert group_members(pid) == [] and not orphan.exists()
    finally:
        sleeper.kill()
        sleeper.wait(timeout=60)


def test_an_agent_that_is_no_program_says_so(tmp_path: Path, git_repo: Path) -> None:
    """An executable file the system cannot run (a wrapper script without `#!`): one line
    saying so, not a hint about long prompts (the command line was a few hundred chars)."""
    wrapper = tmp_path / "claude"
    wrapper.write_text('exec /usr/local/bin/claude "$@"\n')  # no #! line
    wrapper.chmod(0o755)
    ex = ClaudeCodeExecutor(executor_config(path=str(wrapper)))
    with pytest.raises(AgentError) as caught:
        run(ex, Task("x", git_repo))
    assert str(caught.value) == (
        f"claude-code executor path {str(wrapper)!r}: "
        "not a program this system can run (a script needs a #! line)"
    )


def test_a_script_whose_interpreter_is_missing_says_so_when_it_cannot_start(
    tmp_path: Path,
) -> None:
    """exec's ENOENT for a file that is there (its #! names a program that is not) read
    "cannot start: No such file or directory"."""
    script = tmp_path / "agent"
    script.write_text("#!/no/such/python3\nprint('hi')\n")
    script.chmod(0o755)
    with pytest.raises(AgentStartError) as caught:
        ProcessStream(argv=[str(script)], cwd=tmp_path, env=dict(os.environ)).start()
    assert str(caught.value) == (
        f"{script}: cannot start: a script whose #! line names /no/such/python3, "
        "which does not exist"
    )


def test_claude_path_takes_a_home_folder_and_a_bare_name_as_the_config_path_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`CLAUDE_PATH=~/bin/claude` (written where no shell expands it: an env file, a unit) and
    `CLAUDE_PATH=claude-next` (a name on PATH) said "no executable file there", though the
    executor's `path` takes both."""
    claude = fake_cli(tmp_path / "bin", "claude-next", FAKE_CLAUDE)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PATH", f"{claude.parent}{os.pathsep}{os.environ['PATH']}")
    for value in ("~/bin/claude-next", "claude-next"):
        monkeypatch.setenv("CLAUDE_PATH", value)
        assert find_claude(None) == str(claude)
    monkeypatch.setenv("CLAUDE_PATH", "no-such-claude")
    with pytest.raises(AgentStartError, match=r"^CLAUDE_PATH=no-such-claude: no executable file"):
        find_claude(None)


@pytest.mark.parametrize("source", ["CLAUDE_PATH", "path", "argv"])
def test_a_relative_agent_path_is_where_it_was_found_not_in_the_work_tree(
    tmp_path: Path, git_repo: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    """`CLAUDE_PATH=bin/claude` (or a relative `path`, or argv[0]) was found from the folder
    specwright ran in, so `agents list` and the check before a run said it was there, then
    started from the work tree (the process's cwd), where it is not: every attempt failed."""
    fake_cli(tmp_path / "bin", "claude", FAKE_CLAUDE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CLAUDE_PATH", raising=False)
    if source == "CLAUDE_PATH":
        monkeypatch.setenv("CLAUDE_PATH", "bin/claude")
    if source == "argv":
        config = executor_config(type="command", argv=("bin/claude", "{prompt}"))
    else:
        config = executor_config(path="bin/claude" if source == "path" else None)
    executor = make_executor(config)
    _, events = run(executor, Task("x", git_repo))  # it started: no "cannot start" error
    assert executor.executable() == str(tmp_path / "bin" / "claude")  # type: ignore[attr-defined]
    [started] = [e for e in events if isinstance(e, StepEvent) and e.name == "process"]
    assert started.raw is not None and started.raw["executable"] == executor.executable()  # type: ignore[attr-defined]


@pytest.mark.parametrize("backend", ["claude-code", "opencode"])
def test_a_stream_log_that_cannot_be_written_is_one_line_and_leaves_nothing(
    claude: Path, tmp_path: Path, git_repo: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    """It was a FileNotFoundError traceback (`agents check`), and the fresh config folder made
    before it stayed in the temp folder (claude code; opencode left its HTTP clients open)."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    log = tmp_path / "no-such-folder" / "stream.jsonl"
    extra = {"provider": "p", "model": "m"} if backend == "opencode" else {}
    ex = make_executor(executor_config(type=backend, options={"stream_log": str(log)}, **extra))
    with pytest.raises(AgentError) as caught:
        run(ex, Task("x", git_repo))
    assert str(caught.value) == (
        f"executor 'agent': options.stream_log {log}: cannot write there "
        "(No such file or directory)"
    )
    assert list(scratch.iterdir()) == []
