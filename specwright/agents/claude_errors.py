"""What kind of failure a Claude Code API error is, and what its user is told to do about it.

Claude Code (2.1.332) marks the synthetic assistant message of a failed API call with its own
``error`` (``authentication_failed``, ``oauth_org_not_allowed``, ``account_on_hold``,
``verification_required``, ``billing_error``, ``rate_limit``, ``overloaded``, ``server_error``,
``model_not_found``, ``invalid_request``, ``unknown`` ...), sometimes an ``api_error`` detail
(``org_disabled_credential`` for "Your ANTHROPIC_API_KEY belongs to a disabled organization"),
and the API's ``api_error_status`` and ``api_error_type``. Its ``result`` line repeats the status
and type only.
"""

from __future__ import annotations

import re
from typing import Any

RATE_LIMIT_STATUSES = (429,)
RATE_LIMIT_TYPES = ("rate_limit_error",)
# the service overloaded (claude's error line says server_error, after its own retries): no
# account's limit, so no reset to wait for; a later try may well work (the loop backs off)
OVERLOADED_STATUSES, OVERLOADED_TYPES = (529,), ("overloaded_error",)
# a bad, missing or unauthorised key: another try cannot succeed (the loop stops at once)
AUTH_STATUSES = (401, 403)
AUTH_TYPES = ("authentication_error", "permission_error")
# the model asked for does not exist (or this key may not use it): the same, a retry fails alike
# (claude says "There's an issue with the selected model"; its error line, model_not_found)
MODEL_STATUSES = (404,)
MODEL_TYPES = ("not_found_error",)
# out of credit or a plan without this use: the same, until someone pays (claude's error line
# says billing_error for the API's 400 "Your credit balance is too low ..." too)
BILLING_STATUSES, BILLING_TYPES = (402,), ("billing_error",)
# the account itself cannot be used until its owner acts: on hold, its organization disabled or
# not allowing this sign-in, a verification it awaits (a 400 or a 403: neither a new key nor a
# wait helps, so no retry either)
ACCOUNT_ERRORS = ("account_on_hold", "verification_required", "oauth_org_not_allowed")
ACCOUNT_API_ERRORS = ("org_disabled_credential",)
# a login (claude's own, or a CLAUDE_CODE_OAUTH_TOKEN) past its time: "Login expired · Please
# run /login", "OAuth token revoked · ...", "... 401 OAuth token has expired ..."
_LOGIN_EXPIRED = re.compile(r"\b(?:expired|revoked|reached its time limit)\b", re.IGNORECASE)


def error_kind(status: Any, err_type: Any, error: Any = None, api_error: Any = None) -> str:
    """``account``, ``overloaded``, ``rate_limit``, ``billing``, ``auth``, ``unknown_model`` or
    ``api_error``, from the API's status and error type and claude's ``error`` and ``api_error``."""
    if error in ACCOUNT_ERRORS or api_error in ACCOUNT_API_ERRORS:
        return "account"
    if status in OVERLOADED_STATUSES or err_type in OVERLOADED_TYPES or error == "overloaded":
        return "overloaded"
    if status in RATE_LIMIT_STATUSES or err_type in RATE_LIMIT_TYPES:
        return "rate_limit"
    if status in BILLING_STATUSES or err_type in BILLING_TYPES or error == "billing_error":
        return "billing"
    if status in AUTH_STATUSES or err_type in AUTH_TYPES or error == "authentication_failed":
        return "auth"
    if status in MODEL_STATUSES or err_type in MODEL_TYPES or error == "model_not_found":
        return "unknown_model"
    return "api_error"


def explained(text: str, reason: str) -> str:
    """Claude's error ``text`` with what to do about a failure of kind ``reason`` added."""
    if reason == "account":
        return f"{text} (the account's owner must act on this; no new try or wait changes it)"
    if reason == "auth" and _LOGIN_EXPIRED.search(text):
        return (
            f"{text} (its login expired or was revoked: log in again, with `claude auth login` "
            "and CLAUDE_CONFIG_DIR set to the executor's options.config_dir, or set a new "
            "CLAUDE_CODE_OAUTH_TOKEN from `claude setup-token`)"
        )
    if "/login" in text:
        return (
            f"{text} (no credentials: set ANTHROPIC_API_KEY, or point options.config_dir "
            "at a logged-in Claude config directory)"
        )
    if reason == "auth":
        return (
            f"{text} (credentials refused: check the ANTHROPIC_API_KEY or "
            "ANTHROPIC_AUTH_TOKEN claude was given, or the login in options.config_dir)"
        )
    if reason == "billing":
        return f"{text} (add credits to, or change the plan of, the account claude uses)"
    if reason == "unknown_model":
        return f"{text} (set the executor's model to one its API serves)"
    return text
