"""`.handoff/config.yaml`: defaults, substitution, and one clear error per kind of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from specwright.config import Config, load, load_text
from specwright.errors import ConfigError
from specwright.store import Store

GOOD = """\
tools:
  executors:
    glm:
      type: opencode
      url: ${OPENCODE_URL:-http://localhost:4096}
      provider: zai
      model: glm-4.7
    claude:
      type: claude-code
      model: ${CLAUDE_MODEL:-claude-sonnet-4-5}
      max_turns: 30
  planners:
    opus:
      type: anthropic
      model: claude-opus-4-5
  reviewers:
    strict:
      type: llm
      planner: opus
defaults:
  executor: glm
  planner: opus
  reviewer: strict
  maxIterations: 5
  budget_usd: 12.5
  rollback: keep
  parallel: 2
verify:
  - name: tests
    command: pytest -q
    timeout_s: 300
rules:
  - Keep functions small.
prices:
  glm-4.7:
    input: 0.6
    output: 2.2
    cache_read: 0.11
"""


def test_defaults_without_a_file(tmp_path: Path) -> None:
    config = load(tmp_path)
    assert config.source is None
    assert config.defaults.max_iterations == 3
    assert config.executor().type == "claude-code"
    assert config.reviewer().type == "checks"
    assert "scripted" in config.executors


def test_full_file_resolves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDE_MODEL", "claude-haiku-4-5")
    config = load_text(GOOD, "cfg.yaml")
    assert config.executor().url == "http://localhost:4096"
    assert config.executor("claude").model == "claude-haiku-4-5"
    assert config.defaults.max_iterations == 5 and config.defaults.rollback == "keep"
    assert config.defaults.budget_usd == 12.5 and config.defaults.parallel == 2
    assert config.verify[0].timeout_s == 300.0
    assert config.rules == ("Keep functions small.",)
    assert config.prices["glm-4.7"].cache_read == 0.11
    assert config.reviewer().planner == "opus"
    # built-ins stay available
    assert config.executors["scripted"].type == "scripted" and "checks" in config.reviewers


def test_env_var_overrides_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCODE_URL", "http://127.0.0.1:5000")
    assert load_text(GOOD, "cfg.yaml").executor("glm").url == "http://127.0.0.1:5000"


def test_substitution_types_nests_and_escapes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A value that is one ${...} reads as YAML would read the result (`${TURNS:-40}` is 40,
    as `40` is; a quoted one stays text); a default may hold another ${...}; `$${` writes a
    literal `${`; env values that YAML reads as numbers are the text they were written as;
    mappings and lists under options come back plain (config show copies them)."""
    from specwright.config import to_dict

    monkeypatch.delenv("TURNS", raising=False)
    monkeypatch.delenv("A", raising=False)
    monkeypatch.setenv("B", "http://127.0.0.1:7")
    text = (
        "tools:\n  executors:\n"
        "    c:\n      type: claude-code\n      max_turns: ${TURNS:-40}\n"
        "      model: '${TURNS:-40}'\n"
        '      env: {PORT: 8080, RATIO: 0.5, SHELL_VAR: "$${HOME}", U: "${A:-${B:-x}}"}\n'
        "      options: {args: [a, b], nested: {k: [1]}}\n"
    )
    config = load_text(text, "cfg.yaml")
    c = config.executor("c")
    assert c.max_turns == 40 and c.model == "40"
    assert c.env == {
        "PORT": "8080",
        "RATIO": "0.5",
        "SHELL_VAR": "${HOME}",
        "U": "http://127.0.0.1:7",
    }
    assert c.options == {"args": ["a", "b"], "nested": {"k": [1]}}
    shown = to_dict(config)["tools"]["executors"]["c"]
    assert shown["options"]["args"] == ["a", "b"] and shown["env"]["PORT"] == "8080"
    monkeypatch.setenv("TURNS", "12")
    assert load_text(text, "cfg.yaml").executor("c").max_turns == 12


def test_a_number_from_the_environment_where_text_is_wanted_is_its_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`- ${SEED}` in an argv with SEED=42, `model: ${MODEL}` with MODEL=1.5, an env value
    `${FLAG:-false}`: read as a number or boolean, each was refused as "expected a string",
    and for a boolean the hint said to quote a text the user never wrote. Where a number or a
    boolean is wanted (or anything goes, as in options) it still is one."""
    monkeypatch.setenv("SEED", "42")
    monkeypatch.setenv("MODEL", "1.5")
    monkeypatch.delenv("FLAG", raising=False)
    text = (
        "x-base: &base\n  env:\n    FLAG: ${FLAG:-false}\n"
        "tools:\n  executors:\n    c:\n      <<: *base\n      type: command\n"
        "      argv:\n        - agent\n        - ${SEED}\n        - '{prompt}'\n"
        "      model: ${MODEL}\n      timeout_s: ${SEED}\n"
        "      options:\n        probe_version: ${FLAG:-false}\n"
    )
    c = load_text(text, "cfg.yaml").executor("c")
    assert (c.argv, c.model, c.env) == (("agent", "42", "{prompt}"), "1.5", {"FLAG": "false"})
    assert c.timeout_s == 42.0 and c.options == {"probe_version": False}


def test_a_number_from_the_environment_in_a_flow_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a `{ }` mapping (the README's style) a ${...} must be quoted, which made it text: a
    number key refused it ("expected an integer, got '40'"), so a number from the environment
    could not be written there at all. Quoted, it reads as a number where one is wanted, and
    stays text elsewhere; unquoted, the YAML error says to quote it."""
    monkeypatch.delenv("TURNS", raising=False)
    text = 'tools:\n  executors:\n    c: {type: claude-code, max_turns: "${TURNS:-40}", model: "${TURNS:-40}"}\n'
    c = load_text(text, "cfg.yaml").executor("c")
    assert (c.max_turns, c.model) == (40, "40")
    monkeypatch.setenv("TURNS", "12")
    assert load_text(text, "cfg.yaml").executor("c").max_turns == 12
    merged = (  # from an anchor merged into the entry (`<<: *base`) too
        "tools:\n  executors:\n"
        '    base: &base {type: claude-code, model: m, max_turns: "${TURNS:-40}"}\n'
        "    d: {<<: *base, model: m}\n"
    )
    assert load_text(merged, "cfg.yaml").executor("d").max_turns == 12
    monkeypatch.setenv("TURNS", "lots")
    with pytest.raises(
        ConfigError,
        match=r"cfg.yaml:3: tools.executors.c.max_turns: expected an integer, got 'lots'",
    ):
        load_text(text, "cfg.yaml")
    with pytest.raises(ConfigError, match=r"cfg.yaml:3: invalid YAML: .* quote a \$\{\.\.\.\}"):
        load_text(text.replace('"${TURNS:-40}", model', "${TURNS:-40}, model"), "cfg.yaml")


def test_loads_from_project_dir(tmp_path: Path) -> None:
    (tmp_path / ".handoff").mkdir()
    (tmp_path / ".handoff" / "config.yaml").write_text(GOOD)
    assert load(tmp_path).source == str(tmp_path / ".handoff" / "config.yaml")


BAD = [
    ("tools:\n  executors:\n    a: [\n", r"cfg.yaml:4: invalid YAML"),
    ("tool: {}\n", r"cfg.yaml:1: tool: unknown key; expected one of tools, defaults"),
    (
        "tools:\n  executors:\n    x:\n      type: scripted\n      modle: m\n",
        r"cfg.yaml:5: tools.executors.x.modle: unknown key; expected one of .*model",
    ),
    (
        "tools:\n  executors:\n    x:\n      type: gpt-agent\n",
        r"cfg.yaml:4: tools.executors.x.type: expected one of claude-code, opencode, command, scripted, got 'gpt-agent'",
    ),
    (
        "tools:\n  executors:\n    x:\n      model: m\n",
        r"cfg.yaml:3: tools.executors.x.type: missing",
    ),
    (
        "tools:\n  executors:\n    x:\n      type: scripted\ndefaults:\n  executor: y\n",
        r"cfg.yaml:6: defaults.executor: unknown executor 'y'; expected one of scripted, x",
    ),
    (
        "defaults:\n  maxIterations: three\n",
        r"cfg.yaml:2: defaults.maxIterations: expected an integer, got 'three'",
    ),
    ("defaults:\n  maxIterations: 0\n", r"defaults.maxIterations: expected an integer >= 1, got 0"),
    # the ranges the command line gives too: 20 digits is a typo, or "no limit" spelled as a number
    (
        "defaults:\n  maxIterations: 5000\n",
        r"cfg.yaml:2: defaults.maxIterations: expected an integer from 1 to 1,000, got 5000$",
    ),
    (
        "defaults:\n  parallel: 10000000000000000000\n",
        r"defaults.parallel: expected an integer from 1 to 256, got 10000000000000000000$",
    ),
    (
        "defaults:\n  budget_usd: 1.0e+308\n",
        r"defaults.budget_usd: expected a number from 0 to 1,000,000, got 1e\+308$",
    ),
    (
        'defaults:\n  maxIterations: "3"\n',
        r"defaults.maxIterations: expected an integer, got '3' \(YAML read it as text: write the number as 3\)$",
    ),
    (
        "defaults:\n  wall_time_s: 1e3\n",
        r"defaults.wall_time_s: expected a number, got '1e3' \(YAML read it as text: write the number as 1000.0\)$",
    ),
    (
        "defaults:\n  rollback: maybe\n",
        r"cfg.yaml:2: defaults.rollback: expected one of rollback, keep, got 'maybe'",
    ),
    ("verify:\n  - name: tests\n", r"cfg.yaml:2: verify\[0\].command: missing"),
    (
        "verify:\n  - name: t\n    command: pytest\n    timeout_s: soon\n",
        r"cfg.yaml:4: verify\[0\].timeout_s: expected a number, got 'soon'",
    ),
    ("verify: pytest\n", r"cfg.yaml:1: verify: expected a list of steps"),
    (
        "tools:\n  executors:\n    x:\n      type: opencode\n      url: ${NO_SUCH_VAR}\n",
        r"cfg.yaml:5: tools.executors.x.url: environment variable NO_SUCH_VAR is not set",
    ),
    (
        "prices:\n  glm-4.7:\n    input: 0.6\n",
        r"cfg.yaml:2: prices.glm-4.7: expected a mapping with at least input and output",
    ),
    ("rules: {a: 1}\n", r"cfg.yaml:1: rules: expected a list of strings"),
    (
        "tools:\n  reviewers:\n    r:\n      type: llm\n      planner: ghost\n",
        r"tools.reviewers.r.planner: unknown planner 'ghost'",
    ),
    ("- just\n- a list\n", r"expected a mapping"),
    (
        "defaults: {}\n---\ntools: {}\n",
        r"^cfg.yaml:2: invalid YAML: expected a single document in the stream, but found another",
    ),
    ("? [a]\n: 1\n", r"^cfg.yaml:1: \(top level\): expected text keys, got a list or mapping"),
    (
        "tools:\n  executors:\n    ? {x: 1}\n    : {type: scripted}\n",
        r"^cfg.yaml:3: tools.executors: expected text keys, got a list or mapping as a key$",
    ),
    ("defaults:\n  executor: a\n  executor: b\n", r"cfg.yaml:3: defaults.executor: duplicate key"),
    (
        "defaults:\n  maxIterations: 3\n  max_iterations: 5\n",
        r"cfg.yaml:2: defaults.maxIterations: set twice: as maxIterations and as max_iterations",
    ),
    (
        "defaults:\n  executor: !env FOO\n",
        r"cfg.yaml:2: defaults.executor: unsupported YAML tag '!env'",
    ),
    (
        "defaults:\n  executor: !!python/name:os.system\n",
        r"cfg.yaml:2: defaults.executor: unsupported YAML tag 'tag:yaml.org,2002:python/name:os.system'",
    ),
    (
        "tools:\n  executors:\n    x:\n      type: scripted\n      env: {FOO: [1, 2]}\n",
        r"cfg.yaml:5: tools.executors.x.env.FOO: expected a string, got \[1, 2\]",
    ),
    ("defaults:\n  budget_usd: .nan\n", r"cfg.yaml:2: defaults.budget_usd: expected a number >= 0"),
    (
        "defaults:\n  wall_time_s: -1\n",
        r"cfg.yaml:2: defaults.wall_time_s: expected a number > 0, got -1.0",
    ),
    (
        "verify:\n  - name: t\n    command: pytest\n    timeout_s: -5\n",
        r"cfg.yaml:4: verify\[0\].timeout_s: expected a number > 0, got -5.0",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m[:40] for _, m in BAD])
def test_bad_config_names_file_line_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_text(text, "cfg.yaml")


def test_unknown_executor_at_use_time_names_the_file_and_the_choices() -> None:
    with pytest.raises(ConfigError) as err:
        Config.default().executor("nope")
    assert str(err.value).startswith(
        "built-in defaults (no .handoff/config.yaml): tools.executors: no executor 'nope'; "
        "expected one of claude-code, opencode"
    )
    mine = load_text("tools: {planners: {opus: {type: anthropic, model: m}}}", "cfg.yaml")
    with pytest.raises(ConfigError, match=r"^cfg\.yaml: tools\.planners: no planner 'x'; "):
        mine.planner("x")


def test_anchors_can_live_under_a_top_level_x_key() -> None:
    """Shared settings for `<<:` had nowhere to live but an executor entry, which must then be
    a whole executor and is listed and runnable; `x-` keys (as in compose files) hold them."""
    config = load_text(
        "x-common: &common {timeout_s: 900, env: {MODE: ci}}\n"
        "tools:\n  executors:\n"
        "    a: {<<: *common, type: claude-code, model: m}\n"
        "    b: {<<: *common, type: opencode, provider: p, model: m}\n",
        "cfg.yaml",
    )
    assert [config.executor(n).timeout_s for n in ("a", "b")] == [900.0, 900.0]
    assert config.executor("b").env == {"MODE": "ci"} and "x-common" not in config.executors
    with pytest.raises(ConfigError, match=r"^cfg.yaml:1: common: unknown key; expected one of"):
        load_text("common: {timeout_s: 900}\n", "cfg.yaml")


def test_a_control_character_in_the_file_is_one_line_with_its_line() -> None:
    """PyYAML's own message for it is two lines, the second giving a character position."""
    with pytest.raises(ConfigError) as err:
        load_text('tools:\n  executors:\n    c: {type: claude-code, model: "x\x07"}\n', "c.yaml")
    assert str(err.value) == (
        "c.yaml:3: invalid YAML: unacceptable character #x0007: special characters are not allowed"
    )


def test_unreadable_file_is_clear(tmp_path: Path) -> None:
    (tmp_path / ".handoff").mkdir()
    (tmp_path / ".handoff" / "config.yaml").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match=r"config\.yaml:1: cannot read: not UTF-8 \(byte 0xff\)"):
        load(tmp_path)


