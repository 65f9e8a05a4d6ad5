"""Specwright killed mid-attempt (kill -9): its agent dies with it, the tools the agent left
running in its process group are stopped by recovery, and the next `run-all` or `run` resumes
from a clean tree, so nothing the killed attempt wrote reaches a shipped commit.

Real processes throughout: the CLI as a subprocess, a bash agent whose background tool keeps
writing into the tree, SIGKILL, and a real git repo."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from specwright.store import Store
from tests.support_agents import alive, group_members, wait_gone
from tests.support_loop import git, make_repo, no_running_rows, rows

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc; dying with the parent is Linux's"
)

# First call: print one line, then leave a tool writing into the tree every 0.2 s for a minute
# (quietly: no SIGPIPE once Specwright is gone) and wait for it. Later calls: one quick edit.
AGENT = """#!/bin/bash
echo started
if [ -e {state}/first-done ]; then echo resumed > done.txt; exit 0; fi
touch {state}/first-done
( for i in $(seq 1 300); do echo "$i" >> "work-$BASHPID.txt"; sleep 0.2; done ) &
echo $$ > {state}/agent.pid
wait
"""


def project(tmp_path: Path) -> tuple[Path, Path, list[str], dict[str, str]]:
    """A repo whose committed config runs the slow agent; its state folder; the CLI; its env."""
    state = tmp_path / "state"
    state.mkdir()
    script = tmp_path / "agent.sh"
    script.write_text(AGENT.format(state=state))
    script.chmod(0o755)
    config = {
        "tools": {
            "executors": {
                "slow": {
                    "type": "command",
                    "argv": [str(script), "{prompt}"],
                    "options": {"probe_version": False},
                }
            },
            "reviewers": {"checks": {"type": "checks"}},
        },
        "defaults": {
            "executor": "slow",
            "reviewer": "checks",
            "maxIterations": 1,
            "rollback": "rollback",
        },
        "verify": [{"name": "ok", "command": "true", "timeout_s": 30}],
    }
    repo = make_repo(
        tmp_path / "repo", {".handoff/config.yaml": yaml.safe_dump(config, sort_keys=False)}
    )
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "SPECWRIGHT_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    cli = [sys.executable, "-m", "specwright.cli", "-C", str(repo)]
    for args in (["spec", "new", "Demo"], ["chunk", "add", "demo", "A", "--prompt", "x"]):
        subprocess.run([*cli, *args], check=True, capture_output=True, env=env, timeout=120)
    return repo, state, cli, env


def kill_mid_attempt(cli: list[str], env: dict[str, str], state: Path, repo: Path) -> int:
    """Start ``cli`` (a run), wait until its agent's tool writes into the tree, SIGKILL the
    Specwright process; the agent's pid (= its process group)."""
    proc = subprocess.Popen(
        cli, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True
    )
    try:
        for _ in range(1200):  # generous: a loaded machine starts Python slowly
            if (state / "agent.pid").exists() and list(repo.glob("work-*.txt")):
                break
            if proc.poll() is not None:
                break
            threading.Event().wait(0.05)
        assert proc.poll() is None, proc.communicate()[1]
        assert list(repo.glob("work-*.txt")), "the agent never started writing"
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    return int((state / "agent.pid").read_text())


