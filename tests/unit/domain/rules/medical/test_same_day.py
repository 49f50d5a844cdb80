"""RULE-MED-001 .. 004: duplicates, NCCI pairs, units over MUE, impossible day."""

from __future__ import annotations

import pytest

from tests.unit.domain.rules.medical.conftest import NCCI, claim, context, hit_ids, run


class TestDuplicateClaim:
    def test_every_copy_but_the_smallest_claim_id(self) -> None:
        ctx = context([claim("C3"), claim("C1"), claim("C2")])
        hits = run("RULE-MED-001", ctx)
        assert hit_ids(hits) == ["C2", "C3"]
        assert hits.loc["C3", "severity"] == 1.0
        evidence = hits.loc["C3", "evidence"]
        assert evidence["first_claim_id"] == "C1"
        assert evidence["copies"] == 3
        assert evidence["copy_number"] == 3
        assert evidence["amount_billed"] == 100.0
        assert evidence["service_date"] == "2024-03-01"

    @pytest.mark.parametrize(
        "differs",
        [
            {"units": 2},
            {"amount_billed": 100.01},
            {"service_date": "2024-03-02"},
            {"provider_id": "P2"},
            {"member_id": "M1"},
            {"cpt_code": "99214"},
        ],
    )
    def test_one_differing_value_is_no_duplicate(self, differs: dict[str, object]) -> None:
        assert run("RULE-MED-001", context([claim("C1"), claim("C2", **differs)])).empty

    def test_missing_member_never_duplicates(self) -> None:
        rows = [claim("C1", member_id=None), claim("C2", member_id=None)]
        assert run("RULE-MED-001", context(rows)).empty


class TestUnbundling:
    def test_column_two_line_without_modifier(self) -> None:
        ctx = context([claim("C1", cpt_code="20610"), claim("C2", cpt_code="20605")])
        hits = run("RULE-MED-002", ctx)
        assert hit_ids(hits) == ["C2"]  # never the column-1 line
        evidence = hits.loc["C2", "evidence"]
        assert evidence["column1_code"] == "20610"
        assert evidence["column2_code"] == "20605"
        assert evidence["modifier"] is None
        assert evidence["modifier_allowed"] is True
        assert evidence["allowed_modifiers"] == ["59", "XE", "XS", "XP", "XU"]
        assert hits.loc["C2", "severity"] == 1.0

    @pytest.mark.parametrize("modifier", ["59", "XS", "xu"])
    def test_allowed_modifier_excuses(self, modifier: str) -> None:
        ctx = context(
            [claim("C1", cpt_code="20610"), claim("C2", cpt_code="20605", modifier=modifier)]
        )
        assert run("RULE-MED-002", ctx).empty

    def test_other_modifier_does_not_excuse(self) -> None:
        ctx = context([claim("C1", cpt_code="20610"), claim("C2", cpt_code="20605", modifier="25")])
        assert hit_ids(run("RULE-MED-002", ctx)) == ["C2"]

    def test_modifier_on_column_one_line_does_not_excuse(self) -> None:
        ctx = context([claim("C1", cpt_code="20610", modifier="59"), claim("C2", cpt_code="20605")])
        assert hit_ids(run("RULE-MED-002", ctx)) == ["C2"]

    def test_pair_without_modifier_indicator_is_never_excused(self) -> None:
        ctx = context([claim("C1", cpt_code="93000"), claim("C2", cpt_code="93005", modifier="59")])
        hits = run("RULE-MED-002", ctx)
        assert hit_ids(hits) == ["C2"]
        assert hits.loc["C2", "evidence"]["modifier_allowed"] is False

    @pytest.mark.parametrize(
        "column_one",
        [{"service_date": "2024-03-02"}, {"provider_id": "P2"}, {"member_id": "M1"}],
    )
    def test_pair_needs_same_member_provider_and_day(self, column_one: dict[str, str]) -> None:
        ctx = context([claim("C1", cpt_code="20610", **column_one), claim("C2", cpt_code="20605")])
        assert run("RULE-MED-002", ctx).empty

    def test_modifier_allowed_read_from_text(self) -> None:
        ncci = NCCI.assign(modifier_allowed=["true", "false"])
        rows = [
            claim("C1", cpt_code="20610"),
            claim("C2", cpt_code="20605", modifier="59"),
            claim("C3", cpt_code="93000"),
            claim("C4", cpt_code="93005", modifier="59"),
        ]
        assert hit_ids(run("RULE-MED-002", context(rows, ncci=ncci))) == ["C4"]

    def test_no_edits_no_hits(self) -> None:
        ctx = context(
            [claim("C1", cpt_code="20610"), claim("C2", cpt_code="20605")], ncci=NCCI.iloc[:0]
        )
        assert run("RULE-MED-002", ctx).empty


