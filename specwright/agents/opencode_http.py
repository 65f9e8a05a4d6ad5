"""Talking to an OpenCode server so that every exchange ends in bounded time and size.

httpx's timeouts are per read: a server that trickles a byte every few seconds (a JSON answer,
headers a byte at a time, an event stream of keep-alive comments) never trips them. So each
exchange also has a deadline of its own, the smaller of its fixed bound and what is left of the
run's ``timeout_s``, kept by a watchdog thread: when it passes, or the run is cancelled, the
watchdog shuts the client's sockets down and the blocked read returns at once. The sockets are
found through httpcore's ``trace`` extension (with an injected transport there are none, and
the deadline is checked between the pieces read instead). Sizes are bounded by sse.read_answer.

An abort and the session totals, sent on the way out when the run's time is up or it was
cancelled, have short bounds of their own.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from specwright.agents.sse import Answer, AnswerTooSlow, read_answer
from specwright.errors import AgentError
from specwright.redact import without_password

if TYPE_CHECKING:
    import httpx

CONNECT_S = 5.0  # to open a connection (within an exchange's own bound)
WATCH_S = 0.05  # how often a watchdog looks at the cancel event


def seconds(value: float) -> str:
    """A duration for a message: ``15``, ``2.5``, ``0.25``."""
    return f"{value:.2g}" if value < 10 else f"{value:.0f}"


class Connections:
    """The sockets an httpx client opened, so a watchdog can shut them down. Only the thread
    of the exchange under way uses the client, so shutting all of them down stops that one;
    an idle pooled connection shut down too is dropped by the pool at its next use."""

    def __init__(self) -> None:
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()

    def hook(self, request: httpx.Request) -> None:
        """An httpx request hook: have httpcore tell ``trace`` about new connections."""
        request.extensions["trace"] = self.trace

    def trace(self, name: str, info: dict[str, Any]) -> None:
        """httpcore's trace callback: keep the socket of each connection it opens."""
        if not name.endswith((".connect_tcp.complete", ".start_tls.complete")):
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            with self._lock:
                self._socks = [s for s in self._socks if s.fileno() >= 0]
                self._socks.append(sock)

    def shut(self) -> None:
        """Shut every socket down: a read blocked on one returns (at its end) at once."""
        with self._lock:
            socks = list(self._socks)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Watchdog:
    """While open, shuts ``connections`` down once ``limit_s`` passed or ``cancel`` is set;
    ``fired`` says which ("deadline" | "cancel")."""

    def __init__(
        self, connections: Connections, limit_s: float, cancel: threading.Event | None = None
    ) -> None:
        self.connections, self.limit_s, self.cancel = connections, limit_s, cancel
        self.fired: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="opencode-deadline", daemon=True)

    def _watch(self) -> None:
        until = time.monotonic() + self.limit_s
        while True:
            if self.cancel is not None and self.cancel.is_set():
                self.fired = "cancel"
                break
            left = until - time.monotonic()
            if left <= 0:
                self.fired = "deadline"
                break
            if self._done.wait(min(left, WATCH_S) if self.cancel is not None else left):
                return
        self.connections.shut()

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def make_client(
    url: str,
    read_timeout: float,
    transport: httpx.BaseTransport | None = None,
) -> tuple[httpx.Client, Connections]:
    """An httpx client for the server at ``url`` (``OPENCODE_SERVER_PASSWORD`` as basic auth,
    no proxies from the environment) and the connections it opens."""
    import httpx

    auth = None
    password = os.environ.get("OPENCODE_SERVER_PASSWORD")
    if password:
        auth = httpx.BasicAuth(os.environ.get("OPENCODE_SERVER_USERNAME", "opencode"), password)
    connections = Connections()
    kwargs: dict[str, Any] = {
        "base_url": url,
        "timeout": httpx.Timeout(read_timeout, connect=CONNECT_S),
        "auth": auth,
        "trust_env": False,
        "event_hooks": {"request": [connections.hook]},
    }
    if transport is not None:
        kwargs["transport"] = transport
    return httpx.Client(**kwargs), connections


