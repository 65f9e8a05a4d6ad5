"""CRUD for the catalog: projects, specs, spec questions, chunks and chunk dependencies.

Everything goes through ``Store.write`` (journaled, one transaction). Specs and chunks are looked
up by id, by unique id prefix or by slug / position, so people can type short references.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from specwright.errors import NotFoundError, StoreError, ValidationError
from specwright.model import MAX_BUDGET_USD, Chunk, Project, Spec, new_id, slugify, utcnow
from specwright.store import Store
from specwright.titles import check_title, chunk_label

# --- projects -------------------------------------------------------------------------------


def _project(row: dict[str, Any]) -> Project:
    return Project(row["id"], row["name"], row["root"], row["created_at"])


def ensure_project(
    store: Store, root: Path | str, name: str | None = None, *, record: bool = True
) -> Project:
    """The project rooted at ``root``, created on first use; with ``record=False`` (or a
    database that can only be read) one the database does not hold is not recorded, and reads
    as one with nothing in it."""
    root_s = str(Path(root).resolve())
    rows = store.query_dicts("SELECT * FROM projects WHERE root = ?", [root_s])
    if rows:
        return _project(rows[0])
    row = {
        "id": new_id(),
        "name": name or Path(root_s).name,
        "root": root_s,
        "created_at": utcnow(),
    }
    if store.read_only or not record:
        return _project(row)
    store.insert("projects", row)
    return _project(store.query_dicts("SELECT * FROM projects WHERE id = ?", [row["id"]])[0])


def list_projects(store: Store) -> list[Project]:
    return [_project(r) for r in store.query_dicts("SELECT * FROM projects ORDER BY created_at")]


# --- specs ----------------------------------------------------------------------------------


def _spec(row: dict[str, Any]) -> Spec:
    return Spec(
        id=row["id"],
        project_id=row["project_id"],
        slug=row["slug"],
        title=row["title"],
        body=row["body"],
        status=row["status"],
        intent=row["intent"],
        budget_usd=row["budget_usd"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def create_spec(
    store: Store,
    project: Project,
    title: str,
    body: str = "",
    *,
    slug: str | None = None,
    intent: str = "",
    status: str = "draft",
    budget_usd: float | None = None,
    spec_id: str | None = None,
) -> Spec:
    """A new spec in ``project``; the slug is derived from the title and made unique."""
    row = new_spec_row(
        store,
        project,
        title,
        body,
        slug=slug,
        intent=intent,
        status=status,
        budget_usd=budget_usd,
        spec_id=spec_id,
    )
    store.insert("specs", row)
    return get_spec(store, row["id"])


def new_spec_row(
    store: Store,
    project: Project,
    title: str,
    body: str = "",
    *,
    slug: str | None = None,
    intent: str = "",
    status: str = "draft",
    budget_usd: float | None = None,
    spec_id: str | None = None,
) -> dict[str, Any]:
    """The ``specs`` row ``create_spec`` inserts (checked, unique slug), not yet written."""
    title = check_title(title, "spec title")
    _check_budget(budget_usd, "spec budget")
    base = slugify(slug or title)
    taken = {r[0] for r in store.query("SELECT slug FROM specs WHERE project_id = ?", [project.id])}
    final, n = base, 2
    while final in taken:
        final, n = f"{base}-{n}", n + 1
    now = utcnow()
    new = spec_id or new_id()
    row: dict[str, Any] = {
        "id": new,
        "project_id": project.id,
        "slug": final,
        "title": title.strip(),
        "body": body,
        "status": status,
        "intent": intent,
        "budget_usd": budget_usd,
        "created_at": now,
        "updated_at": now,
    }
    return row


BUDGET_RANGE = f"a number of dollars from 0 to {MAX_BUDGET_USD:,}"


def is_budget(value: Any) -> bool:
    """A budget in dollars: a number from 0 to ``MAX_BUDGET_USD`` (YAML and float() read
    ``nan``, ``inf``, ``-1`` and ``1e308``: the range refuses each)."""
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and 0 <= value <= MAX_BUDGET_USD
    )


def _check_budget(budget_usd: float | None, what: str) -> None:
    if budget_usd is not None and not is_budget(budget_usd):
        raise ValidationError(f"{what} {budget_usd!r}: expected {BUDGET_RANGE}")


MIN_ID_PREFIX = 4  # a shorter prefix is not resolved: `01` starts every id made these years


def _resolve(store: Store, table: str, ref: str, extra_sql: str, params: list[Any]) -> list[dict]:
    ref = ref.lower()  # ids are lower-case hex; one copied from elsewhere may not be
    rows = store.query_dicts(
        f"SELECT * FROM {table} WHERE id::VARCHAR = ? {extra_sql}", [ref, *params]
    )
    if rows:
        return rows
    if len(ref) >= MIN_ID_PREFIX:
        return store.query_dicts(
            f"SELECT * FROM {table} WHERE starts_with(id::VARCHAR, ?) {extra_sql}", [ref, *params]
        )
    return []


def _refuse_short_prefix(
    store: Store, table: str, ref: str, extra_sql: str, params: list[Any], noun: str
) -> None:
    """For a ref nothing matched: when it is the start of ids, too short to resolve, say that
    rather than that there is no such thing."""
    if not ref or len(ref) >= MIN_ID_PREFIX:
        return
    [(n,)] = store.query(
        f"SELECT count(*) FROM {table} WHERE starts_with(id::VARCHAR, ?) {extra_sql}",
        [ref, *params],
    )
    if n > 1:
        raise NotFoundError(f"{noun} {ref!r}: ambiguous, matches {n} {noun}s; use more of the id")
    if n == 1:
        raise NotFoundError(
            f"{noun} {ref!r}: too short an id prefix; use at least {MIN_ID_PREFIX} characters"
        )


def _as_slug(ref: str) -> str:
    """What the user typed, normalized as slugs are made (``slugify``: NFKC, lower-cased), so
    ``Café``, or ``café`` typed in NFD, finds the spec ``café``; still an exact match."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", ref).lower())


