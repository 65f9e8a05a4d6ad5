"""`specwright run CHUNK`: take one chunk through the Ralph loop, with live progress.

Also here: ``stop_on_sigterm``, which every command runs under (see ``specwright.cli.main``)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from specwright import interrupts
from specwright.cli.common import ITERATIONS, Context, ProgressPrinter, seconds, terminal_safe
from specwright.errors import SpecwrightError
from specwright.interrupts import relayed_to_main
from specwright.model import cost_text

if TYPE_CHECKING:
    from specwright.loop import ChunkResult, Progress
    from specwright.model import Chunk

log = logging.getLogger(__name__)

EXIT_CODES = {"shipped": 0, "cancelled": 130}
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be so it gets the same cleanup; the run's recorded
    reason names ``signal_name`` (``specwright.loop.lines.interrupted_by``)."""

    signal_name = "SIGTERM"


class HungUp(Terminated):
    """SIGHUP (the terminal closed, an SSH session dropped): stops a run as SIGTERM does; its
    default action killed the process with no cleanup, like kill -9."""

    signal_name = "SIGHUP"


def stop_on_sigterm(
    handler: Callable[[argparse.Namespace, Context], int], args: argparse.Namespace, ctx: Context
) -> int:
    """Run a command so that SIGTERM stops it the way Ctrl-C does (agent killed, tree rolled
    back, run marked cancelled), then exit 143; SIGHUP too (exit 129), unless it is ignored
    (nohup). Later signals are ignored: the cleanup they would cut short (leaving the run
    recorded as running) is under way."""
    if threading.current_thread() is not threading.main_thread():
        return handler(args, ctx)  # signal handlers belong to the main thread
    received = threading.Event()
    stopping = threading.Event()
    codes = {signal.SIGTERM: EXIT_TERMINATED, signal.SIGHUP: 128 + signal.SIGHUP}
    exit_code = [EXIT_TERMINATED]

    def on_sigterm(signum: int, frame: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            received.set()
            exit_code[0] = codes.get(signal.Signals(signum), EXIT_TERMINATED)
            interrupts.interrupt_queries()  # run here from inside a query, it goes on otherwise
            raise interrupts.raising(HungUp if signum == signal.SIGHUP else Terminated)

    def on_sigint(signum: int, frame: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            interrupts.interrupt_queries()
            raise interrupts.raising(KeyboardInterrupt)

    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_IGN:  # started with SIGTERM ignored: it stays ignored
        return handler(args, ctx)
    previous_int = signal.getsignal(signal.SIGINT)
    previous_hup = signal.getsignal(signal.SIGHUP)
    relayed = [signal.SIGTERM]
    signal.signal(signal.SIGTERM, on_sigterm)
    if previous_hup == signal.SIG_DFL:  # not under nohup, nor a handler a caller set
        signal.signal(signal.SIGHUP, on_sigterm)
        relayed.append(signal.SIGHUP)
    if previous_int is signal.default_int_handler:  # not one a caller set, nor SIG_IGN
        signal.signal(signal.SIGINT, on_sigint)
        relayed.append(signal.SIGINT)
    try:
        # a signal the kernel handed to another thread reaches the main thread all the same
        with relayed_to_main(relayed, stopping):
            code = handler(args, ctx)
    except KeyboardInterrupt:
        if not received.is_set():
            raise
        with contextlib.suppress(OSError):  # a terminal that hung up takes no more output
            print("specwright: terminated", file=sys.stderr)
        return exit_code[0]
    finally:
        interrupts.forget()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGHUP, previous_hup)
        # once stopping, the process is on its way out: a late Ctrl-C would only interrupt its
        # exit (the database's last checkpoint) with a traceback
        ours = previous_int is signal.default_int_handler
        signal.signal(signal.SIGINT, signal.SIG_IGN if stopping.is_set() and ours else previous_int)
    return exit_code[0] if received.is_set() else code


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run one chunk: execute, verify, review, and commit or retry",
        description="Take one chunk through the loop on the spec's branch specwright/<slug>. "
        "A dependency that has not shipped is named in a warning: the chunk runs without its "
        "summary. Exit 0 when it ships, 1 when it does not, 130 when cancelled (143 on SIGTERM, "
        "129 on SIGHUP).",
    )
    p.add_argument("chunk", help="chunk: SPEC:POSITION (e.g. demo:2), an id or an id prefix")
    p.add_argument("--executor", metavar="NAME", help="executor from config (default: defaults)")
    p.add_argument("--reviewer", metavar="NAME", help="reviewer from config: checks, llm, ...")
    p.add_argument(
        "--max-iterations", type=ITERATIONS, metavar="N", help="attempts before giving up, 1-1000"
    )
    p.add_argument(
        "--rollback",
        choices=("rollback", "keep"),
        help="after a rejected attempt: reset to the base (default) or build on it",
    )
    p.add_argument(
        "--wall-time",
        type=seconds(1, 7 * 86400),
        metavar="SECONDS",
        help="limit for all attempts (1 s to a week)",
    )
    p.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip verifying the base commit first (every failure then counts)",
    )
    p.add_argument("--force", action="store_true", help="run even if the chunk has already shipped")
    p.set_defaults(handler=cmd_run)


