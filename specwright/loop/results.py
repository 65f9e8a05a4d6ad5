"""What a chunk run tells its callers: live ``Progress`` updates and the ``ChunkResult``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Progress:
    """A live update for UIs: ``kind`` is run | baseline | iteration | event | verifying | verify |
    review | pause | commit | rollback | done; ``data`` carries the event, step result or review."""

    kind: str
    run_id: str
    chunk_id: str
    iteration: int
    message: str
    data: Any = None


ProgressSink = Callable[[Progress], None]


@dataclass(frozen=True)
class ChunkResult:
    """How a chunk run ended."""

    run_id: str
    chunk_id: str
    status: str  # shipped | failed | blocked | cancelled
    reason: str
    iterations: int
    verdict: str | None = None
    branch: str | None = None
    base_commit: str | None = None
    head_commit: str | None = None
    commit: str | None = None  # the shipped commit
    cost_usd: float = 0.0
    summary: str | None = None
    interrupted_by: str | None = None  # Ctrl-C or SIGTERM, when one of them stopped the run
    resets_at: datetime | None = None  # ended rate_limited: when the limit resets (naive UTC)

    @property
    def shipped(self) -> bool:
        return self.status == "shipped"
