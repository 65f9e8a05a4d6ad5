"""The agent's prompt for one attempt: the chunk, what it builds on, and the last feedback."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from specwright.model import Chunk, Review, Spec
    from specwright.verify import Assessment


@dataclass(frozen=True)
class Feedback:
    """Why the previous attempt was not accepted: its review and the failing steps."""

    review: Review
    failed: tuple[Assessment, ...] = ()


def build_prompt(
    chunk: Chunk, spec: Spec | None, deps: list[Chunk], feedback: Feedback | None, iteration: int
) -> str:
    """The agent's prompt for one attempt: chunk text, dependency summaries, last feedback."""
    from specwright.prompts import clip
    from specwright.review import _tail

    parts = []
    if spec is not None:
        parts.append(f"You are implementing one chunk of the spec {spec.title!r}.")
    parts.append(f"# Chunk {chunk.position}: {chunk.title}\n\n{chunk.prompt.strip()}")
    if chunk.acceptance:
        parts.append("## Acceptance criteria\n" + "\n".join(f"- {a}" for a in chunk.acceptance))
    if chunk.files:
        parts.append("## Files to change\n" + "\n".join(f"- {f}" for f in chunk.files))
    if deps:
        lines = [
            f"- {d.title} [{d.status}]: {clip((d.summary or '(no summary)').strip(), 1500)}"
            for d in deps
        ]
        parts.append("## Already done (chunks this one builds on)\n" + "\n".join(lines))
    if feedback is not None and feedback.review.error and not feedback.review.findings:
        # not the attempt's fault: "fix these problems" with none listed sent agents hunting
        parts.append(
            f"## Attempt {iteration - 1} could not be reviewed (the reviewer failed, not your "
            "change), so it was not accepted: make the change again"
        )
    elif feedback is not None:
        fb = [f"## Attempt {iteration - 1} was not accepted; fix these problems"]
        if feedback.review.summary:
            fb.append(f"Review: {feedback.review.summary}")
        for f in feedback.review.findings:
            if f.check.startswith("verify:"):
                continue  # shown below with the full output tail
            where = f" ({f.file}{':' + str(f.line) if f.line else ''})" if f.file else ""
            fb.append(f"- [{f.severity}] {f.check}{where}: {f.message}")
        for a in feedback.failed:
            v = a.result.verification
            fb.append(f"### Verification `{a.name}` ({v.command}): {a.reason}")
            if v.output_tail.strip():
                fb.append(f"```\n{_tail(v.output_tail, 3000)}\n```")
        parts.append("\n".join(fb))
    parts.append(
        "Make the change in this repository's work tree. Do not commit; Specwright verifies, "
        "reviews and commits. Do not delete or skip existing tests."
    )
    return "\n\n".join(parts)


def system_prompt(rules: tuple[str, ...]) -> str:
    """Project rules from config, appended to the agent's system prompt."""
    if not rules:
        return ""
    return "Project rules:\n" + "\n".join(f"- {r}" for r in rules)
