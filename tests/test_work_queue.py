"""The queue as a demanding user drives it: two items of one project, a worker stopped or killed
mid-item, cancelling an item whose worker is gone, bad input caught when queued, and an idle
worker that leaves the database free for other programs."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
import yaml

from specwright import catalog, queue
from specwright.model import utcnow
from specwright.store import Store, resolve_db_path
from tests.conftest import git
from tests.test_runner import _project, _spec
from tests.test_work_runner import OTHER_THREAD_TAKES_SIGTERM


def _two_specs(repo: Path, sleep_s: float) -> tuple[Store, list[str]]:
    """One project, two specs of one chunk each; each agent sleeps ``sleep_s`` mid-chunk."""
    script = {
        "chunks": {
            f"Make {n}": [{"write": f"{n.lower()}.txt", "content": n}, {"sleep": sleep_s}]
            for n in ("A", "B")
        }
    }
    _project(repo, script)
    store = Store(resolve_db_path(repo))
    project = catalog.ensure_project(store, repo)
    slugs = []
    for n in ("A", "B"):
        spec = catalog.create_spec(store, project, f"Spec {n}")
        catalog.add_chunk(store, spec, f"Make {n}", files=[f"{n.lower()}.txt"])
        slugs.append(spec.slug)
    return store, slugs


def _worker(
    repo: Path, poll: str, start: tuple[str, ...] = ("-m", "specwright")
) -> subprocess.Popen[str]:
    """`specwright worker --poll POLL` in ``repo`` as a process of its own (output merged)."""
    return subprocess.Popen(
        [sys.executable, *start, "-C", str(repo), "worker", "--poll", poll],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait(predicate, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_two_items_of_one_project_run_one_after_the_other(git_repo: Path) -> None:
    store, slugs = _two_specs(git_repo, 1.0)
    ids = [queue.add(store, catalog.get_spec(store, s), git_repo) for s in slugs]
    # concurrency 2: both could start, but they would share the project's work tree
    assert queue.work(store, concurrency=2, once=True, poll_s=0.1) == 2
    rows = {r["id"]: r for r in queue.items(store)}
    assert [rows[i]["status"] for i in ids] == ["done", "done"], [rows[i]["reason"] for i in ids]
    first, second = (rows[i] for i in ids)
    assert second["started_at"] >= first["finished_at"]


def test_a_stopped_worker_queues_its_item_again_and_the_next_one_resumes(
    git_repo: Path,
) -> None:
    script = {
        "chunks": {
            "Make A": [{"write": "a.txt", "content": "A"}],
            "Make B": [{"write": "b.txt", "content": "B"}, {"sleep": 120}],
        }
    }
    _project(git_repo, script)
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": [], "B": ["A"]})
    item = queue.add(store, spec, git_repo)
    proc = _worker(git_repo, "0.2")
    try:
        _wait(
            lambda: (
                store.query("SELECT status FROM chunks WHERE title = 'Make B'") == [("running",)]
            ),
            "chunk B to start",
        )
        proc.send_signal(signal.SIGTERM)  # what systemd or `kill` sends
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, out
    row = queue.items(store)[0]
    assert row["status"] == "queued", row  # not dropped: stopping a worker is not a cancel
    assert "worker stopped; queued again" in row["reason"]
    for table in ("runs", "executions", "chunks"):
        assert store.query(f"SELECT count(*) FROM {table} WHERE status = 'running'") == [(0,)]

    fixed = {"chunks": {**script["chunks"], "Make B": [{"write": "b.txt", "content": "B"}]}}
    (git_repo.parent / "script.yaml").write_text(yaml.safe_dump(fixed))
    assert queue.work(store, once=True, poll_s=0.1) == 1
    row = queue.items(store, None)[0]
    assert (row["id"], row["status"]) == (item, "done"), row


def test_a_live_worker_takes_over_the_item_of_a_worker_that_died(git_repo: Path) -> None:
    store, slugs = _two_specs(git_repo, 0.0)
    stop = threading.Event()
    worker = threading.Thread(
        target=queue.work, args=(store,), kwargs={"poll_s": 0.1, "stop": stop}
    )
    worker.start()
    try:
        time.sleep(0.3)  # the worker is up and idle: what it checked at start is behind it
        item = queue.add(store, catalog.get_spec(store, slugs[0]), git_repo)
        store.update(  # as if another worker had claimed it and been killed with SIGKILL
            "queue",
            {"id": item},
            {"status": "running", "worker_pid": 2**22 + 4321, "host": socket.gethostname()},
        )
        _wait(lambda: queue.items(store, ("done",)) != [], "the orphaned item to be run", 60)
    finally:
        stop.set()
        worker.join(timeout=60)
    assert queue.items(store, None)[0]["reason"] == "its chunk shipped"


def test_cancelling_an_item_whose_worker_is_gone_is_final(git_repo: Path, cli) -> None:  # type: ignore[no-untyped-def]
    store, slugs = _two_specs(git_repo, 0.0)
    dead = {"status": "running", "worker_pid": 2**22 + 4321, "host": socket.gethostname()}
    first = queue.add(store, catalog.get_spec(store, slugs[0]), git_repo)
    store.update("queue", {"id": first}, dead)
    result = cli("-C", str(git_repo), "queue", "cancel", first)
    assert result.code == 0 and result.out.strip().endswith(": cancelled"), result
    # a cancel asked for before the worker died: the item is not run again
    second = queue.add(store, catalog.get_spec(store, slugs[1]), git_repo)
    store.update("queue", {"id": second}, {**dead, "cancel_requested": True})
    assert queue.work(store, once=True, poll_s=0.1) == 0
    assert {r["status"] for r in queue.items(store, None)} == {"cancelled"}
    assert store.query("SELECT count(*) FROM runs") == [(0,)]


def test_queue_add_refuses_what_the_worker_would_fail_on(git_repo: Path, cli) -> None:  # type: ignore[no-untyped-def]
    store, slugs = _two_specs(git_repo, 0.0)
    catalog.create_spec(store, catalog.ensure_project(store, git_repo), "Empty")
    for args, expected in (
        (["--executor", "nope"], "no executor 'nope'"),
        (["--reviewer", "nope"], "no reviewer 'nope'"),
    ):
        result = cli("-C", str(git_repo), "queue", "add", slugs[0], *args)
        assert result.code == 2 and expected in result.err, result
    result = cli("-C", str(git_repo), "queue", "add", "empty")
    assert result.code == 2 and "has no chunks" in result.err, result
    assert queue.items(store, None) == []

    queue.add(store, catalog.get_spec(store, slugs[0]), git_repo)
    assert cli("-C", str(git_repo), "spec", "delete", slugs[0]).code == 0
    assert queue.items(store, None) == []  # its queued item went with it
    # a spec deleted behind Specwright's back (the file is queried directly): failed, said why
    item = queue.add(store, catalog.get_spec(store, slugs[1]), git_repo)
    spec_id = catalog.get_spec(store, slugs[1]).id
    store.release()
    with duckdb.connect(str(store.path)) as conn:
        conn.execute("DELETE FROM chunks WHERE spec_id = ?", [spec_id])
        conn.execute("DELETE FROM specs WHERE id = ?", [spec_id])
    queue.work(store, once=True, poll_s=0.1)
    row = queue.items(store, None)[0]
    assert (row["id"], row["status"]) == (item, "failed")
    assert row["reason"] == "its spec was deleted after it was queued"


def test_an_idle_worker_leaves_the_database_free_for_other_programs(git_repo: Path) -> None:
    store, _ = _two_specs(git_repo, 0.0)
    store.migrate()
    store.release()
    proc = _worker(git_repo, "0.2")
    try:
        assert proc.stdout is not None
        assert "waiting for queued work" in proc.stdout.readline()
        time.sleep(1.0)  # a few polls
        opened = tries = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # a user's own duckdb shell, say
            tries += 1
            try:
                duckdb.connect(str(store.path), read_only=True).close()
                opened += 1
            except duckdb.IOException:
                pass
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    assert opened >= tries // 2, f"the file opened {opened} times out of {tries}"


def test_deleting_a_spec_drops_its_queued_items_and_refuses_while_it_runs(
    git_repo: Path,
    cli,  # type: ignore[no-untyped-def]
) -> None:
    store, (running, waiting) = _two_specs(git_repo, 60.0)
    first = queue.add(store, catalog.get_spec(store, running), git_repo)
    queue.add(store, catalog.get_spec(store, waiting), git_repo)
    stop = threading.Event()
    worker = threading.Thread(
        target=queue.work, args=(store,), kwargs={"poll_s": 0.1, "stop": stop}
    )
    worker.start()
    try:
        _wait(
            lambda: store.query("SELECT count(*) FROM chunks WHERE status = 'running'") == [(1,)],
            "the first spec's chunk to start",
        )
        # the spec a worker runs: not even --force deletes rows a live run writes to
        runs = store.query("SELECT count(*) FROM runs")[0][0]
        result = cli("-C", str(git_repo), "spec", "delete", running, "--force")
        assert result.code != 0
        assert f"spec {running!r} is running: queue item {first[:13]}" in result.err, result
        assert "stop it first" in result.err
        assert store.query("SELECT count(*) FROM specs WHERE slug = ?", [running]) == [(1,)]
        assert store.query("SELECT count(*) FROM runs") == [(runs,)] != [(0,)]
        # the spec waiting its turn: deleted with its queued item, which is never run
        result = cli("-C", str(git_repo), "spec", "delete", waiting)
        assert result.code == 0 and "1 queue" in result.out, result
    finally:
        stop.set()
        worker.join(timeout=60)
    assert [(r["id"], r["status"]) for r in queue.items(store, None)] == [(first, "queued")]
    assert store.query("SELECT count(*) FROM specs") == [(1,)]


@pytest.fixture
def reused_pid() -> Iterator[int]:
    """The pid of a live process started after the item below was claimed: as after a reboot,
    the dead worker's pid given to another process (one that ran since the claim, pid 1 say,
    would be the worker still running, its beats failed)."""
    proc = subprocess.Popen(["sleep", "600"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def _silent_for_hours(store: Store, item: str, pid: int) -> str:
    """The item as a worker left it before a reboot: ``running``, its last beat 3 hours old,
    its pid ``pid`` now another live process's."""
    old = utcnow() - timedelta(hours=3)
    store.update(
        "queue",
        {"id": item},
        {
            "status": "running",
            "worker_pid": pid,
            "host": socket.gethostname(),
            "started_at": old,
            "heartbeat_at": old,
        },
    )
    return f"{old:%H:%M:%S}"


