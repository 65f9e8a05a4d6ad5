"""Specs as files: `.handoff/specs/<slug>.md` <-> the store, with an exact round trip.

A spec file is YAML front matter (title, status, the chunk list with ids and dependencies) and a
markdown body (the spec), followed by one ``## Chunk N: Title`` section per chunk holding its
prompt and ``### Acceptance`` / ``### Files`` / ``### Depends on`` bullet lists::

    ---
    title: Add login
    status: draft
    chunks:
    - id: 0190c3a4-...        # optional: a hand-written file leaves ids out
      title: Session model
      depends_on: []
    - title: Login endpoint
      depends_on: [Session model]   # by id, title or position (1-based)
    ---

    The spec body in markdown.

    ## Chunk 1: Session model

    What the agent should do.

    ### Acceptance

    - a session expires after 24 h

A body or prompt line that would read as structure (``## Chunk...``, ``### Acceptance``...) is
written with a leading backslash and read back without it. Errors name the file and line.
Chunk drafts (``ChunkDraft``, ``check_dag``, ``replace_chunks``) live in ``drafts``, shared with
the studio.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specwright.catalog import BUDGET_RANGE, is_budget
from specwright.drafts import ChunkDraft, check_dag, chunk_ops
from specwright.errors import SpecwrightError, ValidationError
from specwright.model import Chunk, Project, Spec, new_id, slugify, utcnow
from specwright.store import Store
from specwright.titles import chunk_label, title_problem

SPECS_DIR = Path(".handoff") / "specs"
SPEC_STATUSES = ("draft", "ready", "running", "done", "failed")
MAX_FILE_BYTES = 4 * 1024 * 1024


class SpecFileError(SpecwrightError):
    """A spec file that cannot be read back: the message names the file and line."""


# --- writing ----------------------------------------------------------------------------------

_CHUNK_HEADING = re.compile(r"^## Chunk(?:\s+(\d+))?\s*(?::\s*(.*))?$")
_NO_TITLE = "chunk heading: expected '## Chunk N: Title'"
_SUBSECTIONS = {"acceptance": "acceptance", "files": "files", "depends on": "depends_on"}


def _subsection(line: str) -> str | None:
    if not line.startswith("### "):
        return None
    return _SUBSECTIONS.get(line[4:].strip().lower())


def _structural(line: str) -> bool:
    return line.startswith("## Chunk") or _subsection(line) is not None


def _escape(text: str) -> str:
    return "\n".join(
        "\\" + line if _structural(line.lstrip("\\")) else line for line in text.split("\n")
    )


def _unescape(line: str) -> str:
    if line.startswith("\\") and _structural(line.lstrip("\\")):
        return line[1:]
    return line


def _bullets(items: Sequence[str]) -> str:
    out = []
    for item in items:
        first, *rest = item.split("\n")
        out.append("- " + first)
        out += ["  " + line for line in rest]
    return "\n".join(out)


def _is_uuid(text: str) -> bool:
    import uuid

    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _one_line(text: str, what: str) -> str:
    if "\n" in text or "\r" in text:
        raise ValidationError(f"{what} {text!r}: expected a single line")
    return text


def _yaml_str(dumper: Any, text: str) -> Any:
    # PyYAML writes NEL / LS / PS raw in a quoted scalar and reads them back as line folds
    # (a title "A\x85B" came back "A B"): escape them, in double quotes
    if any(c in text for c in "\x85\u2028\u2029"):
        return dumper.represent_scalar("tag:yaml.org,2002:str", text, style='"')
    return dumper.represent_str(text)


def _dumper() -> type:
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(str, _yaml_str)
    return Dumper


def render(spec: Spec, chunks: Sequence[Chunk]) -> str:
    """The spec file text for ``spec`` and its chunks."""
    import yaml

    pos = {c.id: c.position for c in chunks}
    front: dict[str, Any] = {
        "id": spec.id,
        "title": _one_line(spec.title, "spec title"),
        "slug": spec.slug,
        "status": spec.status,
    }
    if spec.intent:
        front["intent"] = spec.intent
    if spec.budget_usd is not None:
        front["budget_usd"] = spec.budget_usd
    front["chunks"] = [
        {
            "id": c.id,
            "title": _one_line(c.title, "chunk title"),
            "depends_on": sorted(c.depends_on, key=lambda d: (pos.get(d, 0), d)),
            **({"budget_usd": c.budget_usd} if c.budget_usd is not None else {}),
        }
        for c in chunks
    ]
    head = yaml.dump(
        front,
        Dumper=_dumper(),
        sort_keys=False,
        allow_unicode=True,
        width=10**9,
        default_flow_style=False,
    )
    parts = [f"---\n{head}---\n\n{_escape(spec.body)}\n"]
    for n, c in enumerate(chunks, 1):
        section = f"\n## Chunk {n}: {c.title}\n"
        if c.prompt:
            section += f"\n{_escape(c.prompt)}\n"
        if c.acceptance:
            section += f"\n### Acceptance\n\n{_bullets(c.acceptance)}\n"
        if c.files:
            section += f"\n### Files\n\n{_bullets(c.files)}\n"
        parts.append(section)
    return "".join(parts)


def default_path(project_root: Path | str, spec: Spec) -> Path:
    """Where `spec export` writes: `.handoff/specs/<slug>.md` in the project."""
    return Path(project_root) / SPECS_DIR / f"{spec.slug}.md"


def export_spec(store: Store, spec: Spec, path: Path | str, *, force: bool = False) -> Path:
    """Write ``spec`` and its chunks to ``path`` (folders created); returns the path. A file
    there that is neither what Specwright last wrote or imported there nor what it would write
    now holds edits not imported: refused unless ``force``."""
    from specwright import fingerprints
    from specwright.catalog import list_chunks

    text = render(spec, list_chunks(store, spec.id))
    path = Path(path)
    if not force and (path.exists() or path.is_symlink()):
        fingerprints.refuse_unimported(store, spec, path, text.encode("utf-8"))
    try:  # a link (specs kept elsewhere) is written through: replacing it leaves its file as was
        target = path.resolve() if path.is_symlink() else path
    except (OSError, RuntimeError):  # Python < 3.13 raises for a loop, later ones return a link
        target = path
    if target.is_symlink():
        raise SpecFileError(f"{path}: cannot write: a loop of symbolic links")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")  # no clash
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "x", encoding="utf-8", newline="") as fh:
            fh.write(text)
        tmp.replace(target)
    except OSError as exc:  # a read-only folder, a full disk, a file where a folder should be
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise SpecFileError(f"{path}: cannot write: {exc.strerror or exc}") from None
    fingerprints.remember(store, path, text.encode("utf-8"), spec.id)  # its edits are stored
    return path


# --- reading ----------------------------------------------------------------------------------


@dataclass
class ParsedChunk:
    title: str
    line: int
    prompt: str = ""
    acceptance: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    depends_on: list[Any] = field(default_factory=list)
    id: str | None = None
    budget_usd: float | None = None
    deps_line: int = 0


@dataclass
class ParsedSpec:
    """A spec file's content, not yet in the store."""

    title: str
    status: str = "draft"
    body: str = ""
    slug: str | None = None
    intent: str = ""
    budget_usd: float | None = None
    id: str | None = None
    chunks: list[ParsedChunk] = field(default_factory=list)
    status_given: bool = False  # the file has a status: (a hand-written one may not)


