"""Ctrl-C and SIGTERM reach the main thread whichever thread the kernel hands them to
(specwright/interrupts.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from specwright import interrupts

REPO = Path(__file__).resolve().parent.parent

# a command whose main thread blocks in a system call, as in an HTTP read; the test makes
# another thread take the SIGTERM (the kernel may pick any thread that does not block it)
BLOCKED = """
import argparse, signal, sys, threading, time
from specwright.cli.run import stop_on_sigterm

def aside():
    sys.stdin.readline()
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

threading.Thread(target=aside, daemon=True).start()

def command(args, ctx):
    print("blocked", flush=True)
    time.sleep(120)
    print("slept", flush=True)
    return 0

sys.exit(stop_on_sigterm(command, argparse.Namespace(), None))
"""


def test_a_sigterm_another_thread_took_interrupts_the_main_threads_system_call() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", BLOCKED],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == "blocked\n"
        proc.stdin.write("\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, err
    assert out == "" and err == "specwright: terminated\n", (out, err)


# a command whose main thread is inside a long DuckDB query when the signal comes. DuckDB runs
# the handler while it executes, swallowed what the handler raised and raised its own
# RuntimeError("Query interrupted"): a traceback and exit 1 instead of the command's cleanup.
# And it polls for signals only between the tasks the main thread runs: more often than not,
# the query (minutes long here) went on to its end.
QUERYING = """
import argparse, signal, sys
from pathlib import Path
from specwright.cli.run import stop_on_sigterm
from specwright.store import Store

# as started from a terminal, whatever the test runner does with SIGINT
signal.signal(signal.SIGINT, signal.default_int_handler)
store = Store(Path(sys.argv[1]))

def command(args, ctx):
    with store.connect():
        print("querying", flush=True)
        store.query("SELECT count(*) FROM range(1000000000000) t(x) WHERE x % 7 = 3")
    print("counted", flush=True)
    return 0

try:
    sys.exit(stop_on_sigterm(command, argparse.Namespace(), None))
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)
"""


def signalled(
    script: str, arg: str, said: str, signum: int, settle_s: float = 0
) -> tuple[int, str, str]:
    """Run ``script`` with ``arg``; once its first line is ``said`` (and ``settle_s`` later),
    send it ``signum``; its exit code and the rest of its stdout and stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, arg],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        assert first == f"{said}\n", first or proc.stderr.read()  # at EOF: why it died
        if settle_s:
            time.sleep(settle_s)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


@pytest.mark.parametrize(
    ("signum", "code", "said"),
    [(signal.SIGTERM, 143, "specwright: terminated\n"), (signal.SIGINT, 130, "interrupted\n")],
)
def test_a_signal_during_a_database_query_stops_it_and_the_command(
    tmp_path: Path, signum: int, code: int, said: str
) -> None:
    db = tmp_path / "specwright.duckdb"
    for _ in range(3):  # where the signal lands in the query varies: a few tries
        # 0.5 s into the query, which would run for an hour
        assert signalled(QUERYING, str(db), "querying", signum, 0.5) == (code, "", said)
    from specwright.store import Store

    assert Store(db).query("SELECT 1") == [(1,)]  # the database opens as before


def test_a_waited_for_future_raises_its_own_timeout_error() -> None:
    """A chunk whose thread failed with TimeoutError (a socket's, say) is reported as failed,
    not taken for the slice of the wait running out."""

    def times_out() -> None:
        raise TimeoutError("read timed out")

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(times_out)
        with pytest.raises(TimeoutError, match="read timed out"):
            interrupts.result(future)


# `run_execution` called in the main thread, as a script or a notebook cell does: a Codex turn
# tells its tokens, then the agent works on (sleeps) until the signal comes
EXECUTING = """
import argparse, os, signal, sys
from pathlib import Path
from specwright.agents import run_execution
from specwright.agents.base import Task
from specwright.agents.command import CommandExecutor
from specwright.cli.run import stop_on_sigterm
from specwright.recorder import ExecutionRecorder
from specwright.store import Store
from tests.support_agents import STREAMS, executor_config, fake_cli

signal.signal(signal.SIGINT, signal.default_int_handler)  # as started from a terminal
work = Path(sys.argv[1])
stream = STREAMS / "codex" / "exec-json.jsonl"
agent = fake_cli(work / "bin", "codex", f'''
    import pathlib, sys, time
    sys.stdout.write(pathlib.Path({str(stream)!r}).read_text())
    sys.stdout.flush()
    time.sleep(120)
    ''')
config = executor_config(name="codex", type="command", parser="codex", model="gpt-5-codex",
    argv=(str(agent), "{prompt}"))


class Told(ExecutionRecorder):
    def on_event(self, event):
        super().on_event(event)
        if event.type == "usage":
            print("told", flush=True)


recorder = Told(Store(os.environ["SPECWRIGHT_DB"]), role="executor", backend="command",
    executor="codex", model="gpt-5-codex")


def command(args, ctx):
    run_execution(CommandExecutor(config), Task("Create hello.txt", work), recorder)
    return 0

try:
    sys.exit(stop_on_sigterm(command, argparse.Namespace(), None))
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_execution_keeps_the_tokens_its_events_told(
    tmp_path: Path, signum: int, code: int
) -> None:
    """Ctrl-C or SIGTERM after a Codex turn told its usage: the execution was recorded with 0
    tokens and no cost, though its events held the turn's. Now its row has what they told, a
    lower bound (its cost stays unknown), as recovery writes for one killed with kill -9."""
    returncode, _, err = signalled(EXECUTING, str(tmp_path), "told", signum)
    assert returncode == code, err
    from specwright.store import Store

    store = Store(os.environ["SPECWRIGHT_DB"])
    columns = (
        "status, exit_reason, input_tokens, output_tokens, cache_read_tokens, "
        "round(computed_cost_usd, 9), cost_usd, cost_source, event_count"
    )
    [got] = store.query(f"SELECT {columns} FROM executions")
    [(events,)] = store.query("SELECT count(*) FROM events")
    assert got == (
        "cancelled",
        "interrupted",
        24763 - 24448,  # Codex counts its cached tokens in its input
        122,
        24448,
        0.00466975,  # the told turn's price: a lower bound of what it cost
        None,
        "incomplete",
        events,
    )
