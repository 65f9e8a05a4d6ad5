"""Coding agents behind one protocol: ``make_executor(config).execute(task, on_event, cancel)``.

Adapters (claude_code, opencode, command, scripted) are imported only when used; the loop calls
``run_execution`` to run one task with every event recorded.
"""

from __future__ import annotations

from specwright.agents.base import Executor, Outcome, Task, executor_class, make_executor
from specwright.agents.execute import run_execution

__all__ = ["Executor", "Outcome", "Task", "executor_class", "make_executor", "run_execution"]
