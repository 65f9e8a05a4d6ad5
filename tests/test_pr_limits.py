"""`specwright pr` at GitHub's edges: an open PR asked to be a draft, titles and descriptions
past GitHub's limits, agent text in the description, GitHub failing once the branch is pushed."""

from __future__ import annotations

from pathlib import Path

from specwright import catalog
from specwright.drafts import ChunkDraft, drafts_of, replace_chunks
from specwright.store import Store, resolve_db_path
from tests.support_github import FakeGitHub
from tests.test_pr import REPO_OK, ScriptedGitHub, _remote_has, shipped

__all__ = ["shipped"]  # the fixture, used by name

TOKEN = "ghp_test_token_123"


def test_draft_asked_of_an_open_pr_that_is_not_one_is_said(shipped, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`pr --draft` when the PR was already open (ready) printed "updated pull request #1" and
    left it ready without a word: GitHub's REST API cannot make an open PR a draft."""
    repo, _remote, slug = shipped
    with FakeGitHub(token=TOKEN) as gh:
        monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
        monkeypatch.setenv("GITHUB_API_URL", gh.url)
        args = ("-C", str(repo), "pr", slug, "--repo", "acme/widgets")
        first = cli(*args)
        assert first.code == 0 and first.err == "", first.err
        assert "opened pull request #1 specwright/diamond -> main: " in first.out
        again = cli(*args, "--draft")
        assert again.code == 0
        assert "updated pull request #1 specwright/diamond -> main: " in again.out
        assert again.err.strip().splitlines() == [
            "specwright: warning: --draft: pull request #1 was already open and is not a draft; "
            "an open pull request's draft state is not changed (on GitHub: 'Convert to draft')"
        ], again.err
        assert gh.pulls[0]["draft"] is False
        # a draft opened as one says so, and stays one when updated (no warning then)
        other = cli(*args, "--draft", "--base", "develop")
        assert "opened pull request #2 specwright/diamond -> develop (draft): " in other.out
        kept = cli(*args, "--draft", "--base", "develop")
        assert "updated pull request #2 specwright/diamond -> develop (draft): " in kept.out
        assert kept.err == "" and gh.pulls[1]["draft"] is True


def test_a_long_title_and_many_chunks_stay_within_githubs_limits(shipped, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A 400-character title (a database written before titles had a limit of 200 may hold one)
    and 400 chunks with long titles: GitHub refused the PR (422 title/body too long) after the
    push; the title is now cut to 256 characters and the description to 65,536, naming how many
    chunks it leaves out."""
    repo, _remote, slug = shipped
    store = Store(resolve_db_path(repo))
    spec = catalog.get_spec(store, slug)
    long_title = "Make " + "very " * 80 + "long"
    store.write([Store.op_sql("UPDATE specs SET title = ? WHERE id = ?", [long_title, spec.id])])
    more = [ChunkDraft(f"Chunk {n} " + "x" * 190, "p") for n in range(400)]
    replace_chunks(store, spec.id, [*drafts_of(catalog.list_chunks(store, spec.id)), *more])
    with FakeGitHub(token=TOKEN) as gh:
        monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
        monkeypatch.setenv("GITHUB_API_URL", gh.url)
        result = cli("-C", str(repo), "pr", slug, "--repo", "acme/widgets")
        assert result.code == 0, result.err
        [pull] = gh.pulls
        assert (
            len(pull["title"]) == 256
            and pull["title"].startswith("Make very very ")
            and pull["title"].endswith("…")
        ), pull["title"]
        text = pull["body"]
        assert 60_000 < len(text) <= 65_536
        assert "| 1 | Make A | shipped | 1 |" in text
        rows = [line for line in text.splitlines() if line.startswith("| ") and "Chunk" in line]
        assert 0 < len(rows) < 400
        assert f"_…and {400 - len(rows)} more chunk(s), left out" in text
        assert f"`specwright chunk list {slug}` lists them all._" in text
        assert text.rstrip().endswith("trailer._") and "Total agent and review cost: " in text


def test_agent_text_in_the_pr_table_shows_as_written(store: Store, tmp_path: Path) -> None:
    """A reviewer's summary went into the table as markdown: an image from any host, raw HTML,
    bold and links rendered on GitHub, and an endless one made the row as long."""
    from specwright import pr
    from specwright.model import new_id, utcnow

    root = tmp_path / "p"
    root.mkdir()
    spec = catalog.create_spec(store, catalog.ensure_project(store, root), "Marks")
    replace_chunks(store, spec.id, [ChunkDraft("Add `--json` *now*", "p")])
    [chunk] = catalog.list_chunks(store, spec.id)
    said = (
        "ok ![x](https://t.example/p.png) <img src=x> [a](b) __b__ ~~s~~ &#64;bob \\ " + "y" * 500
    )
    row = {"id": new_id(), "chunk_id": chunk.id, "reviewer": "llm", "verdict": "SHIP"}
    store.write([Store.op_insert("reviews", {**row, "summary": said, "created_at": utcnow()})])
    table = pr.body(store, catalog.get_spec(store, spec.id)).split("### Chunks", 1)[1]
    line = table.splitlines()[4]
    assert "| Add &#96;--json&#96; \\*now\\* | pending |" in line, line
    assert (
        "ok !\\[x\\](https://t.example/p.png) \\<img src=x\\> \\[a\\](b) \\_\\_b\\_\\_ "
        "\\~\\~s\\~\\~ &amp;#&#8203;64;bob \\\\ yyy"
    ) in line, line
    assert "y" * 130 not in line and "y" * 100 in line and line.endswith("… | - |")


def test_a_github_failure_after_the_push_says_the_branch_is_pushed(
    shipped, cli, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """GitHub answering 502 to the new PR (after the push) was "GitHub answered 502 ..." alone:
    nothing said the branch was on the remote, nor that `pr` again finishes the job."""
    repo, remote, slug = shipped
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    routes = {
        ("GET", "/repos/acme/widgets"): REPO_OK,
        ("POST", "/repos/acme/widgets/pulls"): (502, b'{"message": "Server Error"}', "json"),
    }
    gh = ScriptedGitHub(routes)
    try:
        monkeypatch.setenv("GITHUB_API_URL", gh.url)
        result = cli("-C", str(repo), "pr", slug, "--repo", "acme/widgets")
        ran = cli("-C", str(repo), "run-all", slug, "--pr", "--repo", "acme/widgets")
    finally:
        gh.close()
    assert _remote_has(remote, "specwright/diamond")
    said = (
        "opening a pull request specwright/diamond -> main: GitHub answered 502 Server Error; "
        "specwright/diamond was pushed to 'origin': `specwright pr diamond` opens or updates the "
        "pull request without running anything"
    )
    assert result.code == 2 and result.err.strip().splitlines() == [f"specwright: error: {said}"], (
        result.err
    )
    assert ran.code == 2 and "shipped: nothing to run" in ran.out
    assert ran.err.strip().splitlines() == [f"specwright: error: pull request: {said}"], ran.err


def test_the_spec_text_in_the_pr_pings_no_one_and_shows_no_image(shipped, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The spec's body went into the description as written (only its heading was escaped):
    an @mention in it notified that person, "closes #12" closed that issue on merge, and each
    viewer's browser fetched its images from their host. Its code stays as written."""
    repo, _remote, slug = shipped
    store = Store(resolve_db_path(repo))
    spec = catalog.get_spec(store, slug)
    said = (
        "Ask @alice and @acme/core; closes #12. ![x](http://127.0.0.1:9/t.png) <img src=y>\n"
        "Mail a@b.org; run `@cli ![k](v)` first.\n"
        "Use [it](https://t.example/p/@scope/x#12) or https://t.example/@scope/x#3.\n\n"
        "```python\n@decorator\nx = '![a](b)'  # 12\n```\n\n"
        "    @indented ![c](d)\n\n"
        "- a list item of @bob\n\n"
        "    its paragraph, @carol"
    )
    catalog.update_spec(store, spec.id, body=said)
    with FakeGitHub(token=TOKEN) as gh:
        monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
        monkeypatch.setenv("GITHUB_API_URL", gh.url)
        result = cli("-C", str(repo), "pr", slug, "--repo", "acme/widgets")
        assert result.code == 0, result.err
        text = gh.pulls[0]["body"].split("### Chunks", 1)[0]
    z = "&#8203;"
    assert text.splitlines()[2:] == [
        f"Ask @{z}alice and @{z}acme/core; closes #{z}12. !\\[x](http://127.0.0.1:9/t.png) "
        "&lt;img src=y>",
        "Mail a@b.org; run `@cli ![k](v)` first.",
        "Use [it](https://t.example/p/@scope/x#12) or https://t.example/@scope/x#3.",  # links work
        "",
        "```python",
        "@decorator",
        "x = '![a](b)'  # 12",
        "```",
        "",
        "    @indented ![c](d)",
        "",
        f"- a list item of @{z}bob",
        "",
        f"    its paragraph, @{z}carol",
        "",
    ]
