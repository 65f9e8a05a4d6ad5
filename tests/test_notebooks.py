"""The three notebooks: committed clean, parameters declared, and run for real — nbval top to
bottom against a demo database, papermill with parameters (side effects checked in the store)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from specwright.store import Store
from specwright.testing import FakeModelServer, anthropic_tool_use
from tests.conftest import REPO
from tests.support_notebooks import (
    NOTEBOOK_PARAMETERS,
    NOTEBOOKS,
    copy_database,
    demo_database,
    make_project,
    make_spec,
    out_dir,
    papermill,
)

# --- committed clean --------------------------------------------------------------------------


def _cells(name: str) -> list[dict]:
    return json.loads((NOTEBOOKS / name).read_text())["cells"]


def test_the_notebooks_are_there() -> None:
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(NOTEBOOK_PARAMETERS)


@pytest.mark.parametrize("name", sorted(NOTEBOOK_PARAMETERS))
def test_committed_notebook_has_no_outputs_or_execution_counts(name: str) -> None:
    data = json.loads((NOTEBOOKS / name).read_text())
    for n, cell in enumerate(data["cells"], 1):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{name}: cell {n} has outputs; clear them"
            assert cell["execution_count"] is None, f"{name}: cell {n} has an execution count"
    assert "widgets" not in data["metadata"], f"{name}: saved widget state; clear it"


@pytest.mark.parametrize("name", sorted(NOTEBOOK_PARAMETERS))
def test_notebook_is_thin_with_one_documented_parameters_cell(name: str) -> None:
    import papermill as pm

    cells = _cells(name)
    assert cells[0]["cell_type"] == "markdown" and len("".join(cells[0]["source"])) > 300
    tagged = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1, f"{name}: expected exactly one cell tagged parameters"
    params = pm.inspect_notebook(str(NOTEBOOKS / name))
    assert set(params) == NOTEBOOK_PARAMETERS[name]
    assert all(p["help"].strip() for p in params.values()), f"{name}: a parameter lacks a comment"
    for cell in cells:
        if cell["cell_type"] == "code" and cell is not tagged[0]:
            assert len("".join(cell["source"]).strip().splitlines()) <= 4, "keep cells thin"


def test_readme_papermill_lines_pass_only_declared_parameters() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Notebooks", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.strip().startswith("papermill ")]
    assert {re.search(r"notebooks/(\S+\.ipynb)", line)[1] for line in lines} == set(  # type: ignore[index]
        NOTEBOOK_PARAMETERS
    )
    for line in lines:
        name = re.search(r"notebooks/(\S+\.ipynb)", line)[1]  # type: ignore[index]
        passed = set(re.findall(r"-[py] (\w+)", line))
        assert passed and passed <= NOTEBOOK_PARAMETERS[name], line
        assert re.search(r"\bout/\S+\.ipynb", line), f"executed copies go to out/: {line}"


def test_the_python3_kernel_is_found_in_the_isolated_home(isolate: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "jupyter", "kernelspec", "list", "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    specs = json.loads(out.stdout)["kernelspecs"]
    assert "python3" in specs
    assert not specs["python3"]["resource_dir"].startswith(os.environ["HOME"])


# --- run for real -------------------------------------------------------------------------------


def test_nbval_runs_every_notebook_against_a_demo_database(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    db = copy_database(demo_database(tmp_path_factory), tmp_path / "db")
    before = Store(db).query("SELECT count(*) FROM runs WHERE kind = 'spec'")[0][0]
    env = {**os.environ, "SPECWRIGHT_DB": str(db)}
    # -n 0: the notebooks one after another in one process, as a user runs them (02 writes the
    # database the others read)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q",
         "-n", "0", "--rootdir", str(REPO), str(NOTEBOOKS)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    assert re.search(r"\b6 passed\b", result.stdout), result.stdout[-2000:]
    # 02 ran the demo again (built fresh beside the database) and it shipped
    store = Store(db)
    rows = store.query_dicts(
        "SELECT status FROM runs WHERE kind = 'spec' ORDER BY started_at DESC LIMIT 1"
    )
    assert store.query("SELECT count(*) FROM runs WHERE kind = 'spec'")[0][0] >= before
    assert rows[0]["status"] == "shipped"
    assert (db.parent / "demo" / "textstats" / "cli.py").read_text().count("top_words") >= 1


def test_papermill_runs_02_with_parameters_and_the_store_has_the_run(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    db = tmp_path / "db" / "specwright.duckdb"
    store = Store(db)
    spec = make_spec(store, root)
    output = out_dir("notebooks") / "02_run-ok.ipynb"
    result = papermill(
        "02_run.ipynb", output, db,
        ("project_dir", root), ("spec", spec.slug), ("executor", "scripted"),
        ("reviewer", "checks"), ("max_iterations", 2), ("parallel", 1),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    (run,) = store.query_dicts(
        "SELECT id, status, executor, reviewer, reason FROM runs WHERE kind = 'spec'"
    )
    assert (run["status"], run["executor"], run["reviewer"]) == ("shipped", "scripted", "checks")
    statuses = store.query("SELECT position, status FROM chunks ORDER BY position")
    assert statuses == [(1, "shipped"), (2, "shipped"), (3, "shipped")]
    calls = store.query("SELECT count(*) FROM events WHERE type = 'tool_call'")[0][0]
    assert calls == 3
    executed = json.loads(output.read_text())
    text = "".join(
        "".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", [])
    )
    assert "== chunk 1 Write one.txt: starting" in text and "shipped" in text
    assert (root / "three.txt").read_text() == "three\n"
    assert json.loads((NOTEBOOKS / "02_run.ipynb").read_text())["cells"][1]["outputs"] == []


def test_papermill_02_exits_non_zero_naming_the_chunk_that_failed(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj", bad_chunk=2)
    db = tmp_path / "db" / "specwright.duckdb"
    spec = make_spec(Store(db), root)
    result = papermill(
        "02_run.ipynb", out_dir("notebooks") / "02_run-failed.ipynb", db,
        ("project_dir", root), ("spec", spec.slug), ("max_iterations", 1),
    )  # fmt: skip
    assert result.returncode != 0
    assert "RunFailed" in result.stderr
    assert "chunk 2 'Write two.txt' failed" in result.stderr
    assert "chunk 3 'Write three.txt' blocked" in result.stderr
    statuses = Store(db).query("SELECT position, status FROM chunks ORDER BY position")
    assert statuses == [(1, "shipped"), (2, "failed"), (3, "blocked")]


QUESTIONS = {"questions": [{"question": "Which files?", "why": "scope"}, {"question": "Tone?"},
                           {"question": "Tests?"}]}  # fmt: skip
SPEC = {"title": "Three files", "body": "# Goal\n\nWrite <b>three</b> files.\n"}
CHUNKS = {
    "chunks": [
        {
            "key": "c1",
            "title": "One",
            "prompt": "one.txt",
            "acceptance": ["one.txt exists"],
            "files": ["one.txt"],
            "depends_on": [],
        },
        {
            "key": "c2",
            "title": "Two",
            "prompt": "two.txt",
            "acceptance": ["two.txt exists"],
            "files": ["two.txt"],
            "depends_on": ["c1"],
        },
    ]
}


def test_papermill_01_runs_the_whole_wizard_then_resumes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "db" / "specwright.duckdb"
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump(["one.txt and two.txt", "plain", "none"]))
    intent = "Write two small files"
    with FakeModelServer() as srv:
        root = make_project(tmp_path / "proj", planner_url=srv.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
        srv.script(
            anthropic_tool_use("ask_questions", QUESTIONS),
            anthropic_tool_use("write_spec", SPEC, expect_text="one.txt and two.txt"),
            anthropic_tool_use("split_spec", CHUNKS),
        )
        out = out_dir("notebooks")
        params = (("project_dir", root), ("intent", intent), ("answers", answers))
        result = papermill("01_spec_studio.ipynb", out / "01-wizard.ipynb", db, *params)
        assert result.returncode == 0, result.stderr[-4000:]
        # run again: the spec of the same intent is resumed; no planner call (none scripted)
        again = papermill("01_spec_studio.ipynb", out / "01-resumed.ipynb", db, *params)
        assert again.returncode == 0, again.stderr[-4000:]
    store = Store(db)
    (spec,) = store.query_dicts("SELECT id, slug, status, title FROM specs")
    assert (spec["status"], spec["title"]) == ("ready", "Three files")
    answered = store.query("SELECT answer FROM spec_questions ORDER BY position")
    assert [a for (a,) in answered] == ["one.txt and two.txt", "plain", "none"]
    chunks = store.query("SELECT position, title FROM chunks ORDER BY position")
    assert chunks == [(1, "One"), (2, "Two")]
    assert store.query("SELECT count(*) FROM chunk_deps")[0][0] == 1
    assert (root / ".handoff" / "specs" / f"{spec['slug']}.md").exists()
    assert "resuming spec" in (out / "01-resumed.ipynb").read_text()
    # the spec file is new to git, and a run refuses uncommitted changes: it says so
    name = f".handoff/specs/{spec['slug']}.md"
    assert (
        f"commit it before a run (`git add {name}`, `git commit`)"
        in (out / "01-wizard.ipynb").read_text()
    )
    assert "&lt;b&gt;three&lt;/b&gt;" in (out / "01-wizard.ipynb").read_text()


def test_papermill_01_with_an_intent_but_no_api_key_fails_with_a_clear_message(
    tmp_path: Path,
) -> None:
    root = make_project(tmp_path / "proj", planner_url="http://127.0.0.1:9")
    db = tmp_path / "db" / "specwright.duckdb"
    result = papermill(
        "01_spec_studio.ipynb", out_dir("notebooks") / "01-nokey.ipynb", db,
        ("project_dir", root), ("intent", "Anything"),
    )  # fmt: skip
    assert result.returncode != 0
    assert "needs an API key: set the environment variable ANTHROPIC_API_KEY" in result.stderr
    # the draft was saved before the planner was needed, so nothing typed is lost
    assert Store(db).query("SELECT intent, status FROM specs") == [("Anything", "draft")]


# --- as in JupyterLab -----------------------------------------------------------------------------


def _run_live(name: str, overrides: str, db: Path, extra: str = "") -> tuple[list[dict], str]:
    """Execute a notebook's code cells in a real kernel the way JupyterLab does (a frontend that
    accepts input, so the views go live); returns the outputs and the result of ``extra``."""
    from jupyter_client.manager import start_new_kernel

    env = {**os.environ, "SPECWRIGHT_DB": str(db)}
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(NOTEBOOKS), env=env)
    outputs: list[dict] = []
    try:
        cells = [c for c in _cells(name) if c["cell_type"] == "code"]
        sources = ["".join(cells[0]["source"]), overrides] + [
            "".join(c["source"]) for c in cells[1:]
        ]
        for code in [*sources, extra]:
            if not code:
                continue
            reply = kc.execute_interactive(
                code, allow_stdin=True, timeout=600, output_hook=lambda m: outputs.append(m),
                stdin_hook=lambda m: None,
            )  # fmt: skip
            assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    text = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
    return outputs, text


def _widgets_shown(outputs: list[dict]) -> int:
    return sum(
        1
        for m in outputs
        if m["msg_type"] == "display_data"
        and "application/vnd.jupyter.widget-view+json" in m["content"]["data"]
    )


def _empty_database(tmp_path: Path) -> Path:
    db = tmp_path / "db" / "specwright.duckdb"
    Store(db).migrate()
    return db


@pytest.mark.parametrize("name", ["01_spec_studio.ipynb", "03_usage.ipynb"])
def test_live_notebook_shows_its_view(name: str, tmp_path: Path) -> None:
    db = _empty_database(tmp_path)
    outputs, _ = _run_live(name, "", db)
    assert _widgets_shown(outputs) == 1


def test_live_02_runs_in_the_background_and_the_kernel_stays_free(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    db = tmp_path / "db" / "specwright.duckdb"
    spec = make_spec(Store(db), root)
    overrides = f"project_dir = {str(root)!r}\nspec = {spec.slug!r}"
    # the run cell returns at once (the run goes on in a thread); a later cell can wait for it
    extra = "r = view.wait(600); print('RESULT', r.status, view.running, view.overall.value)"
    outputs, text = _run_live("02_run.ipynb", overrides, db, extra)
    assert _widgets_shown(outputs) == 1
    assert "RESULT shipped False 3" in text
    assert Store(db).query("SELECT status FROM runs WHERE kind = 'spec'") == [("shipped",)]


# --- odd parameters and hostile data ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("max_iterations", "abc", "max_iterations: expected a whole number from 0 to 1000"),
        ("parallel", 0, "parallel: expected a whole number from 1 to 256 (chunks at once), got 0"),
        ("parallel", "2.5", "parallel: expected a whole number from 1 to 256"),
        ("executor", "nope", "no executor 'nope'; expected one of scripted"),
    ],
)
def test_papermill_02_says_which_parameter_is_wrong(
    tmp_path: Path, name: str, value: object, expected: str
) -> None:
    db = tmp_path / "db" / "specwright.duckdb"
    result = papermill(
        "02_run.ipynb", out_dir("notebooks") / "02_run-badparam.ipynb", db, (name, value)
    )
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr[-3000:]
    assert "TypeError" not in result.stderr
    assert not (db.parent / "demo").exists()  # nothing was built before the check


def test_papermill_02_failure_message_is_bounded_and_terminal_safe(tmp_path: Path) -> None:
    from specwright import catalog

    root = make_project(tmp_path / "proj", bad_chunk=2)
    db = tmp_path / "db" / "specwright.duckdb"
    store = Store(db)
    hostile = "<script>alert(1)</script>\x1b[2J\x1b[31mRED\x07"
    spec = catalog.create_spec(
        store, catalog.ensure_project(store, root), "Hostile", "", status="ready"
    )
    for n, name in ((1, "one"), (2, "two"), (3, "three")):
        chunk = catalog.add_chunk(store, spec, name, f"Create {name}.txt.", files=[f"{name}.txt"],
                                  depends_on=[str(n - 1)] if n > 1 else [])  # fmt: skip
        # titles are checked now; a database written before may hold such a title
        title = hostile + ("Z" * 300_000 if n == 2 else name)
        store.write([Store.op_sql("UPDATE chunks SET title = ? WHERE id = ?", [title, chunk.id])])
    output = out_dir("notebooks") / "02_run-hostile.ipynb"
    result = papermill(
        "02_run.ipynb", output, db, ("project_dir", root), ("spec", spec.slug),
        ("max_iterations", 1),
    )  # fmt: skip
    assert result.returncode != 0
    assert "RunFailed" in result.stderr and "chunk 2 '<script>alert(1)</script>?[2J" in (
        result.stderr
    )
    assert "\x1b[2J" not in result.stderr and "\x07" not in result.stderr
    assert len(result.stderr) < 60_000, len(result.stderr)
    executed = json.loads(output.read_text())
    (error,) = [o for c in executed["cells"] for o in c.get("outputs", [])
                if o["output_type"] == "error"]  # fmt: skip
    assert len(error["evalue"]) < 5_000


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ((("since", "2025-02-01"), ("until", "2025-01-01")), "since 2025-02-01 is after until"),
        ((("project", "no-such-project"),), "project 'no-such-project': no such project"),
        ((("project_dir", "/no/such/dir"),), "project_dir: '/no/such/dir' is not a directory"),
        ((("timezone", "Mars/Olympus"),), "timezone: unknown time zone 'Mars/Olympus'"),
    ],
)
def test_papermill_03_refuses_parameters_that_would_show_nothing(
    tmp_path: Path, params: tuple[tuple[str, str], ...], expected: str
) -> None:
    db = _empty_database(tmp_path)
    result = papermill("03_usage.ipynb", out_dir("notebooks") / "03-badparam.ipynb", db, *params)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr[-3000:]


def test_papermill_03_reads_the_database_of_project_dir(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    store = Store(root / "data" / "specwright.duckdb")
    make_spec(store, root)  # the project "proj" is known only to this database
    store.release()
    output = out_dir("notebooks") / "03-project-dir.ipynb"
    args = [sys.executable, "-m", "papermill", str(NOTEBOOKS / "03_usage.ipynb"), str(output),
            "--cwd", str(tmp_path), "-k", "python3", "--no-progress-bar",
            "-p", "project_dir", str(root), "-p", "project", root.name]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "SPECWRIGHT_DB"}
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert str(root / "data" / "specwright.duckdb") in output.read_text()


def test_papermill_03_counts_days_in_the_timezone_parameter(tmp_path: Path) -> None:
    """An execution at 02:30 UTC on 2025-03-10 is in New York's 9th (22:30 EDT)."""
    from datetime import datetime

    from specwright import catalog
    from specwright.model import new_id

    db = _empty_database(tmp_path)
    store = Store(db)
    spec = catalog.create_spec(store, catalog.ensure_project(store, tmp_path), "Zones")
    store.insert("executions", {
        "id": new_id(), "spec_id": spec.id, "role": "executor", "backend": "scripted",
        "model": "m1", "status": "ok", "started_at": datetime(2025, 3, 10, 2, 30),
        "cost_usd": 0.5,
    })  # fmt: skip
    store.release()
    output = out_dir("notebooks") / "03-timezone.ipynb"
    result = papermill("03_usage.ipynb", output, db, ("timezone", "America/New_York"),
                       ("since", "2025-03-09"), ("until", "2025-03-09"))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2025-03-09 to 2025-03-09 (days in America/New_York)" in output.read_text()
    figures = [o["data"]["application/vnd.plotly.v1+json"]
               for c in json.loads(output.read_text())["cells"] for o in c.get("outputs", [])
               if "application/vnd.plotly.v1+json" in o.get("data", {})]  # fmt: skip
    (per_day,) = [f for f in figures if f["layout"]["title"]["text"].startswith("Cost per day")]
    assert [t["x"] for t in per_day["data"]] == [["2025-03-09"]]
    assert per_day["layout"]["xaxis"]["title"]["text"] == "Day (America/New_York)"


