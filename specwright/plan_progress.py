"""What `plan --stream` shows while the planner answers.

Every planner call is a forced tool call: the answer streams as pieces of the tool's JSON input,
never as text. ``PlannerProgress`` reads those pieces (``feed``) and writes what has arrived for
a person: each question and each chunk once it is complete (the next one has begun), the spec's
title, and the spec's text as it grows; the model's own text (``text``) as it comes. ``finish``
writes the rest from the checked answer; a line left open is ended before anything else is said.
Lines are cut to ``WIDTH``; the text is the model's, so the writer must make it terminal-safe
(the CLI's stderr does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

WIDTH = 200
_LISTS = {"ask_questions": "questions", "split_spec": "chunks"}


def _line(text: Any) -> str:
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= WIDTH else flat[: WIDTH - 3] + "..."


class PlannerProgress:
    """Progress of one planner call answering with tool ``schema_name``, written to ``write``."""

    def __init__(self, schema_name: str, write: Callable[[str], None]) -> None:
        self.schema_name = schema_name
        self.write = write
        self._reset()

    def _reset(self) -> None:
        self._buf = ""
        self._parsed_at = 0
        self._items = 0  # list items shown
        self._title = False
        self._body = ""  # spec text shown
        self._shown = False
        self._open = False  # the last thing written did not end its line

    def __enter__(self) -> PlannerProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._end_body()  # an error after part of the text: its line starts on a line of its own

    def _out(self, text: str) -> None:
        self._shown = True
        self.write(text)
        self._open = not text.endswith("\n")

    def text(self, piece: str) -> None:
        """A piece of the model's own text, said beside its tool call (or instead of it)."""
        if piece:
            self._out(piece)

    def feed(self, piece: str | None) -> None:
        """A piece of the tool input's JSON; None when a new answer begins (a retry)."""
        if piece is None:
            if self._shown:
                self._end_body()
                self.write("planner: the answer starts over\n")
            self._reset()
            return
        self._buf += piece
        # parse again after every 1/32 more: at most ~32 log(n) parses of a long answer
        if len(self._buf) - self._parsed_at < max(1, len(self._buf) // 32):
            return
        self._parsed_at = len(self._buf)
        try:
            from jiter import from_json

            snapshot = from_json(self._buf.encode(), partial_mode="trailing-strings")
        except (ImportError, ValueError):
            return
        if isinstance(snapshot, dict):
            self._show(snapshot, final=False)

    def finish(self, data: dict[str, Any]) -> None:
        """The checked answer: show what the stream had not."""
        self._show(data, final=True)
        self._end_body()
        if not self._title and data.get("title"):  # it came after the text
            self._title = True
            self._out(f"planner: spec: {_line(data['title'])}\n")

    def _end_body(self) -> None:
        if self._open:  # the spec's text, or the model's, stopped mid-line
            self.write("\n")
            self._open = False
        self._body = ""

    def _show(self, data: dict[str, Any], final: bool) -> None:
        key = _LISTS.get(self.schema_name)
        if key:
            items = data.get(key)
            if not isinstance(items, list):
                return
            done = items if final else items[:-1]  # the last may still be arriving
            for n, item in enumerate(done[self._items :], self._items + 1):
                self._out(self._item(n, item) + "\n")
            self._items = max(self._items, len(done))
            return
        body, keys = data.get("body"), list(data)
        # the title is whole once a key after it has begun; shown before the text, if first
        whole = "title" in keys and (final or keys.index("title") < len(keys) - 1)
        if whole and data["title"] and not self._title and not self._body:
            self._title = True
            self._out(f"planner: spec: {_line(data['title'])}\n")
        if isinstance(body, str) and body.startswith(self._body) and len(body) > len(self._body):
            self._out(body[len(self._body) :])
            self._body = body

    def _item(self, n: int, item: Any) -> str:
        if self.schema_name == "ask_questions":
            text = item.get("question") if isinstance(item, dict) else item
            return f"planner: question {n}: {_line(text)}"
        title = item.get("title") if isinstance(item, dict) else item
        return f"planner: chunk {n}: {_line(title)}"
