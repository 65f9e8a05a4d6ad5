"""The usage notebook's figures, the HTML report and the run summary on odd data: costs that
are NaN or Infinity (older databases, merged exports and scripted agents can hold them), hostile
text, windows with no rows."""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from specwright.store import Store


def _seed_costs(store: Store, tmp_path: Path) -> str:
    """A spec whose executor calls cost 0.25, NaN and Infinity; returns its slug."""
    from specwright.catalog import create_spec, ensure_project
    from specwright.model import Usage
    from specwright.recorder import ExecutionRecorder

    spec = create_spec(store, ensure_project(store, tmp_path), "Costly", "")
    for cost in (0.25, float("nan"), float("inf")):
        with ExecutionRecorder(
            store, role="executor", backend="scripted", executor="scripted", spec_id=spec.id
        ) as rec:
            rec.finish(status="ok", usage=Usage(input_tokens=10, output_tokens=1, cost_usd=cost))
    assert store.query("SELECT count(*) FROM executions WHERE NOT isfinite(cost_usd)") == [(2,)]
    return spec.slug


def test_a_nan_or_infinite_cost_does_not_hide_the_rest_of_a_total(
    store: Store, tmp_path: Path
) -> None:
    from specwright import queries as Q
    from specwright import report
    from specwright.widgets import usage_data
    from specwright.widgets.usage_data import Filters

    slug = _seed_costs(store, tmp_path)
    f = Filters()
    per_spec = usage_data.cost_per_spec(store, f)
    # the NaN and Infinity ones are unknown: 0.25 is a lower bound, and says so
    assert list(per_spec.data[0].y) == [f"{slug} (+2 unpriced)"]
    assert list(per_spec.data[0].x) == [0.25]
    per_day = usage_data.cost_per_day(store, f)
    assert [v for t in per_day.data for v in t.y] == [0.25]
    by_spec = Q.cost_by(store, "spec")
    assert by_spec["cost_usd"].tolist() == [0.25] and by_spec["unpriced"].tolist() == [2]
    # the reported cost beside it too: `usage specs` showed "-" (NaN) for all three calls
    (row,) = store.query_dicts(*Q.cost_by_sql("spec", None, None, "UTC"))
    assert (row["reported_cost_usd"], row["cost_usd"]) == (0.25, 0.25)
    figure = report.figures(store)["cost_by_spec"]
    assert list(figure.data[0].x) == [0.25]  # not 0 (NaN filled) and not NaN
    assert all(math.isfinite(v) for v in Q.executions_by_period(store)["cost_usd"])


def _seed_shipped_chunk(
    store: Store, tmp_path: Path, title: str = "Shipped one", costs: tuple[float, ...] = (0.5,)
) -> None:
    """One shipped chunk with executor calls (today, UTC) that cost ``costs`` (0.5)."""
    from specwright.catalog import add_chunk, create_spec, ensure_project, update_chunk
    from specwright.model import Usage
    from specwright.recorder import ExecutionRecorder

    spec = create_spec(store, ensure_project(store, tmp_path), title, "")
    chunk = add_chunk(store, spec, "Only chunk", "do it")
    update_chunk(store, chunk.id, status="shipped", iterations=1, verdict="SHIP")
    for cost in costs:
        with ExecutionRecorder(
            store, role="executor", backend="scripted", spec_id=spec.id, chunk_id=chunk.id
        ) as rec:
            rec.finish(status="ok", usage=Usage(input_tokens=10, output_tokens=1, cost_usd=cost))


def test_the_reports_shipped_chunks_name_a_slug_two_projects_share_with_its_project(
    store: Store, tmp_path: Path
) -> None:
    """Two projects each with a spec `add-tests`: the dashboard's "Cost per shipped chunk" had
    two rows `add-tests`, no telling whose; they are `api/add-tests` and `web/add-tests`, as in
    `usage specs`. A slug of one project stays as it is."""
    from specwright import queries as Q
    from specwright.report import write_html

    for name in ("api", "web"):
        _seed_shipped_chunk(store, tmp_path / name, "Add tests")
    _seed_shipped_chunk(store, tmp_path / "api", "Solo")
    shipped = Q.cost_per_shipped_chunk(store)
    assert list(shipped["spec"]) == ["api/add-tests", "solo", "web/add-tests"]
    assert list(shipped.columns)[:3] == ["spec", "position", "title"]
    text = write_html(store, tmp_path / "r.html").read_text(encoding="utf-8")
    for spec in ("api/add-tests", "web/add-tests", "solo"):
        assert f"<tr><td>{spec}</td>" in text


