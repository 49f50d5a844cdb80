"""Case numbers as people type them, read into the form the store keeps."""

from __future__ import annotations

import re

from fwa_pipeline.store.cases import case_number as format_case_number

CASE_NUMBER = re.compile(r"^(?:CASE-)?(\d{1,12})$", re.IGNORECASE)


def case_number(raw: str) -> str | None:
    """``CASE-000123`` from ``CASE-000123``, ``case-123`` or ``123``; None if it is not one."""
    match = CASE_NUMBER.match(raw.strip())
    return format_case_number(int(match.group(1))) if match else None
