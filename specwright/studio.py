"""Spec Studio: intent -> clarifying questions -> answers -> spec -> chunks, resumable.

Every step is a row in the store before the next one starts: ``start`` creates the draft spec
(with the intent) and then asks the planner for 3-7 questions (``spec_questions`` rows);
``answer`` saves each answer as it comes; ``write_spec`` saves the markdown spec on the spec row;
``split`` saves the chunks and their dependencies, validated as a DAG of at most
``prompts.MAX_CHUNKS`` chunks (a cycle, an unknown dependency or too many chunks is re-asked
once, then a clear error); ``refine`` revises the spec or the chunks. What the planner writes
needs a review: a spec accepted before (``accept``: ready, or run since) is a draft again.
A ``Studio`` holds only the spec id and reads everything else from the store, so a new object
(``resume``) after a kernel restart carries on where the last one stopped.

Every planner call goes through ``LLMClient.structured`` (forced tool use) and is recorded as an
execution (role ``planner``, linked to the spec) with its tokens and cost.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specwright import catalog, prompts
from specwright.drafts import ChunkDraft, chunk_ops, planned_chunks, with_runs
from specwright.errors import SpecwrightError, ValidationError, one_line
from specwright.model import Chunk, Project, Spec, new_id, utcnow
from specwright.titles import clean_title

if TYPE_CHECKING:
    from specwright.config import Config
    from specwright.llm import LLMClient
    from specwright.store import Store

STAGES = ("questions", "answers", "spec", "chunks", "review", "ready")
MAX_ANSWER_CHARS = 20_000
# the planner is a model: a runaway answer is refused, so a spec (body + MAX_CHUNKS chunks, 1.1 M
# characters) fits a spec file `spec import` reads back (specfile.MAX_FILE_BYTES, 4 MiB)
MAX_BODY_CHARS = 100_000


class PlannerAnswerError(ValidationError):
    """The planner's answer broke a rule (a cycle, an unknown chunk) twice in a row."""


@dataclass(frozen=True)
class Question:
    """One clarifying question and, once given, its answer."""

    id: str
    position: int
    question: str
    why: str | None = None
    answer: str | None = None
    answered_at: datetime | None = None


def _draft_title(intent: str) -> str:
    first = next((clean_title(x) for x in intent.splitlines() if clean_title(x)), "")
    first = first.lstrip("#").strip() or "Untitled spec"
    return first if len(first) <= 60 else first[:57].rstrip() + "..."


