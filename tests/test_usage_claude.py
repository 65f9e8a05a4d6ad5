"""Claude Code log ingest: ccusage parity, dedupe rules, incremental re-runs, malformed lines."""

from __future__ import annotations

import json
import math
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from specwright.config import Price
from specwright.migrations import latest_version
from specwright.store import Store
from specwright.usage import claude, claude_lines
from tests.conftest import run_specwright
from tests.support_usage import append_claude_lines, ccusage_path, write_claude_corpus


def _line(**kw: Any) -> str:
    usage = {
        "input_tokens": kw.pop("inp", 10),
        "output_tokens": kw.pop("out", 5),
        "cache_creation_input_tokens": kw.pop("cw", 0),
        "cache_read_input_tokens": kw.pop("cr", 0),
    }
    if "cc" in kw:
        usage["cache_creation"] = kw.pop("cc")
    obj: dict[str, Any] = {
        "type": "assistant",
        "sessionId": kw.pop("session", "sess-1"),
        "cwd": "/w",
        "timestamp": kw.pop("ts", "2025-11-03T10:00:00.000Z"),
        "message": {
            "id": kw.pop("mid", None),
            "model": kw.pop("model", "claude-haiku-4-5-20251001"),
            "usage": usage,
        },
    }
    if obj["message"]["id"] is None:
        del obj["message"]["id"]
    rid = kw.pop("rid", None)
    if rid:
        obj["requestId"] = rid
    if kw.pop("side", False):
        obj["isSidechain"] = True
    obj.update(kw)
    return json.dumps(obj, separators=(",", ":"))


def _totals(store: Store) -> tuple[int, int, int, int, int]:
    return tuple(
        store.query(  # type: ignore[return-value]
            "SELECT count(*), sum(input_tokens), sum(output_tokens), "
            "sum(cache_write_5m_tokens + cache_write_1h_tokens), sum(cache_read_tokens) "
            "FROM usage_records WHERE source = 'claude-code'"
        )[0]
    )


