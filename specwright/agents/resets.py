"""When an agent's usage-limit message says the limit resets: seconds from now.

Codex CLI words its exhausted plan (``UsageLimitReachedError`` in codex-rs/core/src/error.rs) as
"... Try again at 3:04 PM." (a local clock time: the reset is today), "... try again at Aug 8th,
2026 12:30 PM." (another day, local time) or "... Try again later."; releases before that said
"... try again in 4 days 20 hours 9 minutes." Codex writes the reset time cut to the minute, so
a reset in the minute under way is waited for until that minute ends.

An account out of credit, or a plan without this use, never resets (``out_of_credit``); nor
does an account its owner must put right (``account_unusable``).
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_AT = re.compile(
    r"try again at\s+"
    r"(?:(?P<mon>[a-z]{3})[a-z]*\.?\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?,?\s+(?P<year>\d{4}),?\s+)?"
    r"(?P<h>\d{1,2}):(?P<m>\d{2})\s*(?P<ampm>[ap]\.?m\.?)?",
    re.IGNORECASE,
)
_IN = re.compile(
    r"try again in\s+((?:\d+\s*(?:days?|hours?|hrs?|minutes?|mins?|seconds?|secs?)\b[\s,]*(?:and\s+)?)+)",
    re.IGNORECASE,
)
# an account out of credit or a plan without this use: no wait helps, someone must pay. Codex's
# words (codex-rs error.rs; OpenCode says the first two alike): an API key's insufficient_quota,
# a ChatGPT plan without Codex (usage_not_included), a workspace out of credits or at its spend
# cap; Anthropic's 400 "Your credit balance is too low ..." (its type billing_error); z.ai's 429
# code 1113 "Insufficient balance or no resource package. Please recharge." (or in Chinese).
# Not "You exceeded your current quota": Gemini's per-minute 429s say that too.
_OUT_OF_CREDIT = re.compile(
    r"quota exceeded\. check your plan|insufficient_quota|usage_not_included"
    r"|to use codex with your chatgpt plan|workspace is out of credits|hit your spend cap"
    r"|credit balance is too low|billing_error|insufficient balance or no resource package"
    r"|余额不足",
    re.IGNORECASE,
)
# an account no key, wait or retry makes usable until its owner acts: Anthropic's 400 "This
# organization has been disabled." and its 403 error_code verification_required, an account on
# hold; OpenAI's 401 account_deactivated ("... has been deactivated"), Groq's 400
# "Organization has been restricted."
_ACCOUNT_UNUSABLE = re.compile(
    r"organization has been (?:disabled|restricted)|verification_required|account_deactivated"
    r"|account (?:associated with this api key )?has been deactivated|account is on hold",
    re.IGNORECASE,
)
_PART = re.compile(r"(\d+)\s*([a-z])", re.IGNORECASE)
_UNIT_S = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def reset_in_s(text: str, now: float | None = None) -> float | None:
    """Seconds from ``now`` (epoch seconds; the clock when None) until the reset ``text`` names
    ("try again at 3:04 PM", "... at Aug 8th, 2026 12:30 PM", "... in 2 hours 5 minutes"); a
    bare clock time is its next occurrence in local time. None when it names none."""
    now = time.time() if now is None else now
    m = _IN.search(text or "")
    if m:
        return float(sum(int(n) * _UNIT_S[u.lower()] for n, u in _PART.findall(m.group(1))))
    m = _AT.search(text or "")
    if not m:
        return None
    hour, minute = int(m["h"]), int(m["m"])
    if m["ampm"]:
        hour = hour % 12 + (12 if m["ampm"].lower().startswith("p") else 0)
    if hour > 23 or minute > 59:
        return None
    local_now = datetime.fromtimestamp(now)  # naive local time: .timestamp() follows its DST
    try:
        if m["mon"]:
            if m["mon"].lower() not in _MONTHS:
                return None
            month = _MONTHS.index(m["mon"].lower()) + 1
            at = datetime(int(m["year"]), month, int(m["day"]), hour, minute)
        else:
            at = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
            if at.timestamp() + 60 <= now:  # passed today: tomorrow's
                at += timedelta(days=1)
    except ValueError:  # no such day (Feb 30th)
        return None
    wait = at.timestamp() - now
    return wait if wait >= 0 else max(0.0, wait + 60)  # the minute under way: until its end


def out_of_credit(text: str) -> bool:
    """Whether an agent's or provider's error says its account is out of credit, or its plan
    does not include this use (no reset comes: adding credits or changing plan is the fix)."""
    return _OUT_OF_CREDIT.search(text) is not None


def account_unusable(text: str) -> bool:
    """Whether a provider's error says its account is disabled, deactivated, on hold or
    awaiting a verification: no new key, wait or retry helps until its owner acts."""
    return _ACCOUNT_UNUSABLE.search(text) is not None
