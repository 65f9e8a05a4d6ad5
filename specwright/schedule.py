"""Scheduling a spec's chunks: graph checks, dependency order, parallel waves, predicted file
overlaps and a cost estimate from past runs. Pure functions over chunks (plus read queries)."""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from specwright.catalog import find_cycle
from specwright.errors import ValidationError
from specwright.model import Chunk
from specwright.titles import chunk_label

if TYPE_CHECKING:
    from specwright.store import Store

_PATHLIKE = re.compile(
    r"(?<![\w/.-])((?:[\w.-]+/)*[\w-]+\.(?:py|pyi|js|ts|tsx|jsx|go|rs|rb|java|"
    r"kt|c|h|cc|cpp|hpp|cs|md|toml|yaml|yml|json|cfg|ini|txt|sql|sh|html|css))"
    r"(?![\w/])"
)


def check_graph(chunks: Sequence[Chunk]) -> None:
    """Refuse a dependency on a chunk that is not in the spec, or a cycle, naming the chunks."""
    by_id = {c.id: c for c in chunks}
    for c in chunks:
        missing = [d for d in c.depends_on if d not in by_id]
        if missing:
            raise ValidationError(
                f"chunk {chunk_label(c.position, c.title)} depends on a chunk that is not in "
                f"this spec: {', '.join(missing)}"
            )
    cycle = find_cycle({c.id: list(c.depends_on) for c in chunks})
    if cycle:
        names = " -> ".join(chunk_label(by_id[i].position, by_id[i].title) for i in cycle)
        raise ValidationError(f"chunk dependencies form a cycle: {names}")


def topological_order(chunks: Sequence[Chunk]) -> list[Chunk]:
    """Chunks in dependency order; ties broken by position (deterministic)."""
    check_graph(chunks)
    done: set[str] = set()
    order: list[Chunk] = []
    pending = sorted(chunks, key=lambda c: c.position)
    while pending:
        ready = [c for c in pending if all(d in done for d in c.depends_on)]
        first = ready[0]
        order.append(first)
        done.add(first.id)
        pending.remove(first)
    return order


def predicted_files(chunk: Chunk, known_files: Iterable[str] = ()) -> tuple[str, ...]:
    """Files a chunk is expected to touch: those it names, and paths in its text (matched
    against the repository's files when a path is given without its directory)."""
    found = list(chunk.files)
    known = list(known_files)
    by_name: dict[str, list[str]] = {}
    for path in known:
        by_name.setdefault(path.rsplit("/", 1)[-1], []).append(path)
    for match in _PATHLIKE.finditer(f"{chunk.title}\n{chunk.prompt}"):
        token = match.group(1).lstrip("./")
        if "/" not in token and token in by_name:
            found.extend(by_name[token])
        else:
            found.append(token)
    return tuple(dict.fromkeys(found))


def overlaps(a: Sequence[str], b: Sequence[str]) -> set[str]:
    """Files two chunks both expect to touch (a directory entry covers what is under it)."""
    out = set()
    for x in a:
        for y in b:
            if x == y or y.startswith(x.rstrip("/") + "/") or x.startswith(y.rstrip("/") + "/"):
                out.add(x if len(x) >= len(y) else y)
    return out


@dataclass(frozen=True)
class Wave:
    """Chunks that may run side by side: their dependencies are done and their files disjoint."""

    chunks: tuple[Chunk, ...]
    deferred: tuple[tuple[Chunk, str], ...] = ()  # (chunk, why it waits for a later wave)


def next_wave(
    pending: Sequence[Chunk], done: set[str], files: dict[str, tuple[str, ...]], limit: int | None
) -> Wave:
    """The ready chunks (dependencies in ``done``) that can run at once, by position; a chunk
    whose files overlap one already in the wave is deferred to a later wave."""
    chosen: list[Chunk] = []
    deferred: list[tuple[Chunk, str]] = []
    for chunk in sorted(pending, key=lambda c: c.position):
        if not all(d in done for d in chunk.depends_on):
            continue
        clash = next(
            (c for c in chosen if overlaps(files.get(c.id, ()), files.get(chunk.id, ()))), None
        )
        if clash is not None:
            shared = ", ".join(sorted(overlaps(files[clash.id], files[chunk.id])))
            deferred.append((chunk, f"shares {shared} with chunk {clash.position}"))
            continue
        if limit is not None and len(chosen) >= limit:
            deferred.append((chunk, f"more than {limit} ready at once"))
            continue
        chosen.append(chunk)
    return Wave(tuple(chosen), tuple(deferred))


def waves(chunks: Sequence[Chunk], files: dict[str, tuple[str, ...]]) -> list[Wave]:
    """The whole schedule if every chunk ships: successive waves of chunks run side by side."""
    check_graph(chunks)
    done: set[str] = set()
    pending = list(chunks)
    out = []
    while pending:
        wave = next_wave(pending, done, files, None)
        out.append(wave)
        for c in wave.chunks:
            done.add(c.id)
            pending.remove(c)
    return out


# --- cost estimate --------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """Expected cost of running chunks, from past runs in the store."""

    low_usd: float | None
    high_usd: float | None
    per_iteration_usd: float | None
    iterations: tuple[float, float]  # expected iterations per chunk (low, high)
    samples: int
    basis: str
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        if self.low_usd is None or self.high_usd is None:
            return f"unknown ({self.basis})"
        return f"${self.low_usd:.2f} – ${self.high_usd:.2f} ({self.basis})"


def _quantile(values: Sequence[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def estimate_cost(
    store: Store, executor: str, model: str | None, n_chunks: int, max_iterations: int
) -> Estimate:
    """Median cost per iteration of past executions by this executor (and model), times the
    expected iterations per chunk (from past shipped chunks); a range from quartiles."""
    params: list[object] = [executor]
    model_sql = ""
    if model:
        model_sql, params = " AND model = ?", [executor, model]
    rows = store.query(
        "SELECT cost_usd FROM executions WHERE role = 'executor' AND executor = ? "
        f"AND isfinite(cost_usd) AND status = 'ok'{model_sql} ORDER BY started_at DESC LIMIT 500",
        params,
    )
    costs = [float(r[0]) for r in rows]
    iters = [
        int(r[0])
        for r in store.query(
            "SELECT iterations FROM runs WHERE kind = 'chunk' AND status = 'shipped' AND executor = ? "
            "AND iterations > 0 ORDER BY started_at DESC LIMIT 500",
            [executor],
        )
    ]
    it_low, it_high = (
        (_quantile(iters, 0.25), _quantile(iters, 0.75)) if iters else (1.0, float(max_iterations))
    )
    who = f"{executor}" + (f"/{model}" if model else "")
    if not costs:
        return Estimate(None, None, None, (it_low, it_high), 0, f"no past priced runs of {who}")
    per_iter = statistics.median(costs)
    lo_c, hi_c = _quantile(costs, 0.25), _quantile(costs, 0.75)
    return Estimate(
        low_usd=lo_c * it_low * n_chunks,
        high_usd=hi_c * it_high * n_chunks,
        per_iteration_usd=per_iter,
        iterations=(it_low, it_high),
        samples=len(costs),
        basis=f"median ${per_iter:.4f}/iteration over {len(costs)} past iterations of {who}",
    )