def test_dedupe_keeps_the_fullest_copy_and_drops_sidechain_replays(
    tmp_path: Path, store: Store
) -> None:
    proj = tmp_path / "projects" / "p"
    proj.mkdir(parents=True)
    lines = [
        _line(mid="m1", rid="r1", out=5),
        _line(mid="m1", rid="r1", out=50),  # streaming: later copy has more tokens: kept
        _line(mid="m1", rid="r1", out=50),
        _line(
            mid="m2",
            rid="r2",
            out=7,
            cw=300,
            cc={"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
        ),
        _line(mid="m2", rid="r-side", out=999, side=True),  # /btw replay of m2: dropped
        _line(mid="m3", rid="r3", out=1, side=True),  # a real sidechain answer: kept
        _line(out=3),  # no message id: never deduplicated
        _line(out=3, ts="2025-11-03T10:00:01.000Z"),
        _line(mid="m4", rid="r4", version="not-semver"),  # ccusage skips it
        '{"type":"assistant","message":{"usage":{"input_tokens":1',  # cut short
        "",
        '{"type":"user","message":{"content":"no usage here"}}',
    ]
    (proj / "s.jsonl").write_text("\n".join(lines) + "\n")
    res = claude.ingest(store, [tmp_path / "projects"])
    assert res.malformed == 1 and res.malformed_files == {str(proj / "s.jsonl"): 1}
    rows = store.query_dicts(
        "SELECT message_id, output_tokens, cache_write_5m_tokens, cache_write_1h_tokens, "
        "is_sidechain FROM usage_records ORDER BY seq"
    )
    assert [(r["message_id"], r["output_tokens"]) for r in rows] == [
        ("m1", 50),
        ("m2", 7),
        ("m3", 1),
        (None, 3),
        (None, 3),
    ]
    m2 = rows[1]
    assert (m2["cache_write_5m_tokens"], m2["cache_write_1h_tokens"]) == (100, 200)
    # 1h writes priced at 2x input: haiku 1/MTok input -> 2/MTok
    cost = store.query("SELECT computed_cost_usd FROM usage_records WHERE message_id = 'm2'")
    assert math.isclose(cost[0][0], (10 * 1 + 7 * 5 + 100 * 1.25 + 200 * 2) / 1e6)


def test_reingest_imports_only_new_lines_and_waits_for_partial_lines(
    tmp_path: Path, store: Store
) -> None:
    info = write_claude_corpus(tmp_path, sessions=3, turns=25, days=2, malformed_every=0)
    first = claude.ingest(store, [tmp_path / "projects"])
    assert first.imported > 0 and first.malformed == 0
    before = _totals(store)
    again = claude.ingest(store, [tmp_path / "projects"])
    assert (again.files_read, again.imported) == (0, 0)
    assert _totals(store) == before

    target = info.files[0]
    append_claude_lines(target, 4, seed=5)
    partial = _line(mid="m-partial", rid="r-partial", out=11)
    with target.open("a") as fh:
        fh.write(partial[:40])  # the agent is still writing this line
    third = claude.ingest(store, [tmp_path / "projects"])
    assert (third.files_read, third.imported, third.malformed) == (1, 4, 0)
    with target.open("a") as fh:
        fh.write(partial[40:] + "\n")
    fourth = claude.ingest(store, [tmp_path / "projects"])
    assert (fourth.imported, fourth.malformed) == (1, 0)
    assert _totals(store)[0] == before[0] + 5

    # a streaming copy with more tokens arriving in a later run replaces the stored one
    with target.open("a") as fh:
        fh.write(_line(mid="m-partial", rid="r-partial", out=99) + "\n")
    fifth = claude.ingest(store, [tmp_path / "projects"])
    assert (fifth.imported, fifth.replaced) == (1, 1)
    assert store.query(
        "SELECT output_tokens FROM usage_records WHERE message_id = 'm-partial'"
    ) == [(99,)]


def test_seq_counts_lines_in_read_order_from_one_across_runs(tmp_path: Path, store: Store) -> None:
    """``seq`` is the order lines were read in, counted from 1 over every run (a later run goes
    on after the last): ccusage's first-seen tie-break. It used to jump by DuckDB's row ids of
    uncommitted rows (~2**55 a run), so after ~255 runs the sum overflowed BIGINT and every
    ingest failed from then on."""
    info = write_claude_corpus(tmp_path, sessions=2, turns=12, days=2, malformed_every=0)
    read = 0
    for i in range(4):  # the first run through DuckDB's reader, the rest from memory
        if i:
            append_claude_lines(info.files[i % len(info.files)], 3, seed=40 + i)
        res = claude.ingest(store, [tmp_path / "projects"])
        assert res.imported > 0
        read += res.lines + res.malformed
    with info.files[0].open("a") as fh:  # a run with new lines but none with usage
        fh.write('{"type":"user","message":{"content":"no usage here"}}\n')
    assert claude.ingest(store, [tmp_path / "projects"]).imported == 0
    seqs = [r[0] for r in store.query("SELECT seq FROM usage_records ORDER BY imported_at, seq")]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert seqs[0] >= 1 and seqs[-1] <= read


def test_migration_renumbers_seq_numbered_by_staging_row_ids(tmp_path: Path, store: Store) -> None:
    """A store written before the fix holds seq values near k * 2**55 after k runs (the last
    runs before the overflow near 2**63): migration 8 renumbers them 1, 2, ... in the same order,
    and ingests go on from there."""
    info = write_claude_corpus(tmp_path, sessions=2, turns=12, days=2, malformed_every=0)
    claude.ingest(store, [tmp_path / "projects"])
    order = store.query("SELECT id FROM usage_records ORDER BY seq")
    with store.transaction() as conn:
        conn.execute("UPDATE usage_records SET seq = seq + 254 * 36028797018963968")  # 2**55
        conn.execute("DELETE FROM schema_version WHERE version >= 8")  # as a store at 7 was
        conn.execute("DROP TABLE store_meta")
    assert store.migrate() == list(range(8, latest_version() + 1))
    assert store.query("SELECT id FROM usage_records ORDER BY seq") == order
    assert store.query("SELECT min(seq), max(seq), count(*) FROM usage_records") == [
        (1, len(order), len(order))
    ]
    append_claude_lines(info.files[0], 3, seed=41)
    assert claude.ingest(store, [tmp_path / "projects"]).imported == 3
    assert store.query("SELECT max(seq) FROM usage_records")[0][0] <= len(order) + 3


@pytest.mark.parametrize("merge", ["python", "sql"])
def test_a_line_without_message_id_seen_again_in_a_later_run_is_kept_once(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch, merge: str
) -> None:
    """A line without a message id is keyed by its file and a hash of its text: the same line
    written again to that file in a later run is a copy of the stored record, whichever merge
    the later run takes; a different line without an id is new."""
    if merge == "sql":
        monkeypatch.setattr(claude, "SMALL_MERGE_ROWS", 0)
    proj = tmp_path / "projects" / "p"
    proj.mkdir(parents=True)
    log = proj / "s.jsonl"
    log.write_text(_line(out=3) + "\n" + _line(mid="a", rid="1") + "\n")
    assert claude.ingest(store, [tmp_path / "projects"]).imported == 2
    with log.open("a") as fh:
        fh.write(_line(out=3) + "\n" + _line(out=4) + "\n")
    res = claude.ingest(store, [tmp_path / "projects"])
    assert (res.imported, res.duplicates, res.replaced) == (1, 1, 0)
    assert store.query(
        "SELECT output_tokens FROM usage_records WHERE message_id IS NULL ORDER BY seq"
    ) == [(3,), (4,)]


def test_rewritten_file_is_read_again_without_double_counting(tmp_path: Path, store: Store) -> None:
    proj = tmp_path / "projects" / "p"
    proj.mkdir(parents=True)
    f = proj / "s.jsonl"
    f.write_text(_line(mid="a", rid="1") + "\n" + _line(mid="b", rid="2") + "\n")
    claude.ingest(store, [tmp_path / "projects"])
    f.write_text(_line(mid="a", rid="1", session="x") + "\n")  # replaced, shorter
    res = claude.ingest(store, [tmp_path / "projects"])
    assert res.files_read == 1 and res.imported == 0
    assert store.query("SELECT count(*) FROM usage_records") == [(2,)]


def test_a_file_replaced_by_another_of_the_same_size_is_read_again(
    tmp_path: Path, store: Store
) -> None:
    """Same size, new content (another session's lines written over it): the changed mtime
    sends the run to look at the head, which differs, so the file is read from the start. A
    file only touched (same bytes) is not read again."""
    import os

    proj = tmp_path / "projects" / "p"
    proj.mkdir(parents=True)
    f = proj / "s.jsonl"
    f.write_text(_line(mid="msgA", rid="reqA", out=10) + "\n")
    claude.ingest(store, [tmp_path / "projects"])
    size = f.stat().st_size
    f.write_text(_line(mid="msgB", rid="reqB", out=90) + "\n")
    assert f.stat().st_size == size
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a later write
    res = claude.ingest(store, [tmp_path / "projects"])
    assert res.files_read == 1 and res.imported == 1
    assert store.query("SELECT message_id, output_tokens FROM usage_records ORDER BY 1") == [
        ("msgA", 10),
        ("msgB", 90),
    ]
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))  # touched only
    res = claude.ingest(store, [tmp_path / "projects"])
    assert res.files_read == 0 and res.imported == 0
    assert claude.ingest(store, [tmp_path / "projects"]).files_read == 0


