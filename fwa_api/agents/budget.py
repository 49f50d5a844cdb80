"""The prompt's token budget (``FWA_AGENT_PROMPT_TOKENS``): a cheap estimate of a prompt's size,
and the trimming that keeps it within the budget, so that a long turn never overflows the model's
context window (a server then fails the call, and everything gathered would be lost).

Tokens are estimated from characters, at ``CHARS_PER_TOKEN`` each: JSON, ids and figures take
more tokens than prose, so the estimate errs on the large side. What gives way, in order: the
oldest history, then tool results, whose longest lists keep their first rows (the tools return
the most relevant first: highest risk, most hits, latest activity) and whose long texts are cut,
with a note saying so.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

from fwa_api.agents.llm import Message

CHARS_PER_TOKEN = 3
MESSAGE_TOKENS = 4  # a message's role and separators
MIN_RESULT_CHARS = 600  # below this a tool result says too little to be worth sending
TRIMMED = "shortened to fit the prompt: lists keep their first rows, long texts are cut"


def estimate(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN + 1


def estimate_messages(messages: Sequence[Message]) -> int:
    return sum(estimate(m.content) + MESSAGE_TOKENS for m in messages)


def chars_for(tokens: int) -> int:
    return max(0, tokens) * CHARS_PER_TOKEN


def dump(data: Any) -> str:
    return json.dumps(data, default=str, separators=(",", ":"))


def _largest(node: Any, kind: type) -> tuple[int, Any, Any] | None:
    """(size, container, key) of the largest ``kind`` value worth shrinking under ``node``."""
    best: tuple[int, Any, Any] | None = None
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        if isinstance(value, dict | list):
            found = _largest(value, kind)
            if found is not None and (best is None or found[0] > best[0]):
                best = found
        if isinstance(value, kind) and len(value) > (1 if kind is list else 80):
            size = len(dump(value))
            if best is None or size > best[0]:
                best = (size, node, key)
    return best


def shrink(data: dict[str, Any], max_chars: int) -> dict[str, Any]:
    """``data`` as it fits in ``max_chars`` of JSON: its largest lists halved and its longest
    texts cut, largest first, until it fits; the original is not changed."""
    if len(dump(data)) <= max_chars:
        return data
    out = copy.deepcopy(data)
    out["trimmed"] = TRIMMED
    while len(dump(out)) > max_chars:
        found = _largest(out, list) or _largest(out, str)
        if found is None:
            return {"trimmed": TRIMMED, "keys": sorted(data)[:20]}
        _, container, key = found
        value = container[key]
        container[key] = (
            value[: (len(value) + 1) // 2]
            if isinstance(value, list)
            else (value[: len(value) // 2] + "…")
        )
    return out


def fit_history(history: list[Message], tokens: int) -> list[Message]:
    """The newest part of ``history`` that fits in ``tokens``, starting with a question."""
    kept: list[Message] = []
    used = 0
    for message in reversed(history):
        used += estimate(message.content) + MESSAGE_TOKENS
        if used > tokens:
            break
        kept.append(message)
    kept.reverse()
    while kept and kept[0].role != "user":
        kept.pop(0)
    return kept