class _Printer(ProgressPrinter):
    """One chunk: iterations, tool calls, verification, review."""

    def line(self, p: Progress) -> str:
        if p.kind == "event":
            return f"    · {p.message}"
        if p.kind == "iteration":
            return f"── {p.message}"
        return f"  {p.message}"


def cmd_run(args: argparse.Namespace, ctx: Context) -> int:
    from specwright.agents.base import make_executor, preflight
    from specwright.catalog import get_chunk, get_spec, list_chunks
    from specwright.loop import run_chunk
    from specwright.recovery import ensure_tree_free, recover_interrupted
    from specwright.review import check_key, make_reviewer

    store = ctx.store
    chunk = get_chunk(store, args.chunk)
    ctx.adopt_project(
        str(store.query("SELECT project_id FROM specs WHERE id = ?", [chunk.spec_id])[0][0])
    )
    config = ctx.config
    if chunk.status == "shipped" and not args.force:
        raise SpecwrightError(
            f"chunk {args.chunk!r} ({chunk.title}) has already shipped; use --force to run it again"
        )
    executor = make_executor(config.executor(args.executor))
    preflight(executor)  # a missing agent binary or a dead server: one line, nothing recorded
    reviewer = make_reviewer(config, args.reviewer, store)
    check_key(reviewer)  # an llm reviewer without its key: the same
    # as run-all does: a run killed mid-attempt (its agent too) is marked and its tree rolled back
    if recover_interrupted(store, get_spec(store, chunk.spec_id), ctx.project_dir):
        chunk = get_chunk(store, chunk.id)
    ensure_tree_free(store, get_spec(store, chunk.spec_id), ctx.project_dir)
    _warn_unshipped_deps(chunk, list_chunks(store, chunk.spec_id))
    printer = None if ctx.json else _Printer(sys.stdout)
    if printer is not None:
        label = " (scripted: offline, deterministic)" if executor.backend == "scripted" else ""
        print(
            f"chunk {chunk.position} {chunk.title!r}: executor {executor.name}{label}, "
            f"reviewer {reviewer.name}",
            flush=True,
        )
    result = run_chunk(
        store,
        config,
        ctx.project_dir,
        chunk,
        executor=executor,
        reviewer=reviewer,
        max_iterations=args.max_iterations,
        on_progress=printer,
        rollback_policy=args.rollback,
        wall_time_s=args.wall_time,
        baseline=not args.no_baseline,
    )
    if result.reason.startswith("check_broken:") and result.iterations == 0:
        # as run-all says it: a check that cannot run stops the run before the agent, one line
        raise SpecwrightError(f"no agent ran: {result.reason}")
    cost = _run_cost(store, result.run_id)
    if ctx.json:
        ctx.emit({**_as_dict(result, executor.backend), **cost})
    else:
        _print_result(result, cost_text(cost["cost_usd"], cost["unpriced"]))
    return EXIT_CODES.get(result.status, 1)


def _run_cost(store: Any, run_id: str) -> dict[str, Any]:
    """The run's cost as the usage views count it: unknown (None), not 0, when none of its
    calls has a known cost; ``unpriced`` how many have none (then the cost is a lower bound)."""
    from specwright.queries import EXEC_SUM, EXEC_UNPRICED

    sql = f"SELECT {EXEC_SUM}, count(*) FILTER (WHERE {EXEC_UNPRICED}) FROM executions e "
    cost, unpriced = store.query(sql + "WHERE e.run_id = ?", [run_id])[0]
    return {"cost_usd": cost, "unpriced": unpriced}


def _warn_unshipped_deps(chunk: Chunk, chunks: list[Chunk]) -> None:
    """Warn (not refuse: a chunk is re-run alone on purpose) when a dependency has not shipped:
    its summary, what a dependent is told about it, is missing from the prompt."""
    unshipped = [c for c in chunks if c.id in chunk.depends_on and c.status != "shipped"]
    if not unshipped:
        return
    names = ", ".join(f"chunk {c.position} {c.title!r} ({c.status})" for c in unshipped)
    without = "that chunk's summary" if len(unshipped) == 1 else "those chunks' summaries"
    log.warning(
        "chunk %s %r depends on %s: it runs without %s", chunk.position, chunk.title, names, without
    )


def _as_dict(result: ChunkResult, backend: str) -> dict[str, Any]:
    from dataclasses import asdict

    return {**asdict(result), "backend": backend}


def _print_result(r: ChunkResult, cost: str) -> None:
    if r.shipped:
        print(
            f"shipped in {r.iterations} iteration(s): commit {(r.commit or '')[:10]} on "
            f"{r.branch} (cost {cost})"
        )
    else:
        reason = r.reason.removeprefix(f"{r.status}: ")  # its status is said once
        print(
            f"{r.status} after {r.iterations} iteration(s): {terminal_safe(reason)} "
            f"(work tree at {(r.head_commit or '?')[:10]}, cost {cost})"
        )
