"""Any command-line agent (codex exec, aider, gemini...) from an argv template in config.

The prompt goes into the argv (``{prompt}``) or to stdin (``prompt_via: stdin``). Without a
parser every output line is a text event; ``parser: codex`` reads ``codex exec --json`` events,
and ``parser: "package.module:function"`` names your own ``(line, state) -> list[AgentEvent]``.
The exit code decides the status. Cancel and timeout kill the whole process group.
``{system_prompt}``, ``{workdir}`` and ``{model}`` are filled in the argv too; the agent gets
our environment plus ``env``; ``options.probe_version: false`` keeps `agents list` from running
``--version``.
"""

from __future__ import annotations

import importlib
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specwright.agents.base import EventSink, Outcome, Task
from specwright.agents.executables import unrunnable, version_of, which
from specwright.agents.process import (
    Overlong,
    ProcessStream,
    clean_tail,
    count,
    decode_json_line,
    overlong_warning,
    slim,
    timeout_message,
)
from specwright.agents.resets import account_unusable, out_of_credit, reset_in_s
from specwright.errors import AgentError, AgentStartError, ConfigError
from specwright.model import (
    AgentEvent,
    ErrorEvent,
    StepEvent,
    TextEvent,
    ToolCall,
    ToolResult,
    Usage,
    UsageEvent,
)

if TYPE_CHECKING:
    from specwright.config import ExecutorConfig

FINAL_TEXT_CHARS = 8192  # the tail of plain output kept as the outcome's final text
_PLACEHOLDER = re.compile(r"\{(?:prompt|system_prompt|workdir|model)\}")
# how Codex words a model its API does not serve: the API's error code (in the body of its
# "unexpected status 404"), its message ("stream disconnected before completion: The model `x`
# does not exist or you do not have access to it."), and a ChatGPT sign-in's refusal ("The 'x'
# model is not supported when using Codex with a ChatGPT account."): no retry can succeed
_CODEX_NO_MODEL = re.compile(
    r"model_not_found|does not exist or you do not have access to it"
    r"|model is not supported when using Codex",
    re.IGNORECASE,
)
# and a key or login refused: its API's 401, or a ChatGPT sign-in whose token cannot be renewed
_CODEX_AUTH = re.compile(r"unexpected status 401\b|log out and sign in again", re.IGNORECASE)
# and a plan's usage limit used up: "You've hit your usage limit. ... Try again at 3:04 PM."
# (the API's 429 usage_limit_reached), or a 429 that Codex itself retried until it gave up:
# retried at once, each attempt fails the same way; the loop waits for the reset instead
_CODEX_LIMIT = re.compile(
    r"you've hit your usage limit|usage_limit_reached|last status: 429\b", re.IGNORECASE
)


@dataclass
class LineState:
    """Parser state shared by the plain and JSON parsers."""

    lineno: int = 0
    session_id: str | None = None
    model: str | None = None
    usage: Usage | None = None  # totals, when the parser learns them
    last_text: str = ""
    error: str | None = None
    error_kind: str | None = None  # unknown_model, auth, billing, rate_limit: the exit reason
    retry_after_s: float | None = None  # a rate limit's reset, when its message names one
    extra: dict[str, Any] = field(default_factory=dict)


LineParser = Callable[[bytes | str, LineState], list[AgentEvent]]


def parse_plain_line(line: bytes | str, state: LineState) -> list[AgentEvent]:
    """One output line -> one text event (blank lines are dropped)."""
    state.lineno += 1
    text = line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line
    text = text.rstrip("\r\n")
    if not text.strip():
        return []
    state.last_text = (state.last_text + "\n" + text)[-FINAL_TEXT_CHARS:].lstrip("\n")
    return [TextEvent(text)]