def shown(cli: list[str], env: dict[str, str], *args: str) -> str:
    """What a CLI command of ``project`` prints (it must succeed)."""
    done = subprocess.run([*cli, *args], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@contextlib.contextmanager
def agent_at_work(
    cli: list[str], env: dict[str, str], state: Path, args: tuple[str, ...] = ("run-all", "demo")
) -> Iterator[subprocess.Popen[bytes]]:
    """``cli args`` in the background until its agent is at work (it wrote agent.pid); on the
    way out it is killed with its group, and so is the agent's own group."""
    proc = subprocess.Popen(
        [*cli, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    try:
        for _ in range(1200):
            if (state / "agent.pid").exists() or proc.poll() is not None:
                break
            threading.Event().wait(0.05)
        assert proc.poll() is None
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        if (state / "agent.pid").exists():
            stop_group(int((state / "agent.pid").read_text()))


def check_after_kill(agent: int) -> None:
    """The agent died with Specwright; its tool lives on in the agent's group (for now)."""
    wait_gone(agent)
    assert not alive(agent), "the agent outlived the Specwright process that started it"
    assert group_members(agent), "the agent's tool should still be running until recovery"


def check_resumed(repo: Path, tmp_path: Path, agent: int, commit: str) -> None:
    """Recovery stopped the tool and said so; the shipped commit has only the new attempt."""
    assert group_members(agent) == []
    store = Store(os.environ["SPECWRIGHT_DB"])
    interrupted = rows(store, "SELECT reason FROM runs WHERE status = 'interrupted'")
    assert any(
        "stopped the agent it left running" in r["reason"] and str(agent) in r["reason"]
        for r in interrupted
    ), interrupted
    no_running_rows(store)
    shipped = git(repo, "show", "--name-only", "--format=", commit).split()
    assert shipped == ["done.txt"]
    assert git(repo, "status", "--porcelain") == ""
    assert not list(repo.glob("work-*.txt"))
    assert not list((tmp_path / "runtime").glob("*.json")), "records of ended agents stay"


def stop_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def test_run_all_after_kill_9_stops_the_orphan_and_ships_only_the_new_attempt(
    tmp_path: Path,
) -> None:
    repo, state, cli, env = project(tmp_path)
    agent = kill_mid_attempt([*cli, "run-all", "demo"], env, state, repo)
    try:
        check_after_kill(agent)
        again = subprocess.run(
            [*cli, "run-all", "demo"], capture_output=True, text=True, env=env, timeout=300
        )
        assert again.returncode == 0, again.stdout + again.stderr
        check_resumed(repo, tmp_path, agent, "specwright/demo")
    finally:
        stop_group(agent)


def test_run_after_a_killed_run_recovers_and_ships(tmp_path: Path) -> None:
    repo, state, cli, env = project(tmp_path)
    agent = kill_mid_attempt([*cli, "run", "demo:1"], env, state, repo)
    try:
        check_after_kill(agent)
        again = subprocess.run(
            [*cli, "run", "demo:1"], capture_output=True, text=True, env=env, timeout=300
        )
        assert again.returncode == 0, again.stdout + again.stderr
        assert "shipped in 1 iteration(s)" in again.stdout
        check_resumed(repo, tmp_path, agent, "specwright/demo")
        store = Store(os.environ["SPECWRIGHT_DB"])
        statuses = sorted(r["status"] for r in rows(store, "SELECT status FROM runs"))
        assert statuses == ["interrupted", "shipped"]
    finally:
        stop_group(agent)


def test_a_kill_after_the_commit_before_its_record_undoes_the_commit(tmp_path: Path) -> None:
    """Killed between `git commit` and recording the ship: the next run-all rolls the branch
    back to the run's base (the patch kept) instead of running the chunk again on top of its
    own unrecorded commit, so the branch ends with one commit for the chunk."""
    repo, state, cli, env = project(tmp_path)
    hook = repo / ".git" / "hooks" / "post-commit"  # runs after the commit, git waits for it
    hook.write_text(
        f"#!/bin/sh\n[ -e {state}/committed ] && exit 0\ntouch {state}/committed\n"
        f"sleep 1\ntouch {state}/hook-done\n"
    )
    hook.chmod(0o755)
    (state / "first-done").touch()  # the agent makes one quick edit
    proc = subprocess.Popen(
        [*cli, "run-all", "demo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        for _ in range(1200):
            if (state / "committed").exists() or proc.poll() is not None:
                break
            threading.Event().wait(0.05)
        assert (state / "committed").exists(), proc.communicate()
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    for _ in range(200):
        if (state / "hook-done").exists():
            break
        threading.Event().wait(0.05)
    assert len(git(repo, "log", "--format=%H", "main..specwright/demo").split()) == 1
    again = subprocess.run(
        [*cli, "run-all", "demo"], capture_output=True, text=True, env=env, timeout=300
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "it had not recorded" in again.stderr
    assert len(git(repo, "log", "--format=%H", "main..specwright/demo").split()) == 1
    assert git(repo, "status", "--porcelain") == ""
    store = Store(os.environ["SPECWRIGHT_DB"])
    no_running_rows(store)
    statuses = sorted(r["status"] for r in rows(store, "SELECT status FROM runs"))
    assert statuses == ["interrupted", "interrupted", "shipped", "shipped"]


@pytest.mark.parametrize("where", ["", "git checkout -q -b other && "])
def test_a_kill_after_the_agent_committed_rolls_its_commits_back(
    tmp_path: Path, where: str
) -> None:
    """Killed while its agent, which had committed its work itself (on the spec branch, or on
    a branch it checked out), was still at work: the agent's commit stayed on the spec branch
    (or the tree on its branch), and the next run-all was refused for the files its tool had
    left ("commit or stash them"), then built on that unreviewed commit."""
    repo, state, cli, env = project(tmp_path)
    agent = tmp_path / "agent.sh"
    commit = "echo agent > agent.txt && git add agent.txt && git -c user.email=a@b commit -qm own"
    agent.write_text(agent.read_text().replace("touch ", f"{where}{commit}\ntouch ", 1))
    killed = kill_mid_attempt([*cli, "run-all", "demo"], env, state, repo)
    check_after_kill(killed)
    assert git(repo, "log", "-1", "--format=%s", "HEAD") == "own"
    again = subprocess.run(
        [*cli, "run-all", "demo"], capture_output=True, text=True, env=env, timeout=300
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "rolled back the interrupted attempt" in again.stderr
    [commit_sha] = git(repo, "log", "--format=%H", "main..specwright/demo").split()
    check_resumed(repo, tmp_path, killed, commit_sha)
    assert git(repo, "symbolic-ref", "--short", "HEAD") == "specwright/demo"
    [patch] = (Path(os.environ["SPECWRIGHT_DB"]).parent / "patches").glob("*.patch")
    assert "agent.txt" in patch.read_text()


def test_a_second_run_in_the_same_tree_is_refused_while_one_runs(tmp_path: Path) -> None:
    """While run-all of one spec has its agent working (the tree still clean), run-all or run
    of another spec of the project is refused with one line: it would have checked out its own
    branch under the agent, and the first spec's commit would have landed on it."""
    repo, state, cli, env = project(tmp_path)
    for args in (["spec", "new", "Other"], ["chunk", "add", "other", "B", "--prompt", "y"]):
        subprocess.run([*cli, *args], check=True, capture_output=True, env=env, timeout=120)
    (state / "first-done").touch()  # the agent: one quick edit ...
    script = tmp_path / "agent.sh"  # ... after a pause, the tree clean until then
    pause = f"echo started\necho $$ > {state}/agent.pid\nsleep 60"
    script.write_text(script.read_text().replace("echo started", pause, 1))
    first = subprocess.Popen(
        [*cli, "run-all", "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        for _ in range(1200):
            if git(repo, "branch", "--show-current") == "specwright/demo":
                break
            threading.Event().wait(0.05)
        for args in (["run-all", "other"], ["run", "other:1"]):
            second = subprocess.run(
                [*cli, *args], capture_output=True, text=True, env=env, timeout=120
            )
            assert second.returncode == 2, second.stdout + second.stderr
            [line] = second.stderr.splitlines()
            assert "of spec 'demo'" in line and "is working in this tree" in line, line
        assert git(repo, "branch", "--show-current") == "specwright/demo"
        assert first.poll() is None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
        first.communicate(timeout=60)
        if (state / "agent.pid").exists():  # its sleep outlives it, in the agent's group
            stop_group(int((state / "agent.pid").read_text()))


def test_status_says_a_run_left_running_by_a_killed_process_is_dead(tmp_path: Path) -> None:
    """Until the next run-all marks it, a killed run is still `running` in the database;
    status used to show it so with no hint that nothing runs it any more."""
    repo, state, cli, env = project(tmp_path)
    agent = kill_mid_attempt([*cli, "run-all", "demo"], env, state, repo)
    try:
        shown = subprocess.run(
            [*cli, "--json", "status"], capture_output=True, text=True, env=env, timeout=120
        )
        assert shown.returncode == 0, shown.stderr
        runs = json.loads(shown.stdout)["recent_runs"]
        assert [r["status"] for r in runs] == ["running", "running"]
        assert all("is gone; run-all marks it interrupted" in r["reason"] for r in runs), runs
        assert all("pid" not in r for r in runs)
    finally:
        stop_group(agent)


def test_run_all_resumes_while_the_killed_process_is_an_unreaped_zombie(tmp_path: Path) -> None:
    """A script (or notebook) that started run-all and killed it without waiting leaves a
    zombie: it runs nothing, yet counted as alive, so the next run-all neither recovered its
    run nor could start."""
    _repo, state, cli, env = project(tmp_path)
    with agent_at_work(cli, env, state) as proc:
        os.kill(proc.pid, signal.SIGKILL)  # and no wait(): a zombie until the end of the test
        agent = int((state / "agent.pid").read_text())
        wait_gone(agent)
        again = subprocess.run(
            [*cli, "run-all", "demo"], capture_output=True, text=True, env=env, timeout=300
        )
        assert again.returncode == 0, again.stdout + again.stderr
        assert f"process {proc.pid} is gone" in again.stderr


def test_a_tree_that_cannot_be_restored_yet_is_restored_by_the_next_run_all(
    tmp_path: Path,
) -> None:
    """Recovery met a stale .git/index.lock (git killed too): it used to mark the run
    interrupted anyway, so once the lock was gone nothing undid the agent's edits and every
    run-all stopped at 'uncommitted changes'. The run now stays to be recovered next time."""
    repo, state, cli, env = project(tmp_path)
    agent = kill_mid_attempt([*cli, "run-all", "demo"], env, state, repo)
    try:
        check_after_kill(agent)
        lock = repo / ".git" / "index.lock"
        lock.touch()
        blocked = subprocess.run(
            [*cli, "run-all", "demo"], capture_output=True, text=True, env=env, timeout=300
        )
        assert blocked.returncode == 2, blocked.stdout + blocked.stderr
        assert "could not restore the tree" in blocked.stderr
        lock.unlink()
        again = subprocess.run(
            [*cli, "run-all", "demo"], capture_output=True, text=True, env=env, timeout=300
        )
        assert again.returncode == 0, again.stdout + again.stderr
        assert "rolled back the interrupted attempt" in again.stderr
        no_running_rows(Store(os.environ["SPECWRIGHT_DB"]))
        shipped = git(repo, "show", "--name-only", "--format=", "specwright/demo").split()
        assert shipped == ["done.txt"]
        assert git(repo, "status", "--porcelain") == ""
        assert not list(repo.glob("work-*.txt"))
    finally:
        stop_group(agent)


def test_db_rebuild_in_place_is_refused_while_a_run_writes_into_the_database(
    tmp_path: Path,
) -> None:
    """A rebuild during a run swapped the file under it: what the run wrote after the journals
    were read went into the .bak, and the new database kept its execution `running` for good."""
    _repo, state, cli, env = project(tmp_path)
    with agent_at_work(cli, env, state):
        rebuild = subprocess.run(
            [*cli, "db", "rebuild"], capture_output=True, text=True, env=env, timeout=120
        )
        assert rebuild.returncode == 2, rebuild.stdout + rebuild.stderr
        [line] = rebuild.stderr.splitlines()
        assert "of spec 'demo'" in line and "db rebuild --output PATH" in line, line
        assert not Path(os.environ["SPECWRIGHT_DB"] + ".bak").exists()
        elsewhere = tmp_path / "copy.duckdb"
        copied = subprocess.run(
            [*cli, "db", "rebuild", "--output", str(elsewhere)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert copied.returncode == 0, copied.stderr


def test_spec_import_is_refused_while_the_spec_runs(tmp_path: Path) -> None:
    """The running run-all still ran a chunk the import had deleted: a commit, a run and an
    execution for a chunk that no longer existed, and the spec marked done. Any other import
    went through: the file's status replaced 'running' (ready, mid-run) and its chunks changed
    under the loop."""
    _repo, state, cli, env = project(tmp_path)
    subprocess.run(
        [*cli, "chunk", "add", "demo", "B", "--prompt", "y"], check=True, env=env, timeout=120
    )
    exported = tmp_path / "demo.md"
    subprocess.run(
        [*cli, "spec", "export", "demo", "-o", str(exported)], check=True, env=env, timeout=120
    )
    text = exported.read_text()
    front, body = text.split("\n---\n", 1)
    without_b = front[: front.index("\n- id:", front.index("title: A"))]
    (tmp_path / "without-b.md").write_text(without_b + "\n---\n" + body[: body.index("## Chunk 2")])
    (tmp_path / "edited.md").write_text(
        text.replace("status: draft", "status: ready").replace("\ny\n", "\ny, edited\n")
    )
    with agent_at_work(cli, env, state):
        store = Store(os.environ["SPECWRIGHT_DB"])
        for name in ("without-b.md", "edited.md"):
            imported = subprocess.run(
                [*cli, "spec", "import", str(tmp_path / name)],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
            )
            assert imported.returncode == 2, imported.stdout + imported.stderr
            [line] = imported.stderr.splitlines()
            assert line.startswith(
                f"specwright: error: {tmp_path / name}: spec 'demo' is running: run "
            )
            assert line.endswith(": nothing imported (import it once the run has ended)"), line
            got = rows(store, "SELECT title, prompt FROM chunks ORDER BY position")
            assert [(r["title"], r["prompt"]) for r in got] == [("A", "x"), ("B", "y")]
            assert rows(store, "SELECT status FROM specs") == [{"status": "running"}]


def test_plan_refine_is_refused_while_the_spec_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`plan --refine` of a running spec had the planner rewrite it mid-run: the spec showed
    'draft' while it ran, its chunks changed under the loop, and the planner was paid for it."""
    from specwright.testing import FakeModelServer

    repo, state, cli, env = project(tmp_path)
    config = repo / ".handoff" / "config.yaml"
    planner = {
        "type": "anthropic",
        "model": "claude-sonnet-4-6",
        "base_url": "${PLANNER_URL:-http://127.0.0.1:9}",
    }
    data = yaml.safe_load(config.read_text())
    data["tools"]["planners"] = {"claude": planner}
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    git(repo, "commit", "-qam", "a planner")
    Store(os.environ["SPECWRIGHT_DB"]).update("specs", {"slug": "demo"}, {"body": "Do it.\n"})
    with FakeModelServer() as srv, agent_at_work(cli, env, state):
        refined = subprocess.run(
            [*cli, "plan", "--resume", "demo", "--refine", "use OAuth", "--refine-target", "spec"],
            capture_output=True,
            text=True,
            env={**env, "PLANNER_URL": srv.base_url, "ANTHROPIC_API_KEY": "sk-ant-test"},
            timeout=120,
        )
        assert refined.returncode == 2, refined.stdout + refined.stderr
        [line] = refined.stderr.splitlines()
        assert line.startswith("specwright: error: spec 'demo' is running: run "), line
        assert ": not revised until the run ends" in line, line
        assert srv.model_requests == []  # no planner call was paid for
        store = Store(os.environ["SPECWRIGHT_DB"])
        assert rows(store, "SELECT status FROM specs") == [{"status": "running"}]


def test_a_queued_item_waits_for_a_chunk_run_from_the_command_line(tmp_path: Path) -> None:
    """The worker let a queued run-all start while `specwright run CHUNK` worked in the same
    tree (it only waited for run-alls); now it waits, then runs the item."""
    _repo, state, cli, env = project(tmp_path)
    worker = None
    with agent_at_work(cli, env, state, ("run", "demo:1")) as single:
        try:
            subprocess.run([*cli, "queue", "add", "demo"], check=True, env=env, timeout=120)
            worker = subprocess.Popen(
                [*cli, "worker", "--once"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
                start_new_session=True,
            )
            threading.Event().wait(3)
            store = Store(os.environ["SPECWRIGHT_DB"])
            assert [r["status"] for r in rows(store, "SELECT status FROM queue")] == ["queued"]
            single.send_signal(signal.SIGTERM)  # the chunk run stops cleanly; the item goes on
            single.wait(timeout=60)
            out, _ = worker.communicate(timeout=120)
            assert worker.returncode == 0, out
            assert [r["status"] for r in rows(store, "SELECT status FROM queue")] == ["done"], out
        finally:
            if worker is not None and worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.communicate(timeout=60)


def test_chunk_list_and_spec_show_say_a_killed_runs_process_is_gone(tmp_path: Path) -> None:
    """status said it, but `chunk list` and `spec show` showed the chunk `running` with no hint
    that nothing runs it any more; they give the same reason, while a live run gives none."""
    _repo, state, cli, env = project(tmp_path)

    gone = "is gone; run-all marks it interrupted"
    with agent_at_work(cli, env, state):
        assert json.loads(shown(cli, env, "--json", "chunk", "list", "demo"))[0]["reason"] is None
        assert gone not in shown(cli, env, "spec", "show", "demo")
    # agent_at_work ended it with kill -9: its rows stay `running`
    chunks = json.loads(shown(cli, env, "--json", "chunk", "list", "demo"))
    assert chunks[0]["status"] == "running" and gone in chunks[0]["reason"], chunks
    assert gone in shown(cli, env, "chunk", "list", "demo")
    spec = json.loads(shown(cli, env, "--json", "spec", "show", "demo"))
    assert gone in spec["reason"] and gone in spec["chunks"][0]["reason"], spec
    text = shown(cli, env, "spec", "show", "demo")
    assert "(its run: process " in text and text.count(gone) == 2, text


def test_a_run_whose_pid_was_reused_after_a_reboot_says_its_heartbeat_stopped(
    tmp_path: Path,
) -> None:
    """After a reboot a dead run's pid can be another live process's: status, chunk list and
    spec show took the run for one under way, while run-all marks it interrupted for its
    heartbeat, stopped an hour ago. They now say what run-all will."""
    _repo, state, cli, env = project(tmp_path)

    with agent_at_work(cli, env, state):
        pass
    store = Store(json.loads(shown(cli, env, "--json", "status"))["database"])
    store.query(  # this test's own process stands in for the one that took the pid
        "UPDATE runs SET pid = ?, heartbeat_at = heartbeat_at - INTERVAL 1 HOUR", [os.getpid()]
    )
    store.release()
    stopped = "no heartbeat since "
    reasons = [r["reason"] for r in json.loads(shown(cli, env, "--json", "status"))["recent_runs"]]
    assert len(reasons) == 2 and all(stopped in r for r in reasons), reasons
    assert stopped in json.loads(shown(cli, env, "--json", "chunk", "list", "demo"))[0]["reason"]
    spec = json.loads(shown(cli, env, "--json", "spec", "show", "demo"))
    assert stopped in spec["reason"] and stopped in spec["chunks"][0]["reason"], spec
    subprocess.run([*cli, "run-all", "demo"], capture_output=True, env=env, timeout=300)
    marked = Store(json.loads(shown(cli, env, "--json", "status"))["database"]).query(
        "SELECT status, reason FROM runs WHERE reason LIKE 'interrupted: %'"
    )
    assert len(marked) == 2 and all(stopped in why for _, why in marked), marked


def test_spec_list_says_a_killed_run_alls_process_is_gone(tmp_path: Path) -> None:
    """After a kill -9 of run-all its spec stays `running`: spec list showed it so with no hint,
    while status, chunk list and spec show say nothing runs it any more."""
    _repo, state, cli, env = project(tmp_path)

    gone = "is gone; run-all marks it interrupted"
    with agent_at_work(cli, env, state):
        listed = json.loads(shown(cli, env, "--json", "spec", "list"))
        assert listed[0]["status"] == "running" and listed[0]["reason"] is None, listed
        assert "REASON" not in shown(cli, env, "spec", "list")
    listed = json.loads(shown(cli, env, "--json", "spec", "list"))
    assert listed[0]["status"] == "running" and gone in listed[0]["reason"], listed
    assert gone in shown(cli, env, "spec", "list")


def test_a_killed_run_all_recovered_by_run_leaves_its_spec_ready_not_running(
    tmp_path: Path,
) -> None:
    """run-all sets its spec `running`; after a kill -9, `specwright run` of a chunk marked the
    dead run-all interrupted but left the spec `running` for good, in status and spec list,
    with nothing running it. It is `ready` again, as after a cancelled run-all."""
    _repo, state, cli, env = project(tmp_path)

    def spec_status() -> str:
        done = subprocess.run(
            [*cli, "--json", "spec", "show", "demo"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return str(json.loads(done.stdout)["status"])

    with agent_at_work(cli, env, state):
        assert spec_status() == "running"
    ran = subprocess.run([*cli, "run", "demo:1"], capture_output=True, text=True, env=env)
    assert ran.returncode == 0, ran.stderr
    assert "marked interrupted" in ran.stderr
    assert spec_status() == "ready"


def test_a_killed_attempt_that_changed_no_file_names_no_patch(tmp_path: Path) -> None:
    """Killed after its agent made a commit that changes nothing: recovery rolled it back and
    said "diff saved to <path>", a patch that was never written (there was no diff)."""
    repo, state, cli, env = project(tmp_path)
    agent = tmp_path / "agent.sh"
    empty = "git -c user.email=a@b commit -q --allow-empty -m own"
    tool = next(line for line in AGENT.splitlines() if line.startswith("( for"))
    text = agent.read_text().replace("touch ", f"{empty}\ntouch ", 1)
    agent.write_text(text.replace(tool, "sleep 120 &", 1))  # a tool that writes nothing
    with agent_at_work(cli, env, state):
        pass
    again = subprocess.run(
        [*cli, "run-all", "demo"], capture_output=True, text=True, env=env, timeout=300
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "rolled back the interrupted attempt" in again.stderr, again.stderr
    assert "no diff to save" in again.stderr
    assert "diff saved to" not in again.stderr
    assert not list((Path(os.environ["SPECWRIGHT_DB"]).parent / "patches").glob("*-interrupted*"))
    assert git(repo, "log", "--format=%s", "main..specwright/demo").split("\n")[0] != "own"
