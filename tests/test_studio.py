"""Spec Studio against the fake Anthropic server: the wizard round trip (streaming and not),
resuming from the store, DAG re-asks, and every planner failure leaving saved work intact."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from specwright import config as config_mod
from specwright.catalog import ensure_project
from specwright.errors import SpecwrightError
from specwright.llm import (
    LLMAuthError,
    LLMMissingKeyError,
    LLMOverloadedError,
    LLMRateLimitError,
    LLMTimeoutError,
)
from specwright.store import Store
from specwright.studio import PlannerAnswerError, Studio, resume, start
from specwright.testing import FakeModelServer, Turn, anthropic_error, anthropic_tool_use
from tests.conftest import run_specwright

MODEL = "claude-sonnet-4-6"
RULE = "Every public function has a docstring."

QUESTIONS = {
    "questions": [
        {"question": "Which database?", "why": "decides the storage layer"},
        {"question": "Who logs in?", "why": "decides the user model"},
        {"question": "Sessions or tokens?"},
    ]
}
SPEC = {"title": "Password login", "body": "# Goal\n\nUsers log in with a password.\n"}
CHUNKS = {
    "chunks": [
        {
            "key": "c1",
            "title": "User model",
            "prompt": "Add a User table.",
            "acceptance": ["a user has a hashed password"],
            "files": ["app/models.py"],
            "depends_on": [],
        },
        {
            "key": "c2",
            "title": "Login endpoint",
            "prompt": "POST /login.",
            "acceptance": ["wrong password -> 401"],
            "files": ["app/views.py"],
            "depends_on": ["c1"],
        },
        {
            "key": "c3",
            "title": "Logout",
            "prompt": "POST /logout.",
            "acceptance": ["session ends"],
            "depends_on": ["c1", "c2"],
        },
    ]
}


def q_turn(**kw: Any) -> Turn:
    return anthropic_tool_use("ask_questions", QUESTIONS, **kw)


def spec_turn(**kw: Any) -> Turn:
    return anthropic_tool_use("write_spec", SPEC, **kw)


def split_turn(data: dict[str, Any] | None = None, **kw: Any) -> Turn:
    return anthropic_tool_use("split_spec", data or CHUNKS, **kw)


@pytest.fixture
def srv() -> Iterator[FakeModelServer]:
    with FakeModelServer() as server:
        yield server


@pytest.fixture
def project_dir(git_repo: Path, srv: FakeModelServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git project whose config points the planner at the fake server."""
    (git_repo / ".handoff").mkdir()
    (git_repo / ".handoff" / "config.yaml").write_text(
        "tools:\n  planners:\n    claude:\n      type: anthropic\n"
        f"      model: {MODEL}\n      base_url: {srv.base_url}\n      timeout_s: 5\n"
        "      max_retries: 2\n"
        f"rules:\n  - {RULE}\n"
    )
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    return git_repo


@pytest.fixture
def cfg(project_dir: Path) -> config_mod.Config:
    return config_mod.load(project_dir)


def executions(store: Store, spec_id: str) -> list[dict[str, Any]]:
    return store.query_dicts(
        "SELECT role, status, exit_reason, input_tokens, output_tokens, cost_usd, spec_id "
        "FROM executions WHERE spec_id = ? ORDER BY started_at",
        [spec_id],
    )


