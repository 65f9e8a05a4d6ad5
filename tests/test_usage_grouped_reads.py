"""Small log files (and every new tail) are read by DuckDB from shared copies, each range after a
marker line: the stored records, their order and each file's counts must be what reading every
file on its own gives."""

from __future__ import annotations

import json
import shutil
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest

from specwright.store import Store
from specwright.usage import claude
from specwright.usage import files as F
from tests.support_usage import append_claude_lines, write_claude_corpus

_NO_ID = json.dumps(
    {
        "type": "assistant",
        "sessionId": "sess-x",
        "cwd": "/w",
        "timestamp": "2025-11-02T10:00:00.000Z",
        "message": {
            "model": "claude-haiku-4-5-20251001",
            "usage": {"input_tokens": 3, "output_tokens": 4},
        },
    },
    separators=(",", ":"),
)


_COPY = F._copy_range
_DISK_USAGE = shutil.disk_usage
_Usage = namedtuple("_Usage", "total used free")


def _corpus(root: Path) -> list[Path]:
    """A generated tree (sessions with subagent files, streaming copies, malformed lines) and files
    a copy could get wrong: a BOM, a last line without a newline, the same line without a
    message id in two files (keyed by file), a line shaped like a marker."""
    info = write_claude_corpus(root, sessions=6, turns=14, days=2, malformed_every=9)
    extra = root / "projects" / "-home-dev-extra"
    extra.mkdir()
    (extra / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + (_NO_ID + "\n").encode())
    (extra / "no-newline.jsonl").write_text(
        _NO_ID + "\n" + _NO_ID.replace('"input_tokens":3', '"input_tokens":5')
    )
    (extra / "marker.jsonl").write_text('{"specwright-range-0123456789abcdef":0}\n' + _NO_ID + "\n")
    return [*info.files, *sorted(extra.iterdir())]


def _ingest(
    store: Store,
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
    group_below: int,
    room: int | None = None,
) -> tuple[Any, ...]:
    copied: list[str] = []

    def counting(p: F.Planned, dst: int) -> int:
        copied.append(p.path)
        return _COPY(p, dst)

    monkeypatch.setattr(F, "_copy_range", counting)
    monkeypatch.setattr(claude, "GROUP_BELOW", group_below)
    free = (lambda _: _Usage(room * 8, room * 4, room * 4)) if room else _DISK_USAGE
    monkeypatch.setattr(F.shutil, "disk_usage", free)
    res = claude.ingest(store, [root / "projects"])
    records = store.query("SELECT * EXCLUDE (id, imported_at) FROM usage_records ORDER BY seq")
    states = store.query(
        'SELECT path, size, "offset", head_hash, lines, malformed FROM usage_ingest_files '
        "ORDER BY path"
    )
    counts = (res.lines, res.malformed, res.malformed_files, res.imported, res.duplicates)
    return counts, records, states, copied


def test_files_read_from_shared_copies_store_what_reading_each_file_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _corpus(tmp_path / "logs")
    sizes = sorted(f.stat().st_size for f in files)
    monkeypatch.setattr(claude, "IN_MEMORY_BYTES", 0)  # later runs through the reader too
    monkeypatch.setattr(F, "GROUP_BYTES", 8 << 10)  # several group files
    ways = {
        "each file": 0,  # whole files in place; a tail copied to a file of its own
        "mixed": sizes[len(sizes) // 2],  # big files in place between groups of small ones
        "all copied": sizes[-1] + 1,
        "little temp space": sizes[-1] + 1,  # copies while there is room, then in place
    }
    stores = {name: Store(tmp_path / name.replace(" ", "-") / "db.duckdb") for name in ways}
    for store in stores.values():
        store.migrate()

    room = sum(sizes) // 2  # a quarter of the free space: half the files fit

    def ingest_every_way() -> dict[str, tuple[Any, ...]]:
        return {
            name: _ingest(
                stores[name], tmp_path / "logs", monkeypatch, g, room if "space" in name else None
            )
            for name, g in ways.items()
        }

    first = ingest_every_way()
    assert first["each file"][3] == []
    assert 0 < len(first["mixed"][3]) < len(files)
    assert sorted(first["all copied"][3]) == sorted(str(f) for f in files)
    assert 0 < len(first["little temp space"][3]) < len(files)
    counts, records, states, _ = first["each file"]
    assert len(states) == len(files)
    assert counts[1] > 0 and counts[3] > 0  # malformed lines and records in the corpus
    assert {r[6] for r in records} <= {str(f) for f in files}  # no copy's path recorded
    hashed = [r for r in records if r[2] is None]
    assert len(hashed) == 4 and len({r[1] for r in hashed}) == 4  # 4 lines without id, 3 files
    for name in ("mixed", "all copied", "little temp space"):
        assert first[name][:3] == first["each file"][:3], name

    for i, path in enumerate(files[:5]):  # tails of some files: copied every way
        append_claude_lines(path, 3, seed=70 + i)
    later = ingest_every_way()
    assert sorted(later["each file"][3]) == sorted(str(f) for f in files[:5])
    assert later["each file"][0][3] == 15
    for name in ("mixed", "all copied", "little temp space"):
        assert later[name][:3] == later["each file"][:3], name
