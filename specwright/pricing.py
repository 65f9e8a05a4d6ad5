"""Token prices: `genai-prices` first, config `prices:` overrides, one cost formula everywhere.

Rates are USD per million tokens. ``input_tokens`` follows Anthropic semantics (cache reads and
writes excluded); cache writes are split into 5-minute and 1-hour ones, each at its own rate
(1-hour writes at the library's ``cache_write_1h`` rate, else 2x input, as Anthropic charges).
Tiered (>200k) prices apply to the whole request when its prompt (input + cache read + cache
write) exceeds the tier start, which is how Anthropic bills long-context requests.

A model nobody knows the price of gets ``None`` and a warning, never 0. The same ``Rates`` feed
``compute_cost`` (one call) and the bulk SQL cost expression (``sql_cost``) used by ingest.
Importing genai-prices costs ~0.2 s, so an ingest first offers the library prices its store
confirmed today (``reuse_stored``); only a model without one makes it import the library. A
first ingest, which needs it, imports it on a thread while DuckDB reads the logs
(``preload_library``).
"""

from __future__ import annotations

import logging
import sys
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from specwright.errors import named
from specwright.model import Usage

if TYPE_CHECKING:
    from specwright.config import Price

log = logging.getLogger(__name__)

CACHE_WRITE_1H_MULTIPLIER = 2.0  # Anthropic: a 1-hour cache write costs 2x the input rate
PER = 1_000_000

# Provider names agents use, mapped to genai-prices provider ids.
_PROVIDER_ALIASES = {
    "anthropic": "anthropic",
    "claude": "anthropic",
    "claude_code": "anthropic",
    "claude-code": "anthropic",
    "openai": "openai",
    "codex": "openai",
    "zai": "zai",
    "z.ai": "zai",
    "zai-coding-plan": "zai",
    "zhipuai": "zhipuai",
    "zhipuai-coding-plan": "zhipuai",
    "google": "google",
    "gemini": "google",
    "openrouter": "openrouter",
}


class UnknownPriceWarning(UserWarning):
    """A model's price is unknown: its cost is recorded as NULL."""


@dataclass(frozen=True)
class Rates:
    """USD per million tokens for one model on one provider route."""

    model: str
    provider: str
    input: float
    output: float
    cache_write: float
    cache_write_1h: float
    cache_read: float
    tier_start: int | None = None  # prompt tokens above which the tier rates apply
    tier_input: float | None = None
    tier_output: float | None = None
    tier_cache_write: float | None = None
    tier_cache_write_1h: float | None = None
    tier_cache_read: float | None = None
    source: str = "genai-prices"

    def cost(
        self,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_5m_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
    ) -> float:
        """The cost in USD of one request with these token counts."""
        prompt = input_tokens + cache_read_tokens + cache_write_5m_tokens + cache_write_1h_tokens
        tiered = self.tier_start is not None and prompt > self.tier_start
        r_in = self.tier_input if tiered and self.tier_input is not None else self.input
        r_out = self.tier_output if tiered and self.tier_output is not None else self.output
        r_cw = (
            self.tier_cache_write
            if tiered and self.tier_cache_write is not None
            else self.cache_write
        )
        r_cw1 = (
            self.tier_cache_write_1h
            if tiered and self.tier_cache_write_1h is not None
            else self.cache_write_1h
        )
        r_cr = (
            self.tier_cache_read if tiered and self.tier_cache_read is not None else self.cache_read
        )
        return (
            input_tokens * r_in
            + output_tokens * r_out
            + cache_write_5m_tokens * r_cw
            + cache_write_1h_tokens * r_cw1
            + cache_read_tokens * r_cr
        ) / PER

    def row(self) -> dict[str, Any]:
        """This price as a row of the ``prices`` table (without ``updated_at``)."""
        return {
            "model": self.model,
            "provider": self.provider,
            "input_per_mtok": self.input,
            "output_per_mtok": self.output,
            "cache_write_per_mtok": self.cache_write,
            "cache_write_1h_per_mtok": self.cache_write_1h,
            "cache_read_per_mtok": self.cache_read,
            "tier_start_tokens": self.tier_start,
            "tier_input_per_mtok": self.tier_input,
            "tier_output_per_mtok": self.tier_output,
            "tier_cache_write_per_mtok": self.tier_cache_write,
            "tier_cache_write_1h_per_mtok": self.tier_cache_write_1h,
            "tier_cache_read_per_mtok": self.tier_cache_read,
            "source": self.source,
        }


