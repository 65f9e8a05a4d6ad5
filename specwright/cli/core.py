"""Foundation commands: init, project, spec, chunk, status, db, config."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from specwright.cli.common import (
    Context,
    dollars,
    lower_bounds,
    store_times,
    terminal_safe,
    terminal_safe_lines,
)
from specwright.errors import SpecwrightError, ValidationError
from specwright.model import MAX_BUDGET_USD

_USD = f"0 to {MAX_BUDGET_USD:,} dollars"


def register(sub: Any) -> None:
    p = sub.add_parser("init", help="create .handoff/config.yaml and the database in a project")
    p.add_argument("--force", action="store_true", help="overwrite an existing config.yaml")
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser("status", help="specs, chunks and recent runs of this project")
    p.add_argument(
        "--all",
        action="store_true",
        help="every project in the database (also shown when this one has no specs)",
    )
    p.set_defaults(handler=cmd_status, needs_db=True)

    proj = sub.add_parser("project", help="projects known to the database").add_subparsers(
        dest="sub", metavar="SUBCOMMAND", required=True
    )
    proj.add_parser("list", help="list projects").set_defaults(
        handler=cmd_project_list, needs_db=True
    )

    spec = sub.add_parser("spec", help="create, list, show and delete specs").add_subparsers(
        dest="sub", metavar="SUBCOMMAND", required=True
    )
    p = spec.add_parser("new", help="create a spec")
    p.add_argument("title")
    text = p.add_mutually_exclusive_group()
    text.add_argument("--body", default="", help="the spec text (markdown)")
    text.add_argument("--body-file", metavar="FILE", help="read the spec text from a file")
    p.add_argument("--budget", type=dollars, metavar="USD", help=f"spec budget, {_USD}")
    p.set_defaults(handler=cmd_spec_new)
    spec.add_parser("list", help="list specs").set_defaults(handler=cmd_spec_list, needs_db=True)
    p = spec.add_parser("show", help="a spec with its chunks")
    p.add_argument("spec", help="spec slug, id or id prefix")
    p.set_defaults(handler=cmd_spec_show, needs_db=True)
    p = spec.add_parser("delete", help="delete a spec (refused if it has runs, unless --force)")
    p.add_argument("spec", help="spec slug, id or id prefix")
    p.add_argument(
        "--force",
        action="store_true",
        help="also delete its runs, executions, events, verifications and reviews",
    )
    p.set_defaults(handler=cmd_spec_delete, needs_db=True)
    p = spec.add_parser("export", help="write a spec to .handoff/specs/<slug>.md")
    p.add_argument("spec", help="spec slug, id or id prefix")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead ('-' for stdout)")
    p.add_argument(
        "--force", action="store_true", help="overwrite a file with edits that were not imported"
    )
    p.set_defaults(handler=cmd_spec_export, needs_db=True)
    p = spec.add_parser("import", help="create or update a spec from a spec file")
    p.add_argument("file", help="a spec file (front matter + markdown; see `spec export`)")
    p.add_argument(
        "--replace",
        action="store_true",
        help="the file replaces the stored spec even when that loses something: a spec of its "
        "slug with runs (the file has no id), changes made since the file was written",
    )
    p.set_defaults(handler=cmd_spec_import)

    chunk = sub.add_parser("chunk", help="add and list a spec's chunks").add_subparsers(
        dest="sub", metavar="SUBCOMMAND", required=True
    )
    p = chunk.add_parser("add", help="add a chunk to a spec")
    p.add_argument("spec", help="spec slug, id or id prefix")
    p.add_argument("title")
    p.add_argument("--prompt", default="", help="what the agent should do")
    p.add_argument(
        "--depends-on",
        action="append",
        default=[],
        metavar="CHUNK",
        help="a chunk of the same spec (position, SPEC:POSITION or id) this one needs first; "
        "repeatable",
    )
    p.add_argument(
        "--accept",
        action="append",
        default=[],
        metavar="CHECK",
        help="an acceptance check; repeatable",
    )
    p.add_argument(
        "--file",
        action="append",
        default=[],
        dest="files",
        metavar="PATH",
        help="a file this chunk is expected to change; repeatable",
    )
    p.add_argument("--budget", type=dollars, metavar="USD", help=f"chunk budget, {_USD}")
    p.set_defaults(handler=cmd_chunk_add, needs_db=True)
    p = chunk.add_parser("list", help="list a spec's chunks")
    p.add_argument("spec", help="spec slug, id or id prefix")
    p.set_defaults(handler=cmd_chunk_list, needs_db=True)

    db = sub.add_parser("db", help="database maintenance").add_subparsers(
        dest="sub", metavar="SUBCOMMAND", required=True
    )
    db.add_parser("migrate", help="apply pending schema migrations").set_defaults(
        handler=cmd_db_migrate
    )
    p = db.add_parser("schema", help="print the schema as markdown (docs/schema.md)")
    p.set_defaults(handler=cmd_db_schema)
    p = db.add_parser("rebuild", help="rebuild the database from the journals")
    p.add_argument(
        "--output",
        metavar="PATH",
        help="write the rebuilt database here instead of replacing the current one",
    )
    p.set_defaults(handler=cmd_db_rebuild)

    cfg = sub.add_parser("config", help="show the resolved configuration").add_subparsers(
        dest="sub", metavar="SUBCOMMAND", required=True
    )
    cfg.add_parser("show", help="print the resolved config").set_defaults(handler=cmd_config_show)


# --- handlers -------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace, ctx: Context) -> int:
    from specwright.config import CONFIG_RELPATH, DEFAULT_YAML, load, unresolved_link

    root = ctx.project_dir
    if not root.is_dir():
        raise SpecwrightError(f"{root}: not a directory")
    path = root / CONFIG_RELPATH
    wrote = False
    if not path.exists() and not args.force:
        load(root)  # a .handoff/config.yml is refused, not hidden behind a new config.yaml
    if not path.exists() or args.force:
        try:  # a symbolic link there is written through, as a spec file's is
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(DEFAULT_YAML, encoding="utf-8")
        except OSError as exc:
            why = unresolved_link(path) if path.is_symlink() else exc.strerror or str(exc)
            if path.parent.exists() and not path.parent.is_dir():  # it said "File exists"
                why = f"{path.parent} is a file; expected a folder there"
            raise SpecwrightError(f"{path}: cannot write the config: {why}") from None
        wrote = True
    load(root)  # validate what is there
    ignored = _ignore_data_dir(root)
    applied = ctx.store.migrate()
    project = ctx.project()
    ctx.emit(
        {
            "project": project.name,
            "root": project.root,
            "config": f"{path} ({'written' if wrote else 'kept'})",
            "database": str(ctx.db_path) if ctx.json else ctx.db_shown(),
            "schema_version": ctx.store.schema_version(),
            "migrations_applied": applied,
            ".gitignore": "data/ added" if ignored else "unchanged",
        }
    )
    if not ctx.json:
        _say_what_to_commit(root)
    return 0


def _say_what_to_commit(root: Path) -> None:
    """`run` and `run-all` need a clean work tree (they roll failed attempts back with git): say
    so when init left its own files uncommitted."""
    from specwright import gitops

    try:
        dirty = gitops.dirty_files(root)
    except gitops.GitError:  # not a git repository (yet): say so now, not at the first run
        print(
            f"note: {root} is not a git repository; `specwright run`/`run-all` need one "
            "(git init, then commit)",
            file=sys.stderr,
        )
        return
    mine = [f for f in dirty if f == ".gitignore" or f.startswith(".handoff/")]
    if mine:
        print(
            "next: commit these before `specwright run`/`run-all` (they need a clean work "
            f"tree): git add {' '.join(sorted({f.split('/')[0] for f in mine}))} && "
            "git commit -m 'Specwright config'",
            file=sys.stderr,
        )


def _ignore_data_dir(root: Path) -> bool:
    """Keep the database and journals out of git (rollbacks never touch ignored files)."""
    gitignore = root / ".gitignore"
    try:  # bytes: git reads any encoding, and so must this (a Latin-1 comment, say)
        lines = gitignore.read_bytes().splitlines() if gitignore.exists() else []
        if any(line.strip() in (b"data/", b"/data/", b"data", b"/data") for line in lines):
            return False
        with gitignore.open("ab") as fh:
            if lines and lines[-1].strip():
                fh.write(b"\n")
            fh.write(b"# Specwright's database and journals\ndata/\n")
    except OSError as exc:
        raise SpecwrightError(f"{gitignore}: cannot update it: {exc.strerror or exc}") from None
    return True


def cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    from specwright.catalog import list_specs
    from specwright.queries import EXEC_SUM, EXEC_UNPRICED
    from specwright.recovery import say_which_runs_died

    store = ctx.store
    with store.connect():
        project = ctx.project(create=False)
        every = bool(args.all) or not list_specs(store, project)
        where = "" if every else "WHERE s.project_id = ?"
        params = [] if every else [project.id]
        # one grouped query for every spec (not two per spec: a busy database has hundreds)
        specs = store.query_dicts(
            f"""
            WITH counts AS (
                SELECT spec_id, status, count(*) AS n FROM chunks GROUP BY ALL
            ), progress AS (
                SELECT spec_id, sum(n)::INTEGER AS chunks,
                       string_agg(status || ':' || n, ' ' ORDER BY status) AS progress
                FROM counts GROUP BY spec_id
            ), costs AS (  -- unknown, not 0, when none is known; a lower bound when some are
                SELECT spec_id, {EXEC_SUM} AS cost_usd, count(*) FILTER (WHERE {EXEC_UNPRICED})
                AS unpriced FROM executions e WHERE spec_id IS NOT NULL GROUP BY spec_id
            )
            SELECT CASE WHEN (SELECT count(*) FROM projects o WHERE o.name = p.name) > 1
                   THEN p.name || ' (' || p.root || ')' ELSE p.name END AS project,
                   s.slug, s.title, s.status,
                   coalesce(g.chunks, 0) AS chunks, coalesce(g.progress, '') AS progress,
                   c.cost_usd, coalesce(c.unpriced, 0) AS unpriced
            FROM specs s JOIN projects p ON p.id = s.project_id
            LEFT JOIN progress g ON g.spec_id = s.id
            LEFT JOIN costs c ON c.spec_id = s.id
            {where}
            ORDER BY s.created_at
            """,
            params,
        )
        runs = store.query_dicts(
            "SELECT r.id, s.slug AS spec, r.kind, r.status, r.executor, r.started_at, r.reason, "
            f"r.pid, r.host, r.heartbeat_at FROM runs r JOIN specs s ON s.id = r.spec_id {where} "
            "ORDER BY r.started_at DESC LIMIT 5",
            params,
        )
    say_which_runs_died(runs)
    if ctx.json:
        ctx.emit(
            {
                "project": project.name,
                "database": str(ctx.db_path),
                "all_projects": every,
                "specs": specs,
                "recent_runs": store_times(runs),
            }
        )
        return 0
    print(f"project  {project.name}  ({project.root})\ndatabase {ctx.db_shown()}")
    if every and not args.all and specs:
        print("(no specs in this project yet: showing every project in the database)")
    print()
    columns = ["slug", "title", "status", "chunks", "progress", "cost_usd", "unpriced"]
    ctx.emit(lower_bounds(specs), ["project", *columns] if every else columns, title="Specs")
    print()
    ctx.emit(
        [{**r, "id": r["id"][:13]} for r in store_times(runs, local=True)],
        ["id", "spec", "kind", "status", "executor", "started_at", "reason"],
        title="Recent runs",
    )
    return 0


def cmd_project_list(args: argparse.Namespace, ctx: Context) -> int:
    from specwright.catalog import list_projects

    rows = store_times([asdict(p) for p in list_projects(ctx.store)], local=not ctx.json)
    ctx.emit(rows, ["name", "root", "id", "created_at"])
    return 0


def cmd_spec_new(args: argparse.Namespace, ctx: Context) -> int:
    from specwright.catalog import create_spec
    from specwright.cli.plan import read_text
    from specwright.specfile import MAX_FILE_BYTES

    body = read_text(args.body_file, "--body-file") if args.body_file else args.body
    if "\x00" in body or len(body.encode()) > MAX_FILE_BYTES:  # what `spec import` refuses
        where = f"--body-file {args.body_file}" if args.body_file else "--body"
        raise ValidationError(
            f"{where}: expected text without NUL characters, at most {MAX_FILE_BYTES:,} bytes "
            "(as a spec file: its export could not be imported again); nothing created"
        )
    spec = create_spec(ctx.store, ctx.project(), args.title, body, budget_usd=args.budget)
    ctx.emit(_spec_dict(spec) if ctx.json else f"created spec {spec.slug} ({spec.id})")
    return 0


def _spec_dict(spec: Any, local: bool = False) -> dict[str, Any]:
    return dict(store_times(asdict(spec), local))


def cmd_spec_list(args: argparse.Namespace, ctx: Context) -> int:
    from specwright.catalog import list_specs
    from specwright.recovery import gone_reasons

    with ctx.store.connect():
        project = ctx.project(create=False)
        specs = list_specs(ctx.store, project)
        others = 0 if specs or ctx.json else ctx.store.query("SELECT count(*) FROM specs")[0][0]
        gone = {
            s.id: gone_reasons(ctx.store, s.id).get(None) for s in specs if s.status == "running"
        }
    columns = ["slug", "title", "status", "id", "created_at"]
    shown = [{**_spec_dict(s, not ctx.json), "reason": gone.get(s.id)} for s in specs]
    ctx.emit(shown, [*columns, "reason"] if any(gone.values()) else columns)
    if others:
        print(
            f"(no specs in this project, {project.root}; the database holds {others} "
            f"spec{'s' if others != 1 else ''} of other projects: `specwright status --all` "
            "lists them, `-C DIR` works in one)"
        )
    return 0


def cmd_spec_show(args: argparse.Namespace, ctx: Context) -> int:
    from specwright.catalog import list_chunks
    from specwright.recovery import gone_reasons

    with ctx.store.connect():
        spec = ctx.use_spec(args.spec)
        chunks = list_chunks(ctx.store, spec.id)
        gone = gone_reasons(ctx.store, spec.id)
    if ctx.json:
        listed = [{**store_times(asdict(c)), "reason": gone.get(c.id)} for c in chunks]
        ctx.emit({**_spec_dict(spec), "reason": gone.get(None), "chunks": listed})
        return 0
    # a title and body can be a planner model's words: no terminal escapes
    print(terminal_safe(f"{spec.title}  [{spec.slug}, {spec.status}]  {spec.id}"))
    if None in gone:
        print(f"(its run: {gone[None]})")
    if spec.body:
        print()
        print(terminal_safe_lines(spec.body.rstrip()))
    print()
    ctx.emit(
        _chunk_rows(chunks, gone),
        ["pos", "title", "status", "iterations", "depends_on", "id", *_reason(chunks, gone)],
        title="Chunks",
    )
    return 0


def _chunk_rows(chunks: list[Any], gone: dict[str | None, str]) -> list[dict[str, Any]]:
    pos = {c.id: c.position for c in chunks}
    return [
        {
            "pos": c.position,
            "title": c.title,
            "status": c.status,
            "iterations": c.iterations,
            "depends_on": [pos.get(d, d[:8]) for d in c.depends_on],
            "id": c.id,
            "verdict": c.verdict,
            "reason": gone.get(c.id),
        }
        for c in chunks
    ]


def _reason(chunks: list[Any], gone: dict[str | None, str]) -> list[str]:
    """The reason column, shown when a chunk's run was left running by a process now gone."""
    return ["reason"] if any(c.id in gone for c in chunks) else []


