"""`specwright demo`: the whole loop, offline, in one command.

It builds a small Python project under ``data/demo/`` (a git repository whose test suite fails:
three functions are stubs), a spec with three chunks (the third depends on the first two), and
runs it with the ``scripted`` executor, the ``checks`` reviewer and pytest as verification. The
scripted agent's first attempt at chunk 1 "simplifies" an existing helper and breaks its test, so
the loop rejects it, rolls it back and retries with the failure as feedback. Tokens and cost of a
scripted run are synthetic and labelled so. Re-running starts clean.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from specwright import catalog
from specwright.errors import SpecwrightError, ValidationError

if TYPE_CHECKING:
    from specwright.model import Spec
    from specwright.runner import ProgressSink, RunAllResult
    from specwright.store import Store

MARKER = ".specwright-demo"
SPEC_TITLE = "Word statistics for textstats"
PROJECT_NAME = "textstats (demo)"
_EXPECTED = "expected a new or empty directory, or an earlier demo"

FILES = {
    "README.md": "# textstats\n\nWord statistics for plain text (the Specwright demo project).\n",
    ".gitignore": "data/\n__pycache__/\n.pytest_cache/\n",
    "pytest.ini": "[pytest]\npythonpath = .\ntestpaths = tests\n",
    MARKER: "This directory is made by `specwright demo` and replaced on every run.\n",
    "textstats/__init__.py": '"""Word statistics for plain text."""\n',
    "textstats/normalize.py": (
        '"""Text clean-up shared by every statistic."""\n\nimport re\n\n\n'
        "def normalize(text: str) -> list[str]:\n"
        '    """Lower-cased words, punctuation removed."""\n'
        '    return re.findall(r"[a-z0-9\']+", text.lower())\n'
    ),
    "textstats/count.py": (
        '"""Counting words."""\n\n\ndef word_count(text: str) -> dict[str, int]:\n'
        '    """How often each word occurs."""\n    raise NotImplementedError\n'
    ),
    "textstats/top.py": (
        '"""The most frequent words."""\n\n\n'
        "def top_words(text: str, n: int = 3) -> list[tuple[str, int]]:\n"
        '    """The ``n`` most frequent words, most frequent first, ties alphabetical."""\n'
        "    raise NotImplementedError\n"
    ),
    "textstats/cli.py": (
        '"""Command line: python -m textstats.cli FILE [-n N]."""\n\n\n'
        "def main(argv: list[str] | None = None) -> int:\n    raise NotImplementedError\n"
    ),
    "tests/test_normalize.py": (
        "from textstats.normalize import normalize\n\n\n"
        "def test_words_are_lowercased_without_punctuation():\n"
        '    assert normalize("Hello, World! It\'s") == ["hello", "world", "it\'s"]\n'
    ),
    "tests/test_count.py": (
        "from textstats.count import word_count\n\n\ndef test_counts_each_word():\n"
        '    assert word_count("the cat and the hat") == {"the": 2, "cat": 1, "and": 1, '
        '"hat": 1}\n\n\ndef test_ignores_case_and_punctuation():\n'
        '    assert word_count("Go, go GO!") == {"go": 3}\n'
    ),
    "tests/test_top.py": (
        "from textstats.top import top_words\n\n\ndef test_most_frequent_first():\n"
        '    assert top_words("b a b c b a", 2) == [("b", 3), ("a", 2)]\n\n\n'
        "def test_ties_are_alphabetical():\n"
        '    assert top_words("z y x", 2) == [("x", 1), ("y", 1)]\n'
    ),
    "tests/test_cli.py": (
        "from textstats.cli import main\n\n\ndef test_prints_top_words(tmp_path, capsys):\n"
        '    f = tmp_path / "t.txt"\n    f.write_text("to be or not to be")\n'
        '    assert main([str(f), "-n", "2"]) == 0\n'
        '    assert capsys.readouterr().out == "be 2\\nto 2\\n"\n'
    ),
}

_COUNT_OK = (
    '"""Counting words."""\n\nfrom collections import Counter\n\n'
    "from textstats.normalize import normalize\n\n\n"
    "def word_count(text: str) -> dict[str, int]:\n"
    '    """How often each word occurs."""\n    return dict(Counter(normalize(text)))\n'
)
_TOP = (
    '"""The most frequent words."""\n\nfrom textstats.count import word_count\n\n\n'
    "def top_words(text: str, n: int = 3) -> list[tuple[str, int]]:\n"
    '    """The ``n`` most frequent words, most frequent first, ties alphabetical."""\n'
    "    counts = word_count(text)\n"
    "    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]\n"
)
_CLI = (
    '"""Command line: python -m textstats.cli FILE [-n N]."""\n\nimport argparse\n'
    "from pathlib import Path\n\nfrom textstats.top import top_words\n\n\n"
    "def main(argv: list[str] | None = None) -> int:\n"
    "    parser = argparse.ArgumentParser(prog='textstats')\n"
    "    parser.add_argument('file')\n"
    "    parser.add_argument('-n', type=int, default=3)\n"
    "    args = parser.parse_args(argv)\n"
    "    for word, count in top_words(Path(args.file).read_text(), args.n):\n"
    "        print(f'{word} {count}')\n"
    "    return 0\n\n\nif __name__ == '__main__':\n    raise SystemExit(main())\n"
)


def _usage(inp: int, out: int, cache: int) -> dict[str, object]:
    # synthetic numbers at Sonnet-like prices, so the cost columns have something to show
    cost = round((inp * 3 + out * 15 + cache * 0.3) / 1_000_000, 6)
    return {
        "usage": {
            "input_tokens": inp,
            "output_tokens": out,
            "cache_read_tokens": cache,
            "cost_usd": cost,
            "model": "scripted-demo",
        }
    }


SCRIPT = {
    "chunks": {
        "1": {
            "attempts": [
                [
                    {"say": "I'll implement word_count and simplify normalize() while I'm there."},
                    {"write": "textstats/count.py", "content": _COUNT_OK},
                    {
                        "patch": "textstats/normalize.py",
                        "search": 're.findall(r"[a-z0-9\']+", text.lower())',
                        "replace": "text.lower().split()",
                    },
                    {"say": "Done: word_count counts normalized words."},
                    _usage(5200, 640, 11000),
                ],
                [
                    {"say": "The previous attempt broke normalize(); leaving it alone this time."},
                    {"write": "textstats/count.py", "content": _COUNT_OK},
                    {"run": f"{Path(sys.executable).as_posix()} -m pytest -q tests/test_count.py"},
                    {
                        "say": "word_count() counts words from normalize(); tests/test_count.py passes."
                    },
                    _usage(6900, 520, 14800),
                ],
            ]
        },
        "2": [
            {"write": "textstats/top.py", "content": _TOP},
            {"say": "top_words() sorts by count, then alphabetically, using word_count()."},
            _usage(4800, 410, 12100),
        ],
        "3": [
            {"write": "textstats/cli.py", "content": _CLI},
            {"say": "textstats.cli prints the top words of a file, one 'word count' a line."},
            _usage(5100, 560, 12600),
        ],
    }
}

CHUNKS = [
    (
        "Count words",
        "Implement `word_count(text)` in textstats/count.py using `normalize()`.",
        ["tests/test_count.py passes", "existing tests still pass"],
        ["textstats/count.py"],
        [],
    ),
    (
        "Top N words",
        "Implement `top_words(text, n)` in textstats/top.py on top of word_count.",
        ["tests/test_top.py passes"],
        ["textstats/top.py"],
        ["1"],
    ),
    (
        "Command-line interface",
        "Implement `main(argv)` in textstats/cli.py: read FILE, print the top N words as "
        "'word count' lines.",
        ["tests/test_cli.py passes"],
        ["textstats/cli.py"],
        ["1", "2"],
    ),
]


def config_yaml() -> str:
    """The demo project's `.handoff/config.yaml`."""
    py = Path(sys.executable).as_posix()
    return (
        "# made by `specwright demo`\n"
        "tools:\n  executors:\n    scripted:\n      type: scripted\n"
        "      script: .handoff/demo-script.yaml\n"
        "  reviewers:\n    checks:\n      type: checks\n"
        "defaults:\n  executor: scripted\n  reviewer: checks\n  maxIterations: 3\n"
        "  rollback: rollback\n"
        f"verify:\n  - name: tests\n    command: {py} -m pytest -q -p no:cacheprovider\n"
        "    timeout_s: 120\n"
        "rules:\n  - Keep the public functions' signatures.\n"
    )


