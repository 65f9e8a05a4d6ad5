"""`specwright run CHUNK`: in-process and as a real subprocess interrupted with SIGINT or
SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from specwright.store import Store
from tests.conftest import CliResult
from tests.support_loop import MUL_OK, git, make_repo, no_running_rows, rows


def project(tmp_path: Path, scripts: dict[str, Any]) -> Path:
    """A repo whose committed config has the scripted executor with inline per-chunk scripts."""
    config = {
        "tools": {
            "executors": {
                "scripted": {"type": "scripted", "options": {"script": {"chunks": scripts}}}
            }
        },
        "defaults": {"executor": "scripted", "reviewer": "checks", "maxIterations": 2},
        "verify": [{"name": "nobug", "command": "! grep -n BUG calc.py", "timeout_s": 30}],
    }
    return make_repo(
        tmp_path / "repo", {".handoff/config.yaml": yaml.safe_dump(config, sort_keys=False)}
    )


GOOD = [
    {"patch": "calc.py", "search": "return a + b\n", "replace": MUL_OK},
    {"say": "added mul"},
    {"usage": {"input_tokens": 10, "output_tokens": 3, "cost_usd": 0.001}},
]


def test_run_ships_with_live_progress_then_refuses_a_rerun(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    repo = project(tmp_path, {"1": GOOD, "2": [{"say": "nothing"}]})
    c = str(repo)
    assert cli("-C", c, "spec", "new", "Demo").code == 0
    assert cli("-C", c, "chunk", "add", "demo", "Add mul", "--file", "calc.py").code == 0
    assert cli("-C", c, "chunk", "add", "demo", "Do nothing", "--file", "calc.py").code == 0
    r = cli("-C", c, "run", "demo:1", "--executor", "scripted")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert "scripted: offline, deterministic" in lines[0]
    assert "── iteration 1/2" in lines
    assert any(line.strip() == "· edit calc.py" for line in lines)
    assert any("verify nobug: passed" in line for line in lines)
    assert any("review checks: SHIP" in line for line in lines)
    assert lines[-1].startswith("shipped in 1 iteration(s): commit ")
    assert "on specwright/demo" in lines[-1]
    assert git(repo, "log", "-1", "--format=%s") == "Add mul"

    again = cli("-C", c, "run", "demo:1")
    assert again.code == 2 and "already shipped" in again.err and "--force" in again.err

    quiet = cli("-C", c, "--json", "run", "demo:2", "--max-iterations", "1")
    assert quiet.code == 1
    data = json.loads(quiet.out)
    assert data["status"] == "failed" and data["iterations"] == 1
    assert data["reason"].startswith("max_iterations") and data["backend"] == "scripted"
    # the run's cost as the usage views count it, with its calls of unknown cost (a lower
    # bound when some are, unknown when all are; the text line says so, never $0)
    assert (data["cost_usd"], data["unpriced"]) == (0.0, 0)


def test_an_agent_warning_is_shown_with_what_it_says(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    """OpenCode's retries and Claude Code's denied permissions are warnings: the live line says
    what happened, not a bare "· error"."""
    warn = {"fail": "model call failed, retry 1: overloaded", "kind": "warning"}
    repo = project(tmp_path, {"1": [warn]})
    c = str(repo)
    assert cli("-C", c, "spec", "new", "Demo").code == 0
    assert cli("-C", c, "chunk", "add", "demo", "Add mul", "--file", "calc.py").code == 0
    r = cli("-C", c, "run", "demo:1", "--max-iterations", "1")
    assert r.code == 1, r.err
    events = [line.strip() for line in r.out.splitlines() if line.strip().startswith("·")]
    assert "· agent warning: model call failed, retry 1: overloaded" in events
    assert "· error" not in events


def test_run_reports_user_errors_in_one_line(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    repo = project(tmp_path, {"1": GOOD})
    c = str(repo)
    cli("-C", c, "spec", "new", "Demo")
    cli("-C", c, "chunk", "add", "demo", "Add mul")
    (repo / "calc.py").write_text("my edit\n")
    r = cli("-C", c, "run", "demo:1")
    assert r.code == 2 and "uncommitted changes (calc.py)" in r.err
    assert len(r.err.strip().splitlines()) == 1
    git(repo, "checkout", "--", "calc.py")
    assert (
        "no executor 'nope'; expected one of"
        in cli("-C", c, "run", "demo:1", "--executor", "nope").err
    )
    missing = cli("-C", c, "run", "demo:9")
    assert missing.code == 2
    assert missing.err.strip() == (
        "specwright: error: chunk 9 of spec 'demo': no such chunk "
        "(it has 1 chunk: see `specwright chunk list demo`)"
    )
    assert (
        "expected a whole number from 1 to 1000"
        in cli("-C", c, "run", "demo:1", "--max-iterations", "0").err
    )


def test_run_in_a_repository_without_commits_leaves_its_branch_alone(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    """Refused in one line, and the user's first commit still goes to their branch (the
    refusal came after HEAD had been switched to the unborn spec branch)."""
    repo = tmp_path / "fresh"
    (repo / ".handoff").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / ".git" / "info" / "exclude").write_text("*\n")  # a clean tree, nothing committed
    template = project(tmp_path, {"1": GOOD}) / ".handoff" / "config.yaml"
    (repo / ".handoff" / "config.yaml").write_text(template.read_text())
    c = str(repo)
    assert cli("-C", c, "spec", "new", "Demo").code == 0
    assert cli("-C", c, "chunk", "add", "demo", "Add mul").code == 0
    for args in (("run", "demo:1"), ("run-all", "demo")):
        r = cli("-C", c, *args)
        assert r.code == 2 and "no commits yet" in r.err, r.err
        assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/main"


@pytest.mark.parametrize(
    ("sig", "code"),
    # SIGTERM (kill, systemd) and SIGHUP (the terminal closed) as Ctrl-C; SIGHUP killed the run
    # with no cleanup: the run left running, the tree dirty, the agent's group alive
    [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
    ids=["sigint", "sigterm", "sighup"],
)
def test_signal_cancels_the_run_and_kills_the_agent(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    marker = tmp_path / "agent-started"
    pidfile = tmp_path / "agent.pid"
    slow = [
        {"write": "calc.py", "content": "half done\n"},
        {"run": f"echo $$ > {pidfile}; touch {marker}; exec sleep 60"},
    ]
    repo = project(tmp_path, {"1": slow})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    base = [sys.executable, "-m", "specwright.cli", "-C", str(repo)]
    for args in (["spec", "new", "Demo"], ["chunk", "add", "demo", "Slow", "--file", "calc.py"]):
        subprocess.run([*base, *args], check=True, capture_output=True, env=env, timeout=120)
    proc = subprocess.Popen(
        [*base, "run", "demo:1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        for _ in range(1200):
            if marker.exists() or proc.poll() is not None:
                break
            threading.Event().wait(0.05)
        assert marker.exists(), proc.stderr.read() if proc.poll() is not None else "not started"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    sender = "Ctrl-C" if sig == signal.SIGINT else sig.name
    assert f"cancelled after 1 iteration(s): interrupted ({sender}) (work tree at" in out, out
    agent = int(pidfile.read_text())
    from tests.support_agents import alive, wait_gone

    # SIGKILL to the agent's group is sent before the run returns; the kernel may take a moment
    # to tear a grandchild down on a loaded machine (CI saw it alive right after the exit)
    wait_gone(agent)
    assert not alive(agent)
    store = Store(os.environ["SPECWRIGHT_DB"])
    [run] = rows(store, "SELECT status, reason FROM runs")
    assert run == {"status": "cancelled", "reason": f"cancelled: interrupted ({sender})"}
    no_running_rows(store)
    assert git(repo, "status", "--porcelain") == ""
    assert (repo / "calc.py").read_text().startswith("def add")


@pytest.mark.parametrize("flag", ["--help"])
def test_run_help(flag: str, cli: Callable[..., CliResult]) -> None:
    r = cli("run", flag)
    assert r.code == 0 and "--max-iterations" in r.out and "--reviewer" in r.out


def test_run_warns_of_dependencies_that_have_not_shipped(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    """Chunk 3 needs 1 and 2: run alone, it goes ahead without their summaries, and says so on
    stderr (stdout stays the JSON asked for); a shipped dependency is not named."""
    nothing = [{"say": "nothing"}]
    repo = project(tmp_path, {"1": GOOD, "2": nothing, "3": nothing})
    c = str(repo)
    cli("-C", c, "spec", "new", "Demo")
    cli("-C", c, "chunk", "add", "demo", "Add mul")
    cli("-C", c, "chunk", "add", "demo", "Use mul", "--depends-on", "1")
    cli("-C", c, "chunk", "add", "demo", "Document", "--depends-on", "1", "--depends-on", "2")
    once = ("--max-iterations", "1", "--no-baseline")

    first = cli("-C", c, "--json", "run", "demo:3", *once)
    assert first.code == 1 and json.loads(first.out)["status"] == "failed"
    assert first.err.splitlines() == [
        "specwright: warning: chunk 3 'Document' depends on chunk 1 'Add mul' (pending), "
        "chunk 2 'Use mul' (pending): it runs without those chunks' summaries"
    ]
    shipped = cli("-C", c, "run", "demo:1", *once)
    assert shipped.code == 0 and shipped.err == "", shipped.err
    after_ship = cli("-C", c, "run", "demo:2", *once)
    assert after_ship.code == 1 and "warning" not in after_ship.err, after_ship.err
    again = cli("-C", c, "run", "demo:3", *once)
    assert again.err.splitlines()[0] == (
        "specwright: warning: chunk 3 'Document' depends on chunk 2 'Use mul' (failed): "
        "it runs without that chunk's summary"
    )
    assert again.out.splitlines()[0].startswith("chunk 3 'Document': executor scripted")


def test_id_prefixes_that_match_several_ids_are_ambiguous(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    repo = project(tmp_path, {"1": GOOD})
    c = str(repo)
    cli("-C", c, "spec", "new", "Demo")
    cli("-C", c, "spec", "new", "Other")
    for title in ("One", "Two"):
        assert cli("-C", c, "chunk", "add", "demo", title).code == 0
    ids = [row["id"] for row in json.loads(cli("-C", c, "--json", "chunk", "list", "demo").out)]
    common = ids[0][:4]  # a UUIDv7 starts with its time: these 4 characters last 50 days
    assert ids[1].startswith(common)
    for ref in ("0", common[:2], common):
        r = cli("-C", c, "run", ref)
        assert r.code == 2
        assert r.err.strip() == (
            f"specwright: error: chunk {ref!r}: ambiguous, matches 2 chunks; use more of the id"
        )
    unknown = cli("-C", c, "run", "nope")
    assert unknown.code == 2 and "chunk 'nope': no such chunk (name one by spec and " in unknown.err
    assert "SPEC" not in unknown.err
    spec = cli("-C", c, "spec", "show", "01")
    assert spec.code == 2
    assert spec.err.strip() == (
        "specwright: error: spec '01': ambiguous, matches 2 specs; use more of the id"
    )


def test_a_progress_line_cut_to_the_width_says_so() -> None:
    """A long line (an agent's error, a chunk's reason) is cut with "..." rather than
    mid-word with nothing to show it was cut."""
    import io

    from specwright.cli.run import _Printer
    from specwright.loop import Progress

    out = io.StringIO()
    printer = _Printer(out)
    printer(Progress("rollback", "r", "c", 1, "agent error (" + "x" * 400 + "); retrying"))
    printer(Progress("rollback", "r", "c", 1, "short"))
    long, short = out.getvalue().splitlines()
    assert len(long) == _Printer.WIDTH and long.endswith("...")
    assert short == "  short"


@pytest.mark.parametrize("command", ["run", "run-all"])
def test_an_llm_reviewer_without_its_key_is_one_line_before_anything_runs(
    tmp_path: Path, cli: Callable[..., CliResult], command: str
) -> None:
    """Its key variable unset, the reviewer could review no attempt: the agent is not started
    for an attempt nobody can review; one line names the variable, nothing is recorded."""
    config = {
        "tools": {
            "executors": {"scripted": {"type": "scripted", "options": {"script": GOOD}}},
            "planners": {
                "fake": {
                    "type": "anthropic",
                    "model": "claude-sonnet-4-5",
                    "base_url": "http://127.0.0.1:9",
                    "api_key_env": "REVIEWER_TEST_KEY",
                }
            },
            "reviewers": {"llm": {"type": "llm", "planner": "fake"}},
        },
        "defaults": {"executor": "scripted", "reviewer": "llm", "maxIterations": 2},
    }
    repo = make_repo(
        tmp_path / "repo", {".handoff/config.yaml": yaml.safe_dump(config, sort_keys=False)}
    )
    c = str(repo)
    assert cli("-C", c, "spec", "new", "Demo").code == 0
    assert cli("-C", c, "chunk", "add", "demo", "Add mul", "--file", "calc.py").code == 0
    r = cli("-C", c, command, "demo:1" if command == "run" else "demo")
    assert r.code == 2, (r.out, r.err)
    assert r.err.strip().splitlines() == [
        "specwright: error: reviewer 'llm': no API key: set the environment variable "
        "REVIEWER_TEST_KEY (named by api_key_env of planner 'fake')"
    ]
    store = Store(repo / "data" / "specwright.duckdb")
    assert (
        rows(store, "SELECT id FROM runs") == [] and rows(store, "SELECT id FROM executions") == []
    )
    assert git(repo, "status", "--porcelain") == ""


HOLD_THE_DATABASE = """
import sys, time
import duckdb
while True:
    try:
        db = duckdb.connect(sys.argv[1])
        break
    except duckdb.IOException:  # the run has it for a moment
        time.sleep(0.05)
