"""Benchmark: Specwright's log ingest and reports vs ccusage on the same Claude Code corpus.

Figures (each a dict with ``name``, ``value``, ``unit`` and, for ratios, ``target``):
- ccusage's one `claude daily --json` report over the raw logs (it re-reads every log each time);
- Specwright's first ingest + daily report (in-process, and as two CLI processes), and a CLI
  re-ingest after 1% more lines (a whole `specwright ingest claude-logs` process);
- a later daily report from the store (in-process and CLI) and its speed-up over ccusage;
- a re-ingest after appending 1% more lines (of the corpus's own mix: every session carried on
  for 1% more turns), as a share of the first ingest, measured two ways
  with both sides in the same state: on an open store (the database instance already up, as in a
  long-lived process; how the first ingest has always been timed, right after ``migrate``) and
  on a released one (each timed call opens DuckDB afresh, as a new CLI process does; closing is
  left out of both). Each run times ``REINGESTS`` such re-ingests one after another (1% more
  lines each, other lines every time) and counts their median: one re-ingest takes ~50 ms, and
  one stall of this shared machine doubled a single sample. Also the re-ingest of one new line
  per file: the part of a re-ingest that does not grow with the new lines.

The ``many_files_`` figures repeat the first ingest, a run with nothing new and the re-ingest on
the layout real logs have: ~3,000 small session files (~190 MB) instead of 80 big ones.

``run(quick=True)`` uses a tiny corpus (seconds); the default is ~200 MB; ``full=True`` (or
``--full``) ~1 GB. Each figure is the median of ``repeat`` runs (``--repeat=N``; default 3, quick
1) over the same corpus, ratios taken within a run. ccusage is found like the tests find it (``CCUSAGE_PATH`` or
``.agents/node_modules/.bin/ccusage``); without it the ccusage figures are skipped.
"""

from __future__ import annotations

import json
import math
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


def _append_one_percent(
    info: Any, per_file: int = 0, seed: int = 1000
) -> tuple[int, dict[Path, int]]:
    """Append 1% more lines to the corpus, of its own mix (every session carried on for 1% more
    turns: user lines, streamed replies, sidechains, now and then a cut-short line), or
    ``per_file`` new replies to each file; returns (lines added, each file's size before)."""
    from tests.support_usage import append_claude_lines, extend_claude_corpus

    sizes = {f: f.stat().st_size for f in info.files}
    if per_file:
        for i, f in enumerate(info.files):
            append_claude_lines(f, per_file, seed=seed + i)
        return per_file * len(info.files), sizes
    turns = math.ceil(max(s.turns for s in info.sessions) / 100)
    return extend_claude_corpus(info, turns, seed=seed), sizes


REINGESTS = 5


def _reingests(append: Any, ingest: Any, after: Any = None) -> tuple[list[float], int, Any]:
    """``REINGESTS`` re-ingests, each after ``append(j)`` adds 1% more lines (new ones every time,
    returns how many; ``after`` runs after each, untimed); returns their times, the lines added
    by one, and the last result. The caller truncates the corpus back."""
    times: list[float] = []
    added, res = 0, None
    for j in range(REINGESTS):
        added = append(j)
        took, res = _timed(ingest)
        times.append(took)
        if after is not None:
            after()
    return times, added, res


def _truncate(sizes: dict[Path, int]) -> None:
    """Undo ``_append_one_percent`` so the next repetition starts from the same corpus."""
    for f, size in sizes.items():
        os.truncate(f, size)


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


def _median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)


