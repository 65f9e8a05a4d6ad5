"""A work queue in the store: hand a run-all to a background worker and keep going.

``add`` puts a spec on the queue; ``work`` (the ``specwright worker`` command) claims queued items
one at a time, or up to ``concurrency`` at once, and runs them with ``run_all``. ``cancel``
drops a queued item or asks the worker to stop a running one (the agent is killed, the run is
recorded as cancelled). Items a dead worker left ``running``, and those of a worker that is
stopped (Ctrl-C, SIGTERM), go back to the queue: run-all resumes where it stopped. So does an
item whose run-all a rate limit stopped, once the limit resets (``not_before``); the queued items
of its executor wait until then too, rather than each meeting the limit in turn. A worker
paused past its heartbeat (SIGSTOP, a suspended laptop) whose item was taken over that way stops
it when it resumes and records nothing over it. Two items of one project never run at once (they
would share its work tree): the second waits.

A worker polls the store; its own polls do not keep the database open between them (see
keeper.py), so other programs can open the file while the worker is idle.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from specwright import catalog, interrupts
from specwright.agents.orphans import gone_here, pid_alive, runs_since
from specwright.errors import NotFoundError, SpecwrightError, StoreLockedError, ValidationError
from specwright.model import Spec, new_id, utcnow
from specwright.queue_holds import DUE, due_params, held_until, hold, limit_note, waiting
from specwright.recovery import STALE_HEARTBEAT_S
from specwright.store import Store, is_conflict

log = logging.getLogger(__name__)

OPTION_KEYS = ("executor", "reviewer", "parallel", "max_iterations")
# How often a worker beats for each item it runs, whatever its --poll: well inside
# STALE_HEARTBEAT_S, so a live worker is never taken for a dead one (a few failed beats included)
BEAT_S = 10.0
_mine: set[str] = set()  # the items this process claimed and runs
_adding = threading.Lock()  # one `add` of this process at a time between check and insert


def add(store: Store, spec: Spec, project_root: Path | str, **options: Any) -> str:
    """Queue a run-all of ``spec``; returns the queue item's id."""
    unknown = set(options) - set(OPTION_KEYS)
    if unknown:
        raise SpecwrightError(f"queue options {sorted(unknown)}: expected {list(OPTION_KEYS)}")
    _check(store, spec, project_root, options)
    item = new_id()
    # whether it is queued already, and the insert, under one connection: two `queue add` of
    # one spec at once both passed the check when each opened the file for it, and queued two
    # run-alls. Only one process holds the file at a time; the lock orders this one's threads
    with _adding, store.transaction():
        _refuse_queued_twice(store, spec)
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


def _refuse_queued_twice(store: Store, spec: Spec) -> None:
    # a second run-all of a spec already on the queue found nothing left to run
    same = store.query(
        "SELECT id, status FROM queue WHERE spec_id = ? AND status IN ('queued', 'running') "
        "ORDER BY created_at LIMIT 1",
        [spec.id],
    )
    if same:
        raise ValidationError(
            f"spec {spec.slug!r} is already on the queue as {str(same[0][0])[:13]} "
            f"({same[0][1]}); see `specwright queue list`"
        )


