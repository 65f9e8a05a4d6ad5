"""The HTML dashboard and the usage CLI: standalone, escaped, labelled; commands end to end."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from specwright.store import Store
from tests.support_usage import write_claude_corpus, write_fake_codexbar


def _seed(store: Store, tmp_path: Path) -> None:
    from specwright.catalog import create_spec, ensure_project
    from specwright.model import ToolCall, ToolResult, Usage
    from specwright.recorder import ExecutionRecorder
    from specwright.usage import claude, codexbar

    write_claude_corpus(tmp_path / "claude", sessions=2, turns=12, malformed_every=0)
    claude.ingest(store, [tmp_path / "claude" / "projects"])
    codexbar.ingest(store, str(write_fake_codexbar(tmp_path / "bin")))
    spec = create_spec(store, ensure_project(store, tmp_path), "x </script><img src=x>", "")
    with ExecutionRecorder(
        store, role="executor", backend="claude_code", executor="<b>evil</b>", spec_id=spec.id
    ) as rec:
        rec.on_event(ToolCall(call_id="1", tool="<script>alert('t')</script>", input={}))
        rec.on_event(ToolResult(call_id="1", output="no", is_error=True))
        rec.finish(status="ok", usage=Usage(input_tokens=5, output_tokens=5, cost_usd=0.01))


def test_figures_have_titles_and_axis_labels(store: Store, tmp_path: Path) -> None:
    from specwright.report import figures

    _seed(store, tmp_path)
    figs = figures(store)
    assert {
        "cost_by_day",
        "tokens_by_day",
        "blocks",
        "cost_by_spec",
        "tool_calls",
        "latency",
        "limits",
    } <= set(figs)
    for name, fig in figs.items():
        layout = fig.layout
        assert layout.title.text, name
        assert layout.xaxis.title.text and layout.yaxis.title.text, name
    assert "(USD)" in figs["cost_by_day"].layout.yaxis.title.text
    assert "(%)" in figs["limits"].layout.yaxis.title.text


def test_html_is_standalone_and_escapes_agent_text(store: Store, tmp_path: Path) -> None:
    from specwright.report import write_html

    _seed(store, tmp_path)
    out = write_html(store, tmp_path / "out" / "report.html")
    text = out.read_text(encoding="utf-8")
    assert text.count("<script") >= 2  # plotly.js inlined plus the figure scripts
    import re

    assert not re.search(r"<script[^>]*\bsrc=", text)  # nothing fetched: works offline
    assert "<script>alert(" not in text and "<b>evil</b>" not in text
    assert "<img src=x>" not in text
    assert "&lt;b&gt;evil" in text  # shown as text, not markup


def test_html_tables_show_unknown_values_blank_not_nan() -> None:
    import pandas as pd

    from specwright.report import _table_html

    df = pd.DataFrame(
        {"model": ["a", "b"], "cost_usd": [1.5, float("nan")], "at": [pd.Timestamp(0), pd.NaT]}
    )
    # a nullable column (DuckDB's integers with a NULL arrive so) holds pd.NA: was "<NA>"
    df["tokens"] = pd.array([7, None], dtype="Int64")
    html = _table_html(df, "t")
    assert "nan" not in html.lower() and "NaT" not in html and "NA&gt;" not in html
    assert "<td>1.5000</td>" in html and "<td></td>" in html


def test_usage_cli_reports(tmp_path: Path, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    write_claude_corpus(tmp_path / "claude", sessions=2, turns=12, malformed_every=0)
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "claude"))
    assert cli("ingest", "claude-logs").code == 0
    daily = cli("usage", "daily")
    assert daily.code == 0
    for col in (
        "Date",
        "Input",
        "Output",
        "Cache Create",
        "Cache Read",
        "Total Tokens",
        "Cost (USD)",
        "Total",
    ):
        assert col.upper() in daily.out
    # the cost column has one format, so its decimals line up, and the total is not re-rounded
    costs = [line.split()[-1] for line in daily.out.splitlines()[2:] if line.strip()]
    assert len({len(c.split(".")[1]) for c in costs}) == 1, costs
    total = json.loads(cli("usage", "daily", "--json").out)["totals"]["totalCost"]
    assert costs[-1] == (f"{total:,.2f}" if total >= 100 else f"{total:.4f}")
    monthly = json.loads(cli("usage", "monthly", "--json").out)
    assert monthly["monthly"][0]["month"] == "2025-11"
    sessions = json.loads(cli("usage", "session", "--json").out)
    assert len(sessions["sessions"]) == 2
    blocks = json.loads(cli("usage", "blocks", "--json").out)
    assert blocks["blocks"] and blocks["active"] is None
    header, first = cli("usage", "blocks").out.splitlines()[1:3]  # flags read yes/no in a table
    assert "IS_ACTIVE" in header and "False" not in first and first.split()[4:6] == ["no", "no"]
    models = json.loads(cli("--json", "usage", "models").out)
    assert {m["model"] for m in models} >= {"claude-sonnet-4-5-20250929"}
    assert cli("usage", "specs").code == 0
    bad = cli("usage", "daily", "--since", "yesterday")
    assert bad.code == 2 and "--since: expected YYYY-MM-DD" in bad.err

    export_dir = tmp_path / "exp"
    assert cli("usage", "export", "-o", str(export_dir)).code == 0
    merged = json.loads(cli("--json", "usage", "merge", str(export_dir)).out)
    assert merged["inserted"]["usage_records"] == 0  # the same machine: nothing new
    html = tmp_path / "r.html"
    assert cli("report", "--html", str(html)).code == 0 and html.stat().st_size > 100_000


def test_report_to_a_path_it_cannot_write_is_one_line(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """`report --html` under a file (or on a read-only disk): one line naming the path, exit 2,
    not a traceback."""
    afile = tmp_path / "notes.txt"
    afile.write_text("mine\n")
    assert cli("db", "migrate").code == 0
    res = cli("report", "--html", str(afile / "report.html"))
    assert res.code == 2 and len(res.err.splitlines()) == 1, res.err
    assert res.err.startswith(
        f"specwright: error: {afile / 'report.html'}: cannot write the report"
    )
    assert "a parent is a file" in res.err and afile.read_text() == "mine\n"


def test_no_logs_is_a_clear_error(cli) -> None:  # type: ignore[no-untyped-def]
    res = cli("ingest", "claude-logs")
    assert res.code == 2 and "no claude logs found" in res.err


def test_no_logs_names_the_folders_the_environment_chose(tmp_path: Path, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A mistyped CLAUDE_CONFIG_DIR or CODEX_HOME is named with its value; the message said
    'CLAUDE_CONFIG_DIR, ~/.config/claude/projects or ~/.claude/projects' whatever it held, and
    left out the archived_sessions/ a Codex ingest reads too."""
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "typo"))
    res = cli("ingest", "claude-logs")
    assert res.code == 2 and len(res.err.splitlines()) == 1, res.err
    assert (
        f"(looked in CLAUDE_CONFIG_DIR={tmp_path / 'typo'}: each folder or its projects/)"
        in res.err
    )
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "codex"))
    res = cli("ingest", "codex-logs")
    assert res.code == 2 and len(res.err.splitlines()) == 1, res.err
    codex = tmp_path / "codex"
    assert f"{codex / 'sessions'} and {codex / 'archived_sessions'}, from CODEX_HOME" in res.err


