"""An error answer of the Messages API (an HTTP status) as our one-line error: which, whether to
retry it, and how long to wait first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from specwright.agents.resets import out_of_credit
from specwright.llm.errors import (
    LLMAuthError,
    LLMBillingError,
    LLMError,
    LLMOverloadedError,
    LLMRateLimitError,
    LLMRequestError,
    LLMServerError,
    LLMUnknownModelError,
)
from specwright.llm.messages import error_detail, retry_after

if TYPE_CHECKING:
    from specwright.llm.client import LLMClient


def status_error(
    client: LLMClient, exc: Any, attempt: int, attempts: int
) -> tuple[LLMError, bool, float]:
    """Our error for the SDK's ``APIStatusError`` ``exc`` at attempt ``attempt`` of
    ``attempts``, whether to retry it, and the wait before."""
    who = client._who()
    left = attempt < attempts
    tries = f" after {attempt} attempt(s)" if attempt > 1 else ""
    status = exc.status_code
    etype, detail = error_detail(exc)
    headers = exc.response.headers if exc.response is not None else {}
    hint = retry_after(headers)
    suffix = f": {detail}" if detail else ""
    said = f"(HTTP {status} {etype or 'error'}){suffix}"
    if etype == "billing_error" or status == 402 or out_of_credit(detail):  # never resets
        return (
            LLMBillingError(
                f"{who}: out of credit {said}; not retried: add credits to the account of "
                f"the key in {client.planner.api_key_env} (or use another key), then run again"
            ),
            False,
            0,
        )
    if status == 404 and etype == "not_found_error" and _names_model(detail, client.model):
        return (
            LLMUnknownModelError(
                f"{who}: model {client.model!r} not found {said}; not retried: fix "
                f"{client.model_key} in .handoff/config.yaml"
            ),
            False,
            0,
        )
    if status in (401, 403) or etype in ("authentication_error", "permission_error"):
        return (
            LLMAuthError(
                f"{who}: the API key from {client.planner.api_key_env} was refused "
                f"(HTTP {status} {etype or ''}){suffix}".replace(" )", ")")
            ),
            False,
            0,
        )
    wait = client._backoff(attempt, hint)
    too_long = hint is not None and hint > client.max_wait_s
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
    return LLMRequestError(f"{who}: request refused {said}"), False, 0


def _names_model(detail: str, model: str) -> bool:
    """Whether a 404's message is about the model (Anthropic: "model: NAME"), not a wrong path."""
    return detail.lower().startswith("model:") or model in detail
