"""`usage export` and `usage merge` when an export is cut short or damaged: an export appears
whole or not at all, and a file that is not what its export wrote is refused in one line."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from specwright.store import Store
from specwright.usage.exchange import merge
from specwright.usage.export import export
from tests.conftest import run_specwright
from tests.support_usage import write_claude_corpus


def _seed(store: Store, tmp_path: Path, name: str, seed: int) -> None:
    from specwright.usage import claude

    write_claude_corpus(
        tmp_path / name, sessions=2, turns=10, malformed_every=0, prefix=name, seed=seed
    )
    claude.ingest(store, [tmp_path / name / "projects"])


def _damage(path: Path, column: str, where: str) -> None:
    """Four bytes of ``column``'s data in ``path`` flipped (at its page header, which then does
    not decode, or in the middle of its values, which may), as a bad disk or a torn copy does."""
    import duckdb

    with duckdb.connect() as conn:
        ((start, size),) = conn.execute(
            "SELECT data_page_offset, total_compressed_size FROM parquet_metadata(?) "
            "WHERE path_in_schema = ?",
            [str(path), column],
        ).fetchall()
    at = start if where == "header" else start + size // 2
    data = bytearray(path.read_bytes())
    data[at : at + 4] = bytes(b ^ 0xFF for b in data[at : at + 4])
    path.write_bytes(bytes(data))


def test_an_export_killed_while_written_over_an_earlier_one_leaves_the_earlier_one_whole(
    tmp_path: Path, store: Store
) -> None:
    """`usage export` run again into the folder of an earlier export and killed midway left the
    new usage_records.parquet beside the earlier export's other files and manifest, which
    `usage merge` folded in as if they were one export. The earlier export stays whole until
    the new one replaces it; what a killed export was writing is refused by merge."""
    _seed(store, tmp_path, "a", 1)
    with store.transaction() as conn:  # many snapshots: writing them takes a while
        conn.execute(
            "INSERT INTO usage_snapshots (id, taken_at, source, provider, payload, kind) "
            "SELECT uuidv7(), TIMESTAMP '2025-10-01' + INTERVAL (i) SECOND, 'codexbar', "
            "'openai', ('{\"usage\":{\"usedPercent\":' || (i % 100) || '},\"n\":' || i || '}')"
            "::JSON, 'usage' FROM range(1000000) t(i)"
        )
    sync = tmp_path / "sync"
    out = sync / "usage"
    before = export(store, out)
    manifest = (out / "manifest.json").read_text(encoding="utf-8")
    _seed(store, tmp_path, "b", 2)  # more records since: the next export differs
    old = {p.name: p.stat().st_ino for p in out.iterdir()}

    def snapshots_being_written() -> bool:  # the records are written by then
        for p in sync.rglob("*usage_snapshots.parquet*"):
            try:
                if p.stat().st_ino != old["usage_snapshots.parquet"]:
                    return True
            except FileNotFoundError:  # renamed meanwhile
                continue
        return False

    env = {**os.environ, "SPECWRIGHT_DB": str(store.path)}
    argv = [sys.executable, "-m", "specwright.cli", "usage", "export", "-o", str(out)]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not snapshots_being_written():
            assert proc.poll() is None, "the export ended before it could be killed"
            time.sleep(0.002)  # polled: the export shares two cores with this loop
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=120)

    assert (out / "manifest.json").read_text(encoding="utf-8") == manifest
    fresh = Store(tmp_path / "fresh.duckdb")
    fresh.migrate()
    assert merge(fresh, [out]).inserted == before  # the earlier export, whole
    leftovers = [p for p in sync.iterdir() if p != out]
    assert leftovers and all(p.name.startswith(".usage.") for p in leftovers)
    for p in leftovers:
        res = subprocess.run(
            [sys.executable, "-m", "specwright.cli", "usage", "merge", str(p)],
            env={**os.environ, "SPECWRIGHT_DB": str(tmp_path / "other.duckdb")},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 2 and res.stdout == ""
        assert res.stderr.startswith(f"specwright: error: {p}: cannot be read as a usage export")
        assert res.stderr.count("\n") == 1, res.stderr
    elsewhere = sync / f".usage.partial-{socket.gethostname()}-2-999999-0123abcd"  # host x-2
    running = sync / f".usage.partial-{socket.gethostname()}-{os.getpid()}-0123abcd"
    elsewhere.mkdir()
    running.mkdir()
    assert export(store, out)["usage_records"] > before["usage_records"]  # again: replaced
    assert json.loads((out / "manifest.json").read_text(encoding="utf-8"))["rows"] != before
    # what the killed export left is removed; another machine's, or a running one's, is not
    assert sorted(sync.iterdir()) == sorted([out, elsewhere, running])


@pytest.mark.parametrize(
    ("kind", "column", "where"),
    [
        ("export", "computed_cost_usd", "middle"),  # merged, its costs garbled
        ("export", "dedup_key", "header"),
        ("older export", "computed_cost_usd", "header"),  # a traceback
        ("older export", "dedup_key", "middle"),
        ("file alone", "dedup_key", "middle"),
    ],
)
def test_merging_an_export_damaged_mid_file_says_it_cannot_be_read_and_merges_nothing(
    tmp_path: Path, store: Store, cli: Any, kind: str, column: str, where: str
) -> None:
    """A usage_records.parquet with bytes flipped in its middle was merged with its values
    garbled, or said "cannot merge" with DuckDB's words, or gave a traceback. It is one line
    naming the file, saying it cannot be read as an export; exit 2, nothing merged. An export's
    manifest.json holds each file's checksum; one of an older Specwright has none, nor has a
    file named alone: there what does not decode is refused."""
    _seed(store, tmp_path, "a", 1)
    out = tmp_path / "export"
    export(store, out)
    records = out / "usage_records.parquet"
    if kind == "older export":  # its manifest lists rows, not checksums
        data = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        data.pop("files", None)
        (out / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    elif kind == "file alone":
        (out / "manifest.json").unlink()
    _damage(records, column, where)
    db = tmp_path / "other.duckdb"
    res = cli("--db", str(db), "usage", "merge", str(records if kind == "file alone" else out))
    assert res.code == 2 and res.out == ""
    assert res.err.startswith(f"specwright: error: {records}: cannot be read as a usage export")
    assert res.err.count("\n") == 1 and "(nothing was merged)" in res.err, res.err
    merged = Store(db).query(
        "SELECT (SELECT count(*) FROM usage_records) + (SELECT count(*) FROM prices)"
    )
    assert merged == [(0,)]


def test_a_copy_merged_before_then_changed_is_refused_not_a_duplicate_key(
    tmp_path: Path, store: Store, cli: Any
) -> None:
    """A copy of an export merged once, then damaged so its replies' keys read differently
    (the file still decodes), said 'Constraint Error: Duplicate key "id: ..."' and nothing
    else: its records carry the ids of other, stored replies."""
    import duckdb

    _seed(store, tmp_path, "a", 1)
    export(store, tmp_path / "export")
    records = tmp_path / "export" / "usage_records.parquet"
    db = tmp_path / "other.duckdb"
    assert cli("--db", str(db), "usage", "merge", str(records)).code == 0
    (before,) = Store(db).query("SELECT count(*), sum(output_tokens) FROM usage_records")
    with duckdb.connect() as conn:
        conn.execute(
            f"COPY (SELECT * REPLACE (dedup_key || 'x' AS dedup_key) FROM '{records}') "
            f"TO '{tmp_path / 'usage_records.parquet'}' (FORMAT parquet)"
        )
    res = cli("--db", str(db), "usage", "merge", str(tmp_path / "usage_records.parquet"))
    assert res.code == 2 and res.err.count("\n") == 1, res.err
    assert res.err.startswith(
        f"specwright: error: {tmp_path / 'usage_records.parquet'}: cannot be read as a usage "
        "export: "
    )
    assert "with the id of another reply" in res.err
    assert Store(db).query("SELECT count(*), sum(output_tokens) FROM usage_records") == [before]


def test_an_older_exports_files_mixed_with_a_newer_ones_are_refused(
    tmp_path: Path, store: Store, cli: Any
) -> None:
    """An older Specwright wrote an export in place: one killed while writing over an earlier
    export left the new usage_records.parquet beside the earlier manifest.json, which lists
    rows, not checksums. The rows it lists and those the file holds differ: refused."""
    _seed(store, tmp_path, "a", 1)
    old = tmp_path / "old"
    rows = export(store, old)["usage_records"]
    data = json.loads((old / "manifest.json").read_text(encoding="utf-8"))
    data.pop("files", None)
    (old / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    _seed(store, tmp_path, "b", 2)
    held = export(store, tmp_path / "new")["usage_records"]
    (tmp_path / "new" / "usage_records.parquet").replace(old / "usage_records.parquet")
    db = tmp_path / "other.duckdb"
    res = cli("--db", str(db), "usage", "merge", str(old))
    assert res.code == 2 and res.err.count("\n") == 1, res.err
    assert res.err == (
        f"specwright: error: {old / 'usage_records.parquet'}: cannot be read as a usage export: "
        f"it holds {held:,} rows, its manifest.json lists {rows:,}; expected a whole "
        "`specwright usage export` (nothing was merged)\n"
    )
    assert Store(db).query("SELECT count(*) FROM prices") == [(0,)]


def test_an_export_written_again_keeps_its_folders_permissions(
    tmp_path: Path, store: Store
) -> None:
    """An export replaced by a new one is a new folder: it keeps the earlier one's mode (a
    folder shared with a group, or kept private)."""
    _seed(store, tmp_path, "a", 1)
    out = tmp_path / "usage"
    out.mkdir(mode=0o700)
    out.chmod(0o2750)
    export(store, out)
    assert oct(out.stat().st_mode & 0o7777) == oct(0o2750)
    export(store, out)
    assert oct(out.stat().st_mode & 0o7777) == oct(0o2750)


def test_an_export_under_a_file_says_a_parent_is_a_file(
    tmp_path: Path, store: Store, cli: Any
) -> None:
    """`usage export -o notes.txt/usage` said "cannot create the export directory: File
    exists", as if the folder were there."""
    (tmp_path / "notes.txt").write_text("x")
    res = cli("--db", str(store.path), "usage", "export", "-o", str(tmp_path / "notes.txt" / "u"))
    assert res.code == 2
    assert res.err == (
        f"specwright: error: {tmp_path / 'notes.txt' / 'u'}: cannot create the export directory "
        "(a parent is a file); expected a folder path\n"
    )
    deeper = tmp_path / "notes.txt" / "a" / "u"
    res = cli("--db", str(store.path), "usage", "export", "-o", str(deeper))
    assert res.code == 2 and "(a parent is a file)" in res.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "home", "notes.txt"]