def cmd_spec_delete(args: argparse.Namespace, ctx: Context) -> int:
    from specwright.catalog import delete_spec, get_spec

    spec = get_spec(ctx.store, args.spec, ctx.project())
    counts = delete_spec(ctx.store, spec.id, force=args.force)
    removed = {k: v for k, v in counts.items() if v}
    ctx.emit(
        {"deleted": spec.slug, "rows": removed}
        if ctx.json
        else f"deleted spec {spec.slug}: " + ", ".join(f"{v} {k}" for k, v in removed.items())
    )
    return 0


def cmd_spec_export(args: argparse.Namespace, ctx: Context) -> int:
    from specwright.cli.plan import cmd_spec_export as run

    return run(args, ctx)


def cmd_spec_import(args: argparse.Namespace, ctx: Context) -> int:
    from specwright.cli.plan import cmd_spec_import as run

    return run(args, ctx)


def cmd_chunk_add(args: argparse.Namespace, ctx: Context) -> int:
    from specwright.catalog import add_chunk, get_spec

    spec = get_spec(ctx.store, args.spec, ctx.project())
    chunk = add_chunk(
        ctx.store,
        spec,
        args.title,
        args.prompt,
        acceptance=args.accept,
        files=args.files,
        depends_on=args.depends_on,
        budget_usd=args.budget,
    )
    ctx.emit(
        store_times(asdict(chunk))
        if ctx.json
        else f"added chunk {chunk.position} {chunk.title!r} to {spec.slug} ({chunk.id})"
    )
    return 0


