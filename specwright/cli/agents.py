"""`specwright agents ...`: list the configured agents, prove one works, serve OpenCode."""

from __future__ import annotations

import argparse
import re
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specwright.cli.common import seconds
from specwright.errors import AgentError, SpecwrightError

if TYPE_CHECKING:
    from specwright.cli.common import Context

CHECK_PROMPT = "Reply with the single word OK. Do not use any tools."
CHECK_TIMEOUT_S = 300.0  # a check of an executor with a longer timeout_s (30 min by default)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # keeps \t and \n


def register(sub: Any) -> None:
    agents = sub.add_parser("agents", help="coding agents: list, check, serve OpenCode")
    ag = agents.add_subparsers(dest="sub", metavar="SUBCOMMAND", required=True)

    p = ag.add_parser("list", help="configured executors: found or not, where, which version")
    p.set_defaults(handler=cmd_list)

    p = ag.add_parser("check", help="run a one-line task on an executor to prove it works")
    p.add_argument("name", help="executor name from the config")
    p.add_argument("--prompt", default=CHECK_PROMPT, help="the task (default: reply OK)")
    p.add_argument(
        "--workdir", metavar="DIR", help="where the agent runs (default: an empty temp dir)"
    )
    p.add_argument(
        "--timeout",
        type=seconds(1, 86400),
        metavar="S",
        help=f"seconds, 1 to 86400 (default: the executor's timeout_s, at most {CHECK_TIMEOUT_S:g})",
    )
    p.set_defaults(handler=cmd_check)

    p = ag.add_parser(
        "serve-opencode", help="start a local `opencode serve` on 127.0.0.1 until Ctrl-C"
    )
    p.add_argument("--port", type=port, default=4096, help="port (4096; 0 picks a free one)")
    p.add_argument("--dir", metavar="DIR", help="the server's working directory (project root)")
    p.add_argument(
        "--offline",
        action="store_true",
        help="no model catalogue fetch, updates or background plugin installs",
    )
    p.set_defaults(handler=cmd_serve_opencode)


def port(text: str) -> int:
    """An argparse type: a TCP port, or 0 for a free one (opencode took 99999 as 65535 and
    -1 as a free port, and listened there)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return value


def printable(text: str, limit: int = 2000) -> str:
    """Agent output made safe for a terminal: control characters escaped, length bounded."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)
    return text if len(text) <= limit else text[:limit] + f"… (+{len(text) - limit} chars)"


def _probe(config: Any) -> dict[str, Any]:
    from specwright.agents.base import make_executor

    row: dict[str, Any] = {"name": config.name, "type": config.type, "model": config.model}
    try:
        executor = make_executor(config)
    except SpecwrightError as exc:
        return {**row, "found": False, "location": None, "version": None, "detail": str(exc)}
    probe = getattr(executor, "probe", None)
    if probe is None:
        return {**row, "found": True, "location": "built-in", "version": None, "detail": ""}
    try:
        return {**row, **probe()}
    except SpecwrightError as exc:  # OPENCODE_URL that is no URL: this row, not the list
        return {**row, "found": False, "location": None, "version": None, "detail": str(exc)}


def cmd_list(args: argparse.Namespace, ctx: Context) -> int:
    """Each configured executor with whether it can run here."""
    from specwright.config_env import overrides
    from specwright.redact import Redactor

    rows = [_probe(cfg) for cfg in ctx.config.executors.values()]
    default, redact = ctx.config.defaults.executor, Redactor.from_env()
    # where a location came from when not the file (OPENCODE_PATH is no executor's location)
    located = {
        o.executor: o.variable for o in overrides(ctx.config) if o.variable != "OPENCODE_PATH"
    }
    for row in rows:  # `url: http://u:${API_KEY}@host`: the list gets pasted into bug reports
        row["default"] = row["name"] == default
        row["location"] = redact(row["location"]) if row["location"] else row["location"]
        row["location_from"] = located.get(row["name"]) if row["location"] else None
        row["detail"] = redact(row["detail"])
    if ctx.json:
        ctx.emit(rows)
        return 0
    table = [
        {
            "name": r["name"] + (" *" if r["default"] else ""),
            "type": r["type"],
            "model": r["model"],
            "status": "found" if r["found"] else "NOT FOUND",
            "version": r["version"],
            "where": r["location"]
            and r["location"] + (f" (from {r['location_from']})" if r["location_from"] else ""),
        }
        for r in rows
    ]
    ctx.emit(table, columns=["name", "type", "model", "status", "version", "where"])
    for r in rows:
        if r["detail"] and not r["found"]:
            print(f"  {r['name']}: {r['detail']}")
    print("(* = default executor)")
    return 0


