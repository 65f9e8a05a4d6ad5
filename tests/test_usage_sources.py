"""Codex logs, codexbar snapshots (a fake `codexbar` executable), export and merge."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specwright.migrations import latest_version
from specwright.store import Store
from specwright.usage import codex, codexbar
from specwright.usage.exchange import merge
from specwright.usage.export import export
from tests.support_usage import (
    CODEXBAR_USAGE,
    write_claude_corpus,
    write_codex_session,
    write_fake_codexbar,
)


def test_codex_token_counts_subtract_cached_input_and_skip_repeats(
    tmp_path: Path, store: Store
) -> None:
    path, sums = write_codex_session(tmp_path / "codex", turns=4)
    res = codex.ingest(store, [tmp_path / "codex" / "sessions"])
    assert res.imported == 4 and res.duplicates == 0  # the 2 repeated events never reach it
    got = store.query_dicts(
        "SELECT sum(input_tokens) AS i, sum(cache_read_tokens) AS c, sum(output_tokens) AS o, "
        "sum(reasoning_tokens) AS r, any_value(model) AS m, count(computed_cost_usd) AS priced "
        "FROM usage_records WHERE source = 'codex'"
    )[0]
    assert (got["i"], got["c"], got["o"], got["r"]) == (
        sums["input"],
        sums["cached"],
        sums["output"],
        sums["reasoning"],
    )
    assert got["m"] == "gpt-5-codex" and got["priced"] == 4
    snaps = store.query("SELECT count(*) FROM usage_snapshots WHERE source = 'codex-log'")
    assert snaps == [(1,)]
    # the same session archived: same cumulative totals, nothing new; a re-run reads nothing
    archived = tmp_path / "codex" / "archived_sessions"
    archived.mkdir(parents=True)
    archived.joinpath(path.name).write_bytes(path.read_bytes())
    again = codex.ingest(store, codex.codex_roots({"CODEX_HOME": str(tmp_path / "codex")}))
    assert again.imported == 0
    assert codex.ingest(store, [tmp_path / "codex" / "sessions"]).files_read == 0


def test_a_codex_usage_line_whose_time_does_not_parse_is_counted_as_malformed(
    tmp_path: Path, store: Store
) -> None:
    """It counts in no day (ccusage stops the whole report on it): it used to vanish without
    a word; it is reported as a malformed line of its file, and the good lines still count."""
    path, sums = write_codex_session(tmp_path / "codex", turns=2)
    line = json.loads(path.read_text().splitlines()[-1])
    assert line["payload"]["type"] == "token_count"
    line["timestamp"] = "bad-date"
    with path.open("a") as fh:
        fh.write(json.dumps(line, separators=(",", ":")) + "\n")
    res = codex.ingest(store, [tmp_path / "codex" / "sessions"])
    assert res.malformed == 1 and res.malformed_files == {str(path): 1}
    assert res.imported == 2
    got = store.query("SELECT sum(input_tokens), sum(output_tokens) FROM usage_records")
    assert got == [(sums["input"], sums["output"])]


def test_codex_absurd_token_counts_are_not_counted_and_do_not_stop_the_ingest(
    tmp_path: Path, store: Store
) -> None:
    """Counts outside [0, 2**53) read as missing: their differences and sums overflowed BIGINT
    and failed this ingest and every later one."""
    path, sums = write_codex_session(tmp_path / "codex", turns=2)

    def event(last: dict[str, int] | None, total: dict[str, int], minute: int) -> str:
        info = {"total_token_usage": total, "last_token_usage": last}
        return json.dumps(
            {
                "timestamp": f"2025-11-02T11:{minute:02d}:00Z",
                "type": "event_msg",
                "payload": {"type": "token_count", "info": info},
            },
            separators=(",", ":"),
        )

    def usage(inp: int, cached: int, out: int, total: int) -> dict[str, int]:
        return {
            "input_tokens": inp,
            "cached_input_tokens": cached,
            "output_tokens": out,
            "reasoning_output_tokens": 0,
            "total_tokens": total,
        }

    with path.open("a") as fh:
        fh.write(event(usage(2**62, 0, 2**62, 5), usage(1, 0, 1, 10**9), 0) + "\n")
        fh.write(event(None, usage(-(2**63), 2**63 - 1, 1, 10**9 + 1), 1) + "\n")
        fh.write(event(None, usage(1, 0, 1, 2**63 - 1), 2) + "\n")
    res = codex.ingest(store, [tmp_path / "codex" / "sessions"])
    assert res.imported == 2 and res.malformed == 0  # the session's own two turns
    got = store.query("SELECT sum(input_tokens), sum(output_tokens) FROM usage_records")
    assert got == [(sums["input"], sums["output"])]
    # a cumulative total of -2**63 carried to the next run: its difference overflowed there
    with path.open("a") as fh:
        fh.write(event(None, usage(1, 0, 1, -(2**63)), 3) + "\n")
    codex.ingest(store, [tmp_path / "codex" / "sessions"])
    with path.open("a") as fh:
        fh.write(event(None, usage(2, 0, 3, 5), 4) + "\n")
    codex.ingest(store, [tmp_path / "codex" / "sessions"])
    states = store.query('SELECT "offset" FROM usage_ingest_files')
    assert states == [(path.stat().st_size,)]


def test_codexbar_before_and_after_snapshots_give_quota_per_execution(
    tmp_path: Path, store: Store
) -> None:
    from specwright import queries as Q

    fake = write_fake_codexbar(tmp_path / "bin", bump_file=tmp_path / "calls")
    with codexbar.around(store, "0190a0a0-0000-7000-8000-000000000001", str(fake)) as (b, after):
        assert b.payloads and b.warning and "not logged in" in b.warning  # gemini's error
    assert after[0].payloads
    used = Q.quota_per_execution(store)
    codex_primary = used[(used["provider"] == "codex") & (used["window"] == "primary")]
    assert list(codex_primary["used_percent"]) == [1.0]
    assert list(codex_primary["before_percent"]) == [
        CODEXBAR_USAGE[0]["usage"]["primary"]["usedPercent"]
    ]  # type: ignore[index]
    limits = Q.codexbar_limits(store)
    claude = limits[limits["provider"] == "claude"].set_index("window")
    assert claude.loc["primary", "used_percent"] == 41.5 + 1  # the "after" call was bumped
    assert claude.loc["tertiary", "used_percent"] == 5.0
    assert claude.loc["primary", "provider_cost_limit"] == 100.0


def test_ctrl_c_during_an_execution_does_not_wait_for_codexbar_again(
    tmp_path: Path, store: Store
) -> None:
    fake = write_fake_codexbar(tmp_path / "bin", bump_file=tmp_path / "calls")
    execution = "0190a0a0-0000-7000-8000-000000000003"
    with pytest.raises(KeyboardInterrupt), codexbar.around(store, execution, str(fake)) as snaps:
        raise KeyboardInterrupt
    after = snaps[1]
    assert after == [] and (tmp_path / "calls").read_text() == "1"  # the "before" only


def test_codexbar_missing_or_broken_is_a_warning_not_a_crash(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    snap = codexbar.run("usage")
    assert snap.payloads == [] and "not found" in (snap.warning or "")
    monkeypatch.setenv("CODEXBAR_PATH", str(tmp_path / "nope"))
    assert "does not exist" in (codexbar.run("usage").warning or "")
    bad = write_fake_codexbar(tmp_path / "bad", raw_usage="Error: <html>oops")
    snap = codexbar.run("usage", str(bad))
    assert snap.payloads == [] and "not JSON" in (snap.warning or "")
    stored = codexbar.store_snapshot(store, snap)
    assert stored.ids == []
    with codexbar.around(store, "0190a0a0-0000-7000-8000-000000000002", str(bad)):
        pass
    assert store.query("SELECT count(*) FROM usage_snapshots") == [(0,)]


def test_ingest_codexbar_cli_without_codexbar_says_so_once_and_fails(
    tmp_path: Path,
    cli,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.delenv("CODEXBAR_PATH", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    res = cli("ingest", "codexbar", "--json")
    assert res.code == 1
    assert [row["stored"] for row in json.loads(res.out)] == [0, 0]
    warnings = [line for line in res.err.splitlines() if "warning" in line]
    assert warnings == [
        "specwright: warning: codexbar: not found on PATH (set CODEXBAR_PATH); no snapshot taken"
    ]


@pytest.mark.parametrize(
    "raw",
    [
        "[" * 100_000 + "]" * 100_000,  # json.loads itself recurses too deep
        '[{"provider":"x","a":' + "[" * 900 + "]" * 900 + "}]",  # loads, then too deep to clean
    ],
)
def test_codexbar_output_nested_absurdly_deep_is_a_warning_not_a_crash(
    tmp_path: Path, store: Store, raw: str
) -> None:
    """codexbar runs around every execution: output it cannot read must never raise."""
    fake = write_fake_codexbar(tmp_path / "bin", raw_usage=raw)
    usage, cost = codexbar.ingest(store, str(fake))
    assert usage.payloads == [] and "nested more than 64 levels deep, ignored" in str(usage.warning)
    assert cost.payloads and store.query("SELECT kind FROM usage_snapshots") == [("cost",)]


def test_a_secret_codexbar_prints_is_redacted_before_it_is_stored_or_shown(
    tmp_path: Path,
    cli,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    """A provider error quoting the token it was given (JSON-escaped, as codexbar prints it)
    and a stderr naming it: neither the database, its journal nor the warnings hold it."""
    secret = "ghp_Sekr3t/Value+42xyz"
    monkeypatch.setenv("GITHUB_TOKEN", secret)
    usage = [{"provider": "copilot", "error": {"message": f"bad token {secret}"}}]
    fake = write_fake_codexbar(tmp_path / "bin", usage=usage, cost=[{"provider": secret}])
    wrapper = tmp_path / "bin" / "codexbar-loud"
    wrapper.write_text(f'#!/bin/sh\necho "auth {secret}" >&2\nexec {fake} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("CODEXBAR_PATH", str(wrapper))
    res = cli("ingest", "codexbar", "--json")
    assert res.code == 0, res.err
    assert "bad token [REDACTED:GITHUB_TOKEN]" in res.err
    assert secret not in res.out + res.err
    db = tmp_path / "db" / "specwright.duckdb"  # the isolate fixture's SPECWRIGHT_DB
    rows = Store(db).query("SELECT payload::VARCHAR, error, provider FROM usage_snapshots")
    assert len(rows) == 2 and secret not in repr(rows) and "[REDACTED:GITHUB_TOKEN]" in repr(rows)
    journals = list(db.parent.rglob("*.jsonl"))
    assert journals and not any(secret in p.read_text() for p in journals)


def test_ingest_codexbar_cli_stores_usage_and_cost(
    tmp_path: Path,
    cli,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    fake = write_fake_codexbar(tmp_path / "bin")
    monkeypatch.setenv("CODEXBAR_PATH", str(fake))
    res = cli("ingest", "codexbar", "--json")
    assert res.code == 0, res.err
    kinds = {row["kind"]: row for row in json.loads(res.out)}
    assert kinds["usage"]["providers"] == ["codex", "gemini", "claude"]
    assert kinds["cost"]["stored"] == 1
    assert "Gemini: not logged in" in res.err


def test_export_then_merge_twice_is_idempotent(tmp_path: Path, store: Store) -> None:
    from specwright.usage import claude

    write_claude_corpus(tmp_path / "a", sessions=2, turns=10, malformed_every=0, prefix="a")
    claude.ingest(store, [tmp_path / "a" / "projects"])
    codexbar.ingest(store, str(write_fake_codexbar(tmp_path / "bin")))
    counts = export(store, tmp_path / "export")
    assert counts["usage_records"] > 0 and counts["usage_snapshots"] == 4

    other = Store(tmp_path / "other" / "db.duckdb")
    write_claude_corpus(tmp_path / "b", sessions=2, turns=10, malformed_every=0, prefix="b", seed=8)
    claude.ingest(other, [tmp_path / "b" / "projects"])
    own = other.query("SELECT count(*) FROM usage_records")[0][0]
    first = merge(other, [tmp_path / "export"])
    assert first.inserted["usage_records"] == counts["usage_records"]
    snapshot = other.query("SELECT count(*), sum(output_tokens) FROM usage_records")
    second = merge(other, [tmp_path / "export" / "usage_records.parquet", tmp_path / "export"])
    assert second.inserted == {"usage_records": 0, "usage_snapshots": 0, "prices": 0}
    assert other.query("SELECT count(*), sum(output_tokens) FROM usage_records") == snapshot
    assert snapshot[0][0] == own + counts["usage_records"]


def test_export_into_a_folder_of_other_files_is_refused_and_writes_over_nothing(
    tmp_path: Path, store: Store
) -> None:
    """`usage export -o <a project>` wrote its manifest.json and prices.parquet over the ones
    there (a web app's manifest.json, say); an earlier export is still replaced."""
    from specwright.errors import SpecwrightError

    app = tmp_path / "app"
    app.mkdir()
    (app / "manifest.json").write_text('{"name": "my app"}', encoding="utf-8")
    with pytest.raises(SpecwrightError, match="not an earlier usage export"):
        export(store, app)
    assert (app / "manifest.json").read_text(encoding="utf-8") == '{"name": "my app"}'
    assert sorted(p.name for p in app.iterdir()) == ["manifest.json"]
    export(store, tmp_path / "export")
    assert export(store, tmp_path / "export")["usage_records"] == 0  # again: replaced


def test_a_big_merge_at_a_terminal_says_what_it_merges(tmp_path: Path, store: Store) -> None:
    """A merge of a heavy user's export took ~15 s without a word; at a terminal it names each
    big file and its rows on stderr (as an ingest does), and a script's stderr stays quiet."""
    import os
    import subprocess
    import sys

    import duckdb

    from specwright.usage.exchange import PROGRESS_ROWS

    records = tmp_path / "export" / "usage_records.parquet"  # as a hand-made export
    records.parent.mkdir()
    duckdb.connect().execute(
        f"""COPY (SELECT uuidv7() AS id, 'codex' AS source, 'k' || i AS dedup_key,
                   TIMESTAMP '2025-10-01' + INTERVAL (i) SECOND AS ts, 1 AS output_tokens
            FROM range({PROGRESS_ROWS}) t(i)) TO '{records}' (FORMAT parquet)"""
    )
    env = {**os.environ, "SPECWRIGHT_DB": str(tmp_path / "b.duckdb")}
    argv = [sys.executable, "-m", "specwright.cli", "usage", "merge", str(tmp_path / "export")]
    leader, follower = os.openpty()
    try:
        done = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=follower, timeout=120)
        os.close(follower)
        said = b""
        while chunk := _read_pty(leader):
            said += chunk
    finally:
        os.close(leader)
    assert done.returncode == 0
    assert f"merging {PROGRESS_ROWS:,} rows of {records} into usage_records" in said.decode()
    quiet = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and quiet.stderr == ""


