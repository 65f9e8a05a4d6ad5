"""Usage from agents' own logs and from codexbar, imported into the store.

- ``claude``: Claude Code JSONL logs (ccusage's dedupe and pricing rules).
- ``codex``: Codex CLI session logs (token_count events, rate-limit windows).
- ``codexbar``: `codexbar usage` / `codexbar cost` snapshots, before/after an execution.
- ``export``, ``exchange``: Parquet export, and its idempotent merge across machines.

Each ingestor is incremental: it remembers how far it read every file and imports only new
lines; a re-run imports nothing twice. Nothing here is imported by the core at start-up.
"""

from __future__ import annotations

from specwright.usage.common import IngestResult

__all__ = ["IngestResult"]
