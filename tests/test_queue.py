"""The work queue: add, list, cancel, and a real worker process running queued run-alls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from specwright import catalog, queue
from specwright.store import Store, resolve_db_path
from tests.test_runner import DIAMOND, _project, _spec, _write_script


def _worker(repo: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "specwright", "-C", str(repo), "worker", "--poll", "0.2", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_worker_runs_queued_items_and_skips_cancelled(git_repo: Path, cli) -> None:  # type: ignore[no-untyped-def]
    _project(git_repo, _write_script(DIAMOND))
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, DIAMOND)
    other = catalog.create_spec(store, catalog.ensure_project(store, git_repo), "Other")
    catalog.add_chunk(store, other, "Make A", files=["a.txt"])
    add = ("-C", str(git_repo), "--json", "queue", "add")
    first = json.loads(cli(*add, spec.slug, "--max-iterations", "3").out)
    second = json.loads(cli("-C", str(git_repo), "--json", "queue", "add", "other").out)
    assert (
        cli("-C", str(git_repo), "queue", "cancel", second["id"][:13])
        .out.strip()
        .endswith("cancelled")
    )
    listed = json.loads(cli("-C", str(git_repo), "--json", "queue", "list").out)
    assert [r["status"] for r in listed] == ["queued"]
    assert listed[0]["options"] == {"max_iterations": 3}  # an object, not its JSON text

    proc = _worker(git_repo, "--once")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    # which database it waits on: in the wrong folder it would wait on another one
    assert f"waiting for queued work in {store.path} (from SPECWRIGHT_DB)" in out, out
    assert "ran 1 item(s)" in out
    rows = {r["id"]: r for r in queue.items(store)}
    assert rows[first["id"]]["status"] == "done"
    assert rows[first["id"]]["reason"] == "all 4 chunks shipped"
    assert rows[second["id"]]["status"] == "cancelled"
    run = store.query("SELECT status FROM runs WHERE id = ?", [rows[first["id"]]["run_id"]])
    assert run == [("shipped",)]


def test_cancel_stops_a_running_item(git_repo: Path, cli) -> None:  # type: ignore[no-untyped-def]
    script = {
        "chunks": {"Make A": [{"write": "a.txt", "content": "A"}, {"say": "slow"}, {"sleep": 120}]}
    }
    _project(git_repo, script)
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": []})
    item = queue.add(store, spec, git_repo)
    proc = _worker(git_repo, "--once")
    try:
        deadline = time.monotonic() + 120
        while queue.items(store, ("running",)) == [] or not list(
            (store.journal.root / "executions").glob("*.jsonl")
        ):
            assert time.monotonic() < deadline, "the worker never started the item"
            time.sleep(0.2)
        time.sleep(1.0)
        assert (
            cli("-C", str(git_repo), "queue", "cancel", item)
            .out.strip()
            .endswith("cancel requested")
        )
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    row = queue.items(store)[0]
    assert row["status"] == "cancelled", row
    # who stopped it: the run's own reason is only "0/1 chunks shipped"
    assert row["reason"] == "asked by `queue cancel`; 0/1 chunks shipped", row
    assert f"queue item {item[:13]}: cancelled: asked by `queue cancel`; " in out, out
    assert store.query("SELECT count(*) FROM runs WHERE status = 'running'")[0][0] == 0
    assert (git_repo / "a.txt").exists() is False  # the cancelled attempt was rolled back


def test_orphaned_running_item_is_queued_again(git_repo: Path) -> None:
    _project(git_repo, _write_script({"A": []}))
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": []})
    item = queue.add(store, spec, git_repo)
    store.update(
        "queue",
        {"id": item},
        {
            "status": "running",
            "worker_pid": 2**22 + 12345,
            "host": __import__("socket").gethostname(),
        },
    )
    # until a worker queues it again, the list says its worker is gone (not just "running")
    listed = queue.items(store)[0]
    assert listed["status"] == "running"
    assert listed["reason"] == (
        f"worker {2**22 + 12345} is gone; the next `specwright worker` queues it again"
    )
    assert queue.requeue_orphans(store) == 1
    assert queue.items(store)[0]["status"] == "queued"
    # claimed again, it runs: the list no longer says it was queued again
    assert queue.claim(store) is not None
    assert [(r["status"], r["reason"]) for r in queue.items(store)] == [("running", None)]
    store.update("queue", {"id": item}, {"status": "queued"})  # left for the worker below
    queue._mine.discard(item)
    assert queue.work(store, once=True, poll_s=0.1) == 1
    assert queue.items(store, None)[0]["status"] == "done"


def test_unknown_item_and_bad_options_are_clear(git_repo: Path, cli) -> None:  # type: ignore[no-untyped-def]
    _project(git_repo, _write_script({"A": []}))
    assert cli("-C", str(git_repo), "db", "migrate").code == 0
    result = cli("-C", str(git_repo), "queue", "cancel", "0000abcd")
    assert result.code == 2 and "queue item '0000abcd': no such item" in result.err
    for poll in (
        "0",
        "-5",
        "nan",
        "0.01",
    ):  # 0.01: half a CPU polling the database  # a worker that never waits would spin a CPU for nothing
        result = cli("-C", str(git_repo), "worker", "--once", "--poll", poll)
        said = f"--poll: expected a number of seconds from 0.1 to 3600, got {poll!r}"
        assert result.code == 2 and said in result.err, result


def test_a_worker_in_a_folder_without_a_database_refuses_to_wait_on_an_empty_one(
    tmp_path: Path,
    cli,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SPECWRIGHT_DB", raising=False)  # the project's own database
    # started in the wrong folder, it made data/specwright.duckdb there and waited for good on
    # a queue nobody could fill, while the project's items waited for a worker
    result = cli("-C", str(tmp_path), "worker", "--once", "--poll", "0.1")
    assert result.code == 2, result
    assert "no database yet" in result.err and "specwright init" in result.err
    assert "waiting for queued work" not in result.out
    assert not (tmp_path / "data").exists()


def test_queue_list_says_which_project_each_item_is_of(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """Two projects on one database with a spec of one slug each: the list showed two rows
    alike, and nothing said which item would run in which folder."""
    from tests.conftest import git

    store = Store(resolve_db_path(tmp_path))  # SPECWRIGHT_DB: one database for both
    roots = [tmp_path / "one", tmp_path / "two"]
    for root in roots:
        root.mkdir()
        git(root, "init", "-q", "-b", "main")
        _project(root, _write_script({"A": []}))
        spec = catalog.create_spec(store, catalog.ensure_project(store, root), "Login")
        catalog.add_chunk(store, spec, "Make A", files=["a.txt"])
        assert cli("-C", str(root), "queue", "add", "login").code == 0
    listed = json.loads(cli("--json", "queue", "list").out)
    assert [(r["spec"], r["project"]) for r in listed] == [("login", str(r)) for r in roots]
    table = cli("queue", "list").out.splitlines()
    assert "PROJECT" in table[0]  # a long path by its end, where the two differ
    assert [line.split()[2][-4:] for line in table[1:]] == ["/one", "/two"], table


def test_queue_list_says_which_zone_its_times_are_in(git_repo: Path, cli, tokyo) -> None:  # type: ignore[no-untyped-def]
    """The table showed the store's UTC times with no label: in Tokyo, an item queued a
    minute ago read as queued nine hours before. The table shows local time with its offset;
    --json, ISO 8601 with the offset (it had none)."""
    from datetime import UTC, datetime, timedelta

    _project(git_repo, _write_script({"A": []}))
    store = Store(resolve_db_path(git_repo))
    spec = catalog.create_spec(store, catalog.ensure_project(store, git_repo), "Zones")
    catalog.add_chunk(store, spec, "Make A", files=["a.txt"])
    item = queue.add(store, spec, git_repo)
    at = datetime(2026, 1, 2, 23, 30, 5)  # UTC, as the store keeps it: 08:30 next day in Tokyo
    store.update("queue", {"id": item}, {"created_at": at})
    [row] = json.loads(cli("-C", str(git_repo), "--json", "queue", "list").out)
    assert row["created_at"] == "2026-01-02T23:30:05+00:00"
    assert datetime.fromisoformat(row["created_at"]) == at.replace(tzinfo=UTC)
    table = cli("-C", str(git_repo), "queue", "list").out.splitlines()
    assert "  2026-01-03 08:30:05 +09:00  " in table[1], table
    assert datetime.now(UTC).astimezone().utcoffset() == timedelta(hours=9)


def test_cancel_takes_no_empty_or_short_prefix_and_an_id_in_any_case(git_repo: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """`queue cancel "$ID"` with ID unset cancelled the only queued item: an empty prefix is the
    start of every id (so is `0`, of every id made these years). An id pasted in upper case
    said 'no such item'."""
    _project(git_repo, _write_script({"A": []}))
    store = Store(resolve_db_path(git_repo))
    spec = catalog.create_spec(store, catalog.ensure_project(store, git_repo), "One")
    catalog.add_chunk(store, spec, "Make A", files=["a.txt"])
    item = queue.add(store, spec, git_repo)
    for ref in ("", "0", "01"):
        result = cli("-C", str(git_repo), "queue", "cancel", ref)
        assert result.code == 2 and result.err.strip() == (
            f"specwright: error: queue item {ref!r}: expected an item id or a prefix of at least "
            "4 characters (see `specwright queue list`)"
        ), result.err
        assert [r["status"] for r in queue.items(store)] == ["queued"]
    assert cli("-C", str(git_repo), "queue", "cancel", item[:13].upper()).code == 0
    assert [r["status"] for r in queue.items(store, None)] == ["cancelled"]


def test_a_spec_already_queued_is_not_queued_twice(git_repo: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """Two `queue add` of one spec queued two run-alls; the second found nothing to run."""
    _project(git_repo, _write_script({"A": []}))
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": []})
    add = ("-C", str(git_repo), "--json", "queue", "add", spec.slug)
    first = json.loads(cli(*add).out)["id"]
    again = cli(*add)
    assert again.code == 2, again
    assert f"already on the queue as {first[:13]} (queued)" in again.err
    assert len(again.err.strip().splitlines()) == 1
    store.update("queue", {"id": first}, {"status": "running"})
    assert "(running)" in cli(*add).err
    assert [r["status"] for r in queue.items(store)] == ["running"]
    store.update("queue", {"id": first}, {"status": "done"})  # a finished one is no bar
    assert cli(*add).code == 0


# `queue add` of process A, stopped between its "already queued?" check and its insert until the
# file GO exists (PAUSED says it got there); SPECWRIGHT_LINGER=0: A holds the database only
# while it works on it, not between two uses
_PAUSED_ADD = """
import sys, time
from pathlib import Path
from specwright import queue
from specwright.cli import main