class ExchangeError(AgentError):
    """An exchange with the server failed; ``cause`` is the httpx error, if any."""

    def __init__(self, message: str, cause: Exception | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class ExchangeTimeout(ExchangeError):
    """No complete answer within the exchange's deadline."""


class ExchangeCancelled(ExchangeError):
    """The run was cancelled while the exchange was under way."""


class Link:
    """One run's client for plain calls to the server, with the run's deadline (``timeout_s``
    from now) and cancel event, which bound every exchange."""

    def __init__(
        self,
        url: str,
        executor: str,
        timeout_s: float | None,
        cancel: threading.Event | None = None,
        transport: httpx.BaseTransport | None = None,
        read_timeout: float = 15.0,
    ) -> None:
        self.url, self.executor, self.timeout_s = url, executor, timeout_s
        self.cancel = cancel or threading.Event()
        self.until = time.monotonic() + timeout_s if timeout_s else None
        self.client, self.connections = make_client(url, read_timeout, transport)
        self.aborted = False  # an abort of the session was sent

    def left(self) -> float | None:
        """Seconds left of the run's ``timeout_s`` (None: no limit)."""
        return None if self.until is None else self.until - time.monotonic()

    def expired(self) -> bool:
        """True once the run's ``timeout_s`` is used up."""
        return self.until is not None and time.monotonic() >= self.until

    def short(self, bound: float) -> float:
        """``bound``, or the run's ``timeout_s`` when that is smaller: a wait on the way out."""
        return min(bound, self.timeout_s) if self.timeout_s else bound

    def budget(self, bound: float, on_the_way_out: bool = False) -> tuple[float, str]:
        """How long an exchange may take, and the limit that says so (for its error)."""
        left = self.short(bound) if on_the_way_out else self.left()
        if left is not None and left < bound:
            total = seconds(self.timeout_s or 0)
            return max(left, 0.0), f"executor {self.executor!r} timeout_s: {total} s"
        return bound, f"the {seconds(bound)} s limit for this call"

    def call(
        self,
        method: str,
        path: str,
        what: str,
        bound: float,
        *,
        on_the_way_out: bool = False,
        **kwargs: Any,
    ) -> Answer:
        """``read_answer`` of ``METHOD path`` within its budget; a one-line ``ExchangeError``
        naming the server, ``what`` was being done, the request and the limit otherwise. An
        exchange on the way out (an abort, the totals) is not stopped by the cancel event."""
        import httpx

        limit_s, why = self.budget(bound, on_the_way_out)
        where = f"OpenCode server at {without_password(self.url)}: cannot {what}: {method} {path}"
        late = f"{where}: no complete answer within {seconds(limit_s)} s ({why})"
        if limit_s <= 0:
            raise ExchangeTimeout(late)
        timeout = httpx.Timeout(limit_s, connect=min(CONNECT_S, limit_s))
        cancel = None if on_the_way_out else self.cancel
        failure: ExchangeError | None = None
        with Watchdog(self.connections, limit_s, cancel) as dog:
            try:
                answer = read_answer(
                    self.client,
                    method,
                    path,
                    deadline=time.monotonic() + limit_s,
                    timeout=timeout,
                    **kwargs,
                )
            except (httpx.HTTPError, AnswerTooSlow) as exc:
                cause = exc if isinstance(exc, httpx.HTTPError) else None
                text = " ".join(str(exc).split())  # one line, whatever the error says
                failure = ExchangeError(f"{where}: {type(exc).__name__}: {text}", cause)
                if isinstance(exc, httpx.TimeoutException | AnswerTooSlow):
                    failure = ExchangeTimeout(late, cause)
        # once its socket is shut, a body that runs to the connection's end looks whole
        if dog.fired == "cancel":
            raise ExchangeCancelled(f"{where}: cancelled", failure and failure.cause)
        if dog.fired == "deadline":
            raise ExchangeTimeout(late, failure and failure.cause)
        if failure is not None:
            raise failure
        return answer

    def close(self) -> None:
        self.client.close()
