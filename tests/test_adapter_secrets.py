"""Secrets an agent prints never reach the store, the journal, the Outcome (the loop's summary
and commit message) or the CLI: whole, URL-encoded, JSON-escaped, broken over two lines, or cut
in half by a bound on stderr. Real subprocesses, a real DuckDB file and its journal."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from specwright.agents import Task, run_execution
from specwright.agents.command import CommandExecutor
from specwright.recorder import ExecutionRecorder
from specwright.redact import Redactor
from specwright.store import Store
from tests.support_agents import executor_config, fake_cli

# Characters that URL-encoding and JSON-escaping change, like real base64 tokens have.
SECRET = 'tok"en/ab+cd=ef\\gh&ij-klmnop-qrstuv'
HALVES = (SECRET[:14], SECRET[14:])

LEAKY = """
import json, os, sys, urllib.parse
s = os.environ["MY_API_TOKEN"]
print("plain:", s)
print("url:", urllib.parse.quote(s, safe=""))
print("url-lower:", urllib.parse.quote(s, safe="").replace("%2F", "%2f"))
print("query:", urllib.parse.urlencode({"token": s}))
print("json:", json.dumps({"token": s}))
print("json in json:", json.dumps(json.dumps({"token": s})))
print("split:", s[:14])
print(s[14:])
sys.stderr.write("fatal: token " + s + "\\n" + "z" * 3975 + "\\n")
sys.exit(3)
"""


def everything_recorded(store: Store) -> str:
    """Every row of every table the agent side writes, and every journal file, as one text."""
    parts = []
    for table in ("executions", "events"):
        for row in store.query_dicts(f"SELECT * FROM {table}"):
            parts.append(json.dumps(row, default=str, ensure_ascii=False))
    for path in sorted(store.journal.root.rglob("*")):
        if path.is_file():
            parts.append(path.read_text(errors="replace"))
    return "\n".join(parts)


def assert_no_secret(text: str) -> None:
    import urllib.parse

    forms = {
        SECRET,
        urllib.parse.quote(SECRET, safe=""),
        urllib.parse.quote_plus(SECRET),
        json.dumps(SECRET)[1:-1],
        *HALVES,
        SECRET[-12:],  # the end a bound could cut off
    }
    found = sorted(form for form in forms if form in text)
    assert not found, f"secret forms recorded: {found}"


def test_every_form_of_a_secret_is_redacted_everywhere(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_API_TOKEN", SECRET)
    agent = fake_cli(tmp_path / "bin", "leaky", LEAKY)
    executor = CommandExecutor(executor_config(type="command", argv=(str(agent), "{prompt}")))
    recorder = ExecutionRecorder(store, role="executor", backend="command")
    outcome = run_execution(executor, Task("go", tmp_path), recorder, threading.Event())
    assert outcome.status == "error" and outcome.exit_reason == "exit 3"
    recorded = everything_recorded(store)
    assert recorded.count("[REDACTED:MY_API_TOKEN]") >= 9  # the lines were kept, not dropped
    assert_no_secret(recorded)
    # what the loop turns into the chunk summary and commit message, and the CLI prints
    assert_no_secret(outcome.final_text + "\n" + (outcome.error or ""))
    assert "[REDACTED:MY_API_TOKEN]" in outcome.final_text


def _agent_given(
    store: Store, tmp_path: Path, code: str, env: dict[str, str]
) -> tuple[Any, list[str]]:
    """Run a command agent (Python ``code``) given ``env`` in its executor config (not in our
    environment); its outcome (it must succeed) and the text events recorded."""
    agent = fake_cli(tmp_path / "bin", "agent", code)
    config = executor_config(type="command", argv=(str(agent), "{prompt}"), env=env)
    recorder = ExecutionRecorder(store, role="executor", backend="command")
    outcome = run_execution(CommandExecutor(config), Task("go", tmp_path), recorder)
    assert outcome.ok
    texts = [r["text"] for r in store.query_dicts("SELECT text FROM events WHERE type = 'text'")]
    return outcome, texts


def test_a_secret_only_the_agent_gets_is_redacted_across_lines(
    store: Store, tmp_path: Path
) -> None:
    """``env`` in the executor config (not in our environment) is redacted too, also when the
    agent breaks it over two lines."""
    code = 'import os\ns = os.environ["DEPLOY_TOKEN"]\nprint("a" + s[:9])\nprint(s[9:] + "b")\n'
    outcome, texts = _agent_given(store, tmp_path, code, {"DEPLOY_TOKEN": SECRET})
    assert texts == ["a[REDACTED:DEPLOY_TOKEN]", "[REDACTED:DEPLOY_TOKEN]b"]
    assert_no_secret(everything_recorded(store) + outcome.final_text)


def test_agents_check_prints_no_secret(
    cli: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "proj"
    (root / ".handoff").mkdir(parents=True)
    agent = fake_cli(tmp_path / "bin", "leaky", LEAKY)
    (root / ".handoff" / "config.yaml").write_text(
        f"tools:\n  executors:\n    leaky: {{type: command, argv: [{str(agent)!r}, '{{prompt}}']}}\n"
        "defaults:\n  executor: leaky\n"
    )
    monkeypatch.chdir(root)
    monkeypatch.setenv("MY_API_TOKEN", SECRET)
    r = cli("--json", "agents", "check", "leaky")
    assert r.code == 1, r.err
    shown = json.loads(r.out)
    assert "[REDACTED:MY_API_TOKEN]" in shown["answer"]
    assert_no_secret(r.out + r.err)


# Long enough that `base64` wraps it, with bytes that encode to "+" and "/" (and "-", "_").
B64_SECRET = SECRET + "~~~>>>???" + SECRET

B64_LEAKY = """
import base64, os, subprocess, sys
s = os.environ["MY_API_TOKEN"]
sys.stdout.write(subprocess.run(["bash", "-c", 'echo "$MY_API_TOKEN" | base64'],
                                capture_output=True, text=True, check=True).stdout)
