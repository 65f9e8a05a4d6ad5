"""Agents that send too much: an OpenCode server with an endless ``data:`` line, an event far
past the limit, endless deltas, an answer that never ends; a CLI agent printing faster than it
is read, or endless malformed lines; names and ids of any size. Each bound is lowered for the
test (the module constant), the hostile side sends a few times more in pieces, and the test
checks the run's outcome, what the real store holds, and that the client did not buffer it all.
Real HTTP on 127.0.0.1, real executables, a real store."""

from __future__ import annotations

import json
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx  # imported (~5 MB) before any memory is measured, as the adapter imports it late
import pytest

from specwright.agents import (
    Task,
    opencode,
    opencode_events,
    process,
    run_execution,
    sse,
)
from specwright.agents.claude_code import ClaudeCodeExecutor
from specwright.agents.claude_stream import ClaudeStreamState, parse_line
from specwright.agents.command import CommandExecutor
from specwright.agents.opencode import OpenCodeExecutor
from specwright.agents.process import ProcessStream
from specwright.errors import AgentError
from specwright.model import Usage
from specwright.recorder import MAX_NAME_CHARS, ExecutionRecorder, _computed_cost
from specwright.store import Store
from tests.support_agents import executor_config, fake_cli, stored_events, stored_execution

LIMIT = 64 * 1024  # every bound, lowered for these tests
PIECE = 8 * 1024


def _event(kind: str, **props: Any) -> bytes:
    body = {"type": kind, "properties": {"sessionID": "ses_1", **props}}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


CONNECTED = b'data: {"type":"server.connected","properties":{}}\n\n'
BUSY = _event("session.status", status={"type": "busy"})
IDLE = _event("session.idle")


def _text(pid: str, text: str) -> bytes:
    part = {"id": pid, "type": "text", "messageID": "m1", "sessionID": "ses_1", "text": text}
    return _event("message.part.updated", part={**part, "time": {"start": 1, "end": 2}})


Writer = Callable[[Any], None]  # writes a body to the socket file


class Hostile:
    """A stand-in OpenCode server on 127.0.0.1: ``events`` writes the ``/event`` stream after
    ``server.connected``; ``bodies`` maps "METHOD /path" to a writer of a chunked answer.
    ``sent`` counts the bytes of the hostile writes; ``cut`` is set when the client hung up."""

    def __init__(self) -> None:
        self.events: Writer = lambda w: None
        self.bodies: dict[str, Writer] = {}
        self.sent = 0
        self.busy_until = 0  # the session status says busy until this many bytes were sent
        self.cut = threading.Event()

    def write(self, w: Any, data: bytes) -> None:
        w.write(data)
        w.flush()
        self.sent += len(data)

    def flood(self, w: Any, piece: bytes, total: int, pause: float = 0.0) -> None:
        """Write ``piece`` until ``total`` bytes are sent or the client hangs up; then hold."""
        try:
            while self.sent < total:
                self.write(w, piece)
                if pause:
                    time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            self.cut.set()
            return
        held = time.monotonic()
        while not self.cut.wait(0.05):  # hold the stream open (10 s at most): the client ends it
            if time.monotonic() - held > 10:
                return
            try:
                self.write(w, b"")
                w.write(b":\n")  # a comment, to notice the hang-up
                w.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.cut.set()


@pytest.fixture
def hostile(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hostile]:
    h = Hostile()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, body: Any, status: int = 200) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _chunked(self, writer: Writer) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            self.end_headers()  # no length: the body goes on until the connection closes
            writer(self.wfile)

        def _answer(self, method: str) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = self.path.split("?")[0]
            if f"{method} {path}" in h.bodies:
                return self._chunked(h.bodies[f"{method} {path}"])
            if path == "/global/health":
                return self._json({"healthy": True, "version": "hostile"})
            if path == "/session" and method == "POST":
                return self._json({"id": "ses_1"})
            if path == "/session/status":  # ours is idle, unless busy until enough was sent
                busy = h.sent < h.busy_until
                return self._json({"ses_1": {"type": "busy"}} if busy else {})
            if path == "/event":
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(CONNECTED)
                self.wfile.flush()
                time.sleep(0.3)  # the session is created and the prompt sent meanwhile
                with _quiet():
                    h.events(self.wfile)
                return None
            if method == "GET":
                return self._json({"id": "ses_1"})
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv("OPENCODE_URL", f"http://127.0.0.1:{httpd.server_address[1]}")
    monkeypatch.setattr(sse, "MAX_EVENT_BYTES", LIMIT)
    monkeypatch.setattr(sse, "MAX_ANSWER_BYTES", LIMIT)
    try:
        yield h
    finally:
        h.cut.set()
        httpd.shutdown()
        httpd.server_close()


