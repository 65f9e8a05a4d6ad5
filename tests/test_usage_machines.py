"""Several machines through the real CLI: each ingests its own Claude Code logs and exports;
one merges the exports and must count what one machine holding all the logs would."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import CliResult
from tests.support_usage import _assistant, _dumps, write_codex_session

Cli = Callable[..., CliResult]


class Machines:
    """One database and one CLAUDE_CONFIG_DIR per machine name, under ``root``."""

    def __init__(self, root: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root, self.cli, self.mp = root, cli, monkeypatch

    def run(self, machine: str, *args: str) -> CliResult:
        self.mp.setenv("SPECWRIGHT_DB", str(self.root / machine / "db.duckdb"))
        self.mp.setenv("CLAUDE_CONFIG_DIR", str(self.root / machine / "claude"))
        res = self.cli(*args)
        assert res.code == 0, res.err
        return res

    def log(self, machine: str, name: str, lines: list[str]) -> None:
        path = self.root / machine / "claude" / "projects" / "-p" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")

    def export(self, machine: str) -> str:
        self.run(machine, "ingest", "claude-logs")
        out = str(self.root / f"export-{machine}")
        self.run(machine, "usage", "export", "-o", out)
        return out

    def merge(self, machine: str, *exports: str) -> dict[str, dict[str, int]]:
        data: dict[str, dict[str, int]] = json.loads(
            self.run(machine, "usage", "merge", *exports, "--json").out
        )
        return data

    def totals(self, machine: str) -> dict[str, float]:
        res = self.run(machine, "usage", "daily", "--json")
        totals: dict[str, float] = json.loads(res.out)["totals"]
        return totals


@pytest.fixture
def machines(tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Machines:
    return Machines(tmp_path, cli, monkeypatch)


def _line(out: int, *, msg: str = "msg_1", req: str = "req_1", side: bool = False) -> str:
    return _dumps(
        _assistant(
            session="s1",
            cwd="/p",
            ts=datetime(2025, 11, 3, 10, tzinfo=UTC),
            model="claude-sonnet-4-5-20250929",
            msg_id=msg,
            req_id=req,
            usage={"input_tokens": 5, "output_tokens": out},
            text="t",
            sidechain=side,
            uid="u",
        )
    )


def test_merged_machines_count_like_one_machine_with_all_logs_in_either_order(
    machines: Machines,
) -> None:
    """Machine A ingested a reply mid-stream (10 tokens), B after it was written out (500): the
    merge keeps the biggest copy, whichever export comes first (it kept the first stored). A
    holds a subagent's replay of a message whose main-chain line only B has: the replay never
    counts (it was counted twice)."""
    machines.log("A", "s1.jsonl", [_line(10)])
    machines.log("A", "s2/subagents/agent-1.jsonl", [_line(70, msg="m2", req="r9", side=True)])
    machines.log("B", "s1.jsonl", [_line(10), _line(500)])
    machines.log("B", "s2.jsonl", [_line(80, msg="m2", req="r2")])
    for name, lines in (
        ("s1.jsonl", [_line(10), _line(500)]),
        ("s2.jsonl", [_line(80, msg="m2", req="r2")]),
        ("s2/subagents/agent-1.jsonl", [_line(70, msg="m2", req="r9", side=True)]),
    ):
        machines.log("C", name, lines)
    machines.run("C", "ingest", "claude-logs")
    everything = machines.totals("C")
    assert everything["outputTokens"] == 580
    a, b = machines.export("A"), machines.export("B")

    first = machines.merge("AB", a)
    assert first["inserted"]["usage_records"] == 2
    second = machines.merge("AB", b)  # both of A's records lose to B's
    assert second["inserted"]["usage_records"] == 2
    assert second["replaced"]["usage_records"] == 2
    assert second["skipped"]["usage_records"] == 0
    machines.merge("BA", b)
    again = machines.merge("BA", a)
    assert again["inserted"]["usage_records"] == 0 and again["skipped"]["usage_records"] == 2
    machines.merge("both", a, b)
    for machine in ("AB", "BA", "both"):
        assert machines.totals(machine) == everything, machine
        repeat = machines.merge(machine, a, b)  # and a repeat changes nothing
        assert repeat["inserted"]["usage_records"] == 0
        assert repeat["replaced"]["usage_records"] == 0
        assert machines.totals(machine) == everything, machine


def test_synced_logs_merged_then_ingested_and_exported_again_count_once(
    machines: Machines,
) -> None:
    """The same sessions on two machines (a synced ~/.claude), merged both ways and again after
    more lines: totals stay those of one machine with all the logs."""
    from tests.support_usage import append_claude_lines, write_claude_corpus

    info = write_claude_corpus(
        machines.root / "A" / "claude", sessions=2, turns=12, malformed_every=0
    )
    write_claude_corpus(machines.root / "B" / "claude", sessions=2, turns=12, malformed_every=0)
    write_claude_corpus(machines.root / "C" / "claude", sessions=2, turns=12, malformed_every=0)
    a, b = machines.export("A"), machines.export("B")
    machines.merge("A", b)
    machines.merge("B", a)
    machines.run("C", "ingest", "claude-logs")
    assert machines.totals("A") == machines.totals("B") == machines.totals("C")
    for machine in "AC":
        append_claude_lines(
            machines.root
            / machine
            / "claude"
            / info.files[0].relative_to(machines.root / "A" / "claude"),
            3,
        )
    a = machines.export("A")
    machines.run("C", "ingest", "claude-logs")
    res = machines.merge("B", a)
    assert res["inserted"]["usage_records"] == 3 and res["replaced"]["usage_records"] == 0
    assert machines.totals("B") == machines.totals("C")


def test_a_merged_record_links_to_an_execution_here_never_to_another_machines(
    machines: Machines,
) -> None:
    """A's records point at A's execution; merged into B they point at B's execution of the
    same session (a synced work tree), or at nothing: never at an id B does not have."""
    from specwright.model import Usage
    from specwright.recorder import ExecutionRecorder
    from specwright.store import Store

    def execution(machine: str) -> str:
        store = Store(machines.root / machine / "db.duckdb")
        store.migrate()
        with ExecutionRecorder(store, role="executor", backend="claude_code") as rec:
            rec.finish(status="ok", usage=Usage(input_tokens=1), session_id="s1")
        store.release()
        return rec.id

    def links(machine: str) -> list[tuple[str | None]]:
        store = Store(machines.root / machine / "db.duckdb")
        try:
            return store.query("SELECT execution_id::VARCHAR FROM usage_records")
        finally:
            store.release()

    ran_on_a = execution("A")
    machines.log("A", "s1.jsonl", [_line(10)])
    exported = machines.export("A")
    assert links("A") == [(ran_on_a,)]
    machines.merge("B", exported)
    assert links("B") == [(None,)]
    ran_on_c = execution("C")
    machines.merge("C", exported)
    assert links("C") == [(ran_on_c,)]


def test_a_machine_that_only_merges_prices_records_no_machine_had_a_price_for(
    machines: Machines,
) -> None:
    """A's log names a model no price library knows; B, which has no logs of its own, names it
    under `prices:`. The merge prices it (an ingest would): B's only other way, `ingest
    claude-logs`, fails there for want of logs, so its reports counted the model 0 forever."""
    machines.log("A", "s1.jsonl", [_line(10).replace("claude-sonnet-4-5-20250929", "house-9")])
    exported = machines.export("A")
    project = machines.root / "B" / "project"
    (project / ".handoff").mkdir(parents=True)
    (project / ".handoff" / "config.yaml").write_text(
        "prices:\n  house-9: {input: 1000000, output: 2000000}\n", encoding="utf-8"
    )
    res = machines.run("B", "-C", str(project), "usage", "merge", exported, "--json")
    assert json.loads(res.out)["repriced"] == 1
    assert machines.totals("B")["totalCost"] == 5 * 1 + 10 * 2
    again = machines.run("B", "-C", str(project), "usage", "merge", exported, "--json")
    assert json.loads(again.out)["repriced"] == 0


def test_import_times_are_utc_on_a_machine_in_another_zone(
    machines: Machines, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/schema.md: timestamps are UTC. DuckDB's ``now()::TIMESTAMP`` is the wall clock of
    the machine's zone: in New York, ``imported_at`` and ``schema_version.applied_at`` were 5
    hours off every other timestamp of the file."""
    from specwright.store import Store

    monkeypatch.setenv("TZ", "America/New_York")
    machines.log("A", "s1.jsonl", [_line(10)])
    machines.run("A", "ingest", "claude-logs")
    machines.log("A", "s1.jsonl", [_line(10), _line(20, msg="m2", req="r2")])
    machines.run("A", "ingest", "claude-logs")  # a later run: the few new lines read in Python
    write_codex_session(machines.root / "codex", turns=2)
    monkeypatch.setenv("CODEX_HOME", str(machines.root / "codex"))
    machines.run("A", "ingest", "codex-logs")
    now = datetime.now(UTC).replace(tzinfo=None)
    store = Store(machines.root / "A" / "db.duckdb")
    assert store.query("SELECT count(DISTINCT source) FROM usage_records") == [(2,)]
    stamps = store.query(
        "SELECT imported_at FROM usage_records UNION ALL SELECT applied_at FROM schema_version"
    )
    assert len(stamps) > 2
    assert all(abs((now - t).total_seconds()) < 600 for (t,) in stamps), (now, stamps)
