"""Bench 3, orchestration overhead: the same chunk run by the agent directly vs through the loop.

Each chunk's work is the same on both sides: a fixed sleep (the agent "thinking"), one file
written, a final message and usage. *Directly* is the executor's own ``execute`` with nothing
recorded; *through the loop* is ``run_chunk`` (prepare the branch, run rows, the recorded
execution, diff, the checks reviewer, the commit, the end rows) with one iteration, in process.
The added time per iteration is the difference of the medians; target < 150 ms. Also measured:
``specwright run SPEC:N`` as a subprocess (adds the interpreter start and imports, see
cold_start), and, when ``.agents/node_modules/.bin/claude`` exists (full mode only), the real
Claude Code CLI against the local fake model server, directly vs through the loop.
"""

from __future__ import annotations

import functools
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

from bench.common import REPO, git, make_repo, python, python_env, row, scripted_config, timed

NAME = "orchestration"
TARGET_MS = 150.0
CLAUDE = REPO / ".agents" / "node_modules" / ".bin" / "claude"


def _ignore(event: Any) -> None:
    """An event sink for the agent run alone: nothing recorded."""


def _steps(k: int, sleep_s: float) -> list[dict[str, Any]]:
    return [
        {"sleep": sleep_s},
        {"write": f"part_{k}.py", "content": f"def part_{k}():\n    return {k}\n"},
        {"say": f"Added part_{k}."},
        {"usage": {"input_tokens": 1200, "output_tokens": 150, "cost_usd": 0.002}},
    ]


def _script(n: int, sleep_s: float) -> dict[str, Any]:
    return {"chunks": {f"Part {k}": _steps(k, sleep_s) for k in range(n)}}


def _spec(store: Any, repo: Path, n: int) -> list[Any]:
    from specwright import catalog

    spec = catalog.create_spec(store, catalog.ensure_project(store, repo), "Orchestration bench")
    return [
        catalog.add_chunk(store, spec, f"Part {k}", f"Add part_{k}.py", files=[f"part_{k}.py"])
        for k in range(n)
    ]


def _direct(executor: Any, repo: Path, k: int) -> float:
    """Seconds of one execution by the agent alone (events go nowhere)."""
    from specwright.agents.base import Task

    task = Task(f"Add part_{k}.py", repo, metadata={"chunk_title": f"Part {k}", "iteration": 1})
    events: list[Any] = []
    took, outcome = timed(lambda: executor.execute(task, events.append, threading.Event()))
    if outcome.status != "ok":
        raise RuntimeError(f"direct run {k}: {outcome.status} {outcome.error}")
    return took


def _looped(store: Any, config: Any, repo: Path, chunk: Any, executor: Any) -> float:
    """Seconds of ``run_chunk`` for one chunk (one iteration that ships)."""
    from specwright.loop import run_chunk

    took, result = timed(
        lambda: run_chunk(store, config, repo, chunk, executor=executor, max_iterations=1)
    )
    if not result.shipped:
        raise RuntimeError(f"loop run of {chunk.title}: {result.status} ({result.reason})")
    return took


def _compare(
    label: str, direct: list[float], looped: list[float], target: bool, note: str
) -> list[dict[str, Any]]:
    d = statistics.median(direct) * 1000
    lo = statistics.median(looped) * 1000
    return [
        row(NAME, f"{label}: agent directly", d, "ms", note=f"median of {len(direct)}"),
        row(
            NAME,
            f"{label}: added time per iteration",
            lo - d,
            "ms",
            baseline=d,
            ratio=lo / d,
            target=f"< {TARGET_MS:g} ms" if target else "",
            note=note,
        ),
    ]


def _scripted(work: Path, n: int, sleep_s: float) -> list[dict[str, Any]]:
    from specwright.agents.scripted import ScriptedExecutor
    from specwright.config import ExecutorConfig
    from specwright.store import Store

    script = _script(n + 1, sleep_s)
    executor = ScriptedExecutor(ExecutorConfig(name="scripted", type="scripted"), script=script)
    scratch = make_repo(work / "direct")
    repo = make_repo(work / "loop")
    store = Store(work / "store" / "db.duckdb")
    store.migrate()
    config = scripted_config()
    chunks = _spec(store, repo, n + 1)
    # one warm-up each (imports, first connection), then n timed runs
    direct = [_direct(executor, scratch, k) for k in range(n + 1)][1:]
    looped = [_looped(store, config, repo, c, executor) for c in chunks][1:]
    rows = _compare(
        "scripted",
        direct,
        looped,
        True,
        f"sleep {sleep_s:g} s + one file write per run; run_chunk in process, one iteration",
    )
    rows += _cli(work, n, sleep_s, statistics.median(direct) * 1000)
    return rows


