"""The DuckDB store: migrations, CRUD, refusal to delete history, locking."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from specwright import catalog
from specwright.errors import NotFoundError, StoreError, StoreLockedError, ValidationError
from specwright.migrations import latest_version
from specwright.model import new_id, utcnow
from specwright.store import Store, resolve_db_path


def test_migrations_apply_once_and_are_recorded(tmp_path: Path) -> None:
    store = Store(tmp_path / "a.duckdb")
    assert store.migrate() == list(range(1, latest_version() + 1))
    assert store.migrate() == []
    assert store.schema_version() == latest_version()
    tables = {r[0] for r in store.query("SELECT table_name FROM information_schema.tables")}
    assert {
        "projects",
        "specs",
        "spec_questions",
        "chunks",
        "chunk_deps",
        "runs",
        "executions",
        "events",
        "verifications",
        "reviews",
        "usage_records",
        "usage_snapshots",
        "prices",
        "schema_version",
    } <= tables


def test_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.duckdb"
    Store(path).migrate()
    import duckdb

    conn = duckdb.connect(str(path))
    conn.execute("INSERT INTO schema_version VALUES (999, 'from the future', now()::TIMESTAMP)")
    conn.close()
    from specwright import store as store_mod

    store_mod._migrated.clear()
    with pytest.raises(StoreError, match="schema is version 999, newer than this Specwright"):
        Store(path).query("SELECT 1")


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.duckdb"
    path.write_text("this is not a database\n" * 100)
    with pytest.raises(StoreError, match=r"junk\.duckdb"):
        Store(path).query("SELECT 1")


def test_db_path_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPECWRIGHT_DB")
    assert resolve_db_path(tmp_path) == tmp_path / "data" / "specwright.duckdb"
    monkeypatch.setenv("SPECWRIGHT_DB", str(tmp_path / "env.duckdb"))
    assert resolve_db_path(tmp_path) == tmp_path / "env.duckdb"
    assert resolve_db_path(tmp_path, str(tmp_path / "flag.duckdb")) == tmp_path / "flag.duckdb"


def test_spec_and_chunk_crud(store: Store, tmp_path: Path) -> None:
    project = catalog.ensure_project(store, tmp_path)
    assert catalog.ensure_project(store, tmp_path) == project
    spec = catalog.create_spec(store, project, "Add login", "body")
    twin = catalog.create_spec(store, project, "Add login")
    assert (spec.slug, twin.slug) == ("add-login", "add-login-2")
    a = catalog.add_chunk(
        store, spec, "Model", "write the model", files=["m.py"], acceptance=["tests pass"]
    )
    b = catalog.add_chunk(store, spec, "API", depends_on=[a.id])
    c = catalog.add_chunk(store, spec, "UI", depends_on=["1", "2"])
    chunks = catalog.list_chunks(store, spec.id)
    assert [x.title for x in chunks] == ["Model", "API", "UI"]
    assert chunks[0].files == ("m.py",) and chunks[0].acceptance == ("tests pass",)
    assert chunks[2].depends_on == (a.id, b.id)
    assert catalog.get_chunk(store, "add-login:3").id == c.id
    assert catalog.get_spec(store, spec.id[:13]).id == spec.id
    catalog.update_chunk(store, a.id, status="shipped", iterations=2)
    assert catalog.get_chunk(store, a.id).status == "shipped"


def test_dependency_cycle_is_refused(store: Store, tmp_path: Path) -> None:
    spec = catalog.create_spec(store, catalog.ensure_project(store, tmp_path), "S")
    a = catalog.add_chunk(store, spec, "A")
    b = catalog.add_chunk(store, spec, "B", depends_on=[a.id])
    with pytest.raises(ValidationError, match="cycle"):
        catalog.add_dependency(store, a, b)


def test_unknown_references_are_clear(store: Store, tmp_path: Path) -> None:
    spec = catalog.create_spec(store, catalog.ensure_project(store, tmp_path), "S")
    with pytest.raises(NotFoundError, match="spec 'nope'"):
        catalog.get_spec(store, "nope")
    with pytest.raises(NotFoundError, match="depends on '7': spec s has no such chunk"):
        catalog.add_chunk(store, spec, "B", depends_on=["7"])


def _history(store: Store, spec_id: str, chunk_id: str) -> None:
    run_id, exec_id = new_id(), new_id()
    store.write(
        [
            Store.op_insert(
                "runs",
                {
                    "id": run_id,
                    "spec_id": spec_id,
                    "chunk_id": chunk_id,
                    "kind": "chunk",
                    "status": "shipped",
                    "started_at": utcnow(),
                },
            ),
            Store.op_insert(
                "executions",
                {
                    "id": exec_id,
                    "run_id": run_id,
                    "spec_id": spec_id,
                    "chunk_id": chunk_id,
                    "role": "executor",
                    "backend": "scripted",
                    "status": "ok",
                    "started_at": utcnow(),
                },
            ),
            Store.op_insert(
                "events",
                {
                    "id": new_id(),
                    "execution_id": exec_id,
                    "seq": 1,
                    "ts": utcnow(),
                    "type": "text",
                    "text": "hi",
                },
            ),
            Store.op_insert(
                "reviews",
                {
                    "id": new_id(),
                    "run_id": run_id,
                    "chunk_id": chunk_id,
                    "reviewer": "checks",
                    "verdict": "SHIP",
                    "created_at": utcnow(),
                },
            ),
        ]
    )


def test_delete_spec_with_runs_is_refused_then_forced(store: Store, tmp_path: Path) -> None:
    project = catalog.ensure_project(store, tmp_path)
    keep = catalog.create_spec(store, project, "Keep me")
    keep_chunk = catalog.add_chunk(store, keep, "K")
    _history(store, keep.id, keep_chunk.id)
    spec = catalog.create_spec(store, project, "Doomed")
    chunk = catalog.add_chunk(store, spec, "A")
    _history(store, spec.id, chunk.id)

    with pytest.raises(StoreError, match="has 1 run"):
        catalog.delete_spec(store, spec.id)
    assert store.query("SELECT count(*) FROM events")[0][0] == 2  # nothing lost

    counts = catalog.delete_spec(store, spec.id, force=True)
    assert counts["events"] == 1 and counts["runs"] == 1 and counts["chunks"] == 1
    for table in ("events", "executions", "runs", "reviews", "chunks", "specs"):
        assert store.query(f"SELECT count(*) FROM {table}")[0][0] == 1, table


def test_delete_spec_without_runs_needs_no_force(store: Store, tmp_path: Path) -> None:
    spec = catalog.create_spec(store, catalog.ensure_project(store, tmp_path), "Draft")
    catalog.add_chunk(store, spec, "A")
    catalog.delete_spec(store, spec.slug)
    assert store.query("SELECT count(*) FROM chunks")[0][0] == 0


def test_lock_held_too_long_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "locked.duckdb"
    Store(path).migrate()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import duckdb, sys, time
            c = duckdb.connect({str(path)!r})
            print("holding", flush=True)
            sys.stdin.readline()
        """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        with pytest.raises(StoreLockedError, match=r"locked by another process .* more than 0.3s"):
            Store(path, lock_timeout_s=0.3).query("SELECT 1")
    finally:
        holder.communicate("\n", timeout=30)


