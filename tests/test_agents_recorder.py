"""The recorder's bounds on agent output: truncation keeps the original size, redaction happens
before the cut (no half secret survives), and a huge tool input stays valid JSON."""

from __future__ import annotations

import json
from typing import Any

from specwright.model import TextEvent, ToolCall, ToolResult
from specwright.recorder import MAX_OUTPUT_CHARS, MAX_TEXT_CHARS, ExecutionRecorder
from specwright.redact import Redactor
from tests.support_agents import stored_events, stored_execution


def record(store: Any, *events: Any, secrets: dict[str, str] | None = None) -> list[dict[str, Any]]:
    rec = ExecutionRecorder(
        store, role="executor", backend="command", redactor=Redactor(secrets or {})
    ).start()
    for event in events:
        rec.on_event(event)
    rec.finish(status="ok")
    return stored_events(store, rec.id)


def test_output_at_the_limit_is_kept_whole_and_beyond_it_is_cut(store: Any) -> None:
    exact = "a" * MAX_OUTPUT_CHARS
    big = "b" * (3 * MAX_OUTPUT_CHARS + 7)
    rows = record(store, ToolResult("c1", exact), ToolResult("c2", big))
    assert rows[0]["output"] == exact and rows[0]["output_len"] == MAX_OUTPUT_CHARS
    assert rows[1]["output"].startswith("b" * MAX_OUTPUT_CHARS)
    assert f"{len(big)} chars in all" in rows[1]["output"]
    assert rows[1]["output_len"] == len(big)


def test_a_secret_across_the_cut_is_redacted_not_halved(store: Any) -> None:
    secret = "sk-live-0123456789abcdef"
    text = "x" * (MAX_TEXT_CHARS - 10) + secret + "y" * 100
    rows = record(store, TextEvent(text), ToolResult("c", text), secrets={"API_KEY": secret})
    for value in (rows[0]["text"], rows[1]["output"]):
        assert "sk-live" not in value and "0123456789" not in value
        assert "[REDACTED:" in value  # the marker itself may be cut; the secret is gone


def test_a_huge_tool_input_stays_valid_json(store: Any) -> None:
    rows = record(store, ToolCall("c", "Write", {"file_path": "a.txt", "content": "z" * 500_000}))
    stored = json.loads(rows[0]["input"])
    assert stored["truncated"] is True and stored["length"] > 500_000
    assert len(rows[0]["input"]) < MAX_OUTPUT_CHARS + 1000


def test_one_execution_stores_a_bounded_amount_and_says_what_it_left_out(store: Any) -> None:
    """An agent that prints without end: past the execution's byte bound its lines are counted,
    not stored; usage still is (cost must be complete); a warning event says how many were
    left out; the journal is bounded the same way."""
    from specwright.model import Usage, UsageEvent

    rec = ExecutionRecorder(
        store, role="executor", backend="command", redactor=Redactor({}), max_bytes=100_000
    ).start()
    for i in range(3000):
        rec.on_event(TextEvent(f"line {i} " + "x" * 200))
    rec.on_event(ToolCall("c1", "Bash", {"command": "ls"}))
    rec.on_event(UsageEvent(Usage(10, 5, cost_usd=0.25), final=True))
    rec.finish(status="ok", usage=Usage(10, 5, cost_usd=0.25))
    rows = stored_events(store, rec.id)
    texts = [r for r in rows if r["type"] == "text"]
    assert 100 < len(texts) < 3000 and texts[0]["text"].startswith("line 0 ")
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert [r["cost_usd"] for r in rows if r["type"] == "usage"] == [0.25]
    warning = rows[-1]
    assert warning["type"] == "error" and warning["tool_name"] == "warning"
    kept = len(texts)
    assert warning["text"] == (
        f"output limit: {3000 - kept + 1:,} more events not stored (text {3000 - kept:,}, "
        "tool_call 1); one execution stores its first 97 KB of events"
    )
    journal = store.journal.path_for(rec.id)
    assert journal.stat().st_size < 100_000 + 5_000
    execution = store.query_dicts("SELECT event_count FROM executions WHERE id = ?", [rec.id])
    assert execution[0]["event_count"] == len(rows)


def test_an_unpriced_model_warns_only_when_its_cost_is_really_left_null(
    store: Any, caplog: Any
) -> None:
    """OpenCode reports its cost: the record has it (cost_source reported), so a warning that
    the cost was recorded as NULL would be false. Without a reported cost it is true."""
    from specwright.model import Usage

    rows = {}
    for model, cost in (("unpriced-model-a", 0.0083), ("unpriced-model-b", None)):
        rec = ExecutionRecorder(
            store, role="executor", backend="opencode", model=model, redactor=Redactor({})
        ).start()
        rec.finish(status="ok", usage=Usage(2500, 52, 200, cost_usd=cost, model=model))
        rows[model] = stored_execution(store, rec.id)
    assert (rows["unpriced-model-a"]["cost_usd"], rows["unpriced-model-a"]["cost_source"]) == (
        0.0083,
        "reported",
    )
    assert rows["unpriced-model-b"]["cost_usd"] is None
    said = [r.getMessage() for r in caplog.records if "no price known" in r.getMessage()]
    assert len(said) == 1 and "'unpriced-model-b'" in said[0] and "NULL" in said[0]
