"""`specwright pr`: push to a real (bare) remote and open the PR against a fake GitHub API."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from specwright import catalog
from specwright import config as config_mod
from specwright.runner import run_all
from specwright.store import Store, resolve_db_path
from tests.conftest import git
from tests.support_github import FakeGitHub
from tests.support_http import CannedHTTP
from tests.test_runner import DIAMOND, _project, _spec, _write_script


def _diamond_with_remote(git_repo: Path, tmp_path: Path, script: dict | None = None) -> Path:
    """The diamond spec's project (``script`` for its agent, by default every chunk writes its
    file) with a bare repository as its ``origin``; returns the remote."""
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    git(git_repo, "remote", "add", "origin", str(remote))
    _project(git_repo, script or _write_script(DIAMOND))
    return remote


@pytest.fixture
def shipped(git_repo: Path, tmp_path: Path) -> tuple[Path, Path, str]:
    remote = _diamond_with_remote(git_repo, tmp_path)
    git(git_repo, "push", "-q", "origin", "main")
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, DIAMOND)
    assert run_all(store, config_mod.load(git_repo), git_repo, spec).ok
    return git_repo, remote, spec.slug


def _remote_has(remote: Path, branch: str) -> bool:
    proc = subprocess.run(
        ["git", "--git-dir", str(remote), "rev-parse", "--verify", "-q", branch],
        capture_output=True,
    )
    return proc.returncode == 0


def test_a_cost_partly_unknown_is_a_lower_bound_in_the_pr_and_the_run_summary(
    git_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A chunk run whose second call was stopped mid-run (its cost unknown): the PR body and
    run-all's table showed the known part as the chunk's whole cost, and a chunk of only
    unknown costs counted $0 in the PR's total."""
    from specwright import pr
    from specwright.cli.runall import _print_summary
    from specwright.model import Usage
    from specwright.recorder import ExecutionRecorder
    from specwright.runner import run_summary

    _project(git_repo, _write_script({"A": [], "B": ["A"]}))
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": [], "B": ["A"]})
    result = run_all(store, config_mod.load(git_repo), git_repo, spec)
    assert result.ok
    first = store.query_dicts(
        "SELECT r.id, r.chunk_id FROM runs r JOIN chunks c ON c.id = r.chunk_id "
        "WHERE r.parent_run_id = ? AND c.position = 1",
        [result.run_id],
    )[0]
    rec = ExecutionRecorder(
        store, role="executor", backend="opencode", run_id=first["id"], spec_id=spec.id,
        chunk_id=first["chunk_id"], model="glm-4.7",
    ).start()  # fmt: skip
    rec.finish(status="cancelled", usage=Usage(input_tokens=900), incomplete=True)
    text = pr.body(store, spec)
    assert "| 1 | Make A | shipped | 1 | " in text and "| $0.0010 + 1 unpriced |" in text, text
    assert "Total agent and review cost: $0.0020 + 1 unpriced" in text
    rows = {r["chunk"]: r for r in run_summary(store, result.run_id)}
    assert (rows[1]["cost_usd"], rows[1]["unpriced"]) == (0.001, 1) and rows[2]["unpriced"] == 0
    _print_summary(list(rows.values()))
    lines = capsys.readouterr().out.splitlines()
    assert "≥0.0010" in lines[1] and "≥" not in lines[2], lines


