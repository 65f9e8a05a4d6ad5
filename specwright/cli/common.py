"""What every command handler gets: the project, its config and store, and output helpers."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specwright.model import MAX_ITERATIONS, MAX_PARALLEL
from specwright.titles import hidden

if TYPE_CHECKING:
    from specwright.config import Config
    from specwright.loop import Progress
    from specwright.model import Project, Spec
    from specwright.store import Store


@dataclass
class Context:
    """Lazily resolved project state for one CLI invocation."""

    project_dir: Path
    db_override: str | None
    json: bool
    needs_db: bool = False  # a command that only reads (or changes rows): a missing file is refused
    _config: Config | None = field(default=None, repr=False)
    _store: Store | None = field(default=None, repr=False)
    _problem: str | None = field(default=None, repr=False)  # said when the project is needed

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Context:
        from specwright.config import find_project_root

        try:
            root = Path(args.project_dir).resolve() if args.project_dir else find_project_root()
            if args.project_dir and root.is_dir() and getattr(args, "command", None) != "init":
                root = find_project_root(root)  # -C sub/ is its project, as cd sub/ and notebooks
        except FileNotFoundError:  # the working directory was deleted (main has no try yet)
            return cls(Path("."), args.db, bool(args.json), _problem=_GONE)
        needs_db = bool(getattr(args, "needs_db", False))
        return cls(project_dir=root, db_override=args.db, json=bool(args.json), needs_db=needs_db)

    def _check_dir(self) -> None:
        """Refuse a project directory that is not one (``-C`` to a file or a typo)."""
        from specwright.errors import ValidationError

        if self._problem:
            raise ValidationError(self._problem)
        if not self.project_dir.is_dir():  # -C to a typo would make a project of it
            raise ValidationError(f"-C {self.project_dir}: not a directory")

    @property
    def config(self) -> Config:
        if self._config is None:
            from specwright import config

            self._check_dir()
            self._config = config.load(self.project_dir)
        return self._config

    @property
    def db_path(self) -> Path:
        from specwright.store import resolve_db_path

        if not self.db_override and not os.environ.get("SPECWRIGHT_DB"):
            self._check_dir()  # -C to a typo: its data/ folder and database were made
        return resolve_db_path(self.project_dir, self.db_override)

    def db_shown(self) -> str:
        """The database path for people: with ``(from SPECWRIGHT_DB)`` or ``(from --db)`` when
        that, not the project, picked it (an exported variable from another project's work)."""
        from specwright.config_env import database_source

        picked = database_source(self.db_override)
        return f"{self.db_path}" + (f" (from {picked})" if picked else "")

    @property
    def store(self) -> Store:
        if self._store is None:
            from specwright.store import Store

            if self.needs_db:  # only reads: a mistyped --db must not be made, empty
                from specwright.config_env import require_database

                require_database(self.db_path, self.db_override)
            self._store = Store(self.db_path)
        return self._store

    def project(self, *, create: bool = True) -> Project:
        """The project row for ``project_dir``, created on first use; with ``create=False``
        (commands that only read) a project the database does not hold is not recorded, and
        reads as one with nothing in it."""
        from specwright.catalog import ensure_project

        self._check_dir()
        return ensure_project(self.store, self.project_dir, record=create)

    def use_spec(self, ref: str) -> Spec:
        """A spec by slug/id: this project's first, else any project's in the database; the
        context then works in that spec's project (its root and its config)."""
        from specwright.catalog import get_spec
        from specwright.errors import NotFoundError

        try:
            spec = get_spec(self.store, ref, self.project(create=False))
        except NotFoundError:
            spec = get_spec(self.store, ref)
        self.adopt_project(spec.project_id)
        return spec

    def adopt_project(self, project_id: str) -> None:
        """Work in the project ``project_id`` (its root directory and config) from now on."""
        rows = self.store.query("SELECT root FROM projects WHERE id = ?", [project_id])
        if rows and Path(rows[0][0]) != self.project_dir:
            self.project_dir = Path(rows[0][0])
            self._config = None

    # --- output -----------------------------------------------------------------------------

    def emit(
        self, data: Any, columns: Sequence[str] | None = None, title: str | None = None
    ) -> None:
        """Print ``data`` as JSON (``--json``) or as a table / key-value list for people."""
        if self.json:
            try:
                text = json.dumps(data, default=_json_default, indent=2, allow_nan=False)
            except ValueError:  # JSON has no NaN or Infinity (jq, JavaScript refuse them)
                text = json.dumps(_finite(data), default=_json_default, indent=2)
            print(text)
            sys.stdout.flush()
            return
        if isinstance(data, list):
            if title:
                print(title)
            print_table(data, columns)
        elif isinstance(data, dict):
            width = max((len(k) for k in data), default=0)
            for key, value in data.items():
                print(f"{key:<{width}}  {_cell(value, limit=200)}")
        else:
            print(data)
        sys.stdout.flush()  # a full or closed stdout fails here, where main reports it


def store_times(value: Any, local: bool = False) -> Any:
    """``value`` (a row, rows, nested) with the store's naive datetimes, UTC by its convention,
    marked UTC (an offset in --json) or, ``local``, in this machine's zone (a table shows its
    offset): read bare, a time was taken for local time in another zone."""
    if isinstance(value, datetime):
        aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value
        return aware.astimezone() if local else aware
    if isinstance(value, dict):
        return {k: store_times(v, local) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [store_times(v, local) for v in value]
    return value


def _finite(value: Any) -> Any:
    """``value`` with every float that is NaN or infinite (a cost summed past the largest
    float, a figure of an older database) as None: unknown, as JSON can say."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


class AtLeast(float):
    """A cost that sums only the known part of a group some of whose calls have none (no
    price, or stopped mid-run): shown as a lower bound, ``≥0.2500``."""


def lower_bounds(rows: list[dict[str, Any]], column: str = "cost_usd") -> list[dict[str, Any]]:
    """``rows`` for a table: each ``column`` whose row counts ``unpriced`` calls marked as
    a lower bound (``--json`` keeps the number and the count)."""
    return [
        {**r, column: AtLeast(r[column])} if r.get("unpriced") and r.get(column) is not None else r
        for r in rows
    ]


def _cell(value: Any, wide: bool = False, limit: int = 60) -> str:
    """One value as text, at most ``limit`` characters (``--json`` has it whole), without control
    characters (titles and reasons can come from an agent); a float with 4 places, or 2 and
    thousands separators from 100 on (or when its column has such a value: ``wide``)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):  # a sum past the largest float: unknown, as --json's null
            return "-"
        text = f"{value:,.2f}" if wide or abs(value) >= 100 else f"{value:.4f}"
        return "≥" + text if isinstance(value, AtLeast) else text
    if isinstance(value, datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S")
        if value.tzinfo is None:  # the store's UTC
            return text
        zone = value.strftime("%z")  # a time with its zone: the offset, so it reads one way
        return f"{text} {'UTC' if zone == '+0000' else zone[:3] + ':' + zone[3:]}"
    if isinstance(value, dict):
        text = ", ".join(f"{k} {_cell(v, limit=limit)}" for k, v in value.items()) or "-"
    elif isinstance(value, list | tuple):
        text = ", ".join(str(v) for v in value) or "-"
    else:
        text = str(value)
    text = terminal_safe(text.replace("\n", " "))
    if _width(text) <= limit:
        return text
    if text.isascii():
        return text[: limit - 3] + "..."
    kept, used = [], 0  # cut by terminal columns: 60 wide characters took 120
    for ch in text:
        used += _width(ch)
        if used > limit - 3:
            break
        kept.append(ch)
    return "".join(kept) + "..."


def _width(text: str) -> int:
    """The terminal columns ``text`` takes: two for a wide or full-width character (a slug or
    title in Japanese), none for a combining mark."""
    if text.isascii():
        return len(text)

    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        for ch in text
    )


def _pad(text: str, width: int, right: bool) -> str:
    """``text`` filled with spaces to ``width`` columns, on the left when ``right``."""
    fill = " " * max(width - _width(text), 0)
    return fill + text if right else text + fill


def _big(value: float) -> bool:
    return math.isfinite(value) and abs(value) >= 100


def print_table(
    rows: list[dict[str, Any]], columns: Sequence[str] | None = None, file: Any = None
) -> None:
    """A plain aligned text table; numbers right-aligned."""
    out = file or sys.stdout
    if not rows:
        print("(none)", file=out)
        return
    cols = list(columns or rows[0].keys())
    # one number format per column, so its decimals line up
    wide = {c for c in cols if any(isinstance(r.get(c), float) and _big(r[c]) for r in rows)}
    cells = [[_cell(r.get(c), c in wide) for c in cols] for r in rows]
    widths = [max(len(c), *(_width(row[i]) for row in cells)) for i, c in enumerate(cols)]

    def number(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)

    # right-aligned: a column of numbers (and blanks), not one of blanks only
    numeric = [
        all(number(r.get(c)) or r.get(c) is None for r in rows)
        and any(number(r.get(c)) for r in rows)
        for c in cols
    ]
    print(
        "  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip(), file=out
    )
    for row in cells:
        parts = [_pad(v, w, num) for v, w, num in zip(row, widths, numeric, strict=True)]
        print("  ".join(parts).rstrip(), file=out)


_GONE = "the current directory no longer exists: cd to the project or pass -C DIR"

# C0 controls but tab, newline and carriage return; DEL; C1 controls (0x9b alone starts a CSI)
_CONTROLS = {c: "?" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c not in (9, 10, 13)}


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high`` (``--parallel 0`` would run
    nothing, or forever; one of 20 digits is no count anyone means)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"expected a whole number from {low} to {high}, got {text!r}"
            )
        return value

    return parse