def items(store: Store, statuses: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Queue items, oldest first, with their spec's slug and project folder (two projects can
    have specs of one slug); an item left ``running`` by a worker on this host that is gone
    (kill -9) says so in its reason."""
    where = ""
    params: list[Any] = []
    if statuses:
        where = f"WHERE q.status IN ({', '.join('?' for _ in statuses)})"
        params = list(statuses)
    rows = store.query_dicts(
        f"SELECT q.id, s.slug AS spec, q.status, q.cancel_requested, q.options, q.run_id, "
        f"q.worker_pid, q.host, q.reason, q.created_at, q.started_at, q.finished_at, "
        f"q.heartbeat_at, q.not_before AS waits_until, q.project_root "
        f"FROM queue q LEFT JOIN specs s ON s.id = q.spec_id {where} ORDER BY q.created_at",
        params,
    )
    live = _live_roots(store) if any(r["status"] == "running" for r in rows) else set()
    for row in rows:
        why = _dead(row, live) if row["status"] == "running" else None
        if why:
            row["reason"] = (
                f"worker {row['worker_pid']} {why}; the next `specwright worker` queues it again"
            )
        row["project"] = row.pop("project_root")
        del row["heartbeat_at"]
        row["options"] = json.loads(row["options"]) if row["options"] else {}  # not its text
    return rows


def _find(store: Store, ref: str) -> dict[str, Any]:
    """The item of id or id prefix ``ref``, as spec and chunk ids are found: in any case, and
    a prefix of at least ``MIN_ID_PREFIX`` characters (an empty one, ``$ID`` unset, was the
    start of every id: with one item queued, `queue cancel ""` cancelled it)."""
    key = ref.strip().lower()  # ids are lower-case hex; one copied from elsewhere may not be
    rows = store.query_dicts(
        "SELECT id, status, worker_pid, host, heartbeat_at, started_at, created_at, project_root "
        "FROM queue WHERE id::VARCHAR = ? OR (starts_with(id::VARCHAR, ?) AND length(?) >= ?)",
        [key, key, key, catalog.MIN_ID_PREFIX],
    )
    if not rows and len(key) < catalog.MIN_ID_PREFIX:
        raise NotFoundError(
            f"queue item {ref!r}: expected an item id or a prefix of at least "
            f"{catalog.MIN_ID_PREFIX} characters (see `specwright queue list`)"
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
            {"id": row["id"], "status": "queued"},  # not over a worker's claim since the read
            {
                "status": "cancelled",
                "finished_at": utcnow(),
                "reason": "cancelled before it started",
            },
        )
        row = _find(store, ref)
        if row["status"] == "cancelled":
            return "cancelled"
    if row["status"] == "running":
        why = _dead(row, _live_roots(store))
        if why:  # no worker will see the request: cancel it here
            store.update(
                "queue",
                {"id": row["id"]},
                {
                    "status": "cancelled",
                    "cancel_requested": True,
                    "finished_at": utcnow(),
                    "reason": f"cancelled (its worker {row['worker_pid']} {why})",
                },
            )
            return "cancelled"
        store.update("queue", {"id": row["id"]}, {"cancel_requested": True})
        return "cancel requested"
    raise SpecwrightError(f"queue item {ref!r} is already {row['status']}")


def _dead(row: dict[str, Any], live_roots: set[str]) -> str | None:
    """Why no worker runs a ``running`` item any more ("is gone", ...), or None while one may:
    its worker on this host is gone, or it has not beaten for STALE_HEARTBEAT_S (after a reboot
    the dead worker's pid can be another process's, or the host renamed). An item of this
    process, or one whose project has a run beating in its tree, is alive (a worker whose beats
    failed for a while must not see its item run a second time), and so is one whose worker on
    this host runs (not stopped) since it claimed it: its beats failed, the database held by a
    notebook for minutes, say."""
    if gone_here(row["worker_pid"], row["host"]):
        return "is gone"
    beat = row["heartbeat_at"] or row["started_at"] or row["created_at"]
    if (
        str(row["id"]) in _mine
        or (utcnow() - beat).total_seconds() <= STALE_HEARTBEAT_S
        or str(row["project_root"]) in live_roots
        or _claimer_runs(row)
    ):
        return None
    return f"sent no heartbeat since {beat:%H:%M:%S}"


def _claimer_runs(row: dict[str, Any]) -> bool:
    """Whether the worker that claimed the item runs on this host since it claimed it. This
    process knows its own items (``_mine``): one it claimed and no longer runs (the write of its
    end failed, the database locked) is not kept for it."""
    claimed = row["started_at"]
    here = row["host"] == socket.gethostname() and claimed is not None
    return here and row["worker_pid"] != os.getpid() and runs_since(row["worker_pid"], claimed)


_LIVE_RUNS = (  # top-level runs with a fresh heartbeat, and the project root they work in
    "SELECT p.root, r.pid, r.host FROM runs r JOIN specs s ON s.id = r.spec_id "
    "JOIN projects p ON p.id = s.project_id "
    "WHERE r.parent_run_id IS NULL AND r.status = 'running' "
    "AND coalesce(r.heartbeat_at, r.started_at) > ?"  # a dead run's pid may be reused
)


def _live_roots(store: Store) -> set[str]:
    """Project roots a run beats in (a run of this host: its process is alive too)."""
    host = socket.gethostname()
    rows = store.query(_LIVE_RUNS, [utcnow() - timedelta(seconds=STALE_HEARTBEAT_S)])
    return {str(root) for root, pid, on in rows if on != host or pid_alive(pid)}


def requeue_orphans(store: Store) -> int:
    """Items left ``running`` by a worker process that is gone (or silent: see ``_dead``) go
    back to ``queued`` (or to ``cancelled``, when a cancel was asked for); returns how many."""
    rows = store.query_dicts(
        "SELECT id, worker_pid, host, cancel_requested, heartbeat_at, started_at, created_at, "
        "project_root FROM queue WHERE status = 'running'"
    )
    live = _live_roots(store) if rows else set()
    orphans = [(r, why) for r in rows if (why := _dead(r, live))]
    for row, dead in orphans:
        why = f"worker {row['worker_pid']} {dead}"
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
    live worker (that beats: a dead worker's pid may be reused), or a run (a run-all, or one
    chunk's `specwright run`) started from the command line or a notebook by a live process."""
    host = socket.gethostname()
    fresh = utcnow() - timedelta(seconds=STALE_HEARTBEAT_S)
    items = conn.execute(
        "SELECT project_root, worker_pid, id::VARCHAR, "
        "coalesce(heartbeat_at, started_at, created_at) > ?, started_at "
        "FROM queue WHERE status = 'running' AND host = ?",
        [fresh, host],
    ).fetchall()
    live = [
        (root, pid)
        for root, pid, item, beats, claimed in items
        if beats or item in _mine or (claimed and pid != os.getpid() and runs_since(pid, claimed))
    ]
    runs = conn.execute(f"{_LIVE_RUNS} AND r.host = ?", [fresh, host]).fetchall()
    live += [(root, pid) for root, pid, _ in runs]
    return {str(root) for root, pid in live if pid_alive(pid)}


