"""The benches never rot: ``python -m bench --quick`` runs every bench's smoke mode in a real
subprocess and writes its table and report where it is told (never over bench/RESULTS.md).
No timings are asserted here: speed is what the benches report, not what tests check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import (
    BENCHES,
    CLOSING,
    COMMITTED,
    KEPT_NOTE,
    adapt,
    main,
    markdown,
    write_report,
)
from bench.common import ROW_KEYS, TABLE_COLUMNS, meets, row, table_lines

REPO = Path(__file__).resolve().parent.parent


def _run_bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_quick_run_prints_one_table_and_writes_the_report_elsewhere(tmp_path: Path) -> None:
    committed = COMMITTED.read_bytes() if COMMITTED.exists() else None
    results, rows_json = tmp_path / "RESULTS.md", tmp_path / "rows.json"
    proc = _run_bench("--quick", "--results", str(results), "--json", str(rows_json))
    assert proc.returncode == 0, proc.stderr[-3000:]
    # one table on stdout: the header, a rule, then rows naming every bench
    lines = proc.stdout.splitlines()
    assert lines[0].split() == list(TABLE_COLUMNS)
    assert set(lines[1].replace(" ", "")) == {"-"}
    benches_in_table = {line.split()[0] for line in lines[2:] if line.strip()}
    assert benches_in_table == {name for name, _ in BENCHES}
    # the rows: every key present, figures are numbers, each bench reports its wall time
    data = json.loads(rows_json.read_text())
    assert {"cores", "memory_gb", "python", "duckdb"} <= set(data["machine"])
    for r in data["rows"]:
        assert tuple(r) == ROW_KEYS, r
        assert r["value"] is None or isinstance(r["value"], int | float), r
        assert r["met"] in (True, False, None)
    walls = {r["bench"] for r in data["rows"] if r["metric"] == "bench wall time"}
    assert walls == {name for name, _ in BENCHES}
    metrics = {(r["bench"], r["metric"]) for r in data["rows"]}
    assert ("event_ingest", "recorder vs row-by-row") in metrics
    assert ("dashboard", "build all figures") in metrics
    assert ("orchestration", "scripted: added time per iteration") in metrics
    assert ("parallel", "run-all --parallel 4 wall / critical path") in metrics
    assert ("cold_start", "import specwright") in metrics
    assert not [r for r in data["rows"] if r["metric"] == "error"]
    # the report: date, machine, the same table as Markdown
    text = results.read_text()
    assert text.startswith("# Specwright benchmarks\n")
    assert "quick smoke run" in text and f"duckdb {data['machine']['duckdb']}" in text
    assert "| " + " | ".join(TABLE_COLUMNS) + " |" in text
    assert text.count("\n| event_ingest |") == sum(
        1 for r in data["rows"] if r["bench"] == "event_ingest"
    )
    # the committed full-run report is untouched
    assert (COMMITTED.read_bytes() if COMMITTED.exists() else None) == committed


def test_quick_run_refuses_to_write_over_the_committed_results(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--quick", "--results", str(COMMITTED)])
    assert exc.value.code == 2
    assert "never writes over bench/RESULTS.md" in capsys.readouterr().err


def test_only_names_a_known_bench(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--quick", "--only", "event_ingest,nope"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown bench nope" in err and "event_ingest" in err


@pytest.mark.parametrize(
    ("value", "target", "expected"),
    [
        (299.0, "< 300 ms", True),
        (300.0, "< 300 ms", False),
        (1.15, "<= 1.15x", True),
        (60.0, ">= 50", True),
        (1.0, "> 1", False),
        (1.0, "fast", None),
        (None, "< 3 s", None),
    ],
)
def test_targets(value: float | None, target: str, expected: bool | None) -> None:
    assert meets(value, target) is expected


def test_a_target_in_x_is_checked_on_the_ratio_any_other_on_the_value() -> None:
    on_ratio = row("b", "m", 20.0, "s", baseline=16.0, ratio=1.25, target="< 1.15x")
    on_value = row("b", "m", 120.0, "ms", baseline=10.0, ratio=12.0, target="< 150 ms")
    assert on_ratio["met"] is False and on_value["met"] is True
    assert tuple(on_ratio) == ROW_KEYS


def test_colleagues_figures_become_rows() -> None:
    rows = adapt(
        "log_ingest",
        [
            {"name": "speedup", "value": 60.0, "unit": "x", "target": ">= 50"},
            {"name": "ccusage", "value": None, "unit": "", "skipped": "ccusage not found"},
            {"tree": "synthetic-2000", "files": 2000, "name": "analyze", "seconds": 0.07},
        ],
    )
    assert [tuple(r) for r in rows] == [ROW_KEYS] * 3
    assert rows[0]["met"] is True and rows[0]["target"] == ">= 50"
    assert rows[1]["value"] is None and rows[1]["note"] == "ccusage not found"
    assert rows[2]["metric"] == "analyze (synthetic-2000)" and rows[2]["unit"] == "s"
    assert rows[2]["value"] == 0.07 and "files=2000" in rows[2]["note"]


def test_markdown_report_lists_missed_targets_and_escapes_pipes() -> None:
    rows = [
        row("parallel", "wall | critical", 18.0, "s", baseline=15.0, ratio=1.2, target="< 1.15x"),
        row("cold_start", "import", 90.0, "ms", target="< 300 ms", note="median of 10"),
    ]
    info = {
        "cores": 2,
        "memory_gb": 8.0,
        "python": "3.11",
        "duckdb": "2.0.1",
        "platform": "Linux",
        "commit": "abc",
        "load_avg": "1 1 1",
    }
    text = markdown(rows, info, quick=False, when="2026-01-01 00:00")
    assert "full run" in text and "2 cores" in text and "duckdb 2.0.1" in text
    assert "wall \\| critical" in text
    assert "1 met, 1 missed." in text and "- missed: parallel / wall | critical" in text
    assert "- cold_start / import: median of 10" in text
    assert len(table_lines(rows)) == 4


def test_a_rewrite_keeps_the_closing_note_marked_as_older(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    write_report(path, "# run 1\n")
    assert path.read_text() == "# run 1\n"
    path.write_text(path.read_text() + f"\n{CLOSING}\n\nparallel misses: worktrees.\n")
    write_report(path, "# run 2\n")
    text = path.read_text()
    assert text.startswith("# run 2\n") and "# run 1" not in text
    assert text.count(CLOSING) == 1 and KEPT_NOTE in text and "worktrees." in text
    write_report(path, "# run 3\n")
    assert path.read_text().count(KEPT_NOTE) == 1
