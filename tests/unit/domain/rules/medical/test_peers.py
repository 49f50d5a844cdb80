"""RULE-MED-005, 010, 011: a provider against its specialty peers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.unit.domain.rules.medical.conftest import (
    claim,
    context,
    hit_ids,
    peer_members,
    peer_providers,
    run,
)

# Nine providers flagging 9..17 of their 30 lines and one flagging ``k``: with k = 28 the peer
# median is 13.5/30, the MAD 2.5/30 and z = 0.6745 x 14.5 / 2.5 = 3.912 (a hit); with k = 26,
# z = 0.6745 x 12.5 / 2.5 = 3.372 (just under 3.5).
TYPICAL = {f"P{i}": 9 + i for i in range(9)}
Z_28 = 0.6745 * 14.5 / 2.5

Line = Callable[[str, int, bool], dict[str, Any]]


def _share_group(
    flagged_lines: dict[str, int], line: Line, total: int = 30
) -> list[dict[str, Any]]:
    """``total`` lines per provider (one per member), the first ``flagged_lines[p]`` flagged."""
    return [
        line(provider, i, i < flagged)
        for provider, flagged in flagged_lines.items()
        for i in range(total)
    ]


def _ctx(rows: list[dict[str, Any]], specialties: dict[str, tuple[str, str]]) -> Any:
    return context(rows, members=peer_members(40), providers=peer_providers(specialties))


def _family(*providers: str) -> dict[str, tuple[str, str]]:
    return {p: ("Family Medicine", "TX") for p in providers}


def _em_line(provider: str, i: int, high: bool) -> dict[str, Any]:
    code = ("99214", "99215")[i % 2] if high else "99213"
    return claim(f"{provider}-{i}", provider_id=provider, member_id=f"N{i:03d}", cpt_code=code)


class TestEmUpcoding:
    def _run(self, outlier_high: int, **thresholds: Any) -> Any:
        counts = {**TYPICAL, "PO": outlier_high}
        rows = _share_group(counts, _em_line)
        rows += _share_group({"PSMALL": 29}, _em_line, total=29)  # 29 members: not judged
        rows += _share_group({"PDERM": 30}, _em_line)  # alone in its specialty
        providers = {**_family(*counts, "PSMALL"), "PDERM": ("Dermatology", "TX")}
        return run("RULE-MED-005", _ctx(rows, providers), **thresholds)

    def test_outlier_share_hits_its_high_level_lines(self) -> None:
        hits = self._run(28)
        assert hit_ids(hits) == sorted(f"PO-{i}" for i in range(28))
        assert set(hits["subject_id"]) == {"PO"}
        assert set(hits["subject_type"]) == {"provider"}
        assert hits["severity"].iloc[0] == pytest.approx(Z_28 / 7.0)
        evidence = hits.loc["PO-0", "evidence"]
        assert evidence["share"] == pytest.approx(28 / 30)
        assert (evidence["high_lines"], evidence["em_lines"], evidence["members"]) == (28, 30, 30)
        assert evidence["peers"] == 10  # PSMALL is no peer
        assert evidence["peer_median"] == pytest.approx(13.5 / 30)
        assert evidence["peer_mad"] == pytest.approx(2.5 / 30)
        assert evidence["z"] == pytest.approx(Z_28)
        assert evidence["peer_percentile"] == 0.9
        assert evidence["peer_percentile_value"] == pytest.approx((17 + 0.1 * 11) / 30)
        assert evidence["min_robust_z"] == 3.5
        json.dumps(evidence)
        assert evidence["min_members"] == 30
        assert evidence["specialty"] == "Family Medicine"
        json.dumps(evidence)

    def test_just_under_the_z_threshold(self) -> None:
        assert self._run(26).empty

    def test_percentile_gate(self) -> None:
        assert self._run(28, peer_percentile=1.0).empty

    def test_too_few_peers(self) -> None:
        assert self._run(28, min_peers=11).empty


def _modifier_line(provider: str, i: int, flagged: bool) -> dict[str, Any]:
    # Unflagged lines alternate between no modifier and XS (a modifier not watched).
    modifier = ("25", "59")[i % 2] if flagged else (None, "XS")[i % 2]
    return claim(f"{provider}-{i}", provider_id=provider, member_id=f"N{i:03d}", modifier=modifier)


class TestModifierOveruse:
    def _run(self, outlier_lines: int, **thresholds: Any) -> Any:
        counts = {**TYPICAL, "PO": outlier_lines}
        rows = _share_group(counts, _modifier_line)
        rows += _share_group({"PSMALL": 29}, _modifier_line, total=29)  # under min_lines
        return run("RULE-MED-010", _ctx(rows, _family(*counts, "PSMALL")), **thresholds)

    def test_outlier_share_hits_its_modifier_lines(self) -> None:
        hits = self._run(28)
        assert hit_ids(hits) == sorted(f"PO-{i}" for i in range(28))
        assert hits["severity"].iloc[0] == pytest.approx(Z_28 / 7.0)
        evidence = hits.loc["PO-0", "evidence"]
        assert (evidence["modifier_lines"], evidence["lines"]) == (28, 30)
        assert evidence["peers"] == 10
        assert evidence["z"] == pytest.approx(Z_28)
        assert evidence["peer_mad"] == pytest.approx(2.5 / 30)
        assert evidence["min_lines"] == 30
        json.dumps(evidence)

    def test_just_under_the_z_threshold(self) -> None:
        assert self._run(26).empty

    def test_mad_zero_falls_back_to_mean_deviation(self) -> None:
        # Most peers never use the modifiers (MAD 0): z = (x - median) / (1.2533 x mean AD).
        counts = {**dict.fromkeys(TYPICAL, 0), "PO": 6}
        rows = _share_group(counts, _modifier_line)
        hits = run("RULE-MED-010", _ctx(rows, _family(*counts)))
        assert hit_ids(hits) == sorted(f"PO-{i}" for i in range(6))
        evidence = hits.loc["PO-0", "evidence"]
        assert evidence["peer_mad"] == 0.0
        assert evidence["z"] == pytest.approx(0.2 / (1.253314 * 0.02))


def _billing_lines(provider: str, per_member: float, members: int = 10, visits: int = 1) -> list:
    return [
        claim(
            f"{provider}-{m}-{v}",
            provider_id=provider,
            member_id=f"N{m:03d}",
            amount_billed=per_member / visits,
            service_date=f"2024-03-{v + 1:02d}",
        )
        for m in range(members)
        for v in range(visits)
    ]


CARDIOLOGY_TX = {f"C{i}": 100.0 + 10 * i for i in range(5)}  # billed per member 100..140


def _billing_rows(outlier: float) -> list[dict[str, Any]]:
    rows = [r for p, amount in CARDIOLOGY_TX.items() for r in _billing_lines(p, amount)]
    return rows + _billing_lines("CX", outlier)


def _cardiology(*providers: str, state: str = "TX") -> dict[str, tuple[str, str]]:
    return {p: ("Cardiology", state) for p in providers}


class TestBillingOutlier:
    def test_billed_per_member_outlier_hits_every_line(self) -> None:
        # Peers 100..140 and 205: median 125, MAD 15, z = 0.6745 x 80 / 15 = 3.597.
        ctx = _ctx(_billing_rows(205.0), _cardiology(*CARDIOLOGY_TX, "CX"))
        hits = run("RULE-MED-011", ctx)
        assert hit_ids(hits) == sorted(f"CX-{m}-0" for m in range(10))
        z = 0.6745 * 80 / 15
        assert hits["severity"].iloc[0] == pytest.approx(z / 7.0)
        evidence = hits.loc["CX-0-0", "evidence"]
        assert evidence["billed_per_member"] == pytest.approx(205.0)
        assert evidence["billed_per_member_peer_median"] == pytest.approx(125.0)
        assert evidence["billed_per_member_peer_mad"] == pytest.approx(15.0)
        assert evidence["billed_per_member_z"] == pytest.approx(z)
        assert evidence["billed_per_member_percentile_rank"] == 1.0
        assert evidence["services_per_member"] == 1.0
        assert evidence["services_per_member_z"] is None  # every peer alike: no z
        assert evidence["peer_group"] == "Cardiology"  # 6 < min_state_peers
        assert evidence["peers"] == 6
        assert evidence["min_robust_z"] == 3.5
        json.dumps(evidence)

    def test_just_under_the_z_threshold(self) -> None:
        # 200: z = 0.6745 x 75 / 15 = 3.37.
        ctx = _ctx(_billing_rows(200.0), _cardiology(*CARDIOLOGY_TX, "CX"))
        assert run("RULE-MED-011", ctx).empty

    def test_services_per_member_outlier(self) -> None:
        # Three visits a member at a third of the price: same billed per member, 3x services.
        rows = _billing_rows(120.0) + _billing_lines("CS", 120.0, visits=3)
        ctx = _ctx(rows, _cardiology(*CARDIOLOGY_TX, "CX", "CS"))
        hits = run("RULE-MED-011", ctx)
        assert len(hits) == 30
        assert set(hits["subject_id"]) == {"CS"}
        evidence = hits.iloc[0]["evidence"]
        assert evidence["services_per_member"] == 3.0
        # MAD 0 (every peer 1.0): z = 2 / (1.2533 x 2/7).
        assert evidence["services_per_member_z"] == pytest.approx(2 / (1.253314 * 2 / 7))

    def test_state_peers_when_the_state_group_is_large_enough(self) -> None:
        # Two California cardiologists billing 1,000 per member join the national group only.
        rows = _billing_rows(205.0) + _billing_lines("CA1", 1000.0) + _billing_lines("CA2", 1000.0)
        providers = {
            **_cardiology(*CARDIOLOGY_TX, "CX"),
            **_cardiology("CA1", "CA2", state="CA"),
        }
        by_state = run("RULE-MED-011", _ctx(rows, providers), min_state_peers=3)
        assert set(by_state["subject_id"]) == {"CX", "CA1", "CA2"}
        groups = {h["subject_id"]: h["evidence"]["peer_group"] for _, h in by_state.iterrows()}
        assert groups == {"CX": "Cardiology / TX", "CA1": "Cardiology", "CA2": "Cardiology"}
        # Nationally (median 135, MAD 30) CX's 205 is no outlier.
        national = run("RULE-MED-011", _ctx(rows, providers))
        assert set(national["subject_id"]) == {"CA1", "CA2"}

    def test_too_few_peers(self) -> None:
        rows = _billing_rows(5000.0)
        ctx = _ctx(rows, _cardiology(*CARDIOLOGY_TX, "CX"))
        assert run("RULE-MED-011", ctx, min_peers=7).empty
        assert set(run("RULE-MED-011", ctx)["subject_id"]) == {"CX"}
