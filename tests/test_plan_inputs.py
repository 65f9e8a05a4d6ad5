"""`specwright plan` with the inputs a person gets wrong: files that are not UTF-8, answers to
questions that do not exist. Real CLI processes, a real database, the fake Anthropic server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from specwright.catalog import ensure_project
from specwright.errors import ValidationError
from specwright.store import Store, resolve_db_path
from specwright.studio import start
from specwright.testing import FakeModelServer, anthropic_tool_use
from tests.test_studio import QUESTIONS, q_turn, spec_turn, split_turn


@pytest.fixture
def srv() -> Iterator[FakeModelServer]:
    with FakeModelServer() as server:
        yield server


@pytest.fixture
def project_dir(git_repo: Path, srv: FakeModelServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    (git_repo / ".handoff").mkdir()
    (git_repo / ".handoff" / "config.yaml").write_text(
        "tools:\n  planners:\n    claude:\n      type: anthropic\n"
        f"      model: claude-sonnet-4-6\n      base_url: {srv.base_url}\n      timeout_s: 5\n"
    )
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    return git_repo


def _plan(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "specwright.cli", "plan", *args],
        cwd=cwd,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("option", ["--intent-file", "--answers"])
def test_a_file_that_is_not_utf8_is_a_one_line_error(project_dir: Path, option: str) -> None:
    bad = project_dir / "latin1.txt"
    bad.write_bytes("Ajouter la connexion: caf\xe9".encode("latin-1"))
    args = [option, "latin1.txt"] + (["--intent", "x"] if option == "--answers" else [])
    out = _plan(*args, cwd=project_dir)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        f"specwright: error: {option} latin1.txt: not UTF-8 text (unexpected end of data "
        "at byte 25)"
    ]


def test_answers_to_questions_that_do_not_exist_are_refused_not_dropped(
    srv: FakeModelServer, project_dir: Path
) -> None:
    """A typo in answers.yaml (question 9 of 3) must not let the planner go on without it."""
    srv.script(q_turn())
    first = _plan("--intent", "Add password login", cwd=project_dir)
    assert first.returncode == 0, first.stderr
    (project_dir / "answers.yaml").write_text("1: Postgres\n9: employees\n")
    out = _plan("--resume", "add-password-login", "--answers", "answers.yaml", cwd=project_dir)
    assert out.returncode == 2
    assert "answer 9: there are 3 questions; expected answers to questions 1-3" in out.stderr
    assert srv.model_requests and len(srv.model_requests) == 1  # no spec was asked for
    store = Store(resolve_db_path(project_dir))
    answers = store.query("SELECT answer FROM spec_questions ORDER BY position")
    assert answers == [(None,), (None,), (None,)]  # all or nothing


def test_an_answer_numbered_with_a_superscript_is_one_line_not_a_traceback(
    srv: FakeModelServer, project_dir: Path
) -> None:
    """`q²:` in answers.yaml (a digit to str.isdigit, not to int) was a ValueError traceback."""
    srv.script(q_turn())
    assert _plan("--intent", "Add password login", cwd=project_dir).returncode == 0
    (project_dir / "answers.yaml").write_text("q²: employees\n")
    out = _plan("--resume", "add-password-login", "--answers", "answers.yaml", cwd=project_dir)
    assert out.returncode == 2, out.stderr
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("specwright: error: ") and "answer for 'q²': expected a question" in line


def test_a_list_under_a_numbered_answer_is_refused_not_sent_as_python(
    srv: FakeModelServer, project_dir: Path
) -> None:
    """`1:` followed by a YAML list of options was saved and sent to the planner as
    "['Redis', 'Memcached']" (a list in question order was already refused)."""
    srv.script(q_turn())
    assert _plan("--intent", "Add password login", cwd=project_dir).returncode == 0
    (project_dir / "answers.yaml").write_text("1:\n  - Redis\n  - Memcached\n2: employees\n")
    out = _plan("--resume", "add-password-login", "--answers", "answers.yaml", cwd=project_dir)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        "specwright: error: answers.yaml: answer 1: expected text, got ['Redis', 'Memcached']; "
        "expected a list of answers (in question order) or a mapping of question number to answer"
    ]
    assert len(srv.model_requests) == 1  # no spec was asked for
    store = Store(resolve_db_path(project_dir))
    answers = store.query("SELECT answer FROM spec_questions ORDER BY position")
    assert answers == [(None,), (None,), (None,)]


def test_answers_reach_the_planner_as_written_not_as_yaml_booleans_or_numbers(
    srv: FakeModelServer, project_dir: Path
) -> None:
    """`- yes` in answers.yaml is the answer "yes", not "True"; `1:30` is not 5400."""
    srv.script(q_turn())
    assert _plan("--intent", "Add password login", cwd=project_dir).returncode == 0
    (project_dir / "answers.yaml").write_text("- yes\n- no\n- 1:30\n")
    srv.script(spec_turn(expect_text="A1. yes\n"), split_turn())
    out = _plan("--resume", "add-password-login", "--answers", "answers.yaml", cwd=project_dir)
    assert out.returncode == 0, out.stderr
    store = Store(resolve_db_path(project_dir))
    answers = store.query("SELECT answer FROM spec_questions ORDER BY position")
    assert answers == [("yes",), ("no",), ("1:30",)]


def test_too_many_answers_by_position_are_refused(
    srv: FakeModelServer, project_dir: Path, store: Store
) -> None:
    from specwright import config as config_mod

    srv.script(anthropic_tool_use("ask_questions", QUESTIONS))
    project = ensure_project(store, project_dir)
    studio = start(store, project, "Add login", config=config_mod.load(project_dir))
    with pytest.raises(ValidationError, match="answer 4: there are 3 questions"):
        studio.answer_all(["a", "b", "c", "d"])
    with pytest.raises(ValidationError, match="answer 0: there are 3 questions"):
        studio.answer_all({0: "zero"})
    assert [q.answer for q in studio.questions] == [None, None, None]
    # blank extras are not answers: nothing to refuse
    studio.answer_all(["a", "b", "c", ""])
    assert [q.answer for q in studio.questions] == ["a", "b", "c"]


def test_an_enormous_chunk_list_is_reasked_then_refused(
    srv: FakeModelServer, project_dir: Path, store: Store
) -> None:
    """A planner gone wrong (2,000 chunks, each an agent session with its cost) saves nothing."""
    from specwright import config as config_mod
    from specwright import prompts
    from specwright.studio import PlannerAnswerError

    many = {
        "chunks": [
            {
                "key": f"c{i}",
                "title": f"Step {i}",
                "prompt": "p",
                "acceptance": [],
                "depends_on": [],
            }
            for i in range(2000)
        ]
    }
    spec = {"title": "Login", "body": "# Goal\n"}
    srv.script(
        anthropic_tool_use("ask_questions", QUESTIONS),
        anthropic_tool_use("write_spec", spec),
        anthropic_tool_use("split_spec", many),
        anthropic_tool_use(
            "split_spec", many, expect_text=f"2000 chunks; expected at most {prompts.MAX_CHUNKS}"
        ),
    )
    project = ensure_project(store, project_dir)
    studio = start(store, project, "Add login", config=config_mod.load(project_dir))
    studio.answer_all(["a", "b", "c"])
    studio.write_spec()
    with pytest.raises(PlannerAnswerError, match="2000 chunks; expected at most 50"):
        studio.split()
    assert studio.chunks == [] and studio.stage == "chunks"


def test_new_answers_after_the_spec_is_written_are_refused_not_recorded_beside_it(
    srv: FakeModelServer, project_dir: Path
) -> None:
    """Answers changed once the spec exists would sit next to a spec written from the old ones
    (no planner call re-writes it): refused, nothing saved; the same answers again are fine."""
    (project_dir / "answers.yaml").write_text("- Postgres\n- employees\n- sessions\n")
    srv.script(q_turn(), spec_turn(), split_turn())
    first = _plan("--intent", "Add password login", "--answers", "answers.yaml", cwd=project_dir)
    assert first.returncode == 0, first.stderr
    again = _plan("--resume", "add-password-login", "--answers", "answers.yaml", cwd=project_dir)
    assert again.returncode == 0, again.stderr
    (project_dir / "answers.yaml").write_text("- SQLite\n- employees\n- tokens\n")
    out = _plan("--resume", "add-password-login", "--answers", "answers.yaml", cwd=project_dir)
    assert out.returncode == 2
    assert "answers 1, 3: the spec was already written from the answers given" in out.stderr
    assert "--refine" in out.stderr and "Traceback" not in out.stderr
    store = Store(resolve_db_path(project_dir))
    answers = store.query("SELECT answer FROM spec_questions ORDER BY position")
    assert answers == [("Postgres",), ("employees",), ("sessions",)]


def test_a_blank_answer_leaves_the_choice_to_the_planner_and_the_spec_can_be_accepted(
    srv: FakeModelServer, project_dir: Path
) -> None:
    """A question left blank is written 'not answered' for the planner; once the spec and chunks
    exist the next step is review (it said 'answers', refusing --accept for good: a new answer
    is refused once the spec is written)."""
    (project_dir / "answers.yaml").write_text("- Postgres\n-\n- sessions\n")
    srv.script(q_turn(), spec_turn(expect_text="A2. (not answered"), split_turn())
    args = ("--intent", "Add password login", "--answers", "answers.yaml", "--accept")
    out = _plan(*args, cwd=project_dir)
    assert out.returncode == 0, out.stderr
    assert "[ready]" in out.stdout
    assert "2. Who logs in?\n     (why: decides the user model)\n     answer: (none)" in out.stdout


def test_refine_or_export_before_the_spec_exists_say_so(
    srv: FakeModelServer, project_dir: Path
) -> None:
    """--refine before the answers named an API step ('write_spec first'); --export was ignored
    without a word."""
    srv.script(q_turn())
    out = _plan("--intent", "Add password login", "--export", cwd=project_dir)
    assert out.returncode == 0, out.stderr
    assert "--export: nothing written: the spec is not complete (next: answers)" in out.stderr
    assert not (project_dir / ".handoff" / "specs").exists()
    out = _plan("--resume", "add-password-login", "--refine", "smaller", cwd=project_dir)
    assert out.returncode == 2
    assert "--refine: there is no spec to revise yet (next step: answers: answer the" in out.stderr
    assert "write_spec" not in out.stderr


def test_a_hand_written_spec_is_accepted_without_asking_the_planner(
    srv: FakeModelServer, project_dir: Path
) -> None:
    """A spec with its text and chunks but no questions (`spec new`/`spec import`): --accept
    asked the planner clarifying questions about an empty intent (paid) and stopped there."""
    from tests.conftest import run_specwright

    made = run_specwright("spec", "new", "Login", "--body", "# Goal\n\nlog in", cwd=project_dir)
    assert made.returncode == 0, made.stderr
    assert run_specwright("chunk", "add", "login", "Form", cwd=project_dir).returncode == 0
    out = _plan("--resume", "login", "--accept", cwd=project_dir)
    assert out.returncode == 0, out.stderr
    assert "[ready]" in out.stdout and "Questions" not in out.stdout and srv.requests == []


def test_resuming_a_spec_with_neither_intent_nor_text_asks_no_planner(
    srv: FakeModelServer, project_dir: Path
) -> None:
    from tests.conftest import run_specwright

    assert run_specwright("spec", "new", "Empty", cwd=project_dir).returncode == 0
    out = _plan("--resume", "empty", cwd=project_dir)
    assert out.returncode == 2 and srv.requests == []
    assert "spec 'empty' has no intent to ask questions about and no text" in out.stderr


@pytest.mark.parametrize("status", ["running", "done", "failed"])
def test_accept_leaves_a_spec_that_ran_as_it_is(
    srv: FakeModelServer, project_dir: Path, status: str
) -> None:
    """--accept turned a done (or running) spec back to 'ready', and `plan --resume` of it said
    'next: review' as if it had never been accepted."""
    from tests.conftest import run_specwright

    (project_dir / "s.md").write_text(
        f"---\ntitle: Ran\nstatus: {status}\n---\n\nThe text.\n\n## Chunk 1: One\n"
    )
    assert run_specwright("spec", "import", "s.md", cwd=project_dir).returncode == 0
    shown = _plan("--resume", "ran", cwd=project_dir)
    assert shown.returncode == 0, shown.stderr
    assert f"[{status}]" in shown.stdout and "next: review" not in shown.stdout
    out = _plan("--resume", "ran", "--accept", cwd=project_dir)
    assert out.returncode == 0, out.stderr
    store = Store(resolve_db_path(project_dir))
    assert store.query("SELECT status FROM specs") == [(status,)]


@pytest.mark.parametrize("export", [False, True])
def test_the_review_hint_says_to_import_the_edited_file(
    srv: FakeModelServer, project_dir: Path, export: bool
) -> None:
    """It said export, then accept: edits to the file were never read back (and a later
    --export wrote over them)."""
    (project_dir / "answers.yaml").write_text("- a\n- b\n- c\n")
    srv.script(q_turn(), spec_turn(), split_turn())
    args = ["--intent", "Add password login", "--answers", "answers.yaml"]
    out = _plan(*args, *(["--export"] if export else []), cwd=project_dir)
    assert out.returncode == 0, out.stderr
    path = (
        project_dir / ".handoff/specs/add-password-login.md"
        if export
        else Path(".handoff/specs/add-password-login.md")
    )
    assert f"edit {path}, `specwright spec import {path}`), then `specwright plan" in out.stdout


def test_refining_the_spec_text_says_its_chunks_were_split_from_the_old_one(
    srv: FakeModelServer, project_dir: Path
) -> None:
    (project_dir / "answers.yaml").write_text("- a\n- b\n- c\n")
    srv.script(q_turn(), spec_turn(), split_turn())
    args = ["--intent", "Add password login", "--answers", "answers.yaml"]
    assert _plan(*args, cwd=project_dir).returncode == 0
    srv.script(spec_turn())
    args = ["--resume", "add-password-login", "--refine", "use OAuth", "--refine-target", "spec"]
    out = _plan(*args, cwd=project_dir)
    assert out.returncode == 0, out.stderr
    assert "note: the chunks were split from the previous text; revise them too" in out.stderr


def test_a_context_budget_the_prompt_would_cut_is_refused_before_anything_is_saved(
    srv: FakeModelServer, project_dir: Path
) -> None:
    """--context-tokens 30000 rendered a 30000-token summary of a large tree that the prompt then
    cut off at 60,000 characters, mid file name: the planner saw a listing cut at random instead
    of the one chosen to fit. The largest budget that fits is taken whole."""
    for i in range(40):
        for j in range(10):
            sub = project_dir / f"pkg{i}" / f"sub{j}"
            sub.mkdir(parents=True)
            for k in range(10):
                (sub / f"module_file_{k}.py").write_text("")
    subprocess.run(["git", "add", "-A"], cwd=project_dir, check=True)
    subprocess.run(["git", "commit", "-qm", "many files"], cwd=project_dir, check=True)
    out = _plan("--intent", "Add password login", "--context-tokens", "30000", cwd=project_dir)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "specwright: error: --context-tokens: expected 64 to 15000, got 30000"
    ]
    assert srv.requests == []
    assert Store(resolve_db_path(project_dir)).query("SELECT count(*) FROM specs") == [(0,)]
    srv.script(q_turn())
    out = _plan("--intent", "Add password login", "--context-tokens", "15000", cwd=project_dir)
    assert out.returncode == 0, out.stderr
    sent = srv.model_requests[0].all_text
    assert "pkg39/" in sent and "chars]" not in sent  # the whole summary, not cut


def test_a_planner_that_refuses_is_said_to_have_refused_not_to_be_malformed(
    srv: FakeModelServer, project_dir: Path
) -> None:
    """A refusal (stop_reason "refusal") read as 'malformed output: no call of tool', which
    sends a person looking for a bug in the planner's answer, not at their intent."""
    from specwright.testing import anthropic_text

    srv.script(anthropic_text("I will not plan this request.", stop_reason="refusal"))
    out = _plan("--intent", "Add password login", cwd=project_dir)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    error = out.stderr.strip().splitlines()[-1]
    assert "(the model refused: 'I will not plan this request.')" in error, error
    assert "after 1 attempt(s)" in error  # not asked again: it would refuse again, and be paid
    assert "plan --resume add-password-login" in error  # the draft is kept


