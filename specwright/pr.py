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
from specwright.errors import SpecwrightError, no_pings, one_line
from specwright.model import cost_text
from specwright.queries import EXEC_SUM, EXEC_UNPRICED, ITERATIONS, TRIES
from specwright.redact import without_password

if TYPE_CHECKING:
    import httpx

    from specwright.model import Spec
    from specwright.store import Store

DEFAULT_API = "https://api.github.com"
_ZWSP = "&#8203;"  # a zero-width space that markdown shows as nothing, as an entity
# what markdown would read as markup in a table cell, as text that shows it as it is (an entity
# for ``&`` and the backtick, so no_pings still sees an @ or # after them)
_SHOWN = {"&": "&amp;", "`": "&#96;", **{c: "\\" + c for c in "\\*_~[]<>|"}}
_MARKUP = re.compile("|".join(map(re.escape, _SHOWN)))
TITLE_MAX = 256  # GitHub refuses a longer pull request title
BODY_MAX = 65536  # and a longer description
_REMOTE = re.compile(r"(?:github\.com|/)[:/](?P<owner>[\w.-]+)/(?P<name>[\w.-]+?)(?:\.git)?/?$")


class PullRequestError(SpecwrightError):
    """The PR could not be opened: no token, no remote, or GitHub said no."""


_REPO = re.compile(r"^(?!\.\.?/)[\w.-]+/(?!\.\.?$)[\w.-]+$")


def _cell(text: str, limit: int = 200) -> str:
    """Text from a planner or reviewer for one cell of a markdown table: one printable line of at
    most ``limit`` characters, shown as written (no column breaks, markup, HTML, images or
    entities), pinging no one."""
    return no_pings(_MARKUP.sub(lambda m: _SHOWN[m.group()], one_line(str(text), limit)), _ZWSP)


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,9}[.)])(?:\s|$)")
_TICKS = re.compile(r"`+")
# what a viewer's browser fetches from any host: a markdown image, an HTML image or media tag
_IMAGE = re.compile(r"!\[|<(?=(?:img|image|picture|source|video|audio|svg)\b)", re.IGNORECASE)


# a link's address, which mentions no one (an npm scope's @ in it is no mention) and which a
# zero-width space would break
_URL = re.compile(r"\]\([^)\s]*|\b(?:https?|ftp)://[^\s<>]*|\bwww\.[^\s<>]*", re.IGNORECASE)


def _quiet(text: str) -> str:
    """Markdown prose that pings no one and links no issue, with images shown as text."""
    shown = _IMAGE.sub(lambda m: "!\\[" if m.group() == "![" else "&lt;", text)
    parts, start = [], 0
    for m in _URL.finditer(shown):
        parts += [no_pings(shown[start : m.start()], _ZWSP), m.group()]
        start = m.end()
    return "".join([*parts, no_pings(shown[start:], _ZWSP)])


def _prose(text: str) -> str:
    """``_quiet`` outside the code spans of ``text`` (a run of backticks to the next run of as
    many): code is shown as written, and pings no one anyway."""
    parts, start, pos = [], 0, 0
    while m := _TICKS.search(text, pos):
        close = re.compile(rf"(?<!`){m.group()}(?!`)").search(text, m.end())
        if close is None:  # literal backticks
            pos = m.end()
            continue
        parts += [_quiet(text[start : m.start()]), text[m.start() : close.end()]]
        start = pos = close.end()
    return "".join([*parts, _quiet(text[start:])])


