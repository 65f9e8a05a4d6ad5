"""Generated agent-log corpora (Claude Code, Codex) and a fake `codexbar`, for tests and bench.

Lines are compact JSON like the real logs (no spaces after ``:`` and ``,``). The Claude corpus
has several models, 5-minute and 1-hour cache writes, streaming duplicates (one message written
on several lines), sidechain files (including replays of a parent message with a new request
id), agent-progress copies, an old ``costUSD`` line, a ``<synthetic>`` line and malformed lines.
"""

from __future__ import annotations

import json
import os
import random
import stat
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

CLAUDE_MODELS = (
    "claude-sonnet-4-5-20250929",
    "claude-opus-4-5-20251101",
    "claude-haiku-4-5-20251001",
    "claude-opus-4-1-20250805",
)


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _uid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@dataclass
class ClaudeSession:
    """One generated session: what a later ``extend_claude_corpus`` needs to carry it on."""

    index: int
    session: str
    cwd: str
    path: Path
    side_path: Path
    model: str
    ts: datetime
    step: float  # the longest gap between turns, in seconds
    turns: int = 0  # turns written so far
    lines: int = 0  # lines written so far to ``path``


@dataclass
class CorpusInfo:
    root: Path
    files: list[Path] = field(default_factory=list)
    lines: int = 0
    malformed: int = 0
    bytes: int = 0
    sessions: list[ClaudeSession] = field(default_factory=list)
    pad: int = 0
    prefix: str = ""
    malformed_every: int = 0


def _usage(rng: random.Random, out: int) -> dict[str, object]:
    """Per-request usage that stays under 200k prompt tokens (a 200k-context model)."""
    cw5 = rng.choice((0, 0, rng.randint(100, 20_000)))
    cw1 = rng.choice((0, 0, 0, rng.randint(100, 10_000)))
    usage: dict[str, object] = {
        "input_tokens": rng.randint(1, 400),
        "cache_creation_input_tokens": cw5 + cw1,
        "cache_read_input_tokens": rng.choice((0, rng.randint(1_000, 150_000))),
        "cache_creation": {"ephemeral_5m_input_tokens": cw5, "ephemeral_1h_input_tokens": cw1},
        "output_tokens": out,
        "service_tier": "standard",
    }
    return usage


