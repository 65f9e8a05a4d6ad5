"""The output tokens of each reply of one Claude Code session, from its transcript.

The stream-json ``assistant`` lines carry a reply's message_start usage: its input and cache
tokens as billed, but ``output_tokens`` 1. The transcript Claude Code writes in its config
directory (``projects/<cwd slug>/<session>.jsonl``, sub-agents under
``<session>/subagents/``) has each reply's final usage. Read after the process ended, bounded:
a line is at most ``MAX_LINE_BYTES`` (longer ones are skipped), a session at most
``MAX_TOTAL_BYTES``; anything unreadable is simply not known (the caller estimates it).
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

MAX_LINE_BYTES = 16 * 1024 * 1024
MAX_TOTAL_BYTES = 512 * 1024 * 1024
_SESSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")  # a name, never a path


class _Usage(msgspec.Struct):
    output_tokens: int | None = None


class _Message(msgspec.Struct):
    id: str | None = None
    usage: _Usage | None = None


class _Line(msgspec.Struct):
    type: str | None = None
    message: _Message | None = None


_decoder = msgspec.json.Decoder(_Line)


def _files(config_dir: Path, session_id: str) -> list[Path]:
    projects = config_dir / "projects"
    return sorted(projects.glob(f"*/{session_id}.jsonl")) + sorted(
        projects.glob(f"*/{session_id}/subagents/*.jsonl")
    )


def reply_outputs(config_dir: str | Path, session_id: object) -> dict[str, int]:
    """Message id -> its output tokens, for the replies the session's transcripts hold (the
    largest count a reply's lines give: older versions wrote a line per content block)."""
    if not isinstance(session_id, str) or not _SESSION.fullmatch(session_id) or ".." in session_id:
        return {}
    out: dict[str, int] = {}
    budget = MAX_TOTAL_BYTES
    for path in _files(Path(config_dir), session_id):
        try:
            with path.open("rb") as f:
                while budget > 0:
                    line = f.readline(MAX_LINE_BYTES + 1)
                    if not line:
                        break
                    budget -= len(line)
                    if len(line) > MAX_LINE_BYTES:  # skip the rest of an overlong line
                        while line and not line.endswith(b"\n") and budget > 0:
                            line = f.readline(MAX_LINE_BYTES)
                            budget -= len(line)
                        continue
                    if b'"assistant"' not in line:
                        continue
                    _take(line, out)
        except OSError:
            continue
    return out


def _take(line: bytes, out: dict[str, int]) -> None:
    try:
        entry = _decoder.decode(line)
    except (msgspec.DecodeError, ValueError):
        return
    message = entry.message
    if entry.type != "assistant" or message is None or not isinstance(message.id, str):
        return
    tokens = message.usage.output_tokens if message.usage is not None else None
    if isinstance(tokens, int) and not isinstance(tokens, bool) and 0 <= tokens < 2**53:
        out[message.id] = max(out.get(message.id, 0), tokens)
