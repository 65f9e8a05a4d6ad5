"""Running one agent attempt in a worker thread, so Ctrl-C, a cancel event and the wall-time
limit can always stop it: the caller's thread sets the agent's cancel event (the adapter kills
its process group) and waits for it to end. Events stream to the recorder and to ``observe``."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from specwright.errors import AgentStartError, LoopExit, SpecwrightError, one_line
from specwright.model import ErrorEvent

if TYPE_CHECKING:
    from specwright.agents.base import Executor, Outcome, Task
    from specwright.gitstate import Watch
    from specwright.model import AgentEvent
    from specwright.recorder import ExecutionRecorder

STOP_GRACE_S = 30.0  # how long a cancelled agent gets to stop before it is recorded as killed


class _Observed:
    """Wraps an executor to show its events to the loop as they stream, and to ``settle`` the
    repository once the agent has ended (stopped too), before its execution is closed: what
    that puts back is one warning event of the execution."""

    def __init__(
        self, inner: Executor, observe: Callable[[AgentEvent], None], watch: Watch | None = None
    ) -> None:
        self.inner, self.observe, self.watch = inner, observe, watch
        self.name, self.backend = inner.name, inner.backend

    def execute(self, task: Any, on_event: Callable[[AgentEvent], None], cancel: Any) -> Outcome:
        def both(event: AgentEvent) -> None:
            on_event(event)
            self.observe(event)

        ended = False  # the adapter returned, so every process of the agent's has ended
        try:
            outcome = self.inner.execute(task, both, cancel)
            ended = bool(getattr(self.inner, "waits_for_its_processes", False))
            return outcome
        finally:
            if self.watch is not None:
                try:
                    done = self.watch.settle(agent_gone=ended)
                except Exception as exc:  # a git error, an unreadable hook: said, not raised
                    done = [f"could not check the repository: {exc}"]
                if done:
                    said = "; ".join(done)
                    said = f"git: changed outside the work tree while the agent ran, undone: {said}"
                    both(ErrorEvent(said, "warning"))


@dataclass(frozen=True)
class AgentRun:
    """How an attempt's execution ended: the outcome, or why there is none."""

    outcome: Outcome | None
    crash: str | None = None  # the adapter raised: its message
    stopped_by: str | None = None  # "cancel" | "deadline" when the caller stopped it
    cannot_start: bool = False  # the agent could not be started: another try fails the same
    error: BaseException | None = None  # what the adapter raised, for a caller to raise again


def agent_exit(executor: Executor, run: AgentRun, message: str, tries: int) -> LoopExit:
    """How a chunk run ends when its agent keeps failing: after its retries, or at once when
    the agent could not be started (missing, not a program: nothing a retry would change)."""
    if run.cannot_start:
        return LoopExit(
            "cannot_start",
            f"executor {executor.name!r} ({executor.backend}) could not start: "
            f"{one_line(message, 500)}; not retried: fix it and run the chunk again",
        )
    return LoopExit("agent_error", f"{message} (after {tries} attempt(s))")


def run_agent(
    executor: Executor,
    task: Task,
    recorder: ExecutionRecorder,
    *,
    cancel: threading.Event,
    deadline: Callable[[], bool],
    observe: Callable[[AgentEvent], None],
    watch: Watch | None = None,
    poll_s: float = 0.05,
) -> AgentRun:
    """Execute ``task`` in a worker thread, recorded by ``recorder``; stop it when ``cancel``
    is set or ``deadline()`` turns true. A KeyboardInterrupt sets ``cancel``, waits for the
    agent to stop and is re-raised. ``watch``: settled once the agent has ended (what it
    puts back is a warning of the execution, ``_Observed``), released in any case."""
    from specwright.agents.execute import run_execution

    agent_cancel = threading.Event()
    # the worker's end, waited on instead of Thread.join: on Python 3.11 a join interrupted by
    # Ctrl-C can mark the thread stopped while it runs, so the next join returned at once, the
    # process exited and the agent's command was left running (its kill never came)
    done = threading.Event()
    box: dict[str, Any] = {}
    stopped_by: str | None = None

    def work() -> None:
        try:
            box["outcome"] = run_execution(
                _Observed(executor, observe, watch), task, recorder, agent_cancel
            )
        except BaseException as exc:
            box["crash"] = recorder.redact(  # the run's reason and progress lines quote it
                str(exc) if isinstance(exc, SpecwrightError) else f"{type(exc).__name__}: {exc}"
            )
            box["cannot_start"] = isinstance(exc, AgentStartError)
            box["error"] = exc
        finally:
            done.set()

    # the plan quota the execution used (``queries.quota_per_execution``), when codexbar is here
    with _quota_snapshots(recorder, cancel):
        worker = threading.Thread(target=work, name="agent", daemon=True)
        worker.start()
        given_up = False  # the agent was waited for STOP_GRACE_S after its cancel
        try:
            stopping_since = 0.0
            while not done.wait(poll_s):
                if stopped_by is None and cancel.is_set():
                    stopped_by = "cancel"
                    agent_cancel.set()
                if stopped_by is None and deadline():
                    stopped_by = "deadline"
                    agent_cancel.set()
                if stopped_by is not None:
                    # an agent that ignores its cancel must not hold the run past its wall time
                    # for ever: give it STOP_GRACE_S, then give up on it
                    stopping_since = stopping_since or time.monotonic()
                    if time.monotonic() - stopping_since >= STOP_GRACE_S:
                        given_up = True
                        break
        except KeyboardInterrupt:
            cancel.set()
            agent_cancel.set()
            given_up = not done.wait(STOP_GRACE_S)
            raise
        finally:
            if not done.is_set() and not given_up:  # stopped by an error here: a last grace
                agent_cancel.set()
                done.wait(STOP_GRACE_S)
            if watch is not None:
                watch.release()
            if not recorder.finished and getattr(recorder, "_thread", None) is not None:
                recorder.finish(
                    status="killed", exit_reason="did not stop after cancel", incomplete=True
                )
    return AgentRun(
        box.get("outcome"),
        box.get("crash"),
        stopped_by,
        bool(box.get("cannot_start")),
        box.get("error"),
    )


def _quota_snapshots(
    recorder: ExecutionRecorder, cancel: threading.Event
) -> AbstractContextManager[Any]:
    """`codexbar usage` before and after the execution, when codexbar is installed (not after
    a cancel: the run is stopping)."""
    from specwright.usage import codexbar

    if codexbar.codexbar_path() is None:
        return contextlib.nullcontext()
    return codexbar.around(recorder.store, recorder.id, cancel=cancel)
