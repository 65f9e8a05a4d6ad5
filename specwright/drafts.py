"""Chunk drafts: a spec's chunks before they are stored, checked as a dependency graph, and
written over a spec's stored chunks in one journaled write (``replace_chunks``; refused for a
chunk that has runs). Shared by spec files (``specfile``), the Spec Studio and its widgets."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from specwright import prompts
from specwright.errors import ValidationError
from specwright.model import Chunk, new_id, utcnow
from specwright.store import Store
from specwright.titles import check_title, chunk_label, clean_title

MAX_CHUNK_CHARS = 20_000  # as prompts.MAX_INTENT_CHARS, where the reviewer cuts a chunk's prompt


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
    # by position and title: two chunks may share a title ("Add tests -> Add tests" says nothing)
    name = {d.id: chunk_label(n, d.title) for n, d in enumerate(drafts, 1)}
    for d in drafts:
        for dep in d.depends_on:
            if dep not in name:
                return f"chunk {name[d.id]} depends on unknown chunk {dep!r}"
            if dep == d.id:
                return f"chunk {name[d.id]} depends on itself"
    cycle = find_cycle({d.id: list(d.depends_on) for d in drafts})
    if cycle:
        return "dependency cycle: " + " -> ".join(name[c] for c in cycle)
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
    for n, d in enumerate(drafts, 1):  # a spec file's, the studio's table's: as chunk add's
        check_title(d.title, f"chunk {n} title")
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
            used = with_runs(store, gone)
            if used:
                title = existing[next(c for c in gone if c in used)]["title"]
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


def with_runs(store: Store, chunk_ids: Sequence[str]) -> set[str]:
    """Those of ``chunk_ids`` that have runs or executions (their history is never deleted)."""
    rows = store.query(
        "SELECT DISTINCT chunk_id FROM (SELECT chunk_id FROM runs UNION ALL SELECT chunk_id "
        "FROM executions) WHERE chunk_id IN (SELECT unnest(?::UUID[]))",
        [list(chunk_ids)],
    )
    return {str(r[0]) for r in rows}


def planned_chunks(
    known: Mapping[str, str], kept: Mapping[str, str] | None = None
) -> Callable[[dict[str, Any]], tuple[list[ChunkDraft], str | None]]:
    """A checker turning the planner's chunks into drafts; ``known`` maps keys to existing ids
    (so a refined chunk keeps its id and history); a key of ``kept`` (key -> title: chunks with
    runs, which are not deleted) left out of the list is a problem to ask again about."""

    def check(data: dict[str, Any]) -> tuple[list[ChunkDraft], str | None]:
        raw = data.get("chunks") or []
        if not raw:
            return [], "the chunk list is empty"
        if len(raw) > prompts.MAX_CHUNKS:
            return [], (
                f"{len(raw)} chunks; expected at most {prompts.MAX_CHUNKS} (merge the small ones)"
            )
        drafts: list[ChunkDraft] = []
        for n, item in enumerate(raw, 1):
            key = str(item.get("key") or "").strip() or f"#{n}"
            title = clean_title(str(item.get("title") or ""))  # a stray tab fails no plan
            if not title:
                return [], f"chunk {key!r} has no title"
            drafts.append(
                ChunkDraft(
                    title=title,
                    prompt=str(item.get("prompt") or "").strip(),
                    acceptance=[
                        str(a).strip() for a in item.get("acceptance") or [] if str(a).strip()
                    ],
                    files=[str(f).strip() for f in item.get("files") or [] if str(f).strip()],
                    depends_on=[str(d).strip() for d in item.get("depends_on") or []],
                    id=key,
                )
            )
            d = drafts[-1]
            if not d.prompt and key not in (kept or {}):  # the agent would get a title only
                return (
                    [],
                    f"chunk {key!r} ({title!r}) has no prompt; write its agent's instructions",
                )
            size = len(d.prompt) + sum(map(len, d.acceptance)) + sum(map(len, d.files))
            if size > MAX_CHUNK_CHARS:
                return [], (
                    f"chunk {key!r} is {size} characters of prompt, acceptance and files; "
                    f"expected at most {MAX_CHUNK_CHARS} (split it)"
                )
        seen: set[str] = set()
        for d in drafts:  # a failure, a spec file's depends_on, a log naming one: which?
            if d.title.lower() in seen:
                return [], f"two chunks are titled {d.title!r}; give each its own title"
            seen.add(d.title.lower())
        problem = check_dag(drafts)
        if problem:
            return [], problem
        gone = [k for k in kept or {} if k not in {d.id for d in drafts}]
        if gone:
            title = (kept or {})[gone[0]]
            return [], f"chunk {gone[0]} ({title!r}) has runs: keep it in the list, key {gone[0]}"
        # keys -> ids: an existing chunk's key keeps its id, new ones get fresh ids
        ids = {d.id: known.get(d.id) or new_id() for d in drafts}
        for d in drafts:
            d.depends_on = [ids[x] for x in dict.fromkeys(d.depends_on)]
            d.id = ids[d.id]
        return drafts, None

    return check
