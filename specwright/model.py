"""The shared vocabulary: records stored in the database and the normalized agent events.

Records are frozen dataclasses; stream events carry a ``type`` literal and form one union
(``AgentEvent``), whatever backend produced them. Nothing here touches I/O.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

# --- costs for people -----------------------------------------------------------------------


def cost_text(cost_usd: float | None, unpriced: int = 0, places: int = 4) -> str:
    """A total cost as text: ``$0.2500``; a lower bound ``$0.2500 + 2 unpriced`` when some of
    its calls have no known cost (no price, or stopped mid-run); ``unknown (2 unpriced)`` when
    none has one; ``-`` for nothing at all."""
    if cost_usd is None or not math.isfinite(cost_usd):  # NULL, NaN, a sum past the largest float
        return f"unknown ({unpriced} unpriced)" if unpriced else "-"
    return f"${cost_usd:.{places}f}" + (f" + {unpriced} unpriced" if unpriced else "")


# --- ids and clocks -------------------------------------------------------------------------

_uuid_lock = threading.Lock()
_last_ms = 0
_seq = 0


def new_id() -> str:
    """A UUIDv7 string: time-sortable, generated client-side, monotonic within a process."""
    global _last_ms, _seq
    with _uuid_lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            _seq += 1
            if _seq >= 1 << 12:  # counter exhausted within one millisecond: borrow the next one
                _last_ms += 1
                _seq = 0
            ms = _last_ms
        else:
            _last_ms, _seq = ms, 0
        rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
        value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | _seq << 64 | 0b10 << 62 | rand
    return str(uuid.UUID(int=value))


# Limits on what a user (a command line, a spec file, .handoff/config.yaml) may ask for: no real
# run needs more, so more is a typo, or "no limit" spelled as a huge number
MAX_PARALLEL = 256  # chunks (or queued items) at once, each an agent in its own work tree
MAX_ITERATIONS = 1000  # attempts per chunk
MAX_BUDGET_USD = 1_000_000  # no spec costs that: more is a typo, or 1e308 meant as "no limit"


def utcnow() -> datetime:
    """The current time in UTC, as a naive datetime (the store keeps every timestamp in UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


def local_minute(epoch: float) -> str:
    """A moment (epoch seconds) as this machine's clock reads it: ``2026-12-03 15:04 local``
    (when a limit resets, when a held queue item tries again)."""
    return f"{datetime.fromtimestamp(epoch):%Y-%m-%d %H:%M} local"


def slugify(text: str, max_len: int = 48) -> str:
    """A lowercase, dash-separated slug safe for branch names and file names: letters and
    digits of any script (NFKC, lower-cased, with the marks that follow them: an intent in
    Japanese is not ``spec``), every other run of characters one dash; ``spec`` when nothing is
    left. No ``.``, space, control or ``~^:?*[\\`` is kept, so ``specwright/<slug>`` passes
    ``git check-ref-format``."""
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).lower())
    kept: list[str] = []
    for ch in text:
        kind = unicodedata.category(ch)[0]
        mark = kind == "M" and kept and kept[-1] != "-"  # a vowel sign, an accent: its letter's
        kept.append(ch if kind in "LN" or mark else "-")
    slug = re.sub(r"-+", "-", "".join(kept)).strip("-")
    return slug[:max_len].rstrip("-") or "spec"


# --- statuses -------------------------------------------------------------------------------

SpecStatus = Literal["draft", "ready", "running", "done", "failed"]
ChunkStatus = Literal[
    "pending", "running", "shipped", "failed", "blocked", "interrupted", "cancelled"
]
RunStatus = Literal["queued", "running", "shipped", "failed", "blocked", "interrupted", "cancelled"]
ExecutionStatus = Literal["running", "ok", "error", "cancelled", "killed"]
Role = Literal["executor", "planner", "reviewer", "summarizer"]
Verdict = Literal["SHIP", "REVISE", "BLOCKED"]
CostSource = Literal["reported", "computed", "codexbar"]


# --- records --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Project:
    """A code base Specwright works on: one git repository, one `.handoff/` directory."""

    id: str
    name: str
    root: str
    created_at: datetime


