"""Tool use for models without native tool calling: the tools are described in the system prompt
and the model answers with one JSON object, constrained by a JSON schema (Ollama's ``format``,
an OpenAI-style ``response_format``):

    {"action": "tool", "tool": "query_cases", "arguments": {"risk_level": "critical"}}
    {"action": "answer", "answer": "There are 3 critical cases: ..."}

Small models still wrap JSON in prose or code fences, use Python literals or leave trailing
commas, so parsing is lenient, and whatever cannot be read as a decision is taken as the answer.
``AnswerStreamer`` pulls the ``answer`` string out of the JSON while it streams, so the user sees
the answer arrive token by token in this mode too.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_ANSWER_KEY = re.compile(r'[{,]\s*"answer"\s*:\s*"')
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
ANSWER_KEYS = ("answer", "response", "final_answer", "content", "text")
ARGUMENT_KEYS = ("arguments", "parameters", "args", "input")


def _balanced_objects(text: str) -> Iterable[str]:
    """Every top-level ``{...}`` span, skipping braces inside strings."""
    depth = 0
    start = -1
    in_string = False
    escaped = False
    quote = ""
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                in_string = False
        elif char in "\"'" and depth:  # outside an object, quotes are prose ("here's")
            in_string, quote = True, char
        elif char == "{":
            if depth == 0:
                start = index
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                yield text[start : index + 1]


def _load(candidate: str) -> dict[str, Any] | None:
    for text in (candidate, _TRAILING_COMMA.sub(r"\1", candidate)):
        try:
            value = json.loads(text)
        except ValueError:
            try:  # single quotes, True/False/None: a Python literal, evaluated safely
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                continue
        if isinstance(value, dict):
            return value
    return None


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (bare, fenced, or embedded in prose), or None."""
    stripped = text.strip()
    if not stripped:
        return None
    candidates = [stripped, *(m.group(1).strip() for m in _FENCE.finditer(stripped))]
    for candidate in candidates:
        found = _load(candidate)
        if found is not None:
            return found
    for span in _balanced_objects(stripped):
        found = _load(span)
        if found is not None:
            return found
    return None


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class ToolDecision:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AnswerDecision:
    text: str


Decision = ToolDecision | AnswerDecision


def parse_decision(text: str) -> Decision:
    """What the model decided; anything that is not a readable tool call is the answer."""
    obj = parse_json_object(text)
    if obj is None:
        return AnswerDecision(text.strip())
    action = str(obj.get("action", "")).lower()
    name = obj.get("tool") or obj.get("name") or obj.get("tool_name")
    if isinstance(name, str) and name and action in ("tool", "call", "tool_call", ""):
        arguments: Any = next((obj[k] for k in ARGUMENT_KEYS if k in obj), {})
        if isinstance(arguments, str):
            arguments = parse_json_object(arguments) or {}
        return ToolDecision(name, arguments if isinstance(arguments, dict) else {})
    for key in ANSWER_KEYS:
        if isinstance(obj.get(key), str):
            return AnswerDecision(obj[key].strip())
    return AnswerDecision(text.strip())


def decision_schema(tool_names: list[str]) -> dict[str, Any]:
    """The JSON schema the reply must follow; with no tools left, only an answer fits."""
    if not tool_names:
        return {
            "type": "object",
            "properties": {
                "action": {"type": "string", "enum": ["answer"]},
                "answer": {"type": "string"},
            },
            "required": ["action", "answer"],
        }
    return {
        "type": "object",
        "properties": {
            "action": {"type": "string", "enum": ["tool", "answer"]},
            "tool": {"type": "string", "enum": tool_names},
            "arguments": {"type": "object"},
            "answer": {"type": "string"},
        },
        "required": ["action"],
    }


def tool_instructions(tools: list[tuple[str, str, dict[str, Any]]]) -> str:
    """The system-prompt section that stands in for native tool definitions."""
    lines = [
        "You can call these tools to read data. Each is listed with its JSON-schema arguments:"
    ]
    for name, description, parameters in tools:
        lines.append(f"- {name}: {description} Arguments: {json.dumps(parameters)}")
    lines += [
        "",
        "Reply with exactly one JSON object and nothing else. To call a tool:",
        '{"action": "tool", "tool": "<tool name>", "arguments": {...}}',
        "To answer the user (markdown allowed inside the string):",
        '{"action": "answer", "answer": "<your answer>"}',
        "Tool results come back in a message that starts with 'Tool result'.",
    ]
    return "\n".join(lines)


def final_instructions() -> str:
    return (
        "No more tool calls are possible. Reply with exactly one JSON object: "
        '{"action": "answer", "answer": "<your answer>"}, using the data you already have.'
    )


# --------------------------------------------------------------------------- streaming


class AnswerStreamer:
    """Feed the raw JSON as it streams; get back the decoded text of its ``answer`` string."""

    def __init__(self) -> None:
        self._raw = ""
        self._pos = -1  # where the answer's next undecoded character sits; -1: not found yet
        self._closed = False

    def feed(self, chunk: str) -> str:
        self._raw += chunk
        if self._closed:
            return ""
        if self._pos < 0:
            match = _ANSWER_KEY.search(self._raw)
            if match is None:
                return ""
            self._pos = match.end()
        out: list[str] = []
        raw, pos = self._raw, self._pos
        while pos < len(raw):
            char = raw[pos]
            if char == '"':
                self._closed = True
                pos += 1
                break
            if char != "\\":
                out.append(char)
                pos += 1
                continue
            decoded, used = self._escape(raw, pos)
            if used == 0:  # the escape is not complete yet: wait for the next chunk
                break
            out.append(decoded)
            pos += used
        self._pos = pos
        return "".join(out)

    @staticmethod
    def _escape(raw: str, pos: int) -> tuple[str, int]:
        """The text of the escape at ``pos`` and its length, or ("", 0) if it is incomplete."""
        if pos + 1 >= len(raw):
            return "", 0
        kind = raw[pos + 1]
        if kind != "u":
            return _ESCAPES.get(kind, kind), 2
        if pos + 6 > len(raw):
            return "", 0
        code = int(raw[pos + 2 : pos + 6], 16) if _is_hex(raw[pos + 2 : pos + 6]) else 0xFFFD
        if 0xD800 <= code < 0xDC00:  # a surrogate pair needs its second half
            if pos + 12 > len(raw):
                return "", 0
            low = raw[pos + 8 : pos + 12]
            if raw[pos + 6 : pos + 8] == "\\u" and _is_hex(low):
                pair = (code - 0xD800) * 0x400 + (int(low, 16) - 0xDC00) + 0x10000
                return chr(pair), 12
            return "\ufffd", 6
        if 0xDC00 <= code < 0xE000:  # a lone second half cannot be encoded
            return "\ufffd", 6
        return chr(code), 6


def _is_hex(text: str) -> bool:
    return len(text) == 4 and all(c in "0123456789abcdefABCDEF" for c in text)
