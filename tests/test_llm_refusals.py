"""The model service misbehaves as the planner and the llm reviewer meet it, over loopback against
the fake Anthropic server. Refused for good (the account out of credit, the model unknown): one
clear line saying what to fix, no retry, nothing recorded lost, the spend so far kept. Broken off
mid-answer: the error still on a line of its own."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from specwright import catalog
from specwright.store import Store
from specwright.testing import FakeModelServer, anthropic_error, anthropic_tool_use
from tests.conftest import run_specwright

MODEL = "claude-sonnet-4-6"
# Anthropic's words for an account out of credit: a 400 of the plain invalid_request_error type
CREDIT = (
    "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing "
    "to upgrade or purchase credits."
)
QUESTIONS = {
    "questions": [
        {"question": "Which database?"},
        {"question": "Who logs in?"},
        {"question": "2FA?"},
    ]
}
SPEC = {"title": "Password login", "body": "# Goal\n\nUsers log in with a password.\n"}


@pytest.fixture
def srv() -> Iterator[FakeModelServer]:
    with FakeModelServer() as server:
        yield server


@pytest.fixture
def project_dir(git_repo: Path, srv: FakeModelServer) -> Path:
    """A git project whose planner is the fake server (retries on: a refusal must not use them)."""
    (git_repo / ".handoff").mkdir()
    (git_repo / ".handoff" / "config.yaml").write_text(
        "tools:\n  planners:\n    claude:\n      type: anthropic\n"
        f"      model: {MODEL}\n      base_url: {srv.base_url}\n      timeout_s: 5\n"
        "      max_retries: 2\n"
    )
    return git_repo


def plan(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_specwright("plan", *args, cwd=cwd, env={"ANTHROPIC_API_KEY": "sk-ant-test"})


def planner_rows(store: Store) -> list[dict[str, Any]]:
    return store.query_dicts(
        "SELECT status, exit_reason, input_tokens, output_tokens, cost_usd FROM executions "
        "WHERE role = 'planner' ORDER BY started_at"
    )


@pytest.mark.parametrize(
    ("refusal", "said"),
    [
        (
            anthropic_error(400, CREDIT, error_type="invalid_request_error"),
            f"out of credit (HTTP 400 invalid_request_error): {CREDIT}; not retried: add credits "
            "to the account of the key in ANTHROPIC_API_KEY (or use another key), then run again",
        ),
        (
            anthropic_error(404, f"model: {MODEL}", error_type="not_found_error"),
            f"model '{MODEL}' not found (HTTP 404 not_found_error): model: {MODEL}; not retried: "
            "fix tools.planners.claude.model in .handoff/config.yaml",
        ),
    ],
    ids=["out-of-credit", "unknown-model"],
)
def test_a_planner_refused_for_good_says_what_to_fix_in_one_line_and_keeps_the_work(
    srv: FakeModelServer, project_dir: Path, refusal: Any, said: str
) -> None:
    """The account runs out of credit (or the model is gone) at the chunk split: `plan` exits 2
    with one line saying so and what to do — not "request refused" — sends no retry (strict
    script), and the questions, answers, spec and what the earlier calls cost are all kept."""
    srv.script(anthropic_tool_use("ask_questions", QUESTIONS))
    assert plan("--intent", "Add password login", cwd=project_dir).returncode == 0
    (project_dir / "answers.yaml").write_text("- Postgres\n- employees\n- no\n")
    srv.script(anthropic_tool_use("write_spec", SPEC), refusal)
    out = plan("--resume", "add-password-login", "--answers", "answers.yaml", cwd=project_dir)
    assert out.returncode == 2, out.stderr
    who = f"planner 'claude' (model {MODEL} at {srv.base_url}/v1/messages)"
    assert out.stderr.strip().splitlines() == [
        f"specwright: error: {who}: {said} (what was saved is kept: "
        "`specwright plan --resume add-password-login`)"
    ]
    srv.assert_done()  # the refused call was sent once
    shown = run_specwright("spec", "show", "add-password-login", cwd=project_dir)
    assert "Users log in with a password." in shown.stdout, shown.stderr
    rows = planner_rows(Store(Path(os.environ["SPECWRIGHT_DB"])))  # the CLI's
    assert [r["status"] for r in rows] == ["ok", "ok", "error"]
    reason = "billing" if "credit" in said else "unknown_model"
    assert rows[-1]["exit_reason"].startswith(f"{reason}: {who}")
    assert all(r["input_tokens"] == 100 and r["cost_usd"] for r in rows[:2])  # spend kept


UNAVAILABLE = (
    "reviewer_unavailable: reviewer 'llm' got no answer, not retried: run the chunk again once "
    f"its model service answers; planner 'claude' (model {MODEL} at {{url}}/v1/messages): "
)


@pytest.mark.parametrize(
    ("refusal", "reviewer_model", "said", "recorded"),
    [
        (
            anthropic_error(400, CREDIT, error_type="invalid_request_error"),
            None,
            "billing: reviewer 'llm' is out of credit, not retried: add credits to the account of "
            "the key in ANTHROPIC_API_KEY (or use another key), then run the chunk again; ",
            "billing",
        ),
        (
            anthropic_error(404, "model: claude-nope", error_type="not_found_error"),
            "claude-nope",
            "unknown_model: reviewer 'llm' cannot use model 'claude-nope', not retried: fix "
            "tools.reviewers.llm.model in .handoff/config.yaml, then run the chunk again; ",
            "unknown_model",
        ),
        (  # the service is down: nothing listens on its port
            None,
            None,
            UNAVAILABLE + "cannot connect (connection refused) after 3 attempt(s)",
            "connection_failed",
        ),
        (
            anthropic_error(529),
            None,
            UNAVAILABLE + "overloaded (HTTP 529) after 3 attempt(s)",
            "overloaded",
        ),
    ],
    ids=["out-of-credit", "unknown-model", "server-down", "overloaded"],
)
def test_a_reviewer_that_can_review_nothing_stops_run_all_after_one_attempt(
    srv: FakeModelServer,
    git_repo: Path,
    refusal: Any,
    reviewer_model: str | None,
    said: str,
    recorded: str,
) -> None:
    """The llm reviewer's account is out of credit (or its model unknown, or its service down
    or overloaded through the retries, asked twice) in a run-all of two independent chunks: the first
    attempt is not taken for a REVISE — the agent is not run again (and paid) to be refused
    again, nor the next chunk started — and run-all's last line says what to do, the URL too.
    The attempt's patch and the agent's cost are kept; no review is recorded."""
    script = repo_script(git_repo)
    model = f"      model: {reviewer_model}\n" if reviewer_model else ""
    (git_repo / ".handoff").mkdir()
    (git_repo / ".handoff" / "config.yaml").write_text(
        "tools:\n  executors:\n    scripted:\n      type: scripted\n"
        f"      script: {script}\n"
        "  planners:\n    claude:\n      type: anthropic\n"
        f"      model: {MODEL}\n      base_url: {srv.base_url}\n      max_retries: 2\n"
        f"  reviewers:\n    llm:\n      type: llm\n      planner: claude\n{model}"
        "defaults:\n  executor: scripted\n  reviewer: llm\n  maxIterations: 3\n"
    )
    subprocess.run(["git", "add", "-A"], cwd=git_repo, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "config"], cwd=git_repo, check=True)
    store = Store(Path(os.environ["SPECWRIGHT_DB"]))
    spec = catalog.create_spec(store, catalog.ensure_project(store, git_repo), "Letters")
    for name in "AB":
        catalog.add_chunk(store, spec, f"Make {name}", f"Write {name.lower()}.txt")
    said = said.format(url=srv.base_url)
    if refusal is None:  # the service is down: nothing listens on its port any more
        srv.stop()
    else:  # strict: a review of a second attempt, or of another chunk, fails the test
        # no answer is retried by the client (2 more times), then asked once more by the loop
        srv.script(*[refusal] * (6 if recorded == "overloaded" else 1))
    out = run_specwright(
        "run-all", spec.slug, cwd=git_repo, env={"ANTHROPIC_API_KEY": "sk-ant-test"}, timeout=300
    )
    assert out.returncode == 1, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith(f"failed: 0/2 chunks shipped; chunk 1 failed: {said}"), last
    if refusal is not None:
        srv.assert_done()
    runs = store.query_dicts("SELECT status, iterations FROM runs WHERE chunk_id IS NOT NULL")
    assert runs == [{"status": "failed", "iterations": 1}]  # B never started
    chunks = store.query_dicts("SELECT status, verdict FROM chunks ORDER BY position")
    assert chunks[0] == {"status": "failed", "verdict": None}, chunks
    assert store.query("SELECT count(*) FROM reviews")[0][0] == 0  # no verdict was given
    calls = store.query_dicts(
        "SELECT role, status, exit_reason, cost_usd FROM executions ORDER BY started_at"
    )
    reviews = 2 if recorded in ("connection_failed", "overloaded") else 1  # asked again
    assert [(c["role"], c["status"]) for c in calls] == [
        ("executor", "ok"),
        *[("reviewer", "error")] * reviews,
    ]
    assert calls[0]["cost_usd"] == 0.001  # the agent's spend is kept
    assert calls[-1]["exit_reason"].startswith(f"{recorded}: ")
    [run_id] = store.query("SELECT id FROM runs WHERE chunk_id IS NOT NULL")[0]
    assert (store.path.parent / "attempts" / run_id / "iteration-1.patch").is_file()


def repo_script(repo: Path) -> Path:
    """The scripted agent's script (outside the repository): each chunk writes its file."""
    path = repo.parent / "script.yaml"
    chunks = {
        f"Make {n}": [
            {"write": f"{n.lower()}.txt", "content": f"{n}\n"},
            {"usage": {"input_tokens": 100, "output_tokens": 10, "cost_usd": 0.001}},
        ]
        for n in "AB"
    }
    path.write_text(yaml.safe_dump({"chunks": chunks}))
    return path


def test_a_streamed_answer_cut_by_an_error_leaves_the_error_on_a_line_of_its_own(
    srv: FakeModelServer, project_dir: Path
) -> None:
    """`plan --stream` shows the model's own text as it comes; an answer that broke off after
    some (overloaded mid-stream, through the retries) left the error glued to it: "partial
    partial partial specwright: error: ...", not one line a script or a person can pick out."""
    srv.script(*[anthropic_error(529, mid_stream=True)] * 3)
    out = plan("--intent", "Add password login", "--stream", cwd=project_dir)
    assert out.returncode == 2, out.stderr
    last = out.stderr.splitlines()[-1]
    assert last.startswith("specwright: error: planner 'claude'"), out.stderr
    assert "overloaded (HTTP 529) after 3 attempt(s)" in last
    assert "partial" in out.stderr  # what the model said is still shown
