"""The README stays true: CI runs its test command verbatim, and every CLI command is documented."""

from __future__ import annotations

import re

from specwright.cli import build_parser
from tests.conftest import REPO


def _readme() -> str:
    return (REPO / "README.md").read_text()


def _quick_start_commands() -> list[str]:
    section = _readme().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_readme_has_exactly_two_quick_start_commands() -> None:
    commands = _quick_start_commands()
    assert len(commands) == 2
    assert commands[1].endswith("pytest") or " pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert _quick_start_commands()[1] in ci.splitlines()


def _commands() -> list[str]:
    parser = build_parser()
    out = []
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        for name, sub in action.choices.items():
            subs = [a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"]
            if subs:
                out += [f"{name} {child}" for child in subs[0].choices]
            else:
                out.append(name)
    return out


def test_every_command_is_in_the_readme() -> None:
    readme = _readme()
    missing = [c for c in _commands() if f"specwright {c}" not in readme]
    assert not missing, f"commands missing from README.md: {missing}"


def test_every_command_has_help(cli) -> None:  # type: ignore[no-untyped-def]
    for command in _commands():
        result = cli(*command.split(), "--help")
        assert result.code == 0, command
        assert "usage: specwright" in result.out


def test_readme_names_every_folder_running_agents_are_registered_in() -> None:
    """A user cleaning up after a crash looks there: the variable, XDG and the fallback."""
    readme = " ".join(_readme().split())
    for place in (
        "`SPECWRIGHT_RUNTIME_DIR`",
        "`$XDG_RUNTIME_DIR/specwright-agents`",
        "`specwright-agents-UID` in the temp folder",
    ):
        assert place in readme, place


def test_every_link_in_the_readme_and_docs_leads_to_a_file() -> None:
    """The README sends readers to docs/ for the details: a moved page must not leave it dangling."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, broken
    assert "(docs/commands.md)" in _readme() and "(docs/data.md)" in _readme()


_EVERY_COMMAND = {"-h", "--help", "--json", "--db", "-C", "--project-dir"}


def _options() -> dict[str, list[str]]:
    """Each command's own options (long form), without those every command takes."""
    out: dict[str, list[str]] = {}

    def walk(parser, name: str) -> None:  # type: ignore[no-untyped-def]
        for action in parser._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                for child, sub in action.choices.items():
                    walk(sub, f"{name} {child}".strip())
            elif name and not _EVERY_COMMAND & set(action.option_strings):
                out.setdefault(name, []).extend(sorted(action.option_strings, key=len)[-1:])

    walk(build_parser(), "")
    return out


def _text_about(command: str) -> str:
    """The README rows and docs/commands.md sections whose command line names ``command``."""
    parts = [line for line in _readme().splitlines() if f"`specwright {command}" in line]
    for section in (REPO / "docs" / "commands.md").read_text().split("\n### ")[1:]:
        heading = section.split("\n", 1)[0]
        named = set()
        for m in re.finditer(r"specwright ([\w-]+)(?: ([\w|-]+))?", heading):
            for child in (m.group(2) or "").split("|"):
                named.add(f"{m.group(1)} {child}".strip())
                named.add(m.group(1))
        if command in named:
            parts.append(section)
    return "\n".join(parts)


def test_every_option_of_every_command_is_documented() -> None:
    """A flag `--help` shows is in the README's row of its command or its docs/commands.md section."""
    missing = [
        f"{command} {option}"
        for command, options in _options().items()
        for option in options
        if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", _text_about(command))
    ]
    assert not missing, f"options missing from README.md and docs/commands.md: {missing}"


# read from the environment but not Specwright's settings: the system's and git's own, and
# pytest's, which a verification step's run extends with its report
_NOT_SETTINGS = {
    "HOME",
    "PATH",
    "GIT_CONFIG_GLOBAL",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "PYTEST_ADDOPTS",
}


def test_every_environment_variable_the_code_reads_is_documented() -> None:
    """A variable that changes what Specwright does is named in the README or docs/."""
    pattern = re.compile(
        r"""(?:environ\.get|environ\[|getenv|env\.get)\(?["']([A-Z][A-Z0-9_]+)["']"""
    )
    read = {
        name
        for path in (REPO / "specwright").rglob("*.py")
        for name in pattern.findall(path.read_text())
    }
    docs = _readme() + "".join(p.read_text() for p in (REPO / "docs").glob("*.md"))
    missing = sorted(read - _NOT_SETTINGS - set(re.findall(r"[A-Z][A-Z0-9_]+", docs)))
    assert not missing, f"environment variables the docs do not name: {missing}"


def test_executor_options_are_documented_and_ingest_says_where_claude_runs_log() -> None:
    """Every option an adapter reads is in docs/config.md; and ingest's docs say that Claude
    Code runs started by Specwright log to a throwaway CLAUDE_CONFIG_DIR unless
    `options.config_dir` is set (their transcripts are not where `ingest claude-logs` looks)."""
    read = set()
    for path in (REPO / "specwright" / "agents").glob("*.py"):
        read |= set(re.findall(r"options\.get\(\"(\w+)\"", path.read_text()))
    assert {"config_dir", "stream_log", "allowed_tools", "extra_args"} <= read
    section = (REPO / "docs" / "config.md").read_text().split("## Executor options", 1)[1]
    section = section.split("\n## ", 1)[0]
    assert not [key for key in sorted(read) if f"`{key}`" not in section]
    ingest = (REPO / "docs" / "commands.md").read_text().split("### `specwright ingest", 1)[1]
    ingest = " ".join(ingest.split("\n### ", 1)[0].split())
    assert "throwaway `CLAUDE_CONFIG_DIR`" in ingest and "`options.config_dir`" in ingest


def _needs_db() -> dict[str, bool]:
    """Each command (``spec list``, ``worker``) and whether it refuses a database file that is
    not there (``needs_db``) rather than creating it."""
    out: dict[str, bool] = {}

    def walk(parser, name: str) -> None:  # type: ignore[no-untyped-def]
        subs = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        if not subs:
            out[name] = bool(parser.get_default("needs_db"))
        for sub in subs:
            for child, p in sub.choices.items():
                walk(p, f"{name} {child}".strip())

    walk(build_parser(), "")
    return out


def _named_in(text: str) -> set[str]:
    """The commands a list such as "`spec list|show`, `worker`, the `usage` reports" names."""
    usage_reports = {c for c in _needs_db() if c.startswith("usage ")} - {
        "usage export",
        "usage merge",
    }
    named = set(usage_reports if "the `usage` reports" in text else ())
    for quoted in re.findall(r"`([^`]+)`", text.replace("the `usage` reports", "")):
        head, _, tail = quoted.partition(" ")
        named |= {f"{head} {child}".strip() for child in tail.split("|")}
    return named


def test_the_commands_said_to_refuse_a_missing_database_are_those_that_do() -> None:
    """docs/commands.md lists the commands that refuse a database file that is not there and
    those that create it; `worker` was listed as creating it long after it refused one."""
    text = " ".join((REPO / "docs" / "commands.md").read_text().split())
    refuse = text.split("A command that only reads the database", 1)[1].split("), refuses", 1)[0]
    create = text.split("creates nothing", 1)[1].split(") create it.", 1)[0]
    needs = _needs_db()
    assert _named_in(refuse) == {c for c, n in needs.items() if n}
    assert not {c for c, n in needs.items() if n} & _named_in(create)


def test_the_ranges_help_and_docs_give_are_those_enforced() -> None:
    """--parallel, --max-iterations (and worker --concurrency) and --budget take the ranges of
    `specwright.model`, as the config's defaults do: each option's `--help`, docs/commands.md
    and docs/config.md give those same ranges."""
    from specwright.cli.common import ITERATIONS, PARALLEL, dollars
    from specwright.model import MAX_BUDGET_USD, MAX_ITERATIONS, MAX_PARALLEL

    said = {
        PARALLEL: f"1-{MAX_PARALLEL}",
        ITERATIONS: f"1-{MAX_ITERATIONS}",
        dollars: f"0 to {MAX_BUDGET_USD:,} dollars",
    }
    wrong = []

    def walk(parser, name: str) -> None:  # type: ignore[no-untyped-def]
        for action in parser._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                for child, sub in action.choices.items():
                    walk(sub, f"{name} {child}".strip())
            elif action.type in said and said[action.type] not in (action.help or ""):
                wrong.append(f"{name} {action.option_strings[-1]}: {action.help!r}")

    walk(build_parser(), "")
    assert not wrong, f"--help without the range the option takes: {wrong}"
    commands = " ".join((REPO / "docs" / "commands.md").read_text().split())
    assert f"outside 1-{MAX_ITERATIONS} attempts or 1-{MAX_PARALLEL} at once" in commands
    assert f"is from 0 to {MAX_BUDGET_USD:,} dollars" in commands
    config = " ".join((REPO / "docs" / "config.md").read_text().split())
    assert (
        f"`maxIterations` over {MAX_ITERATIONS:,}, `parallel` over {MAX_PARALLEL} and "
        f"`budget_usd` over ${MAX_BUDGET_USD:,}"
    ) in config


def test_the_readme_config_loads_as_written(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The README's `.handoff/config.yaml` is one a user copies: it loads without an error or a
    warning (a renamed key or a tightened range would make it fail on their first run), and its
    defaults are what it says."""
    from specwright.config import load_text

    monkeypatch.delenv("OPENCODE_URL", raising=False)
    section = _readme().split("## Configuration: `.handoff/config.yaml`", 1)[1]
    config = load_text(re.findall(r"```yaml\n(.+?)```", section, re.DOTALL)[0], "README.md")
    assert (config.defaults.executor, config.defaults.max_iterations) == ("claude", 3)
    assert config.defaults.budget_usd == 20 and config.defaults.parallel == 1