def _spec_text(markdown: str) -> str:
    """A spec's markdown for the description: outside code blocks and spans, its @mentions
    ping no one, its issue numbers close nothing and its images are text, not fetched from
    their host by each viewer; code as written; an unclosed code fence or HTML comment closed,
    so the text after it (the chunk table) is not swallowed."""
    out: list[str] = []
    prose: list[str] = []
    fence = ""  # the open fence's backticks or tildes
    code = blank_before = False  # in an indented code block; the line before was blank
    last = ""  # the last line of text, to tell a list item's indented paragraph from code
    for line in markdown.splitlines(keepends=True):
        blank = not line.strip()
        m = _FENCE.match(line)
        if fence:
            out.append(line)
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = "" if line.strip() == m.group(1) else fence
            continue
        if m or (
            not blank
            and line.startswith(("    ", "\t"))
            and (code or blank_before)
            and not _LIST_ITEM.match(last)
        ):
            out.append(_prose("".join(prose)))
            prose.clear()
            out.append(line)
            fence, code = (m.group(1), False) if m else ("", True)
        else:
            code = code and blank
            prose.append(line)
            last = line if not blank else last
        blank_before = blank
    text = "".join([*out, _prose("".join(prose))])
    text += f"\n{fence}" if fence else ""
    return text + "\n-->" if text.rfind("<!--") > text.rfind("-->") else text


def repo_from_remote(url: str) -> str | None:
    """``owner/name`` from a GitHub remote URL (ssh or https), else None."""
    if "github" not in url:
        return None
    m = _REMOTE.search(url)
    return f"{m.group('owner')}/{m.group('name')}" if m else None


def body(store: Store, spec: Spec) -> str:
    """The PR description: the spec, then one row per chunk with its loop history and cost."""
    rows = store.query_dicts(
        f"""
        SELECT c.position, c.title, c.status, {ITERATIONS} AS iterations, c.verdict,
               (SELECT r.summary FROM reviews r WHERE r.chunk_id = c.id
                ORDER BY r.created_at DESC LIMIT 1) AS review,
               (SELECT {EXEC_SUM} FROM executions e WHERE e.chunk_id = c.id) AS cost,
               (SELECT count(*) FILTER (WHERE {EXEC_UNPRICED}) FROM executions e
                WHERE e.chunk_id = c.id) AS unpriced
        FROM chunks c LEFT JOIN {TRIES} t ON t.chunk_id = c.id
        WHERE c.spec_id = ? ORDER BY c.position
        """,
        [spec.id],
    )
    # a chunk some of whose calls have no known cost (no price, stopped mid-run) is a lower
    # bound, and one with none known is unknown: never summed as $0
    known = [r["cost"] for r in rows if r["cost"] is not None]
    total = cost_text(sum(known) if known else None, sum(r["unpriced"] for r in rows))
    # the title as text, as the table's cells: a planner's title pings no one, shows no image
    head = [f"## {_cell(spec.title, TITLE_MAX - 1)}", ""]
    if spec.body.strip():
        text = spec.body.strip()
        head += [
            _spec_text(text if len(text) < 4000 else text[:4000])
            + ("\n\n…" if len(text) >= 4000 else ""),
            "",
        ]
    head += [
        "### Chunks",
        "",
        "| # | chunk | status | iterations | review | cost |",
        "|---|---|---|---|---|---|",
    ]
    table = [
        f"| {r['position']} | {_cell(r['title'])} | {r['status']} | {r['iterations']} | "
        f"{_cell(r['review'] or r['verdict'] or '-')} | {cost_text(r['cost'], r['unpriced'])} |"
        for r in rows
    ]
    tail = [
        "",
        f"Total agent and review cost: {total}",
        "",
        "_Opened by Specwright: each chunk was executed, verified and reviewed in the "
        "Ralph loop; commits carry a `Specwright-Chunk` trailer._",
    ]
    # GitHub refuses a longer description: the rows that fit, and a line for the rest
    room = BODY_MAX - len("\n".join(head + tail)) - 200
    shown = 0
    while shown < len(table) and room >= len(table[shown]) + 1:
        room -= len(table[shown]) + 1
        shown += 1
    if shown < len(table):
        more = len(table) - shown
        table = [
            *table[:shown],
            "",
            f"_…and {more} more chunk(s), left out to keep within GitHub's limit on a "
            f"description: `specwright chunk list {spec.slug}` lists them all._",
        ]
    return "\n".join(head + table + tail)