def run(quick: bool = False, full: bool = False, repeat: int | None = None) -> list[dict[str, Any]]:
    """Run the benchmark ``repeat`` times on one corpus (default 3, quick 1); returns the median
    of each figure, with every run's value under ``runs``. Ratios are taken within each run (the
    machine is shared and noisy) before the median."""
    from bench.common import python_env
    from specwright.store import Store
    from specwright.usage import claude
    from tests.support_usage import ccusage_path

    repeat = repeat or (1 if quick else 3)
    figures: list[dict[str, Any]] = []
    runs: dict[str, list[float]] = {}
    extras: dict[str, dict[str, Any]] = {}

    def fig(name: str, value: float, unit: str, **extra: Any) -> None:
        figures.append({"name": name, "value": round(value, 4), "unit": unit, **extra})

    def sample(name: str, value: float, **extra: Any) -> None:
        runs.setdefault(name, []).append(value)
        extras.setdefault(name, {}).update(extra)

    work = Path(tempfile.mkdtemp(prefix="specwright-bench-"))
    try:
        cfg = work / "claude"
        gen_s, info = _timed(lambda: _corpus(cfg, quick, full))
        fig("corpus_mb", info.bytes / 1e6, "MB", lines=info.lines, files=len(info.files))
        fig("corpus_generate_s", gen_s, "s")
        env = {k: v for k, v in python_env().items() if not k.startswith("CLAUDE_")}
        env.update(CLAUDE_CONFIG_DIR=str(cfg), SPECWRIGHT_DB=str(work / "cli" / "db.duckdb"))

        ccusage = ccusage_path()
        cc: Any = None
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

            cc()  # warm the page cache for both sides alike
        else:
            figures.append(
                {
                    "name": "ccusage",
                    "value": None,
                    "unit": "",
                    "skipped": "ccusage not found (CCUSAGE_PATH)",
                }
            )

        for i in range(repeat):
            cc_s: float | None = None
            cc_totals = None
            if cc is not None:
                cc_s, out = _timed(cc)
                cc_totals = out["totals"]
                sample("ccusage_daily_s", cc_s)

            # the store stays open between uses (the CLI runs below take longer than the default
            # linger): every in-process figure is taken with the database instance up
            store = Store(work / f"inproc{i}" / "db.duckdb", linger_s=3600)
            store.migrate()
            ingest_s, res = _timed(lambda: claude.ingest(store, [cfg / "projects"]))  # noqa: B023
            report_s, ours = _timed(lambda: _daily_json(store))  # noqa: B023
            first = ingest_s + report_s
            sample("first_ingest_s", ingest_s, records=res.imported, malformed=res.malformed)
            sample("first_ingest_plus_report_s", first)
            if cc_totals is not None:
                keys = ("inputTokens", "outputTokens", "cacheCreationTokens", "cacheReadTokens")
                same = all(ours["totals"][k] == cc_totals[k] for k in keys)
                sample("totals_match_ccusage", float(same))
            later = min(_timed(lambda: _daily_json(store))[0] for _ in range(5))  # noqa: B023
            sample("later_report_s", later)
            shutil.rmtree(work / "cli", ignore_errors=True)
            cli_first = _cli(["ingest", "claude-logs"], env) + _cli(
                ["usage", "daily", "--json"], env
            )
            cli_later = min(_cli(["usage", "daily", "--json"], env) for _ in range(3))
            sample("cli_first_ingest_plus_report_s", cli_first)
            sample("cli_later_report_s", cli_later)
            added, sizes = _append_one_percent(info)
            try:
                cli_re = _cli(["ingest", "claude-logs"], env)
            finally:
                _truncate(sizes)
            sample("cli_reingest_1pct_s", cli_re, lines_added=added)
            if cc_s:
                sample("ratio_first_vs_ccusage", first / cc_s, target="<= 1.0")
                sample("ratio_cli_first_vs_ccusage", cli_first / cc_s, target="<= 1.0")
                sample("speedup_later_report", cc_s / later, target=">= 50")
                sample("speedup_cli_later_report", cc_s / cli_later)

            sizes = {f: f.stat().st_size for f in info.files}
            try:
                each, added, res2 = _reingests(
                    lambda j: _append_one_percent(info, seed=1000 + j)[0],
                    lambda: claude.ingest(store, [cfg / "projects"]),  # noqa: B023
                )
                # then one more line per file (before truncating: a file shorter than what was
                # read would be read again from the start)
                one, _ = _append_one_percent(info, per_file=1, seed=5000)
                floor_s, res3 = _timed(lambda: claude.ingest(store, [cfg / "projects"]))  # noqa: B023
            finally:
                _truncate(sizes)
            re_s = _median(each)
            sample(
                "reingest_1pct_s",
                re_s,
                lines_added=added,
                imported=res2.imported,
                each=[round(t, 4) for t in each],
            )
            sample("reingest_share_of_first", re_s / ingest_s, target="< 0.05")
            sample("reingest_1_line_per_file_s", floor_s, lines_added=one, imported=res3.imported)
            store.release()

            # the same two ingests from a released store: each timed call opens DuckDB
            cold = Store(work / f"cold{i}" / "db.duckdb")
            cold.migrate()
            cold.release()
            cold_first, _ = _timed(lambda: claude.ingest(cold, [cfg / "projects"]))  # noqa: B023
            cold.release()
            sizes = {f: f.stat().st_size for f in info.files}
            try:
                each, added, _ = _reingests(
                    lambda j: _append_one_percent(info, seed=1000 + j)[0],
                    lambda: claude.ingest(cold, [cfg / "projects"]),  # noqa: B023
                    after=cold.release,
                )
            finally:
                _truncate(sizes)
            cold_re = _median(each)
            sample("cold_first_ingest_s", cold_first)
            sample(
                "cold_reingest_1pct_s", cold_re, lines_added=added, each=[round(t, 4) for t in each]
            )
            sample("cold_reingest_share_of_first", cold_re / cold_first, target="< 0.05")

        _many_files(work, quick, repeat, env, ccusage, sample)

        for name, values in runs.items():
            unit = "x" if name.startswith(("ratio", "speedup")) or "_share_" in name else "s"
            if name.startswith("many_files_ratio"):
                unit = "x"
            if name == "totals_match_ccusage":
                fig(name, min(values), "bool")
                continue
            extra = dict(extras[name])
            if repeat > 1:
                extra["runs"] = [round(v, 4) for v in values]
            fig(name, _median(values), unit, **extra)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return figures