def _find_specs(store: Store, ref: str, extra_sql: str, params: list[Any]) -> list[dict]:
    """Specs matching ``ref`` by id, else slug (``_as_slug``), else id prefix (``extra_sql`` narrows them): a
    slug such as ``01a2`` is a prefix of every id made this year, so the slug comes first."""
    return (
        store.query_dicts(f"SELECT * FROM specs WHERE id::VARCHAR = ? {extra_sql}", [ref, *params])
        or store.query_dicts(
            f"SELECT * FROM specs WHERE slug IN (?, ?) {extra_sql}", [ref, _as_slug(ref), *params]
        )
        or _resolve(store, "specs", ref, extra_sql, params)
    )


def get_spec(store: Store, ref: str, project: Project | None = None) -> Spec:
    """A spec by id, id prefix or slug (slugs are unique within a project)."""
    extra, params = ("AND project_id = ?", [project.id]) if project else ("", [])
    rows = _find_specs(store, ref, extra, params)
    if not rows and project is not None:
        # in another project of this database: say which, rather than "no such spec"
        owners = sorted({str(r["project_id"]) for r in _find_specs(store, ref, "", [])})
        elsewhere = [
            r[0]
            for r in store.query(
                "SELECT root FROM projects WHERE id::VARCHAR IN (SELECT unnest(?::VARCHAR[])) "
                "ORDER BY root",
                [owners],
            )
        ]
        if elsewhere:
            raise NotFoundError(
                f"spec {ref!r}: not in this project ({project.root}) but in "
                f"{', '.join(elsewhere)}: run with -C {elsewhere[0]}"
            )
    if not rows:
        _refuse_short_prefix(store, "specs", ref, extra, params, "spec")
        raise NotFoundError(f"spec {ref!r}: no such spec (see `specwright spec list`)")
    if len(rows) > 1:
        raise NotFoundError(f"spec {ref!r}: ambiguous, matches {len(rows)} specs; use the full id")
    return _spec(rows[0])