def test_an_item_whose_worker_stopped_beating_long_ago_runs_again(  # type: ignore[no-untyped-def]
    git_repo: Path, cli, reused_pid: int
) -> None:
    store, slugs = _two_specs(git_repo, 0.0)
    first = queue.add(store, catalog.get_spec(store, slugs[0]), git_repo)
    since = _silent_for_hours(store, first, reused_pid)
    second = queue.add(store, catalog.get_spec(store, slugs[1]), git_repo)
    listed = json.loads(cli("-C", str(git_repo), "--json", "queue", "list").out)
    assert listed[0]["reason"] == (
        f"worker {reused_pid} sent no heartbeat since {since}; the next `specwright worker` "
        "queues it again"
    )
    assert queue.requeue_orphans(store) == 1
    assert queue.work(store, once=True, poll_s=0.1) == 2  # the project's later item too
    rows = {r["id"]: r["status"] for r in queue.items(store, None)}
    assert rows == {first: "done", second: "done"}


def test_a_silent_item_is_no_reason_to_keep_its_spec(git_repo: Path, cli, reused_pid: int) -> None:  # type: ignore[no-untyped-def]
    store, slugs = _two_specs(git_repo, 0.0)
    item = queue.add(store, catalog.get_spec(store, slugs[0]), git_repo)
    _silent_for_hours(store, item, reused_pid)
    result = cli("-C", str(git_repo), "spec", "delete", slugs[0])
    assert result.code == 0 and "1 queue" in result.out, result


