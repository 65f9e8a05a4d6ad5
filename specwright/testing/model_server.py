"""The fake model server itself: a stdlib HTTP server on 127.0.0.1 in a daemon thread that answers
model requests with scripted turns, strictly and in order (see ``specwright.testing``)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from specwright.testing.model_turns import (
    MAX_BODY_BYTES,
    Protocol,
    Request,
    Turn,
    _anthropic_error_body,
    _error_body,
    _keys,
    _short_id,
)
from specwright.testing.model_wire import (
    _anthropic_events,
    _anthropic_json,
    _openai_chunks,
    _openai_json,
)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fake: FakeModelServer) -> None:
        self.fake = fake
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.conn_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.conn_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that hangs up mid-answer (timeouts, cancel) is normal in tests
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        try:
            self.server.fake._dispatch(self)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            self.close_connection = True

    # response helpers used by FakeModelServer

    def read_body(self) -> bytes:
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            return self._read_chunked()
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY_BYTES:
            raise ValueError(f"request body of {length} bytes is too large")
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes:
        data = bytearray()
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(data)
            if len(data) + size > MAX_BODY_BYTES:
                raise ValueError("chunked request body is too large")
            data += self.rfile.read(size)
            self.rfile.readline(1024)  # the CRLF after each chunk

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", f"req_fake_{_short_id()}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    def start_sse(self, headers: dict[str, str] | None = None) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.send_header("request-id", f"req_fake_{_short_id()}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True

    def send_sse(self, event: str | None, data: Any) -> None:
        payload = data if isinstance(data, str) else json.dumps(data)
        head = f"event: {event}\n" if event else ""
        self.wfile.write(f"{head}data: {payload}\n\n".encode())
        self.wfile.flush()


class FakeModelServer:
    """A scripted, strict fake of the Anthropic and OpenAI model APIs on 127.0.0.1.

    Use as a context manager (starts, and on a clean exit calls :meth:`assert_done`), or call
    :meth:`start` / :meth:`stop` yourself. ``require_api_key`` makes requests without that key
    (``x-api-key`` or ``Authorization: Bearer``) get a 401 and count as failures.
    """

    def __init__(
        self,
        *,
        models: Iterable[str] = ("claude-sonnet-4-5", "fake-model"),
        require_api_key: str | None = None,
    ) -> None:
        self.models = list(models)
        self.require_api_key = require_api_key
        self.requests: list[Request] = []
        self.failures: list[str] = []
        self.events_sent = 0  # streamed events sent so far, all streams together
        self._turns: list[Turn | Callable[[Request], Turn]] = []
        self._consumed = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._port: int | None = None  # kept after stop(), so a test can aim at a closed port
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeModelServer:
        """Bind an ephemeral port on 127.0.0.1 and serve in a daemon thread."""
        if self._server is None:
            self._stopping.clear()
            self._server = _Server(self)
            self._port = int(self._server.server_address[1])
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="fake-model-server",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        with server.conn_lock:
            conns = list(server.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.stop()
        if exc_type is None:
            self.assert_done()

    @property
    def port(self) -> int:
        """The port the server listens (or, after ``stop()``, listened) on."""
        if self._port is None:
            raise RuntimeError("FakeModelServer is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: the Anthropic base URL (``ANTHROPIC_BASE_URL``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: the base URL OpenAI-style clients expect."""
        return f"{self.base_url}/v1"

    # --- script -----------------------------------------------------------------------------

    def script(self, *turns: Turn | Callable[[Request], Turn]) -> FakeModelServer:
        """Append turns, answered in order, one per model request."""
        for turn in turns:
            if not isinstance(turn, Turn) and not callable(turn):
                raise TypeError(f"a turn must be a Turn or a callable, not {type(turn).__name__}")
        with self._lock:
            self._turns.extend(turns)
        return self

    @property
    def pending(self) -> int:
        """How many scripted turns have not been consumed yet."""
        with self._lock:
            return len(self._turns) - self._consumed

    @property
    def model_requests(self) -> list[Request]:
        """The requests that asked for a model answer (Anthropic or OpenAI), in order."""
        return [r for r in self.requests if r.kind in ("anthropic", "openai")]

    def assert_done(self) -> None:
        """Raise AssertionError if any request was unexpected or any turn is left over."""
        with self._lock:
            problems = list(self.failures)
            left = self._turns[self._consumed :]
        for i, turn in enumerate(left, start=len(self._turns) - len(left)):
            desc = turn.describe() if isinstance(turn, Turn) else getattr(turn, "__name__", "fn")
            problems.append(f"turn {i} ({desc}) was never requested")
        if problems:
            raise AssertionError("fake model server: " + "; ".join(problems))

    # --- request handling -------------------------------------------------------------------

    def _dispatch(self, h: _Handler) -> None:
        split = urlsplit(h.path)
        path = split.path.rstrip("/") or "/"
        try:
            raw = h.read_body()
        except ValueError as exc:
            h.close_connection = True
            h.send_json(413, _anthropic_error_body(413, str(exc)))
            return
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        kind = _classify(h.command, path)
        req = Request(
            h.command,
            path,
            dict(parse_qsl(split.query)),
            {k.lower(): v for k, v in h.headers.items()},
            body,
            raw,
            kind,
        )

        if kind == "health":
            self._record(req)
            h.send_json(200, {"ok": True})
            return
        if kind == "models":
            self._record(req)
            h.send_json(200, self._models_body(req))
            return
        if kind == "other":
            self._record(req, failure=f"unexpected {h.command} {path}")
            h.send_json(
                404, _anthropic_error_body(404, f"fake model server: no route {h.command} {path}")
            )
            return
        proto: Protocol = "openai" if kind == "openai" else "anthropic"
        if self.require_api_key is not None and self.require_api_key not in _keys(req):
            self._record(req, failure=f"{h.command} {path} without the expected API key")
            h.send_json(401, _error_body(proto, 401, "fake model server: invalid x-api-key"))
            return
        problem = _validate(req)
        if problem:
            self._record(req, failure=f"malformed {kind} request: {problem}")
            h.send_json(400, _error_body(proto, 400, problem))
            return
        if kind == "count_tokens":
            self._record(req)
            h.send_json(200, {"input_tokens": max(1, len(raw) // 4)})
            return

        turn, index, problem = self._next_turn(req)
        if turn is None or index is None:
            h.send_json(400, _error_body(proto, 400, f"fake model server: {problem}"))
            return
        self._answer(h, req, turn)

    def _record(self, req: Request, failure: str | None = None) -> None:
        with self._lock:
            self.requests.append(req)
            if failure:
                self.failures.append(f"request {len(self.requests) - 1}: {failure}")

    def _next_turn(self, req: Request) -> tuple[Turn | None, int | None, str]:
        """Match ``req`` against the next turn; consume it when it matches."""
        with self._lock:
            number = len(self.requests)
            if self._consumed >= len(self._turns):
                problem = (
                    f"unexpected {req.kind} request {number} "
                    f"({req.method} {req.path}): no scripted turn left"
                )
                self.requests.append(req)
                self.failures.append(problem)
                return None, None, problem
            index = self._consumed
            spec = self._turns[index]
        # a callable turn runs outside the lock: it may be slow or touch files
        try:
            turn = spec if isinstance(spec, Turn) else spec(req)
            if not isinstance(turn, Turn):
                raise TypeError(f"returned {type(turn).__name__}, not a Turn")
            problem_or_none = turn.check(req)
        except Exception as exc:
            turn, problem_or_none = None, f"callable turn failed: {type(exc).__name__}: {exc}"
        with self._lock:
            if problem_or_none is not None or turn is None:
                problem = f"request {number} does not match turn {index}: {problem_or_none}"
                self.requests.append(req)
                self.failures.append(problem)
                return None, None, problem
            if self._consumed != index:  # another thread took it meanwhile: strict order broke
                problem = f"request {number} raced for turn {index}"
                self.requests.append(req)
                self.failures.append(problem)
                return None, None, problem
            self._consumed += 1
            self.requests.append(replace(req, turn=index))
        return turn, index, ""

    def _wait(self, seconds: float) -> bool:
        """Sleep unless the server stops; False when it stopped."""
        return not (seconds > 0 and self._stopping.wait(seconds))

    def _answer(self, h: _Handler, req: Request, turn: Turn) -> None:
        if not self._wait(turn.delay_s):
            return
        model = turn.model or req.model or "fake-model"
        if turn.status >= 400 and not (turn.mid_stream_error and req.stream):
            h.send_json(
                turn.status, turn.error or _error_body(turn.protocol, turn.status, ""), turn.headers
            )
            return
        if turn.protocol == "anthropic":
            msg_id = turn.message_id or f"msg_fake_{_short_id()}"
            if not req.stream:
                h.send_json(200, _anthropic_json(turn, model, msg_id), turn.headers)
                return
            events: Iterable[tuple[str | None, Any]] = _anthropic_events(turn, model, msg_id)
        else:
            msg_id = turn.message_id or f"chatcmpl-fake{_short_id()}"
            if not req.stream:
                h.send_json(200, _openai_json(turn, model, msg_id), turn.headers)
                return
            opts = req.json.get("stream_options")
            include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
            events = ((None, c) for c in _openai_chunks(turn, model, msg_id, include_usage))
        h.start_sse(turn.headers)
        for sent, (name, data) in enumerate(events):
            if turn.drop_after is not None and sent >= turn.drop_after:
                break
            if sent and not self._wait(turn.chunk_delay_s):
                break
            h.send_sse(name, data)
            self.events_sent += 1

    def _models_body(self, req: Request) -> dict[str, Any]:
        if "anthropic-version" in req.headers:
            data = [
                {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
                for m in self.models
            ]
            return {
                "data": data,
                "has_more": False,
                "first_id": self.models[0] if self.models else None,
                "last_id": self.models[-1] if self.models else None,
            }
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": 1735689600, "owned_by": "fake"}
                for m in self.models
            ],
        }


def _classify(method: str, path: str) -> str:
    if method in ("HEAD", "GET") and path == "/":
        return "health"
    if method == "GET" and path in ("/v1/models", "/models"):
        return "models"
    if method == "POST" and path == "/v1/messages":
        return "anthropic"
    if method == "POST" and path == "/v1/messages/count_tokens":
        return "count_tokens"
    if method == "POST" and path in ("/v1/chat/completions", "/chat/completions"):
        return "openai"
    return "other"


def _validate(req: Request) -> str | None:
    """What the real API would refuse with a 400: a missing model or messages, no max_tokens."""
    if not isinstance(req.body, dict):
        return "the body is not a JSON object"
    if not isinstance(req.body.get("model"), str):
        return "model: field required"
    if not isinstance(req.body.get("messages"), list):
        return "messages: field required"
    if req.kind == "anthropic":
        if not req.body["messages"]:
            return "messages: at least one message is required"
        if not isinstance(req.body.get("max_tokens"), int):
            return "max_tokens: field required"
        return _check_anthropic_tool_pairs(req.messages)
    return _check_openai_tool_pairs(req.messages)


def _check_anthropic_tool_pairs(messages: list[dict[str, Any]]) -> str | None:
    """As the real API does: every tool_result answers a tool_use of the message just before,
    and every tool_use is answered in the next message."""
    for i, msg in enumerate(messages):
        content = msg.get("content")
        blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
        if msg.get("role") == "user":
            results = [b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"]
            prev = messages[i - 1].get("content") if i > 0 else None
            asked = {
                b.get("id")
                for b in (prev if isinstance(prev, list) else [])
                if isinstance(b, dict) and b.get("type") == "tool_use"
            }
            for tid in results:
                if tid not in asked:
                    return (
                        f"messages.{i}: tool_result for {tid!r} has no matching tool_use "
                        "in the previous message"
                    )
        elif msg.get("role") == "assistant" and i + 1 < len(messages):
            ids = [b.get("id") for b in blocks if b.get("type") == "tool_use"]
            nxt = messages[i + 1].get("content")
            answered = {
                b.get("tool_use_id")
                for b in (nxt if isinstance(nxt, list) else [])
                if isinstance(b, dict) and b.get("type") == "tool_result"
            }
            missing = [t for t in ids if t not in answered]
            if missing:
                return (
                    f"messages.{i}: tool_use ids {missing} were not answered by tool_result "
                    f"blocks in messages.{i + 1}"
                )
    return None


def _check_openai_tool_pairs(messages: list[dict[str, Any]]) -> str | None:
    """A ``tool`` message must answer a tool call of an earlier assistant message."""
    called: set[str] = set()
    for i, msg in enumerate(messages):
        if msg.get("role") == "assistant":
            for call in msg.get("tool_calls") or []:
                if isinstance(call, dict):
                    called.add(str(call.get("id")))
        elif msg.get("role") == "tool" and str(msg.get("tool_call_id")) not in called:
            return (
                f"messages.{i}: tool message for {msg.get('tool_call_id')!r} answers no "
                "earlier tool call"
            )
    return None
