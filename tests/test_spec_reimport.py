"""A spec file imported again is the spec it was, whatever version of Specwright made it."""

from __future__ import annotations

import json
from pathlib import Path

from specwright import catalog, fingerprints
from specwright.store import Store, resolve_db_path

HAND_WRITTEN = (
    "---\ntitle: レート制限を追加\n---\n\nAdd rate limits.\n\n## Chunk 1: 最初\n\nDo it.\n"
)


def test_a_spec_of_an_older_slug_is_updated_by_its_file_not_made_again(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Since slugs keep letters of every script, a hand-written file titled in Japanese makes
    the slug `レート制限を追加`; the spec an older version made of it (or of `spec new`) has
    `spec`. Importing the file again made a second spec of that title instead of updating it,
    with or without a record of the file's last import."""
    c = ("-C", str(tmp_path))
    store = Store(resolve_db_path(tmp_path))
    project = catalog.ensure_project(store, tmp_path)
    older = catalog.create_spec(store, project, "レート制限を追加", slug="spec")
    other = catalog.create_spec(store, project, "Other", slug="spec-2")  # not of that title
    path = tmp_path / "rate.md"
    path.write_text(HAND_WRITTEN, encoding="utf-8")
    first = cli(*c, "--json", "spec", "import", str(path))
    assert first.code == 0, first.err
    assert json.loads(first.out)["id"] == older.id
    assert "it updated spec 'spec'" in first.err  # no id in the file: said, as for a slug
    # imported once (its fingerprint kept), edited and imported again: still that spec
    path.write_text(HAND_WRITTEN.replace("Do it.", "Do it well."), encoding="utf-8")
    again = cli(*c, "--json", "spec", "import", str(path))
    assert again.code == 0 and json.loads(again.out)["id"] == older.id, again.err
    listed = json.loads(cli(*c, "--json", "spec", "list").out)
    assert sorted((s["slug"], s["id"]) for s in listed) == [
        ("spec", older.id),
        ("spec-2", other.id),
    ]
    [chunk] = catalog.list_chunks(store, older.id)
    assert chunk.prompt == "Do it well."
    assert fingerprints.spec_of(store, path) == older.id


def test_a_file_naming_a_slug_of_its_own_is_a_new_spec(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A `slug:` that no spec has is a new spec, as the refusal to import over a spec with
    runs advises, even from a file last imported as another spec."""
    c = ("-C", str(tmp_path))
    store = Store(resolve_db_path(tmp_path))
    older = catalog.create_spec(store, catalog.ensure_project(store, tmp_path), "レート制限を追加", slug="spec")  # fmt: skip
    path = tmp_path / "rate.md"
    path.write_text(HAND_WRITTEN, encoding="utf-8")
    assert json.loads(cli(*c, "--json", "spec", "import", str(path)).out)["id"] == older.id
    path.write_text(HAND_WRITTEN.replace("title:", "slug: rate\ntitle:"), encoding="utf-8")
    made = cli(*c, "--json", "spec", "import", str(path))
    assert made.code == 0 and json.loads(made.out)["id"] != older.id, made.err
    assert json.loads(made.out)["imported"] == "rate"


def test_a_title_of_no_letter_is_not_taken_for_another_such_spec(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A title of emoji or punctuation alone makes the slug `spec`: a hand-written file titled
    🎉 (or naming `slug: "..."`) was imported over the spec '!!!', whose slug is `spec` too,
    and replaced its text and chunks. It is that spec only when it has its title."""
    c = ("-C", str(tmp_path))
    store = Store(resolve_db_path(tmp_path))
    project = catalog.ensure_project(store, tmp_path)
    bangs = catalog.create_spec(store, project, "!!!", "Keep me.")
    catalog.add_chunk(store, bangs, "Keep this chunk")
    assert bangs.slug == "spec"
    party = tmp_path / "party.md"
    party.write_text("---\ntitle: 🎉\n---\n\nParty.\n", encoding="utf-8")
    dots = tmp_path / "dots.md"
    dots.write_text('---\ntitle: "..."\nslug: "..."\n---\n\nDots.\n', encoding="utf-8")
    made = [json.loads(cli(*c, "--json", "spec", "import", str(p)).out) for p in (party, dots)]
    assert [m["imported"] for m in made] == ["spec-2", "spec-3"]
    kept = catalog.get_spec(store, bangs.id)
    assert (kept.title, kept.body) == ("!!!", "Keep me.")
    assert [ch.title for ch in catalog.list_chunks(store, bangs.id)] == ["Keep this chunk"]
    # each file imported again is its own spec, found by its title
    party.write_text("---\ntitle: 🎉\n---\n\nParty on.\n", encoding="utf-8")
    again = json.loads(cli(*c, "--json", "spec", "import", str(party)).out)
    assert again["id"] == made[0]["id"]
    assert catalog.get_spec(store, again["id"]).body == "Party on."
    assert len(json.loads(cli(*c, "--json", "spec", "list").out)) == 3


def test_a_scratch_file_reused_for_the_next_spec_makes_a_new_one(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """One file written anew for each spec (no id, no slug): the next title is the next spec,
    not the last one's text replaced because that file was last imported as it."""
    c = ("-C", str(tmp_path))
    path = tmp_path / "new.md"
    path.write_text("---\ntitle: Login\n---\n\nLog in.\n", encoding="utf-8")
    first = json.loads(cli(*c, "--json", "spec", "import", str(path)).out)
    path.write_text("---\ntitle: ログアウト\n---\n\nLog out.\n", encoding="utf-8")
    second = json.loads(cli(*c, "--json", "spec", "import", str(path)).out)
    assert second["id"] != first["id"] and second["imported"] == "ログアウト"
    store = Store(resolve_db_path(tmp_path))
    assert catalog.get_spec(store, first["id"]).body == "Log in."


def test_an_import_that_renumbers_the_chunks_says_so(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Chunk 1 A depending on chunk 2 B: the import stored B as 1 and A as 2 without a word,
    so `run SPEC:1`, as the file numbers them, ran B."""
    c = ("-C", str(tmp_path))
    path = tmp_path / "order.md"
    path.write_text(
        "---\ntitle: Order\nchunks:\n- title: A\n  depends_on: [2]\n- title: B\n---\n\nBody.\n\n"
        "## Chunk 1: A\n\nDo A.\n\n## Chunk 2: B\n\nDo B.\n",
        encoding="utf-8",
    )
    done = cli(*c, "spec", "import", str(path))
    assert done.code == 0, done.err
    said = f"{path}: chunks renumbered to come after the chunks they depend on: "
    assert said + "1 'A' is now 2, 2 'B' is now 1" in done.err, done.err
    listed = json.loads(cli(*c, "--json", "chunk", "list", "order").out)
    assert [(ch["position"], ch["title"]) for ch in listed] == [(1, "B"), (2, "A")]
    cli(*c, "spec", "export", "order", "-o", str(path), "--force")
    again = cli(*c, "spec", "import", str(path))  # its own export: in order, nothing to say
    assert again.code == 0 and "renumbered" not in again.err, again.err
