"""A database that this process cannot write (a read-only mount, another user's file): the
reports still read it; a command that writes says so in one line and changes nothing."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult, run_specwright
from tests.support_usage import write_claude_corpus


def _keep_wal(db: Path) -> None:
    """Leave the last writes in the WAL, as a process killed before its checkpoint does."""
    import duckdb

    conn = duckdb.connect(str(db))
    conn.execute("PRAGMA disable_checkpoint_on_shutdown")
    conn.execute("INSERT INTO store_meta VALUES ('read_only_test', 'in the wal')")
    conn.close()
    assert db.with_name(db.name + ".wal").exists()


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    cfg = tmp_path / "claude"
    write_claude_corpus(cfg, sessions=3, turns=12, days=2)
    return cfg / "projects"


def _rounded(value: object) -> object:
    """``value`` (parsed JSON) with every float rounded to 1e-9."""
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _daily(cli: Callable[..., CliResult], db: Path) -> list[dict[str, object]]:
    res = cli("--db", str(db), "usage", "daily", "--json", "-z", "UTC")
    assert res.code == 0, res.err
    return _rounded(json.loads(res.out)["daily"])  # type: ignore[return-value]


def _filled(
    cli: Callable[..., CliResult], folder: Path, logs: Path
) -> tuple[Path, list[dict[str, object]]]:
    """A database in ``folder`` with ``logs`` ingested and a spec; returns it and its daily
    report."""
    db = folder / "specwright.duckdb"
    assert cli("--db", str(db), "ingest", "claude-logs", str(logs)).code == 0
    assert cli("--db", str(db), "spec", "new", "Count words").code == 0
    expected = _daily(cli, db)
    assert expected
    return db, expected


def test_reports_read_a_database_that_cannot_be_written_and_writes_say_why(
    tmp_path: Path, cli: Callable[..., CliResult], unwritable: Callable[[Path], Path], logs: Path
) -> None:
    folder = tmp_path / "shared"
    db, expected = _filled(cli, folder, logs)
    from specwright import keeper

    keeper.close()
    _keep_wal(db)
    ro = unwritable(folder) / db.name

    assert _daily(cli, ro) == expected  # the WAL's writes read too
    listed = cli("--db", str(ro), "spec", "list", "--json")
    assert listed.code == 0, listed.err
    assert [s["title"] for s in json.loads(listed.out)] == ["Count words"]
    status = cli("--db", str(ro), "status")  # from a folder the database holds no project for
    assert status.code == 0, status.err

    more = write_claude_corpus(logs.parent, sessions=1, turns=3, days=1, seed=99, prefix="x")
    assert more.files
    for args in (("ingest", "claude-logs", str(logs)), ("spec", "new", "Another")):
        res = cli("--db", str(ro), *args)
        assert res.code != 0
        assert "Traceback" not in res.err
        (line,) = res.err.strip().splitlines()
        assert str(ro) in line and "can only be read here" in line, line
    assert _daily(cli, ro) == expected
    assert [s["title"] for s in json.loads(cli("--db", str(ro), "spec", "list", "--json").out)] == [
        "Count words"
    ]


def test_a_read_only_database_of_an_older_schema_names_the_migration(
    tmp_path: Path, cli: Callable[..., CliResult], unwritable: Callable[[Path], Path]
) -> None:
    from specwright import keeper
    from specwright.migrations import latest_version
    from specwright.store import Store

    folder = tmp_path / "old"
    db = folder / "specwright.duckdb"
    store = Store(db)
    store.migrate()
    with store.transaction() as conn:  # as a database last written by an older Specwright
        conn.execute("DELETE FROM schema_version WHERE version = ?", [latest_version()])
    keeper.close()
    ro = unwritable(folder) / db.name
    res = cli("--db", str(ro), "usage", "daily")
    assert res.code != 0
    (line,) = res.err.strip().splitlines()
    assert f"schema is version {latest_version() - 1}" in line
    assert "specwright db migrate" in line


def test_rebuild_of_a_read_only_database_goes_to_another_file(
    tmp_path: Path, unwritable: Callable[[Path], Path], logs: Path
) -> None:
    folder = tmp_path / "shared"
    db = folder / "specwright.duckdb"
    env = {"SPECWRIGHT_DB": str(db)}
    assert run_specwright("ingest", "claude-logs", str(logs), env=env).returncode == 0
    assert run_specwright("spec", "new", "Count words", env=env).returncode == 0
    ro = unwritable(folder) / db.name
    env = {"SPECWRIGHT_DB": str(ro)}

    res = run_specwright("db", "rebuild", env=env)
    assert res.returncode != 0
    (line,) = res.stderr.strip().splitlines()
    assert "cannot write beside the database" in line and "--output" in line

    out = tmp_path / "elsewhere" / "rebuilt.duckdb"
    res = run_specwright("db", "rebuild", "--output", str(out), env=env)
    assert res.returncode == 0, res.stderr
    daily = ["usage", "daily", "--json", "-z", "UTC"]
    was = run_specwright(*daily, env=env)
    now = run_specwright(*daily, env={"SPECWRIGHT_DB": str(out)})
    # the imported usage came along (costs summed in another order may differ in the last bit)
    assert _rounded(json.loads(now.stdout)) == _rounded(json.loads(was.stdout))
    specs = run_specwright("spec", "list", "--json", env={"SPECWRIGHT_DB": str(out)})
    assert [s["title"] for s in json.loads(specs.stdout)] == ["Count words"]
    # the copy journals into a copy of the journal of its own: the original's cannot be written
    res = run_specwright("spec", "new", "Later", env={"SPECWRIGHT_DB": str(out)})
    assert res.returncode == 0, res.stderr
    shutil.rmtree(out.parent)


def test_rebuild_output_of_a_read_only_database_of_an_older_schema_keeps_its_usage(
    tmp_path: Path, cli: Callable[..., CliResult], unwritable: Callable[[Path], Path], logs: Path
) -> None:
    """The read-only database could not be migrated to be read, so its imported usage was left
    out of the copy (a warning, exit 0): the copy's reports showed nothing. It is carried from a
    migrated copy of the file now."""
    from specwright import keeper
    from specwright.migrations import latest_version
    from specwright.store import Store

    folder = tmp_path / "old"
    db, expected = _filled(cli, folder, logs)
    with Store(db).transaction() as conn:  # as a database last written by an older Specwright
        conn.execute("DELETE FROM schema_version WHERE version = ?", [latest_version()])
    keeper.close()
    ro = unwritable(folder) / db.name
    out = tmp_path / "elsewhere" / "rebuilt.duckdb"
    res = cli("--db", str(ro), "db", "rebuild", "--output", str(out))
    assert res.code == 0, res.err
    assert _daily(cli, out) == expected
    assert sorted(p.name for p in out.parent.iterdir()) == ["rebuilt.duckdb", "rebuilt.journal"]
