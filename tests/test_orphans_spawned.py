"""Specwright killed (kill -9) while a verification step, a scripted agent's `run:` step or the
`opencode serve` it started is running: the process it started dies with it, and what that
process left in its group is stopped by the recovery the next command runs.

Real processes throughout: the CLI as a subprocess, `sh -c` commands whose `sleep` child
stays in the group (dash forks even its last command), a fake `opencode` executable, SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from specwright.agents.orphans import runtime_dir
from specwright.agents.process import ProcessStream
from specwright.store import Store
from tests.conftest import REPO
from tests.support_agents import alive, fake_cli, group_members, wait_gone
from tests.support_loop import make_repo, no_running_rows, rows

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc; dying with the parent is Linux's"
)

CLI = [sys.executable, "-m", "specwright.cli"]
START_S = 120.0  # generous: a loaded machine starts Python slowly


def hanging(state: Path) -> str:
    """A shell command that, the first time only, leaves a `sleep` in its group, writes the
    sleep's pid then its own, and waits; later it ends at once."""
    return (
        f"if [ -e {state}/done ]; then exit 0; fi; touch {state}/done; "
        f"sleep 300 & echo $! > {state}/child.pid; echo $$ > {state}/shell.pid; wait"
    )


def read_pid(path: Path, proc: subprocess.Popen[Any]) -> int:
    """The pid written to ``path`` once it is there, while ``proc`` runs."""
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError):
            text = path.read_text()
            if text.endswith("\n"):
                return int(text)
        threading.Event().wait(0.05)
    out, err = proc.communicate(timeout=60) if proc.poll() is not None else ("", "")
    raise AssertionError(f"{path.name} never written (exit {proc.poll()}): {out} {err}")


@pytest.fixture
def groups() -> Iterator[list[int]]:
    """Process groups a test started; SIGKILLed at its end, whatever happened."""
    started: list[int] = []
    yield started
    for pgid in started:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def project(
    tmp_path: Path, script: list[dict[str, Any]], verify: str
) -> tuple[Path, dict[str, str]]:
    """A repo whose committed config runs a scripted agent and one verification step, with one
    chunk; the CLI's env (its own runtime folder)."""
    config = {
        "tools": {
            "executors": {"scripted": {"type": "scripted", "options": {"script": script}}},
            "reviewers": {"checks": {"type": "checks"}},
        },
        "defaults": {"executor": "scripted", "reviewer": "checks", "maxIterations": 1},
        "verify": [{"name": "check", "command": verify, "timeout_s": 600}],
    }
    repo = make_repo(
        tmp_path / "repo", {".handoff/config.yaml": yaml.safe_dump(config, sort_keys=False)}
    )
    (tmp_path / "tmp").mkdir()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "SPECWRIGHT_RUNTIME_DIR": str(tmp_path / "runtime"),
        "TMPDIR": str(tmp_path / "tmp"),
    }
    for args in (["spec", "new", "Demo"], ["chunk", "add", "demo", "A", "--prompt", "x"]):
        subprocess.run([*CLI, "-C", str(repo), *args], check=True, capture_output=True, env=env)
    return repo, env


def kill_run_and_recover(
    tmp_path: Path, repo: Path, env: dict[str, str], groups: list[int]
) -> None:
    """Start `specwright run`, SIGKILL it once the step's shell and its sleep run: the shell
    dies with it, the sleep lives on in its group until the next `run` recovers the dead one."""
    state = tmp_path / "state"
    cli = [*CLI, "-C", str(repo), "run", "demo:1"]
    proc = subprocess.Popen(
        cli, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True
    )
    groups.append(proc.pid)
    try:
        shell = read_pid(state / "shell.pid", proc)
        groups.append(shell)  # the shell leads its own group
        child = int((state / "child.pid").read_text())
        assert os.getpgid(child) == shell
    finally:
        proc.kill()  # SIGKILL: no cleanup of ours runs
        proc.communicate(timeout=60)
    wait_gone(shell)
    assert not alive(shell), "the step's shell outlived the Specwright that started it"
    assert alive(child), "the shell's child should run on until recovery"

    again = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    wait_gone(child)
    assert not alive(child) and group_members(shell) == []
    store = Store(env["SPECWRIGHT_DB"])
    [reason] = [
        r["reason"] for r in rows(store, "SELECT reason FROM runs WHERE status = 'interrupted'")
    ]
    assert f"process group {shell}" in reason
    no_running_rows(store)
    assert not list((tmp_path / "runtime").glob("*.json")), "records of ended processes stay"
    assert not list((tmp_path / "tmp").glob("specwright-verify-*")), "the dead run's folder stays"