with open("deploy.env", "w") as fh:  # 45 bytes before it: its base64 spans three lines
    fh.write("# deploy settings, keep private\\nMY_API_TOKEN=" + s + "\\nREGION=eu\\n")
sys.stdout.write(subprocess.run(["base64", "deploy.env"], capture_output=True, text=True,
                                check=True).stdout)
print("bare:", base64.b64encode(s.encode()).decode())
for user in ("", "u:", "ci:"):  # the three alignments of the secret inside a longer text
    print("Authorization: Basic " + base64.b64encode((user + s + "!x").encode()).decode())
    print("url-safe:", base64.urlsafe_b64encode((user + s).encode()).decode().rstrip("="))
"""


def base64_pieces(secret: str, size: int = 12) -> set[str]:
    """Every ``size``-char run of base64 that encodes bytes of ``secret`` only, whatever the
    alignment, in both alphabets."""
    import base64

    pieces = set()
    for shift, first in ((0, 0), (1, 2), (2, 3)):
        encoded = base64.b64encode(b"\0" * shift + secret.encode()).decode()
        core = encoded[first : 8 * (shift + len(secret.encode())) // 6]
        for text in (core, core.replace("+", "-").replace("/", "_")):
            pieces.update(text[i : i + size] for i in range(len(text) - size + 1))
    return pieces


def test_a_base64_encoded_secret_is_redacted(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent running `echo $KEY | base64` (wrapped at 76 columns, with the newline) or
    `base64 deploy.env` (the secret inside, over three lines), or printing a Basic auth header
    (the secret at any byte alignment), in either alphabet."""
    monkeypatch.setenv("MY_API_TOKEN", B64_SECRET)
    agent = fake_cli(tmp_path / "bin", "b64", B64_LEAKY)
    executor = CommandExecutor(executor_config(type="command", argv=(str(agent), "{prompt}")))
    recorder = ExecutionRecorder(store, role="executor", backend="command")
    outcome = run_execution(executor, Task("go", tmp_path), recorder, threading.Event())
    assert outcome.ok, outcome.error
    recorded = everything_recorded(store) + "\n" + outcome.final_text
    leaked = sorted(p for p in base64_pieces(B64_SECRET) if p in recorded)
    assert not leaked, f"base64 pieces of the secret recorded: {leaked[:5]}"
    texts = [r["text"] for r in store.query_dicts("SELECT text FROM events WHERE type = 'text'")]
    assert all("[REDACTED:MY_API_TOKEN]" in t for t in texts), texts
    assert "Authorization: Basic [REDACTED:MY_API_TOKEN]" in recorded


