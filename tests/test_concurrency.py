"""Two real processes write into one database file at the same time; nothing is lost."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from specwright.store import Store

WRITER = textwrap.dedent("""
    import sys
    from specwright.model import TextEvent
    from specwright.recorder import ExecutionRecorder
    from specwright.store import Store

    store = Store(sys.argv[1], lock_timeout_s=60)
    name = sys.argv[2]
    sys.stdin.readline()  # start together
    # small batches: many short connections, interleaved with the other process
    with ExecutionRecorder(store, role="executor", backend="scripted", executor=name,
                           flush_interval_s=0.01, flush_max=20) as rec:
        for i in range(1000):
            rec.on_event(TextEvent(f"{name} {i}"))
        rec.finish(status="ok")
    print(rec.id)
""")


def test_two_processes_write_1000_rows_each(tmp_path: Path) -> None:
    db = tmp_path / "shared.duckdb"
    Store(db).migrate()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("notebook", "cli")
    ]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [p.communicate(timeout=240) for p in procs]
    for p, (_out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    store = Store(db)
    rows = store.query(
        "SELECT x.executor, count(*), count(DISTINCT e.seq), max(e.seq) "
        "FROM events e JOIN executions x ON x.id = e.execution_id "
        "GROUP BY 1 ORDER BY 1"
    )
    assert rows == [("cli", 1000, 1000, 1000), ("notebook", 1000, 1000, 1000)]
    assert store.query("SELECT count(*) FROM events")[0][0] == 2000
    assert store.query("SELECT list_sort(list(status)) FROM executions")[0][0] == ["ok", "ok"]
