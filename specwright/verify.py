"""Verification: the project's own checks, run by Specwright in the chunk's work tree.

Each configured step (name, shell command, timeout) runs in its own process group; a step that
times out or is cancelled has the whole group killed. The last 4 KiB of its output is kept
(read from a pipe as it comes: gigabytes of output cost neither memory nor disk).
For pytest steps (the command mentions ``pytest``) a JUnit XML report is requested through
``PYTEST_ADDOPTS`` so the exact collected / failed / skipped tests are known; without the report
the summary line is parsed. ``assess`` compares an attempt with the baseline taken on the base
commit, so only NEW failures count: a repo that was already red can still make progress, while a
step that ran no tests, or tests deleted or newly skipped since the base, are caught.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING

from specwright.agents.orphans import (
    AGENT_TOKEN_ENV,
    die_with_parent,
    new_token,
    register_agent,
    scratch_prefix,
    stop_strays,
    unregister_agent,
)
from specwright.agents.process import clean_tail, kill_group
from specwright.model import Verification, new_id, utcnow

if TYPE_CHECKING:
    from specwright.config import VerifyStep
    from specwright.store import Store

TAIL_BYTES = 4096
KILL_GRACE_S = 2.0  # a cancelled or timed-out step gets this long after SIGTERM
_PYTEST = re.compile(r"(^|[\s/;&|(])(py\.test|pytest)(\s|$|[;&|)])")
_SUMMARY = re.compile(
    r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected|warnings?)\b"
)
PYTEST_NO_TESTS = 5  # pytest's exit code when nothing was collected


@dataclass(frozen=True)
class TestReport:
    """What a test runner says it ran (exact ids when a JUnit report was read)."""

    __test__ = False  # not a pytest test class, despite the name

    collected: int
    failed: int
    skipped: int
    ids: frozenset[str] = frozenset()
    failed_ids: frozenset[str] = frozenset()
    skipped_ids: frozenset[str] = frozenset()
    source: str = "junit"  # junit | summary


@dataclass(frozen=True)
class StepResult:
    """One step's run: the stored record plus the parsed test report, if any."""

    verification: Verification
    tests: TestReport | None = None

    @property
    def name(self) -> str:
        return self.verification.name

    @property
    def passed(self) -> bool:
        return self.verification.status == "passed"


@dataclass(frozen=True)
class Assessment:
    """Whether a step's result counts against the chunk, compared with the baseline."""

    name: str
    ok: bool
    reason: str  # one line: "passed", "2 new failing tests: ...", "ran no tests"
    result: StepResult
    notes: tuple[str, ...] = ()  # pre-existing problems that do not count


def is_pytest(command: str) -> bool:
    """Whether a command runs pytest (so a JUnit report can be requested)."""
    return bool(_PYTEST.search(command))


# --- running --------------------------------------------------------------------------------


class _TailReader(threading.Thread):
    """Reads a step's output pipe to its end, keeping only the last ``limit`` bytes: a step
    printing gigabytes costs neither memory nor disk."""

    def __init__(self, stream: IO[bytes], limit: int = TAIL_BYTES) -> None:
        super().__init__(name="verify-output", daemon=True)
        self.stream, self.limit = stream, limit
        self.chunks: deque[bytes] = deque()
        self.size = 0  # bytes kept in ``chunks``
        self.total = 0  # bytes read in all

    def run(self) -> None:
        read = getattr(self.stream, "read1", self.stream.read)
        try:
            while chunk := read(65536):
                self.chunks.append(chunk)
                self.size += len(chunk)
                self.total += len(chunk)
                while self.size - len(self.chunks[0]) >= self.limit:
                    self.size -= len(self.chunks.popleft())
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                self.stream.close()

    def text(self) -> str:
        data = b"".join(list(self.chunks))
        if self.total <= self.limit:
            return data.decode("utf-8", errors="replace")
        return clean_tail(data, self.limit)


