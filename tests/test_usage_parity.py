"""`specwright usage monthly|session|blocks --json` against the real ccusage, figure by figure.

One corpus for all three: the generated one of the daily parity test (several models, cache
tokens, streaming copies, sidechains, malformed lines) plus edge cases written here: a session
crossing midnight and a month end, messages 1 ms before, on and after a block's end, a gap of more
than five hours and one of exactly five, a block with one message, a sidechain-only session, two
projects, a session whose lines sit in two files, a ``<synthetic>`` message, and an active block
(messages 100 and 40 minutes ago: ccusage's "active" and its projection depend on the clock).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_specwright
from tests.support_usage import ccusage_path, write_claude_corpus

KEYS = ("inputTokens", "outputTokens", "cacheCreationTokens", "cacheReadTokens", "totalTokens")
ALPHA, BETA = "-home-dev-alpha", "-home-dev-beta"
S1, S2, S3 = (f"{d * 8}-{d * 4}-4{d * 3}-8{d * 3}-{d * 12}" for d in "123")
S4 = "44444444-4444-4444-8444-444444444444"
S5 = "55555555-5555-4555-8555-555555555555"


def _line(session: str, cwd: str, ts: str, n: str, model: str, out: int, side: bool) -> str:
    usage = {"input_tokens": 100, "output_tokens": out, "cache_creation_input_tokens": 1000}
    usage |= {
        "cache_read_input_tokens": 5000,
        "cache_creation": {"ephemeral_5m_input_tokens": 1000},
    }
    if model == "<synthetic>":
        usage = {"input_tokens": 0, "output_tokens": 0}
    line = {"type": "assistant", "isSidechain": side, "cwd": cwd, "sessionId": session}
    line |= {"version": "2.0.50", "timestamp": ts, "requestId": f"req_{n}", "uuid": f"u_{n}"}
    line["message"] = {"id": f"msg_{n}", "model": model, "role": "assistant", "usage": usage}
    return json.dumps(line, separators=(",", ":"))


def _write_edge_cases(root: Path, now: datetime) -> None:
    sonnet, opus = "claude-sonnet-4-5-20250929", "claude-opus-4-5-20251101"
    haiku = "claude-haiku-4-5-20251001"
    recent = [(now - timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%S.000Z") for m in (100, 40)]
    rows = [  # (file under projects/, session, time, model, sidechain)
        *[
            (f"{ALPHA}/{S1}.jsonl", S1, ts, model, False)
            for ts, model in [
                ("2025-01-31T22:10:00.000Z", sonnet),  # block 22:00-03:00, over midnight
                ("2025-01-31T23:59:59.999Z", opus),  # and the month end
                ("2025-02-01T00:00:00.000Z", haiku),
                ("2025-02-01T02:59:59.999Z", sonnet),
                ("2025-02-01T03:00:00.000Z", sonnet),  # on the block's end: still in it
                ("2025-02-01T07:59:59.000Z", opus),  # a new block from 07:00
                ("2025-02-01T08:00:00.000Z", opus),
                ("2025-02-01T14:30:00.000Z", sonnet),  # after a gap > 5 h: one message
                ("2025-02-01T19:30:00.000Z", sonnet),  # exactly 5 h later: no gap row
            ]
        ],
        (f"{BETA}/{S2}/subagents/agent-x.jsonl", S2, "2025-02-28T23:30:00.000Z", haiku, True),
        (f"{BETA}/{S2}/subagents/agent-x.jsonl", S2, "2025-03-01T00:15:00.000Z", haiku, True),
        (f"{BETA}/{S3}.jsonl", S3, "2025-02-28T21:00:00.000Z", sonnet, False),
        (f"{BETA}/{S3}.jsonl", S3, "2025-02-28T21:05:00.000Z", "<synthetic>", False),
        (f"{BETA}/{S4}.jsonl", S3, "2025-03-01T01:00:00.000Z", sonnet, False),  # resumed: S3
        *[(f"{ALPHA}/{S4}.jsonl", S4, ts, opus, False) for ts in recent],
    ]
    for n, (rel, session, ts, model, side) in enumerate(rows):
        path = root / "projects" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        cwd = "/home/dev/" + rel.split("/")[0].rsplit("-", 1)[1]
        with path.open("a", encoding="utf-8") as fh:
            fh.write(_line(session, cwd, ts, f"e{n}", model, 50 + n, side) + "\n")


def _align_sidechain_replays(root: Path) -> None:
    """Give each sidechain replay of a parent message (same message id, new request id) the time
    of the parent's kept copy. Both tools then drop it; ccusage's monthly, session and blocks
    keep a replay with another time (its daily drops it, like us: see README)."""
    files = sorted((root / "projects").rglob("*.jsonl"))
    kept: dict[str, tuple[int, str]] = {}
    for f in files:
        for raw in f.read_text(encoding="utf-8").splitlines():
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if obj.get("type") == "assistant" and not obj.get("isSidechain"):
                u = obj["message"]["usage"]
                total = sum(u.get(k, 0) for k in ("input_tokens", "output_tokens"))
                total += u.get("cache_creation_input_tokens", 0) + u.get(
                    "cache_read_input_tokens", 0
                )
                if total > kept.get(obj["message"]["id"], (-1, ""))[0]:
                    kept[obj["message"]["id"]] = (total, obj["timestamp"])
    for f in files:
        lines = f.read_text(encoding="utf-8").splitlines()
        for i, raw in enumerate(lines):
            if '"isSidechain":true' not in raw:
                continue
            obj = json.loads(raw)
            if obj.get("type") == "assistant" and obj["message"]["id"] in kept:
                obj["timestamp"] = kept[obj["message"]["id"]][1]
                lines[i] = json.dumps(obj, separators=(",", ":"))
        f.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_stream(root: Path) -> None:
    """A message every 3 h 50 min for four days (no 5-hour gap): each block's start follows from
    the first message, days before a window that starts mid-stream."""
    start = datetime(2025, 4, 1, 0, 20, tzinfo=UTC)
    path = root / "projects" / ALPHA / f"{S5}.jsonl"
    with path.open("a", encoding="utf-8") as fh:
        for i in range(26):
            ts = (start + timedelta(minutes=230 * i)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            fh.write(
                _line(S5, "/home/dev/alpha", ts, f"s{i}", "claude-sonnet-4-5-20250929", 7, False)
            )
            fh.write("\n")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """One corpus, ingested: ccusage's path and the environment both tools run in."""
    binary = ccusage_path()
    if binary is None:
        pytest.skip(
            "ccusage not installed: set CCUSAGE_PATH or install ccusage@20.0.24 into "
            ".agents/node_modules (npm install --prefix .agents ccusage@20.0.24)"
        )
    tmp = tmp_path_factory.mktemp("parity")
    config_dir = tmp / "claude"
    write_claude_corpus(config_dir, sessions=6, turns=30, days=3, seed=11)
    _align_sidechain_replays(config_dir)
    _write_edge_cases(config_dir, datetime.now(UTC))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDE_", "SPECWRIGHT_"))}
    env |= {"CLAUDE_CONFIG_DIR": str(config_dir), "HOME": str(tmp)}
    env["SPECWRIGHT_DB"] = str(tmp / "db" / "specwright.duckdb")
    _write_stream(config_dir)
    assert run_specwright("ingest", "claude-logs", env=env).returncode == 0
    return binary, env


