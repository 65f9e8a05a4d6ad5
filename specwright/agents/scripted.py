"""The scripted executor: an offline, deterministic "agent" that follows a script.

Used by the demo, the notebooks and the tests; its executions are labelled backend ``scripted``
wherever they are shown. It streams the same events a real agent does (a ``ToolCall`` and a
``ToolResult`` per write or command, text, usage) so everything downstream is exercised.

A script is a list of steps; each step is a mapping with exactly one action key:

    - write: src/app.py          # create or overwrite a file (parents are created)
      content: "print('hi')\\n"
    - patch: src/app.py          # replace text in a file (error result if not found)
      search: "hi"
      replace: "hello"
      count: 1                   # optional: how many occurrences (default: all)
    - delete: old.txt            # remove a file or directory
    - run: "python -m pytest -q" # a shell command in the work tree (timeout_s: 60, check: false)
    - say: "Done: added the parser."   # assistant text (the last one is the final message)
    - usage: {input_tokens: 1200, output_tokens: 300, cost_usd: 0.004}
    - sleep: 0.5                 # seconds; cancel-aware
    - fail: "model overloaded"   # end the execution with an error
      retry_after_s: 30          # optional: report a rate limit that resets in 30 s
      kind: auth                 # optional: the error's kind (api_error; rate_limit; auth, a
                                 # refused key, unknown_model or billing, out of credit: the loop
                                 # stops the chunk run, not retried)

Paths are relative to the work tree and may not leave it. A script can differ per attempt and per
chunk; any of these shapes is accepted (the iteration is ``Task.metadata["iteration"]``):

    [step, ...]                                  # the same steps every attempt
    {attempts: [[steps of 1], [steps of 2]]}     # attempt n uses entry n (the last one repeats)
    {steps: [...]}                               # same as a plain list
    {chunks: {"1": ..., "Add parser": ...}}      # per chunk, keyed by position, title or id
                                                 # (prefix); "*" is the fallback

Where the script comes from, first match wins: ``Task.script``; the ``script=`` given to the
constructor; ``options: {script: ...}`` inline in the executor's config; the YAML/JSON file named
by the config's ``script`` key (relative paths from the work tree, then the current directory).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specwright.agents.base import EventSink, Task
from specwright.agents.orphans import (
    AGENT_TOKEN_ENV,
    die_with_parent,
    new_token,
    register_agent,
    stop_strays,
    unregister_agent,
)
from specwright.agents.process import COUNT_BELOW, kill_group
from specwright.errors import AgentError
from specwright.model import (
    ErrorEvent,
    StepEvent,
    TextEvent,
    ToolCall,
    ToolResult,
    Usage,
    UsageEvent,
    new_id,
)

if TYPE_CHECKING:
    from specwright.agents.base import Outcome
    from specwright.config import ExecutorConfig

ACTIONS = ("write", "patch", "delete", "run", "say", "usage", "sleep", "fail")
_EXTRA_KEYS: dict[str, set[str]] = {
    "write": {"content"},
    "patch": {"search", "replace", "count"},
    "delete": set(),
    "run": {"timeout_s", "check"},
    "say": set(),
    "usage": set(),
    "sleep": set(),
    "fail": {"retry_after_s", "kind"},
}
_USAGE_KEYS = {
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_usd",
    "model",
}
MAX_OUTPUT = 64 * 1024
KILL_GRACE_S = 2.0  # a cancelled or timed-out `run` step gets this long after SIGTERM
MODEL = "scripted"


class ScriptError(AgentError):
    """A script is malformed: names the step and what was expected."""


# --- parsing --------------------------------------------------------------------------------


def load_script_file(path: Path | str) -> Any:
    """Read a YAML or JSON script file (JSON is YAML)."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScriptError(f"{p}: cannot read the script: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScriptError(f"{p}: invalid YAML/JSON script: {exc}") from None