def parse_codex_line(line: bytes | str, state: LineState) -> list[AgentEvent]:
    """One ``codex exec --json`` line -> events (thread/turn/item events, usage per turn)."""
    state.lineno += 1
    obj, out = decode_json_line(line, state.lineno)
    if obj is None:
        return list(out)
    events: list[AgentEvent] = list(out)
    kind = obj.get("type")
    if kind in ("thread.started", "thread.resumed"):
        state.session_id = obj.get("thread_id") or state.session_id
        events.append(StepEvent("thread_started", state.session_id, raw=slim(obj)))
    elif kind == "turn.started":
        events.append(StepEvent("turn_started", state.session_id))
    elif kind in ("turn.completed", "turn.failed"):
        u = obj.get("usage") or {}
        if isinstance(u, dict) and u:
            # bounded as every adapter's counts (``count``): a huge one stored as told failed
            # the execution's write (two of 2**62) and overflowed every report summing it
            cached = count(u.get("cached_input_tokens"))
            step = Usage(
                input_tokens=max(0, count(u.get("input_tokens")) - cached),  # OpenAI: cached in
                output_tokens=count(u.get("output_tokens")),
                cache_read_tokens=cached,
                reasoning_tokens=count(u.get("reasoning_output_tokens")),
                model=state.model,
            )
            state.usage = step if state.usage is None else state.usage + step
            events.append(UsageEvent(step, raw=slim(obj)))
        if kind == "turn.failed":
            message = str((obj.get("error") or {}).get("message") or "turn failed")
            events.append(_codex_error(message, "api_error", obj, state))
    elif kind == "error":
        events.append(_codex_error(str(obj.get("message") or obj), "error", obj, state))
    elif kind in ("item.started", "item.updated", "item.completed"):
        events.extend(_codex_item(obj.get("item") or {}, kind == "item.completed", state))
    else:
        events.append(
            ErrorEvent(
                f"line {state.lineno}: unknown codex event {kind!r}", kind="warning", raw=slim(obj)
            )
        )
    return events


def _codex_error(message: str, kind: str, obj: dict[str, Any], state: LineState) -> ErrorEvent:
    """A failed turn or an error line; ``unknown_model`` when it says the model is not served,
    ``account`` when its account is deactivated or on hold (a 401 too, but no new key or login
    mends it), ``auth`` when its key or login is refused, ``billing`` when it is out of credit or
    its plan lacks Codex: no retry can succeed; ``rate_limit`` when its usage limit is used up,
    with the reset it names in ``state.retry_after_s``."""
    state.error = message
    if _CODEX_NO_MODEL.search(message):
        kind = state.error_kind = "unknown_model"
    elif account_unusable(message):
        kind = state.error_kind = "account"
    elif _CODEX_AUTH.search(message):
        kind = state.error_kind = "auth"
    elif out_of_credit(message):  # a quota or credits used up, a plan without Codex
        kind = state.error_kind = "billing"
    elif _CODEX_LIMIT.search(message):
        kind = state.error_kind = "rate_limit"
        state.retry_after_s = reset_in_s(message)
    return ErrorEvent(message, kind=kind, raw=slim(obj))


