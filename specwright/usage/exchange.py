"""Usage across machines: merge exports (``export``: the usage tables as Parquet) idempotently.

An export is a directory with ``usage_records.parquet``, ``usage_snapshots.parquet`` and
``prices.parquet`` plus ``manifest.json``. Merging inserts only rows not already present
(snapshots by id, prices only for unknown models); usage records compete with the stored ones by
the ingest's dedupe (``_WINNERS``: a bigger copy of a reply replaces the stored one), so the
merged store counts what one machine with all the logs would, in any order, and merging the same
export twice changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from specwright.errors import SpecwrightError, first_line
from specwright.migrations import CODEX_HASH_KEYED, CODEX_SESSION_KEY
from specwright.usage.common import COPY_RANK, link_executions, reprice_unpriced
from specwright.usage.export import (
    FORMAT,
    PARTIAL,
    TABLES,
    VERSION,
    _own_manifest,
    _quote,
    _sha256,
    set_aside,
)
from specwright.usage.files import glob_literal

if TYPE_CHECKING:
    import duckdb

    from specwright.config import Price
    from specwright.store import Store

_KEYS = {
    "usage_records": "t.source = x.source AND t.dedup_key = x.dedup_key",
    "usage_snapshots": "t.id = x.id",
    "prices": "t.model = x.model AND t.provider = x.provider",
}


# the columns a file must have to be merged into each table (its keys)
_REQUIRED = {
    "usage_records": ("source", "dedup_key", "ts"),
    "usage_snapshots": ("id",),
    "prices": ("model", "provider"),
}
# A merge of a file with at least this many rows says what it is doing (``progress``): ~1 s of
# work (2 million records, a heavy user's years, take ~15 s)
PROGRESS_ROWS = 100_000


@dataclass
class MergeResult:
    files: list[str] = field(default_factory=list)
    inserted: dict[str, int] = field(default_factory=dict)
    replaced: dict[str, int] = field(default_factory=dict)  # stored rows a better copy replaced
    skipped: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    repriced: int = 0  # records no machine had a price for, priced by this one's `prices:`


def _literal(path: Path) -> str:
    """``path`` quoted for ``read_parquet``, which reads it as a glob (an export in ``x*`` read
    every sibling export ``x...`` too)."""
    return glob_literal(_quote(path))


def _manifest(directory: Path, warnings: list[str]) -> dict[str, object]:
    """Check an export directory's manifest.json, if it has one: another format is an error, a
    newer version a warning (its extra columns are left out). Returns it ({} if none)."""
    path = directory / "manifest.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SpecwrightError(f"{path}: not a readable manifest: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else data
        raise SpecwrightError(f"{path}: format {got!r}; expected {FORMAT!r}")
    version = data.get("version")
    if isinstance(version, int) and version > VERSION:
        warnings.append(
            f"{path}: export format version {version} is newer than this Specwright's "
            f"({VERSION}); what it does not know is left out"
        )
    return data


def _unreadable(path: Path, why: str) -> SpecwrightError:
    return SpecwrightError(
        f"{path}: cannot be read as a usage export: {why}; expected a whole `specwright usage "
        "export` (nothing was merged)"
    )


def _check_file(
    conn: duckdb.DuckDBPyConnection, path: Path, table: str, manifest: dict[str, object]
) -> None:
    """Refuse a file its export's manifest.json does not describe: damaged, or an export cut
    short while it was written over an earlier one (an older Specwright wrote in place). The
    manifest's checksum decides; one of an older Specwright has only row counts."""
    import duckdb

    files, rows = manifest.get("files"), manifest.get("rows")
    entry = files.get(path.name) if isinstance(files, dict) else None
    if isinstance(entry, dict):
        if entry.get("bytes") != path.stat().st_size or entry.get("sha256") != _sha256(path):
            raise _unreadable(path, "it does not match its manifest.json (damaged, or changed)")
        return
    listed = rows.get(table) if isinstance(rows, dict) else None
    if not isinstance(listed, int):
        return
    try:
        held = _rows(conn, path)
    except duckdb.Error as exc:
        raise _unreadable(path, first_line(exc)) from None
    if held != listed:
        raise _unreadable(path, f"it holds {held:,} rows, its manifest.json lists {listed:,}")