def test_a_fifo_among_the_logs_is_skipped_not_waited_on(tmp_path: Path, store: Store) -> None:
    import os

    proj = tmp_path / "projects" / "p"
    proj.mkdir(parents=True)
    (proj / "s.jsonl").write_text(_line(mid="a", rid="1") + "\n")
    os.mkfifo(proj / "pipe.jsonl")  # nobody writes to it: opening it would block forever
    res = claude.ingest(store, [tmp_path / "projects"])
    assert res.files_seen == 1 and res.imported == 1


def test_records_link_to_executions_by_session_id(tmp_path: Path, store: Store) -> None:
    from specwright.model import Usage
    from specwright.recorder import ExecutionRecorder

    with ExecutionRecorder(store, role="executor", backend="claude_code") as rec:
        rec.finish(status="ok", usage=Usage(input_tokens=1), session_id="sess-linked")
    proj = tmp_path / "projects" / "p"
    proj.mkdir(parents=True)
    (proj / "s.jsonl").write_text(
        _line(mid="a", rid="1", session="sess-linked")
        + "\n"
        + _line(mid="b", rid="2", session="other")
        + "\n"
    )
    res = claude.ingest(store, [tmp_path / "projects"])
    assert res.linked == 1
    assert store.query(
        "SELECT execution_id::VARCHAR FROM usage_records WHERE session_id = 'sess-linked'"
    ) == [(rec.id,)]


def test_unknown_model_has_null_cost_and_a_warning(tmp_path: Path, store: Store) -> None:
    proj = tmp_path / "projects" / "p"
    proj.mkdir(parents=True)
    (proj / "s.jsonl").write_text(_line(mid="a", rid="1", model="my-local-model") + "\n")
    res = claude.ingest(store, [tmp_path / "projects"])
    assert res.unknown_models == ["my-local-model"]
    assert any("my-local-model" in m for m in res.messages())
    assert store.query("SELECT computed_cost_usd FROM usage_records") == [(None,)]