def test_a_config_named_config_yml_is_refused_not_replaced_by_the_defaults(
    tmp_path: Path,
    cli,  # type: ignore[no-untyped-def]
) -> None:
    """`.handoff/config.yml` was never read: every command ran with the built-in executors
    and no verification steps, and `init` wrote a default config.yaml beside it."""
    (tmp_path / ".handoff").mkdir()
    (tmp_path / ".handoff" / "config.yml").write_text("verify: [{name: t, command: pytest}]\n")
    with pytest.raises(ConfigError) as err:
        load(tmp_path)
    assert str(err.value) == (
        f"{tmp_path / '.handoff' / 'config.yml'}: the config is read from config.yaml; rename it"
    )
    for args in (("config", "show"), ("init",)):
        result = cli("-C", str(tmp_path), *args)
        assert result.code == 2 and result.err == f"specwright: error: {err.value}\n"
    assert not (tmp_path / ".handoff" / "config.yaml").exists()


@pytest.mark.parametrize("target", ["../moved/shared.yaml", "loop"])
def test_a_config_link_that_leads_nowhere_is_one_line_not_the_defaults(
    tmp_path: Path,
    cli,
    target: str,  # type: ignore[no-untyped-def]
) -> None:
    """`.handoff/config.yaml` a symbolic link to a file that moved (or a loop of links): every
    command went on with the built-in defaults (another executor, no verification steps) as
    if there were no file, and `init` stopped with a traceback."""
    handoff = tmp_path / ".handoff"
    handoff.mkdir()
    (handoff / "config.yaml").symlink_to(target)
    (handoff / "loop").symlink_to("config.yaml")
    with pytest.raises(
        ConfigError, match=rf"config\.yaml: cannot read: a symbolic link to {target}, "
    ):
        load(tmp_path)
    for args in (("config", "show"), ("init",)):
        result = cli("-C", str(tmp_path), *args)
        lines = result.err.strip().splitlines()
        assert result.code == 2 and len(lines) == 1, result.err
        assert lines[0].startswith("specwright: error: ") and f"link to {target}" in lines[0]


