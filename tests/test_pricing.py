"""Prices: genai-prices with Anthropic semantics, 1-hour cache writes, tiers, overrides, unknowns."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from specwright.config import Price
from specwright.model import Usage
from specwright.pricing import (
    UnknownPriceWarning,
    compute_cost,
    normalize_provider,
    rates_for,
    sql_cost,
)
from specwright.store import Store
from tests.support_usage import write_claude_corpus


def close(a: float | None, b: float) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=1e-9)


def test_sonnet_list_prices_with_5m_and_1h_cache_writes() -> None:
    # 100 in @3, 80 out @15, 400 5m writes @3.75, 600 1h writes @6, 2000 reads @0.30 ($/MTok)
    usage = Usage(
        input_tokens=100, output_tokens=80, cache_read_tokens=2000, cache_write_tokens=1000
    )
    cost = compute_cost(usage, "claude-sonnet-4-5-20250929", cache_write_1h_tokens=600)
    assert close(cost, (100 * 3 + 80 * 15 + 400 * 3.75 + 600 * 6 + 2000 * 0.3) / 1e6)


@pytest.mark.parametrize(
    ("model", "inp", "out", "cw", "cw1h", "cr"),
    [
        ("claude-opus-4-5-20251101", 5, 25, 6.25, 10, 0.5),
        ("claude-haiku-4-5-20251001", 1, 5, 1.25, 2, 0.1),
        ("claude-sonnet-4-5-20250929", 3, 15, 3.75, 6, 0.3),
    ],
)
def test_rates_match_the_published_table(
    model: str, inp: float, out: float, cw: float, cw1h: float, cr: float
) -> None:
    r = rates_for(model)
    assert r is not None
    assert (r.input, r.output, r.cache_write, r.cache_write_1h, r.cache_read) == (
        inp,
        out,
        cw,
        cw1h,
        cr,
    )


def test_long_context_tier_applies_to_the_whole_request() -> None:
    # 150k input + 60k cache read = 210k prompt > 200k: every token at the tier rate
    usage = Usage(input_tokens=150_000, output_tokens=1_000, cache_read_tokens=60_000)
    cost = compute_cost(usage, "claude-sonnet-4-5-20250929")
    assert close(cost, (150_000 * 6 + 1_000 * 22.5 + 60_000 * 0.6) / 1e6)
    under = compute_cost(Usage(input_tokens=200_000), "claude-sonnet-4-5-20250929")
    assert close(under, 200_000 * 3 / 1e6)


def test_glm_goes_to_zai_international_prices_and_config_overrides_win() -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert normalize_provider(None, "glm-4.7") == "zai"
    assert close(compute_cost(usage, "glm-4.7"), 0.60 + 2.20)
    assert close(compute_cost(usage, "glm-4.6", provider="zai-coding-plan"), 0.60 + 2.20)
    # Claude Code (an executor, or the planner's Messages API) pointed at Z.ai: still Z.ai's price
    assert close(compute_cost(usage, "glm-4.7", provider="anthropic"), 0.60 + 2.20)
    overrides = {"glm-4.7": Price(input=1.0, output=2.0, cache_read=0.1)}
    assert close(compute_cost(usage, "glm-4.7", overrides=overrides), 3.0)
    provider_bound = {"glm-4.7": Price(input=9.0, output=9.0, provider="openrouter")}
    assert close(compute_cost(usage, "glm-4.7", provider="zai", overrides=provider_bound), 2.8)


def test_unknown_model_is_none_with_a_warning_never_zero() -> None:
    usage = Usage(input_tokens=10, output_tokens=10)
    with pytest.warns(UnknownPriceWarning, match="local-llama-unpriced"):
        assert compute_cost(usage, "local-llama-unpriced") is None
    # no tokens at all cost nothing, whatever the model
    assert compute_cost(Usage(), "local-llama-unpriced") == 0.0
    priced = compute_cost(
        usage,
        "local-llama-unpriced",
        overrides={"local-llama-unpriced": Price(input=0.0, output=0.0)},
    )
    assert priced == 0.0


def test_an_agents_unpriced_model_name_is_warned_bounded_on_one_line() -> None:
    """The model an agent reports is its text: a huge name with terminal escapes is warned
    about in a short line without them."""
    model = "agent-\x1b]0;pwned\x07" + "X" * 50_000
    with pytest.warns(UnknownPriceWarning) as caught:
        assert compute_cost(Usage(input_tokens=10), model) is None
    (message,) = [str(w.message) for w in caught]
    assert "agent-" in message and len(message) < 400
    assert "\x1b" not in message and "\x07" not in message


def test_sql_cost_equals_python_cost() -> None:
    import duckdb

    r = rates_for("claude-sonnet-4-5-20250929")
    assert r is not None
    con = duckdb.connect()
    row = r.row()
    con.execute(
        "CREATE TABLE p AS SELECT " + ", ".join(f"? AS {k}" for k in row), list(row.values())
    )
    cases = [(100, 80, 2000, 400, 600), (150_000, 1000, 60_000, 0, 0), (0, 5, 0, 0, 0)]
    for i, o, cr, c5, c1 in cases:
        got = con.execute(
            f"SELECT {sql_cost('p', 'u')} FROM p, (SELECT ?::BIGINT AS input_tokens, "
            "?::BIGINT AS output_tokens, ?::BIGINT AS cache_read_tokens, "
            "?::BIGINT AS cache_write_5m_tokens, ?::BIGINT AS cache_write_1h_tokens) u",
            [i, o, cr, c5, c1],
        ).fetchall()[0][0]
        assert close(got, r.cost(i, o, cr, c5, c1))


def test_recorder_keeps_reported_and_computed_cost(store) -> None:  # type: ignore[no-untyped-def]
    from specwright.recorder import ExecutionRecorder

    usage = Usage(
        input_tokens=1000, output_tokens=100, cost_usd=0.5, model="claude-haiku-4-5-20251001"
    )
    with ExecutionRecorder(store, role="executor", backend="claude_code") as rec:
        rec.finish(status="ok", usage=usage)
    row = store.query_dicts(
        "SELECT cost_usd, cost_source, reported_cost_usd, computed_cost_usd "
        "FROM executions WHERE id = ?",
        [rec.id],
    )[0]
    assert row["cost_source"] == "reported" and row["cost_usd"] == 0.5
    assert close(row["computed_cost_usd"], (1000 * 1 + 100 * 5) / 1e6)

    with ExecutionRecorder(
        store, role="planner", backend="api", model="claude-haiku-4-5-20251001"
    ) as rec2:
        rec2.finish(status="ok", usage=Usage(input_tokens=1000, output_tokens=100))
    row = store.query_dicts(
        "SELECT cost_usd, cost_source, reported_cost_usd FROM executions WHERE id = ?", [rec2.id]
    )[0]
    assert row["cost_source"] == "computed" and row["reported_cost_usd"] is None
    assert close(row["cost_usd"], 0.0015)

    with ExecutionRecorder(
        store, role="executor", backend="command", model="mystery-model-x"
    ) as rec3:
        rec3.finish(status="ok", usage=Usage(input_tokens=10, output_tokens=10))
    row = store.query_dicts("SELECT cost_usd, cost_source FROM executions WHERE id = ?", [rec3.id])[
        0
    ]
    assert row == {"cost_usd": None, "cost_source": None}


_FIRST_INGEST = """
import json, sys
from pathlib import Path
from specwright import pricing
from specwright.store import Store
from specwright.usage import claude
assert "genai_prices" not in sys.modules, "imported before the ingest: nothing to preload"
result = claude.ingest(Store(Path(sys.argv[1])), [Path(sys.argv[2])])
print(json.dumps({"preloaded": pricing._preloading is not None, "imported": result.imported}))
"""


def test_a_first_ingest_in_a_new_process_prices_every_record_while_the_library_loads(
    tmp_path: Path,
) -> None:
    """A first ingest starts importing genai-prices on a thread while DuckDB reads the logs; the
    lookups that follow wait for it and price every record as ``rates_for`` does."""
    info = write_claude_corpus(tmp_path / "claude", sessions=3, turns=25, days=2, seed=5)
    db = tmp_path / "db.duckdb"
    out = subprocess.run(
        [sys.executable, "-c", _FIRST_INGEST, str(db), str(tmp_path / "claude" / "projects")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    ran = json.loads(out.stdout)
    assert ran["preloaded"] and ran["imported"] > 0
    rows = Store(db).query(
        "SELECT model, input_tokens, output_tokens, cache_write_5m_tokens, cache_write_1h_tokens,"
        " cache_read_tokens, computed_cost_usd FROM usage_records"
    )
    assert len(rows) == ran["imported"] and len({r[0] for r in rows}) > 1, info.files
    for model, inp, outp, w5, w1, read, cost in rows:
        if inp + outp + w5 + w1 + read == 0:  # e.g. Claude Code's "<synthetic>" replies
            assert cost == 0.0, model
            continue
        rates = rates_for(model, "anthropic")
        assert rates is not None and cost is not None, model
        assert math.isclose(cost, rates.cost(inp, outp, read, w5, w1), rel_tol=1e-12), model
