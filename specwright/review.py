"""Reviewers: one interface, two implementations, and the completion check no model can skip.

``checks`` ships when every verification step passed (relative to the baseline), else asks for a
revision with the failing steps as findings. ``llm`` asks the configured reviewer model, through
``specwright.llm``, for a structured review (forced tool use) of the diff and the verification
results against the chunk's acceptance criteria. Malformed model output is retried once, then
recorded as a review error — never as SHIP. ``gate`` applies what no reviewer may override: an
attempt that changed no files, none of the files its chunk names, or that verification counts
against, cannot ship.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from specwright.model import Chunk, Finding, Review, Usage, new_id, utcnow

if TYPE_CHECKING:
    from specwright.config import Config
    from specwright.gitdiff import Diff
    from specwright.store import Store
    from specwright.verify import Assessment

MAX_TAIL_IN_FINDING = 1500
MAX_FINDINGS = 50
MAX_SUMMARY_CHARS = 4000
MAX_ERROR_CHARS = 2000
UNAVAILABLE = "reviewer_unavailable"  # the llm reviewer's model service gave no answer
MAX_LINE = 2**31 - 1


@dataclass(frozen=True)
class ReviewRequest:
    """Everything a reviewer sees about one attempt."""

    chunk: Chunk
    iteration: int
    diff: Diff
    assessments: Sequence[Assessment] = ()
    agent_text: str = ""
    rules: tuple[str, ...] = ()
    run_id: str | None = None
    spec_id: str | None = None


@dataclass(frozen=True)
class ReviewResult:
    """A review plus the execution that produced it (llm reviewers) and its usage."""

    review: Review
    execution_id: str | None = None
    usage: Usage | None = None
    # no review can work (auth: the key refused or unset; billing: the account out of credit;
    # unknown_model: the model unknown to the endpoint; UNAVAILABLE: no answer through the
    # retries, not for this attempt's sake): the loop stops, with no verdict
    stop: str | None = None


class Reviewer(Protocol):
    """Decides SHIP / REVISE / BLOCKED for one attempt."""

    name: str
    kind: str  # checks | llm

    def review(
        self, request: ReviewRequest, cancel: threading.Event | None = None
    ) -> ReviewResult: ...


# --- verification as text and findings ------------------------------------------------------


def _tail(text: str, limit: int = MAX_TAIL_IN_FINDING) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def verification_findings(assessments: Sequence[Assessment]) -> list[Finding]:
    """One error finding per step that counts against the attempt (with its output tail)."""
    out = []
    for a in assessments:
        if a.ok:
            continue
        v = a.result.verification
        tail = _tail(v.output_tail)
        message = f"verification step {a.name!r} ({v.command}): {a.reason}"
        if tail:
            message += f"\n{tail}"
        out.append(Finding(message=message, check=f"verify:{a.name}", severity="error"))
    return out


def verification_text(assessments: Sequence[Assessment]) -> str:
    """The verification results as plain text, for prompts and reviewers."""
    parts = []
    for a in assessments:
        v = a.result.verification
        head = f"- {a.name}: {v.status} (exit {v.exit_code}, {v.duration_ms} ms)"
        if v.tests_collected is not None:
            head += (
                f", tests: {v.tests_collected} collected, {v.tests_failed} failed, "
                f"{v.tests_skipped} skipped"
            )
        head += f" — {'OK' if a.ok else 'COUNTS AGAINST THE ATTEMPT'}: {a.reason}"
        parts.append(head)
        if not a.ok and v.output_tail.strip():
            parts.append(f"  last output:\n{_tail(v.output_tail)}")
    return "\n".join(parts)


# --- completion check and gate --------------------------------------------------------------


def _matches(path: str, pattern: str) -> bool:
    pattern = pattern.strip().lstrip("./")
    if not pattern:
        return False
    if path == pattern or path.startswith(pattern.rstrip("/") + "/"):
        return True
    return fnmatch.fnmatch(path, pattern)


def completion_findings(chunk: Chunk, changed: Sequence[str]) -> list[Finding]:
    """Why an attempt cannot be complete whatever a reviewer says: it changed no files, or
    none of the files its chunk names."""
    if not changed:
        return [
            Finding(
                "the attempt changed no files; the chunk cannot be done without changes",
                check="completion",
            )
        ]
    if chunk.files and not any(_matches(p, f) for p in changed for f in chunk.files):
        return [
            Finding(
                f"the attempt changed none of the files the chunk names "
                f"({', '.join(chunk.files)}); it changed: {', '.join(changed[:20])}",
                check="completion",
            )
        ]
    return []


def exposed_findings(workdir: Path, root: Path, kept: Sequence[Path]) -> list[Finding]:
    """An attempt whose ignore rules no longer ignore Specwright's files inside the project
    ``root`` (``kept``: the database, journals), as ``workdir`` (the root or its worktree) has
    them, cannot ship: its commit would take the database and journals in."""
    from specwright.gitops import is_ignored

    for target in kept:
        try:
            rel = Path(target).resolve().relative_to(root.resolve())
        except ValueError:
            continue  # outside the project: git never sees it
        if not is_ignored(workdir, workdir / rel):
            top = f"{rel.parts[0]}/" if len(rel.parts) > 1 else str(rel)
            return [
                Finding(
                    f"the attempt has git stop ignoring {rel} (Specwright's database and "
                    f"journals): it would be committed; keep `{top}` git-ignored",
                    check="completion",
                    file=".gitignore",
                )
            ]
    return []


def gate(review: Review, blocking: Sequence[Finding]) -> Review:
    """A SHIP verdict becomes REVISE when there are blocking findings; they are added."""
    if not blocking:
        return review
    known = {(f.check, f.message) for f in review.findings}
    extra = tuple(f for f in blocking if (f.check, f.message) not in known)
    if review.verdict != "SHIP":
        return replace(review, findings=review.findings + extra)
    summary = f"not shipped: {blocking[0].message.splitlines()[0]}"
    if review.summary:
        summary += f" (reviewer said SHIP: {review.summary})"
    return replace(review, verdict="REVISE", summary=summary, findings=review.findings + extra)


# --- the checks reviewer --------------------------------------------------------------------


class ChecksReviewer:
    """SHIP when every verification step passed (relative to the baseline), else REVISE."""

    kind = "checks"

    def __init__(self, name: str = "checks") -> None:
        self.name = name

    def review(self, request: ReviewRequest, cancel: threading.Event | None = None) -> ReviewResult:
        failing = verification_findings(request.assessments)
        notes = [
            Finding(f"{a.name}: {note}", check=f"verify:{a.name}", severity="warning")
            for a in request.assessments
            for note in a.notes
        ]
        n = len(request.assessments)
        if failing:
            names = ", ".join(a.name for a in request.assessments if not a.ok)
            summary = f"{len(failing)} of {n} verification step(s) count against it: {names}"
            return ReviewResult(Review("REVISE", summary, tuple(failing + notes), self.name))
        failed_before = [
            a.name for a in request.assessments if a.result.verification.status != "passed"
        ]
        if failed_before:  # it failed, as it did at the base: say so, not "passed"
            summary = (
                f"no verification step is worse than at the base ({', '.join(failed_before)} "
                "failed there too"
            )
            summary += f"; {len(notes)} pre-existing problem(s), not counted)" if notes else ")"
        elif n:
            summary = f"all {n} verification step(s) passed"
            if notes:
                summary += f" ({len(notes)} pre-existing problem(s) at the base, not counted)"
        else:
            summary = "no verification steps configured"
        return ReviewResult(Review("SHIP", summary, tuple(notes), self.name))


# --- the llm reviewer -----------------------------------------------------------------------


class MalformedReview(ValueError):
    """The model's structured answer does not fit the review schema."""