def list_specs(store: Store, project: Project | None = None) -> list[Spec]:
    if project is None:
        rows = store.query_dicts("SELECT * FROM specs ORDER BY created_at")
    else:
        rows = store.query_dicts(
            "SELECT * FROM specs WHERE project_id = ? ORDER BY created_at", [project.id]
        )
    return [_spec(r) for r in rows]


def update_spec(store: Store, spec_id: str, **values: Any) -> Spec:
    allowed = {"title", "body", "status", "intent", "budget_usd"}
    unknown = set(values) - allowed
    if unknown:
        raise ValidationError(f"spec fields {sorted(unknown)}: expected one of {sorted(allowed)}")
    _check_budget(values.get("budget_usd"), "spec budget")
    if "title" in values:
        values["title"] = check_title(values["title"], "spec title")
    store.update("specs", {"id": spec_id}, {**values, "updated_at": utcnow()})
    return get_spec(store, spec_id)


_SPEC_RUN_IDS = "SELECT id FROM runs WHERE spec_id = ?"
_SPEC_CHUNK_IDS = "SELECT id FROM chunks WHERE spec_id = ?"
_SPEC_EXEC_IDS = f"SELECT id FROM executions WHERE spec_id = ? OR run_id IN ({_SPEC_RUN_IDS})"


def delete_spec(store: Store, spec_id: str, *, force: bool = False) -> dict[str, int]:
    """Delete a spec. Refused when it has runs unless ``force``; then every row that belongs
    to it (chunks, runs, executions, events, verifications, reviews, queue items) goes in one
    transaction. Refused while it runs (``_under_way``), even with ``force``. Returns the number
    of rows removed per table."""
    spec = get_spec(store, spec_id)
    # one transaction: a worker cannot take a queued item of the spec between the check and
    # the delete (``queue.claim`` takes items in a transaction too)
    with store.transaction() as conn:
        busy = _under_way(conn, spec.id)
        if busy:
            raise StoreError(f"spec {spec.slug!r} {busy}; stop it first, then delete the spec")

        def count(table: str, where: str, params: list[str]) -> int:
            sql = f"SELECT count(*) FROM {table} WHERE {where}"
            return int(conn.execute(sql, params).fetchall()[0][0])

        n_runs = count("runs", "spec_id = ?", [spec.id])
        n_execs = count("executions", "spec_id = ?", [spec.id])
        if (n_runs or n_execs) and not force:
            raise StoreError(
                f"spec {spec.slug!r} has {n_runs} run(s) and {n_execs} execution(s); "
                "refusing to delete its history (use --force to delete it all)"
            )
        counts = {table: count(table, where, ps) for table, where, ps in _spec_scope(spec.id)}
        ops = [
            Store.op_sql(f"DELETE FROM {table} WHERE {where}", params)
            for table, where, params in _spec_scope(spec.id)
        ]
        ops.append(
            Store.op_sql(
                "UPDATE usage_records SET execution_id = NULL "
                f"WHERE execution_id IN ({_SPEC_EXEC_IDS})",
                [spec.id, spec.id],
            )
        )
        # order matters: children before the rows their WHERE clauses look up
        store.write(ops[-1:] + ops[:-1])
    return counts


def refuse_while_running(store: Store, spec_id: str, what: str) -> None:
    """Refuse what would change spec ``spec_id`` under a live run (``_under_way``): one line,
    ``what`` saying what was not done."""
    with store.connect() as conn:
        busy = _under_way(conn, spec_id)
        if busy:
            slug = get_spec(store, spec_id).slug
            raise ValidationError(f"spec {slug!r} {busy}: {what}")