def test_default_executor_when_the_file_names_none(tmp_path: Path) -> None:
    """No `executors:` section: the built-in ones and their default, like no file at all (not
    the scripted fake). Executors listed without `defaults.executor`: the built-in default's
    name if listed, else the first one listed."""
    (tmp_path / ".handoff").mkdir()
    (tmp_path / ".handoff" / "config.yaml").write_text("defaults: {parallel: 2}\n")
    config = load(tmp_path)
    builtin = Config.default()
    assert config.defaults.parallel == 2
    assert config.executors == builtin.executors
    assert config.defaults.executor == builtin.defaults.executor == "claude-code"
    assert config.executor().type == "claude-code"
    for listed, default in [
        ("{}", "claude-code"),
        ("{glm: {type: opencode}, cc: {type: claude-code, model: m}}", "glm"),
        ("{glm: {type: opencode}, claude-code: {type: claude-code, model: m}}", "claude-code"),
        ("{mine: {type: scripted}}", "mine"),
    ]:
        config = load_text(f"tools: {{executors: {listed}}}\n", "cfg.yaml")
        assert (config.defaults.executor, config.executor().name) == (default, default), listed
        assert "scripted" in config.executors  # the built-in fake stays available


def test_an_llm_reviewer_may_use_the_built_in_planner() -> None:
    """A file that adds an LLM reviewer but lists no planners reviews with the built-in planner
    (the one `plan` uses), rather than being refused with an empty list of planners."""
    config = load_text(
        "tools:\n  reviewers:\n    strict: {type: llm, planner: claude}\n"
        "defaults:\n  reviewer: strict\n",
        "cfg.yaml",
    )
    assert config.reviewer().name == "strict"
    assert config.planner(config.reviewer().planner).type == "anthropic"