class _quiet:
    """Swallow the client hanging up mid-write (that is what these servers expect)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        return exc_type is not None and issubclass(exc_type, BrokenPipeError | ConnectionError)


def run_opencode(store: Store, tmp_path: Path, **kw: Any) -> tuple[Any, ExecutionRecorder, int]:
    """One run against the stand-in; its outcome, recorder, and the peak Python memory (the
    price table, ~20 MB, is loaded before: it is no part of what the run reads)."""
    executor = OpenCodeExecutor(executor_config(type="opencode", provider="p", model="m", **kw))
    recorder = ExecutionRecorder(store, role="executor", backend="opencode")
    assert httpx.Client
    _computed_cost(Usage(1, 1), "m", "opencode", None)
    tracemalloc.start()
    try:
        outcome = run_execution(executor, Task("hi", tmp_path), recorder)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return outcome, recorder, peak


def warnings_of(store: Store, recorder: ExecutionRecorder) -> list[str]:
    rows = stored_events(store, recorder.id)
    return [r["text"] for r in rows if r["type"] == "error" and r["tool_name"] == "warning"]


# --- the OpenCode event stream ---------------------------------------------------------------


def test_an_opencode_event_past_the_limit_is_dropped_and_the_run_goes_on(
    hostile: Hostile, store: Store, tmp_path: Path
) -> None:
    """A 512x-the-limit text part, sent in pieces: a warning names its size and the limit, the
    next events still count, and the client never held the event whole."""
    big = _text("p1", "x" * (512 * LIMIT))  # 32 MB

    def events(w: Any) -> None:
        hostile.write(w, BUSY)
        for at in range(0, len(big), PIECE):
            hostile.write(w, big[at : at + PIECE])
        hostile.write(w, _text("p2", "all done") + IDLE)
        time.sleep(1.0)

    hostile.events = events
    outcome, recorder, peak = run_opencode(store, tmp_path)
    assert (outcome.status, outcome.final_text) == ("ok", "all done")
    size = len(big) - 1  # its lines and their line ends; the blank line ends it
    assert warnings_of(store, recorder) == [
        f"event 3: {size} bytes, longer than the {LIMIT} byte limit; dropped"
    ]
    rows = stored_events(store, recorder.id)
    assert [r["text"] for r in rows if r["type"] == "text"] == ["all done"]
    assert all(len(r["raw"] or "") < LIMIT for r in rows)
    # a few MB are the run's own (imports, the store); the event would be 32 MB more
    assert peak < len(big) // 4, f"{peak} bytes at peak for a {len(big)} byte event"


@pytest.mark.parametrize(
    "piece",
    [b"x" * PIECE, (b"data: " + b"y" * 100 + b"\n") * 80],
    ids=["one endless data line", "endless data lines, no blank line"],
)
def test_an_endless_opencode_event_is_dropped_and_the_client_hangs_up(
    hostile: Hostile, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece: bytes
) -> None:
    """An event that never ends: the client reads on without keeping it; once the run is over
    (the server says the session is idle) it hangs up, and the warning says how much it saw."""
    monkeypatch.setattr(opencode, "POLL_IDLE_S", 1.5)
    total = 1024 * LIMIT  # 64 MB, then the server holds the stream open

    def events(w: Any) -> None:
        hostile.write(w, BUSY + b"data: ")
        hostile.flood(w, piece, total, pause=0.0002)

    hostile.events = events
    hostile.busy_until = 512 * LIMIT  # 32 MB whatever the load: the session is idle only then
    outcome, recorder, peak = run_opencode(store, tmp_path)
    assert outcome.status == "ok"
    assert hostile.cut.wait(5), "the client never hung up"
    assert hostile.sent >= 512 * LIMIT, "too little sent to tell"
    [warning] = warnings_of(store, recorder)
    assert warning.startswith("event 3: ")
    assert warning.endswith(f" bytes, longer than the {LIMIT} byte limit; dropped")
    assert LIMIT < int(warning.split()[2]) <= hostile.sent
    assert peak < hostile.sent // 4, f"{peak} bytes at peak while {hostile.sent} were sent"


def test_endless_opencode_text_deltas_keep_a_bounded_text(
    hostile: Hostile, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deltas of one text part, 10x the per-part bound in all: the text kept is the first
    ``MAX_PART_TEXT_CHARS`` with a marker saying how much was not kept."""
    monkeypatch.setattr(opencode_events, "MAX_PART_TEXT_CHARS", LIMIT, raising=False)
    delta = "z" * 1000
    n = 10 * LIMIT // len(delta)

    def events(w: Any) -> None:
        hostile.write(w, BUSY)
        for _ in range(n):
            hostile.write(w, _event("message.part.delta", partID="p1", field="text", delta=delta))
        hostile.write(w, _text("p1", "") + IDLE)
        time.sleep(1.0)

    hostile.events = events
    outcome, recorder, _ = run_opencode(store, tmp_path)
    assert outcome.ok
    cut = n * len(delta) - LIMIT
    marker = f"\n…[truncated: {cut} more chars not kept, the first {LIMIT} kept]"
    assert outcome.final_text == "z" * LIMIT + marker
    [text] = [r["text"] for r in stored_events(store, recorder.id) if r["type"] == "text"]
    assert text.startswith("z" * 1000) and len(text) < 70 * 1024


