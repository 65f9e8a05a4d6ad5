"""One-line texts of the loop: a verification step, a review, what interrupted a run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from specwright.errors import one_line

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from specwright.agents.base import Executor, Outcome
    from specwright.model import Review, ToolCall
    from specwright.review import Reviewer
    from specwright.verify import StepResult

# a chunk run that ended so stops run-all: every later chunk would end the same way
STOPS_RUN_ALL = (
    "auth:",
    "unknown_model:",
    "billing:",
    "account:",
    "check_broken:",
    "cannot_start:",
    "repository_lost:",
    "rate_limited:",
    "reviewer_unavailable:",
)


def verify_line(result: StepResult, baseline: bool = False) -> str:
    """A verification step: name, status, exit code, duration and test counts."""
    v = result.verification
    tests = f", {v.tests_collected} tests, {v.tests_failed} failed" if v.tests_collected else ""
    label = "baseline " if baseline else ""
    return f"{label}verify {v.name}: {v.status} (exit {v.exit_code}, {v.duration_ms} ms{tests})"


def tool_line(call: ToolCall) -> str:
    """A tool call: its name and the file (Claude Code's ``file_path``, OpenCode's ``filePath``)
    or command it works on."""
    inp = call.input
    detail = inp.get("file_path") or inp.get("filePath") or inp.get("command") or ""
    return f"{call.tool} {str(detail)[:100]}".rstrip()


def review_line(review: Review) -> str:
    """A review: reviewer, verdict, summary (or error) and how many error findings."""
    line = f"review {review.reviewer}: {review.verdict}"
    if review.error:
        return f"{line} (error: {review.error[:200]})"
    errors = sum(1 for f in review.findings if f.severity == "error")
    return f"{line} — {review.summary[:160]}" + (f" [{errors} finding(s)]" if errors else "")


def interrupted_by(exc: BaseException) -> str:
    """What sent an interrupt: ``SIGTERM`` for ``specwright.cli.run.Terminated`` (its
    ``signal_name``; the loop must not import the CLI), else ``Ctrl-C``."""
    return str(getattr(exc, "signal_name", None) or "Ctrl-C")


def auth_line(executor: Executor, outcome: Outcome, event: str | None = None) -> str:
    """An agent's credentials were refused or missing (a 401/403, "Not logged in"): which
    executor, what it said (the adapter names the variable or login to fix; else its ``auth``
    error event) and that another try would not help, so none was made."""
    said = _said(outcome, "auth", event, "credentials refused")
    return (
        f"executor {executor.name!r} ({executor.backend}) could not authenticate: {said}; "
        "not retried: fix its credentials and run the chunk again"
    )


def model_line(executor: Executor, outcome: Outcome, kinds: Mapping[str, str]) -> str:
    """The agent's model does not exist (or is not its key's): which executor and model, what
    it said (else its ``unknown_model`` error event, in ``kinds``), and that another try would
    fail the same way, so none was made."""
    said = _said(outcome, "unknown_model", kinds.get("unknown_model"), "model not found")
    model = getattr(executor, "model", None) or getattr(
        getattr(executor, "config", None), "model", None
    )
    which = f" model {model!r}" if model else " its model"
    return (
        f"executor {executor.name!r} ({executor.backend}) cannot use{which}: {said}; "
        "not retried: fix the executor's model and run the chunk again"
    )


def billing_line(executor: Executor, outcome: Outcome, kinds: Mapping[str, str]) -> str:
    """The agent's account is out of credit, or its plan does not include this use: which
    executor, what it said (else its ``billing`` error event) and that no wait or retry helps
    (a rate limit resets; this does not until someone pays), so none was made."""
    said = _said(outcome, "billing", kinds.get("billing"), "out of credit")
    return (
        f"executor {executor.name!r} ({executor.backend}) is out of credit or its plan does not "
        f"include this use: {said}; not retried: add credits or change plan, then run the chunk "
        "again"
    )


def account_line(executor: Executor, outcome: Outcome, kinds: Mapping[str, str]) -> str:
    """The agent's account cannot be used until its owner acts (on hold, its organization
    disabled, a verification it awaits): which executor, what it said (else its ``account``
    error event) and that no retry, wait or other chunk helps, so none was made."""
    said = _said(outcome, "account", kinds.get("account"), "account unusable")
    return (
        f"executor {executor.name!r} ({executor.backend}) cannot use its account: {said}; "
        "not retried: the account's owner must put it right, then run the chunk again"
    )


def refused_for_good(
    executor: Executor, outcome: Outcome, kinds: Mapping[str, str]
) -> tuple[str, str] | None:
    """The reason and line of an attempt no retry, wait or other chunk can help (its account
    unusable, its key refused, out of credit, its model unknown), from its exit reason or an
    error event of that kind; None for any other failure."""
    said = (outcome.exit_reason, *kinds)
    if "account" in said:
        return "account", account_line(executor, outcome, kinds)
    if "auth" in said:
        return "auth", auth_line(executor, outcome, kinds.get("auth"))
    if "billing" in said:
        return "billing", billing_line(executor, outcome, kinds)
    if "unknown_model" in said:
        return "unknown_model", model_line(executor, outcome, kinds)
    return None


def _said(outcome: Outcome, kind: str, event: str | None, default: str) -> str:
    """What the agent said of an error of ``kind``: its outcome's error when it ended so, else
    the error event of that kind, on one line."""
    said = outcome.error if outcome.exit_reason == kind else event or outcome.error
    return one_line(said or outcome.exit_reason or default, 500)


def lost_line(top: Path, base: str, worktree: bool) -> str:
    """The agent deleted the work tree's .git (or made another there): what is lost."""
    if worktree:  # the project's repository is whole: the worktree goes as after any run
        return (
            f"the agent deleted or replaced the .git of its worktree {top} (the run's base "
            f"commit {base[:10]} is not there): nothing rolled back; the project is untouched"
        )
    return (
        f"the agent deleted or replaced the .git of {top}: the run's base commit {base[:10]} is "
        "not there, nothing could be rolled back; restore .git from a clone or a backup"
    )


def review_auth_line(reviewer: str, error: str) -> str:
    """The llm reviewer's key was refused or is unset: no attempt can be reviewed."""
    return (
        f"reviewer {reviewer!r} could not authenticate: {one_line(error, 500)}; not retried: "
        "fix its key (the planner's api_key_env) and run the chunk again"
    )


def review_stop_line(reviewer: Reviewer, stop: str, error: str) -> str:
    """The llm reviewer can review no attempt (``stop``: its key refused or unset, its account
    out of credit, its model unknown, its service not answering through the retries): what to
    do first (run-all cuts a chunk's reason at 300 characters), then what the service said."""
    if stop == "auth":
        return review_auth_line(reviewer.name, error)
    said = one_line(error, 500)
    if stop == "reviewer_unavailable":  # a URL refusing, 5xx, overloaded: the next would too
        return (
            f"reviewer {reviewer.name!r} got no answer, not retried: run the chunk again once "
            f"its model service answers; {said}"
        )
    if stop == "billing":
        planner = getattr(reviewer, "planner", None)
        key = f"the key in {planner.api_key_env}" if planner is not None else "its key"
        return (
            f"reviewer {reviewer.name!r} is out of credit, not retried: add credits to the "
            f"account of {key} (or use another key), then run the chunk again; {said}"
        )
    model = getattr(reviewer, "model", None)
    fix = getattr(reviewer, "model_key", None) or "its model"
    return (
        f"reviewer {reviewer.name!r} cannot use model {model!r}, not retried: fix {fix} in "
        f".handoff/config.yaml, then run the chunk again; {said}"
    )
