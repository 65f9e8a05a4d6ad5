"""Shared transport for CLI agents: a subprocess in its own process group, read line by line.

The adapters (claude_code, command) keep their parsing pure; this module owns the process:
spawning it with its own session (so a cancel kills the agent *and* every tool it started),
streaming stdout lines with a size cap, keeping a bounded tail of stderr, and killing the whole
group on cancel, on timeout and after a normal exit (no stray children left behind).

Specwright itself may die without a chance to clean up (kill -9, OOM): ``orphans`` makes the
agent die with it and registers it for crash recovery.
Also here: turning one raw line into a JSON object or a warning, and slimming raw payloads.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

from specwright.agents.executables import NOT_A_PROGRAM, why_not_started
from specwright.agents.orphans import (
    AGENT_TOKEN_ENV,
    die_with_parent,
    new_token,
    register_agent,
    stop_strays,
    unregister_agent,
)
from specwright.errors import AgentError, AgentStartError
from specwright.model import ErrorEvent

MAX_LINE_BYTES = 128 * 1024 * 1024  # a longer stdout line is dropped (with a warning), not kept
# Lines read but not yet handled (the recorder may wait on a locked database): past this the
# reader stops reading, so the pipe pushes back on the agent instead of our memory growing.
QUEUED_BYTES = 64 * 1024 * 1024
QUEUED_ITEMS = 10000
STDERR_TAIL_BYTES = 16 * 1024
TERM_GRACE_S = 3.0  # after SIGTERM, how long the agent gets before the group is SIGKILLed
DRAIN_S = 5.0  # after the agent ended, how long to wait for its stdout to close
SLIM_STRING_CHARS = 4096  # raw payloads keep strings up to this; longer ones keep head + length
T = TypeVar("T")


@dataclass(frozen=True)
class Overlong:
    """Marker for a stdout line (or an event) longer than its limit, ``MAX_LINE_BYTES`` unless
    ``limit`` says otherwise; its bytes were discarded, ``size`` counts them."""

    size: int
    limit: int = 0


class BoundedQueue(Generic[T]):
    """The hand-off from a reader thread to its consumer, bounded in items and in bytes: ``put``
    blocks while more than ``max_bytes`` wait (one item always fits, whatever its size), so the
    agent's pipe or socket pushes back rather than our memory growing."""

    def __init__(self, max_items: int | None = None, max_bytes: int | None = None) -> None:
        self.max_items = QUEUED_ITEMS if max_items is None else max_items
        self.max_bytes = QUEUED_BYTES if max_bytes is None else max_bytes
        self._items: deque[tuple[T, int]] = deque()
        self._bytes = 0
        self._cond = threading.Condition()

    def put(self, item: T, size: int = 0, stop: threading.Event | None = None) -> bool:
        """Add ``item`` once there is room (at once when ``stop`` is None and ``size`` is 0:
        end markers never wait); False when ``stop`` was set while waiting."""
        with self._cond:
            while (
                self._items
                and size
                and (len(self._items) >= self.max_items or self._bytes + size > self.max_bytes)
            ):
                if stop is not None and stop.is_set():
                    return False
                self._cond.wait(0.1)
            self._items.append((item, size))
            self._bytes += size
            self._cond.notify_all()
            return True

    def get(self, timeout: float) -> T:
        """The oldest item; ``queue.Empty`` after ``timeout`` seconds without one."""
        with self._cond:
            if not self._items and not self._cond.wait_for(lambda: bool(self._items), timeout):
                raise queue.Empty
            item, size = self._items.popleft()
            self._bytes -= size
            self._cond.notify_all()
            return item

    @property
    def queued_bytes(self) -> int:
        return self._bytes


@dataclass
class ProcessResult:
    """How the process ended."""

    returncode: int | None = None
    cancelled: bool = False
    timed_out: bool = False
    stderr_tail: str = ""
    pid: int | None = None
    lines: int = 0


def _tail_reader(stream: Any, tail: deque[bytes], limit: int) -> None:
    size = 0
    for chunk in iter(lambda: stream.read1(65536), b""):
        tail.append(chunk)
        size += len(chunk)
        while size > limit and len(tail) > 1:
            size -= len(tail.popleft())
    stream.close()