def title(text: str) -> str:
    """A spec's title as a pull request's: one printable line, cut to GitHub's limit."""
    return one_line(text, TITLE_MAX - 1)  # with the ellipsis that marks a cut


def _detail(resp: httpx.Response) -> str:
    """GitHub's message and its validation errors, as one printable, bounded line."""
    try:
        data = resp.json()
    except ValueError:
        data = resp.text
    if isinstance(data, dict):
        raw = data.get("errors")
        errors = raw if isinstance(raw, list) else []
        why = [str(e.get("message") or e.get("code") or "") if isinstance(e, dict) else str(e) for e in errors]  # fmt: skip
        text = "; ".join([str(data.get("message") or ""), *[w for w in why if w]])
    else:
        text = str(data)
    return one_line(text, 300)


def _json(resp: httpx.Response, what: str) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise PullRequestError(
            f"{what}: GitHub answered {resp.status_code} with something that is not JSON "
            f"({resp.headers.get('content-type') or 'no content type'}); check GITHUB_API_URL"
        ) from None


def _pull(resp: httpx.Response, what: str) -> dict[str, Any]:
    data = _json(resp, what)
    if not isinstance(data, dict) or not isinstance(data.get("number"), int):
        raise PullRequestError(
            f"{what}: GitHub's answer has no pull request number: {_detail(resp)}"
        )
    return data


def _raise_for(resp: httpx.Response, what: str) -> None:
    if resp.status_code < 400:
        return
    detail = _detail(resp)
    if resp.status_code == 401:
        raise PullRequestError(
            f"{what}: GitHub rejected the token (401 {detail}); check GITHUB_TOKEN"
        )
    raise PullRequestError(f"{what}: GitHub answered {resp.status_code} {detail}".rstrip())


def env_token() -> str | None:
    """The GitHub token from the environment (``GITHUB_TOKEN``, else ``GH_TOKEN``), without the
    whitespace around it (a newline from a file); one that cannot go into an HTTP header is
    refused without being shown (httpx printed it in its error, or raised a traceback)."""
    for name in ("GITHUB_TOKEN", "GH_TOKEN"):
        token = (os.environ.get(name) or "").strip()
        if not token:
            continue
        if not all(33 <= ord(c) < 127 for c in token):
            raise PullRequestError(
                f"{name}: expected a token of printable ASCII characters without spaces; the "
                "value set has other characters (not shown); nothing was pushed"
            )
        return token
    return None


def github_repo(root: Path | str, remote: str, repo: str | None) -> str:
    """``repo`` (OWNER/NAME) checked, else the one ``remote``'s URL names."""
    url = gitops.remote_url(root, remote)
    if repo is not None and not _REPO.match(repo):
        raise PullRequestError(f"--repo {repo!r}: expected OWNER/NAME")
    repo = repo or repo_from_remote(url)
    if not repo or not _REPO.match(repo):
        raise PullRequestError(
            f"remote {remote!r} ({without_password(url)}) is not a GitHub URL; "
            "name the repository with --repo OWNER/NAME"
        )
    return repo


