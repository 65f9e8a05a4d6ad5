"""Titles of specs and chunks: messages name a chunk so that two of one title are told apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specwright import catalog
from specwright.errors import ValidationError
from specwright.store import Store

TWINS = """---
title: Twins
---

## Chunk 1: Add tests

### Depends on

- 2

## Chunk 2: Add tests

### Depends on

- 1
"""


def test_a_cycle_between_chunks_of_one_title_names_them_by_position(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Dependencies in a spec file may name chunks by position, so two chunks may share a
    title; a cycle between them read "'Add tests' -> 'Add tests' -> 'Add tests'"."""
    (tmp_path / "twins.md").write_text(TWINS)
    res = cli("-C", str(tmp_path), "spec", "import", str(tmp_path / "twins.md"))
    assert res.code == 2 and res.err.count("\n") == 1, res.err
    assert "dependency cycle: #1 'Add tests' -> #2 'Add tests' -> #1 'Add tests'" in res.err


def test_a_dependency_making_a_cycle_names_chunks_not_ids(store: Store, tmp_path: Path) -> None:
    spec = catalog.create_spec(store, catalog.ensure_project(store, tmp_path), "S")
    a = catalog.add_chunk(store, spec, "Add tests")
    b = catalog.add_chunk(store, spec, "Add tests", depends_on=[a.id])
    with pytest.raises(ValidationError) as info:
        catalog.add_dependency(store, a, b)
    assert str(info.value) == (
        "dependency would create a cycle: #1 'Add tests' -> #2 'Add tests' -> #1 'Add tests'"
    )


@pytest.mark.parametrize(
    ("title", "message"),
    [
        ("Add\tlogin", "title 'Add\\tlogin': a control character (U+0009) at character 4"),
        ("Add \x1b[2Jlogin", "a control character (U+001B) at character 5; expected printable"),
        ("Add \u202elogin", "a format character (U+202E) at character 5"),
        ("Add\u200blogin", "a format character (U+200B) at character 4"),  # shown as '?'
        ("x" * 201, "201 characters; expected at most 200"),
    ],
)
def test_spec_new_and_chunk_add_refuse_control_characters_and_long_titles(
    cli, tmp_path: Path, title: str, message: str
) -> None:  # type: ignore[no-untyped-def]
    """A tab or an escape was stored and shown as '?' ever after; a title had no length limit."""
    c = ("-C", str(tmp_path))
    res = cli(*c, "spec", "new", title)
    assert res.code == 2 and res.err.count("\n") == 1 and "spec title" in res.err, res.err
    assert message in res.err
    assert cli(*c, "spec", "new", "S" * 200).code == 0  # the limit itself is fine
    res = cli(*c, "chunk", "add", "s" * 48, title)  # the slug is cut at 48
    assert res.code == 2 and res.err.count("\n") == 1 and "chunk title" in res.err, res.err
    assert message in res.err
    listed = cli(*c, "--json", "spec", "list")
    assert [s["title"] for s in json.loads(listed.out)] == ["S" * 200]
    assert cli(*c, "--json", "chunk", "list", "s" * 48).out.strip() == "[]"


@pytest.mark.parametrize(
    ("front", "heading", "line", "message"),
    [
        ("Twi\\tns", "Add tests", 2, "title 'Twi\\tns': a control character (U+0009)"),
        ("Twins", "Add\x1b[31m tests", 6, "chunk title 'Add\\x1b[31m tests': a control"),
        ("Twins", "A" * 250, 6, "chunk title 'AAA"),
    ],
)
def test_spec_import_refuses_bad_titles_naming_the_line(
    cli, tmp_path: Path, front: str, heading: str, line: int, message: str
) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.md"
    path.write_text(f'---\ntitle: "{front}"\n---\n\n## Chunk 1: Ok\n## Chunk 2: {heading}\n')
    res = cli("-C", str(tmp_path), "spec", "import", str(path))
    assert res.code == 2 and res.err.count("\n") == 1, res.err
    assert f"{path}:{line}: {message}" in res.err
    assert cli("-C", str(tmp_path), "--json", "spec", "list").out.strip() == "[]"