def test_base64_forms_leave_other_text_and_short_values_alone() -> None:
    import base64

    r = Redactor({"MY_API_TOKEN": B64_SECRET, "SHORT_KEY": "abc1234"})
    clean = "ordinary output: dG9rZW4= c2hvcnQ= QUJD\n" + base64.b64encode(b"x" * 200).decode()
    assert r(clean) == clean and r.lines(clean) == clean
    short = base64.b64encode(b"abc1234").decode()  # too short to be a credential: kept as before
    assert r(short) == short and r("abc1234") == "abc1234"
    wrapped = base64.encodebytes((B64_SECRET + "\n").encode()).decode()  # `echo | base64`
    assert r(wrapped) == "[REDACTED:MY_API_TOKEN]\n"


def test_a_hex_dumped_secret_is_redacted() -> None:
    """`xxd -p deploy.env` (60 columns a line: the secret broken anywhere), `.hex()`, either case;
    other hex is left alone."""
    r = Redactor({"MY_API_TOKEN": SECRET})
    raw = SECRET.encode()
    for before in ("", "a", "ab", "MY_API_TOKEN="):  # every alignment against the 60-column wrap
        dump = (before.encode() + raw + b"\n").hex()
        xxd = "\n".join(dump[i : i + 60] for i in range(0, len(dump), 60)) + "\n"
        for text in (xxd, xxd.upper(), "key: " + raw.hex() + " end"):
            for out in (r(text), r.lines(text)):  # whole, and line by line as a stream is read
                flat = out.replace("\n", "").lower()
                assert "[REDACTED:MY_API_TOKEN]" in out, (before, out)
                assert raw.hex()[4:-4] not in flat, (before, out)
    clean = (b"ordinary bytes " * 8).hex() + "\n" + "deadbeef" * 20
    assert r(clean) == clean and r.lines(clean) == clean


@pytest.mark.parametrize(
    "text",
    [
        "x" + SECRET[:20],  # a text that stops inside a secret
        SECRET[-20:] + "x",  # one that starts inside it
    ],
)
def test_edges_redact_a_cut_secret(text: str) -> None:
    r = Redactor({"MY_API_TOKEN": SECRET})
    out = r.edges(text)
    assert "[REDACTED:MY_API_TOKEN]" in out and SECRET[5:19] not in out
    assert r.edges("nothing secret here") == "nothing secret here"
    assert r.across("abc " + SECRET[:3], SECRET[3:] + " def") == "[REDACTED:MY_API_TOKEN] def"


def test_the_git_author_is_no_secret() -> None:
    """GIT_AUTHOR_NAME/EMAIL hold "AUTH" but name a person: `git log` output an agent ran is
    kept as it is; a variable whose name says AUTH is still a secret."""
    env = {
        "GIT_AUTHOR_NAME": "Jane Developer",
        "GIT_AUTHOR_EMAIL": "jane@example.com",
        "GH_AUTH": "gho_abcdefghijklmnop",
        "OAUTH_CLIENT_SECRET": "s3cr3t-v4lue",
    }
    r = Redactor.from_env(env)
    log = "commit 1a2b3c\nAuthor: Jane Developer <jane@example.com>\n"
    assert r(log) == log and r.lines(log) == log
    assert (
        r("gho_abcdefghijklmnop s3cr3t-v4lue")
        == "[REDACTED:GH_AUTH] [REDACTED:OAUTH_CLIENT_SECRET]"
    )