# --- the round trip -------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_full_wizard_round_trip(
    srv: FakeModelServer, project_dir: Path, cfg: Any, store: Store, stream: bool
) -> None:
    srv.script(
        q_turn(expect_stream=stream, expect_system=RULE, expect_text="# Codebase: repo"),
        spec_turn(expect_stream=stream, expect_text="A1. Postgres"),
        split_turn(expect_stream=stream, expect_text="Users log in with a password."),
    )
    project = ensure_project(store, project_dir)
    pieces: list[str] = []
    studio = start(
        store, project, "Add password login", config=cfg, stream=stream, on_text=pieces.append
    )
    assert [q.question for q in studio.questions] == [
        "Which database?",
        "Who logs in?",
        "Sessions or tokens?",
    ]
    assert studio.questions[0].why == "decides the storage layer"
    assert studio.stage == "answers"
    studio.answer(1, "Postgres")
    assert studio.questions[0].answer == "Postgres" and studio.questions[1].answer is None
    studio.answer_all({2: "employees", "Sessions or tokens?": "sessions"})
    assert studio.stage == "spec"
    body = studio.write_spec()
    assert body == SPEC["body"] and studio.spec.title == "Password login"
    chunks = studio.split()
    assert [c.title for c in chunks] == ["User model", "Login endpoint", "Logout"]
    c1, c2, c3 = chunks
    assert c2.depends_on == (c1.id,) and set(c3.depends_on) == {c1.id, c2.id}
    assert c1.acceptance == ("a user has a hashed password",) and c1.files == ("app/models.py",)
    assert studio.stage == "review"
    assert studio.accept().status == "ready" and studio.stage == "ready"
    rows = executions(store, studio.spec_id)
    assert [(r["role"], r["status"]) for r in rows] == [("planner", "ok")] * 3
    assert all(r["input_tokens"] == 100 and r["output_tokens"] == 20 for r in rows)
    assert all(r["cost_usd"] and r["cost_usd"] > 0 for r in rows)
    # the codebase context was cached by commit for the next planner call
    assert store.query("SELECT count(*) FROM codebase_cache")[0][0] == 1


def test_restart_in_the_middle_resumes_from_the_store(
    srv: FakeModelServer, project_dir: Path, cfg: Any, store: Store
) -> None:
    srv.script(q_turn())
    project = ensure_project(store, project_dir)
    first = start(store, project, "Add password login", config=cfg)
    first.answer(1, "Postgres")
    slug = first.spec.slug
    del first  # a kernel restart: a new store object, a new wizard, only the database remains
    again = resume(Store(store.path), slug, config=cfg)
    assert again.stage == "answers"
    assert [q.answer for q in again.questions] == ["Postgres", None, None]
    assert [q.position for q in again.unanswered] == [2, 3]
    again.answer_all(["Postgres", "employees", "sessions"])
    srv.script(spec_turn(expect_text="A3. sessions"), split_turn())
    assert again.run() == "review"
    assert len(again.chunks) == 3
    # asking for questions again does not call the planner: they are in the store
    assert len(again.ask_questions()) == 3


def test_start_saves_the_draft_before_the_planner_answers(
    srv: FakeModelServer, project_dir: Path, cfg: Any, store: Store
) -> None:
    srv.script(anthropic_error(401))
    project = ensure_project(store, project_dir)
    with pytest.raises(LLMAuthError):
        start(store, project, "Add password login\nwith details", config=cfg)
    (row,) = store.query_dicts("SELECT slug, title, intent, status FROM specs")
    assert row["intent"] == "Add password login\nwith details"
    assert row["title"] == "Add password login" and row["status"] == "draft"
    studio = resume(store, row["slug"], config=cfg)
    assert studio.stage == "questions"
    srv.script(q_turn())
    assert len(studio.ask_questions()) == 3


# --- the planner's chunk DAG ----------------------------------------------------------------


def _answered(srv: FakeModelServer, project_dir: Path, cfg: Any, store: Store) -> Studio:
    srv.script(q_turn(), spec_turn())
    studio = start(store, ensure_project(store, project_dir), "Add password login", config=cfg)
    studio.answer_all(["Postgres", "employees", "sessions"])
    studio.write_spec()
    return studio


def _with_deps(deps: dict[str, list[str]]) -> dict[str, Any]:
    return {"chunks": [{**c, "depends_on": deps.get(c["key"], [])} for c in CHUNKS["chunks"]]}


