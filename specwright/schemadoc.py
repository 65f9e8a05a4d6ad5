"""Generate `docs/schema.md` from a freshly migrated database (the schema is a public interface)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from specwright.migrations import latest_version
from specwright.store import Store

TABLE_DOCS: dict[str, str] = {
    "schema_version": "One row per applied migration.",
    "projects": "A code base (git repository) Specwright works on.",
    "specs": "What the user wants: a markdown spec, split into chunks. `project_id` -> projects.",
    "spec_questions": "The planner's clarifying questions and the user's answers. `spec_id` -> specs.",
    "chunks": "Units of work for one agent loop. `spec_id` -> specs. `acceptance`, `files`: JSON lists.",
    "chunk_deps": "Chunk dependency edges: `chunk_id` needs `depends_on_id` first (both -> chunks).",
    "runs": "A chunk (kind `chunk`) or whole-spec (kind `spec`) run. `spec_id` -> specs, `chunk_id` "
    "-> chunks, `parent_run_id` -> runs; `group_id` ties sibling runs that compare executors.",
    "executions": "One call of an executor, planner, reviewer or summarizer, with token totals and "
    "cost. `cost_source`: reported | computed | codexbar | incomplete | unreported; both reported "
    "and computed "
    "costs are kept; an execution stopped mid-run (cancelled, killed, crashed) is `incomplete`: "
    "a model call under way told no tokens, so its `cost_usd` is NULL (unknown, never 0) and "
    "its reported and computed costs are of what it told, a lower bound; so is a planner or "
    "reviewer call retried after an attempt cut short or timed out (its tokens count the cut "
    "attempts' as far as told); "
    "one of an agent that tells "
    "no usage at all (a `command` agent without a parser reading it) is `unreported`, its cost "
    "NULL too; the computed one prices each model call at its own rates (a call over 200k "
    "prompt tokens at the long-context ones). `cache_write_1h_tokens` is the 1-hour part of "
    "`cache_write_tokens` (0 on executions recorded before schema 11, whose computed cost "
    "priced every write as a 5-minute one). `num_turns`: the agent's turns as it tells them: "
    "Claude Code's `num_turns` (its result line's), OpenCode's steps (the `step-finish` parts "
    "of its session, one per model call; a sub-agent session's not counted), a planner's or "
    "reviewer's model requests; NULL when the agent tells none (a `command` agent, Claude Code "
    "stopped before its result line). "
    "`run_id` -> runs, `chunk_id` -> chunks.",
    "events": "Every streamed event of an execution in order (`seq`): text, tool_call, tool_result, "
    "usage, error, step. Outputs beyond 64 KiB are truncated; `output_len` keeps the "
    "original length. `raw` keeps the provider payload. `execution_id` -> executions. A "
    "tool_result names the call it answers (the latest tool_call with its `call_id` before it in "
    "the execution): `call_tool` is that call's `tool_name`, `call_ts` its `ts` (`ts - call_ts` "
    "is the latency), `first_result` marks the call's first result and `first_failure` its first "
    "with `is_error`; all four are NULL on a result with no such call and on other events.",
    "verifications": "One verification step (type check, lint, tests) of one attempt, or of the base "
    "commit (`is_baseline`). `output_tail`: last 4 KiB.",
    "reviews": "A reviewer's verdict (SHIP | REVISE | BLOCKED) with findings (JSON list of "
    "{check, severity, file, line, message}).",
    "usage_records": "Per-message usage imported from agents' own logs (Claude Code, Codex), "
    "de-duplicated by (`source`, `dedup_key`): a Claude Code reply's message id and request id "
    "(`h:<file>:<hash>` for a line with no message id), a Codex event's session and cumulative "
    "total (`h:<session>:<hash>` for one with no totals). `execution_id` links to "
    "executions when the session id matches. `seq` orders a source's records as their lines were "
    "read, counting up from 1 (with gaps for lines not kept): ccusage's first-seen tie-break; "
    "records merged from another machine's export are numbered after the store's own. "
    "`computed_cost_usd` is NULL for a model with no known price (never 0), "
    "`reported_cost_usd` when the log tells no cost. `imported_at` (UTC) and `host`: when and on "
    "which machine the record was ingested (a merged record keeps them); NULL means unknown: a "
    "record merged from a file with no such column (every `usage export` has had both). "
    "`raw` is not filled.",
    "usage_snapshots": "What `codexbar` printed (JSON), with the time it was taken.",
    "prices": "Prices used (USD per million tokens) and where they came from (`source`: "
    "`genai-prices <version>` or `config`); `updated_at` is when a price was last confirmed "
    "(once a day at most). A later ingest reuses a library price confirmed today by the same "
    "version instead of looking it up again.",
    "codebase_cache": "Rendered codebase context per (root, commit, parameters); derived, not "
    "journaled (recomputed on a miss).",
    "usage_ingest_files": "Where each ingested log file was read up to (`offset`, `size`, a hash "
    "of its head to notice a rewritten file), so re-running an ingest reads only new lines; "
    "`malformed` counts lines skipped.",
    "store_meta": "Settings of this database file, one row per `key`. `journal_dir`: the "
    "journal directory this database is an index of (what `specwright db rebuild` replays), "
    "relative to the database's folder or absolute: `journal` for `specwright.duckdb` and for "
    "databases from before schema version 9, `<stem>.journal` for another database created "
    "since, so two databases in one folder keep their journals apart. Not journaled.",
    "queue": "Run-alls handed to a background worker (`specwright queue add`, `specwright "
    "worker`): status queued | running | done | failed | cancelled. `spec_id` -> specs, "
    "`run_id` -> runs. A queued item with `not_before` waits until then for a rate limit to "
    "reset.",
}


def structure(store: Store | None = None) -> dict[str, Any]:
    """Every table of a migrated database: its description, columns and indexes (the data of
    ``generate``; ``specwright --json db schema``)."""
    if store is None:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = Store(Path(tmp) / "schema.duckdb", journal_dir=Path(tmp) / "journal")
            fresh.migrate()
            return structure(fresh)
    cols = store.query(
        "SELECT table_name, column_name, data_type, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_schema = 'main' "
        "ORDER BY table_name, ordinal_position"
    )
    indexes = store.query(
        "SELECT table_name, index_name, sql FROM duckdb_indexes() ORDER BY table_name, index_name"
    )
    tables: dict[str, dict[str, Any]] = {}
    for table, name, dtype, nullable, default in cols:
        entry = tables.setdefault(
            table, {"doc": TABLE_DOCS.get(table, ""), "columns": [], "indexes": []}
        )
        entry["columns"].append(
            {"name": name, "type": dtype, "nullable": nullable == "YES", "default": default}
        )
    for table, name, _ in indexes:
        if table in tables:
            tables[table]["indexes"].append(name)
    order = sorted(tables, key=lambda t: (t != "schema_version", t))
    return {"version": latest_version(), "tables": {t: tables[t] for t in order}}


def generate(store: Store | None = None) -> str:
    """Markdown describing every table and column of a migrated database."""
    tables = structure(store)["tables"]
    lines = [
        "# Database schema",
        "",
        "<!-- generated by `specwright db schema`; a test keeps it current: do not edit -->",
        "",
        f"Schema version {latest_version()}. The DuckDB file (`data/specwright.duckdb`, or "
        "`SPECWRIGHT_DB`) is a public interface: query it directly. Ids are UUIDv7 (time-sortable); "
        "timestamps are UTC. There are no FOREIGN KEY constraints; relations are named below and "
        "every foreign-key column is indexed. Migrations never drop or rename a table or "
        "column; some drop an index or correct data (migration 12 drops Codex events counted "
        "twice).",
        "",
    ]
    for table, entry in tables.items():
        lines += [
            f"## `{table}`",
            "",
            entry["doc"],
            "",
            "| column | type | null | default |",
            "|---|---|---|---|",
        ]
        for col in entry["columns"]:
            default = col["default"]
            lines.append(
                f"| `{col['name']}` | {col['type']} | {'yes' if col['nullable'] else 'no'} | "
                f"{'' if default is None else f'`{default}`'} |"
            )
        idx = entry["indexes"]
        if idx:
            lines += ["", "Indexes: " + ", ".join(f"`{i}`" for i in idx)]
        lines.append("")
    return "\n".join(lines)