def _files(
    conn: duckdb.DuckDBPyConnection, paths: list[Path], warnings: list[str]
) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    for p in paths:
        if p.is_dir():
            if p.name.startswith(".") and PARTIAL in p.name:
                raise _unreadable(p, "an export cut short while it was written")
            manifest = _manifest(p, warnings)
            rows = manifest.get("rows")
            listed = rows if isinstance(rows, dict) else {}
            found = [(t, p / f"{t}.parquet") for t in TABLES if (p / f"{t}.parquet").exists()]
            if not found:
                raise SpecwrightError(f"{p}: no usage_*.parquet / prices.parquet files inside")
            for table in TABLES:  # a copy or sync cut short: its records would be left out
                n = listed.get(table)
                if isinstance(n, int) and n > 0 and (table, p / f"{table}.parquet") not in found:
                    raise SpecwrightError(
                        f"{p}: {table}.parquet is missing, and its manifest.json lists {n:,} "
                        "rows of it; expected the whole export (nothing was merged; name its "
                        ".parquet files to merge only those)"
                    )
            for table, path in found:
                _check_file(conn, path, table, manifest)
            out.extend(found)
        elif p.is_file():
            table = p.name.removesuffix(".parquet")
            if table not in TABLES:
                raise SpecwrightError(
                    f"{p}: expected one of {', '.join(t + '.parquet' for t in TABLES)} "
                    "or an export directory"
                )
            # a file of an export named on its own: as its export's manifest says
            _check_file(conn, p, table, _own_manifest(p.parent))
            out.append((table, p))
        elif (old := set_aside(p)) is not None:
            host = _own_manifest(old).get("host") or "that machine"
            raise SpecwrightError(
                f"{p}: no such file or directory; an export killed while it replaced it left the "
                f"last whole one in {old} (merge that; the next export to it on {host} puts it "
                "back)"
            )
        else:
            raise SpecwrightError(f"{p}: no such file or directory")
    return out


def merge(
    store: Store,
    paths: list[Path],
    *,
    progress: Callable[[str], None] | None = None,
    overrides: dict[str, Price] | None = None,
) -> MergeResult:
    """Fold exports (directories or ``<table>.parquet`` files) into the store, idempotently;
    ``progress`` hears of each file of ``PROGRESS_ROWS`` rows or more before it is merged.
    Records with no price (on any machine) are priced by ``overrides`` (`prices:`) naming their
    model, as by an ingest: a machine that only merges has no logs to ingest."""
    import duckdb

    result = MergeResult()
    with store.transaction() as conn:
        for table, path in _files(conn, paths, result.warnings):
            try:
                total, n, replaced = _merge_file(conn, table, path, result.warnings, progress)
            except duckdb.Error as exc:  # a value of the wrong type, a NULL key; or damage
                if not _decodes(path):
                    raise _unreadable(path, first_line(exc)) from None
                raise SpecwrightError(
                    f"{path}: cannot merge into {table} (nothing was merged): {first_line(exc)}"
                ) from None
            result.files.append(str(path))
            result.inserted[table] = result.inserted.get(table, 0) + n
            result.replaced[table] = result.replaced.get(table, 0) + replaced
            result.skipped[table] = result.skipped.get(table, 0) + total - n
        for (source,) in conn.execute("SELECT DISTINCT source FROM usage_records").fetchall():
            link_executions(conn, source)  # a replaced record's link to a local execution
        for source, provider in _PROVIDERS.items():
            result.repriced += reprice_unpriced(conn, source, provider, overrides)
    return result


