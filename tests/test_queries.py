"""Read queries: periods and time zones, billing blocks and burn rate, runs' cost and tools."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from specwright import blocks as B
from specwright import queries as Q
from specwright import sessions
from specwright.model import ToolCall, ToolResult, Usage
from specwright.store import Store
from specwright.usage import claude

_HAIKU = "claude-haiku-4-5-20251001"


def _write(
    tmp_path: Path, stamps: list[str], out: int = 10, models: list[str] | None = None
) -> Path:
    proj = tmp_path / "projects" / "p"
    proj.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, ts in enumerate(stamps):
        lines.append(
            json.dumps(
                {
                    "type": "assistant",
                    "sessionId": "s",
                    "timestamp": ts,
                    "requestId": f"r{i}",
                    "message": {
                        "id": f"m{i}",
                        "model": (models or [])[i] if i < len(models or []) else _HAIKU,
                        "usage": {"input_tokens": 100, "output_tokens": out},
                    },
                },
                separators=(",", ":"),
            )
        )
    (proj / "s.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path / "projects"


def test_periods_time_zones_and_windows(tmp_path: Path, store: Store) -> None:
    claude.ingest(
        store,
        [
            _write(
                tmp_path,
                [
                    "2025-11-02T23:30:00.000Z",
                    "2025-11-03T00:30:00.000Z",
                    "2025-11-10T12:00:00.000Z",
                    "2025-12-01T08:00:00.000Z",
                ],
            )
        ],
    )
    daily = Q.usage_by_period(store, "day")
    assert list(daily["period"]) == ["2025-11-02", "2025-11-03", "2025-11-10", "2025-12-01"]
    tokyo = Q.usage_by_period(store, "day", tz="Asia/Tokyo")  # +9h: both first two on the 3rd
    assert list(tokyo["period"])[:2] == ["2025-11-03", "2025-11-10"]
    assert int(tokyo["records"].iloc[0]) == 2
    weekly = Q.usage_by_period(store, "week")
    assert list(weekly["period"]) == ["2025-10-27", "2025-11-03", "2025-11-10", "2025-12-01"]
    monthly = Q.usage_by_period(store, "month")
    assert list(monthly["records"]) == [3, 1]
    cut = Q.usage_by_period(store, "day", since="20251103", until="2025-11-10")
    assert list(cut["period"]) == ["2025-11-03", "2025-11-10"]
    expected = (100 * 1 + 10 * 5) / 1e6
    assert math.isclose(float(cut["cost_usd"].sum()), 2 * expected)
    from specwright.errors import ValidationError

    with pytest.raises(ValidationError, match="--since"):
        Q.usage_by_period(store, "day", since="last tuesday")


def test_billing_blocks_and_burn_rate(tmp_path: Path, store: Store) -> None:
    claude.ingest(
        store,
        [
            _write(
                tmp_path,
                [
                    "2025-11-03T10:15:00.000Z",
                    "2025-11-03T11:00:00.000Z",
                    "2025-11-03T14:59:00.000Z",
                    "2025-11-03T15:30:00.000Z",
                    "2025-11-04T02:00:00.000Z",
                    "2025-11-04T02:30:00.000Z",
                ],
            )
        ],
    )
    now = datetime(2025, 11, 4, 3, 0)
    blocks = B.billing_blocks(store, now=now)
    real = blocks[~blocks["is_gap"]]
    assert [b.strftime("%d %H:%M") for b in real["block_start"]] == [
        "03 10:00",
        "03 15:00",
        "04 02:00",
    ]
    assert list(real["entries"]) == [3, 1, 2]
    assert list(blocks["is_gap"]) == [False, False, True, False]
    gap = blocks[blocks["is_gap"]].iloc[0]  # as ccusage: from the last message + 5 h to the next
    assert gap["block_start"] == datetime(2025, 11, 3, 20, 30)
    assert gap["block_end"] == datetime(2025, 11, 4, 2, 0)
    assert gap["actual_end"] is None or str(gap["actual_end"]) in ("NaT", "None")
    assert list(real["is_active"]) == [False, False, True]
    burn = B.burn_rate(store, now=now)
    assert burn is not None
    assert burn["total_tokens"] == 220 and burn["entries"] == 2
    assert math.isclose(burn["tokens_per_minute"], 220 / 30)
    assert burn["remaining_minutes"] == 240
    assert burn["projected_total_tokens"] == 220 + int(220 / 30 * 240)
    assert B.burn_rate(store, now=datetime(2025, 11, 5, 12, 0)) is None


def test_the_burn_rate_is_the_running_blocks_not_one_a_future_stamped_log_starts(
    tmp_path: Path, store: Store, cli: Any
) -> None:
    """A log line stamped in the future (another machine's clock, a hostile log) starts a block
    ccusage also calls active; `usage blocks` and the dashboard took it for the running block:
    "projected $13,271.77 by 2099-01-01", the block under way not shown."""
    now = datetime.now(UTC).replace(tzinfo=None)
    stamps = [now - timedelta(minutes=30), now - timedelta(minutes=10)]
    stamps += [datetime(2099, 1, 1, 10, 0), datetime(2099, 1, 1, 11, 0)]
    claude.ingest(store, [_write(tmp_path, [t.strftime("%Y-%m-%dT%H:%M:%S.000Z") for t in stamps])])
    burn = B.burn_rate(store)
    assert burn is not None and burn["block_start"] <= now < burn["block_end"]
    assert burn["entries"] == 2 and burn["block_end"].year == now.year
    res = cli("--db", str(store.path), "--json", "usage", "blocks")
    active = json.loads(res.out)["active"]
    assert active["block_start"].startswith(f"{now:%Y-}") and active["entries"] == 2
    assert B.burn_rate(store, now=stamps[0] - timedelta(hours=2)) is None  # before any


def test_a_log_stamped_outside_the_days_a_window_names_is_in_no_report_and_fails_none(
    tmp_path: Path, store: Store, cli: Any
) -> None:
    """A log line stamped 9999-12-31 (a hostile or broken log), or a merged record of year
    20000: `usage blocks` and `report --html` failed with a TypeError traceback (the block's
    hour ends past the last time Python has), `usage session` with a ValueError; one of
    0001-01-01, `usage blocks --timezone America/New_York` with an OverflowError. Such records
    are outside any --since/--until (1900-01-01 to 9000-12-31) and in no report."""
    import duckdb

    stamps = ["2025-11-03T10:15:00.000Z", "9999-12-31T23:59:59.000Z", "0001-01-01T00:00:00Z"]
    claude.ingest(store, [_write(tmp_path, stamps)])
    exported = tmp_path / "usage_records.parquet"
    with duckdb.connect(str(store.path)) as conn:  # another machine's export, with year 20000
        conn.execute(
            "COPY (SELECT * REPLACE (uuidv7() AS id, dedup_key || 'x' AS dedup_key, "
            "TIMESTAMP '20000-01-01' AS ts) FROM usage_records LIMIT 1) "
            f"TO '{exported}' (FORMAT parquet)"
        )
    db = ("--db", str(store.path))
    assert cli(*db, "usage", "merge", str(exported)).code == 0
    for report in ("daily", "weekly", "monthly", "session", "blocks", "models"):
        for fmt in ((), ("--json",), ("--timezone", "America/New_York")):
            res = cli(*db, "usage", report, *fmt)
            assert res.code == 0 and "Traceback" not in res.err, (report, res.err)
    (day,) = json.loads(cli(*db, "--json", "usage", "daily").out)["daily"]
    assert day["date"] == "2025-11-03" and day["inputTokens"] == 100
    (block,) = json.loads(cli(*db, "--json", "usage", "blocks").out)["blocks"]
    assert block["startTime"].startswith("2025-11-03T10:00")
    (session,) = json.loads(cli(*db, "--json", "usage", "session").out)["sessions"]
    assert session["lastActivity"].startswith("2025-11-03")
    assert cli(*db, "report", "--html", str(tmp_path / "r.html")).code == 0
    r = cli(*db, "report", "--html", str(tmp_path / "r.html"), "--timezone", "America/New_York")
    assert r.code == 0


def test_the_usage_reports_say_how_many_records_they_leave_out_for_their_stamps(
    tmp_path: Path, store: Store, cli: Any
) -> None:
    """Records stamped outside 1900-01-01..9000-12-31 were left out of every report without a
    word: a total short of the logs' read as complete. Each report now says how many on
    stderr, once; --json keeps its shape; a database with none says nothing."""
    db = ("--db", str(store.path))
    claude.ingest(store, [_write(tmp_path, ["2025-11-03T10:15:00.000Z"])])
    for report in ("daily", "monthly", "session", "blocks"):
        assert "stamped outside" not in cli(*db, "usage", report).err
    stamps = ["2025-11-03T10:15:00.000Z", "9999-12-31T23:59:59.000Z", "0001-01-01T00:00:00Z"]
    claude.ingest(store, [_write(tmp_path / "more", stamps)])
    line = (
        "specwright: warning: 2 record(s) stamped outside 1900-01-01..9000-12-31 (a broken "
        "clock or log) are left out of this report\n"
    )
    for report in ("daily", "monthly", "session", "blocks"):
        res = cli(*db, "usage", report)
        assert res.code == 0 and res.err.count(line) == 1, (report, res.err)
        assert "Total" in res.out or "2025-11-03" in res.out, (report, res.out)
    (day,) = json.loads(cli(*db, "--json", "usage", "daily").out)["daily"]
    assert day["date"] == "2025-11-03"
    assert "stamped outside" not in cli(*db, "usage", "daily", "--source", "codex").err
    res = cli(*db, "report", "--html", str(tmp_path / "r.html"))  # the dashboard, too
    assert res.code == 0 and res.err.count(line) == 1, res.err


def test_a_window_keeps_each_block_whole_and_in_the_phase_of_earlier_messages(
    tmp_path: Path, store: Store
) -> None:
    # a message every 3 h 50 min for five days: no gap of 5 h, so every block's start follows
    # from the first message, days before any window's start (and the burn rate's)
    first = datetime(2025, 11, 1, 0, 20)
    times = [first + timedelta(minutes=230 * i) for i in range(32)]
    claude.ingest(store, [_write(tmp_path, [t.strftime("%Y-%m-%dT%H:%M:%S.000Z") for t in times])])
    now = times[-1] + timedelta(minutes=20)
    whole = B.billing_blocks(store, now=now)
    assert not whole["is_gap"].any() and len(whole) == 16  # two messages a block
    for tz in ("UTC", "America/Los_Angeles", "Asia/Kolkata"):
        for since, until in [
            ("2025-11-04", None),
            ("2025-11-03", "2025-11-04"),
            (None, "2025-11-02"),
        ]:
            got = B.billing_blocks(store, since=since, until=until, tz=tz, now=now)
            day = whole["block_start"].dt.tz_localize("UTC").dt.tz_convert(tz).dt.date
            keep = (day >= (date.fromisoformat(since) if since else date.min)) & (
                day <= (date.fromisoformat(until) if until else date.max)
            )
            want = whole[keep].reset_index(drop=True)
            assert len(want) >= 3, (tz, since, until)
            pd.testing.assert_frame_equal(got, want, obj=f"{tz} {since}..{until}")
            walked = B.billing_blocks(
                store, since=since, until=until, tz=tz, now=now, per_message=True
            )
            pd.testing.assert_frame_equal(walked, want, obj=f"walked {tz} {since}..{until}")
    # the active block is the one the whole history gives, not one starting at midnight
    burn = B.burn_rate(store, now=now)
    active = whole[whole["is_active"]].iloc[0]
    assert burn is not None and burn["block_start"] == active["block_start"]
    assert burn["entries"] == active["entries"] == 2


def test_run_side_queries(store: Store, tmp_path: Path) -> None:
    from specwright.catalog import add_chunk, create_spec, ensure_project, update_chunk
    from specwright.recorder import ExecutionRecorder

    project = ensure_project(store, tmp_path)
    spec = create_spec(store, project, "Add <script>alert(1)</script> login", "")
    c1 = add_chunk(store, spec, "first", "do it")
    c2 = add_chunk(store, spec, "second", "do more")
    update_chunk(store, c1.id, status="shipped", iterations=2)
    for it, (cost, fail) in enumerate([(0.5, True), (0.25, False)], start=1):
        rec = ExecutionRecorder(
            store,
            role="executor",
            backend="claude_code",
            executor="claude",
            spec_id=spec.id,
            chunk_id=c1.id,
            iteration=it,
            model="claude-haiku-4-5-20251001",
        ).start()
        rec.on_event(ToolCall(call_id=f"t{it}", tool="Bash", input={"cmd": "ls"}))
        rec.on_event(ToolResult(call_id=f"t{it}", output="x", is_error=fail, tool="Bash"))
        rec.on_event(ToolCall(call_id=f"e{it}", tool="Edit", input={}))
        rec.on_event(ToolResult(call_id=f"e{it}", output="ok"))
        rec.finish(status="ok", usage=Usage(input_tokens=10, output_tokens=1, cost_usd=cost))
    with ExecutionRecorder(
        store,
        role="executor",
        backend="opencode",
        executor="glm",
        spec_id=spec.id,
        chunk_id=c2.id,
        iteration=1,
        model="unpriced-local",
    ) as rec:
        rec.finish(status="error", usage=Usage(input_tokens=5))
    # an agent that crashed before saying anything: no tokens, no cost, nothing left unpriced
    with ExecutionRecorder(
        store, role="executor", backend="opencode", spec_id=spec.id, chunk_id=c2.id
    ) as rec:
        rec.finish(status="error", exit_reason="crash: RuntimeError")

    by_spec = Q.cost_by(store, "spec")
    assert by_spec.iloc[0]["executions"] == 4 and math.isclose(by_spec.iloc[0]["cost_usd"], 0.75)
    assert int(by_spec.iloc[0]["unpriced"]) == 1
    by_exec = Q.cost_by(store, "executor").set_index("executor")
    assert math.isclose(by_exec.loc["claude", "cost_usd"], 0.75)
    shipped = Q.cost_per_shipped_chunk(store)
    assert list(shipped["title"]) == ["first"] and math.isclose(shipped["cost_usd"][0], 0.75)
    assert Q.iterations_to_ship(store).to_dict("records") == [{"iterations": 2, "chunks": 1}]
    tools = Q.tool_calls(store).set_index("tool")
    assert tools.loc["Bash", "calls"] == 2 and tools.loc["Bash", "failure_rate"] == 0.5
    assert tools.loc["Edit", "failures"] == 0
    lat = Q.latency(store, "role")
    assert lat.iloc[0]["executions"] == 4
    sources = Q.cost_sources(store)
    assert set(sources["cost_source"].dropna()) == {"reported"}
    assert sources["computed_cost_usd"].notna().sum() == 2


def test_iterations_to_ship_count_every_run_of_the_chunk(tmp_path: Path, store: Store) -> None:
    """A chunk that failed its 2 iterations, then shipped on the next run's first, needed 3: the
    dashboard said 1 (the chunk's row keeps its last run's count) beside the cost of all 3."""
    from specwright import catalog
    from specwright.loop.run import run_chunk
    from specwright.widgets import usage_data
    from tests.support_loop import bad_mul, good_mul, make_chunk, make_config, make_repo, scripted

    repo = make_repo(tmp_path / "repo")
    chunk = make_chunk(store, repo)
    for script, status in ((bad_mul(), "failed"), (good_mul(), "shipped")):
        chunk = catalog.get_chunk(store, chunk.id)
        run = run_chunk(
            store, make_config(), repo, chunk, executor=scripted(script), max_iterations=2
        )
        assert run.status == status
    (row,) = Q.cost_per_shipped_chunk(store).to_dict("records")
    assert (row["iterations"], row["executions"], row["cost_usd"]) == (3, 3, pytest.approx(0.03))
    assert Q.iterations_to_ship(store).to_dict("records") == [{"iterations": 3, "chunks": 1}]
    figure = usage_data.iterations_to_ship(store, usage_data.Filters(tz="UTC"))  # the notebook
    assert (list(figure.data[0].x), list(figure.data[0].y)) == ([3], [1])


def test_usage_specs_shows_a_spec_of_only_unpriced_executions_as_unknown_not_0(
    store: Store, tmp_path: Path, cli
) -> None:  # type: ignore[no-untyped-def]
    """A spec whose executions all ran on a model with no known price cost NULL in `usage specs`
    (its text says `-`) and in the dashboard's cost per shipped chunk, as `usage models` and
    `status` say, not $0.00; a spec with one priced execution sums what is known."""
    from specwright.catalog import add_chunk, create_spec, ensure_project, update_chunk
    from specwright.recorder import ExecutionRecorder

    project = ensure_project(store, tmp_path)
    for title, costs in (("all unpriced", [None, None]), ("mixed", [0.25, None])):
        spec = create_spec(store, project, title, "")
        chunk = add_chunk(store, spec, "one", "do it")
        update_chunk(store, chunk.id, status="shipped", iterations=2)
        for it, cost in enumerate(costs, start=1):
            with ExecutionRecorder(
                store,
                role="executor",
                backend="opencode",
                spec_id=spec.id,
                chunk_id=chunk.id,
                iteration=it,
                model="unpriced-local",
            ) as rec:
                rec.finish(status="ok", usage=Usage(input_tokens=100, cost_usd=cost))
    res = cli("--db", str(store.path), "--json", "usage", "specs")
    assert res.code == 0, res.err
    rows = {r["spec"]: r for r in json.loads(res.out)}
    assert rows["all-unpriced"]["cost_usd"] is None and rows["all-unpriced"]["unpriced"] == 2
    assert rows["mixed"]["cost_usd"] == 0.25 and rows["mixed"]["unpriced"] == 1
    text = cli("--db", str(store.path), "usage", "specs").out
    (line,) = [x for x in text.splitlines() if x.startswith("all-unpriced")]
    assert line.split()[4] == "-", text
    # per chunk and per executor too (`--by`)
    res = cli("--db", str(store.path), "--json", "usage", "specs", "--by", "chunk")
    chunks = {r["chunk"]: r for r in json.loads(res.out)}
    assert chunks["all-unpriced#1 one"]["cost_usd"] is None
    assert chunks["mixed#1 one"]["cost_usd"] == 0.25 and chunks["mixed#1 one"]["executions"] == 2
    res = cli("--db", str(store.path), "--json", "usage", "specs", "--by", "executor")
    assert [(r["executor"], r["cost_usd"], r["unpriced"]) for r in json.loads(res.out)] == [
        ("opencode", 0.25, 3)
    ]
    # the dashboard's cost per shipped chunk says the same
    shipped = Q.cost_per_shipped_chunk(store).set_index("spec")["cost_usd"]
    assert pd.isna(shipped["all-unpriced"]) and shipped["mixed"] == 0.25


def rows_of_spec(x: Path, y: Path) -> dict[str, float]:
    return {
        "api/add-tests": 1.0,
        "web/add-tests": 2.0,
        f"app ({x})/add-tests": 4.0,
        f"app ({y})/add-tests": 8.0,
    }


def test_usage_specs_keeps_specs_of_two_projects_with_one_slug_apart(
    store: Store, tmp_path: Path, cli
) -> None:  # type: ignore[no-untyped-def]
    """Slugs are unique in a project only, project names not at all: two projects sharing a
    database, each with a spec "Add tests", were one row `add-tests` in `usage specs` (and the
    dashboard) costing $3.00, their two projects named `app` one row too. Each is its own row,
    named with its project (a project with its root) when another row has the same name."""
    from specwright.catalog import add_chunk, create_spec, ensure_project
    from specwright.recorder import ExecutionRecorder

    def spend(root: Path, cost: float) -> None:
        spec = create_spec(store, ensure_project(store, root), "Add tests", "")
        chunk = add_chunk(store, spec, "unit tests", "do it")
        with ExecutionRecorder(
            store, role="executor", backend="opencode", spec_id=spec.id, chunk_id=chunk.id,
            iteration=1, model="glm-4.7",
        ) as rec:  # fmt: skip
            rec.finish(status="ok", usage=Usage(input_tokens=10, cost_usd=cost))

    for name, cost in (("api", 1.0), ("web", 2.0)):
        (tmp_path / name).mkdir()
        spend(tmp_path / name, cost)
    db = ("--db", str(store.path), "--json", "usage", "specs")
    rows = {r["spec"]: r["cost_usd"] for r in json.loads(cli(*db).out)}
    assert rows == {"api/add-tests": 1.0, "web/add-tests": 2.0}
    rows = {r["chunk"]: r["cost_usd"] for r in json.loads(cli(*db, "--by", "chunk").out)}
    assert rows == {"api/add-tests#1 unit tests": 1.0, "web/add-tests#1 unit tests": 2.0}
    # two projects of one name (two folders `app`): told apart by their roots
    for where, cost in (("x", 4.0), ("y", 8.0)):
        (tmp_path / where / "app").mkdir(parents=True)
        spend(tmp_path / where / "app", cost)
    rows = {r["project"]: r["cost_usd"] for r in json.loads(cli(*db, "--by", "project").out)}
    assert rows == {
        "api": 1.0,
        "web": 2.0,
        f"app ({(tmp_path / 'x' / 'app').resolve()})": 4.0,
        f"app ({(tmp_path / 'y' / 'app').resolve()})": 8.0,
    }
    assert sorted(Q.cost_by(store, "spec")["cost_usd"]) == [1.0, 2.0, 4.0, 8.0]  # the dashboard
    # ... and so are their specs of one slug, which were both `app/add-tests`
    x, y = "…/x/app", "…/y/app"  # the end of their folders
    rows = {r["spec"]: r["cost_usd"] for r in json.loads(cli(*db).out)}
    assert rows == rows_of_spec(x, y)
    chunks = {r["chunk"]: r["cost_usd"] for r in json.loads(cli(*db, "--by", "chunk").out)}
    assert chunks[f"app ({x})/add-tests#1 unit tests"] == 4.0 and len(chunks) == 4
    store.write([Store.op_sql("UPDATE chunks SET status = 'shipped'")])
    shipped = Q.cost_per_shipped_chunk(store)  # the HTML report's table
    assert dict(zip(shipped["spec"], shipped["cost_usd"], strict=True)) == rows_of_spec(x, y)


def test_a_spec_partly_priced_shows_its_cost_as_a_lower_bound(
    store: Store, tmp_path: Path, cli
) -> None:  # type: ignore[no-untyped-def]
    """A spec with one call at $0.25 and one stopped mid-run (its cost unknown) cost at least
    $0.25: `usage specs` and `status` showed 0.2500 as if it were the whole; they mark it "≥"
    and their --json carries how many calls are unpriced."""
    from specwright.catalog import add_chunk, create_spec, ensure_project
    from specwright.recorder import ExecutionRecorder

    project = ensure_project(store, tmp_path)
    spec = create_spec(store, project, "mixed", "")
    chunk = add_chunk(store, spec, "one", "do it")
    for it, cost in enumerate([0.25, None], start=1):
        rec = ExecutionRecorder(
            store, role="executor", backend="opencode", spec_id=spec.id, chunk_id=chunk.id,
            iteration=it, model="glm-4.7",
        ).start()  # fmt: skip
        if cost is None:
            rec.finish(status="cancelled", usage=Usage(input_tokens=900), incomplete=True)
        else:
            rec.finish(status="ok", usage=Usage(input_tokens=100, cost_usd=cost))
    db = ("--db", str(store.path), "-C", str(tmp_path))
    (line,) = [x for x in cli(*db, "usage", "specs").out.splitlines() if x.startswith("mixed")]
    assert line.split()[4] == "≥0.2500", line
    (line,) = [x for x in cli(*db, "status").out.splitlines() if x.startswith("mixed")]
    assert line.split()[-2:] == ["≥0.2500", "1"], line
    (row,) = json.loads(cli(*db, "--json", "status").out)["specs"]
    assert (row["cost_usd"], row["unpriced"]) == (0.25, 1)
    (day,) = Q.executions_by_period(store).to_dict("records")  # the day's too
    assert (day["cost_usd"], day["unpriced"]) == (0.25, 1)
    # a call still under way has no cost yet: the spec's is a lower bound meanwhile, not whole
    running = ExecutionRecorder(
        store, role="executor", backend="opencode", spec_id=spec.id, chunk_id=chunk.id
    ).start()
    running.flush()  # its row is written (the flusher would in a moment)
    (row,) = json.loads(cli(*db, "--json", "status").out)["specs"]
    assert (row["cost_usd"], row["unpriced"]) == (0.25, 2)
    running.finish(status="ok", usage=Usage(input_tokens=10, cost_usd=0.5))
    (row,) = json.loads(cli(*db, "--json", "status").out)["specs"]
    assert (row["cost_usd"], row["unpriced"]) == (0.75, 1)


def test_usage_models_marks_a_cost_some_records_lack_as_a_lower_bound(
    tmp_path: Path, store: Store, cli
) -> None:  # type: ignore[no-untyped-def]
    """A model no price is known for, one of whose two replies carried its cost (an older log's
    costUSD): `usage models` showed 0.5000 as its whole cost; it is at least that, as `usage
    specs` says of such a spec, and --json keeps the number with the unpriced count."""
    proj = tmp_path / "projects" / "p"
    proj.mkdir(parents=True)
    lines = []
    for i, extra in enumerate([{"costUSD": 0.5}, {}]):
        usage = {"input_tokens": 100, "output_tokens": 10}
        message = {"id": f"m{i}", "model": "mystery-1", "usage": usage}
        stamp = f"2025-11-0{i + 1}T10:00:00.000Z"
        line = {"type": "assistant", "sessionId": "s", "timestamp": stamp, "requestId": f"r{i}"}
        lines.append(json.dumps({**line, **extra, "message": message}, separators=(",", ":")))
    (proj / "s.jsonl").write_text("\n".join(lines) + "\n")
    claude.ingest(store, [tmp_path / "projects"])
    db = ("--db", str(store.path), "usage", "models", "-z", "UTC")
    (line,) = [x for x in cli(*db).out.splitlines() if x.startswith("mystery-1")]
    assert line.split()[-2:] == ["≥0.5000", "1"], line
    (row,) = json.loads(cli(*db, "--json").out)
    assert (row["cost_usd"], row["unpriced"]) == (0.5, 1)


def test_tool_call_latency_percentiles_and_calls_without_a_result(store: Store) -> None:
    """p50/p90 of the time from a call to its first result, interpolated like numpy's default;
    a call with no result counts as a call and in ``no_result``, not in the percentiles."""
    from specwright.migrations import BACKFILL_TOOL_RESULTS

    t0 = datetime(2026, 1, 5, 12, 0)
    rows = []
    for i, ms in enumerate([100, 200, 300, 400, 1000, None]):
        rows.append((f"c{i}", "tool_call", t0, None))
        if ms is not None:
            rows.append((f"c{i}", "tool_result", t0 + timedelta(milliseconds=ms), i == 1))
            rows.append((f"c{i}", "tool_result", t0 + timedelta(seconds=9), False))  # a repeat
    with store.transaction() as conn:
        conn.executemany(
            "INSERT INTO events (id, execution_id, seq, ts, type, tool_name, call_id, is_error) "
            "VALUES (uuidv7(), '00000000-0000-7000-8000-000000000001', ?, ?, ?, 'Read', ?, ?)",
            [[n, ts, kind, call, err] for n, (call, kind, ts, err) in enumerate(rows)],
        )
        conn.execute(BACKFILL_TOOL_RESULTS)  # rows written by hand: marked as migration 10 does
    (got,) = Q.tool_calls(store).to_dict("records")
    assert got.pop("tool") == "Read"
    assert got == pytest.approx(
        {
            "calls": 6,
            "failures": 1,
            "failure_rate": 1 / 6,
            "no_result": 1,
            "p50_ms": 300.0,
            "p90_ms": 760.0,
        }  # 400 + 0.6 * (1000 - 400)
    )


def test_hourly_blocks_equal_the_per_message_walk(tmp_path: Path, store: Store) -> None:
    import random

    rng = random.Random(7)
    t = datetime(2025, 10, 1, 0, 0)
    stamps = []
    for _ in range(400):  # bursts and gaps of every size around the 5-hour edges
        t += timedelta(minutes=rng.choice([1, 7, 33, 59, 61, 299, 300, 301, 600]))
        stamps.append(t.strftime("%Y-%m-%dT%H:%M:%S.000Z"))
    claude.ingest(store, [_write(tmp_path, stamps)])
    now = datetime(2025, 10, 20)
    hourly = B.billing_blocks(store, now=now)
    walked = B.billing_blocks(store, now=now, per_message=True)
    assert len(hourly) > 20
    pd.testing.assert_frame_equal(hourly, walked)


def test_a_message_on_a_blocks_end_stays_in_it_and_the_rate_runs_from_its_first(
    tmp_path: Path, store: Store
) -> None:
    stamps = ["2025-11-03T10:15:00.000Z", "2025-11-03T15:00:00.000Z", "2025-11-03T15:00:00.001Z"]
    claude.ingest(store, [_write(tmp_path, stamps)])
    now = datetime(2025, 11, 3, 16, 0)
    for walk in (False, True):  # ccusage: a new block only after more than 5 hours
        blocks = B.billing_blocks(store, now=now, per_message=walk)
        assert list(blocks["entries"]) == [2, 1], walk
        assert [b.hour for b in blocks["block_start"]] == [10, 15]
    first = B.billing_blocks(store, now=datetime(2025, 11, 3, 14, 0)).iloc[0]
    assert first["actual_start"] == datetime(2025, 11, 3, 10, 15)
    burn = B.burn_rate(store, now=now)  # the block under way (at 14:00: the first one)
    assert burn is not None and burn["active_minutes"] == 0  # the active block: one message
    # no rate from one message (ccusage: burnRate and projection null), not a rate per "minute"
    for key in ("tokens_per_minute", "cost_per_hour", "projected_total_tokens"):
        assert burn[key] is None, key
    assert burn["projected_cost_usd"] is None and burn["total_tokens"] > 0


def test_a_claude_session_is_its_log_file_and_its_project_the_directory(
    tmp_path: Path, store: Store
) -> None:
    # projects/p/s.jsonl, in a config folder that is itself under a folder named projects
    root = _write(tmp_path / "projects" / "home", ["2025-11-03T10:15:00.000Z"])
    side = root / "p" / "t" / "subagents" / "agent-1.jsonl"
    side.parent.mkdir(parents=True)
    line = json.loads((root / "p" / "s.jsonl").read_text())
    line["message"]["id"], line["requestId"] = "m9", "r9"  # sessionId "s" inside, file of "t"
    side.write_text(json.dumps(line, separators=(",", ":")) + "\n")
    claude.ingest(store, [root])
    rows = sessions.usage_session_report(store)
    assert {(r["sessionId"], r["projectPath"]) for r in rows} == {("s", "p"), ("t", "p")}
    assert rows[0]["firstActivity"] == "2025-11-03T10:15:00.000Z"
    frame = Q.usage_sessions(store)  # still reachable from queries, with timestamps
    assert list(frame["session_id"]) == [r["sessionId"] for r in rows]
    assert str(frame["first_activity"].iloc[0]) == "2025-11-03 10:15:00"


def test_usage_blocks_shows_its_times_in_the_timezone_it_was_given(
    tmp_path: Path, store: Store, cli
) -> None:  # type: ignore[no-untyped-def]
    """`usage blocks -z Asia/Tokyo` prints its blocks on Tokyo's clock and says so: it printed
    UTC times under no zone, while its --since/--until days were Tokyo's (--json keeps UTC, Z)."""
    claude.ingest(store, [_write(tmp_path, ["2025-11-03T10:15:00.000Z"])])
    db = ("--db", str(store.path))
    out = cli(*db, "usage", "blocks", "-z", "Asia/Tokyo", "--since", "2025-11-03").out
    title, header, row = out.splitlines()[:3]
    assert title == "Billing blocks (times in Asia/Tokyo)" and header.startswith("BLOCK_START")
    assert row.split()[:4] == ["2025-11-03", "19:00:00", "2025-11-04", "00:00:00"], out
    res = cli(*db, "--json", "usage", "blocks", "-z", "Asia/Tokyo")
    assert json.loads(res.out)["blocks"][0]["startTime"] == "2025-11-03T10:00:00.000Z"


def test_usage_session_shows_its_last_activity_in_the_timezone_it_was_given(
    tmp_path: Path, store: Store, cli
) -> None:  # type: ignore[no-untyped-def]
    """`usage session -z Asia/Tokyo --since 2025-11-04` listed a session last active at
    2025-11-03T20:00:00.000Z, a day before its window seemingly: its days were Tokyo's, its time
    UTC. The table shows Tokyo's clock and says so; --json keeps UTC."""
    claude.ingest(store, [_write(tmp_path, ["2025-11-03T19:00:00.000Z", "2025-11-03T20:00:00Z"])])
    db = ("--db", str(store.path), "usage", "session", "-z", "Asia/Tokyo", "--since", "2025-11-04")
    title, header, row = cli(*db).out.splitlines()[:3]
    assert title == "Sessions (times in Asia/Tokyo)" and header.startswith("SESSION_ID")
    assert row.split()[2:4] == ["2025-11-04", "05:00:00"], row
    (session,) = json.loads(cli(*db, "--json").out)["sessions"]
    assert session["lastActivity"] == "2025-11-03T20:00:00.000Z"


def test_usage_blocks_walks_claude_codes_messages_unless_told_otherwise(
    tmp_path: Path, store: Store, cli
) -> None:  # type: ignore[no-untyped-def]
    """A block is Claude Code's 5-hour window (ccusage's blocks read its logs only): a Codex
    reply at 09:40 made `usage blocks` start one at 09:00 that took in Claude's 10:15 and
    14:30 replies, where Claude's window ran 10:00-15:00; the dashboard drew the same."""
    from specwright.report import figures
    from specwright.usage import codex
    from tests.support_codex import codex_line, codex_token_count, codex_tokens

    claude.ingest(store, [_write(tmp_path, ["2025-11-03T10:15:00.000Z", "2025-11-03T14:30:00Z"])])
    at = datetime(2025, 11, 3, 9, 40)
    rollout = tmp_path / "codex" / "rollout-2025-11-03T09-40-00-s1.jsonl"
    rollout.parent.mkdir()
    meta = {"id": "s1", "timestamp": "2025-11-03T09:40:00.000Z", "cwd": "/p"}
    lines = [
        codex_line(at, "session_meta", meta),
        codex_line(at, "turn_context", {"model": "gpt-5"}),
    ]
    usage = codex_tokens(100, 0, 10, 0)
    lines.append(codex_token_count(at, usage, usage))
    rollout.write_text("\n".join(lines) + "\n")
    codex.ingest(store, [rollout.parent])
    assert store.query("SELECT count(*) FROM usage_records WHERE source = 'codex'") == [(1,)]
    db = ("--db", str(store.path), "--json", "usage", "blocks", "-z", "UTC")
    starts = [b["startTime"] for b in json.loads(cli(*db).out)["blocks"]]
    assert starts == ["2025-11-03T10:00:00.000Z"]
    mixed = json.loads(cli(*db, "--source", "all").out)["blocks"]  # asked for: as before
    assert [b["startTime"] for b in mixed] == [
        "2025-11-03T09:00:00.000Z",
        "2025-11-03T14:00:00.000Z",
    ]
    bars = figures(store, tz="UTC")["blocks"]
    assert len(bars.data[0].x) == 1 and "(Claude Code)" in bars.layout.title.text
    other = ("--db", str(tmp_path / "codex-only.duckdb"))  # only Codex's logs: says where
    assert cli(*other, "ingest", "codex-logs", str(rollout.parent)).code == 0
    assert "--source codex" in cli(*other, "usage", "blocks").err


def test_an_active_block_of_one_message_shows_no_rate_anywhere(
    tmp_path: Path, store: Store, cli
) -> None:  # type: ignore[no-untyped-def]
    """One reply in the active block: no burn rate or projection (ccusage's null), where the
    one-message "minute" projected a $0.035 reply to $7 over five hours."""
    from specwright.model import utcnow
    from specwright.report import write_html

    recent = (utcnow() - timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    claude.ingest(store, [_write(tmp_path, [recent], out=5000)])
    db = ("--db", str(store.path))
    res = cli(*db, "--json", "usage", "blocks", "-z", "UTC")
    assert res.code == 0, res.err
    (active,) = [b for b in json.loads(res.out)["blocks"] if b["isActive"]]
    assert active["burnRate"] is None and active["projection"] is None
    # the burn rate's block says UTC as the blocks do (it read "...T10:00:00", no zone)
    burn = json.loads(res.out)["active"]
    assert (burn["block_start"], burn["block_end"]) == (active["startTime"], active["endTime"])
    text = cli(*db, "usage", "blocks", "-z", "UTC")
    assert "Active block (rates over its first to last message" in text.out
    rate_line = next(line for line in text.out.splitlines() if line.startswith("cost_per_hour"))
    assert rate_line.split()[-1] == "-"
    out = tmp_path / "r.html"
    write_html(store, out)
    page = out.read_text(encoding="utf-8")
    assert "one message so far, no burn rate yet" in page and "projected $" not in page


def test_a_block_holding_a_reply_of_no_known_price_shows_its_cost_as_a_lower_bound(
    tmp_path: Path, store: Store, cli
) -> None:  # type: ignore[no-untyped-def]
    """A block's cost counts a reply of no known price as $0, as ccusage's does: the dashboard's
    active block and bars, and the blocks table, said that sum as the block's whole cost."""
    from specwright import blocks
    from specwright.model import utcnow
    from specwright.report import figures, write_html

    stamps = [
        (utcnow() - timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%S.000Z") for m in (20, 10)
    ]
    claude.ingest(store, [_write(tmp_path, stamps, models=[_HAIKU, "claude-nobody-knows-9"])])
    burn = blocks.burn_rate(store)
    assert burn is not None and burn["unpriced"] == 1 and burn["cost_usd"] > 0
    text = cli("--db", str(store.path), "usage", "blocks", "-z", "UTC").out
    (row,) = [line for line in text.splitlines() if " yes " in line]  # the active block
    assert "≥" in row
    out = tmp_path / "r.html"
    write_html(store, out)
    page = out.read_text(encoding="utf-8")
    assert (
        f"Active block: 220 tokens, ≥${burn['cost_usd']:,.2f} (1 record(s) with no known price)"
        in page
    )
    (bar,) = figures(store)["blocks"].data
    assert list(bar.hovertext) == ["+1 unpriced: at least this"]


def test_usage_models_lists_no_synthetic_model_of_no_tokens(tmp_path: Path, store: Store) -> None:
    """Claude Code's own notes in the chat (an API error) name the model `<synthetic>` with no
    tokens: `usage models` listed it as a model of 0 tokens and $0."""
    from tests.support_usage import write_claude_corpus

    write_claude_corpus(tmp_path, sessions=3, turns=8, malformed_every=0)
    claude.ingest(store, [tmp_path / "projects"])
    assert store.query("SELECT count(*) FROM usage_records WHERE model = '<synthetic>'")[0][0] > 0
    models = set(Q.usage_models(store)["model"])
    assert models and "<synthetic>" not in models
