"""One-line texts of the loop: a verification step, a review, what interrupted a run."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from specwright.model import Review, ToolCall
    from specwright.verify import StepResult


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
