"""`specwright run-all`, `specwright demo`: a whole spec through the loop, with live progress."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, ClassVar

from specwright.cli.common import (
    ITERATIONS,
    PARALLEL,
    Context,
    ProgressPrinter,
    lower_bounds,
    print_table,
)
from specwright.errors import SpecwrightError
from specwright.model import cost_text

if TYPE_CHECKING:
    from specwright.loop import Progress
    from specwright.runner import RunAllResult

EXIT = {"shipped": 0, "cancelled": 130}

# the columns a run's and a comparison's tables share, after what names the row
_FIGURES = (
    "iterations",
    "verdict",
    "input_tokens",
    "cache_tokens",
    "output_tokens",
    "cost_usd",
    "unpriced",
    "time",
)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run-all",
        help="run every chunk of a spec in dependency order",
        description="Run every chunk that has not shipped, in dependency order (shipped chunks "
        "are skipped, so running it again resumes). Exit 0 when all ship, 1 otherwise.",
    )
    p.add_argument("spec", help="spec slug or id")
    p.add_argument(
        "--executor",
        metavar="NAME",
        action="append",
        help="executor from config (default: defaults); give it twice or more to compare "
        "executors: each runs the whole spec from the same base commit on its own branch "
        "specwright/<slug>@<executor>",
    )
    p.add_argument("--reviewer", metavar="NAME", help="reviewer from config")
    p.add_argument(
        "--parallel",
        type=PARALLEL,
        metavar="N",
        help="chunks at once, each in its own git worktree, 1-256 (default: config, 1)",
    )
    p.add_argument(
        "--max-iterations", type=ITERATIONS, metavar="N", help="attempts per chunk, 1-1000"
    )
    p.add_argument(
        "--plan",
        action="store_true",
        help="print the order, parallel waves, expected files and a cost estimate; run nothing",
    )
    p.add_argument(
        "--pr",
        action="store_true",
        help="when every chunk shipped, push the branch and open a pull request",
    )
    _pr_args(p)
    p.set_defaults(handler=cmd_run_all)

    p = sub.add_parser(
        "pr",
        help="push the spec's branch and open (or update) a GitHub pull request",
        description="Push specwright/<slug> to the remote and open a pull request whose body "
        "lists every chunk with its iterations, review and cost. Needs GITHUB_TOKEN; the API "
        "URL comes from --api-url or GITHUB_API_URL (GitHub Enterprise).",
    )
    _pr_args(p)
    p.add_argument("spec", help="spec slug or id")
    p.set_defaults(handler=cmd_pr, needs_db=True)

    p = sub.add_parser(
        "demo",
        help="the whole loop offline: a sample project, a 3-chunk spec, a scripted agent",
        description="Build a small Python project with a failing test suite under data/demo/, "
        "a spec of three chunks, and run it with the scripted executor, the checks reviewer and "
        "pytest. Runs offline; re-running starts clean. The usage dashboard goes beside the "
        "database as <database name>-demo-report.html.",
    )
    p.add_argument(
        "--dir",
        metavar="DIR",
        help="where to build the demo project: absent, empty or an earlier demo "
        "(default: data/demo under the project directory)",
    )
    p.add_argument(
        "--executor", metavar="NAME", help="executor from the demo's config (default: scripted)"
    )
    p.add_argument(
        "--parallel", type=PARALLEL, default=1, metavar="N", help="chunks at once, 1-256"
    )
    p.set_defaults(handler=cmd_demo)


def _pr_args(p: Any) -> None:
    p.add_argument("--remote", default="origin", help="git remote to push to (default: origin)")
    p.add_argument("--base", metavar="BRANCH", help="base branch (default: the repo's default)")
    p.add_argument(
        "--repo", metavar="OWNER/NAME", help="GitHub repository (default: from the remote URL)"
    )
    p.add_argument("--api-url", metavar="URL", help="GitHub API base URL")
    p.add_argument("--draft", action="store_true", help="open the pull request as a draft")


def _open_pr(ctx: Context, spec: Any, args: argparse.Namespace) -> dict[str, Any]:
    from specwright.pr import open_pr

    return open_pr(
        ctx.store,
        ctx.project_dir,
        spec,
        remote=args.remote,
        base=args.base,
        repo=args.repo,
        api_url=args.api_url,
        draft=args.draft,
    )


def cmd_pr(args: argparse.Namespace, ctx: Context) -> int:
    from specwright.catalog import list_chunks

    spec = ctx.use_spec(args.spec)
    pr = _open_pr(ctx, spec, args)
    chunks = list_chunks(ctx.store, spec.id)
    left = [f"{c.position} {c.status}" for c in chunks if c.status != "shipped"]
    if left:  # run-all --pr opens none then; `pr` may (a draft, say), but not unawares
        print(
            f"specwright: warning: {len(left)} of {len(chunks)} chunk(s) of {spec.slug!r} have not "
            f"shipped ({', '.join(left)}); the pull request lists them as they are",
            file=sys.stderr,
        )
    said = _pr_line(pr, args)  # its warning with --json too
    ctx.emit(pr if ctx.json else said)
    return 0


def _pr_line(pr: dict[str, Any], args: argparse.Namespace) -> str:
    """What happened to the pull request, in one line; ``--draft`` for an open pull request that
    is not one is said on stderr (GitHub's REST API cannot make it a draft again)."""
    if args.draft and pr["updated"] and not pr["draft"]:
        print(
            f"specwright: warning: --draft: pull request #{pr['number']} was already open and is "
            "not a draft; an open pull request's draft state is not changed (on GitHub: "
            "'Convert to draft')",
            file=sys.stderr,
        )
    return (
        f"{'updated' if pr['updated'] else 'opened'} pull request #{pr['number']} {pr['head']} "
        f"-> {pr['base']}{' (draft)' if pr['draft'] else ''}: {pr['url']}"
    )


class Printer(ProgressPrinter):
    """A whole spec: chunk starts, iterations, tool calls, verification, review."""

    _HEADLINES = ("chunk-start", "chunk-done", "blocked", "skip", "wave", "merge", "conflict")
    _MARKS: ClassVar[dict[str, str]] = {"chunk-start": "==", "executor": "##"}

    def __init__(self, out: Any = None, positions: dict[str, int] | None = None) -> None:
        super().__init__(out)
        self.positions = positions or {}

    def line(self, p: Progress) -> str:
        tag = f"[{self.positions[p.chunk_id]}] " if p.chunk_id in self.positions else ""
        if p.kind == "event":
            return f"    {tag}· {p.message}"
        if p.kind in self._HEADLINES or p.kind in self._MARKS:
            return f"{self._MARKS.get(p.kind, '->')} {p.message}"
        if p.kind == "iteration":
            return f"  {tag}{p.message}"
        return f"    {tag}{p.message}"


def _summary(ctx: Context, result: RunAllResult) -> list[dict[str, Any]]:
    from specwright.run_report import run_summary

    return run_summary(ctx.store, result.run_id)


def _print_summary(rows: list[dict[str, Any]]) -> None:
    shown = [
        {**r, "time": f"{r['time_s']:.1f}s" if r["time_s"] is not None else None} for r in rows
    ]
    print_table(lower_bounds(shown), ["chunk", "title", "status", "ran", *_FIGURES])


def cmd_run_all(args: argparse.Namespace, ctx: Context) -> int:
    from specwright.catalog import list_chunks
    from specwright.runner import run_all

    spec = ctx.use_spec(args.spec)
    executors = args.executor or []
    _warn_unimported(ctx, spec)
    if args.plan:
        return _print_plan(ctx, spec, args, executors[0] if executors else None)
    if args.pr:  # said before anything runs, not after an hour of agents
        _check_pr(ctx, args, executors, spec.slug)
    chunks = list_chunks(ctx.store, spec.id)
    printer = None if ctx.json else Printer(positions={c.id: c.position for c in chunks})
    if len(executors) > 1:
        return _compare(ctx, spec, args, executors, printer)
    result = run_all(
        ctx.store,
        ctx.config,
        ctx.project_dir,
        spec,
        executor_name=executors[0] if executors else None,
        reviewer_name=args.reviewer,
        parallel=args.parallel,
        max_iterations=args.max_iterations,
        on_progress=printer,
    )
    if result.refused:  # a check that cannot run, say: one line, as a refusal before the run
        raise SpecwrightError(f"no agent ran: {result.reason} (spec {spec.slug!r} left as it was)")
    rows = _summary(ctx, result)
    pr, pr_error = None, None
    if args.pr and result.ok:
        try:
            pr = _open_pr(ctx, spec, args)
        except SpecwrightError as exc:  # the run's outcome is still printed
            pr_error = str(exc)
    said = _pr_line(pr, args) if pr is not None else None
    not_opened = "not every chunk shipped" if args.pr and not result.ok else None
    if ctx.json:
        ctx.emit(
            {
                "run_id": result.run_id,
                "status": result.status,
                "reason": result.reason,
                "branch": result.branch,
                "chunks": rows,
                **(
                    {"pull_request": pr, "pull_request_error": pr_error or not_opened}
                    if args.pr
                    else {}
                ),
            }
        )
    else:
        print()
        _print_summary(rows)
        print(f"\n{result.status}: {_clip(result.reason)} (branch {result.branch})")
        if said is not None:
            print(said)
        elif not_opened:
            print(f"no pull request: {not_opened}", file=sys.stderr)
    if pr_error is not None:
        again = f"`specwright pr {spec.slug}` tries again without running anything"
        if f"`specwright pr {spec.slug}`" not in pr_error:  # said already, once pushed
            pr_error += f" ({again})"
        print(f"specwright: error: pull request: {pr_error}", file=sys.stderr)
        return 2
    return EXIT.get(result.status, 1)


def _warn_unimported(ctx: Context, spec: Any) -> None:
    """The spec's exported file edited and never imported: the run would silently use the
    spec as the database holds it, not what the user sees in the file."""
    from specwright import fingerprints
    from specwright.specfile import default_path

    path = default_path(ctx.project_dir, spec)
    if fingerprints.spec_of(ctx.store, path) != spec.id:
        return
    try:
        data = path.read_bytes()
    except OSError:  # gone or unreadable: nothing the user could mean
        return
    if fingerprints.digest(data) != fingerprints.known(ctx.store, path):
        print(
            f"specwright: warning: {path} has edits that were never imported; this uses spec "
            f"{spec.slug!r} as the database holds it (to use the file: `specwright spec import "
            f"{path}`)",
            file=sys.stderr,
        )


def _check_pr(ctx: Context, args: argparse.Namespace, executors: list[str], slug: str) -> None:
    """``run-all --pr``: refuse what could never open the pull request, before running."""
    from specwright.pr import PullRequestError, api_base, env_token, github_repo

    if len(executors) > 1:  # `specwright pr` pushes the spec's own branch, none of these
        raise PullRequestError(
            "--pr: not with several --executor: each runs on a branch of its own, "
            f"specwright/{slug}@EXECUTOR; push the one you choose and "
            "open its pull request on GitHub (nothing was run)"
        )
    if not env_token():
        raise PullRequestError(
            "--pr: GITHUB_TOKEN is not set: a token is needed to open the pull request "
            "(nothing was run)"
        )
    github_repo(ctx.project_dir, args.remote, args.repo)  # no such remote, no GitHub repo
    api_base(args.api_url)  # nor an API URL that is no URL


def _compare(
    ctx: Context, spec: Any, args: argparse.Namespace, executors: list[str], printer: Any
) -> int:
    from specwright.catalog import list_chunks
    from specwright.compare import compare, comparison, totals

    group, results = compare(
        ctx.store,
        ctx.config,
        ctx.project_dir,
        spec,
        executors,
        reviewer_name=args.reviewer,
        max_iterations=args.max_iterations,
        on_progress=printer,
    )
    rows = comparison(ctx.store, group)
    runs = [
        {
            "executor": e,
            "run_id": r.run_id,
            "status": r.status,
            "reason": r.reason,
            "branch": r.branch,
        }
        for e, r in zip(executors, results, strict=False)
    ]
    if ctx.json:
        ctx.emit({"group_id": group, "runs": runs, "chunks": rows, "totals": totals(rows)})
    else:
        print()
        print_table(
            lower_bounds(
                [
                    {**r, "time": f"{r['time_s']:.1f}s" if r["time_s"] is not None else None}
                    for r in rows
                ]
            ),
            ["chunk", "title", "executor", "status", *_FIGURES],
        )
        sums = totals(rows)
        n = len(list_chunks(ctx.store, spec.id))
        print()
        for run in runs:
            print(
                f"{run['executor']}: {run['status']}: {_clip(run['reason'])} "
                f"(branch {run['branch']})\n  {_figures(sums.get(str(run['executor'])), n)}"
            )
        for name in executors[len(results) :]:
            print(f"{name}: not run (cancelled)")
        print(f"comparison group {group}")
    if any(r.status == "cancelled" for r in results) or len(results) < len(executors):
        return EXIT["cancelled"]
    return 0 if results and all(r.ok for r in results) else 1


def _clip(text: str | None, limit: int = 300) -> str:
    """A reason as one bounded line (it can carry an agent's error message; --json has it)."""
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _figures(t: dict[str, Any] | None, chunks: int) -> str:
    """One executor's totals in a comparison: chunks shipped, iterations, tokens, cost, time."""
    t = t or {}
    keys = ("input_tokens", "cache_tokens", "output_tokens")
    told = [t[k] for k in keys if t.get(k) is not None]  # none: an agent that tells no usage
    cost, unpriced = t.get("cost_usd"), t.get("unpriced") or 0
    time_s = t.get("time_s")
    return (
        f"{t.get('shipped', 0)}/{chunks} chunk(s) shipped, {t.get('iterations') or 0} "
        f"iteration(s), {f'{sum(told):,} tokens' if told else 'tokens not reported'}, "
        + (cost_text(cost, unpriced) if cost is not None or unpriced else "no cost reported")
        + (f", {time_s:.1f}s" if time_s is not None else "")
    )


def _print_plan(ctx: Context, spec: Any, args: argparse.Namespace, executor: str | None) -> int:
    from specwright.catalog import list_chunks, no_chunks
    from specwright.run_report import plan

    if not list_chunks(ctx.store, spec.id):  # as run-all says, not an empty plan costing $0
        raise no_chunks(spec.slug)
    p = plan(
        ctx.store,
        ctx.config,
        ctx.project_dir,
        spec,
        executor_name=executor,
        max_iterations=args.max_iterations,
    )
    if ctx.json:
        ctx.emit(p)
        return 0
    print(f"Plan for {spec.slug}: {len(p['order'])} chunk(s), executor {p['executor']}")
    print("\nOrder (dependency first):")
    for c in p["order"]:
        deps = ", ".join(str(d) for d in c["depends_on"]) or "-"
        files = ", ".join(c["files"]) or "(none predicted)"
        print(f"  {c['position']:>3}  {c['title']}  [{c['status']}]  needs: {deps}  files: {files}")
    print("\nParallel waves (chunks in a wave may run side by side):")
    for i, wave in enumerate(p["waves"], 1):
        extra = "".join(f"; {d['position']} waits: {d['why']}" for d in wave["deferred"])
        print(f"  wave {i}: {', '.join(str(x) for x in wave['chunks'])}{extra}")
    if p["overlaps"]:
        print("\nPredicted overlaps (never run side by side):")
        for o in p["overlaps"]:
            print(f"  chunks {o['a']} and {o['b']}: {', '.join(o['files'])}")
    print(f"\nEstimated cost: {p['estimate']['text']}")
    return 0


def cmd_demo(args: argparse.Namespace, ctx: Context) -> int:
    from pathlib import Path

    from specwright import demo

    root = Path(args.dir).resolve() if args.dir else ctx.project_dir / "data" / "demo"
    demo.check(root, args.executor, ctx.db_path)  # bad arguments: nothing built or recorded
    printer = None if ctx.json else Printer()
    if printer is not None:
        print(
            f"Building the demo project in {root} and running its spec offline "
            "(scripted agent: tokens and cost are synthetic).",
            flush=True,
        )
    result = demo.run(
        ctx.store, root, executor=args.executor, parallel=args.parallel, on_progress=printer
    )
    rows = _summary(ctx, result)
    report = _write_report(ctx)
    if ctx.json:
        ctx.emit(
            {
                "status": result.status,
                "reason": result.reason,
                "chunks": rows,
                "project": str(root),
                "branch": result.branch,
                "database": str(ctx.db_path),
                "report": report,
            }
        )
        return EXIT.get(result.status, 1)
    print()
    _print_summary(rows)
    print(f"\n{result.status}: {result.reason}; branch {result.branch} in {root}")
    print(f"database: {ctx.db_path}")
    if report:
        print(f"report:   {report}")
    print("next:     " + "   |   ".join(_next_commands(ctx)))
    return EXIT.get(result.status, 1)


def _next_commands(ctx: Context) -> list[str]:
    """What to try after the demo, with the ``--db`` they need to read its database from here
    (after ``--db`` or ``-C``, a plain `specwright status` reads another one)."""
    import shlex

    from specwright.config import find_project_root
    from specwright.store import resolve_db_path

    db = ""
    if resolve_db_path(find_project_root(), None) != ctx.db_path:
        db = f" --db {shlex.quote(str(ctx.db_path))}"
    return [
        f"specwright{db} {cmd}"
        for cmd in ("status --all", "usage specs", "report --html data/report.html")
    ]


def _write_report(ctx: Context) -> str | None:
    """The usage dashboard beside the database, when the report module is available."""
    import importlib

    from specwright.demo import report_path

    try:
        report = importlib.import_module("specwright.report")
    except ImportError:
        return None
    write = getattr(report, "write_html", None)
    if write is None:
        return None
    from specwright.cli.usage import local_timezone

    path = report_path(ctx.db_path)
    tz = local_timezone(pick="`specwright report --timezone`")  # demo has no --timezone
    write(ctx.store, path, tz=tz)  # its days as `specwright usage` counts them
    return str(path)