def _excerpt(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}…({len(text)} chars)"


def redacted(review: Review) -> Review:
    """``review`` with the values of secret environment variables taken out of its texts (a
    model quoting a key it saw in the diff must not put it in the store or a commit message)."""
    from specwright.redact import Redactor

    r = Redactor.from_env()
    if not r:
        return review
    findings = tuple(
        replace(f, message=r(f.message), check=r(f.check), file=r(f.file) if f.file else f.file)
        for f in review.findings
    )
    error = r(review.error) if review.error else review.error
    return replace(review, summary=r(review.summary), findings=findings, error=error)


def parse_review(data: Any, reviewer: str) -> Review:
    """Validate a model's review payload; raises ``MalformedReview`` saying what is wrong."""
    from specwright.prompts import SEVERITIES, VERDICTS

    if not isinstance(data, dict):
        raise MalformedReview(f"expected an object, got {type(data).__name__}")
    verdict = data.get("verdict")
    if not isinstance(verdict, str) or verdict.strip().upper() not in VERDICTS:
        raise MalformedReview(
            f"verdict: expected one of {', '.join(VERDICTS)}, got {_excerpt(verdict)}"
        )
    summary = data.get("summary")
    if not isinstance(summary, str):
        raise MalformedReview(f"summary: expected a string, got {_excerpt(summary)}")
    raw_findings = data.get("findings", [])
    if raw_findings is None:  # "no findings", said as null
        raw_findings = []
    if not isinstance(raw_findings, list):
        raise MalformedReview(f"findings: expected a list, got {type(raw_findings).__name__}")
    findings = []
    for i, f in enumerate(raw_findings[:MAX_FINDINGS]):
        if not isinstance(f, dict) or not isinstance(f.get("message"), str):
            raise MalformedReview(f"findings[{i}]: expected an object with a string message")
        severity = str(f.get("severity") or "error").lower()
        line = f.get("line")
        if isinstance(line, str):  # "12"; not "²" nor 5000 digits, which int() refuses
            text = line.strip()
            line = int(text) if text.isascii() and text.isdigit() and len(text) < 20 else None
        findings.append(
            Finding(
                message=f["message"][:4000],
                check=str(f.get("check") or "review")[:200],
                severity=severity if severity in SEVERITIES else "error",
                file=str(f["file"])[:500] if f.get("file") else None,
                line=line
                if isinstance(line, int) and not isinstance(line, bool) and 0 < line <= MAX_LINE
                else None,
            )
        )
    return Review(verdict.strip().upper(), summary[:MAX_SUMMARY_CHARS], tuple(findings), reviewer)


