"""A work queue in the store: hand a run-all to a background worker and keep going.

``add`` puts a spec on the queue; ``work`` (the ``specwright worker`` command) claims queued items
one at a time, or up to ``concurrency`` at once, and runs them with ``run_all``. ``cancel``
drops a queued item or asks the worker to stop a running one (the agent is killed, the run is
recorded as cancelled). Items a dead worker left ``running`` go back to the queue: run-all
resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from specwright import catalog
from specwright.agents.orphans import pid_alive
from specwright.errors import NotFoundError, SpecwrightError
from specwright.model import Spec, new_id, utcnow
from specwright.store import Store

log = logging.getLogger(__name__)

OPTION_KEYS = ("executor", "reviewer", "parallel", "max_iterations")


def add(store: Store, spec: Spec, project_root: Path | str, **options: Any) -> str:
    """Queue a run-all of ``spec``; returns the queue item's id."""
    unknown = set(options) - set(OPTION_KEYS)
    if unknown:
        raise SpecwrightError(f"queue options {sorted(unknown)}: expected {list(OPTION_KEYS)}")
    item = new_id()
    store.insert(
        "queue",
        {
            "id": item,
            "spec_id": spec.id,
            "project_root": str(Path(project_root).resolve()),
            "options": {k: v for k, v in options.items() if v is not None},
            "status": "queued",
            "cancel_requested": False,
            "created_at": utcnow(),
        },
    )
    return item