def cmd_chunk_list(args: argparse.Namespace, ctx: Context) -> int:
    from specwright.catalog import list_chunks
    from specwright.recovery import gone_reasons

    with ctx.store.connect():
        spec = ctx.use_spec(args.spec)
        chunks = list_chunks(ctx.store, spec.id)
        gone = gone_reasons(ctx.store, spec.id)
    if ctx.json:
        ctx.emit([{**store_times(asdict(c)), "reason": gone.get(c.id)} for c in chunks])
    else:
        columns = ["pos", "title", "status", "iterations", "verdict", "depends_on", "id"]
        ctx.emit(_chunk_rows(chunks, gone), [*columns, *_reason(chunks, gone)])
    return 0


def cmd_db_migrate(args: argparse.Namespace, ctx: Context) -> int:
    applied = ctx.store.migrate()
    ctx.emit(
        {
            "database": str(ctx.db_path),
            "applied": applied,
            "schema_version": ctx.store.schema_version(),
        }
    )
    return 0


def cmd_db_schema(args: argparse.Namespace, ctx: Context) -> int:
    from specwright.schemadoc import generate, structure

    if ctx.json:
        ctx.emit(structure())
    else:
        print(generate(), end="")
    return 0


def cmd_db_rebuild(args: argparse.Namespace, ctx: Context) -> int:

    store = ctx.store
    from specwright.rebuild import refuse_no_database

    refuse_no_database(store.path)
    if not store.journal.files():
        raise SpecwrightError(f"{store.journal.root}: no journals to rebuild from")
    if args.output:
        from specwright.rebuild import copy_out

        target = Path(args.output).resolve()
        count = copy_out(store, target)
        ctx.emit({"rebuilt": str(target), "ops": count})
        return 0
    _refuse_while_running(store)
    tmp = store.path.with_name(store.path.name + ".rebuild")
    alone = None
    try:
        try:
            alone = _rebuilding_alone(tmp)
            for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):  # of a killed rebuild
                leftover.unlink(missing_ok=True)
        except OSError as exc:  # a folder that cannot be written (a read-only mount)
            raise SpecwrightError(
                f"{tmp}: cannot write beside the database ({exc.strerror}); "
                "`specwright db rebuild --output PATH` rebuilds it into another file"
            ) from None
        return _rebuild_in_place(store, tmp, ctx)
    finally:
        if alone is not None:  # removed while still held: a rebuild that opened it locks anew
            with contextlib.suppress(OSError):
                os.unlink(alone.name)
            alone.close()


