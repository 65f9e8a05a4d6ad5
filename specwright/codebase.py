"""Codebase context for the planner and executors: what the project is, without the whole tree.

``analyze(root)`` gathers languages and line counts, the file list (``git ls-files`` in a git
repository, else a walk that honours the root ``.gitignore``), build/test commands inferred from
pyproject.toml, package.json, Makefile, Cargo.toml and go.mod, key files (README, entry points)
and recent commits. ``render(summary, budget_tokens)`` turns it into text that fits a token
budget (tokens ~ chars / 4), always the same text for the same tree. ``context(root, store=...)``
does both and caches the result in the store by commit sha.

Everything is bounded: at most ``max_files`` paths, line counts only for files under
``MAX_COUNT_BYTES`` (larger ones are estimated from their size), a total read budget.
"""

from __future__ import annotations

import fnmatch
import heapq
import json
import os
import re
import subprocess
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specwright.codebase_guard import printable, readmes, redacted, withheld
from specwright.codebase_guard import read as _read
from specwright.codebase_guard import regular_file as _regular_file
from specwright.redact import Redactor

if TYPE_CHECKING:
    from specwright.store import Store

ANALYZER_VERSION = 2  # bump when the rendered text changes, so old cache rows are not reused
DEFAULT_BUDGET_TOKENS = 6000
DEFAULT_MAX_FILES = 100_000
MAX_COUNT_BYTES = 2 * 1024 * 1024  # files above this get an estimated line count
MAX_READ_BYTES = 512 * 1024 * 1024  # total bytes read for line counts; beyond, estimate
README_CHARS = 2400
GIT_TIMEOUT_S = 30

LANGUAGES: dict[str, str] = {
    ".py": "Python", ".pyi": "Python", ".ipynb": "Jupyter", ".js": "JavaScript",
    ".mjs": "JavaScript", ".cjs": "JavaScript", ".jsx": "JavaScript", ".ts": "TypeScript",
    ".tsx": "TypeScript", ".go": "Go", ".rs": "Rust", ".java": "Java", ".kt": "Kotlin",
    ".kts": "Kotlin", ".scala": "Scala", ".c": "C", ".h": "C/C++ header", ".cc": "C++",
    ".cpp": "C++", ".cxx": "C++", ".hpp": "C/C++ header", ".hh": "C/C++ header", ".cs": "C#",
    ".rb": "Ruby", ".php": "PHP", ".swift": "Swift", ".m": "Objective-C", ".mm": "Objective-C",
    ".sh": "Shell", ".bash": "Shell", ".zsh": "Shell", ".ps1": "PowerShell", ".lua": "Lua",
    ".pl": "Perl", ".r": "R", ".R": "R", ".jl": "Julia", ".dart": "Dart", ".ex": "Elixir",
    ".exs": "Elixir", ".erl": "Erlang", ".hs": "Haskell", ".ml": "OCaml", ".clj": "Clojure",
    ".zig": "Zig", ".nim": "Nim", ".f90": "Fortran", ".f": "Fortran", ".pyx": "Cython",
    ".pxd": "Cython", ".sql": "SQL", ".html": "HTML", ".css": "CSS", ".scss": "SCSS",
    ".vue": "Vue", ".svelte": "Svelte", ".md": "Markdown", ".rst": "reStructuredText",
    ".toml": "TOML", ".yaml": "YAML", ".yml": "YAML", ".json": "JSON", ".proto": "Protobuf",
    ".tf": "Terraform", ".cmake": "CMake",
}  # fmt: skip
_BY_NAME = {"Makefile": "Makefile", "Dockerfile": "Dockerfile", "CMakeLists.txt": "CMake"}
_WALK_SKIP = {
    ".git", ".hg", ".svn", "node_modules", ".venv", "venv", "__pycache__", ".mypy_cache",
    ".ruff_cache", ".pytest_cache", ".tox", ".nox", "dist", "build", "target", ".idea",
    ".handoff",
}  # fmt: skip
_ENTRY_NAMES = (
    "__main__.py", "main.py", "manage.py", "app.py", "cli.py", "main.go", "main.rs", "lib.rs",
    "index.js", "index.ts", "main.ts", "main.js", "server.js", "Main.java", "Program.cs",
)  # fmt: skip


@dataclass(frozen=True)
class Language:
    name: str
    files: int
    lines: int


@dataclass(frozen=True)
class KeyFile:
    path: str
    why: str
    excerpt: str = ""


