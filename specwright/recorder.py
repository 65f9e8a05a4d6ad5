"""Recording one execution: every event to its journal as it arrives, to the store in batches.

The journal line is written (and handed to the OS) before the event is buffered, so a busy
database or a killed process never loses an event. The buffer is flushed at least every
``flush_interval_s`` by a background thread, as soon as it holds ``flush_max`` events or
``flush_bytes`` of journal text (the thread is woken; the caller writes only when it is twice
that), and at the end. A bounded deque of the last ``live_size`` events is what a UI shows; the store has all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from specwright.journal import dumps, op_time
from specwright.model import AgentEvent, ErrorEvent, Usage, new_id, utcnow
from specwright.redact import Redactor
from specwright.store import Store

log = logging.getLogger(__name__)

MAX_OUTPUT_CHARS = 64 * 1024  # a tool output beyond this is truncated; output_len keeps the size
MAX_TEXT_CHARS = 64 * 1024
MAX_RAW_CHARS = 16 * 1024
# What one execution may journal and store: an agent printing 30 MB of lines made ~175 MB of
# journal and 300,000 event rows. Past this, text, tool and step events are counted but not
# stored (usage and errors always are), and one warning event at the end says how many.
MAX_EXECUTION_BYTES = 64 * 1024 * 1024
_ALWAYS_KEPT = ("usage", "error")
# ...but not without end: an agent printing endless malformed lines makes endless warnings.
# Usage and errors are a few KB each; past the bound they get this much more, then nothing
# but the closing warning is stored.
MAX_KEPT_PAST_BYTES = 8 * 1024 * 1024
MAX_NAME_CHARS = 200  # a tool or step name, a call id, a model: identifiers, not text


def _bounded(
    text: str | None, limit: int, redact: Callable[[str], str] | None = None
) -> tuple[str | None, int | None]:
    """``text`` cut to ``limit`` chars (with a marker) and redacted; plus its original length.

    Only a head of twice the limit is redacted, so a 50 MB tool output costs no more than a
    small one (a secret that head cuts in two is redacted too); the final cut comes after
    redaction, so no secret is split by it."""
    if text is None:
        return None, None
    original = len(text)
    head = text[: limit * 2] if original > limit * 2 else text
    if redact is not None:
        if len(head) < original and isinstance(redact, Redactor):
            head = redact.edges(head, head=False)
        else:
            head = redact(head)
    if original <= limit * 2 and len(head) <= limit:
        return head, original
    marker = f"\n…[truncated: {original} chars in all, the first {limit} kept]"
    return head[:limit] + marker, original


def _name(value: Any, redact: Callable[[str], str]) -> str | None:
    """An identifier column: ``str(value)`` redacted and cut to ``MAX_NAME_CHARS``, with a
    marker when cut (an agent's JSON may put any value, of any size, where a name goes)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)[: MAX_NAME_CHARS * 2]
    text = redact(text[: MAX_NAME_CHARS * 2])
    return text if len(text) <= MAX_NAME_CHARS else text[: MAX_NAME_CHARS - 1] + "…"


def _live(event: AgentEvent) -> AgentEvent:
    """``event`` as the live view keeps it: its text cut as the store cuts it, so 200 huge
    events are not held in memory (the store and journal have what is recorded)."""
    limit = MAX_TEXT_CHARS
    if event.type == "text" and len(event.text) > limit:
        return replace(event, text=event.text[:limit] + "…")
    if event.type == "tool_result" and len(event.output) > limit:
        return replace(event, output=event.output[:limit] + "…")
    if event.type == "error" and len(event.message) > limit:
        return replace(event, message=event.message[:limit] + "…")
    return event


def _broken_lines_redacted(value: Any, redact: Redactor, cap: int) -> Any:
    """``value`` (JSON-like) with each string that has line breaks redacted before JSON turns
    its breaks into ``\\n``, which hides a secret wrapped over lines (`base64 FILE` output);
    only a string's first ``cap`` chars, as no more of it is kept."""
    if isinstance(value, str):
        return redact(value[:cap]) + value[cap:] if "\n" in value else value
    if isinstance(value, dict):
        return {k: _broken_lines_redacted(v, redact, cap) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_broken_lines_redacted(v, redact, cap) for v in value]
    return value


def _raw_json(raw: Any, redact: Redactor) -> str | None:
    if raw is None:
        return None
    raw = _broken_lines_redacted(raw, redact, MAX_RAW_CHARS * 2)
    text, length = _bounded(dumps(raw), MAX_RAW_CHARS, redact)
    if text is not None and length is not None and length > MAX_RAW_CHARS:
        return dumps({"truncated": True, "length": length, "head": text[:MAX_RAW_CHARS]})
    return text


class ExecutionRecorder:
    """Records one execution (an agent, planner, reviewer or summarizer call)."""

    def __init__(
        self,
        store: Store,
        *,
        role: str,
        backend: str,
        executor: str | None = None,
        model: str | None = None,
        run_id: str | None = None,
        spec_id: str | None = None,
        chunk_id: str | None = None,
        iteration: int | None = None,
        flush_interval_s: float = 1.0,
        flush_max: int = 5000,
        flush_bytes: int = 8 * 1024 * 1024,
        live_size: int = 200,
        redactor: Redactor | None = None,
        execution_id: str | None = None,
        prices: dict[str, Any] | None = None,
        max_bytes: int = MAX_EXECUTION_BYTES,
        max_kept_past_bytes: int = MAX_KEPT_PAST_BYTES,
    ) -> None:
        self.store = store
        self.id = execution_id or new_id()
        self.row: dict[str, Any] = {
            "id": self.id,
            "run_id": run_id,
            "spec_id": spec_id,
            "chunk_id": chunk_id,
            "iteration": iteration,
            "role": role,
            "backend": backend,
            "executor": executor,
            "model": model,
            "status": "running",
        }
        self.prices = prices  # config `prices:` overrides for computed cost
        self.flush_interval_s = flush_interval_s
        self.flush_max = flush_max
        self.flush_bytes = flush_bytes
        self.live: deque[AgentEvent] = deque(maxlen=live_size)
        self.redact = redactor if redactor is not None else Redactor.from_env()
        self.event_count = 0
        self.warnings = 0
        self._told: list[tuple[Usage, bool]] = []  # the stored usage events: (usage, final)
        self.max_bytes = max_bytes
        self.max_kept_past_bytes = max_kept_past_bytes
        self._text_before = ""  # the end of the last text event, unredacted: a secret split
        # across two lines or chunks is found in it plus the next one (never stored)
        self._text_open = False  # whether the last text event's stored text ends redacted
        self._journaled = 0  # journal bytes of this execution's events so far
        self.dropped: dict[str, int] = {}  # events past ``max_bytes``, by type
        # The stored calls by call id: [tool name, ts, answered, failed], so a result is written
        # with the call it answers (``_answer``). Memory is the only place to look: an execution
        # has one recorder (``start`` inserts its row; a resumed run starts new executions), and
        # a result never answers another execution's call. Bounded by ``max_bytes``: a call is a
        # journal line of 550+ bytes, so an agent making nothing but calls holds ~30 MB here.
        self._calls: dict[str, list[Any]] = {}
        self._buffer: list[dict[str, Any]] = []
        self._buffer_bytes = 0  # journal bytes of the buffered ops: bounds memory, not just count
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # a full buffer asks the flusher to write now
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()
        self.finished = False

    def add_secrets(self, env: Mapping[str, str]) -> None:
        """Also redact the secret-looking values of ``env`` (e.g. keys given only to the agent)."""
        known = getattr(self.redact, "_items", ())
        self.redact = Redactor.from_env(env, extra=known)

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self) -> ExecutionRecorder:
        """Journal the execution row and start the flusher, which writes the row to the store
        at once, off the caller's path (a connection costs tens of ms; the agent starts
        meanwhile). Once; later calls no-op."""
        if self._thread is not None:
            return self
        self.row["started_at"] = utcnow()
        self._started = time.monotonic()
        op = Store.op_insert("executions", self.row)
        self._journal = self.store.journal.writer(self.id)
        with self._lock:
            self._buffer_bytes += self._journal.append([op])
            self._buffer.append(op)
        self._thread = threading.Thread(
            target=self._flusher, name=f"flush-{self.id[:8]}", daemon=True
        )
        self._wake.set()
        self._thread.start()
        return self

    def __enter__(self) -> ExecutionRecorder:
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self.finished:
            status = "cancelled" if exc_type is KeyboardInterrupt else "error"
            reason = f"{exc_type.__name__}: {exc}" if exc_type else "not finished"
            self.finish(status=status, exit_reason=reason[:500], incomplete=True)

    def _flusher(self) -> None:
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.flush()
            except Exception as exc:  # the journal has the events; the next flush retries
                log.warning("execution %s: flush to the store failed: %s", self.id, exc)

    # --- events -----------------------------------------------------------------------------

    def on_event(self, event: AgentEvent) -> None:
        """Record one event: journal now, store at the next flush.

        A buffer past ``flush_max`` events or ``flush_bytes`` wakes the background flusher, so
        the agent's stream is not held up by the database; past twice that (the flusher is
        behind, e.g. the database is locked) the event's caller flushes, which bounds memory."""
        self._record(event)

    def _record(self, event: AgentEvent, closing: bool = False) -> None:
        with self._lock:
            self.live.append(_live(event))
            past = self._journaled >= self.max_bytes
            hard = self._journaled >= self.max_bytes + self.max_kept_past_bytes
            if not closing and past and (hard or event.type not in _ALWAYS_KEPT):
                self.dropped[event.type] = self.dropped.get(event.type, 0) + 1
                return
            self.event_count += 1
            row = self._event_row(event, self.event_count)
            # The row is JSON-normal as built (times as ISO text, input and raw as JSON text),
            # so the op skips Store.op_insert's pass over its 24 columns: ~1.6 us of an event's
            # ~35, which pays for the four columns that name a result's call (DuckDB writes a
            # wider row: ~9% more time in the flusher).
            op = {"t": op_time(), "op": "insert", "table": "events", "row": row}
            written = self._journal.append([op])
            self._journaled += written
            self._buffer_bytes += written
            self._buffer.append(op)
            if event.type == "error" and event.kind == "warning":
                self.warnings += 1
            if event.type == "usage":
                self._told.append((event.usage, event.final))
            count, size = len(self._buffer), self._buffer_bytes
        if count < self.flush_max and size < self.flush_bytes:
            return
        behind = count >= 2 * self.flush_max or size >= 2 * self.flush_bytes
        if self._thread is not None and self._thread.is_alive() and not behind:
            self._wake.set()
        else:
            self.flush()

    def _event_row(self, event: AgentEvent, seq: int) -> dict[str, Any]:
        r = self.redact
        row: dict[str, Any] = {
            "id": new_id(),
            "execution_id": self.id,
            "seq": seq,
            "ts": utcnow().isoformat(),
            "type": event.type,
            "tool_name": None,
            "call_id": None,
            "input": None,
            "output": None,
            "output_len": None,
            "is_error": None,
            "call_tool": None,
            "call_ts": None,
            "first_result": None,
            "first_failure": None,
            "text": None,
            "model": None,
            "input_tokens": None,
            "output_tokens": None,
            "cache_read_tokens": None,
            "cache_write_tokens": None,
            "reasoning_tokens": None,
            "cost_usd": None,
            "raw": _raw_json(event.raw, r),
        }
        if event.type == "text":
            before, open_end = self._text_before, self._text_open
            row["text"], length = _bounded(
                event.text, MAX_TEXT_CHARS, lambda t: r.across(before, t, open_end=open_end)
            )
            self._text_before = (before[-4096:] + event.text[-4096:])[-4096:]
            # a text cut to its bound may end inside a secret whatever it shows
            self._text_open = (length or 0) > MAX_TEXT_CHARS or r.ends_redacted(row["text"])
        elif event.type == "tool_call":
            row["tool_name"], row["call_id"] = _name(event.tool, r), _name(event.call_id, r)
            tool_input = _broken_lines_redacted(event.input, r, MAX_OUTPUT_CHARS * 2)
            text, length = _bounded(dumps(tool_input), MAX_OUTPUT_CHARS, r)
            if length is not None and length > MAX_OUTPUT_CHARS:  # keep the column valid JSON
                text = dumps({"truncated": True, "length": length, "head": text})
            row["input"] = text
            if row["call_id"] is not None:  # a later call with the same id is the one answered
                self._calls[row["call_id"]] = [row["tool_name"], row["ts"], False, False]
        elif event.type == "tool_result":
            row["tool_name"], row["call_id"], row["is_error"] = (
                _name(event.tool, r),
                _name(event.call_id, r),
                event.is_error,
            )
            row["output"], row["output_len"] = _bounded(event.output, MAX_OUTPUT_CHARS, r)
            self._answer(row)
        elif event.type == "usage":
            u = event.usage
            row.update(
                model=_name(u.model, r),
                input_tokens=u.input_tokens,
                output_tokens=u.output_tokens,
                cache_read_tokens=u.cache_read_tokens,
                cache_write_tokens=u.cache_write_tokens,
                reasoning_tokens=u.reasoning_tokens,
                cost_usd=u.cost_usd,
                text="final" if event.final else None,
            )
        elif event.type == "error":
            # an error often ends with a line of stderr cut to length: the cut may halve a secret
            row["text"], _ = _bounded(
                event.message, MAX_TEXT_CHARS, lambda t: r.edges(t, head=False)
            )
            row["tool_name"] = _name(event.kind, r)
            row["is_error"] = event.kind != "warning"
        elif event.type == "step":
            row["text"] = _name(event.name, r)
            row["call_id"] = _name(event.session_id, r)
        return row

    def _answer(self, row: dict[str, Any]) -> None:
        """Name on a result row the call it answers, as migration 10's backfill does: the
        latest call with its id before it, its tool and time, and whether this is the call's
        first result (its latency) or first failed one. The tool-call report then scans
        results instead of grouping every tool event by call. A result with no call before it
        is left unmarked, as the report always left it out."""
        call = self._calls.get(row["call_id"]) if row["call_id"] is not None else None
        if call is None:
            return
        failed = bool(row["is_error"])
        row["call_tool"], row["call_ts"] = call[0], call[1]
        row["first_result"], row["first_failure"] = not call[2], failed and not call[3]
        call[2], call[3] = True, call[3] or failed

    def flush(self) -> int:
        """Write buffered events to the store in one transaction; returns how many."""
        with self._flush_lock:
            with self._lock:
                batch, self._buffer = self._buffer, []
                size, self._buffer_bytes = self._buffer_bytes, 0
            if not batch:
                return 0
            try:
                self.store.write(batch, self.id, journaled=True)
            except BaseException:
                with self._lock:  # keep them for the next attempt, in order
                    self._buffer[:0] = batch
                    self._buffer_bytes += size
                raise
            return len(batch)

    # --- end --------------------------------------------------------------------------------

    def finish(
        self,
        *,
        status: str,
        usage: Usage | None = None,
        exit_reason: str = "",
        session_id: str | None = None,
        model: str | None = None,
        num_turns: int | None = None,
        raw: dict[str, Any] | None = None,
        computed_cost_usd: float | None = None,
        requests: Sequence[Usage] | None = None,
        incomplete: bool = False,
        unreported: bool = False,
    ) -> None:
        """Flush everything and write the execution's totals and final status. ``requests``,
        when given, are the execution's model calls: the computed cost is theirs summed, each
        at its own price tier (a long-context rate applies per request, never to a sum).
        ``incomplete``: it stopped mid-run (cancelled, killed, crashed), so a model call under
        way never told its tokens: its cost is unknown (NULL, ``cost_source`` "incomplete"),
        and the reported and computed costs are those of what it told, a lower bound.
        ``unreported``: the agent tells no usage at all: its cost is unknown too ("unreported").
        Stopped with no ``usage`` given (Ctrl-C or SIGTERM in ``run_execution``, a crash, an
        agent error such as its server gone mid-session, an agent given up on), its totals are
        what its usage events told, as recovery writes for a killed one, ``incomplete`` unless
        one of them was the final totals: the row used to keep 0 tokens while its events held
        them."""
        if self.finished:
            return
        if self.dropped:  # say what the bound left out, as the execution's last event
            n = sum(self.dropped.values())
            kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(self.dropped.items()))
            mib = self.max_bytes >= 1 << 20
            limit = f"{self.max_bytes >> 20} MB" if mib else f"{self.max_bytes >> 10} KB"
            self._record(
                ErrorEvent(
                    f"output limit: {n:,} more events not stored ({kinds}); one execution "
                    f"stores its first {limit} of events",
                    kind="warning",
                ),
                closing=True,
            )
        self.finished = True
        self._calls.clear()  # no result comes after the end
        self._stop.set()
        self._wake.set()
        if usage is None and self._told:  # an agent error, a crash, a cancel: what it told
            usage, requests = told_usage(self._told)
            incomplete = incomplete or not any(final for _, final in self._told)
        usage = usage or Usage()
        values: dict[str, Any] = {
            "status": status,
            "finished_at": utcnow(),
            "duration_ms": int((time.monotonic() - self._started) * 1000),
            "exit_reason": self.redact(exit_reason)[:2000] if exit_reason else exit_reason,
            # an agent's JSON may put anything there: the columns take a string and a number
            "session_id": _name(session_id, self.redact),
            "num_turns": num_turns if isinstance(num_turns, int) else None,
            "event_count": self.event_count,
            "raw": _raw_json(raw, self.redact),
            **usage_columns(
                usage,
                requests,
                model=model or usage.model or self.row.get("model"),
                backend=self.row["backend"],
                prices=self.prices,
                computed_cost_usd=computed_cost_usd,
                incomplete=incomplete,
                unreported=unreported,
            ),
        }
        if model or usage.model:
            values["model"] = _name(model or usage.model, self.redact)
        op = Store.op_update("executions", {"id": self.id}, values)
        with self._lock:
            self._journal.append([op])
            self._journal.close()
            self._buffer.append(op)
        # The final row is journaled and buffered before anything here can block, and written
        # even if a KeyboardInterrupt lands while the flusher is joined (it may be mid-write).
        try:
            if self._thread is not None:
                self._thread.join(timeout=5)
        finally:
            # events and the final row in one transaction: the store is never half-finished
            self.flush()