@pytest.mark.parametrize(
    ("route", "expect"),
    [
        ("GET /global/health", "is not an OpenCode server: GET /global/health: answer longer"),
        ("POST /session", "cannot create a session: POST /session: answer longer"),
    ],
)
def test_an_endless_opencode_answer_fails_the_run_in_one_line(
    hostile: Hostile, store: Store, tmp_path: Path, route: str, expect: str
) -> None:
    total = 1024 * LIMIT
    hostile.bodies[route] = lambda w: hostile.flood(w, b'{"id":"' + b"s" * PIECE, total)
    with pytest.raises(AgentError) as raised:
        run_opencode(store, tmp_path)
    message = str(raised.value)
    assert expect in message and f"than the {LIMIT} byte limit; not read" in message
    assert "\n" not in message
    assert hostile.cut.wait(5) and hostile.sent < total  # the client hung up early
    (row,) = store.query_dicts("SELECT status, exit_reason FROM executions")
    assert row["status"] == "error" and f"{LIMIT} byte limit" in row["exit_reason"]


def test_endless_session_totals_are_a_warning_and_the_steps_count(
    hostile: Hostile, store: Store, tmp_path: Path
) -> None:
    total = 1024 * LIMIT
    hostile.bodies["GET /session/ses_1"] = lambda w: hostile.flood(w, b"[" * PIECE, total)
    step = {"id": "s1", "type": "step-finish", "messageID": "m1", "sessionID": "ses_1"}
    step.update(tokens={"input": 5, "output": 7}, cost=0.5)

    def events(w: Any) -> None:
        hostile.write(w, BUSY + _event("message.part.updated", part=step) + IDLE)
        time.sleep(1.0)

    hostile.events = events
    outcome, recorder, _ = run_opencode(store, tmp_path)
    assert outcome.ok and (outcome.usage.output_tokens, outcome.usage.cost_usd) == (7, 0.5)
    [warning] = warnings_of(store, recorder)
    assert warning.startswith("session totals: GET /session/ses_1: answer longer than the")
    assert hostile.cut.wait(5) and hostile.sent < total
    assert stored_execution(store, recorder.id)["output_tokens"] == 7


# --- CLI agents --------------------------------------------------------------------------------