def test_a_secret_over_three_lines_is_redacted_whole_text_and_line_by_line() -> None:
    """A tool's whole output (``__call__``), a text line by line (``lines``) and a stream
    (``across``): `base64 FILE` with the secret inside, and the secret folded at 30 columns."""
    import base64

    r = Redactor({"MY_API_TOKEN": B64_SECRET})
    encoded = base64.encodebytes(
        b"# deploy settings, keep private\nMY_API_TOKEN=" + B64_SECRET.encode()
    )
    dump = encoded.decode()
    assert dump.count("\n") == 3
    folded = "key: " + "\n".join(B64_SECRET[i : i + 30] for i in range(0, len(B64_SECRET), 30))
    # its first line ends with too little of it to tell (3 chars), its second is all secret
    late = "abc " + B64_SECRET[:3] + "\n" + B64_SECRET[3:40] + "\n" + B64_SECRET[40:] + " end"
    for text in (dump, folded, late):
        streamed, before, open_end = [], "", False  # as the recorder calls it
        for line in text.split("\n"):
            streamed.append(r.across(before, line, open_end=open_end))
            open_end = r.ends_redacted(streamed[-1])
            before += line
        outs = [r.lines(text), "\n".join(streamed)] + ([r(text)] if text is dump else [])
        for out in outs:
            assert "[REDACTED:MY_API_TOKEN]" in out
            leaked = [p for p in base64_pieces(B64_SECRET) | {B64_SECRET[30:42]} if p in out]
            assert not leaked, (out, leaked)
    assert r.lines(dump).startswith("IyBkZXBsb3kgc2V0dGluZ3MsIGtlZXAgcHJpdmF0ZQpNWV9BUElfVE9LRU49")


def test_a_multi_line_secret_is_redacted_line_by_line(store: Store, tmp_path: Path) -> None:
    """A PEM key in a variable (DEPLOY_PRIVATE_KEY) that an agent echoes: every line of it
    is redacted in the stream of text events and in the outcome, not the first one only."""
    import base64

    body = base64.b64encode(bytes(range(256)) * 2).decode()
    pem = "-----BEGIN PRIVATE KEY-----\n"
    pem += "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    pem += "\n-----END PRIVATE KEY-----"
    code = 'import os\nprint("key:")\nprint(os.environ["DEPLOY_PRIVATE_KEY"])\n'
    outcome, texts = _agent_given(store, tmp_path, code, {"DEPLOY_PRIVATE_KEY": pem})
    assert texts[0] == "key:" and set(texts[1:]) == {"[REDACTED:DEPLOY_PRIVATE_KEY]"}, texts
    recorded = everything_recorded(store) + outcome.final_text
    assert not [line for line in pem.splitlines()[1:-1] if line in recorded]


def test_a_secret_that_is_not_utf8_is_redacted_not_a_crash(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A variable's bytes need not be UTF-8 (os.environ keeps them as surrogate escapes):
    recording went down with UnicodeEncodeError; the value is found as the agent's output
    is read (U+FFFD for each bad byte) and URL-encoded."""
    import os

    monkeypatch.setenv("MY_API_TOKEN", os.fsdecode(b"tok\xff\xfe-abcdefgh-ijkl"))
    agent = fake_cli(
        tmp_path / "bin",
        "bytes",
        "import os, sys, urllib.parse\n"
        'raw = os.environb[b"MY_API_TOKEN"]\n'
        'sys.stdout.buffer.write(b"got " + raw + b"\\n")\n'
        'print("url", urllib.parse.quote(raw, safe=""))\n',
    )
    executor = CommandExecutor(executor_config(type="command", argv=(str(agent), "{prompt}")))
    recorder = ExecutionRecorder(store, role="executor", backend="command")
    outcome = run_execution(executor, Task("go", tmp_path), recorder)
    assert outcome.ok, outcome.error
    texts = [r["text"] for r in store.query_dicts("SELECT text FROM events WHERE type = 'text'")]
    assert texts == ["got [REDACTED:MY_API_TOKEN]", "url [REDACTED:MY_API_TOKEN]"]
    assert Redactor({"K": "\ud800" * 8})("x") == "x"  # a lone surrogate of no byte: no crash


def test_a_wrapped_secret_in_an_events_json_is_redacted(store: Store) -> None:
    """A tool call's input and an event's raw payload are stored as JSON, where a line break
    is two characters (``\\n``): `base64 deploy.env` output in Claude's Bash result (raw
    ``tool_use_result``) or a Write of it (input) was stored with the secret's pieces."""
    import base64

    from specwright.model import ToolCall, ToolResult

    dump = base64.encodebytes(
        b"# deploy settings, keep private\nMY_API_TOKEN=" + B64_SECRET.encode() + b"\n"
    ).decode()
    with ExecutionRecorder(
        store,
        role="executor",
        backend="claude_code",
        redactor=Redactor({"MY_API_TOKEN": B64_SECRET}),
    ) as rec:
        rec.on_event(ToolCall("t1", "Write", {"file_path": "b64.txt", "content": dump}))
        rec.on_event(
            ToolResult("t2", "done", False, "Bash", raw={"tool_use_result": {"stdout": dump}})
        )
        rec.finish(status="ok")
    recorded = everything_recorded(store)
    assert recorded.count("[REDACTED:MY_API_TOKEN]") >= 2
    leaked = sorted(p for p in base64_pieces(B64_SECRET) if p in recorded)
    assert not leaked, leaked


