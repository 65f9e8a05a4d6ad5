"""Ctrl-C and SIGTERM reach the main thread whichever thread the kernel hands them to
(specwright/interrupts.py)."""

from __future__ import annotations

import subprocess
import sys
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


def test_a_waited_for_future_raises_its_own_timeout_error() -> None:
    """A chunk whose thread failed with TimeoutError (a socket's, say) is reported as failed,
    not taken for the slice of the wait running out."""

    def times_out() -> None:
        raise TimeoutError("read timed out")

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(times_out)
        with pytest.raises(TimeoutError, match="read timed out"):
            interrupts.result(future)
