"""The database and its journals in bad shape, as a user finds them: a torn journal line, lines
that are JSON but no op, a duplicated op, a truncated database file, folders that cannot be
written, a full disk, a database another process holds during a rebuild, a second rebuild, a
``.gitignore`` that is not UTF-8. Each is one line on stderr naming the file, never a traceback,
and nothing journaled is lost."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from specwright import catalog
from specwright.errors import StoreError, StoreLockedError
from specwright.store import Store
from tests.conftest import CliResult, run_specwright


def _titles(db: Path) -> list[str]:
    return [r[0] for r in Store(db).query("SELECT title FROM specs ORDER BY title")]


def _one_line_error(result: CliResult | subprocess.CompletedProcess[str]) -> str:
    err = result.err if isinstance(result, CliResult) else result.stderr
    code = result.code if isinstance(result, CliResult) else result.returncode
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("specwright: error: "), err
    return lines[0]


# --- journal ----------------------------------------------------------------------------------


def test_an_op_written_after_a_torn_line_starts_a_line_of_its_own(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A process killed mid-write leaves half a line; the next spec written must not be glued
    to it (a rebuild used to drop both)."""
    project = catalog.ensure_project(store, tmp_path)
    catalog.create_spec(store, project, "Before")
    catalog_path = store.journal.path_for("catalog")
    with catalog_path.open("ab") as fh:
        fh.write(b'{"t":1,"op":"insert","table":"specs","row":{"id":"01')
    catalog.create_spec(store, project, "After the crash")
    lines = catalog_path.read_bytes().splitlines()
    assert lines[-2].endswith(b'"id":"01') and b"After the crash" in lines[-1]
    json.loads(lines[-1])
    with caplog.at_level(logging.WARNING):
        store.rebuild_into(tmp_path / "rebuilt.duckdb")
    assert _titles(tmp_path / "rebuilt.duckdb") == ["After the crash", "Before"]


