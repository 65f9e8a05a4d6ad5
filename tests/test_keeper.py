"""The database lingers between operations (keeper.py) but never keeps another process out."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from specwright.errors import StoreError
from specwright.store import Store

REPO = Path(__file__).resolve().parent.parent


def _python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def _raw_open_once(path: Path) -> str:
    """What a program that knows nothing of Specwright sees: one plain DuckDB open."""
    p = _python(f"""
        import duckdb
        try:
            duckdb.connect({str(path)!r}).close()
            print("opened")
        except duckdb.IOException as exc:
            print("locked" if "lock" in str(exc).lower() else exc)
    """)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def _store_with_row(path: Path, linger_s: float) -> Store:
    store = Store(path, linger_s=linger_s)
    store.migrate()
    store.write(
        [Store.op_sql("INSERT INTO prices (model, source, updated_at) VALUES ('m', 't', now())")]
    )
    return store


def test_another_specwright_process_is_handed_the_database(tmp_path: Path) -> None:
    path = tmp_path / "db.duckdb"
    store = _store_with_row(path, linger_s=600)
    assert _raw_open_once(path) == "locked"  # it lingers: held between operations
    # A Specwright process that may wait only 20 s gets it (and sees the row) though this one
    # would linger for 10 minutes: it asks by its marker and the holder lets go.
    p = _python(f"""
        from specwright.store import Store
        s = Store({str(path)!r}, lock_timeout_s=20, linger_s=0)
        print(s.query("SELECT count(*) FROM prices WHERE model = 'm'")[0][0])
    """)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "1"
    # and this process gets it back for its next operation
    assert store.query("SELECT count(*) FROM prices")[0][0] == 1


def test_lingering_ends_by_itself_for_other_programs(tmp_path: Path) -> None:
    path = tmp_path / "db.duckdb"
    _store_with_row(path, linger_s=0.2)
    p = _python(f"""
        import duckdb, time
        deadline = time.monotonic() + 30
        while True:
            try:
                c = duckdb.connect({str(path)!r})
                break
            except duckdb.IOException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        print(c.execute("SELECT count(*) FROM prices").fetchall()[0][0])
    """)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "1"


def test_linger_zero_closes_at_once(tmp_path: Path) -> None:
    path = tmp_path / "db.duckdb"
    _store_with_row(path, linger_s=0)
    assert _raw_open_once(path) == "opened"


def test_release_closes_now_and_the_next_use_reopens(tmp_path: Path) -> None:
    path = tmp_path / "db.duckdb"
    store = _store_with_row(path, linger_s=600)
    store.release()
    assert _raw_open_once(path) == "opened"
    assert store.query("SELECT count(*) FROM prices")[0][0] == 1


def test_a_process_killed_while_lingering_loses_no_committed_write(tmp_path: Path) -> None:
    path = tmp_path / "db.duckdb"
    p = _python(f"""
        import os
        from specwright.store import Store
        s = Store({str(path)!r}, linger_s=600)
        s.migrate()
        s.write([Store.op_sql(
            "INSERT INTO prices (model, source, updated_at) VALUES ('kept', 't', now())")])
        os._exit(0)  # no close, no checkpoint: as if killed
    """)
    assert p.returncode == 0, p.stderr
    assert Store(path, linger_s=0).query("SELECT model FROM prices") == [("kept",)]


def test_stale_marker_of_a_dead_process_does_not_stop_lingering(tmp_path: Path) -> None:
    from specwright import keeper

    path = tmp_path / "db.duckdb"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    folder = keeper.wait_dir(path)
    folder.mkdir()
    (folder / f"{dead.stdout.strip()}-1").touch()
    assert not keeper.others_waiting(path)
    assert list(folder.iterdir()) == []  # cleaned up


def test_bad_linger_value_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPECWRIGHT_LINGER", "soon")
    with pytest.raises(
        StoreError, match="SPECWRIGHT_LINGER: expected seconds as a number, got 'soon'"
    ):
        Store(tmp_path / "db.duckdb")


@pytest.mark.parametrize("name", ["SPECWRIGHT_LINGER", "SPECWRIGHT_LOCK_TIMEOUT"])
def test_nan_seconds_are_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    """float() reads 'nan', and a deadline of nan is never reached: the file held for as long
    as the process ran (LINGER), or a lock waited for forever (LOCK_TIMEOUT)."""
    monkeypatch.setenv(name, "nan")
    with pytest.raises(StoreError, match=f"{name}: expected seconds as a number, got 'nan'"):
        Store(tmp_path / "db.duckdb")