class LLMReviewer:
    """Asks a model for a structured review through ``specwright.llm`` (forced tool use)."""

    kind = "llm"

    def __init__(self, name: str, config: Config, store: Store, **client_options: Any) -> None:
        rc = config.reviewer(name)
        self.name = name
        self.planner = config.planner(rc.planner)
        self.model = rc.model or self.planner.model
        self.model_key = (  # the config key that names it, for the error when it is unknown
            f"tools.reviewers.{name}.model" if rc.model else f"tools.planners.{rc.planner}.model"
        )
        self.prices = config.prices or None
        self.store = store
        self.client_options = client_options  # e.g. base_url, max_retries (tests)

    def review(self, request: ReviewRequest, cancel: threading.Event | None = None) -> ReviewResult:
        """One structured model call; malformed output is retried once (by the client), then
        becomes a review error — never SHIP. Transport failures are review errors too."""
        from specwright import prompts
        from specwright.llm import (
            LLMAuthError,
            LLMBillingError,
            LLMClient,
            LLMError,
            LLMMissingKeyError,
            LLMOutputError,
            LLMRequestError,
            LLMUnknownModelError,
        )

        chunk = request.chunk
        prompt = prompts.review(
            chunk_title=chunk.title,
            chunk_prompt=chunk.prompt,
            acceptance=chunk.acceptance,
            files=chunk.files,
            diff=request.diff.text,
            verification=verification_text(request.assessments),
            agent_report=request.agent_text,
            rules=request.rules,
        )
        client = LLMClient(
            self.planner,
            self.store,
            model=self.model,
            model_key=self.model_key,
            prices=self.prices,
            cancel=cancel,
            **self.client_options,
        )
        error: str
        stop = None
        try:
            data, usage = client.structured(
                prompt.system,
                prompt.user,
                prompt.schema_name,
                prompt.schema,
                role="reviewer",
                description=prompt.description,
                run_id=request.run_id,
                spec_id=request.spec_id or chunk.spec_id,
                chunk_id=chunk.id,
                iteration=request.iteration,
                output_retries=1,
            )
            review = redacted(parse_review(data, self.name))
            return ReviewResult(review, client.last_execution_id, usage)
        except (LLMOutputError, MalformedReview) as exc:
            error = f"malformed review from the model after a retry: {exc}"
        except LLMError as exc:
            error = f"reviewer call failed: {exc}"
            if isinstance(exc, LLMAuthError | LLMMissingKeyError):
                stop = "auth"
            elif isinstance(exc, LLMBillingError | LLMUnknownModelError):
                stop = exc.reason
            elif not isinstance(exc, LLMRequestError):  # not this attempt's doing: no answer
                stop = UNAVAILABLE
            if stop:  # said in the run's reason, after what to do (no review row is written)
                error = str(exc)
        finally:
            client.close()
        if len(error) > MAX_ERROR_CHARS:
            error = f"{error[:MAX_ERROR_CHARS]}…({len(error)} chars)"
        review = redacted(Review("REVISE", "", (), self.name, error=error))
        return ReviewResult(review, client.last_execution_id, stop=stop)