def validate_steps(steps: Any, where: str) -> list[dict[str, Any]]:
    """Check a list of steps; raises ``ScriptError`` naming the step and key at fault."""
    if not isinstance(steps, Sequence) or isinstance(steps, str | bytes):
        raise ScriptError(f"{where}: expected a list of steps, got {type(steps).__name__}")
    out = []
    for i, step in enumerate(steps):
        at = f"{where}[{i}]"
        if not isinstance(step, Mapping):
            raise ScriptError(f"{at}: expected a mapping like {{write: path, content: ...}}")
        actions = [k for k in step if k in ACTIONS]
        if len(actions) != 1:
            raise ScriptError(
                f"{at}: expected exactly one action key of {', '.join(ACTIONS)}, got {sorted(step)}"
            )
        action = actions[0]
        unknown = set(step) - {action} - _EXTRA_KEYS[action]
        if unknown:
            allowed = sorted(_EXTRA_KEYS[action]) or ["(none)"]
            raise ScriptError(
                f"{at}.{sorted(unknown)[0]}: unknown key for {action}; expected {', '.join(allowed)}"
            )
        value = step[action]
        if action in ("write", "patch", "delete", "run", "say", "fail") and not isinstance(
            value, str
        ):
            raise ScriptError(f"{at}.{action}: expected a string, got {value!r}")
        if action == "write" and not isinstance(step.get("content", ""), str):
            raise ScriptError(f"{at}.content: expected a string")
        if action == "patch" and not (
            isinstance(step.get("search"), str) and isinstance(step.get("replace"), str)
        ):
            raise ScriptError(f"{at}: patch needs string keys search and replace")
        if action == "sleep" and not (isinstance(value, int | float) and value >= 0):
            raise ScriptError(f"{at}.sleep: expected seconds >= 0, got {value!r}")
        if action == "usage" and (not isinstance(value, Mapping) or set(value) - _USAGE_KEYS):
            raise ScriptError(
                f"{at}.usage: expected a mapping with keys among {', '.join(sorted(_USAGE_KEYS))}"
            )
        if action == "usage":
            _check_usage(value, f"{at}.usage")
        out.append(dict(step))
    return out


def _check_usage(usage: Mapping[str, Any], at: str) -> None:
    """Token counts are whole numbers >= 0, a cost a finite number >= 0 (a NaN cost would turn
    every total it is summed into NaN), a model a string."""
    for key, value in usage.items():
        if key == "model":
            ok = value is None or isinstance(value, str)
            expected = "a string"
        elif key == "cost_usd":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            ok = ok and math.isfinite(value) and value >= 0
            expected = "a finite number >= 0"
        else:  # below the bound of every agent's count: a larger one failed the row's write
            ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < COUNT_BELOW
            expected = f"a whole number from 0 to {COUNT_BELOW - 1:,}"
        if not ok:
            raise ScriptError(f"{at}.{key}: expected {expected}, got {value!r}")


def _chunk_entry(chunks: Mapping[str, Any], meta: Mapping[str, Any]) -> Any:
    cid = str(meta.get("chunk_id") or "")
    keys = [str(meta.get("chunk_position", "")), str(meta.get("chunk_title", "")), cid]
    for key in keys:
        if key and key in chunks:
            return chunks[key]
    if cid:
        for key, entry in chunks.items():
            if len(str(key)) >= 4 and cid.startswith(str(key)):
                return entry
    return chunks.get("*")


def select_steps(script: Any, meta: Mapping[str, Any], where: str = "script") -> list[dict] | None:
    """The steps for one attempt of one chunk, or None when the script has none for it."""
    if script is None:
        return None
    if isinstance(script, Mapping):
        unknown = set(script) - {"chunks", "attempts", "steps"}
        if unknown:
            raise ScriptError(
                f"{where}.{sorted(unknown)[0]}: unknown key; expected chunks, attempts or steps"
            )
        if "chunks" in script:
            chunks = script["chunks"]
            if not isinstance(chunks, Mapping):
                raise ScriptError(f"{where}.chunks: expected a mapping of chunk -> script")
            keyed = {str(k): v for k, v in chunks.items()}  # YAML reads `1:` as an int
            return select_steps(_chunk_entry(keyed, meta), meta, f"{where}.chunks")
        if "attempts" in script:
            attempts = script["attempts"]
            if not isinstance(attempts, Sequence) or isinstance(attempts, str) or not attempts:
                raise ScriptError(f"{where}.attempts: expected a non-empty list of step lists")
            n = max(1, int(meta.get("iteration") or 1))
            index = min(n, len(attempts)) - 1
            return validate_steps(attempts[index], f"{where}.attempts[{index}]")
        return validate_steps(script.get("steps", []), f"{where}.steps")
    if isinstance(script, Sequence) and not isinstance(script, str):
        if (
            len(script) == 1
            and isinstance(script[0], Mapping)
            and set(script[0])
            & {
                "chunks",
                "attempts",
                "steps",
            }
        ):
            return select_steps(script[0], meta, where)  # Task.script = ({attempts: ...},)
        if script and all(isinstance(s, Sequence) and not isinstance(s, str) for s in script):
            return select_steps({"attempts": list(script)}, meta, where)
        return validate_steps(script, where)
    raise ScriptError(
        f"{where}: expected a list of steps or a mapping, got {type(script).__name__}"
    )


