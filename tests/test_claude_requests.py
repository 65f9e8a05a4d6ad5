"""Telling a Claude Code execution's API requests apart, to price each at its own tier: the
stream's snapshots against the result line, and the outputs from the session's transcript.
Pure and file-level; the real CLI's end-to-end checks are in test_agents_claude_cost.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from specwright.agents import claude_transcript
from specwright.agents.claude_stream import ClaudeStreamState, parse_line, requests_of
from specwright.agents.claude_transcript import reply_outputs


def assistant(msg_id: str, input_tokens: int, output_tokens: int = 1) -> str:
    usage = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    message = {"id": msg_id, "model": "claude-sonnet-4-5", "usage": usage, "content": []}
    return json.dumps({"type": "assistant", "session_id": "s1", "message": message})


def result(input_tokens: int, output_tokens: int) -> str:
    usage = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    return json.dumps({"type": "result", "session_id": "s1", "usage": usage})


def state_of(*lines: str) -> ClaudeStreamState:
    state = ClaudeStreamState()
    for line in lines:
        parse_line(line, state)
    return state


def test_outputs_come_from_the_transcript_and_the_rest_is_spread() -> None:
    state = state_of(
        assistant("m1", 100), assistant("m2", 200), assistant("m3", 300), result(600, 91)
    )
    state.outputs = {"m1": 50}
    got = requests_of(state)
    assert got is not None
    assert [(u.input_tokens, u.output_tokens) for u in got] == [(100, 50), (200, 21), (300, 20)]


@pytest.mark.parametrize(
    ("total_input", "outputs"),
    [
        (500, {}),  # the result counts requests the stream did not show (or fewer)
        (600, {"m1": 80, "m2": 30}),  # the transcript says more output than the result
    ],
)
def test_requests_that_do_not_add_up_to_the_result_are_not_used(
    total_input: int, outputs: dict[str, int]
) -> None:
    state = state_of(assistant("m1", 100), assistant("m2", 500), result(total_input, 100))
    state.outputs = outputs
    assert requests_of(state) is None  # the recorder prices the result's totals


def transcript(root: Path, session: str, *lines: str) -> None:
    folder = root / "projects" / "-work-repo"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{session}.jsonl").write_text("".join(line + "\n" for line in lines))


def test_the_transcript_gives_each_reply_its_largest_output(tmp_path: Path) -> None:
    transcript(
        tmp_path,
        "abc-123",
        assistant("m1", 10, output_tokens=3),  # an early content block's line
        assistant("m1", 10, output_tokens=40),
        "not json",
        json.dumps({"type": "assistant", "message": {"id": "m2", "usage": {"output_tokens": "7"}}}),
        json.dumps({"type": "user", "message": {"id": "m3", "usage": {"output_tokens": 9}}}),
    )
    assert reply_outputs(tmp_path, "abc-123") == {"m1": 40}


@pytest.mark.parametrize("session", ["../abc-123", "*", "", None, "a/b", {"not": "a name"}])
def test_a_session_id_that_is_not_a_name_reads_nothing(tmp_path: Path, session: Any) -> None:
    transcript(tmp_path, "abc-123", assistant("m1", 10, output_tokens=40))
    assert reply_outputs(tmp_path / "projects" / "x", session) == {}
    assert reply_outputs(tmp_path, session) == {}


def test_an_overlong_transcript_line_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(claude_transcript, "MAX_LINE_BYTES", 200)
    big = json.dumps({"type": "assistant", "pad": "x" * 1000})
    transcript(tmp_path, "s", big, assistant("m1", 10, output_tokens=40))
    assert reply_outputs(tmp_path, "s") == {"m1": 40}
