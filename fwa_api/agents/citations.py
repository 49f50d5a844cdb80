"""Citation links: case and rule ids become markdown links to their pages,
``[CASE-000123](/cases/CASE-000123)`` and ``[RULE-MED-001](/rules/RULE-MED-001)``.

Run it on text the guardrails have cleaned: by then every id left exists in the workspace and
sits in its canonical form, outside any link.
"""

from __future__ import annotations

import re

from fwa_api.agents.guardrails import ENTITY_ID


def link_for(ident: str) -> str:
    kind = "cases" if ident.upper().startswith("CASE-") else "rules"
    return f"/{kind}/{ident.upper()}"


def linkify(text: str) -> str:
    def link(match: re.Match[str]) -> str:
        ident = match.group(0).upper()
        return f"[{ident}]({link_for(ident)})"

    return ENTITY_ID.sub(link, text)
