"""Billing blocks as ccusage ``blocks`` draws them, and the active block's burn rate.

A block starts at the hour of its first message and lasts five hours: a message at most five hours
after the block's start is in it (one exactly on its end too, as in ccusage); the next one starts a
new block, after a gap row when it comes more than five hours after the last message. Read side,
like ``queries.py``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from specwright.queries import IN_DAYS, IN_DAYS_PARAMS, LOG_COST, usage_filter
from specwright.windows import check_timezone, parse_day

if TYPE_CHECKING:
    import pandas as pd

    from specwright.store import Store


def usage_timestamps(
    store: Store,
    *,
    since: str | date | None = None,
    until: str | date | None = None,
    source: str | None = None,
    tz: str = "UTC",
) -> pd.DataFrame:
    """Per-record time (naive UTC), tokens and cost, sorted, of the records on days ``since`` to
    ``until`` in ``tz`` (as every windowed query here counts days)."""
    where, params = usage_filter(since, until, source, tz)
    sql = f"""
        SELECT u.ts, u.model, u.input_tokens, u.output_tokens,
               u.cache_write_5m_tokens + u.cache_write_1h_tokens AS cache_creation_tokens,
               u.cache_read_tokens, coalesce({LOG_COST}, 0) AS cost_usd
        FROM usage_records u WHERE true{where} ORDER BY u.ts"""
    return store.query_df(sql, params, via_arrow=True)  # a row per record: plain columns


# The input of the block walk, a row per hour: usage summed per hour (tokens, cost, entries,
# first and last message time and models). An hour is (h - 1 hour, h], labelled by its end h: a
# block ends on a whole hour and keeps a message exactly on its end, so no hour straddles two
# blocks.
_HOURLY = f"""
    SELECT date_trunc('hour', u.ts - INTERVAL 1 MICROSECOND) + INTERVAL 1 HOUR AS bucket,
           min(u.ts) AS first_ts, max(u.ts) AS last_ts,
           count(*) AS n,
           sum(u.input_tokens) AS input_tokens, sum(u.output_tokens) AS output_tokens,
           sum(u.cache_write_5m_tokens + u.cache_write_1h_tokens) AS cache_creation_tokens,
           sum(u.cache_read_tokens) AS cache_read_tokens,
           sum(coalesce({LOG_COST}, 0)) AS cost_usd,
           list(DISTINCT u.model) FILTER (WHERE u.model IS NOT NULL) AS models,
           count(*) FILTER (WHERE ({LOG_COST}) IS NULL) AS unpriced
    FROM usage_records u WHERE true{{where}} GROUP BY 1 ORDER BY 1"""
# the same, a row per message (``per_message``)
_PER_MESSAGE = f"""
    SELECT u.ts, u.ts, u.ts, 1, u.input_tokens, u.output_tokens,
           u.cache_write_5m_tokens + u.cache_write_1h_tokens, u.cache_read_tokens,
           coalesce({LOG_COST}, 0), [u.model], (({LOG_COST}) IS NULL)::INTEGER
    FROM usage_records u WHERE true{{where}} ORDER BY u.ts"""

COLUMNS = [
    "block_start",
    "block_end",
    "actual_start",
    "actual_end",
    "is_active",
    "is_gap",
    "entries",
    "input_tokens",
    "output_tokens",
    "cache_creation_tokens",
    "cache_read_tokens",
    "total_tokens",
    "cost_usd",
    "models",
    "unpriced",  # records of no known price: ``cost_usd`` sums the others (0 for them, as ccusage)
]
_TOKENS = ("input_tokens", "output_tokens", "cache_creation_tokens", "cache_read_tokens")


def billing_blocks(store: Store, **window: Any) -> pd.DataFrame:
    """``block_rows(store, **window)`` as a DataFrame (columns ``COLUMNS``), for figures and
    notebooks."""
    import pandas as pd

    return pd.DataFrame(block_rows(store, **window), columns=COLUMNS)


def block_rows(
    store: Store,
    *,
    since: str | date | None = None,
    until: str | date | None = None,
    source: str | None = None,
    hours: float = 5.0,
    now: datetime | None = None,
    per_message: bool = False,
    tz: str = "UTC",
) -> list[dict[str, Any]]:
    """5-hour billing blocks as ccusage ``blocks`` draws them, a dict per row (keys
    ``COLUMNS``; times naive UTC), in plain Python: a CLI report needs no pandas (~0.4 s to
    import). ``per_message``: walk every message instead of hourly sums; slower, same result.

    A block starts at the hour of its first message and lasts ``hours``, its end included; the
    next message starts a new one. A gap of more than ``hours`` since the last message appears as
    an ``is_gap`` row from that message + ``hours`` to the next (ccusage's rules). ``since`` and
    ``until`` (dates in ``tz``) keep the rows that start on those days, as ccusage does: each
    block whole, in the phase the messages before it give it (``_walk_input``)."""
    from specwright.model import utcnow

    hourly = float(hours).is_integer() and not per_message
    first_day, last_day = parse_day(since, "--since"), parse_day(until, "--until")
    data = _walk_input(store, first_day, last_day, source, hours, hourly, tz)
    if not data:
        return []
    now = now or utcnow()
    span = timedelta(hours=hours)
    bucket = [r[0] for r in data]
    first = [r[1] for r in data]
    last = [r[2] for r in data]
    starts, block_starts = _walk(first, bucket, span)
    ends = [*starts[1:], len(data)]
    out: list[dict[str, Any]] = []
    for a, b, start in zip(starts, ends, block_starts, strict=True):
        part = data[a:b]
        end = start + span
        actual, began = max(last[a:b]), first[a]
        if out and began - out[-1]["actual_end"] > span:
            # as ccusage: a gap from the last message + ``hours`` to the next message
            out.append(
                {
                    "block_start": out[-1]["actual_end"] + span,
                    "block_end": began,
                    "actual_start": None,
                    "actual_end": None,
                    "is_active": False,
                    "is_gap": True,
                    "entries": 0,
                    **dict.fromkeys(_TOKENS, 0),
                    "total_tokens": 0,
                    "cost_usd": 0.0,
                    "models": [],
                    "unpriced": 0,
                }
            )
        sums = {c: sum(int(r[4 + k]) for r in part) for k, c in enumerate(_TOKENS)}
        names = {m for r in part for m in (r[9] or ())}
        out.append(
            {
                "block_start": start,
                "block_end": end,
                "actual_start": began,
                "actual_end": actual,
                "is_active": now < end and now - actual < span,
                "is_gap": False,
                "entries": sum(int(r[3]) for r in part),
                **sums,
                "total_tokens": sum(sums.values()),
                "cost_usd": float(sum(float(r[8]) for r in part)),
                "models": sorted(m for m in names if m and m != "<synthetic>"),
                "unpriced": sum(int(r[10]) for r in part),
            }
        )
    if first_day is None and last_day is None:
        return out
    zone = ZoneInfo(check_timezone(tz))
    lo, hi = first_day or date.min, last_day or date.max
    return [
        r for r in out if lo <= r["block_start"].replace(tzinfo=UTC).astimezone(zone).date() <= hi
    ]


def _walk(
    first: list[datetime], ts: list[datetime], span: timedelta
) -> tuple[list[int], list[datetime]]:
    """The rows (sorted; ``first``: each row's first message, ``ts``: its time, or its hour's
    end) where blocks of ``span`` start, and the blocks' starts: one step per block."""
    starts_idx, block_starts = [], []
    i, n = 0, len(ts)
    while i < n:
        start = first[i].replace(minute=0, second=0, microsecond=0)
        # ccusage: a message more than ``hours`` after the start begins the next block
        j = bisect_right(ts, start + span, i)
        starts_idx.append(i)
        block_starts.append(start)
        i = max(j, i + 1)
    return starts_idx, block_starts


def _walk_input(
    store: Store,
    first_day: date | None,
    last_day: date | None,
    source: str | None,
    hours: float,
    hourly: bool,
    tz: str,
) -> list[tuple[Any, ...]]:
    """The rows the block walk needs for the blocks starting from ``first_day`` to ``last_day``
    (local dates in ``tz``), as ``_HOURLY`` gives them: hourly sums (``hourly``; the bucket is
    the hour's inclusive end: block edges fall on whole hours, so they give exactly the blocks
    the per-message walk gives, from ~9k rows a year instead of ~1M) or messages.

    A block's phase depends on the messages before it, back to one that came more than
    ``hours`` after the one before it (that one starts a block whatever came earlier). So the
    rows begin at a block's first message: one after such a gap in the two days before the
    window, else (days of activity without one, as agents running overnight make) the last
    block a walk over the hours before the window finds; not at the window's first message,
    whose block may have begun the day before. They end at the first message after the
    window's last block could end, so that a gap starting in the window has its end."""

    def read(where: str, params: list[Any]) -> list[tuple[Any, ...]]:
        sql = _HOURLY if hourly else _PER_MESSAGE
        return store.query(sql.format(where=where), params)

    where, params = IN_DAYS, list[Any](IN_DAYS_PARAMS)
    if source and source != "all":
        where, params = f"{where} AND u.source = ?", [*params, source]
    if first_day is None and last_day is None:
        return read(where, params)
    span = timedelta(hours=hours)
    lo = _utc_midnight(first_day, tz) if first_day else None
    hi = _utc_midnight(last_day + timedelta(days=1), tz) + span if last_day else None
    earliest, after = store.query(
        f"SELECT min(u.ts), min(u.ts) FILTER (WHERE u.ts >= ?) FROM usage_records u "
        f"WHERE true{where}",
        [hi, *params],
    )[0]
    if earliest is None or (lo is not None and hi is not None and lo >= hi):
        return []
    upper, upper_params = (" AND u.ts <= ?", [after]) if after is not None else ("", [])
    if lo is None or lo - span <= earliest:
        return read(where + upper, [*params, *upper_params])
    # the first row whose block (or the gap after it) could start in the window is at or
    # after ``edge``; the rows must begin at a block start no later than that row
    edge = lo - span
    start = edge - timedelta(days=2)
    if start > earliest:
        rows = read(where + " AND u.ts >= ?" + upper, [*params, start, *upper_params])
        k = bisect_left([r[2] for r in rows], edge)
        if k == len(rows):
            return []
        gaps = [i for i in range(1, k + 1) if rows[i][1] - rows[i - 1][2] > span]
        if gaps:
            return rows[gaps[-1] :]
        if rows[0][1] - start > span:
            return rows  # its first row follows a gap reaching back past ``start``
    # walk every hour (or message) before ``edge`` from the last gap: only the times
    bucket = (
        "date_trunc('hour', u.ts - INTERVAL 1 MICROSECOND) + INTERVAL 1 HOUR" if hourly else "u.ts"
    )
    times = store.query(
        f"SELECT {bucket} AS ts, min(u.ts) AS first_ts, max(u.ts) AS last_ts "
        f"FROM usage_records u WHERE u.ts < ?{where} GROUP BY 1 ORDER BY 1",
        [edge, *params],
    )
    g = max((i for i in range(1, len(times)) if times[i][1] - times[i - 1][2] > span), default=0)
    starts, _ = _walk([t[1] for t in times[g:]], [t[0] for t in times[g:]], span)
    begin = times[g + starts[-1]][1]
    return read(where + " AND u.ts >= ?" + upper, [*params, begin, *upper_params])


def _utc_midnight(day: date, tz: str) -> datetime:
    """The start of ``day`` in ``tz`` as a naive UTC time (how ``usage_records.ts`` is kept)."""
    local = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(check_timezone(tz)))
    return local.astimezone(UTC).replace(tzinfo=None)