def test_usage_on_an_empty_database_says_how_to_fill_it(tmp_path: Path, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert cli("db", "migrate").code == 0
    empty = cli("usage", "daily")
    assert empty.code == 0 and "(none)" in empty.out
    assert "no agent logs imported yet" in empty.err and "ingest claude-logs" in empty.err
    assert "no runs recorded yet" in cli("usage", "specs").err
    assert cli("usage", "daily", "--json").err == ""  # scripts get the JSON only
    # Specwright's own runs are not the agents' logs: the log reports still say how to fill
    # them (after the demo, `usage daily` said nothing and showed (none))
    assert cli("demo", "--dir", str(tmp_path / "demo")).code == 0
    assert "no agent logs imported yet" in cli("usage", "daily").err
    assert cli("usage", "specs").err == ""
    write_claude_corpus(tmp_path / "claude", sessions=1, turns=3, malformed_every=0)
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "claude"))
    assert cli("ingest", "claude-logs").code == 0
    assert "no agent logs" not in cli("usage", "daily").err


def test_report_and_queries_do_not_load_plotly_or_pandas_on_import() -> None:
    code = (
        "import sys, specwright.report, specwright.queries, specwright.pricing, "
        "specwright.usage, specwright.cli.usage; "
        "bad = [m for m in ('plotly', 'pandas', 'duckdb', 'genai_prices') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


def test_tables_cut_long_lists_like_long_text_and_line_up_numbers() -> None:
    import io

    from specwright.cli.common import print_table

    out = io.StringIO()
    models = [f"claude-model-{i}-20250101" for i in range(4)]
    print_table([{"models": models, "cost": 2.07}, {"models": ["a"], "cost": 141.335}], file=out)
    _, first, second = out.getvalue().splitlines()
    assert first.startswith(", ".join(models)[:57] + "...  ")
    assert first.endswith("  2.07") and second.endswith("141.34")
    out = io.StringIO()  # a column with no number in it is text: left-aligned
    print_table([{"version": None, "name": "claude"}, {"version": None, "name": "x"}], file=out)
    assert out.getvalue().splitlines()[1].startswith("-        claude")


def test_table_reports_of_the_cli_do_not_load_pandas(store: Store, tmp_path: Path) -> None:
    # `usage models`, `usage specs` and `usage blocks` print plain rows: importing pandas for
    # them took ~0.4 s of a ~0.55 s command
    _seed(store, tmp_path)
    store.release()
    code = (
        "import json, sys; from specwright.cli import main; "
        f"args = ['--db', {str(store.path)!r}, '--json', 'usage']; "
        "out = {r: main([*args, r]) for r in ('models', 'specs', 'daily', 'blocks')}; "
        "print(json.dumps([out, 'pandas' in sys.modules]))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    reports, text, at = [], res.stdout, 0
    while text[at:].strip():  # four reports, then the exit codes and the answer
        value, end = json.JSONDecoder().raw_decode(text, len(text) - len(text[at:].lstrip()))
        reports.append(value)
        at = end
    models, specs, _daily, blocks, last = reports
    assert last == [{"models": 0, "specs": 0, "daily": 0, "blocks": 0}, False]
    assert blocks["blocks"] and all(isinstance(b["startTime"], str) for b in blocks["blocks"])
    assert models and all(isinstance(m["input_tokens"], int) for m in models)
    assert [s["executions"] for s in specs] == [1] and specs[0]["cost_usd"] == 0.01


def test_cost_per_day_keeps_a_readable_legend_with_many_models(
    store: Store, tmp_path: Path
) -> None:
    """Model names come from agents' logs: 40 of them (some long, some markup) give the
    costliest as series, one "other" for the rest, and the same cost per day."""
    from datetime import UTC, datetime, timedelta

    from specwright.report import MAX_LABEL, MAX_SERIES, figures, write_html
    from specwright.usage import claude
    from tests.support_usage import _assistant, _dumps, _usage

    models = [f"model-{i:02d}" if i % 10 else f"<b>m{i:02d}</b>{'x' * 200}" for i in range(40)]
    lines = []
    for day in range(3):
        for i, model in enumerate(models):  # model i costs i + 1 dollars a day
            ts = datetime(2025, 11, 1 + day, 12, tzinfo=UTC) + timedelta(minutes=i)
            line = _assistant(
                session="s1", cwd="/home/dev/p", ts=ts, model=model, msg_id=f"m{day}-{i}",
                req_id=f"r{day}-{i}", usage=_usage(random.Random(i), 10), text="hi",
                uid=f"u{day}-{i}", cost_usd=float(i + 1),
            )  # fmt: skip
            lines.append(_dumps(line))
    log = tmp_path / "claude" / "projects" / "-home-dev-p" / "s1.jsonl"
    log.parent.mkdir(parents=True)
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    claude.ingest(store, [tmp_path / "claude" / "projects"])

    fig = figures(store)["cost_by_day"]
    names = [bar.name for bar in fig.data]
    assert len(names) == MAX_SERIES
    assert names[:3] == ["model-39", "model-38", "model-37"]  # the costliest first
    assert names[-1] == f"other ({40 - MAX_SERIES + 1} models)"
    assert "&lt;b&gt;m30&lt;/b&gt;" in names[9] and len(names[9]) <= MAX_LABEL + 20
    per_day: dict[str, float] = {}
    for bar in fig.data:
        for x, y in zip(bar.x, bar.y, strict=True):
            per_day[x] = per_day.get(x, 0) + y
    assert per_day == {d: pytest.approx(820.0) for d in ("2025-11-01", "2025-11-02", "2025-11-03")}
    html = write_html(store, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<b>m" not in html and "x" * 100 not in html


def test_notebook_cost_per_day_caps_its_series_like_the_dashboard(store: Store) -> None:
    """The usage notebook's figure, grouped by model or executor (both named by agents and
    configs), keeps the costliest and one "other" too."""
    from specwright.model import Usage
    from specwright.recorder import ExecutionRecorder
    from specwright.report import MAX_SERIES
    from specwright.widgets import usage_data
    from specwright.widgets.usage_data import Filters

    for i in range(30):
        with ExecutionRecorder(
            store, role="executor", backend="command", executor=f"ex-{i:02d}", model=f"m-{i:02d}"
        ) as rec:
            rec.finish(status="ok", usage=Usage(input_tokens=1, cost_usd=float(i + 1)))
    for group_by, noun in (("model", "models"), ("executor", "executors")):
        fig = usage_data.cost_per_day(store, Filters(group_by=group_by, tz="UTC"))
        names = [bar.name for bar in fig.data]
        assert len(names) == MAX_SERIES and names[-1] == f"other ({31 - MAX_SERIES} {noun})"
        assert names[0].endswith("-29")
        assert sum(sum(bar.y) for bar in fig.data) == pytest.approx(465.0)


def test_dashboard_quota_table_shows_the_latest_executions_and_says_rows_were_left_out(
    store: Store, tmp_path: Path
) -> None:
    """The quota table is in time order: cut to 50 rows it must keep the latest readings
    (not the oldest) and say that it shows 50 of how many."""
    from specwright import queries as Q
    from specwright.report import write_html
    from specwright.usage import codexbar

    fake = write_fake_codexbar(tmp_path / "bin")
    ids = [f"0190a0a0-0000-7000-8000-{i:012d}" for i in range(15)]
    for execution_id in ids:
        with codexbar.around(store, execution_id, str(fake)):
            pass
    rows = len(Q.quota_per_execution(store))
    assert rows > 50 + 5  # more than the table holds, by more than one execution's rows
    html = write_html(store, tmp_path / "report.html").read_text(encoding="utf-8")
    table = html.split("Plan quota used per execution", 1)[1].split("</table>", 1)[0]
    assert f"The latest 50 of {rows:,} rows." in table
    assert ids[-1] in table and ids[0] not in table


def test_dashboard_cost_table_says_it_shows_the_latest_50_of_how_many(
    store: Store, tmp_path: Path
) -> None:
    """The cost-per-execution table's query keeps the latest 50 executions: the page says so,
    with the true count (not 50, not 51)."""
    from specwright.model import Usage
    from specwright.recorder import ExecutionRecorder
    from specwright.report import write_html

    ids = []
    for i in range(53):
        with ExecutionRecorder(store, role="executor", backend="command", model="m") as rec:
            rec.finish(status="ok", usage=Usage(input_tokens=1, cost_usd=float(i + 1)))
        ids.append(str(rec.id))
    html = write_html(store, tmp_path / "report.html").read_text(encoding="utf-8")
    table = html.split("log-derived cost per execution", 1)[1].split("</table>", 1)[0]
    assert "The latest 50 of 53 rows." in table
    assert ids[-1] in table and ids[0] not in table
    # in a window holding no more than 50, nothing is said to be left out
    html = write_html(store, tmp_path / "old.html", until="2001-01-01").read_text(encoding="utf-8")
    assert " rows.</p>" not in html.split("log-derived cost per execution", 1)[1]
