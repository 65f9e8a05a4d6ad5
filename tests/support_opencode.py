"""A stand-in OpenCode server on 127.0.0.1 that misbehaves on chosen routes: it says nothing,
trickles a byte every so often (headers or body), sends headers and then nothing, closes
mid-body, or keeps an event stream alive with comments only. Everything else it answers as a
healthy OpenCode would for one session that goes busy and then idle.

``behave["POST /session"] = "trickle"`` picks a behaviour for a route (``*`` in a path matches
one segment: ``POST /session/*/prompt_async``); ``requests`` lists "METHOD /path" as they came.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SESSION = "ses_1"


def event(kind: str, **props: Any) -> bytes:
    """One SSE event of ``kind`` for the stand-in's session."""
    body = {"type": kind, "properties": {"sessionID": SESSION, **props}}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


CONNECTED = b'data: {"type":"server.connected","properties":{}}\n\n'
BUSY = event("session.status", status={"type": "busy"})
IDLE = event("session.idle")
TEXT = event(
    "message.part.updated",
    part={
        "id": "p1",
        "type": "text",
        "messageID": "m1",
        "sessionID": SESSION,
        "text": "done",
        "time": {"start": 1, "end": 2},
    },
)

ASKS = event("permission.asked", id="per_1", permission="edit", patterns=["x.txt"])
# one model call's tokens and cost, as OpenCode's step-finish part tells them
STEP = event(
    "message.part.updated",
    part={
        "id": "p0",
        "type": "step-finish",
        "messageID": "m0",
        "sessionID": SESSION,
        "reason": "tool-calls",
        "tokens": {"input": 1200, "output": 40, "reasoning": 0, "cache": {"write": 0, "read": 200}},
        "cost": 0.00426,
    },
)

# Behaviours of a plain route: ok (answers at once), silent, trickle, trickle-headers,
# headers-only, close-mid-body. Of /event: "run" is a session that works, then goes idle;
# "busy" one that never ends (comments keep the stream alive), "asks" one that asks a
# permission and waits for it ("calls-then-asks" after a model call told its tokens); "comments" never even says server.connected; silent and
# headers-only as for a plain route.


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up on a misbehaving route is the point, not news


class Misbehaving:
    """Serves until ``close``; ``url`` is its base URL. ``gap`` is the pause between trickled
    bytes and keep-alive comments: shorter than any read timeout, so only a deadline ends them."""

    def __init__(self, gap: float = 0.2) -> None:
        self.behave: dict[str, str] = {"GET /event": "run"}
        self.status: dict[str, Any] = {}  # what GET /session/status answers
        self.requests: list[str] = []
        self.gap = gap
        self.closing = threading.Event()
        self.hung_up: list[str] = []  # routes whose client hung up while they misbehaved
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _route(self, method: str) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?", 1)[0]
                owner.requests.append(f"{method} {path}")
                key = owner.match(method, path)
                try:
                    owner.serve(self, key, method, path)
                except (BrokenPipeError, ConnectionResetError):
                    owner.hung_up.append(key)

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def match(self, method: str, path: str) -> str:
        """The ``behave`` key for a request (the request itself when none matches)."""
        parts = path.split("/")
        for key in self.behave:
            m, _, pattern = key.partition(" ")
            want = pattern.split("/")
            if (
                m == method
                and len(want) == len(parts)
                and all(w in ("*", p) for w, p in zip(want, parts, strict=True))
            ):
                return key
        return f"{method} {path}"

    # -- answers --

    def serve(self, h: BaseHTTPRequestHandler, key: str, method: str, path: str) -> None:
        how = self.behave.get(key, "ok")
        if path == "/event" and method == "GET":
            return self._stream(h, how, key)
        if how == "ok":
            return self._ok(h, method, path)
        w = h.wfile
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        if how == "silent":
            self.hold()
        elif how == "trickle":  # headers, then one byte of the body at a time, forever
            w.write(head + b"Connection: close\r\n\r\n[")
            self._drip(w, key, b" ")
        elif how == "trickle-headers":  # the headers one byte at a time, never ending
            self._drip(w, key, b"x", head + b"X-Pad: ")
        elif how == "headers-only":
            w.write(head + b"Content-Length: 100\r\n\r\n")
            w.flush()
            self.hold()
        elif how == "close-mid-body":
            w.write(head + b"Content-Length: 100\r\nConnection: close\r\n\r\n" + b'{"id": "s')
            w.flush()
            h.close_connection = True
        return None

    def _ok(self, h: BaseHTTPRequestHandler, method: str, path: str) -> None:
        body: Any = None
        if path == "/global/health":
            body = {"healthy": True, "version": "stand-in"}
        elif path == "/session" and method == "POST":
            body = {"id": SESSION}
        elif path == "/session/status":
            body = self.status
        elif method == "GET" and path.startswith("/session/"):
            body = {"id": SESSION, "cost": 0, "tokens": {"input": 0, "output": 0}}
        elif method == "POST" and path.endswith("/abort"):
            body = True
        if body is None:
            h.send_response(204)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        data = json.dumps(body).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _stream(self, h: BaseHTTPRequestHandler, how: str, key: str) -> None:
        w = h.wfile
        if how == "silent":
            return self.hold()
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
        w.flush()
        if how == "headers-only":
            return self.hold()
        if how == "comments":
            return self._drip(w, key, b": keep-alive\n\n")
        w.write(CONNECTED)
        w.flush()
        if how in ("busy", "asks", "calls-then-asks"):  # it works (or waits) for good
            self._wait_for("/prompt_async")
            told = {"asks": ASKS, "calls-then-asks": STEP + ASKS}.get(how, b"")
            w.write(BUSY + told)
            return self._drip(w, key, b": keep-alive\n\n")
        self._wait_for("/prompt_async")
        w.write(BUSY + TEXT + IDLE)
        w.flush()
        return self.hold(1.0)

    # -- time --

    def _drip(self, w: Any, key: str, unit: bytes | None, once: bytes = b"") -> None:
        """Write ``once`` a byte at a time, then ``unit`` every ``gap`` until closed."""
        for i in range(len(once)):
            if self.closing.wait(self.gap):
                return
            w.write(once[i : i + 1])
            w.flush()
        while unit is not None and not self.closing.wait(self.gap):
            w.write(unit)
            w.flush()
        if unit is None:
            self.hold()

    def _wait_for(self, suffix: str, limit: float = 10.0) -> None:
        until = time.monotonic() + limit
        while not any(r.endswith(suffix) for r in self.requests):
            if time.monotonic() > until or self.closing.wait(0.01):
                return

    def hold(self, seconds: float = 60.0) -> None:
        """Keep the connection open, saying nothing (until closed)."""
        self.closing.wait(seconds)

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def __enter__(self) -> Misbehaving:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Deaf:
    """A port that accepts TCP connections (the kernel's backlog does) and never reads or
    answers: a server that is hung, or something else listening there."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Deaf:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """``fn()``'s result (or the exception it raised) and how long it took."""
    started = time.monotonic()
    try:
        result: Any = fn()
    except Exception as exc:
        result = exc
    return time.monotonic() - started, result
