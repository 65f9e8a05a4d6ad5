"""Waits that a Ctrl-C or SIGTERM can always interrupt.

Python runs a signal's handler only in the main thread, and only when that thread runs Python
code; the kernel hands a process's signal to any thread that does not block it (one of
DuckDB's worker threads, the thread reading an agent's output). A main thread waiting in one
piece (``Event.wait(600)``, ``Future.result()``, ``Popen.wait()``) then sleeps through the
signal until the wait ends on its own: a `worker --poll 600` ignored SIGTERM for minutes.
Two remedies: waits here are in slices of at most ``SLICE_S`` (the handler runs within that),
and ``relayed_to_main`` sends a signal another thread took on to the main thread, which
interrupts what it blocks in (the CLI runs every command inside it: ``cli.run.stop_on_sigterm``)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Collection, Iterator
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from contextlib import contextmanager
from typing import Any, TypeVar

SLICE_S = 0.5  # the longest a wait lasts in one piece
T = TypeVar("T")


def wait_for(event: threading.Event, timeout_s: float | None = None) -> bool:
    """``event.wait(timeout_s)`` in slices; True when the event is set."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        left = SLICE_S if deadline is None else min(SLICE_S, deadline - time.monotonic())
        if left <= 0:
            return event.is_set()
        if event.wait(left):
            return True


def result(future: Future[T]) -> T:
    """``future.result()``, waited for in slices."""
    while not future.done():
        wait_futures([future], timeout=SLICE_S)
    return future.result()


RELAY_AFTER_S = 0.2  # how long the main thread has to run a signal's handler before the relay


@contextmanager
def relayed_to_main(signums: Collection[int], handled: threading.Event) -> Iterator[None]:
    """While inside, a signal of ``signums`` that another thread took is sent again to the main
    thread, so a blocking call there (an HTTP read, a sleep, a pipe) is interrupted and the
    handler runs. Python's handler writes the signal's number to the wakeup fd whichever
    thread took it; a relay thread reads it and, unless ``handled`` (set by the handler) is set
    within ``RELAY_AFTER_S``, sends it to the main thread, once per signal (the handlers here
    ignore repeats). Call from the main thread."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    try:
        previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except ValueError:  # not the main thread, or no signals here: nothing to relay
        os.close(read_fd)
        os.close(write_fd)
        yield
        return
    main = threading.main_thread().ident
    wanted = set(signums)
    over = threading.Event()  # the handlers may be gone: a signal sent now could kill

    def relay() -> None:
        sent: set[int] = set()
        try:
            while data := os.read(read_fd, 64):
                for signum in set(data) & wanted - sent:
                    if not handled.wait(RELAY_AFTER_S) and not over.is_set() and main:
                        sent.add(signum)
                        interrupt_queries()  # a task of a query does not see the signal
                        signal.pthread_kill(main, signum)
        except OSError:
            pass
        finally:
            os.close(read_fd)

    threading.Thread(target=relay, name="signal-relay", daemon=True).start()
    try:
        yield
    finally:
        over.set()
        signal.set_wakeup_fd(previous)
        os.close(write_fd)  # the relay reads its end and stops


# DuckDB runs a signal's handler while it executes a query (it polls for signals), and when the
# handler raises, it swallows that exception and raises its own "Query interrupted" in its
# place: a SIGTERM or Ctrl-C that landed in a query reached the CLI as a RuntimeError traceback
# (exit 1), and the cleanup meant for KeyboardInterrupt never ran. The handlers note here what
# they raise, so the store can raise it again (``query_interrupted``).
#
# Nor does it stop the query at once: it polls only between the tasks the main thread runs (one
# can last the whole query), and it waits for the tasks of its other threads before it raises.
# A Ctrl-C on a query of ~30 s took effect when it ended; one on a longer query, never. Its own
# ``interrupt()`` stops a query within a chunk of rows: the handlers call it on the connections
# the main thread has open (``interruptible``), and so does ``relayed_to_main`` when the handler
# did not run within ``RELAY_AFTER_S`` (the main thread busy in a task).
_raised: list[type[BaseException]] = []
_main_connections: list[Any] = []  # the DuckDB connections the main thread has open


@contextmanager
def interruptible(conn: Any) -> Iterator[None]:
    """While inside, a query ``conn`` runs on the main thread stops when a signal comes
    (``interrupt_queries``); a connection of another thread is left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _main_connections.append(conn)
    try:
        yield
    finally:
        _main_connections.remove(conn)


def interrupt_queries() -> None:
    """Stop the queries the main thread's connections run (an idle connection is unaffected: its
    next query runs as usual); safe from any thread."""
    for conn in list(_main_connections):
        with contextlib.suppress(Exception):  # closed meanwhile
            conn.interrupt()


def raising(exc: type[BaseException]) -> type[BaseException]:
    """Note that a signal handler raises ``exc`` (a KeyboardInterrupt) and return it."""
    _raised[:] = [exc]
    return exc


def forget() -> None:
    """Forget what a handler raised (the command it stopped is over)."""
    _raised.clear()


def query_interrupted(exc: BaseException) -> BaseException | None:
    """The KeyboardInterrupt a signal handler raised inside a DuckDB query that ended in
    ``exc``, or None when ``exc`` is not DuckDB's "query interrupted"."""
    import duckdb

    interrupted = isinstance(exc, duckdb.InterruptException) or (
        type(exc) is RuntimeError and str(exc) == "Query interrupted"
    )
    if not interrupted:
        return None
    return (_raised[0] if _raised else KeyboardInterrupt)()
