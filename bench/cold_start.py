"""Bench 6, cold start: ``import specwright``, ``specwright --help`` and ``specwright status`` on
the 1-year store (see dashboard.py), each a fresh process, median of N runs, against a bare
``python -c pass`` measured in the same run. Target: ``import specwright`` under 300 ms (the
core imports nothing heavy: no duckdb, pandas, plotly, git or model SDKs)."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import python, python_env, row, timed

NAME = "cold_start"
IMPORT_TARGET_MS = 300.0


def _cli() -> list[str]:
    """The installed ``specwright`` entry point (what users run), else ``python -m``."""
    script = Path(sys.executable).parent / "specwright"
    return [str(script)] if script.exists() else [python(), "-m", "specwright"]


def _median_ms(argv: list[str], n: int) -> float:
    env = python_env()

    def once() -> float:
        took, proc = timed(
            lambda: subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr[-500:]}")
        return took * 1000

    once()  # warm the page cache
    return statistics.median(once() for _ in range(n))


def run(quick: bool) -> list[dict[str, Any]]:
    """Wall time of fresh processes against ``python -c pass``."""
    from bench.dashboard import year_store

    n = 3 if quick else 10
    year = year_store(quick)
    try:
        base = _median_ms([python(), "-c", "pass"], n)
        cases = [
            ("import specwright", [python(), "-c", "import specwright"], IMPORT_TARGET_MS),
            ("specwright --help", [*_cli(), "--help"], None),
            (
                f"specwright status ({'tiny' if quick else '1-year'} store)",
                [*_cli(), "-C", str(year.project_dir), "--db", str(year.db), "status"],
                None,
            ),
        ]
        rows = [row(NAME, "python -c pass", base, "ms", note=f"median of {n}")]
        for label, argv, target in cases:
            ms = _median_ms(argv, n)
            rows.append(
                row(
                    NAME,
                    label,
                    ms,
                    "ms",
                    baseline=base,
                    ratio=ms / base,
                    target=f"< {target:g} ms" if target else "",
                    note=f"median of {n}; {ms - base:.0f} ms over the bare interpreter",
                )
            )
    finally:
        if quick:
            shutil.rmtree(year.db.parent, ignore_errors=True)
    return rows