class Studio:
    """The wizard for one spec; all state lives in the store."""

    def __init__(
        self,
        store: Store,
        spec_id: str,
        *,
        config: Config | None = None,
        planner: str | None = None,
        llm: LLMClient | None = None,
        context: str | None = None,
        context_tokens: int | None = None,
        stream: bool = False,
        on_text: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.spec_id = spec_id
        self._config = config
        self.planner = planner
        self._llm = llm
        self._context = context
        self.context_tokens = context_tokens
        self.stream = stream
        self.on_text = on_text

    # --- construction -----------------------------------------------------------------------

    @classmethod
    def create(cls, store: Store, project: Project, intent: str, **kw: Any) -> Studio:
        """A new draft spec holding ``intent``; no planner call yet (see ``ask_questions``)."""
        from specwright.catalog import create_spec

        intent = intent.strip()
        if not intent:
            raise ValidationError("intent: expected a description of what you want built")
        if len(intent) > prompts.MAX_INTENT_CHARS:
            raise ValidationError(
                f"intent: {len(intent)} characters; expected at most {prompts.MAX_INTENT_CHARS}"
            )
        spec = create_spec(store, project, _draft_title(intent), intent=intent)
        return cls(store, spec.id, **kw)

    @classmethod
    def resume(cls, store: Store, ref: str, project: Project | None = None, **kw: Any) -> Studio:
        """The wizard of an existing spec (slug, id or id prefix)."""
        from specwright.catalog import get_spec

        return cls(store, get_spec(store, ref, project).id, **kw)

    # --- state (always read from the store) -------------------------------------------------

    @property
    def spec(self) -> Spec:
        from specwright.catalog import get_spec

        return get_spec(self.store, self.spec_id)

    @property
    def questions(self) -> list[Question]:
        rows = self.store.query_dicts(
            "SELECT id, position, question, why, answer, answered_at FROM spec_questions "
            "WHERE spec_id = ? ORDER BY position",
            [self.spec_id],
        )
        return [Question(**r) for r in rows]

    @property
    def chunks(self) -> list[Chunk]:
        from specwright.catalog import list_chunks

        return list_chunks(self.store, self.spec_id)

    @property
    def stage(self) -> str:
        """What comes next: questions, answers, spec, chunks, review (all there) or ready."""
        with self.store.connect():
            spec = self.spec
            questions = self.questions
            # once the text is written (by the planner, or by hand: `spec new`, `spec import`)
            # no question is needed, and one left blank was the planner's to decide
            if not spec.body.strip():
                if not questions:
                    return "questions"
                return "answers" if any(q.answer is None for q in questions) else "spec"
            if not self.chunks:
                return "chunks"
        return "review" if spec.status == "draft" else "ready"  # running, done...: accepted

    @property
    def unanswered(self) -> list[Question]:
        return [q for q in self.questions if q.answer is None]

    # --- the planner ------------------------------------------------------------------------

    @property
    def config(self) -> Config:
        if self._config is None:
            from specwright import config

            self._config = config.load(self._project_root())
        return self._config

    def _project_root(self) -> Path | None:
        rows = self.store.query(
            "SELECT p.root FROM projects p JOIN specs s ON s.project_id = p.id WHERE s.id = ?",
            [self.spec_id],
        )
        return Path(rows[0][0]) if rows else None

    @property
    def llm(self) -> LLMClient:
        if self._llm is None:
            from specwright.llm import LLMClient

            self._llm = LLMClient.from_config(self.config, self.planner, self.store)
        return self._llm

    def context(self) -> str | None:
        """The codebase context the planner sees (computed once, cached by commit in the store)."""
        if self._context is None:
            from specwright import codebase

            root = self._project_root()
            if root is None or not root.is_dir():
                return None
            budget = self.context_tokens or codebase.DEFAULT_BUDGET_TOKENS
            try:
                self._context = codebase.context(root, self.store, budget_tokens=budget)
            except SpecwrightError:
                return None
        return self._context or None

    def _ask(self, prompt: prompts.Prompt) -> dict[str, Any]:
        import contextlib

        from specwright.plan_progress import PlannerProgress

        # the answer is a tool call's input: ``on_text`` is shown its questions, chunks, text
        shown = PlannerProgress(prompt.schema_name, self.on_text) if self.on_text else None
        with shown or contextlib.nullcontext():
            data, _usage = self.llm.structured(
                prompt.system,
                prompt.user,
                prompt.schema_name,
                prompt.schema,
                role="planner",
                description=prompt.description,
                spec_id=self.spec_id,
                stream=self.stream,
                on_text=shown.text if shown else None,
                on_input=shown.feed if shown and self.stream else None,
            )
            if shown and self.stream:
                shown.finish(data)
        return _no_nul(data)

    def _ask_checked(
        self,
        build: Callable[[str | None], prompts.Prompt],
        check: Callable[[dict[str, Any]], tuple[Any, str | None]],
        what: str,
    ) -> Any:
        """Ask; if ``check`` finds a problem, ask once more saying what was wrong; then fail."""
        problem: str | None = None
        for _attempt in range(2):
            value, problem = check(self._ask(build(problem)))
            if problem is None:
                return value
            problem = one_line(problem, 400)  # it quotes the planner's words (a key of any size)
        raise PlannerAnswerError(
            f"spec {self.spec.slug!r}: the planner's {what} was rejected twice: {problem}; "
            "nothing was changed (try again, or use another planner with --planner)"
        )

    @property
    def _rules(self) -> tuple[str, ...]:
        return self.config.rules

    # --- steps ------------------------------------------------------------------------------

    def ask_questions(self) -> list[Question]:
        """Ask the planner for 3-7 clarifying questions and save them (replacing none)."""
        existing = self.questions
        if existing:
            return existing
        spec = self.spec
        if not spec.intent.strip():  # a `spec new` without a body: nothing to ask about
            raise ValidationError(
                f"spec {spec.slug!r} has no intent to ask questions about and no text: write "
                f"its text (`specwright spec export {spec.slug}`, edit, `specwright spec "
                "import FILE`), or start over with `specwright plan --intent TEXT`"
            )

        def build(problem: str | None) -> prompts.Prompt:
            p = prompts.questions(spec.intent, rules=self._rules, context=self.context())
            return _with_problem(p, problem)

        items = self._ask_checked(build, _check_questions, "questions")
        now = utcnow()
        from specwright.store import Store

        ops = [
            Store.op_insert(
                "spec_questions",
                {
                    "id": new_id(),
                    "spec_id": self.spec_id,
                    "position": i,
                    "question": q,
                    "why": why,
                    "answer": None,
                    "created_at": now,
                    "answered_at": None,
                },
            )
            for i, (q, why) in enumerate(items, 1)
        ]
        self.store.write(ops)
        return self.questions

    def answer(self, question: int | str, text: str) -> Question:
        """Save the answer to question ``question`` (its position, or its id) right away."""
        with self.store.connect():  # one connection for the read, the write and the re-read
            return self._answer(question, text)

    def _answer(self, question: int | str, text: str) -> Question:
        text = text.strip()
        if len(text) > MAX_ANSWER_CHARS:
            raise ValidationError(
                f"answer to question {question}: {len(text)} characters; "
                f"expected at most {MAX_ANSWER_CHARS}"
            )
        questions = self.questions
        match = [
            q
            for q in questions
            if (isinstance(question, int) and q.position == question) or q.id == str(question)
        ]
        if not match:
            raise ValidationError(
                f"question {question!r}: no such question; expected a position 1-{len(questions)}"
                if questions
                else f"spec {self.spec.slug!r} has no questions yet (ask_questions first)"
            )
        self.store.update(
            "spec_questions", {"id": match[0].id}, {"answer": text, "answered_at": utcnow()}
        )
        return next(q for q in self.questions if q.id == match[0].id)

    def answer_all(
        self, answers: Sequence[str] | Mapping[Any, str], *, frozen: bool = False
    ) -> list[Question]:
        """Save several answers: a list by position, or a mapping of position / question text.
        ``frozen``: refuse (saving none) an answer that differs from the one saved."""
        with self.store.connect():
            return self._answer_all(answers, frozen)

    def _answer_all(
        self, answers: Sequence[str] | Mapping[Any, str], frozen: bool = False
    ) -> list[Question]:
        questions = self.questions
        by_text = {q.question.strip().lower(): q.position for q in questions}
        pairs: list[tuple[int, str]] = []
        if isinstance(answers, Mapping):
            for key, value in answers.items():
                pos = _position(key, by_text)
                if pos is None:
                    raise ValidationError(
                        f"answer for {key!r}: expected a question position (1-{len(questions)}) "
                        "or the exact question text"
                    )
                pairs.append((pos, str(value)))
        else:
            pairs = [(i, str(a)) for i, a in enumerate(answers, 1)]
        # check them all before saving any: a typo must not leave half the answers saved, nor be
        # dropped silently while the planner goes on without it
        for pos, text in pairs:
            if not 1 <= pos <= len(questions) and text.strip():
                raise ValidationError(
                    f"answer {pos}: there are {len(questions)} questions; expected answers to "
                    f"questions 1-{len(questions)} (nothing was saved)"
                    if questions
                    else f"spec {self.spec.slug!r} has no questions yet (ask_questions first)"
                )
            if len(text.strip()) > MAX_ANSWER_CHARS:
                raise ValidationError(
                    f"answer to question {pos}: {len(text.strip())} characters; "
                    f"expected at most {MAX_ANSWER_CHARS} (nothing was saved)"
                )
        saved = {q.position: q.answer for q in questions}
        changed = [str(p) for p, t in pairs if frozen and t.strip() and t.strip() != saved[p]]
        if changed:
            raise ValidationError(
                f"answer{'s' if len(changed) > 1 else ''} {', '.join(changed)}: the spec was "
                "already written from the answers given; new ones would not change it (nothing "
                f"was saved): revise it instead (`specwright plan --resume {self.spec.slug} "
                "--refine FEEDBACK`)"
            )
        for pos, text in pairs:
            if text.strip():
                self._answer(pos, text)
        return self.questions

    def write_spec(self) -> str:
        """Ask the planner for the spec from the intent and answers; save and return it."""
        spec = self.spec
        qa = [(q.question, q.answer) for q in self.questions]
        p = prompts.spec(spec.intent, qa, rules=self._rules, context=self.context())
        data = self._ask(p)
        return self._save_spec(data)

    def _save_spec(self, data: dict[str, Any]) -> str:
        from specwright.catalog import update_spec

        body = str(data.get("body") or "").strip()
        if not body:
            raise PlannerAnswerError("the planner returned an empty spec; nothing was changed")
        if len(body) > MAX_BODY_CHARS:
            raise PlannerAnswerError(
                f"the planner's spec is {len(body)} characters; expected at most "
                f"{MAX_BODY_CHARS}; nothing was changed (try again, or use another planner)"
            )
        title = clean_title(str(data.get("title") or ""))  # a stray tab fails no plan
        # the planner's words: a spec accepted before needs a review (--accept) again
        values: dict[str, Any] = {"body": body + "\n", "status": "draft"}
        if title:
            values["title"] = title
        update_spec(self.store, self.spec_id, **values)
        return body + "\n"

    def split(self) -> list[Chunk]:
        """Ask the planner to split the spec into chunks; validate the DAG; save them."""
        spec = self.spec
        if not spec.body.strip():
            raise ValidationError(f"spec {spec.slug!r} has no text yet (write_spec first)")

        def build(problem: str | None) -> prompts.Prompt:
            return prompts.split(
                spec.body, rules=self._rules, context=self.context(), problem=problem
            )

        return self._save_chunks(self._ask_checked(build, planned_chunks({}), "chunk list"))

    def _save_chunks(self, drafts: Sequence[ChunkDraft]) -> list[Chunk]:
        """Save the planner's chunks; like its text, they need a review (accept) again."""
        from specwright.store import Store

        draft = {"status": "draft", "updated_at": utcnow()}
        ops = chunk_ops(self.store, self.spec_id, drafts)
        self.store.write([*ops, Store.op_update("specs", {"id": self.spec_id}, draft)])
        return self.chunks

    def refine(self, feedback: str, target: str | None = None) -> str | list[Chunk]:
        """Revise the spec (``target="spec"``) or the chunks (``"chunks"``; the default once
        chunks exist) according to ``feedback``; returns the new spec text or chunks."""
        feedback = feedback.strip()
        if not feedback:
            raise ValidationError("feedback: expected what to change")
        catalog.refuse_while_running(self.store, self.spec_id, "not revised until the run ends")
        current = self.chunks
        target = target or ("chunks" if current else "spec")
        spec = self.spec
        if target == "spec":
            if not spec.body.strip():
                raise ValidationError(f"spec {spec.slug!r} has no text yet (write_spec first)")
            p = prompts.refine_spec(spec.body, feedback, rules=self._rules, context=self.context())
            return self._save_spec(self._ask(p))
        if target != "chunks":
            raise ValidationError(f"refine target {target!r}: expected spec or chunks")
        if not current:
            raise ValidationError(f"spec {spec.slug!r} has no chunks yet (split first)")
        keys = {f"c{c.position}": c.id for c in current}
        used = with_runs(self.store, list(keys.values()))

        def build(problem: str | None) -> prompts.Prompt:
            return prompts.refine_chunks(
                spec.body,
                prompts.chunks_text(current),
                feedback,
                rules=self._rules,
                context=self.context(),
                problem=problem,
            )

        # a chunk with runs stays: its history is kept (asked again, as for a cycle)
        kept = {k: c.title for k, c in zip(keys, current, strict=True) if c.id in used}
        drafts = self._ask_checked(build, planned_chunks(keys, kept), "revised chunk list")
        return self._save_chunks(drafts)

    def accept(self) -> Spec:
        """Mark the spec ready to run (it needs its text and at least one chunk)."""
        from specwright.catalog import update_spec

        stage = self.stage
        if stage not in ("review", "ready"):
            raise ValidationError(f"spec {self.spec.slug!r} is not complete: next step is {stage}")
        if stage == "ready":  # accepted already (it may be running, or done): left as it is
            return self.spec
        return update_spec(self.store, self.spec_id, status="ready")

    def run(self, answers: Sequence[str] | Mapping[Any, str] | None = None) -> str:
        """Take the wizard as far as it can go without a person; returns the stage reached."""
        if self.stage == "questions":
            self.ask_questions()
        if answers:  # once the spec is written from them, answers no longer change anything
            self.answer_all(answers, frozen=bool(self.spec.body.strip()))
        if self.stage == "answers" and answers is None:
            return "answers"
        if not self.spec.body.strip():
            self.write_spec()
        if not self.chunks:
            self.split()
        return self.stage


# --- module-level entry points ------------------------------------------------------------------


def start(store: Store, project: Project, intent: str, **kw: Any) -> Studio:
    """Create a draft spec for ``intent`` and ask the planner's questions (saved as they come)."""
    studio = Studio.create(store, project, intent, **kw)
    studio.ask_questions()
    return studio


def resume(store: Store, ref: str, project: Project | None = None, **kw: Any) -> Studio:
    """The wizard of an existing spec, reloaded from the store."""
    return Studio.resume(store, ref, project, **kw)


# --- checking the planner's answers --------------------------------------------------------------


def _no_nul(value: Any) -> Any:
    """The planner's answer without NUL characters: an agent's prompt goes in its argv, where
    one fails every attempt ("embedded null byte")."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_no_nul(v) for v in value]
    if isinstance(value, dict):
        return {k: _no_nul(v) for k, v in value.items()}
    return value


def _with_problem(p: prompts.Prompt, problem: str | None) -> prompts.Prompt:
    if not problem:
        return p
    from dataclasses import replace

    extra = f"\n\nYour previous answer was rejected: {problem}\nFix it and answer again."
    return replace(p, user=p.user + extra)


def _check_questions(data: dict[str, Any]) -> tuple[list[tuple[str, str | None]], str | None]:
    items: list[tuple[str, str | None]] = []
    for item in data.get("questions") or []:
        if isinstance(item, dict):
            q = " ".join(str(item.get("question") or "").split())
            why = " ".join(str(item.get("why") or "").split()) or None
        else:
            q, why = " ".join(str(item).split()), None
        if q:
            items.append((q[:2000], why[:2000] if why else None))
    if len(items) < prompts.MIN_QUESTIONS:
        return items, (
            f"expected {prompts.MIN_QUESTIONS} to {prompts.MAX_QUESTIONS} questions, "
            f"got {len(items)}"
        )
    return items[: prompts.MAX_QUESTIONS], None


def _position(key: Any, by_text: Mapping[str, int]) -> int | None:
    if isinstance(key, bool):
        return None
    if isinstance(key, int):
        return key
    text = str(key).strip()
    if text.lower().startswith("q") and text[1:].isdigit():
        text = text[1:]
    if text.isascii() and text.isdigit():  # not "²", a digit to isdigit that int() refuses
        return int(text)
    return by_text.get(text.lower())