def test_transaction_rolls_back_on_error(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction() as conn:
        conn.execute("INSERT INTO prices (model, source, updated_at) VALUES ('m', 't', now())")
        raise RuntimeError("boom")
    assert store.query("SELECT count(*) FROM prices")[0][0] == 0


def test_same_row_update_conflict_between_threads_is_retried(store: Store, tmp_path: Path) -> None:
    """A heartbeat thread and the loop update one runs row at once: DuckDB aborts one
    transaction with a write conflict; the store retries it instead of failing the run."""
    import threading

    spec = catalog.create_spec(store, catalog.ensure_project(store, tmp_path), "S")
    run_id = new_id()
    store.insert(
        "runs",
        {
            "id": run_id,
            "spec_id": spec.id,
            "kind": "chunk",
            "status": "running",
            "started_at": utcnow(),
            "iterations": 0,
        },
    )
    holding, release = threading.Event(), threading.Event()

    def loop_thread() -> None:  # the run's end row, not committed yet (it sets heartbeat_at too)
        with store.transaction() as conn:
            conn.execute(
                "UPDATE runs SET iterations = 1, heartbeat_at = now()::TIMESTAMP WHERE id = ?",
                [run_id],
            )
            holding.set()
            release.wait(10)

    other = threading.Thread(target=loop_thread)
    other.start()
    assert holding.wait(10)
    threading.Timer(0.05, release.set).start()
    store.update("runs", {"id": run_id}, {"heartbeat_at": utcnow()})  # conflicts, then retries
    other.join()
    rows = store.query(
        "SELECT iterations, heartbeat_at IS NOT NULL FROM runs WHERE id = ?", [run_id]
    )
    assert rows == [(1, True)]


# --- the journal directory a database records as its own -----------------------------------


def _new_process() -> None:
    """Forget what this process read from databases, as a new process would."""
    from specwright import keeper
    from specwright import store as store_mod

    keeper.close()
    store_mod._migrated.clear()
    store_mod._journal_roots.clear()


def _journal_record(db: Path) -> list[tuple]:
    return Store(db).query("SELECT value FROM store_meta WHERE key = 'journal_dir'")


def test_a_new_database_is_given_its_own_journal_without_being_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Store()`` and ``store.journal`` do not create the database; the record is read once
    per process, and then another ``Store`` of the same file opens nothing to find it."""
    db = tmp_path / "x" / "a.duckdb"
    store = Store(db)
    assert store.journal.root == tmp_path / "x" / "a.journal"
    assert not db.exists()
    catalog.ensure_project(store, tmp_path)
    assert (tmp_path / "x" / "a.journal" / "catalog.jsonl").exists()
    assert not (tmp_path / "x" / "journal").exists()
    assert _journal_record(db) == [("a.journal",)]

    _new_process()
    opened: list[Path] = []
    real_open = Store._open

    def counting_open(self: Store) -> object:
        opened.append(self.path)
        return real_open(self)

    monkeypatch.setattr(Store, "_open", counting_open)
    assert Store(db).journal.root == tmp_path / "x" / "a.journal"
    assert opened == [db]
    assert Store(db).journal.root == tmp_path / "x" / "a.journal"
    assert opened == [db]


def test_an_explicit_journal_dir_wins_and_is_recorded(tmp_path: Path) -> None:
    """Inside the database's folder it is recorded relative (the pair can move together),
    elsewhere absolute; a later ``Store`` without one uses it."""
    inside, outside = tmp_path / "x" / "a.duckdb", tmp_path / "x" / "b.duckdb"
    Store(inside, journal_dir=tmp_path / "x" / "logs" / "a").migrate()
    Store(outside, journal_dir=tmp_path / "elsewhere").migrate()
    assert _journal_record(inside) == [("logs/a",)]
    assert _journal_record(outside) == [(str((tmp_path / "elsewhere").resolve()),)]
    _new_process()
    assert Store(inside).journal.root == tmp_path / "x" / "logs" / "a"
    assert Store(outside).journal.root == tmp_path / "elsewhere"


def test_a_database_rebuilt_elsewhere_records_the_original_journal(tmp_path: Path) -> None:
    original = Store(tmp_path / "x" / "a.duckdb")
    catalog.ensure_project(original, tmp_path)
    target = tmp_path / "other" / "rebuilt.duckdb"
    original.rebuild_into(target)
    assert _journal_record(target) == [(str((tmp_path / "x" / "a.journal").resolve()),)]
    _new_process()
    rebuilt = Store(target)
    assert rebuilt.journal.root == tmp_path / "x" / "a.journal"
    catalog.create_spec(rebuilt, catalog.ensure_project(rebuilt, tmp_path), "Later")
    assert "Later" in rebuilt.journal.path_for("catalog").read_text()


def test_a_database_url_is_refused_where_notebooks_resolve_the_path_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from specwright.store import resolve_db_path

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SPECWRIGHT_DB", "http://127.0.0.1:9/x.duckdb")
    with pytest.raises(
        StoreError, match=re.escape("SPECWRIGHT_DB http://127.0.0.1:9/x.duckdb: expected")
    ):
        resolve_db_path(tmp_path)
    with pytest.raises(
        StoreError, match=re.escape("--db s3://b/x.duckdb: expected a database file path")
    ):
        resolve_db_path(tmp_path, "s3://b/x.duckdb")
    monkeypatch.setenv("SPECWRIGHT_DB", "relative/x.duckdb")
    assert resolve_db_path(tmp_path) == tmp_path.resolve() / "relative" / "x.duckdb"
    assert not (tmp_path / "http:").exists() and not (tmp_path / "s3:").exists()


def test_every_foreign_key_column_is_indexed(tmp_path: Path) -> None:
    """docs/schema.md says so of the public schema; `queue.run_id` (-> runs) had no index."""
    store = Store(tmp_path / "db.duckdb")
    provider_ids = {"call_id", "session_id", "message_id", "request_id"}  # keys of no table here
    columns = store.query(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE ends_with(column_name, '_id')"
    )
    leading = {
        (table, re.search(r"\(\s*\"?(\w+)", sql)[1])  # type: ignore[index]
        for table, sql in store.query("SELECT table_name, sql FROM duckdb_indexes()")
    } | {
        (table, re.search(r"KEY\(\"?(\w+)", text)[1])  # type: ignore[index]
        for table, text in store.query(
            "SELECT table_name, constraint_text FROM duckdb_constraints() "
            "WHERE constraint_type = 'PRIMARY KEY'"
        )
    }
    missing = [f"{t}.{c}" for t, c in columns if c not in provider_ids and (t, c) not in leading]
    assert not missing, missing