def normalize_provider(provider: str | None, model: str = "") -> str | None:
    """The genai-prices provider id for an agent's provider name (GLM defaults to Z.ai)."""
    if provider:
        key = provider.strip().lower()
        return _PROVIDER_ALIASES.get(key, key)
    if model.lower().startswith("glm-"):
        # GLM through coding agents goes to Z.ai's international API, not the mainland platform
        return "zai"
    return None


def _split_model(model: str) -> tuple[str | None, str]:
    """``anthropic/claude-x`` -> (``anthropic``, ``claude-x``); a bare name has no provider."""
    if "/" in model:
        head, _, tail = model.partition("/")
        if head.lower() in _PROVIDER_ALIASES:
            return head, tail
    return None, model


def _override_for(
    model: str, provider: str | None, overrides: dict[str, Price] | None
) -> Price | None:
    if not overrides:
        return None
    candidates = [model, model.lower()]
    bare = _split_model(model)[1]
    candidates += [bare, bare.lower()]
    lowered = {k.lower(): v for k, v in overrides.items()}
    for key in candidates:
        price = overrides.get(key) or lowered.get(key.lower())
        if price is None:
            continue
        if price.provider and provider and normalize_provider(price.provider) != provider:
            continue
        return price
    return None


def _from_override(model: str, provider: str | None, price: Price) -> Rates:
    cache_write = price.cache_write if price.cache_write is not None else price.input * 1.25
    return Rates(
        model=model,
        provider=provider or normalize_provider(price.provider) or "",
        input=price.input,
        output=price.output,
        cache_write=cache_write,
        cache_write_1h=(
            price.cache_write_1h
            if price.cache_write_1h is not None
            else price.input * CACHE_WRITE_1H_MULTIPLIER
        ),
        cache_read=price.cache_read if price.cache_read is not None else price.input * 0.1,
        source="config",
    )


def _tiered(value: Any) -> tuple[float | None, int | None, float | None]:
    """(base, tier start, tier price) of a genai-prices price (a Decimal or TieredPrices)."""
    if value is None:
        return None, None, None
    tiers = getattr(value, "tiers", None)
    if tiers is None:
        return float(value), None, None
    base = float(value.base)
    if not tiers:
        return base, None, None
    first = tiers[0]  # Anthropic and Google publish one long-context tier
    return base, int(first.start), float(first.price)


# Library rates a store already holds (``prices`` rows written today by the installed version of
# genai-prices): ``reuse_stored`` puts them here so a process that only re-ingests a few new
# lines does not import the library (~0.2 s, more than the ingest itself).
_stored: dict[tuple[str, str], tuple[Rates, date]] = {}


@lru_cache(maxsize=1)
def library_source() -> str:
    """What ``Rates.source`` says for rates from the installed genai-prices."""
    from importlib.metadata import version

    return f"genai-prices {version('genai-prices')}"


def reuse_stored(rows: Iterable[dict[str, Any]], today: date) -> None:
    """Take library rates from stored ``prices`` rows (``Rates.row()`` keys plus ``updated_at``)
    written on ``today`` (UTC) by the installed library version; older rows are looked up again
    (a price can change on a date), rows from config overrides are never taken (overrides are
    read from the config each time)."""
    source = library_source()
    for row in rows:
        updated = row.get("updated_at")
        if row.get("source") != source or updated is None or updated.date() != today:
            continue
        rates = Rates(
            model=row["model"],
            provider=row["provider"],
            input=row["input_per_mtok"],
            output=row["output_per_mtok"],
            cache_write=row["cache_write_per_mtok"],
            cache_write_1h=row["cache_write_1h_per_mtok"],
            cache_read=row["cache_read_per_mtok"],
            tier_start=row["tier_start_tokens"],
            tier_input=row["tier_input_per_mtok"],
            tier_output=row["tier_output_per_mtok"],
            tier_cache_write=row["tier_cache_write_per_mtok"],
            tier_cache_write_1h=row["tier_cache_write_1h_per_mtok"],
            tier_cache_read=row["tier_cache_read_per_mtok"],
            source=source,
        )
        if None in (rates.input, rates.output):
            continue
        _stored[(rates.model, rates.provider)] = (rates, today)