def _refuse_while_running(store: Any) -> None:
    """A run under way writes into the database being replaced: what it writes after the
    journals are read would be in the old file (the .bak) only, an execution left running."""
    from specwright.errors import StoreError
    from specwright.recovery import live_runs

    try:
        runs = live_runs(store)
    except StoreError:  # damaged: nothing else can be using it either
        return
    for run in runs[:1]:
        raise SpecwrightError(
            f"{store.path}: run {str(run['id'])[:13]} of spec {run['slug']!r} (pid {run['pid']}) "
            "writes into it; rebuild once it ends, or `specwright db rebuild --output PATH`"
        )


def _rebuilding_alone(tmp: Path) -> Any:
    """An exclusive lock on ``<tmp>.lock`` for this rebuild (the kernel lets go if it is
    killed): a second rebuild at once would delete the first one's file under it, and the first
    would then move the second's half-built database into place."""
    import fcntl

    path = tmp.with_name(tmp.name + ".lock")
    while True:
        lock = open(path, "a")  # noqa: SIM115 - the caller holds it
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise SpecwrightError(
                f"{tmp.with_suffix('')}: another `specwright db rebuild` is rebuilding it; "
                "wait for it to finish"
            ) from None
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(lock.fileno()), os.stat(path)):
                return lock
        lock.close()  # the file of a rebuild that ended (and removed it) since it was opened


def _rebuild_in_place(store: Any, tmp: Path, ctx: Context) -> int:
    count = store.rebuild_into(tmp)
    backup = _free_backup(store.path)
    store.release()  # checkpointed and closed before the file moves
    if store.path.exists():
        os.replace(store.path, backup)
        wal = store.path.with_name(store.path.name + ".wal")
        if wal.exists():
            os.replace(wal, backup.with_name(backup.name + ".wal"))
    os.replace(tmp, store.path)
    ctx.emit(
        {
            "rebuilt": str(store.path),
            "ops": count,
            "previous": str(backup) if backup.exists() else None,
        }
    )
    return 0


def _free_backup(db: Path) -> Path:
    """Where the replaced database goes: ``<name>.bak``, or ``.bak.1``, ``.bak.2``... when an
    earlier rebuild's backup is there (it may be the only copy of a damaged original)."""
    backup = db.with_name(db.name + ".bak")
    n = 0
    while backup.exists() or backup.with_name(backup.name + ".wal").exists():
        n += 1
        backup = db.with_name(f"{db.name}.bak.{n}")
    return backup


def cmd_config_show(args: argparse.Namespace, ctx: Context) -> int:
    from specwright.cli.config_show import show

    return show(ctx)
