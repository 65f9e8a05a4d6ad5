"""What the studio view calls: the Spec Studio over the store, as plain functions.

``StudioBackend`` is a bundle of callables so the view can be tested with fakes; ``for_project``
builds the real one (``specwright.studio`` + ``catalog`` + ``drafts`` + ``specfile``). A ``Draft`` is a
snapshot of a spec under construction, always re-read from the store after a change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specwright.errors import ValidationError

if TYPE_CHECKING:
    from specwright.config import Config
    from specwright.model import Chunk, Project
    from specwright.store import Store
    from specwright.studio import Question


@dataclass(frozen=True)
class Draft:
    """A spec under construction, as the view shows it."""

    spec_id: str
    slug: str
    title: str
    intent: str
    body: str
    status: str
    stage: str
    questions: tuple[Question, ...] = ()
    chunks: tuple[Chunk, ...] = ()


@dataclass
class ChunkRow:
    """One row of the editable chunk table; ``depends_on`` holds positions of other rows."""

    title: str
    prompt: str = ""
    acceptance: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    depends_on: list[int] = field(default_factory=list)
    id: str | None = None


@dataclass
class StudioBackend:
    """The studio's backend calls (each returns the draft as saved, where it changes it)."""

    resume: Callable[[str], Draft | None]  # intent -> its spec; "" -> the latest draft
    create: Callable[[str], Draft]  # intent -> a new draft, saved (no planner call yet)
    ask: Callable[[str], Draft]  # spec id -> the planner's questions, saved
    answer: Callable[[str, int, str], Draft | None]  # spec id, position, text
    run: Callable[[str, Any], Draft]  # spec id, answers -> as far as the wizard goes alone
    write_spec: Callable[[str], Draft]
    split: Callable[[str], Draft]
    save_chunks: Callable[[str, Sequence[ChunkRow]], Draft]
    export: Callable[[str], Path]  # accept a draft, write .handoff/specs/<slug>.md
    planner_problem: Callable[[], str | None] = lambda: None  # why the planner cannot be called


def rows_to_drafts(rows: Sequence[ChunkRow]) -> list[Any]:
    """Table rows -> ``ChunkDraft``s (positions -> ids); a clear error for a bad reference."""
    from specwright.drafts import ChunkDraft, check_dag
    from specwright.model import new_id

    ids = [r.id or new_id() for r in rows]
    drafts = []
    for n, (row, cid) in enumerate(zip(rows, ids, strict=True), 1):
        if not row.title.strip():
            raise ValidationError(f"chunk {n}: expected a title")
        bad = [p for p in row.depends_on if not 1 <= p <= len(rows)]
        if bad:
            raise ValidationError(
                f"chunk {n} {row.title!r}: depends on {bad[0]}; expected a chunk number "
                f"1-{len(rows)}"
            )
        drafts.append(
            ChunkDraft(
                title=row.title.strip(),
                prompt=row.prompt,
                acceptance=[a.strip() for a in row.acceptance if a.strip()],
                files=[f.strip() for f in row.files if f.strip()],
                depends_on=[ids[p - 1] for p in dict.fromkeys(row.depends_on)],
                id=cid,
            )
        )
    problem = check_dag(drafts)
    if problem:
        raise ValidationError(problem)
    return drafts