def claim(store: Store, tries: int = 10) -> dict[str, Any] | None:
    """Take the oldest queued item for this process (in one transaction), or None. An item
    whose project has a run-all under way waits: two runs would share its work tree. A claim
    that met a write of the same row (a `queue cancel` in this process: a notebook, a script)
    is taken again from the start, seeing that write."""
    for attempt in range(1, tries + 1):
        try:
            return _claim(store)
        except Exception as exc:
            if not is_conflict(exc) or attempt == tries:
                raise
            time.sleep(0.01 * attempt)
    return None


def _claim(store: Store) -> dict[str, Any] | None:
    with store.transaction() as conn:
        busy = _busy_roots(conn)
        row = [
            r
            for r in conn.execute(
                f"SELECT id, project_root FROM queue WHERE status = 'queued' AND {DUE} "
                "ORDER BY created_at",
                due_params(),
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
                "reason": None,  # why it was queued again (a worker gone): it runs now
                "not_before": None,
            },
        )
        store.write([op])
    _mine.add(item)
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
    lost = threading.Event()  # another worker took the item over (this one was paused)
    claim_key = {"id": item["id"], "worker_pid": os.getpid(), "host": socket.gethostname()}

    every = min(poll_s, BEAT_S)  # the beat keeps its pace under a long --poll

    def watch() -> None:
        while not cancel.is_set():
            if stop.wait(every):
                cancel.set()
                return
            try:
                row = polls.query(
                    "SELECT cancel_requested, status = 'running' AND worker_pid = ? AND host = ? "
                    "FROM queue WHERE id = ?",
                    [claim_key["worker_pid"], claim_key["host"], item["id"]],
                )
                if row and row[0][1]:
                    polls.update("queue", claim_key, {"heartbeat_at": utcnow()})
            except Exception as exc:  # the next beat retries; the item goes on
                log.warning("queue item %s: %s", item["id"], exc)
                continue
            if not (row and row[0][1]):  # paused past its heartbeat: taken for dead
                on_line(f"queue item {item['id'][:13]}: no longer this worker's; stopping")
                lost.set()
                cancel.set()
            elif row[0][0]:
                on_line(f"queue item {item['id'][:13]}: cancel requested")
                asked.set()
                cancel.set()

    watcher = threading.Thread(target=watch, daemon=True, name="queue-watch")
    watcher.start()
    opts = item["options"]
    status, reason, run_id = "failed", "", None
    # a rate limit or an account out of credit stopped it: executor, until when, which
    limited: tuple[str, datetime, str] | None = None
    try:
        try:
            spec = catalog.get_spec(store, item["spec_id"])
        except NotFoundError:
            raise NotFoundError("its spec was deleted after it was queued") from None
        on_line(f"queue item {item['id'][:13]}: run-all {spec.slug} in {item['project_root']}")
        if not Path(item["project_root"]).is_dir():  # its config would be the defaults' then
            raise SpecwrightError(
                f"project folder {item['project_root']}: no such folder (moved or deleted since "
                "it was queued); queue the spec again from where the project is now"
            )
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
            on_progress=_progress(store, spec, item["id"], on_line),
        )
        run_id, reason = result.run_id, result.reason
        status = {"shipped": "done", "cancelled": "cancelled"}.get(result.status, "failed")
        until = held_until(result.stopped_by, result.resets_at, result.reason)
        if until is not None and result.stopped_by:  # every next item of it would meet it
            limited = (opts.get("executor") or config.defaults.executor, until, result.stopped_by)
        if status == "cancelled" and asked.is_set():  # the run's reason cannot say who asked
            reason = f"asked by `queue cancel`; {reason}"
    except SpecwrightError as exc:
        reason = str(exc)
    except Exception as exc:  # a bug must not take the worker down with the other items
        log.exception("queue item %s crashed", item["id"])
        reason = f"crashed: {type(exc).__name__}: {exc}"
    finally:
        cancel.set()
        watcher.join(timeout=every + 5)
        values: dict[str, Any] = {"reason": reason[:2000], "run_id": run_id}
        if status == "cancelled" and stop.is_set() and not asked.is_set():
            # the worker was stopped, nobody cancelled the item: it runs again (resuming) on
            # the next worker, as after a worker that died
            status, values["reason"] = "queued", f"worker stopped; queued again ({reason})"[:2000]
            values.update(worker_pid=None, started_at=None)
        elif limited is not None and status == "failed":  # it resumes once the wait is over
            status, values["reason"] = (
                "queued",
                f"{limit_note(*limited)}; it waits, then run-all resumes",
            )
            values.update(worker_pid=None, started_at=None, not_before=limited[1])
        else:
            values["finished_at"] = utcnow()
        values["status"] = status
        _mine.discard(str(item["id"]))
        if lost.is_set():  # what the other worker records stays
            on_line(f"queue item {item['id'][:13]}: stopped, left to the worker that took it")
        else:  # keyed by the claim: nothing written if another worker claimed it meanwhile
            store.update("queue", claim_key, values)
            on_line(f"queue item {item['id'][:13]}: {status}: {values['reason']}")
            if limited is not None and status == "queued":
                held = hold(store, *limited)
                if held:
                    on_line(f"worker: {held} other queued item(s) of {limited[0]!r} wait too")