def test_a_verification_step_dies_with_a_killed_run_and_recovery_stops_its_group(
    tmp_path: Path, groups: list[int]
) -> None:
    (tmp_path / "state").mkdir()
    script = [{"write": "a.txt", "content": "a\n"}, {"say": "done"}]
    repo, env = project(tmp_path, script, hanging(tmp_path / "state"))
    kill_run_and_recover(tmp_path, repo, env, groups)


def test_a_scripted_run_step_dies_with_a_killed_run_and_recovery_stops_its_group(
    tmp_path: Path, groups: list[int]
) -> None:
    (tmp_path / "state").mkdir()
    script = [
        {"run": hanging(tmp_path / "state")},
        {"write": "a.txt", "content": "a\n"},
        {"say": "done"},
    ]
    repo, env = project(tmp_path, script, "true")
    kill_run_and_recover(tmp_path, repo, env, groups)


# `opencode serve` as far as Specwright sees it: the listening line, then serving until stopped;
# its `sleep` stands for what a real server starts in its group (a wrapper's real binary).
FAKE_OPENCODE = """#!/bin/sh
sleep 300 &
echo $! > {state}/child-$$.pid
echo "opencode server listening on http://127.0.0.1:9"
wait
"""


def fake_opencode(tmp_path: Path) -> dict[str, str]:
    """The environment that makes `serve-opencode` start the fake (its state in ``state/``)."""
    for folder in ("state", "proj", "bin"):
        (tmp_path / folder).mkdir()
    fake = tmp_path / "bin" / "opencode"
    fake.write_text(FAKE_OPENCODE.format(state=tmp_path / "state"))
    fake.chmod(0o755)
    return {
        **os.environ,
        "OPENCODE_PATH": str(fake),
        "SPECWRIGHT_RUNTIME_DIR": str(tmp_path / "runtime"),
    }


