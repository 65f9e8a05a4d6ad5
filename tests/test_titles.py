"""Titles of specs and chunks: messages name a chunk so that two of one title are told apart."""

from __future__ import annotations

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
