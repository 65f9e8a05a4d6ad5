"""The foundation CLI: init, spec/chunk CRUD, status, config show; bad input exits 2 in one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import run_specwright


@pytest.fixture
def project(tmp_path: Path, cli) -> Path:  # type: ignore[no-untyped-def]
    root = tmp_path / "proj"
    root.mkdir()
    result = cli("-C", str(root), "init")
    assert result.code == 0, result.err
    return root


def test_init_creates_config_database_and_gitignore(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    assert (project / ".handoff" / "config.yaml").exists()
    assert "data/" in (project / ".gitignore").read_text()
    again = cli("-C", str(project), "--json", "init")
    assert again.code == 0
    assert json.loads(again.out)["config"].endswith("(kept)")


def test_init_where_handoff_is_a_file_says_so(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """It said "cannot write the config: File exists", of a config that did not exist."""
    (tmp_path / ".handoff").write_text("notes\n")
    res = cli("-C", str(tmp_path), "init")
    assert (res.code, res.err) == (
        2,
        f"specwright: error: {tmp_path / '.handoff' / 'config.yaml'}: cannot write the config: "
        f"{tmp_path / '.handoff'} is a file; expected a folder there\n",
    )


def test_init_and_status_say_when_the_environment_picked_the_database(
    tmp_path: Path,
    cli,  # type: ignore[no-untyped-def]
) -> None:
    """SPECWRIGHT_DB left exported from another project's work: `init` printed that database
    as this project's, nothing saying the project's own data/ was not used."""
    other = tmp_path / "elsewhere.duckdb"  # the autouse fixture's SPECWRIGHT_DB is another
    res = cli("-C", str(tmp_path), "--db", str(other), "init")
    assert res.code == 0, res.err
    assert f"database            {other} (from --db)\n" in res.out
    cli("-C", str(tmp_path), "db", "migrate")  # SPECWRIGHT_DB's file, which status needs
    status = cli("-C", str(tmp_path), "status").out
    assert f"\ndatabase {os.environ['SPECWRIGHT_DB']} (from SPECWRIGHT_DB)\n" in status
    shown = json.loads(cli("-C", str(tmp_path), "--db", str(other), "--json", "init").out)
    assert shown["database"] == str(other)


def test_init_in_a_repository_says_what_to_commit_and_that_is_enough(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """run/run-all need a clean tree: init names its uncommitted files and the command that
    commits them; run as printed, it leaves the tree clean (the database is ignored)."""
    import subprocess

    from specwright import gitops

    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "start"]):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True
        )
    res = cli("-C", str(repo), "init")
    assert res.code == 0, res.err
    hint = res.err.strip()
    assert hint.startswith("next: commit these before `specwright run`/`run-all`"), hint
    command = hint.split("tree): ", 1)[1]
    assert command == "git add .gitignore .handoff && git commit -m 'Specwright config'"
    env = {**__import__("os").environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t"}
    env.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    subprocess.run(command, shell=True, cwd=repo, check=True, env=env, capture_output=True)
    assert gitops.dirty_files(repo) == []
    assert cli("-C", str(repo), "init").err == ""  # nothing left to say


def test_spec_and_chunk_round_trip(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("-C", str(project), "spec", "new", "Add login", "--body", "Users log in.").code == 0
    assert cli("-C", str(project), "chunk", "add", "add-login", "Model", "--file", "m.py").code == 0
    r = cli(
        "-C",
        str(project),
        "chunk",
        "add",
        "add-login",
        "API",
        "--depends-on",
        "1",
        "--accept",
        "pytest passes",
    )
    assert r.code == 0, r.err
    shown = json.loads(cli("-C", str(project), "--json", "spec", "show", "add-login").out)
    assert shown["body"] == "Users log in."
    assert [c["title"] for c in shown["chunks"]] == ["Model", "API"]
    assert shown["chunks"][1]["depends_on"] == [shown["chunks"][0]["id"]]
    table = cli("-C", str(project), "chunk", "list", "add-login").out
    assert "Model" in table and "API" in table
    status = cli("-C", str(project), "status").out
    assert "add-login" in status and "pending:2" in status
    listed = json.loads(cli("-C", str(project), "--json", "spec", "list").out)
    assert [s["slug"] for s in listed] == ["add-login"]
    projects = json.loads(cli("-C", str(project), "--json", "project", "list").out)
    assert projects[0]["root"] == str(project)
    assert cli("-C", str(project), "spec", "delete", "add-login").code == 0
    assert json.loads(cli("-C", str(project), "--json", "spec", "list").out) == []


def test_json_goes_before_or_after_the_command_and_every_command_honours_it(
    project: Path, cli
) -> None:  # type: ignore[no-untyped-def]
    assert cli("-C", str(project), "spec", "new", "Add login").code == 0
    before = cli("-C", str(project), "--json", "spec", "list")
    after = cli("-C", str(project), "spec", "list", "--json")
    assert before.code == after.code == 0, after.err
    assert json.loads(after.out) == json.loads(before.out)
    assert json.loads(cli("-C", str(project), "status", "--json").out)
    # so do --db and -C: `specwright demo --db x.duckdb` was "unrecognized arguments"
    other = project.parent / "other.duckdb"
    made = cli("spec", "new", "Elsewhere", "-C", str(project), "--db", str(other))
    assert made.code == 0, made.err
    there = json.loads(cli("--db", str(other), "-C", str(project), "--json", "spec", "list").out)
    assert [s["slug"] for s in there] == ["elsewhere"]
    here = json.loads(cli("spec", "list", "--json", "-C", str(project)).out)
    assert [s["slug"] for s in here] == ["add-login"]
    schema = json.loads(cli("-C", str(project), "db", "schema", "--json").out)
    from specwright.migrations import latest_version

    assert schema["version"] == latest_version()
    specs = schema["tables"]["specs"]
    assert specs["columns"][0] == {"name": "id", "type": "UUID", "nullable": False, "default": None}
    assert "uq_specs_project_slug" in specs["indexes"]


def test_config_show(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    out = cli("-C", str(project), "config", "show").out
    assert "maxIterations: 3" in out and "claude-code" in out
    data = json.loads(cli("-C", str(project), "--json", "config", "show").out)
    assert data["defaults"]["executor"] == "claude-code"


BAD_INPUTS = [
    (["spec", "show", "nope"], "spec 'nope': no such spec"),
    (["chunk", "add", "nope", "T"], "spec 'nope': no such spec"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["spec", "new"], "the following arguments are required: title"),
    (["spec", "new", "   "], "spec title: expected a non-empty title"),
    (
        ["spec", "new", "X", "--body-file", "/nonexistent/spec.md"],
        "--body-file /nonexistent/spec.md: cannot read",
    ),
    (["spec", "new", "X", "--budget", "lots"], "argument --budget: expected a number of dollars"),
    (["spec", "new", "X", "--budget", "-5"], "--budget: expected a number of dollars from 0 to"),
    (["spec", "new", "X", "--budget", "nan"], "--budget: expected a number of dollars from 0 to"),
    # a budget of 1e308 (or 20 digits of --parallel) was taken: no one means that
    (
        ["spec", "new", "X", "--budget", "1e308"],
        "argument --budget: expected a number of dollars from 0 to 1,000,000, got '1e308'",
    ),
    (["chunk", "add", "x", "T", "--budget", "1000000.01"], "from 0 to 1,000,000, got '1000000.01'"),
    (
        ["queue", "add", "x", "--parallel", "99999999999999999999"],
        "argument --parallel: expected a whole number from 1 to 256, got '99999999999999999999'",
    ),
    (
        ["queue", "add", "x", "--max-iterations", "1001"],
        "a whole number from 1 to 1000, got '1001'",
    ),
    (["run", "x:1", "--max-iterations", "0"], "--max-iterations: expected a whole number from 1"),
    (["run-all", "x", "--max-iterations", "1e3"], "a whole number from 1 to 1000, got '1e3'"),
    (["worker", "--concurrency", "257"], "--concurrency: expected a whole number from 1 to 256"),
    (["spec", "new", "two\nlines"], "spec title 'two\\nlines': expected a single line"),
    (["usage", "daily", "--since", "2025-02-30"], "--since: '2025-02-30' is not a date"),
    (["usage", "daily", "-z", "Mars/Olympus"], "--timezone: unknown time zone 'Mars/Olympus'"),
    # "until the end of time" overflowed the day after it: a traceback
    (["usage", "daily", "--until", "9999-12-31"], "--until: '9999-12-31' is out of range"),
    (
        ["usage", "blocks", "--since", "0001-01-01", "-z", "Pacific/Kiritimati"],
        "--since: '0001-01-01' is out of range; expected a day from 1900-01-01 to 9000-12-31",
    ),
    (["report", "--html", "r.html", "--until", "99991231"], "'99991231' is out of range"),
    (["usage", "blocks", "-z", "Mars/Olympus"], "--timezone: unknown time zone 'Mars/Olympus'"),
    (
        ["usage", "daily", "--since", "20261126", "--until", "20261101"],
        "--since 2026-11-26 is after --until 2026-11-01: an empty window",
    ),
    (
        ["report", "--html", "r.html", "--since", "2026-12-01", "--until", "2026-01-01"],
        "--since 2026-12-01 is after --until 2026-01-01",
    ),
    (["usage", "blocks", "--since", "2026-02-02", "--until", "2026-02-01"], "an empty window"),
    (["usage", "specs", "--source", "codex"], "--source codex: usage specs counts Specwright's"),
    (["report", "--html", "/"], "--html /: is a directory; expected a file name"),
    (["usage", "export", "-o", "/dev/null"], "/dev/null: exists and is not a directory"),
    (["run-all", "x", "--parallel", "0"], "argument --parallel: expected a whole number from 1"),
    (["worker", "--concurrency", "-1"], "argument --concurrency: expected a whole number"),
    (
        ["agents", "check", "scripted", "--timeout", "0"],
        "argument --timeout: expected a number of seconds from 1 to 86400, got '0'",
    ),
    (["agents", "check", "scripted", "--timeout", "inf"], "--timeout: expected a number of sec"),
    (["agents", "check", "scripted", "--timeout", "1e308"], "from 1 to 86400, got '1e308'"),
    # a negative limit ran the baseline, then failed 'wall-time limit of -5s reached'; nan had none
    (["run", "x:1", "--wall-time", "-5"], "--wall-time: expected a number of seconds from 1 to"),
    (["run", "x:1", "--wall-time", "nan"], "argument --wall-time: expected a number of seconds"),
    (["run", "x:1", "--wall-time", "1e-300"], "seconds from 1 to 604800, got '1e-300'"),
    (["run", "x:1", "--wall-time", "1e308"], "seconds from 1 to 604800, got '1e308'"),
    # a --poll of 1e-300 was taken: the worker polled the database without a pause, a CPU busy
    (["worker", "--poll", "1e-300"], "argument --poll: expected a number of seconds from 0.1 to"),
    (["worker", "--poll", "1e308"], "--poll: expected a number of seconds from 0.1 to 3600, got"),
    (
        ["worker", "--poll=-inf"],
        "--poll: expected a number of seconds from 0.1 to 3600, got '-inf'",
    ),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_cli_input_is_one_line_exit_2(
    project: Path, cli, args: list[str], message: str
) -> None:  # type: ignore[no-untyped-def]
    result = cli("-C", str(project), *args)
    assert result.code == 2
    assert message in result.err
    assert "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_a_spec_of_another_project_is_shown_but_not_changed_from_here(
    project: Path, tmp_path: Path, cli
) -> None:  # type: ignore[no-untyped-def]
    """One database, two projects: reading a spec by slug works from either (like run-all);
    changing it from the wrong project says where it is instead of "no such spec"."""
    other = tmp_path / "other"
    other.mkdir()
    assert cli("-C", str(project), "spec", "new", "Add login").code == 0
    assert cli("-C", str(project), "chunk", "add", "add-login", "Form").code == 0
    shown = json.loads(cli("-C", str(other), "--json", "spec", "show", "add-login").out)
    assert shown["slug"] == "add-login"
    listed = json.loads(cli("-C", str(other), "--json", "chunk", "list", "add-login").out)
    assert [c["title"] for c in listed] == ["Form"]
    # to stdout or a file named, an export reads it: it found no spec from another project
    own = cli("-C", str(project), "spec", "export", "add-login", "-o", "-")
    assert own.code == 0 and "title: Add login" in own.out
    assert cli("-C", str(other), "spec", "export", "add-login", "-o", "-").out == own.out
    named = tmp_path / "named.md"
    assert cli("-C", str(other), "spec", "export", "add-login", "-o", str(named)).code == 0
    assert named.read_text() == own.out and not (other / ".handoff").exists()
    for args in (
        ["chunk", "add", "add-login", "Again"],
        ["spec", "delete", "add-login"],
        ["spec", "export", "add-login"],  # its default file is in its own project
    ):
        res = cli("-C", str(other), *args)
        assert res.code == 2 and len(res.err.strip().splitlines()) == 1
        assert f"not in this project ({other}) but in {project}: run with -C {project}" in res.err
    listed = json.loads(cli("-C", str(project), "--json", "chunk", "list", "add-login").out)
    assert [c["title"] for c in listed] == ["Form"]


def _older_title(project: Path, title: str) -> None:
    """Give the project's one chunk ``title`` as a database written before titles were checked
    holds it (``chunk add`` now refuses a control character)."""
    from specwright.store import Store, resolve_db_path

    Store(resolve_db_path(project)).write([Store.op_sql("UPDATE chunks SET title = ?", [title])])


def test_tables_show_no_control_characters_and_results_read_plainly(
    project: Path, tmp_path: Path, cli
) -> None:  # type: ignore[no-untyped-def]
    """A title stored before titles were checked (a planner model's words) may hold a terminal
    escape: it is shown as '?'. A result printed as key and value shows a mapping as 'key
    value' pairs, not a Python dict."""
    assert cli("-C", str(project), "spec", "new", "S").code == 0
    assert cli("-C", str(project), "chunk", "add", "s", "Plain title").code == 0
    _older_title(project, "Evil \x1b[2J\x07 title")
    out = cli("-C", str(project), "chunk", "list", "s").out
    assert "\x1b" not in out and "\x07" not in out and "Evil ?[2J? title" in out
    exported = cli("-C", str(project), "usage", "export", "-o", str(tmp_path / "exp")).out
    assert "usage_records 0, usage_snapshots 0, prices 0" in exported and "{" not in exported


def test_nothing_the_cli_prints_can_drive_the_terminal(project: Path) -> None:
    """Whatever a command prints (here a run-all plan: titles and files a planner wrote) goes
    out with control characters shown as '?', in a real process writing to a pipe."""
    c = str(project)
    assert run_specwright("-C", c, "spec", "new", "S").returncode == 0
    assert (
        run_specwright("-C", c, "chunk", "add", "s", "Plain", "--file", "a\x1b.py").returncode == 0
    )
    _older_title(project, "Evil \x1b[2J\x9b31m\x07 title\tend")
    plan = run_specwright("-C", c, "run-all", "s", "--plan", "--executor", "scripted")
    assert plan.returncode == 0, plan.stderr
    assert not any(ch in plan.stdout for ch in "\x1b\x9b\x07")
    assert "Evil ?[2J?31m? title\tend" in plan.stdout and "a?.py" in plan.stdout


def test_titles_with_joiners_or_spaces_show_whole_bidi_overrides_do_not(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """An emoji sequence and a Persian word hold zero-width joiners, which Python does not call
    printable: they showed as 'dev 👩?💻' and 'می?خواهم'; nor are a no-break space and the
    ideographic space of Japanese text ('レート?制限'), an emoji newer than Python's Unicode
    tables or a private-use icon of a terminal font. A bidirectional override still shows as
    '?' (it reorders what follows)."""
    titles = [
        "Ship it, dev 👩\u200d💻",
        "Persian: می\u200cخواهم",
        "レート\u3000制限",
        "v1.0\u00a0beta",
        "Mood \U0001fae8",
        "Branch \uf418 icon",
    ]
    assert cli("-C", str(project), "spec", "new", "S").code == 0
    for title in titles:
        assert cli("-C", str(project), "chunk", "add", "s", title).code == 0
    out = cli("-C", str(project), "chunk", "list", "s").out
    assert all(title in out for title in titles), out
    _older_title(project, "Evil \u202egnp.exe")
    assert "Evil ?gnp.exe" in cli("-C", str(project), "chunk", "list", "s").out


def test_a_slug_that_looks_like_an_id_prefix_finds_its_spec(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """Ids are UUIDv7: all made this year start alike. A spec titled like such a prefix is
    found by its slug, not refused as an ambiguous id prefix."""
    for title in ("One", "Two"):
        assert cli("-C", str(project), "spec", "new", title).code == 0
    first = json.loads(cli("-C", str(project), "--json", "spec", "show", "one").out)["id"]
    prefix = first[:4]
    assert cli("-C", str(project), "spec", "new", prefix).code == 0
    shown = cli("-C", str(project), "--json", "spec", "show", prefix)
    assert shown.code == 0, shown.err
    assert json.loads(shown.out)["slug"] == prefix


def test_a_project_directory_that_does_not_exist_is_refused(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    ghost = project / "nonexistent"
    res = cli("-C", str(ghost), "spec", "new", "Ghost")
    assert res.code == 2 and res.err.strip() == f"specwright: error: -C {ghost}: not a directory"
    listed = json.loads(cli("-C", str(project), "--json", "project", "list").out)
    assert all(p["root"] != str(ghost) for p in listed)


@pytest.mark.parametrize("args", [("status",), ("spec", "list"), ("usage", "daily")])
def test_a_command_that_only_reads_refuses_a_project_directory_that_does_not_exist(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli,  # type: ignore[no-untyped-def]
    args: tuple[str, ...],
) -> None:
    """`-C typo status` made typo/data/specwright.duckdb and showed an empty project "typo"."""
    monkeypatch.delenv("SPECWRIGHT_DB")
    ghost = tmp_path / "typo"
    res = cli("-C", str(ghost), *args)
    assert (res.code, res.err) == (2, f"specwright: error: -C {ghost}: not a directory\n")
    assert not ghost.exists()


_READERS = [
    ("status",),
    ("project", "list"),
    ("spec", "list"),
    ("spec", "show", "x"),
    ("spec", "export", "x", "-o", "-"),
    ("chunk", "list", "x"),
    ("queue", "list"),
    ("usage", "daily"),
    ("usage", "specs"),
    ("usage", "export", "-o", "exported"),
    ("report", "--html", "report.html"),
]


def test_a_command_that_only_reads_refuses_a_database_file_that_is_not_there(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli,  # type: ignore[no-untyped-def]
) -> None:
    """`usage specs --db dat/specwright.duckdb` (a typo) made a new empty database and printed
    an empty report; it names the path and what picked it, creates nothing; a write still
    creates the database."""
    root = tmp_path / "proj"
    root.mkdir()
    monkeypatch.chdir(root)
    typo = root / "dat" / "specwright.duckdb"
    for args in _READERS:
        res = cli(*args, "--db", "dat/specwright.duckdb")
        assert (res.code, res.err) == (
            2,
            f"specwright: error: --db dat/specwright.duckdb: no database file at {typo}; "
            "nothing created (check the path)\n",
        ), args
    env = os.environ["SPECWRIGHT_DB"]
    res = cli("usage", "specs")
    assert res.err.startswith(f"specwright: error: SPECWRIGHT_DB {env}: no database file at")
    monkeypatch.delenv("SPECWRIGHT_DB")
    default = root / "data" / "specwright.duckdb"
    res = cli("status")
    assert (res.code, res.err) == (
        2,
        f"specwright: error: {default}: no database yet (the project's default); nothing "
        "created (`specwright init` creates it, or --db PATH names another)\n",
    )
    assert sorted(p.name for p in root.iterdir()) == []
    assert not Path(env).parent.exists()
    assert cli("spec", "new", "One").code == 0  # a command that writes makes it
    assert default.is_file() and cli("status").code == 0


def test_dependency_on_missing_chunk(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    cli("-C", str(project), "spec", "new", "S")
    result = cli("-C", str(project), "chunk", "add", "s", "B", "--depends-on", "9")
    assert result.code == 2 and "depends on '9': spec s has no such chunk (none; " in result.err


def test_a_dependency_named_spec_colon_position_is_taken(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """`--depends-on s:1`, as chunks are named in `run s:1` and the README, was refused with
    "spec s has no such chunk (chunk 1; or a chunk id)" though chunk 1 was there."""
    c = ("-C", str(project))
    for title in ("S", "Other"):
        assert cli(*c, "spec", "new", title).code == 0
    assert cli(*c, "chunk", "add", "s", "A").code == 0
    assert cli(*c, "chunk", "add", "other", "X").code == 0
    added = cli(*c, "chunk", "add", "s", "B", "--depends-on", "s:1")
    assert added.code == 0, added.err
    a, b = json.loads(cli(*c, "--json", "chunk", "list", "s").out)
    assert b["depends_on"] == [a["id"]]
    other = cli(*c, "chunk", "add", "s", "C", "--depends-on", "other:1")
    assert other.code == 2 and other.err == (
        "specwright: error: depends on other:1: a chunk can only depend on chunks of its own "
        "spec (s)\n"
    )


def test_plan_of_a_spec_without_chunks_says_so_as_run_all_does(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """`run-all --plan` of a draft without chunks printed an empty order and "Estimated cost:
    $0.00 - $0.00" (exit 0), where run-all itself refuses it."""
    cli("-C", str(project), "spec", "new", "Draft")
    message = (
        "specwright: error: spec 'draft' has no chunks to run (have the planner split it: "
        "`specwright plan --resume draft`, or add them: `specwright chunk add draft TITLE`)"
    )
    for args in (["--plan"], []):
        result = cli("-C", str(project), "run-all", "draft", *args)
        assert result.code == 2 and result.err.strip().splitlines() == [message], result
        assert result.out == ""


def test_bad_config_file_is_reported_by_cli(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    (project / ".handoff" / "config.yaml").write_text("defaults:\n  reviewer: ghost\n")
    result = cli("-C", str(project), "config", "show")
    assert result.code == 2
    assert "config.yaml:2: defaults.reviewer: unknown reviewer 'ghost'" in result.err


def test_delete_with_history_needs_force(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    from specwright import catalog
    from specwright.model import new_id, utcnow
    from specwright.store import Store, resolve_db_path

    cli("-C", str(project), "spec", "new", "S")
    store = Store(resolve_db_path(project))
    spec = catalog.get_spec(store, "s")
    store.insert(
        "runs",
        {
            "id": new_id(),
            "spec_id": spec.id,
            "kind": "spec",
            "status": "failed",
            "started_at": utcnow(),
        },
    )
    refused = cli("-C", str(project), "spec", "delete", "s")
    assert refused.code == 2 and "use --force" in refused.err
    forced = cli("-C", str(project), "spec", "delete", "s", "--force")
    assert forced.code == 0 and "1 runs" in forced.out


def test_console_script_runs_in_a_subprocess(project: Path) -> None:
    proc = run_specwright("-C", str(project), "--json", "status")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["project"] == "proj"
    bad = run_specwright("-C", str(project), "spec", "show", "missing")
    assert bad.returncode == 2 and bad.stderr.startswith("specwright: error: spec 'missing'")


@pytest.mark.parametrize("args", [("config", "show"), ("--json", "config", "show"), ("status",)])
def test_output_cut_short_by_a_pipe_ends_quietly(project: Path, args: tuple[str, ...]) -> None:
    """`specwright ... | head`: the reader is gone before anything is written (here: before the
    process starts), so every write meets a closed pipe: exit 0, no traceback."""
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "specwright.cli", "-C", str(project), *args],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_commands_that_only_read_record_no_project(project: Path, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """`status` and `spec list` from a folder the database knows nothing of leave it so; `spec
    list` says where the specs are."""
    assert cli("-C", str(project), "spec", "new", "Count words").code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    reads = (
        ("status",),
        ("spec", "list"),
        ("--json", "spec", "list"),
        ("spec", "show", "count-words"),
    )
    reads += (("chunk", "list", "count-words"), ("spec", "export", "count-words", "-o", "-"))
    for args in reads:
        assert cli("-C", str(elsewhere), *args).code == 0, args
    listed = cli("--json", "project", "list")
    assert [p["root"] for p in json.loads(listed.out)] == [str(project.resolve())]
    res = cli("-C", str(elsewhere), "spec", "list")
    assert "(none)" in res.out
    assert f"no specs in this project, {elsewhere.resolve()}; the database holds 1 spec" in res.out
    assert "status --all" in res.out
    assert cli("-C", str(elsewhere), "spec", "new", "Here").code == 0  # a write records it
    listed = cli("--json", "project", "list")
    assert len(json.loads(listed.out)) == 2


def test_status_all_tells_two_clones_of_one_name_apart(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """Two clones of one repository (two folders `api`), each with a spec `add-tests`, were
    two identical rows `api  add-tests` in `status --all`: each now names its folder, as `usage
    --by project` does."""
    roots = [tmp_path / w / "api" for w in "ab"]
    for root in roots:
        root.mkdir(parents=True)
        assert cli("-C", str(root), "spec", "new", "Add tests").code == 0
    (tmp_path / "web").mkdir()
    assert cli("-C", str(tmp_path / "web"), "spec", "new", "Add tests").code == 0
    shown = json.loads(cli("-C", str(roots[0]), "--json", "status", "--all").out)
    assert [s["project"] for s in shown["specs"]] == [
        f"api ({roots[0].resolve()})",
        f"api ({roots[1].resolve()})",
        "web",
    ]


def test_tables_line_up_after_wide_characters(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """A slug or title in Japanese takes two terminal columns a character: every column after
    it was shifted left by as many columns as it has characters."""
    import unicodedata

    def columns(text: str) -> int:
        return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)

    c = ("-C", str(project))
    assert cli(*c, "spec", "new", "レート制限を追加").code == 0
    for title in ("最初", "second one"):
        assert cli(*c, "chunk", "add", "レート制限を追加", title).code == 0
    header, *rows = cli(*c, "chunk", "list", "レート制限を追加").out.splitlines()
    where = [columns(line[: line.index(word)]) for line, word in zip(
        [header, *rows], ["STATUS", "pending", "pending"], strict=True)]  # fmt: skip
    assert len(set(where)) == 1, [header, *rows]
    # a long one is cut at 60 columns, as an ASCII one is at 60 characters (it took 120)
    assert cli(*c, "chunk", "add", "レート制限を追加", "長" * 80).code == 0
    [long] = [x for x in cli(*c, "chunk", "list", "レート制限を追加").out.splitlines() if "長" in x]
    cell = long[long.index("長") : long.index("...") + 3]
    assert cell == "長" * 28 + "..." and columns(cell) == 59


def test_store_times_say_their_zone(project: Path, cli, tokyo) -> None:  # type: ignore[no-untyped-def]
    """`spec list --json` gave "2026-01-02T23:30:05" (the store's UTC, unsaid) and its table
    the same bare: in Tokyo, a spec made a minute ago read as made nine hours before. --json
    now carries the offset (spec, chunk, project, status); tables show local time with it."""
    import uuid
    from datetime import UTC, datetime

    from specwright.store import Store, resolve_db_path

    at = datetime(2026, 1, 2, 23, 30, 5)  # UTC, as the store keeps it: 08:30 next day in Tokyo
    utc, local = "2026-01-02T23:30:05+00:00", "  2026-01-03 08:30:05 +09:00"
    c = ("-C", str(project))
    spec = json.loads(cli(*c, "--json", "spec", "new", "Zones").out)
    assert spec["created_at"].endswith("+00:00")
    assert cli(*c, "chunk", "add", "zones", "A", "--prompt", "p").code == 0
    store = Store(resolve_db_path(project))
    for table in ("specs", "chunks", "projects"):
        store.query(f"UPDATE {table} SET created_at = ?", [at])
    run = {"id": str(uuid.uuid4()), "spec_id": spec["id"], "kind": "run", "status": "done"}
    store.insert("runs", {**run, "started_at": at})
    [listed] = json.loads(cli(*c, "--json", "spec", "list").out)
    shown = json.loads(cli(*c, "--json", "spec", "show", "zones").out)
    [chunk] = json.loads(cli(*c, "--json", "chunk", "list", "zones").out)
    [proj] = json.loads(cli(*c, "--json", "project", "list").out)
    [ran] = json.loads(cli(*c, "--json", "status").out)["recent_runs"]
    assert [listed["created_at"], shown["created_at"], shown["chunks"][0]["created_at"]] == [
        utc
    ] * 3
    assert [chunk["created_at"], proj["created_at"], ran["started_at"]] == [utc] * 3
    assert datetime.fromisoformat(listed["created_at"]) == at.replace(tzinfo=UTC)
    for args in (("spec", "list"), ("project", "list"), ("status",)):
        assert local in cli(*c, *args).out, args
