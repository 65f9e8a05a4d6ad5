"""Journals: written before the database, replayable into the same rows, tolerant of torn lines."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from specwright import catalog
from specwright.journal import Journal
from specwright.model import TextEvent, ToolCall, ToolResult, Usage, UsageEvent
from specwright.recorder import ExecutionRecorder
from specwright.store import Store
from tests.conftest import CliResult

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


_FULL_DISK_CHILD = """
import resource, signal, sys
from specwright.journal import dumps
from specwright.store import Store
store, pid = Store(sys.argv[1]), sys.argv[2]
row = store.query_dicts("SELECT * FROM projects WHERE id = ?", [pid])[0]
ops = [Store.op_update("projects", {"id": pid}, {"name": "renamed"}),
       Store.op_insert("projects", row)]  # its id again: the database refuses the batch
path = store.journal.path_for("catalog")
room = path.stat().st_size + len("".join(dumps(op) + "\\n" for op in ops).encode())
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
resource.setrlimit(resource.RLIMIT_FSIZE, (room, room))  # the batch fits, nothing after it
try:
    store.write(ops)
except Exception as exc:
    print(type(exc).__name__, exc)
"""


def test_a_refused_batch_whose_abort_mark_cannot_be_written_is_not_replayed(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The disk is full once a batch is journaled: the database refuses it and the abort mark
    cannot be appended either. The database's error is the one raised, and the batch is not
    replayed by a rebuild (its lines are blanked in place)."""
    import subprocess
    import sys

    project = catalog.ensure_project(store, tmp_path)
    store.release()
    child = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_CHILD, str(store.path), project.id],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.stdout.startswith("ConstraintException"), child.stdout + child.stderr
    assert store.query("SELECT name FROM projects") == [(project.name,)]
    rebuilt = tmp_path / "rebuilt.duckdb"
    with caplog.at_level(logging.WARNING):
        store.rebuild_into(rebuilt)
    assert _dump(Store(rebuilt)) == _dump(store)
    assert "refuses" not in caplog.text


_FULL_DISK_DELETE = """
import resource, signal, sys
from specwright import catalog
from specwright.store import Store
store = Store(sys.argv[1])
room = store.journal.path_for("catalog").stat().st_size + 4096  # the deletes' ops fit
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
resource.setrlimit(resource.RLIMIT_FSIZE, (room, room))  # its 3,000 events' deletes do not
try:
    catalog.delete_spec(store, sys.argv[2], force=True)
except Exception as exc:
    print(type(exc).__name__, exc)
"""


def test_a_spec_delete_the_disk_cannot_commit_is_not_replayed(store: Store, tmp_path: Path) -> None:
    """`spec delete --force` journals its deletes inside a transaction whose COMMIT then fails
    (a full disk): the spec stays, the error says the database could not be written, and a
    rebuild keeps the spec and its history instead of replaying the deletes."""
    import subprocess
    import sys

    project = catalog.ensure_project(store, tmp_path)
    spec = catalog.create_spec(store, project, "Keep me", "body")
    chunk = catalog.add_chunk(store, spec, "A")
    with ExecutionRecorder(
        store, role="executor", backend="scripted", spec_id=spec.id, chunk_id=chunk.id
    ) as rec:
        for i in range(3000):
            rec.on_event(TextEvent(f"line {i}"))
        rec.finish(status="ok")
    store.release()
    child = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_DELETE, str(store.path), spec.id],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.stdout.startswith("StoreError") and "cannot write the database" in child.stdout
    assert store.query("SELECT count(*) FROM events") == [(3000,)]
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


@pytest.mark.parametrize("folder", ["data", "o'brien"])
def test_rebuild_carries_imported_usage_over(tmp_path: Path, folder: str) -> None:
    """Imported usage is carried over from the old file, also from one in ``/home/o'brien/``:
    the rebuild attached it with the path pasted into the SQL, and failed with a parser error."""
    from specwright.model import new_id, utcnow

    store = Store(tmp_path / folder / "specwright.duckdb")
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