def _library_rates(model: str, provider: str | None) -> Rates | None:
    if provider is not None:
        known = _stored.get((model, provider))
        if known is not None and known[1] == datetime.now(UTC).date():
            return known[0]
    return _looked_up(model, provider)


_preloading: threading.Thread | None = None


def preload_library() -> None:
    """Start importing genai-prices on a thread of its own (once per process): a first ingest
    calls this before DuckDB reads the logs, so the ~0.15 s import overlaps that read instead of
    following it. A lookup that comes while the import runs waits for it (Python's import lock)."""
    global _preloading
    if _preloading is not None or "genai_prices" in sys.modules:
        return
    _preloading = threading.Thread(target=_import_library, name="specwright-prices", daemon=True)
    _preloading.start()


def _import_library() -> None:
    try:
        import genai_prices  # noqa: F401
    except Exception:  # the lookup that needs the library reports why it cannot import it
        pass


@lru_cache(maxsize=1024)
def _looked_up(model: str, provider: str | None) -> Rates | None:
    from genai_prices import Usage as GUsage
    from genai_prices import calc_price

    one = GUsage(input_tokens=1, output_tokens=1)
    # a Claude Code reply in fast mode (``speed: fast``) is logged as ``<model>-fast``, as ccusage
    # names it: its price is the library's fast variant of the model, unknown when it has none
    fast = model.lower().startswith("claude-") and model.lower().endswith("-fast")
    try:
        calc = calc_price(
            one, model, provider_id=provider, price_context={"speed": "fast"} if fast else None
        )
        if fast and calc.model_price == calc_price(one, model, provider_id=provider).model_price:
            log.debug("genai-prices has no fast-mode price for %s (%s)", model, provider)
            return None
    except Exception as exc:  # LookupError and friends: the library does not know it
        log.debug("genai-prices has no price for %s (%s): %s", model, provider, exc)
        return None
    mp = calc.model_price
    inp, start_i, t_in = _tiered(getattr(mp, "input_mtok", None))
    out, start_o, t_out = _tiered(getattr(mp, "output_mtok", None))
    cw, start_w, t_cw = _tiered(getattr(mp, "cache_write_mtok", None))
    cw1, start_w1, t_cw1 = _tiered(getattr(mp, "cache_write_1h_mtok", None))
    cr, start_r, t_cr = _tiered(getattr(mp, "cache_read_mtok", None))
    if inp is None or out is None:
        return None
    if cw1 is None and cw is not None:
        cw1 = inp * CACHE_WRITE_1H_MULTIPLIER
        t_cw1 = t_in * CACHE_WRITE_1H_MULTIPLIER if t_in is not None else None
    starts = [s for s in (start_i, start_o, start_w, start_w1, start_r) if s is not None]
    if cr is None:  # no cache-read price (gpt-5-pro): a cached token costs what input does
        cr, t_cr = inp, t_in
    return Rates(
        model=model,
        provider=calc.provider.id,
        input=inp,
        output=out,
        cache_write=cw or 0.0,
        cache_write_1h=cw1 or 0.0,
        cache_read=cr,
        tier_start=min(starts) if starts else None,
        tier_input=t_in,
        tier_output=t_out,
        tier_cache_write=t_cw,
        tier_cache_write_1h=t_cw1,
        tier_cache_read=t_cr,
        source=library_source(),
    )


def _route(model: str, provider: str | None) -> tuple[str | None, str, str | None]:
    """(provider prefix of ``model``, its bare name, the provider route to price it on)."""
    prefix, bare = _split_model(model)
    route = normalize_provider(provider or prefix, bare)
    if route in ("anthropic", "openai") and bare.lower().startswith("glm-"):
        # the agent's wire, not the seller: Claude Code (or the Messages API) pointed at Z.ai's
        # Anthropic-compatible endpoint logs glm-4.7, which Anthropic does not sell
        route = "zai"
    return prefix, bare, route