class TestUnitsOverMue:
    def test_every_line_of_the_day_over_the_limit(self) -> None:
        rows = [
            claim("C1", cpt_code="97110", units=2),
            claim("C2", cpt_code="97110", units=3),
            claim("C3", cpt_code="97110", units=3, service_date="2024-03-02"),
        ]
        hits = run("RULE-MED-003", context(rows))
        assert hit_ids(hits) == ["C1", "C2"]
        evidence = hits.loc["C2", "evidence"]
        assert evidence["units_total"] == 5
        assert evidence["line_units"] == 3
        assert evidence["mue_limit"] == 4

    def test_at_the_limit_is_no_hit(self) -> None:
        rows = [claim("C1", cpt_code="97110", units=2), claim("C2", cpt_code="97110", units=2)]
        assert run("RULE-MED-003", context(rows)).empty

    def test_code_without_limit_is_never_checked(self) -> None:
        assert run("RULE-MED-003", context([claim("C1", cpt_code="99213", units=99)])).empty

    def test_other_member_is_another_group(self) -> None:
        rows = [
            claim("C1", cpt_code="97110", units=3),
            claim("C2", cpt_code="97110", units=3, member_id="M1"),
        ]
        assert run("RULE-MED-003", context(rows)).empty


def _timed_day(minutes: int, provider: str = "P1", day: str = "2024-03-01") -> list[dict]:
    """Lines of one provider and day summing to ``minutes`` (60-minute psychotherapy for the
    hours, 15-minute units for the rest), one line per member so no other edit fires."""
    hours, rest = divmod(minutes, 60)
    rows = [
        claim(
            f"{provider}-{day}-H{i}",
            cpt_code="90837",
            member_id=f"N{i}",
            provider_id=provider,
            service_date=day,
        )
        for i in range(hours)
    ]
    if rest:
        rows.append(
            claim(
                f"{provider}-{day}-R",
                cpt_code="97110",
                units=rest // 15,
                provider_id=provider,
                service_date=day,
            )
        )
    return rows


class TestImpossibleDay:
    def test_over_24_hours_is_impossible(self) -> None:
        rows = [*_timed_day(24 * 60 + 15), claim("UNTIMED", cpt_code="99213")]
        hits = run("RULE-MED-004", context(rows))
        assert len(hits) == 25  # every timed line of the day, not the untimed visit
        assert "UNTIMED" not in hits.index
        assert set(hits["severity"]) == {1.0}
        assert set(hits["subject_type"]) == {"provider"}
        assert set(hits["subject_id"]) == {"P1"}
        evidence = hits.loc["P1-2024-03-01-R", "evidence"]
        assert evidence["finding"] == "impossible"
        assert evidence["provider_minutes"] == 1455
        assert evidence["threshold_minutes"] == 1440
        assert evidence["line_minutes"] == 15

    def test_exactly_24_hours_is_improbable(self) -> None:
        hits = run("RULE-MED-004", context(_timed_day(24 * 60)))
        assert len(hits) == 24
        assert set(hits["severity"]) == {0.5}
        evidence = hits.iloc[0]["evidence"]
        assert evidence["finding"] == "improbable"
        assert evidence["threshold_minutes"] == 720

    def test_up_to_12_hours_is_fine(self) -> None:
        assert run("RULE-MED-004", context(_timed_day(12 * 60))).empty
        assert len(run("RULE-MED-004", context(_timed_day(12 * 60 + 15)))) == 13

    def test_days_and_providers_are_separate(self) -> None:
        rows = [
            *_timed_day(12 * 60),
            *_timed_day(12 * 60, provider="P2"),
            *_timed_day(12 * 60, day="2024-03-02"),
        ]
        assert run("RULE-MED-004", context(rows)).empty

    def test_severity_comes_from_thresholds(self) -> None:
        hits = run("RULE-MED-004", context(_timed_day(13 * 60)), improbable_severity=0.3)
        assert set(hits["severity"]) == {0.3}
