"""``LLMClient``: the one place Specwright calls a model directly (see ``specwright.llm``)."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from specwright.llm.cancel import ended, until_cancel
from specwright.llm.errors import (
    LLMCancelled,
    LLMConnectionError,
    LLMError,
    LLMMissingKeyError,
    LLMOutputError,
    LLMTimeoutError,
    NotAMessage,
    StreamCut,
)
from specwright.llm.messages import (
    Answer,
    Spent,
    answer_of,
    corrective_turns,
    dump_message,
    emit,
    error_kind,
    error_raw,
    extract_tool_input,
    httpx_error,
    message_problem,
    pass_event,
    root_cause,
    to_messages,
    usage_raw,
)
from specwright.llm.status import status_error
from specwright.model import ErrorEvent, StepEvent, TextEvent, ToolCall, Usage, UsageEvent

if TYPE_CHECKING:
    import anthropic

    from specwright.config import Config, PlannerConfig, Price
    from specwright.recorder import ExecutionRecorder
    from specwright.store import Store

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.anthropic.com"


class LLMClient:
    """Calls one configured planner model; records every call as an execution in ``store``.

    ``base_url`` (argument, else the planner's ``base_url``, else ``ANTHROPIC_BASE_URL``, else
    the public endpoint) and ``client`` (an ``anthropic.Anthropic``) are injectable for tests.
    ``store=None`` records nothing. ``cancel`` (a run's cancel event) stops waiting for a call
    as soon as it is set: the call raises ``LLMCancelled`` and is recorded cancelled.
    ``model_key`` is the config key that named ``model``, for the error when the endpoint does
    not know it (default: the planner's ``model``).
    """

    def __init__(
        self,
        planner: PlannerConfig,
        store: Store | None = None,
        *,
        model: str | None = None,
        base_url: str | None = None,
        timeout_s: float | None = None,
        max_retries: int | None = None,
        backoff_s: float = 0.5,
        max_wait_s: float = 60.0,
        prices: dict[str, Price] | None = None,
        client: anthropic.Anthropic | None = None,
        sleep: Callable[[float], None] = time.sleep,
        cancel: threading.Event | None = None,
        model_key: str | None = None,
    ) -> None:
        self.planner = planner
        self.store = store
        self.model = model or planner.model
        # the config key naming the model, for the error when the endpoint does not know it
        self.model_key = model_key or f"tools.planners.{planner.name}.model"
        self.base_url = (
            base_url or planner.base_url or os.environ.get("ANTHROPIC_BASE_URL") or DEFAULT_BASE_URL
        ).rstrip("/")
        self.timeout_s = timeout_s if timeout_s is not None else planner.timeout_s
        self.max_retries = max(0, max_retries if max_retries is not None else planner.max_retries)
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s
        self.prices = prices
        self._client = client
        self._sleep = sleep
        self.cancel = cancel
        self._lock = threading.Lock()
        self.last_execution_id: str | None = None

    @classmethod
    def from_config(
        cls, config: Config, planner: str | None = None, store: Store | None = None, **kw: Any
    ) -> LLMClient:
        """The client for the planner named ``planner`` (default: ``defaults.planner``)."""
        return cls(config.planner(planner), store, prices=config.prices or None, **kw)

    @property
    def endpoint(self) -> str:
        """The Messages endpoint this client calls (for error messages)."""
        return f"{self.base_url}/v1/messages"

    def _who(self) -> str:
        return f"planner {self.planner.name!r} (model {self.model} at {self.endpoint})"

    def _sdk(self) -> tuple[anthropic.Anthropic, bool]:
        """The SDK client and whether this call owns it. An injected client is shared; else
        each answer gets its own, closed when the answer is in (no pooled socket outlives a
        call, and threads sharing this LLMClient never close each other's connections)."""
        if self._client is not None:
            return self._client, False
        env = self.planner.api_key_env
        key = os.environ.get(env, "").strip()
        if not key:
            raise LLMMissingKeyError(
                f"{self._who()}: no API key: set the environment variable {env} "
                f"(named by api_key_env in the planner's config)"
            )
        import anthropic

        sdk = anthropic.Anthropic(
            api_key=key, base_url=self.base_url, timeout=self.timeout_s, max_retries=0
        )
        return sdk, True

    def close(self) -> None:
        """Close the SDK client's connection pool."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- public calls -----------------------------------------------------------------------

    def structured(
        self,
        system: str,
        prompt: str | Sequence[dict[str, Any]],
        schema_name: str,
        schema: dict[str, Any],
        *,
        role: str,
        description: str = "",
        spec_id: str | None = None,
        run_id: str | None = None,
        chunk_id: str | None = None,
        iteration: int | None = None,
        stream: bool = False,
        output_retries: int = 1,
        max_tokens: int | None = None,
        on_text: Callable[[str], None] | None = None,
        on_input: Callable[[str | None], None] | None = None,
    ) -> tuple[dict[str, Any], Usage]:
        """Force the model to call tool ``schema_name`` and return its input (checked against
        ``schema``) with the usage of every attempt. Malformed output is retried
        ``output_retries`` times with a corrective message, then raises ``LLMOutputError``.
        Streaming, ``on_input`` gets each piece of the tool input's JSON as it arrives (None
        when a tool call begins: a retry starts over)."""
        tool = {"name": schema_name, "input_schema": schema}
        if description:
            tool["description"] = description
        messages = to_messages(prompt)
        rec = self._recorder(role, spec_id, run_id, chunk_id, iteration)
        total = Usage(model=self.model)
        calls: list[tuple[Usage, int]] = []  # each call's usage and 1-hour cache writes
        spent: list[Spent] = []  # attempts cut short, that may have been billed
        turns = 0
        try:
            for attempt in range(output_retries + 1):
                answer = self._call(
                    rec,
                    system,
                    messages,
                    max_tokens,
                    stream,
                    on_text,
                    on_input,
                    spent,
                    tools=[tool],
                    tool_choice={"type": "tool", "name": schema_name},
                )
                turns += 1
                total = total + answer.usage
                calls.append((answer.usage, answer.cache_write_1h))
                data, problem, block_id = extract_tool_input(answer.message, schema_name, schema)
                if problem is None and data is not None:
                    done = self._finish(
                        rec, "ok", total, calls, "completed", turns, answer.message, spent=spent
                    )
                    return data, done
                msg = f"malformed {schema_name} output (attempt {attempt + 1}): {problem}"
                emit(rec, ErrorEvent(msg, kind="warning"))
                if answer.message.stop_reason == "refusal":  # asked again, it refuses again (paid)
                    break
                messages = [
                    *messages,
                    *corrective_turns(answer.message, schema_name, problem, block_id),
                ]
            error = LLMOutputError(
                f"{self._who()} returned malformed {schema_name} output after "
                f"{turns} attempt(s): {problem}"
            )
            why = f"{error.reason}: {error}"
            self._finish(rec, "error", total, calls, why, turns, None, spent=spent)
            raise error
        except BaseException as exc:  # a call cut short may have been answered, and billed
            status, why, cut = ended(exc)
            self._finish(rec, status, total, calls, why, turns, None, cut, spent)
            raise

    def text(
        self,
        system: str,
        prompt: str | Sequence[dict[str, Any]],
        *,
        role: str,
        spec_id: str | None = None,
        run_id: str | None = None,
        chunk_id: str | None = None,
        iteration: int | None = None,
        stream: bool = False,
        max_tokens: int | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> tuple[str, Usage]:
        """A plain completion: the answer's text and its usage."""
        rec = self._recorder(role, spec_id, run_id, chunk_id, iteration)
        usage = Usage(model=self.model)
        spent: list[Spent] = []
        try:
            answer = self._call(
                rec, system, to_messages(prompt), max_tokens, stream, on_text, None, spent
            )
            usage = usage + answer.usage
            out = "".join(
                b.text for b in answer.message.content if getattr(b, "type", "") == "text"
            )
            reason = str(answer.message.stop_reason or "completed")
            calls = [(answer.usage, answer.cache_write_1h)]
            usage = self._finish(rec, "ok", usage, calls, reason, 1, answer.message, spent=spent)
            return out, usage
        except BaseException as exc:  # a call cut short may have been answered, and billed
            status, why, cut = ended(exc)
            self._finish(rec, status, usage, [], why, None, None, cut, spent)
            raise

    # --- recording --------------------------------------------------------------------------

    def _recorder(
        self,
        role: str,
        spec_id: str | None,
        run_id: str | None,
        chunk_id: str | None,
        iteration: int | None,
    ) -> ExecutionRecorder | None:
        self.last_execution_id = None
        if self.store is None:
            return None
        from specwright.recorder import ExecutionRecorder

        rec = ExecutionRecorder(
            self.store,
            role=role,
            backend="anthropic",
            executor=self.planner.name,
            model=self.model,
            run_id=run_id,
            spec_id=spec_id,
            chunk_id=chunk_id,
            iteration=iteration,
        ).start()
        self.last_execution_id = rec.id
        return rec

    def _finish(
        self,
        rec: ExecutionRecorder | None,
        status: str,
        usage: Usage,
        calls: list[tuple[Usage, int]],
        reason: str,
        turns: int | None,
        message: Any,
        incomplete: bool = False,
        spent: Sequence[Spent] = (),
    ) -> Usage:
        """Record the call's end; returns its usage counting the attempts ``spent`` (cut short,
        timed out): their tokens, as far as told, are billed too, and one whose tokens are not
        all known makes the cost a lower bound (``incomplete``)."""
        for part in spent:
            usage = usage + part.usage
            calls = [*calls, (part.usage, part.cache_write_1h)]
            incomplete = incomplete or not part.exact
        if rec is None or rec.finished:
            return usage
        # each call at its own price tier (>200k prompt tokens), never their sum
        costs = [self._cost(u, one_hour) for u, one_hour in calls if u.total_tokens]
        cost = None if not costs or None in costs else sum(c or 0.0 for c in costs)
        one_hour = min(sum(h for _, h in calls), usage.cache_write_tokens)
        try:
            rec.finish(
                status=status,
                usage=replace(usage, cache_write_1h_tokens=one_hour),
                exit_reason=reason,
                model=self.model,
                num_turns=turns,
                computed_cost_usd=cost,
                raw=dump_message(message) if message is not None else None,
                incomplete=incomplete,
            )
        except Exception as exc:  # the journal has it; never hide the call's own outcome
            log.warning("execution %s: could not record the finish: %s", rec.id, exc)
        return usage

    def _cost(self, usage: Usage, cache_write_1h: int) -> float | None:
        if usage.total_tokens == 0:
            return None
        from specwright.pricing import UnknownPriceWarning, compute_cost

        with warnings.catch_warnings():  # the recorder says it once, as a line, when it is None
            warnings.simplefilter("ignore", UnknownPriceWarning)
            return compute_cost(
                usage,
                self.model,
                provider="anthropic",
                cache_write_1h_tokens=cache_write_1h,
                overrides=self.prices,
            )

    # --- transport --------------------------------------------------------------------------

    def _call(
        self,
        rec: ExecutionRecorder | None,
        system: str,
        messages: list[dict[str, Any]],
        max_tokens: int | None,
        stream: bool,
        on_text: Callable[[str], None] | None,
        on_input: Callable[[str | None], None] | None,
        spent: list[Spent],
        **extra: Any,
    ) -> Answer:
        """One model answer, retrying transient failures; records text/tool/usage events.
        Each attempt cut short or timed out is added to ``spent`` (billed, perhaps unknown)."""
        if self.cancel is not None and self.cancel.is_set():  # no request for a stopping run
            raise LLMCancelled(f"{self._who()}: cancelled before the call")
        sdk, owned = self._sdk()

        def call(stop: threading.Event | None = None) -> Answer:
            try:
                return self._answer(
                    sdk, rec, system, messages, max_tokens, stream, on_text, on_input, spent,
                    stop, **extra,
                )  # fmt: skip
            finally:
                if owned:
                    sdk.close()

        # given up on at a run's cancel: the caller records the end; a late event of the
        # abandoned call finds the recorder's journal closed and ends it (nothing is written)
        return call() if self.cancel is None else until_cancel(call, self.cancel, self._who())

    def _answer(
        self,
        sdk: anthropic.Anthropic,
        rec: ExecutionRecorder | None,
        system: str,
        messages: list[dict[str, Any]],
        max_tokens: int | None,
        stream: bool,
        on_text: Callable[[str], None] | None,
        on_input: Callable[[str | None], None] | None,
        spent: list[Spent],
        stop: threading.Event | None = None,
        **extra: Any,
    ) -> Answer:
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens or self.planner.max_tokens,
            "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]
            if system
            else [],
            "messages": messages,
            **extra,
        }
        if not system:
            del params["system"]
        import anthropic

        attempts = self.max_retries + 1
        for attempt in range(1, attempts + 1):
            if stop is not None and stop.is_set():  # the caller gave up: no more requests
                raise LLMCancelled(f"{self._who()}: cancelled")
            emit(
                rec,
                StepEvent(
                    "request",
                    raw={
                        "attempt": attempt,
                        "model": self.model,
                        "stream": stream,
                        "messages": len(messages),
                    },
                ),
            )
            told: list[Spent] = []
            try:
                message = self._send(sdk, params, stream, on_text, on_input, told)
            except BaseException as exc:
                billed = isinstance(exc, StreamCut | anthropic.APITimeoutError) or httpx_error(
                    exc, "TransportError"
                )
                if told:  # the stream had told its tokens so far: count them
                    emit(rec, UsageEvent(told[0].usage, raw={"attempt": attempt, "cut": True}))
                    spent.extend(told)
                elif billed:  # the request may have been answered, and billed: unknown
                    spent.append(Spent(Usage(model=self.model), 0, False))
                if not isinstance(exc, Exception):
                    raise
                error, retry, wait = self._classify(exc, attempt, attempts)
                if not retry:
                    emit(rec, ErrorEvent(str(error), kind=error_kind(error), raw=error_raw(exc)))
                    raise error from exc
                emit(
                    rec,
                    ErrorEvent(
                        f"attempt {attempt}/{attempts} failed, retrying in {wait:.2f}s: {error}",
                        kind="warning",
                    ),
                )
                self._sleep(wait)
                continue
            answer = answer_of(message, self.model)
            for block in message.content:
                kind = getattr(block, "type", "")
                if kind == "text":
                    emit(rec, TextEvent(block.text))
                elif kind == "tool_use":
                    data = block.input if isinstance(block.input, dict) else {"_": block.input}
                    emit(rec, ToolCall(block.id, block.name, data))
            emit(rec, UsageEvent(answer.usage, raw=usage_raw(message)))
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self,
        sdk: anthropic.Anthropic,
        params: dict[str, Any],
        stream: bool,
        on_text: Callable[[str], None] | None,
        on_input: Callable[[str | None], None] | None = None,
        told: list[Spent] | None = None,
    ) -> Any:
        """One attempt's message. Streaming, an attempt that fails after ``message_start`` adds
        the tokens it had told to ``told`` (output as far as counted: a lower bound)."""
        with warnings.catch_warnings():
            # the SDK warns when a model is deprecated; say it in the log, not as an exception
            warnings.filterwarnings(
                "ignore", message="The model .* is deprecated", category=DeprecationWarning
            )
            if not stream:
                raw = sdk.messages.with_raw_response.create(**params)
                kind = raw.headers.get("content-type")
                try:
                    message = raw.parse()
                except ValueError as exc:  # a body cut short, or not JSON at all
                    raise NotAMessage(f"the answer is not valid JSON ({kind}: {exc})") from exc
                problem = message_problem(message, kind)
                if problem:
                    raise NotAMessage(problem)
                return message
            complete = started = False
            start: Any = None  # message_start's message; its usage is updated by message_delta
            try:
                with sdk.messages.stream(**params) as s:
                    for event in s:
                        started = True
                        if event.type == "message_start":  # updated in place from now on
                            start = s.current_message_snapshot
                        complete = pass_event(event, on_text, on_input) or complete
                    if not started:  # not an event stream at all (an HTML page from a proxy...)
                        kind = s.response.headers.get("content-type") or "no content type"
                        raise NotAMessage(f"the answer stream carried no events ({kind})")
                    if not complete:  # the SDK returns what it got: a cut stream is no answer
                        raise StreamCut("the answer stream ended before message_stop")
                    return s.get_final_message()
            except BaseException:
                if start is not None and told is not None and not complete:
                    part = answer_of(start, self.model)
                    exact = getattr(start, "stop_reason", None) is not None  # message_delta's
                    told.append(Spent(part.usage, part.cache_write_1h, exact))
                raise

    def _classify(
        self, exc: Exception, attempt: int, attempts: int
    ) -> tuple[LLMError, bool, float]:
        """Our error for an SDK exception, whether to retry it, and how long to wait first."""
        import anthropic

        who = self._who()
        left = attempt < attempts
        tries = f" after {attempt} attempt(s)" if attempt > 1 else ""
        if isinstance(exc, anthropic.APITimeoutError) or httpx_error(exc, "TimeoutException"):
            err: LLMError = LLMTimeoutError(f"{who}: no answer within {self.timeout_s:g}s{tries}")
            return err, left, self._backoff(attempt, None)
        if isinstance(exc, StreamCut) or httpx_error(exc, "TransportError"):  # mid-stream
            cut = exc if isinstance(exc, StreamCut) else f"the answer stream broke ({exc})"
            return (
                LLMConnectionError(f"{who}: {cut}{tries}"),
                left,
                self._backoff(attempt, None),
            )
        if isinstance(exc, anthropic.APIConnectionError):
            cause = root_cause(exc)
            return (
                LLMConnectionError(
                    f"{who}: cannot connect ({cause}){tries}; is the endpoint "
                    "running and the base URL right?"
                ),
                left,
                self._backoff(attempt, None),
            )
        if isinstance(exc, NotAMessage):
            return LLMError(f"{who}: {exc}; is the base URL a Messages API endpoint?"), False, 0
        if not isinstance(exc, anthropic.APIStatusError):
            return LLMError(f"{who}: unexpected failure: {type(exc).__name__}: {exc}"), False, 0
        return status_error(self, exc, attempt, attempts)

    def _backoff(self, attempt: int, hint: float | None) -> float:
        if hint is not None and hint <= self.max_wait_s:
            return max(0.0, hint)
        base = self.backoff_s * (2 ** (attempt - 1))
        return min(base, 8.0) * (0.75 + random.random() * 0.5)
