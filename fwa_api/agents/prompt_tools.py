"""Tool use for models without native tool calling: the tools are described in the system prompt
and the model answers with one JSON object, constrained by a JSON schema (Ollama's ``format``,
an OpenAI-style ``response_format``):

    {"action": "tool", "tool": "query_cases", "arguments": {"risk_level": "critical"}}
    {"action": "answer", "answer": "There are 3 critical cases: ..."}

Small models still wrap JSON in prose or code fences, use Python literals or leave trailing
commas, so parsing is lenient, and whatever cannot be read as a decision is taken as the answer.
``AnswerStreamer`` pulls the ``answer`` string out of the JSON while it streams, so the user sees
the answer arrive token by token in this mode too.

Small models also echo the prompt back: ``unusable`` tells an answer from an empty one, template
text, a raw JSON step shown as text, or a copy of the prompt's example.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# The examples' case id never exists, and the id check refuses it even if it did.
from fwa_api.agents.guardrails import EXAMPLE_CASE

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
ANSWER_KEYS = ("answer", "response", "final_answer", "content", "text")
ARGUMENT_KEYS = ("arguments", "parameters", "args", "input")
# One real call per tool for the prompt format (a tool without one gets ``{}``).
EXAMPLE_ARGUMENTS: dict[str, dict[str, Any]] = {
    "query_pipeline_stats": {},
    "query_cases": {"risk_level": "critical", "status": "open", "limit": 5},
    "query_case_detail": {"case_id": EXAMPLE_CASE},
    "query_rules": {"triggered_only": True, "limit": 10},
    "query_provider": {},
    "query_claim_provenance": {"claim_id": "CLM-000000"},
    "run_pipeline": {"force_reprocess": False},
}
# What an answer looks like; a model that copies it has not answered.
EXAMPLE_ANSWER = (
    f"{EXAMPLE_CASE} is the riskiest open case (score 91.5): RULE-MED-001 fired on 12 of its "
    "claims, $4,200.00 paid."
)


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


ToolParameters = list[tuple[str, dict[str, Any]]]  # (tool name, JSON schema of its arguments)


def decision_schema(tools: ToolParameters) -> dict[str, Any]:
    """The JSON schema a step must follow: a tool call with all its fields, or an answer with
    its text; with no tools left, only the answer. ``action`` comes first, so the streamed
    answer is known to be one before its text starts."""
    answer = {
        "type": "object",
        "properties": {
            "action": {"type": "string", "enum": ["answer"]},
            "answer": {"type": "string", "minLength": 1},
        },
        "required": ["action", "answer"],
        "additionalProperties": False,
    }
    calls = [
        {
            "type": "object",
            "properties": {
                "action": {"type": "string", "enum": ["tool"]},
                "tool": {"type": "string", "enum": [name]},
                "arguments": parameters,
            },
            "required": ["action", "tool", "arguments"],
            "additionalProperties": False,
        }
        for name, parameters in tools
    ]
    return {"anyOf": [*calls, answer]} if calls else answer


def example_step(name: str) -> str:
    arguments = EXAMPLE_ARGUMENTS.get(name, {})
    return json.dumps({"action": "tool", "tool": name, "arguments": arguments})


def tool_instructions(tools: list[tuple[str, str, dict[str, Any]]]) -> str:
    """The system-prompt section that stands in for native tool definitions: each tool with its
    arguments and a real call of it, then the answer's form (no placeholder to echo back)."""
    lines = [
        "You can call these tools to read data. Reply with exactly one JSON object and nothing "
        "else: either one tool call or your answer.",
        "",
    ]
    for name, description, parameters in tools:
        lines += [
            f"- {name}: {description} Arguments (JSON schema): {json.dumps(parameters)}",
            f"  Example call: {example_step(name)}",
        ]
    lines += [
        "",
        "Tool results come back in a message that starts with 'Tool result'. When you have what "
        'you need, answer with "action": "answer" and the full text of your answer for the user '
        'in "answer" (markdown allowed), written from the data, for example:',
        json.dumps({"action": "answer", "answer": EXAMPLE_ANSWER}),
    ]
    return "\n".join(lines)


def final_instructions() -> str:
    return (
        'No more tool calls are possible. Reply with one JSON object whose "action" is '
        '"answer" and whose "answer" is your full answer to my question, using the data you '
        "already have."
    )


# --------------------------------------------------------------------------- unusable answers

