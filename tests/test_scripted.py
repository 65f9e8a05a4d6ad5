"""The scripted executor: steps, events, per-attempt scripts, cancel, errors."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from specwright.agents.base import Executor, Task, make_executor
from specwright.agents.scripted import ScriptedExecutor, ScriptError, select_steps
from specwright.config import ExecutorConfig
from specwright.model import AgentEvent, ToolResult
from tests.support_agents import alive, wait_gone


def run(
    executor: ScriptedExecutor, workdir: Path, cancel: threading.Event | None = None, **task: Any
) -> tuple[Any, list[AgentEvent]]:
    events: list[AgentEvent] = []
    outcome = executor.execute(
        Task(prompt="do it", workdir=workdir, **task), events.append, cancel or threading.Event()
    )
    return outcome, events


def cfg(**kw: Any) -> ExecutorConfig:
    return ExecutorConfig(name="demo", type="scripted", **kw)


def test_registry_builds_it_and_it_is_an_executor() -> None:
    ex = make_executor(cfg())
    assert isinstance(ex, ScriptedExecutor) and isinstance(ex, Executor)
    assert ex.backend == "scripted"


def test_steps_edit_files_and_stream_tool_events(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("bye")
    (tmp_path / "app.py").write_text("print('hi')\n")
    script = [
        {"write": "pkg/new.py", "content": "X = 1\n"},
        {"patch": "app.py", "search": "hi", "replace": "hello"},
        {"patch": "app.py", "search": "absent", "replace": "x"},
        {"delete": "old.txt"},
        {"run": "echo out; echo err >&2; exit 3"},
        {"say": "all done"},
        {"usage": {"input_tokens": 10, "output_tokens": 5, "cost_usd": 0.002}},
        {"usage": {"input_tokens": 1, "cache_read_tokens": 7, "cost_usd": 0.001}},
    ]
    outcome, events = run(ScriptedExecutor(cfg(), script=script), tmp_path)
    assert outcome.ok and outcome.exit_reason == "completed"
    assert (tmp_path / "pkg" / "new.py").read_text() == "X = 1\n"
    assert (tmp_path / "app.py").read_text() == "print('hello')\n"
    assert not (tmp_path / "old.txt").exists()
    calls = [e for e in events if e.type == "tool_call"]
    results = {e.call_id: e for e in events if e.type == "tool_result"}
    assert [c.tool for c in calls] == ["write", "edit", "edit", "delete", "bash"]
    assert [results[c.call_id].is_error for c in calls] == [False, False, True, False, True]
    assert "not found" in results[calls[2].call_id].output
    bash = results[calls[4].call_id]
    assert "out" in bash.output and "err" in bash.output and bash.raw == {"exit_code": 3}
    assert outcome.final_text == "all done"
    assert outcome.usage.input_tokens == 11 and outcome.usage.cache_read_tokens == 7
    assert outcome.usage.cost_usd == pytest.approx(0.003)
    final = [e for e in events if e.type == "usage" and e.final]
    assert len(final) == 1 and final[0].usage == outcome.usage
    assert events[0].type == "step" and outcome.session_id == events[0].session_id


def test_paths_cannot_leave_the_work_tree(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    script = [{"write": "../escape.txt", "content": "x"}, {"delete": "/etc/hostname"}]
    outcome, events = run(ScriptedExecutor(cfg(), script=script), work)
    assert outcome.ok
    assert not (tmp_path / "escape.txt").exists()
    assert all(e.is_error for e in events if e.type == "tool_result")


def test_attempts_pick_by_iteration_and_the_last_repeats(tmp_path: Path) -> None:
    script = {"attempts": [[{"say": "one"}], [{"say": "two"}]]}
    ex = ScriptedExecutor(cfg(), script=script)
    said = [run(ex, tmp_path, metadata={"iteration": n})[0].final_text for n in (1, 2, 3)]
    assert said == ["one", "two", "two"]
    # a list of lists is the same thing; Task.script wins over the constructor's script
    outcome, _ = run(
        ex, tmp_path, script=({"attempts": [[{"say": "task"}]]},), metadata={"iteration": 1}
    )
    assert outcome.final_text == "task"
    listed = ScriptedExecutor(cfg(), script=[[{"say": "a"}], [{"say": "b"}]])
    assert run(listed, tmp_path, metadata={"iteration": 2})[0].final_text == "b"


def test_per_chunk_scripts_from_a_yaml_file(tmp_path: Path) -> None:
    (tmp_path / "demo.yaml").write_text(
        "chunks:\n"
        "  1:\n    - say: first chunk\n"
        "  Add parser:\n    attempts:\n      - [{say: parser try 1}]\n      - [{say: parser try 2}]\n"
        "  '*':\n    - say: fallback\n"
    )
    ex = ScriptedExecutor(cfg(script="demo.yaml"))
    meta = {"chunk_position": 1, "chunk_title": "Setup", "chunk_id": "0190-aaaa", "iteration": 1}
    assert run(ex, tmp_path, metadata=meta)[0].final_text == "first chunk"
    meta = {"chunk_position": 2, "chunk_title": "Add parser", "iteration": 2}
    assert run(ex, tmp_path, metadata=meta)[0].final_text == "parser try 2"
    assert run(ex, tmp_path, metadata={"chunk_position": 9})[0].final_text == "fallback"
    (tmp_path / "s.json").write_text(json.dumps([{"say": "from json"}]))
    assert run(ScriptedExecutor(cfg(script="s.json")), tmp_path)[0].final_text == "from json"
    inline = ScriptedExecutor(cfg(options={"script": [{"say": "inline"}]}))
    assert run(inline, tmp_path)[0].final_text == "inline"


def test_no_script_and_bad_scripts_are_clear_errors(tmp_path: Path) -> None:
    outcome, events = run(ScriptedExecutor(cfg()), tmp_path, metadata={"chunk_title": "Parser"})
    assert outcome.status == "error" and "no script for chunk 'Parser'" in (outcome.error or "")
    assert any(e.type == "error" for e in events)
    outcome, _ = run(ScriptedExecutor(cfg(script="missing.yaml")), tmp_path)
    assert outcome.status == "error" and "missing.yaml" in (outcome.error or "")
    with pytest.raises(ScriptError, match=r"script\[0\]\.colour: unknown key for write"):
        select_steps([{"write": "a", "colour": "red"}], {})
    with pytest.raises(ScriptError, match=r"script\[1\]: expected exactly one action"):
        select_steps([{"say": "x"}, {"say": "y", "run": "z"}], {})
    with pytest.raises(ScriptError, match="sleep: expected seconds"):
        select_steps([{"sleep": -1}], {})
    with pytest.raises(ScriptError, match=r"usage: expected a mapping"):
        select_steps([{"usage": {"tokens": 3}}], {})
    # a NaN cost would make every total it is summed into NaN; a count as text was a traceback
    with pytest.raises(ScriptError, match=r"script\[0\]\.usage\.cost_usd: expected a finite"):
        select_steps([{"usage": {"cost_usd": float("nan")}}], {})
    with pytest.raises(ScriptError, match=r"usage\.input_tokens: expected a whole number"):
        select_steps([{"usage": {"input_tokens": "many"}}], {})
    with pytest.raises(ScriptError, match=r"usage\.output_tokens: expected a whole number"):
        select_steps([{"usage": {"output_tokens": -1}}], {})
    # one past BIGINT failed the execution's write: the chunk "failed" on a DuckDB
    # ConversionException and its two attempts were recorded as ended without their end
    with pytest.raises(ScriptError, match=r"usage\.input_tokens: expected a whole number from 0"):
        select_steps([{"usage": {"input_tokens": 10**20}}], {})
    assert select_steps([{"usage": {"input_tokens": 3, "cost_usd": 0.5, "model": "m"}}], {})


def test_fail_and_rate_limit(tmp_path: Path) -> None:
    outcome, events = run(ScriptedExecutor(cfg(), script=[{"fail": "model crashed"}]), tmp_path)
    assert outcome.status == "error" and outcome.error == "model crashed"
    assert outcome.retry_after_s is None
    script = [{"say": "x"}, {"fail": "quota", "retry_after_s": 30}]
    outcome, events = run(ScriptedExecutor(cfg(), script=script), tmp_path)
    assert outcome.retry_after_s == 30 and outcome.exit_reason == "rate_limit"
    assert [e.kind for e in events if e.type == "error"] == ["rate_limit"]


def test_cancel_kills_a_running_command_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = [{"run": f"sleep 60 & echo $! > {pidfile}; wait"}, {"say": "never"}]
    cancel = threading.Event()
    started = threading.Event()

    def watch(event: AgentEvent) -> None:
        if event.type == "tool_call":
            started.set()

    ex = ScriptedExecutor(cfg(), script=script)
    box: dict[str, Any] = {}

    def work() -> None:
        box["outcome"] = ex.execute(Task("x", tmp_path), watch, cancel)

    t = threading.Thread(target=work)
    t.start()
    assert started.wait(30)
    for _ in range(600):  # wait for the child to have written its pid
        if pidfile.exists() and pidfile.read_text().strip():
            break
        threading.Event().wait(0.05)
    cancel.set()
    t.join(30)
    assert box["outcome"].status == "cancelled" and box["outcome"].final_text == ""
    child = int(pidfile.read_text())
    wait_gone(child)
    assert not alive(child)


def test_sleep_is_cancel_aware_and_timeout_kills(tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    outcome, _ = run(ScriptedExecutor(cfg(), script=[{"sleep": 60}]), tmp_path, cancel)
    assert outcome.status == "cancelled"
    script = [{"run": "sleep 60", "timeout_s": 0.2}, {"say": "after"}]
    outcome, events = run(ScriptedExecutor(cfg(), script=script), tmp_path)
    result = next(e for e in events if e.type == "tool_result")
    assert result.is_error and "timed out" in result.output
    assert outcome.ok and outcome.final_text == "after"
    outcome, _ = run(
        ScriptedExecutor(cfg(), script=[{"run": "sleep 60", "check": True}]),
        tmp_path,
        timeout_s=0.2,
    )
    assert outcome.status == "error" and "command failed" in (outcome.error or "")


def test_a_run_step_is_registered_while_it_runs_and_leaves_nothing_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a command runs, crash recovery could find its group (kind ``run``); once it
    ends, what it left in its group is gone and so is the record."""
    runtime = tmp_path / "runtime"
    monkeypatch.setenv("SPECWRIGHT_RUNTIME_DIR", str(runtime))
    pidfile = tmp_path / "child.pid"
    command = (
        f"sleep 300 & echo $! > {pidfile}; "
        f"for i in $(seq 600); do ls {runtime}/*.json >/dev/null 2>&1 && break; sleep 0.05; "
        f"done; cat {runtime}/*.json"
    )
    try:
        outcome, events = run(ScriptedExecutor(cfg(), script=[{"run": command}]), tmp_path)
        assert outcome.status == "ok"
        [result] = [e for e in events if isinstance(e, ToolResult)]
        record = json.loads(result.output)
        assert record["kind"] == "run" and record["pgid"] == record["pid"]
        child = int(pidfile.read_text())
        wait_gone(child)
        assert not alive(child)
        assert list(runtime.glob("*.json")) == []
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_what_a_run_step_started_in_a_session_of_its_own_ends_with_it(tmp_path: Path) -> None:
    pidfile = tmp_path / "stray.pid"
    command = (  # the step ends once the stray runs, leaving it behind
        f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 300' > /dev/null 2>&1 & "
        f"while [ ! -s {pidfile} ]; do sleep 0.01; done"
    )
    outcome, _ = run(ScriptedExecutor(cfg(), script=[{"run": command}]), tmp_path)
    stray = int(pidfile.read_text())
    try:
        assert outcome.status == "ok"
        wait_gone(stray)
        assert not alive(stray)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stray, signal.SIGKILL)
