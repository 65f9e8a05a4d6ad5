"""A new user's first hour: odd configs, odd environments and odd terminals get one clear line
(exit 2, no traceback), never a hang, a crash or a silently wrong setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from specwright.config import load, load_text
from specwright.errors import ConfigError
from tests.conftest import run_specwright


def _project(tmp_path: Path, config: str | bytes) -> Path:
    root = tmp_path / "proj"
    (root / ".handoff").mkdir(parents=True)
    path = root / ".handoff" / "config.yaml"
    path.write_bytes(config if isinstance(config, bytes) else config.encode())
    return root


def _one_line_error(proc: subprocess.CompletedProcess[str], *parts: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("specwright: error: "), proc.stderr
    for part in parts:
        assert part in lines[0], lines[0]


def _bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\nrules: *a{levels}\n"


def test_an_alias_bomb_is_refused_at_once_in_little_memory(tmp_path: Path) -> None:
    """9**10 values from 1 KB of YAML: it used to run for minutes and eat gigabytes."""
    root = _project(tmp_path, _bomb())
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from specwright.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    proc = subprocess.run(  # the old minutes of expansion would time out
        [sys.executable, "-c", code, "-C", str(root), "config", "show"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    _one_line_error(proc, "config.yaml:1:", "over 20,000 values", "too big")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: &a [*a]\n", r"rules\[0\]\[0\].*: over 40 levels deep"),  # an alias in itself
        ("rules: " + "[" * 5000 + "]" * 5000 + "\n", r"invalid YAML: nested too deeply"),
    ],
    ids=["self-alias", "deep"],
)
def test_recursion_in_a_config_is_an_error_not_a_traceback(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_text(text, "cfg.yaml")


def test_a_huge_or_non_utf8_config_is_one_line(tmp_path: Path) -> None:
    big = "rules:\n" + "".join(f"  - rule {i} keep functions small\n" for i in range(40_000))
    proc = run_specwright("-C", str(_project(tmp_path, big)), "config", "show")
    _one_line_error(proc, "config.yaml: more than 1 MB")
    latin1 = b"defaults:\n  maxIterations: 2\n# caf\xe9\n"
    proc = run_specwright("-C", str(_project(tmp_path / "b", latin1)), "config", "show")
    _one_line_error(proc, "config.yaml:3: cannot read: not UTF-8 (byte 0xe9)")


@pytest.mark.parametrize("value", ["a: b: c", "[unclosed", "*alias", "{x: 1", "!!python/name:os"])
def test_an_environment_value_that_is_not_yaml_stays_text(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`model: ${MODEL}` typed the variable's value by parsing it as YAML: a value YAML could
    not parse crashed the CLI with a traceback."""
    monkeypatch.setenv("MODEL", value)
    text = "tools:\n  executors:\n    x:\n      type: claude-code\n      model: ${MODEL}\n"
    assert load_text(text, "cfg.yaml").executors["x"].model == value


def test_only_a_single_reference_is_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    """``${A:-1}${B:-2}`` is two references, so text ("12"), not the number 12; one reference
    still reads as YAML would (`max_turns: ${T:-40}` is 40)."""
    text = (
        "tools:\n  executors:\n    x:\n      type: claude-code\n"
        "      model: ${A:-1}${B:-2}\n      max_turns: ${T:-40}\n"
    )
    x = load_text(text, "cfg.yaml").executors["x"]
    assert x.model == "12" and x.max_turns == 40


def test_a_merge_key_shares_an_executor_body() -> None:
    """`<<: *base` was read as a key named '<<' (and the merged keys were lost)."""
    text = (
        "tools:\n  executors:\n"
        "    a: &base {type: claude-code, model: base, max_turns: 5}\n"
        "    b: {<<: *base, model: m}\n"
        "    c: {<<: [*base], type: scripted}\n"
        "    d: {<<: 3}\n"
    )
    with pytest.raises(ConfigError, match=r"cfg.yaml:6: tools.executors.d.<<: expected mappings"):
        load_text(text, "cfg.yaml")
    config = load_text(text.rsplit("    d:", 1)[0], "cfg.yaml")
    b, c = config.executors["b"], config.executors["c"]
    assert (b.type, b.model, b.max_turns) == ("claude-code", "m", 5)
    assert (c.type, c.max_turns) == ("scripted", 5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("verify:\n  - {name: t, command: x, timeout_s: 0}\n", r"verify\[0\].timeout_s: .* > 0"),
        ("defaults:\n  wall_time_s: 0\n", r"defaults.wall_time_s: expected a number > 0, got 0"),
        (
            "tools:\n  executors:\n    x: {type: claude-code, max_turns: 0}\n",
            r"cfg.yaml:3: tools.executors.x.max_turns: expected an integer >= 1, got 0",
        ),
        (
            "tools:\n  executors:\n    x: {type: claude-code, timeout_s: 0}\n",
            r"tools.executors.x.timeout_s: expected a number > 0",
        ),
        ("tools:\n  planners:\n    p: {max_tokens: 0}\n", r"p.max_tokens: expected an integer"),
        ("defaults:\n  maxIterations: -1\n", r"maxIterations: expected an integer >= 1, got -1"),
        (
            "tools:\n  executors:\n    x: {type: opencode, provider: no}\n",
            r"provider: expected a string, got False \(YAML reads yes, no, on, off as booleans",
        ),
    ],
    ids=["verify-0", "wall-0", "turns-0", "exec-timeout-0", "max-tokens-0", "iter-neg", "norway"],
)
def test_zero_limits_and_yaml_booleans_are_refused(text: str, message: str) -> None:
    """A 0-second verification timeout failed every attempt; a 0 timeout or max_turns meant
    "no limit" to the agents; `provider: no` is the boolean false."""
    with pytest.raises(ConfigError, match=message):
        load_text(text, "cfg.yaml")


