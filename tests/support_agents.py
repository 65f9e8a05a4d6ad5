"""Helpers for the agent tests: where the real CLIs are, fake CLIs, process checks, store reads."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from specwright.config import ExecutorConfig

REPO = Path(__file__).resolve().parent.parent
STREAMS = Path(__file__).resolve().parent / "fixtures" / "streams"
_NPM_BIN = REPO / ".agents" / "node_modules" / ".bin"

# Read at import, before the autouse `isolate` fixture scrubs CLAUDE_* / OPENCODE_* variables.
CLAUDE_BIN = os.environ.get("CLAUDE_PATH") or str(_NPM_BIN / "claude")
OPENCODE_BIN = os.environ.get("OPENCODE_PATH") or str(_NPM_BIN / "opencode")

# the API's answer to a key whose organisation has no credit left (quoted in anthropics/claude-code
# issues #4208, #85675)
CREDIT_TOO_LOW = (
    "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to "
    "upgrade or purchase credits."
)


def _usable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


requires_claude = pytest.mark.skipif(
    not _usable(CLAUDE_BIN),
    reason=f"real claude CLI not installed (set CLAUDE_PATH or run .ci/run to npm-install it "
    f"into .agents/; looked at {CLAUDE_BIN})",
)
requires_opencode = pytest.mark.skipif(
    not _usable(OPENCODE_BIN),
    reason=f"real opencode CLI not installed (set OPENCODE_PATH or run .ci/run to npm-install "
    f"it into .agents/; looked at {OPENCODE_BIN})",
)


def executor_config(name: str = "agent", type: str = "claude-code", **kw: Any) -> ExecutorConfig:
    """An ExecutorConfig with test-friendly defaults."""
    if type == "claude-code":
        kw.setdefault("model", "claude-sonnet-4-5")
    return ExecutorConfig(name=name, type=type, **kw)


def fake_codex(stream: str, model: str) -> Any:
    """A ``parser: codex`` command agent named codex that prints the recorded stream
    ``codex/<stream>.jsonl`` and exits 1, as `codex exec --json` does when its turn failed."""
    from specwright.agents.command import CommandExecutor

    path = STREAMS / "codex" / f"{stream}.jsonl"
    return CommandExecutor(
        executor_config(
            name="codex",
            type="command",
            parser="codex",
            model=model,
            argv=("sh", "-c", 'cat "$0"; exit 1', str(path), "{prompt}"),
        )
    )


def fake_cli(directory: Path, name: str, body: str) -> Path:
    """A real executable Python script ``directory/name`` running ``body``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def stream_lines(*parts: str) -> list[bytes]:
    """Lines of recorded fixture streams (``claude-code/acceptEdits`` ...), as bytes."""
    out: list[bytes] = []
    for part in parts:
        out += (STREAMS / f"{part}.jsonl").read_bytes().splitlines(keepends=True)
    return out


def opencode_events(name: str) -> list[dict[str, Any]]:
    """A recorded OpenCode `/event` stream (one JSON event a line)."""
    lines = (STREAMS / "opencode" / f"{name}.events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def alive(pid: int) -> bool:
    """True when ``pid`` is a live (not zombie) process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return fields[0] not in ("Z", "X")


def wait_gone(pid: int, tries: int = 200) -> None:
    """Poll (every 50 ms, ``tries`` times at most) until ``pid`` is no longer alive."""
    for _ in range(tries):
        if not alive(pid):
            return
        threading.Event().wait(0.05)


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            out.append(int(entry.name))
    return out


def stored_events(store: Any, execution_id: str) -> list[dict[str, Any]]:
    """The events of one execution, in order."""
    rows: list[dict[str, Any]] = store.query_dicts(
        "SELECT * FROM events WHERE execution_id = ? ORDER BY seq", [execution_id]
    )
    return rows


def stored_execution(store: Any, execution_id: str) -> dict[str, Any]:
    """The execution row."""
    rows = store.query_dicts("SELECT * FROM executions WHERE id = ?", [execution_id])
    assert len(rows) == 1, rows
    row: dict[str, Any] = rows[0]
    return row


def opencode_config(
    openai_base_url: str, permission: dict[str, str] | None = None
) -> dict[str, Any]:
    """An opencode.json using a custom OpenAI-compatible provider at the fake model server."""
    return {
        "$schema": "https://opencode.ai/config.json",
        "provider": {
            "fake": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Fake LLM",
                "options": {"baseURL": openai_base_url, "apiKey": "sk-fake-test"},
                "models": {
                    "fake-model": {
                        "name": "Fake Model",
                        "limit": {"context": 128000, "output": 4096},
                        "cost": {"input": 3, "output": 15, "cache_read": 0.3, "cache_write": 3.75},
                    },
                    # a name the price library knows, with its >200k tier (opencode's own price
                    # for it is the base one)
                    "claude-sonnet-4-5": {
                        "name": "Sonnet by the fake",
                        "limit": {"context": 1000000, "output": 4096},
                        "cost": {"input": 3, "output": 15, "cache_read": 0.3, "cache_write": 3.75},
                    },
                },
            }
        },
        "enabled_providers": ["fake"],
        "model": "fake/fake-model",
        "small_model": "fake/fake-model",
        "autoupdate": False,
        "share": "disabled",
        **({"permission": permission} if permission else {}),
    }


@contextlib.contextmanager
def opencode_serving(
    config: dict[str, Any], base: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> Iterator[str]:
    """A real `opencode serve` of its own with ``config`` (offline, HOME under ``base``, ``env``
    added), OPENCODE_URL pointing at it while the block runs; stopped on leaving."""
    from specwright.agents.opencode_server import OFFLINE_ENV, OpenCodeServer

    (base / "oc-home").mkdir(exist_ok=True)
    server_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(base / "oc-home"),
        **OFFLINE_ENV,
        **env,
        "OPENCODE_CONFIG_CONTENT": json.dumps(config),
    }
    srv = OpenCodeServer(OPENCODE_BIN, base, server_env, ready_timeout_s=120).start()
    try:
        monkeypatch.setenv("OPENCODE_URL", str(srv.url))
        yield str(srv.url)
    finally:
        srv.stop()