@dataclass
class Summary:
    """Everything ``analyze`` found; ``render`` turns it into budgeted text."""

    root: str
    name: str
    commit: str | None
    is_git: bool
    total_files: int
    truncated_files: bool
    total_lines: int
    languages: list[Language] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    commands: dict[str, list[str]] = field(default_factory=dict)
    key_files: list[KeyFile] = field(default_factory=list)
    commits: list[str] = field(default_factory=list)

    def stats(self) -> dict[str, Any]:
        """Small, JSON-able facts (no file list) for caches and benchmarks."""
        d = asdict(self)
        d.pop("paths")
        return d


# --- git --------------------------------------------------------------------------------------


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.decode("utf-8", "replace")


def head_commit(root: Path | str) -> str | None:
    """The sha of HEAD, or None outside git / before the first commit."""
    out = _git(Path(root), "rev-parse", "--verify", "-q", "HEAD")
    return out.strip() or None if out else None


def _git_toplevel(root: Path) -> Path | None:
    out = _git(root, "rev-parse", "--show-toplevel")
    return Path(out.strip()) if out else None


def _git_files(root: Path, with_untracked: bool, max_files: int) -> list[str] | None:
    args = ["ls-files", "-z", "--cached"]
    if with_untracked:
        args += ["--others", "--exclude-standard"]
    out = _git(root, *args)
    if out is None:
        return None
    files = sorted({p for p in out.split("\0") if p})
    return files[: max_files + 1]


# --- walking without git ----------------------------------------------------------------------


def _gitignore_patterns(root: Path) -> list[tuple[str, bool, bool, bool]]:
    """(pattern, negated, dir_only, anchored: from the root only, as git's ``/docs``)."""
    try:
        text = (root / ".gitignore").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        line = line[1:] if neg else line
        dir_only = line.endswith("/")
        out.append((line.strip("/"), neg, dir_only, "/" in line.rstrip("/")))
    return out


def _ignored(rel: str, is_dir: bool, patterns: list[tuple[str, bool, bool, bool]]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    result = False
    for pat, neg, dir_only, anchored in patterns:
        if dir_only and not is_dir:
            continue
        target = rel if anchored else name
        if fnmatch.fnmatchcase(target, pat):
            result = not neg
    return result


def _walk_files(root: Path, max_files: int) -> list[str]:
    patterns = _gitignore_patterns(root)
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        prefix = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in _WALK_SKIP
            and not d.endswith(".egg-info")
            and not _ignored(prefix + d, True, patterns)
        )
        for f in sorted(filenames):
            rel = prefix + f
            if not _ignored(rel, False, patterns):
                found.append(rel)
        if len(found) > max_files:
            break
    return sorted(found)[: max_files + 1]


def _generated(path: str) -> bool:
    """Whether ``path`` is or is in a folder of tools' output or dependencies (node_modules...)."""
    return any(d in _WALK_SKIP or d.endswith(".egg-info") for d in path.split("/"))


# --- analysis ---------------------------------------------------------------------------------


def _language(path: str) -> str | None:
    name = path.rsplit("/", 1)[-1]
    if name in _BY_NAME:
        return _BY_NAME[name]
    dot = name.rfind(".")
    return LANGUAGES.get(name[dot:]) if dot > 0 else None


def _count_lines(root: Path, paths: list[str]) -> tuple[list[Language], int]:
    files: Counter[str] = Counter()
    lines: Counter[str] = Counter()
    budget = MAX_READ_BYTES
    dirs: dict[str, str] = {}  # real paths of folders, resolved once
    for rel in paths:
        lang = _language(rel)
        if lang is None:
            continue
        full = _regular_file(root, rel, dirs)
        if full is None:
            continue
        size = full[1]
        files[lang] += 1
        if size > MAX_COUNT_BYTES or size > budget:
            lines[lang] += size // 40  # an estimate: ~40 bytes a line in source code
            continue
        try:
            with open(full[0], "rb") as fh:
                data = fh.read(MAX_COUNT_BYTES + 1)
        except OSError:
            continue
        budget -= len(data)
        lines[lang] += data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    langs = sorted(
        (Language(n, files[n], lines[n]) for n in files), key=lambda x: (-x.lines, x.name)
    )
    return langs, sum(lines.values())


def _add(commands: dict[str, list[str]], kind: str, cmd: str) -> None:
    bucket = commands.setdefault(kind, [])
    if cmd not in bucket:
        bucket.append(cmd)