def _many_files(
    work: Path, quick: bool, repeat: int, env: dict[str, str], ccusage: Path | None, sample: Any
) -> None:
    """The same measures on the layout real logs have: many small session files (~3,000 files,
    ~190 MB: 1,500 sessions, each with a subagent file). The first ingest + report against
    ccusage's report, a run that finds nothing new, and a re-ingest after 1% more lines (every
    session of a share of them carried on by one turn)."""
    import copy

    from specwright.store import Store
    from specwright.usage import claude
    from tests.support_usage import extend_claude_corpus, write_claude_corpus

    cfg = work / "many"
    sessions, turns = (30, 10) if quick else (1500, 36)
    info = write_claude_corpus(cfg, sessions=sessions, turns=turns, days=30, pad=300)
    env = {**env, "CLAUDE_CONFIG_DIR": str(cfg)}
    share = copy.copy(info)  # one more turn for 1% of all turns: ~1% more lines
    share.sessions = info.sessions[: max(1, round(sessions * turns / 100))]
    for i in range(repeat):
        cc_s = None
        if ccusage is not None:
            cc_s = _cli_time(
                [str(ccusage), "claude", "daily", "--json", "--offline", "--timezone", "UTC"], env
            )
            sample(
                "many_files_ccusage_daily_s", cc_s, files=len(info.files), mb=info.bytes // 10**6
            )
        store = Store(work / f"many{i}" / "db.duckdb", linger_s=3600)
        store.migrate()
        first_s, _ = _timed(lambda: claude.ingest(store, [cfg / "projects"]))  # noqa: B023
        report_s, _ = _timed(lambda: _daily_json(store))  # noqa: B023
        sample("many_files_first_ingest_plus_report_s", first_s + report_s)
        if cc_s:
            sample(
                "many_files_ratio_first_vs_ccusage", (first_s + report_s) / cc_s, target="<= 1.0"
            )
        nothing_s, _ = _timed(lambda: claude.ingest(store, [cfg / "projects"]))  # noqa: B023
        sample("many_files_reingest_nothing_new_s", nothing_s)
        sizes = {f: f.stat().st_size for f in info.files}
        try:
            each, added, _ = _reingests(
                lambda j: extend_claude_corpus(share, 1, seed=1000 + j),
                lambda: claude.ingest(store, [cfg / "projects"]),  # noqa: B023
            )
        finally:
            _truncate(sizes)
        re_s = _median(each)
        sample(
            "many_files_reingest_1pct_s",
            re_s,
            lines_added=added,
            each=[round(t, 4) for t in each],
        )
        sample("many_files_reingest_share_of_first", re_s / first_s, target="< 0.05")
        store.release()


def _cli_time(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, capture_output=True, check=True, timeout=3600)
    return time.perf_counter() - t


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    full = "--full" in sys.argv
    reps = next((int(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--repeat=")), None)
    for f in run(quick=quick, full=full, repeat=reps):
        extra = {k: v for k, v in f.items() if k not in ("name", "value", "unit")}
        print(f"{f['name']:<34} {f['value']!s:>12} {f['unit']:<4} {extra or ''}")
