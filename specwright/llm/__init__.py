"""Planner, reviewer and summarizer calls through the Anthropic Messages API (``anthropic`` SDK).

``LLMClient`` is the only place Specwright talks to a model directly. Every call is recorded as
an execution (role planner/reviewer/summarizer, backend ``anthropic``) with its events and token
totals, whether it succeeds or fails. Structured output is forced tool use: the model must call a
tool whose input schema is the answer's schema; an answer that does not fit is retried once with
a corrective message, then raises ``LLMOutputError``.

Transport failures become one-line errors naming the endpoint and model, one class per cause
(missing key, bad key, out of credit, unknown model, rate limit, overload, server error, timeout,
connection refused, refused request). Rate limits, overloads, 5xx, timeouts and refused connections are retried with
exponential backoff, honouring ``retry-after-ms`` / ``retry-after`` up to ``max_wait_s``.

The SDK is imported lazily, so importing this module stays cheap; all SDK-specific code is here.
"""

from __future__ import annotations

from specwright.llm.client import DEFAULT_BASE_URL, LLMClient
from specwright.llm.errors import (
    LLMAuthError,
    LLMBillingError,
    LLMCancelled,
    LLMConnectionError,
    LLMError,
    LLMMissingKeyError,
    LLMOutputError,
    LLMOverloadedError,
    LLMRateLimitError,
    LLMRequestError,
    LLMServerError,
    LLMTimeoutError,
    LLMUnknownModelError,
)
from specwright.llm.schema import schema_problems

__all__ = [
    "DEFAULT_BASE_URL",
    "LLMAuthError",
    "LLMBillingError",
    "LLMCancelled",
    "LLMClient",
    "LLMConnectionError",
    "LLMError",
    "LLMMissingKeyError",
    "LLMOutputError",
    "LLMOverloadedError",
    "LLMRateLimitError",
    "LLMRequestError",
    "LLMServerError",
    "LLMTimeoutError",
    "LLMUnknownModelError",
    "schema_problems",
]
