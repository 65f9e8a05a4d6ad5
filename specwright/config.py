"""`.handoff/config.yaml` -> a typed, validated ``Config``.

The dataclasses below are the reference for the YAML: each field is a key, its comment says what
it means. ``${VAR}`` and ``${VAR:-default}`` are substituted in every string value. Unknown keys,
wrong types and dangling references (``defaults.executor`` naming no executor) are errors that
name the file, the line and the key path, as does what an executor's type or a planner
cannot work with (config_check.py); a key its type does not use is a warning. Without a file, ``Config.default()`` applies; a file
that leaves out `tools.executors`, `tools.planners` or `tools.reviewers` gets that section's
built-in entries (the scripted executor and the checks reviewer are always there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from specwright import envsubst, redact
from specwright.config_check import (
    check_executor,
    check_executor_name,
    check_planner,
    check_reviewer,
)
from specwright.config_yaml import MAX_BYTES, Ctx, Marked, line_of, plain
from specwright.errors import ConfigError
from specwright.model import MAX_BUDGET_USD, MAX_ITERATIONS, MAX_PARALLEL

CONFIG_RELPATH = Path(".handoff") / "config.yaml"
EXECUTOR_TYPES = ("claude-code", "opencode", "command", "scripted")
PLANNER_TYPES = ("anthropic",)
REVIEWER_TYPES = ("checks", "llm")
ROLLBACK_POLICIES = ("rollback", "keep")


@dataclass(frozen=True)
class ExecutorConfig:
    """A coding agent. ``type`` picks the adapter; the other keys configure it."""

    name: str
    type: str  # claude-code | opencode | command | scripted
    model: str | None = None  # model id passed to the agent (claude: --model; opencode: modelID)
    provider: str | None = None  # opencode providerID (e.g. zai, anthropic)
    path: str | None = None  # executable (CLAUDE_PATH / OPENCODE_PATH win, then this, then PATH);
    # a relative path (and a command argv[0]) with a "/" is from the project folder
    url: str | None = None  # opencode server URL (OPENCODE_URL wins over every url; default
    # localhost:4096). config_env.py: what the environment overrides, which config show marks
    argv: tuple[str, ...] = ()  # command: argv template; "{prompt}" is replaced by the prompt
    prompt_via: str = "arg"  # command: "arg" ({prompt} in argv) or "stdin"
    parser: str | None = None  # command: optional JSON-lines parser name (e.g. "codex")
    max_turns: int | None = None  # claude-code: --max-turns
    permission_mode: str = "acceptEdits"  # claude-code: acceptEdits | bypassPermissions | ...
    permission_policy: str = "allow"  # opencode: allow | always | reject (once=allow, deny=reject)
    timeout_s: float = 1800.0  # wall time for one execution
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the agent
    script: str | None = None  # scripted: path of a script file (else the chunk's own script)
    options: dict[str, Any] = field(default_factory=dict)  # adapter-specific extras


@dataclass(frozen=True)
class PlannerConfig:
    """A model that plans (and, for llm reviewers, reviews) through the Anthropic Messages API."""

    name: str
    type: str = "anthropic"
    model: str = "claude-opus-4-5"
    base_url: str | None = None  # ANTHROPIC_BASE_URL when unset
    api_key_env: str = "ANTHROPIC_API_KEY"  # the environment variable holding the key
    max_tokens: int = 8192
    timeout_s: float = 120.0
    max_retries: int = 2


@dataclass(frozen=True)
class ReviewerConfig:
    """Decides SHIP / REVISE / BLOCKED after verification."""

    name: str
    type: str = "checks"  # checks: SHIP when verification passed; llm: a model reviews the diff
    planner: str | None = None  # llm: which planner entry's model and endpoint to use
    model: str | None = None  # llm: overrides the planner's model


@dataclass(frozen=True)
class VerifyStep:
    """One verification command, run in the chunk's work tree after every attempt."""

    name: str
    command: str
    timeout_s: float = 600.0