@pytest.mark.parametrize("output", [False, True])
def test_cli_db_rebuild_refuses_a_database_of_a_newer_specwright(
    tmp_path: Path, cli: Callable[..., CliResult], output: bool
) -> None:
    """An older Specwright (another venv, an old notebook kernel) rebuilt a newer one's database
    into its own older schema, exit 0: the imported usage was gone from the live file (it could
    not read it to carry it over: a warning only) and the newer journal lines were refused."""
    import duckdb

    from specwright import keeper
    from specwright import store as store_mod
    from specwright.model import new_id, utcnow

    db = tmp_path / "db" / "specwright.duckdb"
    store = Store(db)
    _populate(store, tmp_path)
    with store.connect() as conn:
        conn.execute(
            "INSERT INTO usage_records (id, source, dedup_key, ts, input_tokens) "
            "VALUES (?, 'claude-code', 'm1:r1', ?, 42)",
            [new_id(), utcnow()],
        )
    keeper.close()
    conn = duckdb.connect(str(db))
    conn.execute("INSERT INTO schema_version VALUES (999, 'from the future', now()::TIMESTAMP)")
    conn.close()
    store_mod._migrated.clear()
    store_mod._journal_roots.clear()
    target = tmp_path / "out.duckdb"
    result = cli("--db", str(db), "db", "rebuild", *(["--output", str(target)] if output else []))
    assert result.code == 2, result.out
    assert "schema is version 999, newer than this Specwright" in result.err
    assert not target.exists() and not Path(str(db) + ".bak").exists()
    keeper.close()
    conn = duckdb.connect(str(db), read_only=True)
    assert conn.execute("SELECT input_tokens FROM usage_records").fetchall() == [(42,)]
    conn.close()


