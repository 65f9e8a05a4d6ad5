"""What every ingestor shares: the ingest pass over log files, the result it reports, the rates
table, linking to executions."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specwright.errors import named
from specwright.model import utcnow
from specwright.usage import files as F
from specwright.usage.files import insert_rows

if TYPE_CHECKING:
    import duckdb

    from specwright.config import Price
    from specwright.pricing import Rates
    from specwright.store import Store

Stage = Callable[["duckdb.DuckDBPyConnection", list[F.Planned]], dict[str, tuple[int, int]]]
Merge = Callable[
    ["duckdb.DuckDBPyConnection", "IngestResult", list[F.Planned]],
    dict[str, dict[str, Any]] | None,
]

MAX_FILE_WARNINGS = 5

_RATE_COLS = (
    "model",
    "provider",
    "input_per_mtok",
    "output_per_mtok",
    "cache_write_per_mtok",
    "cache_write_1h_per_mtok",
    "cache_read_per_mtok",
    "tier_start_tokens",
    "tier_input_per_mtok",
    "tier_output_per_mtok",
    "tier_cache_write_per_mtok",
    "tier_cache_write_1h_per_mtok",
    "tier_cache_read_per_mtok",
    "source",
)


@dataclass
class IngestResult:
    """What one ingest run did; ``warnings`` are for people (unknown prices, bad lines)."""

    source: str
    roots: list[str] = field(default_factory=list)
    files_seen: int = 0
    files_read: int = 0
    lines: int = 0  # usage lines read this run
    malformed: int = 0
    malformed_files: dict[str, int] = field(default_factory=dict)
    imported: int = 0
    duplicates: int = 0  # lines dropped as copies of a kept line
    replaced: int = 0  # stored records replaced by a better copy
    linked: int = 0
    repriced: int = 0  # stored records without a cost that a `prices:` override prices now
    unknown_models: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def messages(self) -> list[str]:
        """One-line warnings: malformed lines by file, models without a price."""
        out = list(self.warnings)
        bad = sorted(self.malformed_files.items(), key=lambda kv: (-kv[1], kv[0]))
        for path, n in bad[:MAX_FILE_WARNINGS]:
            out.append(f"{path}: {n} malformed line(s) skipped")
        if len(bad) > MAX_FILE_WARNINGS:
            rest = sum(n for _, n in bad[MAX_FILE_WARNINGS:])
            out.append(
                f"... and {rest} malformed line(s) in {len(bad) - MAX_FILE_WARNINGS} more files"
            )
        if self.unknown_models:  # models come from the logs: bounded, on one line
            out.append(
                f"no price known for model(s) {named(self.unknown_models)}: their cost is NULL; "
                "add them under `prices:` in .handoff/config.yaml"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# An ingest with at least this many new bytes says what it is doing (``progress``): ~0.5 s of work
PROGRESS_BYTES = 100_000_000


def ingest_logs(
    store: Store,
    source: str,
    roots: list[Path],
    *,
    stage: Stage,
    merge: Merge,
    temp_tables: Sequence[str],
    in_memory: int = 0,
    group_below: int = 0,
    progress: Callable[[str], None] | None = None,
    reprice: Callable[[duckdb.DuckDBPyConnection], int] | None = None,
) -> IngestResult:
    """One ingest pass over the JSONL logs under ``roots``, in one transaction: plan what is new
    in each file, ``stage`` it (returns path -> (lines, malformed)), ``merge`` the staged rows
    (may return per-file parser states to keep), save how far each file was read, then drop the
    ``temp_tables``. A later run (not the first) with at most ``in_memory`` new bytes hands the
    stage each range's bytes (``Planned.data``) rather than files to read; ``group_below`` as for
    ``F.readable`` (the stage then finds ranges by their ``marker`` lines). ``progress`` hears a
    line before each step of a run with ``PROGRESS_BYTES`` or more to read. ``reprice`` prices
    stored records left without a cost (``reprice_unpriced``), even when no file has news."""
    result = IngestResult(source=source, roots=[str(r) for r in roots])
    paths = F.jsonl_files(roots)
    result.files_seen = len(paths)
    with _no_collections(), store.transaction() as conn:
        seen = F.load_states(conn, source)
        if reprice is not None:
            result.repriced = reprice(conn)
        keep = in_memory if seen else 0
        planned = F.plan(paths, seen, keep_bytes=keep)
        if not planned:
            return result
        if not seen:  # a first run looks prices up in the library once the lines are read
            from specwright.pricing import preload_library

            preload_library()
        new = sum(max(p.end - p.start, 0) for p in planned)
        say = progress if progress is not None and new >= PROGRESS_BYTES else None
        if say:
            files = sum(1 for p in planned if p.end > p.start)
            say(f"reading {new / 1e6:,.0f} MB of new lines in {files:,} of {len(paths):,} files")
        with F.readable(planned, in_memory=keep, group_below=group_below) as ready:
            to_read = [p for p in ready if p.read_path]
            counts = stage(conn, to_read) if to_read else {}
        result.files_read = len(to_read)
        result.lines = sum(c[0] for c in counts.values())
        result.malformed = sum(c[1] for c in counts.values())
        result.malformed_files = {p: c[1] for p, c in counts.items() if c[1]}
        if say:
            say(f"read {result.lines:,} usage lines; merging them with the stored records")
        states = merge(conn, result, to_read) if to_read else None
        F.save_states(conn, source, planned, counts, states)
        for table in temp_tables:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
        if say:
            say(f"imported {result.imported:,} records; saving")
    return result


@contextlib.contextmanager
def _no_collections() -> Iterator[None]:
    """Python's cyclic collector paused: an ingest makes no cycles, but the rows and structs of a
    later run set off collections of the whole heap, ~9 ms of a ~50 ms run in a process that has
    pandas loaded (measured: 1% more lines of a 200 MB corpus after a report)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def insert_rates(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    models: list[str | None],
    provider: str | None,
    overrides: dict[str, Price] | None,
    stored_rows: list[tuple[Any, ...]] | None = None,
) -> tuple[list[Rates], list[str]]:
    """Create temp table ``table`` with the rates of ``models``; returns (rates, unknown).
    ``stored_rows`` as for ``rate_columns``."""
    conn.execute(
        f"CREATE OR REPLACE TEMP TABLE {table} (model VARCHAR, provider VARCHAR, "
        "input_per_mtok DOUBLE, output_per_mtok DOUBLE, cache_write_per_mtok DOUBLE, "
        "cache_write_1h_per_mtok DOUBLE, cache_read_per_mtok DOUBLE, tier_start_tokens BIGINT, "
        "tier_input_per_mtok DOUBLE, tier_output_per_mtok DOUBLE, "
        "tier_cache_write_per_mtok DOUBLE, tier_cache_write_1h_per_mtok DOUBLE, "
        "tier_cache_read_per_mtok DOUBLE, source VARCHAR)"
    )
    rows, used, unknown = _rates(models, provider, overrides, stored_rows)
    insert_rows(conn, f"INSERT INTO {table}", rows)
    return used, unknown