@dataclass(frozen=True)
class Defaults:
    """What a command uses when it names none. Left out, ``executor``, ``planner`` and
    ``reviewer`` are the built-in default below when the file lists one of that name (or lists
    none: the built-in entries apply), else the first one the file lists."""

    executor: str = "claude-code"  # an executor's name
    planner: str = "claude"  # a planner's name
    reviewer: str = "checks"  # a reviewer's name
    max_iterations: int = 3  # YAML key: maxIterations
    budget_usd: float | None = None  # per spec; also the per-chunk cap unless a chunk sets one
    rollback: str = "rollback"  # rollback: reset failed attempts to the base; keep: build on them
    parallel: int = 1  # chunks run at once by run-all
    wall_time_s: float | None = None  # per chunk, all iterations together


@dataclass(frozen=True)
class Price:
    """USD per million tokens, for models the price library lacks or prices differently."""

    input: float
    output: float
    cache_write: float | None = None
    cache_write_1h: float | None = None
    cache_read: float | None = None
    provider: str = ""


@dataclass(frozen=True)
class Config:
    executors: dict[str, ExecutorConfig]
    planners: dict[str, PlannerConfig]
    reviewers: dict[str, ReviewerConfig]
    defaults: Defaults = field(default_factory=Defaults)
    verify: tuple[VerifyStep, ...] = ()
    rules: tuple[str, ...] = ()
    prices: dict[str, Price] = field(default_factory=dict)
    source: str | None = None  # the file it came from, None for built-in defaults

    @staticmethod
    def default() -> Config:
        """The configuration used when a project has no `.handoff/config.yaml`."""
        return load_text(DEFAULT_YAML, source=None)

    def _unknown(self, kind: str, key: str, known: dict[str, Any]) -> str:
        where = self.source or "built-in defaults (no .handoff/config.yaml)"
        return (
            f"{where}: tools.{kind}s: no {kind} {key!r}; expected one of {', '.join(sorted(known))}"
        )

    def executor(self, name: str | None = None) -> ExecutorConfig:
        key = name or self.defaults.executor
        if key not in self.executors:
            raise ConfigError(self._unknown("executor", key, self.executors))
        return self.executors[key]

    def planner(self, name: str | None = None) -> PlannerConfig:
        key = name or self.defaults.planner
        if key not in self.planners:
            raise ConfigError(self._unknown("planner", key, self.planners))
        return self.planners[key]

    def reviewer(self, name: str | None = None) -> ReviewerConfig:
        key = name or self.defaults.reviewer
        if key not in self.reviewers:
            raise ConfigError(self._unknown("reviewer", key, self.reviewers))
        return self.reviewers[key]


DEFAULT_YAML = """\
tools:
  executors:
    claude-code:
      type: claude-code
      model: claude-sonnet-4-5
      max_turns: 40
    opencode:
      type: opencode
      provider: zai
      model: glm-4.7
    scripted:
      type: scripted
  planners:
    claude:
      type: anthropic
      model: claude-opus-4-5
  reviewers:
    checks:
      type: checks
    llm:
      type: llm
      planner: claude
defaults:
  executor: claude-code
  planner: claude
  reviewer: checks
  maxIterations: 3
  rollback: rollback
  parallel: 1
verify: []
rules: []
"""

# --- loading --------------------------------------------------------------------------------


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
# durations and counts where 0 would mean "fail at once" or, to an agent, "no limit"
_ABOVE_ZERO = {"timeout_s", "wall_time_s", "max_tokens", "max_turns", "max_iterations", "parallel"}
# by YAML key, the numbers the command line bounds too (--parallel, --max-iterations, --budget)
_AT_MOST = {"parallel": MAX_PARALLEL, "maxIterations": MAX_ITERATIONS, "budget_usd": MAX_BUDGET_USD}