def _infer_commands(root: Path, top: set[str], paths: list[str]) -> tuple[dict, list[KeyFile]]:
    commands: dict[str, list[str]] = {}
    keys: list[KeyFile] = []
    if "pyproject.toml" in top:
        _python_commands(root, top, paths, commands, keys)
    elif "setup.py" in top or "setup.cfg" in top:
        _add(commands, "install", "pip install -e .")
        if any(p.startswith("tests/") or p.startswith("test/") for p in paths):
            _add(commands, "test", "pytest")
    if "package.json" in top:
        _node_commands(root, top, commands, keys)
    if "Cargo.toml" in top:
        for kind, cmd in (("build", "cargo build"), ("test", "cargo test"), ("lint", "cargo clippy")):  # fmt: skip
            _add(commands, kind, cmd)
    if "go.mod" in top:
        for kind, cmd in (("build", "go build ./..."), ("test", "go test ./..."), ("lint", "go vet ./...")):  # fmt: skip
            _add(commands, kind, cmd)
        text = _read(root, "go.mod") or ""
        m = re.search(r"^module\s+(\S+)", text, re.M)
        if m:
            keys.append(KeyFile("go.mod", f"module {m.group(1)}"))
    for makefile in ("Makefile", "makefile", "GNUmakefile"):
        if makefile in top:
            _make_commands(root, makefile, commands)
            break
    return commands, keys


def _python_commands(
    root: Path, top: set[str], paths: list[str], commands: dict, keys: list[KeyFile]
) -> None:
    import tomllib

    try:
        data = tomllib.loads(_read(root, "pyproject.toml") or "")
    except tomllib.TOMLDecodeError:
        data = {}
    tool = data.get("tool") or {}
    if data.get("build-system") or data.get("project"):
        _add(commands, "install", "pip install -e .")
        _add(commands, "build", "python -m build")
    if "poetry" in tool:
        _add(commands, "install", "poetry install")
    has_tests = any(p.startswith(("tests/", "test/")) or "/tests/" in p for p in paths[:50_000])
    if "pytest" in tool or has_tests:
        _add(commands, "test", "pytest")
    if "ruff" in tool:
        _add(commands, "lint", "ruff check .")
    if "mypy" in tool:
        _add(commands, "typecheck", "mypy")
    scripts = (data.get("project") or {}).get("scripts") or {}
    for name, target in sorted(scripts.items())[:10]:
        keys.append(KeyFile("pyproject.toml", f"console script `{name}` -> {target}"))


def _node_commands(root: Path, top: set[str], commands: dict, keys: list[KeyFile]) -> None:
    try:
        data = json.loads(_read(root, "package.json") or "{}")
    except json.JSONDecodeError:
        return
    if not isinstance(data, dict):
        return
    runner = "pnpm" if "pnpm-lock.yaml" in top else "yarn" if "yarn.lock" in top else "npm"
    _add(commands, "install", f"{runner} install")
    raw_scripts = data.get("scripts")
    scripts: dict[str, Any] = raw_scripts if isinstance(raw_scripts, dict) else {}
    for name in sorted(scripts):
        kind = next(
            (k for k in ("test", "build", "lint", "typecheck", "dev", "start") if k in name), None
        )
        if kind and not name.startswith(("pre", "post")):
            _add(commands, kind, f"{runner} run {name}")
    for field_name in ("main", "module", "bin"):
        value = data.get(field_name)
        if isinstance(value, str):
            keys.append(KeyFile("package.json", f"{field_name}: {value}"))
        elif isinstance(value, dict):
            for k, v in sorted(value.items())[:5]:
                keys.append(KeyFile("package.json", f"bin `{k}` -> {v}"))


_MAKE_TARGET = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)\s*:(?!=)", re.M)


def _make_commands(root: Path, name: str, commands: dict) -> None:
    targets = dict.fromkeys(_MAKE_TARGET.findall(_read(root, name) or ""))
    for target in targets:
        low = target.lower()
        kind = next(
            (k for k in ("test", "check", "lint", "build", "install", "all") if low.startswith(k)),
            None,
        )
        if kind:
            _add(commands, {"check": "test", "all": "build"}.get(kind, kind), f"make {target}")


def _key_files(root: Path, paths: list[str]) -> list[KeyFile]:
    keys: list[KeyFile] = []
    top = [p for p in paths if "/" not in p]
    for readme in readmes(top)[:3]:
        text = (_read(root, readme, README_CHARS * 4) or "").strip()
        if "\0" not in text:  # not a binary file (README-banner.png): its bytes say nothing
            keys.append(KeyFile(readme, "readme", text[:README_CHARS]))
            break
    for p in top:
        if p.lower().startswith(("contributing", "agents.md", "claude.md")):
            keys.append(KeyFile(p, "contributor guide"))
    entries = [
        p
        for p in paths
        if p.rsplit("/", 1)[-1] in _ENTRY_NAMES and p.count("/") <= 3 and not _generated(p)
    ]
    entries.sort(key=lambda p: (p.count("/"), p))
    keys += [KeyFile(p, "entry point") for p in entries[:12]]
    return keys


