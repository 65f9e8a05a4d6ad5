"""A work queue in the store: hand a run-all to a background worker and keep going.

``add`` puts a spec on the queue; ``work`` (the ``specwright worker`` command) claims queued items
one at a time, or up to ``concurrency`` at once, and runs them with ``run_all``. ``cancel``
drops a queued item or asks the worker to stop a running one (the agent is killed, the run is
recorded as cancelled). Items a dead worker left ``running``, and those of a worker that is
stopped (Ctrl-C, SIGTERM), go back to the queue: run-all resumes where it stopped. Two items of
one project never run at once (they would share its work tree): the second waits.

A worker polls the store; its own polls do not keep the database open between them (see
keeper.py), so other programs can open the file while the worker is idle.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from specwright import catalog
from specwright.agents.orphans import gone_here, pid_alive
from specwright.errors import NotFoundError, SpecwrightError, StoreLockedError, ValidationError
from specwright.model import Spec, new_id, utcnow
from specwright.recovery import STALE_HEARTBEAT_S
from specwright.store import Store

log = logging.getLogger(__name__)

OPTION_KEYS = ("executor", "reviewer", "parallel", "max_iterations")


def add(store: Store, spec: Spec, project_root: Path | str, **options: Any) -> str:
    """Queue a run-all of ``spec``; returns the queue item's id."""
    unknown = set(options) - set(OPTION_KEYS)
    if unknown:
        raise SpecwrightError(f"queue options {sorted(unknown)}: expected {list(OPTION_KEYS)}")
    _check(store, spec, project_root, options)
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


def _check(store: Store, spec: Spec, project_root: Path | str, options: dict[str, Any]) -> None:
    """What would make the worker fail at once, said now rather than when it runs: an unknown
    executor or reviewer, a spec without chunks or with a broken dependency graph."""
    from specwright import config as config_mod
    from specwright.schedule import check_graph

    config = config_mod.load(project_root)
    if options.get("executor") is not None:
        config.executor(options["executor"])
    if options.get("reviewer") is not None:
        config.reviewer(options["reviewer"])
    chunks = catalog.list_chunks(store, spec.id)
    if not chunks:
        raise ValidationError(f"spec {spec.slug!r} has no chunks to run")
    check_graph(chunks)


