"""Pull requests: push the spec's branch and open (or update) a PR through the GitHub REST API.

The token comes from ``GITHUB_TOKEN`` (or ``GH_TOKEN``); the API base URL from ``--api-url``,
``GITHUB_API_URL`` (GitHub Enterprise: ``https://HOST/api/v3``) or the public default. Without a
token nothing is pushed. The body lists every chunk with its iterations, review and cost.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specwright import gitops
from specwright.errors import SpecwrightError

if TYPE_CHECKING:
    import httpx

    from specwright.model import Spec
    from specwright.store import Store

DEFAULT_API = "https://api.github.com"
_REMOTE = re.compile(r"(?:github\.com|/)[:/](?P<owner>[\w.-]+)/(?P<name>[\w.-]+?)(?:\.git)?/?$")


class PullRequestError(SpecwrightError):
    """The PR could not be opened: no token, no remote, or GitHub said no."""


def repo_from_remote(url: str) -> str | None:
    """``owner/name`` from a GitHub remote URL (ssh or https), else None."""
    if "github" not in url:
        return None
    m = _REMOTE.search(url)
    return f"{m.group('owner')}/{m.group('name')}" if m else None


def body(store: Store, spec: Spec) -> str:
    """The PR description: the spec, then one row per chunk with its loop history and cost."""
    rows = store.query_dicts(
        """
        SELECT c.position, c.title, c.status, c.iterations, c.verdict,
               (SELECT r.summary FROM reviews r WHERE r.chunk_id = c.id
                ORDER BY r.created_at DESC LIMIT 1) AS review,
               (SELECT sum(e.cost_usd) FROM executions e WHERE e.chunk_id = c.id) AS cost
        FROM chunks c WHERE c.spec_id = ? ORDER BY c.position
        """,
        [spec.id],
    )
    total = sum(r["cost"] or 0.0 for r in rows)
    lines = [f"## {spec.title}", ""]
    if spec.body.strip():
        text = spec.body.strip()
        lines += [text if len(text) < 4000 else text[:4000] + "\n\n…", ""]
    lines += [
        "### Chunks",
        "",
        "| # | chunk | status | iterations | review | cost |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        review = (r["review"] or r["verdict"] or "-").replace("|", "\\|").replace("\n", " ")
        cost = f"${r['cost']:.4f}" if r["cost"] is not None else "-"
        lines.append(
            f"| {r['position']} | {r['title']} | {r['status']} | {r['iterations']} | "
            f"{review[:200]} | {cost} |"
        )
    lines += [
        "",
        f"Total agent and review cost: ${total:.4f}",
        "",
        "_Opened by Specwright: each chunk was executed, verified and reviewed in the "
        "Ralph loop; commits carry a `Specwright-Chunk` trailer._",
    ]
    return "\n".join(lines)


def _raise_for(resp: httpx.Response, what: str) -> None:
    if resp.status_code < 400:
        return
    try:
        detail = resp.json().get("message", "")
    except ValueError:
        detail = resp.text[:200]
    if resp.status_code == 401:
        raise PullRequestError(
            f"{what}: GitHub rejected the token (401 {detail}); check GITHUB_TOKEN"
        )
    raise PullRequestError(f"{what}: GitHub answered {resp.status_code} {detail}".rstrip())


def open_pr(
    store: Store,
    project_root: Path | str,
    spec: Spec,
    *,
    remote: str = "origin",
    base: str | None = None,
    repo: str | None = None,
    api_url: str | None = None,
    token: str | None = None,
    draft: bool = False,
    transport: httpx.BaseTransport | None = None,
) -> dict[str, Any]:
    """Push the spec branch and open a PR (or update the open one); returns its number and URL."""
    import httpx

    token = token or os.environ.get("GITHUB_TOKEN") or os.environ.get("GH_TOKEN")
    if not token:
        raise PullRequestError(
            "GITHUB_TOKEN is not set: a token is needed to open a pull request (nothing was pushed)"
        )
    root = Path(project_root)
    branch = gitops.spec_branch(spec.slug)
    if not gitops.branch_exists(root, branch):
        raise PullRequestError(
            f"branch {branch} does not exist: run the spec first (`specwright run-all {spec.slug}`)"
        )
    url = gitops.remote_url(root, remote)
    repo = repo or repo_from_remote(url)
    if not repo or "/" not in repo:
        raise PullRequestError(
            f"remote {remote!r} ({url}) is not a GitHub URL; "
            "name the repository with --repo OWNER/NAME"
        )
    api = (api_url or os.environ.get("GITHUB_API_URL") or DEFAULT_API).rstrip("/")
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": "specwright",
    }
    with httpx.Client(base_url=api, headers=headers, timeout=30, transport=transport) as client:
        try:
            info = client.get(f"/repos/{repo}")
            _raise_for(info, f"repository {repo}")
            base = base or info.json().get("default_branch") or "main"
            gitops.push(root, remote, branch)
            payload = {
                "title": spec.title,
                "head": branch,
                "base": base,
                "body": body(store, spec),
                "draft": draft,
            }
            resp = client.post(f"/repos/{repo}/pulls", json=payload)
            if resp.status_code == 422 and "already exists" in resp.text:
                owner = repo.split("/")[0]
                found = client.get(
                    f"/repos/{repo}/pulls", params={"head": f"{owner}:{branch}", "state": "open"}
                )
                _raise_for(found, "looking up the open pull request")
                number = found.json()[0]["number"]
                resp = client.patch(
                    f"/repos/{repo}/pulls/{number}",
                    json={"title": payload["title"], "body": payload["body"]},
                )
                _raise_for(resp, f"updating pull request #{number}")
                data = resp.json()
                return {
                    "number": data["number"],
                    "url": data.get("html_url"),
                    "updated": True,
                    "head": branch,
                    "base": base,
                }
            _raise_for(resp, f"opening a pull request {branch} -> {base}")
        except httpx.TransportError as exc:
            raise PullRequestError(f"cannot reach the GitHub API at {api}: {exc}") from None
    data = resp.json()
    return {
        "number": data["number"],
        "url": data.get("html_url"),
        "updated": False,
        "head": branch,
        "base": base,
    }