def _read_pty(fd: int) -> bytes:
    import os

    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the other end is closed and drained
        return b""


def test_an_export_of_an_empty_database_says_so(
    tmp_path: Path,
    cli,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    """A mistyped SPECWRIGHT_DB made a new database and an empty export without a word: merged
    on the other laptop, it inserted nothing and no one knew why. Such a file is now refused
    (no file, no export); a database that is there but holds no usage is exported, with a
    warning naming it."""
    db = tmp_path / "typo.duckdb"
    monkeypatch.setenv("SPECWRIGHT_DB", str(db))
    res = cli("usage", "export", "-o", str(tmp_path / "export"), "--json")
    assert res.code == 2 and f"SPECWRIGHT_DB {db}: no database file at {db}" in res.err
    assert not db.exists() and not (tmp_path / "export").exists()
    assert cli("db", "migrate").code == 0
    res = cli("usage", "export", "-o", str(tmp_path / "export"), "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["rows"] == {"usage_records": 0, "usage_snapshots": 0, "prices": 0}
    # read on another machine, maybe in another zone: the manifest's time says it is UTC
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text(encoding="utf-8"))
    exported = datetime.fromisoformat(manifest["exported_at"])
    assert exported.utcoffset() == timedelta(0)
    assert abs((datetime.now(UTC) - exported).total_seconds()) < 600
    assert f"nothing to export: no usage records, snapshots or prices in {db}" in res.err


def test_an_export_of_a_database_it_cannot_read_leaves_no_folder(
    tmp_path: Path,
    cli,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    """A database of a newer Specwright (or locked, damaged) was refused only after the export
    folder was made: each try left an empty usage-export-<host>-<date> behind."""
    import duckdb

    from specwright import keeper
    from specwright import store as store_mod

    db = tmp_path / "db.duckdb"
    monkeypatch.setenv("SPECWRIGHT_DB", str(db))
    assert cli("db", "migrate").code == 0
    keeper.close()
    conn = duckdb.connect(str(db))
    conn.execute("INSERT INTO schema_version VALUES (999, 'from the future', now()::TIMESTAMP)")
    conn.close()
    store_mod._migrated.clear()
    res = cli("usage", "export", "-o", str(tmp_path / "export"))
    assert res.code == 2 and "newer than this Specwright" in res.err
    assert not (tmp_path / "export").exists()


def test_an_export_missing_a_file_its_manifest_lists_is_refused(
    tmp_path: Path, store: Store
) -> None:
    """An export copied or synced only in part (its usage_records.parquet not there yet) merged
    its prices, exit 0, and never said the laptop's records were left out."""
    from specwright.errors import SpecwrightError
    from specwright.usage import claude

    write_claude_corpus(tmp_path / "a", sessions=1, turns=5, malformed_every=0)
    claude.ingest(store, [tmp_path / "a" / "projects"])
    rows = export(store, tmp_path / "export")["usage_records"]
    (tmp_path / "export" / "usage_records.parquet").unlink()
    other = Store(tmp_path / "other.duckdb")
    with pytest.raises(SpecwrightError) as err:
        merge(other, [tmp_path / "export"])
    assert str(err.value) == (
        f"{tmp_path / 'export'}: usage_records.parquet is missing, and its manifest.json lists "
        f"{rows:,} rows of it; expected the whole export (nothing was merged; name its .parquet "
        "files to merge only those)"
    )
    assert other.query("SELECT count(*) FROM prices") == [(0,)]
    merge(other, [tmp_path / "export" / "prices.parquet"])  # a file named on its own still is
    assert other.query("SELECT count(*) FROM prices") != [(0,)]


def test_export_to_a_home_path_the_shell_left_unexpanded_goes_home_as_merge_reads_it(
    tmp_path: Path,
    cli,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    """`usage export --output=~/sync/usage` (bash expands no ~ after `=`) wrote into a folder
    named '~' under the current one, while `usage merge ~/sync/usage` looks in the home."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SPECWRIGHT_DB", str(tmp_path / "db.duckdb"))
    monkeypatch.chdir(tmp_path)
    assert cli("db", "migrate").code == 0
    res = cli("usage", "export", "--output=~/sync/usage", "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["export"] == str(tmp_path / "home" / "sync" / "usage")
    assert (tmp_path / "home" / "sync" / "usage" / "manifest.json").is_file()
    assert not (tmp_path / "~").exists()
    assert cli("usage", "merge", "~/sync/usage").code == 0


@pytest.mark.parametrize(("name", "sibling"), [("x*", "xy"), ("a[b]", "ab"), ("a?c", "abc")])
def test_an_export_whose_path_reads_as_a_glob_merges_itself_not_its_siblings(
    tmp_path: Path, store: Store, name: str, sibling: str
) -> None:
    """DuckDB reads a Parquet path as a glob: merging the export in `x*` also merged the one in
    `xy` beside it (and `a[b]` read `ab`'s instead of its own)."""
    from specwright.usage import claude

    write_claude_corpus(tmp_path / "a", sessions=1, turns=5, malformed_every=0)
    claude.ingest(store, [tmp_path / "a" / "projects"])
    mine = export(store, tmp_path / name)["usage_records"]
    other = Store(tmp_path / "other.duckdb")
    write_claude_corpus(tmp_path / "b", sessions=2, turns=9, malformed_every=0, seed=8)
    claude.ingest(other, [tmp_path / "b" / "projects"])
    export(other, tmp_path / sibling)
    fresh = Store(tmp_path / "fresh.duckdb")
    assert merge(fresh, [tmp_path / name]).inserted["usage_records"] == mine
    assert merge(fresh, [tmp_path / name / "usage_records.parquet"]).skipped == {
        "usage_records": mine
    }


def test_merge_rejects_unknown_files(tmp_path: Path, store: Store) -> None:
    from specwright.errors import SpecwrightError

    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    with pytest.raises(SpecwrightError, match="expected one of"):
        merge(store, [tmp_path / "x.parquet"])
    with pytest.raises(SpecwrightError, match="no such file"):
        merge(store, [tmp_path / "missing"])


def test_merge_of_a_foreign_or_damaged_export_is_one_line_and_merges_nothing(
    tmp_path: Path, store: Store
) -> None:
    """A Parquet file that is no usage export, one with a key missing, one whose values do not
    fit the columns, one with NaN costs, negative or absurd token counts: a one-line error
    naming the file, and nothing merged; columns this schema lacks are left out with a warning; another manifest format is refused."""
    import duckdb

    from specwright.errors import SpecwrightError
    from specwright.usage import claude

    write_claude_corpus(tmp_path / "a", sessions=1, turns=5, malformed_every=0)
    claude.ingest(store, [tmp_path / "a" / "projects"])
    export(store, tmp_path / "export")
    other = Store(tmp_path / "other.duckdb")
    other.migrate()
    records = tmp_path / "export" / "usage_records.parquet"
    con = duckdb.connect()

    def rewrite(name: str, select: str) -> Path:
        path = tmp_path / name / "usage_records.parquet"
        path.parent.mkdir()
        con.execute(f"COPY ({select}) TO '{path}' (FORMAT parquet)")
        return path

    cases = {
        "foreign": ("SELECT 1 AS a, 2 AS b", "no column source, dedup_key, ts"),
        "nokey": (f"SELECT * EXCLUDE (dedup_key) FROM '{records}'", "no column dedup_key"),
        # the merge orders by it: a binder error naming an alias of ours
        "nots": (f"SELECT * EXCLUDE (ts) FROM '{records}'", "no column ts; expected a"),
        "types": (
            f"SELECT * REPLACE ('lots' AS input_tokens) FROM '{records}'",
            "cannot merge into usage_records (nothing was merged)",
        ),
        "nullkey": (
            f"SELECT * REPLACE (NULL::VARCHAR AS dedup_key) FROM '{records}'",
            "cannot merge into usage_records (nothing was merged)",
        ),
        # a NaN cost turns every total it is summed into NaN
        "nancost": (
            f"SELECT * REPLACE ('NaN'::DOUBLE AS computed_cost_usd) FROM '{records}'",
            "row(s) with computed_cost_usd NaN or infinite; expected finite numbers (nothing",
        ),
        # a negative count makes totals negative; a huge one overflows every report's sum
        "negative": (
            f"SELECT * REPLACE (-5 AS output_tokens) FROM '{records}'",
            "row(s) with output_tokens below 0 or above 9,007,199,254,740,991; expected token "
            "counts (nothing was merged into usage_records)",
        ),
        "huge": (
            f"SELECT * REPLACE (4611686018427387904 AS input_tokens) FROM '{records}'",
            "row(s) with input_tokens below 0 or above",
        ),
    }
    for name, (select, message) in cases.items():
        path = rewrite(name, select)
        with pytest.raises(SpecwrightError) as info:
            merge(other, [path])
        text = str(info.value)
        assert text.startswith(f"{path}: ") and message in text and "\n" not in text, text
        assert other.query("SELECT count(*) FROM usage_records")[0][0] == 0

    newer = rewrite("newer", f"SELECT *, 42 AS new_col FROM '{records}'")
    res = merge(other, [newer])
    assert res.inserted["usage_records"] > 0
    assert res.warnings == [
        f"{newer}: column(s) this database does not have were left out: new_col"
    ]

    (tmp_path / "export" / "manifest.json").write_text('{"format": "ccusage"}')
    with pytest.raises(
        SpecwrightError, match="format 'ccusage'; expected 'specwright-usage-export'"
    ):
        merge(other, [tmp_path / "export"])


def test_merged_records_are_numbered_after_the_stores_own(tmp_path: Path, store: Store) -> None:
    """Another machine's ``seq`` orders nothing here: merged records count on from this store's
    last, in the export's order. An export from a store numbered before migration 8 (seq near
    2**63) would otherwise leave the next ingests overflowing BIGINT."""
    import duckdb

    from specwright.usage import claude
    from tests.support_usage import append_claude_lines

    write_claude_corpus(tmp_path / "a", sessions=2, turns=10, malformed_every=0, prefix="a")
    claude.ingest(store, [tmp_path / "a" / "projects"])
    export(store, tmp_path / "export")
    exported = tmp_path / "export" / "usage_records.parquet"
    old = tmp_path / "old.parquet"
    with duckdb.connect() as conn:  # as a store that ran ~255 ingests before the fix wrote it
        conn.execute(
            f"COPY (SELECT * REPLACE (seq + 255 * 36028797018963968 AS seq) "
            f"FROM read_parquet('{exported}')) TO '{old}' (FORMAT parquet)"
        )
        order = [
            r[0] for r in conn.execute(f"SELECT dedup_key FROM '{old}' ORDER BY seq").fetchall()
        ]

    other = Store(tmp_path / "other" / "db.duckdb")
    b = write_claude_corpus(
        tmp_path / "b", sessions=2, turns=10, malformed_every=0, prefix="b", seed=8
    )
    claude.ingest(other, [tmp_path / "b" / "projects"])
    (own_top,) = other.query("SELECT max(seq) FROM usage_records")[0]
    old.rename(tmp_path / "usage_records.parquet")
    assert merge(other, [tmp_path / "usage_records.parquet"]).inserted["usage_records"] == len(
        order
    )
    merged = other.query(
        "SELECT dedup_key, seq FROM usage_records WHERE seq > ? ORDER BY seq", [own_top]
    )
    assert [r[0] for r in merged] == order
    assert [r[1] for r in merged] == list(range(own_top + 1, own_top + 1 + len(order)))
    for i in range(3):  # later ingests count on from there
        append_claude_lines(b.files[0], 2, seed=60 + i)
        assert claude.ingest(other, [tmp_path / "b" / "projects"]).imported == 2
    assert other.query("SELECT max(seq) < 100000 FROM usage_records")[0][0]


_CODEX_COUNTS = st.one_of(
    st.integers(0, 10**6),
    st.sampled_from([None, -1, 2**53, 2**62, 2**63 - 1, -(2**63), 2**63, 1.5, "12", True]),
)


@st.composite
def _codex_line(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["meta", "context", "count", "count", "count", "cut", "other"]))
    stamp = draw(
        st.sampled_from(["2025-11-02T10:00:00Z", "2025-11-02T10:03:00.5Z", None, "soon", 7])
    )
    if kind == "meta":
        payload: Any = {"id": draw(st.sampled_from(["s1", None, 3])), "cwd": "/w"}
        return json.dumps({"timestamp": stamp, "type": "session_meta", "payload": payload})
    if kind == "context":
        payload = {"model": draw(st.sampled_from(["gpt-5-codex", None, 5, ""]))}
        return json.dumps({"timestamp": stamp, "type": "turn_context", "payload": payload})
    if kind == "other":
        return draw(st.sampled_from(['{"type":"response_item"}', "[1,2]", "{"]))

    def usage() -> Any:
        fields = ("input_tokens", "cached_input_tokens", "output_tokens")
        counts = {f: draw(_CODEX_COUNTS) for f in (*fields, "reasoning_output_tokens")}
        return draw(st.sampled_from([None, {**counts, "total_tokens": draw(_CODEX_COUNTS)}]))

    info = {"total_token_usage": usage(), "last_token_usage": usage()}
    limits = draw(st.sampled_from([None, {"primary": {"used_percent": 1e308}}, [1], "x"]))
    line = json.dumps(
        {
            "timestamp": stamp,
            "type": "event_msg",
            "payload": {"type": "token_count", "info": info, "rate_limits": limits},
        }
    )
    return line[: draw(st.integers(1, len(line) - 1))] if kind == "cut" else line


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(_codex_line(), max_size=8), st.lists(_codex_line(), min_size=1, max_size=8))
def test_any_codex_lines_ingest_and_reingest_without_error(
    tmp_path: Path, first: list[str], later: list[str]
) -> None:
    """Whatever a Codex log holds, a first run and a later one finish and read to the end."""
    import uuid

    work = tmp_path / uuid.uuid4().hex
    log = work / "sessions" / "2025" / "11" / "02" / "rollout-2025-11-02T10-00-00-abc.jsonl"
    log.parent.mkdir(parents=True)
    store = Store(work / "db.duckdb")
    store.migrate()
    log.write_text("".join(line + "\n" for line in first))
    codex.ingest(store, [work / "sessions"])
    with log.open("a") as fh:
        fh.write("".join(line + "\n" for line in later))
    codex.ingest(store, [work / "sessions"])
    assert store.query('SELECT "offset" FROM usage_ingest_files') == [(log.stat().st_size,)]
    store.release()


@pytest.mark.parametrize("source", ["claude", "codex"])
def test_logs_under_a_folder_whose_name_reads_as_a_glob_are_read_not_a_siblings(
    tmp_path: Path, source: str
) -> None:
    """DuckDB's reader reads a path as a glob: Codex logs (and big Claude Code ones) under
    `logs[1]/` were read from `logs1/` beside it, a stale copy, or not at all (0 lines)."""
    import shutil

    from specwright.usage import claude
    from tests.support_codex import write_codex_corpus

    plain = tmp_path / "plain"
    if source == "claude":  # over 2 MB, files over 256 KB: read in place, not copied
        write_claude_corpus(plain, sessions=3, turns=40, pad=20_000, malformed_every=0)
        roots: Callable[[Path], list[Path]] = lambda home: [home / "projects"]  # noqa: E731
        ingest: Any = claude.ingest
    else:
        write_codex_corpus(plain)
        roots, ingest = (lambda home: [home / "sessions", home / "archived_sessions"]), codex.ingest
    globbed, sibling = tmp_path / "logs[1]", tmp_path / "logs1"
    shutil.copytree(plain, globbed)
    shutil.copytree(plain, sibling)
    for log in sibling.rglob("*.jsonl"):  # the stale copy: its first lines only
        log.write_bytes(log.read_bytes()[:3000])

    def imported(home: Path) -> tuple[int, int]:
        store = Store(tmp_path / f"{home.name}.duckdb")
        res = ingest(store, roots(home))
        assert res.imported > 0
        return res.lines, store.query("SELECT sum(output_tokens) FROM usage_records")[0][0]

    assert imported(globbed) == imported(plain)


def test_logs_found_through_a_relative_home_are_not_read_again_through_its_absolute_path(
    tmp_path: Path,
    cli,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    """CODEX_HOME=codex (or CLAUDE_CONFIG_DIR=claude) stored its files by relative paths: the
    next ingest with the absolute path, or from another folder, read every file again and
    counted Codex events without totals twice."""
    from tests.support_codex import write_codex_corpus

    write_codex_corpus(tmp_path / "codex")
    write_claude_corpus(tmp_path / "claude", sessions=2, turns=6, malformed_every=0)
    monkeypatch.setenv("SPECWRIGHT_DB", str(tmp_path / "db.duckdb"))
    monkeypatch.chdir(tmp_path)
    for var, name, source in (
        ("CODEX_HOME", "codex", "codex-logs"),
        ("CLAUDE_CONFIG_DIR", "claude", "claude-logs"),
    ):
        monkeypatch.setenv(var, name)
        first = json.loads(cli("ingest", source, "--json").out)
        assert first["imported"] > 0
        monkeypatch.setenv(var, str(tmp_path / name))
        again = json.loads(cli("ingest", source, "--json").out)
        assert (again["files_read"], again["imported"]) == (0, 0), source
        assert all(Path(r).is_absolute() for r in first["roots"])


def test_codex_sessions_moved_to_the_archive_are_not_counted_again(
    tmp_path: Path, store: Store
) -> None:
    """Codex moves a rollout into ``archived_sessions/`` when a session is archived. Its events
    with totals are keyed by session and totals; those with only the turn's usage were keyed by
    the file's path, so after the move they were counted a second time (ccusage, reading the
    logs as they are, counts them once)."""
    from tests.support_codex import write_codex_corpus

    home = tmp_path / "codex"
    corpus = write_codex_corpus(home, sessions=6, turns=30)
    roots = codex.codex_roots({"CODEX_HOME": str(home)})
    first = codex.ingest(store, roots)
    query = "SELECT count(*), sum(input_tokens), sum(output_tokens) FROM usage_records"
    before = store.query(query)
    archive = home / "archived_sessions"
    moved = [f for f in corpus.files if f.parent != archive]
    assert moved and first.imported > 0
    for f in moved:
        f.rename(archive / f.name)
    again = codex.ingest(store, roots)
    assert again.files_read == len(moved)
    assert again.imported == 0
    assert store.query(query) == before


# the key an older Specwright gave a Codex event without totals: its file's path and line hash
_OLD_CODEX_KEY = """UPDATE usage_records
    SET dedup_key = 'h:' || {file} || ':' || regexp_extract(dedup_key, ':([0-9]+)$', 1)
    WHERE source = 'codex' AND starts_with(dedup_key, 'h:')"""


def _hash_keyed(store: Store) -> list[tuple[Any, ...]]:
    return store.query(
        "SELECT session_id, dedup_key, input_tokens, output_tokens FROM usage_records "
        "WHERE source = 'codex' AND starts_with(dedup_key, 'h:') ORDER BY dedup_key"
    )


def test_migration_keys_codex_events_by_session_and_drops_the_archive_copies_counted_twice(
    tmp_path: Path, store: Store
) -> None:
    """A store written before the fix holds the usage-only events of a moved rollout twice,
    keyed by each path: migration 12 keeps the first of each, keyed by session, and the next
    ingest of the moved files adds nothing."""
    from tests.support_codex import write_codex_corpus

    home = tmp_path / "codex"
    corpus = write_codex_corpus(home, sessions=6, turns=30)
    roots = codex.codex_roots({"CODEX_HOME": str(home)})
    codex.ingest(store, roots)
    query = "SELECT count(*), sum(input_tokens), sum(output_tokens) FROM usage_records"
    right, keyed = store.query(query), _hash_keyed(store)
    assert keyed and all(key.startswith(f"h:{session}:") for session, key, *_ in keyed)
    with store.transaction() as conn:  # as the old code left it: each path's copy counted
        conn.execute(_OLD_CODEX_KEY.format(file="file"))
        conn.execute(
            "INSERT INTO usage_records SELECT * REPLACE (uuidv7() AS id, seq + 100000 AS seq, "
            "replace(dedup_key, 'sessions/', 'archived_sessions/') AS dedup_key, "
            "replace(file, 'sessions/', 'archived_sessions/') AS file) "
            "FROM usage_records WHERE source = 'codex' AND starts_with(dedup_key, 'h:')"
        )
        conn.execute("DELETE FROM schema_version WHERE version >= 12")
    assert store.query(query) != right
    assert store.migrate() == list(range(12, latest_version() + 1))
    assert store.query(query) == right and _hash_keyed(store) == keyed
    archive = home / "archived_sessions"
    for f in corpus.files:
        if f.parent != archive:
            f.rename(archive / f.name)
    assert codex.ingest(store, roots).imported == 0
    assert store.query(query) == right


def test_merge_of_an_older_export_keys_codex_events_by_session(tmp_path: Path) -> None:
    """An export written before the fix keys usage-only Codex events by the other machine's
    paths: merged into a store holding the same sessions (logs synced between machines), they
    were counted twice."""
    from tests.support_codex import write_codex_corpus

    write_codex_corpus(tmp_path / "codex", sessions=6, turns=30)
    roots = codex.codex_roots({"CODEX_HOME": str(tmp_path / "codex")})
    here, there = Store(tmp_path / "here.duckdb"), Store(tmp_path / "there.duckdb")
    codex.ingest(here, roots)
    codex.ingest(there, roots)
    with there.transaction() as conn:  # the other machine: its own paths, the old keys
        conn.execute(_OLD_CODEX_KEY.format(file="'/home/other/.codex/' || file"))
    export(there, tmp_path / "export")
    query = "SELECT count(*), sum(input_tokens), sum(output_tokens) FROM usage_records"
    right, keyed = here.query(query), _hash_keyed(here)
    assert keyed
    merge(here, [tmp_path / "export"])
    assert here.query(query) == right and _hash_keyed(here) == keyed
