"""codexbar printing what it should not (NaN, names that are no text, a plain-text error, a
non-zero exit, too much, nothing) or hanging with a child; Codex logs whose new events carry
totals only. Real executables and real DuckDB files throughout."""

from __future__ import annotations

import json
import math
import stat
import sys
import time
from pathlib import Path

from specwright.store import Store
from specwright.usage import codex, codexbar
from tests.support_usage import CODEXBAR_USAGE, write_codex_session, write_fake_codexbar


def _script(path: Path, body: str) -> Path:
    """A real executable (Python) printing what ``body`` prints."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\nimport os, sys, time\n{body}\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _snapshots(store: Store) -> list[dict[str, object]]:
    return store.query_dicts(
        "SELECT provider, kind, error, payload FROM usage_snapshots ORDER BY kind, provider"
    )


def test_codexbar_nan_is_stored_as_null_so_the_payload_stays_json(
    store: Store, tmp_path: Path
) -> None:
    usage = json.dumps(CODEXBAR_USAGE[:1]).replace('"usedPercent": 28.0', '"usedPercent": NaN')
    assert "NaN" in usage
    fake = write_fake_codexbar(tmp_path / "bin", raw_usage=usage)
    snap = codexbar.run("usage", str(fake))
    assert "NaN or infinite numbers stored as null" in (snap.warning or "")
    codexbar.store_snapshot(store, snap)
    (row,) = _snapshots(store)
    payload = json.loads(str(row["payload"]), parse_constant=lambda c: math.nan)
    assert payload["usage"]["primary"]["usedPercent"] is None
    assert store.query("SELECT json_valid(payload) FROM usage_snapshots") == [(True,)]
    assert "NaN" not in str(row["payload"])


def test_codexbar_providers_of_the_wrong_shape_are_kept_without_a_made_up_name(
    store: Store, tmp_path: Path
) -> None:
    """A provider that is a number or an object is no name (it used to be stored as Python's
    ``{'x': 1}``); an error given as plain text is the row's error, and said."""
    printed = [
        {"provider": {"x": 1}, "usage": None},
        {"provider": 5},
        {"provider": "codex", "error": "not logged in"},
    ]
    fake = write_fake_codexbar(tmp_path / "bin", raw_usage=json.dumps(printed))
    snap = codexbar.store_snapshot(store, codexbar.run("usage", str(fake)))
    assert snap.warning == "codexbar usage: codex: not logged in"
    rows = _snapshots(store)
    assert [(r["provider"], r["error"]) for r in rows] == [
        ("codex", "not logged in"),
        (None, None),
        (None, None),
    ]
    assert sorted(json.loads(str(r["payload"])).get("provider") != "codex" for r in rows) == [
        False,
        True,
        True,
    ]


def test_codexbar_exiting_non_zero_with_json_is_stored_and_said(
    store: Store, tmp_path: Path
) -> None:
    fake = _script(
        tmp_path / "codexbar",
        'print(\'[{"provider":"codex","usage":{"primary":{"usedPercent":50}}}]\')\n'
        'print("codex: token refresh failed", file=sys.stderr)\nsys.exit(1)',
    )
    snap = codexbar.store_snapshot(store, codexbar.run("usage", str(fake)))
    assert snap.warning == "codexbar usage: exit 1: codex: token refresh failed"
    assert len(snap.ids) == 1


def test_codexbar_printing_too_much_or_nothing_says_which(tmp_path: Path) -> None:
    big = _script(
        tmp_path / "big" / "codexbar",
        "sys.stdout.write('[' + ','.join(['{\"provider\":\"codex\",\"pad\":\"' + 'x' * 100000 "
        "+ '\"}'] * 100) + ']')",
    )
    assert codexbar.run("usage", str(big)).warning == (
        "codexbar usage: output larger than 8 MiB, ignored"
    )
    quiet = _script(tmp_path / "quiet" / "codexbar", "sys.exit(0)")
    assert codexbar.run("usage", str(quiet)).warning == "codexbar usage: printed nothing (exit 0)"

    # `[]` (no provider enabled): `ingest codexbar` exited 1 with no word why
    none = write_fake_codexbar(tmp_path / "none", raw_usage="[]")
    assert (
        codexbar.run("usage", str(none)).warning == "codexbar usage: printed no provider (exit 0)"
    )


def test_a_codexbar_printing_without_end_is_stopped_at_the_limit_not_read_whole(
    tmp_path: Path,
) -> None:
    """Its output is read as it comes and the process stopped past the limit: it used to be
    read whole into memory (GBs from `yes`) until the timeout, and only then refused."""
    endless = _script(
        tmp_path / "codexbar",
        "chunk = 'x' * (1 << 20)\nwhile True:\n    sys.stdout.write(chunk)\n    sys.stdout.flush()",
    )
    snap = codexbar.run("usage", str(endless), timeout_s=120)
    assert snap.warning == "codexbar usage: output larger than 8 MiB, ignored"


def test_a_hanging_codexbar_is_stopped_with_its_children_and_not_waited_for_twice(
    store: Store, tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    hang = _script(
        tmp_path / "codexbar",
        "import subprocess\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)",
    )
    snaps = codexbar.ingest(store, str(hang), timeout_s=1.5)
    assert "did not finish within 1.5s" in (snaps[0].warning or "")
    assert (snaps[1].warning or "").startswith("codexbar cost: not run: codexbar usage:")
    child = int(pid_file.read_text())
    for _ in range(100):  # killed with the group; reaped by init soon after
        if not Path(f"/proc/{child}").exists() or "Z" in _state(child):
            break
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists() or "Z" in _state(child), "child left running"
    assert _snapshots(store) == []


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_codex_totals_only_event_after_an_earlier_ingest_counts_only_what_is_new(
    store: Store, tmp_path: Path
) -> None:
    """An event with ``total_token_usage`` and no ``last_token_usage``, read by a later ingest
    than the events before it, counts the difference to the totals read then (it counted the
    whole session's input, output and cache again)."""
    path, _ = write_codex_session(tmp_path / "codex", turns=2)
    codex.ingest(store, [tmp_path / "codex" / "sessions"])
    last = json.loads(path.read_text().splitlines()[-1])["payload"]["info"]["total_token_usage"]
    totals = {k: v + 100 for k, v in last.items()}
    totals["total_tokens"] = totals["input_tokens"] + totals["output_tokens"]
    event = {
        "timestamp": "2025-11-02T11:00:00Z",
        "type": "event_msg",
        "payload": {"type": "token_count", "info": {"total_token_usage": totals}},
    }
    with path.open("a") as fh:
        fh.write(json.dumps(event) + "\n")
    result = codex.ingest(store, [tmp_path / "codex" / "sessions"])
    assert result.imported == 1
    newest = store.query(
        "SELECT input_tokens, cache_read_tokens, output_tokens, reasoning_tokens "
        "FROM usage_records ORDER BY seq DESC LIMIT 1"
    )
    assert newest == [(0, 100, 100, 100)]  # 100 more input, all of it cached
