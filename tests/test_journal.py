"""Journals: written before the database, replayable into the same rows, tolerant of torn lines."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from specwright import catalog
from specwright.model import TextEvent, ToolCall, ToolResult, Usage, UsageEvent
from specwright.recorder import ExecutionRecorder
from specwright.store import Store

TABLES = ("projects", "specs", "chunks", "chunk_deps", "runs", "executions", "events")


def _dump(store: Store) -> dict[str, list[tuple]]:
    return {t: store.query(f"SELECT * FROM {t} ORDER BY ALL") for t in TABLES}


def _populate(store: Store, root: Path) -> str:
    project = catalog.ensure_project(store, root)
    spec = catalog.create_spec(store, project, "Rebuild me", "body")
    a = catalog.add_chunk(store, spec, "A", files=["a.py"])
    catalog.add_chunk(store, spec, "B", depends_on=[a.id])
    catalog.update_chunk(store, a.id, status="shipped", summary="done")
    with ExecutionRecorder(
        store, role="executor", backend="scripted", spec_id=spec.id, chunk_id=a.id
    ) as rec:
        rec.on_event(TextEvent("hello"))
        rec.on_event(ToolCall("c1", "Write", {"file_path": "a.py"}))
        rec.on_event(ToolResult("c1", "ok"))
        rec.on_event(UsageEvent(Usage(10, 5, cost_usd=0.01), final=True))
        rec.finish(status="ok", usage=Usage(10, 5, cost_usd=0.01, model="m"))
    doomed = catalog.create_spec(store, project, "Doomed")
    catalog.add_chunk(store, doomed, "X")
    catalog.delete_spec(store, doomed.id)
    return rec.id


def test_rebuild_gives_the_same_rows(store: Store, tmp_path: Path) -> None:
    _populate(store, tmp_path)
    rebuilt = tmp_path / "rebuilt.duckdb"
    store.rebuild_into(rebuilt)
    assert _dump(Store(rebuilt)) == _dump(store)
    assert len(_dump(store)["events"]) == 4


def test_a_write_the_database_refuses_is_not_replayed(store: Store, tmp_path: Path) -> None:
    """Ops are journaled before the database sees them; ops it refuses (here an id that is no
    UUID) are marked aborted, so ``db rebuild`` still gives the same rows."""
    import duckdb

    _populate(store, tmp_path)
    project = catalog.ensure_project(store, tmp_path)
    with pytest.raises(duckdb.ConversionException):
        catalog.create_spec(store, project, "Bad id", spec_id="not-a-uuid")
    assert "not-a-uuid" in store.journal.path_for("catalog").read_text()
    rebuilt = tmp_path / "rebuilt.duckdb"
    store.rebuild_into(rebuilt)
    assert _dump(Store(rebuilt)) == _dump(store)


def test_events_reach_the_journal_before_the_database(store: Store, tmp_path: Path) -> None:
    rec = ExecutionRecorder(store, role="executor", backend="scripted", flush_interval_s=3600)
    rec.start()
    rec.on_event(TextEvent("first"))
    journal = store.journal.path_for(rec.id).read_text()
    assert '"text":"first"' in journal
    assert store.query("SELECT count(*) FROM events")[0][0] == 0  # not flushed yet
    rec.finish(status="ok")
    assert store.query("SELECT count(*) FROM events")[0][0] == 1


def test_torn_last_line_is_skipped_with_a_warning(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    exec_id = _populate(store, tmp_path)
    path = store.journal.path_for(exec_id)
    with path.open("ab") as fh:  # a process killed mid-write leaves half a line
        fh.write(b'{"t": 1, "op": "insert", "table": "events", "row": {"id": "01')
    with caplog.at_level(logging.WARNING):
        store.rebuild_into(tmp_path / "r.duckdb")
    assert "torn (incomplete) last journal line" in caplog.text
    assert _dump(Store(tmp_path / "r.duckdb")) == _dump(store)


def test_cli_db_rebuild_replaces_the_database(tmp_path: Path, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "db" / "specwright.duckdb"
    store = Store(db)
    _populate(store, tmp_path)
    before = _dump(store)
    result = cli("-C", str(tmp_path), "--json", "db", "rebuild")
    assert result.code == 0, result.err
    assert Path(str(db) + ".bak").exists()
    assert _dump(Store(db)) == before


def test_rebuild_carries_imported_usage_over(store: Store, tmp_path: Path) -> None:
    from specwright.model import new_id, utcnow

    _populate(store, tmp_path)
    with store.connect() as conn:  # imports are bulk writes, not journaled
        conn.execute(
            "INSERT INTO usage_records (id, source, dedup_key, ts, model, input_tokens) "
            "VALUES (?, 'claude-code', 'm1:r1', ?, 'claude-sonnet-4-5', 42)",
            [new_id(), utcnow()],
        )
    rebuilt = tmp_path / "rebuilt.duckdb"
    store.rebuild_into(rebuilt)
    assert Store(rebuilt).query("SELECT dedup_key, input_tokens FROM usage_records") == [
        ("m1:r1", 42)
    ]
    assert _dump(Store(rebuilt)) == _dump(store)
