"""Claude Code headless (`claude -p ... --output-format stream-json --verbose`) as an Executor.

The transport lives here: the executable lookup, the argv and a minimal environment, and a
subprocess in its own process group (process.py). Parsing is in claude_stream.py, pure, so
recorded streams test it without a process.

Config: ``model`` (required: the CLI's default changes between versions and decides the price),
``max_turns``, ``permission_mode`` (acceptEdits by default; bypassPermissions only inside a git
worktree), ``path``, ``env``, ``timeout_s``; ``options``: ``config_dir`` (a fixed
CLAUDE_CONFIG_DIR, e.g. a logged-in ~/.claude, instead of a fresh one per run),
``allowed_tools`` (list), ``extra_args`` (list), ``stream_log`` (a file the stream-json
lines are appended to, secrets redacted as in the store).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specwright.agents.base import EventSink, Outcome, Task
from specwright.agents.claude_stream import (
    ClaudeStreamState,
    outcome_from_state,
    parse_line,
)
from specwright.agents.claude_transcript import reply_outputs
from specwright.agents.executables import find_executable, version_of
from specwright.agents.orphans import scratch_prefix
from specwright.agents.process import (
    Overlong,
    ProcessStream,
    open_stream_log,
    overlong_warning,
)
from specwright.config_check import PERMISSION_MODES
from specwright.errors import AgentError, AgentStartError, ConfigError
from specwright.model import StepEvent
from specwright.redact import Redactor

if TYPE_CHECKING:
    from specwright.config import ExecutorConfig

__all__ = [
    "ClaudeCodeExecutor",
    "ClaudeStreamState",
    "find_claude",
    "outcome_from_state",
    "parse_line",
]

MAX_ARG_BYTES = 100_000  # Linux caps one argv string at 128 KiB; longer prompts go via stdin
# Passed through from our environment (names or prefixes); everything else is left out.
ENV_PASS = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "SHELL",
    "TERM",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "no_proxy",
)
ENV_PASS_PREFIXES = (
    "ANTHROPIC_",
    "CLAUDE_CODE_",
    "AWS_",
    "GOOGLE_",
    "CLOUD_ML_",
    "VERTEX_",
    "DISABLE_",
    "MCP_",
    "API_TIMEOUT_MS",
    "BASH_",
)

# --- the executor ---------------------------------------------------------------------------


def find_claude(config_path: str | None, env: dict[str, str] | None = None) -> str:
    """The claude executable: ``CLAUDE_PATH``, then the config's ``path``, then PATH."""
    return find_executable(
        "claude",
        "CLAUDE_PATH",
        config_path,
        backend="claude-code",
        install="npm install @anthropic-ai/claude-code",
        env=env,
    )


def _inside_worktree(workdir: Path) -> bool:
    for candidate in (workdir, *workdir.parents):
        git = candidate / ".git"
        if git.is_file():
            return True  # a linked worktree: `.git` is a file pointing at the main repo
        if git.is_dir():
            return False
    return False