def run_step(
    step: VerifyStep,
    workdir: Path | str,
    *,
    cancel: threading.Event | None = None,
    is_baseline: bool = False,
    env: dict[str, str] | None = None,
) -> StepResult:
    """Run one verification step and return its record (never raises for the step failing)."""
    from specwright.redact import Redactor

    cancel = cancel or threading.Event()
    pytest_step = is_pytest(step.command)
    token = new_token()  # what the step starts in a session of its own carries it too
    run_env = {**os.environ, **(env or {}), AGENT_TOKEN_ENV: token}
    started = time.monotonic()
    status, rc = "passed", None
    tests: TestReport | None = None
    with tempfile.TemporaryDirectory(prefix=scratch_prefix("verify")) as tmp:
        junit = Path(tmp) / "junit.xml"
        if pytest_step:
            extra = f"--junitxml={junit} -o junit_family=xunit2"
            run_env["PYTEST_ADDOPTS"] = f"{run_env.get('PYTEST_ADDOPTS', '')} {extra}".strip()
        try:
            proc = subprocess.Popen(
                step.command,
                shell=True,
                cwd=str(workdir),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=run_env,
                start_new_session=True,  # own group: a kill reaches the shell's children too
                preexec_fn=die_with_parent(),  # this thread waits for it: it dies with us
            )
        except OSError as exc:
            status, tail = "error", f"cannot start: {exc}"
        else:
            # only the shell dies with us (dash forks even its last command, so pytest and the
            # like are its children): crash recovery stops the rest of its group from this
            registration = register_agent(proc.pid, "/bin/sh", workdir, "verify", token=token)
            assert proc.stdout is not None
            reader = _TailReader(proc.stdout)
            reader.start()
            state = "done"
            deadline = started + step.timeout_s
            try:
                while proc.poll() is None:
                    if cancel.is_set():
                        state = "cancelled"
                        break
                    if time.monotonic() >= deadline:
                        state = "timeout"
                        break
                    try:
                        proc.wait(timeout=0.05)
                    except subprocess.TimeoutExpired:
                        pass
            finally:  # also on KeyboardInterrupt: never leave the step running
                if proc.poll() is None:
                    kill_group(proc.pid, grace_s=KILL_GRACE_S, proc=proc)
                # what the group left running goes too; then the pipe ends
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                stop_strays(token, KILL_GRACE_S)  # and what it started out of its group
                unregister_agent(registration)
                # a process that left the group may hold the pipe open: its reader is left
                # to finish when it does, the step is over
                reader.join(timeout=KILL_GRACE_S)
            rc = proc.returncode
            tail = reader.text()
            if state == "timeout":
                status, rc = "timeout", None
                tail += f"\n[specwright: killed after {step.timeout_s:g}s timeout]"
            elif state == "cancelled":  # stopped by the run's cancel: no fault of the check
                status, rc = "cancelled", None
                tail += "\n[specwright: cancelled]"
            elif rc in (126, 127):
                status = "error"  # not runnable / command not found: a broken step
            elif rc != 0:
                status = "failed"
        if pytest_step and status in ("passed", "failed"):
            tests = parse_junit(junit) if junit.exists() else parse_summary(tail)
            if rc == PYTEST_NO_TESTS:
                tests = tests or TestReport(0, 0, 0, source="summary")
    redact = Redactor.from_env(run_env)
    record = Verification(
        name=step.name,
        command=redact(step.command),  # `${VAR}` in the config puts secrets in commands
        status=status,
        exit_code=rc,
        duration_ms=int((time.monotonic() - started) * 1000),
        output_tail=redact.edges(tail, tail=False),
        tests_collected=tests.collected if tests else None,
        tests_failed=tests.failed if tests else None,
        tests_skipped=tests.skipped if tests else None,
        is_baseline=is_baseline,
    )
    return StepResult(record, tests)