def test_reports_show_an_unpriced_model_as_unknown_and_warn(
    tmp_path: Path, store: Store, cli
) -> None:  # type: ignore[no-untyped-def]
    """`usage models` gives a model with no price a cost of null (not 0); every report of the
    logs warns which records have no price."""
    proj = tmp_path / "projects" / "p"
    proj.mkdir(parents=True)
    (proj / "s.jsonl").write_text(
        _line(mid="a", rid="1", model="my-local-model")
        + "\n"
        + _line(mid="b", rid="2", model="claude-haiku-4-5-20251001")
        + "\n"
    )
    claude.ingest(store, [tmp_path / "projects"])
    res = cli("--db", str(store.path), "--json", "usage", "models")
    assert res.code == 0, res.err
    cost = {m["model"]: m["cost_usd"] for m in json.loads(res.out)}
    assert cost["my-local-model"] is None and cost["claude-haiku-4-5-20251001"] > 0
    assert "a model with no price at all shows no cost" in res.err
    for report in ("daily", "session", "blocks"):
        res = cli("--db", str(store.path), "usage", report)
        assert res.code == 0, res.err
        assert "1 record(s) have no known price (models: 'my-local-model')" in res.err, report
        assert "their cost counts as 0 here" in res.err


def test_glm_in_claude_code_logs_is_priced_at_zai_and_by_the_readmes_override(
    tmp_path: Path, cli
) -> None:  # type: ignore[no-untyped-def]
    """Claude Code pointed at Z.ai's Anthropic-compatible API logs ``glm-4.7``: Anthropic does
    not sell it, so it is priced on Z.ai's route (0.60 in / 2.20 out), and the README's
    ``prices: glm-4.7: {provider: zai, ...}`` override applies to it (it was left unpriced)."""
    proj = tmp_path / "logs" / "projects" / "p"
    proj.mkdir(parents=True)
    (proj / "s.jsonl").write_text(
        _line(mid="g1", rid="1", model="glm-4.7", inp=1_000_000, out=1_000_000) + "\n"
    )
    db = str(tmp_path / "lib.duckdb")
    res = cli("--db", db, "--json", "ingest", "claude-logs", str(tmp_path / "logs" / "projects"))
    assert res.code == 0, res.err
    assert json.loads(res.out)["unknown_models"] == [] and "no price" not in res.err
    models = json.loads(cli("--db", db, "--json", "usage", "models").out)
    assert [m["model"] for m in models] == ["glm-4.7"] and math.isclose(models[0]["cost_usd"], 2.8)

    (tmp_path / ".handoff").mkdir()
    (tmp_path / ".handoff" / "config.yaml").write_text(
        "prices:\n  glm-4.7: {provider: zai, input: 1.0, output: 3.0, cache_read: 0.1}\n"
    )
    db = str(tmp_path / "own.duckdb")
    res = cli("--db", db, "-C", str(tmp_path), "ingest", "claude-logs", str(proj.parent))
    assert res.code == 0 and "no price" not in res.err, res.err
    models = json.loads(cli("--db", db, "--json", "usage", "models").out)
    assert math.isclose(models[0]["cost_usd"], 4.0) and models[0]["unpriced"] == 0


def test_a_price_added_after_the_ingest_prices_the_stored_records_on_the_next_one(
    tmp_path: Path, cli
) -> None:  # type: ignore[no-untyped-def]
    """The reports say: add the model under `prices:` and re-ingest. The logs did not change, so
    the re-ingest reads nothing new: it prices the stored records left without a cost, once,
    and says how many (they stayed NULL)."""
    from specwright.usage import codex
    from tests.support_codex import codex_line, codex_token_count, codex_tokens

    proj = tmp_path / "projects" / "p"
    proj.mkdir(parents=True)
    (proj / "s.jsonl").write_text(
        _line(mid="a", rid="1", model="my-local-model", inp=1_000_000, out=1_000_000) + "\n"
    )
    db = str(tmp_path / "db.duckdb")
    base = ("--db", db, "-C", str(tmp_path))
    assert cli(*base, "ingest", "claude-logs", str(proj.parent)).code == 0
    assert json.loads(cli(*base, "--json", "usage", "models").out)[0]["cost_usd"] is None
    (tmp_path / ".handoff").mkdir()
    (tmp_path / ".handoff" / "config.yaml").write_text(
        "prices:\n  my-local-model: {input: 1.0, output: 2.0}\n"
    )
    res = cli(*base, "--json", "ingest", "claude-logs", str(proj.parent))
    assert res.code == 0 and json.loads(res.out)["repriced"] == 1, res.out + res.err
    models = json.loads(cli(*base, "--json", "usage", "models").out)
    assert math.isclose(models[0]["cost_usd"], 3.0) and models[0]["unpriced"] == 0
    res = cli(*base, "--json", "ingest", "claude-logs", str(proj.parent))
    assert json.loads(res.out)["repriced"] == 0
    assert "no known price" not in cli(*base, "usage", "daily").err

    sessions = tmp_path / "codex" / "sessions"
    sessions.mkdir(parents=True)
    ts = datetime(2025, 11, 3, 10, tzinfo=UTC)
    tokens = codex_tokens(1_000_000, 0, 1_000_000, 0)
    (sessions / "rollout-a.jsonl").write_text(
        codex_line(ts, "turn_context", {"model": "my-codex-model"})
        + "\n"
        + codex_token_count(ts, tokens, tokens)
        + "\n"
    )
    store = Store(Path(db))
    assert codex.ingest(store, [sessions]).unknown_models == ["my-codex-model"]
    price = {"my-codex-model": Price(input=0.5, output=1.5)}
    assert codex.ingest(store, [sessions], overrides=price).repriced == 1
    rows = store.query("SELECT computed_cost_usd FROM usage_records WHERE source = 'codex'")
    assert rows == [(2.0,)]