# every stored price as a list of tuples in ``_RATE_COLS`` order plus ``updated_at`` (for
# ``rate_columns`` and ``save_prices``)
STORED_PRICES = f"(SELECT list(({', '.join(_RATE_COLS)}, updated_at)) FROM prices)"


def rate_columns(
    models: list[str | None],
    provider: str | None,
    overrides: dict[str, Price] | None,
    stored_rows: list[tuple[Any, ...]] | None = None,
) -> tuple[list[list[Any]], list[Rates], list[str]]:
    """The rates of ``models`` as one list per column of ``RATES_SQL``; the rates; the models
    without a price. ``stored_rows`` (from ``STORED_PRICES``) spare looking up library prices
    the store holds from today."""
    rows, used, unknown = _rates(models, provider, overrides, stored_rows)
    columns = [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in _RATE_COLS]
    return columns, used, unknown


def rates_by_model(
    models: list[str | None],
    provider: str | None,
    overrides: dict[str, Price] | None,
    stored_rows: list[tuple[Any, ...]] | None = None,
) -> tuple[dict[str, Rates], list[Rates], list[str]]:
    """``rate_columns`` for pricing in Python: each priced model's rates; the rates; the models
    without a price."""
    rows, used, unknown = _rates(models, provider, overrides, stored_rows)
    return {row[0]: rates for row, rates in zip(rows, used, strict=True)}, used, unknown


# the rates passed as ``rate_columns`` parameters, as a relation (no temp table to create)
RATES_SQL = (
    "SELECT unnest(?::VARCHAR[]) AS model, unnest(?::VARCHAR[]) AS provider, "
    + ", ".join(
        f"unnest(?::{'BIGINT' if c == 'tier_start_tokens' else 'DOUBLE'}[]) AS {c}"
        for c in _RATE_COLS[2:-1]
    )
    + ", unnest(?::VARCHAR[]) AS source"
)


def _rates(
    models: list[str | None],
    provider: str | None,
    overrides: dict[str, Price] | None,
    stored_rows: list[tuple[Any, ...]] | None,
) -> tuple[list[list[Any]], list[Rates], list[str]]:
    from specwright.pricing import rates_for, reuse_stored

    if stored_rows:  # library prices the store confirmed today: no need to import the library
        names = (*_RATE_COLS, "updated_at")
        rows_by_name = (dict(zip(names, row, strict=True)) for row in stored_rows)
        reuse_stored(rows_by_name, utcnow().date())
    rows: list[list[Any]] = []
    used: list[Rates] = []
    unknown: list[str] = []
    for model in models:
        if not model or model == "<synthetic>":  # Claude Code's marker for a local error reply
            continue
        rates = rates_for(model, provider, overrides)
        if rates is None:
            unknown.append(model)
            continue
        rows.append([model, *(rates.row()[c] for c in _RATE_COLS[1:])])
        used.append(rates)
    return rows, used, sorted(unknown)


