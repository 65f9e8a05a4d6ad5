"""Wiring an executor to an ``ExecutionRecorder``: the one call the loop makes per attempt."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import TYPE_CHECKING

from specwright.agents.base import Executor, Outcome, Task
from specwright.errors import SpecwrightError
from specwright.model import AgentEvent, ErrorEvent, StepEvent, UsageEvent

if TYPE_CHECKING:
    from specwright.recorder import ExecutionRecorder


def run_execution(
    executor: Executor,
    task: Task,
    recorder: ExecutionRecorder,
    cancel: threading.Event | None = None,
    *,
    computed_cost_usd: float | None = None,
) -> Outcome:
    """Run ``task`` on ``executor``, recording every event and the totals; return the Outcome.

    The recorder is started if it is not yet. A problem starting the agent (executable missing,
    server down) is recorded as an error event and an ``error`` execution, then re-raised as the
    ``SpecwrightError`` it is; any other exception is recorded the same way and re-raised.
    A final usage event is added when the adapter did not stream one, so the events alone
    always carry the totals. The Outcome's texts come back redacted like the events: the loop
    makes the chunk summary and the commit message from them, the CLI prints them."""
    cancel = cancel or threading.Event()
    # the executor's config, also through a wrapper that keeps the real one as ``inner``
    config = getattr(executor, "config", None) or getattr(
        getattr(executor, "inner", None), "config", None
    )
    agent_env = {**(getattr(config, "env", None) or {}), **task.env}
    if agent_env:  # secrets handed only to the agent are redacted from what it prints too
        recorder.add_secrets(agent_env)
    if not recorder.started and not recorder.finished:
        recorder.start()
    saw_final = False
    # the agent's session as its events named it: an execution that ends without an Outcome
    # (Ctrl-C, a crash) still links to the agent's own logs of that session
    session_id: str | None = None

    def on_event(event: AgentEvent) -> None:
        nonlocal saw_final, session_id
        if isinstance(event, UsageEvent) and event.final:
            saw_final = True
        if isinstance(event, StepEvent) and event.session_id and session_id is None:
            session_id = event.session_id
        recorder.on_event(event)

    try:
        outcome = executor.execute(task, on_event, cancel)
    except SpecwrightError as exc:
        recorder.on_event(ErrorEvent(str(exc), kind="error"))
        recorder.finish(status="error", exit_reason=f"agent_error: {exc}", session_id=session_id)
        raise
    except KeyboardInterrupt:
        cancel.set()
        recorder.finish(
            status="cancelled", exit_reason="interrupted", session_id=session_id, incomplete=True
        )
        raise
    except BaseException as exc:
        recorder.on_event(ErrorEvent(f"{type(exc).__name__}: {exc}", kind="error"))
        reason = f"crash: {type(exc).__name__}: {exc}"
        recorder.finish(status="error", exit_reason=reason, session_id=session_id, incomplete=True)
        raise
    redact = recorder.redact
    outcome = replace(
        outcome,
        final_text=redact.lines(outcome.final_text) if outcome.final_text else "",
        exit_reason=redact(outcome.exit_reason),
        error=redact.lines(outcome.error) if outcome.error else outcome.error,
    )
    if not saw_final and (outcome.usage.total_tokens or outcome.usage.cost_usd is not None):
        recorder.on_event(UsageEvent(outcome.usage, final=True))
    reason = outcome.exit_reason
    if outcome.error and outcome.error not in reason:
        reason = f"{reason}: {outcome.error}" if reason else outcome.error
    recorder.finish(
        status=outcome.status,
        usage=outcome.usage,
        exit_reason=reason,
        session_id=outcome.session_id,
        model=outcome.model,
        num_turns=outcome.num_turns,
        raw=outcome.raw,
        computed_cost_usd=computed_cost_usd,
        requests=outcome.requests,
        incomplete=outcome.incomplete,
        unreported=outcome.unreported,
    )
    return outcome