def run_steps(
    steps: Sequence[VerifyStep],
    workdir: Path | str,
    *,
    cancel: threading.Event | None = None,
    is_baseline: bool = False,
    on_result: Callable[[StepResult], None] | None = None,
) -> list[StepResult]:
    """Run every step in order (all of them, so the agent gets the whole picture)."""
    results = []
    for step in steps:
        if cancel is not None and cancel.is_set():
            break
        result = run_step(step, workdir, cancel=cancel, is_baseline=is_baseline)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def unrunnable(
    results: Sequence[StepResult], workdir: Path | str, worktree: bool = False
) -> str | None:
    """One line for the first step that could not run at all (exit 127: command not found,
    126: not executable), else None: such a step fails at every attempt as at the base, so
    judged against the baseline it would never count and no attempt would be verified.
    ``worktree``: ``workdir`` is a worktree of the run (--parallel, compared executors)."""
    for r in results:
        v = r.verification
        if v.status == "error" and v.exit_code in (126, 127):
            why = "command not found" if v.exit_code == 127 else "not executable"
            fix = (
                "a worktree has no git-ignored files (.venv/, node_modules/): call tools from "
                "PATH (`python -m pytest`)"
                if worktree
                else "install it or fix its command in .handoff/config.yaml"
            )
            return f"verification step {v.name!r} cannot run in {workdir} ({why}): {fix}"
    return None


# --- parsing test reports -------------------------------------------------------------------


def parse_junit(path: Path | str) -> TestReport | None:
    """Collected / failed / skipped test ids from a JUnit XML file (None if unreadable)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError):
        return None
    ids: set[str] = set()
    failed: set[str] = set()
    skipped: set[str] = set()
    for case in root.iter("testcase"):
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        ids.add(test_id)
        tags = {child.tag for child in case}
        if tags & {"failure", "error"}:
            failed.add(test_id)
        elif "skipped" in tags:
            skipped.add(test_id)
    # a collection error is a suite-level error without any test case
    suite_errors = sum(int(x.get("errors", 0) or 0) for x in root.iter("testsuite"))
    return TestReport(
        collected=len(ids),
        failed=len(failed) if ids else suite_errors,
        skipped=len(skipped),
        ids=frozenset(ids),
        failed_ids=frozenset(failed),
        skipped_ids=frozenset(skipped),
    )


def parse_summary(output: str) -> TestReport | None:
    """Counts from pytest's final summary line ("3 passed, 1 failed in 0.1s")."""
    for line in reversed(output.splitlines()):
        if "no tests ran" in line:
            return TestReport(0, 0, 0, source="summary")
        found = _SUMMARY.findall(line)
        if found and (" in " in line or line.strip().startswith("=")):
            counts: dict[str, int] = {}
            for n, word in found:
                key = word.rstrip("s") if word.startswith(("error", "warning")) else word
                counts[key] = counts.get(key, 0) + int(n)
            failed = counts.get("failed", 0) + counts.get("error", 0)
            skipped = counts.get("skipped", 0) + counts.get("xfailed", 0)
            collected = failed + skipped + counts.get("passed", 0) + counts.get("xpassed", 0)
            return TestReport(collected, failed, skipped, source="summary")
    return None


# --- comparing with the baseline ------------------------------------------------------------


def _names(ids: Iterable[str], limit: int = 5) -> str:
    items = sorted(ids)
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def _in_files(test_id: str, changed: Sequence[str]) -> bool:
    """Whether a JUnit test id (``pkg.test_mod.Class::name``) lives in one of ``changed``."""
    classname = test_id.split("::", 1)[0]
    for path in changed:
        if not path.endswith(".py"):
            continue
        module = path[:-3].replace("/", ".")
        if classname == module or classname.startswith(module + "."):
            return True
    return False