def reprice_unpriced(
    conn: duckdb.DuckDBPyConnection,
    source: str,
    provider: str | None,
    overrides: dict[str, Price] | None,
) -> int:
    """Price the stored records of ``source`` that have no cost (no price was known when they
    were imported) with the `prices:` overrides that name their model now; how many. The
    warning about them says to add the price and ingest again, and the logs are not read again.
    Only overrides: the price library is not asked again about models it did not know."""
    from specwright.pricing import override_rates, sql_cost

    if not overrides:
        return 0
    unpriced = "r.source = ? AND r.computed_cost_usd IS NULL AND r.reported_cost_usd IS NULL"
    models = conn.execute(
        f"SELECT DISTINCT model FROM usage_records r WHERE {unpriced}", [source]
    ).fetchall()
    names = [m for (m,) in models if override_rates(m, provider, overrides) is not None]
    if not names:
        return 0
    used, _ = insert_rates(conn, "_rp_rates", names, provider, overrides)
    rows = conn.execute(
        f"""UPDATE usage_records r SET computed_cost_usd = {sql_cost("p", "r")},
            provider = p.provider
        FROM _rp_rates p WHERE r.model = p.model AND {unpriced}""",
        [source],
    ).fetchall()
    conn.execute("DROP TABLE _rp_rates")
    save_prices(conn, used)
    return int(rows[0][0]) if rows else 0


def save_prices(
    conn: duckdb.DuckDBPyConnection,
    used: list[Rates],
    stored_rows: list[tuple[Any, ...]] | None = None,
) -> None:
    """Remember the prices an ingest used (one row per model and provider); ``stored_rows``
    (from ``STORED_PRICES``) saves looking them up."""
    if not used:
        return
    cols = (*_RATE_COLS, "updated_at")
    now = utcnow()
    unique = {(r.model, r.provider): r for r in used}
    rows = [[*(r.row()[c] for c in _RATE_COLS)] for r in unique.values()]
    # a re-ingest usually finds the same prices stored: write only rows that changed, and once a
    # day the unchanged ones (``updated_at`` says until when a library price was confirmed)
    if stored_rows is None:
        stored_rows = conn.execute(
            f"SELECT {', '.join(cols)} FROM prices WHERE list_contains(?, model)",
            [sorted({r.model for r in unique.values()})],
        ).fetchall()
    stored = {tuple(row[:-1]) for row in stored_rows if row[-1].date() == now.date()}
    changed = [row for row in rows if tuple(row) not in stored]
    insert_rows(
        conn,
        f"INSERT OR REPLACE INTO prices ({', '.join(cols)})",
        [[*row, now] for row in changed],
    )


# The order in which copies of one Claude Code reply compete (ccusage's dedupe, ours on ties):
# not a sidechain, most tokens, a known cost before NaN, highest cost, fast mode, a stored record
# before a new one, the first seen. Over columns ``is_sidechain``, ``total``, ``cost``, ``fast``,
# ``is_new``, ``seq``: the ingest's ``claude._RANKED`` and the merge's ``exchange._WINNERS``
# (``claude_lines.pick`` is the same in Python).
COPY_RANK = "(is_sidechain, -total, NOT isnan(cost), -cost, NOT fast, is_new, seq)"

# whether any execution has a session id to link usage records to (for ``link_executions``)
LINKABLE = "EXISTS (SELECT 1 FROM executions WHERE session_id IS NOT NULL)"


def link_executions(
    conn: duckdb.DuckDBPyConnection, source: str, linkable: bool | None = None
) -> int:
    """Point unlinked usage records at the Specwright execution with the same session id;
    ``linkable`` (from ``LINKABLE``) saves asking whether there is any."""
    if linkable is None:
        linkable = bool(conn.execute(f"SELECT {LINKABLE}").fetchall()[0][0])
    if not linkable:
        return 0  # nothing to link to (and no scan of usage_records)
    rows = conn.execute(
        """UPDATE usage_records SET execution_id = e.id
        FROM (SELECT session_id, any_value(id) AS id FROM executions
              WHERE session_id IS NOT NULL GROUP BY session_id) e
        WHERE usage_records.source = ? AND usage_records.execution_id IS NULL
          AND usage_records.session_id = e.session_id""",
        [source],
    ).fetchall()
    return int(rows[0][0]) if rows else 0