def _codex_item(item: dict[str, Any], completed: bool, state: LineState) -> list[AgentEvent]:
    itype = item.get("type") or item.get("item_type")
    item_id = str(item.get("id"))
    started = state.extra.setdefault("started", set())
    raw = slim(item)
    tools = {
        "command_execution": ("shell", lambda i: {"command": i.get("command")}),
        "file_change": ("apply_patch", lambda i: {"changes": i.get("changes")}),
        "mcp_tool_call": (
            None,
            lambda i: {"server": i.get("server"), "arguments": i.get("arguments")},
        ),
        "web_search": ("web_search", lambda i: {"query": i.get("query")}),
    }
    if itype in ("agent_message", "reasoning"):
        if not completed:
            return []
        text = str(item.get("text") or "")
        if itype == "reasoning":
            return [StepEvent("reasoning", state.session_id, raw=raw)]
        state.last_text = text
        return [TextEvent(text, raw=raw)]
    if itype in tools:
        default_name, make_input = tools[itype]
        name = str(default_name or f"mcp:{item.get('server')}/{item.get('tool')}")
        out: list[AgentEvent] = []
        if item_id not in started:
            started.add(item_id)
            out.append(ToolCall(item_id, name, make_input(item), raw=raw))
        if completed:
            status = item.get("status")
            exit_code = item.get("exit_code")
            failed = status in ("failed", "declined") or exit_code not in (None, 0)
            if itype == "command_execution":
                output = str(item.get("aggregated_output") or "")
            elif itype == "mcp_tool_call":
                output = slim_text(item.get("error") or item.get("result"))
            else:
                output = str(status or "")
            out.append(ToolResult(item_id, output, is_error=failed, tool=name, raw=raw))
        return out
    if itype == "error":
        return [ErrorEvent(str(item.get("message")), kind="warning", raw=raw)]
    if not completed:
        return []
    return [StepEvent(f"item/{itype}", state.session_id, raw=raw)]


def slim_text(value: Any) -> str:
    """A JSON-ish value as text."""
    from specwright.journal import dumps

    return value if isinstance(value, str) else dumps(value)


PARSERS: dict[str, LineParser] = {"codex": parse_codex_line, "plain": parse_plain_line}


def resolve_parser(name: str | None) -> LineParser:
    """A parser by short name or ``module:function`` path."""
    if not name:
        return parse_plain_line
    if name in PARSERS:
        return PARSERS[name]
    module_name, sep, attr = name.partition(":")
    if not sep:
        raise ConfigError(
            f"parser {name!r}: unknown; expected one of {', '.join(PARSERS)} or 'module:function'"
        )
    try:
        func = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"parser {name!r}: cannot import ({exc})") from None
    if not callable(func):
        raise ConfigError(f"parser {name!r}: not a function")
    parser: LineParser = func
    return parser


