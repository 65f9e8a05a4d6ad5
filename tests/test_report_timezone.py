"""Days in a time zone everywhere: the queries, the HTML dashboard, its command and the usage
widgets count the same local days as `specwright usage daily -z ZONE`.

The execution of these tests starts at 2025-03-10 02:30 UTC: 22:30 on 2025-03-09 in New York
(EDT, UTC-4 since that morning), so its UTC day and its New York day differ.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from specwright import catalog
from specwright import queries as Q
from specwright.errors import ValidationError
from specwright.model import new_id
from specwright.store import Store
from tests.support_usage import write_claude_corpus

NY = "America/New_York"
AT = datetime(2025, 3, 10, 2, 30)  # naive UTC, as the store keeps it


def _seed(store: Store, root: Path) -> str:
    """A shipped chunk whose one execution (at ``AT``, 1.5 s, $0.5) made a tool call answered
    a second later, with codexbar readings before and after it."""
    from specwright.migrations import BACKFILL_TOOL_RESULTS

    spec = catalog.create_spec(store, catalog.ensure_project(store, root), "Zones")
    chunk = catalog.add_chunk(store, spec, "c1")
    catalog.update_chunk(store, chunk.id, status="shipped", iterations=1)
    exec_id = new_id()
    store.insert("executions", {
        "id": exec_id, "spec_id": spec.id, "chunk_id": chunk.id, "role": "executor",
        "backend": "scripted", "executor": "ex", "model": "m1", "status": "ok",
        "started_at": AT, "duration_ms": 1500, "input_tokens": 10, "output_tokens": 5,
        "cost_usd": 0.5,
    })  # fmt: skip
    _tool_call(store, exec_id, "k", AT, AT + timedelta(seconds=1))
    for phase, used in (("before", 10.0), ("after", 12.5)):
        payload = {"usage": {"primary": {"usedPercent": used, "windowMinutes": 300,
                                         "resetsAt": "2025-03-10T05:00:00Z"}}}  # fmt: skip
        store.insert("usage_snapshots", {
            "id": new_id(), "taken_at": AT, "source": "codexbar", "provider": "codex",
            "execution_id": exec_id, "payload": json.dumps(payload), "kind": "usage",
            "phase": phase,
        })  # fmt: skip
    with store.transaction() as conn:  # rows written by hand: marked as migration 10 does
        conn.execute(BACKFILL_TOOL_RESULTS)
    return exec_id


def _tool_call(
    store: Store, exec_id: str, call: str, at: datetime, answered: datetime, seq: int = 0
) -> None:
    """A Bash call at ``at`` (event ``seq``) and its result at ``answered`` (``seq + 1``)."""
    for n, (kind, ts) in enumerate((("tool_call", at), ("tool_result", answered)), seq):
        store.insert("events", {
            "id": new_id(), "execution_id": exec_id, "seq": n, "ts": ts, "type": kind,
            "tool_name": "Bash", "call_id": call,
        })  # fmt: skip


def _days(periods: Any) -> list[str]:
    return [d.strftime("%Y-%m-%d") for d in periods]


def test_an_execution_counts_on_its_day_in_the_zone(store: Store, tmp_path: Path) -> None:
    _seed(store, tmp_path)
    utc = Q.executions_by_period(store, "day")
    assert _days(utc["period"]) == ["2025-03-10"]
    ny = Q.executions_by_period(store, "day", tz=NY)
    assert _days(ny["period"]) == ["2025-03-09"]
    assert ny["executions"].tolist() == [1] and ny["cost_usd"].tolist() == [0.5]
    assert Q.executions_by_period(store, "day", since="2025-03-10", tz=NY).empty
    assert len(Q.executions_by_period(store, "day", since="2025-03-10")) == 1
    march = Q.executions_by_period(store, "month", until="2025-03-09", tz=NY)
    assert _days(march["period"]) == ["2025-03-01"]


WINDOWED = {
    "executions_by_period": lambda s, **w: Q.executions_by_period(s, "day", **w),
    "cost_by": lambda s, **w: Q.cost_by(s, "spec", **w),
    "cost_per_shipped_chunk": Q.cost_per_shipped_chunk,
    "iterations_to_ship": Q.iterations_to_ship,
    "tool_calls": Q.tool_calls,
    "latency": lambda s, **w: Q.latency(s, "role", **w),
    "cost_sources": Q.cost_sources,
    "quota_per_execution": Q.quota_per_execution,
}


@pytest.mark.parametrize("name", sorted(WINDOWED))
def test_since_and_until_are_days_in_the_zone(store: Store, tmp_path: Path, name: str) -> None:
    query: Any = WINDOWED[name]
    _seed(store, tmp_path)
    assert len(query(store)) == 1
    assert query(store, since="2025-03-10", tz=NY).empty  # 22:30 on the 9th in New York
    assert len(query(store, until="2025-03-09", tz=NY)) == 1
    assert len(query(store, since="2025-03-10")) == 1  # the default is still UTC
    assert query(store, until="2025-03-09").empty
    with pytest.raises(ValidationError, match="--timezone: unknown time zone 'Mars/Olympus'"):
        query(store, since="2025-03-10", tz="Mars/Olympus")


def test_usage_timestamps_window_days_in_the_zone(store: Store) -> None:
    from specwright import blocks

    store.insert("usage_records", {
        "id": new_id(), "source": "claude-code", "dedup_key": "m1:r1", "ts": AT,
        "input_tokens": 10, "output_tokens": 5,
    })  # fmt: skip
    assert list(blocks.usage_timestamps(store, since="2025-03-10")["ts"]) == [AT]
    assert blocks.usage_timestamps(store, since="2025-03-10", tz=NY).empty
    assert len(blocks.usage_timestamps(store, until="2025-03-09", tz=NY)) == 1


def test_a_tool_result_counts_when_its_call_is_in_the_local_window(
    store: Store, tmp_path: Path
) -> None:
    """A call at 23:59 on the 9th in New York answered at 00:01 on the 10th is outside a window
    from the 10th, like its result; the next call, inside, counts with its result."""
    exec_id = _seed(store, tmp_path)
    late = datetime(2025, 3, 10, 3, 59)  # 23:59 in New York
    _tool_call(store, exec_id, "late", late, late + timedelta(minutes=2), seq=2)
    inside = datetime(2025, 3, 10, 6, 0)  # 02:00 on the 10th in New York
    _tool_call(store, exec_id, "inside", inside, inside + timedelta(seconds=3), seq=4)
    from specwright.migrations import BACKFILL_TOOL_RESULTS

    with store.transaction() as conn:
        conn.execute(BACKFILL_TOOL_RESULTS)
    (row,) = Q.tool_calls(store, since="2025-03-10", tz=NY).to_dict("records")
    assert (row["calls"], row["no_result"], row["p50_ms"]) == (1, 0, 3000.0)
    (day9,) = Q.tool_calls(store, until="2025-03-09", tz=NY).to_dict("records")
    # both calls of the 9th; the late one's result came on the 10th: outside
    assert (day9["calls"], day9["no_result"], day9["p50_ms"]) == (2, 1, 1000.0)


def _corpus(tmp_path: Path, cli: Any, db: Path) -> None:
    """Two generated Claude Code sessions from about 03:55 to 05:30 UTC on 2025-03-10: one UTC
    day, but across midnight in New York (04:00 UTC), ingested into ``db``."""
    root = tmp_path / "claude"
    start = datetime(2025, 3, 10, 0, 0, tzinfo=UTC)
    write_claude_corpus(root, sessions=2, turns=12, days=0.25, start=start, malformed_every=0)
    assert cli("--db", str(db), "ingest", "claude-logs", str(root / "projects")).code == 0


def _dashboard_days(store: Store, tz: str) -> dict[str, tuple[int, float]]:
    """The dashboard's daily bars as {day: (tokens, cost)}."""
    from specwright.report import figures

    figs = figures(store, tz=tz)
    days: dict[str, list[float]] = {}
    for trace in figs["tokens_by_day"].data:
        for day, n in zip(trace.x, trace.y, strict=True):
            days.setdefault(str(day), [0, 0.0])[0] += n
    for trace in figs["cost_by_day"].data:
        for day, cost in zip(trace.x, trace.y, strict=True):
            days[str(day)][1] += cost
    return {day: (int(n), round(c, 9)) for day, (n, c) in days.items()}


