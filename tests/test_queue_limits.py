"""The queue meeting an account's limits, as a worker left running for days meets them: a rate
limit that resets in hours, or an account out of credit, must not fail every queued item in
turn."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from specwright import catalog, queue
from specwright.model import utcnow
from specwright.store import Store, resolve_db_path
from tests.conftest import git

RATE_LIMITED = {"chunks": {"*": [{"fail": "usage limit reached", "retry_after_s": 7200}]}}
NO_CREDIT = {"chunks": {"*": [{"fail": "Credit balance is too low", "kind": "billing"}]}}
ON_HOLD = {"chunks": {"*": [{"fail": "This organization has been disabled.", "kind": "account"}]}}
WORKS = {
    "chunks": {f"Make {n}": [{"write": f"out{n}.txt", "content": "done\n"}] for n in (1, 2, 3)}
}


def _two_executors(repo: Path, limited: dict) -> Path:
    """A project whose default executor ``limited`` follows ``limited`` (in ``limited.yaml``,
    returned) and whose executor ``other`` always works."""
    for name, script in (("limited", limited), ("other", WORKS)):
        (repo.parent / f"{name}.yaml").write_text(yaml.safe_dump(script))
    (repo / ".handoff").mkdir()
    (repo / ".handoff" / "config.yaml").write_text(
        "tools:\n  executors:\n"
        + "".join(
            f"    {n}:\n      type: scripted\n      script: {repo.parent / n}.yaml\n"
            for n in ("limited", "other")
        )
        + "defaults:\n  executor: limited\n  reviewer: checks\n  maxIterations: 2\n"
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "specwright config")
    return repo.parent / "limited.yaml"


def _worker_once(repo: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "specwright", "-C", str(repo), "worker", "--once", "--poll", "0.2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done
    return done.stdout


@pytest.mark.parametrize(
    ("script", "said", "wait"),
    [
        (RATE_LIMITED, "rate limited until", 7200),  # the reset the agent said
        (NO_CREDIT, "out of credit, tries again at", 3600),
        (ON_HOLD, "account unusable, tries again at", 3600),
    ],
    ids=["rate_limited", "billing", "account"],
)
def test_an_item_stopped_by_its_executors_limit_waits_and_so_do_its_executors_items(
    git_repo: Path, script: dict, said: str, wait: int
) -> None:
    limited = _two_executors(git_repo, script)
    store = Store(resolve_db_path(git_repo))
    project = catalog.ensure_project(store, git_repo)
    items = []
    for n, executor in ((1, None), (2, None), (3, "other")):
        spec = catalog.create_spec(store, project, f"Spec {n}")
        catalog.add_chunk(store, spec, f"Make {n}", files=[f"out{n}.txt"])
        items.append(queue.add(store, spec, git_repo, executor=executor))
    first, second, other = items
    store.release()

    out = _worker_once(git_repo)
    rows = {r["id"]: r for r in queue.items(store)}
    assert rows[first]["status"] == "queued", rows[first]  # not failed: it resumes later
    assert rows[first]["reason"].startswith(said), rows[first]
    assert "local (executor 'limited'" in rows[first]["reason"], rows[first]
    waits = rows[first]["waits_until"] - utcnow()
    assert timedelta(seconds=wait - 600) < waits <= timedelta(seconds=wait), waits
    # the other item of that executor never called it: it waits for the same reset
    assert rows[second]["status"] == "queued", rows[second]
    assert rows[second]["waits_until"] == rows[first]["waits_until"]
    assert rows[second]["reason"].startswith(f"waits: {said}"), rows[second]
    assert store.query("SELECT count(*) FROM executions WHERE executor = 'limited'") == [(1,)]
    # another executor's item is not held
    assert queue.items(store, ("done",))[0]["id"] == other
    assert "1 other queued item(s) of 'limited' wait too" in out, out
    assert "worker: 2 queued item(s) wait for their executor's limit, the first until" in out

    # once the limit has reset (its time moved back, as the clock would move on)
    limited.write_text(yaml.safe_dump(WORKS))
    store.update("queue", {"status": "queued"}, {"not_before": utcnow() - timedelta(seconds=1)})
    store.release()
    _worker_once(git_repo)
    rows = {r["id"]: r for r in queue.items(store, None)}
    assert [rows[i]["status"] for i in items] == ["done"] * 3, [rows[i]["reason"] for i in items]
    assert rows[first]["waits_until"] is None
