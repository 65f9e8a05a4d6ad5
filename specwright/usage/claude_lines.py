"""A later Claude Code ingest with little new, in Python: its lines parsed, its winners picked.

A run that finds a few new lines (``claude.IN_MEMORY_BYTES``: the usual run, after a session or
two) spent most of its time in DuckDB's stage: ~30 ms to plan and run the flattening statement
over ~2 MB, where msgspec reads the ~1,100 usage lines of the same 2 MB into typed structs in
~1.4 ms. ``parse`` does that and gives the rows ``claude._SMALL_ROWS`` gives, with the columns
of the INSERT after them, or None when a line is not in the shape it can read exactly as
DuckDB's stage does; the run then stages through DuckDB as before. Exactly the same:

- a line msgspec reads is valid JSON for DuckDB too (msgspec is the stricter parser: no
  trailing commas, NaN or bare ``1e999``); a line it cannot read is asked of ``json_valid``, so a
  line is malformed (``bad``) exactly when DuckDB's reader says so;
- a usage line whose fields are not of the type the stage casts to (a number as text, a float
  token count, a count from 2**53 on, a boolean cost), whose timestamp is not ISO 8601 UTC with a
  ``Z`` (``try_cast`` reads more forms than this module mirrors), or that is kept without a
  message id (keyed by DuckDB's ``hash``) sends the run back to DuckDB;
- one difference is left: of a key written twice in one object DuckDB reads the first, msgspec
  (like ccusage's ``JSON.parse``) the last. No JSON writer of Claude Code repeats a key.

``pick`` is ``claude._RANKED``'s dedupe for those few rows (and the stored records they compete
with); ``insert`` stores the winners.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import msgspec

if TYPE_CHECKING:
    import duckdb

    from specwright.usage import files as F

# What DuckDB's reader does to a line before parsing it: it skips a UTF-8 BOM at the start of a
# file (each range it reads starts one), trims these bytes from both ends, skips a line left
# empty; a line that is not UTF-8 is malformed (here: a NUL, which no JSON parser accepts).
_BOM = b"\xef\xbb\xbf"
_SPACE = " \t\n\v\f\r"
_MALFORMED = "\x00"

# the shape ``claude._SHAPE`` casts to, as strict types: anything else raises. ``gc=False``: the
# structs hold no cycles, and ~1,800 tracked objects a run set off collections of the whole heap
# (a later run in the process of a first ingest: parse ~12 -> ~7 ms, the run ~64 -> ~45 ms)
_Count = Annotated[int, msgspec.Meta(ge=0, lt=2**53)]  # ``claude._count``


class _CacheCreation(msgspec.Struct, gc=False):
    ephemeral_5m_input_tokens: _Count | None = None
    ephemeral_1h_input_tokens: _Count | None = None


class _Usage(msgspec.Struct, gc=False):
    input_tokens: _Count | None = None
    output_tokens: _Count | None = None
    cache_creation_input_tokens: _Count | None = None
    cache_read_input_tokens: _Count | None = None
    speed: str | None = None
    cache_creation: _CacheCreation | None = None


class _Message(msgspec.Struct, gc=False):
    id: str | None = None
    model: str | None = None
    usage: _Usage | None = None


class _Entry(msgspec.Struct, gc=False):
    timestamp: str | None = None
    sessionId: str | None = None  # the log's own names
    cwd: str | None = None
    version: str | None = None
    requestId: str | None = None
    isSidechain: bool | None = None
    costUSD: float | None = None
    message: _Message | None = None


class _Data(msgspec.Struct, gc=False):
    message: _Entry | None = None


class _Line(_Entry):
    data: _Data | None = None  # an ``agent_progress`` line carries its entry here


class _Any(msgspec.Struct, gc=False):
    """Any JSON object: decoding one only validates it."""


_LINE = msgspec.json.Decoder(_Line)
_VALID = msgspec.json.Decoder(_Any)
_USAGE_MARK = '"usage":{'
_VERSION = re.compile(r"[0-9]+\.[0-9]+\.[0-9]")
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z", re.ASCII)


class Unreadable(Exception):
    """A line this module does not read exactly as DuckDB's stage does."""


def lines_of(ready: list[F.Planned]) -> list[tuple[str, list[str]]]:
    """Each range's lines (``Planned.data``) as DuckDB's reader would see them."""
    out: list[tuple[str, list[str]]] = []
    for p in ready:
        data = p.data or b""
        if data.startswith(_BOM):
            data = data[len(_BOM) :]
        try:
            lines = data.decode().split("\n")
        except UnicodeDecodeError:
            lines = [_decoded(raw) for raw in data.split(b"\n")]
        kept = [s for s in (line.strip(_SPACE) for line in lines) if s]
        if kept:
            out.append((p.path, kept))
    return out


