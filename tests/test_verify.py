"""Verification steps: real subprocesses, real pytest runs, baseline-relative assessment."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path

import pytest

from specwright import verify
from specwright.config import VerifyStep
from specwright.verify import StepResult, TestReport, assess, assess_step, run_step
from tests.support_agents import alive, wait_gone
from tests.support_loop import rows

PYTEST = "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python -m pytest -q -p no:cacheprovider"


def step(command: str, timeout_s: float = 60, name: str = "s") -> VerifyStep:
    return VerifyStep(name=name, command=command, timeout_s=timeout_s)


def test_pass_fail_error_and_output_tail(tmp_path: Path) -> None:
    ok = run_step(step("echo hello"), tmp_path)
    assert ok.verification.status == "passed" and ok.verification.exit_code == 0
    assert ok.verification.output_tail.strip() == "hello" and ok.tests is None
    bad = run_step(step("echo oops >&2; exit 3"), tmp_path)
    assert bad.verification.status == "failed" and bad.verification.exit_code == 3
    assert "oops" in bad.verification.output_tail
    missing = run_step(step("definitely-not-a-command-xyz"), tmp_path)
    assert missing.verification.status == "error" and missing.verification.exit_code == 127
    big = run_step(step("python -c \"print('a' * 10000 + 'END')\""), tmp_path)
    tail = big.verification.output_tail
    assert tail.rstrip().endswith("END") and len(tail.encode()) <= verify.TAIL_BYTES + 8


def test_secrets_are_redacted_from_the_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_API_KEY", "sk-very-secret-value-123")
    out = run_step(step("echo token=$MY_API_KEY"), tmp_path)
    assert "sk-very-secret" not in out.verification.output_tail
    assert "[REDACTED:MY_API_KEY]" in out.verification.output_tail


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    result = run_step(step(f"sleep 60 & echo $! > {pidfile}; wait", timeout_s=0.5), tmp_path)
    assert result.verification.status == "timeout" and result.verification.exit_code is None
    assert "timeout" in result.verification.output_tail
    child = int(pidfile.read_text())
    wait_gone(child)
    assert not alive(child)


def test_cancel_stops_a_step(tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    result = run_step(step("sleep 60"), tmp_path, cancel=cancel)
    # a step the run's cancel stopped is no error of the check (the progress line said "error")
    assert result.verification.status == "cancelled"
    assert "cancelled" in result.verification.output_tail
    assert verify.run_steps([step("true"), step("true")], tmp_path, cancel=cancel) == []


def test_is_pytest() -> None:
    assert verify.is_pytest("pytest -q")
    assert verify.is_pytest("python -m pytest tests")
    assert verify.is_pytest("cd sub && .venv/bin/pytest")
    assert not verify.is_pytest("mypy specwright")
    assert not verify.is_pytest("./run-pytests-later.sh")


def _write_tests(root: Path, body: str) -> None:
    (root / "test_sample.py").write_text("import pytest\n\n" + body)


def test_pytest_junit_counts_and_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    _write_tests(
        tmp_path,
        "def test_ok():\n    pass\n\n"
        "def test_bad():\n    assert 1 == 2\n\n"
        "@pytest.mark.skip(reason='later')\ndef test_skip():\n    pass\n",
    )
    result = run_step(step(PYTEST, name="tests"), tmp_path)
    v, t = result.verification, result.tests
    assert v.status == "failed" and t is not None and t.source == "junit"
    assert (v.tests_collected, v.tests_failed, v.tests_skipped) == (3, 1, 1)
    assert t.failed_ids == {"test_sample::test_bad"}
    assert t.skipped_ids == {"test_sample::test_skip"}


def test_pytest_that_ran_no_tests_counts_unless_the_base_had_none(tmp_path: Path) -> None:
    (tmp_path / "test_empty.py").write_text("X = 1\n")
    result = run_step(step(PYTEST), tmp_path)
    assert result.verification.exit_code == 5 and result.tests is not None
    assert result.tests.collected == 0
    judged = assess_step(result, None)
    assert not judged.ok and judged.reason == "ran no tests"
    assert assess_step(result, result).ok  # the base had none either: not the attempt's fault


def _result(
    status: str,
    *,
    failed: frozenset[str] | set[str] = frozenset(),
    ids: frozenset[str] | set[str] = frozenset(),
    skipped: frozenset[str] | set[str] = frozenset(),
    exit_code: int | None = None,
    name: str = "tests",
    tests: bool = True,
) -> StepResult:
    from specwright.model import Verification

    report = TestReport(
        len(ids), len(failed), len(skipped), frozenset(ids), frozenset(failed), frozenset(skipped)
    )
    code = exit_code if exit_code is not None else (0 if status == "passed" else 1)
    return StepResult(Verification(name, "cmd", status, code, 1, "tail"), report if tests else None)


def test_only_new_failures_count() -> None:
    ids = {"m::a", "m::b", "m::c"}
    base = _result("failed", failed={"m::a"}, ids=ids)
    same = _result("failed", failed={"m::a"}, ids=ids)
    judged = assess_step(same, base)
    assert judged.ok and "failing as at the base" in judged.reason
    worse = assess_step(_result("failed", failed={"m::a", "m::b"}, ids=ids), base)
    assert not worse.ok and "1 new failing test(s): m::b" in worse.reason
    # a pre-existing failure in a test file the attempt changed does count
    touched = assess_step(same, base, changed=["m.py"])
    assert not touched.ok and "m::a" in touched.reason
    assert assess_step(_result("passed", ids=ids), base).ok


def test_deleted_and_newly_skipped_tests_count() -> None:
    base = _result("passed", ids={"m::a", "m::b", "m::c"}, skipped={"m::c"})
    gone = assess_step(_result("passed", ids={"m::a", "m::c"}, skipped={"m::c"}), base)
    assert not gone.ok and "gone: m::b" in gone.reason
    skipped = assess_step(
        _result("passed", ids={"m::a", "m::b", "m::c"}, skipped={"m::b", "m::c"}), base
    )
    assert not skipped.ok and "newly skipped: m::b" in skipped.reason
    added = _result("passed", ids={"m::a", "m::b", "m::c", "m::d"}, skipped={"m::c", "m::d"})
    assert assess_step(added, base).ok  # a new skipped test is not a deleted one


def test_other_runners_by_exit_code_and_without_a_baseline() -> None:
    base_red = _result("failed", name="lint", tests=False)
    base_green = _result("passed", name="lint", tests=False)
    now_red = _result("failed", name="lint", tests=False)
    assert assess_step(now_red, base_red).ok
    assert not assess_step(now_red, base_green).ok
    assert not assess_step(now_red, None).ok
    timeout = _result("timeout", name="lint", tests=False)
    assert not assess_step(timeout, base_green).ok
    judged = assess([now_red, base_green], None)
    assert [a.ok for a in judged] == [False, True]


def test_a_base_run_killed_by_a_signal_excuses_no_failure_of_the_check(tmp_path: Path) -> None:
    """The check's base run crashed (here its shell kills itself with SIGSEGV the first time,
    as a check may crash under load): that was taken for the check failing at the base, so an
    attempt the check really fails was shipped. Only the same death is excused now."""
    first = tmp_path / "ran-once"
    (tmp_path / "calc.py").write_text("x = 1\n")
    check = step(f"[ -e {first} ] || {{ touch {first}; kill -SEGV $$; }}; ! grep -n BUG calc.py")
    base = run_step(check, tmp_path)
    assert (base.verification.status, base.verification.exit_code) == ("failed", -signal.SIGSEGV)
    (tmp_path / "calc.py").write_text("x = 1  # BUG\n")
    failing = run_step(check, tmp_path)
    assert failing.verification.exit_code == 1
    judged = assess_step(failing, base)
    assert not judged.ok and judged.reason == "failed (exit 1)"
    # a check that crashes at the base and now alike (a segfaulting suite) is still excused
    first.unlink()
    assert assess_step(run_step(check, tmp_path), base).ok
    # ...and so is one the shell saw killed (128 + N), dying the same way
    killed = step("sh -c 'kill -KILL $$'")
    assert assess_step(run_step(killed, tmp_path), run_step(killed, tmp_path)).ok


def test_parse_summary_lines() -> None:
    out = "....\nFAILED x\n2 failed, 5 passed, 1 skipped, 3 warnings in 0.12s\n"
    report = verify.parse_summary(out)
    assert report is not None and (report.collected, report.failed, report.skipped) == (8, 2, 1)
    assert verify.parse_summary("===== no tests ran in 0.01s =====") == TestReport(
        0, 0, 0, source="summary"
    )
    assert verify.parse_summary("nothing here") is None


def test_record_writes_rows(tmp_path: Path, store) -> None:  # type: ignore[no-untyped-def]
    results = verify.run_steps([step("true", name="a"), step("false", name="b")], tmp_path)
    verify.record(store, verify.as_baseline(results), run_id=None, chunk_id=None, iteration=0)
    got = rows(
        store, "SELECT name, status, exit_code, is_baseline FROM verifications ORDER BY name"
    )
    assert got == [
        {"name": "a", "status": "passed", "exit_code": 0, "is_baseline": True},
        {"name": "b", "status": "failed", "exit_code": 1, "is_baseline": True},
    ]


def test_gigabytes_of_output_cost_no_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A step that prints without end keeps only its tail: nothing of it is spooled to disk
    (the step itself measures the temp folder while its output is still being read)."""
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    size = tmp_path / "size"
    command = (
        "head -c 60000000 /dev/zero | tr '\\0' x; echo; "
        f"du -sk {scratch} | cut -f1 > {size}; echo LAST LINE"
    )
    result = run_step(step(command), tmp_path)
    assert result.passed and result.verification.output_tail.endswith("LAST LINE\n")
    assert len(result.verification.output_tail.encode()) <= verify.TAIL_BYTES + 8
    assert int(size.read_text()) < 1000  # KB in the temp folder while the step ran


