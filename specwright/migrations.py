"""Numbered, append-only schema migrations.

Each migration is a list of SQL statements applied in one transaction together with its row in
``schema_version``. An applied migration is never edited: change the schema by appending a new
one. No FOREIGN KEY constraints (they block later ``RENAME COLUMN`` in DuckDB); relations are
documented in ``docs/schema.md`` and every foreign-key column is indexed.
All timestamps are UTC (``TIMESTAMP`` without zone); ids are UUIDv7 (time-sortable).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def _index(table: str, *cols: str) -> str:
    name = f"idx_{table}_{'_'.join(cols)}"
    return f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({', '.join(cols)})"


_M001 = (
    """CREATE TABLE projects (
        id UUID PRIMARY KEY,
        name VARCHAR NOT NULL,
        root VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL
    )""",
    """CREATE TABLE specs (
        id UUID PRIMARY KEY,
        project_id UUID NOT NULL,
        slug VARCHAR NOT NULL,
        title VARCHAR NOT NULL,
        body VARCHAR NOT NULL DEFAULT '',
        status VARCHAR NOT NULL DEFAULT 'draft',
        intent VARCHAR NOT NULL DEFAULT '',
        budget_usd DOUBLE,
        created_at TIMESTAMP NOT NULL,
        updated_at TIMESTAMP NOT NULL
    )""",
    """CREATE TABLE spec_questions (
        id UUID PRIMARY KEY,
        spec_id UUID NOT NULL,
        position INTEGER NOT NULL,
        question VARCHAR NOT NULL,
        why VARCHAR,
        answer VARCHAR,
        created_at TIMESTAMP NOT NULL,
        answered_at TIMESTAMP
    )""",
    """CREATE TABLE chunks (
        id UUID PRIMARY KEY,
        spec_id UUID NOT NULL,
        position INTEGER NOT NULL,
        title VARCHAR NOT NULL,
        prompt VARCHAR NOT NULL DEFAULT '',
        acceptance JSON,
        files JSON,
        status VARCHAR NOT NULL DEFAULT 'pending',
        iterations INTEGER NOT NULL DEFAULT 0,
        verdict VARCHAR,
        summary VARCHAR,
        budget_usd DOUBLE,
        created_at TIMESTAMP NOT NULL,
        updated_at TIMESTAMP NOT NULL
    )""",
    """CREATE TABLE chunk_deps (
        chunk_id UUID NOT NULL,
        depends_on_id UUID NOT NULL,
        PRIMARY KEY (chunk_id, depends_on_id)
    )""",
    """CREATE TABLE runs (
        id UUID PRIMARY KEY,
        spec_id UUID NOT NULL,
        chunk_id UUID,
        kind VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        executor VARCHAR,
        reviewer VARCHAR,
        parent_run_id UUID,
        group_id UUID,
        pid INTEGER,
        host VARCHAR,
        branch VARCHAR,
        base_commit VARCHAR,
        head_commit VARCHAR,
        reason VARCHAR,
        iterations INTEGER NOT NULL DEFAULT 0,
        started_at TIMESTAMP NOT NULL,
        finished_at TIMESTAMP,
        heartbeat_at TIMESTAMP
    )""",
    """CREATE TABLE executions (
        id UUID PRIMARY KEY,
        run_id UUID,
        spec_id UUID,
        chunk_id UUID,
        iteration INTEGER,
        role VARCHAR NOT NULL,
        backend VARCHAR NOT NULL,
        executor VARCHAR,
        model VARCHAR,
        status VARCHAR NOT NULL,
        session_id VARCHAR,
        exit_reason VARCHAR,
        started_at TIMESTAMP NOT NULL,
        finished_at TIMESTAMP,
        duration_ms BIGINT,
        input_tokens BIGINT NOT NULL DEFAULT 0,
        output_tokens BIGINT NOT NULL DEFAULT 0,
        cache_read_tokens BIGINT NOT NULL DEFAULT 0,
        cache_write_tokens BIGINT NOT NULL DEFAULT 0,
        reasoning_tokens BIGINT NOT NULL DEFAULT 0,
        cost_usd DOUBLE,
        cost_source VARCHAR,
        reported_cost_usd DOUBLE,
        computed_cost_usd DOUBLE,
        num_turns INTEGER,
        event_count INTEGER NOT NULL DEFAULT 0,
        raw JSON
    )""",
    """CREATE TABLE events (
        id UUID PRIMARY KEY,
        execution_id UUID NOT NULL,
        seq INTEGER NOT NULL,
        ts TIMESTAMP NOT NULL,
        type VARCHAR NOT NULL,
        tool_name VARCHAR,
        call_id VARCHAR,
        input JSON,
        output VARCHAR,
        output_len BIGINT,
        is_error BOOLEAN,
        text VARCHAR,
        model VARCHAR,
        input_tokens BIGINT,
        output_tokens BIGINT,
        cache_read_tokens BIGINT,
        cache_write_tokens BIGINT,
        reasoning_tokens BIGINT,
        cost_usd DOUBLE,
        raw JSON
    )""",
    """CREATE TABLE verifications (
        id UUID PRIMARY KEY,
        run_id UUID,
        chunk_id UUID,
        iteration INTEGER,
        name VARCHAR NOT NULL,
        command VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        exit_code INTEGER,
        duration_ms BIGINT NOT NULL,
        output_tail VARCHAR,
        tests_collected INTEGER,
        tests_failed INTEGER,
        tests_skipped INTEGER,
        is_baseline BOOLEAN NOT NULL DEFAULT FALSE,
        created_at TIMESTAMP NOT NULL
    )""",
    """CREATE TABLE reviews (
        id UUID PRIMARY KEY,
        run_id UUID,
        chunk_id UUID,
        iteration INTEGER,
        execution_id UUID,
        reviewer VARCHAR NOT NULL,
        verdict VARCHAR NOT NULL,
        summary VARCHAR,
        findings JSON,
        error VARCHAR,
        created_at TIMESTAMP NOT NULL
    )""",
    """CREATE TABLE usage_records (
        id UUID PRIMARY KEY,
        source VARCHAR NOT NULL,
        dedup_key VARCHAR NOT NULL,
        message_id VARCHAR,
        request_id VARCHAR,
        session_id VARCHAR,
        project_path VARCHAR,
        file VARCHAR,
        model VARCHAR,
        ts TIMESTAMP NOT NULL,
        input_tokens BIGINT NOT NULL DEFAULT 0,
        output_tokens BIGINT NOT NULL DEFAULT 0,
        cache_read_tokens BIGINT NOT NULL DEFAULT 0,
        cache_write_5m_tokens BIGINT NOT NULL DEFAULT 0,
        cache_write_1h_tokens BIGINT NOT NULL DEFAULT 0,
        reasoning_tokens BIGINT NOT NULL DEFAULT 0,
        reported_cost_usd DOUBLE,
        computed_cost_usd DOUBLE,
        execution_id UUID,
        raw JSON
    )""",
    """CREATE TABLE usage_snapshots (
        id UUID PRIMARY KEY,
        taken_at TIMESTAMP NOT NULL,
        source VARCHAR NOT NULL,
        provider VARCHAR,
        execution_id UUID,
        payload JSON
    )""",
    """CREATE TABLE prices (
        model VARCHAR NOT NULL,
        provider VARCHAR NOT NULL DEFAULT '',
        input_per_mtok DOUBLE,
        output_per_mtok DOUBLE,
        cache_write_per_mtok DOUBLE,
        cache_write_1h_per_mtok DOUBLE,
        cache_read_per_mtok DOUBLE,
        source VARCHAR NOT NULL,
        updated_at TIMESTAMP NOT NULL,
        PRIMARY KEY (model, provider)
    )""",
    _index("specs", "project_id"),
    "CREATE UNIQUE INDEX IF NOT EXISTS uq_specs_project_slug ON specs (project_id, slug)",
    _index("specs", "created_at"),
    _index("spec_questions", "spec_id"),
    _index("chunks", "spec_id"),
    _index("chunk_deps", "depends_on_id"),
    _index("runs", "spec_id"),
    _index("runs", "chunk_id"),
    _index("runs", "parent_run_id"),
    _index("runs", "group_id"),
    _index("runs", "started_at"),
    _index("executions", "run_id"),
    _index("executions", "spec_id"),
    _index("executions", "chunk_id"),
    _index("executions", "started_at"),
    _index("events", "execution_id"),
    _index("events", "ts"),
    _index("verifications", "run_id"),
    _index("verifications", "chunk_id"),
    _index("verifications", "created_at"),
    _index("reviews", "run_id"),
    _index("reviews", "chunk_id"),
    _index("reviews", "execution_id"),
    _index("reviews", "created_at"),
    "CREATE UNIQUE INDEX IF NOT EXISTS uq_usage_records_dedup ON usage_records (source, dedup_key)",
    _index("usage_records", "execution_id"),
    _index("usage_records", "session_id"),
    _index("usage_records", "ts"),
    _index("usage_snapshots", "execution_id"),
    _index("usage_snapshots", "taken_at"),
)

_M002_CODEBASE_CACHE = (
    """CREATE TABLE codebase_cache (
        root VARCHAR NOT NULL,
        commit_sha VARCHAR NOT NULL,
        params VARCHAR NOT NULL,
        rendered VARCHAR NOT NULL,
        stats JSON,
        created_at TIMESTAMP NOT NULL,
        PRIMARY KEY (root, commit_sha, params)
    )""",
    _index("codebase_cache", "created_at"),
)

_M003_USAGE_INGEST = (
    # ccusage's dedupe needs these to pick the kept line of a duplicated message
    "ALTER TABLE usage_records ADD COLUMN is_sidechain BOOLEAN",
    "ALTER TABLE usage_records ADD COLUMN speed VARCHAR",
    "ALTER TABLE usage_records ADD COLUMN provider VARCHAR",
    "ALTER TABLE usage_records ADD COLUMN seq BIGINT",
    "ALTER TABLE usage_records ADD COLUMN imported_at TIMESTAMP",
    "ALTER TABLE usage_records ADD COLUMN host VARCHAR",
    "ALTER TABLE prices ADD COLUMN tier_start_tokens BIGINT",
    "ALTER TABLE prices ADD COLUMN tier_input_per_mtok DOUBLE",
    "ALTER TABLE prices ADD COLUMN tier_output_per_mtok DOUBLE",
    "ALTER TABLE prices ADD COLUMN tier_cache_write_per_mtok DOUBLE",
    "ALTER TABLE prices ADD COLUMN tier_cache_write_1h_per_mtok DOUBLE",
    "ALTER TABLE prices ADD COLUMN tier_cache_read_per_mtok DOUBLE",
    "ALTER TABLE usage_snapshots ADD COLUMN kind VARCHAR",
    "ALTER TABLE usage_snapshots ADD COLUMN phase VARCHAR",
    "ALTER TABLE usage_snapshots ADD COLUMN error VARCHAR",
    """CREATE TABLE usage_ingest_files (
        source VARCHAR NOT NULL,
        path VARCHAR NOT NULL,
        size BIGINT NOT NULL,
        "offset" BIGINT NOT NULL,
        mtime DOUBLE,
        head_hash VARCHAR,
        lines BIGINT NOT NULL DEFAULT 0,
        malformed BIGINT NOT NULL DEFAULT 0,
        state JSON,
        updated_at TIMESTAMP NOT NULL,
        PRIMARY KEY (source, path)
    )""",
    _index("usage_records", "message_id"),
    _index("usage_records", "model"),
)


# The message_id/model indexes of migration 3 cost ingest time and no query uses them
# (DuckDB joins with hash tables, not ART lookups, for set-based dedupe).
_M004_USAGE_INDEXES = (
    "DROP INDEX IF EXISTS idx_usage_records_message_id",
    "DROP INDEX IF EXISTS idx_usage_records_model",
)


_M005_QUEUE = (
    """CREATE TABLE queue (
        id UUID PRIMARY KEY,
        spec_id UUID NOT NULL,
        project_root VARCHAR NOT NULL,
        options JSON,
        status VARCHAR NOT NULL,
        cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
        run_id UUID,
        worker_pid INTEGER,
        host VARCHAR,
        reason VARCHAR,
        created_at TIMESTAMP NOT NULL,
        started_at TIMESTAMP,
        finished_at TIMESTAMP,
        heartbeat_at TIMESTAMP
    )""",
    _index("queue", "spec_id"),
    _index("queue", "status"),
    _index("queue", "created_at"),
)


# The execution_id/session_id/ts indexes of usage_records serve no query (linking and reports
# are joins and scans; DuckDB's zonemaps bound time windows) but every ingest paid for them:
# each insert updated three more ART indexes and every checkpoint rewrote them.
_M006_USAGE_RECORD_INDEXES = (
    "DROP INDEX IF EXISTS idx_usage_records_execution_id",
    "DROP INDEX IF EXISTS idx_usage_records_session_id",
    "DROP INDEX IF EXISTS idx_usage_records_ts",
)


# The schema's rule (DESIGN.md, issue 2) is an index on every foreign-key and time column; users
# query this file directly, by execution and by time. Migration 6 went too far for ~0.1 s of
# ingest on 200 MB of logs: the execution_id and ts indexes come back (session_id is no foreign
# key and stays off the hot insert path).
_M007_USAGE_RECORD_FK_TIME_INDEXES = (
    _index("usage_records", "execution_id"),
    _index("usage_records", "ts"),
)


# Claude Code ingests numbered ``seq`` from DuckDB's row ids of the uncommitted staging table,
# which start near 2**55: each run added that much, and after ~255 runs ``seq`` overflowed BIGINT
# and every ingest failed. Renumber each source's records 1, 2, ... in the same order.
_M008_USAGE_RECORD_SEQ = (
    """UPDATE usage_records SET seq = r.n
    FROM (SELECT id, row_number() OVER (PARTITION BY source ORDER BY seq, id) AS n
          FROM usage_records WHERE seq IS NOT NULL) r
    WHERE usage_records.id = r.id AND usage_records.seq <> r.n""",
)


# Settings of one database file. ``journal_dir``: the journal directory this database is an
# index of (relative to the database's folder, or absolute). Before it every database journaled
# into ``journal/`` beside it, so two databases in one folder shared (and rebuilt) each other's
# rows; the store writes the first row in this migration's transaction (see Store._own_journal).
_M009_STORE_META = (
    """CREATE TABLE store_meta (
        key VARCHAR PRIMARY KEY,
        value VARCHAR NOT NULL
    )""",
)

# The migration that made store_meta: a database older than it keeps the shared ``journal/``.
STORE_META_VERSION = 9


# The tool-call report grouped every tool event by (execution_id, call_id): ~290 ms of the
# dashboard's 300 on a year of events. The recorder now writes on each tool_result the call it
# answers (the latest tool_call with its call_id before it, by seq, in the same execution): its
# tool name and time, whether it is the call's first result (whose time is the call's latency)
# and whether it is its first failed one, so the report is one scan. This fills them in for the
# events recorded before; ``store.rebuild_into`` runs it again after replaying journals written
# before this migration (rows already filled are left alone).
BACKFILL_TOOL_RESULTS = """UPDATE events SET call_tool = m.call_tool, call_ts = m.call_ts,
        first_result = m.first_result, first_failure = m.first_failure
    FROM (
        SELECT r.id, c.tool_name AS call_tool, c.ts AS call_ts,
               row_number() OVER (PARTITION BY r.execution_id, c.seq ORDER BY r.seq) = 1
                   AS first_result,
               r.is_error IS TRUE AND row_number() OVER (
                   PARTITION BY r.execution_id, c.seq, r.is_error IS TRUE ORDER BY r.seq) = 1
                   AS first_failure
        FROM (SELECT id, execution_id, call_id, seq, is_error FROM events
              WHERE type = 'tool_result' AND call_id IS NOT NULL AND call_tool IS NULL) r
        ASOF JOIN (SELECT execution_id, call_id, seq, ts, tool_name FROM events
                   WHERE type = 'tool_call' AND call_id IS NOT NULL) c
          ON r.execution_id = c.execution_id AND r.call_id = c.call_id AND r.seq > c.seq
    ) m
    WHERE events.id = m.id"""

_M010_TOOL_RESULT_CALLS = (
    "ALTER TABLE events ADD COLUMN IF NOT EXISTS call_tool VARCHAR",
    "ALTER TABLE events ADD COLUMN IF NOT EXISTS call_ts TIMESTAMP",
    "ALTER TABLE events ADD COLUMN IF NOT EXISTS first_result BOOLEAN",
    "ALTER TABLE events ADD COLUMN IF NOT EXISTS first_failure BOOLEAN",
    BACKFILL_TOOL_RESULTS,
)


# Of an execution's cache writes, the 1-hour ones (2x input, against 1.25x for a 5-minute
# write), as usage_records keeps them: Claude Code's result line splits them. An execution
# recorded before this has 0, as its computed cost priced every write as a 5-minute one (and
# a rebuild from its journal, which has no such column, gives the same).
_M011_EXECUTION_CACHE_WRITE_1H = (
    "ALTER TABLE executions ADD COLUMN IF NOT EXISTS cache_write_1h_tokens BIGINT DEFAULT 0",
)


# A Codex event without totals (only the turn's usage) was keyed by its file's path and a hash of
# its line: Codex moves a rollout into ``archived_sessions/`` when a session is archived, and the
# moved file's events were counted again. They are keyed by session (``h:<session>:<hash>``, as
# codex.py now writes them, and as ``usage merge`` rewrites older exports' keys): the copies
# counted twice before are dropped, the first read kept.
CODEX_HASH_KEYED = "source = 'codex' AND starts_with(dedup_key, 'h:') AND session_id IS NOT NULL"
CODEX_SESSION_KEY = "'h:' || session_id || ':' || regexp_extract(dedup_key, ':([0-9]+)$', 1)"
_M012_CODEX_SESSION_KEYS = (
    f"""DELETE FROM usage_records WHERE id IN (
        SELECT id FROM usage_records WHERE {CODEX_HASH_KEYED}
        QUALIFY row_number() OVER (PARTITION BY {CODEX_SESSION_KEY} ORDER BY seq, id) > 1)""",
    f"""UPDATE usage_records SET dedup_key = {CODEX_SESSION_KEY}
    WHERE {CODEX_HASH_KEYED} AND dedup_key <> {CODEX_SESSION_KEY}""",
)


# docs/schema.md says every foreign-key column is indexed: queue.run_id (-> runs) was not.
_M013_QUEUE_RUN_INDEX = (_index("queue", "run_id"),)

# An item whose run-all a rate limit stopped goes back on the queue until the limit resets, and
# the queued items of its executor wait with it: no worker claims one before ``not_before``.
_M014_QUEUE_NOT_BEFORE = ("ALTER TABLE queue ADD COLUMN IF NOT EXISTS not_before TIMESTAMP",)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _M001),
    Migration(2, "codebase context cache", _M002_CODEBASE_CACHE),
    Migration(3, "usage ingest state and dedupe columns", _M003_USAGE_INGEST),
    Migration(4, "drop unused usage indexes", _M004_USAGE_INDEXES),
    Migration(5, "work queue for background run-all", _M005_QUEUE),
    Migration(6, "drop usage_records indexes no query uses", _M006_USAGE_RECORD_INDEXES),
    Migration(
        7, "usage_records: foreign-key and time indexes again", _M007_USAGE_RECORD_FK_TIME_INDEXES
    ),
    Migration(8, "usage_records: renumber seq from 1 per source", _M008_USAGE_RECORD_SEQ),
    Migration(STORE_META_VERSION, "store_meta: the database's own journal", _M009_STORE_META),
    Migration(10, "events: a tool result names the call it answers", _M010_TOOL_RESULT_CALLS),
    Migration(11, "executions: the 1-hour part of cache writes", _M011_EXECUTION_CACHE_WRITE_1H),
    Migration(
        12, "usage_records: Codex events without totals keyed by session", _M012_CODEX_SESSION_KEYS
    ),
    Migration(13, "queue: an index on run_id, as on every foreign key", _M013_QUEUE_RUN_INDEX),
    Migration(14, "queue: not_before, an item waiting for a rate limit", _M014_QUEUE_NOT_BEFORE),
)


def latest_version() -> int:
    """The schema version this code writes."""
    return MIGRATIONS[-1].version
