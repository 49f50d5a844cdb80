"""The one definition of blank text: the Python check, the pydantic field and the JSON Schema
pattern clients and the fuzzer see all agree."""

from __future__ import annotations

import re
import sys
from typing import Annotated

import pytest
from pydantic import BaseModel, StringConstraints, ValidationError

from fwa_pipeline.kit.validation import (
    FREE_TEXT,
    TEXT_PATTERN,
    InvalidInput,
    clean_text,
    text_problem,
)


class Body(BaseModel):
    note: Annotated[str, StringConstraints(max_length=12), FREE_TEXT]


def test_blank_is_what_str_strip_empties() -> None:
    for blank in ("", " ", "\t\n", "\x1c\x1d\x1e\x1f", "\u2028\u3000\xa0"):
        assert text_problem(blank) == "must not be blank (it holds only whitespace)"
    assert text_problem("a\x00b") == "must not contain a NUL character"
    assert text_problem("\x1fok\x1f") is None
    assert clean_text(" \x1fok\u3000", "note") == "ok"
    with pytest.raises(InvalidInput) as refused:
        clean_text("\x1f", "reason")
    assert refused.value.problems == [("reason", "must not be blank (it holds only whitespace)")]


def test_the_schema_pattern_accepts_exactly_what_the_check_accepts() -> None:
    pattern = re.compile(TEXT_PATTERN)
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        for text in (char, f" {char}\x1fb"):
            assert (pattern.fullmatch(text) is not None) == (text_problem(text) is None), text


def test_the_request_field_strips_and_names_its_problem() -> None:
    assert Body(note=" \x1cchecked\n").note == "checked"
    for value, kind in (("\x1f", "text"), ("no\x00", "text"), ("x" * 13, "string_too_long")):
        with pytest.raises(ValidationError) as refused:
            Body(note=value)
        assert [(e["loc"], e["type"]) for e in refused.value.errors()] == [(("note",), kind)]
    schema = Body.model_json_schema()["properties"]["note"]
    assert (schema["pattern"], schema["maxLength"]) == (TEXT_PATTERN, 12)
