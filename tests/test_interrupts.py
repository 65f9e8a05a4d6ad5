"""Ctrl-C and SIGTERM reach the main thread whichever thread the kernel hands them to
(specwright/interrupts.py)."""

from __future__ import annotations

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


@pytest.mark.parametrize(
    ("signum", "code", "said"),
    [(signal.SIGTERM, 143, "specwright: terminated\n"), (signal.SIGINT, 130, "interrupted\n")],
)
def test_a_signal_during_a_database_query_stops_it_and_the_command(
    tmp_path: Path, signum: int, code: int, said: str
) -> None:
    db = tmp_path / "specwright.duckdb"
    for _ in range(3):  # where the signal lands in the query varies: a few tries
        proc = subprocess.Popen(
            [sys.executable, "-c", QUERYING, str(db)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "querying\n"
            time.sleep(0.5)  # into the query, which would run for an hour
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert (proc.returncode, out, err) == (code, "", said)
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
