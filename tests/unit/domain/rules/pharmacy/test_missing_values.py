"""Every pharmacy rule over an empty frame and over fills whose references are all unknown."""

from __future__ import annotations

import pytest

from fwa_pipeline.domain.rules import REGISTRY
from fwa_pipeline.domain.rules.base import HIT_COLUMNS
from tests.unit.domain.rules.pharmacy.conftest import context, enriched, fill, params

RX_RULES = sorted(r for r in REGISTRY if r.startswith("RULE-RX-"))


def test_family_registers_ten_rules() -> None:
    assert [f"RULE-RX-{n:03d}" for n in range(1, 11)] == RX_RULES


@pytest.mark.parametrize("rule_id", RX_RULES)
def test_empty_frame_gives_empty_hits(rule_id: str) -> None:
    frame = enriched([fill("A", 0)]).iloc[:0]
    hits = REGISTRY[rule_id].fn(context(frame), params(rule_id))
    assert hits.empty
    assert list(hits.columns) == HIT_COLUMNS


@pytest.mark.parametrize("rule_id", RX_RULES)
def test_unknown_references_and_blanks_never_hit(rule_id: str) -> None:
    unknown = {"member": "GHOST", "ndc": "99999999999", "prescriber": "X", "pharmacy": "Y"}
    fills = [
        # Unknown member, drug and providers; fills far enough apart not to be early.
        fill(f"U{i}", 40 * i, quantity=500, days=d, refill=r, **unknown)
        for i, (d, r) in enumerate([(30, 90), (None, None), (5, 0)])
    ]
    hits = REGISTRY[rule_id].fn(context(enriched(fills)), params(rule_id))
    assert hits.empty