def test_a_cli_agent_printing_faster_than_it_is_read_is_held_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines read but not handled are bounded in bytes: the agent blocks on its pipe."""
    monkeypatch.setattr(process, "QUEUED_BYTES", 4 * LIMIT, raising=False)
    progress = tmp_path / "progress"
    agent = fake_cli(
        tmp_path / "bin",
        "agent",
        f"""
        import sys
        for i in range(400):
            sys.stdout.write("x" * {LIMIT} + "\\n")
            sys.stdout.flush()
            open({str(progress)!r}, "w").write(str(i + 1))
        """,
    )
    stream = ProcessStream(argv=[str(agent)], cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    lines = stream.lines(threading.Event())
    try:
        first = next(lines)
        assert len(first) == LIMIT + 1
        time.sleep(1.5)  # we handle nothing meanwhile: the agent must be held back
        printed = int(progress.read_text())
        # what waits in our queue (4 lines), in the pipe (64 KB) and in the reader's hand
        assert printed < 12, f"the agent printed {printed} lines ahead of us"
    finally:
        lines.close()
    assert stream.result.returncode is not None


def test_endless_malformed_lines_store_a_bounded_number_of_warnings(
    store: Store, tmp_path: Path
) -> None:
    """Warnings are kept past the execution's bound (an error must not be lost) but not without
    end: past ``max_kept_past_bytes`` more, only the closing warning is stored."""
    agent = fake_cli(
        tmp_path / "bin",
        "codex",
        """
        import sys
        for i in range(5000):
            sys.stdout.write("not json %d\\n" % i)
        """,
    )
    executor = CommandExecutor(
        executor_config(type="command", argv=(str(agent), "{prompt}"), parser="codex")
    )
    recorder = ExecutionRecorder(
        store, role="executor", backend="command", max_bytes=LIMIT, max_kept_past_bytes=LIMIT
    )
    outcome = run_execution(executor, Task("hi", tmp_path), recorder)
    assert outcome.ok
    rows = stored_events(store, recorder.id)
    assert 50 < len(rows) < 1000
    last = rows[-1]["text"]
    assert last.startswith("output limit: ") and " more events not stored (error " in last
    dropped = int(last.split()[2].replace(",", ""))
    assert len(rows) - 2 + dropped == 5000  # the process step, the closing warning
    assert store.journal.path_for(recorder.id).stat().st_size < 3 * LIMIT + 5000


def test_names_and_ids_of_any_size_are_stored_cut(store: Store, tmp_path: Path) -> None:
    huge = "n" * 100_000
    lines = [
        {"type": "system", "subtype": huge, "session_id": huge},
        {
            "type": "assistant",
            "session_id": "s1",
            "message": {
                "id": "m1",
                "model": huge,
                "content": [{"type": "tool_use", "id": huge, "name": huge, "input": {}}],
            },
        },
        {"type": "user", "message": {"content": [{"type": "tool_result", "tool_use_id": huge}]}},
        {"type": "result", "subtype": "success", "is_error": False, "result": "ok"},
    ]
    body = "import sys\n" + "".join(
        f"sys.stdout.write({json.dumps(line) + chr(10)!r})\n" for line in lines
    )
    agent = fake_cli(tmp_path / "bin", "claude", body)
    executor = ClaudeCodeExecutor(executor_config(path=str(agent)))
    recorder = ExecutionRecorder(store, role="executor", backend="claude_code")
    outcome = run_execution(executor, Task("hi", tmp_path), recorder)
    assert outcome.ok
    rows = stored_events(store, recorder.id)
    for row in rows:
        for column in ("tool_name", "call_id", "model"):
            assert len(row[column] or "") <= MAX_NAME_CHARS, (row["type"], column)
        if row["type"] == "step":
            assert len(row["text"]) <= MAX_NAME_CHARS
    names = [r["tool_name"] for r in rows if r["type"] in ("tool_call", "tool_result")]
    assert names == ["n" * (MAX_NAME_CHARS - 1) + "…"] * 2
    assert len(stored_execution(store, recorder.id)["session_id"]) <= MAX_NAME_CHARS


def test_claude_text_blocks_seen_are_remembered_by_a_short_key() -> None:
    """The parser dedupes repeated blocks; it must not keep every text block whole to do it."""
    state = ClaudeStreamState()
    for i in range(20):
        block = {"type": "text", "text": f"{i} " + "t" * LIMIT}
        line = {"type": "assistant", "message": {"id": f"m{i}", "content": [block]}}
        parse_line(json.dumps(line), state)
        assert len(parse_line(json.dumps(line), state)) == 0  # the same block: seen
    kept = sum(len(a) + len(b) for a, b in state.seen_blocks)
    assert kept < 20 * 2 * 300  # short keys (claude_stream.MAX_KEY_CHARS), not 20 x 64 KB