def test_a_secret_is_redacted_from_the_command_and_a_cut_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-live-0123456789abcdefghij"
    monkeypatch.setenv("DEPLOY_TOKEN", secret)
    # the 4 KiB tail starts inside the secret (one long line: no line break to cut at)
    filler = 4096 - 14
    command = f"printf '%s' {secret}; head -c {filler} /dev/zero | tr '\\0' y"
    out = run_step(step(command), tmp_path).verification
    assert out.command == "printf '%s' [REDACTED:DEPLOY_TOKEN]; " + command.split("; ", 1)[1]
    assert secret[-14:] not in out.output_tail and secret[-8:] not in out.output_tail


def test_a_running_step_is_registered_for_crash_recovery_until_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step reads its own record (pid, group, kind) while it runs; none is left after."""
    import json
    import os

    runtime = tmp_path / "runtime"
    monkeypatch.setenv("SPECWRIGHT_RUNTIME_DIR", str(runtime))
    command = (
        f"for i in $(seq 600); do ls {runtime}/*.json >/dev/null 2>&1 && break; sleep 0.05; "
        f"done; echo $$; cat {runtime}/*.json"
    )
    result = run_step(step(command), tmp_path)
    assert result.verification.status == "passed", result.verification.output_tail
    shell, record = result.verification.output_tail.split("\n", 1)
    record = json.loads(record)
    assert (record["pid"], record["pgid"]) == (int(shell), int(shell))
    assert (record["kind"], record["owner_pid"]) == ("verify", os.getpid())
    assert list(runtime.glob("*.json")) == []


def test_what_a_step_started_in_a_session_of_its_own_ends_with_the_step(tmp_path: Path) -> None:
    """A step that starts a server or daemon in a session of its own (setsid, a test fixture
    daemonizing): the step's group is stopped, and now that process too; it ran on for good."""
    pidfile = tmp_path / "stray.pid"
    command = (  # the step ends once the stray runs, leaving it behind
        f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 300' > /dev/null 2>&1 & "
        f"while [ ! -s {pidfile} ]; do sleep 0.01; done"
    )
    result = run_step(step(command), tmp_path)
    stray = int(pidfile.read_text())
    try:
        assert result.verification.status == "passed"
        wait_gone(stray)
        assert not alive(stray)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stray, signal.SIGKILL)