class ClaudeCodeExecutor:
    """Runs `claude -p` for one task and streams its stream-json output as events."""

    backend = "claude-code"
    waits_for_its_processes = True  # its process group is gone when execute returns

    def __init__(self, config: ExecutorConfig) -> None:
        self.config = config
        self.name = config.name
        if config.permission_mode not in PERMISSION_MODES:
            raise ConfigError(
                f"executor {config.name!r}: permission_mode {config.permission_mode!r}; "
                f"expected one of {', '.join(PERMISSION_MODES)}"
            )
        if not config.model:
            raise ConfigError(
                f"executor {config.name!r}: model is required for claude-code "
                "(the CLI's default model changes between versions and decides the price)"
            )

    # -- building the command --

    def executable(self) -> str:
        return find_claude(self.config.path)

    def argv(self, task: Task, executable: str, prompt_as_arg: bool = True) -> list[str]:
        """The command line for ``task`` (the prompt is left out when it goes via stdin)."""
        c = self.config
        argv = [executable, "-p"]
        if prompt_as_arg:
            argv.append(task.prompt)
        argv += [
            "--output-format",
            "stream-json",
            "--verbose",
            "--model",
            str(c.model),
            "--permission-mode",
            c.permission_mode,
        ]
        if c.max_turns:
            argv += ["--max-turns", str(c.max_turns)]
        if task.system_prompt:
            # `=` keeps a value that starts with "-" (a markdown list of rules) from parsing
            # as an option
            argv.append(f"--append-system-prompt={task.system_prompt}")
        allowed = c.options.get("allowed_tools")
        if allowed:
            argv += [
                "--allowedTools",
                ",".join(allowed) if isinstance(allowed, list) else str(allowed),
            ]
        extra = c.options.get("extra_args") or []
        argv += [str(a) for a in extra]
        return argv

    def environment(self, task: Task, config_dir: str) -> dict[str, str]:
        """A minimal environment: what claude and its tools need, nothing else of ours."""
        env = {
            k: v for k, v in os.environ.items() if k in ENV_PASS or k.startswith(ENV_PASS_PREFIXES)
        }
        env.pop("CLAUDE_PATH", None)
        env["CLAUDE_CONFIG_DIR"] = config_dir
        env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1"
        env.pop("IS_SANDBOX", None)
        if self.config.permission_mode == "bypassPermissions":
            env["IS_SANDBOX"] = "1"  # as root, bypass refuses to start without it
        env.update(self.config.env)
        env.update(task.env)
        return env

    # -- running --

    def execute(self, task: Task, on_event: EventSink, cancel: threading.Event) -> Outcome:
        """Run claude on ``task`` until it finishes, is cancelled or times out."""
        workdir = Path(task.workdir).resolve()
        if not workdir.is_dir():
            raise AgentError(f"{workdir}: working directory does not exist")
        if self.config.permission_mode == "bypassPermissions" and not _inside_worktree(workdir):
            raise AgentStartError(
                f"executor {self.name!r}: permission_mode bypassPermissions is allowed only "
                f"inside a git worktree, and {workdir} is not one; use acceptEdits"
            )
        fixed = os.path.expanduser(str(self.config.options.get("config_dir") or ""))
        if fixed and os.path.lexists(fixed) and not os.path.isdir(fixed):  # claude ran, kept none
            raise AgentStartError(
                f"executor {self.name!r}: options.config_dir {fixed}: not a folder; "
                "expected Claude Code's config folder (such as ~/.claude)"
            )
        if len(task.system_prompt.encode()) > MAX_ARG_BYTES:
            raise AgentStartError(
                f"system prompt is {len(task.system_prompt.encode())} bytes; the limit for "
                f"--append-system-prompt is {MAX_ARG_BYTES}; shorten the project rules/context"
            )
        executable = self.executable()
        # before the config folder is made: nothing to clean up when it cannot be written
        log = open_stream_log(self.name, self.config.options.get("stream_log"))
        fixed_dir = self.config.options.get("config_dir")
        config_dir = (
            os.path.expanduser(str(fixed_dir))
            if fixed_dir
            else tempfile.mkdtemp(prefix=scratch_prefix("claude"))  # swept after kill -9
        )
        # stdin when the prompt is too long for one argv string, or would parse as an option
        big_prompt = len(task.prompt.encode()) > MAX_ARG_BYTES or task.prompt.startswith("-")
        env = self.environment(task, config_dir)
        stream = ProcessStream(
            argv=self.argv(task, executable, prompt_as_arg=not big_prompt),
            cwd=workdir,
            env=env,
            stdin_data=task.prompt.encode() if big_prompt else None,
            timeout_s=task.timeout_s or self.config.timeout_s,
        )
        # a token in a fresh config dir: no login there that a 401 could refresh
        state = ClaudeStreamState(
            fixed_token=bool(env.get("ANTHROPIC_AUTH_TOKEN")) and not fixed_dir
        )
        scrub = Redactor.from_env({**os.environ, **env})  # the log is a record too
        try:
            stream.start()
            try:
                on_event(
                    StepEvent("process", raw={"pid": stream.result.pid, "executable": executable})
                )
            except BaseException:  # the lines will not be read: the agent must not run unseen
                stream.abandon()
                raise
            # closed on leaving: a break stops claude (its process group) there and then
            with contextlib.closing(stream.lines(cancel)) as lines:
                for item in lines:
                    if isinstance(item, Overlong):
                        state.lineno += 1
                        on_event(overlong_warning(item, state.lineno))
                        continue
                    if log is not None:
                        text = scrub(item.decode("utf-8", errors="replace").rstrip("\n"))
                        log.write(text.encode() + b"\n")
                    for event in parse_line(item, state):
                        on_event(event)
                    if state.give_up:
                        break  # a fixed key refused: its retries cannot succeed
            # each reply's final output tokens, before a fresh config dir is removed
            state.outputs = reply_outputs(config_dir, state.session_id)
        finally:
            if log is not None:
                log.close()
            if not fixed_dir:
                shutil.rmtree(config_dir, ignore_errors=True)
        r = stream.result
        return outcome_from_state(
            state,
            r.returncode,
            cancelled=r.cancelled,
            timed_out=r.timed_out,
            timeout_s=stream.timeout_s,
            stderr_tail=r.stderr_tail,
        )

    def probe(self) -> dict[str, Any]:
        """Whether the executable is there and which version it is (for `agents list`)."""
        try:
            exe = self.executable()
            version = version_of(exe)
        except AgentError as exc:
            return {"found": False, "location": None, "version": None, "detail": str(exc)}
        return {
            "found": True,
            "location": exe,
            "version": version,
            "detail": "" if version else "`--version` failed",
        }
