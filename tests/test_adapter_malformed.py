"""Agents that misbehave on the wire: a Claude Code `result` line with usage of the wrong shape,
an OpenCode server sending errors as bare strings, numbers like 1e400, a status that is not an
object. Each run ends as a recorded Outcome (a warning event says what was odd), never as a
traceback. Real executables, real HTTP on 127.0.0.1, a real store."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from specwright.agents import Task, run_execution
from specwright.agents.claude_code import ClaudeCodeExecutor
from specwright.agents.command import CommandExecutor
from specwright.agents.opencode import OpenCodeExecutor
from specwright.errors import AgentError
from specwright.recorder import ExecutionRecorder
from specwright.store import Store
from tests.support_agents import executor_config, fake_cli, stored_events, stored_execution

INIT = {"type": "system", "subtype": "init", "session_id": "s1", "model": "claude-sonnet-4-5"}


def claude_printing(tmp_path: Path, *lines: str) -> ClaudeCodeExecutor:
    body = "import sys\n" + "".join(f"sys.stdout.write({line + chr(10)!r})\n" for line in lines)
    agent = fake_cli(tmp_path / "bin", "claude", body)
    return ClaudeCodeExecutor(executor_config(path=str(agent)))


@pytest.mark.parametrize(
    "result",
    [
        {"usage": "lots", "total_cost_usd": "1.0"},
        {"usage": {"input_tokens": "many", "output_tokens": [1]}, "num_turns": "two"},
        {"usage": {"input_tokens": 1e400, "output_tokens": -5}, "modelUsage": ["x"]},
        {"usage": {"output_tokens_details": "none"}, "session_id": {"not": "a string"}},
    ],
)
def test_a_claude_result_of_the_wrong_shape_still_ends_the_run(
    store: Store, tmp_path: Path, result: dict[str, Any]
) -> None:
    line = json.dumps(
        {"type": "result", "subtype": "success", "is_error": False, "result": "done", **result}
    )
    executor = claude_printing(tmp_path, json.dumps(INIT), line.replace('"INF"', "1e400"))
    recorder = ExecutionRecorder(store, role="executor", backend="claude_code")
    outcome = run_execution(executor, Task("hi", tmp_path), recorder)
    assert (outcome.status, outcome.final_text) == ("ok", "done")
    assert outcome.usage.input_tokens == 0 and outcome.usage.cost_usd is None
    row = stored_execution(store, recorder.id)
    assert row["status"] == "ok" and row["input_tokens"] == 0


def test_a_claude_count_no_model_could_reach_reads_as_0_and_the_reports_still_add_up(
    store: Store, tmp_path: Path
) -> None:
    """Two counts of 2**62 in a result line were stored as told, and every report summing
    executions (`usage specs`, `status`, the dashboard) then failed with a DuckDB overflow."""
    from specwright import queries as Q

    usage = {"input_tokens": 2**62, "output_tokens": 2**62, "cache_read_input_tokens": 2**53}
    line = {"type": "result", "subtype": "success", "is_error": False, "result": "done"}
    executor = claude_printing(tmp_path, json.dumps(INIT), json.dumps({**line, "usage": usage}))
    recorder = ExecutionRecorder(store, role="executor", backend="claude_code")
    assert run_execution(executor, Task("hi", tmp_path), recorder).status == "ok"
    row = stored_execution(store, recorder.id)
    assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"]) == (0, 0, 0)
    (by_model,) = Q.cost_by(store, "model").to_dict("records")
    assert by_model["executions"] == 1 and by_model["input_tokens"] == 0
    assert len(Q.executions_by_period(store)) == 1


def test_claude_errors_as_a_string_are_one_message(store: Store, tmp_path: Path) -> None:
    line = {"type": "result", "subtype": "error_during_execution", "is_error": True}
    executor = claude_printing(tmp_path, json.dumps({**line, "errors": "the tool crashed"}))
    outcome = run_execution(
        executor,
        Task("hi", tmp_path),
        ExecutionRecorder(store, role="executor", backend="claude_code"),
    )
    assert outcome.status == "error" and outcome.error == "the tool crashed"


# --- an OpenCode stand-in over real HTTP ----------------------------------------------------


class _OpenCode(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    events: ClassVar[list[bytes]] = []
    status_body: ClassVar[Any] = {}

    def log_message(self, *args: Any) -> None:
        pass

    def _json(self, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/global/health":
            return self._json({"healthy": True, "version": "stand-in"})
        if path == "/session/status":
            return self._json(type(self).status_body)
        if path.startswith("/session/"):
            return self._json({"id": "ses_1"})
        if path != "/event":
            return self._json({})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for data in [b'{"type":"server.connected","properties":{}}', *type(self).events]:
            self.wfile.write(b"data: " + data + b"\n\n")
            self.wfile.flush()
            time.sleep(0.2 if b"server.connected" in data else 0.01)
        time.sleep(1.0)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.split("?")[0] == "/session":
            return self._json({"id": "ses_1"})
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def opencode(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_OpenCode]]:
    handler = type("Handler", (_OpenCode,), {"events": [], "status_body": {}})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv("OPENCODE_URL", f"http://127.0.0.1:{httpd.server_address[1]}")
    try:
        yield handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def _event(kind: str, **props: Any) -> bytes:
    return json.dumps({"type": kind, "properties": {"sessionID": "ses_1", **props}}).encode()


BUSY = _event("session.status", status={"type": "busy"})


@pytest.mark.parametrize(
    ("events", "error"),
    [
        (
            [_event("session.error", error="provider exploded"), _event("session.idle")],
            "Error: provider exploded",
        ),
        (
            [
                _event(
                    "message.updated",
                    info={"id": "m1", "role": "assistant", "sessionID": "ses_1", "error": "boom"},
                ),
                _event("session.idle"),
            ],
            "Error: boom",
        ),
    ],
)
def test_an_opencode_error_that_is_a_bare_string(
    opencode: type[_OpenCode], store: Store, tmp_path: Path, events: list[bytes], error: str
) -> None:
    opencode.events = [BUSY, *events]
    executor = OpenCodeExecutor(executor_config(type="opencode", provider="p", model="m"))
    recorder = ExecutionRecorder(store, role="executor", backend="opencode")
    outcome = run_execution(executor, Task("hi", tmp_path), recorder)
    assert (outcome.status, outcome.exit_reason, outcome.error) == ("error", "session_error", error)
    assert stored_execution(store, recorder.id)["status"] == "error"


def test_opencode_numbers_out_of_range_are_a_warning(
    opencode: type[_OpenCode], store: Store, tmp_path: Path
) -> None:
    step = b'{"type":"message.part.updated","properties":{"part":{"type":"step-finish",'
    step += b'"id":"p1","sessionID":"ses_1","messageID":"m1","tokens":{"input":1e400,"output":7},'
    step += b'"cost":NaN}}}'
    opencode.events = [BUSY, step, _event("session.idle")]
    executor = OpenCodeExecutor(executor_config(type="opencode", provider="p", model="m"))
    recorder = ExecutionRecorder(store, role="executor", backend="opencode")
    outcome = run_execution(executor, Task("hi", tmp_path), recorder)
    assert outcome.ok and outcome.usage.output_tokens == 7 and outcome.usage.input_tokens == 0
    assert outcome.usage.cost_usd is None
    assert [e["type"] for e in stored_events(store, recorder.id)].count("usage") == 2


def test_command_that_is_not_executable_says_so(tmp_path: Path) -> None:
    script = tmp_path / "agent.sh"
    script.write_text("#!/bin/sh\necho hi\n")  # no chmod +x
    executor = CommandExecutor(executor_config(type="command", argv=(str(script), "{prompt}")))
    with pytest.raises(AgentError, match=r"agent.sh' is not executable \(chmod \+x it"):
        executor.executable()
    folder = CommandExecutor(executor_config(type="command", argv=(str(tmp_path), "{prompt}")))
    with pytest.raises(AgentError, match="is a directory, not a program"):
        folder.executable()
    script.write_text("echo hi\n")  # executable, but no #! line: exec would refuse it
    script.chmod(0o755)
    with pytest.raises(AgentError) as caught:
        executor.executable()
    assert str(caught.value) == (
        f"executor 'agent': {str(script)!r} is not a program this system can run "
        "(a script needs a #! line)"
    )


def test_a_command_path_that_is_not_there_says_not_found_and_from_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It read "'./agent.sh' is no executable file there", not saying a relative path is
    looked for from the folder specwright runs in (`-C DIR` does not change that)."""
    monkeypatch.chdir(tmp_path)
    for first, said in (
        ("./agent.sh", f"not found (in {tmp_path})"),
        ("/no/agent.sh", "not found"),
    ):
        executor = CommandExecutor(executor_config(type="command", argv=(first, "{prompt}")))
        with pytest.raises(AgentError) as caught:
            executor.executable()
        assert str(caught.value) == f"executor 'agent': {first!r} {said}"


