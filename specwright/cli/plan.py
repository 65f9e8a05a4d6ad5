"""`specwright plan`: the Spec Studio wizard without a person at the keyboard; and the handlers of
`specwright spec export` / `spec import` (registered in cli/core.py).

    specwright plan --intent "add login"                 # prints the planner's questions
    specwright plan --resume add-login --answers a.yaml  # answers them, writes spec and chunks
    specwright plan --intent "..." --answers a.yaml      # all in one go (answers by position)

Every step is saved as it happens, so a failed or interrupted run resumes with ``--resume``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specwright.cli.common import Context, store_times, terminal_safe, terminal_safe_lines
from specwright.errors import SpecwrightError, ValidationError

if TYPE_CHECKING:
    from specwright.studio import Studio


def register(sub: Any) -> None:
    p = sub.add_parser(
        "plan",
        help="intent -> planner questions -> spec -> chunks (non-interactive, resumable)",
        description="Run the Spec Studio wizard from the command line. Without --answers it "
        "stops after printing the planner's questions; answer them in a YAML file (a list in "
        "question order, or a mapping of question number to answer) and run again with "
        "--resume SPEC --answers FILE.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--intent", metavar="TEXT", help="what you want built")
    src.add_argument("--intent-file", metavar="FILE", help="read the intent from a file")
    src.add_argument("--resume", metavar="SPEC", help="carry on with an existing spec (slug/id)")
    p.add_argument("--answers", metavar="FILE", help="YAML answers to the questions")
    p.add_argument("--planner", metavar="NAME", help="planner from config (default: defaults)")
    p.add_argument("--refine", metavar="FEEDBACK", help="revise the spec or chunks with feedback")
    p.add_argument(
        "--refine-target",
        choices=("spec", "chunks"),
        help="what --refine revises (default: chunks once they exist, else the spec)",
    )
    p.add_argument(
        "--accept",
        action="store_true",
        help="mark the finished spec reviewed: ready (a draft runs too; this is your mark)",
    )
    p.add_argument(
        "--export", action="store_true", help="also write .handoff/specs/<slug>.md when done"
    )
    p.add_argument(
        "--stream",
        action="store_true",
        help="show the planner's answers on stderr as they arrive: each question and chunk, "
        "the spec's text",
    )
    p.add_argument(
        "--context-tokens",
        type=int,
        metavar="N",
        help="token budget of the codebase summary the planner sees (default 6000, 64 to 15000)",
    )
    p.set_defaults(handler=cmd_plan)


# --- plan -------------------------------------------------------------------------------------


def read_text(path: str, option: str) -> str:
    """A UTF-8 text file named by ``option``, without the byte order mark an editor on Windows
    writes first (it went into the spec's text and the planner's prompt); a one-line error when
    it cannot be read."""
    try:
        with open(path, encoding="utf-8-sig") as fh:
            return fh.read()
    except UnicodeDecodeError as exc:
        raise SpecwrightError(
            f"{option} {path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except OSError as exc:
        raise SpecwrightError(f"{option} {path}: cannot read: {exc.strerror}") from None


def _text_only() -> Any:
    """A SafeLoader that reads an unquoted answer as the text written (``yes`` stays "yes",
    not True; ``1:30`` and ``0755`` stay as they are, not numbers); a blank one is null."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    null = "tag:yaml.org,2002:null"
    Loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag == null]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return Loader


def load_answers(path: str, option: str = "--answers") -> list[str] | dict[Any, str]:
    """Answers from a YAML file: a list (in question order) or a mapping (number/text -> answer);
    ``option`` names where the path was given, in errors."""
    import yaml

    text = read_text(path, option)
    try:
        data = yaml.load(text, Loader=_text_only())  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise SpecwrightError(
            f"{path}{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}"
        ) from None
    shape = (
        "expected a list of answers (in question order) or a mapping of question number to answer"
    )
    if isinstance(data, list):
        for i, item in enumerate(data, 1):
            if isinstance(item, dict | list):
                raise SpecwrightError(f"{path}: answer {i}: expected text, got {item!r}; {shape}")
        return ["" if a is None else str(a) for a in data]
    if isinstance(data, dict):
        for k, v in data.items():
            if isinstance(v, dict | list):
                raise SpecwrightError(f"{path}: answer {k}: expected text, got {v!r}; {shape}")
        return {k: "" if v is None else str(v) for k, v in data.items()}
    if data is None:  # an empty file (or comments only): not "got NoneType"
        raise SpecwrightError(
            f"{path}: no answers in it; {shape} (`[]` leaves every question to the planner)"
        )
    raise SpecwrightError(f"{path}: {shape}, got {type(data).__name__}")