def test_dashboard_daily_totals_equal_usage_daily_in_the_zone(
    store: Store, tmp_path: Path, cli: Any
) -> None:
    _corpus(tmp_path, cli, store.path)
    per_zone = {}
    for tz in (NY, "UTC"):
        res = cli("--db", str(store.path), "usage", "daily", "--json", "-z", tz)
        assert res.code == 0, res.err
        daily = {
            r["date"]: (r["totalTokens"], round(r["totalCost"], 9))
            for r in json.loads(res.out)["daily"]
        }
        assert _dashboard_days(store, tz) == daily, tz
        per_zone[tz] = daily
    assert sorted(per_zone[NY]) == ["2025-03-09", "2025-03-10"]  # across New York's midnight
    assert sorted(per_zone["UTC"]) == ["2025-03-10"]
    html = tmp_path / "ny.html"
    assert cli("--db", str(store.path), "report", "--html", str(html), "-z", NY).code == 0
    text = html.read_text(encoding="utf-8")
    assert all(f'"{day}"' in text for day in per_zone[NY])


def test_html_report_shows_the_days_and_times_of_its_zone(
    store: Store, tmp_path: Path, cli: Any
) -> None:
    _seed(store, tmp_path)
    _corpus(tmp_path, cli, store.path)
    ny, utc = tmp_path / "ny.html", tmp_path / "utc.html"
    since = ["--since", "2025-03-09", "--until", "2025-03-09"]
    res = cli("--db", str(store.path), "report", "--html", str(ny), *since, "-z", NY)
    assert res.code == 0, res.err
    assert cli("--db", str(store.path), "report", "--html", str(utc), *since, "-z", "UTC").code == 0
    ny_text, utc_text = ny.read_text(encoding="utf-8"), utc.read_text(encoding="utf-8")
    assert "days in America/New_York from 2025-03-09 to 2025-03-09" in ny_text
    assert "UTC days" not in ny_text and "days in UTC from 2025-03-09" in utc_text
    # the execution (22:30 on the 9th in New York) is in New York's 9th, not in UTC's
    assert "2025-03-09 22:30:00" in ny_text and "2025-03-10 02:30:00" not in ny_text
    assert "2025-03-10 02:30:00" not in utc_text and "2025-03-09 22:30:00" not in utc_text
    assert "started_at (America/New_York)" in ny_text


