"""Chunk drafts: a spec's chunks before they are stored, checked as a dependency graph, and
written over a spec's stored chunks in one journaled write (``replace_chunks``; refused for a
chunk that has runs). Shared by spec files (``specfile``), the Spec Studio and its widgets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from specwright.errors import ValidationError
from specwright.model import Chunk, new_id, utcnow
from specwright.store import Store


@dataclass
class ChunkDraft:
    """A chunk before it is stored: ``depends_on`` holds the ids of other drafts."""

    title: str
    prompt: str = ""
    acceptance: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    depends_on: list[str] = field(default_factory=list)
    id: str = field(default_factory=new_id)
    budget_usd: float | None = None


def check_dag(drafts: Sequence[ChunkDraft]) -> str | None:
    """None when the drafts' dependencies form a DAG over known ids; else what is wrong."""
    from specwright.catalog import find_cycle

    ids = [d.id for d in drafts]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        return f"chunk id {dup!r} is used twice"
    by_id = {d.id: d for d in drafts}
    for d in drafts:
        for dep in d.depends_on:
            if dep not in by_id:
                return f"chunk {d.title!r} depends on unknown chunk {dep!r}"
            if dep == d.id:
                return f"chunk {d.title!r} depends on itself"
    cycle = find_cycle({d.id: list(d.depends_on) for d in drafts})
    if cycle:
        return "dependency cycle: " + " -> ".join(repr(by_id[c].title) for c in cycle)
    return None


def topological(drafts: Sequence[ChunkDraft]) -> list[ChunkDraft]:
    """The drafts in an order where each comes after its dependencies (stable otherwise)."""
    done: set[str] = set()
    out: list[ChunkDraft] = []
    pending = list(drafts)
    while pending:
        ready = next(d for d in pending if all(x in done for x in d.depends_on))
        pending.remove(ready)
        done.add(ready.id)
        out.append(ready)
    return out


def replace_chunks(store: Store, spec_id: str, drafts: Sequence[ChunkDraft]) -> None:
    """Make ``drafts`` the spec's chunks in one transaction: update those whose id exists,
    insert the new ones, delete the rest (refused for a chunk that has runs or executions)."""
    store.write(chunk_ops(store, spec_id, drafts))


def chunk_ops(store: Store, spec_id: str, drafts: Sequence[ChunkDraft]) -> list[dict[str, Any]]:
    """The journal ops of ``replace_chunks``, checked but not written (to go in one write with
    other ops)."""
    problem = check_dag(drafts)
    if problem:
        raise ValidationError(problem)
    ordered = topological(drafts)
    with store.connect() as conn:
        existing = {
            r["id"]: r
            for r in store.query_dicts(
                "SELECT id, title, status FROM chunks WHERE spec_id = ?", [spec_id]
            )
        }
        foreign = store.query(
            "SELECT id FROM chunks WHERE id IN (SELECT unnest(?::UUID[])) AND spec_id <> ?",
            [[d.id for d in drafts], spec_id],
        )
        if foreign:
            raise ValidationError(f"chunk id {foreign[0][0]} belongs to another spec")
        keep = {d.id for d in drafts}
        gone = [cid for cid in existing if cid not in keep]
        if gone:
            from specwright.catalog import _under_way

            busy = _under_way(conn, spec_id)
            if busy:  # its run-all would still run the chunk, recording rows for none
                title = existing[gone[0]]["title"]
                raise ValidationError(
                    f"the spec {busy}; refusing to delete chunk {title!r} until it ends"
                )
            used = store.query(
                "SELECT chunk_id, count(*) FROM (SELECT chunk_id FROM runs UNION ALL "
                "SELECT chunk_id FROM executions) WHERE chunk_id IN (SELECT unnest(?::UUID[])) "
                "GROUP BY chunk_id",
                [gone],
            )
            if used:
                title = existing[str(used[0][0])]["title"]
                raise ValidationError(
                    f"chunk {title!r} has runs; refusing to delete it (keep it in the list)"
                )
        now = utcnow()
        ops: list[dict[str, Any]] = [
            Store.op_sql(
                "DELETE FROM chunk_deps WHERE chunk_id IN "
                "(SELECT id FROM chunks WHERE spec_id = ?)",
                [spec_id],
            )
        ]
        ops += [Store.op_sql("DELETE FROM chunks WHERE id = ?", [cid]) for cid in gone]
        for pos, d in enumerate(ordered, 1):
            values = {
                "position": pos,
                "title": d.title.strip(),
                "prompt": d.prompt,
                "acceptance": list(d.acceptance),
                "files": list(d.files),
                "budget_usd": d.budget_usd,
                "updated_at": now,
            }
            if d.id in existing:
                ops.append(Store.op_update("chunks", {"id": d.id}, values))
            else:
                row = {
                    "id": d.id,
                    "spec_id": spec_id,
                    **values,
                    "status": "pending",
                    "iterations": 0,
                    "created_at": now,
                }
                ops.append(Store.op_insert("chunks", row))
        for d in ordered:
            for dep in dict.fromkeys(d.depends_on):
                ops.append(Store.op_insert("chunk_deps", {"chunk_id": d.id, "depends_on_id": dep}))
        return ops


def drafts_of(chunks: Sequence[Chunk]) -> list[ChunkDraft]:
    """Stored chunks as drafts (same ids)."""
    return [
        ChunkDraft(
            c.title,
            c.prompt,
            list(c.acceptance),
            list(c.files),
            list(c.depends_on),
            c.id,
            c.budget_usd,
        )
        for c in chunks
    ]