def test_cli_rebuild_output_is_a_database_with_its_own_journal(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    """``db rebuild --output`` recorded the original's journal as the copy's: what was written
    into the copy went into the original's journal (its rebuild then had the copy's specs), and
    a copy of a read-only database could not be written at all."""
    db, copy = tmp_path / "db" / "specwright.duckdb", tmp_path / "out" / "copy.duckdb"
    _populate(Store(db), tmp_path)
    assert cli("--db", str(db), "db", "rebuild", "--output", str(copy)).code == 0
    assert (tmp_path / "out" / "copy.journal" / "catalog.jsonl").is_file()
    assert cli("--db", str(copy), "-C", str(tmp_path), "spec", "new", "Only in the copy").code == 0

    def titles(path: Path) -> list[str]:
        result = cli("--db", str(path), "db", "rebuild")
        assert result.code == 0, result.err
        return sorted(r[0] for r in Store(path).query("SELECT title FROM specs"))

    assert titles(db) == ["Rebuild me"]
    assert titles(copy) == ["Only in the copy", "Rebuild me"]
    again = cli("--db", str(db), "db", "rebuild", "--output", str(tmp_path / "out" / "b.duckdb"))
    assert again.code == 0  # the same folder, another name: another journal (b.journal)
    taken = cli("--db", str(db), "db", "rebuild", "--output", str(tmp_path / "out" / "copy.db"))
    assert taken.code == 2 and "copy.journal: already exists" in taken.err


@pytest.mark.parametrize("what", ["directory", "text file"])
def test_cli_db_rebuild_refuses_what_is_no_database(
    tmp_path: Path, cli: Callable[..., CliResult], what: str
) -> None:
    """``--db`` naming a folder (an export, ``data`` for ``data/specwright.duckdb``) or a text
    file (``data/report.html``) beside a ``journal/``: the rebuild moved it to ``<name>.bak``
    and put a database of that journal, another database's, in its place."""
    _populate(Store(tmp_path / "specwright.duckdb"), tmp_path)
    if what == "directory":
        wrong, kept = tmp_path / "exports", tmp_path / "exports" / "manifest.json"
        wrong.mkdir()
        kept.write_text("{}")
    else:
        wrong = kept = tmp_path / "report.html"
        wrong.write_text("<p>caf\u00e9</p>\n" * 1000, encoding="utf-8")  # a character cut at 4 KB
    result = cli("--db", str(wrong), "db", "rebuild")
    assert result.code == 2
    expected = "a folder, not a database file" if what == "directory" else "a text file, not a"
    assert f"{wrong}: {expected}" in result.err
    assert kept.is_file() and not Path(f"{wrong}.bak").exists()


# --- which journal is a database's own ------------------------------------------------------


def _forget_journals() -> None:
    """As if in a new process: nothing read from any database yet."""
    from specwright import keeper
    from specwright import store as store_mod

    keeper.close()
    store_mod._migrated.clear()
    store_mod._journal_roots.clear()


def _recorded_journal(db: Path) -> list[tuple]:
    return Store(db).query("SELECT key, value FROM store_meta ORDER BY key")


def test_two_databases_in_one_folder_rebuild_only_their_own_rows(tmp_path: Path) -> None:
    folder = tmp_path / "x"
    a, b = Store(folder / "a.duckdb"), Store(folder / "b.duckdb")
    (tmp_path / "pa").mkdir()
    (tmp_path / "pb").mkdir()
    _populate(a, tmp_path / "pa")
    _populate(b, tmp_path / "pb")
    assert (a.journal.root, b.journal.root) == (folder / "a.journal", folder / "b.journal")
    for name, store in (("a", a), ("b", b)):
        rebuilt = tmp_path / f"{name}-rebuilt.duckdb"
        store.rebuild_into(rebuilt)
        assert _dump(Store(rebuilt)) == _dump(store)
        roots = Store(rebuilt).query("SELECT root FROM projects")
        assert roots == [(str((tmp_path / f"p{name}").resolve()),)]


def test_cli_rebuild_of_one_database_leaves_out_its_neighbours_specs(
    tmp_path: Path,
    cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reported case: ``SPECWRIGHT_DB=/tmp/x/a.duckdb`` and ``/tmp/x/b.duckdb``, each with a
    spec, then ``db rebuild`` of ``a``; the swapped-in database keeps journaling into
    ``a.journal``, so a second rebuild still has everything of ``a`` and nothing of ``b``."""
    folder = tmp_path / "x"
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv("SPECWRIGHT_DB", str(folder / f"{name}.duckdb"))
        result = cli("-C", str(tmp_path / name), "spec", "new", f"Spec {name}")
        assert result.code == 0, result.err

    def titles() -> list[tuple]:
        return Store(folder / "a.duckdb").query("SELECT title FROM specs ORDER BY title")

    monkeypatch.setenv("SPECWRIGHT_DB", str(folder / "a.duckdb"))
    assert cli("-C", str(tmp_path / "a"), "--json", "db", "rebuild").code == 0
    assert titles() == [("Spec a",)]
    assert cli("-C", str(tmp_path / "a"), "spec", "new", "After the rebuild").code == 0
    assert _recorded_journal(folder / "a.duckdb") == [("journal_dir", "a.journal")]
    _forget_journals()  # the next process reads the record of the swapped-in database
    result = cli("-C", str(tmp_path / "a"), "--json", "db", "rebuild")
    assert result.code == 0, result.err
    assert json.loads(result.out)["ops"] == 3  # a's project and its two specs
    assert titles() == [("After the rebuild",), ("Spec a",)]


def _database_of_schema_8(db: Path, journal: Path, tmp_path: Path) -> None:
    """A database as Specwright made it before migration 9: migrations 1..8 applied the way
    ``Store._migrate`` did, and every op journaled under the shared ``journal/`` and then
    applied (what ``Store.write`` did)."""
    import shutil

    import duckdb

    from specwright.journal import apply_ops
    from specwright.migrations import MIGRATIONS, STORE_META_VERSION

    scratch = Store(tmp_path / "scratch" / "specwright.duckdb")
    (tmp_path / "old-project").mkdir()
    _populate(scratch, tmp_path / "old-project")
    shutil.copytree(scratch.journal.root, journal)
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = duckdb.connect(str(db))
    try:
        conn.execute(
            "CREATE TABLE schema_version "
            "(version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"
        )
        for migration in MIGRATIONS:
            if migration.version >= STORE_META_VERSION:
                break
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version VALUES (?, ?, now()::TIMESTAMP)",
                [migration.version, migration.name],
            )
        ops = list(Journal(journal).replay_order())
        # today's recorder writes columns later migrations added: not in rows written then
        known = set(conn.execute("SELECT table_name, column_name FROM duckdb_columns()").fetchall())
        for op in ops:
            for part in ("row", "set"):
                if part in op:
                    op[part] = {k: v for k, v in op[part].items() if (op["table"], k) in known}
        apply_ops(conn, ops)
    finally:
        conn.close()


def test_a_database_from_before_schema_9_keeps_the_shared_journal(tmp_path: Path) -> None:
    """An existing ``a.duckdb`` journaled into ``journal/`` beside it: it keeps doing so after
    the upgrade (nothing already journaled is lost to a rebuild), while a database created next
    to it now gets a journal of its own."""
    folder = tmp_path / "x"
    _database_of_schema_8(folder / "a.duckdb", folder / "journal", tmp_path)
    _forget_journals()
    old = Store(folder / "a.duckdb")
    before = _dump(old)
    assert len(before["events"]) == 4
    assert old.journal.root == folder / "journal"
    assert _recorded_journal(folder / "a.duckdb") == [("journal_dir", "journal")]
    project = catalog.ensure_project(old, tmp_path / "old-project")
    catalog.create_spec(old, project, "After the upgrade")
    assert "After the upgrade" in (folder / "journal" / "catalog.jsonl").read_text()
    (tmp_path / "new-project").mkdir()
    _populate(Store(folder / "b.duckdb"), tmp_path / "new-project")
    assert Store(folder / "b.duckdb").journal.root == folder / "b.journal"

    old.rebuild_into(tmp_path / "rebuilt.duckdb")
    rebuilt = _dump(Store(tmp_path / "rebuilt.duckdb"))
    assert rebuilt == _dump(old)
    assert len(rebuilt["specs"]) == len(before["specs"]) + 1
    assert Store(tmp_path / "rebuilt.duckdb").journal.root == folder / "journal"


def test_the_default_database_keeps_data_journal(
    tmp_path: Path,
    cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The default ``data/specwright.duckdb`` journals into ``data/journal/``, as README says,
    before and after ``db rebuild``."""
    monkeypatch.delenv("SPECWRIGHT_DB")
    project = tmp_path / "proj"
    project.mkdir()
    data = project / "data"
    assert cli("-C", str(project), "spec", "new", "Default").code == 0
    assert (data / "journal" / "catalog.jsonl").exists()
    assert not list(data.glob("*.journal"))
    assert _recorded_journal(data / "specwright.duckdb") == [("journal_dir", "journal")]
    assert cli("-C", str(project), "db", "rebuild").code == 0
    _forget_journals()
    assert Store(data / "specwright.duckdb").journal.root == data / "journal"
    assert _recorded_journal(data / "specwright.duckdb") == [("journal_dir", "journal")]


def test_a_damaged_database_is_rebuilt_from_its_own_journal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Rebuilding is for databases that cannot be read: then its own journal is the one beside
    it (``<stem>.journal/`` when there is one), not the neighbours' shared ``journal/``."""
    folder = tmp_path / "x"
    (tmp_path / "pa").mkdir()
    (tmp_path / "pb").mkdir()
    a = Store(folder / "a.duckdb")
    _populate(a, tmp_path / "pa")
    before = _dump(a)
    _populate(Store(folder / "b.duckdb", journal_dir=folder / "journal"), tmp_path / "pb")
    _forget_journals()
    (folder / "a.duckdb").write_text("this is not a database\n" * 100)
    damaged = Store(folder / "a.duckdb")
    with caplog.at_level(logging.WARNING):
        assert damaged.journal.root == folder / "a.journal"
        damaged.rebuild_into(tmp_path / "rebuilt.duckdb")
    assert "cannot read which journal is its own" in caplog.text
    assert _dump(Store(tmp_path / "rebuilt.duckdb")) == before
