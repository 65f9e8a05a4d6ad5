"""Specs as files: exact round trips (hypothesis), hand-written files, errors naming the line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specwright import drafts, specfile
from specwright.catalog import create_spec, ensure_project, get_spec, list_chunks
from specwright.drafts import ChunkDraft, replace_chunks
from specwright.errors import ValidationError
from specwright.model import Chunk, Spec, new_id
from specwright.specfile import MAX_FILE_BYTES, SpecFileError
from specwright.store import Store
from specwright.titles import hidden

# --- strategies -------------------------------------------------------------------------------

_CHARS = st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\x85")
_LINE = st.text(_CHARS, max_size=30)
# multi-line text, with lines that look like the file's own structure mixed in
_TRICKY = st.sampled_from(
    ["## Chunk 1: x", "\\## Chunk", "### Acceptance", "### files", "---", "- item", "  ", "", "\\"]
)
_TEXT = st.lists(st.one_of(_LINE, _TRICKY), max_size=8).map("\n".join)
_TITLE = _LINE.map(str.strip).filter(lambda t: bool(t) and not any(map(hidden, t)))
_ITEM = st.lists(st.one_of(_LINE, _TRICKY), min_size=1, max_size=3).map("\n".join).map(str.strip)


@st.composite
def specs(draw: st.DrawFn) -> tuple[Spec, list[Chunk]]:
    spec = Spec(
        id=new_id(),
        project_id="p",
        slug="s",
        title=draw(_TITLE),
        body=draw(_TEXT),
        status=draw(st.sampled_from(specfile.SPEC_STATUSES)),
        intent=draw(_TEXT),
        budget_usd=draw(st.none() | st.floats(0, 1000, allow_nan=False)),
    )
    n = draw(st.integers(0, 6))
    ids = [new_id() for _ in range(n)]
    chunks = []
    for i in range(n):
        deps = draw(st.lists(st.sampled_from(ids[:i]), unique=True)) if i else []
        chunks.append(
            Chunk(
                id=ids[i],
                spec_id=spec.id,
                position=i + 1,
                title=draw(_TITLE),
                prompt=draw(_TEXT),
                acceptance=tuple(a for a in draw(st.lists(_ITEM, max_size=4)) if a),
                files=tuple(f for f in draw(st.lists(_LINE.map(str.strip), max_size=3)) if f),
                depends_on=tuple(sorted(deps, key=ids.index)),
                budget_usd=draw(st.none() | st.floats(0, 50, allow_nan=False)),
            )
        )
    return spec, chunks


def _same(a: Spec, a_chunks: list[Chunk], b: Spec, b_chunks: list[Chunk]) -> None:
    for f in ("id", "title", "body", "status", "intent", "budget_usd"):
        assert getattr(a, f) == getattr(b, f), f
    assert len(a_chunks) == len(b_chunks)
    for x, y in zip(a_chunks, b_chunks, strict=True):
        for f in ("id", "title", "prompt", "acceptance", "files", "depends_on", "budget_usd"):
            assert getattr(x, f) == getattr(y, f), f


# --- round trips ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(specs())
def test_render_parse_round_trip(case: tuple[Spec, list[Chunk]]) -> None:
    spec, chunks = case
    text = specfile.render(spec, chunks)
    parsed = specfile.parse(text)
    drafts = specfile.resolve_drafts(parsed)
    back = Spec(
        id=parsed.id or "",
        project_id="p",
        slug=parsed.slug or "",
        title=parsed.title,
        body=parsed.body,
        status=parsed.status,
        intent=parsed.intent,
        budget_usd=parsed.budget_usd,
    )
    back_chunks = [
        Chunk(
            d.id,
            spec.id,
            i,
            d.title,
            d.prompt,
            tuple(d.acceptance),
            tuple(d.files),
            tuple(d.depends_on),
            budget_usd=d.budget_usd,
        )
        for i, d in enumerate(drafts, 1)
    ]
    _same(spec, chunks, back, back_chunks)
    assert specfile.render(back, back_chunks) == text


def test_store_export_import_round_trip(tmp_path: Path) -> None:
    """Generated spec -> store A -> file -> store B -> file: same spec, same text."""
    a, b = Store(tmp_path / "a.duckdb"), Store(tmp_path / "b.duckdb")
    a.migrate()
    b.migrate()
    proj_a, proj_b = ensure_project(a, tmp_path / "pa"), ensure_project(b, tmp_path / "pb")

    @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(specs())
    def check(case: tuple[Spec, list[Chunk]]) -> None:
        spec, chunks = case
        with a.connect(), b.connect():  # one connection each per example: faster
            compare(spec, chunks)

    def compare(spec: Spec, chunks: list[Chunk]) -> None:
        stored = create_spec(
            a,
            proj_a,
            spec.title,
            spec.body,
            slug=new_id(),
            intent=spec.intent,
            status=spec.status,
            budget_usd=spec.budget_usd,
            spec_id=spec.id,
        )
        replace_chunks(a, stored.id, drafts.drafts_of(chunks))
        path = specfile.export_spec(a, stored, tmp_path / "out" / f"{stored.slug}.md")
        text = path.read_text(encoding="utf-8")
        imported = specfile.import_spec(b, proj_b, path)
        _same(stored, list_chunks(a, stored.id), imported, list_chunks(b, imported.id))
        again = specfile.export_spec(b, imported, tmp_path / "again.md")
        assert again.read_bytes() == path.read_bytes()
        assert text.startswith("---\n")

    check()


# --- hand-written files -----------------------------------------------------------------------

HAND = """---
title: Add login
chunks:
- title: Session model
- title: Login endpoint
  depends_on: [Session model]