def test_config_show_redacts_secrets_from_the_environment(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli,  # type: ignore[no-untyped-def]
) -> None:
    """A key substituted from the environment into an agent's env, argv or a URL was printed
    in full by `config show`, whose output ends up in CI logs and bug reports."""
    secret = "sk-live-0123456789abcdef"
    monkeypatch.setenv("MY_API_KEY", secret)
    (tmp_path / ".handoff").mkdir()
    (tmp_path / ".handoff" / "config.yaml").write_text(
        "tools:\n  executors:\n    x:\n      type: command\n"
        '      argv: [agent, --key, "${MY_API_KEY}", "{prompt}"]\n'
        '      env: {OPENAI_API_KEY: "${MY_API_KEY}", MODE: fast}\n'
        '  planners:\n    p: {base_url: "https://u:${MY_API_KEY}@llm.invalid"}\n'
    )
    for json_flag in ((), ("--json",)):
        result = cli("-C", str(tmp_path), *json_flag, "config", "show")
        assert result.code == 0, result.err
        assert secret not in result.out and result.out.count("[REDACTED:MY_API_KEY]") == 3
        assert "fast" in result.out and "agent" in result.out


def test_config_show_says_what_the_environment_overrides(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli,  # type: ignore[no-untyped-def]
) -> None:
    """OPENCODE_URL, CLAUDE_PATH and SPECWRIGHT_DB win over what the file says, and `config
    show` printed the file's url and path as if they were used, and no database at all."""
    import yaml

    (tmp_path / ".handoff").mkdir()
    (tmp_path / ".handoff" / "config.yaml").write_text(
        "tools:\n  executors:\n"
        "    cc: {type: claude-code, model: m, path: /usr/bin/claude}\n"
        "    a: {type: opencode, provider: p, model: m, url: 'http://127.0.0.1:4100'}\n"
        "    b: {type: opencode, provider: p, model: m}\n"
    )
    monkeypatch.setenv("OPENCODE_URL", "http://127.0.0.1:4999")
    monkeypatch.setenv("CLAUDE_PATH", "/opt/claude")
    monkeypatch.setenv("SPECWRIGHT_DB", str(tmp_path / "other.duckdb"))
    result = cli("-C", str(tmp_path), "config", "show")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[1] == (
        f"# database: {tmp_path / 'other.duckdb'} (from SPECWRIGHT_DB; no file there yet)"
    )
    assert (
        "      url: http://127.0.0.1:4999  # from OPENCODE_URL (the file says http://127.0.0.1:4100)"
        in lines
    )
    assert "      url: http://127.0.0.1:4999  # from OPENCODE_URL" in lines  # b: none in the file
    assert "      path: /opt/claude  # from CLAUDE_PATH (the file says /usr/bin/claude)" in lines
    assert yaml.safe_load(result.out)["tools"]["executors"]["a"]["url"] == "http://127.0.0.1:4999"
    import json

    shown = json.loads(cli("-C", str(tmp_path), "--json", "config", "show").out)
    assert shown["tools"]["executors"]["cc"]["path"] == "/opt/claude"
    assert shown["database"] == {
        "path": str(tmp_path / "other.duckdb"),
        "from": "SPECWRIGHT_DB",
        "exists": False,  # what only reads it refuses it: a mistyped path, say
    }
    assert shown["overridden"][:2] == [
        {
            "key": "tools.executors.cc.path",
            "from": "CLAUDE_PATH",
            "value": "/opt/claude",
            "file": "/usr/bin/claude",
        },
        {
            "key": "tools.executors.a.url",
            "from": "OPENCODE_URL",
            "value": "http://127.0.0.1:4999",
            "file": "http://127.0.0.1:4100",
        },
    ]
    for name in ("OPENCODE_URL", "CLAUDE_PATH", "SPECWRIGHT_DB"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("SPECWRIGHT_DB", "http://db.invalid/x")
    result = cli("-C", str(tmp_path), "config", "show")
    assert result.code == 0 and result.out.splitlines()[1] == (
        "# database: none (SPECWRIGHT_DB http://db.invalid/x: expected a database file path, "
        "not a URL)"
    )
    monkeypatch.delenv("SPECWRIGHT_DB")
    result = cli("-C", str(tmp_path), "config", "show")
    assert "from " not in result.out.replace("# resolved from", "")
    assert f"# database: {tmp_path / 'data' / 'specwright.duckdb'} (no file there yet)\n" in (
        result.out
    )
    Store(tmp_path / "data" / "specwright.duckdb").migrate()
    result = cli("-C", str(tmp_path), "config", "show")
    assert f"# database: {tmp_path / 'data' / 'specwright.duckdb'}\n" in result.out
    assert "      url: http://127.0.0.1:4100\n" in result.out


def test_config_show_lists_the_keys_each_executor_type_uses(
    tmp_path: Path,
    cli,  # type: ignore[no-untyped-def]
) -> None:
    """Every executor showed all sixteen keys, a claude-code one `url: null`, `argv: []` and
    `permission_policy: allow`, as if they applied; `--json` keeps every key."""
    import json

    import yaml

    result = cli("-C", str(tmp_path), "config", "show")
    shown = yaml.safe_load(result.out)["tools"]["executors"]
    assert list(shown["claude-code"]) == [
        "type", "model", "path", "max_turns", "permission_mode", "timeout_s", "env", "options"
    ]  # fmt: skip
    assert "url" in shown["opencode"] and "max_turns" not in shown["opencode"]
    assert set(shown["scripted"]) == {"type", "model", "timeout_s", "env", "script", "options"}
    every = json.loads(cli("-C", str(tmp_path), "--json", "config", "show").out)
    assert "url" in every["tools"]["executors"]["claude-code"]


def test_a_key_the_executors_type_does_not_use_is_a_warning_naming_file_line_and_key(
    tmp_path: Path,
    cli,  # type: ignore[no-untyped-def]
) -> None:
    """A `url` on a claude-code executor or `max_turns` on an opencode one was accepted and
    ignored without a word (a user believed the turn limit held). Keys that came from a `<<:`
    merge are shared between types on purpose and are not warned about."""
    (tmp_path / ".handoff").mkdir()
    (tmp_path / ".handoff" / "config.yaml").write_text(
        "tools:\n  executors:\n"
        "    base: &base {type: opencode, provider: p, model: m, url: 'http://127.0.0.1:1'}\n"
        "    cc:\n      <<: *base\n      type: claude-code\n      model: m\n"
        "      argv: [agent]\n"
        "    oc: {type: opencode, provider: p, model: m, max_turns: 4}\n"
    )
    result = cli("-C", str(tmp_path), "config", "show")
    assert result.code == 0, result.err
    source = tmp_path / ".handoff" / "config.yaml"
    assert result.err.splitlines() == [
        f"specwright: warning: {source}:8: tools.executors.cc.argv: ignored: claude-code "
        "executors do not use it; it is for command executors",
        f"specwright: warning: {source}:9: tools.executors.oc.max_turns: ignored: opencode "
        "executors do not use it; it is for claude-code executors",
    ]


def test_defaults_nested_without_end_are_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`${A:-${A:-...}}` thousands deep (a generated file gone wrong) was a RecursionError."""
    for name in "ABC":
        monkeypatch.delenv(name, raising=False)
    deep = "${A:-" * 5000 + "x" + "}" * 5000
    with pytest.raises(ConfigError, match=r"^cfg.yaml:1: rules\[0\]: .*: defaults nested over 20 "):
        load_text(f'rules: ["{deep}"]\n', "cfg.yaml")
    assert load_text('rules: ["${A:-${B:-${C:-x}}}"]\n', "cfg.yaml").rules == ("x",)


def test_a_model_on_a_checks_reviewer_is_a_warning(
    tmp_path: Path,
    cli,  # type: ignore[no-untyped-def]
) -> None:
    """`strict: {model: claude-opus-4-5}` (type left out: checks) read as a model review, and
    every chunk shipped on its checks alone without a word."""
    (tmp_path / ".handoff").mkdir()
    (tmp_path / ".handoff" / "config.yaml").write_text(
        "tools:\n  reviewers:\n    strict: {model: claude-opus-4-5}\n    fine: {type: checks}\n"
    )
    result = cli("-C", str(tmp_path), "config", "show")
    assert result.code == 0, result.err
    assert result.err == (
        f"specwright: warning: {tmp_path / '.handoff' / 'config.yaml'}:3: "
        "tools.reviewers.strict.model: ignored: a checks reviewer ships on passing verification "
        "alone; type: llm has a model review the diff\n"
    )


@pytest.mark.parametrize("written", ["${M-x}", "${M:=x}", "${M:?say}", "${1M}", "${M:-x", "a${M"])
def test_a_substitution_of_another_form_is_an_error_not_the_text(
    written: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`${MODEL-claude}` (a shell form this config does not read) stayed as written, so the
    agent was asked for a model named "${MODEL-claude}"; `$HOME` and `$${` stay as they were."""
    monkeypatch.setenv("M", "set")
    text = f'tools:\n  executors:\n    c: {{type: claude-code, model: "{written}"}}\n'
    with pytest.raises(ConfigError) as err:
        load_text(text, "cfg.yaml")
    assert str(err.value) == (
        f"cfg.yaml:3: tools.executors.c.model: {written.removeprefix('a')!r}: expected ${{VAR}} "
        "or ${VAR:-default} (write $${ for a literal ${)"
    )
    fine = 'tools:\n  executors:\n    c: {type: claude-code, model: "$M $(x) $${y} ${M}"}\n'
    assert load_text(fine, "cfg.yaml").executor("c").model == "$M $(x) ${y} set"


def test_c_to_a_folder_inside_a_project_uses_that_project(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli,  # type: ignore[no-untyped-def]
) -> None:
    """`cd src && specwright ...` and a notebook's `-p project_dir src` use the project above,
    but `-C src` made src a project of its own: the built-in config instead of the file, and a
    second database under src/data/. `init` still makes the folder it is given a project."""
    (tmp_path / ".handoff").mkdir()
    (tmp_path / ".handoff" / "config.yaml").write_text(
        "tools:\n  executors:\n    mine: {type: scripted}\n"
    )
    (tmp_path / "src" / "deep").mkdir(parents=True)
    monkeypatch.delenv("SPECWRIGHT_DB", raising=False)  # the project's own database
    result = cli("-C", str(tmp_path / "src" / "deep"), "config", "show")
    assert result.code == 0, result.err
    assert result.out.splitlines()[:2] == [
        f"# resolved from {tmp_path / '.handoff' / 'config.yaml'}",
        f"# database: {tmp_path / 'data' / 'specwright.duckdb'} (no file there yet)",
    ]
    assert cli("-C", str(tmp_path / "src"), "spec", "new", "Here").code == 0
    assert not (tmp_path / "src" / "data").exists()
    assert "here" in cli("-C", str(tmp_path), "spec", "list").out
    assert cli("-C", str(tmp_path / "src"), "init").code == 0
    assert (tmp_path / "src" / ".handoff" / "config.yaml").is_file()


EXECUTOR_MISTAKES = [
    (
        "oc: {type: opencode, provider: zai, model: glm-4.7, permission_policy: sometimes}",
        r"cfg.yaml:3: tools.executors.oc.permission_policy: expected one of allow, once, always, "
        r"reject, deny, got 'sometimes'$",
    ),
    (
        "c: {type: command, prompt_via: pipe, argv: [agent, '{prompt}']}",
        r"cfg.yaml:3: tools.executors.c.prompt_via: expected one of arg, stdin, got 'pipe'$",
    ),
    ("c: {type: command}", r"cfg.yaml:3: tools.executors.c.argv: missing; a command executor"),
    ("c: {type: command, argv: [agent]}", r"tools.executors.c.argv: has no \{prompt\} placeholder"),
    (
        "c: {type: command, argv: [agent, -m, '{model}', '{prompt}']}",
        r"cfg.yaml:3: tools.executors.c.model: missing; argv has a \{model\} placeholder",
    ),
    (
        "c: {type: command, argv: [agent, '{prompt}'], parser: json}",
        r"tools.executors.c.parser: expected one of codex, plain or 'module:function', got 'json'",
    ),
    ("cc: {type: claude-code}", r"cfg.yaml:3: tools.executors.cc.model: missing; claude-code"),
    (
        "cc: {type: claude-code, model: m, permission_mode: yolo}",
        r"tools.executors.cc.permission_mode: expected one of acceptEdits, .*, got 'yolo'$",
    ),
    (
        "cc: {type: claude-code, model: m, options: {extra_args: --verbose}}",
        r"tools.executors.cc.options.extra_args: expected a list of strings, got '--verbose'$",
    ),
    (
        "oc: {type: opencode, model: glm-4.7}",
        r"tools.executors.oc.model: 'glm-4.7' needs a provider",
    ),
    (
        "oc: {type: opencode, url: 'localhost:4096'}",
        r"cfg.yaml:3: tools.executors.oc.url: expected an http\(s\) URL .*, got 'localhost:4096'$",
    ),
]


@pytest.mark.parametrize(
    ("entry", "message"), EXECUTOR_MISTAKES, ids=[e for e, _ in EXECUTOR_MISTAKES]
)
def test_what_an_executor_type_needs_is_checked_when_the_config_loads(
    entry: str, message: str
) -> None:
    """These were checked only when the executor was first used, in an error naming neither
    the file nor the line nor the key (`config show` said nothing, `run` failed late)."""
    with pytest.raises(ConfigError, match=message):
        load_text(f"tools:\n  executors:\n    {entry}\n", "cfg.yaml")


def test_a_planners_endpoint_and_key_variable_are_checked_when_the_config_loads() -> None:
    """A key pasted as `api_key_env` is refused without being echoed (it is a secret)."""
    key = "sk-ant-api03-0123456789abcdef"
    with pytest.raises(ConfigError) as err:
        load_text(f"tools:\n  planners:\n    p: {{api_key_env: {key}}}\n", "cfg.yaml")
    assert str(err.value).startswith(
        "cfg.yaml:3: tools.planners.p.api_key_env: expected the name of an environment variable"
    )
    assert key not in str(err.value)
    with pytest.raises(ConfigError, match=r"cfg.yaml:3: tools.planners.p.base_url: expected an"):
        load_text("tools:\n  planners:\n    p: {base_url: api.anthropic.com}\n", "cfg.yaml")
    empty = 'tools:\n  planners:\n    p: {base_url: "${NO_URL:-}"}\n'  # unset: the default
    assert load_text(empty, "cfg.yaml").planners["p"].base_url == ""


def test_config_show_and_run_refuse_a_bad_executor_setting_in_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli,  # type: ignore[no-untyped-def]
) -> None:
    (tmp_path / ".handoff").mkdir()
    config = tmp_path / ".handoff" / "config.yaml"
    config.write_text(
        "tools:\n  executors:\n"
        "    oc:\n      type: opencode\n      provider: zai\n      model: glm-4.7\n"
        "      permission_policy: sometimes\n"
    )
    monkeypatch.setenv("SPECWRIGHT_DB", str(tmp_path / "db.duckdb"))
    expected = (
        f"{config}:7: tools.executors.oc.permission_policy: expected one of allow, once, "
        "always, reject, deny, got 'sometimes'"
    )
    assert cli("-C", str(tmp_path), "spec", "new", "x").code == 0
    assert cli("-C", str(tmp_path), "chunk", "add", "x", "one", "--prompt", "p").code == 0
    for args in (("config", "show"), ("agents", "list"), ("run", "x:1", "--executor", "oc")):
        result = cli("-C", str(tmp_path), *args)
        assert result.code == 2, args
        assert result.err.strip() == f"specwright: error: {expected}", args