# --- the executor ---------------------------------------------------------------------------


class ScriptedExecutor:
    """Follows a script of file edits and commands; see the module docstring for the format."""

    backend = "scripted"
    waits_for_its_processes = True  # its process group is gone when execute returns

    def __init__(self, config: ExecutorConfig, *, script: Any = None) -> None:
        self.config = config
        self.name = config.name
        self.model = config.model or MODEL
        self._script = script

    def _source(self, task: Task) -> tuple[Any, str]:
        if task.script is not None:
            return task.script, "task script"
        if self._script is not None:
            return self._script, "script"
        inline = self.config.options.get("script") if self.config.options else None
        if inline is not None:
            return inline, f"executor {self.name}: options.script"
        if self.config.script:
            path = Path(self.config.script).expanduser()
            if not path.is_absolute():
                in_tree = Path(task.workdir) / path
                path = in_tree if in_tree.exists() else Path.cwd() / path
            return load_script_file(path), str(path)
        return None, "none"

    def execute(self, task: Task, on_event: EventSink, cancel: threading.Event) -> Outcome:
        """Run the steps for this attempt, streaming events; never raises for a step failure."""
        from specwright.agents.base import Outcome

        started = time.monotonic()
        session = f"scripted-{new_id()}"
        on_event(StepEvent("session_started", session_id=session, raw={"backend": "scripted"}))
        usage = Usage(model=self.model, cost_usd=0.0)
        final_text = ""
        turns = 0

        def end(status: str, reason: str, error: str | None = None, retry: float | None = None):
            on_event(UsageEvent(usage, final=True))
            return Outcome(
                status=status,
                usage=usage,
                final_text=final_text,
                session_id=session,
                exit_reason=reason,
                model=self.model,
                num_turns=turns,
                error=error,
                retry_after_s=retry,
            )

        try:
            raw, where = self._source(task)
            steps = select_steps(raw, task.metadata, where)
        except ScriptError as exc:
            on_event(ErrorEvent(str(exc)))
            return end("error", "bad_script", str(exc))
        if steps is None:
            chunk = task.metadata.get("chunk_title") or task.metadata.get("chunk_id") or "?"
            msg = (
                f"scripted executor {self.name}: no script for chunk {chunk!r} "
                "(give one in the executor's options.script or script file)"
            )
            on_event(ErrorEvent(msg))
            return end("error", "no_script", msg)

        deadline = started + task.timeout_s if task.timeout_s else None
        workdir = Path(task.workdir).resolve()
        for step in steps:
            if cancel.is_set():
                return end("cancelled", "cancelled")
            if deadline is not None and time.monotonic() > deadline:
                on_event(ErrorEvent(f"timed out after {task.timeout_s:g}s", kind="error"))
                return end("killed", "timeout", "timeout")
            turns += 1
            action = next(k for k in step if k in ACTIONS)
            value = step[action]
            if action == "say":
                final_text = value
                on_event(TextEvent(value))
            elif action == "usage":
                u = dict(value)
                step_usage = Usage(
                    input_tokens=int(u.get("input_tokens", 0)),
                    output_tokens=int(u.get("output_tokens", 0)),
                    cache_read_tokens=int(u.get("cache_read_tokens", 0)),
                    cache_write_tokens=int(u.get("cache_write_tokens", 0)),
                    reasoning_tokens=int(u.get("reasoning_tokens", 0)),
                    cost_usd=float(u.get("cost_usd", 0.0)),
                    model=str(u.get("model") or self.model),
                )
                usage = usage + step_usage
                on_event(UsageEvent(step_usage))
            elif action == "sleep":
                if cancel.wait(float(value)):
                    return end("cancelled", "cancelled")
            elif action == "fail":
                retry = step.get("retry_after_s")
                kind = step.get("kind") or ("rate_limit" if retry is not None else "api_error")
                on_event(ErrorEvent(value, kind=kind))
                return end("error", kind, value, float(retry) if retry is not None else None)
            elif action == "run":
                outcome = self._run(step, workdir, on_event, cancel, deadline)
                if outcome == "cancelled":
                    return end("cancelled", "cancelled")
                if outcome == "failed" and step.get("check"):
                    return end("error", "command_failed", f"command failed: {value}")
            else:
                self._edit(action, step, workdir, on_event)
        return end("ok", "completed")

    # --- actions ----------------------------------------------------------------------------

    @staticmethod
    def _inside(workdir: Path, rel: str) -> Path:
        target = (workdir / rel).resolve()
        if Path(rel).is_absolute() or not target.is_relative_to(workdir):
            raise ValueError(f"path {rel!r} leaves the work tree")
        return target

    def _edit(self, action: str, step: dict[str, Any], workdir: Path, on_event: EventSink) -> None:
        rel = step[action]
        call_id = f"call-{new_id()}"
        if action == "write":
            tool, tool_input = "write", {"file_path": rel, "content": step.get("content", "")}
        elif action == "patch":
            tool = "edit"
            tool_input = {
                "file_path": rel,
                "old_string": step["search"],
                "new_string": step["replace"],
            }
        else:
            tool, tool_input = "delete", {"file_path": rel}
        on_event(ToolCall(call_id, tool, tool_input))
        try:
            target = self._inside(workdir, rel)
            if action == "write":
                content = step.get("content", "")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content, encoding="utf-8")
                result = f"wrote {len(content.encode('utf-8'))} bytes to {rel}"
            elif action == "patch":
                text = target.read_text(encoding="utf-8")
                found = text.count(step["search"])
                if not found:
                    raise ValueError(f"search text not found in {rel}")
                count = int(step.get("count") or -1)
                target.write_text(text.replace(step["search"], step["replace"], count), "utf-8")
                result = (
                    f"replaced {found if count < 0 else min(found, count)} occurrence(s) in {rel}"
                )
            else:
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                else:
                    target.unlink()
                result = f"deleted {rel}"
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            on_event(ToolResult(call_id, f"error: {detail}", is_error=True, tool=tool))
            return
        on_event(ToolResult(call_id, result, tool=tool))

    def _run(
        self,
        step: dict[str, Any],
        workdir: Path,
        on_event: EventSink,
        cancel: threading.Event,
        deadline: float | None,
    ) -> str:
        """Run one shell command in its own process group; returns ok | failed | cancelled."""
        command = step["run"]
        call_id = f"call-{new_id()}"
        on_event(ToolCall(call_id, "bash", {"command": command}))
        limit = float(step.get("timeout_s") or 600)
        end_at = time.monotonic() + limit
        if deadline is not None:
            end_at = min(end_at, deadline)
        token = new_token()  # what the command starts in a session of its own carries it too
        env = {**os.environ, **self.config.env, AGENT_TOKEN_ENV: token}
        with tempfile.TemporaryFile() as out:
            try:
                proc = subprocess.Popen(
                    command,
                    shell=True,
                    cwd=workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    preexec_fn=die_with_parent(),  # this thread waits for it: it dies with us
                )
            except OSError as exc:
                on_event(ToolResult(call_id, f"error: {exc}", is_error=True, tool="bash"))
                return "failed"
            # only the shell dies with us: crash recovery stops the rest of its group from this
            registration = register_agent(proc.pid, "/bin/sh", workdir, "run", token=token)
            state = "ok"
            try:
                while proc.poll() is None:
                    if cancel.is_set():
                        state = "cancelled"
                        break
                    if time.monotonic() > end_at:
                        state = "timeout"
                        break
                    try:
                        proc.wait(timeout=0.05)
                    except subprocess.TimeoutExpired:
                        pass
            finally:
                if proc.poll() is None:
                    kill_group(proc.pid, grace_s=KILL_GRACE_S, proc=proc)
                # what the command left running in its group goes too, as an agent's does
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                stop_strays(token, KILL_GRACE_S)
                unregister_agent(registration)
            out.seek(0, os.SEEK_END)
            size = out.tell()
            out.seek(max(0, size - MAX_OUTPUT))
            text = out.read().decode("utf-8", errors="replace")
        if state == "timeout":
            text += f"\n[killed: timed out after {limit:g}s]"
        rc = proc.returncode
        failed = state != "ok" or rc != 0
        on_event(ToolResult(call_id, text, is_error=failed, tool="bash", raw={"exit_code": rc}))
        if state == "cancelled":
            return "cancelled"
        return "failed" if failed else "ok"
