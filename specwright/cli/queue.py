"""`specwright queue add|list|cancel` and `specwright worker`: run-all in the background."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from specwright.cli.common import ITERATIONS, PARALLEL, Context, seconds, store_times


def register(sub: Any) -> None:
    q = sub.add_parser("queue", help="queue run-alls for a background worker").add_subparsers(
        dest="sub", metavar="SUBCOMMAND", required=True
    )
    p = q.add_parser("add", help="put a run-all of SPEC on the queue")
    p.add_argument("spec", help="spec slug or id")
    p.add_argument("--executor", metavar="NAME", help="executor from config (default: defaults)")
    p.add_argument("--reviewer", metavar="NAME", help="reviewer from config")
    p.add_argument(
        "--parallel", type=PARALLEL, metavar="N", help="chunks at once, 1-256 (default: config, 1)"
    )
    p.add_argument(
        "--max-iterations", type=ITERATIONS, metavar="N", help="attempts per chunk, 1-1000"
    )
    p.set_defaults(handler=cmd_add)
    p = q.add_parser("list", help="queued, running and finished items")
    p.add_argument("--all", action="store_true", help="include finished and cancelled items")
    p.set_defaults(handler=cmd_list, needs_db=True)
    p = q.add_parser("cancel", help="drop a queued item or stop a running one")
    p.add_argument("item", help="queue item id or id prefix")
    p.set_defaults(handler=cmd_cancel, needs_db=True)

    p = sub.add_parser(
        "worker",
        help="run queued work until stopped (Ctrl-C)",
        description="Claim queued run-alls and run them, one at a time or "
        "--concurrency N at once (two items of one project never at once: they share its work "
        "tree). Ctrl-C or SIGTERM stops the items under way and queues them again, as it does "
        "the items of a worker that died; `specwright queue cancel` drops one for good.",
    )
    p.add_argument(
        "--concurrency",
        type=PARALLEL,
        default=1,
        metavar="N",
        help="items at once, 1-256 (default 1)",
    )
    p.add_argument(
        "--once", action="store_true", help="stop when nothing is queued and its own items are done"
    )
    p.add_argument(
        "--poll",
        type=seconds(0.1, 3600),  # each poll opens the database: at 0.01 s, half a CPU busy
        default=1.0,
        metavar="SECONDS",
        help="how often to look for work and for cancel requests (0.1 to 3600; default 1)",
    )
    # a worker in the wrong folder would make an empty database there and wait on it for good
    p.set_defaults(handler=cmd_worker, needs_db=True)


def cmd_add(args: argparse.Namespace, ctx: Context) -> int:
    from specwright import queue

    spec = ctx.use_spec(args.spec)
    item = queue.add(
        ctx.store,
        spec,
        ctx.project_dir,
        executor=args.executor,
        reviewer=args.reviewer,
        parallel=args.parallel,
        max_iterations=args.max_iterations,
    )
    ctx.emit(
        {"id": item, "spec": spec.slug, "status": "queued"}
        if ctx.json
        else f"queued {spec.slug} as {item} (start a worker: `specwright worker`)"
    )
    return 0


def cmd_list(args: argparse.Namespace, ctx: Context) -> int:
    from specwright import queue

    statuses = None if args.all else ("queued", "running")
    # the store's times are UTC: said so in --json (an offset), local with its offset in the
    # table (one read in another zone was taken for local time)
    rows: list[dict[str, Any]] = store_times(queue.items(ctx.store, statuses), local=not ctx.json)
    if ctx.json:
        ctx.emit(rows)
    else:
        ctx.emit(
            [{**r, "id": r["id"][:13], "project": _end(r["project"])} for r in rows],
            ["id", "spec", "project", "status", "cancel_requested", "created_at", "reason"],
        )
    return 0


def _end(path: str | None, limit: int = 60) -> str | None:
    """A long folder path by its end, which tells projects apart (the table cuts the end)."""
    return path if path is None or len(path) <= limit else "…" + path[-(limit - 1) :]


def cmd_cancel(args: argparse.Namespace, ctx: Context) -> int:
    from specwright import queue

    state = queue.cancel(ctx.store, args.item)
    ctx.emit({"item": args.item, "state": state} if ctx.json else f"{args.item}: {state}")
    return 0


def cmd_worker(args: argparse.Namespace, ctx: Context) -> int:
    import threading

    from specwright import queue

    stop = threading.Event()
    store = ctx.store  # a missing database refused before the worker says it waits

    def line(text: str) -> None:
        if not ctx.json:
            print(text, file=sys.stdout, flush=True)

    line(
        f"worker {__import__('os').getpid()}: waiting for queued work in {ctx.db_shown()} "
        f"(concurrency {args.concurrency}; Ctrl-C stops)"
    )
    # Ctrl-C or SIGTERM: work() stops the items under way (their runs recorded cancelled, the
    # items queued again for the next worker) and waits for them before this exits
    count = queue.work(
        store,
        concurrency=args.concurrency,
        once=args.once,
        poll_s=args.poll,
        stop=stop,
        on_line=line,
    )
    ctx.emit({"items_run": count} if ctx.json else f"worker: ran {count} item(s)")
    return 0