def test_an_op_glued_to_a_torn_line_by_an_older_version_is_replayed(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    project = catalog.ensure_project(store, tmp_path)
    catalog.create_spec(store, project, "Glued")
    catalog_path = store.journal.path_for("catalog")
    lines = catalog_path.read_bytes().splitlines(keepends=True)
    lines[-1] = b'{"t":1,"op":"insert","table":"specs","row":{"id":"01' + lines[-1]
    catalog_path.write_bytes(b"".join(lines))
    with caplog.at_level(logging.WARNING):
        store.rebuild_into(tmp_path / "rebuilt.duckdb")
    assert _titles(tmp_path / "rebuilt.duckdb") == ["Glued"]
    assert "kept the op written after it" in caplog.text


def test_rebuild_leaves_out_ops_it_cannot_apply_and_keeps_every_other(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A duplicated insert (its abort mark lost with a killed process) and lines that are JSON
    but no op: each is named with its file and line and left out; the rest is rebuilt."""
    project = catalog.ensure_project(store, tmp_path)
    catalog.create_spec(store, project, "First")
    catalog_path = store.journal.path_for("catalog")
    duplicate = catalog_path.read_text().splitlines()[-1]
    with catalog_path.open("a") as fh:
        fh.write(duplicate + "\n")
        fh.write('{"op":"insert"}\n{"t":"soon","op":"insert","table":"specs","row":{}}\n[1]\n')
    catalog.create_spec(store, project, "Second")
    with caplog.at_level(logging.WARNING):
        count = store.rebuild_into(tmp_path / "rebuilt.duckdb")
    assert _titles(tmp_path / "rebuilt.duckdb") == ["First", "Second"]
    assert count == 3  # the project and two specs
    assert f"{catalog_path}:3: left out a journal op the database refuses" in caplog.text
    assert caplog.text.count("skipped an unreadable journal line") == 3


def test_a_journal_that_cannot_be_written_is_one_line_and_nothing_is_saved(
    tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "db" / "a.duckdb"
    monkeypatch.setenv("SPECWRIGHT_DB", str(db))
    assert cli("-C", str(tmp_path), "db", "migrate").code == 0
    journal = tmp_path / "db" / "a.journal"
    shutil.rmtree(journal, ignore_errors=True)
    journal.write_text("a file where the journal folder should be\n")
    line = _one_line_error(cli("-C", str(tmp_path), "spec", "new", "Lost"))
    assert "cannot write the journal" in line and "a.journal" in line
    journal.unlink()
    journal.mkdir()
    (journal / "catalog.jsonl").symlink_to("/dev/full")  # a full disk
    line = _one_line_error(cli("-C", str(tmp_path), "spec", "new", "Lost"))
    assert "cannot write the journal" in line and "No space left" in line
    assert _titles(db) == []


PARTLY_WRITTEN = """
import resource, sys
from pathlib import Path
from specwright.errors import StoreError
from specwright.journal import Journal

journal = Journal(Path(sys.argv[1]))
journal.append("catalog", [{"t": 1, "op": "insert", "table": "specs", "row": {"id": "a"}}])
room = journal.path_for("catalog").stat().st_size + 2500  # the disk takes what fits, then fails
resource.setrlimit(resource.RLIMIT_FSIZE, (room, resource.RLIM_INFINITY))
pad = "p" * 1000
batch = [{"t": t, "op": "insert", "table": "specs", "row": {"id": pad}} for t in range(2, 7)]
try:
    journal.append("catalog", batch)
except StoreError as exc:
    print(exc)
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
journal.append("catalog", [{"t": 9, "op": "insert", "table": "specs", "row": {"id": "b"}}])
"""


def test_a_batch_a_full_disk_took_only_part_of_leaves_none_of_it_in_the_journal(
    tmp_path: Path,
) -> None:
    """A nearly full disk takes the first lines of a batch and refuses the rest: the write fails
    and says nothing was recorded, so the lines it did take go too (a rebuild, or a killed run's
    recovery, replayed them: rows the database never had), and the next batch is intact. A file
    size limit makes the write partial, as a full disk does."""
    done = subprocess.run(
        [sys.executable, "-c", PARTLY_WRITTEN, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "cannot write the journal" in done.stdout and "nothing was recorded" in done.stdout
    from specwright.journal import Journal

    read = Journal.read(tmp_path / "catalog.jsonl")
    assert [op["t"] for op in read.ops] == [1, 9]
    assert (tmp_path / "catalog.jsonl").read_text().count("\n") == 2  # no torn line either


# --- the database file ------------------------------------------------------------------------


def test_a_truncated_database_is_one_line_and_rebuilds_from_its_journal(
    tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "db" / "specwright.duckdb"
    monkeypatch.setenv("SPECWRIGHT_DB", str(db))
    assert cli("-C", str(tmp_path), "spec", "new", "Survivor").code == 0
    from specwright import keeper
    from specwright import store as store_mod

    keeper.close()
    store_mod._migrated.clear()
    store_mod._journal_roots.clear()
    with db.open("r+b") as fh:
        fh.truncate(db.stat().st_size // 2)
    line = _one_line_error(cli("-C", str(tmp_path), "status"))
    assert str(db) in line and "damaged" in line and "db rebuild" in line
    result = cli("-C", str(tmp_path), "--json", "db", "rebuild")
    assert result.code == 0, result.err
    assert _titles(db) == ["Survivor"]


def test_a_file_that_is_not_a_database_is_said_so_not_sent_to_rebuild(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    """`--db notes.txt` said "the database is damaged or unreadable ... `specwright db rebuild`
    recreates it from its journals": it never was a database and has no journals."""
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    for args in (("--db", str(notes), "status"), ("--db", str(notes), "spec", "new", "X")):
        line = _one_line_error(cli("-C", str(tmp_path), *args))
        assert (
            line
            == f"specwright: error: {notes}: not a DuckDB database (check --db / SPECWRIGHT_DB)"
        )
    assert notes.read_text() == "my notes\n"
    folder = tmp_path / "data"  # `--db data/`: DuckDB's "Could not read from file ... directory"
    folder.mkdir()
    said = (
        f"specwright: error: {folder}: a folder, not a database file (such as "
        f"{folder / 'specwright.duckdb'}; check --db / SPECWRIGHT_DB)"
    )
    # one wording whatever the command: `db rebuild` said "is a directory; expected ..."
    for args in (("status",), ("db", "rebuild"), ("spec", "new", "X")):
        line = _one_line_error(cli("-C", str(tmp_path), "--db", str(folder), *args))
        assert line == said, args


@pytest.mark.parametrize("damage", ["header zeroed", "cut short"])
def test_a_database_damaged_so_it_does_not_open_names_the_rebuild(
    tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    """A file DuckDB refuses at connect (its header overwritten, or cut to a few KB) used to
    be 'cannot open the database: IO Error ...' with no way out named."""
    db = tmp_path / "db" / "specwright.duckdb"
    monkeypatch.setenv("SPECWRIGHT_DB", str(db))
    assert cli("-C", str(tmp_path), "spec", "new", "Survivor").code == 0
    from specwright import keeper
    from specwright import store as store_mod

    keeper.close()
    store_mod._migrated.clear()
    store_mod._journal_roots.clear()
    with db.open("r+b") as fh:
        if damage == "header zeroed":
            fh.write(b"\0" * 8192)
        else:
            fh.truncate(5000)
    line = _one_line_error(cli("-C", str(tmp_path), "status"))
    assert str(db) in line and "damaged" in line and "db rebuild" in line, line
    result = cli("-C", str(tmp_path), "--json", "db", "rebuild")
    assert result.code == 0, result.err
    assert result.err.count("cannot read which journal is its own") == 1, result.err
    assert _titles(db) == ["Survivor"]


@pytest.mark.parametrize(
    "args",
    [["db", "rebuild", "--output", "{x}/rebuilt.duckdb"], ["report", "--html", "{x}/r.html"]],
    ids=["db rebuild --output", "report --html"],
)
def test_an_output_in_a_folder_that_cannot_be_made_is_one_line(
    tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    """A file where the output's folder should be (a read-only folder fails alike): both used
    to end in an OSError traceback (the rebuild's while cleaning up after the clear error)."""
    monkeypatch.setenv("SPECWRIGHT_DB", str(tmp_path / "db" / "specwright.duckdb"))
    assert cli("-C", str(tmp_path), "spec", "new", "One").code == 0
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    line = _one_line_error(cli("-C", str(tmp_path), *[a.format(x=blocker) for a in args]))
    assert str(blocker) in line, line


def test_a_database_whose_folder_is_a_file_is_one_line(
    tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "plain").write_text("x")
    monkeypatch.setenv("SPECWRIGHT_DB", str(tmp_path / "plain" / "x.duckdb"))
    line = _one_line_error(cli("-C", str(tmp_path), "spec", "new", "S"))
    assert "cannot create its folder" in line and str(tmp_path / "plain") in line


def _as_a_user(cmd: list[str]) -> list[str]:
    """``cmd`` without root's power to ignore file modes (so a read-only folder is one)."""
    if os.geteuid() != 0:
        return cmd
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file modes cannot be enforced")
    caps = "-dac_override,-dac_read_search,-fowner"
    return [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}", *cmd]


def test_writing_into_a_read_only_folder_is_one_line_and_reads_still_work(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "db"
    db = folder / "specwright.duckdb"
    env = {**os.environ, "SPECWRIGHT_DB": str(db), "SPECWRIGHT_LINGER": "0"}
    assert run_specwright("-C", str(tmp_path), "spec", "new", "Kept", env=env).returncode == 0
    folder.chmod(0o555)
    try:
        cli = [sys.executable, "-m", "specwright.cli", "-C", str(tmp_path)]
        run = dict(capture_output=True, text=True, env=env, timeout=120)
        shown = subprocess.run(_as_a_user([*cli, "spec", "list"]), **run)  # type: ignore[call-overload]
        assert shown.returncode == 0 and "Kept" in shown.stdout, shown.stderr
        refused = subprocess.run(_as_a_user([*cli, "spec", "new", "Not saved"]), **run)  # type: ignore[call-overload]
        line = _one_line_error(refused)
        assert str(db) in line and "cannot write the database" in line
    finally:
        folder.chmod(0o755)
    assert _titles(db) == ["Kept"]
    Store(db).rebuild_into(tmp_path / "rebuilt.duckdb")  # the refused write is not replayed
    assert _titles(tmp_path / "rebuilt.duckdb") == ["Kept"]


# --- db rebuild -------------------------------------------------------------------------------


def test_rebuild_while_another_process_holds_the_database_stops_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    """Copying imported usage over needs the old database: when another process holds it the
    rebuild says so, rather than finishing without the imports and half a file behind."""
    db = tmp_path / "a.duckdb"
    store = Store(db, lock_timeout_s=0.5)
    (tmp_path / "p").mkdir()
    catalog.create_spec(store, catalog.ensure_project(store, tmp_path / "p"), "Spec")
    store.release()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import duckdb, sys
            c = duckdb.connect({str(db)!r})
            print("holding", flush=True)
            sys.stdin.readline()
        """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    target = tmp_path / "rebuilt.duckdb"
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        with pytest.raises(StoreLockedError, match="locked by another process"):
            store.rebuild_into(target)
    finally:
        holder.communicate("\n", timeout=30)
    assert not target.exists() and not Path(str(target) + ".wal").exists()
    store.rebuild_into(target)  # and again once it is free
    assert _titles(target) == ["Spec"]


def test_a_database_held_by_a_stopped_process_says_so_at_once(tmp_path: Path) -> None:
    """A `specwright run` suspended with Ctrl-Z keeps the database locked: every other command
    waited out SPECWRIGHT_LOCK_TIMEOUT for a holder that cannot let go, then said only
    "locked by another process"."""
    db = tmp_path / "specwright.duckdb"
    Store(db).migrate()
    Store(db).release()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys; c = duckdb.connect({str(db)!r}); "
            "print('holding', flush=True); sys.stdin.readline()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        os.kill(holder.pid, signal.SIGSTOP)
        env = {"SPECWRIGHT_DB": str(db), "SPECWRIGHT_LOCK_TIMEOUT": "600"}
        # well within the 600 s it used to wait (a timeout here fails the test)
        result = run_specwright("-C", str(tmp_path), "spec", "list", env=env, timeout=60)
        line = _one_line_error(result)
        assert f"process {holder.pid}" in line and "is stopped" in line, line
        assert f"kill -CONT {holder.pid}" in line, line
    finally:
        os.kill(holder.pid, signal.SIGCONT)
        holder.communicate("\n", timeout=30)
    assert (
        run_specwright(
            "-C", str(tmp_path), "spec", "list", env={"SPECWRIGHT_DB": str(db)}
        ).returncode
        == 0
    )


def test_a_second_rebuild_keeps_the_first_backup(
    tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "db" / "specwright.duckdb"
    monkeypatch.setenv("SPECWRIGHT_DB", str(db))
    assert cli("-C", str(tmp_path), "spec", "new", "One").code == 0
    with Store(db).connect() as conn:  # only in the original: no journal has it
        conn.execute("CREATE TABLE my_notes AS SELECT 'only here' AS note")
    Store(db).release()
    first = cli("-C", str(tmp_path), "--json", "db", "rebuild")
    second = cli("-C", str(tmp_path), "--json", "db", "rebuild")
    assert first.code == 0 and second.code == 0, first.err + second.err
    assert json.loads(first.out)["previous"] == f"{db}.bak"
    assert json.loads(second.out)["previous"] == f"{db}.bak.1"
    assert Store(f"{db}.bak").query("SELECT note FROM my_notes") == [("only here",)]
    assert _titles(db) == ["One"]


def test_specs_made_after_the_database_was_lost_are_in_their_project_after_a_rebuild(
    tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database deleted, then a spec made before `db rebuild`: that command recorded the
    project again, and the rebuild used to hold two projects for one folder, the new spec in
    one no command could reach ("not in this project ... but in <the same folder>")."""
    db = tmp_path / "db" / "specwright.duckdb"
    monkeypatch.setenv("SPECWRIGHT_DB", str(db))
    assert cli("-C", str(tmp_path), "spec", "new", "Before").code == 0
    Store(db).release()
    db.unlink()  # and the next command is another process, as a user's is
    after = run_specwright("-C", str(tmp_path), "spec", "new", "After", cwd=tmp_path)
    assert after.returncode == 0, after.stderr
    rebuilt = run_specwright("-C", str(tmp_path), "db", "rebuild", cwd=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert len(Store(db).query("SELECT id FROM projects")) == 1
    listed = cli("-C", str(tmp_path), "spec", "list")
    assert "before" in listed.out and "after" in listed.out, listed.out + listed.err
    added = cli("-C", str(tmp_path), "chunk", "add", "after", "A", "--prompt", "x")
    assert added.code == 0, added.err


def test_a_second_rebuild_while_one_runs_is_refused_and_changes_nothing(
    tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two rebuilds at once: the second deleted the first one's file under it, and the first
    then moved the second's half-built database into place (an empty one, the data in .bak).
    The first rebuild is stood in for by a process holding its lock, as a rebuild does."""
    db = tmp_path / "db" / "specwright.duckdb"
    monkeypatch.setenv("SPECWRIGHT_DB", str(db))
    assert cli("-C", str(tmp_path), "spec", "new", "One").code == 0
    Store(db).release()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            f"f = open({str(db) + '.rebuild.lock'!r}, 'a')\n"
            "fcntl.flock(f, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        (db.parent / "specwright.duckdb.rebuild").write_bytes(b"the first rebuild's file")
        line = _one_line_error(cli("-C", str(tmp_path), "db", "rebuild"))
        assert "another `specwright db rebuild` is rebuilding it" in line, line
        assert (db.parent / "specwright.duckdb.rebuild").read_bytes() == b"the first rebuild's file"
        assert not (db.parent / "specwright.duckdb.bak").exists()
    finally:
        holder.kill()
        holder.communicate()
    assert cli("-C", str(tmp_path), "db", "rebuild").code == 0  # once it is gone
    assert _titles(db) == ["One"]


def test_a_rebuild_leaves_no_lock_file_beside_the_database(
    tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each rebuild left `<db>.rebuild.lock` behind, whether it finished or failed."""
    db = tmp_path / "db" / "specwright.duckdb"
    monkeypatch.setenv("SPECWRIGHT_DB", str(db))
    assert cli("-C", str(tmp_path), "spec", "new", "One").code == 0
    Store(db).release()
    stuck = db.parent / "specwright.duckdb.rebuild"
    (stuck / "in-the-way").mkdir(parents=True)  # a leftover it cannot remove: it fails
    assert "cannot write beside the database" in _one_line_error(
        cli("-C", str(tmp_path), "db", "rebuild")
    )
    assert sorted(p.name for p in db.parent.iterdir()) == [
        "journal",
        "specwright.duckdb",
        "specwright.duckdb.rebuild",
    ]
    shutil.rmtree(stuck)
    assert cli("-C", str(tmp_path), "db", "rebuild").code == 0
    assert sorted(p.name for p in db.parent.iterdir()) == [
        "journal",
        "specwright.duckdb",
        "specwright.duckdb.bak",
    ]
    assert _titles(db) == ["One"]


# --- init -------------------------------------------------------------------------------------


def test_init_keeps_a_gitignore_that_is_not_utf8(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / ".gitignore").write_bytes(b"# caf\xe9\n*.pyc")
    result = cli("-C", str(project), "init")
    assert result.code == 0, result.err
    assert (project / ".gitignore").read_bytes() == (
        b"# caf\xe9\n*.pyc\n# Specwright's database and journals\ndata/\n"
    )
    assert cli("-C", str(project), "init").code == 0
    assert (project / ".gitignore").read_bytes().count(b"data/") == 1


def test_store_errors_name_the_file(tmp_path: Path) -> None:
    """The API raises the same one-line errors the CLI prints."""
    (tmp_path / "plain").write_text("x")
    with pytest.raises(StoreError, match=r"x\.duckdb: cannot create its folder"):
        Store(tmp_path / "plain" / "x.duckdb").query("SELECT 1")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 32 MiB file system (tmpfs); skipped where mounting one is not permitted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(disk)]
    if os.geteuid() != 0 or subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs takes root")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_an_agent_that_fills_the_disk_fails_its_chunk_cleanly_and_the_spec_resumes(
    tmp_path: Path, small_disk: Path
) -> None:
    """The agent fills the disk that holds the project, the database and the temp folder: one
    line on stderr (it was a traceback when git's index could not be copied), the attempt rolled
    back, which frees the disk (the rollback could not write git's index while the agent's files
    filled it: they stayed, and so did the full disk), no execution left running, no torn
    journal line, and once the agent behaves the spec ships."""
    import yaml

    from specwright.journal import Journal
    from tests.support_loop import git, make_repo

    behaves = tmp_path / "behaves"
    fill = f"[ -e {behaves} ] || head -c 64M /dev/zero > big.bin; true"
    script = [{"write": "a.txt", "content": "a\n"}, {"run": fill}, {"say": "done"}]
    config = {
        "tools": {"executors": {"scripted": {"type": "scripted", "options": {"script": script}}}},
        "defaults": {"executor": "scripted", "reviewer": "checks", "maxIterations": 1},
        "verify": [{"name": "check", "command": "true"}],
    }
    repo = make_repo(small_disk / "repo", {".handoff/config.yaml": yaml.safe_dump(config)})
    (small_disk / "tmp").mkdir()
    db = small_disk / "data" / "specwright.duckdb"
    env = {"TMPDIR": str(small_disk / "tmp"), "SPECWRIGHT_DB": str(db)}
    for args in (["spec", "new", "Demo"], ["chunk", "add", "demo", "A", "--prompt", "x"]):
        assert run_specwright("-C", str(repo), *args, env=env).returncode == 0
    first = run_specwright("-C", str(repo), "run-all", "demo", env=env, timeout=300)
    said = first.stdout + first.stderr
    assert first.returncode in (1, 2) and "No space left" in said, said  # the chunk failed
    assert all(line.startswith("specwright: ") for line in first.stderr.splitlines()), said
    assert git(repo, "status", "--short") == ""  # rolled back: the disk has room again
    assert shutil.disk_usage(small_disk).free > 16 * 2**20
    assert list((small_disk / "tmp").iterdir()) == []
    store = Store(db)
    assert store.query("SELECT status FROM chunks") == [("failed",)]
    for table in ("runs", "executions", "chunks"):
        stuck = store.query_dicts(f"SELECT * FROM {table} WHERE status = 'running'")
        assert stuck == [], said
    for path in store.journal.files():
        assert Journal.read(path).skipped == 0, path
    behaves.touch()
    again = run_specwright("-C", str(repo), "run-all", "demo", env=env, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert store.query("SELECT status FROM chunks") == [("shipped",)]


def test_git_steps_with_a_full_temp_folder_are_one_line_and_leave_no_file(
    tmp_path: Path, small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy of git's index a diff makes, and the message file of a commit, go to the temp
    folder: when it is full, each is a one-line error naming it (they were OSError tracebacks)
    and the commit leaves no empty message file behind."""
    import tempfile

    from specwright import gitdiff, gitops
    from tests.support_loop import make_repo

    repo = make_repo(tmp_path / "repo")
    (repo / "calc.py").write_text("def mul(a, b):\n    return a * b\n")
    with (small_disk / "filler").open("wb", buffering=0) as fh, pytest.raises(OSError):
        while True:
            fh.write(b"x" * 2**20)
    monkeypatch.setattr(tempfile, "tempdir", str(small_disk))
    for step in (lambda: gitdiff.diff(repo, "HEAD"), lambda: gitops.commit_all(repo, "Mul", "c1")):
        with pytest.raises(gitops.GitError, match="No space left") as caught:
            step()
        assert str(small_disk) in str(caught.value) and "\n" not in str(caught.value)
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]