def assess_step(
    result: StepResult, base: StepResult | None, changed: Sequence[str] = ()
) -> Assessment:
    """Judge one step against its baseline: only problems the attempt introduced count (a
    test failing at the base still counts when the attempt changed its file)."""
    v, t = result.verification, result.tests
    bt = base.tests if base else None
    problems: list[str] = []
    notes: list[str] = []
    if v.status in ("timeout", "error"):
        if base is not None and base.verification.status == v.status:
            notes.append(f"{v.status} as at the base commit (not counted)")
        else:
            problems.append("timed out" if v.status == "timeout" else f"error (exit {v.exit_code})")
    elif t is not None:  # a test runner with a report
        if t.collected == 0:
            if bt is not None and bt.collected == 0:
                notes.append("ran no tests, as at the base commit")
            else:
                problems.append("ran no tests")
        else:
            exact = bt is not None and t.source == "junit" and bt.source == "junit"
            if exact and bt is not None:
                gone = bt.ids - t.ids
                if gone:
                    problems.append(
                        f"{len(gone)} test(s) present at the base are gone: {_names(gone)}"
                    )
                newly_skipped = (t.skipped_ids & bt.ids) - bt.skipped_ids
                if newly_skipped:
                    problems.append(
                        f"{len(newly_skipped)} test(s) newly skipped: {_names(newly_skipped)}"
                    )
            elif bt is not None and t.collected < bt.collected:
                problems.append(f"collected {t.collected} tests, {bt.collected} at the base")
            if v.status == "failed":
                base_failed = _excuses(base, v)
                if exact and bt is not None:
                    new = t.failed_ids - bt.failed_ids
                    new |= {i for i in t.failed_ids & bt.failed_ids if _in_files(i, changed)}
                    if new:
                        problems.append(f"{len(new)} new failing test(s): {_names(new)}")
                    elif t.failed_ids:
                        notes.append(
                            f"{len(t.failed_ids)} test(s) failing as at the base (not counted)"
                        )
                    elif base_failed:
                        notes.append(f"failing (exit {v.exit_code}) as at the base (not counted)")
                    else:
                        problems.append(f"failed (exit {v.exit_code})")
                elif base_failed and bt is not None and t.failed <= bt.failed:
                    notes.append(f"{t.failed} failing test(s), as at the base (not counted)")
                else:
                    problems.append(f"{t.failed or 'some'} failing test(s) (exit {v.exit_code})")
    elif v.status == "failed":
        if _excuses(base, v):
            notes.append(f"failing (exit {v.exit_code}) as at the base commit (not counted)")
        else:
            problems.append(f"failed (exit {v.exit_code})")
    if problems:
        return Assessment(v.name, False, "; ".join(problems), result, tuple(notes))
    return Assessment(v.name, True, "; ".join(notes) or "passed", result, tuple(notes))


def _excuses(base: StepResult | None, v: Verification) -> bool:
    """Whether the step failing at the base commit excuses its failure ``v`` now. A base run
    that died by a signal (the shell's own exit code -N, or 128+N for the command it ran: a
    crash or a kill under load, as often as not) says nothing of the check: it excuses only
    the same death, never a check that now fails by its own verdict."""
    if base is None or base.verification.status != "failed":
        return False
    code = base.verification.exit_code
    by_signal = code is not None and (code < 0 or 128 < code <= 128 + 64)
    return not by_signal or v.exit_code == code


def assess(
    results: Sequence[StepResult],
    baseline: Sequence[StepResult] | None,
    changed: Sequence[str] = (),
) -> list[Assessment]:
    """Judge every step of an attempt against the baseline (None: absolute judgement);
    ``changed`` are the files the attempt touched."""
    base = {b.name: b for b in baseline or ()}
    return [
        assess_step(r, base.get(r.name) if baseline is not None else None, changed) for r in results
    ]


# --- storing --------------------------------------------------------------------------------


def verification_row(
    v: Verification, *, run_id: str | None, chunk_id: str | None, iteration: int | None
) -> dict[str, object]:
    """The ``verifications`` row for one step's record."""
    return {
        "id": new_id(),
        "run_id": run_id,
        "chunk_id": chunk_id,
        "iteration": iteration,
        "name": v.name,
        "command": v.command,
        "status": v.status,
        "exit_code": v.exit_code,
        "duration_ms": v.duration_ms,
        "output_tail": v.output_tail,
        "tests_collected": v.tests_collected,
        "tests_failed": v.tests_failed,
        "tests_skipped": v.tests_skipped,
        "is_baseline": v.is_baseline,
        "created_at": utcnow(),
    }


def record(
    store: Store,
    results: Sequence[StepResult],
    *,
    run_id: str | None,
    chunk_id: str | None,
    iteration: int | None,
) -> None:
    """Write one row per step (one transaction)."""
    from specwright.store import Store

    ops = [
        Store.op_insert(
            "verifications",
            verification_row(r.verification, run_id=run_id, chunk_id=chunk_id, iteration=iteration),
        )
        for r in results
    ]
    store.write(ops)


def as_baseline(results: Sequence[StepResult]) -> list[StepResult]:
    """The same results marked as baseline records."""
    return [replace(r, verification=replace(r.verification, is_baseline=True)) for r in results]
