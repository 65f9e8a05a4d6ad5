"""`specwright demo`: the main job, offline, in one command, and re-runnable."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from specwright import demo
from specwright.demo import report_path
from specwright.store import Store
from tests.conftest import git, run_specwright


def test_demo_runs_offline_and_reruns_clean(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    db = work / "data" / "specwright.duckdb"
    env = {"SPECWRIGHT_DB": str(db)}
    proc = run_specwright("--json", "demo", cwd=work, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "shipped"
    assert [(c["chunk"], c["status"], c["iterations"]) for c in out["chunks"]] == [
        (1, "shipped", 2),
        (2, "shipped", 1),
        (3, "shipped", 1),
    ]
    assert all(c["cost_usd"] > 0 and c["input_tokens"] > 0 for c in out["chunks"])
    demo = work / "data" / "demo"
    assert out["project"] == str(demo)
    # the rejected attempt left no trace: one commit per chunk on the spec branch
    log = git(demo, "log", "--format=%s", out["branch"]).splitlines()
    assert log[:3] == ["Command-line interface", "Top N words", "Count words"]
    assert "simplif" not in git(demo, "show", f"{out['branch']}:textstats/normalize.py")
    store = Store(db)
    # the summary's tokens mean what they mean in `usage` reports: input without the cache
    totals = store.query(
        "SELECT sum(input_tokens), sum(cache_read_tokens + cache_write_tokens), "
        "sum(output_tokens) FROM executions"
    )[0]
    assert (
        tuple(
            sum(c[k] for c in out["chunks"])
            for k in ("input_tokens", "cache_tokens", "output_tokens")
        )
        == totals
    )
    verdicts = store.query(
        "SELECT r.verdict FROM reviews r JOIN chunks c ON c.id = r.chunk_id "
        "WHERE c.position = 1 ORDER BY r.created_at"
    )
    assert [v[0] for v in verdicts] == ["REVISE", "SHIP"]

    # its dashboard counts days in the machine's zone, as `specwright usage` does
    again = run_specwright("demo", cwd=work, env={**env, "TZ": "Asia/Tokyo"}, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Count words" in again.stdout and "shipped: all 3 chunks shipped" in again.stdout
    assert f"database: {db}" in again.stdout
    assert store.query("SELECT count(*) FROM specs")[0][0] == 1  # the old demo was replaced
    # the report is named after its database, so demos with other databases keep their own
    assert out["report"] == str(db.parent / "specwright-demo-report.html")
    assert Path(out["report"]).is_file() and f"report:   {out['report']}" in again.stdout
    assert "Showing days in Asia/Tokyo" in Path(out["report"]).read_text(encoding="utf-8")
    assert report_path(work / "b.duckdb") == work / "b-demo-report.html"


def test_the_next_commands_the_demo_prints_read_its_database(tmp_path: Path) -> None:
    """After `demo --db`, the commands it suggests carry that --db: as printed they read the
    default database of the folder they are typed in, showed no spec and made a new file."""
    work = tmp_path / "work"
    work.mkdir()
    db = tmp_path / "elsewhere" / "demo.duckdb"
    env = {"SPECWRIGHT_DB": ""}
    proc = run_specwright("--db", str(db), "demo", cwd=work, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("next:"))
    first = shlex.split(line.removeprefix("next:").split("|")[0])
    assert first[:3] == ["specwright", "--db", str(db)]
    shown = run_specwright(*first[1:], cwd=work, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "word-statistics-for-textstats" in shown.stdout
    assert not (work / "data" / "specwright.duckdb").exists()


def test_demo_into_a_real_project_refuses_and_keeps_its_specs(
    tmp_path: Path, git_repo: Path
) -> None:
    db = tmp_path / "db" / "specwright.duckdb"
    env = {"SPECWRIGHT_DB": str(db)}
    made = run_specwright("spec", "new", "My precious spec", cwd=git_repo, env=env)
    assert made.returncode == 0, made.stderr

    def kept() -> bool:
        titles = Store(db).query("SELECT title FROM specs WHERE title = 'My precious spec'")
        return titles == [("My precious spec",)]

    proc = run_specwright("demo", "--dir", str(git_repo), cwd=tmp_path, env=env, timeout=600)
    assert proc.returncode == 2 and "not a Specwright demo; not touching it" in proc.stderr
    assert kept(), proc.stdout + proc.stderr
    assert (git_repo / "README.md").exists()
    # a project whose folder is gone: the demo may be built there, but that project's specs stay
    # (the reset the demo starts with, without the ~30 s run after it)
    gone = tmp_path / "moved-away"
    Store(db).query("UPDATE projects SET root = ?", [str(gone)])
    demo.reset(Store(db), gone)
    assert kept()


def _refused(tmp_path: Path, *args: str) -> str:
    """Run `specwright demo ARGS`, which must fail at once: exit 2, one line on stderr, nothing
    printed, no database made; returns the message."""
    db = tmp_path / "db" / "specwright.duckdb"
    proc = run_specwright("demo", *args, cwd=tmp_path, env={"SPECWRIGHT_DB": str(db)})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == "" and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert not db.parent.exists()
    return proc.stderr.removeprefix("specwright: error: ").strip()


def test_demo_with_an_unknown_executor_builds_and_records_nothing(tmp_path: Path) -> None:
    where = tmp_path / "demo3"
    message = _refused(tmp_path, "--executor", "nope", "--dir", str(where))
    assert (
        message
        == "the demo's config: tools.executors: no executor 'nope'; expected one of scripted"
    )
    assert not where.exists()


def test_demo_dir_it_cannot_use_is_one_line(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    expected = "expected a new or empty directory, or an earlier demo"
    assert _refused(tmp_path, "--dir", str(afile)) == (
        f"{afile}: exists and is not a directory; {expected}"
    )
    assert _refused(tmp_path, "--dir", str(afile / "demo")) == (
        f"{afile / 'demo'}: cannot create the demo directory (Not a directory); {expected}"
    )
    busy = tmp_path / "busy"
    (busy / "notes").mkdir(parents=True)
    assert _refused(tmp_path, "--dir", str(busy)) == (
        f"{busy}: exists and is not a Specwright demo; not touching it ({expected})"
    )
    assert afile.read_text() == "mine\n" and [p.name for p in busy.iterdir()] == ["notes"]


def test_demo_dir_holding_the_database_is_refused_naming_it(tmp_path: Path) -> None:
    """`mkdir d && cd d && specwright demo --dir .`: the database would go into the folder the
    demo replaces; one line says so (not that an empty folder is not empty) and nothing is
    made there."""
    db = tmp_path / "db" / "specwright.duckdb"
    assert _refused(tmp_path, "--dir", str(tmp_path)).startswith(
        f"{tmp_path}: the database {db} is inside it, and the demo replaces what is there"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "SPECWRIGHT_DB"}
    proc = subprocess.run(
        [sys.executable, "-m", "specwright.cli", "demo", "--dir", "."],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert f"the database {empty / 'data' / 'specwright.duckdb'} is inside it" in proc.stderr
    assert list(empty.iterdir()) == []


def test_demo_dir_in_a_folder_it_cannot_write_is_one_line(
    tmp_path: Path, unwritable: Callable[[Path], Path]
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked = unwritable(locked)
    message = _refused(tmp_path, "--dir", str(locked / "demo"))
    assert message.startswith(f"{locked / 'demo'}: cannot create the demo directory (")


def test_demo_with_a_bad_tz_says_what_picks_a_zone(tmp_path: Path) -> None:
    """`specwright demo` has no --timezone: the bad-TZ warning must not send the user to one."""
    env = {"SPECWRIGHT_DB": str(tmp_path / "specwright.duckdb"), "TZ": "Nowhere/Land"}
    proc = run_specwright("demo", cwd=tmp_path, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "TZ='Nowhere/Land' is not a time zone" in proc.stderr, proc.stderr
    assert "(`specwright report --timezone` picks one)" in proc.stderr, proc.stderr
