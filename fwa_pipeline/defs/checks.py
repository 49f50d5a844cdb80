"""The quality gate's Pandera schemas as Dagster asset checks on ``raw_claims``.

The four checks (conformance, referential integrity, duplicates, amount outliers) are the
``domain.quality`` checks, each over both claim types. ``raw_claims`` runs the schemas once
(``assess_quality``) and reports one check result per check from those issues, so 1M claims are
validated once, not once for the checks and again for the gate.

Error checks (conformance, referential integrity) are blocking: under ``halt_on_errors`` a
failure has ERROR severity, so neither ``validated_claims`` nor anything downstream runs and the
run fails. In the other modes a failure is a WARN: the gate holds the claims back
(``skip_invalid``) or lets them on (``flag_only``). Warning checks (duplicates, outliers) are FWA
signals the rules score and never block.
"""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pandas as pd

from fwa_pipeline.domain.config import QualityConfig, QualityMode
from fwa_pipeline.domain.quality import QualityCheck, QualityResult, quality_checks
from fwa_pipeline.domain.tally import counts

DESCRIPTIONS = {
    "conformance": "Required values, NPI check digits, dates not in the future, amounts, units "
    "and days supply in range, claim ids not reused (Pandera schema per claim type).",
    "referential_integrity": "Every member, provider, prescriber and pharmacy a claim names "
    "exists in the workspace's reference data.",
    "duplicates": "A later claim repeating an earlier one's service or fill key (an FWA signal "
    "the rules score; never holds a claim back).",
    "outliers": "amount_billed more than outlier_sd standard deviations above its code's mean "
    "(an FWA signal; never holds a claim back).",
}


def _catalogue() -> list[QualityCheck]:
    """The checks of both claim types, with placeholder reference ids: their names, severities
    and the issue types their schemas raise do not depend on the data."""
    return [
        check
        for claim_type in ("medical", "pharmacy")
        for check in quality_checks(
            claim_type, as_of=None, member_ids=[], provider_ids=[], config=QualityConfig()
        )
    ]


def _issue_types(check: QualityCheck) -> set[str]:
    schema = check.schema
    names = {c.name for c in schema.checks}
    for column in schema.columns.values():
        names.update(c.name for c in column.checks)
    return {n for n in names if n}


_CHECKS = _catalogue()
CHECK_NAMES: tuple[str, ...] = tuple(dict.fromkeys(c.name for c in _CHECKS))
ERROR_CHECKS = frozenset(c.name for c in _CHECKS if c.severity == "error")
# The first check (conformance) also owns issues no schema check names (Pandera's built-in
# nullability check reports "missing_value").
CATCH_ALL = CHECK_NAMES[0]
ISSUE_CHECK: dict[str, str] = {
    issue: check.name for check in reversed(_CHECKS) for issue in _issue_types(check)
}


def check_specs(asset: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            name=name,
            asset=asset,
            description=DESCRIPTIONS.get(name, name),
            blocking=name in ERROR_CHECKS,
        )
        for name in CHECK_NAMES
    ]


def check_of(issue_types: pd.Series) -> pd.Series:
    return issue_types.map(ISSUE_CHECK).fillna(CATCH_ALL)


def check_results(
    asset: str, result: QualityResult, config: QualityConfig
) -> Iterator[dg.AssetCheckResult]:
    """One result per quality check from the run's (new claims') issues: counts per issue type
    and claim type, and a sample of issues (claim ids and what is wrong, never a value)."""
    issues = result.issues.assign(check=check_of(result.issues["issue_type"]))
    halting = config.mode is QualityMode.halt_on_errors
    for name in CHECK_NAMES:
        found = issues[issues["check"] == name]
        severity = (
            dg.AssetCheckSeverity.ERROR
            if halting and name in ERROR_CHECKS
            else dg.AssetCheckSeverity.WARN
        )
        sample = found.head(config.sample_size)[["claim_type", "claim_id", "issue_type", "detail"]]
        yield dg.AssetCheckResult(
            asset_key=asset,
            check_name=name,
            passed=found.empty,
            severity=severity,
            metadata={
                "issues": dg.MetadataValue.int(len(found)),
                "claims": dg.MetadataValue.int(
                    len(found[["claim_type", "claim_pk"]].drop_duplicates())
                ),
                "by_issue_type": dg.MetadataValue.json(counts(found["issue_type"])),
                "by_claim_type": dg.MetadataValue.json(counts(found["claim_type"])),
                "quality_mode": dg.MetadataValue.text(config.mode.value),
                "sample": dg.MetadataValue.json(sample.astype(object).to_dict(orient="records")),
            },
        )