def analyze(
    root: Path | str,
    *,
    max_files: int = DEFAULT_MAX_FILES,
    commits: int = 10,
) -> Summary:
    """Look at the project at ``root``: languages, files, commands, key files, commits."""
    root = Path(root).resolve()
    if not root.is_dir():
        from specwright.errors import SpecwrightError

        raise SpecwrightError(f"{root}: not a directory; expected the project's root folder")
    commit = head_commit(root)
    toplevel = _git_toplevel(root)
    is_git = toplevel is not None
    paths = _git_files(root, with_untracked=commit is None, max_files=max_files) if is_git else None
    if not paths:  # not a repository, or a folder git ignores (e.g. inside .venv): walk it
        walked = _walk_files(root, max_files)
        if walked or paths is None:  # an empty repository is still a repository
            is_git, paths = False, walked
    truncated = len(paths) > max_files
    paths = paths[:max_files]
    langs, total_lines = _count_lines(root, paths)
    unsafe = withheld(root, paths)  # README.md -> .env: listed, never read
    readable = [p for p in paths if p not in unsafe]
    top = {p for p in readable if "/" not in p}
    commands, cmd_keys = _infer_commands(root, top, paths)
    log_lines: list[str] = []
    if commit:
        out = _git(root, "log", f"-n{commits}", "--format=%h %ad %s", "--date=short")
        log_lines = [line[:160] for line in (out or "").splitlines()]
    return Summary(
        root=str(root),
        name=root.name,
        commit=commit,
        is_git=is_git,
        total_files=len(paths),
        truncated_files=truncated,
        total_lines=total_lines,
        languages=langs,
        paths=paths,
        commands=commands,
        key_files=_key_files(root, readable) + cmd_keys,
        commits=log_lines,
    )


# --- rendering --------------------------------------------------------------------------------


def estimate_tokens(text: str) -> int:
    """A rough token count: about four characters a token."""
    return (len(text) + 3) // 4


_LOW_PRIORITY = {"tests", "test", "docs", "doc", "examples", "vendor", "third_party", "fixtures"}
_PER_DIR = 40  # entries listed per directory before "… N more"


class _Tree:
    """Directories of a file list, built once, expanded breadth-first while a budget allows."""

    def __init__(self, paths: list[str]) -> None:
        self.counts: Counter[str] = Counter()  # directory -> files below it
        kids: dict[str, set[str]] = {}
        for p in paths:
            parts = p.split("/")
            for i in range(len(parts)):
                node = "/".join(parts[: i + 1])
                if i < len(parts) - 1:
                    self.counts[node] += 1
                kids.setdefault("/".join(parts[:i]), set()).add(node)
        # directories first, then files, each alphabetical
        self.kids = {k: sorted(v, key=lambda n: (n not in self.counts, n)) for k, v in kids.items()}

    def _line(self, node: str, level: int, expanded: set[str]) -> str:
        name = node.rsplit("/", 1)[-1]
        if node not in self.counts:
            return "  " * level + name
        if node in expanded:
            return "  " * level + name + "/"
        return "  " * level + f"{name}/ ({self.counts[node]} files)"

    def _cost(self, parent: str, level: int) -> int:
        kids = self.kids.get(parent, [])
        cost = sum(len(self._line(k, level, set())) + 1 for k in kids[:_PER_DIR])
        return cost + (20 if len(kids) > _PER_DIR else 0)

    @staticmethod
    def _key(level: int, node: str) -> tuple[int, int, str]:
        # source, then tests/docs/examples, then committed node_modules/dist/.venv; shallow
        # before deep, then alphabetical
        rank = 2 if _generated(node) else 1 if _LOW_PRIORITY & set(node.split("/")) else 0
        return (rank, level, node)

    def render(self, budget_chars: int) -> str:
        """Expand directories (source first, shallow first) while the text fits."""
        expanded = {""}
        used = self._cost("", 0)
        heap = [self._key(1, k) for k in self.kids[""][:_PER_DIR] if k in self.counts]
        heapq.heapify(heap)
        while heap:
            _, level, node = heapq.heappop(heap)
            cost = self._cost(node, level) - len(f" ({self.counts[node]} files)")
            if used + cost > budget_chars:
                continue
            used += cost
            expanded.add(node)
            for k in self.kids[node][:_PER_DIR]:
                if k in self.counts:
                    heapq.heappush(heap, self._key(level + 1, k))
        out: list[str] = []

        def emit(parent: str, level: int) -> None:
            kids = self.kids.get(parent, [])
            for node in kids[:_PER_DIR]:
                out.append(self._line(node, level, expanded))
                if node in expanded:
                    emit(node, level + 1)
            if len(kids) > _PER_DIR:
                out.append("  " * level + f"… {len(kids) - _PER_DIR} more")

        emit("", 0)
        text = "\n".join(out)
        if len(text) > budget_chars:  # even the top level is too long: cut it
            text = text[:budget_chars].rsplit("\n", 1)[0] + "\n…"
        return text


