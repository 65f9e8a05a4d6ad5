"""Bounded reading of an HTTP server's answers: its server-sent event stream and its bodies.

A server is untrusted input: one endless ``data:`` line, an event of gigabytes or a JSON answer
that never ends must not grow our memory. ``SSEDecoder`` turns bytes into the ``data`` of each
event, or an ``Overlong`` marker for an event past its limit (its bytes are counted, not kept);
``read_answer`` reads a body up to a limit and stops reading there, or at a deadline (a body
trickled a byte at a time never trips httpx's read timeout, which is per read; opencode_http.py
also cuts a read blocked past the deadline).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from specwright.agents.process import Overlong, loads_json
from specwright.errors import AgentError

if TYPE_CHECKING:
    import httpx

# The largest OpenCode event kept: the same bound as a Claude Code stdout line (one message
# part, or a session.diff carrying whole files, is far smaller; a longer one is dropped).
MAX_EVENT_BYTES = 128 * 1024 * 1024
# A plain JSON answer (health, session, status, an error): a few KB in practice; a session's
# info with its diff summary stays well under this.
MAX_ANSWER_BYTES = 4 * 1024 * 1024


class SSEDecoder:
    """Bytes of a ``text/event-stream`` in, the ``data`` of each complete event out (``data:``
    lines joined by newlines; other fields and comments are skipped). An event whose lines add
    up to more than ``limit`` bytes becomes ``Overlong(size, limit)`` once it ends."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._line = bytearray()  # the line read so far (nothing while dropping)
        self._line_len = 0  # its length, counted while dropping too
        self._data: list[bytes] = []  # data lines of the current event
        self._size = 0  # bytes of the current event's complete lines, with their line ends
        self._dropping = False  # the current event passed the limit: count, do not keep
        self._cr = False  # the last chunk ended with CR: a LF next is the same line end

    @property
    def dropping(self) -> bool:
        """True while an event past the limit is being read (and dropped)."""
        return self._dropping

    def feed(self, chunk: bytes) -> list[str | Overlong]:
        """The events that ``chunk`` completes."""
        out: list[str | Overlong] = []
        if self._cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._cr = chunk.endswith(b"\r")
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        start = 0
        while start < len(chunk):
            end = chunk.find(b"\n", start)
            self._add(chunk[start:] if end < 0 else chunk[start:end])
            if end < 0:
                break
            event = self._end_line()
            if event is not None:
                out.append(event)
            start = end + 1
        return out

    def close(self) -> list[Overlong]:
        """At the end of the stream: an event cut off while being dropped is still reported;
        any other unfinished event is discarded, as the SSE spec says."""
        dropped, size = self._dropping, self._size + self._line_len
        self._line, self._line_len, self._data, self._size = bytearray(), 0, [], 0
        self._dropping = False
        return [Overlong(size, self.limit)] if dropped else []

    def _add(self, piece: bytes) -> None:
        self._line_len += len(piece)
        if self._dropping:
            return
        if self._size + self._line_len > self.limit:
            self._line, self._data, self._dropping = bytearray(), [], True
            return
        self._line += piece

    def _end_line(self) -> str | Overlong | None:
        length, line = self._line_len, bytes(self._line)
        self._line, self._line_len = bytearray(), 0
        if length:
            self._size += length + 1
            if not self._dropping and line.startswith(b"data"):
                name, _, value = line.partition(b":")
                if name == b"data":
                    self._data.append(value[1:] if value.startswith(b" ") else value)
            return None
        size, data = self._size, self._data  # a blank line ends the event
        self._size, self._data = 0, []
        if self._dropping:
            self._dropping = False
            return Overlong(size, self.limit)
        if not data:
            return None
        return b"\n".join(data).decode("utf-8", errors="replace")


def iter_events(
    response: httpx.Response, decoder: SSEDecoder, stop: threading.Event | None = None
) -> Iterator[str | Overlong]:
    """The events of a streaming ``response`` through ``decoder``; stops reading (mid-event
    too, so ``decoder`` may hold an event being dropped) once ``stop`` is set."""
    content_type = response.headers.get("content-type", "").partition(";")[0].strip()
    if response.status_code != 200 or content_type != "text/event-stream":
        raise AgentError(
            f"GET {response.url.path} answered HTTP {response.status_code} "
            f"{content_type or 'without a content type'}, not an event stream"
        )
    for chunk in response.iter_bytes():
        if stop is not None and stop.is_set():
            return
        yield from decoder.feed(chunk)
    if stop is not None and stop.is_set():
        return  # the stream ended because we shut it: the caller closes ``decoder``
    yield from decoder.close()


class AnswerTooLarge(AgentError):
    """A server's answer longer than the limit (it was not read to its end)."""


class AnswerTooSlow(AgentError):
    """A server's answer not complete by its deadline (it was not read to its end)."""


@dataclass(frozen=True)
class Answer:
    """A whole, bounded HTTP answer."""

    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return loads_json(self.content)


def read_answer(
    client: httpx.Client,
    method: str,
    url: str,
    limit: int | None = None,
    deadline: float | None = None,
    **kwargs: Any,
) -> Answer:
    """``client.request`` read up to ``limit`` (``MAX_ANSWER_BYTES``) bytes; ``AnswerTooLarge``
    (naming the limit) as soon as the body passes it, closing the connection unread. With a
    ``deadline`` (``time.monotonic()``), ``AnswerTooSlow`` once a piece arrives after it."""
    limit = MAX_ANSWER_BYTES if limit is None else limit
    with client.stream(method, url, **kwargs) as response:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise AnswerTooLarge(
                f"{method} {url}: answer of {int(declared)} bytes, longer than the "
                f"{limit} byte limit; not read"
            )
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > limit:
                raise AnswerTooLarge(
                    f"{method} {url}: answer longer than the {limit} byte limit; not read past it"
                )
            if deadline is not None and time.monotonic() > deadline:
                raise AnswerTooSlow(f"{method} {url}: answer not complete by its deadline")
        return Answer(response.status_code, bytes(body))