def _git(root: Path, *args: str) -> None:
    env_identity = ["-c", "user.name=Specwright Demo", "-c", "user.email=demo@specwright.invalid"]
    subprocess.run(["git", *env_identity, *args], cwd=root, check=True, capture_output=True)


def report_path(db: Path) -> Path:
    """Where `specwright demo` writes its HTML report: beside the database and named after it
    (``data/specwright.duckdb`` -> ``data/specwright-demo-report.html``), so demos with
    different databases in one folder keep their own."""
    return db.parent / f"{db.stem}-demo-report.html"


def check_executor(executor: str | None) -> None:
    """Refuse an executor the demo's config does not have (a one-line ConfigError)."""
    from specwright import config as config_mod

    config_mod.load_text(config_yaml(), source="the demo's config").executor(executor)


def check_replaceable(root: Path) -> None:
    """Refuse a ``root`` that holds something other than an earlier demo (an error)."""
    if root.exists() and not (root / MARKER).exists() and any(root.iterdir()):
        raise ValidationError(
            f"{root}: exists and is not a Specwright demo; not touching it ({_EXPECTED})"
        )


def check_dir(root: Path, db: Path | None = None) -> None:
    """Make sure the demo can be built at ``root`` before anything is written anywhere: it is
    absent, an empty directory or an earlier demo, and writable, and the database ``db`` is
    not inside it (every demo run replaces what is there). Creates it when absent; every
    problem is a one-line ValidationError naming the path."""
    root = root.resolve()
    if db is not None and db.resolve().is_relative_to(root):
        raise ValidationError(
            f"{root}: the database {db.resolve()} is inside it, and the demo replaces what is "
            "there; give a directory that does not hold the database (or another database: "
            "--db, SPECWRIGHT_DB)"
        )
    try:
        if root.exists() and not root.is_dir():
            raise ValidationError(f"{root}: exists and is not a directory; {_EXPECTED}")
        if root.exists() and not os.access(root, os.R_OK | os.W_OK | os.X_OK):
            raise ValidationError(f"{root}: cannot write there (permission denied); {_EXPECTED}")
        check_replaceable(root)
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a parent that is a file or cannot be written, a read-only disk
        raise ValidationError(
            f"{root}: cannot create the demo directory ({exc.strerror or exc}); {_EXPECTED}"
        ) from None