CYCLE = _with_deps({"c1": ["c3"], "c2": ["c1"], "c3": ["c2"]})
UNKNOWN = _with_deps({"c2": ["c1"], "c3": ["c9"]})
# a runaway planner: a chunk of 5 MB would make a spec file `spec import` refuses (4 MiB at most)
HUGE = {"chunks": [{**CHUNKS["chunks"][0], "prompt": "do it\n" * 900_000}, *CHUNKS["chunks"][1:]]}
# a chunk of a title only (its agent gets nothing else to go on), two of one title (which one
# failed? a spec file's `depends_on: [User model]` names neither)
EMPTY = {"chunks": [*CHUNKS["chunks"][:2], {**CHUNKS["chunks"][2], "prompt": " "}]}
TWINS = {"chunks": [*CHUNKS["chunks"][:2], {**CHUNKS["chunks"][2], "title": "user  MODEL"}]}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            CYCLE,
            "dependency cycle: #1 'User model' -> #3 'Logout' -> #2 'Login endpoint' -> "
            "#1 'User model'",
        ),
        (UNKNOWN, "chunk #3 'Logout' depends on unknown chunk 'c9'"),
        (HUGE, "chunk 'c1' is 5400040 characters of prompt, acceptance and files; expected"),
        (EMPTY, "chunk 'c3' ('Logout') has no prompt; write its agent's instructions"),
        (TWINS, "two chunks are titled 'user MODEL'; give each its own title"),
    ],
)
def test_bad_dag_is_reasked_once_then_accepted(
    srv: FakeModelServer, project_dir: Path, cfg: Any, store: Store, bad: Any, message: str
) -> None:
    studio = _answered(srv, project_dir, cfg, store)
    srv.script(split_turn(bad), split_turn(expect_text=f"rejected: {message}"))
    chunks = studio.split()
    assert len(chunks) == 3 and chunks[2].depends_on
    assert [r["status"] for r in executions(store, studio.spec_id)] == ["ok"] * 4


def test_a_planners_titles_are_cleaned_not_refused(
    srv: FakeModelServer, project_dir: Path, cfg: Any, store: Store
) -> None:
    """`spec new` and `chunk add` refuse a control character or a title over 200 characters;
    a planner's (and a draft title made of the intent) is cleaned instead, so a model's stray
    tab or escape does not fail the whole plan."""
    srv.script(
        q_turn(),
        anthropic_tool_use("write_spec", {**SPEC, "title": "Password\x1b[31m\tlogin\u202e"}),
        split_turn(
            {
                "chunks": [
                    {**CHUNKS["chunks"][0], "title": "User\tmodel\x07"},
                    {**CHUNKS["chunks"][1], "title": "Login " + "x" * 300},
                    CHUNKS["chunks"][2],
                ]
            }
        ),
    )
    studio = start(store, ensure_project(store, project_dir), "Add\x1b[2J\tlogin", config=cfg)
    assert studio.spec.title == "Add [2J login"
    studio.answer_all(["Postgres", "employees", "sessions"])
    studio.write_spec()
    assert studio.spec.title == "Password [31m login"
    titles = [c.title for c in studio.split()]
    assert titles == ["User model", "Login " + "x" * 194, "Logout"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (CYCLE, "dependency cycle"),
        (UNKNOWN, "unknown"),
        (HUGE, "expected at most 20000"),
        (EMPTY, "has no prompt"),
        (TWINS, "two chunks are titled"),
    ],
)
def test_bad_dag_twice_is_a_clear_error_and_keeps_the_spec(
    srv: FakeModelServer, project_dir: Path, cfg: Any, store: Store, bad: Any, message: str
) -> None:
    studio = _answered(srv, project_dir, cfg, store)
    srv.script(split_turn(bad), split_turn(bad))
    with pytest.raises(PlannerAnswerError) as info:
        studio.split()
    text = str(info.value)
    assert "chunk list was rejected twice" in text and message in text
    assert studio.chunks == [] and studio.spec.body == SPEC["body"]
    assert studio.stage == "chunks"


def test_a_runaway_spec_body_is_refused_and_nothing_changes(
    srv: FakeModelServer, project_dir: Path, cfg: Any, store: Store
) -> None:
    srv.script(q_turn(), anthropic_tool_use("write_spec", {"title": "Big", "body": "w " * 600_000}))
    studio = start(store, ensure_project(store, project_dir), "Add password login", config=cfg)
    studio.answer_all(["Postgres", "employees", "sessions"])
    with pytest.raises(
        PlannerAnswerError, match="spec is 1199999 characters; expected at most 100000"
    ):
        studio.write_spec()
    assert studio.spec.body == "" and studio.stage == "spec"