def test_the_live_progress_lines_of_a_run_show_no_secret(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tool call's command and an error the agent reports are shown live (a terminal, a
    notebook's output that is saved): redacted as the recorded events are."""
    from specwright.loop import run_chunk
    from tests.support_loop import make_chunk, make_config, make_repo, scripted

    monkeypatch.setenv("MY_API_TOKEN", SECRET)
    repo = make_repo(tmp_path / "repo")
    chunk = make_chunk(store, repo)
    script = [
        {"run": f"echo calling with {SECRET}"},
        {"fail": f"the server refused key {SECRET}"},
    ]
    seen: list[str] = []
    run_chunk(
        store,
        make_config(),
        repo,
        chunk,
        executor=scripted(script),
        on_progress=lambda p: seen.append(p.message),
    )
    shown = "\n".join(seen)
    assert "echo calling with [REDACTED:MY_API_TOKEN]" in shown
    assert "the server refused key [REDACTED:MY_API_TOKEN]" in shown
    assert_no_secret(shown)


def test_a_secret_named_variable_holding_a_path_is_no_secret(tmp_path: Path) -> None:
    """SSH_AUTH_SOCK and PASSWORD_STORE_DIR name files: every path under them was shown as
    [REDACTED:...]; a value that only looks like a path (a token may start with /) still counts."""
    sock, store_dir = tmp_path / "ssh" / "agent.1", tmp_path / "pass"
    sock.parent.mkdir()
    sock.write_text("")
    store_dir.mkdir()
    token = "/q8Zr+kT3vW9xY2bN5mP7sL1"
    redact = Redactor.from_env(
        {"SSH_AUTH_SOCK": str(sock), "PASSWORD_STORE_DIR": str(store_dir), "MY_TOKEN": token}
    )
    text = f"ls {sock} {store_dir}/github; curl -H 'x: {token}'"
    assert redact(text) == f"ls {sock} {store_dir}/github; curl -H 'x: [REDACTED:MY_TOKEN]'"


PLANNER_KEY_LEAKY = """
import os
print("the planner's key:", os.environ["ZAI_LLM"])
"""


def test_a_planner_key_in_a_variable_with_a_plain_name_is_redacted_too(
    cli: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`api_key_env: ZAI_LLM` says that variable holds a key, though its name does not: an agent
    (which gets the whole environment) printing it is redacted like any KEY or TOKEN variable."""
    root = tmp_path / "proj"
    (root / ".handoff").mkdir(parents=True)
    agent = fake_cli(tmp_path / "bin", "leaky", PLANNER_KEY_LEAKY)
    (root / ".handoff" / "config.yaml").write_text(
        f"tools:\n  executors:\n    leaky: {{type: command, argv: [{str(agent)!r}, '{{prompt}}']}}\n"
        "  planners:\n    glm: {type: anthropic, model: glm-4.7, api_key_env: ZAI_LLM}\n"
        "defaults:\n  executor: leaky\n  planner: glm\n"
    )
    monkeypatch.chdir(root)
    monkeypatch.setenv("ZAI_LLM", SECRET)
    r = cli("--json", "agents", "check", "leaky")
    shown = json.loads(r.out)
    assert "[REDACTED:ZAI_LLM]" in shown["answer"], shown["answer"]
    assert_no_secret(r.out + r.err)
