"""Shared helpers of the benches: result rows, timing, targets, the machine, the table.

A bench module has ``run(quick: bool) -> list[dict]``; each dict is a row with the keys of
``ROW_KEYS``. Every figure is a ratio or a latency against a baseline measured in the same run
(these machines are noisy), so a row carries its baseline next to its value.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "out" / "bench"  # git-ignored: the big synthetic stores live here between runs
ROW_KEYS = ("bench", "metric", "value", "unit", "baseline", "ratio", "target", "met", "note")
_TARGET = re.compile(r"^\s*(<=|>=|<|>)\s*([0-9.]+)")


def row(
    bench: str,
    metric: str,
    value: float | None,
    unit: str,
    *,
    baseline: float | None = None,
    ratio: float | None = None,
    target: str = "",
    met: bool | None = None,
    note: str = "",
) -> dict[str, Any]:
    """One result row. ``met`` is computed from ``target`` unless given: a target ending in
    ``x`` (``< 1.15x``) is checked against the ratio, any other (``< 300 ms``) the value."""
    if met is None and target:
        on_ratio = target.rstrip().endswith("x") and ratio is not None
        met = meets(ratio if on_ratio else value, target)
    return {
        "bench": bench,
        "metric": metric,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "ratio": ratio,
        "target": target,
        "met": met,
        "note": note,
    }


def meets(value: float | None, target: str) -> bool | None:
    """Whether ``value`` satisfies a target like ``< 300`` or ``>= 50``; None if unparsable."""
    m = _TARGET.match(target or "")
    if m is None or value is None:
        return None
    op, bound = m[1], float(m[2])
    return {
        "<": value < bound,
        "<=": value <= bound,
        ">": value > bound,
        ">=": value >= bound,
    }[op]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds ``fn`` took, and what it returned."""
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def median_time(fn: Callable[[], Any], n: int, warmup: int = 1) -> float:
    """Median seconds of ``n`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn)[0] for _ in range(n))


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import duckdb

    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    try:
        load = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        load = "?"
    return {
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "commit": commit,
        "load_avg": load,
    }


def fmt(value: Any) -> str:
    """A number for the table: 3 significant figures, thousands separated."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


TABLE_COLUMNS = ("bench", "metric", "value", "unit", "baseline", "ratio", "target", "met")


def table_lines(rows: list[dict[str, Any]], markdown: bool = False) -> list[str]:
    """The rows as a text table (aligned) or a Markdown table."""
    cells = [[fmt(r.get(c)) for c in TABLE_COLUMNS] for r in rows]
    if markdown:
        head = "| " + " | ".join(TABLE_COLUMNS) + " |"
        rule = "|" + "|".join("---" for _ in TABLE_COLUMNS) + "|"
        body = ["| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in cells]
        return [head, rule, *body]
    widths = [
        max(len(c), *(len(line[i]) for line in cells)) if cells else len(c)
        for i, c in enumerate(TABLE_COLUMNS)
    ]
    numeric = {"value", "baseline", "ratio"}

    def render(line: list[str] | tuple[str, ...]) -> str:
        parts = [
            s.rjust(w) if TABLE_COLUMNS[i] in numeric else s.ljust(w)
            for i, (s, w) in enumerate(zip(line, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return [render(TABLE_COLUMNS), render(["-" * w for w in widths]), *map(render, cells)]


def python_env() -> dict[str, str]:
    """The environment for a child Python that imports this checkout (and the benches). Python
    may write its bytecode cache, as a user's Python does (a sandbox that turns that off with
    ``PYTHONDONTWRITEBYTECODE`` made every child recompile ~15 modules: ~50 ms of each CLI run)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def python() -> str:
    """This interpreter (the venv's), for child processes."""
    return sys.executable


GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@specwright.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@specwright.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` (bench identity) and return its stripped stdout."""
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(root: Path, files: dict[str, str] | None = None) -> Path:
    """A git repository on ``main`` with a README (and ``files``), one commit."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    content = {"README.md": "# bench\n", ".gitignore": "data/\n__pycache__/\n", **(files or {})}
    for rel, text in content.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


def scripted_config(extra_yaml: str = "") -> Any:
    """A Config: the scripted executor and the checks reviewer, no verification steps."""
    from specwright.config import load_text

    text = (
        "tools:\n  executors:\n    scripted:\n      type: scripted\n"
        "defaults:\n  executor: scripted\n  reviewer: checks\n  maxIterations: 1\n"
        "verify: []\n" + extra_yaml
    )
    return load_text(text, source="bench-config.yaml")
