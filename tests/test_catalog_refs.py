"""How a spec or chunk reference that finds nothing, or too much, is reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from specwright import catalog
from specwright.errors import NotFoundError
from specwright.store import Store


def test_a_missing_position_names_the_spec_and_how_many_chunks_it_has(
    store: Store, tmp_path: Path
) -> None:
    project = catalog.ensure_project(store, tmp_path)
    spec = catalog.create_spec(store, project, "The slug")
    with pytest.raises(NotFoundError) as empty:
        catalog.get_chunk(store, "the-slug:1")
    assert str(empty.value) == (
        "chunk 1 of spec 'the-slug': no such chunk "
        "(it has no chunks: see `specwright chunk list the-slug`)"
    )
    for title in ("A", "B", "C"):
        catalog.add_chunk(store, spec, title)
    with pytest.raises(NotFoundError) as nine:
        catalog.get_chunk(store, "the-slug:9")
    assert str(nine.value) == (
        "chunk 9 of spec 'the-slug': no such chunk (it has 3 chunks: see "
        "`specwright chunk list the-slug`)"
    )
    with pytest.raises(NotFoundError, match=r"^chunk 'zzzz' of spec 'the-slug': no such chunk"):
        catalog.get_chunk(store, "the-slug:zzzz")
    # `²` is a digit to str.isdigit but no number to int: it was a ValueError's traceback
    with pytest.raises(NotFoundError, match=r"^chunk '²' of spec 'the-slug': no such chunk"):
        catalog.get_chunk(store, "the-slug:²")
    # a position is never read as an id prefix: `0` starts every id, but names no position
    with pytest.raises(NotFoundError, match=r"^chunk 0 of spec 'the-slug': no such chunk"):
        catalog.get_chunk(store, "the-slug:0")


def test_a_short_id_prefix_is_ambiguous_or_too_short_not_missing(
    store: Store, tmp_path: Path
) -> None:
    spec = catalog.create_spec(store, catalog.ensure_project(store, tmp_path), "S")
    catalog.add_chunk(store, spec, "A", chunk_id="abc00000-0000-7000-8000-000000000001")
    catalog.add_chunk(store, spec, "B", chunk_id="abd00000-0000-7000-8000-000000000002")
    with pytest.raises(NotFoundError) as two:
        catalog.get_chunk(store, "ab")
    assert str(two.value) == "chunk 'ab': ambiguous, matches 2 chunks; use more of the id"
    with pytest.raises(NotFoundError) as one:
        catalog.get_chunk(store, "abc")
    assert str(one.value) == "chunk 'abc': too short an id prefix; use at least 4 characters"
    assert catalog.get_chunk(store, "abc0").title == "A"
    with pytest.raises(NotFoundError) as within:
        catalog.get_chunk(store, "s:ab")
    assert str(within.value) == "chunk 'ab': ambiguous, matches 2 chunks; use more of the id"
    with pytest.raises(NotFoundError, match=r"^chunk 'zz': no such chunk \(name one by spec"):
        catalog.get_chunk(store, "zz")


def test_a_slug_typed_in_another_case_or_normalization_finds_its_spec(
    tmp_path: Path,
    cli,  # type: ignore[no-untyped-def]
) -> None:
    """`spec show Café`, or `café` typed as NFD (e + a combining accent, as some keyboards and
    file names give it), said "no such spec" for the spec whose slug is `café`."""
    import json
    import unicodedata

    made = cli("-C", str(tmp_path), "--json", "spec", "new", "Café")
    assert made.code == 0, made.err
    assert json.loads(made.out)["slug"] == "café"
    for typed in ("Café", "CAFÉ", unicodedata.normalize("NFD", "café"), "ｃａｆé"):
        shown = cli("-C", str(tmp_path), "--json", "spec", "show", typed)
        assert shown.code == 0, (typed, shown.err)
        assert json.loads(shown.out)["slug"] == "café"
        assert cli("-C", str(tmp_path), "chunk", "list", typed).code == 0
    missing = cli("-C", str(tmp_path), "spec", "show", "caf")  # still exact: no fuzzy match
    assert missing.code == 2 and "spec 'caf': no such spec" in missing.err


def test_an_id_or_id_prefix_in_upper_case_finds_its_spec_and_chunk(store: Store) -> None:
    """Ids are lower-case hex; one pasted from a tool that shows them upper-case (or typed so)
    said "no such spec" for a spec that was there."""
    spec = catalog.create_spec(store, catalog.ensure_project(store, store.path.parent), "S")
    chunk = catalog.add_chunk(store, spec, "A")
    assert catalog.get_spec(store, spec.id.upper()).id == spec.id
    assert catalog.get_spec(store, spec.id[:13].upper()).id == spec.id
    assert catalog.get_chunk(store, chunk.id[:13].upper()).id == chunk.id