def test_a_worker_polling_slowly_still_beats_and_its_item_is_not_taken(git_repo: Path) -> None:
    store, slugs = _two_specs(git_repo, 120.0)
    item = queue.add(store, catalog.get_spec(store, slugs[0]), git_repo)
    proc = _worker(git_repo, "600")

    def beat() -> object:
        return store.query("SELECT heartbeat_at FROM queue WHERE id = ?", [item])[0][0]

    try:
        _wait(
            lambda: store.query("SELECT count(*) FROM chunks WHERE status = 'running'") == [(1,)],
            "the chunk to start",
        )
        claimed = beat()
        # a beat at most every 10 s, well inside the 120 s after which an item counts as dead
        _wait(lambda: beat() != claimed, "a heartbeat under --poll 600", 15)
        # its beats failed for a while (the database busy, say) while its run beats on: the
        # item is not taken from it, and the project's next item waits
        old = utcnow() - timedelta(seconds=600)
        store.update("queue", {"id": item}, {"heartbeat_at": old})
        assert queue.requeue_orphans(store) == 0
        assert queue.items(store)[0]["reason"] is None
        queue.add(store, catalog.get_spec(store, slugs[1]), git_repo)
        assert queue.claim(store) is None
        # and its run's beats failed too (a notebook held the database for 10 minutes): it
        # still runs here since it claimed the item, so it keeps it. Held through the
        # transaction, the file lets the worker beat only after the check
        with store.transaction():
            store.update("queue", {"id": item}, {"heartbeat_at": old})
            store.write([Store.op_sql("UPDATE runs SET heartbeat_at = ?", [old])])
            taken = queue.requeue_orphans(store)
            listed = queue.items(store)
        assert taken == 0 and listed[0]["reason"] is None, listed
        assert queue.claim(store) is None  # nor does the project's next item start
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out


