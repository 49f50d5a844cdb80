"""Input the domain refuses, and the one definition of blank text.

Free text people type (case notes and status reasons, chat messages, session titles) is
checked by ``text_problem`` wherever it arrives: the API's request models (``FREE_TEXT``) and
the store's own functions (``clean_text``), so the two never disagree about what is empty. Blank
is what ``str.strip()`` strips to nothing: Unicode whitespace and also the ASCII separators
U+001C..U+001F, which pydantic's ``strip_whitespace`` and JSON Schema's ``\\s`` keep. Text may
not hold a NUL either: PostgreSQL text cannot store one.
"""

from __future__ import annotations

import sys
from typing import Any, Final

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema


class InvalidInput(ValueError):
    """A value the domain refuses, each problem as (field, message). The API answers 422 naming
    each field; messages say what is wrong and never repeat the value (it may be PHI)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{field}: {message}" for field, message in problems))


# Every character str.strip() removes, in code point order.
WHITESPACE: Final = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())


def _class(chars: str) -> str:
    # \uXXXX escapes read the same in ECMA-262 (JSON Schema), Python and Rust regexes.
    return "".join(f"\\u{ord(c):04x}" for c in chars)


# The same rule as a JSON Schema pattern, for clients and fuzzers: any whitespace, then one
# character that is neither whitespace nor NUL, then anything but NUL. The first two classes
# do not overlap, so no engine backtracks on it.
TEXT_PATTERN: Final = rf"^[{_class(WHITESPACE)}]*[^{_class(chr(0) + WHITESPACE)}][^\u0000]*$"


def text_problem(value: str) -> str | None:
    """Why ``value`` is not acceptable text, or None when it is."""
    if "\x00" in value:
        return "must not contain a NUL character"
    if not value.strip():
        return "must not be blank (it holds only whitespace)"
    return None


def clean_text(value: str, field: str) -> str:
    """``value`` without its surrounding whitespace; ``InvalidInput`` naming ``field`` when it
    is blank or holds a NUL."""
    problem = text_problem(value)
    if problem is not None:
        raise InvalidInput([(field, problem)])
    return value.strip()


class _FreeText:
    """Pydantic metadata: ``Annotated[str, StringConstraints(max_length=N), FREE_TEXT]`` is a
    request field of free text (at most N characters as sent), checked by ``text_problem`` and
    stripped, with ``TEXT_PATTERN`` in its JSON Schema."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(_validated, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["pattern"] = TEXT_PATTERN
        return json_schema


def _validated(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise PydanticCustomError("text", problem)
    return value.strip()


FREE_TEXT: Final = _FreeText()
