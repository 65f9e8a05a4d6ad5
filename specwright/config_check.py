"""What each executor type and each planner needs of its entry in `.handoff/config.yaml`.

Checked when the config loads, so a mistake is one line naming the file, the line and the key
(`config show`, `run` and the rest), rather than an error naming neither when the executor is
first used. The adapters check again for entries built in code.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from specwright.config_yaml import Ctx, line_of

if TYPE_CHECKING:
    from specwright.config import ExecutorConfig, PlannerConfig, ReviewerConfig

# claude-code: `claude --permission-mode`
PERMISSION_MODES = (
    "acceptEdits",
    "auto",
    "bypassPermissions",
    "default",
    "manual",
    "dontAsk",
    "plan",
)
# opencode: the answer to a permission request (allow and once, reject and deny are the same)
PERMISSION_POLICIES = ("allow", "once", "always", "reject", "deny")
PROMPT_VIA = ("arg", "stdin")  # command: the prompt in the argv ({prompt}) or on stdin
COMMAND_PARSERS = ("codex", "plain")  # command: built-in parsers; else "module:function"
# The keys each executor type reads besides type, model, timeout_s, env and options; another
# type's key (a claude-code `url`) is ignored with a warning, unless it came from `<<:`
USED_BY = {
    "claude-code": ("path", "max_turns", "permission_mode"),
    "opencode": ("provider", "path", "url", "permission_policy"),
    "command": ("path", "argv", "prompt_via", "parser"),
    "scripted": ("script",),
}
COMMON_KEYS = ("type", "model", "timeout_s", "env", "options")  # every type reads these
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


def is_http_url(url: str) -> bool:
    """True for an http(s) URL with a host and, if any, a port from 0 to 65535."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port that is not a number 0-65535)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def check_executor_name(ctx: Ctx, line: int | None, path: str, name: str) -> None:
    """An executor's name is part of a git branch and a folder when executors are compared
    (``specwright/<slug>@<name>``, ``worktrees/<slug>@compare/<name>``): one that git refuses
    failed the comparison midway, and one with ``..`` named a folder outside, removed after."""
    if not _NAME.fullmatch(name) or ".." in name or name.endswith(".lock"):
        raise ctx.fail(
            line,
            path,
            "expected a name of letters, digits and . _ + - (starting with a letter, digit "
            f"or _, without '..': it is part of git branch and folder names), got {name!r}",
        )


def check_executor(ctx: Ctx, body: Any, path: str, entry: ExecutorConfig) -> None:
    """Raise the config's one-line error when ``entry`` cannot work as its type needs."""

    def fail(key: str, message: str) -> Exception:
        head, _, sub = key.partition(".")  # options.extra_args: the line of extra_args
        line = line_of(body.get(head), sub) if sub else None
        return ctx.fail(line or line_of(body, head.split("[")[0]), f"{path}.{key}", message)

    def choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
        if value not in allowed:
            raise fail(key, f"expected one of {', '.join(allowed)}, got {value!r}")

    # what goes into the agent's command line and environment, which cannot carry a NUL (nor
    # a variable name an `=`): it was a ValueError traceback at the agent's start
    texts = {k: getattr(entry, k) for k in ("model", "provider", "path", "url")}
    texts.update({f"argv[{i}]": a for i, a in enumerate(entry.argv)})
    texts.update({f"env.{k}": v for k, v in entry.env.items()})
    for key, text in texts.items():
        if text and "\0" in text:
            raise fail(key, "contains a NUL character, which no command line or environment holds")
    for name in entry.env:
        if not name or "=" in name or "\0" in name:
            raise fail(f"env.{name}", "expected an environment variable's name (no '=')")
    for key in ("stream_log", "config_dir"):
        value = entry.options.get(key)
        if value is not None and not isinstance(value, str):
            raise fail(f"options.{key}", f"expected a path, got {value!r}")

    if entry.type == "claude-code":
        if not entry.model:
            raise fail(
                "model",
                "missing; claude-code needs a model (the CLI's default model changes between "
                "versions and decides the price)",
            )
        choice("permission_mode", entry.permission_mode, PERMISSION_MODES)
        for key in ("extra_args", "allowed_tools"):
            value = entry.options.get(key)
            text_ok = key == "allowed_tools" and isinstance(value, str)
            if value is not None and not text_ok and not _strings(value):
                raise fail(f"options.{key}", f"expected a list of strings, got {value!r}")
    elif entry.type == "opencode":
        choice("permission_policy", entry.permission_policy, PERMISSION_POLICIES)
        if entry.model and not entry.provider and "/" not in entry.model:
            raise fail(
                "model",
                f"{entry.model!r} needs a provider (set provider, or write model as "
                "provider/model)",
            )
        if entry.url and not is_http_url(entry.url.rstrip("/")):
            raise fail(
                "url", f"expected an http(s) URL such as http://localhost:4096, got {entry.url!r}"
            )
    elif entry.type == "command":
        if not entry.argv:
            raise fail(
                "argv",
                'missing; a command executor needs its command line, e.g. [codex, exec, "{prompt}"]',
            )
        choice("prompt_via", entry.prompt_via, PROMPT_VIA)
        if entry.prompt_via == "arg" and not any("{prompt}" in a for a in entry.argv):
            raise fail("argv", "has no {prompt} placeholder; add one or set prompt_via: stdin")
        if not entry.model and any("{model}" in a for a in entry.argv):
            raise fail("model", "missing; argv has a {model} placeholder, which would be empty")
        parser = entry.parser
        if parser and parser not in COMMAND_PARSERS and not re.fullmatch(r"[\w.]+:\w+", parser):
            raise fail(
                "parser",
                f"expected one of {', '.join(COMMAND_PARSERS)} or 'module:function', "
                f"got {parser!r}",
            )
    inherited = getattr(body, "inherited", ())
    for key in body:
        if key in COMMON_KEYS or key in USED_BY.get(entry.type, ()) or key in inherited:
            continue
        users = " and ".join(t for t, keys in USED_BY.items() if key in keys)
        ctx.warn(
            line_of(body, key),
            f"{path}.{key}",
            f"ignored: {entry.type} executors do not use it; it is for {users} executors",
        )


def check_reviewer(ctx: Ctx, body: Any, path: str, entry: ReviewerConfig) -> None:
    """Warn of a key a checks reviewer does not use (its `model` reviews nothing: it ships
    on passing checks alone)."""
    if entry.type != "checks":
        return
    for key in body:
        if key != "type" and key not in getattr(body, "inherited", ()):
            ctx.warn(
                line_of(body, key),
                f"{path}.{key}",
                "ignored: a checks reviewer ships on passing verification alone; "
                "type: llm has a model review the diff",
            )


def check_planner(ctx: Ctx, body: Any, path: str, entry: PlannerConfig) -> None:
    """Raise the config's one-line error when a planner's endpoint or key variable cannot work."""
    if entry.base_url and not is_http_url(entry.base_url.rstrip("/")):
        raise ctx.fail(
            line_of(body, "base_url"),
            f"{path}.base_url",
            "expected an http(s) URL such as https://api.anthropic.com",
        )
    if not _ENV_NAME.fullmatch(entry.api_key_env):
        # not quoted back: a key pasted here instead of its variable's name is a secret
        raise ctx.fail(
            line_of(body, "api_key_env"),
            f"{path}.api_key_env",
            "expected the name of an environment variable (letters, digits and _, such as "
            "ANTHROPIC_API_KEY), not the key itself",
        )


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)