# chunks (or queued items) at once, each an agent in its own work tree; attempts per chunk
PARALLEL = whole_number(1, MAX_PARALLEL)
ITERATIONS = whole_number(1, MAX_ITERATIONS)


def dollars(text: str) -> float:
    """An argparse type: a budget, a number of dollars from 0 to ``MAX_BUDGET_USD`` (``nan``,
    ``-1`` and ``1e308`` are no budgets)."""
    from specwright.catalog import BUDGET_RANGE, is_budget

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not is_budget(value):
        raise argparse.ArgumentTypeError(f"expected {BUDGET_RANGE}, got {text!r}")
    return value


def seconds(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a number of seconds from ``low`` to ``high`` (a --poll of 1e-300 spun
    a CPU; 0 would end at once; nan, inf or 1e308 are no durations)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not low <= value <= high:  # nan too
            raise argparse.ArgumentTypeError(
                f"expected a number of seconds from {low:g} to {high:g}, got {text!r}"
            )
        return value

    return parse


class SafeStream:
    """A text stream writing through ``inner`` with control characters shown as '?': whatever
    the CLI prints (titles, reasons and findings that came from an agent or a model among it)
    cannot drive the terminal. A stdout that is closed or full is a one-line error (a
    ``SpecwrightError``), not a traceback; stderr's own failures are dropped (nowhere to say
    them). A broken pipe (``| head``) is left to ``main``. Everything else is ``inner``'s."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._name = "stderr" if inner is sys.stderr and inner is not sys.stdout else "stdout"
        try:
            self._name = "stderr" if inner.fileno() == 2 else self._name
        except (AttributeError, OSError, ValueError):  # None, a StringIO, a pytest capture
            pass

    def _failed(self, reason: str) -> None:
        from specwright.errors import SpecwrightError

        if self._name == "stdout":
            raise SpecwrightError(f"cannot write to stdout: {reason} (what was done is kept)")

    def write(self, text: str) -> int:
        try:
            if self._inner is None:
                self._failed("it is closed")
            else:
                self._inner.write(text.translate(_CONTROLS))
        except BrokenPipeError:
            raise
        except (OSError, ValueError) as exc:  # ENOSPC, EBADF; ValueError: a closed file
            self._failed(getattr(exc, "strerror", None) or str(exc))
        return len(text)

    def flush(self) -> None:
        try:
            if self._inner is not None:
                self._inner.flush()
        except BrokenPipeError:
            raise
        except (OSError, ValueError) as exc:
            self._failed(getattr(exc, "strerror", None) or str(exc))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def terminal_safe(text: str) -> str:
    """Agent text is untrusted: control characters (no terminal escapes) and the other
    characters no title may hold (``titles.hidden``: a bidirectional override) show as '?'."""
    return "".join("?" if hidden(ch) else ch for ch in text)


def terminal_safe_lines(text: str) -> str:
    """``terminal_safe`` for text of several lines (a spec's body): the line breaks stay."""
    return "\n".join(terminal_safe(line) for line in text.splitlines())


class ProgressPrinter:
    """Live progress lines for people: tool calls and errors of the agent, loop steps; run and
    done markers are skipped. Subclasses say how a line looks (``line``); every line printed is
    terminal-safe and at most ``WIDTH`` characters."""

    WIDTH = 240

    def __init__(self, out: Any = None) -> None:
        self.out = out or sys.stdout

    def __call__(self, p: Progress) -> None:
        if p.kind in ("run", "done"):
            return
        if p.kind == "event" and getattr(p.data, "type", "") not in ("tool_call", "error"):
            return
        text = terminal_safe(self.line(p))
        if len(text) > self.WIDTH:  # cut, and said to be
            text = text[: self.WIDTH - 3] + "..."
        print(text, file=self.out, flush=True)

    def line(self, p: Progress) -> str:
        """The text shown for one progress item."""
        raise NotImplementedError