def override_rates(
    model: str | None, provider: str | None = None, overrides: dict[str, Price] | None = None
) -> Rates | None:
    """The rates of a config override for ``model`` (as ``rates_for`` finds it), or None; never
    loads the price library."""
    if not model or not overrides:
        return None
    _, _, route = _route(model, provider)
    override = _override_for(model, route, overrides)
    return _from_override(model, route, override) if override is not None else None


def rates_for(
    model: str | None, provider: str | None = None, overrides: dict[str, Price] | None = None
) -> Rates | None:
    """The rates for ``model`` (config override first, then genai-prices), or None if unknown."""
    if not model:
        return None
    override = override_rates(model, provider, overrides)
    if override is not None:
        return override
    prefix, bare, route = _route(model, provider)
    rates = _library_rates(bare, route)
    if rates is None and route is not None and provider is None and prefix is None:
        rates = _library_rates(bare, None)  # a guessed route: let the library choose
    return rates


_warned: set[tuple[str, str | None]] = set()


def warn_unknown(model: str | None, provider: str | None = None) -> None:
    """Warn once per process that ``model`` has no known price (its cost stays NULL)."""
    key = (model or "", provider)
    if key in _warned:
        return
    _warned.add(key)
    where = f" on {named([provider])}" if provider else ""
    what = named([model]) + where if model else "no model"  # an agent's text: bounded
    warnings.warn(
        f"no price known for {what}: cost recorded as NULL; add it under `prices:` in "
        ".handoff/config.yaml (USD per million tokens)",
        UnknownPriceWarning,
        stacklevel=3,
    )


def compute_cost(
    usage: Usage,
    model: str,
    *,
    provider: str | None = None,
    cache_write_1h_tokens: int = 0,
    overrides: dict[str, Price] | None = None,
) -> float | None:
    """The cost in USD of ``usage`` on ``model``; None (and a warning) when the price is unknown.

    ``usage.cache_write_tokens`` counts all cache writes; ``cache_write_1h_tokens`` (else
    ``usage.cache_write_1h_tokens``) says how many of them were 1-hour writes. Usage with no
    tokens at all costs 0 whatever the model."""
    total = usage.total_tokens
    if total == 0:
        return 0.0
    rates = rates_for(model, provider, overrides)
    if rates is None:
        warn_unknown(model, provider)
        return None
    one_hour = cache_write_1h_tokens or usage.cache_write_1h_tokens
    one_hour = min(max(one_hour, 0), usage.cache_write_tokens)
    return rates.cost(
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens - one_hour,
        one_hour,
    )


def sql_cost(r: str = "p", u: str = "u") -> str:
    """A SQL expression computing a row's cost from a usage row ``u`` joined to rates ``r``.

    ``u`` has input_tokens, output_tokens, cache_read_tokens, cache_write_5m_tokens,
    cache_write_1h_tokens; ``r`` has the columns of ``Rates.row()``. NULL when ``r`` is missing."""
    prompt = (
        f"({u}.input_tokens + {u}.cache_read_tokens + {u}.cache_write_5m_tokens "
        f"+ {u}.cache_write_1h_tokens)"
    )
    tiered = f"({r}.tier_start_tokens IS NOT NULL AND {prompt} > {r}.tier_start_tokens)"

    def rate(name: str) -> str:
        return (
            f"(CASE WHEN {tiered} AND {r}.tier_{name}_per_mtok IS NOT NULL "
            f"THEN {r}.tier_{name}_per_mtok ELSE {r}.{name}_per_mtok END)"
        )

    return (
        f"(({u}.input_tokens * {rate('input')} + {u}.output_tokens * {rate('output')} "
        f"+ {u}.cache_write_5m_tokens * {rate('cache_write')} "
        f"+ {u}.cache_write_1h_tokens * {rate('cache_write_1h')} "
        f"+ {u}.cache_read_tokens * {rate('cache_read')}) / {PER}.0)"
    )