def _merge_file(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    path: Path,
    warnings: list[str],
    progress: Callable[[str], None] | None,
) -> tuple[int, int, int]:
    """Merge one file into ``table``: (rows in it, rows inserted, stored rows replaced)."""
    typed = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = ? ORDER BY ordinal_position",
        [table],
    ).fetchall()
    cols = [r[0] for r in typed]
    have = {
        r[0]
        for r in conn.execute(f"DESCRIBE SELECT * FROM read_parquet('{_literal(path)}')").fetchall()
    }
    missing = [c for c in _REQUIRED[table] if c not in have]
    if missing:
        raise SpecwrightError(
            f"{path}: no column {', '.join(missing)}; expected a {table} file of "
            "`specwright usage export`"
        )
    extra = sorted(have - set(cols))
    if extra:
        warnings.append(
            f"{path}: column(s) this database does not have were left out: {', '.join(extra)}"
        )
    common = [c for c in cols if c in have and not (table == "usage_records" and c == "seq")]
    _refuse_non_finite(conn, path, table, [c for c, t in typed if t == "DOUBLE" and c in have])
    if table == "usage_records":
        _refuse_bad_counts(conn, path, [c for c in _COUNTS if c in have])
    if progress is not None:
        rows = _rows(conn, path)
        if rows >= PROGRESS_ROWS:
            progress(f"merging {rows:,} rows of {path} into {table}")
    if table == "usage_records":
        return _merge_records(conn, path, common, "seq" in have)
    return (*_merge_rows(conn, path, table, common), 0)


def _decodes(path: Path) -> bool:
    """Whether every value of the Parquet file ``path`` can be read (not damaged); asked on a
    connection of its own: the merge's transaction is aborted by the error that asks it."""
    import duckdb

    try:
        with duckdb.connect() as conn:
            conn.execute(
                f"SELECT count(hash(x)) FROM read_parquet('{_literal(path)}') x"
            ).fetchall()
    except duckdb.Error:
        return False
    return True


# the provider of each source's models, as its ingest prices them (claude.py, codex.py)
_PROVIDERS = {"claude-code": "anthropic", "codex": "openai"}


def _merge_rows(
    conn: duckdb.DuckDBPyConnection, path: Path, table: str, common: list[str]
) -> tuple[int, int]:
    """Insert a snapshots or prices file's rows whose key is not stored; (rows, inserted)."""
    collist = ", ".join(f'"{c}"' for c in common)
    values = ", ".join(f'x."{c}"' for c in common)
    src = f"read_parquet('{_literal(path)}')"
    total = int(conn.execute(f"SELECT count(*) FROM {src}").fetchall()[0][0])
    rows = conn.execute(
        f"""INSERT INTO {table} ({collist})
        SELECT {values}
        FROM (SELECT * FROM {src} QUALIFY row_number() OVER (PARTITION BY {_part(table)}) = 1) x
        WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE {_KEYS[table]})"""
    ).fetchall()
    return total, int(rows[0][0]) if rows else 0