# Half an emoji: a JavaScript agent cutting a long tool output by UTF-16 units leaves one half
# of a pair, which JSON.stringify writes as a lone escape. Python decodes it to a character
# UTF-8 cannot encode: the journal refused it and the attempt failed as a UnicodeEncodeError.
HALF_EMOJI = "\\ud83d"  # as it appears in the JSON text


def test_a_claude_stream_with_half_an_emoji_is_recorded_with_a_replacement(
    store: Store, tmp_path: Path
) -> None:
    call = {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "echo x"}}
    text = {"type": "text", "text": "pair 😀 half <H>"}
    lines = [
        json.dumps(INIT),
        json.dumps({"type": "assistant", "message": {"id": "m1", "content": [text, call]}}),
        json.dumps(
            {
                "type": "user",
                "message": {
                    "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "cut <H>"}]
                },
            }
        ),
        json.dumps({"type": "result", "subtype": "success", "is_error": False, "result": "ok <H>"}),
    ]
    executor = claude_printing(tmp_path, *(line.replace("<H>", HALF_EMOJI) for line in lines))
    recorder = ExecutionRecorder(store, role="executor", backend="claude_code")
    outcome = run_execution(executor, Task("hi", tmp_path), recorder)
    assert (outcome.status, outcome.final_text) == ("ok", "ok \ufffd"), outcome
    rows = stored_events(store, recorder.id)
    assert [r["text"] for r in rows if r["type"] == "text"] == ["pair 😀 half \ufffd"]
    assert [r["output"] for r in rows if r["type"] == "tool_result"] == ["cut \ufffd"]
    assert stored_execution(store, recorder.id)["status"] == "ok"


def test_an_opencode_event_with_half_an_emoji_is_recorded_with_a_replacement(
    opencode: type[_OpenCode], store: Store, tmp_path: Path
) -> None:
    part = {"id": "p1", "type": "text", "messageID": "m1", "sessionID": "ses_1"}
    part |= {"text": "done <H>", "time": {"start": 1, "end": 2}}
    text = _event("message.part.updated", part=part).replace(b"<H>", HALF_EMOJI.encode())
    opencode.events = [BUSY, text, _event("session.idle")]
    executor = OpenCodeExecutor(executor_config(type="opencode", provider="p", model="m"))
    recorder = ExecutionRecorder(store, role="executor", backend="opencode")
    outcome = run_execution(executor, Task("hi", tmp_path), recorder)
    assert outcome.ok, outcome
    rows = stored_events(store, recorder.id)
    assert [r["text"] for r in rows if r["type"] == "text"] == ["done \ufffd"]