def test_dashboard_blocks_are_drawn_in_the_zone(store: Store, tmp_path: Path, cli: Any) -> None:
    from specwright import blocks
    from specwright.report import figures

    _corpus(tmp_path, cli, store.path)
    first = blocks.billing_blocks(store)["block_start"].iloc[0]
    fig = figures(store, tz=NY)["blocks"]
    assert fig.layout.xaxis.title.text == "Block start (America/New_York)"
    local = first.tz_localize("UTC").tz_convert(NY).tz_localize(None)
    assert fig.data[0].x[0] == local.to_pydatetime()


def test_the_active_blocks_projection_is_timed_in_the_zone(
    store: Store, tmp_path: Path, cli: Any
) -> None:
    from zoneinfo import ZoneInfo

    from specwright import blocks
    from specwright.model import utcnow

    root = tmp_path / "claude"
    start = utcnow().replace(tzinfo=UTC) - timedelta(hours=1)  # an active block, ending later
    write_claude_corpus(root, sessions=1, turns=3, days=1 / 48, start=start, malformed_every=0)
    assert cli("--db", str(store.path), "ingest", "claude-logs", str(root / "projects")).code == 0
    burn = blocks.burn_rate(store)
    assert burn is not None
    end = burn["block_end"].replace(tzinfo=UTC).astimezone(ZoneInfo(NY))
    out = tmp_path / "r.html"
    assert cli("--db", str(store.path), "report", "--html", str(out), "-z", NY).code == 0
    assert f"by {end:%Y-%m-%d %H:%M} America/New_York.</p>" in out.read_text(encoding="utf-8")