def cmd_check(args: argparse.Namespace, ctx: Context) -> int:
    """Run one short task, recorded like any execution; exit 0 when it worked."""
    from specwright.agents.base import Task, make_executor
    from specwright.loop.agent import run_agent
    from specwright.recorder import ExecutionRecorder

    config = ctx.config.executor(args.name)
    executor = make_executor(config)
    script = ({"say": "OK"},) if config.type == "scripted" else None
    with tempfile.TemporaryDirectory(prefix="specwright-check-") as scratch:
        workdir = Path(args.workdir).resolve() if args.workdir else Path(scratch)
        if not workdir.is_dir():
            raise SpecwrightError(f"{workdir}: --workdir is not a directory")
        task = Task(
            prompt=args.prompt,
            workdir=workdir,
            timeout_s=args.timeout or min(config.timeout_s, CHECK_TIMEOUT_S),
            script=script,
            metadata={"title": "agents check"},
        )
        recorder = ExecutionRecorder(
            ctx.store,
            role="executor",
            backend=executor.backend,
            executor=config.name,
            model=config.model,
            prices=ctx.config.prices or None,
        )
        # in a worker, as a run's attempt: a Ctrl-C stops the agent and waits for its outcome,
        # so what it used so far is recorded (run_execution's own would record none of it)
        run = run_agent(
            executor,
            task,
            recorder,
            cancel=threading.Event(),
            deadline=lambda: False,
            observe=lambda _: None,
        )
        if run.outcome is None:  # an AgentError is recorded, raised
            raise run.error or AgentError(run.crash or "the agent ended without an outcome")
        outcome = run.outcome
    usage = outcome.usage
    # the cost as recorded (reported, computed, or unknown when it stopped mid-run), not the
    # agent's own figure: OpenCode's totals read 0 after the abort at a timeout
    ((cost, source),) = ctx.store.query(
        "SELECT cost_usd, cost_source FROM executions WHERE id = ?", [recorder.id]
    )
    result = {
        "executor": config.name,
        "status": outcome.status,
        "exit_reason": outcome.exit_reason,
        "model": outcome.model or config.model,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "cost_usd": cost,
        "cost_source": source,
        "events": recorder.event_count,
        "execution_id": recorder.id,
        "answer": printable(outcome.final_text, 500),
    }
    if outcome.error:
        result["error"] = printable(outcome.error, 500)
    if outcome.retry_after_s is not None:
        result["retry_after_s"] = round(outcome.retry_after_s, 1)
    ctx.emit(result)
    return 0 if outcome.ok else 1


def cmd_serve_opencode(args: argparse.Namespace, ctx: Context) -> int:
    """Start `opencode serve` bound to 127.0.0.1 and keep it running until Ctrl-C."""
    import os

    from specwright.agents.opencode import find_opencode
    from specwright.agents.opencode_server import OFFLINE_ENV, OpenCodeServer
    from specwright.errors import ValidationError

    paths = [c.path for c in ctx.config.executors.values() if c.type == "opencode" and c.path]
    executable = find_opencode(paths[0] if paths else None)
    env = dict(os.environ)
    if args.offline:
        env.update(OFFLINE_ENV)
    cwd = Path(args.dir).resolve() if args.dir else ctx.project_dir
    if not cwd.is_dir():
        raise ValidationError(f"--dir {args.dir}: not a directory")
    server = OpenCodeServer(executable, cwd, env, port=args.port).start()
    try:  # a Ctrl-C as soon as the address is out (before ``wait``) stops it the same way
        print(f"opencode server listening on {server.url} (pid {server.pid}); Ctrl-C stops it")
        print(f"  export OPENCODE_URL={server.url}", flush=True)
        return server.wait()
    except KeyboardInterrupt:
        server.stop()
        return 0