def test_an_export_into_the_folder_the_shell_is_in_says_to_cd_again(
    tmp_path: Path, store: Store, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cd ~/sync/laptop && specwright usage export -o .`: the export replaces the folder whole,
    and the shell, left in the one replaced, listed nothing there. It says to `cd` again."""
    _seed(store, tmp_path, "a", 1)
    out = tmp_path / "laptop"
    out.mkdir()
    monkeypatch.chdir(out)
    res = cli("--db", str(store.path), "usage", "export", "-o", ".")
    assert res.code == 0
    assert res.err == (
        f"specwright: note: {out} is a new folder now: `cd {out}` again to see the export (this "
        "shell is in the one it replaced)\n"
    )
    assert (out / "manifest.json").is_file()
    monkeypatch.chdir(tmp_path)
    res = cli("--db", str(store.path), "usage", "export", "-o", str(out))
    assert res.code == 0 and res.err == ""


def test_an_export_run_again_from_the_folder_it_replaced_is_one_line(
    tmp_path: Path, store: Store, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After `usage export -o .` the shell is in a folder that no longer exists; the same command
    again (the user did not `cd` as the note said) failed with a FileNotFoundError traceback. It
    is one line saying to cd again (exit 2), and the export there stays whole."""
    _seed(store, tmp_path, "a", 1)
    out = tmp_path / "laptop"
    out.mkdir()
    monkeypatch.chdir(out)
    assert cli("--db", str(store.path), "usage", "export", "-o", ".").code == 0
    manifest = (out / "manifest.json").read_text()
    res = cli("--db", str(store.path), "usage", "export", "-o", ".")
    assert res.code == 2
    assert res.err == (
        "specwright: error: the current directory no longer exists (a `usage export -o .` "
        "replaces its folder with a new one): cd to it again\n"
    )
    assert (out / "manifest.json").read_text() == manifest


def test_an_export_written_again_keeps_what_else_its_folder_held(
    tmp_path: Path, store: Store
) -> None:
    """An export replaced by a new one is a new folder: what else the earlier one held (a sync
    tool's marker, the user's notes) was deleted with it; it moves into the new one."""
    _seed(store, tmp_path, "a", 1)
    out = tmp_path / "usage"
    export(store, out)
    (out / ".stfolder").mkdir()
    (out / "notes.txt").write_text("laptop, weekly\n")
    export(store, out)
    assert (out / ".stfolder").is_dir() and (out / "notes.txt").read_text() == "laptop, weekly\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def _dead_pid() -> int:
    """The pid of a process of this machine that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=60)
    return proc.pid


def _kill_between_the_renames(out: Path, env: dict[str, str]) -> None:
    """Run `usage export -o OUT` and SIGKILL it as it enters its second rename: the earlier
    export is set aside, the new one not yet renamed into place (strace injects the signal at
    that system call; the export's two are all the renames the command makes)."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed: it kills the export between its two renames")
    argv = [sys.executable, "-m", "specwright.cli", "usage", "export", "-o", str(out)]
    renames = "rename,renameat,renameat2"
    trace = [strace, "-qq", "-o", os.devnull, "-e", f"trace={renames}"]
    inject = ["-e", f"inject={renames}:signal=KILL:when=2"]
    res = subprocess.run(
        [*trace, *inject, *argv], env=env, capture_output=True, text=True, timeout=300
    )
    if res.returncode == 1 and "Operation not permitted" in res.stderr:
        pytest.skip(f"strace cannot trace here: {res.stderr.strip()}")
    assert res.returncode == -signal.SIGKILL, (res.returncode, res.stderr)


@pytest.mark.parametrize("how", ["killed", "simulated"])
def test_an_export_killed_between_its_renames_is_put_back_by_the_next(
    tmp_path: Path, store: Store, how: str
) -> None:
    """An export killed after it set the earlier export aside (`.DIR.old-<hex>`) and before it
    renamed the new one into place left no `DIR`: `usage merge DIR` said "no such file or
    directory", and the earlier export stayed hidden for good. The one set aside is named by
    host and pid; merge names it as the last whole export, and the next export on this machine
    puts it back (with what else the folder held) before replacing it, leaving nothing behind."""
    _seed(store, tmp_path, "a", 1)
    sync = tmp_path / "sync"
    out = sync / "usage"
    before = export(store, out)
    (out / "notes.txt").write_text("laptop, weekly\n")
    _seed(store, tmp_path, "b", 2)
    env = {**os.environ, "SPECWRIGHT_DB": str(store.path)}
    host = socket.gethostname()
    if how == "killed":
        _kill_between_the_renames(out, env)
    else:  # what the kill leaves: the earlier export set aside, the new one whole beside it
        pid = _dead_pid()
        out.rename(sync / f".usage.old-{host}-{pid}-0123abcd")
        export(store, tmp_path / "new")
        (tmp_path / "new").rename(sync / f".usage.partial-{host}-{pid}-4567cdef")
    assert not out.exists()
    (old,) = sync.glob(".usage.old-*")
    assert re.fullmatch(rf"\.usage\.old-{re.escape(host)}-\d+-[0-9a-f]{{8}}", old.name)

    other = {**os.environ, "SPECWRIGHT_DB": str(tmp_path / "other.duckdb")}
    res = run_specwright("usage", "merge", str(out), env=other)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr == (
        f"specwright: error: {out}: no such file or directory; an export killed while it "
        f"replaced it left the last whole one in {old} (merge that; the next export to it on "
        f"{host} puts it back)\n"
    )
    res = run_specwright("usage", "merge", "--json", str(old), env=other)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["inserted"] == before  # the earlier export, whole

    res = run_specwright("usage", "export", "-o", str(out), env=env)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    rows = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["rows"]
    assert rows["usage_records"] > before["usage_records"]
    assert (out / "notes.txt").read_text() == "laptop, weekly\n"
    assert sorted(sync.iterdir()) == [out]


def test_an_export_removes_an_earlier_one_a_killed_export_of_this_machine_set_aside(
    tmp_path: Path, store: Store
) -> None:
    """An export killed after it renamed the new export into place, before it removed the
    earlier one it had set aside, left that one (a whole export's size, synced wherever the
    folder is) for good. The next export on this machine removes it, keeping what else it held;
    another machine's, or a running export's, is left alone."""
    _seed(store, tmp_path, "a", 1)
    sync = tmp_path / "sync"
    out = sync / "usage"
    export(store, out)
    host = socket.gethostname()
    dead = sync / f".usage.old-{host}-{_dead_pid()}-0123abcd"
    shutil.copytree(out, dead)
    (dead / "notes.txt").write_text("laptop, weekly\n")  # not yet moved when it was killed
    elsewhere = sync / f".usage.old-{host}-2-{_dead_pid()}-0123abcd"  # host x-2
    running = sync / f".usage.old-{host}-{os.getpid()}-0123abcd"
    shutil.copytree(out, elsewhere)
    shutil.copytree(out, running)
    export(store, out)
    assert sorted(sync.iterdir()) == sorted([out, elsewhere, running])
    assert (out / "notes.txt").read_text() == "laptop, weekly\n"
