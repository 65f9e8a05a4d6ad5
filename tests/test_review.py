"""Reviewers: checks, the completion gate, and the llm reviewer against the fake model server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from specwright import review as rv
from specwright.config import Config
from specwright.gitdiff import Diff
from specwright.model import Chunk, Finding, Review, Verification, new_id
from specwright.store import Store
from specwright.testing import FakeModelServer, Request, Turn, anthropic_text, anthropic_tool_use
from specwright.verify import StepResult, assess_step
from tests.support_loop import make_config, rows

CHUNK_ID, SPEC_ID = new_id(), new_id()
CHUNK = Chunk(
    id=CHUNK_ID,
    spec_id=SPEC_ID,
    position=1,
    title="Add mul",
    prompt="Add mul(a, b).",
    acceptance=("mul(2, 3) == 6",),
    files=("calc.py",),
)
DIFF = Diff("--- a/calc.py\n+++ b/calc.py\n+def mul(a, b):\n+    return a * b\n", ("calc.py",))


def assessment(status: str, name: str = "tests", tail: str = "E   assert 5 == 6") -> Any:
    code = 0 if status == "passed" else 1
    v = Verification(name, "pytest -q", status, code, 12, tail)
    return assess_step(StepResult(v), StepResult(Verification(name, "pytest -q", "passed", 0, 1)))


def request(*assessments: Any, diff: Diff = DIFF) -> rv.ReviewRequest:
    return rv.ReviewRequest(CHUNK, 1, diff, assessments, "I added mul.", ("Use type hints",))


def test_checks_reviewer_ships_only_when_verification_passes() -> None:
    checks = rv.ChecksReviewer()
    ok = checks.review(request(assessment("passed"), assessment("passed", "lint"))).review
    assert ok.verdict == "SHIP" and ok.summary == "all 2 verification step(s) passed"
    bad = checks.review(request(assessment("passed", "lint"), assessment("failed"))).review
    assert bad.verdict == "REVISE" and "tests" in bad.summary
    [finding] = [f for f in bad.findings if f.severity == "error"]
    assert finding.check == "verify:tests" and "assert 5 == 6" in finding.message
    none = checks.review(request()).review
    assert none.verdict == "SHIP" and "no verification steps" in none.summary
    # failing as at the base: shipped, and said so rather than "passed"
    failing = Verification("tests", "pytest -q", "failed", 1, 12, "E   assert 5 == 6")
    same = assess_step(StepResult(failing), StepResult(failing))
    assert same.ok
    as_before = checks.review(request(same, assessment("passed", "lint"))).review
    assert as_before.verdict == "SHIP"
    assert as_before.summary.startswith(
        "no verification step is worse than at the base (tests failed there too"
    )


def test_completion_findings() -> None:
    assert rv.completion_findings(CHUNK, ["calc.py"]) == []
    [empty] = rv.completion_findings(CHUNK, [])
    assert empty.check == "completion" and "changed no files" in empty.message
    [other] = rv.completion_findings(CHUNK, ["README.md"])
    assert "none of the files the chunk names (calc.py)" in other.message
    pkg = Chunk("c", "s", 1, "t", files=("src/pkg/", "docs/*.md"))
    assert rv.completion_findings(pkg, ["src/pkg/mod.py"]) == []
    assert rv.completion_findings(pkg, ["docs/intro.md"]) == []
    assert rv.completion_findings(Chunk("c", "s", 1, "t"), ["anything.py"]) == []


def test_gate_turns_ship_into_revise_and_keeps_other_verdicts() -> None:
    blocking = [Finding("the attempt changed no files", check="completion")]
    shipped = Review("SHIP", "looks great", (), "llm")
    gated = rv.gate(shipped, blocking)
    assert gated.verdict == "REVISE" and "changed no files" in gated.summary
    assert "reviewer said SHIP: looks great" in gated.summary
    assert gated.findings == tuple(blocking)
    blocked = rv.gate(Review("BLOCKED", "impossible", (), "llm"), blocking)
    assert blocked.verdict == "BLOCKED" and blocked.findings == tuple(blocking)
    assert rv.gate(shipped, []) is shipped


def test_parse_review_validates_and_bounds() -> None:
    good = rv.parse_review(
        {
            "verdict": "ship",
            "summary": "ok",
            "findings": [{"message": "m", "severity": "loud", "line": "12", "file": "a.py"}],
        },
        "llm",
    )
    assert good.verdict == "SHIP" and good.findings[0].severity == "error"
    assert good.findings[0].line == 12 and good.findings[0].check == "review"
    # a line int() refuses (a superscript digit, past Python's 4300-digit limit) was a
    # ValueError out of the review: now a finding without a line
    odd = [{"message": "m", "line": text} for text in ("²", "9" * 5000, " 7 ")]
    lines = [
        f.line
        for f in rv.parse_review(
            {"verdict": "REVISE", "summary": "", "findings": odd}, "llm"
        ).findings
    ]
    assert lines == [None, None, 7]
    for bad in (
        {"verdict": "MAYBE", "summary": ""},
        {"verdict": "SHIP"},
        [],
        {"verdict": "SHIP", "summary": "", "findings": [3]},
    ):
        with pytest.raises(rv.MalformedReview):
            rv.parse_review(bad, "llm")


# --- the llm reviewer over real HTTP -------------------------------------------------------


@pytest.fixture
def server() -> Iterator[FakeModelServer]:
    with FakeModelServer() as srv:
        yield srv


def llm_config(server: FakeModelServer) -> Config:
    return make_config(
        tools={
            "executors": {"scripted": {"type": "scripted"}},
            "planners": {
                "fake": {
                    "type": "anthropic",
                    "model": "claude-sonnet-4-5",
                    "base_url": server.base_url,
                    "api_key_env": "FAKE_ANTHROPIC_KEY",
                    "max_retries": 0,
                }
            },
            "reviewers": {"llm": {"type": "llm", "planner": "fake"}, "checks": {"type": "checks"}},
        },
    )


def reviewer(server: FakeModelServer, store: Store, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("FAKE_ANTHROPIC_KEY", "sk-test-reviewer")
    made = rv.make_reviewer(llm_config(server), "llm", store)
    assert isinstance(made, rv.LLMReviewer)
    return made


def verdict(v: str, summary: str = "", findings: list[dict[str, Any]] | None = None) -> Any:
    return anthropic_tool_use(
        "submit_review",
        {"verdict": v, "summary": summary, "findings": findings or []},
        input_tokens=900,
        output_tokens=60,
    )


def test_llm_reviewer_ship(
    server: FakeModelServer, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.script(verdict("SHIP", "mul is correct and tested"))
    result = reviewer(server, store, monkeypatch).review(request(assessment("passed")))
    assert result.review.verdict == "SHIP" and result.review.error is None
    assert result.review.summary == "mul is correct and tested"
    assert result.usage is not None and result.usage.input_tokens == 900
    req = server.requests[0]
    assert req.json["tool_choice"] == {"type": "tool", "name": "submit_review"}
    assert "mul(2, 3) == 6" in req.all_text and "+def mul(a, b):" in req.all_text
    assert "Use type hints" in req.system_text
    assert "tests: passed" in req.all_text
    rv.record(store, result, run_id=None, chunk_id=CHUNK_ID, iteration=1)
    [row] = rows(store, "SELECT verdict, execution_id FROM reviews")
    assert row["verdict"] == "SHIP" and row["execution_id"] == result.execution_id
    [ex] = rows(store, "SELECT role, backend, status, input_tokens, chunk_id FROM executions")
    assert ex == {
        "role": "reviewer",
        "backend": "anthropic",
        "status": "ok",
        "input_tokens": 900,
        "chunk_id": CHUNK_ID,
    }


def test_llm_reviewer_revise_with_findings(
    server: FakeModelServer, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    finding = {
        "check": "mul(2, 3) == 6",
        "severity": "error",
        "file": "calc.py",
        "line": 5,
        "message": "mul adds instead of multiplying",
    }
    server.script(verdict("REVISE", "wrong operator", [finding]))
    result = reviewer(server, store, monkeypatch).review(request(assessment("failed")))
    r = result.review
    assert r.verdict == "REVISE" and r.error is None
    assert r.findings == (
        Finding("mul adds instead of multiplying", "mul(2, 3) == 6", "error", "calc.py", 5),
    )
    assert "COUNTS AGAINST THE ATTEMPT" in server.requests[0].all_text


def test_llm_reviewer_malformed_twice_is_an_error_never_ship(
    server: FakeModelServer, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.script(
        anthropic_tool_use("submit_review", {"verdict": "SHIP"}),  # summary/findings missing
        anthropic_text("SHIP it!", expect_tool_result=True),  # no tool call at all
    )
    result = reviewer(server, store, monkeypatch).review(request(assessment("passed")))
    assert result.review.verdict == "REVISE"
    assert result.review.error and "malformed review" in result.review.error
    assert len(server.requests) == 2  # retried exactly once
    [ex] = rows(store, "SELECT status, exit_reason FROM executions")
    assert ex["status"] == "error" and "malformed" in ex["exit_reason"]


def test_llm_reviewer_malformed_then_valid_ships(
    server: FakeModelServer, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.script(
        anthropic_tool_use("submit_review", {"verdict": "PERHAPS", "summary": "", "findings": []}),
        verdict("SHIP", "fine now"),
    )
    result = reviewer(server, store, monkeypatch).review(request(assessment("passed")))
    assert result.review.verdict == "SHIP" and result.review.summary == "fine now"
    assert server.requests[1].tool_results  # the retry told the model what was wrong


def test_llm_reviewer_transport_error_is_a_review_error(
    store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    srv = FakeModelServer().start()
    srv.stop()  # nothing listens on this port any more
    result = reviewer(srv, store, monkeypatch).review(request(assessment("passed")))
    assert result.review.verdict == "REVISE"  # never SHIP; the loop stops on it (no verdict)
    assert result.stop == rv.UNAVAILABLE
    assert result.review.error and "cannot connect (connection refused)" in result.review.error


def test_llm_review_texts_are_redacted_and_bounded(
    server: FakeModelServer, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reviewer quoting a key it saw in the diff leaves no key in the review row or the
    summary the loop commits with; a huge malformed verdict makes a bounded error."""
    secret = "ghp_0123456789abcdefABCDEF0123456789"
    monkeypatch.setenv("GITHUB_TOKEN", secret)
    finding = {
        "message": f"hard-coded token {secret}",
        "severity": "error",
        "file": "calc.py",
        "line": 10**30,
    }
    server.script(verdict("REVISE", f"do not commit {secret}", [finding]))
    result = reviewer(server, store, monkeypatch).review(request(assessment("passed")))
    review = result.review
    assert review.summary == "do not commit [REDACTED:GITHUB_TOKEN]"
    assert review.findings[0].message == "hard-coded token [REDACTED:GITHUB_TOKEN]"
    assert review.findings[0].line is None  # not a line number any file has
    rv.record(store, result, run_id=None, chunk_id=CHUNK_ID, iteration=1)
    [row] = rows(store, "SELECT summary, findings::VARCHAR AS findings FROM reviews")
    assert secret not in row["summary"] + row["findings"]

    huge = {"verdict": "X" * 500_000, "summary": "", "findings": []}
    server.script(
        anthropic_tool_use("submit_review", huge),
        anthropic_tool_use("submit_review", huge, expect_tool_result=True),
    )
    bad = reviewer(server, store, monkeypatch).review(request(assessment("passed"))).review
    assert bad.verdict == "REVISE" and bad.error and "malformed review" in bad.error
    assert len(bad.error) < 3000
    null = rv.parse_review({"verdict": "SHIP", "summary": "ok", "findings": None}, "llm")
    assert null.findings == ()


