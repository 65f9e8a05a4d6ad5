"""``open_studio``: what ``01_spec_studio.ipynb`` calls.

With a person at the notebook it shows the ``StudioView``, resuming the spec of the same intent
(or the latest draft) and asking the planner only when there is an intent and no questions yet.
Headless (papermill), it takes the wizard as far as it can: questions, the given ``answers``, the
spec, the chunks, then marks a draft spec ready and exports it; without answers it stops after the
questions and says how to pass them. A planner without its API key is a clear message in the
view, and an error headless (only when a planner call is actually needed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from specwright.errors import SpecwrightError
from specwright.widgets.common import (
    dag_figure,
    esc,
    figure_bundle,
    interactive,
    markdown_html,
    plain,
    project_start,
    text_param,
)
from specwright.widgets.common import table_html as _table
from specwright.widgets.studio_backend import Draft, answers_list, commit_hint, for_project
from specwright.widgets.studio_view import StudioView

if TYPE_CHECKING:
    from specwright.store import Store


def open_studio(
    project_dir: str = "",
    intent: str = "",
    planner: str = "",
    answers: Any = "",
    *,
    store: Store | None = None,
    live: bool | None = None,
) -> StudioView | Draft | None:
    """The Spec Studio for the project at ``project_dir`` (see the module docstring)."""
    from IPython.display import HTML, display

    from specwright import config as config_mod
    from specwright.catalog import ensure_project
    from specwright.store import Store, resolve_db_path

    intent, planner = text_param(intent), text_param(planner)
    if isinstance(answers, int | float) and not isinstance(answers, bool):
        answers = str(answers)  # `-p answers 2025`: a file of that name
    root = config_mod.find_project_root(project_start(project_dir))
    store = store or Store(resolve_db_path(root))
    config = config_mod.load(root)
    if planner:
        config.planner(planner)  # an unknown name fails before anything is saved
    given = answers_list(answers)
    backend = for_project(store, ensure_project(store, root), config, planner or None)
    draft = backend.resume(intent)
    live = interactive() if live is None else live

    if live:
        view = StudioView(backend)
        if draft is not None:
            view.show(draft)
        elif intent.strip():
            view.intent.value = intent
            view.ask()
        d = view.draft
        if given and d is not None:
            # once the spec is written no planner is called: changed answers are refused
            problem = None if d.stage in ("review", "ready") else backend.planner_problem()
            if problem:
                view.say(problem, error=True)
            else:
                done = view._call("running the wizard", lambda: backend.run(d.spec_id, given))
                if done is not None:
                    view.show(done)
        display(view.widget)
        return view

    print(f"Spec Studio: project {root}; database {store.path}")
    if draft is None and not intent.strip():
        print(
            "Nothing to do: no draft spec to resume in this project and no intent given. Set "
            "`intent` (what you want built) in the parameters cell, and `answers` (a YAML file) "
            "to run the whole wizard."
        )
        return None
    if draft is None:
        draft = backend.create(intent)
        print(f"draft spec {draft.slug} ({draft.spec_id})")
    else:
        print(f"resuming spec {draft.slug} ({draft.spec_id}); next step: {draft.stage}")
    # the defaults (no intent, no answers) resume a draft to show it: no planner call, no cost
    idle = not intent.strip() and given is None
    if draft.stage not in ("review", "ready") and not idle:
        problem = backend.planner_problem()
        if problem:
            raise SpecwrightError(f"spec {draft.slug}: {problem}")
        draft = backend.run(draft.spec_id, given)
    elif given:  # the spec is written: changed answers are refused, as `plan --answers` does
        draft = backend.run(draft.spec_id, given)
    for q in draft.questions:  # the planner's text: bounded lines without terminal escapes
        answer = plain(q.answer, 600) if q.answer else "(none yet)"
        print(f"  {q.position}. {plain(q.question, 600)}\n     answer: {answer}")
    if draft.stage == "answers":
        print(
            "next: write the answers in a YAML file (a list in question order, or a mapping of "
            "question number to answer) and run again with `-p answers FILE` (or type them in "
            "the view in JupyterLab)"
        )
        return draft
    if draft.stage not in ("review", "ready"):  # idle: the planner's step is left to take
        print(
            f"next: the planner's step ({draft.stage}); run again with `-p intent "
            f"{plain(draft.intent, 200)!r}` to take it (the planner is called), or press the "
            "buttons of the view in JupyterLab"
        )
        return draft
    path = backend.export(draft.spec_id)
    draft = backend.resume(draft.intent) or draft
    state = "ready to run" if draft.status == "ready" else f"{draft.status} (left as it is)"
    print(f"spec {draft.slug} is {state}; wrote {path}{commit_hint(path)}")
    pos = {c.id: c.position for c in draft.chunks}
    rows = [
        {
            "chunk": c.position,
            "title": c.title,
            "needs": ", ".join(str(pos[d]) for d in c.depends_on if d in pos),
            "files": ", ".join(c.files),
            "checks": len(c.acceptance),
        }
        for c in draft.chunks
    ]
    display(HTML(f"<h3>{esc(draft.title)}</h3>" + markdown_html(draft.body)))
    display(HTML(_table(rows, ["chunk", "title", "needs", "files", "checks"])))
    display(figure_bundle(dag_figure(list(draft.chunks))), raw=True)
    return draft
