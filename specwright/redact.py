"""Redact the values of secret environment variables from anything an agent prints.

A variable is secret when its name says so (KEY, TOKEN, SECRET, PASSWORD, CREDENTIAL, AUTH; not
AUTHOR) or the config names it as a key (``declare``: a planner's ``api_key_env``), and its value is long enough to be a credential rather than a flag, and is not the path
of a file that exists (``SSH_AUTH_SOCK``). A value is also found
in the forms it takes on the way out: URL-encoded (``quote``, ``quote_plus``, escapes in either
case) and JSON-escaped (once or twice, ASCII or not, with ``\\/``), and base64-encoded (standard or
URL-safe alphabet; alone, with the newline ``echo | base64`` adds and its 76-column wrap, or inside
a longer base64 text, such as a Basic auth header, at any of the three byte alignments), and
hex-encoded (either case; also broken over lines, as ``xxd -p`` wraps a dump that holds it).
``edges`` also catches a value cut in two: the end of a text that is the start of a secret, and
the start of one that is its end.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

# AUTH, but not AUTHOR: GIT_AUTHOR_NAME/EMAIL name a person, whom every `git log` shows
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH(?!OR))", re.I)
_MIN_LEN = 8
MIN_PART = 6  # a piece of a cut secret at least this long is redacted at a text's edge
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_ENDS_REDACTED = re.compile(r"\[REDACTED:[^\[\]]*\]\Z")
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def without_password(text: str) -> str:
    """``text`` with the ``user:password@`` part of each URL in it as ``***@``: a URL as said
    or recorded (an OpenCode server's ``http://u:pw@host``, a git remote's token)."""
    return _USERINFO.sub("***@", text)


# variables a loaded config names as holding a key (a planner's ``api_key_env``), whatever their
# names say: ``declare`` adds them; every redactor made after that counts them secret
_declared: set[str] = set()


def declare(names: Iterable[str]) -> None:
    """Count the variables ``names`` as secret from now on (a config's key variables)."""
    _declared.update(names)


def _path(value: str) -> bool:
    """Whether ``value`` names a file or folder that exists (``SSH_AUTH_SOCK``,
    ``PASSWORD_STORE_DIR``): a secret-sounding name whose value is no secret, and would redact
    every path shown under it."""
    return value.startswith("/") and "\n" not in value and os.path.lexists(value)


def _pattern(form: str) -> str:
    """``form`` as a regex in which URL escapes match in either case (%2F, %2f)."""
    out, at = [], 0
    for m in _PERCENT.finditer(form):
        out.append(re.escape(form[at : m.start()]))
        out.append("%" + "".join(f"[{c.upper()}{c.lower()}]" for c in m.group(0)[1:]))
        at = m.end()
    out.append(re.escape(form[at:]))
    return "".join(out)


def _alternation(
    forms: Iterable[str], as_regex: Callable[[str], str] = _pattern, wrapped: Container[str] = ()
) -> str:
    """One regex for ``forms`` (in their order: the first that matches wins), its branches
    grouped by their first character or URL escape: at each place in a text only the forms
    starting there are tried, so the many forms of a few secrets cost little more than one.
    A form in ``wrapped`` (base64, hex) also matches broken over lines anywhere, as ``base64``
    and ``xxd -p`` wrap a longer text that holds it."""
    groups: dict[str, list[str]] = {}
    for form in forms:
        head = form[:3] if _PERCENT.match(form) else form[:1]
        rest = form[len(head) :]
        alternatives = groups.setdefault(as_regex(head), [])
        if form in wrapped and rest:  # each alternative starts with a literal: tried fast
            after = "".join("\n?" + re.escape(c) for c in rest[1:])
            alternatives += (re.escape(rest[0]) + after, "\n" + re.escape(rest[0]) + after)
        else:
            alternatives.append(as_regex(rest))
    return "|".join(f"{head}(?:{'|'.join(rests)})" for head, rests in groups.items())


def _json_escaped(value: str, ascii_only: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only)[1:-1]


_URL_SAFE = str.maketrans("+/", "-_")
_WRAP = 76  # the column at which ``base64`` (GNU coreutils) breaks its output


def _base64_cores(raw: bytes) -> set[str]:
    """The characters that encode only ``raw``'s bytes wherever it starts in a longer base64
    text (three alignments), in the standard and the URL-safe alphabet."""
    cores = set()
    for shift, first in ((0, 0), (1, 2), (2, 3)):  # after 0, 1, 2 bytes: skip mixed characters
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        cores.add(encoded[first : 8 * (shift + len(raw)) // 6])  # up to the last pure character
    return cores | {core.translate(_URL_SAFE) for core in cores}


def _base64_forms(raw: bytes) -> set[str]:
    """``raw`` base64-encoded: whole (with and without a trailing newline, padded, and as
    ``base64`` wraps it) and its ``_base64_cores``, in both alphabets."""
    forms = set()
    for tail in (b"", b"\n"):
        whole = base64.b64encode(raw + tail).decode()
        forms.add(whole)
        forms.add("\n".join(whole[i : i + _WRAP] for i in range(0, len(whole), _WRAP)))
    return forms | {form.translate(_URL_SAFE) for form in forms} | _base64_cores(raw)


def _hex_forms(raw: bytes) -> set[str]:
    """``raw`` in hex, lower and upper case (``xxd -p``, ``bytes.hex()``)."""
    return {raw.hex(), raw.hex().upper()}


def _bytes(value: str) -> bytes:
    """The bytes of a variable's value, also when they are not UTF-8 (os.environ keeps those
    as surrogate escapes)."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte
        return value.encode("utf-8", "surrogatepass")


def variants(value: str) -> set[str]:
    """The forms ``value`` takes once URL-encoded, base64-encoded or JSON-escaped (itself
    included)."""
    raw = _bytes(value)
    forms = {value, raw.decode("utf-8", "replace")}  # the latter as an agent's output is read
    forms.update((quote(raw, safe=""), quote(raw), quote_plus(raw)))
    forms.update(_base64_forms(raw))
    forms.update(_hex_forms(raw))
    if "\n" in value:  # a key file's text: line by line, a stream's lines are joined without breaks
        forms.add(value.replace("\n", ""))
    for form in list(forms):
        for ascii_only in (False, True):
            once = _json_escaped(form, ascii_only)
            forms.update((once, once.replace("/", "\\/"), _json_escaped(once, ascii_only)))
    return forms


@dataclass(frozen=True)
class _Matcher:
    """What a ``Redactor`` matches with: built once per set of secrets, as each recorder,
    verification and review makes its own redactor from the same environment."""

    names: dict[str, str]  # every form of every secret, and the secret's name
    pattern: re.Pattern[str] | None
    longest: int
    by_head: dict[str, list[str]]  # forms by their first MIN_PART chars
    by_tail: dict[str, list[str]]  # and by their last
    heads: re.Pattern[str]  # where a piece of a cut secret may begin
    tails: re.Pattern[str]  # and end

    @staticmethod
    @functools.lru_cache(maxsize=16)
    def of(items: tuple[tuple[str, str], ...]) -> _Matcher:
        names: dict[str, str] = {}
        wrapped: set[str] = set()  # base64 and hex forms, found broken over lines too
        for name, value in items:
            for form in variants(value):
                names.setdefault(form, name)
            wrapped |= _base64_cores(_bytes(value)) | _hex_forms(_bytes(value))
        forms = sorted(names, key=len, reverse=True)  # the longest form wins an overlap
        by_head: dict[str, list[str]] = {}
        by_tail: dict[str, list[str]] = {}
        for form in forms:
            by_head.setdefault(form[:MIN_PART], []).append(form)
            by_tail.setdefault(form[-MIN_PART:], []).append(form)
        return _Matcher(
            names,
            re.compile(_alternation(forms, wrapped=wrapped)) if forms else None,
            len(forms[0]) if forms else 0,
            by_head,
            by_tail,
            re.compile(_alternation(by_head, re.escape)),
            re.compile(_alternation(by_tail, re.escape)),
        )


class Redactor:
    """Replaces known secret values with ``[REDACTED:NAME]``."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        items = sorted(
            ((name, value) for name, value in secrets.items() if len(value) >= _MIN_LEN),
            key=lambda kv: -len(kv[1]),
        )
        self._items = items
        matcher = _Matcher.of(tuple(items))
        self._names, self._pattern, self._longest = matcher.names, matcher.pattern, matcher.longest
        self._by_head, self._by_tail = matcher.by_head, matcher.by_tail
        self._heads, self._tails = matcher.heads, matcher.tails

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, extra: Iterable[tuple[str, str]] = ()
    ) -> Redactor:
        """A redactor for the secret-looking variables of ``env`` (default: os.environ)."""
        env = os.environ if env is None else env
        secrets = {
            k: v
            for k, v in env.items()
            if (k in _declared or _SECRET_NAME.search(k)) and v and not _path(v)
        }
        secrets.update(dict(extra))
        return cls(secrets)

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(lambda m: f"[REDACTED:{self._name(m.group(0))}]", text)

    def _name(self, found: str) -> str:
        name = self._names.get(found) or self._names.get(found.replace("\n", ""))
        return name or self._names[_PERCENT.sub(lambda m: m.group(0).upper(), found)]

    @staticmethod
    def ends_redacted(text: str | None) -> bool:
        """Whether a text this redactor gave back ends with a redaction (see ``across``)."""
        return text is not None and _ENDS_REDACTED.search(text) is not None

    @staticmethod
    def _at(pattern: re.Pattern[str], text: str, pos: int, endpos: int) -> Iterator[int]:
        """Where ``pattern`` (MIN_PART-char heads or tails) matches in ``text[pos:endpos]``,
        overlapping matches included."""
        m = pattern.search(text, pos, endpos)
        while m is not None:
            yield m.start()
            m = pattern.search(text, m.start() + 1, endpos)

    def __bool__(self) -> bool:
        return self._pattern is not None

    def edges(self, text: str, *, head: bool = True, tail: bool = True) -> str:
        """``text`` redacted, and also a piece of a secret cut off at its end (``tail``: the
        text stops inside a secret) or at its start (``head``: it begins inside one)."""
        text = self(text)
        if self._pattern is None or not text:
            return text
        if tail:  # the text ends with the start of a secret: its earliest such start wins
            for i in self._at(self._heads, text, max(0, len(text) - self._longest), len(text)):
                piece = text[i:]
                name = next(
                    (
                        self._names[f]
                        for f in self._by_head[text[i : i + MIN_PART]]
                        if len(f) > len(piece) and f.startswith(piece)
                    ),
                    None,
                )
                if name is not None:
                    text = f"{text[:i]}[REDACTED:{name}]"
                    break
        if head:  # the text starts with the end of a secret: the longest such end wins
            ends = [i + MIN_PART for i in self._at(self._tails, text, 0, self._longest)]
            for k in reversed(ends):
                piece = text[:k]
                name = next(
                    (
                        self._names[f]
                        for f in self._by_tail[text[k - MIN_PART : k]]
                        if len(f) > k and f.endswith(piece)
                    ),
                    None,
                )
                if name is not None:
                    text = f"[REDACTED:{name}]{text[k:]}"
                    break
        return text

    def across(self, before: str, text: str, *, open_end: bool = True) -> str:
        """``text`` redacted, where ``before`` is what came just before it in the same stream
        (the previous lines or chunks): a secret that began in ``before`` is redacted where it
        ends in ``text``, all of ``text`` when it goes on after it (a secret over three lines
        or more), and one that ``text`` ends inside is cut off (see ``edges``). ``open_end``
        False says ``before`` redacted did not end with a redaction (``ends_redacted``), so no
        piece of a secret of MIN_PART chars or more ends it: only a shorter one is looked for,
        which is faster with long secrets."""
        if self._pattern is None or not text:
            return text
        before = before[-self._longest :]
        start = len(before)
        joined = before + text
        cut, name = 0, ""
        back = self._longest if open_end else MIN_PART  # how far back a secret may begin
        for m in self._pattern.finditer(joined, max(0, start - back + 1)):
            if m.start() >= start:
                break
            if m.end() > start:
                cut, name = m.end() - start, self._name(m.group(0))
        if cut:
            return f"[REDACTED:{name}]" + self.edges(text[cut:], head=False)
        # a secret's start in ``before`` and all of ``text``: a piece shorter than the longest form
        lo = max(0, len(joined) - self._longest + 1, start - back + 1)
        for i in self._at(self._heads, joined, lo, len(joined) if open_end else start + MIN_PART):
            if i >= start:
                break
            piece = joined[i:]
            for f in self._by_head[piece[:MIN_PART]]:
                if len(f) > len(piece) and f.startswith(piece):
                    return f"[REDACTED:{self._names[f]}]"
        return self.edges(text, head=False)

    def lines(self, text: str) -> str:
        """``text`` redacted line by line as ``across`` does, so a secret broken over lines is
        found; its first line is taken to be cut (``edges``), as a tail of output is."""
        if self._pattern is None or not text:
            return text
        out, before, open_end = [], "", False
        for line in text.split("\n"):
            out.append(self.across(before, line, open_end=open_end))
            open_end = self.ends_redacted(out[-1])  # maybe inside a secret: keep what came before
            before = (before + line)[-self._longest :] if open_end else line
        out[0] = self.edges(out[0], tail=False)
        return "\n".join(out)
