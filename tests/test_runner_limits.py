"""Run-all when the agent's plan is used up: a chunk that ends rate_limited (its limit resets past
the loop's allowance) stops run-all, as refused credentials do: every later chunk would make one
more agent call that hits the same limit. The run says when the limit resets and how to go on,
and a run-all once it has reset resumes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from specwright import catalog
from specwright import config as config_mod
from specwright.runner import run_all, run_summary
from specwright.store import Store, resolve_db_path
from tests.conftest import git
from tests.support_agents import STREAMS, fake_cli
from tests.test_runner import _spec

WHEN = r"the limit resets in 5 d 22 h, at \d{4}-\d\d-\d\d \d\d:\d\d local"


def _codex_agent(repo: Path) -> Path:
    """A real `codex exec --json` stand-in (a ``parser: codex`` command agent): it writes the
    file its chunk's prompt names and prints a recorded turn; once the mode file says
    ``ship-once`` it has used up its plan after that turn, and prints the recorded usage-limit
    stream (reset in 5 days 22 hours) and exits 1, as Codex does, until the mode is ``ship``."""
    mode = repo.parent / "agent-mode"
    agent = fake_cli(
        repo.parent / "bin",
        "codex",
        f"""
        import pathlib, re, sys
        mode = pathlib.Path({str(mode)!r})
        streams = pathlib.Path({str(STREAMS / "codex")!r})
        if mode.read_text() == "limited":
            sys.stdout.write((streams / "usage-limit-in.jsonl").read_text())
            sys.exit(1)
        name = re.search(r"Create (\\w+\\.txt)", sys.argv[1])[1]
        pathlib.Path(name).write_text("made\\n")
        sys.stdout.write((streams / "exec-json.jsonl").read_text())
        if mode.read_text() == "ship-once":
            mode.write_text("limited")
        """,
    )
    (repo / ".handoff").mkdir(exist_ok=True)
    (repo / ".handoff" / "config.yaml").write_text(
        "tools:\n  executors:\n    codex:\n      type: command\n      parser: codex\n"
        f"      model: gpt-5-codex\n      argv: [{str(agent)!r}, '{{prompt}}']\n"
        "defaults:\n  executor: codex\n  reviewer: checks\n  maxIterations: 2\n"
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "specwright config")
    return mode


def test_a_used_up_plan_stops_the_run_all_and_says_when_to_resume(
    git_repo: Path,
    cli,  # type: ignore[no-untyped-def]
) -> None:
    """Chunk 1 ships, then the plan is used up for days: chunk 2 ends rate_limited and chunk 3
    used to be started all the same (one more execution hitting the limit, and as many more as
    chunks were left). Now run-all stops there, its one line says when the limit resets and
    that `run-all` again resumes; once it has reset, that run ships the rest."""
    mode = _codex_agent(git_repo)
    mode.write_text("ship-once")
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": [], "B": [], "C": []})

    first = cli("-C", str(git_repo), "run-all", spec.slug)
    assert first.code == 1, first.err
    assert store.query("SELECT count(*) FROM executions")[0][0] == 2  # none for chunk 3
    last = first.out.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"failed: 1/3 chunks shipped; stopped: chunk 2 rate limited, {WHEN}; "
        rf"`specwright run-all {spec.slug}` again resumes \(branch specwright/{spec.slug}\)",
        last,
    ), last
    [top] = store.query_dicts("SELECT id FROM runs WHERE kind = 'spec'")
    assert [r["ran"] for r in run_summary(store, top["id"])] == [True, True, False]
    assert [c.status for c in catalog.list_chunks(store, spec.id)] == [
        "shipped",
        "failed",
        "pending",
    ]
    [limited] = store.query("SELECT reason FROM runs WHERE kind = 'chunk' AND status = 'failed'")
    assert limited[0].startswith("rate_limited: You've hit your usage limit.")

    mode.write_text("ship")  # the limit has reset
    again = cli("-C", str(git_repo), "run-all", spec.slug)
    assert again.code == 0, again.out + again.err
    assert [c.status for c in catalog.list_chunks(store, spec.id)] == ["shipped"] * 3
    assert store.query("SELECT count(*) FROM executions")[0][0] == 4  # chunk 1 not run again


def test_a_parallel_wave_starts_no_chunk_after_one_is_rate_limited(git_repo: Path) -> None:
    """Three independent chunks, two workers: the wave's third chunk waited for a free worker,
    and was started after the first two had hit the limit, hitting it too."""
    _codex_agent(git_repo).write_text("limited")
    store = Store(resolve_db_path(git_repo))
    spec = _spec(store, git_repo, {"A": [], "B": [], "C": []})
    result = run_all(store, config_mod.load(git_repo), git_repo, spec, parallel=2)
    assert result.status == "failed"
    assert store.query("SELECT count(*) FROM executions")[0][0] == 2  # none for chunk 3
    assert re.fullmatch(
        rf"0/3 chunks shipped; stopped: chunk 1 rate limited, {WHEN}; "
        rf"`specwright run-all {spec.slug}` again resumes",
        result.reason,
    ), result.reason
    assert [r["ran"] for r in run_summary(store, result.run_id)] == [True, True, False]
    assert [c.status for c in result.chunks] == ["failed", "failed", "pending"]
    assert store.query("SELECT count(*) FROM runs WHERE status = 'running'")[0][0] == 0


def test_an_overloaded_service_is_backed_off_per_chunk_and_does_not_stop_the_run_all(
    git_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model service overloaded (a 529, no account's limit) for a chunk's whole allowance:
    the chunk ends ``overloaded``, saying how long it backed off, and the next chunk still runs
    (an overload passes; a used-up plan or refused key does not)."""
    from tests.test_runner import _project

    monkeypatch.setattr("specwright.loop.limits.OVERLOAD_WAIT_S", 0.001, raising=False)
    monkeypatch.setattr("specwright.loop.limits.OVERLOAD_MAX_WAIT_S", 0.001, raising=False)
    busy = [{"fail": "API Error: 529 Overloaded", "kind": "overloaded"}]
    _project(git_repo, {"chunks": {"Make A": busy, "Make B": busy}})
    store = Store(resolve_db_path(git_repo))
    spec = catalog.create_spec(store, catalog.ensure_project(store, git_repo), "Busy")
    for name in "AB":
        catalog.add_chunk(store, spec, f"Make {name}", f"Write {name.lower()}.txt")
    result = run_all(store, config_mod.load(git_repo), git_repo, spec)
    assert result.status == "failed"
    assert [r["ran"] for r in run_summary(store, result.run_id)] == [True, True]
    reasons = [c.reason for c in result.chunks]
    assert all(
        re.fullmatch(
            r"overloaded: API Error: 529 Overloaded; still overloaded after .* of pauses", r
        )
        for r in reasons
    ), reasons