def test_a_fast_mode_reply_is_priced_at_the_fast_rate_or_left_unpriced_never_standard(
    tmp_path: Path, store: Store
) -> None:
    """A reply in Claude Code's fast mode (``usage.speed: fast``) costs more than a standard one
    (Opus 4.8: 2x, as ccusage counts it): it was priced at the standard rate. A model whose fast
    price the library lacks (Opus 4.6; ccusage: 6x) has no known price, not the standard one."""
    proj = tmp_path / "projects" / "p"
    proj.mkdir(parents=True)
    lines = [
        _line(mid=f"m{i}", rid=f"r{i}", model=model, inp=1_000_000, out=1_000_000)
        for i, model in enumerate(("claude-opus-4-8", "claude-opus-4-8", "claude-opus-4-6"))
    ]
    fast = [json.loads(x) for x in lines]
    for obj in fast[1:]:
        obj["message"]["usage"]["speed"] = "fast"
    compact = (json.dumps(o, separators=(",", ":")) for o in fast)
    (proj / "s.jsonl").write_text("".join(f"{x}\n" for x in compact))
    res = claude.ingest(store, [tmp_path / "projects"])
    assert res.unknown_models == ["claude-opus-4-6-fast"]
    cost = dict(store.query("SELECT model, computed_cost_usd FROM usage_records"))
    assert cost == {
        "claude-opus-4-8": 30.0,
        "claude-opus-4-8-fast": 60.0,
        "claude-opus-4-6-fast": None,
    }


def test_unpriced_model_names_from_a_log_are_bounded_one_line_warnings(
    tmp_path: Path, store: Store, cli
) -> None:  # type: ignore[no-untyped-def]
    """A log naming a huge model with terminal escapes, and many models: the ingest's and the
    reports' warnings stay short, on one line, with no escape reaching the terminal."""
    proj = tmp_path / "projects" / "p"
    proj.mkdir(parents=True)
    huge = "evil-\x1b[2J\x07" + "M" * 20_000
    models = [huge, *(f"local-{i}" for i in range(30))]
    (proj / "s.jsonl").write_text(
        "".join(_line(mid=f"m{i}", rid=f"r{i}", model=m) + "\n" for i, m in enumerate(models))
    )
    res = claude.ingest(store, [tmp_path / "projects"])
    assert sorted(res.unknown_models) == sorted(models)  # the data keeps every name whole
    (warning,) = [m for m in res.messages() if "no price known" in m]
    assert len(warning) < 1000 and "\x1b" not in warning and "\x07" not in warning
    assert "evil-" in warning and "and 26 more" in warning
    out = cli("--db", str(store.path), "usage", "daily")
    assert out.code == 0, out.err
    (line,) = [x for x in out.err.splitlines() if "no known price" in x]
    assert "31 record(s)" in line and len(line) < 1000 and "\x1b" not in line
    assert "and 26 more" in line


# --- parity with ccusage ------------------------------------------------------------------------


