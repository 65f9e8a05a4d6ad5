"""A later Claude Code ingest with few new lines reads them in Python (``claude_lines``): the rows
must be DuckDB's stage's rows, line for line, or the run goes through DuckDB."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from specwright.store import Store
from specwright.usage import claude, claude_lines

_MISSING = object()

# values of the shape ``claude._SHAPE`` casts to, and values DuckDB casts or rejects
_COUNTS = st.one_of(
    st.integers(0, 10**7),
    st.sampled_from([0, None, _MISSING, -1, 2**53 - 1, 2**53, 2**62, 2**63, 2**64, 12.0, 2.5]),
    st.sampled_from(["12", True]),
)
_PLAIN_COUNTS = st.one_of(st.integers(0, 10**7), st.sampled_from([0, None, _MISSING]))
_TIMESTAMPS = st.sampled_from(
    [
        "2025-11-03T10:00:00.000Z",
        "2025-11-03T23:59:59Z",
        "2025-11-03T10:00:00.5Z",
        "2025-11-03T10:00:00.123456Z",
        None,
        _MISSING,
    ]
)
_ODD_TIMESTAMPS = st.sampled_from(
    [
        "2025-11-03 10:00:00",
        "2025-11-03T12:00:00+02:00",
        "2025-11-03T10:00:00.1234567Z",
        "2025-02-30T10:00:00Z",
        "yesterday",
        "",
        1762164000,
    ]
)
_TEXT = st.one_of(st.sampled_from(["a", "b", "", None, _MISSING]), st.text(max_size=4))
_IDS = st.sampled_from(["m1", "m2", "m3", "", None, _MISSING])
_VERSIONS = st.sampled_from(["2.0.50", "1.0.3-beta", "2.0", "x.1.2", "", None, _MISSING, 2])
_BOOLS = st.sampled_from([True, False, None, _MISSING])
_COSTS = st.one_of(
    st.floats(0, 100, allow_nan=False), st.integers(0, 5), st.sampled_from([None, _MISSING])
)


def _obj(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not _MISSING}


@st.composite
def _usage(draw: st.DrawFn, plain: bool) -> dict[str, Any]:
    counts = _PLAIN_COUNTS if plain else _COUNTS
    made = draw(
        st.one_of(
            st.just(_MISSING),
            st.just(None),
            st.builds(lambda a, b: _obj(ephemeral_5m_input_tokens=a, ephemeral_1h_input_tokens=b),
                      counts, counts),
        )
    )  # fmt: skip
    return _obj(
        input_tokens=draw(counts),
        output_tokens=draw(counts),
        cache_creation_input_tokens=draw(counts),
        cache_read_input_tokens=draw(counts),
        speed=draw(st.sampled_from(["fast", "standard", None, _MISSING])),
        cache_creation=made,
        service_tier="standard",
    )


@st.composite
def _entry(draw: st.DrawFn, plain: bool) -> dict[str, Any]:
    message = draw(
        st.one_of(
            st.just(_MISSING),
            st.builds(
                lambda i, m, u: _obj(id=i, model=m, usage=u, content=[{"type": "text"}]),
                st.sampled_from(["m1", "m2", "m3"]) if plain else _IDS,
                st.sampled_from(["claude-sonnet-4-5", "claude-haiku-4-5", "", None, _MISSING]),
                _usage(plain),
            ),
        )
    )
    timestamps = _TIMESTAMPS if plain else st.one_of(_TIMESTAMPS, _ODD_TIMESTAMPS)
    return _obj(
        type="assistant",
        timestamp=draw(timestamps),
        sessionId=draw(_TEXT),
        cwd=draw(_TEXT),
        version=draw(_VERSIONS if not plain else st.sampled_from(["2.0.50", "2.0", None])),
        requestId=draw(_IDS),
        isSidechain=draw(_BOOLS if plain else st.one_of(_BOOLS, st.sampled_from(["true", 1]))),
        costUSD=draw(_COSTS if plain else st.one_of(_COSTS, st.sampled_from(["0.5", True]))),
        message=message,
    )


@st.composite
def _line(draw: st.DrawFn, plain: bool) -> str:
    kind = draw(st.sampled_from(["entry", "entry", "progress", "user", "cut", "odd"]))
    if kind == "user":  # no usage: only its validity counts
        return draw(st.sampled_from(['{"type":"user","message":{"content":"hi"}}', "[1,2,]", "{"]))
    entry = draw(_entry(plain))
    if kind == "progress":  # an agent_progress line carries an entry under data.message
        entry = _obj(type="progress", sessionId=draw(_TEXT), cwd="/w", data={"message": entry})
    text = json.dumps(entry, separators=(",", ":"))
    if kind == "cut":
        return text[: draw(st.integers(1, max(1, len(text) - 1)))]
    if kind == "odd" and not plain:  # valid for DuckDB's parser, not for a strict one
        deep = text[:-1] + ',"x":' + "[" * 3000 + "]" * 3000 + "}"  # past msgspec's recursion
        return draw(st.sampled_from([text[:-1] + ",}", text.replace(":0,", ":NaN,", 1), deep]))
    return text


def _duckdb_rows(files: list[tuple[str, list[str]]]) -> list[tuple[Any, ...]]:
    """DuckDB's stage over the same lines (the in-memory SQL path), as ``parse`` gives them."""
    conn = duckdb.connect()
    sql = claude._STAGE.format(shape=claude._SHAPE, lines=claude._READ_LINES, mark="NULL")
    conn.execute(sql, [[f for f, _ in files], ["\n".join(lines) for _, lines in files]])
    rows = conn.execute(
        "SELECT rowid - min(rowid) OVER (), file, bad, keep, message_id, dedup_key, is_sidechain, "
        "model, speed IS NOT NULL, input_tokens, output_tokens, cache_read_tokens, "
        "cache_write_5m_tokens, cache_write_1h_tokens, reported_cost_usd, request_id, session_id, "
        "project_path, ts, speed FROM _cl_new ORDER BY rowid"
    ).fetchall()
    conn.close()
    return rows