def test_report_rejects_an_unknown_zone_in_one_line(tmp_path: Path, cli: Any) -> None:
    out = tmp_path / "r.html"
    res = cli("report", "--html", str(out), "-z", "Mars/Olympus")
    assert res.code != 0 and not out.exists()
    assert "--timezone: unknown time zone 'Mars/Olympus'" in res.err
    assert len(res.err.strip().splitlines()) == 1 and "Traceback" not in res.err
    help_text = cli("report", "--help").out
    assert "--timezone" in help_text and "-z" in help_text


def test_report_counts_days_in_this_machines_zone_by_default(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", NY)
    out = tmp_path / "r.html"
    assert cli("db", "migrate").code == 0  # report reads a database that is there
    assert cli("report", "--html", str(out)).code == 0
    assert "days in America/New_York from the start to now" in out.read_text(encoding="utf-8")


# --- the usage notebook's widgets ---------------------------------------------------------------


def test_usage_widgets_count_days_in_their_zone(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from specwright.widgets import usage_data
    from specwright.widgets.usage_data import Filters

    _seed(store, tmp_path)
    ny = usage_data.cost_per_day(store, Filters(tz=NY))
    assert [list(t.x) for t in ny.data] == [["2025-03-09"]]
    assert ny.layout.xaxis.title.text == "Day (America/New_York)"
    tokens = usage_data.tokens_by_kind(store, Filters(tz=NY))
    assert list(tokens.data[0].x) == ["2025-03-09"]
    assert [list(t.x) for t in usage_data.cost_per_day(store, Filters(tz="UTC")).data] == [
        ["2025-03-10"]
    ]
    assert usage_data.cost_per_day(store, Filters(since="2025-03-10", tz=NY)).data == ()
    assert usage_data.cost_per_spec(store, Filters(until="2025-03-09", tz=NY)).data
    with pytest.raises(ValidationError, match=r"^timezone: unknown time zone 'Mars/Olympus'"):
        usage_data.figures(store, Filters(tz="Mars/Olympus"))
    monkeypatch.setenv("TZ", NY)  # by default, this machine's zone
    assert Filters().tz == NY and Filters(tz="").zone() == NY


def test_usage_view_names_its_zone_and_keeps_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    import plotly.graph_objects as go

    from specwright.widgets import UsageView
    from specwright.widgets.usage_data import Filters

    seen: list[Filters] = []

    def render(f: Filters) -> list[tuple[go.Figure, str]]:
        seen.append(f)
        return []

    view = UsageView(render, ["alpha"], Filters(tz=NY))
    assert "America/New_York" in view.zone.value
    view.since.value = dt.date(2025, 3, 10)
    assert seen[-1] == Filters(since="2025-03-10", tz=NY)
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    assert "Asia/Tokyo" in UsageView(render, [], Filters()).zone.value


def test_a_bad_tz_is_warned_about_once_however_often_the_widgets_filter(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The widgets build their filters (each with the machine's zone) on every change: a TZ that
    names no zone was warned about each time, the notebook's output full of the same line."""
    from specwright.cli import usage
    from specwright.widgets.usage_data import Filters

    monkeypatch.setattr(usage, "_warned_tz", set())
    monkeypatch.setenv("TZ", "Nowhere/Land")
    for _ in range(5):
        Filters().zone()
    warned = [r.getMessage() for r in caplog.records if "TZ=" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("TZ='Nowhere/Land' is not"), warned
    # it names the notebook's parameter, not the command line's option
    assert warned[0].endswith("(timezone picks one)") and "--timezone" not in warned[0]
    monkeypatch.setenv("TZ", "Elsewhere/Land")  # another bad value is news: said once too
    Filters().zone()
    Filters().zone()
    warned = [r.getMessage() for r in caplog.records if "TZ=" in r.getMessage()]
    assert len(warned) == 2 and "'Elsewhere/Land'" in warned[1], warned