def test_papermill_03_counts_specwrights_calls_as_usage_specs_not_the_logs(tmp_path: Path) -> None:
    """With an agent's logs imported beside a run, 03's cost per day is the runs' (what
    `specwright usage specs` lists) and its introduction says so, naming what counts the logs."""
    from datetime import datetime

    from specwright import catalog
    from specwright.model import new_id
    from specwright.usage import codex
    from tests.support_codex import write_codex_corpus

    db = _empty_database(tmp_path)
    store = Store(db)
    spec = catalog.create_spec(store, catalog.ensure_project(store, tmp_path), "Logs")
    store.insert("executions", {
        "id": new_id(), "spec_id": spec.id, "role": "executor", "backend": "scripted",
        "model": "m1", "status": "ok", "started_at": datetime(2025, 10, 31, 12), "cost_usd": 0.5,
    })  # fmt: skip
    corpus = write_codex_corpus(tmp_path / "codex", sessions=3, turns=4, days=3)
    assert codex.ingest(
        store, [corpus.root / "sessions", corpus.root / "archived_sessions"]
    ).imported
    store.release()
    output = out_dir("notebooks") / "03-logs.ipynb"
    result = papermill("03_usage.ipynb", output, db, ("timezone", "UTC"))
    assert result.returncode == 0, result.stderr[-3000:]
    executed = json.loads(output.read_text())
    intro = "".join(executed["cells"][0]["source"])
    assert (
        "`specwright usage specs` does" in intro
        and "agree with `specwright usage daily`" not in intro
    )
    figures = [o["data"]["application/vnd.plotly.v1+json"]
               for c in executed["cells"] for o in c.get("outputs", [])
               if "application/vnd.plotly.v1+json" in o.get("data", {})]  # fmt: skip
    (per_day,) = [f for f in figures if f["layout"]["title"]["text"].startswith("Cost per day")]
    assert [(t["x"], t["y"]) for t in per_day["data"]] == [(["2025-10-31"], [0.5])]