def test_forward_dependencies_are_stored_in_build_order(
    srv: FakeModelServer, project_dir: Path, cfg: Any, store: Store
) -> None:
    studio = _answered(srv, project_dir, cfg, store)
    srv.script(split_turn(_with_deps({"c1": ["c2"]})))
    titles = [c.title for c in studio.split()]
    assert titles == ["Login endpoint", "User model", "Logout"]


# --- refinement -----------------------------------------------------------------------------


def test_refine_spec_then_chunks_keeps_ids_of_kept_chunks(
    srv: FakeModelServer, project_dir: Path, cfg: Any, store: Store
) -> None:
    studio = _answered(srv, project_dir, cfg, store)
    srv.script(split_turn())
    before = studio.split()
    srv.script(
        anthropic_tool_use(
            "write_spec",
            {"title": "Password login v2", "body": "# Goal\n\nAlso lockout.\n"},
            expect_text="<feedback>\nadd lockout",
        )
    )
    assert studio.refine("add lockout", "spec") == "# Goal\n\nAlso lockout.\n"
    assert studio.spec.title == "Password login v2"
    revised = {
        "chunks": [
            CHUNKS["chunks"][0],
            {**CHUNKS["chunks"][1], "prompt": "POST /login with lockout."},
            {
                "key": "n1",
                "title": "Lockout",
                "prompt": "Lock.",
                "acceptance": ["5 fails"],
                "depends_on": ["c2"],
            },
        ]
    }
    srv.script(split_turn(revised, expect_text="[c3] Logout"))
    after = studio.refine("drop logout, add lockout")
    assert [c.title for c in after] == ["User model", "Login endpoint", "Lockout"]
    assert after[0].id == before[0].id and after[1].id == before[1].id
    assert after[1].prompt == "POST /login with lockout."
    assert after[2].id != before[2].id and after[2].depends_on == (before[1].id,)


def test_wizard_guards(srv: FakeModelServer, project_dir: Path, cfg: Any, store: Store) -> None:
    project = ensure_project(store, project_dir)
    with pytest.raises(SpecwrightError, match="intent: expected"):
        Studio.create(store, project, "   ", config=cfg)
    studio = Studio.create(store, project, "x", config=cfg)
    with pytest.raises(SpecwrightError, match="no questions yet"):
        studio.answer(1, "a")
    with pytest.raises(SpecwrightError, match="no text yet"):
        studio.split()
    with pytest.raises(SpecwrightError, match="not complete: next step is questions"):
        studio.accept()
    srv.script(q_turn())
    studio.ask_questions()
    with pytest.raises(
        SpecwrightError, match=r"question 9: no such question; expected a position 1-3"
    ):
        studio.answer(9, "a")
    with pytest.raises(SpecwrightError, match="answer to question 1: 20001 characters"):
        studio.answer(1, "x" * 20_001)
    assert studio.questions[0].answer is None
    with pytest.raises(SpecwrightError, match="answer for 'colour'"):
        studio.answer_all({"colour": "red"})


def test_too_few_questions_are_reasked(
    srv: FakeModelServer, project_dir: Path, cfg: Any, store: Store
) -> None:
    one = {"questions": [{"question": "Only one?"}]}
    srv.script(
        anthropic_tool_use("ask_questions", one),
        q_turn(expect_text="expected 3 to 7 questions, got 1"),
    )
    studio = start(store, ensure_project(store, project_dir), "x", config=cfg)
    assert len(studio.questions) == 3


# --- planner failures -----------------------------------------------------------------------