def test_the_adapters_accept_what_the_config_check_accepts() -> None:
    from specwright.agents.command import PARSERS
    from specwright.agents.opencode import POLICIES
    from specwright.config_check import COMMAND_PARSERS, PERMISSION_POLICIES

    assert tuple(POLICIES) == PERMISSION_POLICIES
    assert tuple(PARSERS) == COMMAND_PARSERS


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            ["type: claude-code", "model: m", "env:", '  A: "x\\0y"'],
            r"cfg.yaml:7: tools.executors.x.env.A: contains a NUL character",
        ),
        (
            ["type: command", "argv:", "  - echo", '  - "a\\0b"', '  - "{prompt}"'],
            r"cfg.yaml:5: tools.executors.x.argv\[1\]: contains a NUL character",
        ),
        (
            ["type: command", 'argv: [echo, "{prompt}"]', "env:", '  "A=B": x'],
            r"cfg.yaml:7: tools.executors.x.env.A=B: expected an environment variable's name",
        ),
        (
            ["type: claude-code", "model: m", "options:", "  stream_log: [a]"],
            r"cfg.yaml:7: tools.executors.x.options.stream_log: expected a path, got \['a'\]",
        ),
    ],
    ids=["nul-env", "nul-argv", "env-name", "stream-log-list"],
)
def test_what_no_command_line_or_environment_can_hold_is_refused_when_the_config_loads(
    lines: list[str], message: str
) -> None:
    """A NUL in argv or env, or an `=` in a variable's name, was a ValueError traceback when
    the agent started; a list as `options.stream_log` made a file named "['a']"."""
    body = "".join(f"      {line}\n" for line in lines)
    with pytest.raises(ConfigError, match=message):
        load_text(f"tools:\n  executors:\n    x:\n{body}", "cfg.yaml")