def test_an_idle_worker_stops_on_a_sigterm_another_thread_took(git_repo: Path) -> None:
    """It waited for its next poll in one piece (``Event.wait(600)``): a SIGTERM the kernel
    handed to another thread (one of DuckDB's) went unseen for up to ``--poll`` seconds (the
    CI flake of the test above)."""
    _two_specs(git_repo, 0.0)
    proc = _worker(git_repo, "600", start=("-c", OTHER_THREAD_TAKES_SIGTERM))
    try:
        assert proc.stdout is not None
        assert "waiting for queued work" in proc.stdout.readline()
        time.sleep(0.5)  # in its wait
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, out


def _pause_outside_the_database(proc: subprocess.Popen[str], path: Path) -> None:
    """SIGSTOP ``proc`` at a moment it does not hold the database file (a worker paused in the
    middle of a write holds it until it resumes)."""
    deadline = time.monotonic() + 60

    def stopped() -> bool:
        return Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")")[1].split()[0] == "T"

    while True:
        proc.send_signal(signal.SIGSTOP)
        _wait(stopped, "the worker to stop")
        try:
            duckdb.connect(str(path)).close()
            return
        except duckdb.IOException:
            assert time.monotonic() < deadline, "the worker always held the database"
            proc.send_signal(signal.SIGCONT)
            time.sleep(0.05)


