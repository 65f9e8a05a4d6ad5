"""`specwright agents list | check | serve-opencode`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from specwright.agents.executables import NOT_A_PROGRAM
from specwright.cli.agents import printable
from specwright.testing import FakeModelServer, anthropic_text, anthropic_tool_use
from tests.conftest import run_specwright
from tests.support_agents import (
    CLAUDE_BIN,
    OPENCODE_BIN,
    STREAMS,
    alive,
    fake_cli,
    requires_claude,
    requires_opencode,
    stored_events,
    stored_execution,
)

FAKE_CLAUDE = f"""
import sys
if sys.argv[1:] == ["--version"]:
    print("9.9.9 (Claude Code)")
    sys.exit(0)
sys.stdout.write(open({str(STREAMS / "claude-code/acceptEdits.jsonl")!r}).read())
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "proj"
    (root / ".handoff").mkdir(parents=True)
    claude = fake_cli(tmp_path / "bin", "claude", FAKE_CLAUDE)
    (root / ".handoff" / "config.yaml").write_text(f"""\
tools:
  executors:
    claude:
      type: claude-code
      model: claude-sonnet-4-5
      path: {claude}
    oc:
      type: opencode
      provider: fake
      model: fake-model
      url: http://127.0.0.1:9
    echo:
      type: command
      argv: ["sh", "-c", "echo OK; echo \\"asked: $1\\"", "sh", "{{prompt}}"]
    missing:
      type: command
      argv: ["no-such-agent-cli", "{{prompt}}"]
    stuck:
      type: command
      argv: ["sh", "-c", "sleep 120", "sh", "{{prompt}}"]
      timeout_s: 1
defaults:
  executor: claude
""")
    monkeypatch.chdir(root)
    return root


def test_agents_list(cli: Callable[..., Any], project: Path) -> None:
    r = cli("agents", "list")
    assert r.code == 0, r.err
    lines = {line.split()[0]: line for line in r.out.splitlines() if line.strip()}
    assert "found" in lines["claude"] and "9.9.9" in lines["claude"]
    assert "NOT FOUND" in lines["oc"] and "NOT FOUND" in lines["missing"]
    assert "found" in lines["echo"] and "found" in lines["scripted"]
    assert "oc: OpenCode server at http://127.0.0.1:9 is not reachable" in r.out
    r = cli("--json", "agents", "list")
    rows = {row["name"]: row for row in json.loads(r.out)}
    assert rows["claude"]["found"] and rows["claude"]["default"]
    assert rows["claude"]["version"] == "9.9.9 (Claude Code)"
    assert rows["missing"]["found"] is False and "not found" in rows["missing"]["detail"]