def test_papermill_01_prints_the_planners_questions_terminal_safe_and_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "db" / "specwright.duckdb"
    hostile = "\x1b[2J\x1b]0;pwned\x07Which <b>files</b>?" + "x" * 50_000
    with FakeModelServer() as srv:
        root = make_project(tmp_path / "proj", planner_url=srv.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
        questions = [{"question": hostile}, {"question": "Tone?"}, {"question": "Tests?"}]
        srv.script(anthropic_tool_use("ask_questions", {"questions": questions}))
        output = out_dir("notebooks") / "01-hostile.ipynb"
        result = papermill(
            "01_spec_studio.ipynb", output, db, ("project_dir", root), ("intent", "Anything")
        )
    assert result.returncode == 0, result.stderr[-4000:]
    executed = json.loads(output.read_text())
    printed = "".join(
        "".join(o["text"]) for c in executed["cells"] for o in c.get("outputs", [])
        if o["output_type"] == "stream"
    )  # fmt: skip
    assert "1. ?[2J?]0;pwned?Which <b>files</b>?xxx" in printed
    assert "\x1b" not in printed and "\x07" not in printed
    assert len(printed) < 5_000


def test_papermill_03_says_how_many_log_records_no_report_counts_for_their_stamps(
    tmp_path: Path,
) -> None:
    """`specwright usage` and `report --html` say how many records of the agents' logs are
    stamped outside 1900-01-01..9000-12-31 (a broken clock or log) and so in no report; the
    usage notebook said nothing of them. It says so, as the command line does, when any are."""
    from specwright.usage import claude

    def log(name: str, stamps: list[str]) -> Path:
        folder = tmp_path / name / "projects" / "p"
        folder.mkdir(parents=True)
        lines = [
            json.dumps({"type": "assistant", "sessionId": "s", "timestamp": ts,
                        "requestId": f"{name}{i}", "message": {"id": f"{name}m{i}",
                        "model": "claude-haiku-4-5", "usage": {"input_tokens": 100,
                        "output_tokens": 10}}}, separators=(",", ":"))  # as Claude Code writes
            for i, ts in enumerate(stamps)
        ]  # fmt: skip
        (folder / "s.jsonl").write_text("\n".join(lines) + "\n")
        return folder.parent

    db = _empty_database(tmp_path)
    store = Store(db)
    claude.ingest(store, [log("fine", ["2025-11-03T10:15:00.000Z"])])
    store.release()
    output = out_dir("notebooks") / "03-stamps.ipynb"
    result = papermill("03_usage.ipynb", output, db, ("timezone", "UTC"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stamped outside" not in output.read_text()

    stamps = ["9999-12-31T23:59:59.000Z", "0001-01-01T00:00:00Z"]
    claude.ingest(store, [log("broken", stamps)])
    store.release()
    result = papermill("03_usage.ipynb", output, db, ("timezone", "UTC"))
    assert result.returncode == 0, result.stderr[-3000:]
    shown = [
        o["data"]["text/html"]
        for c in json.loads(output.read_text())["cells"]
        for o in c.get("outputs", [])
        if "stamped outside" in "".join(o.get("data", {}).get("text/html", ""))
    ]
    assert len(shown) == 1, shown
    assert (
        "2 record(s) of the agents&#x27; logs stamped outside 1900-01-01..9000-12-31 (a broken "
        "clock or log) are left out of every usage report" in "".join(shown[0])
    )
    outputs, _ = _run_live("03_usage.ipynb", "", db)  # with a person at it: above the filters
    live = [m for m in outputs if "stamped outside" in str(m["content"].get("data", {}))]
    assert len(live) == 1 and _widgets_shown(outputs) == 1
