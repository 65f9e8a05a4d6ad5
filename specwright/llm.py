"""Planner, reviewer and summarizer calls through the Anthropic Messages API (``anthropic`` SDK).

``LLMClient`` is the only place Specwright talks to a model directly. Every call is recorded as
an execution (role planner/reviewer/summarizer, backend ``anthropic``) with its events and token
totals, whether it succeeds or fails. Structured output is forced tool use: the model must call a
tool whose input schema is the answer's schema; an answer that does not fit is retried once with
a corrective message, then raises ``LLMOutputError``.

Transport failures become one-line errors naming the endpoint and model, one class per cause
(missing key, bad key, rate limit, overload, server error, timeout, connection refused, refused
request). Rate limits, overloads, 5xx, timeouts and refused connections are retried with
exponential backoff, honouring ``retry-after-ms`` / ``retry-after`` up to ``max_wait_s``.

The SDK is imported lazily, so importing this module stays cheap; all SDK-specific code is here.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from specwright.errors import SpecwrightError
from specwright.model import ErrorEvent, StepEvent, TextEvent, ToolCall, Usage, UsageEvent

if TYPE_CHECKING:
    import anthropic

    from specwright.config import Config, PlannerConfig, Price
    from specwright.recorder import ExecutionRecorder
    from specwright.store import Store

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.anthropic.com"
MAX_ERROR_DETAIL = 300  # characters of the server's error message kept in our one-line errors

# --- errors ---------------------------------------------------------------------------------


class LLMError(SpecwrightError):
    """A model call failed; ``reason`` is a short machine-readable cause (stored as exit_reason)."""

    reason = "llm_error"


class LLMMissingKeyError(LLMError):
    """The environment variable that should hold the API key is unset or empty."""

    reason = "missing_api_key"


class LLMAuthError(LLMError):
    """The endpoint refused the API key (401) or its permissions (403)."""

    reason = "auth_failed"


class LLMRateLimitError(LLMError):
    """Still rate limited (429) after the retries."""

    reason = "rate_limited"


class LLMOverloadedError(LLMError):
    """The endpoint is overloaded (529) and stayed so through the retries."""

    reason = "overloaded"


class LLMServerError(LLMError):
    """The endpoint failed with a 5xx through the retries."""

    reason = "server_error"


class LLMTimeoutError(LLMError):
    """No complete answer within the timeout, through the retries."""

    reason = "timeout"


class LLMConnectionError(LLMError):
    """The endpoint could not be reached (refused, DNS, reset)."""

    reason = "connection_failed"


class LLMRequestError(LLMError):
    """The endpoint refused the request itself (400, 404, 413...): retrying will not help."""

    reason = "request_refused"


class LLMOutputError(LLMError):
    """The model's answer did not fit the expected shape, even after a corrective retry."""

    reason = "malformed_output"


class _StreamCut(Exception):
    """A streamed answer ended without ``message_stop`` (connection dropped mid-answer)."""