def _check_type(
    ctx: Ctx, parent: Any, key: str, path: str, value: Any, want: type, above_zero: bool = False
) -> Any:
    """``value`` as ``want``; every number in a config is a count, a duration, a price or a
    budget, so a number must also be finite and >= 0 (> 0 when ``above_zero``). A quoted
    ``${...}`` where a number is wanted reads as one: a ``{ }`` mapping needs it quoted."""
    if want is not str and isinstance(value, str) and key in getattr(parent, "quoted", ()):
        value = envsubst.typed(value)
    if want is str and not isinstance(value, str):  # `${SEED}` with SEED=42 where text is wanted
        value = getattr(parent, "texts", {}).get(key, value)
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, want) and not (want is int and isinstance(value, bool)):
        if isinstance(value, int | float) and not (
            math.isfinite(value) and (value > 0 if above_zero else value >= 0)
        ):
            least = "a number >= 0" if not above_zero else "a number > 0"
            least = "an integer >= 1" if above_zero and want is int else least
            raise ctx.fail(line_of(parent, key), path, f"expected {least}, got {value!r}")
        if isinstance(value, int | float) and value > _AT_MOST.get(key, math.inf):
            least = "an integer from 1" if above_zero and want is int else "a number from 0"
            least += f" to {_AT_MOST[key]:,}"
            raise ctx.fail(line_of(parent, key), path, f"expected {least}, got {value!r}")
        return value
    hint = " (YAML reads yes, no, on, off as booleans: quote text)"
    shown = f"{value!r}" + hint * (isinstance(value, bool) and want is str)
    if want in (int, float) and isinstance(value, str):  # quoted, or 1e3 (text to YAML 1.1)
        try:
            number = float(value.strip().replace("_", ""))
        except ValueError:
            number = math.nan
        if math.isfinite(number) and (want is float or number.is_integer()):
            plain = int(number) if want is int else number
            shown += f" (YAML read it as text: write the number as {plain!r})"
    raise ctx.fail(
        line_of(parent, key), path, f"expected {_TYPE_NAMES.get(want, want.__name__)}, got {shown}"
    )


def _build(
    cls: type, data: Any, ctx: Ctx, path: str, renames: dict[str, str] | None = None, **fixed: Any
) -> Any:
    if data is None:
        data = Marked({}, 0, {})
    if not isinstance(data, dict):
        raise ctx.fail(line_of(data), path, f"expected a mapping, got {data!r}")
    renames = renames or {}
    known = {f.name: f for f in fields(cls) if f.name not in fixed}
    kwargs: dict[str, Any] = dict(fixed)
    for key, value in data.items():
        attr = renames.get(key, key)
        kpath = f"{path}.{key}"
        alias = next((k for k in data if k != key and renames.get(k, k) == attr), None)
        if alias is not None:
            raise ctx.fail(line_of(data, key), kpath, f"set twice: as {key} and as {alias}")
        if attr not in known:
            valid = sorted(
                {renames.get(k, k) for k in known} - set(renames.values()) | set(renames)
            )
            raise ctx.fail(
                line_of(data, key),
                kpath,
                f"unknown key; expected one of {', '.join(sorted(valid))}",
            )
        ftype = str(known[attr].type)
        if value is None and "None" in ftype:
            kwargs[attr] = None
            continue
        if ftype.startswith("dict"):
            if not isinstance(value, dict):
                raise ctx.fail(line_of(data, key), kpath, f"expected a mapping, got {value!r}")
            if ftype.startswith("dict[str, str]"):  # env: numbers read as text, like compose
                value = {k: _text(ctx, value, k, f"{kpath}.{k}", v) for k, v in value.items()}
            kwargs[attr] = _unmarked(value)
        elif ftype.startswith("tuple"):
            if not isinstance(value, list):
                raise ctx.fail(line_of(data, key), kpath, f"expected a list, got {value!r}")
            texts = getattr(value, "texts", {})  # `- ${SEED}` with SEED=42: the text 42
            items = [texts.get(i, v) for i, v in enumerate(value)]
            for i, item in enumerate(items):
                _check_type(ctx, data, key, f"{kpath}[{i}]", item, str)
            kwargs[attr] = tuple(items)
        else:
            base = ftype.split("|")[0].strip()
            want = {"str": str, "int": int, "float": float, "bool": bool}.get(base, str)
            kwargs[attr] = _check_type(ctx, data, key, kpath, value, want, attr in _ABOVE_ZERO)
    return cls(**kwargs)


