"""Redact the values of secret environment variables from anything an agent prints.

A variable is secret when its name says so (KEY, TOKEN, SECRET, PASSWORD, CREDENTIAL, AUTH)
and its value is long enough to be a credential rather than a flag.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.I)
_MIN_LEN = 8


class Redactor:
    """Replaces known secret values with ``[REDACTED:NAME]``."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        items = sorted(
            ((name, value) for name, value in secrets.items() if len(value) >= _MIN_LEN),
            key=lambda kv: -len(kv[1]),
        )
        self._items = items
        self._pattern = re.compile("|".join(re.escape(v) for _, v in items)) if items else None
        self._names = {v: n for n, v in items}

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, extra: Iterable[tuple[str, str]] = ()
    ) -> Redactor:
        """A redactor for the secret-looking variables of ``env`` (default: os.environ)."""
        env = os.environ if env is None else env
        secrets = {k: v for k, v in env.items() if _SECRET_NAME.search(k) and v}
        secrets.update(dict(extra))
        return cls(secrets)

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(lambda m: f"[REDACTED:{self._names[m.group(0)]}]", text)

    def __bool__(self) -> bool:
        return self._pattern is not None
