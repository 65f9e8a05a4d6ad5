"""Waiting for a model call that a run's cancel event can give up on."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from specwright.llm.errors import LLMCancelled, LLMError, LLMTimeoutError

T = TypeVar("T")


def ended(exc: BaseException) -> tuple[str, str, bool]:
    """A failed call's execution status, exit reason, and whether its cost is unknown: a call
    cut short (a timeout, a cancel, Ctrl-C, a crash) told no tokens but may have been
    answered, and billed. Ctrl-C or SIGTERM is ``interrupted``, as for an agent."""
    if isinstance(exc, KeyboardInterrupt):
        return "cancelled", "interrupted", True
    if isinstance(exc, LLMError):
        status = "cancelled" if isinstance(exc, LLMCancelled) else "error"
        return status, f"{exc.reason}: {exc}", isinstance(exc, LLMTimeoutError | LLMCancelled)
    return "error", f"{type(exc).__name__}: {exc}", True


def until_cancel(call: Callable[[threading.Event], T], cancel: threading.Event, who: str) -> T:
    """``call(stop)`` in a daemon thread, waited for until ``cancel`` is set: then it raises
    ``LLMCancelled`` at once. A blocked read cannot be interrupted from another thread (closing
    the SDK client does not end it), so the call is left to end by itself; ``stop`` is set
    whenever the wait ends, so it sends no further attempt."""
    stop, done, box = threading.Event(), threading.Event(), list[Any]()

    def run() -> None:
        try:
            box.append((True, call(stop)))
        except BaseException as exc:
            box.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=run, name="llm-call", daemon=True).start()
    try:
        while not done.wait(0.05):
            if cancel.is_set():
                raise LLMCancelled(f"{who}: cancelled while waiting for the answer")
    finally:
        stop.set()
    ok, value = box[0]
    if ok:
        return value
    raise value
