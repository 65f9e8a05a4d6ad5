"""Errors of model calls: one class per cause, each a one-line ``SpecwrightError``."""

from __future__ import annotations

from specwright.errors import SpecwrightError


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


class LLMBillingError(LLMRequestError):
    """The account behind the key is out of credit, or its plan does not include this use: no
    wait or retry helps until someone pays."""

    reason = "billing"


class LLMUnknownModelError(LLMRequestError):
    """The endpoint does not know the configured model (404 ``not_found_error``)."""

    reason = "unknown_model"


class LLMCancelled(LLMError):
    """The run was cancelled while the call was under way: its answer is no longer waited for."""

    reason = "cancelled"


class LLMOutputError(LLMError):
    """The model's answer did not fit the expected shape, even after a corrective retry."""

    reason = "malformed_output"


class StreamCut(Exception):
    """A streamed answer ended without ``message_stop`` (connection dropped mid-answer)."""


class NotAMessage(Exception):
    """The endpoint answered 200 with something that is not a Messages API answer (an HTML page
    from a proxy, another API's JSON)."""