def _text(ctx: Ctx, parent: Any, key: str, path: str, value: Any) -> str:
    value = getattr(parent, "texts", {}).get(key, value)
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ctx.fail(line_of(parent, key), path, f"expected a string, got {value!r}")


def _unmarked(value: Any) -> Any:
    """Plain dicts and lists (the line marks are for errors; ``asdict`` cannot copy them)."""
    if isinstance(value, dict):
        return {k: _unmarked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unmarked(v) for v in value]
    return value


def _choice(
    ctx: Ctx, parent: Any, key: str, path: str, value: str, allowed: tuple[str, ...]
) -> None:
    if value not in allowed:
        raise ctx.fail(
            line_of(parent, key), path, f"expected one of {', '.join(allowed)}, got {value!r}"
        )


def _section(ctx: Ctx, root: Any, key: str, path: str) -> Any:
    value = root.get(key) if isinstance(root, dict) else None
    if value is None:
        return Marked({}, line_of(root, key) or 0, {})
    if not isinstance(value, dict):
        raise ctx.fail(line_of(root, key), path, f"expected a mapping, got {value!r}")
    return value


def load_text(text: str, source: str | None = "<string>") -> Config:
    """Parse and validate a config from YAML text; ``source`` names it in errors."""
    import yaml

    ctx = Ctx(source or "<built-in defaults>")
    try:
        node = yaml.compose(text)
    except RecursionError:
        raise ConfigError(f"{ctx.source}: invalid YAML: nested too deeply") from None
    except yaml.reader.ReaderError as exc:  # str(exc) is two lines, the second a position
        at = text[: exc.position].count("\n") + 1
        raise ConfigError(
            f"{ctx.source}:{at}: invalid YAML: unacceptable character #x{exc.character:04x}: "
            f"{exc.reason}"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        if problem.startswith("but ") and context:  # half a sentence without its start
            problem = f"{context}, {problem}"
        lines = text.splitlines()
        if mark and mark.line < len(lines) and "${" in lines[mark.line] and "'{'" in problem:
            problem += ' (in a { } mapping, quote a ${...}: "${VAR:-default}")'
        raise ConfigError(f"{ctx.source}{line}: invalid YAML: {problem}") from None
    root = plain(node, ctx, "") if node is not None else Marked({}, 0, {})
    if not isinstance(root, dict):
        raise ctx.fail(1, "(top level)", f"expected a mapping, got {root!r}")
    top_keys = ("tools", "defaults", "verify", "rules", "prices")
    for key in root:
        if key not in top_keys and not key.startswith("x-"):  # x-: a home for anchors
            raise ctx.fail(
                line_of(root, key),
                key,
                f"unknown key; expected one of {', '.join(top_keys)} (or x-NAME for anchors)",
            )
    tools = _section(ctx, root, "tools", "tools")
    for key in tools:
        if key not in ("executors", "planners", "reviewers"):
            raise ctx.fail(
                line_of(tools, key),
                f"tools.{key}",
                "unknown key; expected one of executors, planners, reviewers",
            )

    def entries(section: str, cls: type, types: tuple[str, ...], default_type: str | None) -> dict:
        raw = _section(ctx, tools, section, f"tools.{section}")
        out = {}
        for name, body in raw.items():
            path = f"tools.{section}.{name}"
            if body is None:
                body = Marked({}, line_of(raw, name) or 0, {})
            if not isinstance(body, dict):
                raise ctx.fail(line_of(raw, name), path, f"expected a mapping, got {body!r}")
            if "type" not in body and default_type is None:
                raise ctx.fail(
                    line_of(raw, name),
                    f"{path}.type",
                    f"missing; expected one of {', '.join(types)}",
                )
            entry = _build(cls, body, ctx, path, name=name)
            _choice(ctx, body, "type", f"{path}.type", entry.type, types)
            if cls is ExecutorConfig:
                check_executor_name(ctx, line_of(raw, name), path, name)
                check_executor(ctx, body, path, entry)
            elif cls is PlannerConfig:
                check_planner(ctx, body, path, entry)
            else:
                check_reviewer(ctx, body, path, entry)
            out[name] = entry
        return out

    executors = entries("executors", ExecutorConfig, EXECUTOR_TYPES, None)
    planners = entries("planners", PlannerConfig, PLANNER_TYPES, "anthropic")
    redact.declare(p.api_key_env for p in planners.values())  # whatever the variable's name
    reviewers = listed = entries("reviewers", ReviewerConfig, REVIEWER_TYPES, "checks")
    # Built-ins are always there: the scripted executor (demo, tests) and the checks reviewer.
    # A section the file leaves out falls back to the built-in entries of that section.
    if source is not None:
        builtin = Config.default()
        executors = executors or dict(builtin.executors)
        executors.setdefault("scripted", builtin.executors["scripted"])
        planners = planners or dict(builtin.planners)
        reviewers = reviewers or dict(builtin.reviewers)
        reviewers.setdefault("checks", builtin.reviewers["checks"])

    for name, rev in listed.items():  # the file's own reviewers, with the built-in planners
        if rev.type == "llm" and rev.planner is not None and rev.planner not in planners:
            raise ctx.fail(
                line_of(_section(ctx, tools, "reviewers", ""), name),
                f"tools.reviewers.{name}.planner",
                f"unknown planner {rev.planner!r}; expected one of {', '.join(sorted(planners))}",
            )

    raw_defaults = _section(ctx, root, "defaults", "defaults")
    implied = {}
    for key, pool in (("executor", executors), ("planner", planners), ("reviewer", reviewers)):
        if key not in raw_defaults and pool and getattr(Defaults, key) not in pool:
            implied[key] = next(iter(pool))  # the first one the file lists
    defaults = _build(
        Defaults, raw_defaults, ctx, "defaults", renames={"maxIterations": "max_iterations"}
    )
    if implied:
        from dataclasses import replace

        defaults = replace(defaults, **implied)
    for key, pool, attr in (
        ("executor", executors, defaults.executor),
        ("planner", planners, defaults.planner),
        ("reviewer", reviewers, defaults.reviewer),
    ):
        if key in raw_defaults and attr not in pool:
            raise ctx.fail(
                line_of(raw_defaults, key),
                f"defaults.{key}",
                f"unknown {key} {attr!r}; expected one of {', '.join(sorted(pool)) or '(none configured)'}",
            )
    if "rollback" in raw_defaults:
        _choice(
            ctx, raw_defaults, "rollback", "defaults.rollback", defaults.rollback, ROLLBACK_POLICIES
        )
    raw_verify = root.get("verify") or []
    if not isinstance(raw_verify, list):
        raise ctx.fail(
            line_of(root, "verify"), "verify", f"expected a list of steps, got {raw_verify!r}"
        )
    verify = []
    for i, step in enumerate(raw_verify):
        path = f"verify[{i}]"
        if not isinstance(step, dict):
            raise ctx.fail(
                line_of(raw_verify), path, f"expected a mapping with name and command, got {step!r}"
            )
        for required in ("name", "command"):
            if required not in step:
                raise ctx.fail(line_of(step), f"{path}.{required}", "missing")
        verify.append(_build(VerifyStep, step, ctx, path))

    raw_rules = root.get("rules") or []
    if isinstance(raw_rules, str):
        raw_rules = [raw_rules]
    if not isinstance(raw_rules, list) or not all(isinstance(r, str) for r in raw_rules):
        raise ctx.fail(line_of(root, "rules"), "rules", "expected a list of strings")

    prices = {}
    for model, body in _section(ctx, root, "prices", "prices").items():
        path = f"prices.{model}"
        if not isinstance(body, dict) or "input" not in body or "output" not in body:
            raise ctx.fail(
                line_of(root.get("prices"), model),
                path,
                "expected a mapping with at least input and output (USD per million tokens)",
            )
        prices[str(model)] = _build(Price, body, ctx, path)

    return Config(
        executors=executors,
        planners=planners,
        reviewers=reviewers,
        defaults=defaults,
        verify=tuple(verify),
        rules=tuple(raw_rules),
        prices=prices,
        source=source,
    )


def find_project_root(start: Path | str | None = None) -> Path:
    """The nearest directory at or above ``start`` holding `.handoff/`, else ``start``."""
    here = Path(start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / ".handoff").is_dir():
            return candidate
    return here


def load(project_root: Path | str | None = None) -> Config:
    """The project's config: `.handoff/config.yaml` if present, else the built-in defaults (not
    for a symbolic link there that leads nowhere: the project's executors and checks would be
    replaced by the defaults without a word)."""
    root = Path(project_root) if project_root else find_project_root()
    path = root / CONFIG_RELPATH
    if not path.exists():
        if path.is_symlink():
            raise ConfigError(f"{path}: cannot read: {unresolved_link(path)}")
        if path.with_suffix(".yml").is_file():  # the defaults instead, without a word
            raise ConfigError(
                f"{path.with_suffix('.yml')}: the config is read from {path.name}; rename it"
            )
        return Config.default()
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{path}: more than {MAX_BYTES >> 20} MB; a config is a few KB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}: cannot read: not UTF-8 (byte 0x{data[exc.start]:02x})"
        ) from None
    return _anchored(load_text(text, source=str(path)), root)