# --- factory and storage --------------------------------------------------------------------


def check_key(reviewer: Reviewer) -> None:
    """An llm reviewer whose key variable is unset could review no attempt: say so in one line
    before any agent runs (a key the API refuses ends the run at the first review)."""
    import os

    from specwright.errors import ConfigError

    planner = getattr(reviewer, "planner", None)
    if planner is not None and not os.environ.get(planner.api_key_env, "").strip():
        raise ConfigError(
            f"reviewer {reviewer.name!r}: no API key: set the environment variable "
            f"{planner.api_key_env} (named by api_key_env of planner {planner.name!r})"
        )


def make_reviewer(config: Config, name: str | None, store: Store) -> Reviewer:
    """The reviewer configured as ``name`` (default: ``defaults.reviewer``)."""
    rc = config.reviewer(name)
    if rc.type == "llm":
        return LLMReviewer(rc.name, config, store)
    return ChecksReviewer(rc.name)


def review_row(
    result: ReviewResult, *, run_id: str | None, chunk_id: str | None, iteration: int | None
) -> dict[str, Any]:
    """The ``reviews`` row for one review (its texts redacted)."""
    r = redacted(result.review)
    return {
        "id": new_id(),
        "run_id": run_id,
        "chunk_id": chunk_id,
        "iteration": iteration,
        "execution_id": result.execution_id,
        "reviewer": r.reviewer,
        "verdict": r.verdict,
        "summary": r.summary,
        "findings": [
            {
                "check": f.check,
                "severity": f.severity,
                "file": f.file,
                "line": f.line,
                "message": f.message,
            }
            for f in r.findings
        ],
        "error": r.error,
        "created_at": utcnow(),
    }


def record(
    store: Store,
    result: ReviewResult,
    *,
    run_id: str | None,
    chunk_id: str | None,
    iteration: int | None,
) -> str:
    """Write one ``reviews`` row; returns its id."""
    row = review_row(result, run_id=run_id, chunk_id=chunk_id, iteration=iteration)
    store.insert("reviews", row)
    return str(row["id"])