- Logout
---

Users log in with a password.

## Chunk 1: Session model

Create `Session`.

### Acceptance

- sessions expire after 24 h
- tested

### Files

- app/session.py

## Chunk 2: Login endpoint
POST /login.

## Chunk 3: Logout

### Depends on

- 2
- session model
"""


def test_hand_written_file_gets_ids_and_resolved_deps(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "login.md"
    path.write_text(HAND)
    project = ensure_project(store, tmp_path)
    spec = specfile.import_spec(store, project, path)
    assert (spec.title, spec.slug, spec.status) == ("Add login", "add-login", "draft")
    assert spec.body == "Users log in with a password."
    c1, c2, c3 = list_chunks(store, spec.id)
    assert c1.acceptance == ("sessions expire after 24 h", "tested")
    assert c1.files == ("app/session.py",) and c1.prompt == "Create `Session`."
    assert c2.prompt == "POST /login." and c2.depends_on == (c1.id,)
    assert c3.prompt == "" and set(c3.depends_on) == {c1.id, c2.id}
    # export then import again: same ids, the file is now stable
    out = specfile.export_spec(store, spec, specfile.default_path(tmp_path, spec))
    assert out == tmp_path / ".handoff" / "specs" / "add-login.md"
    text = out.read_text()
    assert f"id: {c1.id}" in text
    again = specfile.import_spec(store, project, out)
    assert again.id == spec.id and [c.id for c in list_chunks(store, spec.id)] == [
        c1.id,
        c2.id,
        c3.id,
    ]
    assert specfile.render(again, list_chunks(store, spec.id)) == text


def test_reimport_updates_and_removes_chunks(store: Store, tmp_path: Path) -> None:
    project = ensure_project(store, tmp_path)
    path = tmp_path / "login.md"
    path.write_text(HAND)
    spec = specfile.import_spec(store, project, path)
    c1, c2, c3 = list_chunks(store, spec.id)
    text = specfile.render(spec, [c1, c2, c3])
    # drop chunk 3 from the file, edit chunk 1's prompt
    head, _, _ = text.partition("\n## Chunk 3")
    head = head.replace(
        f"- id: {c3.id}\n  title: Logout\n  depends_on:\n  - {c1.id}\n  - {c2.id}\n", ""
    )
    path.write_text(head.replace("Create `Session`.", "Create `Session` and `Token`.") + "\n")
    specfile.import_spec(store, project, path)
    after = list_chunks(store, spec.id)
    assert [c.id for c in after] == [c1.id, c2.id]
    assert after[0].prompt == "Create `Session` and `Token`."
    assert store.query("SELECT count(*) FROM chunk_deps WHERE chunk_id = ?", [c3.id])[0][0] == 0


def test_reimport_refuses_to_delete_a_chunk_with_runs(store: Store, tmp_path: Path) -> None:
    from specwright.model import utcnow

    project = ensure_project(store, tmp_path)
    path = tmp_path / "login.md"
    path.write_text(HAND)
    spec = specfile.import_spec(store, project, path)
    c3 = list_chunks(store, spec.id)[2]
    store.insert(
        "runs",
        {
            "id": new_id(),
            "spec_id": spec.id,
            "chunk_id": c3.id,
            "kind": "chunk",
            "status": "shipped",
            "started_at": utcnow(),
        },
    )
    with pytest.raises(Exception, match="'Logout' has runs"):
        replace_chunks(store, spec.id, drafts.drafts_of(list_chunks(store, spec.id))[:2])
    assert len(list_chunks(store, spec.id)) == 3

    # the same refusal from a re-import: nothing of the file is taken, not even its title
    before = get_spec(store, spec.id)
    chunks = list_chunks(store, spec.id)
    edited = Spec(**{**before.__dict__, "title": "Renamed", "body": "NEW BODY", "status": "done"})
    path.write_text(specfile.render(edited, chunks[:2]))
    with pytest.raises(SpecFileError, match=f"^{path}: chunk 'Logout' has runs"):
        specfile.import_spec(store, project, path)
    assert get_spec(store, spec.id) == before
    assert len(list_chunks(store, spec.id)) == 3


BAD = [
    ("title: x\n", 1, "expected front matter"),
    ("---\ntitle: x\n", 1, "not closed"),
    ("---\ntitle: x\nstatus: [\n---\n", 3, "invalid YAML"),
    ("---\ntitle: x\ncolour: red\n---\n", 3, "unknown key 'colour'"),
    ("---\ntitle: x\nstatus: great\n---\n", 3, "status: expected one of"),
    ("---\nstatus: draft\n---\n", 2, "title: expected a non-empty string"),
    ("---\ntitle: x\n---\n\n## Chunk 1:\n", 5, "expected '## Chunk N: Title'"),
    (
        "---\ntitle: x\n---\n## Chunk 1: a\n### Files\n\n- a.py\nstray text\n",
        8,
        "expected a '- ' bullet",
    ),
    (
        "---\ntitle: x\nchunks: [a, b]\n---\n## Chunk 1: a\n",
        3,
        "lists 2 chunk(s) but the file has 1",
    ),
    ("---\ntitle: x\nchunks: [a]\n---\n\n## Chunk 1: b\n", 6, "titled 'b' here but 'a'"),
    (
        "---\ntitle: x\n---\n## Chunk 1: a\n### Depends on\n- nope\n",
        6,
        "depends on 'nope': no chunk",
    ),
    (
        "---\ntitle: x\n---\n## Chunk 1: a\n### Depends on\n- 2\n## Chunk 2: b\n### Depends on\n- a\n",
        None,
        "dependency cycle: #1 'a' -> #2 'b' -> #1 'a'",
    ),
    (
        "---\ntitle: x\n---\n## Chunk 1: a\n## Chunk 2: a\n## Chunk 3: c\n### Depends on\n- a\n",
        8,
        "title used by several chunks",
    ),
    ("---\ntitle: x\nid: not-a-uuid\n---\n", 3, "id: expected a UUID, got 'not-a-uuid'"),
    ("---\ntitle: x\nchunks: [{title: a, id: zzz}]\n---\n## Chunk 1: a\n", 3, "chunks[1].id"),
    ('---\ntitle: "two\\nlines"\n---\n', 2, "title 'two\\nlines': expected a single line"),
    ("---\ntitle: x\nbudget_usd: -1\n---\n", 3, "budget_usd: expected a number of dollars"),
    ("---\ntitle: x\nbudget_usd: .nan\n---\n", 3, "budget_usd: expected a number of dollars"),
    ("---\ntitle: x\nbudget_usd: 1.0e+308\n---\n", 3, "dollars from 0 to 1,000,000, got 1e+308"),
    # a NUL in a prompt failed every attempt of the chunk's run (argv: embedded null byte)
    ("---\ntitle: x\n---\n\n## Chunk 1: a\n\nhas\x00nul\n", 7, "a NUL character"),
    # a key written twice: the last one won, without a word (here: b's dependency on a lost)
    (
        "---\ntitle: x\nchunks:\n- title: a\n- title: b\n  depends_on: [a]\n  depends_on: []\n"
        "---\n## Chunk 1: a\n## Chunk 2: b\n",
        7,
        "invalid YAML: duplicate key 'depends_on'",
    ),
    ("---\ntitle: x\nstatus: ready\ntitle: y\n---\n", 4, "invalid YAML: duplicate key 'title'"),
    # a superscript two is a digit to str.isdigit, not to int: a ValueError's traceback
    (
        "---\ntitle: x\nchunks:\n- title: a\n- title: b\n  depends_on: ['²']\n---\n"
        "## Chunk 1: a\n## Chunk 2: b\n",
        3,
        "chunk #2 'b' depends on '²': no chunk has that id, title or position (1-2)",
    ),
]


@pytest.mark.parametrize(("text", "line", "message"), BAD)
def test_bad_files_name_the_line(
    tmp_path: Path, store: Store, text: str, line: int | None, message: str
) -> None:
    path = tmp_path / "bad.md"
    path.write_text(text)
    with pytest.raises(SpecFileError) as info:
        specfile.import_spec(store, ensure_project(store, tmp_path), path)
    prefix = f"{path}:{line}: " if line else f"{path}: "
    assert str(info.value).startswith(prefix), str(info.value)
    assert message in str(info.value)
    assert store.query("SELECT count(*) FROM specs")[0][0] == 0  # nothing half-imported


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(SpecFileError, match="no such file"):
        specfile.read(tmp_path / "missing.md")
    (tmp_path / "bin.md").write_bytes(b"---\ntitle: \xff\n---\n")
    with pytest.raises(SpecFileError, match="not UTF-8"):
        specfile.read(tmp_path / "bin.md")


def test_check_dag_messages() -> None:
    a, b = ChunkDraft("a", id="A"), ChunkDraft("b", id="B", depends_on=["A"])
    assert drafts.check_dag([a, b]) is None
    assert "unknown chunk 'Z'" in (drafts.check_dag([ChunkDraft("c", depends_on=["Z"])]) or "")
    a.depends_on = ["B"]
    assert drafts.check_dag([a, b]) == "dependency cycle: #1 'a' -> #2 'b' -> #1 'a'"
    assert [
        d.id
        for d in drafts.topological(
            [ChunkDraft("x", id="X", depends_on=["Y"]), ChunkDraft("y", id="Y")]
        )
    ] == ["Y", "X"]


def test_spec_from_another_project_is_refused(store: Store, tmp_path: Path) -> None:
    one = ensure_project(store, tmp_path / "one")
    spec = create_spec(store, one, "Thing")
    path = specfile.export_spec(store, spec, tmp_path / "thing.md")
    two = ensure_project(store, tmp_path / "two")
    with pytest.raises(SpecFileError, match="belongs to another project"):
        specfile.import_spec(store, two, path)
    assert get_spec(store, spec.id).project_id == one.id


# --- CLI --------------------------------------------------------------------------------------


def test_cli_import_counts_one_chunk_in_the_singular(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "one.md").write_text("---\ntitle: One thing\n---\n\n## Chunk 1: Do it\n")
    res = cli("-C", str(tmp_path), "spec", "import", str(tmp_path / "one.md"))
    assert res.code == 0, res.err
    assert res.out.startswith(f"imported spec one-thing (1 chunk) from {tmp_path / 'one.md'}  ")


def test_cli_export_import(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "login.md").write_text(HAND)
    res = cli("spec", "import", "login.md")
    assert res.code == 0, res.err
    assert res.out.startswith("imported spec add-login (3 chunks) from login.md")
    res = cli("spec", "export", "add-login")
    assert res.code == 0, res.err
    path = tmp_path / ".handoff" / "specs" / "add-login.md"
    assert res.out.strip() == f"wrote {path}"
    text = path.read_text()
    assert cli("spec", "export", "add-login", "-o", "-").out == text
    # edit the exported file and import it back: the same spec, updated
    path.write_text(text.replace("title: Add login", "title: Add password login", 1))
    res = cli("--json", "spec", "import", str(path))
    assert res.code == 0 and '"imported": "add-login"' in res.out
    assert "Add password login" in cli("spec", "show", "add-login").out
    # a bad file: one line, exit 2, the file and line named
    (tmp_path / "bad.md").write_text("---\ntitle: x\nstatus: great\n---\n")
    res = cli("spec", "import", "bad.md")
    assert res.code == 2
    assert res.err.strip() == (
        "specwright: error: bad.md:3: status: expected one of draft, ready, running, done, "
        "failed, got 'great'"
    )


def test_cli_export_where_it_cannot_write_is_one_line(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A folder that cannot be made (a file in its place; a read-only mount alike) used to be
    an OSError traceback."""
    (tmp_path / "one.md").write_text("---\ntitle: One thing\n---\n\n## Chunk 1: Do it\n")
    assert cli("-C", str(tmp_path), "spec", "import", str(tmp_path / "one.md")).code == 0
    (tmp_path / "blocker").write_text("a file, not a folder")
    target = tmp_path / "blocker" / "one.md"
    res = cli("-C", str(tmp_path), "spec", "export", "one-thing", "-o", str(target))
    assert res.code == 2 and "Traceback" not in res.err
    assert res.err.strip().startswith(f"specwright: error: {target}: cannot write: ")
    assert len(res.err.strip().splitlines()) == 1