def _under_way(conn: Any, spec_id: str) -> str | None:
    """What of the spec runs now on this host, in words: a queue item a live worker runs, or a
    run a live process started (each still heartbeats); None when nothing does. A dead run's
    rows are history, which ``--force`` may delete."""
    import socket
    from datetime import timedelta

    from specwright.agents.orphans import pid_alive
    from specwright.recovery import STALE_HEARTBEAT_S

    host = socket.gethostname()
    fresh = utcnow() - timedelta(seconds=STALE_HEARTBEAT_S)
    rows = conn.execute(
        "SELECT 'queue item', id, worker_pid FROM queue "
        "WHERE spec_id = ? AND status = 'running' AND host = ? "
        "AND coalesce(heartbeat_at, started_at, created_at) > ? "
        "UNION ALL SELECT 'run', id, pid FROM runs WHERE spec_id = ? AND status = 'running' "
        "AND host = ? AND coalesce(heartbeat_at, started_at) > ?",  # a dead one's pid is reused
        [spec_id, host, fresh, spec_id, host, fresh],
    ).fetchall()
    for what, ref, pid in rows:
        if pid_alive(pid):
            return f"is running: {what} {str(ref)[:13]} (pid {pid})"
    return None


def _spec_scope(spec_id: str) -> list[tuple[str, str, list[str]]]:
    s = spec_id
    return [
        ("events", f"execution_id IN ({_SPEC_EXEC_IDS})", [s, s]),
        ("usage_snapshots", f"execution_id IN ({_SPEC_EXEC_IDS})", [s, s]),
        ("reviews", f"run_id IN ({_SPEC_RUN_IDS}) OR chunk_id IN ({_SPEC_CHUNK_IDS})", [s, s]),
        (
            "verifications",
            f"run_id IN ({_SPEC_RUN_IDS}) OR chunk_id IN ({_SPEC_CHUNK_IDS})",
            [s, s],
        ),
        ("executions", f"spec_id = ? OR run_id IN ({_SPEC_RUN_IDS})", [s, s]),
        ("runs", "spec_id = ?", [s]),
        ("chunk_deps", f"chunk_id IN ({_SPEC_CHUNK_IDS})", [s]),
        ("chunks", "spec_id = ?", [s]),
        ("spec_questions", "spec_id = ?", [s]),
        ("queue", "spec_id = ?", [s]),  # its queued items would only fail: no such spec
        ("specs", "id = ?", [s]),
    ]


# --- chunks ---------------------------------------------------------------------------------