# Usage records merge by the rules of the Claude Code ingest (``claude._RANKED``), so merged
# machines count what one machine with all the logs would: the records of a file and the stored
# ones sharing a key or a message id compete; per reply (source + dedup_key) the first by
# ``COPY_RANK`` wins (most tokens, highest cost, ``speed``; a stored one on a tie); a sidechain
# copy of a message with a main-chain record never counts, sidechain copies of one message once.
# Other sources keep the stored record. Stored losers are replaced. A merged record's ``seq``
# counts on from the store's last for its source, in the export's order: another machine's
# numbers order nothing here (and a store numbered before migration 8 wrote ~2**55 a run).
_CLAUDE = "claude-code"  # claude.SOURCE (not imported: it pulls in the ingest)
_STAGE = """
CREATE OR REPLACE TEMP TABLE _mx AS
SELECT * EXCLUDE (seq), 0::BIGINT AS _n FROM usage_records LIMIT 0"""
_STAGE_ROWS = """
INSERT INTO _mx ({collist}, _n)
SELECT {values}, row_number() OVER (PARTITION BY x.source ORDER BY {order}, x.dedup_key)
FROM read_parquet('{path}') x"""
_TOTAL = " + ".join(  # a column an older export lacks is its default, 0
    f"coalesce({c}, 0)"
    for c in (
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_5m_tokens",
        "cache_write_1h_tokens",
    )
)
_WINNERS = f"""
CREATE OR REPLACE TEMP TABLE _mw AS
WITH r AS (
    SELECT NULL::UUID AS old, true AS is_new, _n AS seq, source, dedup_key, message_id,
           coalesce(is_sidechain, false) AS is_sidechain, {_TOTAL} AS total,
           coalesce(reported_cost_usd, computed_cost_usd, 0) AS cost, speed IS NOT NULL AS fast
    FROM _mx
    UNION ALL
    SELECT id, false, seq, source, dedup_key, message_id, coalesce(is_sidechain, false),
           {_TOTAL}, coalesce(reported_cost_usd, computed_cost_usd, 0), speed IS NOT NULL
    FROM usage_records
    WHERE source IN (SELECT source FROM _mx)
      AND (dedup_key IN (SELECT dedup_key FROM _mx) OR message_id IN (SELECT message_id FROM _mx))
), main AS (
    SELECT DISTINCT source, message_id FROM r WHERE NOT is_sidechain AND message_id IS NOT NULL
), k AS (
    SELECT r.*, source = '{_CLAUDE}' AS ranked, CASE
        WHEN source <> '{_CLAUDE}' OR message_id IS NULL THEN 'u:' || dedup_key
        WHEN is_sidechain AND EXISTS (
            SELECT 1 FROM main m WHERE m.source = r.source AND m.message_id = r.message_id
        ) THEN NULL
        WHEN is_sidechain THEN 'm:' || message_id
        ELSE 'r:' || dedup_key END AS gk
    FROM r
)
SELECT k.*, gk IS NOT NULL AND (is_new, seq, old) = arg_min(
    (is_new, seq, old),
    -- another source keeps its stored record: only is_new and seq decide
    CASE WHEN ranked THEN {COPY_RANK}
         ELSE (false, 0, false, 0.0, false, is_new, seq) END
) OVER (PARTITION BY source, gk) AS won
FROM k"""
_DELETE_LOSERS = (
    "DELETE FROM usage_records WHERE id IN (SELECT old FROM _mw WHERE NOT is_new AND NOT won)"
)
_INSERT_WINNERS = """
INSERT INTO usage_records ({collist}, seq)
SELECT {values}, coalesce(tops.top, 0) + row_number() OVER (PARTITION BY x.source ORDER BY x._n)
FROM _mx x
JOIN _mw w ON w.is_new AND w.won AND w.source = x.source AND w.seq = x._n
LEFT JOIN (SELECT source, max(seq) AS top FROM usage_records GROUP BY source) tops
    ON tops.source = x.source"""