# what a worker says of an item's run-all as it goes: each chunk's start, attempts, pauses and
# end (not every tool call: several items may be under way)
_SAID = ("chunk-start", "chunk-done", "blocked", "skip", "iteration", "pause", "merge", "conflict")


def _progress(store: Store, spec: Spec, item: str, on_line: Callable[[str], None]) -> Any:
    """The ``on_progress`` of an item's run-all: its chunks' steps as lines of the worker."""
    positions = {c.id: c.position for c in catalog.list_chunks(store, spec.id)}

    def said(p: Any) -> None:
        if p.kind in _SAID:
            where = f"[{positions[p.chunk_id]}] " if p.kind in ("iteration", "pause") else ""
            on_line(
                f"queue item {item[:13]}: {where if p.chunk_id in positions else ''}{p.message}"
            )

    return said


def _pending(store: Store) -> bool:
    return bool(
        store.query(f"SELECT 1 FROM queue WHERE status = 'queued' AND {DUE} LIMIT 1", due_params())
    )


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
    journal = _journal_root(store, stop, poll_s, on_line)
    if journal is None:  # stopped while the database was busy
        return 0
    # the worker's own polls do not linger: an idle worker would otherwise hold the file for
    # good, and other programs could never open it
    polls = Store(store.path, journal_dir=journal, lock_timeout_s=store.lock_timeout_s, linger_s=0)
    running: list[tuple[threading.Thread, threading.Event]] = []
    ended = threading.Event()  # an item finished: its slot is free, and --once may be done
    count = 0
    try:
        while not stop.is_set():
            ended.clear()
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
                    args=(done, ended, store, item, stop, on_line, poll_s, polls),
                    name=f"queue-{item['id'][:8]}",
                )
                thread.start()
                running.append((thread, done))
                count += 1
                continue
            if idle:
                held = waiting(polls)
                if held:  # --once leaves them: say so, not just how many it ran
                    on_line(f"worker: {held}; a worker running then runs them")
                break
            _nap(stop, ended, poll_s)
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


def _journal_root(
    store: Store, stop: threading.Event, poll_s: float, on_line: Callable[[str], None]
) -> Path | None:
    """The database's journal folder (read from the file), waited for while another process
    holds the file, as the worker waits for it between polls; None if stopped meanwhile."""
    while not stop.is_set():
        try:
            return store.journal.root
        except StoreLockedError as exc:
            on_line(f"worker: {exc}")
            interrupts.wait_for(stop, poll_s)
    return None


def _nap(stop: threading.Event, ended: threading.Event, poll_s: float) -> None:
    """Wait ``poll_s`` between polls, less when the worker is stopped or an item ends (a worker
    --once --poll 60 sat a minute after its last item); in slices: SIGTERM reaches the main
    thread."""
    deadline = time.monotonic() + poll_s
    while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
        if ended.wait(min(left, interrupts.SLICE_S)):
            return


def _item_thread(done: threading.Event, ended: threading.Event, *args: Any) -> None:
    try:
        _run_item(*args)
    finally:
        done.set()
        ended.set()