def items(store: Store, statuses: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Queue items, oldest first, with their spec's slug."""
    where = ""
    params: list[Any] = []
    if statuses:
        where = f"WHERE q.status IN ({', '.join('?' for _ in statuses)})"
        params = list(statuses)
    return store.query_dicts(
        f"SELECT q.id, s.slug AS spec, q.status, q.cancel_requested, q.options, q.run_id, "
        f"q.worker_pid, q.reason, q.created_at, q.started_at, q.finished_at "
        f"FROM queue q LEFT JOIN specs s ON s.id = q.spec_id {where} ORDER BY q.created_at",
        params,
    )


def _find(store: Store, ref: str) -> dict[str, Any]:
    rows = store.query_dicts(
        "SELECT id, status FROM queue WHERE starts_with(id::VARCHAR, ?)", [ref]
    )
    if not rows:
        raise NotFoundError(f"queue item {ref!r}: no such item (see `specwright queue list`)")
    if len(rows) > 1:
        raise NotFoundError(f"queue item {ref!r}: ambiguous, matches {len(rows)} items")
    return rows[0]


def cancel(store: Store, ref: str) -> str:
    """Cancel a queued item, or ask its worker to stop a running one; returns the new state."""
    row = _find(store, ref)
    if row["status"] == "queued":
        store.update(
            "queue",
            {"id": row["id"]},
            {
                "status": "cancelled",
                "finished_at": utcnow(),
                "reason": "cancelled before it started",
            },
        )
        return "cancelled"
    if row["status"] == "running":
        store.update("queue", {"id": row["id"]}, {"cancel_requested": True})
        return "cancel requested"
    raise SpecwrightError(f"queue item {ref!r} is already {row['status']}")


def requeue_orphans(store: Store) -> int:
    """Items left ``running`` by a worker process that is gone go back to ``queued``."""
    host = socket.gethostname()
    orphans = [
        r["id"]
        for r in store.query_dicts(
            "SELECT id, worker_pid, host FROM queue WHERE status = 'running'"
        )
        if r["host"] == host and not pid_alive(r["worker_pid"])
    ]
    for item in orphans:
        store.update(
            "queue",
            {"id": item},
            {"status": "queued", "worker_pid": None, "reason": "worker died; queued again"},
        )
    return len(orphans)


def claim(store: Store) -> dict[str, Any] | None:
    """Take the oldest queued item for this process (in one transaction), or None."""
    with store.transaction() as conn:
        row = conn.execute(
            "SELECT id FROM queue WHERE status = 'queued' ORDER BY created_at LIMIT 1"
        ).fetchall()
        if not row:
            return None
        item = str(row[0][0])
        now = utcnow()
        op = Store.op_update(
            "queue",
            {"id": item},
            {
                "status": "running",
                "worker_pid": os.getpid(),
                "host": socket.gethostname(),
                "started_at": now,
                "heartbeat_at": now,
            },
        )
        store.write([op])
    got = store.query_dicts("SELECT * FROM queue WHERE id = ?", [item])[0]
    got["options"] = json.loads(got["options"]) if got["options"] else {}
    return got


def _run_item(
    store: Store,
    item: dict[str, Any],
    stop: threading.Event,
    on_line: Callable[[str], None],
    poll_s: float,
) -> None:
    from specwright import config as config_mod
    from specwright.runner import run_all

    cancel = threading.Event()

    def watch() -> None:
        while not cancel.is_set():
            if stop.wait(poll_s):
                cancel.set()
                return
            try:
                row = store.query("SELECT cancel_requested FROM queue WHERE id = ?", [item["id"]])
                store.update("queue", {"id": item["id"]}, {"heartbeat_at": utcnow()})
            except SpecwrightError as exc:
                log.warning("queue item %s: %s", item["id"], exc)
                continue
            if row and row[0][0]:
                on_line(f"queue item {item['id'][:13]}: cancel requested")
                cancel.set()

    watcher = threading.Thread(target=watch, daemon=True, name="queue-watch")
    watcher.start()
    opts = item["options"]
    status, reason, run_id = "failed", "", None
    try:
        spec = catalog.get_spec(store, item["spec_id"])
        on_line(f"queue item {item['id'][:13]}: run-all {spec.slug} in {item['project_root']}")
        config = config_mod.load(item["project_root"])
        result = run_all(
            store,
            config,
            item["project_root"],
            spec,
            executor_name=opts.get("executor"),
            reviewer_name=opts.get("reviewer"),
            parallel=opts.get("parallel"),
            max_iterations=opts.get("max_iterations"),
            cancel=cancel,
        )
        run_id, reason = result.run_id, result.reason
        status = {"shipped": "done", "cancelled": "cancelled"}.get(result.status, "failed")
    except SpecwrightError as exc:
        reason = str(exc)
    except Exception as exc:  # a bug must not take the worker down with the other items
        log.exception("queue item %s crashed", item["id"])
        reason = f"crashed: {type(exc).__name__}: {exc}"
    finally:
        cancel.set()
        watcher.join(timeout=poll_s + 5)
        store.update(
            "queue",
            {"id": item["id"]},
            {"status": status, "reason": reason[:2000], "run_id": run_id, "finished_at": utcnow()},
        )
        on_line(f"queue item {item['id'][:13]}: {status}: {reason}")


def work(
    store: Store,
    *,
    concurrency: int = 1,
    once: bool = False,
    poll_s: float = 1.0,
    stop: threading.Event | None = None,
    on_line: Callable[[str], None] = lambda line: None,
) -> int:
    """Run queued items until ``stop`` is set (or, with ``once``, until the queue is empty);
    returns how many items were run."""
    if concurrency < 1:
        raise SpecwrightError(f"--concurrency: expected >= 1, got {concurrency}")
    stop = stop or threading.Event()
    requeue_orphans(store)
    running: list[threading.Thread] = []
    count = 0
    while not stop.is_set():
        running = [t for t in running if t.is_alive()]
        item = claim(store) if len(running) < concurrency else None
        if item is not None:
            thread = threading.Thread(
                target=_run_item,
                args=(store, item, stop, on_line, poll_s),
                name=f"queue-{item['id'][:8]}",
            )
            thread.start()
            running.append(thread)
            count += 1
            continue
        if once and not running:
            break
        time.sleep(poll_s)
    for thread in running:
        thread.join()
    return count