def _line_reader(
    stream: Any, out: BoundedQueue[bytes | Overlong | None], stop: threading.Event
) -> None:
    try:
        while not stop.is_set():
            line = stream.readline(MAX_LINE_BYTES)
            if not line:
                break
            if len(line) >= MAX_LINE_BYTES and not line.endswith(b"\n"):
                size = len(line)
                while True:  # discard the rest of this line
                    more = stream.readline(MAX_LINE_BYTES)
                    size += len(more)
                    if not more or more.endswith(b"\n"):
                        break
                out.put(Overlong(size, MAX_LINE_BYTES))
                continue
            if not out.put(line, len(line), stop):
                break  # nobody reads the lines any more
    except (OSError, ValueError):
        pass
    finally:
        out.put(None)
        with contextlib.suppress(OSError):
            stream.close()


def _stdin_writer(stream: Any, data: bytes) -> None:
    try:
        stream.write(data)
    except (BrokenPipeError, OSError, ValueError):
        pass  # the agent stopped reading; its exit code tells the story
    finally:
        with contextlib.suppress(OSError, ValueError):
            stream.close()


def kill_group(
    pid: int, grace_s: float = TERM_GRACE_S, proc: subprocess.Popen[Any] | None = None
) -> None:
    """SIGTERM the process group led by ``pid``, wait up to ``grace_s`` for the leader, then
    SIGKILL whatever is left of the group."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)


@dataclass
class ProcessStream:
    """One agent process: ``lines()`` yields its stdout lines until it exits, is cancelled or
    times out; ``result`` says which. Always ends with the whole process group gone.

    On Linux the agent is SIGKILLed when the thread that called ``start()`` ends, so start it on
    a thread that lives until the agent is done (the one that reads ``lines()``)."""

    argv: Sequence[str]
    cwd: Path
    env: Mapping[str, str]
    stdin_data: bytes | None = None
    timeout_s: float | None = None
    result: ProcessResult = field(default_factory=ProcessResult)
    proc: subprocess.Popen[bytes] | None = None
    registration: Path | None = None  # the agent's record for crash recovery, while it runs
    token: str = field(default_factory=new_token)  # in its environment: what it starts has it

    def start(self) -> ProcessStream:
        try:
            self.proc = subprocess.Popen(
                list(self.argv),
                cwd=str(self.cwd),
                env={**self.env, AGENT_TOKEN_ENV: self.token},
                stdin=subprocess.PIPE if self.stdin_data is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # own process group: cancel kills the agent's tools too
                preexec_fn=die_with_parent(),  # and it dies with us, even after kill -9
            )
        except FileNotFoundError as exc:  # the program, or the interpreter its #! names
            why = why_not_started(str(self.argv[0]), exc)
            raise AgentStartError(f"{self.argv[0]}: cannot start: {why}") from None
        except PermissionError:
            raise AgentStartError(f"{self.argv[0]}: cannot start: not executable") from None
        except NotADirectoryError:
            raise AgentError(f"{self.cwd}: working directory is not a directory") from None
        except OSError as exc:
            why = exc.strerror
            if exc.errno == errno.E2BIG:  # an argument (the prompt?) longer than the OS allows
                size = sum(len(str(a)) for a in self.argv)
                why = f"{why} (command line {size} chars; pass a long prompt by stdin)"
            elif exc.errno == errno.ENOEXEC:  # a script without `#!`, another system's binary
                why = NOT_A_PROGRAM
            # these fail the same way on every try; a fork that failed for memory may not
            same = exc.errno in (errno.E2BIG, errno.ENOEXEC, errno.ELOOP, errno.ENAMETOOLONG)
            raise (AgentStartError if same else AgentError)(
                f"{self.argv[0]}: cannot start: {why}"
            ) from None
        self.result.pid = self.proc.pid
        self.registration = register_agent(self.proc.pid, self.argv[0], self.cwd, token=self.token)
        return self

    def abandon(self) -> None:
        """Kill the agent's whole group when its lines will not be read (the caller failed
        between ``start()`` and ``lines()``): nothing is left running."""
        proc = self.proc
        if proc is None:
            return
        kill_group(proc.pid, proc=proc)
        stop_strays(self.token)
        unregister_agent(self.registration)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def lines(self, cancel: threading.Event) -> Generator[bytes | Overlong, None, None]:
        """Stdout lines as they arrive. Stops early (killing the group) on cancel or timeout."""
        proc = self.proc
        if proc is None:
            self.start()
            proc = self.proc
        assert proc is not None and proc.stdout is not None and proc.stderr is not None
        q: BoundedQueue[bytes | Overlong | None] = BoundedQueue()
        tail: deque[bytes] = deque()
        done = threading.Event()  # the reader stops waiting for room once lines() is left
        threads = [
            threading.Thread(target=_line_reader, args=(proc.stdout, q, done), daemon=True),
            threading.Thread(
                target=_tail_reader, args=(proc.stderr, tail, STDERR_TAIL_BYTES), daemon=True
            ),
        ]
        if self.stdin_data is not None and proc.stdin is not None:
            threads.append(
                threading.Thread(
                    target=_stdin_writer, args=(proc.stdin, self.stdin_data), daemon=True
                )
            )
        for t in threads:
            t.start()
        deadline = time.monotonic() + self.timeout_s if self.timeout_s else None
        ended_at: float | None = None  # when the agent exited or was killed
        eof = False
        swept = False
        try:
            while True:
                now = time.monotonic()
                if ended_at is None:
                    if cancel.is_set():
                        self.result.cancelled = True
                        kill_group(proc.pid, proc=proc)
                    elif deadline is not None and now >= deadline:
                        self.result.timed_out = True
                        kill_group(proc.pid, proc=proc)
                    if proc.poll() is not None:
                        ended_at = time.monotonic()
                elif not swept and now - ended_at > 0.5:
                    # a leftover child still holds stdout open: the agent is done, so it goes
                    swept = True
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, signal.SIGKILL)
                elif now - ended_at > DRAIN_S:
                    break  # something outside the group holds the pipe; stop waiting for it
                try:
                    item = q.get(timeout=0.05)
                except queue.Empty:
                    continue
                if item is None:
                    eof = True
                    break
                self.result.lines += 1
                yield item  # lines already printed before a kill are still real output
        finally:
            done.set()
            if not eof and proc.poll() is None:  # abandoned mid-stream (an exception, Ctrl-C)
                kill_group(proc.pid, proc=proc)
            self._finish(proc, threads, tail)

    def _finish(
        self, proc: subprocess.Popen[bytes], threads: list[threading.Thread], tail: deque[bytes]
    ) -> None:
        try:
            proc.wait(timeout=TERM_GRACE_S)
        except subprocess.TimeoutExpired:  # stdout closed but the process lingers
            kill_group(proc.pid, proc=proc)
        # the agent is gone; anything it left running in its group goes too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        stop_strays(self.token)  # and what it started in sessions of their own
        unregister_agent(self.registration)
        for t in threads:
            t.join(timeout=2)
        self.result.returncode = proc.returncode
        self.result.stderr_tail = clean_tail(b"".join(tail), STDERR_TAIL_BYTES)


CUT_SKIP = 256  # a tail cut with no line break or space near its start loses this much more


def clean_tail(data: bytes | str, limit: int) -> str:
    """The last ``limit`` bytes (or chars) of ``data`` as text; when that cuts, it starts after
    the first line break (or space) in it, so no half line, half character or half secret is
    kept (with none, ``CUT_SKIP`` more are dropped: a secret has no spaces, few are longer)."""
    raw = data.encode("utf-8", errors="replace") if isinstance(data, str) else data
    if len(raw) <= limit:
        return raw.decode("utf-8", errors="replace")
    raw = raw[-limit:]
    for sep in (b"\n", b" ", b"\t"):
        at = raw.find(sep, 0, limit // 2)
        if at >= 0:
            return "…" + raw[at + 1 :].decode("utf-8", errors="replace")
    return "…" + raw[min(CUT_SKIP, limit // 2) :].decode("utf-8", errors="ignore")


# --- line decoding --------------------------------------------------------------------------


def preview(text: str, limit: int = 200) -> str:
    """A short, single-line excerpt for warnings."""
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[:limit] + f"…(+{len(text) - limit} chars)"


# a \uD800-\uDFFF escape: half of a UTF-16 pair, maybe alone (a JavaScript agent cutting a
# tool output mid-emoji leaves one, which JSON.stringify writes as such an escape)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _no_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_no_surrogates(k): _no_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_surrogates(v) for v in value]
    return value


def loads_json(text: str | bytes) -> Any:
    """``json.loads`` for what an agent sends: a lone UTF-16 surrogate escape becomes U+FFFD
    (a pair decodes to its one character as usual). Python keeps a lone one as a character
    that UTF-8 cannot encode, so the journal, the database and the terminal all refused it and
    the attempt failed with a UnicodeEncodeError."""
    obj = json.loads(text)
    found = (
        _SURROGATE_ESCAPE_BYTES.search(text)
        if isinstance(text, bytes)
        else _SURROGATE_ESCAPE.search(text)
    )
    return _no_surrogates(obj) if found else obj


def decode_json_line(
    line: bytes | str, lineno: int | None = None
) -> tuple[dict[str, Any] | None, list[ErrorEvent]]:
    """Decode one stream line into a JSON object; anything odd becomes a warning event.

    Non-UTF-8 bytes are replaced (and warned about), blank lines give nothing, and truncated or
    non-object JSON gives ``None`` plus a warning carrying an excerpt of the line."""
    where = f"line {lineno}: " if lineno is not None else ""
    warnings: list[ErrorEvent] = []
    if isinstance(line, bytes | bytearray):
        try:
            text = bytes(line).decode("utf-8")
        except UnicodeDecodeError as exc:
            text = bytes(line).decode("utf-8", errors="replace")
            warnings.append(
                ErrorEvent(
                    f"{where}invalid UTF-8 at byte {exc.start}; undecodable bytes replaced",
                    kind="warning",
                    raw={"line": preview(text, 2000)},
                )
            )
    else:
        text = line
    text = text.strip()
    if not text:
        return None, warnings
    try:
        obj = loads_json(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        why = (
            f"{exc.msg} at char {exc.pos}"
            if isinstance(exc, json.JSONDecodeError)
            else "nested too deep"
        )
        warnings.append(
            ErrorEvent(
                f"{where}not valid JSON ({why}): {preview(text)}",
                kind="warning",
                raw={"line": preview(text, 2000)},
            )
        )
        return None, warnings
    if not isinstance(obj, dict):
        warnings.append(
            ErrorEvent(
                f"{where}expected a JSON object, got {type(obj).__name__}: {preview(text)}",
                kind="warning",
                raw={"line": preview(text, 2000)},
            )
        )
        return None, warnings
    return obj, warnings


def slim(obj: Any, limit: int = SLIM_STRING_CHARS) -> Any:
    """A copy of a JSON payload with long strings cut (keeping their length), for ``raw``."""
    if isinstance(obj, str):
        if len(obj) <= limit:
            return obj
        return f"{obj[:limit]}…[truncated; {len(obj)} chars]"
    if isinstance(obj, dict):
        return {k: slim(v, limit) for k, v in obj.items()}
    if isinstance(obj, list):
        return [slim(v, limit) for v in obj]
    return obj


# no real token count comes near; two of 2**62 in one execution overflowed the sums of every
# report (`usage specs`, `status`, the dashboard), as the ingests' bound of agents' logs says
COUNT_BELOW = 2**53


def count(value: Any) -> int:
    """A token count from an agent's JSON: a non-negative whole number below ``COUNT_BELOW``,
    else 0 (a string, a list, ``1e400``, a negative or absurd number from a misbehaving agent
    never stop a run nor break a report)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return 0
    try:
        number = float(value)
    except ValueError:
        return 0
    return int(number) if math.isfinite(number) and 0 <= number < COUNT_BELOW else 0


def cost(value: Any) -> float | None:
    """A reported cost in USD: a finite number, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def mapping(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def overlong_warning(item: Overlong, lineno: int, what: str = "line") -> ErrorEvent:
    """The warning recorded for a stdout line (or an event: ``what``) too long to keep."""
    limit = item.limit or MAX_LINE_BYTES
    return ErrorEvent(
        f"{what} {lineno}: {item.size} bytes, longer than the {limit} byte limit; dropped",
        kind="warning",
        raw={"size": item.size, "limit": limit},
    )


def open_stream_log(executor: str, path: object, mode: str = "ab") -> IO[Any] | None:
    """The file ``options.stream_log`` names, opened to append (None when unset); one that
    cannot be written is an ``AgentError`` naming the option, before anything has started."""
    if not path:
        return None
    try:
        return open(os.path.expanduser(str(path)), mode)
    except OSError as exc:
        raise AgentStartError(
            f"executor {executor!r}: options.stream_log {path}: cannot write there "
            f"({exc.strerror or exc})"
        ) from None


def timeout_message(limit_s: float | None) -> str:
    """An agent killed at its time limit, naming the limit."""
    limit = f" ({limit_s:g} s)" if limit_s else ""
    return f"the agent ran past its time limit{limit} and was killed"
