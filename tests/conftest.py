"""Shared fixtures. The autouse ``isolate`` fixture gives every test its own HOME, database and a
scrubbed environment, so no test sees a real key, a real ~/.claude or a real database."""

from __future__ import annotations

import gc
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Variables that would let a test reach a real service or read a real user's state.
_SCRUB_PREFIXES = (
    "ANTHROPIC_",
    "OPENAI_",
    "CLAUDE_",
    "OPENCODE_",
    "CODEX_",
    "GITHUB_",
    "SPECWRIGHT_",
    "GEMINI_",
    "ZAI_",
    "ZHIPU",
    "CODEXBAR_",
    "GIT_",
)
_SCRUB_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy")


def pytest_configure(config: pytest.Config) -> None:
    """Tests stop the CLI in a subprocess with Ctrl-C (SIGINT). A session a script starts in
    the background (``pytest &``) ignores SIGINT, its children inherit that, and the CLI then
    ignores Ctrl-C too: those tests waited 60 s and failed. Take SIGINT back for this session
    (a KeyboardInterrupt, as in a terminal) and so for the processes it starts."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def agents_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This pytest session's own registry of running agents (``SPECWRIGHT_RUNTIME_DIR``). The
    default one (``$XDG_RUNTIME_DIR/specwright-agents``, else one per user in the temp folder)
    is shared by every session on the machine: two at once (a CI rehearsal beside a developer's
    run) would see, and crash recovery could stop, each other's agents."""
    return tmp_path_factory.mktemp("agents-registry")


@pytest.fixture(autouse=True)
def isolate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, agents_registry: Path
) -> Iterator[Path]:
    """A private HOME, database path and environment for each test, and the session's own
    registry of running agents."""
    for name in list(os.environ):
        if name.startswith(_SCRUB_PREFIXES) or name in _SCRUB_NAMES:
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("SPECWRIGHT_DB", str(tmp_path / "db" / "specwright.duckdb"))
    monkeypatch.setenv("SPECWRIGHT_LOCK_TIMEOUT", "60")
    monkeypatch.setenv("SPECWRIGHT_RUNTIME_DIR", str(agents_registry))
    # git needs an identity for commits in temp repos, and must never prompt
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Specwright Test")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "test@specwright.invalid")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Specwright Test")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "test@specwright.invalid")
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    (home / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n")
    yield tmp_path
    # Close lingering databases (keeper.py): the test's files are about to go away.
    if "specwright.keeper" in sys.modules:
        sys.modules["specwright.keeper"].close()
    # Collect now, so a leaked socket or file fails (warnings are errors) the test that
    # leaked it rather than a random later one.
    gc.collect()


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A migrated store in a temp directory (its journals beside it)."""
    from specwright.store import Store

    s = Store(tmp_path / "data" / "specwright.duckdb")
    s.migrate()
    return s


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` and return its stdout (raises on failure)."""
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A real git repository with one commit (README.md) and `data/` ignored."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("# sample\n")
    (repo / ".gitignore").write_text("data/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    return repo


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run `specwright ARGS...` in-process; returns exit code, stdout and stderr."""
    from specwright.cli import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse exits on bad usage / --help
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def run_specwright(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real `specwright` console entry point in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "specwright.cli", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def unwritable(tmp_path: Path) -> Iterator[Callable[[Path], Path]]:
    """``make(folder)``: ``folder`` as this process cannot write it: as root (no permission
    stops root) a read-only bind mount of it; as another user, its modes without write bits.
    Returns the folder to use."""
    mounts: list[Path] = []
    modes: list[Path] = []

    def make(folder: Path) -> Path:
        if os.geteuid() != 0:
            for path in [folder, *folder.rglob("*")]:
                path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
                modes.append(path)
            return folder
        target = tmp_path / "ro"
        target.mkdir()
        done = subprocess.run(
            ["mount", "-o", "bind,ro", str(folder), str(target)], capture_output=True, text=True
        )
        if done.returncode != 0:
            pytest.skip(f"a read-only bind mount is refused here: {done.stderr.strip()}")
        mounts.append(target)
        return target

    yield make
    from specwright import keeper

    keeper.close()  # the lingering instance holds the files open
    for target in mounts:
        subprocess.run(["umount", str(target)], check=True)
    for path in modes:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


@pytest.fixture
def tokyo(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """This process on Tokyo's clock (UTC+9) for the test, as before after it."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