def test_a_cancel_during_an_llm_review_stops_the_chunk_run_at_once(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`queue cancel`, or Ctrl-C in a parallel run-all, sets the run's cancel event while the
    reviewer waits for the model: the run stops within seconds (not the call's timeout),
    cancelled and rolled back, its reviewer execution cancelled with its cost unknown, no
    review recorded that was never given, and nothing written after the run ended."""
    from specwright import gitops
    from specwright.loop import run_chunk
    from tests.support_loop import TEST_CALC, good_mul, make_chunk, make_repo, no_running_rows
    from tests.support_loop import scripted as scripted_executor

    monkeypatch.setenv("FAKE_ANTHROPIC_KEY", "sk-test-reviewer")
    repo = make_repo(tmp_path / "repo", {"test_calc.py": TEST_CALC})
    chunk = make_chunk(store, repo)
    base = gitops.head_commit(repo)
    cancel, go, answered = threading.Event(), threading.Event(), threading.Event()

    def answer_when_told(request: Request) -> Turn:  # the model answers once the test says so
        cancel.set()
        go.wait(30)
        answered.set()
        return verdict("SHIP", "too late")

    with FakeModelServer() as srv:
        srv.script(answer_when_told)
        config = llm_config(srv)
        try:
            result = run_chunk(
                store,
                config,
                repo,
                chunk,
                executor=scripted_executor(good_mul()),
                reviewer=rv.make_reviewer(config, "llm", store),
                cancel=cancel,
            )
            assert not answered.is_set()  # the run ended before the model answered
        finally:
            go.set()
        answered.wait(10)
    assert result.status == "cancelled", (result.status, result.reason)
    assert gitops.head_commit(repo) == base and gitops.dirty_files(repo) == []
    assert rows(store, "SELECT id FROM reviews") == []
    query = "SELECT status, cost_usd, cost_source, finished_at FROM executions WHERE role = ?"
    [ex] = rows(store, query, "reviewer")
    assert ex["status"] == "cancelled" and ex["cost_usd"] is None
    assert ex["cost_source"] == "incomplete"
    assert rows(store, "SELECT status FROM chunks") == [{"status": "cancelled"}]
    no_running_rows(store)
    deadline = time.monotonic() + 10  # the server is gone: the abandoned call ends now
    while any(t.name == "llm-call" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name == "llm-call" for t in threading.enumerate())
    assert rows(store, query, "reviewer") == [ex]