def serve_opencode(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """`specwright agents serve-opencode` with the fake, just started."""
    return subprocess.Popen(
        [*CLI, "-C", str(tmp_path / "proj"), "agents", "serve-opencode", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def announced(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """`specwright agents serve-opencode` with the fake, and the first line it printed."""
    proc = serve_opencode(tmp_path, env)
    assert proc.stdout is not None
    return proc, proc.stdout.readline()


def serve(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], int, int]:
    """`specwright agents serve-opencode` with the fake; the CLI, the server's pid, its child's."""
    proc, first = announced(tmp_path, env)
    assert "opencode server listening on http://127.0.0.1:9" in first, proc.communicate()
    server = int(first.split("(pid ", 1)[1].split(")")[0])
    child = read_pid(tmp_path / "state" / f"child-{server}.pid", proc)
    return proc, server, child


def test_opencode_serve_dies_with_a_killed_specwright_and_the_next_server_stops_its_group(
    tmp_path: Path, groups: list[int]
) -> None:
    env = fake_opencode(tmp_path)
    procs: list[subprocess.Popen[str]] = []
    try:
        first, server, child = serve(tmp_path, env)
        procs.append(first)
        groups.extend([first.pid, server])
        first.kill()  # SIGKILL: no cleanup of ours runs
        first.communicate(timeout=60)
        wait_gone(server)
        assert not alive(server), "opencode serve outlived the Specwright that started it"
        assert alive(child), "the server's child should run on until recovery"

        second, server2, child2 = serve(tmp_path, env)  # the next command: a new server
        procs.append(second)
        groups.extend([second.pid, server2])
        wait_gone(child)
        assert not alive(child) and group_members(server) == []
        assert alive(server2) and alive(child2)

        second.send_signal(signal.SIGINT)  # Ctrl-C: the server and its group stop
        assert second.wait(timeout=60) == 0
        assert group_members(server2) == []
        assert not list((tmp_path / "runtime").glob("*.json")), "records of ended servers stay"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=60)


def test_ctrl_c_as_soon_as_the_server_is_announced_stops_it_cleanly(
    tmp_path: Path, groups: list[int]
) -> None:
    """A Ctrl-C that comes the moment the address is printed (before the CLI waits on the
    server) is the same Ctrl-C: exit 0, the server's group stopped. It was exit 130 (a
    KeyboardInterrupt between the print and the wait), which failed a CI run."""
    env = fake_opencode(tmp_path)
    codes = []
    for _ in range(6):
        proc, first = announced(tmp_path, env)
        try:
            proc.send_signal(signal.SIGINT)  # no pause: the CLI has just flushed the line
            assert "listening on" in first, proc.communicate()
            server = int(first.split("(pid ", 1)[1].split(")")[0])
            groups.extend([proc.pid, server])
            codes.append(proc.wait(timeout=60))
            wait_gone(server)
            assert group_members(server) == []
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=60)
    assert codes == [0] * 6


def gated_opencode(tmp_path: Path, body: str) -> dict[str, str]:
    """``fake_opencode``'s environment, the fake replaced by a server running ``body``."""
    env = fake_opencode(tmp_path)
    fake = Path(env["OPENCODE_PATH"])
    fake.write_text(f"#!/bin/sh\n{body}")
    return env


def test_ctrl_c_while_the_server_starts_stops_it_and_its_group(
    tmp_path: Path, groups: list[int]
) -> None:
    """Ctrl-C before the server is listening (a real one takes a second or more): it exited
    130 and left what the server had started in its group running."""
    state = tmp_path / "state"
    env = gated_opencode(
        tmp_path,
        f"sleep 300 &\necho $! > {state}/child.pid\necho $$ > {state}/server.pid\n"
        f"while [ ! -e {state}/go ]; do sleep 0.05; done\n",  # never listening
    )
    proc = serve_opencode(tmp_path, env)
    groups.append(proc.pid)
    try:
        server = read_pid(state / "server.pid", proc)
        groups.append(server)
        child = int((state / "child.pid").read_text())
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert (proc.returncode, err) == (130, "specwright: interrupted\n"), out
        wait_gone(child)
        assert not alive(child) and group_members(server) == []
        assert not list((tmp_path / "runtime").glob("*.json"))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=60)


def test_ctrl_c_stops_a_server_that_left_its_output_open_outside_its_group(
    tmp_path: Path, groups: list[int]
) -> None:
    """What the server started in a session of its own holds the server's output open: the
    CLI waited on the thread reading it, forever, after Ctrl-C. Now that process is stopped
    (it carries the server's token) and the CLI exits 0."""
    state = tmp_path / "state"
    env = gated_opencode(
        tmp_path,
        f"setsid sh -c 'echo $$ > {state}/stray.pid; exec sleep 300' &\n"
        'echo "opencode server listening on http://127.0.0.1:9"\nwait\n',
    )
    proc, first = announced(tmp_path, env)
    groups.append(proc.pid)
    stray = 0
    try:
        assert "listening on" in first, proc.communicate()
        stray = read_pid(state / "stray.pid", proc)
        assert os.getpgid(stray) == stray  # out of the server's group
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        wait_gone(stray)
        assert not alive(stray)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)
        if stray:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stray, signal.SIGKILL)


# `specwright agents serve-opencode`'s wait, with Ctrl-C blocked in the main thread once the
# server runs: the kernel gives it to the thread reading the server's output, as it may
# whenever it likes, and Python runs its handler only in the main thread, when that runs code.
WAITER = """
import os, signal, sys
from pathlib import Path
from specwright.agents.opencode_server import OpenCodeServer

server = OpenCodeServer(sys.argv[1], Path.cwd(), dict(os.environ)).start()
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
print(server.pid, flush=True)
print("code", server.wait(), flush=True)
"""


