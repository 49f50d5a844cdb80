"""Output guardrails (defence in depth): every case or rule id in an answer must exist
for this workspace. Ids that do not (another workspace's case, an invented rule) are replaced by
``[removed]`` and reported; the rest are put in their canonical form for citation linking.

Short case ids (``CASE-23``, which the API accepts too) are read as their canonical form
(``CASE-000023``) before the check. ``CASE-000000``, the id the prompt's examples use, is refused
even if a workspace had it: a model copying an example must not produce a valid-looking link.

The tools already refuse other workspaces' data, so a foreign id can only reach an answer from
the user's own message, the history, or the model's imagination; none of those is evidence.

``StreamGuard`` applies the same check to a streamed answer: a tail that may be the start of an
id is held back until the id is complete, so a foreign id never reaches the client even briefly.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fwa_pipeline.store.cases import case_number

REMOVED = "[removed]"
EXAMPLE_CASE = case_number(0)  # the examples' case id: never a case

# Matched anywhere, in any case, even inside a word or a URL: "x-case-000123" must not slip by.
ENTITY_ID = re.compile(r"(?P<case>CASE-\d{1,12})|(?P<rule>RULE-[A-Z]{2,8}-\d{1,4})", re.IGNORECASE)
# A markdown link to a case or rule page: reduced to its id before checking, so an id hiding in
# a link target is checked too and the link is rebuilt only for a known id.
_ENTITY_LINK = re.compile(
    r"\[(?P<text>[^\]\n]{0,200})\]\(\s*/(?:cases|rules)/(?P<target>[A-Za-z0-9-]{1,40})\s*\)"
)
# What may still grow into an id: "C", "CASE-", "CASE-0012", "RULE-M", "RULE-MED-0"...
_PARTIAL_ID = re.compile(
    r"(?:C(?:A(?:S(?:E(?:-\d{0,12})?)?)?)?|R(?:U(?:L(?:E(?:-[A-Z]{0,8}(?:-\d{0,4})?)?)?)?)?)$",
    re.IGNORECASE,
)
# [text](/cases/ID) may still be streaming.
_PARTIAL_LINK = re.compile(r"\[[^\]\n]{0,200}(?:\]\(?[^)\s]{0,60})?$")

Verify = Callable[[set[str], set[str]], Awaitable[set[str]]]
"""(case ids, rule ids) -> those that exist for this workspace (canonical, upper case)."""


def canonical(ident: str) -> str:
    """An id as the workspace stores it: ``CASE-000023`` for ``case-23``, rules in upper case."""
    ident = ident.upper()
    if ident.startswith("CASE-"):
        return case_number(int(ident[5:]))
    return ident


def find_ids(text: str) -> tuple[set[str], set[str]]:
    """The case and rule ids ``text`` names, canonical."""
    cases: set[str] = set()
    rules: set[str] = set()
    for match in ENTITY_ID.finditer(text):
        if match.group("case"):
            cases.add(canonical(match.group("case")))
        else:
            rules.add(match.group("rule").upper())
    return cases, rules


def _unlink(text: str) -> str:
    def plain(match: re.Match[str]) -> str:
        label, target = match.group("text"), match.group("target")
        return label if label.upper() == target.upper() else f"{label} ({target})"

    return _ENTITY_LINK.sub(plain, text)


@dataclass
class IdChecker:
    """Checks ids against the workspace once each per answer, and remembers what it removed."""

    verify: Verify
    _known: dict[str, bool] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)

    async def clean(self, text: str) -> str:
        """``text`` with unknown ids replaced by ``[removed]`` and known ids in canonical form."""
        text = _unlink(text)
        cases, rules = find_ids(text)
        self._known[EXAMPLE_CASE] = False
        unchecked_cases = {c for c in cases if c not in self._known}
        unchecked_rules = {r for r in rules if r not in self._known}
        if unchecked_cases or unchecked_rules:
            found = await self.verify(unchecked_cases, unchecked_rules)
            for ident in unchecked_cases | unchecked_rules:
                self._known[ident] = ident in found

        def replace(match: re.Match[str]) -> str:
            ident = canonical(match.group(0))
            if self._known.get(ident):
                return ident
            if ident not in self.removed:
                self.removed.append(ident)
            return REMOVED

        return ENTITY_ID.sub(replace, text)

    @property
    def known(self) -> set[str]:
        return {ident for ident, ok in self._known.items() if ok}


@dataclass
class StreamGuard:
    """Cleans a streamed answer chunk by chunk, holding back what may be an unfinished id."""

    checker: IdChecker
    _pending: str = ""

    async def feed(self, chunk: str) -> str:
        self._pending += chunk
        cut = len(self._pending)
        for partial in (_PARTIAL_ID, _PARTIAL_LINK):
            match = partial.search(self._pending)
            if match is not None:
                cut = min(cut, match.start())
        ready, self._pending = self._pending[:cut], self._pending[cut:]
        return await self.checker.clean(ready) if ready else ""

    async def flush(self) -> str:
        ready, self._pending = self._pending, ""
        return await self.checker.clean(ready) if ready else ""