def test_pr_pushes_and_opens_with_chunks_in_the_body(shipped, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    repo, remote, slug = shipped
    with FakeGitHub(token="ghp_test_token_123") as gh:
        monkeypatch.setenv("GITHUB_TOKEN", "ghp_test_token_123")
        monkeypatch.setenv("GITHUB_API_URL", gh.url)
        result = cli("-C", str(repo), "--json", "pr", slug, "--repo", "acme/widgets")
        assert result.code == 0, result.err
        out = json.loads(result.out)
        assert out["number"] == 1 and out["head"] == "specwright/diamond" and out["base"] == "main"
        pull = gh.pulls[0]
        assert pull["title"] == "Diamond" and pull["head"] == "specwright/diamond"
        assert pull["base"] == "main" and pull["draft"] is False
        body = pull["body"]
        assert "| 1 | Make A | shipped | 1 |" in body and "| 4 | Make D | shipped | 1 |" in body
        assert "Total agent and review cost: $0.0040" in body
        assert _remote_has(remote, "specwright/diamond")
        assert (
            git(repo, "rev-parse", "specwright/diamond")
            == subprocess.run(
                ["git", "--git-dir", str(remote), "rev-parse", "specwright/diamond"],
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
        # a second call updates the open PR instead of failing
        again = json.loads(cli("-C", str(repo), "--json", "pr", slug, "--repo", "acme/widgets").out)
        assert again["updated"] is True and again["number"] == 1
        assert [r["method"] for r in gh.requests].count("PATCH") == 1


def test_pr_again_updates_the_open_pr_of_its_own_base_not_the_newest_of_the_branch(  # type: ignore[no-untyped-def]
    shipped, cli, monkeypatch
) -> None:
    """GitHub keeps one open PR per head and base: `pr --base develop` opens a second PR. Then
    `pr` (base main) found the branch's open PRs by head only and updated the first listed (the
    newest, #2 to develop) while printing "#2 ... -> main"; PR #1 kept its stale body."""
    repo, _remote, slug = shipped
    git(repo, "push", "-q", "origin", "main:develop")
    with FakeGitHub(token="ghp_test_token_123") as gh:
        monkeypatch.setenv("GITHUB_TOKEN", "ghp_test_token_123")
        monkeypatch.setenv("GITHUB_API_URL", gh.url)
        args = ("-C", str(repo), "pr", slug, "--repo", "acme/widgets")
        assert "opened pull request #1 specwright/diamond -> main" in cli(*args).out
        other = cli(*args, "--base", "develop")
        assert "opened pull request #2 specwright/diamond -> develop" in other.out, other.err
        again = cli(*args)
        assert "updated pull request #1 specwright/diamond -> main" in again.out, again.out
        patched = [r["path"] for r in gh.requests if r["method"] == "PATCH"]
        assert patched == ["/repos/acme/widgets/pulls/1"]
        assert [p["base"] for p in gh.pulls] == ["main", "develop"]


def test_a_refused_push_says_so_in_one_short_line_and_opens_nothing(  # type: ignore[no-untyped-def]
    shipped, cli, monkeypatch, tmp_path
) -> None:
    """Someone pushed to the spec's branch: the error was `git push --quiet --set-upstream in
    DIR: ...` followed by git's ten lines of hints run together, not saying no PR was opened."""
    repo, remote, slug = shipped
    other = tmp_path / "other"
    git(repo, "push", "-q", "origin", "specwright/diamond")
    subprocess.run(["git", "clone", "-q", "-b", "specwright/diamond", str(remote), str(other)], check=True)  # fmt: skip
    git(other, "-c", "user.name=O", "-c", "user.email=o@x", "commit", "-q", "--allow-empty", "-m", "theirs")  # fmt: skip
    git(other, "push", "-q", "origin", "specwright/diamond")
    with FakeGitHub(token="ghp_test_token_123") as gh:
        monkeypatch.setenv("GITHUB_TOKEN", "ghp_test_token_123")
        monkeypatch.setenv("GITHUB_API_URL", gh.url)
        result = cli("-C", str(repo), "pr", slug, "--repo", "acme/widgets")
        assert result.code == 2
        lines = result.err.strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith(
            "specwright: error: git refused to push specwright/diamond to 'origin', so no pull "
            "request was opened or updated: "
        ), lines[0]
        assert "[rejected]" in lines[0] and "hint:" not in lines[0]
        assert gh.pulls == []


def test_pr_of_a_spec_not_all_shipped_says_so(shipped, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """run-all --pr opens no PR unless every chunk shipped; `pr` opened one for a spec with a
    failed or pending chunk without a word."""
    repo, _remote, slug = shipped
    store = Store(resolve_db_path(repo))
    spec = catalog.get_spec(store, slug)
    catalog.add_chunk(store, spec, "Make E", "Create e.txt")
    with FakeGitHub(token="ghp_test_token_123") as gh:
        monkeypatch.setenv("GITHUB_TOKEN", "ghp_test_token_123")
        monkeypatch.setenv("GITHUB_API_URL", gh.url)
        result = cli("-C", str(repo), "pr", slug, "--repo", "acme/widgets", "--draft")
        assert result.code == 0, result.err
        assert "opened pull request #1" in result.out
        assert result.err.strip() == (
            "specwright: warning: 1 of 5 chunk(s) of 'diamond' have not shipped (5 pending); "
            "the pull request lists them as they are"
        )
        assert "| 5 | Make E | pending | 0 |" in gh.pulls[0]["body"]


def test_run_all_pr_json_of_a_run_that_did_not_ship_says_why_there_is_no_pr(  # type: ignore[no-untyped-def]
    git_repo: Path, tmp_path: Path, cli, monkeypatch
) -> None:
    """The text output said "no pull request: not every chunk shipped"; --json gave
    ``pull_request_error: null``, as if nothing had stood in the way."""
    script = _write_script(DIAMOND)
    script["chunks"]["Make D"] = [{"fail": "cannot"}]
    _diamond_with_remote(git_repo, tmp_path, script)
    slug = _spec(Store(resolve_db_path(git_repo)), git_repo, DIAMOND).slug
    with FakeGitHub(token="ghp_test_token_123") as gh:
        monkeypatch.setenv("GITHUB_TOKEN", "ghp_test_token_123")
        monkeypatch.setenv("GITHUB_API_URL", gh.url)
        args = ("-C", str(git_repo), "--json", "run-all", slug, "--pr", "--repo", "acme/widgets")
        ran = cli(*args)
        assert gh.pulls == []
    out = json.loads(ran.out)
    assert out["status"] != "shipped" and out["pull_request"] is None, out
    assert out["pull_request_error"] == "not every chunk shipped", out


def test_an_api_url_that_is_no_url_is_one_line_before_anything_runs_or_is_pushed(  # type: ignore[no-untyped-def]
    git_repo: Path, tmp_path: Path, cli, monkeypatch
) -> None:
    """`--api-url http://[::1` was httpx's traceback; GITHUB_API_URL=HOST:PORT (no scheme), or a
    remote that is not GitHub's and no --repo, let `run-all --pr` run every chunk first."""
    remote = _diamond_with_remote(git_repo, tmp_path)
    store = Store(resolve_db_path(git_repo))
    slug = _spec(store, git_repo, DIAMOND).slug
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_test_token_123")
    monkeypatch.setenv("GITHUB_API_URL", "127.0.0.1:8080")
    ran = cli("-C", str(git_repo), "run-all", slug, "--pr", "--repo", "acme/widgets")
    assert ran.code == 2 and ran.err.strip().splitlines() == [
        "specwright: error: GITHUB_API_URL '127.0.0.1:8080': expected an http(s) URL with a host "
        "(GitHub Enterprise: https://HOST/api/v3); nothing was pushed"
    ], ran.err
    assert store.query("SELECT count(*) FROM runs")[0][0] == 0
    monkeypatch.delenv("GITHUB_API_URL")
    local = cli("-C", str(git_repo), "run-all", slug, "--pr")  # a remote that is no GitHub's
    assert local.code == 2 and "is not a GitHub URL; name the repository with --repo" in local.err
    assert store.query("SELECT count(*) FROM runs")[0][0] == 0
    assert run_all(store, config_mod.load(git_repo), git_repo, catalog.get_spec(store, slug)).ok
    bad = cli("-C", str(git_repo), "pr", slug, "--repo", "acme/widgets", "--api-url", "http://[::1")
    assert bad.code == 2 and bad.err.strip().splitlines() == [
        "specwright: error: --api-url 'http://[::1': expected an http(s) URL with a host "
        "(GitHub Enterprise: https://HOST/api/v3); nothing was pushed"
    ], bad.err
    assert not _remote_has(remote, "specwright/diamond")


def test_a_token_read_with_its_newline_works_and_one_unfit_for_a_header_is_not_printed(  # type: ignore[no-untyped-def]
    shipped, cli, monkeypatch
) -> None:
    """A token with a trailing newline failed as "cannot reach the GitHub API ...: Illegal header
    value b'Bearer <the token>\\n'" (the secret on stderr); a non-ASCII one was a traceback."""
    repo, remote, slug = shipped
    args = ("-C", str(repo), "pr", slug, "--repo", "acme/widgets")
    with FakeGitHub(token="ghp_test_token_123") as gh:
        monkeypatch.setenv("GITHUB_API_URL", gh.url)
        monkeypatch.setenv("GITHUB_TOKEN", "ghp_tökenSECRET")
        bad = cli(*args)
        assert bad.code == 2 and bad.err.strip().splitlines() == [
            "specwright: error: GITHUB_TOKEN: expected a token of printable ASCII characters "
            "without spaces; the value set has other characters (not shown); nothing was pushed"
        ], bad.err
        assert not _remote_has(remote, "specwright/diamond") and gh.requests == []
        monkeypatch.setenv("GITHUB_TOKEN", "ghp_test_token_123\n")
        ok = cli(*args)
        assert ok.code == 0 and "opened pull request #1" in ok.out, ok.err


def test_run_all_with_pr_opens_the_pull_request_once_every_chunk_shipped(  # type: ignore[no-untyped-def]
    git_repo: Path, tmp_path: Path, cli, monkeypatch
) -> None:
    """`run-all --pr` is the README's way to a PR: it pushes and opens it after the run (the
    flag was accepted and did nothing), and without a token it runs nothing."""
    remote = _diamond_with_remote(git_repo, tmp_path)
    store = Store(resolve_db_path(git_repo))
    slug = _spec(store, git_repo, DIAMOND).slug
    args = ("-C", str(git_repo), "run-all", slug, "--pr", "--repo", "acme/widgets")
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.delenv("GH_TOKEN", raising=False)
    refused = cli(*args)
    assert refused.code == 2 and "GITHUB_TOKEN is not set" in refused.err, refused.err
    assert "nothing was run" in refused.err
    assert store.query("SELECT count(*) FROM runs")[0][0] == 0
    with FakeGitHub(token="ghp_test_token_123") as gh:
        monkeypatch.setenv("GITHUB_TOKEN", "ghp_test_token_123")
        monkeypatch.setenv("GITHUB_API_URL", gh.url)
        result = cli(*args)
        assert result.code == 0, result.err
        assert "opened pull request #1 specwright/diamond -> main" in result.out
        assert [p["head"] for p in gh.pulls] == ["specwright/diamond"]
        assert _remote_has(remote, "specwright/diamond")
        # the token went stale: the run's outcome stands, and the error says how to retry
        # only the pull request (not another run-all)
        monkeypatch.setenv("GITHUB_TOKEN", "expired")
        stale = cli(*args)
        assert stale.code == 2 and "shipped: nothing to run" in stale.out
        assert stale.err.strip().splitlines() == [
            "specwright: error: pull request: repository acme/widgets: GitHub rejected the token "
            "(401 Bad credentials); check GITHUB_TOKEN (`specwright pr diamond` tries again "
            "without running anything)"
        ], stale.err


def test_no_token_is_a_clear_error_and_nothing_is_pushed(shipped, cli) -> None:  # type: ignore[no-untyped-def]
    repo, remote, slug = shipped
    result = cli("-C", str(repo), "pr", slug, "--repo", "acme/widgets")
    assert result.code == 2
    assert "GITHUB_TOKEN is not set" in result.err and "nothing was pushed" in result.err
    assert not _remote_has(remote, "specwright/diamond")


def test_bad_token_and_non_github_remote(shipped, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    repo, remote, slug = shipped
    with FakeGitHub(token="right") as gh:
        monkeypatch.setenv("GITHUB_TOKEN", "wrong-token")
        monkeypatch.setenv("GITHUB_API_URL", gh.url)
        bad = cli("-C", str(repo), "pr", slug, "--repo", "acme/widgets")
        assert bad.code == 2 and "GitHub rejected the token (401" in bad.err
        assert not _remote_has(remote, "specwright/diamond")
        no_repo = cli("-C", str(repo), "pr", slug)
        assert (
            no_repo.code == 2
            and "is not a GitHub URL; name the repository with --repo" in no_repo.err
        )


def test_repo_from_remote_urls() -> None:
    from specwright.pr import repo_from_remote

    assert repo_from_remote("git@github.com:acme/widgets.git") == "acme/widgets"
    assert repo_from_remote("https://github.com/acme/widgets") == "acme/widgets"
    assert repo_from_remote("https://github.com/acme/wid.gets.git") == "acme/wid.gets"
    assert repo_from_remote("/srv/git/widgets.git") is None


def test_server_down_is_clear(shipped, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    repo, _, slug = shipped
    monkeypatch.setenv("GITHUB_TOKEN", "t0ken-value")
    monkeypatch.setenv("GITHUB_API_URL", "http://127.0.0.1:9")
    result = cli("-C", str(repo), "pr", slug, "--repo", "acme/widgets")
    assert result.code == 2 and "cannot reach the GitHub API at http://127.0.0.1:9" in result.err
    assert catalog.get_spec(Store(resolve_db_path(repo)), slug).status == "done"


class ScriptedGitHub(CannedHTTP):
    """Answers ``(method, path)`` with a scripted ``(status, body, content type)``; a GitHub
    that misbehaves in one specific way."""

    def __init__(self, routes: dict[tuple[str, str], tuple[int, bytes, str]]) -> None:
        not_found = (404, b'{"message": "Not Found"}', "json")
        super().__init__(lambda method, path: routes.get((method, path), not_found))


# GitHub's answer to a second PR for the same head
ALREADY_EXISTS = (
    422,
    b'{"message": "Validation Failed", "errors": [{"message": '
    b'"A pull request already exists for acme:specwright/diamond."}]}',
    "application/json",
)
REPO_OK = (200, b'{"default_branch": "main"}', "application/json")
CASES = {
    "no such repository, or a private one the token cannot see": (
        {},
        "repository acme/widgets: GitHub answered 404 Not Found: no such repository, or the "
        "token cannot see it (check --repo and the token's access); nothing was pushed",
    ),
    "exists but not open": (
        {
            ("GET", "/repos/acme/widgets"): REPO_OK,
            ("POST", "/repos/acme/widgets/pulls"): ALREADY_EXISTS,
            ("GET", "/repos/acme/widgets/pulls"): (200, b"[]", "application/json"),
        },
        "none is open from acme:specwright/diamond",
    ),
    "validation details": (
        {
            ("GET", "/repos/acme/widgets"): REPO_OK,
            ("POST", "/repos/acme/widgets/pulls"): (
                422,
                b'{"message": "Validation Failed", "errors": [{"resource": "PullRequest", '
                b'"code": "custom", "message": "No commits between main and x"}]}',
                "application/json",
            ),
        },
        "GitHub answered 422 Validation Failed; No commits between main and x",
    ),
    "proxy page": (
        {("GET", "/repos/acme/widgets"): (200, b"<html>Sign in</html>", "text/html")},
        "repository acme/widgets: GitHub answered 200 with something that is not JSON (text/html)",
    ),
    "error as a list": (
        {("GET", "/repos/acme/widgets"): (500, b'["boom\\u001b[2J"]', "application/json")},
        "repository acme/widgets: GitHub answered 500 ['boom",
    ),
    "listed without a number": (
        {
            ("GET", "/repos/acme/widgets"): REPO_OK,
            ("POST", "/repos/acme/widgets/pulls"): ALREADY_EXISTS,
            ("GET", "/repos/acme/widgets/pulls"): (200, b'[{"id": 5}]', "application/json"),
        },
        "looking up the open pull request: GitHub's answer has no pull request number",
    ),
    "created without a number": (
        {
            ("GET", "/repos/acme/widgets"): REPO_OK,
            ("POST", "/repos/acme/widgets/pulls"): (201, b'{"ok": true}', "application/json"),
        },
        "GitHub's answer has no pull request number",
    ),
}


def test_github_misbehaving_is_a_one_line_error(shipped, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    repo, _, slug = shipped
    monkeypatch.setenv("GITHUB_TOKEN", "t0ken-value")
    for name, (routes, message) in CASES.items():
        gh = ScriptedGitHub(routes)
        try:
            monkeypatch.setenv("GITHUB_API_URL", gh.url)
            result = cli("-C", str(repo), "pr", slug, "--repo", "acme/widgets")
        finally:
            gh.close()
        assert result.code == 2, (name, result.err)
        lines = result.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("specwright: error: "), (name, lines)
        assert message in lines[0], (name, lines[0])


def test_a_remote_url_with_a_token_is_not_printed(shipped, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    repo, _, slug = shipped
    git(repo, "remote", "set-url", "origin", "https://bot:glpat-SECRET123@gitlab.example/a/b.git")
    monkeypatch.setenv("GITHUB_TOKEN", "t0ken-value")
    result = cli("-C", str(repo), "pr", slug)
    assert result.code == 2 and "SECRET123" not in result.err
    assert "(https://***@gitlab.example/a/b.git) is not a GitHub URL" in result.err
    bad = cli("-C", str(repo), "pr", slug, "--repo", "../../user")
    assert bad.code == 2 and "--repo '../../user': expected OWNER/NAME" in bad.err


def test_pr_body_keeps_its_table_whatever_the_titles_and_spec_say(store: Store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from specwright import pr
    from specwright.drafts import ChunkDraft, replace_chunks

    root = tmp_path / "p"
    root.mkdir()
    project = catalog.ensure_project(store, root)
    spec = catalog.create_spec(store, project, "Evil", body="# Goal\n\n```python\nx = 1\n<!-- hi")
    replace_chunks(store, spec.id, [ChunkDraft("a | b | c", "p"), ChunkDraft("second", "q")])
    text = pr.body(store, catalog.get_spec(store, spec.id))
    table = text.split("### Chunks", 1)[1]
    before = text.split("### Chunks", 1)[0]
    assert before.count("```") % 2 == 0 and before.rfind("-->") > before.rfind("<!--")
    assert "| 1 | a \\| b \\| c | pending | 0 | - | - |" in table
    assert "| 2 | second | pending | 0 | - | - |" in table


def test_pr_body_counts_every_iteration_its_chunk_cost(store: Store, tmp_path: Path) -> None:
    """A chunk that failed its 2 iterations and shipped on the next run's first: the PR said 1
    iteration beside the cost of all 3 (the chunk's row keeps its last run's count)."""
    from specwright import pr
    from specwright.loop.run import run_chunk
    from tests.support_loop import bad_mul, good_mul, make_chunk, make_config, make_repo, scripted

    repo = make_repo(tmp_path / "repo")
    chunk = make_chunk(store, repo)
    for script in (bad_mul(), good_mul()):
        chunk = catalog.get_chunk(store, chunk.id)
        run_chunk(store, make_config(), repo, chunk, executor=scripted(script), max_iterations=2)
    text = pr.body(store, catalog.get_spec(store, chunk.spec_id))
    assert "| 1 | Add mul | shipped | 3 | " in text and "| $0.0300 |" in text, text


def test_pr_body_pings_no_one_from_a_review_or_a_chunk_title(store: Store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A reviewer's or a planner's text with @mentions and issue numbers went in verbatim:
    opening the PR notified those people and linked those issues."""
    from specwright import pr
    from specwright.drafts import ChunkDraft, replace_chunks
    from specwright.model import new_id, utcnow

    root = tmp_path / "p"
    root.mkdir()
    spec = catalog.create_spec(store, catalog.ensure_project(store, root), "Pings")
    replace_chunks(store, spec.id, [ChunkDraft("Fix #12 for @alice", "p")])
    [chunk] = catalog.list_chunks(store, spec.id)
    said = "ok @octocat @acme/core: closes #123, acme/widgets#7 and GH-9; mail a@b.org"
    row = {"id": new_id(), "chunk_id": chunk.id, "reviewer": "llm", "verdict": "SHIP"}
    store.write([Store.op_insert("reviews", {**row, "summary": said, "created_at": utcnow()})])
    text = pr.body(store, catalog.get_spec(store, spec.id))
    row_text = text.split("### Chunks", 1)[1].splitlines()[4]
    z = "&#8203;"
    assert f"Fix #{z}12 for @{z}alice" in row_text
    assert (
        f"ok @{z}octocat @{z}acme/core: closes #{z}123, acme/widgets#{z}7 and GH-{z}9" in row_text
    )
    assert "mail a@b.org" in row_text  # not a mention: left as it is


def test_pr_body_heading_pings_no_one_and_shows_the_spec_title_as_written(
    store: Store, tmp_path: Path
) -> None:
    """The spec's title (a planner's words) went into the body's heading verbatim: its
    @mentions notified people, and an image or a link in it was rendered."""
    from specwright import pr

    root = tmp_path / "p"
    root.mkdir()
    said = "Fix #12 for @alice ![x](http://127.0.0.1/t.png) <img src=x>"
    spec = catalog.create_spec(store, catalog.ensure_project(store, root), said)
    heading = pr.body(store, catalog.get_spec(store, spec.id)).splitlines()[0]
    z = "&#8203;"
    assert (
        heading == f"## Fix #{z}12 for @{z}alice !\\[x\\](http://127.0.0.1/t.png) \\<img src=x\\>"
    )


def test_run_all_pr_with_several_executors_says_what_can_be_done(shipped, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """It said "open one side's pull request later with `specwright pr`", which pushes only the
    spec's own branch: `pr` then said that branch does not exist, `run-all` first."""
    repo, _remote, slug = shipped
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_test_token_123")
    args = ("-C", str(repo), "run-all", slug, "--pr", "--repo", "acme/widgets")
    result = cli(*args, "--executor", "scripted", "--executor", "other")
    assert result.code == 2 and result.err.strip().splitlines() == [
        "specwright: error: --pr: not with several --executor: each runs on a branch of its own, "
        "specwright/diamond@EXECUTOR; push the one you choose and open its pull request on "
        "GitHub (nothing was run)"
    ], result.err