def burn_rate(
    store: Store, *, now: datetime | None = None, hours: float = 5.0, source: str | None = None
) -> dict[str, Any] | None:
    """The active block's burn rate and where it ends up at this pace; None when idle.

    As ccusage: the rates are over the time from the block's first message to its last, and the
    projection adds the rate times the minutes left. One message (or several at one instant)
    has no rate: the rates and the projection are None, as ccusage's ``burnRate`` and
    ``projection`` are (a rate from one message would project any reply onto five hours)."""
    from specwright.model import utcnow

    now = now or utcnow()
    since = (now - timedelta(hours=hours * 2)).date()
    blocks = block_rows(store, since=since, source=source, hours=hours, now=now)
    # a block not begun (a log stamped in the future: another machine's clock, a hostile
    # line) is "active" by ccusage's rule too, but it is not the block running now
    active = [b for b in blocks if b["is_active"] and b["block_start"] <= now]
    if not active:
        return None
    b = active[-1]
    minutes = (b["actual_end"] - b["actual_start"]).total_seconds() / 60
    remaining = max((b["block_end"] - now).total_seconds() / 60, 0.0)
    out: dict[str, Any] = {
        "block_start": b["block_start"],
        "block_end": b["block_end"],
        "entries": int(b["entries"]),
        "total_tokens": int(b["total_tokens"]),
        "cost_usd": float(b["cost_usd"]),
        "unpriced": int(b["unpriced"]),
        "active_minutes": float(minutes),
        "tokens_per_minute": None,
        "tokens_per_minute_for_indicator": None,
        "cost_per_hour": None,
        "remaining_minutes": float(remaining),
        "projected_total_tokens": None,
        "projected_cost_usd": None,
    }
    if minutes > 0:
        tpm = b["total_tokens"] / minutes
        cph = b["cost_usd"] / minutes * 60
        out.update(
            tokens_per_minute=float(tpm),
            tokens_per_minute_for_indicator=float(
                (b["input_tokens"] + b["output_tokens"]) / minutes
            ),
            cost_per_hour=float(cph),
            projected_total_tokens=int(b["total_tokens"] + tpm * remaining),
            projected_cost_usd=float(b["cost_usd"] + cph * remaining / 60),
        )
    return out


