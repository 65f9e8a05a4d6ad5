"""Wire formats of the fake model server: Anthropic Messages JSON and SSE events, OpenAI chat
completion JSON and stream chunks, built from a scripted ``Turn``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from specwright.testing.model_turns import Turn


def _anthropic_json(turn: Turn, model: str, msg_id: str) -> dict[str, Any]:
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [dict(b) for b in turn.content],
        "stop_reason": turn.stop_reason,
        "stop_sequence": None,
        "usage": turn.usage,
    }


def _pieces(text: str, size: int) -> list[str]:
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _anthropic_events(turn: Turn, model: str, msg_id: str) -> Iterable[tuple[str, dict[str, Any]]]:
    start_usage = {**turn.usage, "output_tokens": 1 if turn.usage else 0}
    yield (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": start_usage,
            },
        },
    )
    yield "ping", {"type": "ping"}
    for index, block in enumerate(turn.content):
        if block.get("type") == "tool_use":
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            yield (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
            for piece in _pieces(json.dumps(block.get("input", {})), turn.chunk_size):
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": piece},
                    },
                )
        else:
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            for piece in _pieces(str(block.get("text", "")), turn.chunk_size):
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                )
        if turn.mid_stream_error:
            yield "error", turn.error or {}
            return
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": turn.stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": turn.usage.get("output_tokens", 0)},
        },
    )
    yield "message_stop", {"type": "message_stop"}


def _openai_tool_calls(turn: Turn) -> list[dict[str, Any]]:
    return [
        {
            "id": b["id"],
            "type": "function",
            "function": {
                "name": b["name"],
                "arguments": b.get("arguments", json.dumps(b.get("input", {}))),
            },
        }
        for b in turn.content
        if b.get("type") == "tool_use"
    ]


def _openai_text(turn: Turn) -> str | None:
    texts = [str(b.get("text", "")) for b in turn.content if b.get("type") == "text"]
    return "".join(texts) if texts else None


def _openai_json(turn: Turn, model: str, msg_id: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": _openai_text(turn), "refusal": None}
    calls = _openai_tool_calls(turn)
    if calls:
        message["tool_calls"] = calls
    return {
        "id": msg_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": turn.stop_reason}
        ],
        "usage": turn.usage,
        "system_fingerprint": None,
    }


def _openai_chunks(turn: Turn, model: str, msg_id: str, include_usage: bool) -> Iterable[Any]:
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": msg_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            out["usage"] = None
        return out

    yield chunk({"role": "assistant", "content": ""})
    text = _openai_text(turn)
    if text:
        for piece in _pieces(text, turn.chunk_size):
            yield chunk({"content": piece})
    for index, call in enumerate(_openai_tool_calls(turn)):
        fn = call["function"]
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": fn["name"], "arguments": ""},
                    }
                ]
            }
        )
        for piece in _pieces(fn["arguments"], turn.chunk_size):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield chunk({}, turn.stop_reason)
    if include_usage:
        yield {
            "id": msg_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
            "choices": [],
            "usage": turn.usage,
        }
    yield "[DONE]"