# --- schema check ---------------------------------------------------------------------------

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def schema_problems(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """What is wrong with ``value`` against a JSON schema's type/required/properties/items/enum
    (a practical subset; unknown keywords are ignored). Empty when it fits."""
    where = path or "the answer"
    problems: list[str] = []
    types = schema.get("type")
    if isinstance(types, str):
        types = [types]
    if isinstance(types, list):
        ok = any(
            _JSON_TYPES.get(t) is None
            or (
                isinstance(value, _JSON_TYPES[t])
                and not (isinstance(value, bool) and t in ("integer", "number"))
            )
            for t in types
        )
        if not ok:
            return [f"{where}: expected {' or '.join(types)}, got {type(value).__name__}"]
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        problems.append(f"{where}: expected one of {enum}, got {value!r}")
    if isinstance(value, dict):
        for key in schema.get("required") or []:
            if key not in value:
                problems.append(f"{path + '.' if path else ''}{key}: required but missing")
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if key in value and isinstance(sub, dict):
                problems += schema_problems(value[key], sub, f"{path + '.' if path else ''}{key}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            problems += schema_problems(item, schema["items"], f"{where}[{i}]")
            if len(problems) > 20:
                break
    return problems


# --- the client -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Answer:
    """One API response, reduced to what callers need."""

    message: Any  # anthropic.types.Message
    usage: Usage
    cache_write_1h: int


class LLMClient:
    """Calls one configured planner model; records every call as an execution in ``store``.

    ``base_url`` (argument, else the planner's ``base_url``, else ``ANTHROPIC_BASE_URL``, else
    the public endpoint) and ``client`` (an ``anthropic.Anthropic``) are injectable for tests.
    ``store=None`` records nothing.
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
    ) -> None:
        self.planner = planner
        self.store = store
        self.model = model or planner.model
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

    def _sdk(self) -> anthropic.Anthropic:
        with self._lock:
            if self._client is None:
                env = self.planner.api_key_env
                key = os.environ.get(env, "").strip()
                if not key:
                    raise LLMMissingKeyError(
                        f"{self._who()}: no API key: set the environment variable {env} "
                        f"(named by api_key_env in the planner's config)"
                    )
                import anthropic

                self._client = anthropic.Anthropic(
                    api_key=key, base_url=self.base_url, timeout=self.timeout_s, max_retries=0
                )
            return self._client

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
    ) -> tuple[dict[str, Any], Usage]:
        """Force the model to call tool ``schema_name`` and return its input (checked against
        ``schema``) with the usage of every attempt. Malformed output is retried
        ``output_retries`` times with a corrective message, then raises ``LLMOutputError``."""
        tool = {"name": schema_name, "input_schema": schema}
        if description:
            tool["description"] = description
        messages = _messages(prompt)
        rec = self._recorder(role, spec_id, run_id, chunk_id, iteration)
        total = Usage(model=self.model)
        total_1h = 0
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
                    tools=[tool],
                    tool_choice={"type": "tool", "name": schema_name},
                )
                turns += 1
                total, total_1h = total + answer.usage, total_1h + answer.cache_write_1h
                data, problem, block_id = _extract(answer.message, schema_name, schema)
                if problem is None and data is not None:
                    self._finish(rec, "ok", total, total_1h, "completed", turns, answer.message)
                    return data, total
                msg = f"malformed {schema_name} output (attempt {attempt + 1}): {problem}"
                _emit(rec, ErrorEvent(msg, kind="warning"))
                messages = [*messages, *_corrective(answer.message, schema_name, problem, block_id)]
            error = LLMOutputError(
                f"{self._who()} returned malformed {schema_name} output after "
                f"{output_retries + 1} attempt(s): {problem}"
            )
            self._finish(rec, "error", total, total_1h, f"{error.reason}: {error}", turns, None)
            raise error
        except LLMError as exc:
            self._finish(rec, "error", total, total_1h, f"{exc.reason}: {exc}", turns, None)
            raise
        except BaseException as exc:
            status = "cancelled" if isinstance(exc, KeyboardInterrupt) else "error"
            self._finish(rec, status, total, total_1h, f"{type(exc).__name__}: {exc}", turns, None)
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
        try:
            answer = self._call(rec, system, _messages(prompt), max_tokens, stream, on_text)
            usage = usage + answer.usage
            out = "".join(
                b.text for b in answer.message.content if getattr(b, "type", "") == "text"
            )
            reason = str(answer.message.stop_reason or "completed")
            self._finish(rec, "ok", usage, answer.cache_write_1h, reason, 1, answer.message)
            return out, usage
        except LLMError as exc:
            self._finish(rec, "error", usage, 0, f"{exc.reason}: {exc}", None, None)
            raise
        except BaseException as exc:
            status = "cancelled" if isinstance(exc, KeyboardInterrupt) else "error"
            self._finish(rec, status, usage, 0, f"{type(exc).__name__}: {exc}", None, None)
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
        cache_write_1h: int,
        reason: str,
        turns: int | None,
        message: Any,
    ) -> None:
        if rec is None or rec.finished:
            return
        cost = self._cost(usage, cache_write_1h)
        try:
            rec.finish(
                status=status,
                usage=usage,
                exit_reason=reason,
                model=self.model,
                num_turns=turns,
                computed_cost_usd=cost,
                raw=_dump(message) if message is not None else None,
            )
        except Exception as exc:  # the journal has it; never hide the call's own outcome
            log.warning("execution %s: could not record the finish: %s", rec.id, exc)

    def _cost(self, usage: Usage, cache_write_1h: int) -> float | None:
        if usage.total_tokens == 0:
            return None
        try:
            from specwright.pricing import compute_cost
        except ImportError:  # pragma: no cover - pricing ships with the package
            return None
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
        **extra: Any,
    ) -> _Answer:
        """One model answer, retrying transient failures; records text/tool/usage events."""
        sdk = self._sdk()
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
        attempts = self.max_retries + 1
        for attempt in range(1, attempts + 1):
            _emit(
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
            try:
                message = self._send(sdk, params, stream, on_text)
            except Exception as exc:
                error, retry, wait = self._classify(exc, attempt, attempts)
                if not retry:
                    _emit(rec, ErrorEvent(str(error), kind=_kind(error), raw=_error_raw(exc)))
                    raise error from exc
                _emit(
                    rec,
                    ErrorEvent(
                        f"attempt {attempt}/{attempts} failed, retrying in {wait:.2f}s: {error}",
                        kind="warning",
                    ),
                )
                self._sleep(wait)
                continue
            answer = _answer(message, self.model)
            for block in message.content:
                kind = getattr(block, "type", "")
                if kind == "text":
                    _emit(rec, TextEvent(block.text))
                elif kind == "tool_use":
                    data = block.input if isinstance(block.input, dict) else {"_": block.input}
                    _emit(rec, ToolCall(block.id, block.name, data))
            _emit(rec, UsageEvent(answer.usage, raw=_usage_raw(message)))
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self,
        sdk: anthropic.Anthropic,
        params: dict[str, Any],
        stream: bool,
        on_text: Callable[[str], None] | None,
    ) -> Any:
        with warnings.catch_warnings():
            # the SDK warns when a model is deprecated; say it in the log, not as an exception
            warnings.filterwarnings(
                "ignore", message="The model .* is deprecated", category=DeprecationWarning
            )
            if not stream:
                return sdk.messages.create(**params)
            complete = False
            with sdk.messages.stream(**params) as s:
                for event in s:
                    if event.type == "text" and on_text is not None:
                        on_text(event.text)
                    elif event.type == "message_stop":
                        complete = True
                message = s.get_final_message()
            if not complete:  # the SDK returns what it got; a cut stream is not an answer
                raise _StreamCut("the answer stream ended before message_stop")
            return message

    def _classify(
        self, exc: Exception, attempt: int, attempts: int
    ) -> tuple[LLMError, bool, float]:
        """Our error for an SDK exception, whether to retry it, and how long to wait first."""
        import anthropic

        who = self._who()
        left = attempt < attempts
        tries = f" after {attempt} attempt(s)" if attempt > 1 else ""
        if isinstance(exc, anthropic.APITimeoutError):
            err: LLMError = LLMTimeoutError(f"{who}: no answer within {self.timeout_s:g}s{tries}")
            return err, left, self._backoff(attempt, None)
        if isinstance(exc, _StreamCut):
            return (
                LLMConnectionError(f"{who}: {exc}{tries}"),
                left,
                self._backoff(attempt, None),
            )
        if isinstance(exc, anthropic.APIConnectionError):
            cause = _root_cause(exc)
            return (
                LLMConnectionError(
                    f"{who}: cannot connect ({cause}){tries}; is the endpoint "
                    "running and the base URL right?"
                ),
                left,
                self._backoff(attempt, None),
            )
        if not isinstance(exc, anthropic.APIStatusError):
            return LLMError(f"{who}: unexpected failure: {type(exc).__name__}: {exc}"), False, 0
        status = exc.status_code
        etype, detail = _error_detail(exc)
        headers = exc.response.headers if exc.response is not None else {}
        hint = _retry_after(headers)
        suffix = f": {detail}" if detail else ""
        if status in (401, 403) or etype in ("authentication_error", "permission_error"):
            return (
                LLMAuthError(
                    f"{who}: the API key from {self.planner.api_key_env} was refused "
                    f"(HTTP {status} {etype or ''}){suffix}".replace(" )", ")")
                ),
                False,
                0,
            )
        wait = self._backoff(attempt, hint)
        too_long = hint is not None and hint > self.max_wait_s
        retry = left and not too_long
        after = f"; the server asks to retry after {hint:g}s" if too_long and hint else ""
        if status == 429 or etype == "rate_limit_error":
            return (
                LLMRateLimitError(f"{who}: rate limited (HTTP 429){tries}{after}{suffix}"),
                retry,
                wait,
            )
        if status == 529 or etype == "overloaded_error":
            return (
                LLMOverloadedError(f"{who}: overloaded (HTTP 529){tries}{after}{suffix}"),
                retry,
                wait,
            )
        if status >= 500 or etype in ("api_error", "timeout_error"):
            return LLMServerError(f"{who}: server error HTTP {status}{tries}{suffix}"), retry, wait
        return (
            LLMRequestError(f"{who}: request refused (HTTP {status} {etype or 'error'}){suffix}"),
            False,
            0,
        )

    def _backoff(self, attempt: int, hint: float | None) -> float:
        if hint is not None and hint <= self.max_wait_s:
            return max(0.0, hint)
        base = self.backoff_s * (2 ** (attempt - 1))
        return min(base, 8.0) * (0.75 + random.random() * 0.5)


# --- helpers --------------------------------------------------------------------------------


def _messages(prompt: str | Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [dict(m) for m in prompt]


def _emit(rec: ExecutionRecorder | None, event: Any) -> None:
    if rec is not None:
        rec.on_event(event)


def _kind(error: LLMError) -> str:
    return "rate_limit" if isinstance(error, LLMRateLimitError) else "api_error"


def _answer(message: Any, model: str) -> _Answer:
    u = message.usage
    cache_1h = 0
    details = getattr(u, "cache_creation", None)
    if details is not None:
        cache_1h = int(getattr(details, "ephemeral_1h_input_tokens", 0) or 0)
    usage = Usage(
        input_tokens=int(u.input_tokens or 0),
        output_tokens=int(u.output_tokens or 0),
        cache_read_tokens=int(getattr(u, "cache_read_input_tokens", 0) or 0),
        cache_write_tokens=int(getattr(u, "cache_creation_input_tokens", 0) or 0),
        model=getattr(message, "model", None) or model,
    )
    return _Answer(message, usage, cache_1h)


def _extract(
    message: Any, name: str, schema: dict[str, Any]
) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """The forced tool's input, or why it is unusable (and the tool_use id to answer)."""
    blocks = [b for b in message.content if getattr(b, "type", "") == "tool_use"]
    named = [b for b in blocks if b.name == name]
    truncated = " (the answer hit max_tokens)" if message.stop_reason == "max_tokens" else ""
    if not named:
        seen = ", ".join(b.name for b in blocks) or "none"
        return (
            None,
            f"no call of tool {name!r} (tool calls: {seen}){truncated}",
            (blocks[0].id if blocks else None),
        )
    block = named[0]
    data = block.input
    if not isinstance(data, dict):
        return None, f"the tool input is {type(data).__name__}, not an object{truncated}", block.id
    problems = schema_problems(data, schema)
    if problems:
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        return None, "; ".join(problems[:5]) + more + truncated, block.id
    return data, None, block.id


def _corrective(
    message: Any, name: str, problem: str | None, block_id: str | None
) -> list[dict[str, Any]]:
    """The assistant's bad answer and a user turn saying what to fix."""
    fix = (
        f"Your answer was not usable: {problem}. Call the tool {name!r} exactly once, with an "
        "input that matches its input schema exactly (every required field, the right types)."
    )
    content = [b.model_dump(exclude_none=True) for b in message.content] or [
        {"type": "text", "text": "(empty answer)"}
    ]
    tool_ids = [b.id for b in message.content if getattr(b, "type", "") == "tool_use"]
    if tool_ids:
        results: list[dict[str, Any]] = [
            {
                "type": "tool_result",
                "tool_use_id": tid,
                "is_error": True,
                "content": fix if tid == (block_id or tool_ids[0]) else "Not used.",
            }
            for tid in tool_ids
        ]
        return [{"role": "assistant", "content": content}, {"role": "user", "content": results}]
    return [{"role": "assistant", "content": content}, {"role": "user", "content": fix}]


def _dump(message: Any) -> dict[str, Any] | None:
    try:
        out = message.model_dump(mode="json", exclude_none=True)
    except Exception:
        return None
    return out if isinstance(out, dict) else None


def _usage_raw(message: Any) -> dict[str, Any] | None:
    try:
        out = message.usage.model_dump(mode="json", exclude_none=True)
    except Exception:
        return None
    if isinstance(out, dict):
        out["message_id"] = getattr(message, "id", None)
        out["stop_reason"] = getattr(message, "stop_reason", None)
        return out
    return None


def _error_detail(exc: Any) -> tuple[str | None, str]:
    """The provider's error type and message, flattened to one bounded line."""
    body = getattr(exc, "body", None)
    etype, msg = None, ""
    if isinstance(body, dict):
        inner = body.get("error")
        err: dict[str, Any] = inner if isinstance(inner, dict) else body
        etype = err.get("type") if isinstance(err.get("type"), str) else None
        msg = str(err.get("message") or "")
    elif body is not None:
        msg = str(body)
    msg = " ".join(msg.split())
    if len(msg) > MAX_ERROR_DETAIL:
        msg = msg[:MAX_ERROR_DETAIL] + "…"
    return etype, msg


def _error_raw(exc: Exception) -> dict[str, Any]:
    raw: dict[str, Any] = {"exception": type(exc).__name__}
    status = getattr(exc, "status_code", None)
    if status is not None:
        raw["status"] = status
    body = getattr(exc, "body", None)
    if isinstance(body, dict | str):
        raw["body"] = body if isinstance(body, dict) else body[:2000]
    response = getattr(exc, "response", None)
    if response is not None:
        rid = response.headers.get("request-id")
        if rid:
            raw["request_id"] = rid
    return raw


def _retry_after(headers: Any) -> float | None:
    """Seconds the server asks us to wait (``retry-after-ms`` or ``retry-after``), if any."""
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return float(ms) / 1000.0
        s = headers.get("retry-after")
        if s is not None:
            return float(s)
    except (TypeError, ValueError):
        return None
    return None


def _root_cause(exc: BaseException) -> str:
    seen = set()
    cur: BaseException | None = exc
    last = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        last = cur
        cur = cur.__cause__ or cur.__context__
    text = str(last) or type(last).__name__
    if "refused" in text.lower():
        return "connection refused"
    return " ".join(text.split())[:200]