paused, go, repo, slug = sys.argv[1:]
now = queue.utcnow

def stopped():
    Path(paused).touch()
    while not Path(go).exists():
        time.sleep(0.01)
    return now()

queue.utcnow = stopped
sys.exit(main(["-C", repo, "queue", "add", slug]))
"""


def test_two_queue_adds_at_once_queue_the_spec_once(git_repo: Path, tmp_path: Path) -> None:
    """Two `queue add` of one spec at the same instant could both pass the "already queued"
    check (each opened the database for it), and queued two run-alls. Here process A is
    stopped right after its check while process B adds the same spec: B must wait for A's
    item and be refused, not queue a second one."""
    from specwright import keeper

    _project(git_repo, _write_script({"A": []}))
    db = resolve_db_path(git_repo)
    store = Store(db)
    spec = _spec(store, git_repo, {"A": []})
    keeper.close()  # this process lets go of the file
    paused, go = tmp_path / "paused", tmp_path / "go"
    env = {**os.environ, "SPECWRIGHT_LINGER": "0"}
    args = [str(paused), str(go), str(git_repo), spec.slug]
    a = subprocess.Popen(
        [sys.executable, "-c", _PAUSED_ADD, *args], env=env, stderr=subprocess.PIPE, text=True
    )
    b: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 120  # a guard against a hang, not a measure
        while not paused.exists():
            assert a.poll() is None, a.communicate()[1]
            assert time.monotonic() < deadline, "process A never reached its insert"
            time.sleep(0.01)
        b = subprocess.Popen(
            [sys.executable, "-m", "specwright", "-C", str(git_repo), "queue", "add", spec.slug],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        # B either finishes while A is stopped (A holds nothing: the race) or waits for the
        # file A holds (its marker says so); then A goes on
        waits = keeper.wait_dir(db.resolve())
        while b.poll() is None and not any(
            p.name.startswith(f"{b.pid}-") for p in (waits.glob("*") if waits.is_dir() else [])
        ):
            assert time.monotonic() < deadline, "process B neither finished nor waited"
            time.sleep(0.01)
        go.touch()
        a_err, b_err = a.communicate(timeout=120)[1], b.communicate(timeout=120)[1]
    finally:
        for proc in (a, b):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert a.returncode == 0, a_err
    assert b.returncode == 2 and "is already on the queue as" in b_err, b_err
    assert [r["status"] for r in queue.items(store)] == ["queued"]


def test_a_worker_says_each_chunk_of_its_item_as_it_goes(git_repo: Path) -> None:
    """Left running for hours, a worker said when an item began and ended, nothing between."""
    script = {
        "chunks": {
            "Make A": [{"write": "a.txt", "content": "A"}],
            # the first attempt changes none of its files: rejected, then a second attempt
            "Make B": {"attempts": [[{"say": "thinking"}], [{"write": "b.txt", "content": "B"}]]},
        }
    }
    _project(git_repo, script)
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": [], "B": ["A"]})
    item = queue.add(store, spec, git_repo)[:13]
    store.release()
    proc = _worker(git_repo, "--once")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    said = [line for line in out.splitlines() if line.startswith(f"queue item {item}: ")]
    steps = [line.split(": ", 1)[1] for line in said]
    expected = [
        "run-all diamond in",
        "chunk 1 Make A: starting",
        "[1] iteration 1/2",
        "chunk 1 Make A: shipped after 1 iteration(s)",
        "chunk 2 Make B: starting",
        "[2] iteration 1/2",
        "[2] iteration 2/2",
        "chunk 2 Make B: shipped after 2 iteration(s)",
        "done: all 2 chunks shipped",
    ]
    assert len(steps) == len(expected), out
    assert all(s.startswith(e) for s, e in zip(steps, expected, strict=True)), out