def api_base(api_url: str | None = None) -> str:
    """The GitHub API base URL: ``api_url``, else ``GITHUB_API_URL``, else the public API; one
    that is not an http(s) URL with a host is refused (it was a traceback from httpx)."""
    import httpx

    api = (api_url or os.environ.get("GITHUB_API_URL") or DEFAULT_API).rstrip("/")
    try:
        parsed = httpx.URL(api)
        usable = parsed.scheme in ("http", "https") and bool(parsed.host)
    except (httpx.InvalidURL, ValueError, TypeError):
        usable = False
    if not usable:
        where = "--api-url" if api_url else "GITHUB_API_URL"
        raise PullRequestError(
            f"{where} {api!r}: expected an http(s) URL with a host (GitHub Enterprise: "
            "https://HOST/api/v3); nothing was pushed"
        )
    return api


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

    token = token or env_token()
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
    repo = github_repo(root, remote, repo)
    api = api_base(api_url)
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": "specwright",
    }
    pushed = updated = False
    with httpx.Client(base_url=api, headers=headers, timeout=30, transport=transport) as client:
        try:
            info = client.get(f"/repos/{repo}")
            if info.status_code == 404:  # GitHub's answer for a private repo the token can't see
                raise PullRequestError(
                    f"repository {repo}: GitHub answered 404 {_detail(info)}: no such repository, "
                    "or the token cannot see it (check --repo and the token's access); nothing "
                    "was pushed"
                )
            _raise_for(info, f"repository {repo}")
            meta = _json(info, f"repository {repo}")
            base = (
                base or (meta.get("default_branch") if isinstance(meta, dict) else None) or "main"
            )
            try:
                gitops.push(root, remote, branch)
            except gitops.GitError as exc:  # git's own words, less its prefix and advice
                why = " ".join(str(exc).split(": ", 1)[-1].split(" hint: ", 1)[0].split())
                raise PullRequestError(
                    f"git refused to push {branch} to {remote!r}, so no pull request was opened "
                    f"or updated: {without_password(why)}"
                ) from None
            pushed = True
            payload = {
                "title": title(spec.title),
                "head": branch,
                "base": base,
                "body": body(store, spec),
                "draft": draft,
            }
            resp = client.post(f"/repos/{repo}/pulls", json=payload)
            if resp.status_code == 422 and "already exists" in resp.text:
                owner = repo.split("/")[0]
                # GitHub keeps one open PR per head and base (another base is another PR)
                query = {"head": f"{owner}:{branch}", "base": base, "state": "open"}
                found = client.get(f"/repos/{repo}/pulls", params=query)
                _raise_for(found, "looking up the open pull request")
                pulls = _json(found, "looking up the open pull request")
                if not isinstance(pulls, list) or not pulls or not isinstance(pulls[0], dict):
                    raise PullRequestError(
                        f"GitHub says a pull request for {branch} already exists, but none is "
                        f"open from {owner}:{branch} into {base} (closed, or from a fork?): "
                        f"{_detail(resp)}; open it by hand or pass --repo"
                    )
                number = pulls[0].get("number")
                if not isinstance(number, int):
                    raise PullRequestError(
                        "looking up the open pull request: GitHub's answer has no pull request "
                        f"number: {_detail(found)}"
                    )
                change = {"title": payload["title"], "body": payload["body"]}
                resp = client.patch(f"/repos/{repo}/pulls/{number}", json=change)
                updated = True
                _raise_for(resp, f"updating pull request #{number}")
                data = _pull(resp, f"updating pull request #{number}")
                ref = data.get("base")  # GitHub's: the base the PR has now
                ref = ref.get("ref") if isinstance(ref, dict) else None
                base = ref if isinstance(ref, str) and ref else base
            else:
                _raise_for(resp, f"opening a pull request {branch} -> {base}")
                data = _pull(resp, f"opening a pull request {branch} -> {base}")
        except httpx.TransportError as exc:
            why = f"cannot reach the GitHub API at {api}: {exc}"
            raise PullRequestError(
                _after_push(why, branch, remote, spec) if pushed else why
            ) from None
        except PullRequestError as exc:
            if not pushed:
                raise
            raise PullRequestError(_after_push(str(exc), branch, remote, spec)) from None
    return {
        "number": data["number"],
        "url": data.get("html_url"),
        "updated": updated,
        "head": branch,
        "base": base,
        "draft": data.get("draft") is True,  # GitHub's word: an open PR's is not changed here
    }


def _after_push(why: str, branch: str, remote: str, spec: Spec) -> str:
    """A failure once the branch is pushed: the push stands, and how to finish."""
    return (
        f"{why}; {branch} was pushed to {remote!r}: `specwright pr {spec.slug}` opens or updates "
        "the pull request without running anything"
    )