def items(store: Store, statuses: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Queue items, oldest first, with their spec's slug; an item left ``running`` by a worker
    on this host that is gone (kill -9) says so in its reason."""
    where = ""
    params: list[Any] = []
    if statuses:
        where = f"WHERE q.status IN ({', '.join('?' for _ in statuses)})"
        params = list(statuses)
    rows = store.query_dicts(
        f"SELECT q.id, s.slug AS spec, q.status, q.cancel_requested, q.options, q.run_id, "
        f"q.worker_pid, q.host, q.reason, q.created_at, q.started_at, q.finished_at "
        f"FROM queue q LEFT JOIN specs s ON s.id = q.spec_id {where} ORDER BY q.created_at",
        params,
    )
    for row in rows:
        if row["status"] == "running" and _orphaned(row):
            row["reason"] = (
                f"worker {row['worker_pid']} is gone; the next `specwright worker` queues it again"
            )
    return rows


def _find(store: Store, ref: str) -> dict[str, Any]:
    rows = store.query_dicts(
        "SELECT id, status, worker_pid, host FROM queue WHERE starts_with(id::VARCHAR, ?)",
        [ref],
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
        if _orphaned(row):  # no worker will see the request: cancel it here
            store.update(
                "queue",
                {"id": row["id"]},
                {
                    "status": "cancelled",
                    "cancel_requested": True,
                    "finished_at": utcnow(),
                    "reason": f"cancelled (its worker {row['worker_pid']} was gone)",
                },
            )
            return "cancelled"
        store.update("queue", {"id": row["id"]}, {"cancel_requested": True})
        return "cancel requested"
    raise SpecwrightError(f"queue item {ref!r} is already {row['status']}")


def _orphaned(row: dict[str, Any]) -> bool:
    """A ``running`` item whose worker, on this host, is gone."""
    return gone_here(row["worker_pid"], row["host"])


def requeue_orphans(store: Store) -> int:
    """Items left ``running`` by a worker process that is gone go back to ``queued`` (or to
    ``cancelled``, when a cancel was asked for); returns how many were found."""
    orphans = [
        r
        for r in store.query_dicts(
            "SELECT id, worker_pid, host, cancel_requested FROM queue WHERE status = 'running'"
        )
        if _orphaned(r)
    ]
    for row in orphans:
        why = f"worker {row['worker_pid']} died"
        store.update(
            "queue",
            {"id": row["id"]},
            {"status": "cancelled", "finished_at": utcnow(), "reason": f"cancelled ({why})"}
            if row["cancel_requested"]
            else {"status": "queued", "worker_pid": None, "reason": f"{why}; queued again"},
        )
    return len(orphans)


def _busy_roots(conn: Any) -> set[str]:
    """Project roots on this host with a run-all under way: an item of the queue running in a
    live worker, or a run (a run-all, or one chunk's `specwright run`) started from the command
    line or a notebook by a live process."""
    host = socket.gethostname()
    rows = conn.execute(
        "SELECT project_root, worker_pid FROM queue WHERE status = 'running' AND host = ? "
        "UNION ALL "
        "SELECT p.root, r.pid FROM runs r JOIN specs s ON s.id = r.spec_id "
        "JOIN projects p ON p.id = s.project_id "
        "WHERE r.parent_run_id IS NULL AND r.status = 'running' AND r.host = ? "
        "AND coalesce(r.heartbeat_at, r.started_at) > ?",  # a dead run's pid may be reused
        [host, host, utcnow() - timedelta(seconds=STALE_HEARTBEAT_S)],
    ).fetchall()
    return {str(root) for root, pid in rows if pid_alive(pid)}


def claim(store: Store) -> dict[str, Any] | None:
    """Take the oldest queued item for this process (in one transaction), or None. An item
    whose project has a run-all under way waits: two runs would share its work tree."""
    with store.transaction() as conn:
        busy = _busy_roots(conn)
        row = [
            r
            for r in conn.execute(
                "SELECT id, project_root FROM queue WHERE status = 'queued' ORDER BY created_at"
            ).fetchall()
            if r[1] not in busy
        ]
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
    polls: Store,
) -> None:
    from specwright import config as config_mod
    from specwright.runner import run_all

    cancel = threading.Event()
    asked = threading.Event()  # a `queue cancel` for this item (not the worker stopping)

    def watch() -> None:
        while not cancel.is_set():
            if stop.wait(poll_s):
                cancel.set()
                return
            try:
                row = polls.query("SELECT cancel_requested FROM queue WHERE id = ?", [item["id"]])
                polls.update("queue", {"id": item["id"]}, {"heartbeat_at": utcnow()})
            except SpecwrightError as exc:
                log.warning("queue item %s: %s", item["id"], exc)
                continue
            if row and row[0][0]:
                on_line(f"queue item {item['id'][:13]}: cancel requested")
                asked.set()
                cancel.set()

    watcher = threading.Thread(target=watch, daemon=True, name="queue-watch")
    watcher.start()
    opts = item["options"]
    status, reason, run_id = "failed", "", None
    try:
        try:
            spec = catalog.get_spec(store, item["spec_id"])
        except NotFoundError:
            raise NotFoundError("its spec was deleted after it was queued") from None
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
        values: dict[str, Any] = {"reason": reason[:2000], "run_id": run_id}
        if status == "cancelled" and stop.is_set() and not asked.is_set():
            # the worker was stopped, nobody cancelled the item: it runs again (resuming) on
            # the next worker, as after a worker that died
            status, values["reason"] = "queued", f"worker stopped; queued again ({reason})"[:2000]
            values.update(worker_pid=None, started_at=None)
        else:
            values["finished_at"] = utcnow()
        values["status"] = status
        store.update("queue", {"id": item["id"]}, values)
        on_line(f"queue item {item['id'][:13]}: {status}: {values['reason']}")


def _pending(store: Store) -> bool:
    return bool(store.query("SELECT 1 FROM queue WHERE status = 'queued' LIMIT 1"))


def work(
    store: Store,
    *,
    concurrency: int = 1,
    once: bool = False,
    poll_s: float = 1.0,
    stop: threading.Event | None = None,
    on_line: Callable[[str], None] = lambda line: None,
) -> int:
    """Run queued items until ``stop`` is set (or, with ``once``, until no item is queued or
    running); returns how many items were run. Ctrl-C (KeyboardInterrupt) stops the items under
    way (their runs are recorded cancelled, the items queued again) and is re-raised."""
    if concurrency < 1:
        raise SpecwrightError(f"--concurrency: expected >= 1, got {concurrency}")
    stop = stop or threading.Event()
    # the worker's own polls do not linger: an idle worker would otherwise hold the file for
    # good, and other programs could never open it
    polls = Store(
        store.path, journal_dir=store.journal.root, lock_timeout_s=store.lock_timeout_s, linger_s=0
    )
    running: list[tuple[threading.Thread, threading.Event]] = []
    count = 0
    try:
        while not stop.is_set():
            running = [(t, done) for t, done in running if not done.is_set()]
            item = None
            try:
                requeue_orphans(polls)
                item = claim(polls) if len(running) < concurrency else None
                idle = once and not running and not _pending(polls)
            except StoreLockedError as exc:  # the database busy for long: try again later
                on_line(f"worker: {exc}")
                idle = False
            if item is not None:
                done = threading.Event()
                thread = threading.Thread(
                    target=_item_thread,
                    args=(done, store, item, stop, on_line, poll_s, polls),
                    name=f"queue-{item['id'][:8]}",
                )
                thread.start()
                running.append((thread, done))
                count += 1
                continue
            if idle:
                break
            stop.wait(poll_s)
    except BaseException:
        stop.set()
        if running:
            on_line("worker: stopping; the items under way are stopped and queued again")
        raise
    finally:
        # waited on through events: a Thread.join cut short by Ctrl-C can leave the thread
        # marked stopped on Python 3.11, and the process would exit under a running item
        for _, done in running:
            while not done.wait(0.1):
                pass
    return count


def _item_thread(done: threading.Event, *args: Any) -> None:
    try:
        _run_item(*args)
    finally:
        done.set()
