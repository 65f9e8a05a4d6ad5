"""Compare executors: the same spec from the same base on two executors, as sibling runs."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from specwright import catalog
from specwright.store import Store, resolve_db_path
from tests.conftest import git
from tests.test_runner import _spec


def test_two_executors_run_the_same_spec_side_by_side(git_repo: Path, cli) -> None:  # type: ignore[no-untyped-def]
    fast = {
        "chunks": {
            "Make A": [{"write": "a.txt", "content": "fast A"}],
            "Make B": [{"write": "b.txt", "content": "fast B"}],
        }
    }
    slow = {
        "chunks": {
            "Make A": {
                "attempts": [
                    [{"write": "other.txt", "content": "oops"}],
                    [{"write": "a.txt", "content": "slow A"}],
                ]
            },
            "Make B": [{"write": "b.txt", "content": "slow B"}],
        }
    }
    for name, script in (("fast", fast), ("slow", slow)):
        (git_repo.parent / f"{name}.yaml").write_text(yaml.safe_dump(script))
    (git_repo / ".handoff").mkdir()
    (git_repo / ".handoff" / "config.yaml").write_text(
        "tools:\n  executors:\n"
        f"    fast: {{type: scripted, script: {git_repo.parent / 'fast.yaml'}}}\n"
        f"    slow: {{type: scripted, script: {git_repo.parent / 'slow.yaml'}}}\n"
        "defaults: {executor: fast, reviewer: checks, maxIterations: 3}\n"
    )
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "config")
    base = git(git_repo, "rev-parse", "HEAD")
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": [], "B": ["A"]})

    result = cli(
        "-C",
        str(git_repo),
        "--json",
        "run-all",
        spec.slug,
        "--executor",
        "fast",
        "--executor",
        "slow",
    )
    assert result.code == 0, result.err
    out = json.loads(result.out)
    assert [(r["executor"], r["status"]) for r in out["runs"]] == [
        ("fast", "shipped"),
        ("slow", "shipped"),
    ]
    table = [(r["chunk"], r["executor"], r["iterations"]) for r in out["chunks"]]
    assert table == [(1, "fast", 1), (1, "slow", 2), (2, "fast", 1), (2, "slow", 1)]
    # each on its own branch from the same base
    for name in ("fast", "slow"):
        branch = f"specwright/diamond@{name}"
        assert git(git_repo, "show", f"{branch}:a.txt") == f"{name} A"
        assert git(git_repo, "merge-base", branch, "main") == base
    groups = store.query("SELECT DISTINCT group_id FROM runs WHERE kind = 'spec'")
    assert len(groups) == 1 and groups[0][0] == out["group_id"]
    # the comparison is an experiment: the spec's own chunks are untouched
    assert {c.status for c in catalog.list_chunks(store, spec.id)} == {"pending"}
    assert (
        git(git_repo, "rev-parse", "HEAD") == base and git(git_repo, "status", "--porcelain") == ""
    )


def test_compare_needs_known_distinct_executors(git_repo: Path, cli) -> None:  # type: ignore[no-untyped-def]
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": []})
    bad = cli(
        "-C", str(git_repo), "run-all", spec.slug, "--executor", "scripted", "--executor", "ghost"
    )
    assert bad.code == 2 and "no executor 'ghost'" in bad.err
    assert store.query("SELECT count(*) FROM runs")[0][0] == 0


def test_an_executor_name_that_cannot_be_a_branch_or_folder_is_refused(
    git_repo: Path,
    cli,  # type: ignore[no-untyped-def]
) -> None:
    """An executor named `../..` made the comparison's worktree the database's own folder,
    which it removed (database and journals gone); `my agent` failed the comparison midway
    (git refused the branch name) after the first executor had run. Both are refused when
    the config loads, naming the file, the line and the name."""
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": []})
    (git_repo / ".handoff").mkdir(exist_ok=True)
    for name in ("../..", "my agent"):
        (git_repo / ".handoff" / "config.yaml").write_text(
            f'tools:\n  executors:\n    "{name}": {{type: scripted}}\n'
        )
        args = ("-C", str(git_repo), "run-all", spec.slug, "--executor", "scripted")
        bad = cli(*args, "--executor", name)
        assert bad.code == 2
        assert bad.err.startswith(
            f"specwright: error: {git_repo / '.handoff' / 'config.yaml'}:3: tools.executors.{name}: "
            "expected a name of letters, digits and . _ + - "
        ), bad.err
        assert resolve_db_path(git_repo).exists()
        assert store.query("SELECT count(*) FROM runs")[0][0] == 0


def test_tokens_of_an_agent_that_tells_no_usage_are_unknown_not_zero(git_repo: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """A command agent that prints no usage: run-all's summary showed INPUT_TOKENS 0 (and a
    comparison "0 tokens") beside a cost shown as unknown; its tokens are unknown too."""
    agent = git_repo.parent / "agent.sh"
    agent.write_text('#!/bin/sh\necho "did it"\necho "$1" >> a.txt\n')
    agent.chmod(0o755)
    script = {"chunks": {"Make A": [{"write": "a.txt", "content": "A"}, {"usage": {"input_tokens": 7}}]}}  # fmt: skip
    (git_repo.parent / "s.yaml").write_text(yaml.safe_dump(script))
    (git_repo / ".handoff").mkdir()
    (git_repo / ".handoff" / "config.yaml").write_text(
        "tools:\n  executors:\n"
        f'    mine: {{type: command, argv: ["{agent}", "{{prompt}}"]}}\n'
        f"    fast: {{type: scripted, script: {git_repo.parent / 's.yaml'}}}\n"
        "defaults: {executor: mine, reviewer: checks, maxIterations: 1}\n"
    )
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "config")
    spec = _spec(Store(resolve_db_path(git_repo)), git_repo, {"A": []})
    args = ("-C", str(git_repo), "run-all", spec.slug)

    shown = cli(*args)
    assert shown.code == 0, shown.out
    head, row = shown.out.split("\n\n")[-2].splitlines()[-2:]
    starts = [head.index(name) for name in head.split()]
    cells = {
        name: row[a:b].strip()
        for name, a, b in zip(head.split(), starts, [*starts[1:], None], strict=True)
    }
    assert cells["INPUT_TOKENS"] == cells["CACHE_TOKENS"] == cells["OUTPUT_TOKENS"] == "-", row
    assert (cells["COST_USD"], cells["UNPRICED"]) == ("-", "1")
    ran = json.loads(cli("--json", *args, "--executor", "mine", "--executor", "fast").out)
    by = {r["executor"]: r for r in ran["chunks"]}
    assert [by["mine"][k] for k in ("input_tokens", "cache_tokens", "output_tokens")] == [None] * 3
    assert by["fast"]["input_tokens"] == 7 and ran["totals"]["mine"]["input_tokens"] is None
    compared = cli(*args, "--executor", "mine", "--executor", "fast")
    assert "1 iteration(s), tokens not reported, unknown (1 unpriced)" in compared.out
    assert "1 iteration(s), 7 tokens, " in compared.out
    # usage specs sums them the same way: unknown, not 0
    spent = cli("-C", str(git_repo), "--json", "usage", "specs", "--by", "executor")
    rows = {r["executor"]: r for r in json.loads(spent.out)}
    tokens = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
    assert [rows["mine"][k] for k in tokens] == [None] * 4, rows
    assert rows["fast"]["input_tokens"] == 14 and rows["mine"]["unpriced"] == 3