def test_ctrl_c_taken_by_the_reading_thread_still_stops_the_server(
    tmp_path: Path, groups: list[int]
) -> None:
    """The server was waited for in one piece (``Popen.wait()``), which no Python handler
    interrupts: a Ctrl-C the reading thread took did nothing until the server ended."""
    env = fake_opencode(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-c", WAITER, env["OPENCODE_PATH"]],
        cwd=tmp_path / "proj",
        env={**env, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    groups.append(proc.pid)
    try:
        assert proc.stdout is not None
        server = int(proc.stdout.readline())
        groups.append(server)
        stat = Path(f"/proc/{proc.pid}/stat")
        while stat.read_text().rsplit(")", 1)[1].split()[0] != "S":  # waiting for the server
            threading.Event().wait(0.01)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        assert proc.stdout.read() == "code 0\n"
        wait_gone(server)
        assert group_members(server) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)


def test_stop_abandoned_stops_only_what_an_ended_owner_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An owner that has ended (its pid free, or another process's now) leaves orphans; a live
    owner, or a record that does not say when its owner started, is never touched."""
    import json

    from specwright.agents.orphans import process_start, stop_abandoned

    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("SPECWRIGHT_RUNTIME_DIR", str(runtime))
    ended = subprocess.Popen(["true"])
    ended_start = process_start(ended.pid)
    ended.wait(timeout=60)
    me, my_start = os.getpid(), process_start(os.getpid())
    sleepers: list[subprocess.Popen[bytes]] = []

    def sleeper(owner: int, owner_start: str | None) -> int:
        proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
        sleepers.append(proc)
        record = {"pid": proc.pid, "pgid": proc.pid, "start": process_start(proc.pid)}
        record |= {"owner_pid": owner, "owner_since": 0, "owner_start": owner_start}
        (runtime / f"{owner}-{proc.pid}.json").write_text(json.dumps(record))
        return proc.pid

    try:
        live = sleeper(me, my_start)
        unknown = sleeper(ended.pid, None)
        orphan = sleeper(ended.pid, ended_start)
        reused = sleeper(me, "12345")  # our pid, but its owner started at another time
        assert sorted(stop_abandoned(grace_s=10)) == sorted([orphan, reused])
        assert alive(live) and alive(unknown)
        assert group_members(orphan) == [] == group_members(reused)
        assert sorted(p.name for p in runtime.glob("*.json")) == sorted(
            f"{owner}-{pid}.json" for owner, pid in ((me, live), (ended.pid, unknown))
        )
    finally:
        for proc in sleepers:
            proc.kill()
            proc.wait(timeout=60)


def test_opencode_serve_output_lines_are_kept_bounded(tmp_path: Path) -> None:
    """A server printing one endless line (here 64 MB) before its listening line: it starts, and
    what is kept of its output is a few KB a line."""
    from specwright.agents.opencode_server import MAX_OUTPUT_LINE, OpenCodeServer

    fake = tmp_path / "opencode"
    fake.write_text(
        "#!/bin/sh\n"
        "head -c 67108864 /dev/zero | tr '\\0' x\n"
        "echo\n"
        'echo "opencode server listening on http://127.0.0.1:9"\n'
        "exec sleep 300\n"
    )
    fake.chmod(0o755)
    env = {**os.environ, "SPECWRIGHT_RUNTIME_DIR": str(tmp_path / "runtime")}
    server = OpenCodeServer(str(fake), tmp_path, env, ready_timeout_s=60).start()
    try:
        assert server.url == "http://127.0.0.1:9"
        kept = list(server.output)
        assert len(kept) == 2 and kept[0] == "x" * MAX_OUTPUT_LINE, [len(k) for k in kept]
    finally:
        server.stop()


def test_a_test_session_registers_agents_in_its_own_folder_not_the_users(
    git_repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    agents_registry: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Two pytest sessions at once must not share a registry (recovery in one would stop the
    other's agents): each has its own, under its basetemp; a user's default is unchanged."""
    assert runtime_dir() == agents_registry
    assert agents_registry.is_relative_to(tmp_path_factory.getbasetemp())
    stream = ProcessStream(["sleep", "60"], cwd=git_repo, env=dict(os.environ)).start()
    assert stream.proc is not None
    assert (agents_registry / f"{os.getpid()}-{stream.proc.pid}.json").exists()
    cancel = threading.Event()
    cancel.set()
    assert list(stream.lines(cancel)) == [] and stream.result.cancelled
    monkeypatch.delenv("SPECWRIGHT_RUNTIME_DIR")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    assert runtime_dir() == tmp_path / "xdg" / "specwright-agents"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert runtime_dir() == Path(tempfile.gettempdir()) / f"specwright-agents-{os.getuid()}"


PROBE = """
import signal, subprocess, sys

def test_a_child_takes_ctrl_c():
    code = "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.strip() == "True"
"""


def test_a_session_started_in_the_background_lets_the_cli_take_ctrl_c(tmp_path: Path) -> None:
    """`pytest &` in a script ignores SIGINT, and so did every CLI the tests start, so the
    Ctrl-C tests here failed after 60 s; the session takes SIGINT back for its children."""
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE)
    pytest_cmd = f"{sys.executable} -m pytest -q -p no:cacheprovider -p tests.conftest {probe}"
    done = subprocess.run(
        ["bash", "-c", f"{pytest_cmd} & wait $!"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=START_S,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_sweeping_temp_folders_removes_only_those_of_ended_processes(tmp_path: Path) -> None:
    """A run killed with kill -9 leaves its verification step's folder (a JUnit report in it)
    and its Claude Code config folder (the session's transcript) in the temp folder; the sweep
    recovery runs removes them, never one of a live process, one whose pid another process has
    now, nor what is not a folder of this user's."""
    from specwright.agents.orphans import OLD_SCRATCH_AGE_S, scratch_prefix, sweep_scratch

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    ended = subprocess.Popen(["true"])
    ended.wait(timeout=60)
    mine = tmp / f"{scratch_prefix('verify')}abc"  # this live process's
    gone = tmp / f"specwright-verify-{ended.pid}.1-abc"
    claude = tmp / f"specwright-claude-{ended.pid}.1-abc"
    reused = tmp / f"specwright-claude-{os.getpid()}.1-abc"  # our pid, another start
    old_empty, old_full, new_empty = (tmp / f"specwright-verify-{n}" for n in "xyz")
    for folder in (mine, gone, claude, reused, old_empty, old_full, new_empty):
        folder.mkdir()
    (gone / "junit.xml").write_text("<testsuite/>")
    (claude / "projects").mkdir()
    (old_full / "junit.xml").write_text("<testsuite/>")
    day_ago = time.time() - OLD_SCRATCH_AGE_S - 60
    for folder in (old_empty, old_full):
        os.utime(folder, (day_ago, day_ago))
    other = tmp / f"specwright-verify-{ended.pid}.1-file"
    other.write_text("not a folder")
    link = tmp / f"specwright-verify-{ended.pid}.1-link"
    link.symlink_to(old_full)
    unrelated = tmp / f"specwright-agents-{ended.pid}.1-abc"
    unrelated.mkdir()

    assert sweep_scratch(tmp) == 4
    kept = (mine, old_full, new_empty, other, link, unrelated)
    assert sorted(p.name for p in tmp.iterdir()) == sorted(p.name for p in kept)
    assert (old_full / "junit.xml").exists()


_OWNER = """
import subprocess, sys, time
from specwright.agents.orphans import register_agent, tag_run
for tree, run in zip(sys.argv[1::2], sys.argv[2::2]):
    tag_run(tree, run)
    agent = subprocess.Popen(["sleep", "300"], cwd=tree, start_new_session=True)
    register_agent(agent.pid, "sleep", tree)
    print(agent.pid, flush=True)
time.sleep(300)
"""


def test_recovery_stops_only_the_dead_runs_agents_each_named_under_its_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """One process runs two chunks (run-all --parallel: one in the project's folder, one in a
    worktree inside it). Paused, its first run looks dead first: recovery stops that run's
    agent only. Killed, the second run's agent is stopped and named under that run."""
    import logging
    from datetime import timedelta

    from specwright import catalog
    from specwright.model import new_id, utcnow
    from specwright.recovery import recover_interrupted

    monkeypatch.setenv("SPECWRIGHT_RUNTIME_DIR", str(tmp_path / "runtime"))
    root = tmp_path / "project"
    trees = [root, root / "data" / "worktrees" / "spec" / "2-chunk"]
    trees[1].mkdir(parents=True)
    runs = [new_id(), new_id()]
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, str(trees[0]), runs[0], str(trees[1]), runs[1]],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        agents = [int(owner.stdout.readline()), int(owner.stdout.readline())]
        store = Store(tmp_path / "db.duckdb")
        spec = catalog.create_spec(store, catalog.ensure_project(store, root), "Two chunks")
        now = utcnow()
        for run, beat in zip(runs, (now - timedelta(minutes=10), now), strict=True):
            chunk = catalog.add_chunk(store, spec, f"Chunk of {run[:8]}")
            store.insert(
                "runs",
                {"id": run, "spec_id": spec.id, "chunk_id": chunk.id, "kind": "chunk"}
                | {"status": "running", "pid": owner.pid, "host": _hostname()}
                | {"started_at": now, "heartbeat_at": beat},
            )
        owner.send_signal(signal.SIGSTOP)  # a paused worker: its first run looks dead first
        with caplog.at_level(logging.WARNING):
            assert recover_interrupted(store, spec, root) == [runs[0]]
        assert not alive(agents[0]) and alive(agents[1])
        assert f"process group {agents[0]})" in caplog.text
        assert str(agents[1]) not in caplog.text
        caplog.clear()
        owner.kill()
        owner.wait(timeout=60)
        with caplog.at_level(logging.WARNING):
            assert recover_interrupted(store, spec, root) == [runs[1]]
        assert not alive(agents[1])
        assert f"run {runs[1]} marked interrupted" in caplog.text
        assert f"process group {agents[1]})" in caplog.text
    finally:
        owner.kill()
        owner.wait(timeout=60)
        if owner.stdout is not None:
            owner.stdout.close()
        for pid in agents if "agents" in locals() else []:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def _hostname() -> str:
    import socket

    return socket.gethostname()


# An agent that starts a command in a session of its own, as Claude Code runs each Bash
# command: a signal to the agent's process group misses it. It prints the command's pid.
DETACHING = """
import subprocess, sys, time
child = subprocess.Popen(
    ["sleep", "300"], start_new_session=True,
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)
print(child.pid, flush=True)
if sys.argv[1:] == ["stay"]:
    time.sleep(300)
"""


def test_a_command_an_agent_ran_in_a_session_of_its_own_ends_with_the_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPECWRIGHT_RUNTIME_DIR", str(tmp_path / "runtime"))
    agent = fake_cli(tmp_path / "bin", "agent", DETACHING)
    stream = ProcessStream([str(agent)], cwd=tmp_path, env=dict(os.environ))
    [line] = list(stream.lines(threading.Event()))
    command = int(line)
    try:
        assert os.getpgid(command) != stream.result.pid  # out of the agent's group
        wait_gone(command)
        assert not alive(command), "the agent's command outlived it"
        assert not list((tmp_path / "runtime").glob("*.json"))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(command, signal.SIGKILL)


OWNER = """
import os, sys, threading, time
from pathlib import Path
from specwright.agents.process import ProcessStream

def work():
    stream = ProcessStream([sys.argv[1], "stay"], cwd=Path.cwd(), env=dict(os.environ))
    for line in stream.lines(threading.Event()):
        print(line.decode().strip(), flush=True)

threading.Thread(target=work, daemon=True).start()
time.sleep(300)
"""


def test_a_command_an_agent_ran_in_a_session_of_its_own_is_stopped_after_kill_9(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Specwright killed with kill -9: the agent dies with it, its command in a session of its
    own runs on (in the tree recovery rolls back) until the next command's recovery stops it."""
    from specwright.agents.orphans import stop_abandoned

    monkeypatch.setenv("SPECWRIGHT_RUNTIME_DIR", str(tmp_path / "runtime"))
    agent = fake_cli(tmp_path / "bin", "agent", DETACHING)
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(agent)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    command = 0
    try:
        assert owner.stdout is not None
        command = int(owner.stdout.readline())
        owner.kill()  # SIGKILL: no cleanup of ours runs
        owner.communicate(timeout=60)
        threading.Event().wait(0.5)
        assert alive(command), "the command should run on until recovery"
        assert stop_abandoned(grace_s=10) == [os.getpgid(command)]
        wait_gone(command)
        assert not alive(command)
        assert not list((tmp_path / "runtime").glob("*.json"))
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.communicate(timeout=60)
        if command:
            with contextlib.suppress(ProcessLookupError):
                os.kill(command, signal.SIGKILL)
