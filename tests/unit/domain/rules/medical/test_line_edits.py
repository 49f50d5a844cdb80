"""RULE-MED-006 .. 009 and 012: a line against its member, provider and code."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.domain.rules.medical.conftest import claim, context, hit_ids, run


class TestServiceAfterDeath:
    def test_after_the_date_of_death(self) -> None:
        rows = [
            claim("C1", member_id="DEAD", service_date="2024-02-16"),
            claim("C2", member_id="DEAD", service_date="2024-02-15"),  # the day itself
            claim("C3", member_id="F1", service_date="2024-02-16"),
            claim("C4", member_id="GHOST", service_date="2024-02-16"),  # unknown member
        ]
        hits = run("RULE-MED-006", context(rows))
        assert hit_ids(hits) == ["C1"]
        # How many days after the death, never the date of death itself (PHI).
        assert hits.loc["C1", "evidence"] == {"service_date": "2024-02-16", "days_after_death": 1}
        assert hits.loc["C1", "subject_type"] == "claim"


class TestGenderInconsistent:
    def test_code_for_the_other_gender(self) -> None:
        rows = [
            claim("C1", member_id="M1", cpt_code="59400"),
            claim("C2", member_id="F1", cpt_code="55700"),
            claim("C3", member_id="F1", cpt_code="59400"),
            claim("C4", member_id="U1", cpt_code="59400"),  # gender U never conflicts
            claim("C5", member_id="GHOST", cpt_code="59400"),
            claim("C6", member_id="M1", cpt_code="99213"),  # code for anyone
        ]
        hits = run("RULE-MED-007", context(rows))
        assert hit_ids(hits) == ["C1", "C2"]
        assert hits.loc["C1", "evidence"] == {
            "member_gender": "M",
            "code_gender": "F",
            "cpt_code": "59400",
        }


class TestAgeInconsistent:
    def test_outside_the_code_ages(self) -> None:
        rows = [
            claim("C1", member_id="F1", cpt_code="90460"),  # 43 on a child's code
            claim("C2", member_id="CHILD", cpt_code="90460"),
            claim("C3", member_id="TEEN", cpt_code="90460"),  # 18 on the day: still allowed
            claim("C4", member_id="TEEN", cpt_code="90460", service_date="2025-03-01"),  # 19
            claim("C5", member_id="F1", cpt_code="G0438"),  # 43, code from 65
            claim("C6", member_id="DEAD", cpt_code="G0438", service_date="2024-01-01"),  # 84
            claim("C7", member_id="GHOST", cpt_code="90460"),  # age unknown
            claim("C8", member_id="F1", cpt_code="99213"),  # no bounds
        ]
        hits = run("RULE-MED-008", context(rows))
        assert hit_ids(hits) == ["C1", "C4", "C5"]
        # The bound crossed, never the age: that is derived from the date of birth (PHI).
        assert hits.loc["C4", "evidence"] == {
            "age": "above max_age",
            "min_age": None,
            "max_age": 18.0,
            "cpt_code": "90460",
        }
        assert hits.loc["C5", "evidence"]["age"] == "below min_age"
        assert hits.loc["C5", "evidence"]["min_age"] == 65.0


class TestExcludedProvider:
    def test_on_or_after_the_exclusion_date(self) -> None:
        rows = [
            claim("C1", provider_id="PX", service_date="2024-02-29"),
            claim("C2", provider_id="PX", service_date="2024-03-01"),
            claim("C3", provider_id="PX", service_date="2024-06-01"),
            claim("C4", provider_id="PXN", service_date="2020-01-01"),  # excluded, no date
            claim("C5", provider_id="PR", service_date="2024-06-01"),  # not excluded (any more)
            claim("C6", provider_id="P9", service_date="2024-06-01"),  # unknown provider
        ]
        hits = run("RULE-MED-009", context(rows))
        assert hit_ids(hits) == ["C2", "C3", "C4"]
        assert hits.loc["C2", "evidence"] == {
            "service_date": "2024-03-01",
            "exclusion_date": "2024-03-01",
        }
        assert hits.loc["C4", "evidence"]["exclusion_date"] is None
        assert hits.loc["C2", "subject_type"] == "provider"
        assert hits.loc["C2", "subject_id"] == "PX"
        assert set(hits["severity"]) == {1.0}


def _amounts(code: str, amounts: list[float]) -> list[dict]:
    return [
        claim(f"{code}-{i}", cpt_code=code, member_id=f"N{i}", amount_billed=amount)
        for i, amount in enumerate(amounts)
    ]


class TestAmountOutlier:
    # 20 lines at 95/105 and one at 150: mean 102.38, sample SD 12.00, z of 150 = 3.97.
    AMOUNTS = [95.0, 105.0] * 10 + [150.0]

    def test_above_mean_plus_three_sd(self) -> None:
        hits = run("RULE-MED-012", context(_amounts("99213", self.AMOUNTS)))
        assert hit_ids(hits) == ["99213-20"]
        evidence = hits.loc["99213-20", "evidence"]
        mean, sd = np.mean(self.AMOUNTS), np.std(self.AMOUNTS, ddof=1)
        z = (150.0 - mean) / sd
        assert evidence["cpt_mean"] == pytest.approx(mean)
        assert evidence["cpt_sd"] == pytest.approx(sd)
        assert evidence["z"] == pytest.approx(z)
        assert evidence["cpt_lines"] == 21
        assert evidence["threshold_sd"] == 3.0
        assert evidence["threshold_amount"] == pytest.approx(mean + 3 * sd)
        assert hits.loc["99213-20", "severity"] == pytest.approx(z / 6.0)

    def test_just_under_the_threshold(self) -> None:
        ctx = context(_amounts("99213", self.AMOUNTS))
        z = (150.0 - np.mean(self.AMOUNTS)) / np.std(self.AMOUNTS, ddof=1)
        assert run("RULE-MED-012", ctx, sd=z - 0.01).shape[0] == 1
        assert run("RULE-MED-012", ctx, sd=z + 0.01).empty

    def test_too_few_lines_for_the_code(self) -> None:
        ctx = context(_amounts("99213", self.AMOUNTS))
        assert run("RULE-MED-012", ctx, min_lines=22).empty

    def test_each_code_has_its_own_mean(self) -> None:
        rows = _amounts("99213", [100.0] * 10 + [101.0] * 10) + _amounts("99215", [900.0] * 2)
        assert run("RULE-MED-012", context(rows), min_lines=2).empty
