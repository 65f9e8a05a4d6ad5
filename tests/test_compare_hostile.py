"""Comparing executors the hard way: kill -9 mid-comparison and a re-run, a compared branch
checked out, duplicate executors, a spec with no chunks, the comparison's figures (order,
tokens, NaN cost, per-side totals), and an agent's huge, hostile error in a run's reason."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from specwright import catalog
from specwright.compare import comparison
from specwright.model import new_id, utcnow
from specwright.store import Store, resolve_db_path
from tests.conftest import git
from tests.test_runner import _spec, kill_when_thinking

GOOD = {
    "chunks": {
        "Make A": [
            {"write": "a.txt", "content": "A"},
            {"usage": {"input_tokens": 100, "output_tokens": 10, "cost_usd": 0.01}},
        ],
        "Make B": [
            {"write": "b.txt", "content": "B"},
            {"usage": {"input_tokens": 200, "output_tokens": 20, "cost_usd": 0.02}},
        ],
    }
}
FREE = {
    "chunks": {
        "Make A": [{"write": "a.txt", "content": "a"}],
        "Make B": [{"write": "b.txt", "content": "b"}],
    }
}
STUCK = {  # ships A, then hangs in B until killed
    "chunks": {
        "Make A": [{"write": "a.txt", "content": "A"}],
        "Make B": [{"write": "b.txt", "content": "half"}, {"say": "thinking"}, {"sleep": 120}],
    }
}


def _project(repo: Path, scripts: dict[str, dict]) -> None:
    """Commit a config with one scripted executor per entry of ``scripts``."""
    lines = ["tools:", "  executors:"]
    for name, script in scripts.items():
        path = repo.parent / f"{name}.yaml"
        path.write_text(yaml.safe_dump(script))
        lines.append(f"    {name}: {{type: scripted, script: {path}}}")
    first = next(iter(scripts))
    lines.append(f"defaults: {{executor: {first}, reviewer: checks, maxIterations: 2}}")
    (repo / ".handoff").mkdir(exist_ok=True)
    (repo / ".handoff" / "config.yaml").write_text("\n".join(lines) + "\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "config")


def _chunk_states(store: Store, spec_id: str) -> list[tuple[str, int, str | None]]:
    return [(c.status, c.iterations, c.verdict) for c in catalog.list_chunks(store, spec_id)]


def test_kill_9_mid_comparison_leaves_the_spec_alone_and_a_rerun_starts_both_over(
    git_repo: Path, cli
) -> None:  # type: ignore[no-untyped-def]
    _project(git_repo, {"stuck": STUCK, "good": GOOD})
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": [], "B": ["A"]})
    before = _chunk_states(store, spec.id)
    args = ["-C", str(git_repo), "run-all", spec.slug, "--executor", "stuck", "--executor", "good"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "specwright", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        kill_when_thinking(proc, store)  # stuck's agent hangs in chunk B
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    # the spec's own chunks never saw the experiment: A shipped only on stuck's branch
    assert _chunk_states(store, spec.id) == before
    assert git(git_repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"

    # the re-run: the killed runs are marked, both sides start over from the same base
    (git_repo.parent / "stuck.yaml").write_text(yaml.safe_dump(FREE))
    again = cli("-C", str(git_repo), "--json", *args[2:])
    assert again.code == 0, again.err
    out = json.loads(again.out)
    assert [(r["executor"], r["status"]) for r in out["runs"]] == [
        ("stuck", "shipped"),
        ("good", "shipped"),
    ]
    assert [(r["chunk"], r["executor"], r["iterations"]) for r in out["chunks"]] == [
        (1, "stuck", 1),
        (1, "good", 1),
        (2, "stuck", 1),
        (2, "good", 1),
    ]
    assert git(git_repo, "show", "specwright/diamond@stuck:b.txt") == "b"
    assert _chunk_states(store, spec.id) == before
    interrupted = store.query("SELECT kind FROM runs WHERE status = 'interrupted' ORDER BY kind")
    assert [r[0] for r in interrupted] == ["chunk", "spec"]
    assert store.query("SELECT count(*) FROM runs WHERE status = 'running'")[0][0] == 0
    assert git(git_repo, "status", "--porcelain") == ""
    assert git(git_repo, "worktree", "list").count("\n") == 0  # only the project tree

    # and a plain run-all of the spec runs chunk A: the comparison did not ship it
    plain = cli("-C", str(git_repo), "--json", "run-all", spec.slug, "--executor", "good")
    assert plain.code == 0, plain.err
    assert [c["ran"] for c in json.loads(plain.out)["chunks"]] == [True, True]


def test_a_checked_out_compared_branch_is_refused_before_anything_runs(git_repo: Path, cli) -> None:  # type: ignore[no-untyped-def]
    _project(git_repo, {"good": GOOD, "free": FREE})
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": []})
    git(git_repo, "branch", "specwright/diamond@good")
    git(git_repo, "checkout", "-q", "specwright/diamond@good")
    result = cli(
        "-C", str(git_repo), "run-all", spec.slug, "--executor", "free", "--executor", "good"
    )
    assert result.code == 2, result.out
    assert "specwright/diamond@good is checked out" in result.err
    assert store.query("SELECT count(*) FROM runs")[0][0] == 0
    assert not git(git_repo, "branch", "--list", "specwright/diamond@free")


def test_a_duplicate_executor_is_named(git_repo: Path, cli) -> None:  # type: ignore[no-untyped-def]
    _project(git_repo, {"good": GOOD, "free": FREE})
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": []})
    twice = ["--executor", "good", "--executor", "free", "--executor", "good"]
    result = cli("-C", str(git_repo), "run-all", spec.slug, *twice)
    assert result.code == 2 and "executor good given more than once" in result.err


def test_an_empty_spec_makes_no_branch(git_repo: Path, cli) -> None:  # type: ignore[no-untyped-def]
    _project(git_repo, {"good": GOOD, "free": FREE})
    store = Store(resolve_db_path(git_repo))
    empty = catalog.create_spec(store, catalog.ensure_project(store, git_repo), "Empty")
    result = cli(
        "-C", str(git_repo), "run-all", empty.slug, "--executor", "good", "--executor", "free"
    )
    assert result.code == 2 and "has no chunks to run" in result.err
    assert git(git_repo, "branch", "--list", "specwright/empty*") == ""
    assert store.query("SELECT count(*) FROM runs")[0][0] == 0


def test_comparison_figures_per_side_in_the_order_given(git_repo: Path, cli) -> None:  # type: ignore[no-untyped-def]
    _project(git_repo, {"zeta": GOOD, "alpha": FREE})
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": [], "B": ["A"]})
    args = ["-C", str(git_repo), "run-all", spec.slug, "--executor", "zeta", "--executor", "alpha"]
    result = cli(args[0], args[1], "--json", *args[2:])
    assert result.code == 0, result.err
    out = json.loads(result.out)
    rows = [
        (r["chunk"], r["executor"], r["input_tokens"], r["output_tokens"], r["cost_usd"])
        for r in out["chunks"]
    ]
    assert rows == [
        (1, "zeta", 100, 10, pytest.approx(0.01)),
        (1, "alpha", 0, 0, 0.0),  # a side that reports no usage costs nothing
        (2, "zeta", 200, 20, pytest.approx(0.02)),
        (2, "alpha", 0, 0, 0.0),
    ]
    group = comparison(store, out["group_id"])
    assert [r["executor"] for r in group] == ["zeta", "alpha", "zeta", "alpha"]
    totals = out["totals"]
    assert totals["zeta"]["shipped"] == 2 and totals["zeta"]["iterations"] == 2
    assert totals["zeta"]["cost_usd"] == pytest.approx(0.03)
    assert totals["zeta"]["input_tokens"] == 300 and totals["alpha"]["cost_usd"] == 0.0
    # a NaN cost (an agent's) is left out of the sum rather than poisoning it
    run_id = store.query(
        "SELECT r.id FROM runs r JOIN chunks c ON c.id = r.chunk_id "
        "WHERE r.executor = 'zeta' AND c.position = 1"
    )[0][0]
    store.insert(
        "executions",
        {
            "id": new_id(),
            "run_id": str(run_id),
            "role": "executor",
            "backend": "scripted",
            "status": "ok",
            "cost_usd": float("nan"),
            "started_at": utcnow(),
        },
    )
    first = comparison(store, out["group_id"])[0]
    assert first["executor"] == "zeta" and first["cost_usd"] == pytest.approx(0.01)
    # the text summary: which executor is running, and each side's totals
    text = cli(*args)
    assert text.code == 0, text.err
    assert "## executor zeta: specwright/diamond@zeta from " in text.out
    assert "2/2 chunk(s) shipped, 2 iteration(s), 330 tokens, $0.0300" in text.out
    assert "2/2 chunk(s) shipped, 2 iteration(s), 0 tokens, $0.0000" in text.out


def test_a_huge_hostile_agent_error_is_bounded_in_the_run_and_its_summary(
    git_repo: Path, cli
) -> None:  # type: ignore[no-untyped-def]
    hostile = "\x1b[2J\x1b]0;owned\x07" + "x" * 100_000
    _project(git_repo, {"bad": {"chunks": {"*": [{"fail": hostile}]}}, "good": GOOD})
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": []})
    for args in (["--executor", "bad"], ["--executor", "bad", "--executor", "good"]):
        result = cli("-C", str(git_repo), "run-all", spec.slug, *args)
        assert result.code == 1, result.err
        assert "\x1b" not in result.out and "\x07" not in result.out
        assert max(len(line) for line in result.out.splitlines()) < 1000
    reasons = store.query("SELECT reason FROM runs WHERE kind = 'spec'")
    assert reasons and all(len(r[0]) < 1000 for r in reasons)


def test_a_rerun_with_everything_shipped_says_nothing_ran(git_repo: Path, cli) -> None:  # type: ignore[no-untyped-def]
    _project(git_repo, {"good": GOOD})
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": []})
    first = json.loads(cli("-C", str(git_repo), "--json", "run-all", spec.slug).out)
    assert first["reason"] == "its chunk shipped"
    again = json.loads(cli("-C", str(git_repo), "--json", "run-all", spec.slug).out)
    assert again["status"] == "shipped"
    assert again["reason"] == "nothing to run: its chunk had shipped"


def test_each_side_builds_on_its_own_shipped_dependencies(
    git_repo: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import specwright.loop.run as loop_run

    said = {
        name: {
            "chunks": {
                "Make A": [{"write": "a.txt", "content": name}, {"say": f"{name} made A"}],
                "Make B": [{"write": "b.txt", "content": name}],
            }
        }
        for name in ("good", "free")
    }
    _project(git_repo, said)
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": [], "B": ["A"]})
    prompts: list[str] = []
    real = loop_run.build_prompt
    monkeypatch.setattr(
        loop_run, "build_prompt", lambda *a: prompts.append(real(*a)) or prompts[-1]
    )
    result = cli(
        "-C", str(git_repo), "run-all", spec.slug, "--executor", "good", "--executor", "free"
    )
    assert result.code == 0, result.err
    b = [p for p in prompts if "# Chunk 2" in p]
    assert "- Make A [shipped]: good made A" in b[0] and "free" not in b[0]
    assert "- Make A [shipped]: free made A" in b[1]