# An answer in markdown starts with neither an object nor an array of objects or strings.
_JSON_SHAPED = re.compile(r'^(?:```[A-Za-z]*\s*)?(?:\{|\[\s*[{"\]])')
_RAW_DECISION = re.compile(r'"(?:action|tool|arguments)"\s*:')
# Template text: "<your answer>", "[answer]", "{answer}", "...".
_PLACEHOLDER = re.compile(r"<\s*(?:your|the|tool|answer|insert)\b[^<>]{0,40}>", re.IGNORECASE)
_BRACKETED = re.compile(r"[<\[{(]\s*[\w .'-]{0,40}[>\]})]|\.{3}|…|answer", re.IGNORECASE)
# The example's wording with its ids, links and figures masked: a weak model fills the example's
# sentence with this workspace's ids and figures of its own.
# A markdown link's brackets and target, also one still arriving ("[CASE-1](/cas").
_LINK_PARTS = re.compile(r"\]\([^)]*\)?|\[")
_ID = re.compile(r"\[removed\]|\b(?:CASE|RULE|CLM)-[\w-]+")
_FIGURE = re.compile(r"\$?\d[\d,.]*")
_PARTIAL_WORD = re.compile(r"[\w$,.-]+$")


def _wording(text: str) -> str:
    masked = _FIGURE.sub("N", _LINK_PARTS.sub("", _ID.sub("ID", text)))
    return " ".join(masked.split()).lower()


_EXAMPLE_WORDING = _wording(EXAMPLE_ANSWER)


def follows_example(text: str, *, complete: bool = True) -> bool:
    """Whether ``text`` holds the prompt's example answer with other ids and figures put in
    (with ``complete=False``, the start of a streaming answer: also whether it could still turn
    out to). Only a sign: an answer may follow the example's shape with the data's own figures,
    so the caller checks them."""
    wording = _wording(text)
    if _EXAMPLE_WORDING in wording:
        return True
    # The last word may be cut mid-id ("RUL"): compare what comes before it.
    head = _PARTIAL_WORD.sub("", wording) or wording
    return not complete and bool(head) and _EXAMPLE_WORDING.startswith(head)


def unusable(text: str, *, complete: bool = True) -> str | None:
    """Why a step's answer text is not an answer (``empty``, ``placeholder``, ``json``,
    ``example``), or None. With ``complete=False``, judges the start of a streaming answer."""
    stripped = text.strip()
    if not stripped:
        return "empty" if complete else None
    if _PLACEHOLDER.search(stripped) or (complete and _BRACKETED.fullmatch(stripped)):
        return "placeholder"
    if _JSON_SHAPED.match(stripped) or _RAW_DECISION.search(stripped):
        return "json"
    folded = " ".join(stripped.split())
    # While streaming, an answer holding the example's wording is held to its end, where the
    # caller checks its figures against the data.
    if EXAMPLE_ANSWER in folded or (not complete and follows_example(folded, complete=False)):
        return "example"
    return None


# --------------------------------------------------------------------------- streaming


class AnswerStreamer:
    """Feed a step's raw JSON as it streams; get back the decoded text of its top-level
    ``answer`` string, and only once the step has said it is an answer (``"action": "answer"``
    before the text): a tool step's text is never taken for the answer."""

    def __init__(self) -> None:
        self._raw = ""
        self._pos = 0  # the next character to read
        self._depth = 0
        self._expect_key = False  # at the top level, the next string is a key
        self._key: str | None = None  # the top-level key whose value comes next
        self._string: str | None = None  # inside a string: its role (key, action, answer, other)
        self._buffer: list[str] = []
        self.action: str | None = None
        self._closed = False

    def feed(self, chunk: str) -> str:
        self._raw += chunk
        out: list[str] = []
        raw, pos = self._raw, self._pos
        while pos < len(raw) and not self._closed:
            char = raw[pos]
            if self._string is not None:
                if char == "\\":
                    decoded, used = self._escape(raw, pos)
                    if used == 0:  # the escape is not complete yet: wait for the next chunk
                        break
                    pos += used
                    self._text(decoded, out)
                    continue
                pos += 1
                if char == '"':
                    self._end_string()
                else:
                    self._text(char, out)
                continue
            pos += 1
            if char in "{[":
                self._depth += 1
                self._expect_key = self._depth == 1 and char == "{"
            elif char in "}]" and self._depth:
                self._depth -= 1
            elif self._depth == 1 and char == ",":
                self._expect_key = True
            elif self._depth == 1 and char == ":":
                self._expect_key = False
            elif char == '"' and self._depth:  # outside an object, quotes are prose
                self._string = self._role()
                self._buffer = []
        self._pos = pos
        return "".join(out)

    def _role(self) -> str:
        if self._depth != 1:
            return "other"
        if self._expect_key:
            return "key"
        if self._key == "action":
            return "action"
        return "answer" if self._key == "answer" and self.action == "answer" else "other"

    def _text(self, text: str, out: list[str]) -> None:
        if self._string == "answer":
            out.append(text)
        elif self._string in ("key", "action"):
            self._buffer.append(text)

    def _end_string(self) -> None:
        role, self._string = self._string, None
        if role == "key":
            self._key = "".join(self._buffer)
        elif role == "action":
            self.action = "".join(self._buffer).strip().lower()
        elif role == "answer":
            self._closed = True

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
