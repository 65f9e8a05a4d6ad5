"""The one seam every coding agent sits behind: ``Executor.execute(task, on_event, cancel)``.

Adapters never import each other; the registry maps a config ``type`` to a dotted path and
imports it only when that executor is used.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from specwright.errors import ConfigError
from specwright.model import AgentEvent, Usage

if TYPE_CHECKING:
    from specwright.config import ExecutorConfig

EventSink = Callable[[AgentEvent], None]


@dataclass(frozen=True)
class Task:
    """What one execution should do, and where."""

    prompt: str
    workdir: Path
    system_prompt: str = ""  # project rules and context, appended to the agent's system prompt
    timeout_s: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    script: tuple[dict[str, Any], ...] | None = None  # steps for the scripted executor
    metadata: dict[str, Any] = field(default_factory=dict)  # chunk id, iteration... (logging)


@dataclass(frozen=True)
class Outcome:
    """How an execution ended, with the totals the agent reported."""

    status: str  # ok | error | cancelled | killed
    usage: Usage = field(default_factory=Usage)
    final_text: str = ""
    session_id: str | None = None
    exit_reason: str = ""  # e.g. completed, max_turns, api_error, timeout, cancelled, exit 143
    model: str | None = None
    num_turns: int | None = None
    error: str | None = None
    retry_after_s: float | None = None  # set when the agent hit a rate limit or quota
    raw: dict[str, Any] | None = None  # the final provider payload (e.g. claude's result line)
    # the execution's model calls one by one, when known: each is priced at its own tier
    requests: tuple[Usage, ...] | None = None
    # stopped mid-run: a model call under way never told its tokens, so the cost is unknown
    incomplete: bool = False
    # the agent tells no usage at all (a command agent without a parser that reads it): its
    # cost is unknown, not the $0 its 0 counted tokens would price at
    unreported: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@runtime_checkable
class Executor(Protocol):
    """A coding agent. ``execute`` blocks until the agent finishes, streaming every event to
    ``on_event`` as it arrives; setting ``cancel`` stops it (killing its process group).
    An adapter whose ``execute`` returns only once every process the agent started has ended
    (its group killed and reaped) says so with ``waits_for_its_processes = True``: a git lock
    left in the work tree then belongs to no running git, and the loop removes it."""

    name: str
    backend: str  # claude-code | opencode | command | scripted

    def execute(self, task: Task, on_event: EventSink, cancel: threading.Event) -> Outcome: ...


_REGISTRY: dict[str, str] = {
    "claude-code": "specwright.agents.claude_code:ClaudeCodeExecutor",
    "opencode": "specwright.agents.opencode:OpenCodeExecutor",
    "command": "specwright.agents.command:CommandExecutor",
    "scripted": "specwright.agents.scripted:ScriptedExecutor",
}


def executor_class(type_name: str) -> type:
    """The adapter class for a config ``type``, imported on first use."""
    target = _REGISTRY.get(type_name)
    if target is None:
        raise ConfigError(
            f"executor type {type_name!r}: unknown; expected one of {', '.join(_REGISTRY)}"
        )
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"executor type {type_name!r}: adapter not available ({exc})") from None
    cls: type = getattr(module, attr)
    return cls


def make_executor(config: ExecutorConfig) -> Executor:
    """Build the executor an ``ExecutorConfig`` describes."""
    executor: Executor = executor_class(config.type)(config)
    return executor


def preflight(executor: Executor) -> None:
    """Fail fast, before anything runs or is recorded, when the agent cannot start at all: its
    executable is missing (claude-code, command) or its server does not answer (opencode).
    Raises the adapter's ``AgentError``, whose message says where it looked. A config value the
    environment overrides with another (``config_env.conflicts``) is said in a warning."""
    import logging

    from specwright.config_env import conflicts

    inner = getattr(executor, "inner", executor)  # wrappers (the loop's observer) delegate
    entry = getattr(inner, "config", None)
    if entry is not None and hasattr(entry, "type"):
        for line in conflicts(entry):
            logging.getLogger(__name__).warning(line)
    check = getattr(inner, "executable", None) or getattr(inner, "health", None)
    if callable(check):
        check()
