"""One attempt's agent in its worker thread: however it behaves, the caller gets control back."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from specwright.agents.base import Outcome, Task
from specwright.loop import agent as A
from specwright.model import Usage, UsageEvent
from specwright.recorder import ExecutionRecorder
from specwright.store import Store


class _Stubborn:
    """An adapter that never looks at its cancel event (a bug, or a call blocked in a library)."""

    name, backend = "stubborn", "command"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()

    def execute(self, task: Task, on_event: Any, cancel: threading.Event) -> Outcome:
        on_event(UsageEvent(Usage(100, 20, cost_usd=0.01)))  # a model call told its usage
        self.started.set()
        self.release.wait(60)
        return Outcome(status="ok")


@pytest.mark.parametrize("stop", ["deadline", "cancel"])
def test_an_agent_that_ignores_its_cancel_is_given_up_on_after_the_grace(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: str
) -> None:
    """The wall time (or a cancel) must end the attempt even when the agent does not stop: it
    gets STOP_GRACE_S, then the attempt ends, recorded as killed. Before, the wait after the
    cancel had no end: a run with --wall-time went on for ever. Its row keeps the tokens its
    events told (it used to say 0), its cost unknown."""
    monkeypatch.setattr(A, "STOP_GRACE_S", 0.5)
    stubborn = _Stubborn()
    cancel = threading.Event()
    recorder = ExecutionRecorder(store, role="executor", backend="command")
    box: dict[str, Any] = {}

    def attempt() -> None:
        box["run"] = A.run_agent(
            stubborn,  # type: ignore[arg-type]
            Task("hi", tmp_path),
            recorder,
            cancel=cancel,
            deadline=lambda: stop == "deadline" and stubborn.started.is_set(),
            observe=lambda event: None,
        )

    caller = threading.Thread(target=attempt, daemon=True)
    caller.start()
    assert stubborn.started.wait(10)
    if stop == "cancel":
        cancel.set()
    caller.join(20)
    try:
        assert not caller.is_alive(), "run_agent still waits for an agent that ignores its cancel"
        run = box["run"]
        assert run.outcome is None and run.stopped_by == stop
        status, reason, *told = store.query(
            "SELECT status, exit_reason, input_tokens, output_tokens, reported_cost_usd, "
            "cost_usd, cost_source FROM executions WHERE id = ?",
            [recorder.id],
        )[0]
        assert (status, reason) == ("killed", "did not stop after cancel")
        assert told == [100, 20, 0.01, None, "incomplete"]
    finally:
        stubborn.release.set()


def _cancelled_under_slow_codexbar(
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    slow_from_the_start: bool,
) -> ExecutionRecorder:
    """An attempt of an agent sleeping 30 s, cancelled while `codexbar` (15 s slow: from the
    start, or once the agent runs) is asked for a quota snapshot; each real call bumps
    ``tmp_path / "calls"``."""
    from specwright.agents.scripted import ScriptedExecutor
    from specwright.config import ExecutorConfig
    from tests.support_usage import write_fake_codexbar

    real = write_fake_codexbar(tmp_path / "cb", bump_file=tmp_path / "calls")
    slow = tmp_path / "slow"
    if slow_from_the_start:
        slow.touch()
    wrapper = tmp_path / "codexbar"
    wrapper.write_text(f'#!/bin/sh\n[ -e {slow} ] && sleep 15\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("CODEXBAR_PATH", str(wrapper))
    executor = ScriptedExecutor(
        ExecutorConfig(name="scripted", type="scripted"), script=[{"sleep": 30}]
    )
    cancel = threading.Event()
    recorder = ExecutionRecorder(store, role="executor", backend="scripted")

    def cancel_once_started(event: Any) -> None:
        if event.type == "step":  # the agent runs: codexbar is slow from now on
            slow.touch()
            threading.Timer(0.2, cancel.set).start()

    if slow_from_the_start:
        threading.Timer(0.5, cancel.set).start()
    run = A.run_agent(
        executor,
        Task("hi", tmp_path),
        recorder,
        cancel=cancel,
        deadline=lambda: False,
        observe=(lambda event: None) if slow_from_the_start else cancel_once_started,
    )
    assert run.stopped_by == "cancel"
    return recorder


def test_a_cancelled_attempt_does_not_wait_for_codexbar_after_it(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in a parallel run-all (or `queue cancel`) reaches the attempts as a cancel, not a
    KeyboardInterrupt: their 'after' quota snapshot ran `codexbar usage` once more, and a slow
    codexbar (it asks the providers over the network) held the stop up to its 20 s timeout.
    Ctrl-C in a serial run never waited for it."""
    recorder = _cancelled_under_slow_codexbar(store, tmp_path, monkeypatch, False)
    assert (tmp_path / "calls").read_text() == "1"  # the "before" snapshot only
    [(status,)] = store.query("SELECT status FROM executions WHERE id = ?", [recorder.id])
    assert status == "cancelled"


def test_a_cancel_while_codexbar_takes_the_before_snapshot_does_not_wait_for_it(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 'before' quota snapshot (up to 20 s of a slow codexbar) held up a stop that came
    meanwhile: the attempt waited for it, then started the agent only to stop it."""
    _cancelled_under_slow_codexbar(store, tmp_path, monkeypatch, True)
    assert not (tmp_path / "calls").exists()  # its codexbar was ended, not waited for
    assert store.query("SELECT count(*) FROM usage_snapshots") == [(0,)]
