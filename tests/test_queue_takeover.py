"""A worker's item is kept for it while it runs, however old its beat (see
tests/test_work_queue.py), but not once that worker no longer runs it."""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path

from specwright import catalog, queue
from specwright.model import utcnow
from tests.test_work_queue import _two_specs


def test_an_item_its_live_worker_no_longer_runs_is_queued_again_by_that_worker(
    git_repo: Path,
) -> None:
    """The item's end could not be written (the database locked past the timeout): the worker
    runs on, but not that item. It queues the item again itself rather than keep it, and its
    project, busy for as long as it lives."""
    store, slugs = _two_specs(git_repo, 0.0)
    item = queue.add(store, catalog.get_spec(store, slugs[0]), git_repo)
    store.update(  # claimed by this very process, which has no thread running it
        "queue",
        {"id": item},
        {
            "status": "running",
            "worker_pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": utcnow(),  # this process ran since
            "heartbeat_at": utcnow() - timedelta(seconds=600),
        },
    )
    assert queue.work(store, once=True, poll_s=0.1) == 1
    row = queue.items(store, None)[0]
    assert (row["id"], row["status"]) == (item, "done"), row
