"""indexes for the case queue

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 23:50:00.000000

The queue's first page in each of its orders (risk score, with or without a status filter;
amount paid; age) is read from an index instead of sorting a workspace's every case, and the
cases citing a rule are found from the rule's hits, ``(workspace_id, rule_id, claim_type,
claim_pk)`` (it replaces ``(workspace_id, rule_id)``, its prefix), to their claims' cases,
``case_claims (claim_type, claim_pk, case_id)``, both read from the index alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CASE_INDEXES = {
    "ix_investigation_cases_ws_score": ["workspace_id", "risk_score", "id"],
    "ix_investigation_cases_ws_status_score": ["workspace_id", "status", "risk_score", "id"],
    "ix_investigation_cases_ws_paid": ["workspace_id", "flagged_paid", "id"],
    "ix_investigation_cases_ws_created": ["workspace_id", "created_at", "id"],
}


def upgrade() -> None:
    for name, columns in CASE_INDEXES.items():
        op.create_index(name, "investigation_cases", columns)
    op.create_index(
        "ix_rule_hits_ws_rule_claim",
        "rule_hits",
        ["workspace_id", "rule_id", "claim_type", "claim_pk"],
    )
    op.drop_index("ix_rule_hits_ws_rule", table_name="rule_hits")
    op.create_index("ix_case_claims_claim", "case_claims", ["claim_type", "claim_pk", "case_id"])


def downgrade() -> None:
    op.drop_index("ix_case_claims_claim", table_name="case_claims")
    op.create_index("ix_rule_hits_ws_rule", "rule_hits", ["workspace_id", "rule_id"])
    op.drop_index("ix_rule_hits_ws_rule_claim", table_name="rule_hits")
    for name in CASE_INDEXES:
        op.drop_index(name, table_name="investigation_cases")
