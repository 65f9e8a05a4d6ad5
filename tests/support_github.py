"""A fake GitHub REST API on 127.0.0.1: just enough of /repos and /pulls, recording requests."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


class FakeGitHub:
    """``with FakeGitHub(token="t") as gh: gh.url`` — requests are kept in ``gh.requests``."""

    def __init__(self, token: str, repo: str = "acme/widgets", default_branch: str = "main"):
        self.token, self.repo, self.default_branch = token, repo, default_branch
        self.requests: list[dict[str, Any]] = []
        self.pulls: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _shown(self, pull: dict[str, Any]) -> dict[str, Any]:
                """A pull as GitHub answers it: ``base`` and ``head`` are objects with a ref."""
                return {**pull, "base": {"ref": pull["base"]}, "head": {"ref": pull["head"]}}

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                fake.requests.append(
                    {
                        "method": method,
                        "path": self.path,
                        "body": body,
                        "auth": self.headers.get("Authorization"),
                    }
                )
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    return self._reply(401, {"message": "Bad credentials"})
                base = f"/repos/{fake.repo}"
                path = self.path.split("?", 1)[0]
                if method == "GET" and path == base:
                    return self._reply(
                        200, {"full_name": fake.repo, "default_branch": fake.default_branch}
                    )
                too_long = [  # GitHub's limits on what a pull request holds
                    f"{key} is too long (maximum is {most} characters)"
                    for key, most in (("title", 256), ("body", 65536))
                    if isinstance(body, dict) and len(body.get(key) or "") > most
                ]
                if method in ("POST", "PATCH") and too_long:
                    errors = [{"resource": "PullRequest", "code": "custom", "message": m} for m in too_long]  # fmt: skip
                    return self._reply(422, {"message": "Validation Failed", "errors": errors})
                if method == "POST" and path == f"{base}/pulls":
                    # one open PR per head and base, as GitHub: another base is another PR
                    if any(
                        (p["head"], p["base"]) == (body["head"], body["base"]) for p in fake.pulls
                    ):
                        return self._reply(
                            422,
                            {
                                "message": "Validation Failed",
                                "errors": [
                                    {
                                        "message": f"A pull request already exists for {body['head']}."
                                    }
                                ],
                            },
                        )
                    number = len(fake.pulls) + 1
                    pull = {
                        **body,
                        "number": number,
                        "html_url": f"https://github.example/{fake.repo}/pull/{number}",
                    }
                    fake.pulls.append(pull)
                    return self._reply(201, self._shown(pull))
                if method == "GET" and path == f"{base}/pulls":
                    query = dict(parse_qsl(urlsplit(self.path).query))
                    head = query.get("head", "").partition(":")[2]  # OWNER:BRANCH
                    found = [
                        self._shown(p)
                        for p in reversed(fake.pulls)  # GitHub's default: newest first
                        if (not head or p["head"] == head)
                        and query.get("base") in (None, p["base"])
                    ]
                    return self._reply(200, found)
                if method == "PATCH" and path.startswith(f"{base}/pulls/"):
                    pull = fake.pulls[int(path.rsplit("/", 1)[1]) - 1]
                    pull.update(body)
                    return self._reply(200, self._shown(pull))
                return self._reply(404, {"message": "Not Found"})

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeGitHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