def for_project(
    store: Store, project: Project, config: Config, planner: str | None = None
) -> StudioBackend:
    """The real backend: the Spec Studio of ``project`` over ``store``."""
    from specwright import catalog, drafts, specfile
    from specwright.studio import Studio

    def studio(spec_id: str) -> Studio:
        return Studio(store, spec_id, config=config, planner=planner)

    def draft(spec_id: str) -> Draft:
        s = studio(spec_id)
        with store.connect():
            spec = s.spec
            return Draft(
                spec.id,
                spec.slug,
                spec.title,
                spec.intent,
                spec.body,
                spec.status,
                s.stage,
                tuple(s.questions),
                tuple(s.chunks),
            )

    def resume(intent: str) -> Draft | None:
        # the same intent: that spec whatever its status; no intent: the latest draft
        sql = "SELECT id FROM specs WHERE project_id = ?"
        params: list[Any] = [project.id]
        if intent.strip():
            sql += " AND trim(intent) = ?"
            params.append(intent.strip())
        else:
            sql += " AND status = 'draft'"
        rows = store.query(sql + " ORDER BY updated_at DESC, created_at DESC LIMIT 1", params)
        return draft(str(rows[0][0])) if rows else None

    def create(intent: str) -> Draft:
        return draft(Studio.create(store, project, intent, config=config, planner=planner).spec_id)

    def ask(spec_id: str) -> Draft:
        studio(spec_id).ask_questions()
        return draft(spec_id)

    def answer(spec_id: str, position: int, text: str) -> Draft:
        s = studio(spec_id)
        with store.connect():
            if s.spec.body.strip():  # written from the answers given: changes refused, as in plan
                s.answer_all({position: text}, frozen=True)
            else:
                s.answer(position, text)
        return draft(spec_id)  # the last answer moves it on to its next step

    def run(spec_id: str, answers: list[str] | dict[Any, str] | None) -> Draft:
        studio(spec_id).run(answers)
        return draft(spec_id)

    def write_spec(spec_id: str) -> Draft:
        studio(spec_id).write_spec()
        return draft(spec_id)

    def split(spec_id: str) -> Draft:
        studio(spec_id).split()
        return draft(spec_id)

    def save_chunks(spec_id: str, rows: Sequence[ChunkRow]) -> Draft:
        # a run-all took its chunks' prompts when it started: an edit would go unseen
        catalog.refuse_while_running(store, spec_id, "save them once it has ended")
        drafts.replace_chunks(store, spec_id, rows_to_drafts(rows))
        return draft(spec_id)

    def export(spec_id: str) -> Path:
        from dataclasses import replace

        if not catalog.list_chunks(store, spec_id):
            raise ValidationError("nothing to export yet: the spec has no chunks")
        spec = catalog.get_spec(store, spec_id)
        if spec.status != "draft":  # accepted already (it may be running, or done): as it is
            return specfile.export_spec(store, spec, specfile.default_path(project.root, spec))
        ready = replace(spec, status="ready")  # marked ready only once the file is written
        path = specfile.export_spec(store, ready, specfile.default_path(project.root, spec))
        catalog.update_spec(store, spec_id, status="ready")
        return path

    def planner_problem() -> str | None:
        import os

        try:
            p = config.planner(planner)
        except Exception as exc:
            return str(exc)
        if not os.environ.get(p.api_key_env, "").strip():
            return (
                f"planner {p.name!r} needs an API key: set the environment variable "
                f"{p.api_key_env} and run again (or write the chunks yourself: in the view's "
                "chunk table in JupyterLab, or with `specwright spec import FILE`)"
            )
        return None

    return StudioBackend(
        resume, create, ask, answer, run, write_spec, split, save_chunks, export, planner_problem
    )


def answers_list(answers: Any) -> list[str] | dict[Any, str] | None:
    """The notebook's ``answers`` parameter: "" (none), a YAML file path, a list or a mapping."""
    if answers is None or answers == "" or answers == [] or answers == {}:
        return None
    if isinstance(answers, Mapping):
        return {k: "" if v is None else str(v) for k, v in answers.items()}
    if isinstance(answers, list | tuple):
        return ["" if a is None else str(a) for a in answers]
    if isinstance(answers, str):
        from specwright.cli.plan import load_answers

        # the notebook's parameter, and the folder a relative path was read from (the kernel's)
        return load_answers(str(Path(answers).expanduser().absolute()), "answers")
    raise ValidationError(
        f"answers: expected a YAML file path, a list or a mapping, got {type(answers).__name__}"
    )


def commit_hint(path: Path) -> str:
    """``; commit it ...`` when git does not have the exported spec file as written (a run
    refuses a work tree with uncommitted changes), else nothing."""
    from specwright import gitops

    try:
        root = gitops.root_of(path.parent)
        name = path.resolve().relative_to(root.resolve()).as_posix()
        if name not in gitops.dirty_files(root):
            return ""
    except (gitops.GitError, ValueError):  # not in a repository: nothing git-related to say
        return ""
    return f"; commit it before a run (`git add {name}`, `git commit`): runs need a clean tree"