def _merge_records(
    conn: duckdb.DuckDBPyConnection, path: Path, common: list[str], has_seq: bool
) -> tuple[int, int, int]:
    """Merge a usage_records file; (rows in it, rows inserted, stored rows replaced)."""
    collist = ", ".join(f'"{c}"' for c in common)
    values = ", ".join(f'x."{c}"' for c in common)
    conn.execute(_STAGE)
    conn.execute(
        _STAGE_ROWS.format(
            collist=collist,
            values=values,
            order="x.seq, x.ts" if has_seq else "x.ts",
            path=_literal(path),
        )
    )
    total, nulls = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE source IS NULL OR dedup_key IS NULL) FROM _mx"
    ).fetchall()[0]
    if nulls:
        raise SpecwrightError(
            f"{path}: cannot merge into usage_records (nothing was merged): {nulls} row(s) "
            "with no source or dedup_key"
        )
    if "session_id" in common:  # an older export keys Codex events without totals by file
        conn.execute(
            f"UPDATE _mx SET dedup_key = {CODEX_SESSION_KEY} WHERE {CODEX_HASH_KEYED} "
            f"AND dedup_key <> {CODEX_SESSION_KEY}"
        )
    if "execution_id" in common:  # another machine's executions are not here: link anew
        conn.execute(
            "UPDATE _mx SET execution_id = NULL "
            "WHERE execution_id NOT IN (SELECT id FROM executions)"
        )
    if "id" in common:  # a record's id is its reply's wherever it is merged: one of another
        # row of the file or of another stored reply is damage (a copy merged before, then
        # damaged, said "Duplicate key" and nothing else)
        (clash,) = conn.execute(
            "SELECT (count(id) - count(DISTINCT id)) + (SELECT count(*) FROM _mx x "
            "JOIN usage_records t ON t.id = x.id "
            "WHERE t.source <> x.source OR t.dedup_key <> x.dedup_key) FROM _mx"
        ).fetchall()[0]
        if clash:
            raise _unreadable(path, f"{clash:,} row(s) with the id of another reply")
    conn.execute(_WINNERS)
    deleted = conn.execute(_DELETE_LOSERS).fetchall()
    inserted = conn.execute(_INSERT_WINNERS.format(collist=collist, values=values)).fetchall()
    conn.execute("DROP TABLE _mx; DROP TABLE _mw")
    return int(total), int(inserted[0][0]), int(deleted[0][0])


def _refuse_non_finite(
    conn: duckdb.DuckDBPyConnection, path: Path, table: str, columns: list[str]
) -> None:
    """A cost or a rate that is NaN or infinite would turn every total it is summed into one:
    such a file is refused (nothing merged), naming the column."""
    if not columns:
        return
    counts = ", ".join(
        f'count(*) FILTER (WHERE NOT isfinite(try_cast("{c}" AS DOUBLE)))' for c in columns
    )
    row = conn.execute(f"SELECT {counts} FROM read_parquet('{_literal(path)}')").fetchall()[0]
    for column, bad in zip(columns, row, strict=True):
        if bad:
            raise SpecwrightError(
                f"{path}: {bad} row(s) with {column} NaN or infinite; expected finite numbers "
                f"(nothing was merged into {table})"
            )


# token counts a record may hold: an ingest reads a count outside [0, 2**53) as missing (no real
# reply is near; sums of such counts overflow BIGINT and fail every report from then on)
_COUNTS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
)
_COUNT_BELOW = 2**53


def _refuse_bad_counts(conn: duckdb.DuckDBPyConnection, path: Path, columns: list[str]) -> None:
    """A negative or absurd token count would make totals negative or overflow every report
    that sums it: such a file is refused (nothing merged), naming the column."""
    if not columns:
        return
    counts = ", ".join(
        f'count(*) FILTER (WHERE try_cast("{c}" AS HUGEINT) NOT BETWEEN 0 AND {_COUNT_BELOW - 1})'
        for c in columns
    )
    row = conn.execute(f"SELECT {counts} FROM read_parquet('{_literal(path)}')").fetchall()[0]
    for column, bad in zip(columns, row, strict=True):
        if bad:
            raise SpecwrightError(
                f"{path}: {bad} row(s) with {column} below 0 or above {_COUNT_BELOW - 1:,}; "
                "expected token counts (nothing was merged into usage_records)"
            )


def _rows(conn: duckdb.DuckDBPyConnection, path: Path) -> int:
    return int(
        conn.execute(f"SELECT count(*) FROM read_parquet('{_literal(path)}')").fetchall()[0][0]
    )


def _part(table: str) -> str:
    return {
        "usage_records": "source, dedup_key",
        "usage_snapshots": "id",
        "prices": "model, provider",
    }[table]
