"""A generated Codex CLI corpus (``$CODEX_HOME`` rollouts) and the lines it is made of, for the
parity tests against ``ccusage codex``. Lines are compact JSON like the real logs."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _uid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# priced alike by genai-prices and ccusage 20.0.24's offline table (see test_usage_codex_parity)
CODEX_MODELS = ("gpt-5-codex", "gpt-5", "gpt-5.1-codex", "gpt-5-mini", "gpt-5.1-codex-mini")


def codex_stamp(ts: datetime) -> str:
    """A Codex log timestamp: UTC, milliseconds, ``Z``."""
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def codex_line(ts: datetime, kind: str, payload: dict[str, object]) -> str:
    """One Codex rollout line, compact like the real ones."""
    return _dumps({"timestamp": codex_stamp(ts), "type": kind, "payload": payload})


def codex_tokens(inp: int, cached: int, out: int, reasoning: int) -> dict[str, int]:
    """A Codex usage object; ``total_tokens`` is input plus output, as Codex writes it."""
    return {
        "input_tokens": inp,
        "cached_input_tokens": cached,
        "output_tokens": out,
        "reasoning_output_tokens": reasoning,
        "total_tokens": inp + out,
    }


def codex_token_count(
    ts: datetime, last: dict[str, int] | None, total: dict[str, int] | None, pct: float = 5.0
) -> str:
    """An ``event_msg`` / ``token_count`` line (either usage may be missing: older Codex)."""
    info: dict[str, object] = {"model_context_window": 272000}
    if total is not None:
        info["total_token_usage"] = total
    if last is not None:
        info["last_token_usage"] = last
    limits = {"used_percent": pct, "window_minutes": 300, "resets_at": 1762100000}
    return codex_line(
        ts, "event_msg", {"type": "token_count", "info": info, "rate_limits": {"primary": limits}}
    )


@dataclass
class CodexCorpus:
    root: Path
    files: list[Path] = field(default_factory=list)
    malformed: int = 0
    sessions: list[str] = field(default_factory=list)


def write_codex_corpus(
    root: Path, *, sessions: int = 6, turns: int = 12, days: int = 3, seed: int = 5
) -> CodexCorpus:
    """Codex rollouts under ``root`` (a CODEX_HOME), one file per session, named as Codex does:
    user and assistant items, tool calls, reasoning; a ``turn_context`` per turn (the model
    switching now and then), a ``token_count`` with ``info: null`` before a session's first
    turn, a repeated ``token_count`` (same totals, later time: a rate-limit refresh), cached
    input and reasoning output, an older event with totals only or with the turn's usage only,
    a cut line. Sessions start from 2025-10-30 on over ``days`` days, some at 23:00 so they cross
    midnight (and October's end); every third is archived (``archived_sessions/``, flat)."""
    rng = random.Random(seed)
    info = CodexCorpus(root)
    for k in range(sessions):
        sid = _uid(rng)
        start = datetime(2025, 10, 30, 9, tzinfo=UTC) + timedelta(days=k % days)
        start += timedelta(hours=14 if k % 2 else rng.randint(0, 6), seconds=rng.randint(0, 3599))
        name = f"rollout-{start.strftime('%Y-%m-%dT%H-%M-%S')}-{sid}.jsonl"
        archived = k % 3 == 2
        path = root / ("archived_sessions" if archived else start.strftime("sessions/%Y/%m/%d"))
        path = path / name
        cwd = f"/home/dev/proj{k % 3}"
        ts = start
        meta = {"id": sid, "timestamp": codex_stamp(ts), "cwd": cwd, "originator": "codex_cli_rs"}
        meta |= {"cli_version": "0.58.0", "source": "cli", "model_provider": "openai"}
        lines = [codex_line(ts, "session_meta", meta)]
        lines.append(codex_line(ts, "event_msg", {"type": "token_count", "info": None}))
        model = CODEX_MODELS[k % len(CODEX_MODELS)]
        total = codex_tokens(0, 0, 0, 0)
        for t in range(turns):
            ts += timedelta(seconds=rng.randint(20, 900))
            text = f"step {t}: fix the failing test"
            user = [{"type": "input_text", "text": text}]
            lines.append(
                codex_line(
                    ts, "response_item", {"type": "message", "role": "user", "content": user}
                )
            )
            lines.append(codex_line(ts, "event_msg", {"type": "user_message", "message": text}))
            if rng.random() < 0.2:
                model = rng.choice(CODEX_MODELS)
            context = {"cwd": cwd, "approval_policy": "on-request", "model": model}
            lines.append(codex_line(ts, "turn_context", context | {"effort": "medium"}))
            ts += timedelta(seconds=rng.randint(2, 60), milliseconds=rng.randint(0, 999))
            call = f"call_{k}_{t}"
            args = _dumps({"command": ["bash", "-lc", "pytest -q"]})
            lines.append(
                codex_line(
                    ts,
                    "response_item",
                    {"type": "function_call", "name": "shell", "arguments": args, "call_id": call},
                )
            )
            # a tool's output naming a token_count (an agent reading a Codex log) is no event
            out_text = _dumps({"output": '{"type":"token_count","info":{}}', "exit_code": 0})
            lines.append(
                codex_line(
                    ts,
                    "response_item",
                    {"type": "function_call_output", "call_id": call, "output": out_text},
                )
            )
            inp = rng.randint(3_000, 60_000)
            out = rng.randint(20, 4_000)
            last = codex_tokens(inp, rng.randint(0, inp), out, rng.randint(0, out))
            total = {key: total[key] + last[key] for key in total}
            shape = rng.random()
            if shape < 0.08:  # older Codex: the totals only
                lines.append(codex_token_count(ts, None, dict(total), 5.0 + t))
            elif shape < 0.14:  # the turn's usage only
                lines.append(codex_token_count(ts, last, None, 5.0 + t))
            else:
                lines.append(codex_token_count(ts, last, dict(total), 5.0 + t))
            if t % 3 == 1:  # the same totals again, later: a rate-limit refresh
                later = ts + timedelta(seconds=rng.randint(1, 30))
                lines.append(codex_token_count(later, last, dict(total), 6.0 + t))
            say = {"type": "agent_message", "message": "done"}
            lines.append(codex_line(ts, "event_msg", say))
        if k % 4 == 3:
            lines.insert(len(lines) // 2, lines[len(lines) // 2][:40])  # a cut line
            info.malformed += 1
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        info.files.append(path)
        info.sessions.append(sid)
    return info