def test_a_closed_or_full_stdout_is_one_line_and_the_spec_is_kept(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    assert run_specwright("-C", str(root), "init").returncode == 0
    args = [sys.executable, "-m", "specwright.cli", "-C", str(root)]
    closed = subprocess.run(
        [*args, "spec", "new", "Closed"], stdout=None, stderr=subprocess.PIPE, text=True,
        close_fds=True, preexec_fn=lambda: os.close(1), timeout=120,
    )  # fmt: skip
    _one_line_error(closed, "cannot write to stdout: it is closed")
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [*args, "--json", "spec", "list"], stdout=full, stderr=subprocess.PIPE, text=True,
            timeout=120,
        )  # fmt: skip
    _one_line_error(proc, "cannot write to stdout: No space left on device")
    listed = run_specwright("-C", str(root), "spec", "list")
    assert "closed" in listed.stdout  # created before the output failed


def test_a_deleted_working_directory_is_one_line(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    code = f"import os, sys; os.chdir({str(gone)!r}); os.rmdir({str(gone)!r}); " + (
        "from specwright.cli import main; sys.exit(main(['spec', 'list']))"
    )
    env = {k: v for k, v in os.environ.items() if k != "SPECWRIGHT_DB"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
        cwd=tmp_path,
    )  # fmt: skip
    _one_line_error(proc, "the current directory no longer exists")


def test_a_url_for_the_database_is_refused_and_makes_no_folder(tmp_path: Path) -> None:
    """`SPECWRIGHT_DB=http://...` made a folder named `http:` in the working directory."""
    proc = run_specwright("status", cwd=tmp_path, env={"SPECWRIGHT_DB": "http://127.0.0.1:9/x"})
    _one_line_error(proc, "SPECWRIGHT_DB http://127.0.0.1:9/x: expected a database file path")
    proc = run_specwright("--db", "s3://bucket/x.duckdb", "status", cwd=tmp_path)
    _one_line_error(proc, "--db s3://bucket/x.duckdb")
    assert not (tmp_path / "http:").exists() and not (tmp_path / "s3:").exists()


def test_minus_c_to_a_file_is_refused_by_config_and_agents_too(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    for command in (["config", "show"], ["agents", "list"]):
        proc = run_specwright("-C", str(afile), *command)
        _one_line_error(proc, f"-C {afile}: not a directory")


def test_chunk_dependencies_name_themselves_and_what_exists(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    c = str(root)
    assert run_specwright("-C", c, "spec", "new", "Deps").returncode == 0
    _one_line_error(
        run_specwright("-C", c, "chunk", "add", "deps", "a", "--depends-on", "1"),
        "depends on '1': that is the new chunk itself",
    )
    assert run_specwright("-C", c, "chunk", "add", "deps", "a").returncode == 0
    _one_line_error(
        run_specwright("-C", c, "chunk", "add", "deps", "b", "--depends-on", "7"),
        "depends on '7': spec deps has no such chunk (chunk 1; or a chunk id)",
    )
    assert (
        run_specwright("-C", c, "chunk", "add", "deps", "b", "--depends-on", " 1").returncode == 0
    )
    _one_line_error(
        run_specwright("-C", c, "chunk", "add", "deps", "two\nlines"),
        "chunk title 'two\\nlines': expected a single line",
    )


def test_init_outside_git_says_runs_need_a_repository(tmp_path: Path) -> None:
    proc = run_specwright("-C", str(tmp_path), "init")
    assert proc.returncode == 0, proc.stderr
    assert "is not a git repository; `specwright run`/`run-all` need one" in proc.stderr


def test_a_config_loads_unchanged_from_a_project(tmp_path: Path) -> None:
    """The byte reader keeps what the text reader did: a BOM, comments, the file as source."""
    root = _project(tmp_path, b"\xef\xbb\xbfdefaults:\n  maxIterations: 2  # two\n")
    config = load(root)
    assert config.defaults.max_iterations == 2 and config.source.endswith("config.yaml")