def _json_list(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = json.loads(value)
    return tuple(str(v) for v in value)


def _chunk(row: dict[str, Any], deps: Sequence[str]) -> Chunk:
    return Chunk(
        id=row["id"],
        spec_id=row["spec_id"],
        position=row["position"],
        title=row["title"],
        prompt=row["prompt"],
        acceptance=_json_list(row["acceptance"]),
        files=_json_list(row["files"]),
        depends_on=tuple(deps),
        status=row["status"],
        iterations=row["iterations"],
        verdict=row["verdict"],
        summary=row["summary"],
        budget_usd=row["budget_usd"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def list_chunks(store: Store, spec_id: str) -> list[Chunk]:
    """The chunks of a spec in position order, each with its dependency ids."""
    rows = store.query_dicts(
        "SELECT * FROM chunks WHERE spec_id = ? ORDER BY position, created_at", [spec_id]
    )
    deps: dict[str, list[str]] = {}
    for chunk_id, dep in store.query(
        f"SELECT d.chunk_id, d.depends_on_id FROM chunk_deps d JOIN chunks c ON c.id = d.depends_on_id "
        f"WHERE d.chunk_id IN ({_SPEC_CHUNK_IDS}) ORDER BY c.position",
        [spec_id],
    ):
        deps.setdefault(chunk_id, []).append(dep)
    return [_chunk(r, deps.get(r["id"], [])) for r in rows]


def get_chunk(store: Store, ref: str, spec: Spec | None = None) -> Chunk:
    """A chunk by id or id prefix, or by position (``2``) / ``spec-slug:2`` within a spec."""
    if ":" in ref and spec is None:
        spec_ref, _, ref = ref.rpartition(":")
        spec = get_spec(store, spec_ref)
    extra, params = ("AND spec_id = ?", [spec.id]) if spec else ("", [])
    rows: list[dict[str, Any]] = []
    if spec is not None and _is_position(ref):
        rows = store.query_dicts(
            "SELECT * FROM chunks WHERE spec_id = ? AND position = ?", [spec.id, int(ref)]
        )
    if not rows:
        rows = _resolve(store, "chunks", ref, extra, params)
    if not rows:
        _no_such_chunk(store, ref, spec)
    if len(rows) > 1:
        raise NotFoundError(
            f"chunk {ref!r}: ambiguous, matches {len(rows)} chunks; use more of the id"
        )
    row = rows[0]
    deps = [
        r[0]
        for r in store.query("SELECT depends_on_id FROM chunk_deps WHERE chunk_id = ?", [row["id"]])
    ]
    return _chunk(row, deps)


def _is_position(ref: str) -> bool:
    """Whether ``ref`` is a chunk's position: ASCII digits (``²`` or ``١`` are digits to
    ``str.isdigit`` too, and ``int`` refuses the first)."""
    return ref.isascii() and ref.isdigit()


def _no_such_chunk(store: Store, ref: str, spec: Spec | None) -> NoReturn:
    """Raise the error for a chunk ref nothing matched, naming the spec it was looked up in."""
    if spec is None:
        _refuse_short_prefix(store, "chunks", ref, "", [], "chunk")
        raise NotFoundError(
            f"chunk {ref!r}: no such chunk (name one by spec and position, e.g. `my-spec:2`; "
            "`specwright spec list` shows the specs)"
        )
    if not _is_position(ref):  # a position is never an id prefix here: `demo:0` is not every id
        _refuse_short_prefix(store, "chunks", ref, "AND spec_id = ?", [spec.id], "chunk")
    [(n,)] = store.query("SELECT count(*) FROM chunks WHERE spec_id = ?", [spec.id])
    has = f"it has {n} chunk{'s' if n != 1 else ''}" if n else "it has no chunks"
    raise NotFoundError(
        f"chunk {ref if _is_position(ref) else repr(ref)} of spec {spec.slug!r}: no such chunk "
        f"({has}: see `specwright chunk list {spec.slug}`)"
    )


def add_chunk(
    store: Store,
    spec: Spec,
    title: str,
    prompt: str = "",
    *,
    acceptance: Iterable[str] = (),
    files: Iterable[str] = (),
    depends_on: Iterable[str] = (),
    budget_usd: float | None = None,
    chunk_id: str | None = None,
) -> Chunk:
    """Append a chunk to a spec; ``depends_on`` names chunks of the same spec (ids/positions)."""
    title = check_title(title, "chunk title")  # as a spec's: it heads a commit message
    _check_budget(budget_usd, "chunk budget")
    existing = list_chunks(store, spec.id)
    position = max((c.position for c in existing), default=0) + 1
    dep_ids = [_dependency(store, spec, str(d).strip(), position) for d in depends_on]
    now = utcnow()
    new = chunk_id or new_id()
    row: dict[str, Any] = {
        "id": new,
        "spec_id": spec.id,
        "position": position,
        "title": title.strip(),
        "prompt": prompt,
        # trimmed, blanks dropped: as a spec file reads them back (an export keeps the chunk)
        "acceptance": [a.strip() for a in acceptance if a.strip()],
        "files": [f.strip() for f in files if f.strip()],
        "status": "pending",
        "iterations": 0,
        "budget_usd": budget_usd,
        "created_at": now,
        "updated_at": now,
    }
    ops = [Store.op_insert("chunks", row)]
    ops += [
        Store.op_insert("chunk_deps", {"chunk_id": new, "depends_on_id": d})
        for d in dict.fromkeys(dep_ids)
    ]
    store.write(ops)
    return get_chunk(store, new)


def _dependency(store: Store, spec: Spec, ref: str, position: int) -> str:
    """The id of the chunk ``ref`` names in ``spec``, for a new chunk at ``position``; also
    as ``SPEC:POSITION``, as chunks are named everywhere else, when SPEC is ``spec``."""
    if ":" in ref:
        spec_ref, _, ref = ref.rpartition(":")
        if get_spec(store, spec_ref).id != spec.id:
            raise ValidationError(
                f"depends on {spec_ref}:{ref}: a chunk can only depend on chunks of its own "
                f"spec ({spec.slug})"
            )
    if ref.strip() == str(position):
        raise ValidationError(f"depends on {ref!r}: that is the new chunk itself")
    try:
        return get_chunk(store, ref, spec).id
    except NotFoundError:
        have = (
            f"chunks 1-{position - 1}" if position > 2 else "chunk 1" if position == 2 else "none"
        )
        raise NotFoundError(
            f"depends on {ref!r}: spec {spec.slug} has no such chunk ({have}; or a chunk id)"
        ) from None


def add_dependency(store: Store, chunk: Chunk, depends_on: Chunk) -> None:
    """Make ``chunk`` depend on ``depends_on``; refused across specs or if it makes a cycle."""
    if chunk.spec_id != depends_on.spec_id:
        raise ValidationError("a chunk can only depend on chunks of the same spec")
    chunks = list_chunks(store, chunk.spec_id)
    graph = {c.id: list(c.depends_on) for c in chunks}
    graph.setdefault(chunk.id, []).append(depends_on.id)
    cycle = find_cycle(graph)
    if cycle:  # named by position and title, not by ids a reader cannot place
        name = {c.id: chunk_label(c.position, c.title) for c in chunks}
        names = " -> ".join(name.get(c, c) for c in cycle)
        raise ValidationError(f"dependency would create a cycle: {names}")
    if depends_on.id in chunk.depends_on:
        return
    store.insert("chunk_deps", {"chunk_id": chunk.id, "depends_on_id": depends_on.id})


def update_chunk(store: Store, chunk_id: str, **values: Any) -> None:
    allowed = {
        "title",
        "prompt",
        "acceptance",
        "files",
        "status",
        "iterations",
        "verdict",
        "summary",
        "budget_usd",
        "position",
    }
    unknown = set(values) - allowed
    if unknown:
        raise ValidationError(f"chunk fields {sorted(unknown)}: expected one of {sorted(allowed)}")
    if "title" in values:
        values["title"] = check_title(values["title"], "chunk title")
    store.update("chunks", {"id": chunk_id}, {**values, "updated_at": utcnow()})


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A dependency cycle in ``node -> [depends on]`` as a list of nodes, or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        color[node] = GREY
        stack.append(node)
        for nxt in graph.get(node, []):
            if color.get(nxt, WHITE) == GREY:
                return [*stack[stack.index(nxt) :], nxt]
            if color.get(nxt, WHITE) == WHITE:
                color.setdefault(nxt, WHITE)
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        color[node] = BLACK
        return None

    for node in list(graph):
        if color[node] == WHITE:
            found = visit(node)
            if found:
                return found
    return None


def no_chunks(slug: str) -> ValidationError:
    """The error for running (or planning a run of) a spec without chunks, saying what to do."""
    return ValidationError(
        f"spec {slug!r} has no chunks to run (have the planner split it: `specwright plan "
        f"--resume {slug}`, or add them: `specwright chunk add {slug} TITLE`)"
    )