def iso(t: Any) -> str | None:
    """A naive UTC time as ccusage writes it: ``2025-11-03T07:00:00.000Z``."""
    return None if t is None else t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def ccusage_json(r: dict[str, Any], burn: dict[str, Any] | None) -> dict[str, Any]:
    """A billing block in ccusage's ``blocks --json`` shape; the active one carries the burn
    rate (over its first to last message; none with a single message) and the projection."""
    start = iso(r["block_start"])
    rate = projection = None
    if r["is_active"] and burn and burn["active_minutes"] > 0 and iso(burn["block_start"]) == start:
        rate = {
            "tokensPerMinute": burn["tokens_per_minute"],
            "tokensPerMinuteForIndicator": burn["tokens_per_minute_for_indicator"],
            "costPerHour": burn["cost_per_hour"],
        }
        left = round(burn["remaining_minutes"])  # ccusage: whole minutes, cost to the cent
        projection = {
            "totalTokens": round(r["total_tokens"] + burn["tokens_per_minute"] * left),
            "totalCost": round(r["cost_usd"] + burn["cost_per_hour"] / 60 * left, 2),
            "remainingMinutes": max(left, 0),
        }
    return {
        "id": f"gap-{start}" if r["is_gap"] else start,
        "startTime": start,
        "endTime": iso(r["block_end"]),
        "actualEndTime": iso(r["actual_end"]),
        "isActive": r["is_active"],
        "isGap": r["is_gap"],
        "entries": r["entries"],
        "tokenCounts": {
            "inputTokens": r["input_tokens"],
            "outputTokens": r["output_tokens"],
            "cacheCreationInputTokens": r["cache_creation_tokens"],
            "cacheReadInputTokens": r["cache_read_tokens"],
        },
        "totalTokens": r["total_tokens"],
        "costUSD": r["cost_usd"],
        "models": r["models"],
        "burnRate": rate,
        "projection": projection,
    }