def _decoded(raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return _MALFORMED


def parse(
    conn: duckdb.DuckDBPyConnection, files: list[tuple[str, list[str]]]
) -> list[tuple[Any, ...]] | None:
    """The staged rows of ``files`` (path, lines), in order, numbered from 0 like the stage's row
    ids: ``claude._SMALL_ROWS``'s columns, then request id, session id, project path, timestamp,
    speed. None when a line is ``Unreadable``."""
    read: list[tuple[str, _Line | None]] = []  # staged lines: (path, entry or None if malformed)
    doubtful: list[tuple[int, str, str]] = []  # (where in ``read``, path, line)
    for path, lines in files:
        for line in lines:
            # what msgspec cannot read (bad syntax, another shape, nesting deeper than it
            # recurses: RecursionError) is asked of DuckDB below
            if _USAGE_MARK in line:
                try:
                    read.append((path, _LINE.decode(line)))
                    continue
                except (msgspec.DecodeError, RecursionError):
                    pass
            else:
                try:
                    _VALID.decode(line)
                    continue
                except (msgspec.DecodeError, RecursionError):
                    pass
            if line[0] == "{" and line[-1] != "}":
                read.append((path, None))  # cut short (a crash mid-write): DuckDB says so too
                continue
            doubtful.append((len(read), path, line))
            read.append((path, None))
    if doubtful:  # DuckDB is more lenient than msgspec: ask it (rare: malformed lines)
        texts = [d[2] for d in doubtful]
        valid = conn.execute(  # one expression: an ordered aggregate cost ~1.5 ms more
            "SELECT [json_valid(x) FOR x IN ?::VARCHAR[]]", [texts]
        ).fetchall()[0][0]
        dropped: set[int] = set()
        for (at, _, line), ok in zip(doubtful, valid, strict=True):
            if ok and _USAGE_MARK in line:
                return None  # valid JSON that msgspec does not read: DuckDB's stage reads it
            if ok:
                dropped.add(at)  # a valid line without usage is not staged
        read = [r for i, r in enumerate(read) if i not in dropped]
    try:
        return [_row(i, path, entry) for i, (path, entry) in enumerate(read)]
    except Unreadable:
        return None


def _row(i: int, path: str, line: _Line | None) -> tuple[Any, ...]:
    """One staged row, as ``claude._STAGE`` computes it."""
    if line is None:  # malformed: counted, never kept
        return (i, path, True, False, None, None, False, None, False, None, None, 0, 0, 0, None,
                None, None, None, None, None)  # fmt: skip
    usage = line.message.usage if line.message else None
    direct = (
        line.timestamp is not None
        and usage is not None
        and usage.input_tokens is not None
        and usage.output_tokens is not None
    )
    if direct:
        entry: _Entry | None = line
        version, line_session = line.version, line.sessionId
    else:
        entry = line.data.message if line.data else None
        version = line_session = None
    msg = entry.message if entry else None
    usage = msg.usage if msg else None
    request_id = entry.requestId if entry else None
    ts = _timestamp(entry.timestamp) if entry else None
    input_tokens = usage.input_tokens if usage else None
    output_tokens = usage.output_tokens if usage else None
    message_id = msg.id if msg else None
    model = msg.model if msg else None
    keep = (
        ts is not None
        and input_tokens is not None
        and output_tokens is not None
        and (version is None or _VERSION.match(version) is not None)
        and line_session != ""
        and request_id != ""
        and message_id != ""
        and model != ""
    )
    if keep and message_id is None:
        raise Unreadable("a kept line without a message id is keyed by DuckDB's hash")
    speed = usage.speed if usage else None
    if usage is None:
        cache_read = write_5m = write_1h = 0
    else:
        cache_read = usage.cache_read_input_tokens or 0
        made = usage.cache_creation
        if made is not None:
            write_5m = made.ephemeral_5m_input_tokens or 0
            write_1h = made.ephemeral_1h_input_tokens or 0
        else:
            write_5m, write_1h = usage.cache_creation_input_tokens or 0, 0
    return (
        i,
        path,
        False,
        keep,
        message_id,
        None if message_id is None else f"{message_id}\x1f{request_id or ''}",
        bool(entry.isSidechain) if entry else False,
        model + "-fast" if model is not None and speed == "fast" else model,
        speed is not None,
        input_tokens,
        output_tokens,
        cache_read,
        write_5m,
        write_1h,
        entry.costUSD if entry else None,
        request_id,
        line.sessionId,
        line.cwd,
        ts,
        speed,
    )


# ``claude._INSERT_PICKED`` from parsed rows: their columns (``_ROW_COLUMNS``) as lists, untyped
# (DuckDB takes each list's type from its Python values: a cast to BIGINT[] cost ~0.3 ms a list;
# the INSERT casts each value to its column's type). Binding the lists is most of its cost
# (~0.25 us a value), so what SQL can derive is not bound: the dedup key (a winner always has a
# message id: ``_row``) and the order (``seq`` is numbered from ``i``; no ORDER BY, ~1 ms)
_INSERT_ROWS = """
INSERT INTO usage_records (id, source, dedup_key, message_id, request_id, session_id,
    project_path, file, model, ts, input_tokens, output_tokens, cache_read_tokens,
    cache_write_5m_tokens, cache_write_1h_tokens, reasoning_tokens, reported_cost_usd,
    computed_cost_usd, is_sidechain, speed, provider, seq, imported_at, host)
SELECT uuidv7(), $21, message_id || chr(31) || coalesce(request_id, ''), message_id,
    request_id, session_id, project_path, file, model, ts, input_tokens, output_tokens,
    cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens, 0, reported_cost_usd,
    computed, is_sidechain, speed, provider, $1 + i, (now() AT TIME ZONE 'UTC'), $2
FROM (SELECT unnest($3) AS i, unnest($4) AS file, unnest($5) AS message_id,
             unnest($6) AS is_sidechain, unnest($7) AS model,
             unnest($8) AS input_tokens, unnest($9) AS output_tokens,
             unnest($10) AS cache_read_tokens,
             unnest($11) AS cache_write_5m_tokens,
             unnest($12) AS cache_write_1h_tokens,
             unnest($13) AS reported_cost_usd, unnest($14) AS request_id,
             unnest($15) AS session_id, unnest($16) AS project_path,
             unnest($17) AS ts, unnest($18) AS speed,
             unnest($19) AS computed, unnest($20) AS provider)"""
# the columns of a parsed row for ``$3``..``$18``
_ROW_COLUMNS = (0, 1, 4, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19)


def counts(rows: list[tuple[Any, ...]]) -> dict[str, tuple[int, int]]:
    """path -> (usage lines, malformed lines) of staged rows (file, then bad, in columns 1, 2)."""
    out: dict[str, tuple[int, int]] = {}
    for row in rows:
        good, bad = out.get(row[1], (0, 0))
        out[row[1]] = (good, bad + 1) if row[2] else (good + 1, bad)
    return out


def insert(
    conn: duckdb.DuckDBPyConnection,
    source: str,
    host: str,
    first_seq: int,
    rows: list[tuple[Any, ...]],
    computed: list[float | None],
    providers: list[str | None],
) -> None:
    """Insert parsed ``rows`` (the winners, in order) as records of ``source``, row ``i``
    numbered ``first_seq + i``, with their computed costs and price providers."""
    if not rows:
        return
    columns = [list(c) for c in zip(*rows, strict=True)]
    conn.execute(
        _INSERT_ROWS,
        [first_seq, host, *(columns[c] for c in _ROW_COLUMNS), computed, providers, source],
    )


class Candidate(NamedTuple):
    """A new line or a stored record competing for its message (the columns ``claude._RANKED``
    uses)."""

    message_id: str | None
    dedup_key: str
    is_sidechain: bool
    total: int
    cost: float
    fast: bool
    is_new: bool
    seq: int  # a new line's staged row id; a stored record's seq
    ref: Any = None  # a stored record's id


def pick(candidates: list[Candidate]) -> list[Candidate]:
    """The winner of each group, as ``claude._RANKED`` picks them: a line without a message id is
    grouped by its hash; a sidechain copy of a message that has a non-sidechain line never wins;
    other sidechain lines are grouped by message id, the rest by message id + request id; the
    first by (non-sidechain, most tokens, NaN cost, highest cost, fast, stored, first seen)."""
    main = {c.message_id for c in candidates if not c.is_sidechain and c.message_id is not None}
    best: dict[str, tuple[tuple[Any, ...], Candidate]] = {}
    for c in candidates:
        if c.message_id is None:
            group = "u:" + c.dedup_key
        elif c.is_sidechain and c.message_id in main:
            continue
        elif c.is_sidechain:
            group = "m:" + c.message_id
        else:
            group = "r:" + c.dedup_key
        nan = math.isnan(c.cost)
        key = (
            c.is_sidechain,
            -c.total,
            not nan,
            0.0 if nan else -c.cost,
            not c.fast,
            c.is_new,
            c.seq,
        )
        held = best.get(group)
        if held is None or key < held[0]:
            best[group] = (key, c)
    return [c for _, c in best.values()]


def _timestamp(text: str | None) -> datetime | None:
    """``try_cast(text AS TIMESTAMPTZ) AT TIME ZONE 'UTC'`` for ISO 8601 in UTC with a ``Z``."""
    if text is None:
        return None
    if _TIMESTAMP.fullmatch(text) is None:
        raise Unreadable(f"timestamp {text[:40]!r}")
    try:
        return datetime.fromisoformat(text[:-1])  # 1 to 6 digits of a second: Python >= 3.11
    except ValueError as e:  # a day or an hour that does not exist
        raise Unreadable(f"timestamp {text[:40]!r}") from e