def _cli(work: Path, n: int, sleep_s: float, direct_ms: float) -> list[dict[str, Any]]:
    """``specwright run spec:N`` as a subprocess per chunk, against the same direct baseline."""
    import yaml

    from specwright.store import Store

    repo = make_repo(work / "cli")
    script_path = work / "cli-script.yaml"
    script_path.write_text(yaml.safe_dump(_script(n + 1, sleep_s)))
    (repo / ".handoff").mkdir()
    (repo / ".handoff" / "config.yaml").write_text(
        "tools:\n  executors:\n    scripted:\n      type: scripted\n"
        f"      script: {script_path}\n"
        "defaults:\n  executor: scripted\n  reviewer: checks\n  maxIterations: 1\nverify: []\n"
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "specwright config")
    db = work / "cli-store" / "db.duckdb"
    store = Store(db)
    store.migrate()
    chunks = _spec(store, repo, n + 1)
    env = {**python_env(), "SPECWRIGHT_DB": str(db)}
    times = []
    for chunk in chunks:
        argv = [python(), "-m", "specwright", "-C", str(repo), "run", chunk.id]
        took, proc = timed(
            functools.partial(
                subprocess.run, argv, env=env, capture_output=True, text=True, timeout=300
            )
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"specwright run {chunk.title}: exit {proc.returncode}: {proc.stderr}"
            )
        times.append(took)
    ms = statistics.median(times[1:]) * 1000
    return [
        row(
            NAME,
            "scripted: `specwright run` CLI added time",
            ms - direct_ms,
            "ms",
            baseline=direct_ms,
            ratio=ms / direct_ms,
            note="a subprocess per chunk: interpreter start, imports, config, then the loop",
        )
    ]


def _claude(work: Path, n: int) -> list[dict[str, Any]]:
    """The real Claude Code CLI against the fake model server, directly vs through the loop."""
    from specwright.agents.base import Task
    from specwright.agents.claude_code import ClaudeCodeExecutor
    from specwright.config import ExecutorConfig
    from specwright.store import Store
    from specwright.testing import FakeModelServer, anthropic_text, anthropic_tool_use

    def turns(srv: Any, repo: Path, k: int) -> None:
        srv.script(
            anthropic_tool_use(
                "Write",
                {"file_path": str(repo / f"part_{k}.py"), "content": f"X = {k}\n"},
                input_tokens=1200,
                output_tokens=40,
            ),
            anthropic_text(f"Added part_{k}.", input_tokens=1300, output_tokens=12),
        )

    scratch = make_repo(work / "claude-direct").resolve()
    repo = make_repo(work / "claude-loop").resolve()
    store = Store(work / "claude-store" / "db.duckdb")
    store.migrate()
    chunks = _spec(store, repo, n + 1)
    direct, looped = [], []
    with FakeModelServer() as srv:
        env = {
            "ANTHROPIC_BASE_URL": srv.base_url,
            "ANTHROPIC_API_KEY": "sk-ant-fake-key-for-the-bench",
            "CLAUDE_CODE_MAX_RETRIES": "0",
        }
        cfg = ExecutorConfig(
            name="claude",
            type="claude-code",
            model="claude-sonnet-4-5",
            path=str(CLAUDE),
            max_turns=5,
            env=env,
        )
        executor = ClaudeCodeExecutor(cfg)
        config = scripted_config()
        # the two sides take turns: node's start-up time drifts with the machine's load over a
        # run (all direct runs first, then all looped ones, measured 53 to 167 ms added)
        for k, chunk in enumerate(chunks):
            turns(srv, scratch, k)
            task = Task(f"Add part_{k}.py", scratch, env=env)
            took, outcome = timed(
                functools.partial(executor.execute, task, _ignore, threading.Event())
            )
            if outcome.status != "ok":
                raise RuntimeError(f"claude direct run {k}: {outcome.status} {outcome.error}")
            direct.append(took)
            turns(srv, repo, k)
            looped.append(_looped(store, config, repo, chunk, executor))
    return _compare(
        "claude CLI + fake model",
        direct[1:],
        looped[1:],
        True,
        "two model turns (a Write, then text) per run; node start-up is in both sides",
    )


def run(quick: bool) -> list[dict[str, Any]]:
    """Added time per iteration of the loop over the agent alone."""
    n, sleep_s = (3, 0.1) if quick else (15, 0.5)
    work = Path(tempfile.mkdtemp(prefix="specwright-bench-orch-"))
    saved = os.environ.get("CLAUDE_PATH")
    try:
        rows = _scripted(work, n, sleep_s)
        if quick:
            rows.append(row(NAME, "claude CLI + fake model", None, "", note="full run only"))
        elif CLAUDE.exists():
            os.environ.pop("CLAUDE_PATH", None)  # the executor's configured path wins
            rows += _claude(work, 8)
        else:
            rows.append(row(NAME, "claude CLI + fake model", None, "", note=f"no {CLAUDE}"))
    finally:
        if saved is not None:
            os.environ["CLAUDE_PATH"] = saved
        shutil.rmtree(work, ignore_errors=True)
    return rows