FAILURES = [
    (
        "missing_key",
        LLMMissingKeyError,
        "no API key: set the environment variable ANTHROPIC_API_KEY",
    ),
    ("401", LLMAuthError, "the API key from ANTHROPIC_API_KEY was refused (HTTP 401"),
    ("429", LLMRateLimitError, "rate limited (HTTP 429) after 3 attempt(s)"),
    ("529", LLMOverloadedError, "overloaded (HTTP 529) after 3 attempt(s)"),
    ("timeout", LLMTimeoutError, "no answer within 0.5s"),
]


@pytest.mark.parametrize(("case", "error", "message"), FAILURES)
def test_planner_failures_are_distinct_and_lose_nothing(
    srv: FakeModelServer,
    project_dir: Path,
    cfg: Any,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    error: type[Exception],
    message: str,
) -> None:
    from dataclasses import replace

    studio = _answered(srv, project_dir, cfg, store)
    if case == "missing_key":
        monkeypatch.delenv("ANTHROPIC_API_KEY")
    elif case == "timeout":
        planner = replace(cfg.planners["claude"], timeout_s=0.5, max_retries=0)
        cfg = replace(cfg, planners={"claude": planner})
        srv.script(split_turn(delay_s=2.0))
    else:
        srv.script(*[anthropic_error(int(case))] * (1 if case == "401" else 3))
    fresh = resume(store, studio.spec.slug, config=cfg)  # its own client, from the config
    with pytest.raises(error) as info:
        fresh.split()
    assert message in str(info.value)
    assert f"planner 'claude' (model {MODEL} at {srv.base_url}/v1/messages)" in str(info.value)
    # nothing saved is lost: questions, answers and the spec are all still there
    assert [q.answer for q in fresh.questions] == ["Postgres", "employees", "sessions"]
    assert fresh.spec.body == SPEC["body"] and fresh.stage == "chunks"
    rows = executions(store, studio.spec_id)
    assert rows[-1]["status"] == "error" and rows[-1]["exit_reason"]
    if case == "missing_key":
        assert len(srv.model_requests) == 2  # the split request was never sent
    if case == "timeout":
        srv.stop()  # the delayed answer is not waited for


def test_429_is_retried_and_then_succeeds(
    srv: FakeModelServer, project_dir: Path, cfg: Any, store: Store
) -> None:
    studio = _answered(srv, project_dir, cfg, store)
    srv.script(anthropic_error(429), anthropic_error(529), split_turn())
    assert len(resume(store, studio.spec_id, config=cfg).split()) == 3
    assert sum(1 for r in srv.model_requests if "split_spec" in r.tool_names) == 3


# --- the CLI, in real processes (a restart between them) ------------------------------------