def _render_tree(paths: list[str], budget_chars: int) -> str:
    if budget_chars <= 20 or not paths:
        return ""
    # a file name is untrusted: a newline or escape in it must not forge lines of the summary
    safe = [printable(p) for p in paths]
    return _Tree(safe).render(budget_chars)


def render(summary: Summary, budget_tokens: int = DEFAULT_BUDGET_TOKENS) -> str:
    """The summary as markdown within ``budget_tokens`` (estimated); deterministic."""
    budget = max(budget_tokens, 64) * 4
    head = [f"# Codebase: {printable(summary.name)}"]
    where = f"commit {summary.commit[:12]}" if summary.commit else "no commit yet"
    more = "+" if summary.truncated_files else ""
    head.append(
        f"{summary.total_files}{more} files, {summary.total_lines:,} lines "
        f"({'git' if summary.is_git else 'not a git repository'}, {where})"
    )
    if summary.languages:
        head.append("\n## Languages")
        for lang in summary.languages[:12]:
            head.append(f"- {lang.name}: {lang.files} files, {lang.lines:,} lines")
    if summary.commands:
        head.append("\n## Commands (inferred)")
        for kind in sorted(summary.commands):
            cmds = "; ".join(f"`{printable(c)}`" for c in summary.commands[kind][:6])
            head.append(f"- {kind}: {cmds}")
    text = "\n".join(head)
    sections: list[str] = []
    keys = [k for k in summary.key_files if not k.excerpt]
    if keys:
        lines = (f"- {printable(k.path)}: {printable(k.why)}" for k in keys[:20])
        sections.append("## Key files\n" + "\n".join(lines))
    if summary.commits:
        sections.append("## Recent commits\n" + "\n".join(f"- {c}" for c in summary.commits))
    for k in summary.key_files:
        if k.excerpt:
            sections.append(f"## {printable(k.path)} (excerpt)\n{k.excerpt}")
    for section in sections:
        if len(text) + len(section) + 2 > budget * 0.6:
            room = int(budget * 0.6) - len(text) - 40
            if room > 200:
                text += "\n\n" + section[:room].rstrip() + "\n…"
            continue
        text += "\n\n" + section
    room = budget - len(text) - 20
    tree = _render_tree(summary.paths, room)
    if tree:
        text += "\n\n## Files\n" + tree
    if len(text) > budget:
        text = text[: budget - 2].rsplit("\n", 1)[0] + "\n…"
    return text


# --- cached entry point -----------------------------------------------------------------------


def context(
    root: Path | str,
    store: Store | None = None,
    *,
    budget_tokens: int = DEFAULT_BUDGET_TOKENS,
    max_files: int = DEFAULT_MAX_FILES,
) -> str:
    """The rendered codebase context for ``root``, cached in ``store`` by commit (a tree with
    uncommitted edits to tracked files is analysed each time)."""
    root = Path(root).resolve()
    redact = Redactor.from_env()  # a key pasted in the README is not sent (nor cached)
    commit = head_commit(root) if store is not None else None
    if commit and _git(root, "status", "--porcelain", "--untracked-files=no", "--", "."):
        commit = None  # edits not committed (README, pyproject.toml): not that commit's context
    params = json.dumps(
        {"v": ANALYZER_VERSION, "budget": budget_tokens, "max_files": max_files}, sort_keys=True
    )
    if store is not None and commit:
        rows = store.query(
            "SELECT rendered FROM codebase_cache WHERE root = ? AND commit_sha = ? AND params = ?",
            [str(root), commit, params],
        )
        if rows:
            return redact(str(rows[0][0]))  # a secret set since it was cached
    summary = redacted(analyze(root, max_files=max_files), redact)
    text = render(summary, budget_tokens)
    if store is not None and commit and summary.commit == commit:
        from specwright.model import utcnow

        stats = json.dumps(summary.stats(), default=str)
        row: dict[str, Any] = {"root": str(root), "commit_sha": commit, "params": params}
        row |= {"rendered": text, "stats": stats, "created_at": utcnow()}
        # derived data: not journaled (a rebuilt database just recomputes it)
        store.write([store.op_insert("codebase_cache", row, upsert=True)], None)
    return text