def _comparable(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    # a line that is not kept has a key nobody reads (DuckDB hashes it when it has no message id)
    return [(*r[:5], r[5] if r[3] else None, *r[6:]) for r in rows]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_line(plain=False), min_size=1, max_size=8), st.integers(0, 8))
def test_parsed_rows_are_duckdbs_or_none(lines: list[str], cut: int) -> None:
    files = [("/a.jsonl", lines[:cut]), ("/b.jsonl", lines[cut:])]
    files = [(f, ls) for f, ls in files if ls]
    expected = _duckdb_rows(files)  # never raises: every line is counted or skipped
    conn = duckdb.connect()
    parsed = claude_lines.parse(conn, files)
    event("read in Python" if parsed is not None else "sent to DuckDB")
    if parsed is not None:
        assert _comparable(parsed) == _comparable(expected)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_line(plain=True), min_size=1, max_size=8))
def test_lines_of_the_shape_claude_code_writes_are_read_in_python(lines: list[str]) -> None:
    files = [("/a.jsonl", lines)]
    parsed = claude_lines.parse(duckdb.connect(), files)
    assert parsed is not None
    assert _comparable(parsed) == _comparable(_duckdb_rows(files))


@pytest.mark.parametrize(
    "line",
    [
        '{"timestamp":"2025-11-03T10:00:00Z","message":{"usage":{"input_tokens":1,"output_tokens":2}}}',
        '{"timestamp":"2025-11-03T10:00:00Z","message":{"id":"m","usage":{"input_tokens":"1","output_tokens":2}}}',
        '{"timestamp":"2025-11-03T10:00:00Z","message":{"id":"m","usage":{"input_tokens":1.0,"output_tokens":2}}}',
        '{"timestamp":"2025-11-03T10:00:00+01:00","message":{"id":"m","usage":{"input_tokens":1,"output_tokens":2}}}',
        '{"timestamp":"2025-11-03T10:00:00Z","message":{"id":"m","usage":{"input_tokens":1,"output_tokens":2,}}}',
        '{"timestamp":"2025-11-03T10:00:00Z","costUSD":NaN,"message":{"id":"m","usage":{"input_tokens":1,"output_tokens":2}}}',
        '["an array",{"usage":{"input_tokens":1,"output_tokens":2}}]',
        '{"timestamp":"2025-11-03T10:00:00Z","message":{"id":"m","usage":{"input_tokens":1,"output_tokens":2}},"x":' + "[" * 3000 + "]" * 3000 + "}",
    ],
    ids=["no message id", "count as text", "count as float", "offset", "trailing comma", "NaN", "array", "deep"],
)  # fmt: skip
def test_a_line_python_would_read_differently_sends_the_run_to_duckdb(line: str) -> None:
    plain = '{"timestamp":"2025-11-03T10:00:00Z","message":{"id":"m0","usage":{"input_tokens":1,"output_tokens":2}}}'  # fmt: skip
    deep = '{"type":"user","x":' + "[" * 3000 + "]" * 3000 + "}"  # valid, not staged
    conn = duckdb.connect()
    rows = claude_lines.parse(conn, [("/a.jsonl", [plain, "{", deep])])
    assert rows is not None and [r[2] for r in rows] == [False, True]
    assert claude_lines.parse(conn, [("/a.jsonl", [plain, "{", line])]) is None


