"""A live worker's item is never taken over as dead because its heartbeats could not be
written: the database held by another program (a notebook's open connection) for minutes."""

from __future__ import annotations

import signal
from datetime import timedelta
from pathlib import Path

from specwright import catalog, queue
from specwright.model import utcnow
from specwright.store import Store
from tests.test_work_queue import _two_specs, _wait, _worker


def test_a_running_worker_whose_beats_failed_for_minutes_keeps_its_item(git_repo: Path) -> None:
    store, slugs = _two_specs(git_repo, 120.0)
    item = queue.add(store, catalog.get_spec(store, slugs[0]), git_repo)
    proc = _worker(git_repo, "0.2")
    try:
        _wait(
            lambda: store.query("SELECT count(*) FROM chunks WHERE status = 'running'") == [(1,)],
            "the chunk to start",
        )
        # as the worker's item and run rows stand when a notebook let go of the database after
        # holding it for 10 minutes: every beat failed. Another worker polls first (the worker
        # cannot beat meanwhile: this process holds the file through the transaction)
        old = utcnow() - timedelta(seconds=600)
        with store.transaction():
            store.update("queue", {"id": item}, {"heartbeat_at": old})
            store.write([Store.op_sql("UPDATE runs SET heartbeat_at = ?", [old])])
            taken = queue.requeue_orphans(store)
            listed = queue.items(store)
        assert taken == 0, listed
        assert listed[0]["status"] == "running" and listed[0]["reason"] is None, listed
        # nor does a second item of its project start in the tree it works in
        queue.add(store, catalog.get_spec(store, slugs[1]), git_repo)
        assert queue.claim(store) is None
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out
    assert queue.items(store)[0]["reason"].startswith("worker stopped; queued again"), out


def test_an_item_its_live_worker_no_longer_runs_is_queued_again_by_that_worker(
    git_repo: Path,
) -> None:
    """The item's end could not be written (the database locked past the timeout): the worker
    runs on, but not that item. It queues the item again itself rather than keep it, and its
    project, busy for as long as it lives."""
    import os
    import socket

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
