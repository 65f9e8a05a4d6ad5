"""A spec file imported over a spec the store already has (``specfile.import_spec``): what the
import may not do to it (change it under a live run, take its status back from done) and what
it says about the rest."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from specwright.specfile import ParsedSpec
    from specwright.store import Store


def refuse_running(store: Store, spec_id: str, path: Path | str) -> None:
    """Refuse to import ``path`` over spec ``spec_id`` while a live run (or queue item) runs it:
    its chunks would change under the loop and the file's status replace 'running'."""
    from specwright.catalog import refuse_while_running
    from specwright.errors import ValidationError
    from specwright.specfile import SpecFileError

    try:
        refuse_while_running(store, spec_id, "nothing imported (import it once the run has ended)")
    except ValidationError as exc:
        raise SpecFileError(f"{path}: {exc}") from None


def status(
    store: Store, spec_id: str, parsed: ParsedSpec, path: Path | str, replace: bool
) -> tuple[str, str]:
    """The status an import of ``parsed`` gives spec ``spec_id`` (its chunks' ids kept already),
    and a warning when that is not the file's. A file without ``status:`` keeps
    the spec's; a file does not take a spec back from done (an old export) unless ``replace``:
    it stays done, or is ready when it now has chunks to run (as after a run-all that had
    chunks added while it ran)."""
    ((stored, slug),) = store.query("SELECT status, slug FROM specs WHERE id = ?", [spec_id])
    wanted = parsed.status if parsed.status_given else stored
    if wanted == "running" and stored != "running":  # only a run makes a spec running
        wanted = stored
    if stored != "done" or replace:
        return wanted, ""
    shipped = store.query(
        "SELECT id FROM chunks WHERE spec_id = ? AND status = 'shipped'", [spec_id]
    )
    to_run = sum(1 for c in parsed.chunks if c.id not in {str(i) for (i,) in shipped})
    kept = "ready" if to_run else "done"
    if not parsed.status_given or parsed.status in (kept, "done", "running"):
        return kept, ""
    why = f"{to_run} chunk(s) to run now" if to_run else "all its chunks have shipped"
    return kept, (
        f"{path}: status: the file says {parsed.status!r} but spec {slug!r} is done: it is "
        f"{kept} ({why}; to set the file's status anyway, import it with --replace)"
    )


def shipped_and_changed(store: Store, spec_id: str, parsed: ParsedSpec) -> list[str]:
    """The ids of the spec's shipped chunks whose prompt or acceptance ``parsed`` changes: the
    work the file asks for now, which run-all (skipping shipped chunks) would not do."""
    from specwright.catalog import list_chunks

    was = {
        c.id: (c.prompt, list(c.acceptance))
        for c in list_chunks(store, spec_id)
        if c.status == "shipped"
    }
    return [c.id for c in parsed.chunks if c.id in was and was[c.id] != (c.prompt, c.acceptance)]


def rerun_hint(
    store: Store, spec_id: str, changed: list[str], path: Path | str, now: str = "the file"
) -> str:
    """The warning for ``changed`` (see ``shipped_and_changed``), once imported (or revised by
    the planner: ``now``): which chunks, and how to run them again. A shipped chunk stays
    shipped: its commit is on the spec's branch, and an edit may be a typo fixed or a note, not
    work an agent should redo."""
    rows = store.query(
        "SELECT c.position, c.title, s.slug FROM chunks c JOIN specs s ON s.id = c.spec_id "
        "WHERE c.id IN (SELECT unnest(?::UUID[])) ORDER BY c.position",
        [changed],
    )
    named = ", ".join(f"{pos} {title!r}" for pos, title, _slug in rows)
    runs = ", ".join(f"`specwright run {slug}:{pos} --force`" for pos, _title, slug in rows)
    return (
        f"{path}: shipped chunk(s) whose prompt or acceptance changed: {named}; they stay "
        f"shipped and run-all skips them: to have the agent do them as {now} says now, {runs}"
    )