@pytest.mark.parametrize("later", [False, True], ids=["first run", "later run"])
def test_an_absurd_token_count_is_not_counted_and_does_not_stop_the_ingest(
    tmp_path: Path, later: bool
) -> None:
    """Counts from 2**53 on read as missing: one beyond BIGINT failed the cast, two of 2**62 the
    sum of a record's tokens, and every later ingest with them."""
    log = tmp_path / "projects" / "p" / "s.jsonl"
    log.parent.mkdir(parents=True)
    head = (
        '{"timestamp":"2025-11-03T10:00:00Z","requestId":"r","message":{"model":"claude-haiku-4-5",'
    )
    lines = [
        head + '"id":"m0","usage":{"input_tokens":1,"output_tokens":1}}}',
        head + f'"id":"m1","usage":{{"input_tokens":{2**63},"output_tokens":2}}}}}}',
        head + f'"id":"m2","usage":{{"input_tokens":{2**62},"output_tokens":{2**62}}}}}}}',
        head + f'"id":"m3","usage":{{"input_tokens":1,"output_tokens":2,"cache_read_input_tokens":{2**64 - 1}}}}}}}',
        head + f'"id":"m4","usage":{{"input_tokens":{2**53 - 1},"output_tokens":2}}}}}}',
    ]  # fmt: skip
    log.write_text("\n".join(lines[:1] if later else lines) + "\n")
    store = Store(tmp_path / "db.duckdb")
    store.migrate()
    claude.ingest(store, [tmp_path / "projects"])
    if later:  # a later run with few new lines: read in Python, or by DuckDB when it must
        with log.open("a") as fh:
            fh.write("\n".join(lines[1:]) + "\n")
        claude.ingest(store, [tmp_path / "projects"])
    assert store.query(
        "SELECT message_id, input_tokens, output_tokens, cache_read_tokens FROM usage_records "
        "ORDER BY seq"
    ) == [("m0", 1, 1, 0), ("m3", 1, 2, 0), ("m4", 2**53 - 1, 2, 0)]
    assert store.query("SELECT sum(lines), sum(malformed) FROM usage_ingest_files") == [(5, 0)]