def _anchored(config: Config, root: Path) -> Config:
    """``config`` with each executor's relative program path (``path``, a command's
    ``argv[0]``; one with a ``/``, not a bare name looked up on PATH) made absolute from the
    project ``root``: from a notebook (its kernel runs in ``notebooks/``) or with ``-C DIR``, it
    named another file or none."""
    import os
    from dataclasses import replace

    def absolute(program: str) -> str:
        program = os.path.expanduser(program)
        return program if os.sep not in program or os.path.isabs(program) else str(root / program)

    executors = {}
    for name, entry in config.executors.items():
        if entry.path:
            entry = replace(entry, path=absolute(entry.path))
        if entry.type == "command" and entry.argv:
            entry = replace(entry, argv=(absolute(entry.argv[0]), *entry.argv[1:]))
        executors[name] = entry
    return replace(config, executors=executors)


def unresolved_link(path: Path) -> str:
    """Why the symbolic link ``path`` leads to no file, for an error."""
    import os

    return (
        f"a symbolic link to {os.readlink(path)}, which is missing or a loop of links; "
        "expected the config file there"
    )


def to_dict(config: Config) -> dict[str, Any]:
    """The resolved config as plain data (for `specwright config show`)."""
    from dataclasses import asdict

    def clean(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: clean(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [clean(v) for v in obj]
        return obj

    def entries(section: dict[str, Any]) -> dict[str, Any]:
        return {
            name: {k: clean(v) for k, v in body.items() if k != "name"}
            for name, body in section.items()
        }

    d = asdict(config)
    out = {
        "source": config.source,
        "tools": {k: entries(d[k]) for k in ("executors", "planners", "reviewers")},
        "defaults": d["defaults"],
        "verify": clean(d["verify"]),
        "rules": list(config.rules),
        "prices": entries(d["prices"]),
    }
    out["defaults"]["maxIterations"] = out["defaults"].pop("max_iterations")
    return out