def _ccusage_daily(binary: Path, config_dir: Path) -> dict[str, Any]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_")}
    env["CLAUDE_CONFIG_DIR"] = str(config_dir)
    proc = subprocess.run(
        [str(binary), "claude", "daily", "--json", "--offline", "--timezone", "UTC"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def _assert_same(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    keys = ("inputTokens", "outputTokens", "cacheCreationTokens", "cacheReadTokens", "totalTokens")
    assert [d["date"] for d in ours["daily"]] == [d["date"] for d in theirs["daily"]]
    for a, b in zip(ours["daily"], theirs["daily"], strict=True):
        assert {k: a[k] for k in keys} == {k: b[k] for k in keys}, a["date"]
        assert math.isclose(a["totalCost"], b["totalCost"], rel_tol=1e-6), a["date"]
        ma = {m["modelName"]: m for m in a["modelBreakdowns"]}
        mb = {m["modelName"]: m for m in b["modelBreakdowns"]}
        assert sorted(ma) == sorted(mb), a["date"]
        for name in ma:
            for k in ("inputTokens", "outputTokens", "cacheCreationTokens", "cacheReadTokens"):
                assert ma[name][k] == mb[name][k], (a["date"], name, k)
            assert math.isclose(ma[name]["cost"], mb[name]["cost"], rel_tol=1e-6)
    for k in keys:
        assert ours["totals"][k] == theirs["totals"][k]
    assert math.isclose(ours["totals"]["totalCost"], theirs["totals"]["totalCost"], rel_tol=1e-6)


def test_daily_json_equals_ccusage_day_by_day_and_model_by_model(tmp_path: Path) -> None:
    binary = ccusage_path()
    if binary is None:
        pytest.skip(
            "ccusage not installed: set CCUSAGE_PATH or install ccusage@20.0.24 into "
            ".agents/node_modules (npm install --prefix .agents ccusage@20.0.24)"
        )
    config_dir = tmp_path / "claude"
    info = write_claude_corpus(config_dir, sessions=8, turns=40, days=4, seed=11)
    assert info.malformed > 0
    env = {"CLAUDE_CONFIG_DIR": str(config_dir)}
    ing = run_specwright("ingest", "claude-logs", "--json", env=env)
    assert ing.returncode == 0, ing.stderr
    assert json.loads(ing.stdout)["malformed"] == info.malformed
    assert "malformed line(s) skipped" in ing.stderr
    ours = run_specwright("usage", "daily", "--json", "-z", "UTC", env=env)
    assert ours.returncode == 0, ours.stderr
    _assert_same(json.loads(ours.stdout), _ccusage_daily(binary, config_dir))

    # incremental: more lines later, one re-ingest, still equal
    append_claude_lines(info.files[0], 25, seed=3)
    assert run_specwright("ingest", "claude-logs", env=env).returncode == 0
    ours = run_specwright("usage", "daily", "--json", "-z", "UTC", env=env)
    _assert_same(json.loads(ours.stdout), _ccusage_daily(binary, config_dir))


# --- the in-memory re-read of small tails and DuckDB's reader agree ---------------------------

# appended after a first ingest: replies, a streaming copy with more tokens (replaces the stored
# one), replies without a message id (one twice: a duplicate), an agent_progress copy, and lines
# the readers must treat alike: empty and blank lines, CRLF, a form feed, a BOM mid-file (and one
# starting a tail), a cut line, bytes that are not UTF-8, a JSON value that is not an object
_TAIL_LINES = [
    _line(mid="t1", rid="r1", out=5),
    _line(mid="m1", rid="r1", out=500),
    "",
    "   \t",
    _line(out=8) + "\r",
    _line(out=8) + "\r",
    "\f" + _line(mid="t2", rid="r2", out=6) + "\v",
    "\ufeff" + _line(mid="t3", rid="r3"),
    '{"type":"assistant","message":{"usage":{"input_tokens":1',
    "\udcff\udcfe not utf-8",
    _line(mid="t5", rid="r5").replace('"cwd":"/w"', '"cwd":"/w\udcff"'),  # not UTF-8 either
    '["not an object", {"usage":{"input_tokens":1,"output_tokens":2}}]',
    json.dumps(
        {
            "type": "progress",
            "sessionId": "sess-1",
            "timestamp": "2025-11-03T10:00:02.000Z",
            "data": {
                "message": {
                    "timestamp": "2025-11-03T10:00:02.000Z",
                    "requestId": "r9",
                    "isSidechain": True,
                    "message": {
                        "id": "t9",
                        "model": "claude-haiku-4-5-20251001",
                        "usage": {"input_tokens": 2, "output_tokens": 3},
                    },
                }
            },
        },
        separators=(",", ":"),
    ),
    _line(mid="t4", rid="r4", out=7, ts="2025-11-03T10:00:05.000Z"),
]


def _logs_with_tails(root: Path) -> list[Path]:
    proj = root / "projects" / "p"
    (proj / "s" / "subagents").mkdir(parents=True)
    paths = [proj / "s.jsonl", proj / "s" / "subagents" / "agent-1.jsonl", proj / "t.jsonl"]
    for i, path in enumerate(paths):
        path.write_text(
            _line(mid="m1", rid="r1", out=5, side=bool(i)) + "\n" + _line(mid=f"h{i}") + "\n"
        )
    return paths


def _append_tails(paths: list[Path]) -> None:
    raw = "\n".join(_TAIL_LINES).encode("utf-8", "surrogateescape") + b"\n"
    for path in paths:
        with path.open("ab") as fh:
            fh.write(b"\xef\xbb\xbf" + raw if path.name == "t.jsonl" else raw)


def test_small_tails_read_in_memory_and_by_duckdb_give_the_same_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from specwright.usage import files as F

    paths = _logs_with_tails(tmp_path / "logs")
    stores = {}
    for path_name in ("memory", "reader"):
        stores[path_name] = Store(tmp_path / path_name / "db.duckdb")
        stores[path_name].migrate()
        claude.ingest(stores[path_name], [tmp_path / "logs" / "projects"])
    _append_tails(paths)

    # the staged rows themselves, both ways, from the same planned ranges (the stage writes only
    # its temp table: the stores are left as they were)
    staged = {}
    for path_name, in_memory in (("memory", claude.IN_MEMORY_BYTES), ("reader", 0)):
        with stores[path_name].transaction() as conn:
            planned = F.plan(paths, F.load_states(conn, claude.SOURCE), keep_bytes=in_memory)
            assert all(p.start > 0 for p in planned)
            with F.readable(planned, in_memory=in_memory, group_below=claude.GROUP_BELOW) as ready:
                assert all((p.data is not None) == bool(in_memory) for p in ready)
                assert all(bool(p.marker) != bool(in_memory) for p in ready)
                counts = claude._Run(None).stage(conn, ready)
            rows = conn.execute(
                "SELECT * EXCLUDE (pos), coalesce(pos, rowid) FROM _cl_new ORDER BY rowid"
            ).fetchall()
            conn.execute("DROP TABLE _cl_new")
        staged[path_name] = (counts, rows)
    assert staged["memory"] == staged["reader"]
    counts, rows = staged["memory"]
    # malformed: the cut line, two not UTF-8, the BOM mid-file
    assert counts == {str(p): (8, 4) for p in paths}
    assert [r[0] for r in rows] == [str(p) for p in paths for _ in range(12)]

    # and whole re-ingests: the same counts and stored records
    results = {}
    for path_name, in_memory in (("memory", claude.IN_MEMORY_BYTES), ("reader", 0)):
        monkeypatch.setattr(claude, "IN_MEMORY_BYTES", in_memory)
        res = claude.ingest(stores[path_name], [tmp_path / "logs" / "projects"])
        records = stores[path_name].query(
            "SELECT * EXCLUDE (id, imported_at) FROM usage_records ORDER BY seq"
        )
        offsets = stores[path_name].query(
            'SELECT path, size, "offset", head_hash, lines, malformed FROM usage_ingest_files'
            " ORDER BY path"
        )
        results[path_name] = (
            res.lines,
            res.malformed,
            res.malformed_files,
            res.imported,
            res.duplicates,
            res.replaced,
            records,
            offsets,
        )
    assert results["memory"] == results["reader"]
    lines, malformed, _, imported, duplicates, replaced, records, _ = results["memory"]
    assert (lines, malformed, imported, duplicates, replaced) == (24, 12, 8, 13, 1)
    assert ("m1", 500) in [(r[2], r[10]) for r in records]


@pytest.mark.parametrize("merge", ["parsed", "python", "sql"])
def test_logs_read_in_pieces_store_the_same_records_as_one_bulk_ingest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, merge: str
) -> None:
    """The same logs ingested at once (DuckDB's reader, the set-based merge) and as they grow,
    cut at arbitrary bytes over many runs (each later run read in memory, its lines parsed in
    Python or staged by DuckDB, and merged in Python; or staged and merged in SQL as a later run
    with many rows is): the same records, costs to the last bit. Streaming copies, sidechain
    replays and agent_progress copies land in different runs from their originals."""
    import random

    parsed: list[bool] = []

    def parse(*args: Any) -> Any:
        rows = claude_lines.parse(*args)
        parsed.append(rows is not None)
        return rows

    monkeypatch.setattr(claude, "parse", parse)
    if merge == "python":
        monkeypatch.setattr(claude, "PARSE_IN_PYTHON", False)
    if merge == "sql":
        monkeypatch.setattr(claude, "SMALL_MERGE_ROWS", 0)

    info = write_claude_corpus(tmp_path / "whole", sessions=5, turns=60, days=3, pad=40)
    bulk = Store(tmp_path / "bulk.duckdb")
    bulk.migrate()
    claude.ingest(bulk, [tmp_path / "whole" / "projects"])

    grown = Store(tmp_path / "grown.duckdb")
    grown.migrate()
    rng = random.Random(3)
    data = {f: f.read_bytes() for f in info.files}
    cuts = {f: [*sorted(rng.sample(range(1, len(b)), 8)), len(b)] for f, b in data.items()}
    replaced = 0
    for step in range(9):
        for f, whole in data.items():
            target = tmp_path / "grown" / f.relative_to(tmp_path / "whole")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(whole[: cuts[f][step]])
        res = claude.ingest(grown, [tmp_path / "grown" / "projects"])
        replaced += res.replaced
    assert replaced > 0  # a fuller streaming copy arrived after a stored one
    assert all(parsed) and len(parsed) == (0 if merge == "python" else 8)

    columns = (
        "dedup_key, message_id, request_id, session_id, project_path, model, ts, input_tokens, "
        "output_tokens, cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens, "
        "reported_cost_usd, computed_cost_usd, is_sidechain, speed, provider"
    )
    want = bulk.query(f"SELECT {columns} FROM usage_records ORDER BY dedup_key")
    got = grown.query(f"SELECT {columns} FROM usage_records ORDER BY dedup_key")
    assert [r[0] for r in got] == [r[0] for r in want]
    assert got == want


# A later ingest in a new process, as `specwright ingest claude-logs` runs: whether it imported
# genai-prices, and the computed cost of every record.
_INGEST_IN_A_NEW_PROCESS = """
import json, sys
from pathlib import Path
from specwright.config import Price
from specwright.store import Store
from specwright.usage import claude
store, root, override = Store(Path(sys.argv[1])), Path(sys.argv[2]), sys.argv[3]
overrides = {override: Price(input=1.0, output=2.0)} if override else None
result = claude.ingest(store, [root], overrides=overrides)
costs = store.query("SELECT message_id, computed_cost_usd FROM usage_records ORDER BY seq")
print(json.dumps({"imported": result.imported, "library": "genai_prices" in sys.modules,
                  "costs": costs}))
"""


def _ingest_in_a_new_process(db: Path, root: Path, override: str = "") -> dict[str, Any]:
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _INGEST_IN_A_NEW_PROCESS, str(db), str(root), override],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_a_later_ingest_prices_from_todays_stored_library_rates_without_the_library(
    tmp_path: Path,
) -> None:
    from specwright.pricing import library_source, rates_for

    root = tmp_path / "projects"
    log = root / "p" / "s.jsonl"
    log.parent.mkdir(parents=True)
    models = ("claude-haiku-4-5-20251001", "claude-sonnet-4-5-20250929")
    log.write_text(_line(mid="a", rid="r1", model=models[0]) + "\n")
    store = Store(tmp_path / "db.duckdb")
    store.migrate()
    claude.ingest(store, [root])
    store.release()

    def expected(mid: str, model: str) -> list[Any]:
        rates = rates_for(model, "anthropic")
        assert rates is not None
        return [mid, rates.cost(10, 5)]

    # the first model's rates are stored from today: a new process prices its new lines without
    # importing genai-prices, to the same cost
    with log.open("a") as fh:
        fh.write(_line(mid="b", rid="r2", model=models[0]) + "\n")
    out = _ingest_in_a_new_process(tmp_path / "db.duckdb", root)
    assert out["imported"] == 1 and out["library"] is False
    assert out["costs"] == [expected("a", models[0]), expected("b", models[0])]

    # a model the store has no price for is looked up in the library, and its price stored
    with log.open("a") as fh:
        fh.write(_line(mid="c", rid="r3", model=models[1]) + "\n")
    out = _ingest_in_a_new_process(tmp_path / "db.duckdb", root)
    assert out["library"] is True and out["costs"][-1] == expected("c", models[1])

    # stored rates from an older day or another library version are looked up again (a price can
    # change on a date), then stored as confirmed today
    with store.transaction() as conn:
        conn.execute(
            "UPDATE prices SET updated_at = updated_at - INTERVAL 2 DAY WHERE model = ?",
            [models[0]],
        )
        conn.execute("UPDATE prices SET source = 'genai-prices 0.0.1' WHERE model = ?", [models[1]])
    store.release()
    for i, model in enumerate(models):
        with log.open("a") as fh:
            fh.write(_line(mid=f"d{i}", rid=f"r{4 + i}", model=model) + "\n")
        out = _ingest_in_a_new_process(tmp_path / "db.duckdb", root)
        assert out["library"] is True and out["costs"][-1] == expected(f"d{i}", model)
    rows = store.query("SELECT source, updated_at::DATE = current_date FROM prices")
    assert rows == [(library_source(), True)] * 2

    # and a price from the config wins over a stored library price, without the library
    with log.open("a") as fh:
        fh.write(_line(mid="e", rid="r9", model=models[0]) + "\n")
    out = _ingest_in_a_new_process(tmp_path / "db.duckdb", root, override=models[0])
    assert out["library"] is False and out["costs"][-1] == ["e", (10 * 1.0 + 5 * 2.0) / 1e6]