class CommandExecutor:
    """Runs a configured command line as the agent."""

    backend = "command"
    waits_for_its_processes = True  # its process group is gone when execute returns

    def __init__(self, config: ExecutorConfig) -> None:
        self.config = config
        self.name = config.name
        if not config.argv:
            raise ConfigError(f"executor {config.name!r}: argv is required for a command executor")
        if config.prompt_via not in ("arg", "stdin"):
            raise ConfigError(
                f"executor {config.name!r}: prompt_via {config.prompt_via!r}; expected arg or stdin"
            )
        if config.prompt_via == "arg" and not any("{prompt}" in a for a in config.argv):
            raise ConfigError(
                f"executor {config.name!r}: argv has no {{prompt}} placeholder; "
                "add one or set prompt_via: stdin"
            )
        try:  # imported here, not when the config loads: a user's module runs on import
            self.parser = resolve_parser(config.parser)
        except ConfigError as exc:
            raise ConfigError(f"executor {config.name!r}: {exc}") from None

    def executable(self) -> str:
        first = os.path.expanduser(self.config.path or self.config.argv[0])
        found = first if os.sep in first else which(first)
        if found is None:
            raise AgentStartError(f"executor {self.name!r}: {first!r} not found (not on PATH)")
        why = unrunnable(found)
        if why is None:  # absolute: the agent starts in its work tree
            return os.path.abspath(found)
        if why.startswith("not executable"):
            why = "not executable (chmod +x it, or put its interpreter first in argv)"
        shown = repr(first) if found == first else f"{first!r} ({found})"
        if not os.path.lexists(found):  # a relative path: from the folder specwright runs in
            why = f"not found (in {os.getcwd()})" if not os.path.isabs(found) else "not found"
            raise AgentStartError(f"executor {self.name!r}: {shown} {why}")
        raise AgentStartError(f"executor {self.name!r}: {shown} is {why}")

    def argv(self, task: Task) -> list[str]:
        """The argv with ``{prompt}``, ``{system_prompt}``, ``{workdir}`` and ``{model}`` filled,
        in one pass: a prompt that holds such a placeholder reaches the agent as written."""
        values = {
            "{prompt}": task.prompt,
            "{system_prompt}": task.system_prompt,
            "{workdir}": str(task.workdir),
            "{model}": self.config.model or "",
        }
        out = [_PLACEHOLDER.sub(lambda m: values[m.group()], arg) for arg in self.config.argv]
        out[0] = self.executable()
        return out

    def execute(self, task: Task, on_event: EventSink, cancel: threading.Event) -> Outcome:
        """Run the command until it exits, is cancelled or times out."""
        workdir = Path(task.workdir).resolve()
        if not workdir.is_dir():
            raise AgentError(f"{workdir}: working directory does not exist")
        env = {**os.environ, **self.config.env, **task.env}
        stream = ProcessStream(
            argv=self.argv(task),
            cwd=workdir,
            env=env,
            stdin_data=task.prompt.encode() if self.config.prompt_via == "stdin" else None,
            timeout_s=task.timeout_s or self.config.timeout_s,
        )
        state = LineState(model=self.config.model)
        stream.start()
        try:
            on_event(
                StepEvent("process", raw={"pid": stream.result.pid, "executable": stream.argv[0]})
            )
        except BaseException:  # the lines will not be read: the agent must not run on unseen
            stream.abandon()
            raise
        for item in stream.lines(cancel):
            if isinstance(item, Overlong):
                state.lineno += 1
                on_event(overlong_warning(item, state.lineno))
                continue
            try:
                events = self.parser(item, state)
            except Exception as exc:  # a user parser's bug must not lose the run
                events = [ErrorEvent(f"line {state.lineno}: parser failed: {exc}", kind="warning")]
            for event in events:
                on_event(event)
        r = stream.result
        usage = state.usage or Usage(model=self.config.model)
        # stopped mid-run: the turn under way told no usage, so what a parser counted is a
        # lower bound (a plain agent's output tells none at all: unreported)
        stopped = r.cancelled or r.timed_out or (r.returncode or 0) < 0
        common: dict[str, Any] = {
            "usage": usage,
            "session_id": state.session_id,
            "model": usage.model,
            "final_text": state.last_text,
            "unreported": state.usage is None,
            "retry_after_s": state.retry_after_s,
            "incomplete": stopped and self.parser is not parse_plain_line,
        }
        if r.cancelled:
            return Outcome("cancelled", exit_reason="cancelled", **common)
        if r.timed_out:
            return Outcome(
                "killed",
                exit_reason="timeout",
                error=timeout_message(stream.timeout_s),
                **common,
            )
        if r.returncode == 0 and not state.error:
            return Outcome("ok", exit_reason="exit 0", **common)
        stderr = r.stderr_tail.strip()
        detail = state.error or (stderr.splitlines()[-1][:500] if stderr else "")
        code = r.returncode if r.returncode is not None else -1
        how = f"signal {-code}" if code < 0 else f"exit {code}"
        on_event(
            ErrorEvent(
                f"{how}: {detail}" if detail else how,
                kind="error",
                raw={"stderr_tail": clean_tail(stderr, 4000)} if stderr else None,
            )
        )
        status = "killed" if code < 0 else "error"
        reason = state.error_kind if code >= 0 and state.error_kind else how
        return Outcome(status, exit_reason=reason, error=detail or how, **common)

    def probe(self) -> dict[str, Any]:
        """Whether the command is there, and its ``--version`` (for `agents list`);
        ``options.probe_version: false`` skips running it."""
        try:
            exe = self.executable()
            version = version_of(exe) if self.config.options.get("probe_version", True) else None
        except AgentError as exc:
            return {"found": False, "location": None, "version": None, "detail": str(exc)}
        return {"found": True, "location": exe, "version": version, "detail": ""}