def test_a_cost_summed_past_the_largest_float_is_unknown_in_text_not_inf(
    store: Store, tmp_path: Path, cli: Any
) -> None:
    """Two calls reporting $1e308 each: `--json` said null (unknown), but the text tables of
    `usage specs` and `status`, the run summary's cost and the dashboard's tables said `inf`.
    Each shows it as unknown, as a cost of no price is: `-` (blank in HTML)."""
    from specwright.cli.common import print_table
    from specwright.model import cost_text
    from specwright.report import write_html
    from specwright.widgets.common import table_html

    _seed_shipped_chunk(store, tmp_path, "Costly", (1e308, 1e308))
    db = ("--db", str(store.path), "-C", str(tmp_path))
    for args in (("usage", "specs"), ("status",), ("usage", "specs", "--by", "chunk")):
        res = cli(*db, *args)
        assert res.code == 0 and "inf" not in res.out.lower(), (args, res.out)
        (row,) = [line for line in res.out.splitlines() if "costly" in line]
        assert " - " in row, row
    html = write_html(store, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "inf<" not in html.lower()
    assert cost_text(float("inf")) == "-" and cost_text(float("-inf"), 2) == "unknown (2 unpriced)"
    print_table([{"cost_usd": float("inf")}, {"cost_usd": 1.5}], file=(out := io.StringIO()))
    assert out.getvalue().splitlines()[1:] == ["       -", "  1.5000"]
    assert "inf" not in table_html([{"cost_usd": float("inf")}], ["cost_usd"]).lower()


def test_the_html_report_tables_follow_its_date_window(store: Store, tmp_path: Path) -> None:
    from specwright.report import write_html

    _seed_shipped_chunk(store, tmp_path)
    everything = write_html(store, tmp_path / "all.html").read_text(encoding="utf-8")
    assert everything.count("<td>Only chunk</td>") == 1 and "<td>0.5000</td>" in everything
    # a window without any execution: every table is empty, as its heading promises
    old = write_html(store, tmp_path / "old.html", since="2020-01-01", until="2020-01-31")
    text = old.read_text(encoding="utf-8")
    assert "2020-01-01 to 2020-01-31" in text
    assert "Only chunk" not in text and "0.5000" not in text
    tables = text.split("<h2>")[1:]
    assert len(tables) == 5
    assert all("no data yet" in t for t in tables), [t[:80] for t in tables]


def test_codexbar_credits_line_is_plain_bounded_and_never_nan(store: Store) -> None:
    import json
    from datetime import datetime

    from specwright.model import new_id
    from specwright.widgets.usage_data import credits_text

    provider = "\x1b[2J\x1b[31mcodex\x07" + "p" * 1_000_000
    payload = {"usage": {"primary": {"usedPercent": 40}, "providerCost": {"limit": 10}}}
    store.insert("usage_snapshots", {
        "id": new_id(), "taken_at": datetime(2025, 1, 5), "source": "codexbar",
        "provider": provider, "payload": json.dumps(payload), "kind": "usage",
    })  # fmt: skip
    text = credits_text(store)
    assert text.startswith("?[2J?[31mcodex?") and len(text) < 300, text[:300]
    assert "\x1b" not in text and "nan" not in text
    assert text.endswith("spent ? of 10.00")


def test_long_names_cut_to_the_same_label_stay_separate_bars(store: Store, tmp_path: Path) -> None:
    from specwright.catalog import create_spec, ensure_project
    from specwright.model import ToolCall, ToolResult, Usage
    from specwright.recorder import ExecutionRecorder
    from specwright.report import figures
    from specwright.widgets import usage_data

    prefix = "mcp__" + "a_very_long_server_name_" * 5
    spec = create_spec(store, ensure_project(store, tmp_path), "Tools", "")
    for n, (tool, calls) in enumerate(((prefix + "read", 3), (prefix + "write", 1))):
        model = prefix + ("model-one", "model-two")[n]
        with ExecutionRecorder(
            store, role="executor", backend="claude_code", model=model, spec_id=spec.id
        ) as rec:
            for i in range(calls):
                rec.on_event(ToolCall(call_id=f"{n}-{i}", tool=tool, input={}))
                rec.on_event(ToolResult(call_id=f"{n}-{i}", output="ok", is_error=False))
            rec.finish(status="ok", usage=Usage(input_tokens=1, cost_usd=0.1 * (n + 1)))
    tools = usage_data.tool_calls(store, usage_data.Filters()).data[0]
    assert len(set(tools.x)) == 2 and sorted(tools.y) == [1, 3]
    assert all(len(x) < 100 for x in tools.x)
    report_tools = figures(store)["tool_calls"].data[0]
    assert len(set(report_tools.x)) == 2
    by_model = usage_data.cost_per_day(store, usage_data.Filters(group_by="model"))
    assert len(by_model.data) == 2
    from specwright import queries as Q
    from specwright.report import cost_by_dim_figure

    per_model = cost_by_dim_figure(Q.cost_by(store, "model"), "model").data[0]
    assert len(set(per_model.y)) == 2 and sorted(per_model.x) == [0.1, 0.2]


_PLOTLY_ENTITIES = {"mu": "μ", "amp": "&", "lt": "<", "gt": ">", "nbsp": "\xa0", "times": "×",
                    "plusmn": "±", "deg": "°"}  # fmt: skip


def _as_plotly_shows(label: str) -> str:
    """What plotly.js draws for ``label`` (its svg_text_utils): tags are markup, then the
    entities it knows are decoded (named ones from its short table, and numeric ones); any
    other entity, ``&quot;`` among them, is drawn as written."""
    import re

    assert "<" not in label and ">" not in label, label  # no markup: nothing of it is a tag

    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        if name.startswith("#"):
            return chr(int(name[2:], 16) if name[1] == "x" else int(name[1:]))
        return _PLOTLY_ENTITIES.get(name, m.group(0))

    return re.sub(r"&(#\d+|#x[\da-fA-F]+|[a-z]+);", one, label)


def test_figure_labels_show_quotes_and_markup_as_written(store: Store, tmp_path: Path) -> None:
    """A title, model or tool name with quotes and markup is drawn as it is written: plotly
    showed a double quote as the text ``&quot;``."""
    from specwright import queries as Q
    from specwright.catalog import add_chunk, create_spec, ensure_project
    from specwright.model import ToolCall, ToolResult, Usage
    from specwright.recorder import ExecutionRecorder
    from specwright.report import cost_by_dim_figure, figures
    from specwright.widgets import usage_data
    from specwright.widgets.common import dag_figure

    odd = "say \"hi\" & 'bye' <b>x</b>"
    spec = create_spec(store, ensure_project(store, tmp_path), odd, "")
    chunk = add_chunk(store, spec, odd, "do it")
    with ExecutionRecorder(
        store, role="executor", backend="scripted", model=odd, spec_id=spec.id, chunk_id=chunk.id
    ) as rec:
        rec.on_event(ToolCall(call_id="1", tool=odd, input={}))
        rec.on_event(ToolResult(call_id="1", output="ok", is_error=False))
        rec.finish(status="ok", usage=Usage(input_tokens=10, output_tokens=1, cost_usd=0.5))
    f = usage_data.Filters(group_by="model")
    shown = [
        *figures(store)["tool_calls"].data[0].x,
        *usage_data.tool_calls(store, f).data[0].x,
        *cost_by_dim_figure(Q.cost_by(store, "model"), "model").data[0].y,
        *usage_data.cost_per_chunk(store, f).data[0].y,
        *(t.name for t in usage_data.cost_per_day(store, f).data),
        *dag_figure([chunk]).data[0].hovertext,
    ]
    drawn = [_as_plotly_shows(label) for label in shown]
    assert len(drawn) == 6 and all(odd in text for text in drawn), drawn


def test_a_cost_with_no_price_is_no_bar_and_says_so_not_a_bar_of_zero(
    store: Store, tmp_path: Path
) -> None:
    """Calls that used tokens of a model with no known price have an unknown cost (NULL): the
    figures drew it as 0, as if the spec had been free."""
    import pandas as pd

    from specwright import queries as Q
    from specwright.catalog import add_chunk, create_spec, ensure_project, update_chunk
    from specwright.model import Usage
    from specwright.recorder import ExecutionRecorder
    from specwright.report import cost_by_dim_figure, cost_by_period_figure, figures
    from specwright.widgets import usage_data

    project = ensure_project(store, tmp_path)
    for title, model, cost in (("Priced", "known", 0.5), ("Unpriced", "no-price-model", None)):
        spec = create_spec(store, project, title, "")
        chunk = add_chunk(store, spec, f"{title} chunk", "do it")
        update_chunk(store, chunk.id, status="shipped", iterations=1, verdict="SHIP")
        with ExecutionRecorder(
            store, role="executor", backend="scripted", executor=model, model=model,
            spec_id=spec.id, chunk_id=chunk.id,
        ) as rec:  # fmt: skip
            rec.finish(status="ok", usage=Usage(input_tokens=100, output_tokens=10, cost_usd=cost))
    f = usage_data.Filters(group_by="model")
    bars = {
        "report, by spec": figures(store)["cost_by_spec"].data[0],
        "report, by model": cost_by_dim_figure(Q.cost_by(store, "model"), "model").data[0],
        "notebook, by spec": usage_data.cost_per_spec(store, f).data[0],
        "notebook, by chunk": usage_data.cost_per_chunk(store, f).data[0],
    }
    for where, bar in bars.items():
        drawn = dict(zip(bar.y, bar.x, strict=True))
        assert sorted(drawn.values(), key=str) == [0.5, None], (where, drawn)
        unknown = next(label for label, cost in drawn.items() if cost is None)
        assert unknown.endswith(" (cost unknown)"), (where, drawn)
    per_day = {t.name: list(t.y) for t in usage_data.cost_per_day(store, f).data}
    assert per_day == {"known": [0.5], "no-price-model (cost unknown)": [None]}, per_day
    boxes = {t.name: list(t.y) for t in usage_data.cost_per_shipped_chunk(store, f).data}
    assert boxes == {"known": [0.5], "no-price-model (cost unknown)": [None]}, boxes
    # the agents' logs: a day of a model without a price, and a day of one with a price of 0
    logs = pd.DataFrame({
        "period": ["2025-01-01", "2025-01-01", "2025-01-02"],
        "model": ["priced", "no-price-model", "free-model"],
        "cost_usd": [0.25, 0.0, 0.0], "unpriced": [0, 3, 0],
    })  # fmt: skip
    daily = {t.name: list(t.y) for t in cost_by_period_figure(logs).data}
    assert daily == {"priced": [0.25], "free-model": [0.0], "no-price-model (cost unknown)": [None]}


def test_a_spec_of_calls_stopped_mid_run_is_no_bar_not_a_bar_of_zero(
    store: Store, tmp_path: Path
) -> None:
    """A call cancelled before its model said anything (0 tokens) has an unknown cost: the
    report and the notebook drew its spec at $0.00, as if it had been free."""
    from specwright import queries as Q
    from specwright.catalog import create_spec, ensure_project
    from specwright.model import Usage
    from specwright.recorder import ExecutionRecorder
    from specwright.report import figures
    from specwright.widgets import usage_data

    spec = create_spec(store, ensure_project(store, tmp_path), "Stopped", "")
    rec = ExecutionRecorder(
        store, role="executor", backend="opencode", model="glm-4.7", spec_id=spec.id
    ).start()
    rec.finish(status="cancelled", usage=Usage(model="glm-4.7"), incomplete=True)
    by_spec = Q.cost_by(store, "spec").to_dict("records")
    assert [(r["spec"], r["unpriced"]) for r in by_spec] == [("stopped", 1)]
    assert math.isnan(by_spec[0]["cost_usd"])
    f = usage_data.Filters()
    for bar in (figures(store)["cost_by_spec"].data[0], usage_data.cost_per_spec(store, f).data[0]):
        assert list(bar.x) == [None] and list(bar.y) == ["stopped (cost unknown)"], bar


def test_a_spec_partly_priced_is_drawn_and_listed_as_a_lower_bound(
    store: Store, tmp_path: Path
) -> None:
    """One call at $0.25 and one stopped mid-run: the figures and the report's table showed
    $0.25 unmarked, as if it were the spec's whole cost."""
    import pandas as pd

    from specwright.catalog import add_chunk, create_spec, ensure_project, update_chunk
    from specwright.model import Usage
    from specwright.recorder import ExecutionRecorder
    from specwright.report import cost_by_period_figure, figures, write_html
    from specwright.widgets import usage_data
    from specwright.widgets.common import table_html

    spec = create_spec(store, ensure_project(store, tmp_path), "Mixed", "")
    chunk = add_chunk(store, spec, "Only chunk", "do it")
    update_chunk(store, chunk.id, status="shipped", iterations=2, verdict="SHIP")
    for cost in (0.25, None):
        rec = ExecutionRecorder(
            store, role="executor", backend="opencode", model="glm-4.7", spec_id=spec.id,
            chunk_id=chunk.id,
        ).start()  # fmt: skip
        if cost is None:
            rec.finish(status="cancelled", usage=Usage(input_tokens=900), incomplete=True)
        else:
            rec.finish(status="ok", usage=Usage(input_tokens=100, cost_usd=cost))
    f = usage_data.Filters()
    for bar in (figures(store)["cost_by_spec"].data[0], usage_data.cost_per_spec(store, f).data[0]):
        assert list(bar.x) == [0.25] and list(bar.y) == ["mixed (+1 unpriced)"], bar
    chunk_bar = usage_data.cost_per_chunk(store, f).data[0]
    assert list(chunk_bar.y) == ["mixed #1 Only chunk (+1 unpriced)"]
    boxes = {t.name: list(t.y) for t in usage_data.cost_per_shipped_chunk(store, f).data}
    assert boxes == {"opencode (+1 unpriced)": [0.25]}, boxes
    (day,) = usage_data.cost_per_day(store, f).data  # the day's bar, by model
    assert (day.name, list(day.y)) == ("glm-4.7 (+1 unpriced)", [0.25])
    # the report's daily bars of agents' logs: records without a price count 0 in the sum
    logs = pd.DataFrame({"period": ["2025-01-01"], "model": ["glm"], "cost_usd": [0.25],
                         "unpriced": [2]})  # fmt: skip
    (day,) = cost_by_period_figure(logs).data
    assert (day.name, list(day.y)) == ("glm (+2 unpriced)", [0.25])
    page = write_html(store, tmp_path / "report.html").read_text()
    shipped = page.split("Cost per shipped chunk</h2>")[1].split("</table>")[0]
    assert "<td>≥0.2500</td>" in shipped, shipped
    # the notebook's run summary table, from rows that count their unpriced calls
    assert "<td style='padding:2px 8px'>&ge;0.2500</td>" in table_html(
        [{"cost_usd": 0.25, "unpriced": 1}], ["cost_usd", "unpriced"]
    )


def test_terminal_escapes_and_rtl_overrides_are_shown_as_question_marks(
    store: Store, tmp_path: Path
) -> None:
    """A chunk title or tool name with an RTL override drew the rest of it reversed in every
    HTML view (``admin\\u202egpj.exe`` reads as ``adminexe.jpg``), and terminal escapes were
    kept; the terminal shows both as "?", and so does every rendered view now."""
    from specwright.catalog import add_chunk, create_spec, ensure_project, get_chunk
    from specwright.model import ToolCall, ToolResult, Usage
    from specwright.recorder import ExecutionRecorder
    from specwright.report import figures, write_html
    from specwright.widgets.common import dag_figure, esc, markdown_html, table_html

    odd = "admin\u202egpj.exe \x1b[31mred\x1b[0m\u2066x\u2069\tok"
    shown = "admin?gpj.exe ?[31mred?[0m?x?\tok"
    spec = create_spec(store, ensure_project(store, tmp_path), "Odd", "")
    # a title is refused such characters now; a database written before may hold them
    chunk = add_chunk(store, spec, "Plain", "do it")
    store.write([Store.op_sql("UPDATE chunks SET title = ? WHERE id = ?", [odd, chunk.id])])
    chunk = get_chunk(store, chunk.id)
    with ExecutionRecorder(store, role="executor", backend="scripted", spec_id=spec.id) as rec:
        rec.on_event(ToolCall(call_id="1", tool=odd, input={}))
        rec.on_event(ToolResult(call_id="1", output="ok", is_error=False))
        rec.finish(status="ok", usage=Usage(input_tokens=10, output_tokens=1, cost_usd=0.5))
    rendered = {
        "esc": esc(odd),
        "table": table_html([{"title": odd}], ["title"]),
        "markdown": markdown_html(f"# {odd}\n\n{odd}"),
        "dag hover": dag_figure([chunk]).data[0].hovertext[0],
        "report figure": figures(store)["tool_calls"].data[0].x[0],
        "report page": write_html(store, tmp_path / "r.html").read_text(encoding="utf-8"),
    }
    for where, html in rendered.items():
        assert not any(c in html for c in "\u202e\u2066\u2069\x1b"), where
    assert all(shown in rendered[k] for k in ("esc", "table", "dag hover", "report figure"))


def _drawn_days(fig: Any) -> list[str]:
    """The x categories in the order plotly draws them: as the traces first name them, unless
    the axis sorts them."""
    seen: list[str] = []
    for trace in fig.data:
        seen += [x for x in trace.x if x not in seen]
    return sorted(seen) if fig.layout.xaxis.categoryorder == "category ascending" else seen


def test_notebook_cost_per_day_draws_days_in_time_order(store: Store, tmp_path: Path) -> None:
    """The costliest model's series came first and its days led the axis: a later day was
    drawn before an earlier one."""
    from datetime import datetime

    from specwright.catalog import create_spec, ensure_project
    from specwright.model import Usage
    from specwright.recorder import ExecutionRecorder
    from specwright.widgets import usage_data

    spec = create_spec(store, ensure_project(store, tmp_path), "Days", "")
    for day, model, cost in ((3, "pricey", 5.0), (1, "cheap", 0.1), (2, "cheap", 0.1)):
        with ExecutionRecorder(
            store, role="executor", backend="scripted", model=model, spec_id=spec.id
        ) as rec:
            rec.finish(status="ok", usage=Usage(input_tokens=10, output_tokens=1, cost_usd=cost))
        store.update("executions", {"id": rec.id}, {"started_at": datetime(2025, 1, day, 12)})
    f = usage_data.Filters(group_by="model", tz="UTC")
    days = ["2025-01-01", "2025-01-02", "2025-01-03"]
    assert _drawn_days(usage_data.cost_per_day(store, f)) == days
    assert _drawn_days(usage_data.tokens_by_kind(store, f)) == days


def test_report_names_the_cost_of_calls_outside_any_spec(store: Store, tmp_path: Path) -> None:
    """An `agents check` belongs to no spec: its bar in "Execution cost by spec" had no name."""
    from specwright.catalog import create_spec, ensure_project
    from specwright.model import Usage
    from specwright.recorder import ExecutionRecorder
    from specwright.report import figures

    spec = create_spec(store, ensure_project(store, tmp_path), "Named", "")
    for spec_id, cost in ((spec.id, 0.5), (None, 0.25)):
        with ExecutionRecorder(store, role="executor", backend="scripted", spec_id=spec_id) as rec:
            rec.finish(status="ok", usage=Usage(input_tokens=10, output_tokens=1, cost_usd=cost))
    bar = figures(store)["cost_by_spec"].data[0]
    assert dict(zip(bar.y, bar.x, strict=True)) == {"(no spec)": 0.25, spec.slug: 0.5}


def test_json_output_stays_json_when_costs_sum_past_the_largest_float(
    store: Store, tmp_path: Path, cli: Any
) -> None:
    """Two calls each reporting $1e308 sum to Infinity: `usage specs --json` and `status --json`
    printed the bare word Infinity, which is no JSON (jq and JavaScript refuse the whole
    output); an unknown figure is null."""
    import json

    from specwright.catalog import create_spec, ensure_project
    from specwright.model import Usage
    from specwright.recorder import ExecutionRecorder

    spec = create_spec(store, ensure_project(store, tmp_path), "Costly", "")
    for _ in range(2):
        with ExecutionRecorder(store, role="executor", backend="opencode", spec_id=spec.id) as rec:
            rec.finish(status="ok", usage=Usage(input_tokens=1, cost_usd=1e308))

    def strict(text: str) -> Any:
        def refuse(word: str) -> Any:
            raise AssertionError(f"not JSON: {word}")

        return json.loads(text, parse_constant=refuse)

    db = ("--db", str(store.path), "-C", str(tmp_path), "--json")
    (row,) = strict(cli(*db, "usage", "specs").out)
    assert (row["spec"], row["cost_usd"], row["executions"]) == ("costly", None, 2)
    (row,) = strict(cli(*db, "status").out)["specs"]
    assert row["cost_usd"] is None


def test_usage_specs_gives_the_reported_and_computed_difference_over_calls_with_both(
    store: Store, tmp_path: Path
) -> None:
    """A call the agent priced itself whose model has no price, and one it did not price: the
    reported and computed sums count different calls, and their gap (0.4) is not how far the
    agent's figures are off the prices (0.2, on the one call that has both)."""
    from specwright import queries as Q
    from specwright.catalog import create_spec, ensure_project
    from specwright.model import Usage
    from specwright.recorder import ExecutionRecorder

    spec = create_spec(store, ensure_project(store, tmp_path), "Both costs", "")
    for reported, computed in ((1.0, 0.8), (0.5, None), (None, 0.3)):
        with ExecutionRecorder(store, role="executor", backend="scripted", spec_id=spec.id) as rec:
            rec.finish(status="ok", usage=Usage(input_tokens=10, output_tokens=1))
        with store.transaction() as conn:
            conn.execute(
                "UPDATE executions SET reported_cost_usd = ?, computed_cost_usd = ? WHERE id = ?",
                [reported, computed, rec.id],
            )
    (row,) = store.query_dicts(*Q.cost_by_sql("spec", None, None, "UTC"))
    assert (row["reported_cost_usd"], row["computed_cost_usd"]) == (1.5, 1.1)
    assert row["reported_minus_computed"] == pytest.approx(0.2)


def _claude_log(tmp_path: Path, lines: Iterable[str]) -> Path:
    """A Claude Code log of ``lines`` (one session) under ``tmp_path``/claude/projects."""
    log = tmp_path / "claude" / "projects" / "p" / "s.jsonl"
    log.parent.mkdir(parents=True)
    log.write_text("".join(line + "\n" for line in lines))
    return log


def test_reports_never_fail_on_thousands_of_records_at_the_per_record_bound(
    store: Store, tmp_path: Path, cli: Any
) -> None:
    """Ingests and recorders keep each token count below 2**53; 3,000 agent-log records at
    that bound (one hostile log) sum past BIGINT, and `usage daily` failed with an INT64
    overflow traceback, as did every usage report, the dashboard and, for executions, `usage
    specs`. Such a total now reads as BIGINT's largest value: absurd, but the report works."""
    import json

    from specwright.catalog import create_spec, ensure_project

    big, n = 2**53 - 1, 3000
    line = (
        '{{"timestamp":"2025-11-03T10:{m:02d}:{s:02d}Z","requestId":"r{i}","sessionId":"s1",'
        '"message":{{"model":"claude-haiku-4-5","id":"m{i}","usage":{{"input_tokens":{big},'
        '"output_tokens":1,"cache_read_input_tokens":{big}}}}}}}'
    )
    log = _claude_log(
        tmp_path, (line.format(m=i // 60 % 60, s=i % 60, i=i, big=big) for i in range(n))
    )
    spec = create_spec(store, ensure_project(store, tmp_path), "Hostile", "")
    with store.transaction() as conn:  # as recorders write them, in one statement
        conn.execute(
            "INSERT INTO executions (id, spec_id, role, backend, executor, model, status, started_at,"
            " input_tokens, output_tokens, cache_read_tokens, cost_usd, cost_source) "
            "SELECT uuid(), ?, 'executor', 'claude-code', 'claude', 'claude-haiku-4-5', 'ok', "
            "TIMESTAMP '2025-11-03 10:00:00', ?, ?, ?, 0.5, 'reported' FROM range(?)",
            [str(spec.id), big, big, big, n],
        )
        conn.execute(  # an agent that tells no usage: its tokens are unknown, not huge
            "INSERT INTO executions (id, role, backend, executor, status, started_at, "
            "cost_source) VALUES (uuid(), 'executor', 'command', 'echo', 'ok', "
            "TIMESTAMP '2025-11-03 10:00:00', 'unreported')"
        )
    db = ("--db", str(store.path), "-C", str(tmp_path))
    r = cli(*db, "ingest", "claude-logs", str(log.parent.parent))
    assert r.code == 0, r.err
    window = ("--since", "2025-11-01", "--until", "2025-11-30")
    for report in ("daily", "weekly", "monthly", "session", "blocks", "models"):
        r = cli(*db, "--json", "usage", report, *window)
        assert r.code == 0 and "Traceback" not in r.err, (report, r.err)
        json.loads(r.out)
    (day,) = json.loads(cli(*db, "--json", "usage", "daily", *window).out)["daily"]
    assert day["inputTokens"] == day["cacheReadTokens"] == 2**63 - 1
    assert day["outputTokens"] == n  # the counts that are not absurd are still right
    for by in ("spec", "chunk", "executor", "model", "project", "role"):
        r = cli(*db, "--json", "usage", "specs", "--by", by)
        assert r.code == 0 and "Traceback" not in r.err, (by, r.err)
    row, unspecced = json.loads(cli(*db, "--json", "usage", "specs").out)
    assert (row["executions"], row["input_tokens"], row["output_tokens"]) == (
        n,
        2**63 - 1,
        2**63 - 1,
    )
    assert row["cost_usd"] == 0.5 * n
    assert (unspecced["executions"], unspecced["input_tokens"]) == (1, None)
    assert cli(*db, "status").code == 0
    r = cli(*db, "report", "--html", str(tmp_path / "report.html"), *window)
    assert r.code == 0, r.err


def test_the_dashboards_token_bars_of_two_models_at_the_bound_in_one_day_are_not_negative(
    store: Store, tmp_path: Path
) -> None:
    """Each model's daily token total is held at BIGINT's largest value; the dashboard's
    "tokens per day" figure summed two such in int64, which wrapped round: a hostile log with two
    models at the per-record bound on one day drew an input bar of -2 tokens, no error."""
    from specwright import queries as Q
    from specwright.report import figures
    from specwright.usage import claude

    big, n = 2**53 - 1, 1100  # 1,025 records at the bound pass BIGINT's largest value
    line = (
        '{{"timestamp":"2025-11-03T10:{m:02d}:{s:02d}Z","requestId":"r{k}{i}","sessionId":"s1",'
        '"message":{{"model":"claude-{k}-4-5","id":"m{k}{i}","usage":{{"input_tokens":{big},'
        '"output_tokens":1}}}}}}'
    )
    log = _claude_log(
        tmp_path,
        (
            line.format(m=i // 60, s=i % 60, i=i, k=k, big=big)
            for k in ("haiku", "sonnet")
            for i in range(n)
        ),
    )
    assert claude.ingest(store, [log.parent.parent]).imported == 2 * n
    daily = Q.usage_by_period(store, "day")
    assert list(daily["input_tokens"]) == [2**63 - 1, 2**63 - 1]
    bars = {t.name: list(t.y) for t in figures(store)["tokens_by_day"].data}
    assert bars["input"] == [pytest.approx(2.0**64)]
    assert bars["output"] == [2 * n]


def test_the_usage_notebooks_project_filter_names_each_projects_folder(
    store: Store, tmp_path: Path
) -> None:
    """Two clones of one repository are two projects named `api`: the notebook's project filter
    listed `api` twice (and its "by project" bars summed them), no telling which was which.
    Each choice names its folder, shown plain (a terminal escape or a right-to-left override
    in a folder name as '?'), and picks that project alone."""
    import plotly.graph_objects as go

    from specwright.widgets import usage_data
    from specwright.widgets.usage_data import Filters
    from specwright.widgets.usage_view import UsageView

    one, two = tmp_path / "work" / "api", tmp_path / "old\x1b[2J\u202e" / "api"
    for root, cost in ((one, 0.5), (two, 0.25)):
        _seed_shipped_chunk(store, root, "Add tests", (cost,))
    seen: list[Filters] = []

    def render(f: Filters) -> list[tuple[go.Figure, str]]:
        seen.append(f)
        return []

    view = UsageView(render, usage_data.project_choices(store))
    shown = f"api ({tmp_path}/old?[2J?/api)"
    assert list(view.project.options) == [
        ("(all projects)", "(all projects)"),
        (shown, str(two)),
        (f"api ({one})", str(one)),
    ]
    view.project.value = str(two)
    assert seen[-1].project == str(two)
    (bar,) = usage_data.cost_per_spec(store, seen[-1]).data
    assert list(bar.x) == [0.25]
    by_project = usage_data.cost_per_day(store, Filters(group_by="project"))
    names = {t.name for t in by_project.data}  # two series, each named with (the start of) its root
    assert len(names) == 2 and all(n.startswith(f"api ({tmp_path}/") for n in names), names