def told_usage(told: Iterable[tuple[Usage, bool]]) -> tuple[Usage, list[Usage]]:
    """What an execution's usage events told, from each one's usage and whether it is the
    ``final`` one: the totals and the model calls. A final event's totals (the last one's) stand
    for them all; else each event is one call's (an OpenCode step, a Codex turn, a message)."""
    told = list(told)
    finals = [u for u, final in told if final]
    calls = finals[-1:] or [u for u, _ in told]
    return sum(calls, Usage()), calls


def usage_columns(
    usage: Usage,
    requests: Sequence[Usage] | None,
    *,
    model: str | None,
    backend: str,
    prices: dict[str, Any] | None = None,
    computed_cost_usd: float | None = None,
    incomplete: bool = False,
    unreported: bool = False,
) -> dict[str, Any]:
    """An execution's token and cost columns from its ``usage``; see ``ExecutionRecorder.finish``
    for ``requests``, ``incomplete`` and ``unreported``. The computed cost, unless given, is
    from prices for ``model`` (a request's own model first)."""
    if computed_cost_usd is None and model:
        reported = usage.cost_usd is not None
        costs = [
            _computed_cost(r, r.model or model, backend, prices, reported)
            for r in (requests or (usage,))
        ]
        computed_cost_usd = None if None in costs else sum(c or 0.0 for c in costs)
    values: dict[str, Any] = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "cache_write_1h_tokens": usage.cache_write_1h_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "reported_cost_usd": usage.cost_usd,
        "computed_cost_usd": computed_cost_usd,
    }
    if incomplete or unreported:  # never 0 or a part shown as the whole: that reads as "free"
        values["cost_usd"] = None
        values["cost_source"] = "incomplete" if incomplete else "unreported"
        if not usage.total_tokens:  # it told nothing: no lower bound of $0.00 either
            values["reported_cost_usd"] = values["computed_cost_usd"] = None
    elif usage.cost_usd is not None:
        values["cost_usd"], values["cost_source"] = usage.cost_usd, "reported"
    elif computed_cost_usd is not None:
        values["cost_usd"], values["cost_source"] = computed_cost_usd, "computed"
    return values


def _computed_cost(
    usage: Usage, model: str, backend: str, prices: dict[str, Any] | None, reported: bool = False
) -> float | None:
    """The cost from prices, or None (logged, not raised) when the model has no known price;
    not logged when the agent ``reported`` its cost, which is then the one recorded."""
    if backend == "scripted" and model not in (prices or {}):
        return None  # the offline fake has no price: skip loading the price table (~0.4 s)
    import warnings

    from specwright.pricing import UnknownPriceWarning, compute_cost

    # the provider comes from the model's name (``anthropic/...``, ``glm-*``): an agent's
    # backend names no seller (Claude Code can be pointed at Z.ai)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnknownPriceWarning)
        try:
            cost = compute_cost(usage, model, overrides=prices)
        except Exception as exc:  # a price lookup must never lose the execution's record
            log.warning("computing the cost of %s failed: %s", model, exc)
            return None
    for w in caught if not reported else ():
        log.warning("%s", w.message)
    return cost
