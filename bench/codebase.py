"""Benchmark: codebase analysis and rendering on a large tree, and a cached lookup.

``run(quick)`` builds a synthetic git repository (quick: 2,000 files; full: 20,000 files, about
2.4 M lines) in a temp folder and times ``analyze``, ``render`` and ``context`` (miss, then hit
from the store). Set ``SPECWRIGHT_BENCH_TREE`` to also time a real tree (e.g. an unpacked
sdist that was `git init`-ed). Run as ``python bench/codebase.py [--quick]``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@specwright.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@specwright.invalid",
}


def _make_tree(root: Path, files: int) -> None:
    body = "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(40))  # 120 lines
    for n in range(files):
        pkg = root / "src" / f"pkg{n % 50}" / f"sub{n % 7}"
        pkg.mkdir(parents=True, exist_ok=True)
        ext = (".py", ".ts", ".go", ".rs")[n % 4]
        (pkg / f"mod{n}{ext}").write_text(body)
    (root / "README.md").write_text("# bench\n\nA synthetic tree.\n")
    (root / "pyproject.toml").write_text('[project]\nname = "bench"\n[tool.pytest]\n')
    env = {**os.environ, **_GIT_ENV}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(["git", *args], cwd=root, check=True, env=env, capture_output=True)


def _time(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _measure(label: str, root: Path, store: Any) -> list[dict[str, Any]]:
    from specwright import codebase

    t_an, summary = _time(lambda: codebase.analyze(root))
    t_re, text = _time(lambda: codebase.render(summary, 6000))
    t_miss, _ = _time(lambda: codebase.context(root, store, budget_tokens=6000))
    t_hit, cached = _time(lambda: codebase.context(root, store, budget_tokens=6000))
    assert cached == text, "cached context differs from a fresh render"
    base = {"tree": label, "files": summary.total_files, "lines": summary.total_lines}
    return [
        {**base, "name": "analyze", "seconds": round(t_an, 4)},
        {**base, "name": "render_6k_tokens", "seconds": round(t_re, 4), "tokens": len(text) // 4},
        {**base, "name": "context_cache_miss", "seconds": round(t_miss, 4)},
        {**base, "name": "context_cache_hit", "seconds": round(t_hit, 4)},
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    """Time codebase analysis on a synthetic tree (and SPECWRIGHT_BENCH_TREE if set)."""
    from specwright.store import Store

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.duckdb")
        store.migrate()
        repo = Path(tmp) / "repo"
        repo.mkdir()
        n = 2_000 if quick else 20_000
        _make_tree(repo, n)
        results += _measure(f"synthetic-{n}", repo, store)
        real = os.environ.get("SPECWRIGHT_BENCH_TREE")
        if real:
            results += _measure(Path(real).name, Path(real), store)
    return results


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
