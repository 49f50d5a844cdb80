"""A rule hit row as the rule engine emits it, for the scoring and case tests."""

from __future__ import annotations


def hit(
    rule_id: str,
    claim_type: str,
    pk: int,
    severity: float = 1.0,
    weight: float = 7.0,
    subject: tuple[str, str] | None = None,
    evidence: dict[str, object] | None = None,
) -> dict[str, object]:
    """A hit of ``rule_id`` on claim ``pk`` (claim id ``M<pk>`` or ``P<pk>``), on the claim
    itself unless ``subject`` names another."""
    claim_id = f"{claim_type[0].upper()}{pk}"
    subject_type, subject_id = subject or ("claim", claim_id)
    return {
        "rule_id": rule_id,
        "rule_version": "1.0",
        "weight": weight,
        "claim_type": claim_type,
        "claim_pk": pk,
        "claim_id": claim_id,
        "subject_type": subject_type,
        "subject_id": subject_id,
        "severity": severity,
        "evidence": evidence or {"value": pk},
    }
