"""The Spec Studio view of ``01_spec_studio.ipynb``: intent -> questions -> spec -> chunks.

An intent box and an Ask button; one field per planner question; the spec as rendered Markdown;
an editable chunk table (title, dependencies as chunk numbers, files, prompt, checks) with its
dependency graph; Save/Export. Every edit is saved to the store as it happens (after a short
pause in typing; ``flush()`` saves at once) and a marker lists whatever is not saved yet (an
edit in flight, or one the store refused, with the reason). Reopening resumes the draft: all
state is in the store. The backend calls come in as a ``StudioBackend``, so tests use fakes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from specwright.errors import SpecwrightError
from specwright.widgets.common import dag_figure, esc, figure_bundle, markdown_html
from specwright.widgets.studio_backend import ChunkRow, Draft, StudioBackend, commit_hint

if TYPE_CHECKING:
    from specwright.model import Chunk


def _lines(text: str) -> list[str]:
    return [x.strip() for x in text.splitlines() if x.strip()]


def _items(text: str) -> list[str]:
    return [x.strip() for x in text.replace("\n", ",").split(",") if x.strip()]


def _positions(text: str, row: int) -> list[int]:
    out = []
    for part in text.replace(";", ",").split(","):
        part = part.strip().lstrip("#")
        if not part:
            continue
        if not (part.isascii() and part.isdigit()):  # not "²", which int() refuses
            raise SpecwrightError(
                f"chunk {row}: depends on {part!r}; expected chunk numbers like 1, 2"
            )
        out.append(int(part))
    return out


class _ChunkEditor:
    """One editable row of the chunk table."""

    def __init__(self, view: StudioView, chunk_id: str | None, values: ChunkRow) -> None:
        self.chunk_id = chunk_id
        self.number = w.HTML()
        self.title = w.Text(value=values.title, placeholder="title", layout={"width": "22%"})
        self.deps = w.Text(
            value=", ".join(str(p) for p in values.depends_on),
            placeholder="needs: 1, 2",
            layout={"width": "10%"},
        )
        self.files = w.Text(
            value=", ".join(values.files), placeholder="files", layout={"width": "18%"}
        )
        self.prompt = w.Textarea(value=values.prompt, placeholder="prompt", layout={"width": "25%"})
        self.acceptance = w.Textarea(
            value="\n".join(values.acceptance),
            placeholder="checks, one a line",
            layout={"width": "18%"},
        )
        self.remove = w.Button(icon="trash", tooltip="remove this chunk", layout={"width": "36px"})
        self.remove.on_click(lambda _b: view.remove_chunk(self))
        for field in (self.title, self.deps, self.files, self.prompt, self.acceptance):
            field.observe(lambda _c: view.chunks_edited(), names="value")
        self.box = w.HBox(
            [
                self.number,
                self.title,
                self.deps,
                self.files,
                self.prompt,
                self.acceptance,
                self.remove,
            ]
        )

    def row(self, n: int) -> ChunkRow:
        return ChunkRow(
            title=self.title.value,
            prompt=self.prompt.value,
            acceptance=_lines(self.acceptance.value),
            files=_items(self.files.value),
            depends_on=_positions(self.deps.value, n),
            id=self.chunk_id,
        )


class StudioView:
    """The wizard as widgets (see the module docstring)."""

    def __init__(self, backend: StudioBackend, *, debounce_s: float | None = 1.0) -> None:
        self.backend = backend
        self.debounce_s = debounce_s
        self.draft: Draft | None = None
        self.pending: dict[str, Callable[[], None]] = {}
        self.problems: dict[str, str] = {}
        self._lock = threading.RLock()
        self._timer: threading.Timer | None = None
        self._loading = False
        self._said_unsaved = False  # the message is flush's "not saved": cleared once saved

        self.marker = w.HTML()
        self.message = w.HTML()
        self.intent = w.Textarea(
            placeholder="What do you want built? (a paragraph is plenty)",
            layout={"width": "100%", "height": "6em"},
        )
        self.intent.observe(lambda _c: self._refresh(), names="value")  # a new intent: Ask
        self.ask_button = w.Button(description="Ask", icon="question", button_style="primary")
        self.ask_button.on_click(lambda _b: self.ask())
        self.questions_box = w.VBox()
        self.answers: dict[int, w.Textarea] = {}
        self.write_button = w.Button(description="Write spec", icon="pencil")
        self.write_button.on_click(lambda _b: self.write_spec())
        self.split_button = w.Button(
            description="Split into chunks",
            icon="th-list",
            tooltip="the planner's chunk list, into an empty table",
        )
        self.split_button.on_click(lambda _b: self.split())
        self.preview = w.HTML()
        self.rows: list[_ChunkEditor] = []
        self.table = w.VBox()
        self.add_button = w.Button(description="Add chunk", icon="plus")
        self.add_button.on_click(lambda _b: self.add_chunk())
        self.dag = w.Output()
        self.export_button = w.Button(description="Save / Export", icon="save")
        self.export_button.on_click(lambda _b: self.export())
        self.widget = w.VBox(
            [
                w.HBox([self.marker, self.message]),
                w.HTML("<b>1. Intent</b>"),
                self.intent,
                self.ask_button,
                w.HTML("<b>2. The planner's questions</b> (answers are saved as you type)"),
                self.questions_box,
                w.HBox([self.write_button, self.split_button]),
                w.HTML("<b>3. Spec</b>"),
                self.preview,
                w.HTML(
                    "<b>4. Chunks</b> (number, title, needs, files, prompt, checks; "
                    "edits are saved as you type)"
                ),
                self.table,
                self.add_button,
                self.dag,
                self.export_button,
            ]
        )
        self.show(None)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # --- showing a draft ----------------------------------------------------------------------

    def show(self, draft: Draft | None) -> None:
        """Fill every widget from ``draft`` (as saved in the store)."""
        self._loading = True
        try:
            self.draft = draft
            if draft is not None:
                self.intent.value = draft.intent
            self.answers = {}
            items: list[w.Widget] = []
            written = bool(draft and draft.body.strip())  # from these answers: they stay as given
            for q in draft.questions if draft else ():
                label = f"<b>{q.position}. {esc(q.question)}</b>"
                if q.why:
                    label += f" <i style='color:#666'>({esc(q.why)})</i>"
                box = w.Textarea(value=q.answer or "", layout={"width": "100%", "height": "3.5em"})
                box.disabled = written
                box.observe(lambda c, pos=q.position: self.answer_edited(pos, c["new"]), "value")
                self.answers[q.position] = box
                items += [w.HTML(label), box]
            if written and items:
                items.append(
                    w.HTML(
                        "<i>The spec was written from these answers; to change it, revise it: "
                        f"<code>specwright plan --resume {esc(draft.slug if draft else '', 80)} "
                        "--refine FEEDBACK</code></i>"
                    )
                )
            self.questions_box.children = tuple(items)
            body = draft.body if draft else ""
            self.preview.value = (
                markdown_html(body)
                if body.strip()
                else "<i>No spec text yet: answer the questions, then press Write spec.</i>"
            )
            self._fill_table(draft.chunks if draft else ())
        finally:
            self._loading = False
        self._refresh()

    def _fill_table(self, chunks: tuple[Chunk, ...]) -> None:
        pos = {c.id: c.position for c in chunks}
        self.rows = [
            _ChunkEditor(
                self,
                c.id,
                ChunkRow(
                    c.title,
                    c.prompt,
                    list(c.acceptance),
                    list(c.files),
                    [pos[d] for d in c.depends_on if d in pos],
                    c.id,
                ),
            )
            for c in chunks
        ]
        self._renumber()
        self._draw_dag(list(chunks))

    def _renumber(self) -> None:
        for n, row in enumerate(self.rows, 1):
            row.number.value = f"<b>{n}.</b>"
        self.table.children = tuple(r.box for r in self.rows)

    def _draw_dag(self, chunks: list[Chunk]) -> None:
        if not chunks:
            self.dag.outputs = ()
            return
        bundle = figure_bundle(dag_figure(chunks), html=False)
        self.dag.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)

    def _refresh(self) -> None:
        d = self.draft
        stage = d.stage if d else "intent"
        busy = bool(self.pending)
        # another intent typed over the draft's: Ask starts a spec for it (the draft is kept)
        retyped = d is not None and self.intent.value.strip() != d.intent.strip()
        self.ask_button.disabled = d is not None and stage != "questions" and not retyped
        # once written, the text is revised (`plan --refine`), not written anew: a new text
        # marked the spec draft again, a done or running one too, its chunks split from the old
        self.write_button.disabled = d is None or stage != "spec"
        # the planner's chunks replace the table's: only into an empty one (rows typed by hand
        # are someone's work; remove them to split again)
        self.split_button.disabled = d is None or not d.body.strip() or bool(self.rows)
        self.add_button.disabled = d is None
        self.export_button.disabled = d is None or not self.rows
        if busy or self.problems:
            what = ", ".join(sorted(set(self.pending) | set(self.problems)))
            self.marker.value = f"<b style='color:#d62728'>● unsaved changes</b> ({esc(what)})"
        else:
            self.marker.value = "<span style='color:#2ca02c'>✓ all changes saved</span>" + (
                f" — spec <code>{esc(d.slug, 80)}</code>, next: {esc(stage)}" if d else ""
            )

    def say(self, text: str, error: bool = False) -> None:
        """Show a one-line message (errors in red)."""
        color = "#d62728" if error else "#333"
        self.message.value = f"<span style='color:{color}'>{esc(text, 600)}</span>"
        self._said_unsaved = False

    # --- saving as it happens -----------------------------------------------------------------

    def _edited(self, key: str, save: Callable[[], None]) -> None:
        if self._loading:
            return
        with self._lock:
            self.pending[key] = save
            self._refresh()
            if self.debounce_s is not None:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = threading.Timer(self.debounce_s, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> bool:
        """Save every pending edit now; True when nothing is left unsaved."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            for key, save in list(self.pending.items()):
                try:
                    save()
                except SpecwrightError as exc:
                    self.problems[key] = str(exc)
                    self.say(f"not saved ({key}): {exc}", error=True)
                    self._said_unsaved = True
                else:
                    self.problems.pop(key, None)
                del self.pending[key]
            if self.problems:  # keep them pending: the next edit or flush tries again
                self._refresh()
                return False
            if self._said_unsaved:  # saved now: no "not saved" beside "all changes saved"
                self.say("")
            self._refresh()
            return True

    def answer_edited(self, position: int, text: str) -> None:
        """An answer field changed: save it to the store (soon)."""
        d = self.draft
        if d is None:
            return
        self.problems.pop(f"answer {position}", None)

        def save() -> None:
            saved = self.backend.answer(d.spec_id, position, text)
            if saved is not None:  # its next step (the last answer enables Write spec)
                self.draft = saved

        self._edited(f"answer {position}", save)

    def chunks_edited(self) -> None:
        """The chunk table changed: save it as a whole (checked as a DAG) soon."""
        if self.draft is None:
            return
        spec_id = self.draft.spec_id
        self.problems.pop("chunks", None)

        def save() -> None:
            rows = [r.row(n) for n, r in enumerate(self.rows, 1)]
            draft = self.backend.save_chunks(spec_id, rows)
            self.draft = draft
            for editor, chunk in zip(self.rows, draft.chunks, strict=False):
                editor.chunk_id = chunk.id
            self._draw_dag(list(draft.chunks))

        self._edited("chunks", save)

    def add_chunk(self) -> None:
        """A new empty row (saved once it has a title)."""
        self.rows.append(_ChunkEditor(self, None, ChunkRow(title="")))
        self._renumber()
        self._refresh()

    def remove_chunk(self, editor: _ChunkEditor) -> None:
        """Drop a row: the other rows' "needs" lose its number and count the later rows one
        lower, so each still needs the same chunks (a "needs" that does not parse is left as
        typed, for its error)."""
        gone = self.rows.index(editor) + 1
        self.rows.remove(editor)
        self._loading = True  # one save below, not one per rewritten field
        try:
            for n, row in enumerate(self.rows, 1):
                try:
                    needs = _positions(row.deps.value, n)
                except SpecwrightError:
                    continue
                kept = [p - (p > gone) for p in needs if p != gone]
                if kept != needs:
                    row.deps.value = ", ".join(str(p) for p in kept)
        finally:
            self._loading = False
        self._renumber()
        self.chunks_edited()

    # --- the wizard's steps -------------------------------------------------------------------

    def _call(self, doing: str, fn: Callable[[], Any]) -> Any:
        if not self.flush():
            return None
        self.say(doing + "…")
        try:
            result = fn()
        except SpecwrightError as exc:
            self.say(str(exc), error=True)
            return None
        self.say("")
        return result

    def ask(self) -> None:
        """Create the draft from the intent (if needed) and ask the planner's questions."""
        intent = self.intent.value.strip()
        if self.draft is None or intent != self.draft.intent.strip():
            if not intent:
                self.say("Type what you want built in the intent box first.", error=True)
                return
            draft = self._call("saving the draft", lambda: self.backend.create(intent))
            if draft is None:
                return
            self.show(draft)
        problem = self.backend.planner_problem()
        if problem:
            self.say(problem, error=True)
            return
        assert self.draft is not None
        spec_id = self.draft.spec_id
        draft = self._call("asking the planner", lambda: self.backend.ask(spec_id))
        if draft is not None:
            self.show(draft)

    def _step(self, doing: str, fn: Callable[[str], Draft]) -> None:
        if self.draft is None:
            return
        problem = self.backend.planner_problem()
        if problem:
            self.say(problem, error=True)
            return
        spec_id = self.draft.spec_id
        draft = self._call(doing, lambda: fn(spec_id))
        if draft is not None:
            self.show(draft)

    def write_spec(self) -> None:
        """Ask the planner for the spec from the intent and the answers (once: a written spec
        is revised with `plan --refine`)."""
        d = self.draft
        if d is not None and d.body.strip():
            self.say(
                "the spec is written; revise it instead: "
                f"`specwright plan --resume {d.slug} --refine FEEDBACK`",
                error=True,
            )
            return
        self._step("writing the spec", self.backend.write_spec)

    def split(self) -> None:
        """Ask the planner to split the spec into chunks (into an empty chunk table)."""
        if self.rows:
            self.say(
                "the chunk table is not empty: the planner's chunks would replace its rows; "
                "remove them first to split again",
                error=True,
            )
            return
        self._step("splitting into chunks", self.backend.split)

    def export(self) -> Path | None:
        """Save everything, mark a draft spec ready and write its spec file."""
        if self.draft is None:
            return None
        spec_id = self.draft.spec_id
        status = self.draft.status
        path = self._call("exporting", lambda: self.backend.export(spec_id))
        if path is not None:
            state = "ready to run" if status in ("draft", "ready") else f"{status}, left as it is"
            self.say(f"saved; spec {state}; wrote {path}{commit_hint(path)}")
            if self.draft is not None and self.draft.spec_id == spec_id:  # not "next: review"
                accepted = "ready" if status == "draft" else status
                stage = "ready" if self.draft.stage == "review" else self.draft.stage
                self.draft = replace(self.draft, status=accepted, stage=stage)
                self._refresh()
        return path