def test_an_empty_answers_file_says_so_and_an_empty_list_leaves_all_to_the_planner(
    srv: FakeModelServer, project_dir: Path
) -> None:
    """An answers.yaml saved empty said 'got NoneType'; `[]`, as the error says, answers none."""
    srv.script(q_turn())
    assert _plan("--intent", "Add password login", cwd=project_dir).returncode == 0
    (project_dir / "answers.yaml").write_text("# to do\n")
    out = _plan("--resume", "add-password-login", "--answers", "answers.yaml", cwd=project_dir)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "specwright: error: answers.yaml: no answers in it; expected a list of answers (in "
        "question order) or a mapping of question number to answer (`[]` leaves every question "
        "to the planner)"
    ]
    (project_dir / "answers.yaml").write_text("[]\n")
    srv.script(spec_turn(expect_text="A1. (not answered"), split_turn())
    out = _plan("--resume", "add-password-login", "--answers", "answers.yaml", cwd=project_dir)
    assert out.returncode == 0, out.stderr
    assert "next: review" in out.stdout


def test_a_text_file_from_a_windows_editor_is_read_as_its_text(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """`spec new --body-file` (and `plan --intent-file`) kept the byte order mark a Windows
    editor writes first: the spec's text began with an invisible U+FEFF, sent to every agent
    and put in the PR (`spec import` of the same file drops it)."""
    import json

    from specwright.cli.plan import read_text

    body = tmp_path / "body.md"
    body.write_bytes("\ufeff# Goal\r\n\r\nLog in.\r\n".encode())
    made = cli("-C", str(tmp_path), "--json", "spec", "new", "Login", "--body-file", str(body))
    assert made.code == 0, made.err
    assert json.loads(made.out)["body"] == "# Goal\n\nLog in.\n"
    assert read_text(str(body), "--intent-file") == "# Goal\n\nLog in.\n"