def test_a_later_run_with_no_usage_line_imports_nothing_and_moves_on(tmp_path: Path) -> None:
    log = tmp_path / "projects" / "p" / "s.jsonl"
    log.parent.mkdir(parents=True)
    line = '{"timestamp":"2025-11-03T10:00:00Z","message":{"id":"m1","model":"claude-haiku-4-5","usage":{"input_tokens":1,"output_tokens":2}}}\n'  # fmt: skip
    log.write_text(line)
    store = Store(tmp_path / "db.duckdb")
    store.migrate()
    assert claude.ingest(store, [tmp_path / "projects"]).imported == 1
    with log.open("a") as fh:
        fh.write('{"type":"user","message":{"content":"hi"}}\n[1,\n')
    res = claude.ingest(store, [tmp_path / "projects"])
    assert (res.files_read, res.lines, res.malformed, res.imported) == (1, 0, 1, 0)
    assert store.query('SELECT lines, malformed, "offset" FROM usage_ingest_files') == [
        (1, 1, log.stat().st_size)
    ]


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, released store to copy: migrating one per example would cost most of it."""
    path = tmp_path_factory.mktemp("template") / "db.duckdb"
    store = Store(path)
    store.migrate()
    store.release()
    return path


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(_line(plain=False), max_size=6),
    st.lists(_line(plain=False), min_size=1, max_size=6),
)
def test_any_lines_ingest_and_reingest_without_error(
    tmp_path: Path, migrated: Path, first: list[str], later: list[str]
) -> None:
    """Whatever the lines hold, a first run and a later one (read in Python or by DuckDB) finish,
    count every line they stage and import no more records than lines."""
    import shutil
    import uuid

    work = tmp_path / uuid.uuid4().hex
    log = work / "projects" / "p" / "s.jsonl"
    log.parent.mkdir(parents=True)
    shutil.copy(migrated, work / "db.duckdb")
    store = Store(work / "db.duckdb")
    log.write_text("".join(line + "\n" for line in first))
    runs = [claude.ingest(store, [work / "projects"])]
    with log.open("a") as fh:
        fh.write("".join(line + "\n" for line in later))
    runs.append(claude.ingest(store, [work / "projects"]))
    stored = store.query("SELECT count(*) FROM usage_records")[0][0]
    assert stored <= sum(r.lines for r in runs)
    assert store.query('SELECT lines + malformed, "offset" FROM usage_ingest_files') == [
        (sum(r.lines + r.malformed for r in runs), log.stat().st_size)
    ]
    store.release()


def test_a_long_ingest_says_what_it_is_doing_at_a_terminal_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`specwright ingest claude-logs` run by a person: a line before each step of an ingest with
    ``PROGRESS_BYTES`` to read, on stderr; none for a script, none for a small run."""
    import io
    import sys

    from specwright.cli import main
    from specwright.usage import common
    from tests.support_usage import write_claude_corpus

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    write_claude_corpus(tmp_path / "logs", sessions=2, turns=20, days=1)
    monkeypatch.setenv("SPECWRIGHT_DB", str(tmp_path / "db.duckdb"))
    monkeypatch.setattr(common, "PROGRESS_BYTES", 1000)
    logs = str(tmp_path / "logs" / "projects")
    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    assert main(["ingest", "claude-logs", "--json", logs]) == 0
    said = [line for line in err.getvalue().splitlines() if "malformed" not in line]
    assert [line.split()[1] for line in said] == ["reading", "read", "imported"]
    assert said[0].startswith("specwright: reading ") and " in 4 of 4 files" in said[0]

    piped = io.StringIO()  # a script: no progress, whatever the size
    monkeypatch.setattr(sys, "stderr", piped)
    more = tmp_path / "logs" / "projects" / "p" / "more.jsonl"
    more.parent.mkdir()
    with more.open("w") as fh:
        fh.write(_plain_line("more") * 40)
    assert main(["ingest", "claude-logs", "--json", logs]) == 0
    assert "reading" not in piped.getvalue()

    monkeypatch.setattr(common, "PROGRESS_BYTES", 100_000_000)  # a small run at a terminal: none
    monkeypatch.setattr(sys, "stderr", err := Terminal())
    with more.open("a") as fh:
        fh.write(_plain_line("again"))
    assert main(["ingest", "claude-logs", "--json", logs]) == 0
    assert "reading" not in err.getvalue()


def _plain_line(mid: str) -> str:
    return (
        '{"timestamp":"2025-11-03T10:00:00Z","requestId":"r","message":{"model":"claude-haiku-4-5",'
        f'"id":"{mid}","usage":{{"input_tokens":1,"output_tokens":2}}}}}}\n'
    )
