"""Waits that a Ctrl-C or SIGTERM can always interrupt.

Python runs a signal's handler only in the main thread, and only when that thread runs Python
code; the kernel hands a process's signal to any thread that does not block it (one of
DuckDB's worker threads, the thread reading an agent's output). A main thread waiting in one
piece (``Event.wait(600)``, ``Future.result()``, ``Popen.wait()``) then sleeps through the
signal until the wait ends on its own: a `worker --poll 600` ignored SIGTERM for minutes.
These wait in slices of at most ``SLICE_S``, so the handler runs within that."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from typing import TypeVar

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