def check(root: Path, executor: str | None = None, db: Path | None = None) -> None:
    """Every argument of `specwright demo`, before anything is built or recorded."""
    check_executor(executor)
    check_dir(root, db)


def create_project(root: Path) -> None:
    """Write the sample project and make it a git repository with one commit."""
    check_replaceable(root)
    try:
        _write_project(root)
    except OSError as exc:
        where = exc.filename or root
        raise SpecwrightError(
            f"{where}: cannot write the demo project ({exc.strerror or exc})"
        ) from None
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "textstats: skeleton with a failing test suite")


def _write_project(root: Path) -> None:
    import yaml

    # an earlier demo's contents go, the directory stays (its parent need not be writable)
    for child in root.iterdir() if root.exists() else ():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (root / ".handoff").mkdir(exist_ok=True)
    (root / ".handoff" / "config.yaml").write_text(config_yaml(), encoding="utf-8")
    (root / ".handoff" / "demo-script.yaml").write_text(
        yaml.safe_dump(SCRIPT, sort_keys=False, width=100), encoding="utf-8"
    )


def reset(store: Store, root: Path) -> None:
    """Forget an earlier demo: its project's specs (with their history) and its directory.
    A ``root`` holding anything but a demo is refused first: its project's specs are kept."""
    root = root.resolve()
    check_replaceable(root)
    sql, params = "SELECT id FROM projects WHERE root = ?", [str(root)]
    if not (root / MARKER).exists():  # gone or empty: only a project the demo made is its own
        sql, params = sql + " AND name = ?", [*params, PROJECT_NAME]
    rows = store.query(sql, params)
    for (project_id,) in rows:
        for (spec_id,) in store.query("SELECT id FROM specs WHERE project_id = ?", [project_id]):
            catalog.delete_spec(store, spec_id, force=True)
    worktrees = store.path.parent / "worktrees"
    if worktrees.exists():
        shutil.rmtree(worktrees / "word-statistics-for-textstats", ignore_errors=True)


def prepare(store: Store, root: Path) -> Spec:
    """Build the demo project and its spec (replacing an earlier demo at ``root``); a ``root``
    it cannot use is refused before anything is recorded."""
    root = root.resolve()
    check_dir(root, store.path)
    reset(store, root)
    create_project(root)
    project = catalog.ensure_project(store, root, name=PROJECT_NAME)
    spec = catalog.create_spec(
        store,
        project,
        SPEC_TITLE,
        "Make the textstats test suite pass: count words, find the most frequent ones, "
        "and print them from the command line.",
        intent="Finish textstats",
        status="ready",
    )
    for title, prompt, acceptance, files, deps in CHUNKS:
        catalog.add_chunk(
            store, spec, title, prompt, acceptance=acceptance, files=files, depends_on=deps
        )
    return spec


def run(
    store: Store,
    root: Path,
    *,
    executor: str | None = None,
    parallel: int = 1,
    on_progress: ProgressSink | None = None,
) -> RunAllResult:
    """Build the demo project and spec, then run it end to end; bad arguments are refused
    before anything is built or recorded."""
    from specwright import config as config_mod
    from specwright.runner import run_all

    root = root.resolve()
    check_executor(executor)
    spec = prepare(store, root)
    return run_all(
        store,
        config_mod.load(root),
        root,
        spec,
        executor_name=executor,
        parallel=parallel,
        on_progress=on_progress,
    )
