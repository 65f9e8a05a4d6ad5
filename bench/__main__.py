"""Run the benches: ``python -m bench [--quick] [--only NAME[,NAME]] [--results PATH]``.

Prints one table and writes a Markdown report (date, machine, the table, notes). A full run with
every bench writes ``bench/RESULTS.md``; a quick run (a smoke test, seconds per bench) or a run
of some benches writes ``out/bench/RESULTS-quick.md`` / ``out/bench/RESULTS-partial.md`` unless
``--results`` says where, so the committed file only ever holds a full run. A bench that fails is
reported as a row (with its error) and makes the exit status 1; the others still run. A
hand-written ``## Closing note`` at the end of the report (causes of missed targets) is kept
when the report is rewritten, marked as written for an earlier run.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import CACHE, REPO, machine, row, table_lines

# (module, what it measures); colleagues' benches are optional: skipped with a note if absent
BENCHES: tuple[tuple[str, str], ...] = (
    ("event_ingest", "recorder's buffered writer vs row-by-row INSERTs"),
    ("dashboard", "usage dashboard queries on a 1-year store"),
    ("orchestration", "added time per loop iteration vs the agent alone"),
    ("parallel", "run-all --parallel 4: wall time / critical path"),
    ("log_ingest", "Claude log ingest and reports vs ccusage"),
    ("cold_start", "import, --help and status vs a bare interpreter"),
    ("codebase", "codebase analysis on a large tree"),
)
COMMITTED = Path(__file__).resolve().parent / "RESULTS.md"
CLOSING = "## Closing note"  # a hand-written section at the end, carried over by re-runs
KEPT_NOTE = "_(Written for an earlier run: check it against the table above.)_"


def _available(name: str) -> bool:
    return importlib.util.find_spec(f"bench.{name}") is not None


def adapt(name: str, figures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows from a bench; colleagues' benches return their own dict shapes, mapped here."""
    out = []
    for f in figures:
        if "bench" in f and "metric" in f:
            out.append({**row(name, f["metric"], None, ""), **f})
            continue
        label = str(f.get("name", "?"))
        if f.get("tree"):
            label = f"{label} ({f['tree']})"
        value = f.get("value", f.get("seconds"))
        unit = f.get("unit", "s" if "seconds" in f else "")
        extra = {
            k: v
            for k, v in f.items()
            if k not in ("name", "value", "unit", "seconds", "target", "tree", "skipped")
        }
        note = f.get("skipped") or ", ".join(f"{k}={v}" for k, v in extra.items())
        target = str(f.get("target") or "")
        out.append(
            row(
                name,
                label,
                value if isinstance(value, int | float) else None,
                unit,
                target=target,
                note=str(note),
            )
        )
    return out


def run_benches(names: list[str], quick: bool) -> tuple[list[dict[str, Any]], bool]:
    """Run ``names`` in order; returns every row and whether all of them ran."""
    rows: list[dict[str, Any]] = []
    ok = True
    for name in names:
        if not _available(name):
            rows.append(row(name, "skipped", None, "", note=f"bench/{name}.py is not there yet"))
            continue
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.{name}")
            got = adapt(name, module.run(quick))
        except Exception as exc:
            ok = False
            traceback.print_exc()
            got = [row(name, "error", None, "", note=f"{type(exc).__name__}: {exc}"[:300])]
        took = time.perf_counter() - started
        print(f"[bench] {name} done in {took:.1f} s", file=sys.stderr, flush=True)
        rows.extend(got)
        rows.append(row(name, "bench wall time", took, "s"))
    return rows, ok


def markdown(rows: list[dict[str, Any]], info: dict[str, Any], quick: bool, when: str) -> str:
    """The report: date, machine, the table, then each row's note."""
    lines = [
        "# Specwright benchmarks",
        "",
        f"Run: {when} UTC ({'quick smoke run' if quick else 'full run'}), `python -m bench"
        f"{' --quick' if quick else ''}`.",
        "",
        "Machine: "
        + ", ".join(
            [
                f"{info['cores']} cores",
                f"{info['memory_gb']} GB memory",
                f"Python {info['python']}",
                f"duckdb {info['duckdb']}",
                info["platform"],
                f"commit {info['commit'] or '?'}",
                f"load average at start {info['load_avg']}",
            ]
        )
        + ".",
        "",
        "Every figure is measured against a baseline taken in the same run (`baseline`; `ratio` ="
        " value / baseline). `met` checks `target` (a target ending in `x` applies to the ratio).",
        "",
        *table_lines(rows, markdown=True),
        "",
        "## Notes",
        "",
    ]
    for r in rows:
        if r.get("note"):
            lines.append(f"- {r['bench']} / {r['metric']}: {r['note']}")
    missed = [r for r in rows if r.get("met") is False]
    lines += ["", "## Targets", ""]
    met = [r for r in rows if r.get("met") is True]
    lines.append(f"{len(met)} met, {len(missed)} missed.")
    for r in missed:
        lines.append(f"- missed: {r['bench']} / {r['metric']} (target {r['target']})")
    return "\n".join(lines) + "\n"


def write_report(path: Path, report: str) -> None:
    """Write ``report`` to ``path``, keeping the closing note of the report it replaces."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and CLOSING in (old := path.read_text(encoding="utf-8")):
        kept = old[old.index(CLOSING) :].rstrip()
        if KEPT_NOTE not in kept:
            kept = kept.replace(CLOSING, f"{CLOSING}\n\n{KEPT_NOTE}", 1)
        report += "\n" + kept + "\n"
    path.write_text(report, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run of every bench")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only these benches (repeat or comma-separate): "
        + ", ".join(n for n, _ in BENCHES),
    )
    parser.add_argument("--results", metavar="PATH", help="where to write the Markdown report")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    known = [n for n, _ in BENCHES]
    names = known
    if args.only:
        names = [n.strip() for part in args.only for n in part.split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown:
            parser.error(f"--only: unknown bench {', '.join(unknown)}; expected {', '.join(known)}")
    if args.results:
        results = Path(args.results)
    elif args.quick:
        results = CACHE / "RESULTS-quick.md"
    elif names != known:
        results = CACHE / "RESULTS-partial.md"
    else:
        results = COMMITTED
    if args.quick and results.resolve() == COMMITTED.resolve():
        parser.error(f"--results: a quick run never writes over {COMMITTED.relative_to(REPO)}")
    info = machine()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    rows, ok = run_benches(names, args.quick)
    print("\n".join(table_lines(rows)))
    write_report(results, markdown(rows, info, args.quick, when))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": info, "date": when, "rows": rows}, indent=1, default=str),
            encoding="utf-8",
        )
    print(f"\nwrote {results}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
