"""`specwright ...`: a thin command line over the package's functions.

Each command group lives in its own module under ``specwright/cli/`` and exposes
``register(subparsers)``; handlers take ``(args, ctx)`` and return an exit code. Modules are listed
in ``COMMAND_MODULES`` and imported only to build the parser (they keep heavy imports inside
handlers). User errors (``SpecwrightError``) print one line and exit 2; no tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from specwright import __version__
from specwright.cli.common import Context, SafeStream
from specwright.errors import SpecwrightError

# Order here is the order in `specwright --help`.
COMMAND_MODULES = (
    "specwright.cli.core",
    "specwright.cli.plan",
    "specwright.cli.run",
    "specwright.cli.runall",
    "specwright.cli.queue",
    "specwright.cli.usage",
    "specwright.cli.agents",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse's default prints the whole usage; one line is kinder in scripts
        self.exit(2, f"specwright: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="specwright",
        description="Run AI coding agents from a spec; verify, review and record every attempt.",
    )
    parser.add_argument("--version", action="version", version=f"specwright {__version__}")
    parser.add_argument(
        "-C",
        "--project-dir",
        metavar="DIR",
        help="project directory, or a folder in it (default: nearest one with .handoff/, else cwd)",
    )
    parser.add_argument(
        "--db",
        metavar="PATH",
        help="database file (default: $SPECWRIGHT_DB, else data/specwright.duckdb)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    _global_options_everywhere(parser)
    return parser


def _global_options_everywhere(parser: argparse.ArgumentParser) -> None:
    """``--json``, ``--db`` and ``-C`` after the command too (`specwright spec list --json`,
    `specwright demo --db x.duckdb`), as before it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                if "--json" not in child._option_string_actions:
                    child.add_argument(
                        "--json",
                        action="store_true",
                        default=argparse.SUPPRESS,
                        help="machine-readable JSON output",
                    )
                if "--db" not in child._option_string_actions:
                    child.add_argument(
                        "--db", metavar="PATH", default=argparse.SUPPRESS, help="database file"
                    )
                if not {"-C", "--project-dir"} & set(child._option_string_actions):
                    child.add_argument(
                        "-C",
                        "--project-dir",
                        metavar="DIR",
                        default=argparse.SUPPRESS,
                        help="project directory",
                    )
                _global_options_everywhere(child)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `specwright` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    ctx = Context.from_args(args)
    _warnings_to_stderr()
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = SafeStream(out), SafeStream(err)
    try:
        from specwright.cli.run import stop_on_sigterm  # SIGTERM: the same cleanup as Ctrl-C

        code = stop_on_sigterm(args.handler, args, ctx)
    except SpecwrightError as exc:
        from specwright.redact import Redactor  # a secret in a URL the error quotes

        print(f"specwright: error: {Redactor.from_env()(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("specwright: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `specwright ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        return 0
    except Exception as exc:  # after BrokenPipeError and every error of ours
        if "attached in read-only mode" not in str(exc):  # DuckDB's, from a direct write
            raise
        error = ctx.store.read_only_error("this command writes to it")
        print(f"specwright: error: {error}", file=sys.stderr)
        return error.exit_code
    finally:
        sys.stdout, sys.stderr = out, err
    return int(code or 0)


class _Stderr(logging.Handler):
    """The package's warnings and errors as ``specwright: warning: ...`` lines on the stderr of
    the moment (``main``'s SafeStream, which escapes what an agent put in a message)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except (TypeError, ValueError):
            text = str(record.msg)
        print(f"specwright: {record.levelname.lower()}: {text}", file=sys.stderr)


def _warnings_to_stderr() -> None:
    """Show the package's log warnings like its own (without a handler, Python printed them
    bare); once per process."""
    logger = logging.getLogger("specwright")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        handler = _Stderr(logging.WARNING)
        logger.addHandler(handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