def _ends(lines: list[str], item: str) -> list[str]:
    """The lines a worker printed on ending ``item`` (done, failed, queued again, left...)."""
    said = (x.rstrip("\n") for x in lines if x.startswith(f"queue item {item[:13]}: "))
    ends = ("done: ", "failed: ", "queued: ", "cancelled: ", "stopped, left to")
    return [x for x in said if x.split(": ", 1)[1].startswith(ends)]  # not its chunks' progress


def test_a_worker_paused_past_its_heartbeat_gives_up_the_item_another_took(
    git_repo: Path,
) -> None:
    """A worker stopped (SIGSTOP, a suspended laptop) longer than an item's heartbeat lasts has
    its item taken over as dead by a second worker; when it resumes it sees the item is no
    longer its own and stops it, without recording over what the second worker did: the queue
    item, the chunk, the spec branch's commit (it was rolled back to the first one's base)."""
    import os

    store, slugs = _two_specs(git_repo, 60.0)
    item = queue.add(store, catalog.get_spec(store, slugs[0]), git_repo)
    env = {**os.environ, "SPECWRIGHT_LINGER": "0"}
    cmd = [sys.executable, "-m", "specwright", "-C", str(git_repo), "worker", "--poll", "0.2"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    try:
        _wait(
            lambda: store.query("SELECT count(*) FROM chunks WHERE status = 'running'") == [(1,)],
            "the chunk to start",
        )
        # and its agent to have written its file (it then sleeps): paused before that, a loaded
        # machine let it write 'A' over the second worker's 'A2' after the resume
        a = git_repo / "a.txt"
        _wait(lambda: a.exists() and a.read_text() == "A", "the first agent to write a.txt")
        _pause_outside_the_database(proc, store.path)
        old = utcnow() - timedelta(seconds=600)  # as if paused for 10 minutes
        store.update("queue", {"id": item}, {"heartbeat_at": old})
        store.write([Store.op_sql("UPDATE runs SET heartbeat_at = ?", [old])])
        fast = {"chunks": {"Make A": [{"write": "a.txt", "content": "A2"}]}}
        (git_repo.parent / "script.yaml").write_text(yaml.safe_dump(fast))
        assert queue.work(store, once=True, poll_s=0.1) == 1  # a second worker takes it over
        taken = queue.items(store, None)[0]
        assert taken["status"] == "done" and taken["worker_pid"] != proc.pid, taken
        branch = f"specwright/{slugs[0]}"
        shipped = git(git_repo, "rev-parse", branch)

        proc.send_signal(signal.SIGCONT)
        _wait(lambda: _ends(lines, item), "the first worker to end the item", 120)
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        reader.join(timeout=60)
        proc.stdout.close()
    assert proc.returncode == 143, lines
    assert _ends(lines, item) == [
        f"queue item {item[:13]}: stopped, left to the worker that took it"
    ]
    assert queue.items(store, None) == [taken]
    assert store.query("SELECT status FROM chunks WHERE title = 'Make A'") == [("shipped",)]
    assert store.query("SELECT status FROM runs WHERE pid = ? ORDER BY kind", [proc.pid]) == [
        ("interrupted",),
        ("interrupted",),
    ]
    assert git(git_repo, "rev-parse", branch) == shipped
    assert (git_repo / "a.txt").read_text() == "A2" and git(git_repo, "status", "--short") == ""


def test_a_claim_that_meets_a_cancel_of_the_same_item_takes_the_cancel_into_account(
    git_repo: Path,
) -> None:
    # a worker thread and a `queue.cancel` in one process (a notebook, a script): DuckDB aborts
    # the claim that wrote the row the cancel holds; the worker must not die of it
    store, slugs = _two_specs(git_repo, 0.0)
    item = queue.add(store, catalog.get_spec(store, slugs[0]), git_repo)
    got: list[object] = []
    with store.transaction():
        queue.cancel(store, item)  # written, not committed yet
        claimer = threading.Thread(target=lambda: got.append(_claim_or_error(store)))
        claimer.start()
        time.sleep(0.3)  # the claim meets the cancel's uncommitted write
    claimer.join(timeout=30)
    assert got == [None]
    assert [(r["id"], r["status"]) for r in queue.items(store, None)] == [(item, "cancelled")]


def _claim_or_error(store: Store) -> object:
    try:
        return queue.claim(store)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def test_a_cancel_that_finds_the_item_claimed_meanwhile_asks_its_worker_to_stop(
    git_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`queue cancel` read the item queued, a worker claimed it, then the cancel wrote
    'cancelled before it started' over the running item: its worker, finding the row no longer
    its own, stopped the run and left the record to a worker that did not exist."""
    store, slugs = _two_specs(git_repo, 0.0)
    item = queue.add(store, catalog.get_spec(store, slugs[0]), git_repo)
    find, claimed = queue._find, []

    def find_then_a_worker_claims(store_: Store, ref: str) -> dict[str, object]:
        row = find(store_, ref)
        if not claimed:  # a worker takes the item just after the cancel read it
            claimed.append(queue.claim(store_))
        return row

    monkeypatch.setattr(queue, "_find", find_then_a_worker_claims)
    try:
        assert queue.cancel(store, item) == "cancel requested"
    finally:
        queue._mine.discard(item)
    assert claimed and claimed[0] is not None and claimed[0]["id"] == item
    [row] = queue.items(store, None)
    assert (row["status"], row["cancel_requested"]) == ("running", True)


def test_a_worker_started_while_another_process_holds_the_database_waits_for_it(
    git_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It exited at once (exit 2, the lock's error) where the worker's loop waits out a busy
    database: a notebook open on the file when the worker starts must not stop it."""
    store, slugs = _two_specs(git_repo, 0.0)
    item = queue.add(store, catalog.get_spec(store, slugs[0]), git_repo)
    store.release()
    hold = "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
    holder = subprocess.Popen(  # another program with the file open
        [sys.executable, "-c", hold + "sys.stdin.read()", str(store.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    monkeypatch.setenv("SPECWRIGHT_LOCK_TIMEOUT", "0.5")
    procs = [holder]
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        cmd = [sys.executable, "-m", "specwright", "-C", str(git_repo), "worker", "--once"]
        worker = subprocess.Popen(
            [*cmd, "--poll", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        procs.append(worker)
        time.sleep(3)  # the worker meets the lock, more than once
        assert worker.poll() is None, worker.communicate()[0]
        holder.communicate("", timeout=30)  # the other program is done with the file
        out, _ = worker.communicate(timeout=120)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert "locked by another process" in out, out
    assert worker.returncode == 0, out
    assert [(r["id"], r["status"]) for r in queue.items(store, None)] == [(item, "done")], out


def test_a_worker_once_with_a_long_poll_exits_when_its_last_item_ends(git_repo: Path) -> None:
    """`worker --once --poll 60` sat out the whole poll after its item was done."""
    store, slugs = _two_specs(git_repo, 0.0)
    item = queue.add(store, catalog.get_spec(store, slugs[0]), git_repo)
    started = time.monotonic()
    assert queue.work(store, once=True, poll_s=60) == 1
    assert time.monotonic() - started < 30
    assert [(r["id"], r["status"]) for r in queue.items(store, None)] == [(item, "done")]


def test_an_item_whose_project_folder_was_moved_says_so(git_repo: Path) -> None:
    """It failed with "claude executable not found": a folder that is not there has no config,
    and the defaults' executor was tried."""
    store, slugs = _two_specs(git_repo, 0.0)
    item = queue.add(store, catalog.get_spec(store, slugs[0]), git_repo)
    git_repo.rename(git_repo.with_name("moved"))
    assert queue.work(store, once=True, poll_s=0.1) == 1
    [row] = queue.items(store, None)
    assert (row["id"], row["status"]) == (item, "failed")
    assert row["reason"].startswith(f"project folder {git_repo}: no such folder"), row["reason"]
