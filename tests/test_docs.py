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
