"""Benchmark: Specwright's log ingest and reports vs ccusage on the same Claude Code corpus.

Figures (each a dict with ``name``, ``value``, ``unit`` and, for ratios, ``target``):
- ccusage's one `claude daily --json` report over the raw logs (it re-reads every log each time);
- Specwright's first ingest + daily report (in-process, and as two CLI processes);
- a later daily report from the store (in-process and CLI) and its speed-up over ccusage;
- a re-ingest after appending 1% more lines, as a share of the first ingest.

``run(quick=True)`` uses a tiny corpus (seconds); the default is ~200 MB; ``full=True`` (or
``--full``) ~1 GB. ccusage is found like the tests find it (``CCUSAGE_PATH`` or
``.agents/node_modules/.bin/ccusage``); without it the ccusage figures are skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _corpus(root: Path, quick: bool, full: bool) -> Any:
    from tests.support_usage import write_claude_corpus

    if quick:
        return write_claude_corpus(root, sessions=6, turns=150, days=3, pad=200)
    turns = 7200 if full else 1450
    return write_claude_corpus(root, sessions=40, turns=turns, days=30, pad=300)


def _append_one_percent(info: Any) -> int:
    from tests.support_usage import append_claude_lines

    per_file = max(1, info.lines // 100 // max(len(info.files), 1))
    for i, f in enumerate(info.files):
        append_claude_lines(f, per_file, seed=1000 + i)
    return per_file * len(info.files)


def _timed(fn: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def _cli(args: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "specwright.cli", *args],
        env=env,
        check=True,
        capture_output=True,
        timeout=3600,
    )
    return time.perf_counter() - t


def _daily_json(store: Any) -> dict[str, Any]:
    from specwright import queries as Q
    from specwright.cli.usage import _totals

    rows = Q.usage_report(store, "day")
    return {"daily": rows, "totals": _totals(rows)}


def run(quick: bool = False, full: bool = False) -> list[dict[str, Any]]:
    """Run the benchmark; returns its figures."""
    from specwright.store import Store
    from specwright.usage import claude
    from tests.support_usage import ccusage_path

    figures: list[dict[str, Any]] = []

    def fig(name: str, value: float, unit: str, **extra: Any) -> None:
        figures.append({"name": name, "value": round(value, 4), "unit": unit, **extra})

    work = Path(tempfile.mkdtemp(prefix="specwright-bench-"))
    try:
        cfg = work / "claude"
        gen_s, info = _timed(lambda: _corpus(cfg, quick, full))
        fig("corpus_mb", info.bytes / 1e6, "MB", lines=info.lines, files=len(info.files))
        fig("corpus_generate_s", gen_s, "s")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_")}
        env.update(CLAUDE_CONFIG_DIR=str(cfg), SPECWRIGHT_DB=str(work / "cli" / "db.duckdb"))

        ccusage = ccusage_path()
        cc_s: float | None = None
        cc_totals = None
        if ccusage is not None:

            def cc() -> Any:
                p = subprocess.run(
                    [str(ccusage), "claude", "daily", "--json", "--offline", "--timezone", "UTC"],
                    env=env,
                    capture_output=True,
                    check=True,
                    timeout=3600,
                )
                return json.loads(p.stdout)

            _timed(cc)  # warm the page cache for both sides alike
            cc_s, out = _timed(cc)
            cc_totals = out["totals"]
            fig("ccusage_daily_s", cc_s, "s", mb_per_s=round(info.bytes / 1e6 / cc_s, 1))
        else:
            figures.append(
                {
                    "name": "ccusage",
                    "value": None,
                    "unit": "",
                    "skipped": "ccusage not found (CCUSAGE_PATH)",
                }
            )

        store = Store(work / "inproc" / "db.duckdb")
        store.migrate()
        ingest_s, res = _timed(lambda: claude.ingest(store, [cfg / "projects"]))
        report_s, ours = _timed(lambda: _daily_json(store))
        first = ingest_s + report_s
        fig("first_ingest_s", ingest_s, "s", records=res.imported, malformed=res.malformed)
        fig("first_ingest_plus_report_s", first, "s")
        if cc_totals is not None:
            same = all(
                ours["totals"][k] == cc_totals[k]
                for k in ("inputTokens", "outputTokens", "cacheCreationTokens", "cacheReadTokens")
            )
            fig("totals_match_ccusage", float(same), "bool")
        later = min(_timed(lambda: _daily_json(store))[0] for _ in range(5))
        fig("later_report_s", later, "s")
        cli_first = _cli(["ingest", "claude-logs"], env) + _cli(["usage", "daily", "--json"], env)
        cli_later = min(_cli(["usage", "daily", "--json"], env) for _ in range(3))
        fig("cli_first_ingest_plus_report_s", cli_first, "s")
        fig("cli_later_report_s", cli_later, "s")
        if cc_s:
            fig("ratio_first_vs_ccusage", first / cc_s, "x", target="<= 1.0")
            fig("ratio_cli_first_vs_ccusage", cli_first / cc_s, "x", target="<= 1.0")
            fig("speedup_later_report", cc_s / later, "x", target=">= 50")
            fig("speedup_cli_later_report", cc_s / cli_later, "x")

        added = _append_one_percent(info)
        re_s, res2 = _timed(lambda: claude.ingest(store, [cfg / "projects"]))
        fig("reingest_1pct_s", re_s, "s", lines_added=added, imported=res2.imported)
        fig("reingest_share_of_first", re_s / ingest_s, "x", target="< 0.05")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return figures


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    full = "--full" in sys.argv
    for f in run(quick=quick, full=full):
        extra = {k: v for k, v in f.items() if k not in ("name", "value", "unit")}
        print(f"{f['name']:<34} {f['value']!s:>12} {f['unit']:<4} {extra or ''}")
