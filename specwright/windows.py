"""Date windows, time zones and report periods of the read side (``queries``, ``blocks``,
``sessions``, the usage widgets): ``YYYY-MM-DD`` (or ``YYYYMMDD``) dates, ``until`` inclusive, a
``tz`` that makes dates and day/week/month groups local while columns stay naive UTC."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any

from specwright.errors import ValidationError

_PERIODS = dict(day="day", daily="day", week="week", weekly="week", month="month", monthly="month")


FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9000, 12, 31)


def parse_day(value: str | date | None, what: str = "date") -> date | None:
    """``2025-11-02`` / ``20251102`` / a date -> date; None passes through."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    m = re.fullmatch(r"(\d{4})-?(\d{2})-?(\d{2})", text)
    if not m:
        raise ValidationError(f"{what}: expected YYYY-MM-DD or YYYYMMDD, got {text!r}")
    try:
        day = date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError as exc:  # 2025-02-30, 2025-13-01
        raise ValidationError(f"{what}: {text!r} is not a date ({exc})") from None
    if not FIRST_DAY <= day <= LAST_DAY:  # 9999-12-31 + 1 day, 0001-01-01 in UTC+14: overflow
        raise ValidationError(
            f"{what}: {text!r} is out of range; expected a day from {FIRST_DAY} to {LAST_DAY} "
            "(leave it out for no bound)"
        )
    return day


def _local(col: str, tz: str) -> str:
    """``col`` (naive UTC) as naive local time in ``tz``."""
    if tz.upper() == "UTC":
        return col
    return f"(({col} AT TIME ZONE 'UTC') AT TIME ZONE '{check_timezone(tz)}')"


def check_timezone(tz: str) -> str:
    """``tz`` if it names an IANA time zone (what DuckDB's ICU knows; any spelling of UTC is
    "UTC"), else a ValidationError."""
    import zoneinfo

    if tz.upper() == "UTC":
        return "UTC"
    if not re.fullmatch(r"[A-Za-z0-9_+\-/]+", tz):
        raise ValidationError(f"--timezone: not a time zone name: {tz!r}")
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            f"--timezone: unknown time zone {tz!r}; expected an IANA name such as "
            "Europe/Berlin or America/New_York"
        ) from None
    return tz


def check_window(
    since: str | date | None, until: str | date | None
) -> tuple[date | None, date | None]:
    """``--since`` and ``--until`` as dates; a ValidationError for a bad date or an empty window
    (since after until)."""
    s, u = parse_day(since, "--since"), parse_day(until, "--until")
    if s is not None and u is not None and s > u:
        raise ValidationError(
            f"--since {s.isoformat()} is after --until {u.isoformat()}: an empty window"
        )
    return s, u


def _window(
    col: str, since: str | date | None, until: str | date | None, tz: str = "UTC"
) -> tuple[str, list[Any]]:
    """A WHERE fragment (starting with AND) bounding ``col`` by local dates."""
    clauses, params = [], []
    s, u = check_window(since, until)
    local = _local(col, tz)
    if s is not None:
        clauses.append(f"{local} >= ?")
        params.append(datetime(s.year, s.month, s.day))
    if u is not None:
        clauses.append(f"{local} < ?")
        params.append(datetime(u.year, u.month, u.day) + timedelta(days=1))
    return "".join(f" AND {c}" for c in clauses), params


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _truncated(unit: str, col: str, week_start: str) -> str:
    """``date_trunc(unit, col)``, a week starting on ``week_start`` (DuckDB's weeks start on
    Monday: shift the days so that ``week_start`` falls on one, truncate, shift back)."""
    if unit != "week" or week_start == "monday":
        return f"date_trunc('{unit}', {col})"
    if week_start not in WEEKDAYS:
        raise ValueError(f"week_start: expected one of {', '.join(WEEKDAYS)}, got {week_start!r}")
    shift = 7 - WEEKDAYS.index(week_start)
    return f"(date_trunc('week', {col} + INTERVAL {shift} DAY) - INTERVAL {shift} DAY)"


def _period(period: str) -> tuple[str, str]:
    """The date_trunc unit and strftime format of a report period (day, weekly, month...)."""
    unit = _PERIODS.get(period)
    if unit is None:
        raise ValueError(f"period: expected day, week or month, got {period!r}")
    return unit, {"day": "%Y-%m-%d", "week": "%Y-%m-%d", "month": "%Y-%m"}[unit]