def _trim(lines: list[str]) -> str:
    """A section's text: the blank line after its heading and its final newline are layout."""
    text = "\n".join(lines)
    text = text[1:] if text.startswith("\n") else text
    return text[:-1] if text.endswith("\n") else text


def parse(text: str, source: str = "<spec>") -> ParsedSpec:
    """Parse spec file text; ``source`` names the file in errors."""
    import yaml

    def fail(line: int, message: str) -> SpecFileError:
        return SpecFileError(f"{source}:{line}: {message}")

    lines = text.split("\n")
    nul = next((i for i, line in enumerate(lines, 1) if "\x00" in line), None)
    if nul:  # it would end up in an agent's argv, failing every attempt
        raise fail(nul, "a NUL character; a spec file is text")
    if not lines or lines[0].rstrip() != "---":
        raise fail(1, "expected front matter starting with '---' (then title: ...)")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].rstrip() == "---")
    except StopIteration:
        raise fail(1, "front matter is not closed: expected a line '---' after it") from None

    class Unique(yaml.SafeLoader):  # a key written twice: not the last one silently
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[str] = set()
            for key, _value in (k for k in node.value if isinstance(k[0], yaml.ScalarNode)):
                if key.value in seen:
                    why = f"duplicate key {key.value!r}"
                    raise yaml.constructor.ConstructorError(None, None, why, key.start_mark)
                seen.add(key.value)
            return super().construct_mapping(node, deep)

    try:
        front = yaml.load("\n".join(lines[1:end]), Loader=Unique) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark else 1
        raise fail(line, f"invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(front, dict):
        raise fail(2, "front matter: expected key: value pairs")
    front_line = _key_lines(lines[1:end])
    known = {"id", "title", "slug", "status", "intent", "budget_usd", "chunks"}
    for key in front:
        if key not in known:
            raise fail(
                front_line.get(str(key), 2),
                f"unknown key {key!r}; expected one of {', '.join(sorted(known))}",
            )
    title = front.get("title")
    if not isinstance(title, str) or not title.strip():
        raise fail(front_line.get("title", 2), "title: expected a non-empty string")
    if problem := title_problem(title.strip(), "title"):  # one line, printable, not too long
        raise fail(front_line.get("title", 2), problem)
    status = front.get("status", "draft")
    if status not in SPEC_STATUSES:
        raise fail(
            front_line.get("status", 2),
            f"status: expected one of {', '.join(SPEC_STATUSES)}, got {status!r}",
        )
    budget = front.get("budget_usd")
    if budget is not None and not is_budget(budget):
        raise fail(
            front_line.get("budget_usd", 2),
            f"budget_usd: expected {BUDGET_RANGE}, got {budget!r}",
        )
    for key in ("id", "slug", "intent"):
        if key in front and not isinstance(front[key], str):
            raise fail(front_line.get(key, 2), f"{key}: expected a string, got {front[key]!r}")
    if "id" in front and not _is_uuid(front["id"]):
        raise fail(front_line.get("id", 2), f"id: expected a UUID, got {front['id']!r}")
    spec = ParsedSpec(
        title=title.strip(),
        status=status,
        slug=front.get("slug"),
        intent=front.get("intent") or "",
        budget_usd=float(budget) if budget is not None else None,
        id=front.get("id"),
        status_given="status" in front,
    )

    # body and chunk sections
    body_lines: list[str] = []
    sections: list[ParsedChunk] = []
    prompts: list[list[str]] = []
    text_lines: list[str] | None = body_lines  # where plain lines go; None inside a list
    listing = ""
    for i in range(end + 1, len(lines)):
        line, lineno = lines[i], i + 1
        heading = _CHUNK_HEADING.match(line)
        if heading:
            ctitle = (heading.group(2) or "").strip()
            if problem := title_problem(ctitle, "chunk title") if ctitle else _NO_TITLE:
                raise fail(lineno, problem)
            sections.append(ParsedChunk(title=ctitle, line=lineno))
            prompts.append([])
            text_lines = prompts[-1]
            continue
        sub = _subsection(line) if sections else None
        if sub:
            listing, text_lines = sub, None
            continue
        if text_lines is not None:
            text_lines.append(_unescape(line))
            continue
        items = getattr(sections[-1], listing)
        if line.startswith(("- ", "* ")) or line in ("-", "*"):
            items.append(line[2:])
            if listing == "depends_on" and not sections[-1].deps_line:
                sections[-1].deps_line = lineno
        elif line.startswith("  ") and items:
            items[-1] += "\n" + line[2:]
        elif line.strip():
            heading_name = listing.replace("_", " ").capitalize()
            raise fail(
                lineno,
                f"under '### {heading_name}': expected a '- ' bullet, got {line.strip()[:60]!r}",
            )
    for section, prompt in zip(sections, prompts, strict=True):
        section.prompt = _trim(prompt)
    spec.body = _trim(body_lines)
    for s in sections:
        s.acceptance = [a.strip() for a in s.acceptance if a.strip()]
        s.files = [f.strip() for f in s.files if f.strip()]
        s.depends_on = [d.strip() for d in s.depends_on if d.strip()]
    spec.chunks = _merge_front_chunks(front.get("chunks"), sections, front_line, fail)
    return spec


def _key_lines(front_lines: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i, line in enumerate(front_lines):
        m = re.match(r"^([A-Za-z_][\w-]*)\s*:", line)
        if m:
            out.setdefault(m.group(1), i + 2)
    return out


def _merge_front_chunks(
    raw: Any, sections: list[ParsedChunk], front_line: dict[str, int], fail: Any
) -> list[ParsedChunk]:
    line = front_line.get("chunks", 2)
    if raw is None:
        return sections
    if not isinstance(raw, list):
        raise fail(line, "chunks: expected a list of {id, title, depends_on}")
    if len(raw) != len(sections):
        raise fail(
            line,
            f"chunks: the front matter lists {len(raw)} chunk(s) but the file has {len(sections)} '## Chunk' section(s)",
        )
    for n, (entry, section) in enumerate(zip(raw, sections, strict=True), 1):
        where = f"chunks[{n}]"
        if isinstance(entry, str):
            entry = {"title": entry}
        if not isinstance(entry, dict):
            raise fail(line, f"{where}: expected a mapping with title (and id, depends_on)")
        unknown = set(entry) - {"id", "title", "depends_on", "budget_usd"}
        if unknown:
            raise fail(
                line,
                f"{where}: unknown key {sorted(unknown)[0]!r}; expected id, title, depends_on, budget_usd",
            )
        title = entry.get("title")
        if title is not None and str(title).strip() != section.title:
            raise fail(
                section.line,
                f"chunk {n} is titled {section.title!r} here but {str(title)!r} in the front matter",
            )
        cid = entry.get("id")
        if cid is not None and not (isinstance(cid, str) and _is_uuid(cid)):
            raise fail(line, f"{where}.id: expected a UUID, got {cid!r}")
        deps = entry.get("depends_on") or []
        if not isinstance(deps, list):
            deps = [deps]
        budget = entry.get("budget_usd")
        if budget is not None and not is_budget(budget):
            raise fail(line, f"{where}.budget_usd: expected {BUDGET_RANGE}, got {budget!r}")
        section.id = cid
        section.budget_usd = float(budget) if budget is not None else None
        section.depends_on = [*deps, *section.depends_on]
        section.deps_line = section.deps_line or line
    return sections


def read(path: Path | str) -> ParsedSpec:
    """Read and parse a spec file."""
    return parse(_normal(_read_text(Path(path))), str(path))


def _read_text(path: Path) -> str:
    """A spec file's text as it is on disk (its bytes are its UTF-8 encoding)."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SpecFileError(f"{path}: {size} bytes; a spec file is at most {MAX_FILE_BYTES}")
        with open(path, encoding="utf-8", newline="") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise SpecFileError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise SpecFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise SpecFileError(f"{path}: cannot read: {exc.strerror}") from None
    return text


def _normal(text: str) -> str:
    """A file saved by a Windows editor (a byte order mark, CRLF line ends: its first line, the
    front matter's ``---``, ends so) read as ours, LF. In a file of LF lines, as every export
    is, a CR is a spec's or chunk's own text (a prompt typed with CRLF) and is kept: an export
    imported again gives that text back byte for byte."""
    text = text.removeprefix("\ufeff")
    return text.replace("\r\n", "\n") if text.split("\n", 1)[0].endswith("\r") else text


def resolve_drafts(parsed: ParsedSpec, source: str = "<spec>") -> list[ChunkDraft]:
    """Chunk drafts with ids assigned and dependencies (id, title or position) resolved."""
    drafts = [
        ChunkDraft(c.title, c.prompt, c.acceptance, c.files, [], c.id or new_id(), c.budget_usd)
        for c in parsed.chunks
    ]
    by_title: dict[str, list[int]] = {}
    for i, c in enumerate(parsed.chunks):
        by_title.setdefault(c.title.lower(), []).append(i)
    ids = {d.id: i for i, d in enumerate(drafts)}
    for i, c in enumerate(parsed.chunks):
        for ref in c.depends_on:
            key = str(ref).strip()
            if key in ids:
                target = ids[key]
            elif key.isascii() and key.isdigit() and 1 <= int(key) <= len(drafts):
                target = int(key) - 1
            elif len(by_title.get(key.lower(), [])) == 1:
                target = by_title[key.lower()][0]
            elif key.lower() in by_title:
                raise SpecFileError(
                    f"{source}:{c.deps_line or c.line}: chunk {chunk_label(i + 1, c.title)} depends on {key!r}, a title used by several chunks; use the position or id"
                )
            else:
                raise SpecFileError(
                    f"{source}:{c.deps_line or c.line}: chunk {chunk_label(i + 1, c.title)} depends on {key!r}: no chunk has that id, title or position (1-{len(drafts)})"
                )
            drafts[i].depends_on.append(drafts[target].id)
    problem = check_dag(drafts)
    if problem:
        raise SpecFileError(f"{source}: {problem}")
    return drafts


def import_spec(store: Store, project: Project, path: Path | str, *, replace: bool = False) -> Spec:
    """Create or update a spec from a spec file: matched by the file's id, else its slug
    (``reimport.by_slug``). A
    spec matched by slug only is named in a warning, and refused when it has runs or
    executions (its recorded history would sit under another text) unless ``replace``; so is
    a spec changed in the store since this file was written or imported."""
    from specwright import fingerprints, reimport
    from specwright.catalog import get_spec, new_spec_row

    text = _read_text(Path(path))
    parsed = parse(_normal(text), str(path))
    resolve_drafts(parsed, str(path))  # the file's own mistakes first
    slug = slugify(parsed.slug or parsed.title)
    with store.connect():  # the spec and its chunks in one write: all of it or nothing
        rows, replacing, warnings, changed = [], "", [], []
        if parsed.id:
            rows = store.query_dicts(
                "SELECT id, project_id FROM specs WHERE id::VARCHAR = ?", [parsed.id]
            )
            if rows and rows[0]["project_id"] != project.id:
                raise SpecFileError(f"{path}: spec id {parsed.id} belongs to another project")
        if not rows and (found := reimport.by_slug(store, project.id, path, parsed, slug)):
            rows = [{"id": found[0]}]
            replacing = _by_slug(store, path, parsed, found[0], found[1], replace)
        if rows:
            spec_id = str(rows[0]["id"])
            reimport.refuse_running(store, spec_id, path)
            if not replace:  # the spec changed since this file was written: those changes stay
                fingerprints.refuse_stale(store, spec_id, path)
            reimport.keep_chunk_ids(store, spec_id, parsed, path)
            status, said = reimport.status(store, spec_id, parsed, path, replace)
            warnings += [said] if said else []
            changed = reimport.shipped_and_changed(store, spec_id, parsed)
            values = {
                "title": parsed.title,
                "body": parsed.body,
                "status": status,
                "intent": parsed.intent,
                "budget_usd": parsed.budget_usd,
                "updated_at": utcnow(),
            }
            ops = [Store.op_update("specs", {"id": spec_id}, values)]
        else:
            row = new_spec_row(
                store,
                project,
                parsed.title,
                parsed.body,
                slug=slug,
                intent=parsed.intent,
                status=parsed.status,
                budget_usd=parsed.budget_usd,
                spec_id=parsed.id,
            )
            spec_id = row["id"]
            ops = [Store.op_insert("specs", row)]
        try:
            ops += chunk_ops(store, spec_id, drafts := resolve_drafts(parsed, str(path)))
        except ValidationError as exc:
            raise SpecFileError(f"{path}: {exc}") from None
        warnings += reimport.renumbered(drafts, path)
        store.write(ops)
        fingerprints.remember(store, path, text.encode("utf-8"), spec_id)  # edits now stored
        if changed:
            warnings.append(reimport.rerun_hint(store, spec_id, changed, path))
        import logging

        for warning in [replacing, *warnings] if replacing else warnings:
            logging.getLogger(__name__).warning("%s", warning)
        return get_spec(store, spec_id)


def _by_slug(
    store: Store, path: Path | str, parsed: ParsedSpec, spec_id: str, slug: str, replace: bool
) -> str:
    """The file names no spec of this database, and its slug is that of ``spec_id``: refuse
    when that spec has history (unless ``replace``), else say which spec it replaces. Neither
    when this file is where that spec was last imported from or exported to (a hand-written
    file, edited and imported again)."""
    from specwright import fingerprints

    if fingerprints.spec_of(store, path) == spec_id:
        return ""
    why = f"has spec id {parsed.id}, not in this database," if parsed.id else "has no spec id"
    runs, execs = store.query(
        "SELECT (SELECT count(*) FROM runs WHERE spec_id = ?), "
        "(SELECT count(*) FROM executions WHERE spec_id = ?)",
        [spec_id, spec_id],
    )[0]
    if (runs or execs) and not replace:
        raise SpecFileError(
            f"{path} {why} and its slug {slug!r} is spec {spec_id}, which has {runs} run(s) "
            f"and {execs} execution(s): nothing imported (to change that spec, edit its export: "
            f"`specwright spec export {slug}`; to make a new spec, set another `slug:` in the "
            "file; to put this file in its place anyway, add --replace)"
        )
    return (
        f"{path} {why.rstrip(',')}: it updated spec {slug!r} ({spec_id}), the one of its slug: "
        "its text and chunks are now the file's"
    )