def _cli(*args: str, cwd: Path, srv: FakeModelServer) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANTHROPIC_API_KEY": "sk-ant-test"}
    return subprocess.run(
        [sys.executable, "-m", "specwright.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_plan_prints_questions_then_resumes_with_answers(
    srv: FakeModelServer, project_dir: Path
) -> None:
    srv.script(q_turn())
    first = _cli("plan", "--intent", "Add password login", cwd=project_dir, srv=srv)
    assert first.returncode == 0, first.stderr
    assert (
        "1. Which database?" in first.stdout and "(why: decides the storage layer)" in first.stdout
    )
    assert "specwright plan --resume add-password-login --answers answers.yaml" in first.stdout
    (project_dir / "answers.yaml").write_text("1: Postgres\nq2: employees\n3: sessions\n")
    srv.script(spec_turn(expect_text="A2. employees"), split_turn())
    second = _cli(
        "plan",
        "--resume",
        "add-password-login",
        "--answers",
        "answers.yaml",
        "--accept",
        "--export",
        cwd=project_dir,
        srv=srv,
    )
    assert second.returncode == 0, second.stderr
    assert "Users log in with a password." in second.stdout and "Login endpoint" in second.stdout
    exported = project_dir / ".handoff" / "specs" / "add-password-login.md"
    text = exported.read_text()
    assert "status: ready" in text and "## Chunk 3: Logout" in text
    # accepted: ready, and what to do next (it said "[ready; next: ready]")
    head = second.stdout.splitlines()[0]
    assert "[ready]" in head and "next: ready" not in second.stdout, head
    assert "next: `specwright run-all add-password-login --plan`" in second.stdout


def test_cli_plan_without_an_api_key_is_one_line_and_makes_no_draft(
    srv: FakeModelServer, project_dir: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    for _ in range(2):  # a retry leaves nothing behind either
        res = subprocess.run(
            [sys.executable, "-m", "specwright.cli", "plan", "--intent", "Add a flag"],
            cwd=project_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 2
        assert res.stderr.strip().splitlines() == [
            "specwright: error: planner 'claude': no API key: set the environment variable "
            "ANTHROPIC_API_KEY (named by api_key_env in the planner's config); nothing saved"
        ]
    listed = _cli("--json", "spec", "list", cwd=project_dir, srv=srv)
    # nothing saved: the key is checked before the database is even made (spec list says so)
    assert listed.returncode == 2 and "no database file" in listed.stderr, listed.stderr
    assert srv.model_requests == []


def test_cli_plan_prints_the_planners_words_without_terminal_escapes(
    srv: FakeModelServer, project_dir: Path
) -> None:
    """The planner's questions are a model's output: a terminal escape in them is shown as '?'."""
    asked = {
        "questions": [
            {"question": "Which \x1b]0;pwned\x07 database?", "why": "\x1b[2J"},
            *QUESTIONS["questions"][1:],
        ]
    }
    srv.script(anthropic_tool_use("ask_questions", asked))
    out = _cli("plan", "--intent", "Add password login", cwd=project_dir, srv=srv)
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout and "\x07" not in out.stdout
    assert "1. Which ?]0;pwned? database?" in out.stdout and "(why: ?[2J)" in out.stdout


def test_spec_show_prints_a_body_without_terminal_escapes_and_keeps_its_lines(
    project_dir: Path,
) -> None:
    body = "# Goal\n\nclear \x1b[2J the screen\nsecond line"
    made = run_specwright("spec", "new", "Evil", "--body", body, cwd=project_dir)
    assert made.returncode == 0, made.stderr
    shown = run_specwright("spec", "show", "evil", cwd=project_dir)
    assert "\x1b" not in shown.stdout
    assert "# Goal\n\nclear ?[2J the screen\nsecond line" in shown.stdout


def test_cli_plan_error_is_one_line_and_says_how_to_resume(
    srv: FakeModelServer, project_dir: Path
) -> None:
    srv.script(anthropic_error(401))
    out = _cli("plan", "--intent", "Add password login", cwd=project_dir, srv=srv)
    assert out.returncode == 2
    err = out.stderr.strip().splitlines()[-1]
    assert err.startswith("specwright: error: planner 'claude'") and "refused (HTTP 401" in err
    assert "`specwright plan --resume add-password-login`" in err
    assert "Traceback" not in out.stderr


def test_nul_characters_in_the_planners_answers_are_dropped(
    srv: FakeModelServer, project_dir: Path, cfg: Any, store: Store
) -> None:
    """A NUL in a chunk's prompt failed every attempt of its run (the prompt goes in the agent's
    argv: 'embedded null byte')."""
    nul = {"chunks": [{**CHUNKS["chunks"][0], "title": "Us\x00er", "prompt": "Add\x00 it"}]}
    studio = _answered(srv, project_dir, cfg, store)
    srv.script(split_turn(nul))
    (chunk,) = studio.split()
    assert (chunk.title, chunk.prompt) == ("User", "Add it")


def test_a_rejected_answer_is_quoted_in_a_bounded_line(
    srv: FakeModelServer, project_dir: Path, cfg: Any, store: Store
) -> None:
    """An unknown dependency 300,000 characters long made a 300 KB 'one-line' error."""
    bad = _with_deps({"c3": ["K" * 300_000]})
    studio = _answered(srv, project_dir, cfg, store)
    srv.script(
        split_turn(bad), split_turn(bad, expect=lambda r: len(r.messages[0]["content"]) < 9000)
    )
    with pytest.raises(PlannerAnswerError) as info:
        studio.split()
    assert "depends on unknown chunk 'KKK" in str(info.value) and len(str(info.value)) < 800
