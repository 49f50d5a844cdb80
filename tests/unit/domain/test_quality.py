"""The quality gate: every issue type, the report, the schemas as asset checks run them, and each
gate mode."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest

from fwa_pipeline.domain import quality
from fwa_pipeline.domain.config import QualityConfig, QualityMode
from fwa_pipeline.domain.quality import (
    ISSUE_COLUMNS,
    MEDICAL_SCHEMA,
    PHARMACY_COLUMNS,
    QualityGateError,
    assess_quality,
    held_back,
    medical_schema,
    passing,
    pharmacy_schema,
)
from fwa_pipeline.npi import make_npis

AS_OF = dt.date(2024, 6, 30)
NPIS = list(make_npis(np.array([123456789, 223456789, 323456789, 423456789])))
PROVIDER, PRESCRIBER, PHARMACY, OTHER = NPIS
BAD_NPI = PROVIDER[:9] + str((int(PROVIDER[9]) + 1) % 10)
MEMBERS = ["M1", "M2", "M3"]
CONFIG = QualityConfig(outlier_sd=3.0, outlier_min_peers=10)


def claims(
    prefix: str, n: int, values: dict[str, object], columns: dict[str, list[object]]
) -> pd.DataFrame:
    """``n`` distinct claims ``<prefix>1`` .. of members M1, M2, M3 in turn, with ``values``;
    ``columns`` override whole columns."""
    frame = pd.DataFrame(
        {
            "claim_pk": np.arange(1, n + 1),
            "claim_id": [f"{prefix}{i}" for i in range(1, n + 1)],
            "member_id": [MEMBERS[i % len(MEMBERS)] for i in range(n)],
            **values,
        }
    )
    for name, column in columns.items():
        frame[name] = column
    return frame


def medical(n: int = 3, **columns: list[object]) -> pd.DataFrame:
    """``n`` clean, distinct medical claims; ``columns`` override whole columns."""
    values = {
        "provider_id": PROVIDER,
        "service_date": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n), unit="D"),
        "cpt_code": "99213",
        "modifier": None,
        "diagnosis_code": "E11.9",
        "units": 1,
        "place_of_service": "11",
        "amount_billed": 100.0,
        "amount_paid": 80.0,
    }
    return claims("MC", n, values, columns)


def pharmacy(n: int = 3, **columns: list[object]) -> pd.DataFrame:
    values = {
        "prescriber_id": PRESCRIBER,
        "pharmacy_id": PHARMACY,
        "fill_date": pd.Timestamp("2024-02-01") + pd.to_timedelta(np.arange(n), unit="D"),
        "ndc_code": "00002323230",
        "quantity": 30.0,
        "days_supply": 30,
        "refill_number": 0,
        "amount_billed": 25.0,
        "amount_paid": 20.0,
    }
    return claims("RX", n, values, columns)


def no_pharmacy() -> pd.DataFrame:
    return pharmacy(0)


def assess(med: pd.DataFrame, rx: pd.DataFrame | None = None, **kwargs: object):
    options = {
        "member_ids": MEMBERS,
        "provider_ids": NPIS,
        "config": CONFIG,
        "as_of": AS_OF,
        **kwargs,
    }
    return assess_quality(med, no_pharmacy() if rx is None else rx, **options)  # type: ignore[arg-type]


def found(result: quality.QualityResult) -> set[tuple[str, int, str, str]]:
    issues = result.issues
    return {
        (r.claim_type, int(r.claim_pk), r.issue_type, r.severity)
        for r in issues.itertuples(index=False)
    }


# --------------------------------------------------------------------------- clean input


def test_clean_claims_pass_with_an_empty_issue_frame() -> None:
    result = assess(medical(), pharmacy())
    assert list(result.issues.columns) == ISSUE_COLUMNS
    assert result.issues.empty
    assert result.report["total_claims"] == 6
    assert result.report["passed"] == 6
    assert result.report["failed"] == 0
    assert result.report["issues"] == []
    assert result.report["counts_by_type"] == {}


def test_empty_frames_are_fine() -> None:
    result = assess(medical(0), pharmacy(0))
    assert result.issues.empty
    assert result.report["total_claims"] == 0


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("column", "value", "issue_type", "detail"),
    [
        ("member_id", None, "missing_value", "member_id: required value is empty"),
        ("cpt_code", None, "missing_value", "cpt_code: required value is empty"),
        ("units", None, "missing_value", "units: required value is empty"),
        ("amount_billed", None, "missing_value", "amount_billed: required value is empty"),
        ("provider_id", BAD_NPI, "invalid_npi", "provider_id: not an NPI with a valid check digit"),
        ("service_date", pd.Timestamp("2024-07-01"), "future_date", "service_date: after"),
        ("amount_billed", 0.0, "invalid_amount", "amount_billed: must be greater than 0"),
        ("amount_billed", -10.0, "invalid_amount", "amount_billed: must be greater than 0"),
        ("amount_paid", -1.0, "invalid_amount", "amount_paid: must not be negative"),
        ("units", 0, "invalid_units", "units: must be at least 1"),
    ],
)
def test_each_medical_error(column: str, value: object, issue_type: str, detail: str) -> None:
    frame = medical()
    frame[column] = frame[column].astype(object)
    frame.loc[1, column] = value
    result = assess(frame)
    errors = result.issues[result.issues["issue_type"] == issue_type]
    assert errors["claim_pk"].tolist() == [2]
    assert errors["severity"].tolist() == ["error"]
    assert errors["detail"].iloc[0].startswith(detail)
    assert result.report["failed"] == 1
    assert result.report["passed"] == 2


@pytest.mark.parametrize(
    ("column", "value", "issue_type"),
    [
        ("prescriber_id", BAD_NPI, "invalid_npi"),
        ("pharmacy_id", "12345", "invalid_npi"),
        ("fill_date", pd.Timestamp("2025-01-01"), "future_date"),
        ("ndc_code", None, "missing_value"),
        ("quantity", 0.0, "invalid_quantity"),
        ("days_supply", 0, "invalid_days_supply"),
        ("days_supply", 366, "invalid_days_supply"),
        ("refill_number", 100, "invalid_refill_number"),
        ("refill_number", -1, "invalid_refill_number"),
        ("amount_paid", -0.01, "invalid_amount"),
    ],
)
def test_each_pharmacy_error(column: str, value: object, issue_type: str) -> None:
    frame = pharmacy()
    frame[column] = frame[column].astype(object)
    frame.loc[2, column] = value
    result = assess(medical(0), frame)
    errors = result.issues[result.issues["issue_type"] == issue_type]
    assert errors[["claim_type", "claim_pk", "severity"]].values.tolist() == [
        ["pharmacy", 3, "error"]
    ]
    assert errors["detail"].iloc[0].startswith(f"{column}: ")


def test_optional_values_may_be_missing() -> None:
    frame = medical(modifier=None, diagnosis_code=None, place_of_service=None, amount_paid=None)
    rx = pharmacy(refill_number=None, amount_paid=None)
    assert assess(frame, rx).issues.empty


def test_a_value_that_is_not_a_date_is_invalid() -> None:
    frame = medical(service_date=["2024-01-01", "2024-02-30", "2024-03-01"])
    result = assess(frame)
    assert found(result) == {("medical", 2, "invalid_date", "error")}


def test_a_date_on_the_as_of_day_is_not_in_the_future() -> None:
    frame = medical(service_date=[pd.Timestamp(AS_OF)] * 3, cpt_code=["99213", "99214", "99215"])
    assert assess(frame).issues.empty


def test_duplicate_claim_ids_flag_the_later_rows_in_landing_order() -> None:
    frame = medical(4, claim_id=["A", "B", "A", "A"], cpt_code=["1", "2", "3", "4"])
    shuffled = frame.iloc[[3, 1, 2, 0]]  # the frame's order must not decide which row is "first"
    result = assess(shuffled)
    duplicates = result.issues[result.issues["issue_type"] == "duplicate_claim_id"]
    assert sorted(duplicates["claim_pk"]) == [3, 4]
    assert set(duplicates["severity"]) == {"error"}
    assert result.report["failed"] == 2


def test_unknown_member_and_providers_are_errors() -> None:
    med = medical(member_id=["M1", "NOBODY", "M2"], provider_id=[PROVIDER, PROVIDER, OTHER])
    rx = pharmacy(
        prescriber_id=[PRESCRIBER, OTHER, PRESCRIBER], pharmacy_id=[OTHER] + [PHARMACY] * 2
    )
    result = assess(med, rx, provider_ids=[PROVIDER, PRESCRIBER, PHARMACY])
    assert found(result) == {
        ("medical", 2, "unknown_member", "error"),
        ("medical", 3, "unknown_provider", "error"),
        ("pharmacy", 2, "unknown_prescriber", "error"),
        ("pharmacy", 1, "unknown_pharmacy", "error"),
    }


def test_a_missing_id_is_missing_not_unknown() -> None:
    result = assess(medical(member_id=["M1", None, "M2"]))
    assert set(result.issues["issue_type"]) == {"missing_value"}


# --------------------------------------------------------------------------- warnings


def test_duplicate_service_keys_are_warnings_that_do_not_fail_a_claim() -> None:
    frame = medical(
        4,
        member_id=["M1", "M1", "M1", "M1"],
        service_date=[pd.Timestamp("2024-01-05")] * 4,
        cpt_code=["99213", "99213", "99213", "99214"],
    )
    result = assess(frame)
    assert found(result) == {
        ("medical", 2, "duplicate_service", "warning"),
        ("medical", 3, "duplicate_service", "warning"),
    }
    assert result.report["failed"] == 0
    assert result.report["passed"] == 4
    assert result.report["counts_by_severity"] == {"warning": 2}


def test_duplicate_fills_and_keys_with_a_missing_part() -> None:
    rx = pharmacy(
        4,
        member_id=["M1", "M1", None, None],
        fill_date=[pd.Timestamp("2024-02-01")] * 4,
        pharmacy_id=[PHARMACY, OTHER, PHARMACY, PHARMACY],  # the key has no pharmacy
    )
    result = assess(medical(0), rx)
    duplicates = result.issues[result.issues["issue_type"] == "duplicate_fill"]
    # Rows 3 and 4 lack the member: missing values, never duplicates of each other.
    assert duplicates["claim_pk"].tolist() == [2]
    assert duplicates["severity"].tolist() == ["warning"]


def test_amount_outliers_are_judged_per_code_with_enough_peers() -> None:
    n = 21
    amounts = [100.0 + (i % 3) for i in range(n - 1)] + [5_000.0]
    codes = ["99213"] * n
    frame = medical(n, amount_billed=amounts, cpt_code=codes)
    small = medical(
        5, amount_billed=[10.0, 10.0, 10.0, 10.0, 9_000.0], cpt_code=["97110"] * 5
    ).assign(claim_pk=lambda f: f["claim_pk"] + 100, claim_id=lambda f: f["claim_id"] + "x")
    result = assess(pd.concat([frame, small], ignore_index=True))
    outliers = result.issues[result.issues["issue_type"] == "amount_outlier"]
    assert outliers["claim_pk"].tolist() == [n]  # 97110 has 5 lines, below outlier_min_peers
    assert outliers["severity"].tolist() == ["warning"]
    assert "3 SD above the mean for its cpt_code" in outliers["detail"].iloc[0]


def test_pharmacy_outliers_use_the_ndc() -> None:
    n = 12
    rx = pharmacy(n, amount_billed=[20.0, 21.0] * 5 + [20.0, 900.0])
    result = assess(medical(0), rx)
    assert found(result) == {("pharmacy", n, "amount_outlier", "warning")}


def test_a_code_billed_at_one_amount_has_no_outlier() -> None:
    # Summed in floating point, the mean of 38 times 123.45 falls below 123.45.
    result = assess(medical(38, amount_billed=[123.45] * 38))
    assert result.issues.empty


def test_outlier_limits_are_the_same_from_any_split_of_the_lines() -> None:
    rng = np.random.default_rng(3)
    frame = medical(
        400,
        amount_billed=list(np.round(rng.lognormal(4, 1, 400), 2)),
        cpt_code=[f"9921{i % 3}" for i in range(400)],
    )
    whole = quality.amount_figures("medical", frame)
    parts = quality.merged_figures(
        [quality.amount_figures("medical", frame.iloc[i::3]) for i in range(3)]
    )
    limits = quality.amount_limits(whole, 3.0, 10)
    pd.testing.assert_series_equal(quality.amount_limits(parts, 3.0, 10), limits)
    amounts = frame.groupby("cpt_code")["amount_billed"]
    expected = amounts.mean() + 3.0 * amounts.std()
    pd.testing.assert_series_equal(limits, expected, check_names=False, rtol=1e-12)


def test_outlier_thresholds_come_from_the_config() -> None:
    n = 21
    frame = medical(n, amount_billed=[100.0 + (i % 3) for i in range(n - 1)] + [5_000.0])
    loose = QualityConfig(outlier_sd=3.0, outlier_min_peers=50)
    assert assess(frame, config=loose).issues.empty


# --------------------------------------------------------------------------- report


def test_details_and_report_never_carry_values() -> None:
    secret_member = "MEMBER-SECRET-123"
    frame = medical(member_id=[secret_member, None, "M1"], provider_id=[BAD_NPI] * 3)
    frame.loc[2, "amount_billed"] = -123.45
    result = assess(frame)
    text = json.dumps(result.report)
    for value in (secret_member, BAD_NPI, "-123.45"):
        assert value not in text
        assert not result.issues["detail"].str.contains(value, regex=False).any()


def test_report_shape_and_counts() -> None:
    frame = medical(
        4,
        claim_id=["A", "A", "C", "D"],
        units=[1, 0, 1, 1],
        member_id=["M1"] * 4,
        cpt_code=["1", "2", "3", "3"],
        service_date=[pd.Timestamp("2024-01-01")] * 4,
    )
    result = assess(frame, pharmacy())
    report = result.report
    json.dumps(report)  # JSON-serialisable as stored
    assert report["total_claims"] == 7
    assert report["failed"] == 1  # row 2: reused id and zero units
    assert report["passed"] == 6
    assert report["by_claim_type"] == {
        "medical": {"total": 4, "failed": 1},
        "pharmacy": {"total": 3, "failed": 0},
    }
    assert report["counts_by_type"] == {
        "duplicate_claim_id": 1,
        "duplicate_service": 1,
        "invalid_units": 1,
    }
    assert report["counts_by_severity"] == {"error": 2, "warning": 1}
    # Errors are listed first; each entry names the claim, never the member.
    assert [i["severity"] for i in report["issues"]] == ["error", "error", "warning"]
    assert set(report["issues"][0]) == {
        "claim_type",
        "claim_id",
        "issue_type",
        "severity",
        "detail",
    }
    assert report["truncated"] == 0


def test_report_caps_the_issue_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quality, "MAX_REPORTED_ISSUES", 2)
    result = assess(medical(5, units=[0] * 5))
    assert len(result.report["issues"]) == 2
    assert result.report["truncated"] == 3
    assert result.report["counts_by_type"] == {"invalid_units": 5}


def test_a_frame_lacking_a_column_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="medical claims frame lacks columns: units"):
        assess(medical().drop(columns=["units"]))


def test_non_default_index_is_respected() -> None:
    frame = medical(units=[1, 0, 1]).set_index(pd.Index([10, 10, 7]))
    assert found(assess(frame)) == {("medical", 2, "invalid_units", "error")}


# --------------------------------------------------------------------------- schemas


def test_schemas_validate_clean_frames() -> None:
    MEDICAL_SCHEMA.validate(medical())
    pharmacy_schema(AS_OF).validate(pharmacy())


def test_schema_without_as_of_means_today() -> None:
    tomorrow = pd.Timestamp(dt.date.today() + dt.timedelta(days=1))
    frame = medical(service_date=[tomorrow] * 3, cpt_code=["1", "2", "3"])
    with pytest.raises(pa.errors.SchemaErrors):
        medical_schema().validate(frame, lazy=True)
    medical_schema(dt.date.today() + dt.timedelta(days=1)).validate(frame)


def test_a_claim_id_taken_by_a_claim_judged_before_is_a_duplicate() -> None:
    frame = medical(3, claim_id=["MC1", "MC2", "MC2"])
    with pytest.raises(pa.errors.SchemaErrors) as caught:
        medical_schema(AS_OF, taken_claim_ids=["MC1", "GONE"]).validate(frame, lazy=True)
    rows = caught.value.failure_cases.drop_duplicates(["check", "index"])
    # MC1 is taken (a held claim of an earlier batch); the second MC2 repeats the first.
    assert sorted(rows["index"]) == [0, 2]
    medical_schema(AS_OF, taken_claim_ids=["GONE"]).validate(medical(2))


def test_conformance_failures_as_an_asset_check_sees_them() -> None:
    frame = medical(4, claim_id=["A", "A", "A", "D"], units=[0, 1, 1, 1])
    with pytest.raises(pa.errors.SchemaErrors) as caught:
        medical_schema(AS_OF).validate(frame, lazy=True)
    cases = caught.value.failure_cases
    rows = cases.drop_duplicates(["check", "index"])
    assert sorted(zip(rows["check"], rows["index"], strict=True)) == [
        ("duplicate_claim_id: claim_id already used by an earlier claim", 1),
        ("duplicate_claim_id: claim_id already used by an earlier claim", 2),
        ("invalid_units: must be at least 1", 0),
    ]


def test_a_check_that_cannot_run_is_not_reported_as_bad_data() -> None:
    frame = medical(amount_billed=["a", "b", "c"])  # text where the store has money
    with pytest.raises(ValueError, match="medical conformance check could not run"):
        assess(frame)


def test_the_checks_catalogue_names_severities() -> None:
    checks = quality.quality_checks(
        "pharmacy", as_of=AS_OF, member_ids=MEMBERS, provider_ids=NPIS, config=CONFIG
    )
    assert [(c.name, c.severity) for c in checks] == [
        ("conformance", "error"),
        ("referential_integrity", "error"),
        ("duplicates", "warning"),
        ("outliers", "warning"),
    ]
    assert set(checks[0].schema.columns) == set(PHARMACY_COLUMNS)


# --------------------------------------------------------------------------- the gate


Mixed = tuple[pd.DataFrame, pd.DataFrame, quality.QualityResult]


@pytest.fixture
def mixed() -> Mixed:
    """Medical claim 2 has an error, medical claim 3 only a warning, pharmacy claim 1 an error."""
    med = medical(
        3,
        units=[1, 0, 1],
        member_id=["M1", "M1", "M1"],
        service_date=[pd.Timestamp("2024-01-01")] * 3,
        cpt_code=["99213", "99214", "99213"],
    )
    rx = pharmacy(days_supply=[0, 30, 30])
    return med, rx, assess(med, rx)


def test_skip_invalid_holds_back_claims_with_errors_only(mixed: Mixed) -> None:
    med, rx, result = mixed
    assert ("medical", 3, "duplicate_service", "warning") in found(result)
    held = held_back(result.issues, QualityMode.skip_invalid)
    assert passing(med, held, "medical")["claim_pk"].tolist() == [1, 3]
    assert passing(rx, held, "pharmacy")["claim_pk"].tolist() == [2, 3]
    assert held.values.tolist() == [
        ["medical", 2, "invalid_units"],
        ["pharmacy", 1, "invalid_days_supply"],
    ]


def test_flag_only_lets_everything_on(mixed: Mixed) -> None:
    med, rx, result = mixed
    held = held_back(result.issues, "flag_only")
    assert held.empty
    assert list(held.columns) == ["claim_type", "claim_pk", "reason"]
    assert passing(med, held, "medical") is med
    assert passing(rx, held, "pharmacy") is rx


def test_halt_on_errors_raises_with_counts_per_issue_type(mixed: Mixed) -> None:
    _, _, result = mixed
    with pytest.raises(QualityGateError) as caught:
        held_back(result.issues, "halt_on_errors")
    assert caught.value.failed == 2
    assert caught.value.counts == {"invalid_days_supply": 1, "invalid_units": 1}
    assert "2 claim(s) have errors" in str(caught.value)
    assert "invalid_units 1" in str(caught.value)


def test_halt_on_errors_passes_when_only_warnings() -> None:
    med = medical(2, member_id=["M1", "M1"], service_date=[pd.Timestamp("2024-01-01")] * 2)
    result = assess(med)
    assert not result.issues.empty
    held = held_back(result.issues, "halt_on_errors")
    assert held.empty
    assert len(passing(med, held, "medical")) == 2


def test_unknown_mode_is_rejected(mixed: Mixed) -> None:
    _, _, result = mixed
    with pytest.raises(ValueError):
        held_back(result.issues, "ignore_everything")
