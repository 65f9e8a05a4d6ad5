"""Starting a local `opencode serve` (127.0.0.1 only) for a user or a test, and stopping it.

Readiness is the stdout line ``opencode server listening on http://127.0.0.1:<port>``: polling
the health route from time zero can hang on a connection accepted before the server is ready.

The server dies with Specwright, even after kill -9: it gets SIGKILL when the thread that
spawned it ends (``orphans.die_with_parent``), so it is spawned by a thread of its own that
lives exactly as long as the server (reading its output, then waiting for it), never by the
caller's, which may end first. What it started in its group is registered for crash recovery:
the next server started stops what a killed Specwright left (``orphans.stop_abandoned``).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from specwright.agents.orphans import (
    AGENT_TOKEN_ENV,
    die_with_parent,
    new_token,
    register_agent,
    stop_abandoned,
    stop_strays,
    unregister_agent,
)
from specwright.agents.process import kill_group
from specwright.errors import AgentError
from specwright.interrupts import SLICE_S, wait_for

_LISTENING = re.compile(r"listening on (http://[^\s]+)")

# Switches that keep opencode from fetching anything on its own (models catalogue, updates,
# background plugin installs, sharing, LSP downloads).
OFFLINE_ENV = {
    "npm_config_offline": "true",
    "OPENCODE_DISABLE_MODELS_FETCH": "1",
    "OPENCODE_DISABLE_AUTOUPDATE": "1",
    "OPENCODE_DISABLE_SHARE": "1",
    "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
    "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
}


MAX_OUTPUT_LINE = 4096  # characters kept of a line the server prints (the last 200 lines)


class OpenCodeServer:
    """A running `opencode serve` child process; use as a context manager or call stop()."""

    def __init__(
        self,
        executable: str,
        cwd: Path | str,
        env: Mapping[str, str] | None = None,
        port: int = 0,
        ready_timeout_s: float = 60.0,
    ) -> None:
        self.executable = executable
        self.cwd = Path(cwd)
        self.env = dict(os.environ if env is None else env)
        self.port = port
        self.ready_timeout_s = ready_timeout_s
        self.url: str | None = None
        self.proc: subprocess.Popen[str] | None = None
        self.output: deque[str] = deque(maxlen=200)
        self._pump_thread: threading.Thread | None = None  # spawns the server, outlives it
        self._registration: Path | None = None
        self._spawn_error: OSError | None = None
        self._ended = threading.Event()  # the server has exited and been waited for
        self._token = new_token()  # in its environment: what it starts has it (stop_strays)

    def start(self) -> OpenCodeServer:
        """Spawn the server and wait for its listening line; returns self (``url`` is set)."""
        stop_abandoned()  # a server a killed Specwright left behind may hold the port
        argv = [self.executable, "serve", "--port", str(self.port), "--hostname", "127.0.0.1"]
        spawned, found = threading.Event(), threading.Event()
        self._pump_thread = threading.Thread(
            target=self._keep, args=(argv, spawned, found), name="opencode-serve", daemon=True
        )
        self._pump_thread.start()
        try:
            self._await_listening(spawned, found)
        except BaseException as exc:  # Ctrl-C while it starts: it stops, its group too
            if not isinstance(exc, AgentError):
                spawned.wait(5.0)
                self.stop()
            raise
        return self

    def _await_listening(self, spawned: threading.Event, found: threading.Event) -> None:
        wait_for(spawned)
        if self.proc is None:
            exc = self._spawn_error
            raise AgentError(f"{self.executable}: cannot start `opencode serve`: {exc}") from None
        if not wait_for(found, self.ready_timeout_s) or self.url is None:
            tail = " | ".join(list(self.output)[-5:])
            code = None
            if found.is_set():  # its output ended: it exited (or is exiting) without listening
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = self.proc.wait(timeout=5)
            self.stop()
            if code is not None:
                busy = f"; is port {self.port} on 127.0.0.1 in use already?" if self.port else ""
                raise AgentError(
                    f"`opencode serve` exited with code {code} before listening{busy} "
                    f"(last output: {tail or 'none'})"
                )
            raise AgentError(
                f"`opencode serve` did not report a listening address within "
                f"{self.ready_timeout_s:g} s (last output: {tail or 'none'})"
            )

    def _keep(self, argv: list[str], spawned: threading.Event, found: threading.Event) -> None:
        """The server's parent thread: spawn it, read its output, wait for it to end. Ending
        sooner would SIGKILL the server (``die_with_parent``)."""
        try:
            self.proc = subprocess.Popen(
                argv,
                cwd=self.cwd,
                env={**self.env, AGENT_TOKEN_ENV: self._token},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
            self._registration = register_agent(
                self.proc.pid, argv[0], self.cwd, "server", token=self._token
            )
        except OSError as exc:
            self._spawn_error = exc
            return
        finally:
            spawned.set()
        try:
            self._pump(found)
            self.proc.wait()
        finally:
            self._ended.set()

    def _pump(self, found: threading.Event) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        stream = self.proc.stdout
        # keep reading so a full pipe never blocks the server; each line kept is bounded (the
        # server's output is untrusted: one endless line must not grow our memory)
        while line := stream.readline(MAX_OUTPUT_LINE):
            if not line.endswith("\n"):  # cut: skip the rest of the line
                while (more := stream.readline(MAX_OUTPUT_LINE)) and not more.endswith("\n"):
                    pass
            self.output.append(line.rstrip())
            if self.url is None:
                m = _LISTENING.search(line)
                if m:
                    self.url = m.group(1).rstrip("/")
                    found.set()
        found.set()  # exited before listening: start() reports it

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def wait(self) -> int:
        """Block until the server exits (Ctrl-C stops it); returns its exit code."""
        assert self.proc is not None
        try:  # in slices (interrupts.py); the server may exit while what it left holds its output
            while not wait_for(self._ended, SLICE_S) and self.proc.poll() is None:
                pass
            code = self.proc.wait()
        except KeyboardInterrupt:
            code = 0
        self.stop()  # what it left in its group goes too
        return code

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM the server's process group, then SIGKILL what is left."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            kill_group(self.proc.pid, grace_s=grace_s, proc=self.proc)
        else:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, 9)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=grace_s)
        stop_strays(self._token, grace_s)  # what it started in sessions of their own
        unregister_agent(self._registration)
        if self._pump_thread is not None:
            self._pump_thread.join(timeout=grace_s)
            if self._pump_thread.is_alive():  # its output is held open outside the group:
                return  # closing would wait for the reading thread's lock (forever)
        if self.proc.stdout is not None:
            with contextlib.suppress(OSError):
                self.proc.stdout.close()

    def __enter__(self) -> OpenCodeServer:
        return self.start() if self.proc is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def wait_healthy(url: str, timeout_s: float = 30.0) -> dict[str, object]:
    """Poll ``/global/health`` with a short per-request timeout until it answers."""
    import httpx

    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{url}/global/health", timeout=2.0, trust_env=False)
            if r.status_code == 200:
                body: dict[str, object] = r.json()
                return body
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise AgentError(f"{url}: not healthy after {timeout_s:g} s ({last})")
