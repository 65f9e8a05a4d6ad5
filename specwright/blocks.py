"""Billing blocks as ccusage ``blocks`` draws them, and the active block's burn rate.

A block starts at the hour of its first message and lasts five hours: a message at most five hours
after the block's start is in it (one exactly on its end too, as in ccusage); the next one starts a
new block, after a gap row when it comes more than five hours after the last message. Read side,
like ``queries.py``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from specwright.queries import LOG_COST, check_timezone, parse_day, usage_filter

if TYPE_CHECKING:
    import pandas as pd

    from specwright.store import Store


def usage_timestamps(
    store: Store,
    *,
    since: str | date | None = None,
    until: str | date | None = None,
    source: str | None = None,
) -> pd.DataFrame:
    """Per-record time, tokens and cost (sorted), the input of billing blocks."""
    where, params = usage_filter(since, until, source)
    return _per_message(store, where, params)


def _per_message(store: Store, where: str, params: list[Any]) -> pd.DataFrame:
    sql = f"""
        SELECT u.ts, u.model, u.input_tokens, u.output_tokens,
               u.cache_write_5m_tokens + u.cache_write_1h_tokens AS cache_creation_tokens,
               u.cache_read_tokens, coalesce({LOG_COST}, 0) AS cost_usd
        FROM usage_records u WHERE true{where} ORDER BY u.ts"""
    return store.query_df(sql, params, via_arrow=True)  # a row per record: plain columns


def _hourly_usage(store: Store, where: str, params: list[Any]) -> pd.DataFrame:
    """Usage summed per hour (the input of billing blocks): tokens, cost, entries, first and
    last message time and models. An hour is (h - 1 hour, h], labelled by its end h: a block
    ends on a whole hour and keeps a message exactly on its end, so no hour straddles two
    blocks."""
    sql = f"""
        SELECT date_trunc('hour', u.ts - INTERVAL 1 MICROSECOND) + INTERVAL 1 HOUR AS bucket,
               min(u.ts) AS first_ts, max(u.ts) AS last_ts,
               count(*) AS n,
               sum(u.input_tokens) AS input_tokens, sum(u.output_tokens) AS output_tokens,
               sum(u.cache_write_5m_tokens + u.cache_write_1h_tokens) AS cache_creation_tokens,
               sum(u.cache_read_tokens) AS cache_read_tokens,
               sum(coalesce({LOG_COST}, 0)) AS cost_usd,
               list(DISTINCT u.model) FILTER (WHERE u.model IS NOT NULL) AS models
        FROM usage_records u WHERE true{where} GROUP BY 1 ORDER BY 1"""
    return store.query_df(sql, params)


def billing_blocks(
    store: Store,
    *,
    since: str | date | None = None,
    until: str | date | None = None,
    source: str | None = None,
    hours: float = 5.0,
    now: datetime | None = None,
    per_message: bool = False,
    tz: str = "UTC",
) -> pd.DataFrame:
    """5-hour billing blocks as ccusage ``blocks`` draws them (``per_message``: walk every
    message instead of hourly sums; slower, same result).

    A block starts at the hour of its first message and lasts ``hours``, its end included; the
    next message starts a new one. A gap of more than ``hours`` since the last message appears as
    an ``is_gap`` row from that message + ``hours`` to the next (ccusage's rules). ``since`` and
    ``until`` (dates in ``tz``) keep the rows that start on those days, as ccusage does: each
    block whole, in the phase the messages before it give it (``_walk_input``)."""
    import numpy as np
    import pandas as pd

    from specwright.model import utcnow

    cols = [
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
    ]
    token_cols = ["input_tokens", "output_tokens", "cache_creation_tokens", "cache_read_tokens"]
    hourly = float(hours).is_integer() and not per_message
    first_day, last_day = parse_day(since, "--since"), parse_day(until, "--until")
    df = _walk_input(store, first_day, last_day, source, hours, hourly, tz)
    if not hourly:
        df = df.assign(
            bucket=df["ts"],
            first_ts=df["ts"],
            last_ts=df["ts"],
            n=1,
            models=df["model"].map(lambda m: [m]),
        )
    if df.empty:
        return pd.DataFrame(columns=cols)
    now = now or utcnow()
    span = np.timedelta64(int(hours * 3600), "s")
    ts = df["bucket"].to_numpy(dtype="datetime64[us]")
    first = df["first_ts"].to_numpy(dtype="datetime64[us]")
    last = df["last_ts"].to_numpy(dtype="datetime64[us]")
    starts_idx, block_starts = _walk(first, ts, span)
    n = len(ts)
    idx = np.asarray(starts_idx)
    sums = {c: np.add.reduceat(df[c].to_numpy(dtype="int64"), idx) for c in token_cols}
    costs = np.add.reduceat(df["cost_usd"].to_numpy(dtype="float64"), idx)
    counts = np.add.reduceat(df["n"].to_numpy(dtype="int64"), idx)
    ends = np.append(idx[1:], n)
    models = df["models"].to_numpy()
    rows: list[dict[str, Any]] = []
    for k, (a, b) in enumerate(zip(idx, ends, strict=True)):
        start = pd.Timestamp(block_starts[k])
        end = start + pd.Timedelta(hours=hours)
        actual = pd.Timestamp(last[a:b].max())
        began = pd.Timestamp(first[a])
        if rows and began - rows[-1]["actual_end"] > pd.Timedelta(hours=hours):
            # as ccusage: a gap from the last message + ``hours`` to the next message
            rows.append(
                {
                    "block_start": rows[-1]["actual_end"] + pd.Timedelta(hours=hours),
                    "block_end": began,
                    "actual_start": None,
                    "actual_end": None,
                    "is_active": False,
                    "is_gap": True,
                    "entries": 0,
                    **dict.fromkeys(token_cols, 0),
                    "total_tokens": 0,
                    "cost_usd": 0.0,
                    "models": [],
                }
            )
        total = int(sum(int(sums[c][k]) for c in token_cols))
        names = {m for group in models[a:b] for m in (group if group is not None else ())}
        rows.append(
            {
                "block_start": start,
                "block_end": end,
                "actual_start": began,
                "actual_end": actual,
                "is_active": bool(
                    pd.Timestamp(now) < end
                    and pd.Timestamp(now) - actual < pd.Timedelta(hours=hours)
                ),
                "is_gap": False,
                "entries": int(counts[k]),
                **{c: int(sums[c][k]) for c in token_cols},
                "total_tokens": total,
                "cost_usd": float(costs[k]),
                "models": sorted(m for m in names if m and m != "<synthetic>"),
            }
        )
    out = pd.DataFrame(rows, columns=cols)
    if first_day is None and last_day is None:
        return out
    day = out["block_start"].dt.tz_localize("UTC").dt.tz_convert(check_timezone(tz)).dt.date
    keep = (day >= (first_day or date.min)) & (day <= (last_day or date.max))
    return out[keep].reset_index(drop=True)


def _walk(first: Any, ts: Any, span: Any) -> tuple[list[int], list[Any]]:
    """The rows (sorted; ``first``: each row's first message, ``ts``: its time, or its hour's
    end) where blocks of ``span`` start, and the blocks' starts: one step per block."""
    import numpy as np

    starts_idx, block_starts = [], []
    i, n = 0, len(ts)
    while i < n:
        start = first[i].astype("datetime64[h]").astype("datetime64[us]")
        # ccusage: a message more than ``hours`` after the start begins the next block
        j = int(np.searchsorted(ts, start + span, side="right"))
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
) -> pd.DataFrame:
    """The rows the block walk needs for the blocks starting from ``first_day`` to ``last_day``
    (local dates in ``tz``): hourly sums (``hourly``; ``bucket`` is the hour's inclusive end:
    block edges fall on whole hours, so they give exactly the blocks the per-message walk
    gives, from ~9k rows a year instead of ~1M) or messages.

    A block's phase depends on the messages before it, back to one that came more than
    ``hours`` after the one before it (that one starts a block whatever came earlier). So the
    rows begin at a block's first message: one after such a gap in the two days before the
    window, else (days of activity without one, as agents running overnight make) the last
    block a walk over the hours before the window finds; not at the window's first message,
    whose block may have begun the day before. They end at the first message after the
    window's last block could end, so that a gap starting in the window has its end."""
    import numpy as np

    read = _hourly_usage if hourly else _per_message
    where, params = ("", []) if not source or source == "all" else (" AND u.source = ?", [source])
    if first_day is None and last_day is None:
        return read(store, where, params)
    span = timedelta(hours=hours)
    lo = _utc_midnight(first_day, tz) if first_day else None
    hi = _utc_midnight(last_day + timedelta(days=1), tz) + span if last_day else None
    earliest, after = store.query(
        f"SELECT min(u.ts), min(u.ts) FILTER (WHERE u.ts >= ?) FROM usage_records u "
        f"WHERE true{where}",
        [hi, *params],
    )[0]
    if earliest is None or (lo is not None and hi is not None and lo >= hi):
        return read(store, " AND false", [])
    upper, upper_params = (" AND u.ts <= ?", [after]) if after is not None else ("", [])
    if lo is None or lo - span <= earliest:
        return read(store, where + upper, [*params, *upper_params])
    # the first row whose block (or the gap after it) could start in the window is at or
    # after ``edge``; the rows must begin at a block start no later than that row
    edge = lo - span
    start = edge - timedelta(days=2)
    if start > earliest:
        df = read(store, where + " AND u.ts >= ?" + upper, [*params, start, *upper_params])
        first = df["first_ts" if hourly else "ts"].to_numpy(dtype="datetime64[us]")
        last = df["last_ts" if hourly else "ts"].to_numpy(dtype="datetime64[us]")
        k = int(np.searchsorted(last, np.datetime64(edge), side="left"))
        if k == len(df):
            return df.iloc[0:0]
        gaps = np.flatnonzero(first[1 : k + 1] - last[:k] > np.timedelta64(span)) + 1
        if len(gaps):
            return df.iloc[int(gaps[-1]) :].reset_index(drop=True)
        if first[0] - np.datetime64(start) > np.timedelta64(span):
            return df  # its first row follows a gap reaching back past ``start``
    # walk every hour (or message) before ``edge`` from the last gap: only the times
    bucket = (
        "date_trunc('hour', u.ts - INTERVAL 1 MICROSECOND) + INTERVAL 1 HOUR" if hourly else "u.ts"
    )
    times = store.query_df(
        f"SELECT {bucket} AS ts, min(u.ts) AS first_ts, max(u.ts) AS last_ts "
        f"FROM usage_records u WHERE u.ts < ?{where} GROUP BY 1 ORDER BY 1",
        [edge, *params],
    )
    first = times["first_ts"].to_numpy(dtype="datetime64[us]")
    last = times["last_ts"].to_numpy(dtype="datetime64[us]")
    ts = times["ts"].to_numpy(dtype="datetime64[us]")
    gaps = np.flatnonzero(first[1:] - last[:-1] > np.timedelta64(span)) + 1
    g = int(gaps[-1]) if len(gaps) else 0
    starts, _ = _walk(first[g:], ts[g:], np.timedelta64(span))
    begin = first[g + starts[-1]].astype(datetime)
    return read(store, where + " AND u.ts >= ?" + upper, [*params, begin, *upper_params])


def _utc_midnight(day: date, tz: str) -> datetime:
    """The start of ``day`` in ``tz`` as a naive UTC time (how ``usage_records.ts`` is kept)."""
    from zoneinfo import ZoneInfo

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
    blocks = billing_blocks(store, since=since, source=source, hours=hours, now=now)
    active = blocks[blocks["is_active"]] if not blocks.empty else blocks
    if active.empty:
        return None
    b = active.iloc[-1]
    minutes = (b["actual_end"] - b["actual_start"]).total_seconds() / 60
    remaining = max((b["block_end"] - now).total_seconds() / 60, 0.0)
    out: dict[str, Any] = {
        "block_start": b["block_start"].to_pydatetime(),
        "block_end": b["block_end"].to_pydatetime(),
        "entries": int(b["entries"]),
        "total_tokens": int(b["total_tokens"]),
        "cost_usd": float(b["cost_usd"]),
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