def test_files_from_other_editors_and_other_places(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spec file saved with a byte order mark and CRLF line ends imports as the LF one does;
    `spec export -o DIR` writes DIR/<slug>.md; a --body-file that is not UTF-8 is one line."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "win.md").write_bytes(b"\xef\xbb\xbf" + HAND.replace("\n", "\r\n").encode())
    (tmp_path / "unix.md").write_text(HAND.replace("title: Add login", "title: Add login 2", 1))
    for name in ("win.md", "unix.md"):
        assert cli("spec", "import", name).code == 0
    win = json.loads(cli("--json", "spec", "show", "add-login").out)
    unix = json.loads(cli("--json", "spec", "show", "add-login-2").out)
    assert win["body"] == unix["body"] and "\r" not in json.dumps(win)
    chunks = [
        json.loads(cli("--json", "chunk", "list", s).out) for s in ("add-login", "add-login-2")
    ]
    assert [c["prompt"] for c in chunks[0]] == [c["prompt"] for c in chunks[1]]
    (tmp_path / "out").mkdir()
    res = cli("spec", "export", "add-login", "-o", "out")
    assert res.code == 0, res.err
    assert (tmp_path / "out" / "add-login.md").read_text().startswith("---\n")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    res = cli("spec", "new", "X", "--body-file", "latin1.txt")
    assert res.code == 2 and res.err.strip() == (
        "specwright: error: --body-file latin1.txt: not UTF-8 text (unexpected end of data at "
        "byte 3)"
    )


def test_spec_new_takes_only_a_text_its_export_can_import_again(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`spec new --body-file` took a NUL character and a 5 MB text; `spec export` wrote them and
    `spec import` of that very file refused it. And with --body too, --body was ignored."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nul.md").write_bytes(b"Goal\n\x00\n")
    (tmp_path / "big.md").write_text("word " * (MAX_FILE_BYTES // 5 + 1))
    for name in ("nul.md", "big.md"):
        res = cli("spec", "new", "X", "--body-file", name)
        assert res.code == 2 and res.err.strip().splitlines() == [
            f"specwright: error: --body-file {name}: expected text without NUL characters, at "
            "most 4,194,304 bytes (as a spec file: its export could not be imported again); "
            "nothing created"
        ], res.err
    both = cli("spec", "new", "X", "--body", "a", "--body-file", "nul.md")
    assert both.code == 2 and "--body-file: not allowed with argument --body" in both.err
    listed = cli("--json", "spec", "list")  # nothing created: not even the database
    assert listed.code == 2 and "no database file" in listed.err
    (tmp_path / "ok.md").write_text("word " * 1000)
    assert cli("spec", "new", "X", "--body-file", "ok.md").code == 0
    assert cli("spec", "export", "x").code == 0
    assert cli("spec", "import", ".handoff/specs/x.md").code == 0


@pytest.mark.parametrize("sep", ["\x85", "\u2028", "\u2029"])
def test_unicode_line_separators_in_intent_round_trip(
    store: Store, tmp_path: Path, sep: str
) -> None:
    """YAML reads a raw NEL / LS / PS in a quoted scalar as a line fold: export must escape it.
    (In a title each is a line break, refused as any other.)"""
    project = ensure_project(store, tmp_path)
    spec = create_spec(store, project, "Spec title", intent=f"do{sep}this")
    replace_chunks(store, spec.id, [ChunkDraft("A B", "p"), ChunkDraft("C", "q")])
    spec = get_spec(store, spec.id)
    path = specfile.export_spec(store, spec, tmp_path / "s.md")
    back = specfile.import_spec(store, project, path)
    assert (back.title, back.intent) == ("Spec title", f"do{sep}this")
    assert specfile.export_spec(store, back, tmp_path / "again.md").read_text() == path.read_text()
    with pytest.raises(ValidationError, match=r"spec title .*: expected a single line"):
        create_spec(store, project, f"Spec{sep}title")


def test_chunk_add_keeps_what_a_round_trip_keeps(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`chunk add --accept ' x ' --file ''` stored padding and blanks a spec file drops: an
    export and import changed the chunk. They are trimmed (and blanks dropped) when added."""
    c = ("-C", str(tmp_path))
    assert cli(*c, "spec", "new", "Pad").code == 0
    args = ["--accept", "  multi\n\nline  ", "--accept", " ", "--file", " a b.py ", "--file", ""]
    added = cli(*c, "--json", "chunk", "add", "pad", "One", *args)
    assert added.code == 0, added.err
    before = json.loads(added.out)
    assert (before["acceptance"], before["files"]) == (["multi\n\nline"], ["a b.py"])
    assert cli(*c, "spec", "export", "pad").code == 0
    assert cli(*c, "spec", "import", str(tmp_path / ".handoff/specs/pad.md")).code == 0
    (after,) = json.loads(cli(*c, "--json", "chunk", "list", "pad").out)
    assert (after["acceptance"], after["files"]) == (before["acceptance"], before["files"])


def test_slugs_keep_letters_and_digits_of_every_script(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """An intent in Japanese gave the slug `spec` (the next `spec-2`): its letters are kept,
    NFKC and lower-cased, as long as the branch name is one git takes."""
    import subprocess

    from specwright.model import slugify

    c = ("-C", str(tmp_path))
    for title in ("レート制限を追加", "レート制限を追加", "!!!"):
        assert cli(*c, "spec", "new", title).code == 0
    listed = [s["slug"] for s in json.loads(cli(*c, "--json", "spec", "list").out)]
    assert listed == ["レート制限を追加", "レート制限を追加-2", "spec"]
    assert cli(*c, "spec", "export", "レート制限を追加").code == 0
    assert (tmp_path / ".handoff" / "specs" / "レート制限を追加.md").is_file()
    cases = {
        "Ｒａｔｅ Limit ①": "rate-limit-1",  # NFKC: full-width letters, a circled digit
        "Café au lait": "café-au-lait",
        "हिन्दी भाषा": "हिन्दी-भाषा",  # vowel signs and the virama stay with their letters
        "Straße..lock~^:?*[\\ @{x}": "straße-lock-x",
        "Add rate limiting": "add-rate-limiting",
        "🎉 ✓": "spec",
    }
    for title, slug in cases.items():
        assert slugify(title) == slug, title
    for title in [*cases, "レート制限を追加", "x" * 80, "é" * 80, "\u0301a", "a\u200fb"]:
        branch = f"specwright/{slugify(title)}"
        done = subprocess.run(["git", "check-ref-format", "--branch", branch], capture_output=True)
        assert done.returncode == 0, (title, branch)


def test_carriage_returns_in_a_specs_text_survive_a_round_trip(
    store: Store, tmp_path: Path
) -> None:
    """`chunk add --prompt` of a text with CRLF line ends (pasted from a Windows file), a body
    or intent with a lone CR: `spec export` then `spec import` gave them back with LF."""
    project = ensure_project(store, tmp_path)
    spec = create_spec(store, project, "CR", "body\r\nline\r", intent="do\r\nthis")
    draft = ChunkDraft("One", "a\r\nb\r\n\r\nc\r", ["x\r\ny", "z\rw"], ["f\r.py"])
    replace_chunks(store, spec.id, [draft, ChunkDraft("Two", "## Chunk 3: x\r\n### Files\r")])
    before = [(c.prompt, c.acceptance, c.files) for c in list_chunks(store, spec.id)]
    path = specfile.export_spec(store, get_spec(store, spec.id), tmp_path / "cr.md")
    back = specfile.import_spec(store, project, path)
    assert (back.body, back.intent) == ("body\r\nline\r", "do\r\nthis")
    assert [(c.prompt, c.acceptance, c.files) for c in list_chunks(store, back.id)] == before
    assert specfile.export_spec(store, back, tmp_path / "again.md").read_bytes() == (
        path.read_bytes()
    )
    # a file a Windows editor saved (every line CRLF) still reads as the LF one
    windows = tmp_path / "win.md"
    windows.write_bytes(path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    parsed = specfile.read(windows)
    assert parsed.title == "CR" and parsed.chunks[0].prompt == "a\nb\n\nc"