def _both(binary: Path, env: dict[str, str], report: str, *args: str) -> tuple[Any, Any]:
    ours = run_specwright("usage", report, "--json", *args, env=env)
    assert ours.returncode == 0, ours.stderr
    theirs = subprocess.run(
        [str(binary), "claude", report, "--json", "--offline", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    return json.loads(ours.stdout), json.loads(theirs.stdout)


@pytest.fixture(scope="module")
def reports(corpus: tuple[Path, dict[str, str]]) -> dict[str, tuple[Any, Any]]:
    """(ours, ccusage's) JSON of monthly, session and blocks on one corpus."""
    binary, env = corpus
    out = {}
    for report in ("monthly", "session", "blocks"):
        out[report] = _both(binary, env, report, "--timezone", "UTC")
    return out


def _same_figures(a: dict[str, Any], b: dict[str, Any], what: object) -> None:
    assert {k: a[k] for k in KEYS} == {k: b[k] for k in KEYS}, what
    assert math.isclose(a["totalCost"], b["totalCost"], rel_tol=1e-6), what


def _same_breakdowns(a: dict[str, Any], b: dict[str, Any], what: object) -> None:
    assert set(a["modelsUsed"]) == set(b["modelsUsed"]), what  # ccusage: in order of appearance
    ma = {m["modelName"]: m for m in a["modelBreakdowns"]}
    mb = {m["modelName"]: m for m in b["modelBreakdowns"]}
    assert sorted(ma) == sorted(mb), what
    for name in ma:
        assert {k: ma[name][k] for k in KEYS[:4]} == {k: mb[name][k] for k in KEYS[:4]}, name
        assert math.isclose(ma[name]["cost"], mb[name]["cost"], rel_tol=1e-6), (what, name)


def test_monthly_json_equals_ccusage_month_by_month(reports: dict[str, Any]) -> None:
    ours, theirs = reports["monthly"]
    assert [m["month"] for m in ours["monthly"]] == [m["month"] for m in theirs["monthly"]]
    assert len(ours["monthly"]) >= 4  # Jan, Feb, Mar 2025, Nov 2025, this month
    for a, b in zip(ours["monthly"], theirs["monthly"], strict=True):
        _same_figures(a, b, a["month"])
        _same_breakdowns(a, b, a["month"])
    _same_figures(ours["totals"], theirs["totals"], "totals")


def test_session_json_equals_ccusage_session_by_session(reports: dict[str, Any]) -> None:
    ours, theirs = reports["session"]
    key = lambda s: (s["sessionId"], s["projectPath"])  # noqa: E731
    a, b = {key(s): s for s in ours["sessions"]}, {key(s): s for s in theirs["sessions"]}
    assert set(a) == set(b)
    # a session is a log file: the resumed one is two, the sidechain-only one is there
    assert {(S3, BETA), (S4, BETA), (S4, ALPHA), (S2, BETA), (S1, ALPHA)} <= set(a)
    for k in a:
        _same_figures(a[k], b[k], k)
        _same_breakdowns(a[k], b[k], k)
        for field in ("firstActivity", "lastActivity"):
            assert a[k][field] == b[k][field], (k, field)
    # the same order, most expensive first (ties may fall either way)
    assert [round(s["totalCost"], 9) for s in ours["sessions"]] == [
        round(s["totalCost"], 9) for s in theirs["sessions"]
    ]
    _same_figures(ours["totals"], theirs["totals"], "totals")


def test_blocks_json_equals_ccusage_block_by_block(reports: dict[str, Any]) -> None:
    ours, theirs = reports["blocks"]
    assert [b["id"] for b in ours["blocks"]] == [b["id"] for b in theirs["blocks"]]
    assert sum(b["isGap"] for b in ours["blocks"]) >= 3
    assert sum(b["entries"] == 1 for b in ours["blocks"]) >= 2
    fields = ("startTime", "endTime", "actualEndTime", "isGap", "entries", "tokenCounts")
    for a, b in zip(ours["blocks"], theirs["blocks"], strict=True):
        assert {f: a[f] for f in fields} == {f: b[f] for f in fields}, a["id"]
        assert a["totalTokens"] == b["totalTokens"], a["id"]
        assert math.isclose(a["costUSD"], b["costUSD"], rel_tol=1e-6, abs_tol=1e-12), a["id"]
        assert set(a["models"]) == set(b["models"]), a["id"]
        # "active" depends on the clock; the corpus keeps every block far from the edge
        assert a["isActive"] == b["isActive"], a["id"]
        assert (a["burnRate"] is None) == (b["burnRate"] is None), a["id"]
        if a["burnRate"] is not None:
            for k, v in a["burnRate"].items():
                assert math.isclose(v, b["burnRate"][k], rel_tol=1e-6), (a["id"], k)
            # the projection runs to the block's end from now: the two ran seconds apart
            pa, pb = a["projection"], b["projection"]
            assert abs(pa["remainingMinutes"] - pb["remainingMinutes"]) <= 1
            per_minute = a["burnRate"]["tokensPerMinute"]
            assert abs(pa["totalTokens"] - pb["totalTokens"]) <= per_minute + 1
            assert (
                abs(pa["totalCost"] - pb["totalCost"]) <= a["burnRate"]["costPerHour"] / 60 + 0.01
            )
    assert [b["isActive"] for b in ours["blocks"]].count(True) == 1


_ROWS = {"daily": ("daily", "date"), "weekly": ("weekly", "week"), "monthly": ("monthly", "month")}
_ROWS |= {"session": ("sessions", "sessionId"), "blocks": ("blocks", "id")}
_BLOCK_FIELDS = ("id", "startTime", "endTime", "actualEndTime", "isGap", "entries")
_BLOCK_FIELDS += ("tokenCounts", "totalTokens")


@pytest.mark.parametrize("tz", ["Asia/Kolkata", "America/Los_Angeles", "Pacific/Chatham"])
@pytest.mark.parametrize(
    "window",
    [
        ("--since", "20250201", "--until", "20250228"),
        ("--until", "20250201"),
        ("--since", "20250403"),
    ],
)
def test_a_time_zone_and_a_window_select_what_ccusage_selects(
    corpus: tuple[Path, dict[str, str]], tz: str, window: tuple[str, ...]
) -> None:
    """The window's days are days in the time zone for every report, as in ccusage; ``blocks``
    keeps the blocks that start on them, each whole and in the phase of the messages before it
    (a naive walk from the window's first message shifted them), ``session`` the messages of
    those days."""
    binary, env = corpus
    for report, (key, name) in _ROWS.items():
        ours, theirs = _both(binary, env, report, "--timezone", tz, *window)
        a, b = ours[key], theirs[key]
        if report == "session":
            a, b = (sorted(r, key=lambda s: (s["sessionId"], s["projectPath"])) for r in (a, b))
        assert [r[name] for r in a] == [r[name] for r in b], report
        for x, y in zip(a, b, strict=True):
            if report == "blocks":
                assert {f: x[f] for f in _BLOCK_FIELDS} == {f: y[f] for f in _BLOCK_FIELDS}
            else:
                _same_figures(x, y, (report, x[name]))
    assert len(ours["blocks"]) >= 2


@pytest.mark.parametrize("start", ["monday", "thursday", "saturday"])
def test_weeks_start_on_the_day_ccusage_starts_them(
    corpus: tuple[Path, dict[str, str]], start: str
) -> None:
    """Sunday by default (every window test above), or the day ``-w`` names."""
    binary, env = corpus
    ours, theirs = _both(binary, env, "weekly", "-w", start, "--timezone", "Asia/Kolkata")
    assert [w["week"] for w in ours["weekly"]] == [w["week"] for w in theirs["weekly"]]
    assert len(ours["weekly"]) >= 4
    for a, b in zip(ours["weekly"], theirs["weekly"], strict=True):
        _same_figures(a, b, a["week"])
        _same_breakdowns(a, b, a["week"])


def test_without_a_time_zone_both_take_the_machines(corpus: tuple[Path, dict[str, str]]) -> None:
    """ccusage's days are this machine's by default ($TZ here); so are ours."""
    binary, env = corpus
    for zone in ("America/New_York", ":Asia/Tokyo"):
        local = {**env, "TZ": zone}
        for report, (key, name) in _ROWS.items():
            if report in ("session", "blocks"):
                continue
            ours, theirs = _both(binary, local, report)
            assert [r[name] for r in ours[key]] == [r[name] for r in theirs[key]], (zone, report)
            for a, b in zip(ours[key], theirs[key], strict=True):
                _same_figures(a, b, (zone, report, a[name]))
        days = _both(binary, local, "daily")[0]["daily"]
        utc = _both(binary, env, "daily", "--timezone", "UTC")[0]["daily"]
        assert [d["date"] for d in days] != [d["date"] for d in utc]  # the zone mattered


def test_the_machines_time_zone_is_read_as_ccusage_reads_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from specwright.cli import usage
    from specwright.cli.usage import local_timezone

    monkeypatch.setattr(usage, "_warned_tz", set())  # each bad value is warned about once

    etc = tmp_path / "etc"
    etc.mkdir()
    link = etc / "localtime"
    link.symlink_to("/usr/share/zoneinfo/Europe/Berlin")  # read as a name: need not exist
    assert local_timezone({}, str(link)) == "Europe/Berlin"
    assert local_timezone({"TZ": "Asia/Tokyo"}, str(link)) == "Asia/Tokyo"
    assert local_timezone({"TZ": ":America/New_York"}, str(link)) == "America/New_York"
    assert local_timezone({"TZ": "/usr/share/zoneinfo/Asia/Kolkata"}, str(link)) == "Asia/Kolkata"
    # a TZ no zone database here knows (a POSIX rule too) falls back, and says so
    for tz in ("Nowhere/Land", "../../etc/passwd", "<+03>-3"):
        caplog.clear()
        assert local_timezone({"TZ": tz}, str(link)) == "Europe/Berlin"
        assert [r.getMessage() for r in caplog.records] == [
            f"TZ={tz!r} is not a time zone this machine knows (expected an IANA name such as "
            "Europe/Paris); counting days in Europe/Berlin (--timezone picks one)"
        ]
    caplog.clear()
    assert local_timezone({"TZ": "Asia/Tokyo"}, str(link)) == "Asia/Tokyo" and not caplog.records
    link.unlink()
    link.symlink_to("/usr/share/zoneinfo/Etc/UTC")
    assert local_timezone({}, str(link)) == "UTC"
    link.unlink()
    (etc / "timezone").write_text("Australia/Adelaide\n")
    assert local_timezone({}, str(link)) == "Australia/Adelaide"  # Debian's file
    (etc / "timezone").write_text("garbage\n")
    assert local_timezone({}, str(link)) == "UTC"