print("held", flush=True)
sys.stdin.read()
"""


def test_a_run_kept_from_its_database_still_rolls_its_attempt_back(tmp_path: Path) -> None:
    """Another program holds the database past the lock timeout while an attempt is verified:
    the run stops with one line per problem and its attempt is rolled back (checking that the
    run is still its own must not keep the tree from being restored when the database cannot
    answer)."""
    state = tmp_path / "state"
    state.mkdir()
    verify = (
        f"if [ -e {state}/base ]; then touch {state}/verifying; "
        f"while [ ! -e {state}/go ]; do sleep 0.1; done; else touch {state}/base; fi"
    )
    config = {
        "tools": {"executors": {"scripted": {"type": "scripted", "options": {"script": GOOD}}}},
        "defaults": {"executor": "scripted", "reviewer": "checks", "maxIterations": 1},
        "verify": [{"name": "check", "command": verify, "timeout_s": 300}],
    }
    repo = make_repo(tmp_path / "repo", {".handoff/config.yaml": yaml.safe_dump(config)})
    env = {**os.environ, "SPECWRIGHT_LOCK_TIMEOUT": "2", "SPECWRIGHT_LINGER": "0"}
    cli = [sys.executable, "-m", "specwright", "-C", str(repo)]
    for args in (["spec", "new", "Demo"], ["chunk", "add", "demo", "Mul", "--prompt", "x"]):
        subprocess.run([*cli, *args], check=True, capture_output=True, env=env)
    run = subprocess.Popen(
        [*cli, "run", "demo:1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    holder = None
    try:
        deadline = time.monotonic() + 120
        while not (state / "verifying").exists():
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()
            time.sleep(0.05)
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_THE_DATABASE, os.environ["SPECWRIGHT_DB"]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        (state / "go").touch()
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
        if holder is not None:
            holder.communicate(timeout=60)  # closes its stdin: it lets go
    assert run.returncode == 2, out + err
    assert "database is locked" in err and "Traceback" not in err, err
    assert "not restored" not in err, err
    assert git(repo, "status", "--short") == ""