@dataclass(frozen=True)
class Spec:
    """What the user wants, written down: a markdown body split into chunks."""

    id: str
    project_id: str
    slug: str
    title: str
    body: str = ""
    status: str = "draft"
    intent: str = ""
    budget_usd: float | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Chunk:
    """One unit of work an agent can do in a single loop, with its dependencies."""

    id: str
    spec_id: str
    position: int
    title: str
    prompt: str = ""
    acceptance: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    status: str = "pending"
    iterations: int = 0
    verdict: str | None = None
    summary: str | None = None
    budget_usd: float | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Run:
    """One attempt to take a chunk (or a whole spec) through the loop."""

    id: str
    spec_id: str
    chunk_id: str | None
    kind: str  # "chunk" | "spec"
    status: str
    executor: str | None = None
    reviewer: str | None = None
    parent_run_id: str | None = None
    group_id: str | None = None
    pid: int | None = None
    host: str | None = None
    branch: str | None = None
    base_commit: str | None = None
    reason: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None


@dataclass(frozen=True)
class Usage:
    """Token counts and cost of one model call or one whole execution.

    ``input_tokens`` excludes cache reads and writes (Anthropic semantics); every backend's
    numbers are converted to this meaning before they are stored. ``cache_write_tokens`` counts
    all cache writes, ``cache_write_1h_tokens`` how many of them were 1-hour writes (priced at
    their own rate, 2x input against 1.25x for a 5-minute write).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None
    model: str | None = None
    cache_write_1h_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        cost: float | None
        if self.cost_usd is None and other.cost_usd is None:
            cost = None
        else:
            cost = (self.cost_usd or 0.0) + (other.cost_usd or 0.0)
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            cost,
            self.model or other.model,
            self.cache_write_1h_tokens + other.cache_write_1h_tokens,
        )

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )


@dataclass(frozen=True)
class Execution:
    """One call of an executor, planner, reviewer or summarizer, with its totals."""

    id: str
    role: str
    backend: str
    status: str = "running"
    run_id: str | None = None
    chunk_id: str | None = None
    spec_id: str | None = None
    iteration: int | None = None
    executor: str | None = None
    model: str | None = None
    session_id: str | None = None
    exit_reason: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: int | None = None
    usage: Usage = field(default_factory=Usage)
    cost_source: str | None = None
    num_turns: int | None = None


@dataclass(frozen=True)
class Finding:
    """One specific thing a review wants changed."""

    message: str
    check: str = "review"
    severity: str = "error"
    file: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class Review:
    """A reviewer's verdict on one iteration of a chunk."""

    verdict: str
    summary: str = ""
    findings: tuple[Finding, ...] = ()
    reviewer: str = "checks"
    error: str | None = None


@dataclass(frozen=True)
class Verification:
    """The result of one verification step (type check, lint, tests) on one attempt."""

    name: str
    command: str
    status: str  # passed | failed | timeout | error | cancelled (the run stopped it)
    exit_code: int | None
    duration_ms: int
    output_tail: str = ""
    tests_collected: int | None = None
    tests_failed: int | None = None
    tests_skipped: int | None = None
    is_baseline: bool = False


# --- normalized agent events ----------------------------------------------------------------


@dataclass(frozen=True)
class TextEvent:
    """Text the agent said (assistant message text, or a line of a CLI agent's output)."""

    text: str
    raw: dict[str, Any] | None = None
    type: Literal["text"] = "text"


@dataclass(frozen=True)
class ToolCall:
    """The agent asked to run a tool."""

    call_id: str
    tool: str
    input: dict[str, Any]
    raw: dict[str, Any] | None = None
    type: Literal["tool_call"] = "tool_call"


@dataclass(frozen=True)
class ToolResult:
    """A tool finished; ``output`` may be large (the store truncates and keeps the length)."""

    call_id: str
    output: str
    is_error: bool = False
    tool: str | None = None
    raw: dict[str, Any] | None = None
    type: Literal["tool_result"] = "tool_result"


@dataclass(frozen=True)
class UsageEvent:
    """Tokens and cost reported by the agent (one step, or the final totals when ``final``)."""

    usage: Usage
    final: bool = False
    raw: dict[str, Any] | None = None
    type: Literal["usage"] = "usage"


@dataclass(frozen=True)
class ErrorEvent:
    """Something went wrong: an API error, a malformed line (``warning``), a crash."""

    message: str
    # error | warning | api_error | rate_limit | auth (key refused, missing) | unknown_model |
    # billing (out of credit, or a plan without this use) | overloaded (the service, a 529) |
    # account (on hold, disabled, awaiting verification: its owner must act)
    kind: str = "error"
    raw: dict[str, Any] | None = None
    type: Literal["error"] = "error"


@dataclass(frozen=True)
class StepEvent:
    """A lifecycle marker: session started, step finished, agent idle."""

    name: str
    session_id: str | None = None
    raw: dict[str, Any] | None = None
    type: Literal["step"] = "step"


AgentEvent = TextEvent | ToolCall | ToolResult | UsageEvent | ErrorEvent | StepEvent