def _assistant(
    *,
    session: str,
    cwd: str,
    ts: datetime,
    model: str,
    msg_id: str,
    req_id: str | None,
    usage: dict[str, object],
    text: str,
    sidechain: bool = False,
    uid: str,
    cost_usd: float | None = None,
) -> dict[str, object]:
    line: dict[str, object] = {
        "parentUuid": None,
        "isSidechain": sidechain,
        "userType": "external",
        "cwd": cwd,
        "sessionId": session,
        "version": "2.0.50",
        "gitBranch": "main",
        "message": {
            "model": model,
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": text}],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        },
        "type": "assistant",
        "uuid": uid,
        "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
    }
    if req_id is not None:
        line["requestId"] = req_id
    if cost_usd is not None:
        line["costUSD"] = cost_usd
    return line


def _user(session: str, cwd: str, ts: datetime, text: str, uid: str) -> dict[str, object]:
    return {
        "parentUuid": None,
        "isSidechain": False,
        "userType": "external",
        "cwd": cwd,
        "sessionId": session,
        "version": "2.0.50",
        "gitBranch": "main",
        "type": "user",
        "message": {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": text}],
        },
        "uuid": uid,
        "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
    }


def write_claude_corpus(
    root: Path,
    *,
    sessions: int = 6,
    turns: int = 30,
    days: int = 4,
    pad: int = 120,
    seed: int = 7,
    start: datetime = datetime(2025, 11, 1, 20, 0, tzinfo=UTC),
    malformed_every: int = 97,
    prefix: str = "",
) -> CorpusInfo:
    """Write a Claude Code ``projects/`` tree under ``root`` (a CLAUDE_CONFIG_DIR)."""
    rng = random.Random(seed)
    info = CorpusInfo(root=root, pad=pad, prefix=prefix, malformed_every=malformed_every)
    span = timedelta(days=days).total_seconds()
    for s in range(sessions):
        project = f"-home-dev-proj{prefix}{s % 3}"
        session = _uid(rng)
        path = root / "projects" / project / f"{session}.jsonl"
        sess = ClaudeSession(
            index=s,
            session=session,
            cwd=f"/home/dev/proj{prefix}{s % 3}",
            path=path,
            side_path=path.parent / session / "subagents" / f"agent-{s}.jsonl",
            model=CLAUDE_MODELS[s % len(CLAUDE_MODELS)],
            ts=start + timedelta(seconds=rng.uniform(0, span)),
            step=span / max(turns, 1) / 2,
        )
        info.sessions.append(sess)
        for stale in (sess.path, sess.side_path):
            stale.unlink(missing_ok=True)
        _write_turns(info, sess, turns, rng)
    return info


def extend_claude_corpus(info: CorpusInfo, turns: int, *, seed: int = 1000) -> int:
    """Carry every session of ``info`` on for ``turns`` more turns of the same mix of lines
    (new ids, later timestamps), appended to its files; returns the lines added. ``info`` is
    left as it was, so truncating the files back undoes it and a repeat appends the same."""
    rng = random.Random(seed)
    added = CorpusInfo(
        root=info.root,
        pad=info.pad,
        prefix=f"{info.prefix}x{seed}",
        malformed_every=info.malformed_every,
    )
    for sess in info.sessions:
        _write_turns(added, replace(sess), turns, rng)
    return added.lines


def _write_turns(info: CorpusInfo, sess: ClaudeSession, turns: int, rng: random.Random) -> None:
    """Append ``turns`` turns of ``sess`` to its files (and count them in ``info``): a user
    line, one reply written as 1-3 streaming lines, now and then a sidechain (subagent) reply
    with an agent_progress copy in the parent log, a cut-short line every ``malformed_every``."""
    s, session, cwd, prefix = sess.index, sess.session, sess.cwd, info.prefix
    filler = "x" * info.pad
    lines: list[str] = []
    side: list[str] = []
    last_parent: tuple[str, str] | None = None
    for t in range(sess.turns, sess.turns + turns):
        sess.ts += timedelta(seconds=rng.uniform(5, sess.step))
        ts = sess.ts
        lines.append(_dumps(_user(session, cwd, ts, filler * rng.randint(1, 6), _uid(rng))))
        if rng.random() < 0.15:
            sess.model = rng.choice(CLAUDE_MODELS)
        model = sess.model
        msg_id = f"msg_{prefix}{s:03d}{t:05d}{rng.getrandbits(32):08x}"
        req_id = f"req_{prefix}{s:03d}{t:05d}{rng.getrandbits(32):08x}"
        usage = _usage(rng, rng.randint(1, 4000))
        copies = rng.choice((1, 1, 2, 3))
        for c in range(copies):  # streaming: one line per content block, same ids
            u = dict(usage)
            if c < copies - 1 and rng.random() < 0.5:
                u["output_tokens"] = max(1, int(usage["output_tokens"]) // (copies - c + 1))  # type: ignore[call-overload]
            lines.append(
                _dumps(
                    _assistant(
                        session=session,
                        cwd=cwd,
                        ts=ts + timedelta(milliseconds=37 * c),
                        model=model,
                        msg_id=msg_id,
                        req_id=req_id,
                        usage=u,
                        text=filler,
                        uid=_uid(rng),
                    )
                )
            )
        last_parent = (msg_id, model)
        if t % 11 == 5:  # a sidechain (subagent / /btw) with its own answers
            if last_parent and rng.random() < 0.7:  # replays the parent with a new request id
                side.append(
                    _dumps(
                        _assistant(
                            session=session,
                            cwd=cwd,
                            ts=ts + timedelta(seconds=1),
                            model=last_parent[1],
                            msg_id=last_parent[0],
                            req_id=f"req_side{prefix}{s:03d}{t:05d}",
                            usage=_usage(rng, 10),
                            text=filler,
                            sidechain=True,
                            uid=_uid(rng),
                        )
                    )
                )
            side_msg = f"msg_side{prefix}{s:03d}{t:05d}"
            side_line = _assistant(
                session=session,
                cwd=cwd,
                ts=ts + timedelta(seconds=2),
                model="claude-haiku-4-5-20251001",
                msg_id=side_msg,
                req_id=f"req_sideans{prefix}{s:03d}{t:05d}",
                usage=_usage(rng, rng.randint(1, 500)),
                text=filler,
                sidechain=True,
                uid=_uid(rng),
            )
            side.append(_dumps(side_line))
            # the parent log also carries an agent_progress copy of the subagent's reply
            lines.append(
                _dumps(
                    {
                        "type": "progress",
                        "sessionId": session,
                        "timestamp": side_line["timestamp"],
                        "data": {
                            "type": "agent_progress",
                            "message": {
                                "type": "assistant",
                                "message": side_line["message"],
                                "requestId": side_line["requestId"],
                                "isSidechain": True,
                                "timestamp": side_line["timestamp"],
                            },
                        },
                    }
                )
            )
        if t == 3 and s == 0:  # an old-format line with a reported cost
            lines.append(
                _dumps(
                    _assistant(
                        session=session,
                        cwd=cwd,
                        ts=ts + timedelta(seconds=3),
                        model=model,
                        msg_id=f"msg_old{prefix}{s}",
                        req_id=None,
                        usage=_usage(rng, 42),
                        text="old",
                        uid=_uid(rng),
                        cost_usd=0.0123,
                    )
                )
            )
        if t == 4 and s == 1:  # Claude Code's synthetic error message: no tokens
            zero = {
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            }
            lines.append(
                _dumps(
                    _assistant(
                        session=session,
                        cwd=cwd,
                        ts=ts + timedelta(seconds=4),
                        model="<synthetic>",
                        msg_id=_uid(rng),
                        req_id=None,
                        usage=zero,
                        text="API Error",
                        uid=_uid(rng),
                    )
                )
            )
        if info.malformed_every and (sess.lines + len(lines)) % info.malformed_every == 0:
            good = lines[-1]
            lines.append(good[: len(good) // 2])  # a line cut short by a crash
            info.malformed += 1
    sess.turns += turns
    sess.lines += len(lines)
    for path, written in ((sess.path, lines), (sess.side_path, side)):
        if not written:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        data = "\n".join(written) + "\n"
        with path.open("a", encoding="utf-8") as fh:
            fh.write(data)
        if path not in info.files:
            info.files.append(path)
        info.lines += len(written)
        info.bytes += len(data.encode())


def append_claude_lines(path: Path, n: int, *, seed: int = 99, model: str | None = None) -> int:
    """Append ``n`` new assistant replies (new ids) to an existing session file; returns bytes."""
    rng = random.Random(seed)
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    session, cwd = first["sessionId"], first["cwd"]
    ts = datetime(2025, 11, 6, 12, 0, tzinfo=UTC)
    out = []
    for i in range(n):
        out.append(
            _dumps(
                _assistant(
                    session=session,
                    cwd=cwd,
                    ts=ts + timedelta(seconds=i),
                    model=model or rng.choice(CLAUDE_MODELS),
                    msg_id=f"msg_app{seed}_{i}",
                    req_id=f"req_app{seed}_{i}",
                    usage=_usage(rng, rng.randint(1, 900)),
                    text="appended",
                    uid=_uid(rng),
                )
            )
        )
    data = "\n".join(out) + "\n"
    with path.open("a", encoding="utf-8") as fh:
        fh.write(data)
    return len(data)


# --- Codex ------------------------------------------------------------------------------------


def write_codex_session(
    root: Path,
    *,
    name: str = "rollout-2025-11-02T10-00-00-abc.jsonl",
    model: str = "gpt-5-codex",
    turns: int = 4,
    seed: int = 3,
    archived: bool = False,
) -> tuple[Path, dict[str, int]]:
    """One Codex CLI session log under ``root`` (a CODEX_HOME); returns its path and totals."""
    rng = random.Random(seed)
    sub = "archived_sessions" if archived else "sessions/2025/11/02"
    path = root / sub / name
    path.parent.mkdir(parents=True, exist_ok=True)
    session = _uid(rng)
    ts = datetime(2025, 11, 2, 10, 0, tzinfo=UTC)
    lines = [
        _dumps(
            {
                "timestamp": ts.isoformat().replace("+00:00", "Z"),
                "type": "session_meta",
                "payload": {"id": session, "cwd": "/home/dev/proj0", "cli_version": "0.58.0"},
            }
        ),
    ]
    total = {
        "input_tokens": 0,
        "cached_input_tokens": 0,
        "output_tokens": 0,
        "reasoning_output_tokens": 0,
        "total_tokens": 0,
    }
    sums = {"input": 0, "cached": 0, "output": 0, "reasoning": 0}
    for t in range(turns):
        ts += timedelta(minutes=3)
        stamp = ts.isoformat().replace("+00:00", "Z")
        lines.append(
            _dumps(
                {
                    "timestamp": stamp,
                    "type": "turn_context",
                    "payload": {"cwd": "/home/dev/proj0", "model": model},
                }
            )
        )
        inp = rng.randint(2_000, 30_000)
        cached = rng.randint(0, inp - 1)
        out = rng.randint(10, 3_000)
        reasoning = rng.randint(0, out)
        last = {
            "input_tokens": inp,
            "cached_input_tokens": cached,
            "output_tokens": out,
            "reasoning_output_tokens": reasoning,
            "total_tokens": inp + out,
        }
        for k in total:
            total[k] += last[k]
        sums["input"] += inp - cached
        sums["cached"] += cached
        sums["output"] += out
        sums["reasoning"] += reasoning
        event = {
            "timestamp": stamp,
            "type": "event_msg",
            "payload": {
                "type": "token_count",
                "info": {
                    "total_token_usage": dict(total),
                    "last_token_usage": last,
                    "model_context_window": 272000,
                },
                "rate_limits": {
                    "primary": {
                        "used_percent": 10.0 + t,
                        "window_minutes": 300,
                        "resets_in_seconds": 3600,
                    },
                    "secondary": {
                        "used_percent": 3.0,
                        "window_minutes": 10080,
                        "resets_in_seconds": 86400,
                    },
                },
            },
        }
        lines.append(_dumps(event))
        if t % 2 == 1:  # codex repeats the last token_count (e.g. on a rate-limit refresh)
            lines.append(_dumps(event))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, sums


# --- codexbar ---------------------------------------------------------------------------------

CODEXBAR_USAGE = [
    {
        "provider": "codex",
        "account": "dev@example.invalid",
        "version": "0.58.0",
        "source": "codex-cli",
        "status": {"indicator": "none", "description": "All Systems Operational"},
        "usage": {
            "primary": {
                "usedPercent": 28.0,
                "windowMinutes": 300,
                "resetsAt": "2025-11-02T15:00:00Z",
                "resetDescription": "in 2h",
            },
            "secondary": {
                "usedPercent": 59.0,
                "windowMinutes": 10080,
                "resetsAt": "2025-11-06T00:00:00Z",
            },
            "tertiary": None,
            "updatedAt": "2025-11-02T13:00:00Z",
            "identity": {
                "providerID": "codex",
                "accountEmail": "dev@example.invalid",
                "loginMethod": "plus",
            },
        },
        "credits": {"remaining": 112.4, "events": [], "updatedAt": "2025-11-02T13:00:00Z"},
    },
    {
        "provider": "gemini",
        "account": None,
        "version": None,
        "source": "auto",
        "usage": None,
        "error": {"code": 1, "message": "Gemini: not logged in", "kind": "provider"},
    },
    {
        "provider": "claude",
        "account": None,
        "version": "2.0.50",
        "source": "oauth",
        "usage": {
            "primary": {
                "usedPercent": 41.5,
                "windowMinutes": 300,
                "resetsAt": "2025-11-02T16:00:00Z",
            },
            "secondary": {
                "usedPercent": 12.0,
                "windowMinutes": 10080,
                "resetsAt": "2025-11-07T00:00:00Z",
            },
            "tertiary": {
                "usedPercent": 5.0,
                "windowMinutes": 10080,
                "resetsAt": "2025-11-07T00:00:00Z",
            },
            "providerCost": {
                "used": 12.5,
                "limit": 100.0,
                "currencyCode": "USD",
                "period": "Monthly",
                "resetsAt": "2025-12-01T00:00:00Z",
                "updatedAt": "2025-11-02T13:00:00Z",
            },
            "updatedAt": "2025-11-02T13:00:00Z",
        },
    },
]

CODEXBAR_COST = [
    {
        "provider": "claude",
        "source": "local",
        "updatedAt": "2025-11-02T13:00:00Z",
        "sessionTokens": 120000,
        "sessionCostUSD": 1.23,
        "last30DaysTokens": 4500000,
        "last30DaysCostUSD": 45.6,
        "daily": [
            {
                "date": "2025-11-01",
                "inputTokens": 1000,
                "outputTokens": 2000,
                "cacheReadTokens": 30000,
                "cacheCreationTokens": 4000,
                "totalTokens": 37000,
                "totalCost": 0.42,
                "modelsUsed": ["claude-sonnet-4-5-20250929"],
                "modelBreakdowns": [{"modelName": "claude-sonnet-4-5-20250929", "cost": 0.42}],
            },
        ],
        "totals": {
            "inputTokens": 1000,
            "outputTokens": 2000,
            "cacheReadTokens": 30000,
            "cacheCreationTokens": 4000,
            "totalTokens": 37000,
            "totalCost": 0.42,
        },
    }
]


def write_fake_codexbar(
    directory: Path,
    *,
    usage: object = CODEXBAR_USAGE,
    cost: object = CODEXBAR_COST,
    raw_usage: str | None = None,
    bump_file: Path | None = None,
) -> Path:
    """A real executable `codexbar` printing recorded JSON. With ``bump_file``, each `usage`
    call adds 1 percentage point to every primary window (so before/after snapshots differ)."""
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "codexbar-data.json"
    data.write_text(_dumps({"usage": usage, "cost": cost, "raw_usage": raw_usage}))
    script = directory / "codexbar"
    import sys

    script.write_text(
        f"""#!{sys.executable}
import json, sys
from pathlib import Path
data = json.loads(Path({str(data)!r}).read_text())
args = sys.argv[1:]
if not args:
    print("usage: codexbar usage|cost", file=sys.stderr); sys.exit(64)
if args[0] == "usage":
    if data["raw_usage"] is not None:
        sys.stdout.write(data["raw_usage"]); sys.exit(0)
    payload = data["usage"]
    bump = {str(bump_file) if bump_file else None!r}
    if bump:
        p = Path(bump)
        n = int(p.read_text()) if p.exists() else 0
        p.write_text(str(n + 1))
        for item in payload:
            prim = (item.get("usage") or {{}}).get("primary")
            if prim:
                prim["usedPercent"] = prim["usedPercent"] + n
    print(json.dumps(payload, separators=(",", ":")))
elif args[0] == "cost":
    print(json.dumps(data["cost"], separators=(",", ":")))
else:
    print("unknown command " + args[0], file=sys.stderr); sys.exit(64)
""",
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def ccusage_path() -> Path | None:
    """The ccusage binary: $CCUSAGE_PATH, else .agents/node_modules/.bin/ccusage in the repo."""
    env = os.environ.get("CCUSAGE_PATH")
    if env:
        return Path(env) if Path(env).exists() else None
    here = Path(__file__).resolve().parent.parent / ".agents" / "node_modules" / ".bin" / "ccusage"
    return here if here.exists() else None
