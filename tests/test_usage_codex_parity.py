"""`specwright usage daily|monthly|session --source codex --json` against the real `ccusage codex`.

One corpus: the generated one (several models and switches, repeated token_counts, ``info:
null``, cached input, reasoning, events with totals only or the turn's usage only, cut lines,
archived sessions, sessions over midnight and October's end) plus edge cases written here: events
before any ``turn_context`` (ccusage's ``gpt-5``), a ``turn_context`` naming an empty model, a
model named by an event (it holds for the events after it), cached input above the input, totals
that fall, totals only after an event without any or after a line without a time, ``gpt-5-pro``
(no cache-read price: cached input costs input), and a session split over files: a fork
replaying its parent's events, then its own (the parent going on after the fork); a fork of a
session we do not have, replaying in one burst; a subagent whose first events are its own.
Tokens must be equal to the token, reasoning included; costs to 1e-6, both from the same prices
(the models here are priced alike by genai-prices and ccusage's offline table).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.conftest import run_specwright
from tests.support_codex import (
    codex_line,
    codex_stamp,
    codex_token_count,
    codex_tokens,
    write_codex_corpus,
)
from tests.support_usage import ccusage_path

KEYS = ("inputTokens", "outputTokens", "cacheReadTokens", "totalTokens")
REPORTS = {"daily": ("daily", "date"), "monthly": ("monthly", "month")}
PARENT, FORK = "0a000000-0000-4000-8000-00000000000a", "0b000000-0000-4000-8000-00000000000b"
ORPHAN, SUB = "0c000000-0000-4000-8000-00000000000c", "0d000000-0000-4000-8000-00000000000d"
GONE = "0e000000-0000-4000-8000-00000000000e"  # a session whose log we do not have
_OTHERWISE = ("o3", "o4-mini", "codex-mini-latest")  # ccusage's offline prices differ


def _binary() -> Path:
    binary = ccusage_path()
    if binary is None:
        pytest.skip(
            "ccusage not installed: set CCUSAGE_PATH or install ccusage@20.0.24 into "
            ".agents/node_modules (npm install --prefix .agents ccusage@20.0.24)"
        )
    return binary


class _Session:
    """One hand-written rollout: lines appended in order, totals kept as Codex keeps them."""

    def __init__(self, sid: str, ts: datetime, **meta: object) -> None:
        self.sid, self.ts, self.lines = sid, ts, []
        self.total = codex_tokens(0, 0, 0, 0)
        payload = {"id": sid, "timestamp": codex_stamp(ts), "cwd": "/home/dev/edge"} | meta
        self.lines.append(codex_line(ts, "session_meta", payload))

    def at(self, **step: float) -> datetime:
        self.ts += timedelta(**step)
        return self.ts

    def context(self, model: str) -> None:
        self.lines.append(codex_line(self.ts, "turn_context", {"cwd": "/w", "model": model}))

    def turn(self, inp: int, cached: int, out: int, reasoning: int, **how: Any) -> str:
        """A token_count for a turn; ``how``: ``last``/``total`` False to leave one out,
        ``model`` to name one on the event."""
        last = codex_tokens(inp, cached, out, reasoning)
        self.total = {k: self.total[k] + last[k] for k in self.total}
        line = codex_token_count(
            self.ts,
            last if how.get("last", True) else None,
            dict(self.total) if how.get("total", True) else None,
        )
        if "model" in how:
            obj = json.loads(line)
            obj["payload"]["model"] = how["model"]
            line = json.dumps(obj, separators=(",", ":"))
        self.lines.append(line)
        return line

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(self.lines) + "\n", encoding="utf-8")


def _write_edge_cases(home: Path) -> None:
    day = datetime(2025, 10, 31, 21, 0, tzinfo=UTC)
    p = _Session(PARENT, day)
    p.at(seconds=5)
    p.turn(12_000, 2_000, 300, 100)  # no turn_context yet: gpt-5
    p.context("")  # names no model: still gpt-5
    p.at(minutes=1)
    p.turn(9_000, 8_000, 200, 50)
    p.context("gpt-5-codex")
    p.at(minutes=2)
    p.turn(20_000, 15_000, 900, 400)
    p.at(minutes=2)
    p.turn(7_000, 0, 80, 0, model="gpt-5-mini")  # an event naming its model ...
    p.at(minutes=2)
    p.turn(6_000, 1_000, 70, 10)  # ... which holds for the next one
    fork_at = p.at(minutes=1)  # the fork is made here; the parent goes on after it
    p.context("gpt-5-pro")
    p.at(minutes=2)
    p.turn(30_000, 25_000, 1_200, 900)  # cached input on a model without a cache price
    p.context("gpt-5-codex")
    p.at(minutes=2)
    p.turn(500, 900, 40, 0)  # more cached than input: capped at the input
    p.at(minutes=3)
    p.turn(4_000, 1_000, 90, 20, total=False)  # the turn's usage only ...
    p.at(minutes=3)
    p.turn(5_000, 2_000, 60, 5, last=False)  # ... then the totals only: their rise since
    p.at(minutes=1)
    p.lines.append(codex_token_count(p.ts, None, codex_tokens(900, 100, 10, 0)))  # they fell
    p.at(minutes=4)
    p.total = codex_tokens(900, 100, 10, 0)
    p.turn(3_000, 500, 45, 15)
    p.at(minutes=1)
    untimed = json.loads(p.turn(2_500, 2_000, 30, 0))
    del untimed["timestamp"]  # a line without a time is skipped whole: its totals too ...
    p.lines[-1] = json.dumps(untimed, separators=(",", ":"))
    p.at(minutes=1)
    p.turn(1_500, 1_000, 20, 0, last=False)  # ... so the next rise counts its turn
    p.write(home / "sessions/2025/10/31" / f"rollout-2025-10-31T21-00-00-{PARENT}.jsonl")

    # a fork of the parent made at ``fork_at``: Codex replays the parent's history so far (five
    # events; 2 s apart here, not in a burst, so only their match with the parent's tells them),
    # then the fork's own turns follow; its first equals the parent's next, made after the fork
    # (not part of what was replayed: counted)
    replayed = [json.loads(x) for x in p.lines if '"token_count"' in x][:5]
    f = _Session(FORK, fork_at, forked_from_id=PARENT)
    for event in replayed:
        f.at(seconds=2)
        event["timestamp"] = codex_stamp(f.ts)
        f.lines.append(json.dumps(event, separators=(",", ":")))
        f.total = event["payload"]["info"]["total_token_usage"]
    f.context("gpt-5-codex")
    f.at(seconds=9)
    f.turn(30_000, 25_000, 1_200, 900)
    f.at(hours=11)  # the next day
    f.turn(2_000, 1_500, 500, 100)
    stamp = fork_at.strftime("%Y-%m-%dT%H-%M-%S")
    f.write(home / "sessions/2025/10/31" / f"rollout-{stamp}-{FORK}.jsonl")

    # a fork whose parent we do not have: its replay is the burst before the first pause
    o = _Session(ORPHAN, datetime(2025, 11, 1, 23, 59, 58, tzinfo=UTC), forked_from_id=GONE)
    o.context("gpt-5.1-codex")
    for inp in (8_000, 9_000, 10_000):
        o.at(milliseconds=400)
        o.turn(inp, inp // 2, 100, 30)
    o.at(seconds=6)  # over midnight
    o.turn(11_000, 10_000, 250, 70)
    o.at(milliseconds=500)  # close to the one before, but after the pause: its own
    o.turn(1_000, 0, 50, 0)
    o.write(home / "sessions/2025/11/01" / f"rollout-2025-11-01T23-59-58-{ORPHAN}.jsonl")

    # a subagent of the parent: its first events differ from the parent's and are far apart
    sub = {"subagent": {"thread_spawn": {"parent_thread_id": PARENT}}}
    s = _Session(SUB, day + timedelta(minutes=7), source=sub)
    s.context("gpt-5-mini")
    for inp in (3_000, 3_500):
        s.at(seconds=30)
        s.turn(inp, 1_000, 400, 200)
    s.write(home / "archived_sessions" / f"rollout-2025-10-31T21-07-00-{SUB}.jsonl")


def _ccusage(binary: Path, report: str, env: dict[str, str]) -> Any:
    proc = subprocess.run(
        [str(binary), "codex", report, "--json", "--offline", "--timezone", "UTC"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    return json.loads(proc.stdout)


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CODEX_", "SPECWRIGHT_"))}
    # no config.toml in CODEX_HOME: ccusage prices every event at the standard tier
    env |= {"CODEX_HOME": str(tmp / "codex"), "HOME": str(tmp)}
    env["SPECWRIGHT_DB"] = str(tmp / "db" / "specwright.duckdb")
    return env


def _ours(report: str, env: dict[str, str]) -> Any:
    proc = run_specwright("usage", report, "--source", "codex", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _reasoning(env: dict[str, str], key: str) -> dict[tuple[str, str], int]:
    """Our stored reasoning tokens by (``key`` of a record, model)."""
    with duckdb.connect(env["SPECWRIGHT_DB"], read_only=True) as conn:
        rows = conn.execute(
            f"SELECT {key}, model, sum(reasoning_tokens)::BIGINT FROM usage_records "
            "WHERE source = 'codex' GROUP BY ALL"
        ).fetchall()
    return {(str(k), str(m)): int(n) for k, m, n in rows}


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """(ours, ccusage's) JSON of daily, monthly and session on one corpus, and our reasoning."""
    binary = _binary()
    tmp = tmp_path_factory.mktemp("codex-parity")
    info = write_codex_corpus(tmp / "codex", sessions=9, turns=14, days=3, seed=7)
    _write_edge_cases(tmp / "codex")
    env = _env(tmp)
    ing = run_specwright("ingest", "codex-logs", "--json", env=env)
    assert ing.returncode == 0, ing.stderr
    assert json.loads(ing.stdout)["malformed"] == info.malformed > 0
    out: dict[str, Any] = {
        r: (_ours(r, env), _ccusage(binary, r, env)) for r in (*REPORTS, "session")
    }
    out["reasoning"] = {
        "daily": _reasoning(env, "strftime(ts, '%Y-%m-%d')"),
        "monthly": _reasoning(env, "strftime(ts, '%Y-%m')"),
        "session": _reasoning(env, "session_id"),
    }
    return out


def _same(a: dict[str, Any], b: dict[str, Any], what: object) -> None:
    """Our row ``a`` and ccusage's ``b``: tokens, cost, and model by model."""
    assert {k: a[k] for k in KEYS} == {k: b[k] for k in KEYS}, what
    assert a["cacheCreationTokens"] == b["cacheCreationTokens"] == 0, what
    assert math.isclose(a["totalCost"], b["costUSD"], rel_tol=1e-6), what
    ours = {m["modelName"]: m for m in a["modelBreakdowns"]}
    assert sorted(ours) == sorted(b["models"]) == sorted(a["modelsUsed"]), what
    for name, m in ours.items():
        theirs = b["models"][name]
        assert {k: m[k] for k in KEYS[:3]} == {k: theirs[k] for k in KEYS[:3]}, (what, name)


def _same_reasoning(mine: dict[tuple[str, str], int], key: str, b: dict[str, Any]) -> None:
    assert b["reasoningOutputTokens"] == sum(
        b["models"][m]["reasoningOutputTokens"] for m in b["models"]
    )
    for name, m in b["models"].items():
        assert mine.get((key, name), 0) == m["reasoningOutputTokens"], (key, name)


@pytest.mark.parametrize("report", list(REPORTS))
def test_daily_and_monthly_json_equal_ccusage_codex_period_by_period_and_model_by_model(
    reports: dict[str, Any], report: str
) -> None:
    rows, key = REPORTS[report]
    ours, theirs = reports[report]
    assert [r[key] for r in ours[rows]] == [r[key] for r in theirs[rows]]
    assert len(ours[rows]) >= (4 if report == "daily" else 2)
    for a, b in zip(ours[rows], theirs[rows], strict=True):
        _same(a, b, a[key])
        _same_reasoning(reports["reasoning"][report], a[key], b)
    assert {k: ours["totals"][k] for k in KEYS} == {k: theirs["totals"][k] for k in KEYS}
    assert math.isclose(ours["totals"]["totalCost"], theirs["totals"]["costUSD"], rel_tol=1e-6)
    if report == "daily":  # the edge cases are in: the fallback, an event's model, a fork
        models = {m for r in ours[rows] for m in r["modelsUsed"]}
        assert {"gpt-5", "gpt-5-mini", "gpt-5-pro", "gpt-5.1-codex"} <= models


def test_session_json_equals_ccusage_codex_session_by_session(reports: dict[str, Any]) -> None:
    """ccusage names a session by its file (``2025/10/31/rollout-...-<id>``), we by the id the
    file starts with, which ends its name: one file, one session, forks included."""
    ours, theirs = reports["session"]
    b = {s["sessionId"][-36:]: s for s in theirs["sessions"]}
    a = {s["sessionId"]: s for s in ours["sessions"]}
    assert sorted(a) == sorted(b)
    assert {PARENT, FORK, ORPHAN, SUB} <= set(a)
    for sid, row in a.items():
        _same(row, b[sid], sid)
        _same_reasoning(reports["reasoning"]["session"], sid, b[sid])
        when = datetime.fromisoformat(b[sid]["lastActivity"].replace("Z", "+00:00"))
        assert datetime.fromisoformat(row["lastActivity"].replace("Z", "+00:00")) == when, sid
    # the fork counts only its own two turns; the orphan its last two
    assert a[FORK]["inputTokens"] == (30_000 - 25_000) + (2_000 - 1_500)
    assert a[ORPHAN]["inputTokens"] == (11_000 - 10_000) + 1_000
    assert {k: ours["totals"][k] for k in KEYS} == {k: theirs["totals"][k] for k in KEYS}


def test_ingests_of_a_growing_log_equal_ccusage_after_each(tmp_path: Path) -> None:
    """What an ingest carries to the next (the model named last, even by an event; the last
    totals) and a fork whose parent an earlier ingest stored give the same figures as ccusage
    reading the whole files each time."""
    binary = _binary()
    staged = tmp_path / "staged"
    _write_edge_cases(staged)
    env = _env(tmp_path)
    home = Path(env["CODEX_HOME"])
    rel = next(p for p in staged.rglob(f"*{PARENT}.jsonl")).relative_to(staged)
    lines = (staged / rel).read_text(encoding="utf-8").splitlines(keepends=True)
    events = [i for i, x in enumerate(lines) if '"token_count"' in x]
    named = next(i for i in events if '"model":"gpt-5-mini"' in lines[i])
    totals_only = next(i for i in events if '"last_token_usage"' not in lines[i])
    (home / rel).parent.mkdir(parents=True)
    for cut in (named + 1, totals_only, len(lines)):  # the tail opens on a model-less event,
        (home / rel).write_text("".join(lines[:cut]), encoding="utf-8")  # then on totals only
        if cut == len(lines):
            for path in staged.rglob("*.jsonl"):
                (home / path.relative_to(staged)).parent.mkdir(parents=True, exist_ok=True)
                (home / path.relative_to(staged)).write_bytes(path.read_bytes())
        assert run_specwright("ingest", "codex-logs", env=env).returncode == 0
        for report in ("daily", "session"):
            ours, theirs = _ours(report, env), _ccusage(binary, report, env)
            rows = "sessions" if report == "session" else "daily"
            assert len(ours[rows]) == len(theirs[rows]), (cut, report)
            if report == "daily":
                for a, b in zip(ours[rows], theirs[rows], strict=True):
                    _same(a, b, (cut, a["date"]))
            else:
                b = {s["sessionId"][-36:]: s for s in theirs[rows]}
                for a in ours[rows]:
                    _same(a, b[a["sessionId"]], (cut, a["sessionId"]))
    assert {s["sessionId"] for s in ours["sessions"]} == {PARENT, FORK, ORPHAN, SUB}


def test_a_model_ccusage_prices_otherwise_has_equal_tokens_and_our_librarys_cost(
    tmp_path: Path,
) -> None:
    """ccusage 20.0.24's offline table prices o3 and o4-mini below OpenAI's list price and
    codex-mini-latest at 0: the tokens still agree, the cost is genai-prices' (see README)."""
    from specwright.pricing import rates_for

    binary = _binary()
    env = _env(tmp_path)
    models = {f"0f00000{k}-0000-4000-8000-000000000000": m for k, m in enumerate(_OTHERWISE)}
    for k, (sid, model) in enumerate(models.items()):
        s = _Session(sid, datetime(2025, 11, 3, 10 + k, tzinfo=UTC))
        s.context(model)
        s.at(minutes=1)
        s.turn(40_000, 30_000, 2_000, 1_500)
        name = f"rollout-2025-11-03T{10 + k}-00-00-{sid}.jsonl"
        s.write(Path(env["CODEX_HOME"]) / "sessions/2025/11/03" / name)
    assert run_specwright("ingest", "codex-logs", env=env).returncode == 0
    theirs = {s["sessionId"][-36:]: s for s in _ccusage(binary, "session", env)["sessions"]}
    ours = {s["sessionId"]: s for s in _ours("session", env)["sessions"]}
    assert sorted(ours) == sorted(theirs) == sorted(models)
    for sid, model in models.items():
        a, b = ours[sid], theirs[sid]
        assert {k: a[k] for k in KEYS} == {k: b[k] for k in KEYS}, model
        rates = rates_for(model, "openai")
        assert rates is not None, model
        cost = rates.cost(a["inputTokens"], a["outputTokens"], a["cacheReadTokens"])
        assert math.isclose(a["totalCost"], cost, rel_tol=1e-9), model
        assert not math.isclose(a["totalCost"], b["costUSD"], rel_tol=0.05), model
