"""Usage across machines: export the usage tables as Parquet, merge exports idempotently.

An export is a directory with ``usage_records.parquet``, ``usage_snapshots.parquet`` and
``prices.parquet`` plus ``manifest.json``. Merging inserts only rows not already present
(usage records by ``(source, dedup_key)``, snapshots by id, prices only for unknown models), so
merging the same export twice changes nothing.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from specwright.errors import SpecwrightError, first_line
from specwright.model import utcnow

if TYPE_CHECKING:
    import duckdb

    from specwright.store import Store

TABLES = ("usage_records", "usage_snapshots", "prices")
_KEYS = {
    "usage_records": "t.source = x.source AND t.dedup_key = x.dedup_key",
    "usage_snapshots": "t.id = x.id",
    "prices": "t.model = x.model AND t.provider = x.provider",
}


# the columns a file must have to be merged into each table (its keys)
_REQUIRED = {
    "usage_records": ("source", "dedup_key"),
    "usage_snapshots": ("id",),
    "prices": ("model", "provider"),
}
FORMAT = "specwright-usage-export"
VERSION = 1


@dataclass
class MergeResult:
    files: list[str] = field(default_factory=list)
    inserted: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def export(store: Store, target: Path) -> dict[str, int]:
    """Write the usage tables under directory ``target``; returns rows per table."""
    if target.exists() and not target.is_dir():
        raise SpecwrightError(f"{target}: exists and is not a directory; expected a directory")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpecwrightError(
            f"{target}: cannot create the export directory: {exc.strerror}"
        ) from None
    counts: dict[str, int] = {}
    with store.connect() as conn:
        for table in TABLES:
            path = target / f"{table}.parquet"
            conn.execute(f"COPY (SELECT * FROM {table}) TO '{_quote(path)}' (FORMAT parquet)")
            counts[table] = int(conn.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
    (target / "manifest.json").write_text(
        json.dumps(
            {
                "format": FORMAT,
                "version": VERSION,
                "host": socket.gethostname(),
                "exported_at": utcnow().isoformat(),
                "rows": counts,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    return counts


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")


def _manifest(directory: Path, warnings: list[str]) -> None:
    """Check an export directory's manifest.json, if it has one: another format is an error, a
    newer version a warning (its extra columns are left out)."""
    path = directory / "manifest.json"
    if not path.is_file():
        return
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


def _files(paths: list[Path], warnings: list[str]) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    for p in paths:
        if p.is_dir():
            _manifest(p, warnings)
            found = [(t, p / f"{t}.parquet") for t in TABLES if (p / f"{t}.parquet").exists()]
            if not found:
                raise SpecwrightError(f"{p}: no usage_*.parquet / prices.parquet files inside")
            out.extend(found)
        elif p.is_file():
            table = p.name.removesuffix(".parquet")
            if table not in TABLES:
                raise SpecwrightError(
                    f"{p}: expected one of {', '.join(t + '.parquet' for t in TABLES)} "
                    "or an export directory"
                )
            out.append((table, p))
        else:
            raise SpecwrightError(f"{p}: no such file or directory")
    return out


def merge(store: Store, paths: list[Path]) -> MergeResult:
    """Fold exports (directories or ``<table>.parquet`` files) into the store, idempotently."""
    import duckdb

    result = MergeResult()
    with store.transaction() as conn:
        for table, path in _files(paths, result.warnings):
            typed = conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = ? ORDER BY ordinal_position",
                [table],
            ).fetchall()
            cols = [r[0] for r in typed]
            try:
                have = {
                    r[0]
                    for r in conn.execute(
                        f"DESCRIBE SELECT * FROM read_parquet('{_quote(path)}')"
                    ).fetchall()
                }
            except duckdb.Error as exc:
                raise SpecwrightError(
                    f"{path}: not a readable Parquet file: {first_line(exc)}"
                ) from None
            missing = [c for c in _REQUIRED[table] if c not in have]
            if missing:
                raise SpecwrightError(
                    f"{path}: no column {', '.join(missing)}; expected a {table} file of "
                    "`specwright usage export`"
                )
            extra = sorted(have - set(cols))
            if extra:
                result.warnings.append(
                    f"{path}: column(s) this database does not have were left out: "
                    f"{', '.join(extra)}"
                )
            common = [
                c for c in cols if c in have and not (table == "usage_records" and c == "seq")
            ]
            collist = ", ".join(f'"{c}"' for c in common)
            values = ", ".join(f'x."{c}"' for c in common)
            numbered = ""
            if table == "usage_records":  # numbered after this store's own records (_SEQ)
                collist += ", seq"
                values += ", " + _SEQ.format(order="x.seq, x.ts" if "seq" in have else "x.ts")
                numbered = _TOPS
            _refuse_non_finite(
                conn, path, table, [c for c, t in typed if t == "DOUBLE" and c in have]
            )
            total = int(
                conn.execute(f"SELECT count(*) FROM read_parquet('{_quote(path)}')").fetchall()[0][
                    0
                ]
            )
            try:
                rows = conn.execute(
                    f"""INSERT INTO {table} ({collist})
                    SELECT {values}
                    FROM (SELECT * FROM read_parquet('{_quote(path)}')
                          QUALIFY row_number() OVER (PARTITION BY {_part(table)}) = 1) x{numbered}
                    WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE {_KEYS[table]})"""
                ).fetchall()
            except duckdb.Error as exc:  # a value of the wrong type, a NULL key
                raise SpecwrightError(
                    f"{path}: cannot merge into {table} (nothing was merged): {first_line(exc)}"
                ) from None
            n = int(rows[0][0]) if rows else 0
            result.files.append(str(path))
            result.inserted[table] = result.inserted.get(table, 0) + n
            result.skipped[table] = result.skipped.get(table, 0) + total - n
    return result


# A merged record's ``seq`` counts on from the store's last for its source, in the export's order:
# another machine's numbers order nothing here, and an export from a store that numbered lines
# by DuckDB's staging row ids (~2**55 a run, before migration 8) would push the next ingests'
# ``seq`` past BIGINT.
_SEQ = (
    "coalesce(tops.top, 0) + row_number() OVER (PARTITION BY x.source ORDER BY {order}, "
    "x.dedup_key)"
)
_TOPS = """
                LEFT JOIN (SELECT source, max(seq) AS top FROM usage_records GROUP BY source) tops
                    ON tops.source = x.source"""


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
    row = conn.execute(f"SELECT {counts} FROM read_parquet('{_quote(path)}')").fetchall()[0]
    for column, bad in zip(columns, row, strict=True):
        if bad:
            raise SpecwrightError(
                f"{path}: {bad} row(s) with {column} NaN or infinite; expected finite numbers "
                f"(nothing was merged into {table})"
            )


def _part(table: str) -> str:
    return {
        "usage_records": "source, dedup_key",
        "usage_snapshots": "id",
        "prices": "model, provider",
    }[table]