def test_agents_list_says_which_location_the_environment_decides(
    cli: Callable[..., Any], project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OPENCODE_URL and CLAUDE_PATH win over every executor's url and path: the list showed
    the variable's server for an executor whose config names another, without a word why."""
    monkeypatch.setenv("OPENCODE_URL", "http://127.0.0.1:7")
    monkeypatch.setenv("CLAUDE_PATH", sys.executable)
    r = cli("agents", "list")
    assert r.code == 0, r.err
    lines = {line.split()[0]: line for line in r.out.splitlines() if line.strip()}
    assert lines["oc"].endswith("http://127.0.0.1:7 (from OPENCODE_URL)")
    assert lines["claude"].endswith(f"{sys.executable} (from CLAUDE_PATH)")
    assert lines["echo"].split()[-1] != "CLAUDE_PATH)"
    rows = {row["name"]: row for row in json.loads(cli("--json", "agents", "list").out)}
    assert (rows["oc"]["location"], rows["oc"]["location_from"]) == (
        "http://127.0.0.1:7",
        "OPENCODE_URL",
    )
    assert rows["claude"]["location_from"] == "CLAUDE_PATH"
    assert rows["echo"]["location_from"] is None
    monkeypatch.delenv("OPENCODE_URL")
    monkeypatch.delenv("CLAUDE_PATH")
    rows = {row["name"]: row for row in json.loads(cli("--json", "agents", "list").out)}
    assert (rows["oc"]["location"], rows["oc"]["location_from"]) == ("http://127.0.0.1:9", None)
    assert rows["claude"]["location_from"] is None


@pytest.mark.parametrize(
    "what",
    ["no #! line", "no execute bit", "a directory", "another system's binary", "no interpreter"],
)
def test_agents_list_says_why_an_executable_that_cannot_run_cannot(
    cli: Callable[..., Any],
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    what: str,
) -> None:
    """A CLAUDE_PATH the system cannot start was listed as "found" (and `run` started, then
    failed, the agent): the list says what is wrong, in one line."""
    claude = tmp_path / "wrapper" / "claude"
    claude.parent.mkdir()
    if what == "a directory":
        claude.mkdir()
    elif what == "another system's binary":  # passes a look at its first bytes; exec refuses it
        claude.write_bytes(b"\x7fELF" + bytes(60))
        claude.chmod(0o755)
    elif what == "no interpreter":  # exec's ENOENT: "No such file or directory" for a file
        claude.write_text("#!/no/such/python3 -u\nprint('9.9.9')\n")
        claude.chmod(0o755)
    else:
        claude.write_text('exec /usr/local/bin/claude "$@"\n' if what == "no #! line" else "")
        claude.chmod(0o755 if what == "no #! line" else 0o644)
        if what == "no execute bit":
            claude.write_text(f"#!{sys.executable}\nprint('9.9.9')\n")
    monkeypatch.setenv("CLAUDE_PATH", str(claude))
    r = cli("agents", "list")
    assert r.code == 0, r.err
    lines = {line.split()[0]: line for line in r.out.splitlines() if line.strip()}
    assert "NOT FOUND" in lines["claude"]
    why = {
        "no #! line": f"CLAUDE_PATH={claude}: {NOT_A_PROGRAM}",
        "no execute bit": f"CLAUDE_PATH={claude}: not executable (chmod +x it)",
        "a directory": f"CLAUDE_PATH={claude}: a directory, not a program",
        "another system's binary": f"{claude}: cannot start: {NOT_A_PROGRAM}",
        "no interpreter": f"CLAUDE_PATH={claude}: a script whose #! line names "
        "/no/such/python3, which does not exist",
    }[what]
    assert f"  claude: {why}\n" in r.out
    rows = {row["name"]: row for row in json.loads(cli("--json", "agents", "list").out)}
    assert rows["claude"]["found"] is False and rows["claude"]["detail"] == why


def test_agents_list_with_an_opencode_url_that_is_no_url_lists_the_others(
    cli: Callable[..., Any], project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad OPENCODE_URL stopped the whole list (exit 2, one line about OpenCode): a list
    is what a user runs to see what is wrong."""
    monkeypatch.setenv("OPENCODE_URL", "localhost:4096")
    r = cli("agents", "list")
    assert r.code == 0, r.err
    lines = {line.split()[0]: line for line in r.out.splitlines() if line.strip()}
    assert "NOT FOUND" in lines["oc"] and "found" in lines["claude"]
    assert (
        "  oc: OPENCODE_URL: expected an http(s) URL such as http://localhost:4096, "
        "got 'localhost:4096'\n"
    ) in r.out


def test_agents_check_records_the_execution(cli: Callable[..., Any], project: Path) -> None:
    r = cli("--json", "agents", "check", "echo", "--prompt", "ping")
    assert r.code == 0, r.err
    result = json.loads(r.out)
    assert result["status"] == "ok" and result["answer"] == "OK\nasked: ping"
    from specwright.store import Store

    store = Store(os.environ["SPECWRIGHT_DB"])
    row = stored_execution(store, result["execution_id"])
    assert row["status"] == "ok" and row["executor"] == "echo" and row["backend"] == "command"
    texts = [e["text"] for e in stored_events(store, result["execution_id"]) if e["type"] == "text"]
    assert texts == ["OK", "asked: ping"]
    # a command agent tells no usage: what it cost is unknown, not $0 (nor $0 computed from
    # the 0 tokens counted, when its config names a model), and the reports say so
    assert (result["cost_usd"], result["cost_source"]) == (None, "unreported")
    (row,) = json.loads(cli("--json", "usage", "specs", "--by", "executor").out)
    assert (row["executor"], row["cost_usd"], row["unpriced"]) == ("echo", None, 1)


def test_agents_check_claude_reports_tokens_and_cost(
    cli: Callable[..., Any], project: Path
) -> None:
    r = cli("agents", "check", "claude")
    assert r.code == 0, r.err
    assert "status" in r.out and " ok" in r.out
    assert "0.0087" in r.out and "2500" in r.out


def test_agents_check_keeps_to_the_executors_own_timeout(
    cli: Callable[..., Any], project: Path
) -> None:
    """A check waits the executor's `timeout_s` (here 1 s), not a fixed 300 s; `--timeout`
    still wins."""
    for args, limit in [((), "1 s"), (("--timeout", "2"), "2 s")]:
        r = cli("--json", "agents", "check", "stuck", *args)
        assert r.code == 1, r.err
        result = json.loads(r.out)
        assert (result["status"], result["exit_reason"]) == ("killed", "timeout"), result
        assert f"ran past its time limit ({limit}) and was killed" in result["error"], result


def test_agents_check_scripted(cli: Callable[..., Any], project: Path) -> None:
    r = cli("--json", "agents", "check", "scripted")
    assert r.code == 0, r.err
    assert json.loads(r.out)["answer"] == "OK"


def test_agents_check_errors_are_one_line(cli: Callable[..., Any], project: Path) -> None:
    r = cli("agents", "check", "missing")
    assert r.code == 2 and r.err.count("\n") == 1
    assert "'no-such-agent-cli' not found" in r.err
    r = cli("agents", "check", "nope")
    assert r.code == 2 and "no executor 'nope'" in r.err
    r = cli("agents", "check", "oc")
    assert r.code == 2 and "not reachable" in r.err


def test_printable_escapes_terminal_controls() -> None:
    assert printable("ok\x1b[31mred\x07\n") == "ok\\x1b[31mred\\x07\n"
    assert printable("x" * 50, limit=10) == "x" * 10 + "… (+40 chars)"


@requires_claude
@pytest.mark.agents
def test_agents_check_real_claude(
    cli: Callable[..., Any], project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_PATH", CLAUDE_BIN)
    with FakeModelServer() as srv:
        srv.script(anthropic_text("OK", expect_text="single word OK"))
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake-key-for-tests")
        monkeypatch.setenv("CLAUDE_CODE_MAX_RETRIES", "0")
        r = cli("--json", "agents", "check", "claude")
    assert r.code == 0, r.err
    result = json.loads(r.out)
    assert result["status"] == "ok" and result["answer"] == "OK"
    assert result["input_tokens"] == 100 and result["cost_usd"] > 0


def _codex_agent(
    project: Path, tmp_path: Path, lines: list[dict[str, Any]], then: str = ""
) -> None:
    """Executor ``codex``: a command agent read by the codex parser that prints ``lines`` (then
    runs ``then``), on model acme-coder-1, which only the config's `prices:` prices."""
    body = "".join(f"print({json.dumps(json.dumps(line))}, flush=True)\n" for line in lines)
    agent = fake_cli(tmp_path / "bin", "codex", body + then)
    config = project / ".handoff" / "config.yaml"
    config.write_text(
        config.read_text().replace(
            "defaults:",
            f"""    codex:
      type: command
      parser: codex
      model: acme-coder-1
      argv: ["{agent}", "{{prompt}}"]
defaults:""",
        )
        + "prices:\n  acme-coder-1: {input: 1.0, output: 10.0}\n"
    )


def test_agents_check_prices_tokens_from_the_configs_prices(
    cli: Callable[..., Any], project: Path, tmp_path: Path
) -> None:
    """A model the price library lacks, priced under `prices:`: the check's cost is computed
    from there, not NULL with a warning to add the price that is there."""
    lines = [{"type": "turn.completed", "usage": {"input_tokens": 1000, "output_tokens": 50}}]
    _codex_agent(project, tmp_path, lines)
    r = cli("--json", "agents", "check", "codex")
    assert r.code == 0, r.err
    result = json.loads(r.out)
    assert result["cost_usd"] == pytest.approx((1000 * 1 + 50 * 10) / 1e6), result
    assert result["cost_source"] == "computed" and "no price known" not in r.err


def test_agents_check_of_a_codex_agent_telling_absurd_token_counts(
    cli: Callable[..., Any], project: Path, tmp_path: Path
) -> None:
    """A codex-parsed agent told two turns of 2**62 tokens: they were stored as told, and the
    execution's write failed at their sum (a traceback), as every report summing them would.
    Read as Claude Code's and OpenCode's are (below 2**53, else 0), its sane turn counts, a
    word for a count no longer losing the whole turn's usage ("parser failed")."""
    absurd = {"input_tokens": 2**62, "output_tokens": 2**62}
    sane = {"input_tokens": 1000, "output_tokens": 50, "reasoning_output_tokens": "many"}
    lines = [{"type": "turn.completed", "usage": u} for u in (absurd, absurd, sane)]
    _codex_agent(project, tmp_path, lines)
    r = cli("--json", "agents", "check", "codex")
    assert r.code == 0 and "Traceback" not in r.err, r.err
    result = json.loads(r.out)
    assert (result["input_tokens"], result["output_tokens"]) == (1000, 50), result
    (row,) = json.loads(cli("--json", "usage", "specs", "--by", "executor").out)
    assert (row["executor"], row["input_tokens"]) == ("codex", 1000)


def test_agents_check_of_a_command_agent_cut_mid_run_says_its_cost_is_unknown(
    cli: Callable[..., Any], project: Path, tmp_path: Path
) -> None:
    """A codex-parsed agent told its first turn's usage, then was killed at its time limit in
    the next: its cost is unknown (the turn under way told nothing), what was told a lower
    bound, as for Claude Code and OpenCode. It was recorded as computed, the first turn's
    cost shown as the whole."""
    lines = [
        {"type": "thread.started", "thread_id": "th_1"},
        {"type": "turn.completed", "usage": {"input_tokens": 1000, "output_tokens": 50}},
        {"type": "turn.started"},
    ]
    _codex_agent(project, tmp_path, lines, then="import time\ntime.sleep(60)\n")
    r = cli("--json", "agents", "check", "codex", "--timeout", "2")
    assert r.code == 1, r.err
    result = json.loads(r.out)
    assert (result["status"], result["exit_reason"]) == ("killed", "timeout"), result
    assert (result["cost_usd"], result["cost_source"]) == (None, "incomplete"), result
    from specwright.store import Store

    row = stored_execution(Store(os.environ["SPECWRIGHT_DB"]), result["execution_id"])
    assert row["computed_cost_usd"] == pytest.approx((1000 * 1 + 50 * 10) / 1e6)  # lower bound


@requires_claude
@pytest.mark.agents
def test_agents_check_interrupted_keeps_the_session_id(project: Path) -> None:
    """Ctrl-C while claude waits for its second reply: the execution is recorded cancelled and
    still names the session claude had started (init line), so the usage ingested from
    claude's own logs links to it; it was stored empty. The first reply's tokens are kept, as
    `run` keeps them (its cost unknown, what was told a lower bound): they were stored as 0."""
    from specwright.store import Store

    with FakeModelServer() as srv:
        srv.script(
            anthropic_tool_use("Read", {"file_path": str(project / "x.txt")}, text="reading"),
            anthropic_text("late", delay_s=30, expect_tool_result=True),
        )
        env = {
            **os.environ,
            "CLAUDE_PATH": CLAUDE_BIN,
            "ANTHROPIC_BASE_URL": srv.base_url,
            "ANTHROPIC_API_KEY": "sk-ant-fake-key-for-tests",
            "CLAUDE_CODE_MAX_RETRIES": "0",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "specwright.cli", "agents", "check", "claude"],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while len(srv.model_requests) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(srv.model_requests) == 2, proc.stderr
            time.sleep(0.3)
            os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the foreground group
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
    assert proc.returncode == 130, err
    store = Store(Path(os.environ["SPECWRIGHT_DB"]))
    (row,) = store.query_dicts("SELECT * FROM executions")
    (init,) = [e for e in stored_events(store, row["id"]) if e["text"] == "init"]
    assert row["status"] == "cancelled" and init["call_id"]
    assert row["session_id"] == init["call_id"], row
    assert (row["input_tokens"], row["output_tokens"]) == (100, 20), row  # the first reply's
    assert (row["cost_usd"], row["cost_source"]) == (None, "incomplete")
    assert row["computed_cost_usd"] == pytest.approx((100 * 3 + 20 * 15) / 1e6)


@requires_opencode
@pytest.mark.agents
def test_serve_opencode(project: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OPENCODE_PATH": OPENCODE_BIN, "HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "specwright.cli",
            "agents",
            "serve-opencode",
            "--port",
            "0",
            "--offline",
        ],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "opencode server listening on http://127.0.0.1:" in first, proc.stderr
        url = first.split(" on ", 1)[1].split()[0]
        assert proc.stdout.readline().strip() == f"export OPENCODE_URL={url}"
        assert httpx.get(f"{url}/global/health", timeout=10, trust_env=False).json()["healthy"]
        server_pid = int(first.split("(pid ", 1)[1].split(")")[0])
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(server_pid)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@requires_opencode
@pytest.mark.agents
def test_serve_opencode_on_a_port_in_use_says_so_at_once(project: Path, tmp_path: Path) -> None:
    """Port 4096 (the default) taken, e.g. by an OpenCode already running: the server exits at
    once, and the one line says that and names the port, not that 60 s went by."""
    env = {**os.environ, "OPENCODE_PATH": OPENCODE_BIN, "HOME": str(tmp_path / "home")}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        argv = ["agents", "serve-opencode", "--port", str(port), "--offline"]
        res = subprocess.run(
            [sys.executable, "-m", "specwright.cli", *argv],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("specwright: error: `opencode serve` exited")
    assert f"is port {port} on 127.0.0.1 in use already?" in lines[0]
    assert "within" not in lines[0]  # not the 60 s wait for a server that never came up


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--port", "99999"], "argument --port: expected a port from 0 to 65535, got '99999'"),
        (["--port", "-1"], "argument --port: expected a port from 0 to 65535, got '-1'"),
        (["--port", "http"], "argument --port: expected a port from 0 to 65535, got 'http'"),
        (["--dir", "config.yaml"], "--dir config.yaml: not a directory"),
    ],
)
def test_serve_opencode_refuses_a_bad_port_or_dir_before_starting_anything(
    project: Path, tmp_path: Path, args: list[str], error: str
) -> None:
    """A port out of range was passed on (opencode listened on 65535 for 99999, on a free port
    for -1); a --dir that is a file made Popen's error text with a PosixPath repr in it."""
    started = tmp_path / "started"
    opencode = fake_cli(tmp_path / "bin", "opencode", f"open({str(started)!r}, 'w')\n")
    env = {"OPENCODE_PATH": str(opencode)}
    res = run_specwright("agents", "serve-opencode", *args, cwd=project / ".handoff", env=env)
    assert res.returncode == 2, res.stdout + res.stderr
    assert error in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not started.exists()


def test_a_secret_in_an_executor_url_is_redacted_from_the_list_and_errors(
    cli: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`config show` hid it, but `agents list` (its table, its lines, --json), the one-line
    error of `agents check` and a config error quoting the URL printed it in full."""
    secret = "sk-live-0123456789abcdef"
    monkeypatch.setenv("MY_API_KEY", secret)
    root = tmp_path / "proj"
    (root / ".handoff").mkdir(parents=True)
    config = root / ".handoff" / "config.yaml"
    url = "http://u:${MY_API_KEY}@127.0.0.1:9"
    config.write_text(
        f'tools:\n  executors:\n    oc: {{type: opencode, provider: p, model: m, url: "{url}"}}\n'
    )
    monkeypatch.chdir(root)
    for args in (("agents", "list"), ("--json", "agents", "list"), ("agents", "check", "oc")):
        r = cli(*args)
        assert secret not in r.out + r.err, args
        assert "http://***@127.0.0.1:9" in r.out + r.err, args  # no user:password shown
    config.write_text(config.read_text().replace("http://", "http//"))
    r = cli("agents", "list")
    assert r.code == 2 and r.err.startswith(f"specwright: error: {config}:3: ")
    assert secret not in r.err and "[REDACTED:MY_API_KEY]" in r.err


def test_a_version_line_that_is_not_utf8_or_is_huge_is_shown_bounded(
    cli: Callable[..., Any], project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--version` output is the program's: bytes that are not UTF-8 ended `agents list` with a
    UnicodeDecodeError traceback, and a long line was kept whole."""
    body = 'import sys\nsys.stdout.buffer.write(b"\\xff\\xfe 9.9.9 " + b"x" * 5000 + b"\\n")\n'
    claude = fake_cli(tmp_path / "odd", "claude", body)
    monkeypatch.setenv("CLAUDE_PATH", str(claude))
    r = cli("--json", "agents", "list")
    assert r.code == 0, r.err
    row = {row["name"]: row for row in json.loads(r.out)}["claude"]
    assert row["found"] and row["version"].startswith("\ufffd\ufffd 9.9.9 xxx")
    assert len(row["version"]) == 200


@pytest.mark.parametrize("where", ["-C", "subfolder"])
def test_a_relative_agent_program_in_the_config_is_the_projects(
    cli: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """`argv: [tools/agent.sh, ...]` names the project's script: run with `-C DIR` from
    elsewhere, or from a folder inside the project (a notebook's kernel runs in `notebooks/`),
    it was looked for from the current folder and not found."""
    root = tmp_path / "proj"
    fake_cli(root / "tools", "agent.sh", "import sys\nprint('done:', sys.argv[1][:20])\n")
    (root / ".handoff").mkdir()
    (root / ".handoff" / "config.yaml").write_text(
        "tools:\n  executors:\n"
        "    mine: {type: command, argv: [tools/agent.sh, '{prompt}']}\n"
        "defaults:\n  executor: mine\n"
    )
    if where == "-C":
        monkeypatch.chdir(tmp_path)
        r = cli("-C", str(root), "--json", "agents", "check", "mine")
    else:
        (root / "notebooks").mkdir()
        monkeypatch.chdir(root / "notebooks")
        r = cli("--json", "agents", "check", "mine")
    assert r.code == 0, r.out + r.err
    assert "done:" in json.loads(r.out)["answer"]


def test_a_password_in_opencode_url_is_never_shown_or_recorded(
    cli: Callable[..., Any], project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`OPENCODE_URL=http://user:pass@host` (a password-protected server): `agents list`
    showed the password in its WHERE column and in the 'not reachable' line, and a check's
    error, its execution's exit reason and its session event held it."""
    monkeypatch.setenv("OPENCODE_URL", "http://dev:hunter2pass@127.0.0.1:9")
    listed = cli("agents", "list")
    checked = cli("agents", "check", "oc")
    assert checked.code == 2 and "OpenCode server at http://***@127.0.0.1:9" in checked.err
    said = listed.out + listed.err + cli("--json", "agents", "list").out + checked.err
    assert "http://***@127.0.0.1:9" in listed.out and "hunter2pass" not in said
    monkeypatch.setenv("OPENCODE_URL", "ftp://dev:hunter2pass@127.0.0.1:9")
    bad = cli("agents", "check", "oc")
    assert bad.code == 2 and "OPENCODE_URL: expected an http(s) URL" in bad.err
    assert "hunter2pass" not in bad.err
    db = project / "data" / "specwright.duckdb"
    if db.exists():  # nothing recorded holds it either
        assert b"hunter2pass" not in db.read_bytes()
    for journal in project.rglob("*.jsonl"):
        assert "hunter2pass" not in journal.read_text()