def keep_chunk_ids(store: Store, spec_id: str, parsed: ParsedSpec, path: Path | str) -> None:
    """A chunk the file gives no id (a hand-written file) is the spec's chunk of the same title,
    when just one has it: it keeps its id, status and runs rather than being a new chunk. Only
    when that chunk also has the same prompt or the same place, or no history: a title alone
    (titles swapped, a chunk moved and rewritten) could put one chunk's runs under another's
    work, so that is refused, asking for ids."""
    from specwright.catalog import list_chunks
    from specwright.drafts import topological
    from specwright.specfile import SpecFileError, resolve_drafts

    drafts = resolve_drafts(parsed, str(path))  # the order the import will give them
    order = {d.id: n for n, d in enumerate(topological(drafts), 1)}
    stored: dict[str, list[Any]] = {}
    for chunk in list_chunks(store, spec_id):
        stored.setdefault(chunk.title.strip().lower(), []).append(chunk)
    ran = {str(i) for (i,) in store.query(_RAN, [spec_id, spec_id])}
    named = [c.title.lower() for c in parsed.chunks]
    taken = {c.id for c in parsed.chunks if c.id}
    for n, (c, d) in enumerate(zip(parsed.chunks, drafts, strict=True), 1):
        same = [s for s in stored.get(c.title.lower(), []) if s.id not in taken]
        if c.id is not None or named.count(c.title.lower()) != 1 or len(same) != 1:
            continue
        was = same[0]
        history = was.status != "pending" or was.id in ran
        if history and was.prompt != c.prompt and was.position != order[d.id]:
            runs = ", with runs" if was.id in ran else ""
            raise SpecFileError(
                f"{path}:{c.line}: chunk {n} {c.title!r} has no id, and another prompt and "
                f"position than the spec's chunk of that title (position {was.position}, "
                f"{was.status}{runs}): are they the same chunk? nothing imported (edit the "
                "spec's export instead, whose chunks carry their ids: `specwright spec export "
                f"{_slug(store, spec_id)} -o FILE`)"
            )
        c.id = was.id


def renumbered(drafts: list[Any], path: Path | str) -> list[str]:
    """A warning when the file's chunks are stored in another order than written: each chunk
    goes after the chunks it depends on, so `chunk list` and `run SPEC:N` number them so."""
    from specwright.drafts import topological

    order = {d.id: n for n, d in enumerate(topological(drafts), 1)}
    moved = [(n, d) for n, d in enumerate(drafts, 1) if order[d.id] != n]
    if not moved:
        return []
    said = ", ".join(f"{n} {d.title[:40]!r} is now {order[d.id]}" for n, d in moved[:10])
    more = f" and {len(moved) - 10} more" if len(moved) > 10 else ""
    return [f"{path}: chunks renumbered to come after the chunks they depend on: {said}{more}"]


_RAN = (
    "SELECT chunk_id FROM runs WHERE spec_id = ? AND chunk_id IS NOT NULL "
    "UNION SELECT chunk_id FROM executions WHERE spec_id = ? AND chunk_id IS NOT NULL"
)


def _slug(store: Store, spec_id: str) -> str:
    return str(store.query("SELECT slug FROM specs WHERE id = ?", [spec_id])[0][0])


def by_slug(
    store: Store, project_id: str, path: Path | str, parsed: ParsedSpec, slug: str
) -> tuple[str, str] | None:
    """The spec of this project (id, slug) a file naming none of this database's ids is: the
    one of its slug; else, for a file that sets no ``slug:`` (its title makes one), a spec of
    its title: the one it was last imported from or exported to, else the only one whose slug
    is the title's by the rule before slugs kept every script's letters (a title in Japanese
    was ``spec``): imported again, such a file was a second spec. Never one of another title
    (a scratch file reused for the next spec would replace the last one's text). A slug made of no letter or
    digit matches no other title's spec (a file titled 🎉 replaced the text of '!!!')."""
    import re

    from specwright import fingerprints
    from specwright.model import slugify

    specs = store.query("SELECT id, slug, title FROM specs WHERE project_id = ?", [project_id])
    # a title or slug without a letter or digit (🎉, ...) makes `spec`, which names no spec
    nameless = slugify(f"{parsed.slug or parsed.title} x") == "x"
    found = [(str(i), s) for i, s, _ in specs if s == slug and not nameless]
    if found or (parsed.slug and not nameless):
        return found[0] if found else None
    last = fingerprints.spec_of(store, path)
    found = [(str(i), s) for i, s, t in specs if str(i) == last and t == parsed.title]
    older = re.sub(r"[^a-z0-9]+", "-", parsed.title.lower()).strip("-")[:48].rstrip("-") or "spec"
    same = re.compile(rf"{re.escape(older)}(?:-\d+)?")
    alike = [(str(i), s) for i, s, t in specs if t == parsed.title and same.fullmatch(s)]
    return found[0] if found else alike[0] if len(alike) == 1 else None
