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
from tests.test_runner import DIAMOND, _project, _spec, _write_script


@pytest.fixture
def shipped(git_repo: Path, tmp_path: Path) -> tuple[Path, Path, str]:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    git(git_repo, "remote", "add", "origin", str(remote))
    _project(git_repo, _write_script(DIAMOND))
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