def _studio_kw(args: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    from specwright.prompts import MAX_CONTEXT_CHARS

    most = MAX_CONTEXT_CHARS // 4  # more is cut off at the end of the prompt's codebase block
    if args.context_tokens is not None and not 64 <= args.context_tokens <= most:
        raise ValidationError(f"--context-tokens: expected 64 to {most}, got {args.context_tokens}")
    on_text = None
    if args.stream and not ctx.json:

        def on_text(piece: str) -> None:
            sys.stderr.write(piece)
            sys.stderr.flush()

    return {
        "config": ctx.config,
        "planner": args.planner,
        "stream": bool(args.stream),
        "on_text": on_text,
        "context_tokens": args.context_tokens,
    }


def cmd_plan(args: argparse.Namespace, ctx: Context) -> int:
    from specwright.studio import Studio

    planner = ctx.config.planner(args.planner)  # an unknown name fails before anything is saved
    if not args.resume and not os.environ.get(planner.api_key_env, "").strip():
        from specwright.llm.errors import LLMMissingKeyError

        # before a draft is made: each retry would leave another one behind
        raise LLMMissingKeyError(
            f"planner {planner.name!r}: no API key: set the environment variable "
            f"{planner.api_key_env} (named by api_key_env in the planner's config); nothing saved"
        )
    answers = load_answers(args.answers) if args.answers else None
    kw = _studio_kw(args, ctx)
    store = ctx.store
    project = ctx.project()
    if args.resume:
        studio = Studio.resume(store, args.resume, project, **kw)
    else:
        intent = args.intent
        if args.intent_file:
            intent = read_text(args.intent_file, "--intent-file")
        studio = Studio.create(store, project, intent, **kw)
        if not ctx.json:
            print(f"draft spec {studio.spec.slug} ({studio.spec_id})", file=sys.stderr)
    try:
        stage = studio.run(answers)
        if args.refine and stage not in ("review", "ready"):
            raise ValidationError(
                f"--refine: there is no spec to revise yet (next step: {stage}: "
                "answer the questions with --answers)"
            )
        if args.refine:
            before = studio.chunks
            shipped = {c.id: (c.prompt, c.acceptance) for c in before if c.status == "shipped"}
            studio.refine(args.refine, args.refine_target)
            stage = studio.stage
            _warn_shipped_changed(studio, shipped)
            if args.refine_target == "spec" and studio.chunks:
                print(
                    "note: the chunks were split from the previous text; revise them too: "
                    f"`specwright plan --resume {studio.spec.slug} --refine FEEDBACK "
                    "--refine-target chunks`",
                    file=sys.stderr,
                )
        if args.accept and stage in ("review", "ready"):
            studio.accept()
            stage = studio.stage
        elif args.accept:
            raise ValidationError(f"--accept: the spec is not complete (next step: {stage})")
    except SpecwrightError as exc:
        hint = f"{exc} (what was saved is kept: `specwright plan --resume {studio.spec.slug}`)"
        try:
            again = type(exc)(hint)
        except TypeError:  # an error type with another signature: keep its text as it is
            raise exc from None
        raise again from None
    exported = refused = None
    if args.export and stage not in ("review", "ready"):
        print(
            f"--export: nothing written: the spec is not complete (next: {stage})", file=sys.stderr
        )
    elif args.export:
        from specwright.specfile import SpecFileError, default_path, export_spec

        try:
            exported = export_spec(store, studio.spec, default_path(ctx.project_dir, studio.spec))
        except SpecFileError as exc:  # edits not imported: what the planner did is shown first
            refused = exc
    _report(studio, stage, ctx, exported)
    if refused:
        raise refused
    return 0


def _warn_shipped_changed(studio: Studio, was: dict[str, tuple[str, tuple[str, ...]]]) -> None:
    """Shipped chunks whose prompt or acceptance the planner revised stay shipped, and run-all
    skips them: said as `spec import` says it (the planner's change was silent)."""
    from specwright.reimport import rerun_hint

    now = {c.id: (c.prompt, c.acceptance) for c in studio.chunks}
    changed = [cid for cid, old in was.items() if cid in now and now[cid] != old]
    if changed:
        hint = rerun_hint(studio.store, studio.spec_id, changed, "--refine", now="the planner")
        print(f"specwright: warning: {hint}", file=sys.stderr)


def _report(studio: Studio, stage: str, ctx: Context, exported: Path | None) -> None:
    from dataclasses import asdict

    with studio.store.connect():
        spec, questions, chunks = studio.spec, studio.questions, studio.chunks
    if ctx.json:
        ctx.emit(
            {
                "spec": spec.slug,
                "id": spec.id,
                "title": spec.title,
                "stage": stage,
                "status": spec.status,
                "questions": store_times([asdict(q) for q in questions]),
                "body": spec.body,
                "chunks": store_times([asdict(c) for c in chunks]),
                "exported": str(exported) if exported else None,
            }
        )
        return
    # titles, questions and the body are the planner model's words: no terminal escapes
    state = spec.status if stage == "ready" else f"{spec.status}; next: {stage}"
    print(terminal_safe(f"spec {spec.slug}: {spec.title}  [{state}]  {spec.id}"))
    if questions:  # a spec written by hand has none
        print("\nQuestions")
    for q in questions:
        print(terminal_safe(f"  {q.position}. {q.question}"))
        if q.why:
            print(terminal_safe(f"     (why: {q.why})"))
        if q.answer is not None:
            print(terminal_safe(f"     answer: {q.answer}"))
        elif stage != "answers":  # left blank: the planner chose
            print("     answer: (none)")
    if stage == "answers":
        print(
            "\nnext: write the answers in a YAML file (a list in question order, or a mapping of "
            f"question number to answer) and run\n  specwright plan --resume {spec.slug} "
            "--answers answers.yaml"
        )
        return
    if spec.body.strip():
        print(f"\n{terminal_safe_lines(spec.body.rstrip())}")
    if chunks:
        from specwright.cli.common import print_table

        pos = {c.id: c.position for c in chunks}
        print("\nChunks")
        print_table(
            [
                {
                    "pos": c.position,
                    "title": c.title,
                    "depends_on": [pos.get(d, d[:8]) for d in c.depends_on],
                    "checks": len(c.acceptance),
                    "id": c.id,
                }
                for c in chunks
            ],
            ["pos", "title", "depends_on", "checks", "id"],
        )
    if exported:
        print(f"\nwrote {exported}")
    if stage == "ready":
        print(
            f"\nnext: `specwright run-all {spec.slug} --plan` shows the order and a cost range; "
            f"`specwright run-all {spec.slug}` runs it (on a clean work tree: commit .handoff/ "
            "first)"
        )
    elif stage == "review":  # edits to the file count once imported: say so
        from specwright.specfile import SPECS_DIR

        path = exported or SPECS_DIR / f"{spec.slug}.md"
        write = "" if exported else f"`specwright spec export {spec.slug}`, "
        print(
            f"\nnext: review it ({write}edit {path}, `specwright spec import {path}`), "
            f"then `specwright plan --resume {spec.slug} --accept`"
        )


# --- spec export / import (parsers registered in cli/core.py) ---------------------------------


def cmd_spec_export(args: argparse.Namespace, ctx: Context) -> int:
    """Write a spec and its chunks to `.handoff/specs/<slug>.md` (or --output)."""
    from specwright.catalog import get_spec
    from specwright.specfile import default_path, export_spec

    with ctx.store.connect():
        if args.output:  # to stdout or a file named: found in any project, as `spec show` does
            spec = ctx.use_spec(args.spec)
        else:  # the default file is in its project's folder: from another one, -C names it
            spec = get_spec(ctx.store, args.spec, ctx.project(create=False))
        target = Path(args.output) if args.output else default_path(ctx.project_dir, spec)
        if target.is_dir():  # -o specs/: the file goes inside, named as by default
            target = target / default_path(ctx.project_dir, spec).name
        if args.output == "-":
            from specwright.catalog import list_chunks
            from specwright.specfile import render

            sys.stdout.write(render(spec, list_chunks(ctx.store, spec.id)))
            return 0
        path = export_spec(ctx.store, spec, target, force=args.force)
    ctx.emit({"exported": spec.slug, "path": str(path)} if ctx.json else f"wrote {path}")
    return 0


def cmd_spec_import(args: argparse.Namespace, ctx: Context) -> int:
    """Create or update a spec from a spec file."""
    from specwright.catalog import list_chunks
    from specwright.specfile import import_spec

    with ctx.store.connect():
        spec = import_spec(ctx.store, ctx.project(), args.file, replace=args.replace)
        n = len(list_chunks(ctx.store, spec.id))
    ctx.emit(
        {"imported": spec.slug, "id": spec.id, "chunks": n}
        if ctx.json
        else f"imported spec {spec.slug} ({n} chunk{'s' if n != 1 else ''}) from {args.file}  "
        f"{spec.id}"
    )
    return 0
