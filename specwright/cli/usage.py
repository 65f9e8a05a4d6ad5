"""`specwright usage ...`, `specwright ingest ...` and `specwright report`: cost and usage.

Reports over imported agent logs use ccusage's column meanings (Input, Output, Cache Create,
Cache Read, Total Tokens, Cost (USD)) and, with ``--json``, ccusage's JSON shape, so the two can
be compared number for number.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specwright.errors import SpecwrightError, ValidationError, named

if TYPE_CHECKING:
    from specwright.cli.common import Context
    from specwright.store import Store

_REPORTS = {"daily": "day", "weekly": "week", "monthly": "month"}
_KEY = {"daily": "date", "weekly": "week", "monthly": "month"}


# what `usage specs --by` groups Specwright's executions by (``queries.cost_by``)
BY = ("spec", "chunk", "executor", "model", "project", "role")


def register(sub: argparse._SubParsersAction) -> None:
    from specwright.windows import WEEKDAYS

    usage = sub.add_parser("usage", help="token usage and cost reports (ccusage-compatible)")
    us = usage.add_subparsers(dest="sub", metavar="REPORT", required=True)
    for name, text in (
        ("daily", "usage per day and model"),
        ("weekly", "usage per week and model (weeks start on Sunday, as in ccusage; -w to change)"),
        ("monthly", "usage per month and model"),
        ("session", "usage per agent session"),
        ("blocks", "5-hour billing blocks, with the active block's burn rate"),
        ("models", "usage per model"),
        ("specs", "cost of Specwright's own executions per spec (--by chunk, executor, ...)"),
    ):
        p = us.add_parser(name, help=text)
        _window_args(p)
        if name == "specs":
            p.add_argument(
                "--by",
                choices=BY,
                default="spec",
                help="group by spec (default), chunk, executor, model, project or role",
            )
        if name == "weekly":
            p.add_argument(
                "--start-of-week",
                "-w",
                choices=WEEKDAYS,
                default="sunday",
                metavar="DAY",
                help="the day weeks start on: monday ... sunday (default: sunday, as ccusage)",
            )
        p.set_defaults(handler=cmd_usage, report=name, needs_db=True)
    p = us.add_parser("export", help="write the usage tables as Parquet (for other machines)")
    p.add_argument(
        "--output",
        "-o",
        metavar="DIR",
        help="export directory (default: usage-export-<host>-<date>)",
    )
    p.set_defaults(handler=cmd_export, needs_db=True)
    p = us.add_parser("merge", help="fold usage exports from other machines in (idempotent)")
    p.add_argument("files", nargs="+", metavar="FILE", help="export directories or .parquet files")
    p.set_defaults(handler=cmd_merge)

    ingest = sub.add_parser("ingest", help="import usage from agents' logs and codexbar")
    ig = ingest.add_subparsers(dest="sub", metavar="SOURCE", required=True)
    p = ig.add_parser(
        "claude-logs", help="Claude Code logs (~/.claude/projects, CLAUDE_CONFIG_DIR)"
    )
    p.add_argument("paths", nargs="*", metavar="DIR", help="projects/ directories or files")
    p.set_defaults(handler=cmd_ingest, source="claude")
    p = ig.add_parser("codex-logs", help="Codex CLI logs (~/.codex/sessions, CODEX_HOME)")
    p.add_argument("paths", nargs="*", metavar="DIR", help="sessions/ directories or files")
    p.set_defaults(handler=cmd_ingest, source="codex")
    p = ig.add_parser("codexbar", help="a `codexbar usage` and `codexbar cost` snapshot now")
    p.set_defaults(handler=cmd_ingest, source="codexbar", paths=[])
    for q in (ig.choices["claude-logs"], ig.choices["codex-logs"], ig.choices["codexbar"]):
        q.add_argument(
            "--json",
            action="store_true",
            default=argparse.SUPPRESS,
            help="machine-readable JSON output",
        )

    p = sub.add_parser("report", help="write a standalone HTML cost dashboard")
    p.add_argument("--html", required=True, metavar="PATH", help="output file")
    p.add_argument(
        "--since", metavar="DATE", help="from this date (YYYY-MM-DD or YYYYMMDD), a day in TZ"
    )
    p.add_argument("--until", metavar="DATE", help="until this date, inclusive")
    p.add_argument(
        "--timezone",
        "-z",
        metavar="TZ",
        help="time zone of the days: those of --since/--until, the daily bars and the times "
        "shown (default: this machine's, as the usage reports: $TZ, else /etc/localtime)",
    )
    p.set_defaults(handler=cmd_report, needs_db=True)


def _window_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", "-s", metavar="DATE", help="from this date (YYYY-MM-DD or YYYYMMDD)")
    p.add_argument("--until", "-u", metavar="DATE", help="until this date, inclusive")
    p.add_argument(
        "--source",
        choices=("all", "claude-code", "codex"),
        help="which agent's logs (default: all; for blocks, claude-code: as in ccusage, a "
        "block is a Claude Code billing window, which other agents' messages would move)",
    )
    p.add_argument(
        "--timezone",
        "-z",
        metavar="TZ",
        help="time zone of the days: those of --since/--until, and the groups of daily, "
        "weekly, monthly (default: this machine's, as in ccusage: $TZ, else /etc/localtime)",
    )
    p.add_argument(
        "--json",
        "-j",
        action="store_true",
        default=argparse.SUPPRESS,
        help="JSON output (ccusage's shape)",
    )


# --- reports ----------------------------------------------------------------------------------


def _totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("inputTokens", "outputTokens", "cacheCreationTokens", "cacheReadTokens", "totalTokens")
    tot: dict[str, Any] = {k: sum(int(r[k]) for r in rows) for k in keys}
    tot["totalCost"] = float(sum(r["totalCost"] for r in rows))
    return tot


def _table(rows: list[dict[str, Any]], first: str, title: str) -> None:
    from specwright.cli.common import print_table

    people = [
        {
            first.capitalize(): r[first],
            "Models": ", ".join(r.get("modelsUsed", [])),
            "Input": r["inputTokens"],
            "Output": r["outputTokens"],
            "Cache Create": r["cacheCreationTokens"],
            "Cache Read": r["cacheReadTokens"],
            "Total Tokens": r["totalTokens"],
            "Cost (USD)": float(r["totalCost"]),
        }
        for r in rows
    ]
    if rows:
        t = _totals(rows)
        people.append(
            {
                first.capitalize(): "Total",
                "Models": "",
                "Input": t["inputTokens"],
                "Output": t["outputTokens"],
                "Cache Create": t["cacheCreationTokens"],
                "Cache Read": t["cacheReadTokens"],
                "Total Tokens": t["totalTokens"],
                "Cost (USD)": float(t["totalCost"]),
            }
        )
    print(title)
    print_table(people)


# names tzdata gives UTC (``/etc/localtime`` is often a link to ``Etc/UTC``)
_UTC_NAMES = {"UTC", "UCT", "ETC/UTC", "ETC/UCT", "UNIVERSAL", "ETC/UNIVERSAL", "ZULU", "ETC/ZULU"}


def local_timezone(
    env: dict[str, str] | None = None, localtime: str = "/etc/localtime", pick: str = "--timezone"
) -> str:
    """This machine's IANA time zone, as ccusage takes it by default: ``$TZ`` (``:Name`` or a
    path into a zoneinfo folder too), else the zone ``/etc/localtime`` links to, else
    ``/etc/timezone``'s; UTC when none names a zone Python knows. ``pick``: what picks another
    zone where the caller asks (a notebook's parameter is no command-line option)."""
    import zoneinfo

    env = dict(os.environ) if env is None else env
    given = env.get("TZ", "").strip()
    candidates = [given.lstrip(":")]
    try:
        candidates.append(os.path.realpath(localtime))
    except OSError:
        pass
    try:
        with open(os.path.join(os.path.dirname(localtime), "timezone"), encoding="utf-8") as fh:
            candidates.append(fh.read(200).strip())
    except (OSError, UnicodeDecodeError):
        pass
    for at, name in enumerate(candidates):
        if "zoneinfo/" in name:
            name = name.split("zoneinfo/", 1)[1]
        if not name or name.startswith("/") or ".." in name:
            continue
        if name.upper() in _UTC_NAMES:
            return _unused_tz(given, at, "UTC", pick)
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            continue
        return _unused_tz(given, at, name, pick)
    return _unused_tz(given, len(candidates), "UTC", pick)


_warned_tz: set[str] = set()  # the $TZ values warned about in this process


def _unused_tz(given: str, at: int, zone: str, pick: str) -> str:
    """``zone`` (found at ``candidates[at]``), with a warning when ``$TZ`` was set but is not
    what it came from (a POSIX rule such as ``<+03>-3``, a name no zone database here has):
    days would otherwise be counted in another zone without a word. Once per process for each
    such value: the usage widgets of a notebook ask for the zone whenever they filter."""
    if given and at > 0 and given not in _warned_tz:
        _warned_tz.add(given)
        import logging

        from specwright.errors import one_line

        logging.getLogger(__name__).warning(
            "TZ=%r is not a time zone this machine knows (expected an IANA name such as "
            "Europe/Paris); counting days in %s (%s picks one)",
            one_line(given, 60),
            zone,
            pick,
        )
    return zone


def cmd_usage(args: argparse.Namespace, ctx: Context) -> int:
    from specwright import blocks
    from specwright import queries as Q
    from specwright.blocks import ccusage_json, iso
    from specwright.cli.common import lower_bounds

    store, report = ctx.store, args.report
    Q.check_window(args.since, args.until)
    if report == "specs" and args.source not in (None, "all"):
        raise ValidationError(
            f"--source {args.source}: usage specs counts Specwright's own runs, not agents' "
            "logs; --source picks the logs of the other usage reports"
        )
    tz = Q.check_timezone(args.timezone or local_timezone())
    table = "executions" if report == "specs" else "usage_records"
    if not ctx.json and not store.query(f"SELECT EXISTS (SELECT 1 FROM {table})")[0][0]:
        print(
            f"specwright: no runs recorded yet in {ctx.db_path}: `specwright run` or `run-all` "
            "a spec (`specwright demo` makes one offline)"
            if report == "specs"
            else f"specwright: no agent logs imported yet in {ctx.db_path}: this report counts "
            "your agents' own logs, as ccusage does: `specwright ingest claude-logs` (or "
            "codex-logs) imports them; what Specwright's runs cost is in `specwright usage specs`",
            file=sys.stderr,
        )
    win = {"since": args.since, "until": args.until, "tz": tz}
    # blocks are Claude Code's 5-hour windows (as ccusage's): others' messages would move them
    picked = args.source or ("claude-code" if report == "blocks" else "all")
    source = None if picked == "all" else picked
    if report != "specs":  # the reports of imported logs: say which records have no price
        missing = Q.unpriced_models(store, source=source, **win)
        if missing:
            effect = (
                "a model with no price at all shows no cost"
                if report == "models"
                else "their cost counts as 0 here"
            )
            print(
                f"specwright: warning: {sum(n for _, n in missing)} record(s) have no known "
                f"price (models: {named([m for m, _ in missing])}); {effect}. Add them under "
                "`prices:` in .handoff/config.yaml and re-ingest.",
                file=sys.stderr,
            )
        _say_out_of_days(store, source)
    if report in _REPORTS:
        week = {"week_start": args.start_of_week} if report == "weekly" else {}
        rows = Q.usage_report(store, _REPORTS[report], source=source, **win, **week)
        if ctx.json:
            ctx.emit({report: rows, "totals": _totals(rows)})
        else:
            _table(rows, _KEY[report], f"Usage report ({report}, {tz})")
        return 0
    if report == "models":  # as in `usage specs`: a cost some records lack is a lower bound
        rows = _rows(store, Q.usage_models_sql(args.since, args.until, tz, source))
        ctx.emit(
            rows if ctx.json else lower_bounds(rows),
            [
                "model",
                "source",
                "input_tokens",
                "output_tokens",
                "cache_creation_tokens",
                "cache_read_tokens",
                "total_tokens",
                "cost_usd",
                "unpriced",
            ],
        )
        return 0
    if report == "session":
        from specwright.sessions import usage_session_report

        rows = usage_session_report(store, source=source, **win)
        if ctx.json:
            ctx.emit({"sessions": rows, "totals": _totals(rows)})
        else:  # times as the wall clock of --timezone, whose days --since/--until name
            ctx.emit(
                [
                    {
                        "session_id": r["sessionId"],
                        "project_path": r["projectPath"],
                        "last_activity": _clock(r["lastActivity"], tz),
                        "models": r["modelsUsed"],
                        "total_tokens": r["totalTokens"],
                        "cost_usd": r["totalCost"],
                    }
                    for r in rows
                ],
                [
                    "session_id",
                    "project_path",
                    "last_activity",
                    "models",
                    "total_tokens",
                    "cost_usd",
                ],
                title=f"Sessions (times in {tz})",
            )
        return 0
    if report == "blocks":
        rows = blocks.block_rows(store, source=source, **win)
        burn = blocks.burn_rate(store, source=source)
        sql = "SELECT count(*) FILTER (WHERE source = ?), count(*) FROM usage_records"
        mine, others = store.query(sql, [source])[0]
        if args.source is None and not mine and others:  # only other agents' logs imported
            print(
                "specwright: no Claude Code messages imported, and blocks walk its logs; "
                "--source codex (or all) walks other agents'",
                file=sys.stderr,
            )
        if ctx.json:
            active = burn and {k: iso(v) if k.startswith("block_") else v for k, v in burn.items()}
            ctx.emit({"blocks": [ccusage_json(r, burn) for r in rows], "active": active})
        else:  # times as the wall clock of --timezone, whose days --since/--until name
            ctx.emit(  # a block with records of no known price: its cost is a lower bound
                [_wall_clock(r, tz) for r in lower_bounds(rows)],
                [
                    "block_start",
                    "block_end",
                    "is_active",
                    "is_gap",
                    "entries",
                    "total_tokens",
                    "cost_usd",
                    "models",
                ],
                title=f"Billing blocks (times in {tz})",
            )
            if burn:
                print()
                print("Active block (rates over its first to last message; none for one message)")
                ctx.emit(_wall_clock(lower_bounds([burn])[0], tz))
        return 0
    if report == "specs":  # a cost some of whose calls have none is a lower bound: "≥"
        rows = _rows(store, Q.cost_by_sql(args.by, args.since, args.until, tz))
        ctx.emit(
            rows if ctx.json else lower_bounds(rows),
            [
                args.by,
                "executions",
                "input_tokens",
                "output_tokens",
                "cost_usd",
                "reported_cost_usd",
                "computed_cost_usd",
                "reported_minus_computed",
                "unpriced",
            ],
        )
        return 0
    raise SpecwrightError(f"usage {report}: unknown report")


def _say_out_of_days(store: Store, source: str | None) -> None:
    """A warning of the records (of ``source``) a report leaves out for their stamps."""
    from specwright import queries as Q

    if stray := Q.out_of_days(store, source):  # a broken clock or a hostile log
        print(
            f"specwright: warning: {stray} record(s) stamped outside {Q.FIRST_DAY}.."
            f"{Q.LAST_DAY} (a broken clock or log) are left out of this report",
            file=sys.stderr,
        )


def _wall_clock(row: dict[str, Any], tz: str) -> dict[str, Any]:
    """``row`` with its times (naive UTC) as the wall clock in ``tz``."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    return {
        k: v.replace(tzinfo=UTC).astimezone(zone).replace(tzinfo=None)
        if isinstance(v, datetime)
        else v
        for k, v in row.items()
    }


def _clock(iso: str, tz: str) -> Any:
    """A UTC time as ccusage writes it (``2025-11-03T07:00:00.000Z``) on the wall clock of ``tz``."""
    from datetime import datetime

    return _wall_clock({"t": datetime.fromisoformat(iso.removesuffix("Z"))}, tz)["t"]


def _rows(store: Store, query: tuple[str, list[Any]]) -> list[dict[str, Any]]:
    """A query's rows as dicts, NaN as None, without pandas (~0.4 s to import)."""
    import math

    rows = store.query_dicts(*query)
    for row in rows:
        for k, v in row.items():
            if isinstance(v, float) and math.isnan(v):
                row[k] = None
    return rows


# --- ingest, export, merge, report -------------------------------------------------------------


def _overrides(ctx: Context) -> Any:
    try:
        return ctx.config.prices
    except SpecwrightError:
        raise
    except Exception:  # no project config at all: library prices only
        return None


def _progress() -> Any:
    """Where a long ingest says what it is doing: stderr, for a person at a terminal; scripts
    and hooks see only the result."""
    if not sys.stderr.isatty():
        return None
    return lambda line: print(f"specwright: {line}", file=sys.stderr, flush=True)


def cmd_ingest(args: argparse.Namespace, ctx: Context) -> int:
    source = args.source
    if source == "codexbar":
        from specwright.usage import codexbar

        snaps = codexbar.ingest(ctx.store)
        # both calls fail alike when codexbar is missing: each warning once
        for warning in dict.fromkeys(s.warning for s in snaps if s.warning):
            print(f"specwright: warning: {warning}", file=sys.stderr)
        ctx.emit(
            [
                {
                    "kind": s.kind,
                    "providers": [p.get("provider") for p in s.payloads],
                    "stored": len(s.ids),
                    "taken_at": s.taken_at,
                    "warning": s.warning,
                }
                for s in snaps
            ],
            ["kind", "providers", "stored", "taken_at", "warning"],
        )
        return 0 if any(s.payloads for s in snaps) else 1
    roots = [Path(p).expanduser().resolve() for p in args.paths] or None
    for r in roots or []:
        if not r.exists():
            raise SpecwrightError(f"{r}: no such file or directory")
    if source == "claude":
        from specwright.usage import claude as mod
    else:
        from specwright.usage import codex as mod  # type: ignore[no-redef]
    if roots is None:
        found = mod.claude_roots() if source == "claude" else mod.codex_roots()  # type: ignore[attr-defined]
        if not found:
            raise SpecwrightError(f"no {source} logs found (looked in {_log_places(source)})")
    result = mod.ingest(ctx.store, roots, overrides=_overrides(ctx), progress=_progress())
    for msg in result.messages():
        print(f"specwright: warning: {msg}", file=sys.stderr)
    data = result.to_dict()
    data.pop("malformed_files")
    data.pop("warnings")
    ctx.emit(data)
    return 0


def cmd_export(args: argparse.Namespace, ctx: Context) -> int:
    import socket

    from specwright.model import utcnow
    from specwright.usage.export import export

    try:  # an export replaces its folder whole: a shell in it is left in the old one
        here = Path.cwd()
    except FileNotFoundError:  # that old one, after `-o .`: its note said to cd again
        raise ValidationError(
            "the current directory no longer exists (a `usage export -o .` replaces its folder "
            "with a new one): cd to it again"
        ) from None
    target = Path(args.output or f"usage-export-{socket.gethostname()}-{utcnow():%Y%m%d}")
    target = target.expanduser().resolve()  # as merge reads it: `--output=~/x` reaches us so
    inside = target.is_dir() and (here == target or target in here.parents)
    counts = export(ctx.store, target)
    if inside:
        print(
            f"specwright: note: {target} is a new folder now: `cd {target}` again to see the "
            "export (this shell is in the one it replaced)",
            file=sys.stderr,
        )
    if not any(counts.values()):  # a mistyped --db or SPECWRIGHT_DB is a new, empty database
        print(
            f"specwright: warning: nothing to export: no usage records, snapshots or prices in "
            f"{ctx.db_path} (`specwright ingest claude-logs`, codex-logs or codexbar imports them)",
            file=sys.stderr,
        )
    ctx.emit({"export": str(target), "rows": counts})
    return 0


def cmd_merge(args: argparse.Namespace, ctx: Context) -> int:
    from specwright.usage.exchange import merge

    res = merge(
        ctx.store,
        [Path(f).expanduser().resolve() for f in args.files],
        progress=_progress(),
        overrides=_overrides(ctx),
    )
    for warning in res.warnings:
        print(f"specwright: warning: {warning}", file=sys.stderr)
    ctx.emit(
        {
            "files": res.files,
            "inserted": res.inserted,
            "replaced": res.replaced,
            "skipped": res.skipped,
            "repriced": res.repriced,
        }
    )
    return 0


def cmd_report(args: argparse.Namespace, ctx: Context) -> int:
    from specwright import queries as Q
    from specwright.report import write_html

    path = Path(args.html).expanduser().resolve()
    if path.is_dir():
        raise ValidationError(
            f"--html {args.html}: is a directory; expected a file name, e.g. {path / 'report.html'}"
        )
    Q.check_window(args.since, args.until)
    tz = Q.check_timezone(args.timezone or local_timezone())
    _say_out_of_days(ctx.store, None)
    write_html(ctx.store, path, since=args.since, until=args.until, tz=tz)
    ctx.emit({"report": str(path)} if ctx.json else f"wrote {path}")
    return 0


def _log_places(source: str) -> str:
    """Where ``ingest claude-logs``/``codex-logs`` looked, as the environment decided it."""
    home = Path.home()
    if source == "claude":
        raw = os.environ.get("CLAUDE_CONFIG_DIR", "")
        if raw.strip():
            return f"CLAUDE_CONFIG_DIR={raw}: each folder or its projects/"
        xdg = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
        return f"{xdg / 'claude' / 'projects'} and {home / '.claude' / 'projects'}"
    codex = os.environ.get("CODEX_HOME")
    base = Path(codex or home / ".codex").expanduser()
    where = f"{base / 'sessions'} and {base / 'archived_sessions'}"
    return f"{where}, from CODEX_HOME" if codex else where
